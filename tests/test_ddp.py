"""Training on several processes (issue 24): two gloo processes under torchrun, on the CPU, at the smoke profile.

The module is also the worker: `python -m torch.distributed.run --standalone --nproc_per_node 2 tests/test_ddp.py
MODE OUT` runs `_worker(MODE, OUT)` in each process. Two launches (about 10 s each on two busy cores) serve every
test below through one module-scoped fixture.
"""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
KILL_AT = 5                 # the killed run dies after iteration 5; its newest checkpoint is 4 (ckpt_every)


def _cfg():
    "Smoke at batch 4 (2 per process: D's BatchNorm needs 2); on CUDA (gpu_check.py): fp32 without TF32, deterministic."
    from ranksrgan_nb.config import get_profile
    gpu = os.environ.get('DDP_DEVICE', 'cpu') == 'cuda'
    if gpu: torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    return get_profile('smoke', device='cuda' if gpu else 'cpu', amp=False, deterministic=gpu, batch_size=4,
                       sr_iters=6, ckpt_every=4, log_every=1, val_every=6, gan_iters=2)


def _grads(model):
    return [p.grad.detach().clone() for p in model.parameters() if p.requires_grad]


def _max_diff(a, b):
    "The largest difference of two lists of gradients, and that relative to the largest gradient (float32 both)."
    d = max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))
    return d, d / max(y.abs().max().item() for y in b)


def _first_step_diff(T, recipe_fn, rank, world, model='G'):
    "(absolute, relative) difference of this process's DDP gradients from one process's on the whole first batch."
    cfg = _cfg()
    dev = T.pick_device(cfg.device)
    os.environ['WORLD_SIZE'] = '1'                 # the reference is one process (a summed loss is not scaled)
    ref = recipe_fn()
    ref.make_step(ref.state.models)(next(iter(T.batches(ref.dataset, ref.batch_size, 0, 1))))
    os.environ['WORLD_SIZE'] = str(world)
    r = recipe_fn()
    models = T.ddp_wrap(r.state.models, r.state.optims, dev)
    r.make_step(models)(next(iter(T.batches(r.dataset, r.batch_size, 0, 1, rank=rank, world=world))))
    assert r.batch_size == cfg.batch_size
    return _max_diff(_grads(r.state.models[model]), _grads(ref.state.models[model]))


def _tiny_ranker():
    "A Ranker without BatchNorm, so that its summed rank-content loss has the same gradient on 1 or 2 processes."
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(3, 2, 3, 2), nn.Flatten(), nn.Linear(2 * 15 * 15, 1))


def _srresnet(T, cfg):
    "The SRResNet recipe without validation (NIQE on rank 0 only; not what is checked here, and it costs seconds)."
    r = T.srresnet_recipe(cfg)
    r.validate = None
    return r


def _ranker_steps(T, rank, world, dev):
    "Two Ranker steps under DDP (both images through the one wrapped Ranker, then one backward): same weights after."
    from ranksrgan_nb.method import make_ranker_step
    from ranksrgan_nb.models import Ranker
    torch.manual_seed(0)
    R = Ranker(nf=4).to(dev)
    step = make_ranker_step(T.ddp_wrap({'R': R}, ['R'], dev)['R'], torch.optim.Adam(R.parameters(), 1e-3), dev)
    g = torch.Generator().manual_seed(rank)                    # each process its own pairs
    for _ in range(2):
        step({'img1': torch.rand(2, 3, 32, 32, generator=g), 'img2': torch.rand(2, 3, 32, 32, generator=g),
              'score1': torch.rand(2, generator=g), 'score2': torch.rand(2, generator=g)})
    flat = torch.cat([p.detach().flatten() for p in R.parameters()])
    every = [torch.zeros_like(flat) for _ in range(world)]
    torch.distributed.all_gather(every, flat)
    return all(torch.equal(every[0], x) for x in every)


def _worker(mode, out):
    torch.set_num_threads(1)
    warnings.filterwarnings('ignore')
    from ranksrgan_nb import train as T
    from ranksrgan_nb.method import GanWeights, RankContentLoss
    cfg, out = _cfg(), Path(out)
    dev = T.pick_device(cfg.device)
    rank, world = T.init_distributed(dev)
    res = {'rank': rank, 'world': world}
    if mode == 'first':
        res['grad_diff_srresnet'] = _first_step_diff(T, lambda: _srresnet(T, cfg), rank, world)
        r = _srresnet(T, cfg)
        final = T.train_stage(cfg, out / 'a', r)
        ck = T.load_checkpoint(out / 'a' / 'srresnet' / 'ckpt_0000006.pth')
        mine = r.state.models['G'].state_dict()
        res['ckpt_equals_state'] = all(torch.equal(v, ck['models']['G'][k]) for k, v in mine.items())
        res['final_equals_state'] = all(torch.equal(v, T.load_final(final)['weights']['G'][k]) for k, v in mine.items())
        rank_loss = lambda d: {'l_g_rank': RankContentLoss(_tiny_ranker().to(d), 0.03, 0.0, 'sum')}
        rank_only = GanWeights(w_pix=0.0, w_fea=0.0, w_gan=0.0)     # L_G = w_R sum_i L_R: D (BatchNorm) is not in it
        gan = lambda: T.gan_recipe(cfg, 'g', final, weights=rank_only, extra_losses=rank_loss)
        res['grad_diff_rank_sum'] = _first_step_diff(T, gan, rank, world)
        res['ranker_same_weights'] = _ranker_steps(T, rank, world, dev)
        res['srgan_meta'] = T.load_final(T.train_gan(cfg, out / 'a', 'srgan', init=final))['meta']
        class StopOnRank1(T.Callback):                        # a stop asked for by one process only
            def after_step(self, run):
                if run.rank == 1 and run.t == 3: run.stop = 'asked by rank 1'
        r = _srresnet(T, cfg)
        try: T.train_stage(cfg, out / 'c', r, cbs=[StopOnRank1()])
        except KeyboardInterrupt as e: res['stopped'] = [r.state.iteration, str(e)]
        (out / f'first{rank}.json').write_text(json.dumps(res, default=str))
        kill = T.HookCB(lambda t, losses: os._exit(3) if t == KILL_AT else None)   # no cleanup, like SIGKILL
        T.train_stage(cfg, out / 'b', _srresnet(T, cfg), cbs=[kill])
    else:
        final = T.train_stage(cfg, out / 'b', _srresnet(T, cfg))
        a, b = (T.load_final(out / s / 'srresnet' / 'final.pth')['weights']['G'] for s in ('a', 'b'))
        res['resumed_equals_uninterrupted'] = all(torch.equal(v, b[k]) for k, v in a.items())
        res['final'] = str(final)
        (out / f'resume{rank}.json').write_text(json.dumps(res))


def _torchrun(mode, out):
    path = os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': path}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           '--start-method', 'fork', '--monitor-interval', '0.2', __file__, mode, str(out)]   # fork: torch imported
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
    "The two launches: train, check and get killed; then resume. Their JSON records by rank, and the folder."
    out = tmp_path_factory.mktemp('ddp')
    first = _torchrun('first', out)
    assert first.returncode != 0, 'the killed run should have failed'
    assert (out / 'first0.json').exists() and (out / 'first1.json').exists(), first.stderr[-3000:]
    ckpts = sorted(p.name for p in (out / 'b' / 'srresnet').glob('ckpt_*.pth'))
    resumed = _torchrun('resume', out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    recs = {f'{m}{r}': json.loads((out / f'{m}{r}.json').read_text()) for m in ('first', 'resume') for r in (0, 1)}
    return recs, ckpts, out


def test_first_step_gradients_equal_one_process_on_the_whole_batch(two_processes):
    recs, _, _ = two_processes
    for r in (0, 1):
        assert recs[f'first{r}']['world'] == 2 and recs[f'first{r}']['rank'] == r
        for check in ('grad_diff_srresnet', 'grad_diff_rank_sum'):    # (absolute, relative to the largest gradient)
            absolute, relative = recs[f'first{r}'][check]             # float32: relative ~1e-6 (SRResNet) to 3e-5
            assert absolute < 1e-6 and relative < 1e-3, (check, absolute, relative)   # a wrong scale: ~0.5


def test_checkpoint_and_result_equal_every_process_state(two_processes):
    recs, _, _ = two_processes
    for r in (0, 1):
        assert recs[f'first{r}']['ckpt_equals_state'] and recs[f'first{r}']['final_equals_state']


def test_gan_and_ranker_steps_run_and_keep_the_processes_equal(two_processes):
    recs, _, _ = two_processes
    assert recs['first0']['ranker_same_weights'] and recs['first1']['ranker_same_weights']   # the Siamese step too
    assert recs['first0']['srgan_meta']['world'] == 2 and recs['first0']['srgan_meta']['n_iters'] == 2


def test_a_stop_asked_by_one_process_stops_all_at_once_saved(two_processes):
    recs, _, out = two_processes
    assert recs['first0']['stopped'] == [3, 'stopped by another process']
    assert recs['first1']['stopped'] == [3, 'asked by rank 1']
    assert sorted(p.name for p in (out / 'c' / 'srresnet').glob('ckpt_*.pth')) == ['ckpt_0000003.pth']


def test_resume_after_a_kill_is_bitwise_the_uninterrupted_run(two_processes):
    recs, ckpts, out = two_processes
    assert ckpts == ['ckpt_0000004.pth']                       # what the kill left: the checkpoint before it
    assert recs['resume0']['resumed_equals_uninterrupted'] and recs['resume1']['resumed_equals_uninterrupted']
    log = (out / 'b' / 'srresnet' / 'log.csv').read_text().splitlines()
    assert [row.split(',')[0] for row in log[1:]] == [str(t) for t in range(1, 7)]   # rank 0 alone, each once


def test_another_number_of_processes_is_refused(two_processes):
    from ranksrgan_nb import train as T
    _, _, out = two_processes
    r = T.srresnet_recipe(_cfg())                               # one process
    ck = T.load_checkpoint(T.latest_checkpoint(out / 'b' / 'srresnet'))
    with pytest.raises(ValueError, match='written by 2 processes and this run has 1'):
        r.state.load_state_dict(ck)


def test_one_process_uses_nothing_distributed(monkeypatch, tmp_path):
    from ranksrgan_nb import train as T
    def refuse(*a, **k):
        raise AssertionError('DDP used by a single process')
    for name in ('ddp_wrap', 'mean_over_ranks', 'DistributedCB'):
        monkeypatch.setattr(T, name, refuse)
    cfg = _cfg()
    meta = T.load_final(T.train_stage(cfg, tmp_path, T.srresnet_recipe(cfg)))['meta']
    assert 'world' not in meta and not torch.distributed.is_initialized()


def test_batch_not_divisible_by_the_processes():
    from ranksrgan_nb import train as T
    with pytest.raises(ValueError, match='batch_size 8 is not divisible by the 3 processes'):
        T.batches(range(10), 8, 0, 1, world=3)


def test_div2k_is_read_as_subimages_cut_once(monkeypatch, tmp_path):
    from ranksrgan_nb import train as T
    from ranksrgan_nb.config import get_profile
    from ranksrgan_nb.data import sample_images
    from ranksrgan_nb.fileio import write_image
    hr = tmp_path / 'DIV2K_train_HR'
    for name, img in list(sample_images('train').items())[:2]: write_image(hr / f'{name}.png', img)
    monkeypatch.setattr(T, 'get_dataset', lambda name, root=None: hr)     # DIV2K itself is not on this machine
    cfg = get_profile('smoke', train_data='DIV2K', hr_patch=64)
    monkeypatch.setenv('WORLD_SIZE', '2')                                  # under torchrun: not cut by N processes
    with pytest.raises(FileNotFoundError, match='cut DIV2K into sub-images once'):
        T.train_set(cfg)
    monkeypatch.setenv('WORLD_SIZE', '1')
    ds = T.train_set(cfg)
    assert type(ds).__name__ == 'SubImageDataset' and ds[0]['hr'].shape == (3, 64, 64)
    assert (tmp_path / 'DIV2K_train_HR_sub480_x4' / 'subimages.json').is_file()


def test_gpu_check_without_cuda_says_so_and_exits_0():
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA: gpu_check.py would run the real checks')
    p = subprocess.run([sys.executable, str(ROOT / 'benchmarks' / 'gpu_check.py')], capture_output=True, text=True,
                       timeout=120, env={**os.environ, 'PYTHONPATH': str(ROOT)})
    assert p.returncode == 0 and 'no CUDA device' in p.stdout


if __name__ == '__main__':
    _worker(sys.argv[1], sys.argv[2])
