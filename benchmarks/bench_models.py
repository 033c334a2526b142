"""Forward+backward time of RankSRGAN's networks (G, D, R, VGG19 features), with FLOP counts.

    python benchmarks/bench_models.py                       # batch 8 at 296x296 (G: 74x74 input), CPU, paper widths
    python benchmarks/bench_models.py --batch 2 --size 128  # smaller, for a quick look
    python benchmarks/bench_models.py --device cuda         # fp32 vs bf16 autocast, NCHW vs channels_last

Each row is one training-style step of one network, timed as forward + backward:
  G   SRResNet, LR input size/4, parameters trainable (the generator step, without the losses)
  D   Discriminator, parameters trainable, input without grad (the discriminator step)
  R   Ranker, parameters trainable (a Ranker training step), BatchNorm in training mode
  VGG VGG19 to conv5_4, frozen, gradient to the input only (the perceptual loss inside the G step)
FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on the meta device (convs, linears, matmuls;
1 multiply-add = 2 FLOPs). The baseline, measured right before each row in the same run, is a square matmul in that row's dtype:
a practical peak to hold the conv throughput against. The machine may be shared: read ratios, not absolutes.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from ranksrgan_nb.models import Discriminator, RandomVGGWarning, Ranker, SRResNet, VGGFeatures, count_params


def build(name: str, nf: int, size: int, device) -> torch.nn.Module:
    "One network at width nf (VGG19 is always full width), in the mode it is trained/used in."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RandomVGGWarning)           # weights do not change the time
        m = {'G': lambda: SRResNet(nf, 16, 4), 'D': lambda: Discriminator(nf, size), 'R': lambda: Ranker(nf),
             'VGG': lambda: VGGFeatures(weights='random')}[name]()
    return m.to(device).train()


def make_input(name: str, batch: int, size: int, device, channels_last: bool = False) -> torch.Tensor:
    s = size // 4 if name == 'G' else size
    x = torch.rand(batch, 3, s, s, device=device)
    if channels_last: x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(name == 'VGG')                         # VGG: gradient flows to its input (the SR image)


def step(model, x, autocast_dtype=None):
    "Forward + backward of a scalar loss; returns nothing (gradients are left in place)."
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        out = model(x)
    out.float().mean().backward()


def count_flops(name: str, nf: int, batch: int, size: int) -> tuple[float, float]:
    "(forward, forward+backward) FLOPs, counted on the meta device."
    with torch.device('meta'):
        m = build(name, nf, size, 'meta')
    x = make_input(name, batch, size, 'meta')
    with FlopCounterMode(display=False) as fc:
        out = m(x)
    fwd = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        m(x).float().mean().backward()
    return float(fwd), float(fc.get_total_flops())


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def time_it(fn, device, warmup: int, repeat: int) -> list[float]:
    "Seconds per call, `repeat` times after `warmup` calls."
    for _ in range(warmup): fn()
    sync(device)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); sync(device); ts.append(time.perf_counter() - t0)
    return ts


def matmul_peak(device, dtype, n: int, repeat: int) -> float:
    "GFLOP/s of an n x n matmul: the practical peak of this machine for dense math."
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    ts = time_it(lambda: a @ b, device, 2, repeat)
    return 2 * n ** 3 / min(ts) / 1e9


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch', type=int, default=8, help='batch size (paper: 8)')
    p.add_argument('--size', type=int, default=296, help='HR patch size; G gets size/4 (paper: 296)')
    p.add_argument('--nf', type=int, default=64, help='width of G, D and R (paper: 64); VGG19 is always full width')
    p.add_argument('--nets', default='G,D,R,VGG', help='comma-separated subset of G,D,R,VGG')
    p.add_argument('--device', default='auto', help="'cpu', 'cuda' or 'auto' (cuda if available)")
    p.add_argument('--repeat', type=int, default=3, help='timed repetitions (median and min reported)')
    p.add_argument('--warmup', type=int, default=1, help='untimed repetitions first')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s choice)')
    p.add_argument('--all-variants', action='store_true', help='on CPU too: fp32/bf16 autocast x NCHW/channels_last (always on CUDA)')
    a = p.parse_args(argv)
    if a.size % 4 or a.size < 32: p.error('--size must be a multiple of 4 (G takes size/4) and >= 32 (D and R halve it five times)')
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device('cuda' if a.device == 'auto' and torch.cuda.is_available() else ('cpu' if a.device == 'auto' else a.device))
    nets = [n.strip() for n in a.nets.split(',') if n.strip()]

    print(f'torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads, device {device}'
          + (f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''))
    print(f'ran: batch {a.batch}, HR {a.size}x{a.size} (G input {a.size // 4}x{a.size // 4}), nf {a.nf}, '
          f'{a.warmup} warm-up + {a.repeat} timed steps per row')
    variants = [('fp32', None, False)]
    n_mm = 8192 if device.type == 'cuda' else 2048
    if device.type == 'cuda' or a.all_variants:
        variants += [('fp32 channels_last', None, True), ('bf16 autocast', torch.bfloat16, False),
                     ('bf16 autocast channels_last', torch.bfloat16, True)]
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        print(f"TF32: matmul {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}, cuDNN convs "
              f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}")
    print(f'baseline: a {n_mm}^2 matmul in the same dtype, timed right before each row (the machine may be shared)')
    if hasattr(os, 'getloadavg'):
        load = os.getloadavg()[0]
        print(f'load average at start: {load:.2f}' + (f'  WARNING: above the {os.cpu_count()} CPUs, other processes compete; '
              'CPU times will be inflated (try --threads 1, or rerun when the machine is idle)' if load > (os.cpu_count() or 1) - 0.5 else ''))

    rows = []
    for name in nets:
        fwd, tot = count_flops(name, a.nf, a.batch, a.size)
        for label, dtype, cl in variants:
            model = build(name, a.nf, a.size, device)
            if cl: model = model.to(memory_format=torch.channels_last)
            x = make_input(name, a.batch, a.size, device, cl)
            try: ts = time_it(lambda: step(model, x, dtype), device, a.warmup, a.repeat)
            except RuntimeError as e:                                  # e.g. out of memory: report, keep going
                print(f'{name} {label}: failed ({str(e).splitlines()[0][:120]})'); continue
            best, med = min(ts), statistics.median(ts)
            peak = matmul_peak(device, dtype or torch.float32, n_mm, 5)
            rows.append((name, label, count_params(model), fwd / 1e9, tot / 1e9, med * 1e3, best * 1e3, tot / best / 1e9,
                         peak, 100 * tot / best / 1e9 / peak))
            del model, x
            if device.type == 'cuda': torch.cuda.empty_cache()

    hdr = ('net', 'variant', 'params', 'fwd GFLOP', 'fwd+bwd GFLOP', 'ms median', 'ms min', 'GFLOP/s (min)', 'matmul GFLOP/s', '% of matmul')
    print('\n| ' + ' | '.join(hdr) + ' |\n|' + '---|' * len(hdr))
    for r in rows:
        print(f'| {r[0]} | {r[1]} | {r[2]:,} | {r[3]:.4g} | {r[4]:.4g} | {r[5]:.0f} | {r[6]:.0f} | {r[7]:.3g} | {r[8]:.0f} | {r[9]:.0f} |')
    if hasattr(os, 'getloadavg'): print(f'load average at end: {os.getloadavg()[0]:.2f}')
    return rows


if __name__ == '__main__':
    main()
