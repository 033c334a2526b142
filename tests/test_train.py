"""The training engine: exact resume, loud failures, checkpoints, stage reuse (smoke profile, CPU)."""
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from ranksrgan_nb import train as T
from ranksrgan_nb.config import get_profile

warnings.filterwarnings('ignore', category=UserWarning)
warnings.filterwarnings('ignore', category=RuntimeWarning)


@pytest.fixture
def cfg():
    return get_profile('smoke', sr_iters=8, gan_iters=6, ckpt_every=2, val_every=3, log_every=1, device='cpu')


def _stop_at(k):
    def hook(t, losses):
        if t == k:
            raise KeyboardInterrupt
    return hook


def _weights(path):
    return T.load_checkpoint(path)['weights']


def _assert_same(a: dict, b: dict):
    for name in a:
        for k in a[name]:
            assert torch.equal(a[name][k], b[name][k]), f'{name}.{k} differs'


def test_srresnet_interrupted_and_resumed_is_bitwise_identical(cfg, tmp_path):
    full = T.train_srresnet(cfg, tmp_path / 'a')
    with pytest.raises(KeyboardInterrupt):
        T.train_srresnet(cfg, tmp_path / 'b', cbs=[T.HookCB(_stop_at(5))])   # 5 is not a checkpoint iteration
    assert T.latest_checkpoint(tmp_path / 'b' / 'srresnet').name == 'ckpt_0000005.pth'
    resumed = T.train_srresnet(cfg, tmp_path / 'b')
    _assert_same(_weights(full), _weights(resumed))
    la = (tmp_path / 'a' / 'srresnet' / 'log.csv').read_text().splitlines()
    lb = (tmp_path / 'b' / 'srresnet' / 'log.csv').read_text().splitlines()
    assert [r.split(',')[0] for r in la] == [r.split(',')[0] for r in lb]          # same iterations logged once each


def test_nan_loss_stops_with_iteration_term_and_checkpoint(tmp_path):
    m = nn.Linear(2, 1)
    st = T.TrainState({'m': m}, {'m': torch.optim.SGD(m.parameters(), lr=0.1)})
    def step(b):
        return {'l_ok': 1.0, 'l_bad': math.inf if st.iteration >= 4 else 0.5}
    with pytest.raises(T.TrainingDiverged) as e:
        T.fit(st, step, lambda a, b: range(a, b), 10, tmp_path, cbs=T.default_callbacks(ckpt_every=3), desc='toy')
    msg = str(e.value)
    assert 'l_bad = inf at iteration 5' in msg and 'ckpt_0000003.pth' in msg
    assert T.latest_checkpoint(tmp_path).name == 'ckpt_0000003.pth'      # nothing saved from the bad state


def test_resume_refuses_other_settings(cfg, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        T.train_srresnet(cfg, tmp_path, cbs=[T.HookCB(_stop_at(2))])
    with pytest.raises(ValueError, match='different settings'):
        T.train_srresnet(get_profile(cfg, g_nf=16), tmp_path)


def test_save_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / 'x.pth'
    T.save_atomic({'a': 1}, target)
    def boom(obj, f):
        raise OSError('disk full')
    monkeypatch.setattr(torch, 'save', boom)
    with pytest.raises(OSError):
        T.save_atomic({'a': 2}, target)
    assert torch.load(target)['a'] == 1 and len(list(tmp_path.iterdir())) == 1


def test_keep_only_newest_checkpoints(tmp_path):
    m = nn.Linear(2, 1)
    st = T.TrainState({'m': m}, {'m': torch.optim.SGD(m.parameters(), lr=0.1)})
    cbs = T.default_callbacks(ckpt_every=2, keep=2)
    T.fit(st, lambda b: {'l': 0.0}, lambda a, b: range(a, b), 9, tmp_path, cbs=cbs, desc='toy')
    assert [p.name for p in T.checkpoints(tmp_path)] == ['ckpt_0000008.pth', 'ckpt_0000009.pth']


def test_missing_and_corrupt_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        T.load_checkpoint(tmp_path / 'nope.pth')
    (tmp_path / 'bad.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='bad.pth'):
        T.load_checkpoint(tmp_path / 'bad.pth')


def test_stage_reuse_checks_architecture(cfg, tmp_path):
    p = T.ensure_srresnet(cfg, tmp_path)
    assert T.ensure_srresnet(cfg, tmp_path) == p                    # reused, not retrained
    with pytest.raises(ValueError, match='g_nf'):
        T.ensure_srresnet(get_profile(cfg, g_nf=16), tmp_path)
    with pytest.raises(ValueError, match='g_nf'):
        T.load_generator(get_profile(cfg, g_nf=16), p)


def test_batches_are_a_function_of_iteration():
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    ds = T.PairedPatchDataset({'a': img}, hr_patch=32)
    all_b = [b['hr'] for b in T.batches(ds, 3, 0, 5)]
    tail = [b['hr'] for b in T.batches(ds, 3, 3, 5)]
    assert torch.equal(all_b[3], tail[0]) and torch.equal(all_b[4], tail[1])


@pytest.mark.parametrize('cuda,mps,want', [(True, True, 'cuda'), (True, False, 'cuda'), (False, True, 'mps'),
                                            (False, False, 'cpu')])
def test_pick_device(monkeypatch, cuda, mps, want):
    "'auto': CUDA when there is CUDA, else MPS when there is MPS, else the CPU; a named device as it is."
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: mps)
    assert T.pick_device('auto') == torch.device(want)
    assert T.pick_device('cpu') == torch.device('cpu')


def test_csvlog_drops_rows_past_resume(tmp_path):
    log = T.CsvLog(tmp_path / 'l.csv')
    for t in range(1, 6):
        log.write({'iter': t, 'a': t * 1.0})
    log.write({'iter': 6, 'a': 6.0, 'b': 1.0})                          # a new column
    T.CsvLog(tmp_path / 'l.csv', resume_from=3)
    import pandas as pd
    df = pd.read_csv(tmp_path / 'l.csv')
    assert list(df.iter) == [1, 2, 3] and 'b' in df.columns


# ------------------------------------------------------------------ the loop's callbacks
def test_hooks_are_called_in_order_and_after_fit_always(tmp_path):
    seen = []
    class Trace(T.Callback):
        def __init__(self, name): self.name = name
        def before_fit(self, run): seen.append(f'{self.name}.before')
        def after_step(self, run): seen.append(f'{self.name}.{run.t}')
        def on_stop(self, run): seen.append(f'{self.name}.stop')
        def after_fit(self, run): seen.append(f'{self.name}.after')
    st = T.TrainState({'m': nn.Linear(1, 1)})
    with pytest.raises(KeyboardInterrupt):
        T.fit(st, lambda b: {}, lambda a, b: range(a, b), 5, cbs=[Trace('a'), Trace('b'), T.HookCB(_stop_at(2))])
    assert seen == ['a.before', 'b.before', 'a.1', 'b.1', 'a.2', 'b.2', 'a.stop', 'b.stop', 'b.after', 'a.after']
    seen.clear()
    with pytest.raises(ZeroDivisionError):                       # any error: after_fit still runs, on_stop does not
        T.fit(T.TrainState({}), lambda b: {'l': 1 / 0}, lambda a, b: range(a, b), 5, cbs=[Trace('a')])
    assert seen == ['a.before', 'a.after']


def test_default_callbacks_order():
    names = [type(c).__name__ for c in T.default_callbacks(validate=dict, extra=[T.EMACB()], user=[T.HookCB(print)])]
    assert names == ['LockCB', 'ResumeCB', 'NanGuardCB', 'EMACB', 'LogCB', 'ValidateCB', 'CheckpointCB', 'ProgressCB',
                     'HookCB', 'InterruptCB']
    assert 'ValidateCB' not in [type(c).__name__ for c in T.default_callbacks()]


def test_ema_follows_the_formula_and_copies_integer_buffers():
    m = nn.BatchNorm1d(3)
    st = T.TrainState({'m': m, 'e': T.ema_model(m)})
    with torch.no_grad():
        m.weight.fill_(2.0)
        m.num_batches_tracked.fill_(7)
    T.fit(st, lambda b: {}, lambda a, b: range(a, b), 1, cbs=[T.EMACB(0.75, 'm', 'e')])
    assert torch.allclose(st.models['e'].weight, torch.full((3,), 0.75 * 1.0 + 0.25 * 2.0))
    assert st.models['e'].num_batches_tracked.item() == 7 and not st.models['e'].weight.requires_grad


# ------------------------------------------------------------------ the SRGAN stage (03), with its options of issue 25
@pytest.fixture
def sr(cfg, tmp_path_factory):
    return T.train_srresnet(cfg, tmp_path_factory.mktemp('sr'))


def test_gan_meta_unchanged_by_the_options_left_off(cfg, tmp_path, sr):
    meta = T.load_checkpoint(T.train_gan(cfg, tmp_path, 'srgan', init=sr))['meta']
    assert not {'w_grid', 'ema_decay', 'snapshot_every'} & set(meta)
    assert list(T.load_checkpoint(T.final_path(tmp_path, 'srgan'))['weights']) == ['G', 'D']
    assert not (tmp_path / 'srgan' / 'snapshots').exists()


def test_ema_and_snapshots_resume_exactly(cfg, tmp_path, sr):
    opts = dict(init=sr, ema_decay=0.5, snapshot_every=2)
    full = T.train_gan(cfg, tmp_path / 'a', **opts)
    with pytest.raises(KeyboardInterrupt):
        T.train_gan(cfg, tmp_path / 'b', cbs=[T.HookCB(_stop_at(3))], **opts)
    assert list(T.snapshots(tmp_path / 'b' / 'srgan')) == [2]
    resumed = T.train_gan(cfg, tmp_path / 'b', **opts)
    a, b = _weights(full), _weights(resumed)
    assert list(a) == ['G', 'D', 'G_ema']
    _assert_same(a, b)                                                  # G, D and the average, bit for bit
    assert not torch.equal(a['G']['conv_first.weight'], a['G_ema']['conv_first.weight'])
    for prefix in ('G', 'E'):
        sa, sb = T.snapshots(tmp_path / 'a' / 'srgan', prefix), T.snapshots(tmp_path / 'b' / 'srgan', prefix)
        assert list(sa) == list(sb) == [2, 4, 6]                        # none skipped, none twice
        for t in sa:
            _assert_same(_weights(sa[t]), _weights(sb[t]))
    _assert_same({'G': _weights(T.snapshot_path(tmp_path / 'a' / 'srgan', 6, 'E'))['G']}, {'G': a['G_ema']})
    g6 = T.load_generator(cfg, T.snapshot_path(tmp_path / 'a' / 'srgan', 6))      # a snapshot reads like a stage
    assert torch.equal(g6.conv_first.weight, a['G']['conv_first.weight'])
    final = tmp_path / 'a' / 'srgan' / 'final.pth'
    assert torch.equal(T.load_generator(cfg, final).conv_first.weight, a['G_ema']['conv_first.weight'])   # the average
    assert torch.equal(T.load_generator(cfg, final, ema=False).conv_first.weight, a['G']['conv_first.weight'])


def test_srgan_stage_ensures_the_srresnet_before_seeding(cfg, tmp_path):
    a = T.ensure(T.SRGAN, cfg, tmp_path / 'a')                          # trains the SRResNet inside
    T.ensure(T.SRRESNET, cfg, tmp_path / 'b')
    b = T.ensure(T.SRGAN, cfg, tmp_path / 'b')                          # the SRResNet already there
    _assert_same(_weights(a), _weights(b))                              # D's start does not depend on it
    assert T.load_checkpoint(a)['meta']['seed'] == cfg.gan_seeds[0]
    assert T.ensure(T.SRGAN, cfg, tmp_path / 'a') == a                  # reused
    with pytest.raises(ValueError, match='w_gan'):
        T.ensure(T.SRGAN, get_profile(cfg, w_gan=0.5), tmp_path / 'a')
