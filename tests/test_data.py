import functools
import hashlib
import http.server
import os
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ranksrgan_nb import data as D
from ranksrgan_nb import datasets as DS

FIX = Path(__file__).parent / 'fixtures' / 'imresize_basicsr_ref.npz'


# ---------------------------------------------------------------- reading images
@pytest.fixture
def photo():
    from skimage.data import astronaut
    return astronaut()[100:163, 50:121]          # odd size 63x71


def test_read_formats_roundtrip(tmp_path, photo):
    for ext in ('.png', '.bmp', '.tif', '.tiff', '.webp'):
        np.testing.assert_array_equal(D.read_image(D.write_image(tmp_path / f'x{ext}', photo)), photo)
    jpg = D.read_image(D.write_image(tmp_path / 'x.jpg', photo))
    assert jpg.shape == photo.shape and np.abs(jpg.astype(int) - photo).mean() < 5


def test_read_gray_rgba_la_bilevel(tmp_path, photo):
    g = photo[..., 1]
    Image.fromarray(g).save(tmp_path / 'g.png')
    np.testing.assert_array_equal(D.read_image(tmp_path / 'g.png'), np.stack([g] * 3, -1))
    Image.fromarray(np.dstack([photo, np.zeros_like(g)])).save(tmp_path / 'rgba.png')   # fully transparent
    np.testing.assert_array_equal(D.read_image(tmp_path / 'rgba.png'), photo)           # alpha dropped
    Image.fromarray(np.dstack([g, g])).convert('LA').save(tmp_path / 'la.png')
    assert D.read_image(tmp_path / 'la.png').shape == photo.shape
    Image.fromarray(g > 128).save(tmp_path / 'b.png')
    assert set(np.unique(D.read_image(tmp_path / 'b.png'))) <= {0, 255}


def test_read_16bit_gray_png_and_rgb_tiff(tmp_path):
    import tifffile
    v = np.array([[0, 257, 65535, 128]], np.uint16)
    Image.fromarray(v).save(tmp_path / 'g16.png')
    np.testing.assert_array_equal(D.read_image(tmp_path / 'g16.png')[0, :, 0], [0, 1, 255, 0])
    rgb16 = np.stack([v, v[:, ::-1], v], -1)
    tifffile.imwrite(tmp_path / 'c16.tif', rgb16)
    out = D.read_image(tmp_path / 'c16.tif')
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 255, 0])
    np.testing.assert_array_equal(out[0, :, 1], [0, 255, 1, 0])


def test_read_errors_name_the_file(tmp_path, photo):
    with pytest.raises(FileNotFoundError, match='nope.png'):
        D.read_image(tmp_path / 'nope.png')
    good = D.write_image(tmp_path / 'good.jpg', photo).read_bytes()
    (tmp_path / 'cut.jpg').write_bytes(good[: len(good) // 3])
    with pytest.raises(D.ImageReadError, match='cut.jpg'):
        D.read_image(tmp_path / 'cut.jpg')
    (tmp_path / 'junk.webp').write_bytes(b'\x00\x01garbage' * 10)
    with pytest.raises(ValueError, match='junk.webp'):
        D.read_image(tmp_path / 'junk.webp')
    (tmp_path / 'empty.png').write_bytes(b'')
    with pytest.raises(D.ImageReadError, match='empty.png'):
        D.read_image(tmp_path / 'empty.png')
    (tmp_path / 'dir.png').mkdir()
    with pytest.raises(IsADirectoryError, match='dir.png is a folder'):
        D.read_image(tmp_path / 'dir.png')


def test_write_tensor(tmp_path, photo):
    t = D.img2tensor(photo)[None]
    np.testing.assert_array_equal(D.read_image(D.write_image(tmp_path / 'sub' / 't.png', t)), photo)
    with pytest.raises(ValueError, match='batch'):
        D.tensor2img(torch.zeros(2, 3, 4, 4))


# ---------------------------------------------------------------- imresize
@pytest.mark.parametrize('name', ['noise', 'smooth'])
@pytest.mark.parametrize('scale,tag', [(0.25, 'x0.25'), (0.5, 'x0.5'), (2, 'x2'), (4, 'x4')])
def test_imresize_matches_matlab_reference(name, scale, tag):
    ref = np.load(FIX)
    x = ref[name].astype(np.float64)
    np.testing.assert_allclose(D.imresize(x, scale), ref[f'{name}_{tag}'], atol=1e-5, rtol=0)
    t = torch.from_numpy(x.transpose(2, 0, 1))[None]
    out_t = D.imresize(t, scale)[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(out_t, ref[f'{name}_{tag}'], atol=1e-5, rtol=0)


def test_imresize_properties(rng):
    x = rng.random((23, 31))
    assert D.imresize(x, 0.25).shape == (6, 8)
    assert D.imresize(x, 1 / 3).shape == (8, 11)
    np.testing.assert_allclose(D.imresize(np.full((17, 9), 0.3), 0.5), 0.3, atol=1e-12)   # weights sum to 1
    np.testing.assert_allclose(D.imresize(x, 1.0), x, atol=1e-12)                          # identity
    m = D.resize_matrix(13, 0.25, True)
    np.testing.assert_allclose(m.sum(1), 1, atol=1e-12)
    # torch float32 and float64 batches, on a (B, C, H, W) and a (C, H, W) tensor
    t = torch.from_numpy(rng.random((2, 3, 23, 31)))
    np.testing.assert_allclose(D.imresize(t.float(), 0.5).double(), D.imresize(t, 0.5), atol=1e-6)
    assert D.imresize(t[0], 2).shape == (3, 46, 62)
    with pytest.raises(TypeError):
        D.imresize(np.zeros((8, 8), np.uint8), 0.5)
    with pytest.raises(ValueError):
        D.imresize(x, 0)


def test_imresize_antialias_off_is_plain_bicubic(rng):
    # without antialiasing, shrinking by 1/2 samples the cubic kernel at the same 4 taps everywhere
    x = rng.random(40)
    m = D.resize_matrix(40, 0.5, False)
    # u = 11.5 - 0.5 -> taps at 10..13 (1-based) with weights k(±0.5), k(±1.5)
    row = m[5]
    k = D.cubic(np.array([1.5, 0.5, -0.5, -1.5]))
    np.testing.assert_allclose(row[9:13], k / k.sum(), atol=1e-12)
    assert D.imresize(x[:, None], 0.5, antialias=False).shape == (20, 1)


# ---------------------------------------------------------------- colour and crops
def test_ycbcr_against_skimage(photo):
    from skimage.color import rgb2ycbcr
    np.testing.assert_allclose(D.rgb2ycbcr(photo / 255.0) * 255, rgb2ycbcr(photo), atol=1e-9)
    assert D.rgb_to_y(photo).dtype == np.uint8
    y = D.rgb_to_y(D.img2tensor(photo)[None].double())
    assert y.shape == (1, 1, 63, 71)
    np.testing.assert_allclose(y[0, 0].numpy() * 255, rgb2ycbcr(photo)[..., 0], atol=1e-4)


def test_modcrop_and_crop_border():
    assert D.modcrop(np.zeros((7, 9)), 4).shape == (4, 8)
    assert D.modcrop(np.zeros((8, 8, 3)), 4).shape == (8, 8, 3)
    assert D.crop_border(torch.zeros(1, 3, 10, 12), 4).shape == (1, 3, 2, 4)
    assert D.crop_border(np.zeros((5, 5)), 0).shape == (5, 5)


def test_bicubic_degrade(photo):
    lr = D.bicubic_degrade(photo, 4)
    assert lr.dtype == np.uint8 and lr.shape == (15, 17, 3)
    t = D.bicubic_degrade(D.img2tensor(photo)[None].double(), 4)
    np.testing.assert_allclose(np.round(t[0].numpy().transpose(1, 2, 0) * 255), lr, atol=1)
    with pytest.raises(TypeError):
        D.bicubic_degrade(photo.astype(np.float32))


# ---------------------------------------------------------------- datasets
def test_sample_images_split_by_scene():
    tr, te = D.sample_images('train'), D.sample_images('test')
    assert len(tr) >= 4 and len(te) >= 2 and not set(tr) & set(te)
    for im in {**tr, **te}.values():
        assert im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 and min(im.shape[:2]) >= 256
    with pytest.raises(ValueError):
        D.sample_images('val')


def test_paired_patches_aligned_deterministic(photo):
    from skimage.data import astronaut
    ds = D.PairedPatchDataset({'a': astronaut(), 'b': photo}, hr_patch=48, scale=4, seed=7)
    assert len(ds) == 2
    for k in (0, 1, 17, 10_000):
        s = ds[k]
        assert s['hr'].shape == (3, 48, 48) and s['lr'].shape == (3, 12, 12)
        relr = D.bicubic_degrade(D.tensor2img(s['hr']))
        assert np.abs(relr[3:-3, 3:-3].astype(int) - D.tensor2img(s['lr'])[3:-3, 3:-3]).max() <= 1
        assert torch.equal(ds[k]['lr'], s['lr'])
    other = D.PairedPatchDataset({'a': astronaut(), 'b': photo}, hr_patch=48, scale=4, seed=8)
    assert not torch.equal(other[0]['hr'], ds[0]['hr'])
    with pytest.raises(IndexError):
        ds[-1]


def test_paired_patches_skip_small_and_error(photo, tmp_path):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ds = D.PairedPatchDataset({'small': photo, 'ok': np.zeros((80, 80, 3), np.uint8)}, hr_patch=64)
    assert ds.names == ['ok'] and 'small 68x60' in str(w[0].message)
    with pytest.raises(ValueError, match='64x64'):
        D.PairedPatchDataset({'small': photo}, hr_patch=64)
    with pytest.raises(ValueError, match='multiple'):
        D.PairedPatchDataset({'ok': photo}, hr_patch=30)
    D.write_image(tmp_path / 'imgs' / 'a.png', np.zeros((96, 96, 3), np.uint8))
    (tmp_path / 'imgs' / 'readme.txt').write_text('ignored')
    assert D.PairedPatchDataset(tmp_path / 'imgs', hr_patch=64).names == ['a']
    with pytest.raises(FileNotFoundError):
        D.PairedPatchDataset(tmp_path / 'none', hr_patch=64)


def test_paired_patches_dataloader_workers_match(photo):
    from skimage.data import astronaut
    ds = D.PairedPatchDataset({'a': astronaut()}, hr_patch=32, seed=1)
    keys = list(range(8))
    b0 = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, sampler=keys, num_workers=0)))
    b2 = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, sampler=keys, num_workers=2)))
    assert torch.equal(b0['hr'], b2['hr'])


def test_test_dataset_modcrop_and_provided_lr(tmp_path, photo):
    tds = D.TestImageDataset({'p': photo}, scale=4)
    assert tds[0]['hr'].shape == (60, 68, 3) and tds[0]['lr'].shape == (15, 17, 3)
    bad = {'p': np.zeros((10, 10, 3), np.uint8)}
    with pytest.raises(ValueError, match='expected HR/4'):
        D.TestImageDataset({'p': photo}, lr_images=bad)
    with pytest.raises(FileNotFoundError, match="'p'"):
        D.TestImageDataset({'p': photo}, lr_images={'q': np.zeros((15, 17, 3), np.uint8)})


# ---------------------------------------------------------------- downloads against a local HTTP server
@pytest.fixture
def http_root(tmp_path):
    serve = tmp_path / 'www'
    serve.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(serve))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield serve, f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown()


def _make_zip(serve: Path, photo) -> str:
    src = serve.parent / 'src'
    D.write_image(src / 'Tiny' / 'HR' / 'a.png', photo)
    with zipfile.ZipFile(serve / 'tiny.zip', 'w') as z:
        z.write(src / 'Tiny' / 'HR' / 'a.png', 'Tiny/HR/a.png')
    return hashlib.sha256((serve / 'tiny.zip').read_bytes()).hexdigest()


def test_get_dataset_downloads_checks_and_unpacks(http_root, tmp_path, photo, monkeypatch):
    serve, url = http_root
    sha = _make_zip(serve, photo)
    monkeypatch.setitem(DS.DATASETS, 'Tiny', DS.DatasetSpec(url + 'tiny.zip', f'sha256:{sha}', 'Tiny/HR'))
    root = tmp_path / 'cache'
    hr = DS.get_dataset('Tiny', root)
    assert hr == root / 'Tiny' / 'HR'
    np.testing.assert_array_equal(D.read_image(hr / 'a.png'), photo)
    (serve / 'tiny.zip').unlink()                    # second call: prepared folder, no network
    assert DS.get_dataset('Tiny', root) == hr


def test_download_checksum_mismatch(http_root, tmp_path, photo, monkeypatch):
    serve, url = http_root
    _make_zip(serve, photo)
    monkeypatch.setitem(DS.DATASETS, 'Tiny', DS.DatasetSpec(url + 'tiny.zip', 'sha256:' + '0' * 64, 'Tiny/HR'))
    with pytest.raises(DS.DownloadError, match='checksum') as e:
        DS.get_dataset('Tiny', tmp_path / 'cache')
    assert 'Tiny/HR' in str(e.value)                 # and says where to put the images instead
    assert not (tmp_path / 'cache' / 'Tiny').exists()


def test_download_cached_file_is_reused(http_root, tmp_path, photo):
    serve, url = http_root
    sha = _make_zip(serve, photo)
    p = DS.download(url + 'tiny.zip', f'sha256:{sha}', tmp_path / 'c', progress=False)
    (serve / 'tiny.zip').unlink()
    assert DS.download(url + 'tiny.zip', f'sha256:{sha}', tmp_path / 'c', progress=False) == p


def test_download_offline_message(tmp_path):
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here
    with pytest.raises(DS.DownloadError) as e:
        DS.download(f'http://127.0.0.1:{port}/w.pth', 'sha256:' + 'a' * 64, tmp_path, progress=False)
    assert 'Download it yourself' in str(e.value) and str(tmp_path / 'w.pth') in str(e.value)


def test_get_dataset_unknown_and_manual_only(tmp_path):
    with pytest.raises(ValueError, match='known'):
        DS.get_dataset('Set99', tmp_path)
    with pytest.raises(FileNotFoundError, match='pirm'):
        DS.get_dataset('PIRM_test', tmp_path)
    with pytest.raises(FileNotFoundError, match='not prepared'):
        DS.get_dataset('Set5', tmp_path, download_missing=False)


def test_resolve_images(tmp_path):
    assert set(D.resolve_images('sample', 'test')['sample'].images) == set(D.sample_images('test'))
    (tmp_path / 'imgs').mkdir()
    assert D.resolve_images(str(tmp_path / 'imgs'))['imgs'] == D.ImageSet(tmp_path / 'imgs', None)
    with pytest.raises(ValueError):
        D.resolve_images('nonsense-set')
    with pytest.raises(FileNotFoundError, match='not prepared'):          # without skip_missing: an error, no download
        D.resolve_images('PIRM', root=tmp_path)


def test_bsds500_alias_names_both_splits_never_val(tmp_path):
    from ranksrgan_nb.config import get_profile
    for split in ('train', 'test'):
        D.write_image(tmp_path / 'BSDS500' / split / f'{split}.jpg', np.zeros((8, 8, 3), np.uint8))
    sets = D.resolve_images('BSDS500, BSDS500_test', root=tmp_path, skip_missing=True)     # named twice: once
    assert sets == {'BSDS500_train': D.ImageSet(tmp_path / 'BSDS500/train'),
                    'BSDS500_test': D.ImageSet(tmp_path / 'BSDS500/test')}
    assert get_profile('cpu', train_data='SunHays80,BSDS500').train_data == 'SunHays80,BSDS500'   # a valid setting
    with pytest.raises(ValueError, match='is not "sample"'):
        D.resolve_images('BSDS500_val', root=tmp_path)


def test_profile_images_merges_the_sets(tmp_path):
    from ranksrgan_nb.config import get_profile
    D.write_image(tmp_path / 'extra' / 'x.png', np.zeros((8, 8, 3), np.uint8))
    cfg = get_profile('smoke', test_data=f'sample, {tmp_path / "extra"}')
    got = D.profile_images(cfg, 'test', prefix='t_')
    assert list(got) == ['t_chelsea', 't_grace_hopper', 't_x'] and got['t_x'].shape == (8, 8, 3)
    assert set(D.profile_images(cfg, 'train')) == set(D.sample_images('train'))


def _photo(h, w, seed):
    "A smooth random colour field with fine noise, uint8."
    rng = np.random.default_rng(seed)
    base = D.imresize(rng.random((h // 8 + 1, w // 8 + 1, 3)), 8)[:h, :w]
    return np.clip(np.round((base * 0.8 + 0.2 * rng.random((h, w, 3))) * 255), 0, 255).astype(np.uint8)


def test_test_sets(tmp_path, capsys):
    s = D.test_sets('sample', 4)
    assert list(s) == ['sample'] and len(s['sample']) == 2
    assert all(it['hr'].shape[0] % 4 == 0 and it['hr'].shape[1] % 4 == 0 for it in s['sample'])
    images = {'a': _photo(208, 224, 0), 'b': _photo(210, 202, 1)}       # b is not a multiple of 4: modcrop
    root = tmp_path / 'data'
    for n, im in images.items():
        D.write_image(root / 'benchmark/Set14/HR' / f'{n}.png', im)
        D.write_image(root / 'PIRM_Test_set/HR' / f'{n}.png', im)
        D.write_image(root / 'PIRM_Test_set/LR' / f'{n}.png', 255 - D.bicubic_degrade(D.modcrop(im, 4), 4))
    D.write_image(tmp_path / 'mine' / 'c.png', images['a'])
    got = D.test_sets(f'Set5, Set14,PIRM, PIRM_test, {tmp_path / "mine"}, BSD100', 4, root)
    assert list(got) == ['Set14', 'PIRM_test', 'mine']                    # missing skipped, PIRM once
    out = capsys.readouterr().out
    assert 'skipping Set5' in out and 'skipping BSD100' in out and 'benchmark/Set5/HR' in out
    hr_b = D.modcrop(images['b'], 4)
    np.testing.assert_array_equal(got['Set14'][1]['hr'], hr_b)
    np.testing.assert_array_equal(got['Set14'][1]['lr'], D.bicubic_degrade(hr_b, 4))      # made on the fly
    np.testing.assert_array_equal(got['PIRM_test'][1]['lr'], 255 - D.bicubic_degrade(hr_b, 4))  # provided LR
    assert len(D.test_sets('Set14', 4, root, max_images=1)['Set14']) == 1
    assert not (root / 'archives').exists()                               # nothing was downloaded
    with pytest.raises(ValueError, match='no data'):
        D.test_sets('Urban100', 4, root)
    with pytest.raises(ValueError, match='is not "sample"'):
        D.test_sets('Set15', 4, root)


def test_stamped_folder_and_file_stamp(tmp_path):
    f = DS.stamped_folder(tmp_path / 'c', 'v1')
    D.write_image(f / 'a.png', np.zeros((4, 4, 3), np.uint8))
    (f / 'keep.txt').write_text('x')
    assert DS.stamped_folder(tmp_path / 'c', 'v1') == f and (f / 'a.png').exists()
    DS.stamped_folder(tmp_path / 'c', 'v2')
    assert not (f / 'a.png').exists() and (f / 'keep.txt').exists() and (f / 'source.txt').read_text() == 'v2'
    p = tmp_path / 'w.pth'
    p.write_bytes(b'12345')
    path, size, _ = DS.file_stamp(p).rsplit(':', 2)
    assert path == str(p.resolve()) and size == '5'


def test_rgb_to_y_rounds_halves_up_like_matlab():
    # exact integer arithmetic: 255000 * Y = 16*255000 + 65481 R + 128553 G + 24966 B
    r, g, b = np.meshgrid(np.arange(256), np.arange(256), np.arange(256), indexing='ij')
    num = 16 * 255000 + 65481 * r.astype(np.int64) + 128553 * g + 24966 * b
    half = (num % 255000) == 127500
    assert half.sum() > 0
    img = np.stack([r[half], g[half], b[half]], -1).astype(np.uint8)[None]
    expected = (num[half] + 127500) // 255000                          # round half up
    np.testing.assert_array_equal(D.rgb_to_y(img)[0], expected)
    some = np.stack([r[::17, ::13, ::7], g[::17, ::13, ::7], b[::17, ::13, ::7]], -1).reshape(1, -1, 3).astype(np.uint8)
    s64 = some.astype(np.int64)
    n2 = 16 * 255000 + s64[..., 0] * 65481 + s64[..., 1] * 128553 + s64[..., 2] * 24966
    np.testing.assert_array_equal(D.rgb_to_y(some), (n2 + 127500) // 255000)


# ---------------------------------------------------------------- the data root and per-file datasets (the manifest)
def test_data_root_argument_env_default(monkeypatch):
    monkeypatch.delenv('RANKSRGAN_NB_DATA', raising=False)
    assert (DS.data_root() == DS.data_root('') == DS.data_root('  ')
            == Path.home() / '.cache' / 'ranksrgan_nb' / 'datasets')
    monkeypatch.setenv('RANKSRGAN_NB_DATA', '/srv/photos')
    assert DS.data_root() == DS.data_root(None) == Path('/srv/photos')
    assert DS.data_root('~/mine') == Path.home() / 'mine'                  # a given root wins over the variable
    from ranksrgan_nb.config import get_profile
    assert get_profile('cpu').data_root == '' and get_profile('cpu', data_root='/d').data_root == '/d'


MANIFEST_COLS = ['folder', 'file', 'sha256', 'bytes', 'source_repo', 'source_commit', 'source_path']


@pytest.fixture
def tiny_per_file(http_root, tmp_path, monkeypatch):
    ("A per-file dataset 'Tiny' of three images served by a local HTTP server as <repo>/<commit>/<path>, "
     "and its manifest.")
    serve, url = http_root
    rng = np.random.default_rng(5)
    commit, rows, imgs = 'ab' * 20, [], {}
    for k, name in enumerate(['a.png', 'b.png', 'c.jpg']):
        img = rng.integers(0, 256, (16 + k, 20, 3), dtype=np.uint8)
        src = serve / 'someone' / 'photos' / commit / 'sets' / 'tiny' / name
        D.write_image(src, img)
        data = src.read_bytes()
        rows.append(dict(folder='Tiny/HR', file=name, sha256=hashlib.sha256(data).hexdigest(), bytes=str(len(data)),
                         source_repo='someone/photos', source_commit=commit, source_path=f'sets/tiny/{name}'))
        imgs[name] = data
    man = tmp_path / 'manifest.tsv'
    man.write_text('\t'.join(MANIFEST_COLS) + '\n'
                   + ''.join('\t'.join(r[c] for c in MANIFEST_COLS) + '\n' for r in rows))
    monkeypatch.setattr(DS, 'DATASETS_MANIFEST', man)
    monkeypatch.setattr(DS, 'RAW_URL', url + '{repo}/{commit}/{path}')
    monkeypatch.setitem(DS.DATASETS, 'Tiny', DS.DatasetSpec(None, None, 'Tiny/HR', 'three test images', per_file=True))
    return serve / 'someone' / 'photos' / commit / 'sets' / 'tiny', imgs


def test_per_file_download_checks_and_reuses(tiny_per_file, tmp_path, capsys):
    served, imgs = tiny_per_file
    root = tmp_path / 'data'
    hr = DS.get_dataset('Tiny', root)
    assert hr == root / 'Tiny' / 'HR' and sorted(p.name for p in hr.iterdir()) == ['.sha256_verified.json', 'a.png',
                                                                             'b.png', 'c.jpg']
    for name, data in imgs.items():                                       # byte for byte what was served
        assert (hr / name).read_bytes() == data
    assert 'downloading to' in capsys.readouterr().err                    # the progress bar
    for f in served.iterdir(): f.unlink()                                 # the server has nothing now
    assert DS.get_dataset('Tiny', root) == hr                             # every file there and good: no request at all
    assert D.resolve_images('Tiny', root=root)['Tiny'] == D.ImageSet(hr)
    (hr / 'b.png').write_bytes(b'my own copy')                            # a file already there is checked too ...
    with pytest.raises(DS.ChecksumError, match=rf"{hr / 'b.png'} does not match its SHA-256 .*could not be downloaded"):
        DS.get_dataset('Tiny', root)                                       # ... and, the server gone, named
    assert (hr / 'b.png').read_bytes() == b'my own copy'                  # left as it was


def test_per_file_fetches_only_the_missing_files(tiny_per_file, tmp_path):
    served, imgs = tiny_per_file
    root = tmp_path / 'data'
    (root / 'Tiny' / 'HR').mkdir(parents=True)
    (root / 'Tiny' / 'HR' / 'a.png').write_bytes(imgs['a.png'])
    (served / 'a.png').unlink()                                          # would fail if it were requested
    DS.get_dataset('Tiny', root, progress=False)
    assert all((root / 'Tiny' / 'HR' / n).read_bytes() == d for n, d in imgs.items())


def test_per_file_corrupted_file_is_refused(tiny_per_file, tmp_path):
    served, imgs = tiny_per_file
    (served / 'b.png').write_bytes(imgs['b.png'][:-10] + b'0123456789')   # same size, other bytes
    root = tmp_path / 'data'
    with pytest.raises(DS.DownloadError) as e:
        DS.get_dataset('Tiny', root, progress=False)
    msg = str(e.value)
    assert (msg.startswith('Tiny: ')
            and 'someone/photos/' + 'ab' * 20 + '/sets/tiny/b.png does not match its SHA-256' in msg)
    assert 'refused' in msg and f"2 file(s) missing in {root / 'Tiny' / 'HR'} (b.png, c.jpg)" in msg
    assert (root / 'Tiny' / 'HR' / 'a.png').read_bytes() == imgs['a.png']   # the good file before it is kept
    assert not (root / 'Tiny' / 'HR' / 'b.png').exists()                    # the bad one never lands


def test_per_file_offline_names_files_folder_and_source(tiny_per_file, tmp_path, monkeypatch):
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here
    monkeypatch.setattr(DS, 'RAW_URL', f'http://127.0.0.1:{port}/' + '{repo}/{commit}/{path}')
    root = tmp_path / 'data'
    with pytest.raises(DS.DownloadError) as e:
        DS.get_dataset('Tiny', root, progress=False)
    msg = str(e.value)
    assert 'Offline?' in msg and f"3 file(s) missing in {root / 'Tiny' / 'HR'} (a.png, b.png, c.jpg)" in msg
    assert ('Put them there by hand' in msg
            and f"github.com/someone/photos at commit {'ab' * 20}, path sets/tiny/" in msg)
    with pytest.raises(FileNotFoundError, match=f"put the HR images of Tiny in {root / 'Tiny' / 'HR'}"):
        DS.get_dataset('Tiny', root, download_missing=False)           # skip_missing callers: no request at all
    assert D.test_sets('Tiny, sample', 4, root).keys() == {'sample'}      # and the tables go on without it


def test_http_error_is_not_called_offline(tiny_per_file, tmp_path):
    served, _ = tiny_per_file
    (served / 'c.jpg').unlink()                                          # 404
    with pytest.raises(DS.DownloadError) as e:
        DS.get_dataset('Tiny', tmp_path / 'data', progress=False)
    assert 'HTTPError' in str(e.value) and 'Offline?' not in str(e.value) and '1 file(s) missing' in str(e.value)


def test_shipped_manifest_rows_and_pinned_urls():
    rows = DS.read_manifest()
    assert [r['folder'] for r in rows].count('SunHays80/HR') == 80 and len(rows) == 567
    counts = {'Set5': 5, 'Set14': 14, 'CBSD68': 68, 'SunHays80': 80, 'BSDS500_train': 200, 'BSDS500_test': 200}
    for name, n in counts.items():
        spec = DS.DATASETS[name]
        assert spec.per_file and spec.url is None and len(DS.read_manifest(spec.hr_dir)) == n
    assert not [r for r in rows if 'val' in r['folder'].lower() or '/val/' in r['source_path']]   # val holds CBSD68
    url = DS.source_url(DS.read_manifest('CBSD68/HR')[0])
    assert (url.startswith('https://raw.githubusercontent.com/majedelhelou/denoising_datasets/')
            and len(url.split('/')[5]) == 40)
    assert 'benchmark.tar' in DS.DATASETS['Set5'].note and DS.DATASETS['BSD100'].url.endswith('benchmark.tar')
    assert len({(r['folder'], r['file']) for r in rows}) == len(rows)                     # no file listed twice


def test_bsds500_fetch_and_resolve_from_the_shared_folder(shared_datasets, monkeypatch):
    monkeypatch.setattr(DS, 'RAW_URL', 'http://127.0.0.1:9/{repo}/{commit}/{path}')   # any request would fail
    for split in ('train', 'test'):
        rows = DS.read_manifest(f'BSDS500/{split}')
        folder = shared_datasets / f'BSDS500/{split}'
        assert DS.fetch_files(rows, shared_datasets, progress=False) == [folder / r['file'] for r in rows]
        assert DS.get_dataset(f'BSDS500_{split}', shared_datasets, progress=False) == folder
    sets = D.resolve_images('SunHays80,BSDS500', root=shared_datasets)
    counts = {n: len(D.list_images(s.images)) for n, s in sets.items()}
    assert counts == {'SunHays80': 80, 'BSDS500_train': 200, 'BSDS500_test': 200}
    assert all(s.lr is None for s in sets.values())
    img = D.read_image(shared_datasets / 'BSDS500/train' / DS.read_manifest('BSDS500/train')[0]['file'])
    assert img.shape in ((321, 481, 3), (481, 321, 3)) and img.dtype == np.uint8


def _pixel_hash(path) -> str:
    "SHA-256 of the decoded RGB pixels and their shape: equal for the same photograph in PNG or lossless re-encodings."
    a = D.read_image(path)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()


def _thumbnail(path, f: int = 8) -> np.ndarray:
    "The f x f box means of the image cut to multiples of f, float: near-equal for two decodings of one JPEG."
    a = D.read_image(path).astype(np.float64)
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    return a[:h, :w].reshape(h // f, f, w // f, f, 3).mean((1, 3))


def test_no_training_photograph_is_a_test_or_validation_photograph(shared_datasets, tmp_path):
    train = [p for d in ('SunHays80/HR', 'BSDS500/train', 'BSDS500/test') for p in D.list_images(shared_datasets / d)]
    held_out = [p for d in ('benchmark/Set5/HR', 'benchmark/Set14/HR', 'CBSD68/HR')
                for p in D.list_images(shared_datasets / d)]
    assert (len(train), len(held_out)) == (480, 87)
    h_train, h_test = {_pixel_hash(p): p for p in train}, {_pixel_hash(p): p for p in held_out}
    assert len(h_train) == 480, 'two training files hold the same pixels'
    assert not set(h_train) & set(h_test), [(h_train[k].name, h_test[k].name) for k in set(h_train) & set(h_test)]
    # another decoder (or a JPEG re-encoding) changes pixels by a grey level or two: compare 8x8 box means too
    thumbs = [(q, _thumbnail(q)) for q in held_out]
    near = lambda t: [q.name for q, u in thumbs if u.shape == t.shape and np.abs(t - u).mean() < 2.0]
    Image.fromarray(D.read_image(held_out[-1])).save(tmp_path / 'copy.jpg', quality=75)
    assert near(_thumbnail(tmp_path / 'copy.jpg')) == [held_out[-1].name]        # the check finds a re-encoded copy
    for p in train:
        assert not near(_thumbnail(p)), f'{p.name} looks like the held-out photograph(s) {near(_thumbnail(p))}'


def test_shared_datasets_match_the_manifest(shared_datasets):
    for r in DS.read_manifest():
        f = shared_datasets / r['folder'] / r['file']
        data = f.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(r['bytes']), r['sha256']), f


def test_cpu_profile_finds_the_shared_photographs_without_downloading(shared_datasets, monkeypatch):
    from ranksrgan_nb.config import get_profile
    monkeypatch.setenv('RANKSRGAN_NB_DATA', str(shared_datasets))
    monkeypatch.setattr(DS, 'RAW_URL', 'http://127.0.0.1:9/{repo}/{commit}/{path}')   # any request would fail
    cfg = get_profile('cpu')
    sets = {n: s.images for spec in (cfg.train_data, cfg.test_data, cfg.val_data)
            for n, s in D.resolve_images(spec, root=cfg.data_root).items()}
    assert sets == {'SunHays80': shared_datasets / 'SunHays80/HR', 'Set14': shared_datasets / 'benchmark/Set14/HR',
                    'CBSD68': shared_datasets / 'CBSD68/HR', 'Set5': shared_datasets / 'benchmark/Set5/HR'}
    assert [len(D.list_images(p)) for p in sets.values()] == [80, 14, 68, 5]


# ---------------------------------------------------------------- files on disk verified on use (issue 21)
def _flip_a_bit(path: Path, at: int = 200) -> None:
    "One bit of the file changed, its size kept: a JPEG or PNG that may still decode."
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_dataset_file_gone_bad_on_disk_is_downloaded_again(tiny_per_file, tmp_path):
    served, imgs = tiny_per_file
    root = tmp_path / 'data'
    hr = DS.get_dataset('Tiny', root, progress=False)
    _flip_a_bit(hr / 'c.jpg')                                            # same size, one bit
    (hr / 'b.png').write_bytes(imgs['b.png'][:-40])                      # cut short
    with pytest.warns(UserWarning) as w:
        assert DS.get_dataset('Tiny', root, progress=False) == hr
    msgs = ' | '.join(str(x.message) for x in w)
    for name in ('b.png', 'c.jpg'):
        assert f'{hr / name} did not match its SHA-256' in msgs and 'downloaded it again' in msgs
        assert (hr / name).read_bytes() == imgs[name]                    # the good bytes are back
    assert sorted(p.name for p in hr.iterdir() if not p.name.startswith('.')) == ['a.png', 'b.png', 'c.jpg']


def test_dataset_file_gone_bad_without_a_source_names_file_hashes_and_remedy(tiny_per_file, tmp_path):
    served, imgs = tiny_per_file
    root = tmp_path / 'data'
    hr = DS.get_dataset('Tiny', root, progress=False)
    _flip_a_bit(hr / 'a.png')
    bad = hashlib.sha256((hr / 'a.png').read_bytes()).hexdigest()
    good = hashlib.sha256(imgs['a.png']).hexdigest()
    for f in served.iterdir(): f.unlink()                                 # no source to download it from
    for call in (lambda: DS.get_dataset('Tiny', root, progress=False),
                 lambda: DS.get_dataset('Tiny', root, download_missing=False)):
        with pytest.raises(DS.ChecksumError) as e:
            call()
        msg = str(e.value)
        assert f'{hr / "a.png"} does not match its SHA-256' in msg and f'expected {good}, got {bad}' in msg
        assert 'Delete it' in msg and 'good copy' in msg
    with pytest.raises(DS.ChecksumError):                                  # also through a profile's data setting
        D.test_sets('Tiny', 4, root)
    assert hashlib.sha256((hr / 'a.png').read_bytes()).hexdigest() == bad  # left as it was


def test_dataset_verification_is_cached_by_size_and_mtime(tiny_per_file, tmp_path, monkeypatch):
    served, imgs = tiny_per_file
    root = tmp_path / 'data'
    hr = DS.get_dataset('Tiny', root, progress=False)
    hashed = []
    real = DS._sha256
    monkeypatch.setattr(DS, '_sha256', lambda p: hashed.append(p.name) or real(p))
    DS.get_dataset('Tiny', root, progress=False)
    assert hashed == []                                                   # stamped good: not read again
    st = (hr / 'b.png').stat()
    os.utime(hr / 'b.png', ns=(st.st_atime_ns, st.st_mtime_ns + 1000))   # a rewrite changes the time
    DS.get_dataset('Tiny', root, progress=False)
    assert hashed == ['b.png']
    DS.get_dataset('Tiny', root, progress=False)
    assert hashed == ['b.png']                                            # and it is stamped again
    (hr / DS.STAMP).write_text('{not json')                                # a damaged stamp: everything checked again
    DS.get_dataset('Tiny', root, progress=False)
    assert sorted(hashed[1:]) == ['a.png', 'b.png', 'c.jpg']
    (hr / DS.STAMP).unlink()
    hr.chmod(0o555)                                                       # a read-only copy: no stamp written there
    try:
        DS.get_dataset('Tiny', root, progress=False)
        assert not (hr / DS.STAMP).exists()
    finally:
        hr.chmod(0o755)
