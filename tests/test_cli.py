"""The `ranksrgan` command line and the tiled `super_resolve` it runs on."""
import csv
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ranksrgan_nb import cli
from ranksrgan_nb.data import read_image, write_image
from ranksrgan_nb.metrics import METRICS, Metric, delta_e, grid_score, niqe, psnr, ssim
from ranksrgan_nb.models import RRDBNet, SRResNet
from ranksrgan_nb.train import receptive_radius, super_resolve, tiled_forward, tiles
from ranksrgan_nb.data import img2tensor

FIXTURES = Path(__file__).resolve().parent / 'fixtures'


def rand_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def assemble(G, x, tile, overlap=None):
    out = None
    for s, (t, l, b, r), y in tiled_forward(G, x, tile, overlap):
        if out is None: out = torch.full((1, 3, x.shape[-2] * s, x.shape[-1] * s), float('nan'))
        out[..., t * s:b * s, l * s:r * s] = y
    return out


# --- tiles ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('h,w,tile,pad', [(37, 53, 16, 5), (16, 16, 16, 3), (5, 70, 8, 40), (1, 1, 4, 2),
                                          (33, 17, 32, 0)])
def test_tiles_cover_every_pixel_once_with_clipped_context(h, w, tile, pad):
    count = np.zeros((h, w), int)
    for (t, l, b, r), (ct, cl, cb, cr) in tiles(h, w, tile, pad):
        count[t:b, l:r] += 1
        assert b - t <= tile and r - l <= tile
        assert (ct, cl, cb, cr) == (max(t - pad, 0), max(l - pad, 0), min(b + pad, h), min(r + pad, w))
    assert (count == 1).all()


def test_receptive_radius_counts_half_kernels():
    assert receptive_radius(SRResNet(nf=8, nb=3, scale=4)) == 1 + 2 * 3 + 1 + 1 + 1 + 1 + 1
    assert receptive_radius(SRResNet(nf=8, nb=3, scale=2)) == 1 + 2 * 3 + 1 + 1 + 1 + 1
    assert receptive_radius(torch.nn.Conv2d(3, 3, 5, padding=4, dilation=2)) == 4


@pytest.mark.parametrize('model,h,w,tile', [
    (lambda: SRResNet(nf=16, nb=3, scale=4), 45, 61, 16),      # odd sizes, several tiles, ragged last tiles
    (lambda: SRResNet(nf=16, nb=3, scale=4), 45, 61, 7),       # a tile smaller than the margin
    (lambda: SRResNet(nf=8, nb=2, scale=3), 23, 30, 10),
    (lambda: RRDBNet(nf=8, nb=1, gc=4, scale=4), 29, 31, 12),
])
def test_tiled_equals_whole_image(model, h, w, tile):
    torch.manual_seed(0)
    G = model().eval()
    x = img2tensor(rand_image(h, w))[None]
    with torch.no_grad(): whole = G(x)
    tiled = assemble(G, x, tile)
    assert tiled.shape == whole.shape and not tiled.isnan().any()
    assert (tiled - whole).abs().max() <= 1e-5
    assert (assemble(G, x, tile, overlap=0) - whole).abs().max() > 1e-5     # without context the seams show


def test_super_resolve_tiled_uint8_and_mode_restored():
    torch.manual_seed(1)
    G = SRResNet(nf=16, nb=2).train()
    lr = rand_image(31, 47, seed=3)
    whole, tiled = super_resolve(G, lr), super_resolve(G, lr, tile=10)
    assert whole.dtype == tiled.dtype == np.uint8 and whole.shape == (124, 188, 3)
    assert np.abs(whole.astype(int) - tiled).max() <= 1 and (whole == tiled).mean() > 0.999
    assert G.training                                                          # back in the mode it was in
    assert np.array_equal(super_resolve(G, lr, tile=1000), whole)              # a tile larger than the image: one pass


# --- weights ----------------------------------------------------------------------------------------------------
@pytest.fixture
def shipped(tmp_path, monkeypatch):
    "A temporary shipped-weights folder holding srgan.pth: an fp16 state dict of a small SRResNet."
    torch.manual_seed(0)
    G = SRResNet(nf=16, nb=2)
    folder = tmp_path / 'weights'
    folder.mkdir()
    torch.save({k: v.half() for k, v in G.state_dict().items()}, folder / 'srgan.pth')
    monkeypatch.setattr(cli, 'WEIGHTS_DIR', folder)
    return G


def test_shipped_name_lookup_and_errors(shipped, tmp_path):
    assert cli.find_weights('srgan') == tmp_path / 'weights' / 'srgan.pth'
    with pytest.raises(FileNotFoundError) as e:
        cli.find_weights('ranksrgan')
    assert "the shipped generator 'ranksrgan' is not in this installation" in str(e.value)
    assert "available here: ['srgan']" in str(e.value)
    with pytest.raises(FileNotFoundError, match="'esrgan' is neither a file nor a shipped generator"):
        cli.find_weights('esrgan')
    with pytest.raises(FileNotFoundError, match='available here: none'):
        cli.find_weights('srgan', tmp_path / 'empty')


def test_the_package_folder_of_shipped_weights():
    import ranksrgan_nb
    assert cli.WEIGHTS_DIR == Path(ranksrgan_nb.__file__).parent / 'assets' / 'weights' / 'cpu'
    assert set(cli.SHIPPED) == {'srresnet', 'srgan', 'ranksrgan'}


def test_load_shipped_fp16_generator(shipped):
    G = cli.load_sr_model('srgan', device='cpu')
    assert isinstance(G, SRResNet) and not G.training and G.conv_first.weight.dtype == torch.float32
    assert len(G.recon_trunk) == 2 and G.conv_first.out_channels == 16
    for k, v in shipped.state_dict().items():
        assert torch.equal(G.state_dict()[k], v.half().float()), k


def layout_state_dict(name):
    "A state dict with the key names and shapes of a released checkpoint (tests/fixtures), random values."
    spec = json.loads((FIXTURES / 'official_state_dict_layouts.json').read_text())[name]
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g) if s else torch.tensor(0) for k, s in spec['keys']}, spec['params']


@pytest.mark.parametrize('name,arch', [('mmsr.SRResNet(nf=64,nb=16,upscale=4)', SRResNet),
                                       ('basicsr_old.SRResNet(nf=64,nb=16,norm=None,act=relu,upscale=4)', SRResNet),
                                       ('mmsr.RRDBNet(nf=64,nb=23,gc=32)', RRDBNet)])
def test_load_official_layouts(name, arch, tmp_path):
    sd, n_params = layout_state_dict(name)
    torch.save({'params': sd}, tmp_path / 'official.pth')                     # wrapped, as BasicSR saves them
    G = cli.load_sr_model(tmp_path / 'official.pth', device='cpu')
    assert type(G) is arch and sum(p.numel() for p in G.parameters()) == n_params
    first = next(k for k in sd if k.endswith('weight'))
    assert torch.equal(G.conv_first.weight, sd[first])                        # the values were loaded


def test_load_stage_result_and_its_errors(tmp_path):
    G = SRResNet(nf=8, nb=3, scale=2)
    torch.save({'weights': {'G': G.state_dict(), 'D': {}}, 'meta': {'scale': 2}, 'stage': 'srgan'},
               tmp_path / 'final.pth')
    loaded = cli.load_sr_model(tmp_path / 'final.pth', scale=2, device='cpu')
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in G.state_dict().items())
    with pytest.raises(ValueError, match='holds a x2 generator, but --scale 4 was asked for'):
        cli.load_sr_model(tmp_path / 'final.pth', device='cpu')
    torch.save({'weights': {'R': {}}, 'meta': {}, 'stage': 'ranker'}, tmp_path / 'ranker.pth')
    with pytest.raises(ValueError, match="stage 'ranker', which holds no generator"):
        cli.load_sr_model(tmp_path / 'ranker.pth', device='cpu')
    torch.save({'conv0_0.weight': torch.zeros(1)}, tmp_path / 'disc.pth')
    with pytest.raises(ValueError, match='not a generator state dict'):
        cli.load_sr_model(tmp_path / 'disc.pth', device='cpu')


# --- ranksrgan sr -----------------------------------------------------------------------------------------------
def test_sr_command_files_and_folders(shipped, tmp_path, capsys):
    write_image(tmp_path / 'in' / 'a.png', rand_image(20, 30, 1))
    write_image(tmp_path / 'in' / 'b.jpg', rand_image(9, 13, 2))
    write_image(tmp_path / 'c.bmp', rand_image(11, 7, 3))
    code = cli.main(['sr', str(tmp_path / 'in'), str(tmp_path / 'c.bmp'), '-o', str(tmp_path / 'out'),
                     '--weights', 'srgan', '--device', 'cpu', '--tile', '10'])
    assert code == 0 and f'wrote 3 image(s) to {tmp_path / "out"}' in capsys.readouterr().out
    G = cli.load_sr_model('srgan', device='cpu')
    for name, src in (('a', tmp_path / 'in' / 'a.png'), ('c', tmp_path / 'c.bmp')):
        sr = read_image(tmp_path / 'out' / f'{name}.png')
        assert np.abs(sr.astype(int) - super_resolve(G, read_image(src))).max() <= 1
    assert read_image(tmp_path / 'out' / 'b.png').shape == (36, 52, 3)


def test_sr_command_errors(shipped, tmp_path, capsys):
    write_image(tmp_path / 'a.png', rand_image(8, 8))
    assert cli.main(['sr', str(tmp_path / 'missing.png'), '-o', str(tmp_path / 'o'), '--weights', 'srgan']) == 1
    assert 'ranksrgan sr: error: input not found' in capsys.readouterr().err
    assert cli.main(['sr', str(tmp_path / 'a.png'), '-o', str(tmp_path), '--weights', 'srgan']) == 1
    assert 'overwritten by its own result' in capsys.readouterr().err
    assert cli.main(['sr', str(tmp_path / 'a.png'), '-o', str(tmp_path / 'o'), '--weights', 'ranksrgan']) == 1
    assert "available here: ['srgan']" in capsys.readouterr().err
    write_image(tmp_path / 'd' / 'a.jpg', rand_image(8, 8))
    assert cli.main(['sr', str(tmp_path / 'a.png'), str(tmp_path / 'd'), '-o', str(tmp_path / 'o'),
                     '--weights', 'srgan']) == 1
    assert "several inputs are named ['a']" in capsys.readouterr().err


# --- ranksrgan metrics ------------------------------------------------------------------------------------------
@pytest.fixture
def pairs(tmp_path):
    from ranksrgan_nb.data import sample_images
    hr = sample_images('test')['chelsea']
    rng = np.random.default_rng(0)
    imgs = {}
    for name, (h, w) in (('cat', (200, 216)), ('dog', (224, 200))):
        b = hr[:h, :w]
        a = np.clip(b.astype(int) + rng.integers(-8, 9, b.shape), 0, 255).astype(np.uint8)
        write_image(tmp_path / 'sr' / f'{name}.png', a)
        write_image(tmp_path / 'hr' / f'{name}.png', b)
        imgs[name] = (a, b)
    return imgs


def parse_markdown(out: str) -> dict:
    lines = [l for l in out.splitlines() if l.startswith('| ')]
    head = [h.split()[0] for h in lines[0].strip('| ').split(' | ')]
    return {cells[0]: dict(zip(head[1:], map(float, cells[1:])))
            for cells in (l.strip('| ').split(' | ') for l in lines[1:])}


def test_metrics_command_values_per_image_and_mean(pairs, tmp_path, capsys):
    assert cli.main(['metrics', '--sr', str(tmp_path / 'sr'), '--hr', str(tmp_path / 'hr'),
                     '--csv', str(tmp_path / 'm.csv')]) == 0
    out = capsys.readouterr().out
    assert '| image | psnr ↑ | ssim ↑ | delta_e ↓ | psnr_rgb ↑ | niqe ↓ | grid ↓ |' in out    # colour and grid (01) too
    table = parse_markdown(out)
    for name, (a, b) in pairs.items():
        assert table[name]['psnr'] == pytest.approx(psnr(a, b, crop_border=4, color='y'), abs=1e-4)
        assert table[name]['delta_e'] == pytest.approx(delta_e(a, b, crop_border=4), abs=1e-4)
        assert table[name]['psnr_rgb'] == pytest.approx(psnr(a, b, crop_border=4, color='rgb'), abs=1e-4)
        assert table[name]['ssim'] == pytest.approx(ssim(a, b, crop_border=4, color='y'), abs=1e-4)
        assert table[name]['niqe'] == pytest.approx(niqe(a, crop_border=4, color='y'), abs=1e-4)
        assert table[name]['grid'] == pytest.approx(grid_score(a, crop_border=4), abs=1e-4)
    mean = table['mean (2 images)']
    assert mean['psnr'] == pytest.approx((table['cat']['psnr'] + table['dog']['psnr']) / 2, abs=1e-4)
    rows = list(csv.DictReader(open(tmp_path / 'm.csv')))
    assert [r['image'] for r in rows] == ['cat', 'dog', 'mean (2 images)']
    assert list(rows[0]) == ['image', 'psnr', 'ssim', 'delta_e', 'psnr_rgb', 'niqe', 'grid']
    assert float(rows[0]['psnr']) == pytest.approx(psnr(*pairs['cat'], crop_border=4, color='y'), abs=1e-9)


def test_metrics_crop_and_no_reference(pairs, tmp_path, capsys):
    assert cli.main(['metrics', '--sr', str(tmp_path / 'sr'), '--hr', str(tmp_path / 'hr'), '--crop', '0',
                     '--metric', 'psnr']) == 0
    table = parse_markdown(capsys.readouterr().out)
    assert table['cat'] == {'psnr': pytest.approx(psnr(*pairs['cat'], crop_border=0, color='y'), abs=1e-4)}
    assert cli.main(['metrics', '--sr', str(tmp_path / 'sr')]) == 0                        # no HR: no-reference only
    table = parse_markdown(capsys.readouterr().out)
    assert set(table['dog']) == {n for n, m in METRICS.items() if not m.full_reference} == {'niqe', 'grid'}


def test_metrics_registered_later_appear(pairs, tmp_path, capsys, monkeypatch):
    def mean_abs(a, b, crop_border=0):
        c = crop_border
        return float(np.abs(a[c:a.shape[0] - c, c:a.shape[1] - c].astype(float)
                            - b[c:b.shape[0] - c, c:b.shape[1] - c]).mean())
    monkeypatch.setitem(METRICS, 'mean_abs', Metric('mean_abs', mean_abs, False, True))
    assert cli.main(['metrics', '--sr', str(tmp_path / 'sr'), '--hr', str(tmp_path / 'hr')]) == 0
    table = parse_markdown(capsys.readouterr().out)
    assert table['cat']['mean_abs'] == pytest.approx(mean_abs(*pairs['cat'], crop_border=4), abs=1e-4)


def test_metrics_pairing_errors(pairs, tmp_path, capsys):
    sr, hr = str(tmp_path / 'sr'), str(tmp_path / 'hr')
    write_image(tmp_path / 'sr' / 'owl.png', rand_image(200, 200))
    assert cli.main(['metrics', '--sr', sr, '--hr', hr]) == 1
    assert "no HR image in" in (err := capsys.readouterr().err) and "for ['owl']" in err
    write_image(tmp_path / 'hr' / 'owl.png', rand_image(196, 200))
    assert cli.main(['metrics', '--sr', sr, '--hr', hr]) == 1
    assert 'owl.png is 200x200 but' in (err := capsys.readouterr().err) and 'is 200x196' in err
    (tmp_path / 'sr' / 'owl.png').unlink()
    assert cli.main(['metrics', '--sr', sr, '--hr', hr, '--metric', 'psnr']) == 0   # HR may hold more images (#23)
    assert 'have no SR image and are not evaluated: owl' in capsys.readouterr().err
    assert cli.main(['metrics', '--sr', sr, '--metric', 'ssim']) == 1
    assert "['ssim'] need HR images: give --hr" in capsys.readouterr().err
    assert cli.main(['metrics', '--sr', sr, '--metric', 'lpips']) == 1
    assert "unknown metric(s) ['lpips']" in capsys.readouterr().err
    assert cli.main(['metrics', '--sr', str(tmp_path / 'nowhere')]) == 1
    assert 'input not found' in capsys.readouterr().err


def test_metrics_small_image_is_nan_with_a_note(tmp_path, capsys):
    write_image(tmp_path / 'sr' / 'tiny.png', rand_image(64, 64))
    assert cli.main(['metrics', '--sr', str(tmp_path / 'sr')]) == 0
    out, err = capsys.readouterr()
    assert '| tiny | nan |' in out and 'note: tiny: niqe is NaN: NIQE needs at least 192x192' in err


# --- the command itself -----------------------------------------------------------------------------------------
@pytest.mark.parametrize('args,words', [
    ([], ['sr', 'metrics', 'run', 'reproduce']),
    (['sr'], ['--weights', '--tile', '--scale', '--device', 'OUT_DIR', '--suffix', '--ext', '--outscale', '--fp16',
              '--half']),
    (['metrics'], ['--sr', '--hr', '--crop', '--csv', '--json', '--suffix']),
    (['run'], ['NOTEBOOK', 'OUTPUT', '--parameter', 'NAME VALUE']),
    (['reproduce'], ['--profile', '--only', '--rerun', '--retrain', '--out'])])
def test_help_of_each_command(args, words, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(args + ['--help'])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(w in out for w in words), out


def test_reproduce_is_the_reproduce_command(monkeypatch):
    seen = {}
    def fake(argv, prog):
        seen.update(argv=argv, prog=prog)
        return 7
    monkeypatch.setattr('ranksrgan_nb.reproduce.main', fake)
    assert cli.main(['reproduce', '--profile', 'cpu', '--only', '05', '-p', 'w_R', '0.1']) == 7
    assert seen == {'argv': ['--profile', 'cpu', '--only', '05', '-p', 'w_R', '0.1'], 'prog': 'ranksrgan reproduce'}


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, '-m', 'ranksrgan_nb.cli', 'metrics', '--help'], capture_output=True, text=True)
    assert r.returncode == 0 and 'usage: ranksrgan metrics' in r.stdout


def test_readme_library_example_runs(tmp_path, monkeypatch):
    "The README's 'Use it as a library' code, as written, on a photo and a stand-in for the released checkpoint."
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
    section = readme.split('## Use it as a library', 1)[1]
    code = section.split('```python\n', 1)[1].split('```', 1)[0]
    from ranksrgan_nb.data import sample_images
    monkeypatch.chdir(tmp_path)
    write_image('photo.png', sample_images('test')['chelsea'][:203, :210])
    torch.manual_seed(0)
    torch.save(SRResNet().state_dict(), 'RankSRGAN_NIQE.pth')              # the official file is a flat mmsr state dict
    exec(compile(code, 'README.md', 'exec'), {})
    assert read_image('photo_x4.png').shape == (200, 208, 3)


# --- round two (issue 21): nothing overwritten or half-written without a word, bad weights and settings refused ---
@pytest.fixture
def tiny(tmp_path):
    "An input image a.png and the weights tiny.pth of a small SRResNet (receptive radius 1 + 2 + 5 = 8)."
    torch.manual_seed(0)
    torch.save(SRResNet(nf=8, nb=1).state_dict(), tmp_path / 'tiny.pth')
    write_image(tmp_path / 'in' / 'a.png', rand_image(12, 10, 5))
    return tmp_path / 'in' / 'a.png', tmp_path / 'tiny.pth'


def sr(img, weights, out, *extra):
    return cli.main(['sr', str(img), '-o', str(out), '--weights', str(weights), '--device', 'cpu', *extra])


def test_sr_never_overwrites_a_result_unless_asked(tiny, tmp_path, capsys):
    img, w = tiny
    assert sr(img, w, tmp_path / 'out') == 0
    mine = rand_image(48, 40, 9)
    write_image(tmp_path / 'out' / 'a.png', mine)                              # the user's own file of that name
    capsys.readouterr()
    assert sr(img, w, tmp_path / 'out') == 1                                   # the default: refused, before any work
    err = capsys.readouterr().err
    assert f'1 result(s) already in {tmp_path / "out"} (a.png); nothing was written' in err and '--overwrite' in err
    assert np.array_equal(read_image(tmp_path / 'out' / 'a.png'), mine)
    assert sr(img, w, tmp_path / 'out', '--skip-existing') == 0
    assert 'kept 1 already there' in capsys.readouterr().out
    assert np.array_equal(read_image(tmp_path / 'out' / 'a.png'), mine)
    assert sr(img, w, tmp_path / 'out', '--overwrite') == 0
    G = cli.load_sr_model(w, device='cpu')
    assert np.array_equal(read_image(tmp_path / 'out' / 'a.png'), super_resolve(G, read_image(img)))
    with pytest.raises(SystemExit):
        sr(img, w, tmp_path / 'out', '--overwrite', '--skip-existing')       # one or the other
    assert '--overwrite' in capsys.readouterr().err


def test_two_runs_writing_one_result_do_not_both_succeed(tiny, tmp_path, capsys, monkeypatch):
    img, w = tiny
    other = rand_image(48, 40, 7)
    real = cli.read_layers
    def racing(path):                                                          # another run writes out/a.png meanwhile,
        write_image(tmp_path / 'out' / 'a.png', other)                         # after this one found the name free
        return real(path)
    monkeypatch.setattr(cli, 'read_layers', racing)
    assert sr(img, w, tmp_path / 'out') == 1
    err = capsys.readouterr().err
    assert f'{tmp_path / "out" / "a.png"} already exists' in err and 'left as it is' in err
    assert np.array_equal(read_image(tmp_path / 'out' / 'a.png'), other)       # the other run's result is intact
    assert [p.name for p in (tmp_path / 'out').iterdir()] == ['a.png']          # and no temporary file is left


def test_sr_removes_the_temporary_file_of_a_run_killed_while_writing(tiny, tmp_path):
    img, w = tiny
    p = subprocess.Popen([sys.executable, '-c', f'''
import sys, time
from PIL import Image
real = Image.Image.save
def stalls(self, fp, *a, **k):
    real(self, fp, *a, **k)
    print('writing', flush=True)
    time.sleep(60)
Image.Image.save = stalls
from ranksrgan_nb import cli
cli.main(['sr', {str(img)!r}, '-o', {str(tmp_path / 'out')!r}, '--weights', {str(w)!r}, '--device', 'cpu'])'''],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert p.stdout.readline().strip() == 'writing'
        p.kill()                                                               # kill -9 during the PNG write
        p.wait(10)
    finally:
        p.kill()
        p.stdout.close()
    assert [f.name for f in (tmp_path / 'out').iterdir()] == [f'.a.png.tmp{p.pid}']
    live = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        (tmp_path / 'out' / f'.b.png.tmp{live.pid}').write_bytes(b'another run, still writing')
        assert sr(img, w, tmp_path / 'out') == 0
        assert sorted(f.name for f in (tmp_path / 'out').iterdir()) == [f'.b.png.tmp{live.pid}', 'a.png']   # kept
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize('tile,ok', [('-5', False), ('1', False), ('7', False), ('0', True), ('8', True),
                                     ('256', True)])
def test_tile_is_zero_or_at_least_the_margin(tiny, tmp_path, capsys, tile, ok):
    img, w = tiny
    assert sr(img, w, tmp_path / 'out', '--tile', tile) == (0 if ok else 1)
    if not ok:
        err = capsys.readouterr().err
        assert f'ranksrgan sr: error: --tile {tile}: use 0 (the whole image at once) or a tile of at least 8 LR' in err
        assert not (tmp_path / 'out' / 'a.png').exists()
    G = cli.load_sr_model(w, device='cpu')
    with pytest.raises(ValueError, match='tile 1: use 0'):
        super_resolve(G, rand_image(64, 64), tile=1)                            # not 4,096 tiles


@pytest.mark.parametrize('kind', ['nan weight', 'inf bias', 'overflow'])
def test_sr_refuses_weights_whose_output_is_not_finite_naming_them(tmp_path, capsys, kind):
    torch.manual_seed(0)
    sd = SRResNet(nf=8, nb=1).state_dict()
    if kind == 'nan weight': sd['conv_last.weight'][0, 0, 0, 0] = float('nan')
    elif kind == 'inf bias': sd['conv_last.bias'][1] = float('inf')
    else: sd = {k: v * 1e12 for k, v in sd.items()}                           # finite weights, but the output overflows
    torch.save(sd, tmp_path / 'bad.pth')
    write_image(tmp_path / 'in' / 'a.png', rand_image(12, 10))
    assert sr(tmp_path / 'in', tmp_path / 'bad.pth', tmp_path / 'out') == 1
    err = capsys.readouterr().err
    assert f'ranksrgan sr: error: {tmp_path / "bad.pth"}: ' in err
    assert 'NaN or infinite' in err and 'use other weights' in err
    assert not (tmp_path / 'out' / 'a.png').exists()                           # no black or white image


def test_unavailable_device_is_a_one_line_error(tiny, tmp_path, capsys, monkeypatch):
    img, w = tiny
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)             # a machine without CUDA
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 0)
    assert cli.main(['sr', str(img), '-o', str(tmp_path / 'out'), '--weights', str(w), '--device', 'cuda']) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1
    assert err.startswith("ranksrgan sr: error: device='cuda' is not available on this machine")
    assert "Use 'auto'" in err and 'torch.cuda.is_available()' in err          # what to use instead, how to check


def test_metrics_negative_crop_is_an_error(pairs, tmp_path, capsys):
    assert cli.main(['metrics', '--sr', str(tmp_path / 'sr'), '--hr', str(tmp_path / 'hr'), '--crop', '-1']) == 1
    out, err = capsys.readouterr()
    assert 'ranksrgan metrics: error: --crop -1: the pixels shaved from each border must be 0 or more' in err
    assert 'nan' not in out                                                    # no table of NaN


# --- round three (issue 23): a batch tool on par with Real-ESRGAN's script and BasicSR's metric script -----------
def png48(path, a):
    "Write uint16 HxWx3 `a` as a 16-bit-per-sample RGB PNG (Pillow cannot write one; it reads it as 8-bit)."
    h, w, _ = a.shape
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
    raw = b''.join(b'\0' + a[i].astype('>u2').tobytes() for i in range(h))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0))
                     + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def test_sr_batch_goes_on_past_unreadable_files(shipped, tmp_path, capsys):
    write_image(tmp_path / 'in' / 'a.png', rand_image(12, 10, 1))
    (tmp_path / 'in' / 'b.png').write_bytes(b'not an image at all')                # unreadable, between two good ones
    (tmp_path / 'in' / 'c.jpg').write_bytes((FIXTURES.parent / 'test_cli.py').read_bytes()[:50])
    write_image(tmp_path / 'in' / 'd.png', rand_image(9, 11, 2))
    code = cli.main(['sr', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'), '--weights', 'srgan', '--device', 'cpu'])
    out, err = capsys.readouterr()
    assert code == 1 and 'wrote 2 image(s)' in out
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['a.png', 'd.png']
    assert 'ranksrgan sr: 2 of 4 image(s) failed, the others were written:' in err
    for name in ('b.png', 'c.jpg'): assert f'cannot read image {tmp_path / "in" / name}' in err


def test_sr_out_of_memory_on_one_image_is_listed_and_the_rest_done(shipped, tmp_path, capsys, monkeypatch):
    from ranksrgan_nb import models
    real = models.super_resolve
    def low_memory(G, lr, *a, **k):
        if lr.shape[0] > 20: raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB')
        return real(G, lr, *a, **k)
    monkeypatch.setattr(models, 'super_resolve', low_memory)
    write_image(tmp_path / 'in' / 'big.png', rand_image(24, 10, 1))
    write_image(tmp_path / 'in' / 'small.png', rand_image(12, 10, 2))
    assert cli.main(['sr', str(tmp_path / 'in'), '-o', str(tmp_path / 'out'), '--weights', 'srgan',
                     '--device', 'cpu']) == 1
    assert 'out of memory' in (err := capsys.readouterr().err) and 'a smaller --tile needs less memory' in err
    assert [p.name for p in (tmp_path / 'out').iterdir()] == ['small.png']


def test_sr_progress_counts_tiles_over_the_batch(shipped, tmp_path, capsys, monkeypatch):
    from tqdm.auto import tqdm
    real = tqdm.update
    monkeypatch.setattr(tqdm, 'update', lambda self, n=1: real(self, n) or True)   # as when it redraws (a slow tile)
    G = cli.load_sr_model('srgan', device='cpu')                               # receptive radius 10
    write_image(tmp_path / 'a.png', rand_image(20, 30, 1))                      # 2 x 3 tiles of 10
    write_image(tmp_path / 'b.png', rand_image(9, 13, 2))                       # 1 x 2
    cli.sr_files(G, [tmp_path / 'a.png', tmp_path / 'b.png'], tmp_path / 'out', 'cpu', tile=10)
    for name in ('a', 'b'):                                                     # the counting leaves the pixels alone
        assert np.array_equal(read_image(tmp_path / 'out' / f'{name}.png'),
                              super_resolve(G, read_image(tmp_path / f'{name}.png')))
    err = capsys.readouterr().err
    assert '8/8 [' in err and 'tile' in err and 'image 2/2: b.png' in err, err
    assert not G._forward_hooks                                                 # the counting hook is gone


def test_sr_keeps_alpha_and_gray_and_says_when_depth_is_reduced(shipped, tmp_path, capsys):
    from PIL import Image
    from ranksrgan_nb.data import bicubic_upsample
    G = cli.load_sr_model('srgan', device='cpu')
    rgb, alpha, gray = rand_image(12, 10, 1), rand_image(12, 10, 2)[..., 0], rand_image(12, 10, 3)[..., 0]
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / 'rgba.png')
    Image.fromarray(gray).save(tmp_path / 'gray.png')
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / 'gray16.png')
    png48(tmp_path / 'rgb48.png', rgb.astype(np.uint16) * 257)
    inputs = [str(tmp_path / n) for n in ('rgba.png', 'gray.png', 'gray16.png', 'rgb48.png')]
    assert cli.main(['sr', *inputs, '-o', str(tmp_path / 'out'), '--weights', 'srgan', '--device', 'cpu']) == 0
    with Image.open(tmp_path / 'out' / 'rgba.png') as im: out = np.array(im)
    assert out.shape == (48, 40, 4)
    assert np.array_equal(out[..., :3], super_resolve(G, rgb))
    assert np.array_equal(out[..., 3], bicubic_upsample(alpha, 4))                # alpha: bicubic x4
    with Image.open(tmp_path / 'out' / 'gray.png') as im: mode, out = im.mode, np.array(im)
    assert mode == 'L' and np.array_equal(out, super_resolve(G, np.dstack([gray] * 3)).mean(2).round())
    err = capsys.readouterr().err
    assert 'gray16.png has 16-bit samples; gray16.png has 8' in err and 'rgb48.png has 16-bit samples' in err
    assert 'rgba.png has' not in err and 'gray.png has' not in err
    with Image.open(tmp_path / 'out' / 'rgb48.png') as im: assert im.mode == 'RGB'
    assert cli.main(['sr', str(tmp_path / 'rgba.png'), '-o', str(tmp_path / 'j'), '--weights', 'srgan',
                     '--device', 'cpu', '--ext', 'jpg']) == 0
    assert 'rgba.jpg is written without the alpha channel of rgba.png (.jpg keeps none' in capsys.readouterr().err
    assert read_image(tmp_path / 'j' / 'rgba.jpg').shape == (48, 40, 3)


def test_sr_suffix_ext_and_outscale(shipped, tmp_path, capsys):
    from ranksrgan_nb.data import imresize
    G = cli.load_sr_model('srgan', device='cpu')
    lr = rand_image(12, 10, 4)
    write_image(tmp_path / 'in' / 'a.bmp', lr)
    args = ['sr', str(tmp_path / 'in'), '--weights', 'srgan', '--device', 'cpu']
    assert cli.main([*args, '-o', str(tmp_path / 'o1'), '--suffix', '_x4', '--ext', 'webp']) == 0
    assert np.array_equal(read_image(tmp_path / 'o1' / 'a_x4.webp'), super_resolve(G, lr))     # lossless WebP
    assert cli.main([*args, '-o', str(tmp_path / 'o2'), '--ext', 'auto', '--outscale', '2']) == 0
    half = read_image(tmp_path / 'o2' / 'a.bmp')
    ref = imresize(super_resolve(G, lr).astype(np.float64) / 255, 0.5) * 255  # MATLAB bicubic, antialiased
    assert half.shape == (24, 20, 3) and np.abs(half - ref).max() <= 0.51
    assert cli.main([*args, '-o', str(tmp_path / 'o3'), '--outscale', '3.5']) == 0
    assert read_image(tmp_path / 'o3' / 'a.png').shape == (42, 35, 3)
    capsys.readouterr()
    assert cli.main([*args, '-o', str(tmp_path / 'o4'), '--outscale', '0']) == 1
    assert '--outscale 0.0: must be > 0' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*args, '-o', str(tmp_path / 'o5'), '--ext', 'gif'])
    assert not (tmp_path / 'o4').exists() and not (tmp_path / 'o5').exists()


def test_fp16_is_refused_off_cuda_before_any_work(tiny, tmp_path, capsys):
    img, w = tiny
    for flag in ('--fp16', '--half'):
        assert cli.main(['sr', str(img), '-o', str(tmp_path / 'out'), '--weights', 'nowhere.pth', '--device', 'cpu',
                         flag]) == 1
        err = capsys.readouterr().err
        assert err.startswith('ranksrgan sr: error: --fp16 runs on CUDA only, and this run is on cpu: drop --fp16')
    assert not (tmp_path / 'out').exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fp16_on_cuda_matches_fp32():
    torch.manual_seed(0)
    G = SRResNet(nf=16, nb=2).cuda().eval()
    lr = rand_image(40, 50, 1)
    full = super_resolve(G, lr, 'cuda', tile=16)
    with cli._half(torch.device('cuda'), True): fast = super_resolve(G, lr, 'cuda', tile=16)
    assert np.abs(fast.astype(int) - full).max() <= 2


def readme_set14():
    "{method: (PSNR-Y, NIQE)} on Set14 from the shipped weights' README, read here with a regex of its own."
    text = (cli.WEIGHTS_DIR / 'README.md').read_text()
    head = next(l for l in text.splitlines() if l.startswith('| Method'))
    cols = [c.strip() for c in head.strip('|').split('|')]
    ip, iq = cols.index('Set14 PSNR-Y ↑'), cols.index('Set14 NIQE ↓')
    rows = [[c.strip().strip('*') for c in l.strip('|').split('|')] for l in text.splitlines()
            if re.match(r'\| (SRResNet|SRGAN|RankSRGAN) \|', l)]
    return {r[0].lower(): (float(r[ip]), float(r[iq])) for r in rows}


def test_default_weights_serve_best_and_help_gives_the_trade_off(capsys):
    res = readme_set14()
    assert cli.DEFAULT_WEIGHTS == 'srgan' == min(res, key=lambda n: res[n][1])   # the best NIQE
    assert not [n for n in res if res[n][0] >= res['srgan'][0] and res[n][1] < res['srgan'][1]]   # none dominates it
    with pytest.raises(SystemExit):
        cli.main(['sr', '--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    for n, (p, q) in res.items():
        assert f'NIQE {q:.2f}, PSNR-Y {p:.2f} dB' in help_text, (n, help_text)
    assert 'srgan (the default)' in help_text and 'the best NIQE' in help_text and 'the best PSNR-Y' in help_text
    assert 'ranksrgan: GAN + the Ranker' in help_text
    assert cli.parser().parse_args(['sr', 'x.png', '-o', 'o']).weights == 'srgan'


def test_help_imports_neither_torch_nor_numpy():
    probe = ("import sys\nfrom ranksrgan_nb.cli import main\n"
             "for c in ('--help', 'sr --help', 'metrics --help', 'run --help'):\n"
             "    try: main(c.split())\n    except SystemExit: pass\n"
             "print(sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules))")
    r = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines()[-1] == '[]', r.stdout[-300:]


def test_metrics_subset_of_hr_with_suffix_and_json(pairs, tmp_path, capsys):
    write_image(tmp_path / 'hr' / 'owl.png', rand_image(200, 200))              # HR only: not evaluated
    for name in pairs:
        (tmp_path / 'sr' / f'{name}.png').rename(tmp_path / 'sr' / f'{name}_out.png')   # as other tools name them
    sr, hr = str(tmp_path / 'sr'), str(tmp_path / 'hr')
    assert cli.main(['metrics', '--sr', sr, '--hr', hr]) == 1
    assert "no HR image in" in (err := capsys.readouterr().err) and 'pass --suffix _out' in err
    assert cli.main(['metrics', '--sr', sr, '--hr', hr, '--suffix', '_out', '--metric', 'psnr', '--metric', 'niqe',
                     '--json', str(tmp_path / 'm.json'), '--csv', str(tmp_path / 'm.csv')]) == 0
    out, err = capsys.readouterr()
    assert 'note: 2 SR image(s) paired with HR images; 1 HR image(s) have no SR image and are not evaluated: owl' in err
    table, js = parse_markdown(out), json.loads((tmp_path / 'm.json').read_text())
    assert set(js['images']) == {'cat', 'dog'} and js['metrics'] == ['psnr', 'niqe'] and js['suffix'] == '_out'
    for name, (a, b) in pairs.items():
        assert js['images'][name]['psnr'] == pytest.approx(psnr(a, b, crop_border=4, color='y'), abs=1e-9)
        assert table[name]['psnr'] == pytest.approx(js['images'][name]['psnr'], abs=1e-4)
    rows = list(csv.DictReader(open(tmp_path / 'm.csv')))
    assert [r['image'] for r in rows] == ['cat', 'dog', 'mean (2 images)']
    assert js['mean']['psnr'] == pytest.approx(float(rows[-1]['psnr']), abs=1e-9)
    write_image(tmp_path / 'sr' / 'x.png', rand_image(200, 200))
    assert cli.main(['metrics', '--sr', sr, '--hr', hr, '--suffix', '_out']) == 1
    assert "--suffix '_out': the SR image(s) ['x.png'] do not end with it" in capsys.readouterr().err


def test_metrics_json_writes_nan_as_null(tmp_path):
    write_image(tmp_path / 'sr' / 'tiny.png', rand_image(64, 64))
    assert cli.main(['metrics', '--sr', str(tmp_path / 'sr'), '--json', str(tmp_path / 'm.json')]) == 0
    js = json.loads((tmp_path / 'm.json').read_text())                         # strict JSON: no NaN literal
    assert js['images']['tiny']['niqe'] is None and js['mean']['niqe'] is None and js['hr'] is None


def tiny_notebook(path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('alpha = 1  # the weight\nname = "x"'), nbformat.v4.new_code_cell('alpha')]
    nb.cells[0].metadata['tags'] = ['parameters']
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    nbformat.write(nb, path)
    return path


def test_run_refuses_an_unknown_parameter_and_passes_known_ones(tmp_path, capsys, monkeypatch):
    nb = tiny_notebook(tmp_path / 'nb.ipynb')
    seen = {}
    monkeypatch.setattr('ranksrgan_nb.reproduce.run_notebook',
                        lambda nb, out, params, kernel, cwd: seen.update(nb=nb, out=out, params=params, cwd=cwd) or 1.0)
    assert cli.main(['run', str(nb), str(tmp_path / 'o.ipynb'), '-p', 'alpah', '2']) == 1     # a typo
    err = capsys.readouterr().err
    assert "ranksrgan run: error: no notebook of this run declares the parameter(s) ['alpah']" in err
    assert 'nb.ipynb: alpha, name' in err and not seen
    assert cli.main(['run', str(nb), str(tmp_path / 'o.ipynb'), '-p', 'alpha', '0.5', '-p', 'name', 'True']) == 0
    assert seen == {'nb': nb, 'out': tmp_path / 'o.ipynb', 'params': {'alpha': 0.5, 'name': True}, 'cwd': Path.cwd()}
    assert cli.main(['run', '05', str(tmp_path / 'o.ipynb'), '-p', 'w_R', '0.05']) == 0      # a pipeline notebook
    assert seen['nb'].name == '05_train_gan.ipynb' and seen['params'] == {'w_R': 0.05}
    assert cli.main(['run', str(nb), str(nb)]) == 1
    assert 'is the notebook itself' in capsys.readouterr().err


def test_run_executes_the_notebook_as_papermill(tmp_path):
    nb = tiny_notebook(tmp_path / 'nb.ipynb')
    assert cli.main(['run', str(nb), str(tmp_path / 'o.ipynb'), '-p', 'alpha', '41']) == 0
    cells = json.loads((tmp_path / 'o.ipynb').read_text())['cells']
    assert 'alpha = 41' in ''.join(cells[1]['source'])                       # papermill's injected-parameters cell
    assert ''.join(cells[-1]['outputs'][0]['data']['text/plain']) == '41'
