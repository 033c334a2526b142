"""Iterations per second of the full SRGAN and RankSRGAN training steps, and their FLOP floor.

    python benchmarks/bench_train_step.py                         # CPU, cpu-profile patch (64 px), batch 8
    python benchmarks/bench_train_step.py --size 296 --batch 8    # the paper's setting (slow on a CPU)
    python benchmarks/bench_train_step.py --device cuda           # fp32 vs bf16 autocast + channels_last

One iteration is what `train.make_gan_step` does: the G step (G forward, VGG19 to conv5_4 on SR and HR,
D on SR, and for RankSRGAN the frozen Ranker on SR, one backward) and the D step (D on HR and on the
detached SR, one backward), plus both Adam updates. The FLOPs of one iteration are counted by running
that same step under torch.utils.flop_counter.FlopCounterMode; the "floor" is FLOPs / peak, where the
peak is a large square matmul measured in the same run and dtype. iter/s and "% of floor" are the
numbers to compare between machines and settings; absolute times on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from ranksrgan_nb.config import get_profile
from ranksrgan_nb.gan import GanWeights, RankContentLoss, make_gan_step
from ranksrgan_nb.models import Ranker
from ranksrgan_nb.train import build_discriminator, build_generator, build_vgg, prepare_model


def make_step(cfg, device, rank: bool, amp: bool):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        G, D, V = (prepare_model(m, device) for m in (build_generator(cfg), build_discriminator(cfg), build_vgg(cfg)))
    oG, oD = torch.optim.Adam(G.parameters(), 1e-4), torch.optim.Adam(D.parameters(), 1e-4)
    extra = {'l_g_rank': RankContentLoss(prepare_model(Ranker(cfg.r_nf), device))} if rank else None
    return make_gan_step(G, D, V, oG, oD, GanWeights(), device, amp, extra_losses=extra)


def batch(cfg, device):
    lr = torch.rand(cfg.batch_size, 3, cfg.hr_patch // 4, cfg.hr_patch // 4)
    return {'lr': lr, 'hr': torch.rand(cfg.batch_size, 3, cfg.hr_patch, cfg.hr_patch)}


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def time_step(step, b, device, n):
    step(b); step(b); sync(device)                                 # warm-up (allocator, cudnn autotune)
    ts = []
    for _ in range(n):
        t = time.perf_counter(); step(b); sync(device); ts.append(time.perf_counter() - t)
    return statistics.median(ts), min(ts)


def step_flops(cfg, rank: bool) -> float:
    "FLOPs of one iteration, counted on the CPU with a batch of 2 (BatchNorm needs 2) and scaled to the batch size."
    one = get_profile(cfg, batch_size=2)
    step = make_step(one, torch.device('cpu'), rank, amp=False)
    with FlopCounterMode(display=False) as fc:
        step(batch(one, 'cpu'))
    return fc.get_total_flops() * cfg.batch_size / 2


def matmul_peak(device, dtype, n=4096 if torch.cuda.is_available() else 2048, reps=5) -> float:
    a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)
    a @ b; sync(device)
    t = time.perf_counter()
    for _ in range(reps): a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='cpu')
    ap.add_argument('--size', type=int, default=64, help='HR patch size (paper: 296)')
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--iters', type=int, default=3)
    a = ap.parse_args()
    device = torch.device(a.device)
    cfg = get_profile('cpu', hr_patch=a.size, batch_size=a.batch, device=a.device)
    print(f'device {device} ({torch.cuda.get_device_name() if device.type == "cuda" else torch.get_num_threads()} '
          f'{"" if device.type == "cuda" else "threads"}), torch {torch.__version__}, batch {a.batch}, HR {a.size}x{a.size}')
    modes = [('fp32', False)] + ([('bf16+channels_last', True)] if device.type == 'cuda' else [])
    print(f'{"step":10s} {"mode":20s} {"GFLOP/iter":>10s} {"ms median":>10s} {"iter/s":>7s} {"peak TFLOP/s":>12s} {"% of floor":>10s}')
    for rank in (False, True):
        flops = step_flops(cfg, rank)
        for mode, amp in modes:
            peak = matmul_peak(device, torch.bfloat16 if amp else torch.float32)
            if device.type == 'cuda' and not amp: torch.backends.cuda.matmul.allow_tf32 = False
            med, best = time_step(make_step(cfg, device, rank, amp), batch(cfg, device), device, a.iters)
            print(f'{"RankSRGAN" if rank else "SRGAN":10s} {mode:20s} {flops / 1e9:10.1f} {med * 1e3:10.0f} '
                  f'{1 / med:7.2f} {peak / 1e12:12.2f} {100 * flops / peak / med:9.1f}%')


if __name__ == '__main__':
    main()
