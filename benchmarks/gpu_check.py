"""One command that checks a GPU before the paper profile is run on it (issue 24); at most ~10 minutes on one GPU.

    python benchmarks/gpu_check.py                       # all checks, summary in gpu_check.json
    python benchmarks/gpu_check.py --iters 100 --json out.json

(a) each paper-profile stage's training step (SRResNet L1, SRGAN, RankSRGAN, the Ranker) at the paper's sizes
    (HR 296 px, batch 8; Ranker pairs of 296 px, batch 16) on random tensors, `--iters` iterations each: iterations
    per second, peak GPU memory, and the wall time of the profile's iterations at that speed (data loading,
    validation and the rank dataset not included: an estimate);
(b) bf16 autocast against fp32 on one batch: the generator's output and the losses of one GAN step;
(c) NIQE, SSIM and MATLAB bicubic on the GPU against the CPU, both in float64, to 1e-6;
(d) with two GPUs or more: tests/test_ddp.py (two processes under torchrun) with NCCL.
It exits 1 when any check fails, and writes a JSON summary. Without CUDA it says so and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _sync():
    if torch.cuda.is_available(): torch.cuda.synchronize()


def stage_steps(cfg, device, amp: bool) -> dict:
    "{stage: (step, batch)} of the paper profile's stages, on random tensors at the profile's sizes."
    from ranksrgan_nb.method import GanWeights, RankContentLoss, make_gan_step, make_ranker_step
    from ranksrgan_nb.models import Ranker
    from ranksrgan_nb.train import build_discriminator, build_generator, build_vgg, make_sr_step, prepare_model
    B, p, s = cfg.batch_size, cfg.hr_patch, cfg.scale
    pairs = {k: torch.rand(cfg.ranker_batch, 3, cfg.rank_patch, cfg.rank_patch) for k in ('img1', 'img2')}
    pairs |= {'score1': torch.rand(cfg.ranker_batch), 'score2': torch.rand(cfg.ranker_batch)}
    sr_batch = {'lr': torch.rand(B, 3, p // s, p // s), 'hr': torch.rand(B, 3, p, p)}
    adam = lambda m: torch.optim.Adam(m.parameters(), 1e-4)
    out = {}
    G = prepare_model(build_generator(cfg), device)
    out['srresnet'] = (make_sr_step(G, adam(G), device, amp), sr_batch)
    for name, rank in (('srgan', False), ('ranksrgan', True)):
        G, D, V = (prepare_model(m, device) for m in (build_generator(cfg), build_discriminator(cfg), build_vgg(cfg)))
        extra = {'l_g_rank': RankContentLoss(prepare_model(Ranker(cfg.r_nf), device))} if rank else None
        out[name] = (make_gan_step(G, D, V, adam(G), adam(D), GanWeights(), device, amp, extra_losses=extra), sr_batch)
    R = prepare_model(Ranker(cfg.r_nf), device)
    out['ranker'] = (make_ranker_step(R, adam(R), device), pairs)
    return out


def profile_iterations(cfg) -> dict:
    "Iterations of each stage in the paper profile's pipeline (SRGAN+ and the RankSRGAN seeds at GAN speed)."
    seeds = len(cfg.gan_seeds)
    return {'srresnet': cfg.sr_iters, 'srgan': cfg.gan_iters + cfg.plus_iters + cfg.gan_iters * (seeds - 1),
            'ranker': cfg.ranker_iters, 'ranksrgan': cfg.gan_iters * len(cfg.gan_seeds)}


def check_speed(cfg, device, iters: int) -> dict:
    "(a): it/s and peak memory of each stage's step; the estimated hours of the profile's iterations."
    res, its = {}, profile_iterations(cfg)
    for name, (step, batch) in stage_steps(cfg, device, cfg.amp).items():
        if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()
        for _ in range(3): step(batch)                        # warm-up: cuDNN's autotuning, the allocator
        _sync()
        t = time.perf_counter()
        for _ in range(iters): step(batch)
        _sync()
        rate = iters / (time.perf_counter() - t)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else float('nan')
        res[name] = {'it_per_s': round(rate, 2), 'peak_gib': round(peak, 2),
                     'profile_iters': its[name], 'est_hours': round(its[name] / rate / 3600, 1)}
        print(f'  {name:10s} {rate:7.2f} it/s   peak {res[name]["peak_gib"]:6.2f} GiB   '
              f'{its[name]:>9,} iterations -> ~{res[name]["est_hours"]} h', flush=True)
    total = sum(r['est_hours'] for r in res.values())
    print(f'  the paper profile on this GPU: ~{total:.0f} h of training steps (estimate: no data loading, '
          'validation or rank dataset)')
    return {'stages': res, 'est_total_hours': round(total, 1)}


def check_bf16(cfg, device) -> dict:
    "(b): the same G and batch with and without bf16 autocast: relative differences of SR and of one GAN step's losses."
    from ranksrgan_nb.models import autocast
    from ranksrgan_nb.train import build_generator, prepare_model
    torch.manual_seed(0)
    G = prepare_model(build_generator(cfg), device).eval()
    lr = torch.rand(2, 3, cfg.hr_patch // cfg.scale, cfg.hr_patch // cfg.scale, device=device)
    with torch.no_grad():
        fp32 = G(lr).float()
        with autocast(device, True): bf16 = G(lr).float()
    sr_rel = ((bf16 - fp32).norm() / fp32.norm()).item()
    losses = {}
    for amp in (False, True):
        torch.manual_seed(0)
        step, batch = stage_steps(cfg, device, amp)['srgan']
        losses[amp] = step({k: v.clone() for k, v in batch.items()})
    loss_rel = max(abs(losses[True][k] - losses[False][k]) / max(abs(losses[False][k]), 1e-8)
                   for k in ('l_g_fea', 'l_g_total', 'l_d_real', 'l_d_fake'))
    ok = sr_rel < 2e-2 and loss_rel < 5e-2
    print(f'  bf16 vs fp32: SR relative L2 {sr_rel:.2e} (< 2e-2), losses relative {loss_rel:.2e} (< 5e-2): '
          f'{"ok" if ok else "MISMATCH"}')
    return {'sr_rel': sr_rel, 'loss_rel': loss_rel, 'ok': ok}


def check_metrics(device) -> dict:
    "(c): NIQE, SSIM and bicubic resizing of float64 tensors on the GPU against the CPU, to 1e-6."
    from ranksrgan_nb.data import imresize
    from ranksrgan_nb.metrics import niqe, ssim
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 200, 200, generator=g, dtype=torch.float64)   # NIQE: 2x2 blocks of 96 after the crop
    b = (a + 0.05 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    pairs = {'niqe': lambda x, y: niqe(x, crop_border=4), 'ssim': lambda x, y: ssim(x, y, crop_border=4),
             'bicubic': lambda x, y: imresize(x, 1 / 4)}
    res = {}
    for name, fn in pairs.items():
        cpu, gpu = fn(a, b), fn(a.to(device), b.to(device)).cpu()
        d = (torch.as_tensor(gpu, dtype=torch.float64) - torch.as_tensor(cpu, dtype=torch.float64)).abs().max().item()
        res[name] = {'max_abs_diff': d, 'ok': d < 1e-6}
        print(f'  {name:8s} GPU vs CPU (float64): {d:.2e} (< 1e-6): {"ok" if d < 1e-6 else "MISMATCH"}')
    return res


def check_ddp() -> dict:
    "(d): the two-process tests with NCCL, when two GPUs are visible."
    if torch.cuda.device_count() < 2:
        print('  one GPU: the NCCL two-process test needs two (it runs with gloo on the CPU in tests/test_ddp.py)')
        return {'skipped': 'fewer than 2 GPUs'}
    env = {**os.environ, 'DDP_DEVICE': 'cuda', 'PYTHONPATH': str(ROOT)}
    cmd = [sys.executable, '-m', 'pytest', '-q', str(ROOT / 'tests' / 'test_ddp.py'), '-k', 'not one_process']
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    print('  ' + (p.stdout.strip().splitlines() or ['(no output)'])[-1])
    return {'ok': p.returncode == 0, 'tail': p.stdout[-2000:]}


def _ok(result) -> bool:
    "A check's verdict: its 'ok', else that of every part; a skipped check or a plain value passes."
    if not isinstance(result, dict) or 'skipped' in result: return True
    if 'ok' in result: return bool(result['ok'])
    return all(map(_ok, result.values()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--iters', type=int, default=200, help='timed iterations per stage (after 3 of warm-up)')
    ap.add_argument('--json', default='gpu_check.json', help='where the summary goes')
    ap.add_argument('--self-test', action='store_true', help='run every check on the CPU at the smoke profile '
                    '(checks this script, not a GPU)')
    a = ap.parse_args()
    if not torch.cuda.is_available() and not a.self_test:
        print('gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False): nothing to check. '
              'Run it on the GPU machine; the CPU checks are in tests/test_ddp.py.')
        return 0
    warnings.filterwarnings('ignore')
    from ranksrgan_nb.config import get_profile
    device = torch.device('cpu' if a.self_test else 'cuda')
    cfg = get_profile('smoke' if a.self_test else 'paper', device=device.type, vgg_weights='random', batch_size=8,
                      ranker_batch=16)                                   # random VGG19: no download; the same FLOPs
    name = 'CPU (self-test)' if a.self_test else torch.cuda.get_device_name()
    print(f'gpu_check: {name} x{torch.cuda.device_count()}, torch {torch.__version__}, bf16 autocast {cfg.amp}')
    summary, t0 = {'device': name, 'gpus': torch.cuda.device_count(), 'torch': torch.__version__}, time.perf_counter()
    for key, fn in (('metrics', lambda: check_metrics(device)), ('bf16', lambda: check_bf16(cfg, device)),
                    ('speed', lambda: check_speed(cfg, device, a.iters)), ('ddp', check_ddp)):
        print(f'({key})', flush=True)
        try: summary[key] = fn()
        except Exception as e:                                       # one failed check must not hide the others
            print(f'  FAILED: {type(e).__name__}: {e}')
            summary[key] = {'ok': False, 'error': f'{type(e).__name__}: {e}'}
        if device.type == 'cuda': torch.cuda.empty_cache()
    summary['ok'], summary['seconds'] = all(map(_ok, summary.values())), round(time.perf_counter() - t0, 1)
    Path(a.json).write_text(json.dumps(summary, indent=1))
    print(f'gpu_check: {"all checks passed" if summary["ok"] else "A CHECK FAILED"} in {summary["seconds"]} s; '
          f'summary in {a.json}')
    return 0 if summary['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
