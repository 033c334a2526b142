"""Fault injection: kills, damaged files, two writers, pickled code, bad pixels and settings, full disks, large images.

Each test breaks something on purpose and checks that the result is right, or that the error names the file or
setting, the value and what to do, and that nothing already written was lost.
"""
import csv
import errno
import re
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from ranksrgan_nb import data as D
from ranksrgan_nb import datasets as DS
from ranksrgan_nb import fileio as FIO
from ranksrgan_nb import metrics as M
from ranksrgan_nb import models as MO
from ranksrgan_nb import train as T
from ranksrgan_nb.config import get_profile

warnings.filterwarnings('ignore', category=UserWarning, module='ranksrgan_nb.train', message='VGG19 is random')
warnings.filterwarnings('ignore', category=UserWarning, module='ranksrgan_nb.models')
RNG = np.random.default_rng(14)


# ------------------------------------------------------------------------------------------ a toy stage
def _toy_state(meta=None):
    T.seed_everything(0)                                                     # Python, NumPy and torch
    m = nn.Linear(3, 1)
    o = torch.optim.Adam(m.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.MultiStepLR(o, [5], 0.5)
    return T.TrainState({'m': m}, {'m': o}, {'m': sched}, meta=meta or {'toy': 1})


def _toy_fit(folder, n=10, hooks=(), step_sleep=0.0, resume=True):
    "A deterministic toy stage: the data of iteration t depends on t only, the step draws from the global RNGs."
    st = _toy_state()
    def data(a, b):
        return (torch.linspace(-1, 1, 6)[None, :3] * t for t in range(a, b))
    def step(x):
        time.sleep(step_sleep)
        st.optims['m'].zero_grad()
        loss = (st.models['m'](x) - torch.rand(1) - float(np.random.rand())).pow(2).mean()   # RNG state matters
        loss.backward()
        st.optims['m'].step()
        return {'l': loss.item()}
    cbs = T.default_callbacks(ckpt_every=2, log_every=1, keep=2, resume=resume, user=[T.HookCB(h) for h in hooks])
    return T.fit(st, step, data, n, folder, cbs=cbs, desc='toy')


def _stop_at(k):
    def hook(t, losses):
        if t == k: raise KeyboardInterrupt
    return hook


def _interrupted(folder, at):
    with pytest.raises(KeyboardInterrupt):
        _toy_fit(folder, hooks=[_stop_at(at)])


def _weights(st):
    return {k: v.clone() for k, v in st.models['m'].state_dict().items()}


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    "The uninterrupted toy run every interrupted one must match bit for bit."
    d = tmp_path_factory.mktemp('ref')
    st = _toy_fit(d)
    return _weights(st), (d / 'log.csv').read_text()


# ------------------------------------------------------------------------------- kills and damaged checkpoints
def test_kill_during_checkpoint_write_is_cleaned_and_resumes_exactly(tmp_path, reference_run):
    # a writer whose torch.save stalls after writing half of checkpoint 4, killed with SIGKILL there
    p = _python(f'''
        import sys, time, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_faults import _toy_fit
        real = torch.save
        def slow(obj, f, *a, **k):
            if 'ckpt_0000004' in getattr(f, 'name', ''):
                real(obj, f, *a, **k); f.flush(); print('writing', flush=True); time.sleep(60)
            real(obj, f, *a, **k)
        torch.save = slow
        _toy_fit({str(tmp_path)!r})''')
    try:
        assert p.stdout.readline().strip() == 'writing'
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        p.kill()
        p.stdout.close()
    tmp = [f.name for f in tmp_path.iterdir() if '.tmp' in f.name]
    assert tmp == [f'.ckpt_0000004.pth.tmp{p.pid}']                          # the killed writer's partial file
    assert [c.name for c in T.checkpoints(tmp_path)] == ['ckpt_0000002.pth']  # the last complete one is intact
    with pytest.warns(UserWarning) as w:
        st = _toy_fit(tmp_path)
    msgs = ' | '.join(str(x.message) for x in w)
    assert f'removed {tmp_path / tmp[0]}' in msgs                            # the temporary removed
    assert f'from PID {p.pid}' in msgs                                       # the stale lock taken over
    assert not [f for f in tmp_path.iterdir() if '.tmp' in f.name]
    ref_w, ref_log = reference_run
    assert all(torch.equal(ref_w[k], v) for k, v in _weights(st).items())    # resumed bit for bit
    assert (tmp_path / 'log.csv').read_text().count('\n') == ref_log.count('\n')


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference_run):
    _interrupted(tmp_path, 5)                                                # checkpoints 4 and 5
    newest = T.latest_checkpoint(tmp_path)
    assert newest.name == 'ckpt_0000005.pth'
    newest.write_bytes(newest.read_bytes()[:300])                            # a disk error / an interrupted copy
    skipped = r'skipping ckpt_0000005.pth: cannot read checkpoint .* resuming from ckpt_0000004.pth'
    with pytest.warns(UserWarning, match=skipped):
        st = _toy_fit(tmp_path)
    ref_w, ref_log = reference_run
    assert all(torch.equal(ref_w[k], v) for k, v in _weights(st).items())
    assert [r.split(',')[0] for r in (tmp_path / 'log.csv').read_text().splitlines()] == \
           [r.split(',')[0] for r in ref_log.splitlines()]                   # rows past iteration 4 dropped and redone


def test_all_checkpoints_unreadable_is_an_error_that_says_what_to_do(tmp_path):
    _interrupted(tmp_path, 5)
    for c in T.checkpoints(tmp_path): c.write_bytes(b'')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(MO.UnreadableCheckpoint, match='no checkpoint in .* can be read .* delete them'):
            _toy_fit(tmp_path)
    assert len(T.checkpoints(tmp_path)) == 2                                 # nothing deleted behind the user's back


def test_old_format_checkpoint_with_numpy_rng_state_still_resumes(tmp_path, reference_run):
    _interrupted(tmp_path, 4)
    c = T.latest_checkpoint(tmp_path)
    ck = torch.load(c, weights_only=True)
    st = ck['rng']
    n = st['numpy']                                              # as this project wrote it before: NumPy's tuple
    st['numpy'] = ('MT19937', n['mt19937'].numpy().astype(np.uint32), n['pos'], n['has_gauss'], n['cached_gaussian'])
    st['python'] = (st['python'][0], tuple(st['python'][1]), st['python'][2])
    torch.save(ck, c)
    with pytest.raises(Exception, match='numpy'):
        torch.load(c, weights_only=True)                                     # needs the allow-list ...
    st = _toy_fit(tmp_path)                                                  # ... which load_pth has
    assert all(torch.equal(reference_run[0][k], v) for k, v in _weights(st).items())


# ------------------------------------------------------------------------------------------ two writers
def test_second_writer_is_refused_and_the_first_one_is_unharmed(tmp_path, reference_run):
    p = _python(f'''
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_faults import _toy_fit
        from ranksrgan_nb import train as T
        _toy_fit({str(tmp_path)!r}, hooks=[lambda t, l: t == 1 and print('started', flush=True)], step_sleep=0.2)''')
    try:
        assert p.stdout.readline().strip() == 'started'
        busy = rf'{tmp_path} is being written by PID {p.pid} on .*: wait for it or stop it'
        with pytest.raises(T.FolderLocked, match=busy):
            _toy_fit(tmp_path)
        with pytest.raises(T.FolderLocked):
            T.save_final(tmp_path.parent, tmp_path.name, {}, {})             # a stage result too
        assert p.wait(60) == 0
    finally:
        p.kill()
        p.stdout.close()
    ref_w, ref_log = reference_run
    assert (tmp_path / 'log.csv').read_text().splitlines()[0] == ref_log.splitlines()[0]
    assert [r.split(',')[0] for r in (tmp_path / 'log.csv').read_text().splitlines()] == \
           [r.split(',')[0] for r in ref_log.splitlines()]                   # one header, each iteration once
    assert (tmp_path / '.lock').read_text() == ''                            # released on exit


def test_damaged_log_names_the_file_and_line(tmp_path):
    _toy_fit(tmp_path, n=4)
    with open(tmp_path / 'log.csv', 'a') as f: f.write('iter,seconds,lr_m,l\n5,0.1,0.05,0.3\n')
    with pytest.raises(ValueError, match=rf"{tmp_path / 'log.csv'}, line 6: iter='iter' is not a number"):
        T.CsvLog(tmp_path / 'log.csv', resume_from=4)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'log.csv'}, line 6"):
        T.read_log(tmp_path / 'log.csv')


# ------------------------------------------------------------------------------------------ code in checkpoints
class Payload:
    "Unpickling it creates the folder MARKER: proof that loading ran code from the file."
    marker = None
    def __reduce__(self):
        return (os.mkdir, (str(Payload.marker),))


@pytest.fixture
def evil(tmp_path):
    Payload.marker = tmp_path / 'marker'
    cfg = get_profile('smoke', device='cpu', gan_iters=2, val_every=2, ckpt_every=2, log_every=1)
    G, R = T.build_generator(cfg), MO.Ranker(cfg.r_nf)
    files = {'final': {'weights': {'G': G.state_dict(), 'R': R.state_dict()}, 'meta': {}, 'x': Payload()},
             'official': {**G.state_dict(), 'x': Payload()},
             'wrapped': {'params': G.state_dict(), 'note': Payload()},
             'vgg': {'features.0.weight': torch.zeros(64, 3, 3, 3), 'x': Payload()}}
    for name, obj in files.items(): torch.save(obj, tmp_path / f'{name}.pth')
    return cfg, tmp_path


def test_pickled_code_runs_through_no_loader(evil):
    from ranksrgan_nb import gan as GN, ranker as RK
    cfg, d = evil
    loaders = {'train.load_checkpoint': lambda: T.load_checkpoint(d / 'final.pth'),
               'train.load_final': lambda: T.load_final(d / 'final.pth'),
               'train.load_generator': lambda: T.load_generator(cfg, d / 'final.pth'),
               'train.load_generator (official)': lambda: T.load_generator(cfg, d / 'official.pth'),
               'ranker.load_ranker': lambda: RK.load_ranker(cfg, d / 'final.pth'),
               'models.load_official': lambda: MO.load_official(T.build_generator(cfg), d / 'wrapped.pth'),
               'models.map_official': lambda: MO.map_official(T.build_generator(cfg), d / 'official.pth'),
               'VGGFeatures(weights=path)': lambda: MO.VGGFeatures(weights=str(d / 'vgg.pth')),
               'gan.train_ranksrgan(init=)': lambda: GN.train_ranksrgan(cfg, d / 'run', init=d / 'final.pth'),
               'gan.train_ranksrgan(ranker=)': lambda: GN.train_ranksrgan(cfg, d / 'run', init=d / 'official_ok.pth',
                                                                          ranker=d / 'final.pth')}
    torch.save(T.build_generator(cfg).state_dict(), d / 'official_ok.pth')
    for name, load in loaders.items():
        code = r'asks to run \S*mkdir while loading, which could execute code'
        with pytest.raises(MO.UnreadableCheckpoint, match=code) as e:
            load()
        assert 'SAFE_GLOBALS' in str(e.value) and 'weights_only=False' not in str(e.value)   # the safe remedy only
        assert not Payload.marker.exists(), f'{name} ran code from the file'
    assert not (d / 'run').exists()                                          # refused before any training


def test_official_checkpoint_with_numpy_extras_loads_through_the_allow_list(tmp_path):
    G = MO.SRResNet(8, 2)
    torch.save({'params': G.state_dict(), 'iter': np.int64(400_000), 'best': np.float64(3.2),
                'rng': np.random.get_state()}, tmp_path / 'extras.pth')
    G2 = MO.load_official(MO.SRResNet(8, 2), tmp_path / 'extras.pth')
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))


@pytest.mark.parametrize('kind,content,msg', [('empty', b'', 'it is empty (0 bytes)'),
                                              ('truncated', None, 'truncated, damaged or not a PyTorch file'),
                                              ('text', b'model weights, see the README\n',
                                               'truncated, damaged or not a PyTorch file')])
def test_unreadable_checkpoint_names_the_file_and_the_cause(tmp_path, kind, content, msg):
    torch.save(MO.SRResNet(8, 2).state_dict(), tmp_path / 'ok.pth')
    f = tmp_path / f'{kind}.pth'
    f.write_bytes(content if content is not None else (tmp_path / 'ok.pth').read_bytes()[:5000])
    for load in (lambda: MO.load_official(MO.SRResNet(8, 2), f), lambda: T.load_checkpoint(f)):
        expected = re.escape(f'cannot read checkpoint {f}: ') + '.*' + re.escape(msg)
        with pytest.raises(MO.UnreadableCheckpoint, match=expected):
            load()
    with pytest.raises(IsADirectoryError, match='is a folder'):
        MO.load_official(MO.SRResNet(8, 2), tmp_path)


# ------------------------------------------------------------------------------------------ pixels
def test_integer_arrays_of_any_dtype_are_8_bit_and_float_255_is_refused(tmp_path):
    a = RNG.integers(0, 256, (40, 48, 3))                                    # int64
    assert a.dtype == np.int64
    assert np.array_equal(D.load_images({'x': a})['x'], a.astype(np.uint8))
    assert np.array_equal(D.load_images([a.astype(np.int32)])['img0000'], a.astype(np.uint8))
    assert np.array_equal(D.read_image(D.write_image(tmp_path / 'a.png', a)), a.astype(np.uint8))
    ds = D.PairedPatchDataset({'x': np.tile(a, (2, 2, 1))}, hr_patch=32, augment=False)
    assert ds[0]['hr'].max() > 0.5                                           # not the 1/257-scaled near-black image
    grey = lambda v, dtype: D.load_images({'x': np.full((2, 2), v, dtype)})['x']
    assert np.array_equal(grey(65535, np.int64), np.full((2, 2, 3), 255))   # 16-bit
    assert np.array_equal(grey(255, np.uint16), np.full((2, 2, 3), 1))      # uint16
    for bad in (a * 1.0, a.astype(np.float32)):
        with pytest.raises(ValueError, match='divide it by 255'):
            D.load_images({'x': bad})
        with pytest.raises(ValueError, match=rf'the image for {tmp_path / "b.png"}: .*divide it by 255'):
            D.write_image(tmp_path / 'b.png', bad)
    assert not (tmp_path / 'b.png').exists()
    Image.fromarray(a[..., 0].astype(np.float32)).save(tmp_path / 'f.tif')   # a float TIFF in 0..255
    with pytest.raises(ValueError, match=rf'image {tmp_path / "f.tif"}: float pixels must be in \[0, 1\]'):
        D.read_image(tmp_path / 'f.tif')
    with pytest.raises(ValueError, match='NaN or infinite'):
        D.load_images({'x': np.full((4, 4), np.nan)})


def test_out_of_range_tensors_are_refused_by_every_metric():
    hr = torch.from_numpy(np.tile(RNG.random((100, 100, 3)), (3, 3, 1)).transpose(2, 0, 1).copy()).float()[None]
    sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1)
    calls = {'psnr': lambda a, b: M.psnr(a, b, 4), 'ssim': lambda a, b: M.ssim(a, b, 4),
             'niqe': lambda a, b: M.niqe(a, 4), 'sharpness': lambda a, b: M.sharpness(a)}
    for name, f in calls.items():
        f(sr, hr)                                                             # in range: fine
        unit = r'a float tensor must be in \[0, 1\], got values .*divide a 0..255 tensor by 255'
        with pytest.raises(ValueError, match=unit):
            f(sr * 255, hr * 255)
        for v in (math.inf, -math.inf, math.nan):
            bad = sr.clone()
            bad[0, 1, 7, 7] = v
            with pytest.raises(ValueError, match='NaN or infinite values'):
                f(bad, hr)
    edge = sr.clone()
    edge[0, 0, 0, :2] = torch.tensor([-0.49 / 255, 1 + 0.49 / 255])  # rounding: accepted, = clamped
    assert M.psnr(edge, hr, 4) == M.psnr(edge.clamp(0, 1), hr, 4)


# ------------------------------------------------------------------------------------------ settings and test images
@pytest.mark.parametrize('setting,msg', [
    (dict(label_metric='nime'), "label_metric='nime' is unknown (did you mean 'niqe'?)"),
    (dict(seed=-1), 'seed must be >= 0, got -1'),
    (dict(device='gpu'), "device='gpu' is not a torch device"),
    (dict(sr_lr_steps='0.5,x'), 'sr_lr_steps expects float items'),
    (dict(sr_lr=-1), 'sr_lr must be > 0, got -1.0'),
    (dict(lr_gamma=0), 'lr_gamma (the factor of each learning-rate step) must be in (0, 1], got 0.0'),
    (dict(w_R=-0.03), 'w_R must be >= 0'),
    (dict(rank_levels='srgan,srresent'), "'srresent' is unknown (did you mean 'srresnet'?)"),
])
def test_late_failing_settings_now_fail_when_the_profile_is_made(setting, msg, tmp_path):
    with pytest.raises((ValueError, TypeError)) as e:
        T.train_srresnet(get_profile('smoke', sr_iters=2, **setting), tmp_path)
    assert msg in str(e.value)
    assert not any(tmp_path.iterdir())                                       # failed before anything was written


def test_string_steps_from_the_command_line_train(tmp_path):
    cfg = get_profile('smoke', sr_lr_steps='0.5,0.7', sr_iters=2, ckpt_every=2, val_every=2, device='cpu')
    assert cfg.sr_lr_steps == (0.5, 0.7)
    assert T.train_srresnet(cfg, tmp_path).is_file()


def test_tiny_test_image_and_small_validation_image_fail_when_the_set_is_built(tmp_path):
    with pytest.raises(ValueError, match=r"test image\(s\) 'tiny' \(3x3\)"):
        D.TestImageDataset({'tiny': np.zeros((3, 3, 3), np.uint8), 'ok': np.zeros((8, 8, 3), np.uint8)}, scale=4)
    D.write_image(tmp_path / 'val' / 'a_small.png', RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    D.write_image(tmp_path / 'val' / 'big.png', RNG.integers(0, 256, (240, 240, 3), dtype=np.uint8))
    cfg = get_profile('smoke', val_data=str(tmp_path / 'val'), sr_iters=4, ckpt_every=2, val_every=4, device='cpu')
    with pytest.raises(ValueError, match=r"'a_small' \(80x64\) of .*val are smaller than the 200x200 pixels that "
                                         r"validation with NIQE \(crop_border=4\) needs"):
        T.train_srresnet(cfg, tmp_path / 'run')
    assert not T.checkpoints(tmp_path / 'run' / 'srresnet')                  # before any training


# ------------------------------------------------------------------------------------------ full disks and bad files
def _tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0: return False
    path.mkdir()
    cmd = ['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


@pytest.fixture(params=['tmpfs', 'patched writer'])
def small_disk(request, tmp_path, monkeypatch):
    "A 96 KB tmpfs (where the machine allows mounting one), or a folder where writing over 64 KB fails with ENOSPC."
    d = tmp_path / 'disk'
    if request.param == 'tmpfs':
        if not _tmpfs(d, '96k'): pytest.skip('cannot mount a tmpfs here (not root?); the patched writer covers this')
        yield d
        subprocess.run(['umount', str(d)], check=True)
        return
    d.mkdir()
    real = torch.save
    def full(obj, f, *a, **k):
        real(obj, f, *a, **k)
        if f.tell() > 64 * 1024: raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(torch, 'save', full)
    yield d


def test_disk_full_names_the_path_and_keeps_what_was_written(small_disk):
    old = small_disk / 'ckpt_0000001.pth'
    T.save_atomic({'w': torch.ones(100)}, old)
    before = old.read_bytes()
    with pytest.raises(OSError, match=rf'no space left on the device to write {small_disk / "ckpt_0000002.pth"} '
                                      r'.*free some space') as e:
        T.save_atomic({'w': torch.zeros(100_000)}, small_disk / 'ckpt_0000002.pth')
    assert e.value.errno == errno.ENOSPC
    assert old.read_bytes() == before and sorted(p.name for p in small_disk.iterdir()) == ['ckpt_0000001.pth']
    T.save_atomic({'w': torch.ones(100)}, small_disk / 'ckpt_0000003.pth')   # the space of the failed write was freed


def test_disk_full_during_training_keeps_the_last_checkpoint_and_resumes(tmp_path, monkeypatch, reference_run):
    real, calls = T.save_atomic, []
    def flaky(obj, path):
        calls.append(Path(path).name)
        if Path(path).name == 'ckpt_0000006.pth':
            raise OSError(errno.ENOSPC, f'no space left on the device to write {path}')
        return real(obj, path)
    monkeypatch.setattr(T, 'save_atomic', flaky)
    with pytest.raises(OSError, match='ckpt_0000006.pth'):
        _toy_fit(tmp_path)
    assert [c.name for c in T.checkpoints(tmp_path)] == ['ckpt_0000002.pth', 'ckpt_0000004.pth']
    monkeypatch.setattr(T, 'save_atomic', real)                              # space freed: run again
    st = _toy_fit(tmp_path)
    assert all(torch.equal(reference_run[0][k], v) for k, v in _weights(st).items())


def test_bad_image_files_say_what_is_wrong(tmp_path, monkeypatch):
    (tmp_path / 'photo.png').mkdir()
    with pytest.raises(IsADirectoryError, match='photo.png is a folder, not an image file'):
        D.read_image(tmp_path / 'photo.png')
    D.write_image(tmp_path / 'a.png', RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)                     # scaled down: a >179-megapixel PNG against
    monkeypatch.setattr(FIO, 'MAX_IMAGE_PIXELS', 2000)                         # Pillow's and our default limits
    with pytest.raises(D.ImageReadError, match=r'a.png: Image size \(4096 pixels\) exceeds limit of 2000 pixels'
                                               r'.*decompression bombs.* read_image\(path, max_pixels=None\)'):
        D.read_image(tmp_path / 'a.png')
    assert D.read_image(tmp_path / 'a.png', max_pixels=None).shape == (64, 64, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000                                    # Pillow's setting is left as it was
    monkeypatch.setattr(FIO, 'MAX_IMAGE_PIXELS', 4000)                         # the project's own setting
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 89_478_485)
    with pytest.raises(D.ImageReadError, match='exceeds limit of 4000 pixels'):
        D.load_images(tmp_path)


def test_offline_download_with_a_partial_archive_names_it(tmp_path):
    (tmp_path / 'benchmark.tar').write_bytes(b'the first bytes of a tar')
    with pytest.raises(DS.DownloadError,
                       match=rf'{tmp_path / "benchmark.tar"} is already there \(24 bytes\) but does not match'):
        DS.download('http://127.0.0.1:9/benchmark.tar', 'sha256:' + '0' * 64, tmp_path, progress=False)


# ------------------------------------------------------------------------------------------ large images in stripes
@pytest.fixture
def photo():
    from skimage.data import astronaut
    a = astronaut()
    return np.concatenate([a, a[:, ::-1]], 1)[:460, :700]                   # 4x7 NIQE blocks; odd-sized edges


@pytest.fixture
def stripes(monkeypatch):
    def set_to(n): monkeypatch.setattr(D, 'STRIPE_PIXELS', n)
    return set_to


def test_striped_niqe_is_bit_identical(photo, stripes):
    stripes(None)
    whole = M.niqe_features(M.niqe_luma(photo, 4)[0])
    v_whole = M.niqe(photo, 4)
    for n in (1, 96 * 672 * 2 + 7):                                          # one block row per stripe, then two
        stripes(n)
        torch.testing.assert_close(M.niqe_features_striped(photo, 4), whole, rtol=0, atol=0, equal_nan=True)
        assert M.niqe(photo, 4) == v_whole


def test_striped_ssim_psnr_imresize_degrade_are_bit_identical(photo, stripes):
    ref = np.roll(photo, 3, 1)
    t = torch.from_numpy(photo.transpose(2, 0, 1).copy()).double()[None] / 255
    stripes(None)
    whole = [M.ssim(photo, ref, 4), M.ssim(photo, ref, 0, 'rgb'), M.psnr(photo, ref, 4), D.bicubic_degrade(photo),
             D.imresize(photo / 255.0, 0.5), D.imresize(t, 1 / 3), D.bicubic_upsample(photo[:50, :70])]
    for n in (1, 5000):
        stripes(n)
        now = [M.ssim(photo, ref, 4), M.ssim(photo, ref, 0, 'rgb'), M.psnr(photo, ref, 4), D.bicubic_degrade(photo),
               D.imresize(photo / 255.0, 0.5), D.imresize(t, 1 / 3), D.bicubic_upsample(photo[:50, :70])]
        for a, b in zip(whole, now):
            assert (torch.equal(a, b) if isinstance(a, torch.Tensor) else np.array_equal(a, b)), (n, type(a))


# ------------------------------------------------------------------------------------------ round two (issue 21)
def _tiny_generator(seed=0):
    torch.manual_seed(seed)
    return MO.SRResNet(nf=8, nb=1).eval()


@pytest.mark.parametrize('kind,msg', [('0..255', 'divide it by 255'), ('nan', 'NaN or infinite'),
                                      ('inf', 'NaN or infinite'), ('overshoot', r'range over .*clamp\(0, 1\)')])
def test_nan_inf_and_0_255_tensors_are_refused_like_arrays(tmp_path, kind, msg):
    t = D.img2tensor(RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    t = {'0..255': t * 255, 'nan': t.index_fill(1, torch.tensor([3]), math.nan),
         'inf': t.index_fill(2, torch.tensor([0]), math.inf), 'overshoot': t * 1.3}[kind]
    with pytest.raises(ValueError, match=msg):
        D.tensor2img(t)
    with pytest.raises(ValueError, match=rf'the image for {tmp_path / "a.png"}: .*' + msg):
        D.write_image(tmp_path / 'a.png', t[None])
    with pytest.raises(ValueError, match=msg if kind != 'overshoot' else 'range over'):    # the same rule as for arrays
        D.write_image(tmp_path / 'a.png', t.permute(1, 2, 0).numpy())
    assert not any(tmp_path.iterdir())                                       # nothing written


def test_super_resolve_and_img2tensor_take_int64_as_8_bit_and_refuse_float_0_255():
    G, img = _tiny_generator(), RNG.integers(0, 256, (14, 11, 3), dtype=np.uint8)
    ref = T.super_resolve(G, img)
    assert np.array_equal(T.super_resolve(G, img.astype(np.int64)), ref)    # not the near-white image
    assert np.array_equal(T.super_resolve(G, img / 255.0), ref)              # floats in [0, 1]: the same picture
    assert torch.equal(D.img2tensor(img.astype(np.int64)), D.img2tensor(img))
    assert torch.equal(D.img2tensor(img.astype(np.uint16) * 257), D.img2tensor(img))   # 16-bit, scaled
    for call in (lambda: T.super_resolve(G, img * 1.0), lambda: D.img2tensor(img.astype(np.float32))):
        with pytest.raises(ValueError, match='divide it by 255'):            # not an all-white image
            call()


def test_exif_orientation_is_applied_on_read(tmp_path):
    from skimage.data import astronaut
    a = astronaut()[100:140, 150:214]                                        # 40x64, a photograph (JPEG-friendly)
    exif = Image.Exif()
    exif[0x0112] = 6                                                         # a phone held upright: turn 90° clockwise
    Image.fromarray(a).save(tmp_path / 'phone.png', exif=exif)
    Image.fromarray(a).save(tmp_path / 'phone.jpg', exif=exif, quality=95)
    assert np.array_equal(D.read_image(tmp_path / 'phone.png'), np.rot90(a, -1))
    jpg = D.read_image(tmp_path / 'phone.jpg')
    assert jpg.shape == (64, 40, 3) and np.abs(jpg.astype(int) - np.rot90(a, -1)).mean() < 4   # as a viewer shows it
    assert np.abs(jpg.astype(int) - np.rot90(a, 1)).mean() > 20                       # not turned the other way
    odd = Image.Exif()
    odd[0x0112] = 9                                                          # no such orientation
    for i, exif in enumerate((b'Exif\x00\x00garbage', odd)):               # damaged: the pixels as stored
        Image.fromarray(a).save(tmp_path / f'odd{i}.png', exif=exif)
        assert np.array_equal(D.read_image(tmp_path / f'odd{i}.png'), a)


def test_log_rewrite_on_resume_never_loses_the_log(tmp_path, monkeypatch):
    class Killed(BaseException): pass
    log = T.CsvLog(tmp_path / 'log.csv')
    for t in range(1, 11): log.write({'iter': t, 'l': 1.0 / t})
    before = (tmp_path / 'log.csv').read_text()
    def dies(*a, **k): raise Killed                                          # killed in the middle of the rewrite
    monkeypatch.setattr(csv.DictWriter, 'writerow', dies)
    monkeypatch.setattr(csv.DictWriter, 'writerows', dies)
    with pytest.raises(Killed):
        T.CsvLog(tmp_path / 'log.csv', resume_from=6)                        # resume: rows 7-10 dropped
    assert (tmp_path / 'log.csv').read_text() == before                      # the whole old log, not half of it
    with pytest.raises(Killed):
        log.write({'iter': 11, 'l': 0.1, 'new_column': 1.0})                 # the rewrite that adds a column
    assert (tmp_path / 'log.csv').read_text() == before
    monkeypatch.undo()
    assert [int(r['iter']) for r in T.CsvLog(tmp_path / 'log.csv', resume_from=6)._rows()] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['log.csv']         # no temporary file left


def test_unavailable_device_is_refused_up_front(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)           # a machine without CUDA, whatever this is
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 0)
    for dev in ('cuda', 'cuda:0'):
        with pytest.raises(ValueError, match=rf"device='{dev}' is not available on this machine: .*'auto'.*"
                                             r"torch\.cuda\.is_available\(\)"):
            get_profile('smoke', device=dev)
        with pytest.raises(ValueError, match='not available on this machine'):
            T.pick_device(dev)
    assert get_profile('smoke', device='cpu').device == 'cpu'


@pytest.mark.parametrize('setting', ['train_data', 'test_data', 'val_data'])
@pytest.mark.parametrize('value', ['', ' ', ' , '])
def test_empty_data_settings_are_refused(setting, value):
    with pytest.raises(ValueError, match=rf"{setting}='{value}' names no images: use 'sample'"):
        get_profile('smoke', **{setting: value})


def test_sigterm_saves_a_checkpoint_and_the_run_resumes_exactly(tmp_path, reference_run):
    # a scheduler stops the job: SIGTERM from outside, while iteration 3 runs (its hook waits for the signal)
    p = _python(f'''
        import signal, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_faults import _toy_fit
        got = []
        def hook(t, losses):
            if t == 3:                                                       # wait, inside iteration 3, until the
                handler = signal.getsignal(signal.SIGTERM)                   # signal has come and been handled
                signal.signal(signal.SIGTERM, lambda s, f: (handler(s, f), got.append(s)))
                print('started', flush=True)
                while not got: time.sleep(0.01)
        _toy_fit({str(tmp_path)!r}, hooks=[hook])''')
    try:
        assert p.stdout.readline().strip() == 'started'
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 128 + signal.SIGTERM                            # ended as SIGTERM asked, status 143
        assert 'toy: stopped by SIGTERM at iteration 3; saved' in p.stdout.read()
    finally:
        p.kill()
        p.stdout.close()
    assert T.latest_checkpoint(tmp_path).name == 'ckpt_0000003.pth'         # not only the periodic ckpt_0000002
    assert (tmp_path / '.lock').read_text() == ''                            # released on the way out
    st = _toy_fit(tmp_path)
    ref_w, ref_log = reference_run
    assert all(torch.equal(ref_w[k], v) for k, v in _weights(st).items())    # resumed bit for bit
    assert (tmp_path / 'log.csv').read_text().count('\n') == ref_log.count('\n')
