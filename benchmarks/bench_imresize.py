"""MATLAB-compatible bicubic `imresize` on DIV2K-sized images: our numpy and torch paths against the
same two resize matrices applied with plain `np.einsum` (no BLAS), in the same run.

    python benchmarks/bench_imresize.py            # a 2040x1356 RGB image, x1/4 (the DIV2K degradation) and x0.4

All three compute the same separable product; the table also prints their largest difference.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ranksrgan_nb.data import imresize, resize_matrix


def best_of(fn, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return min(ts), out


def einsum_baseline(x, scale):
    mh, mw = resize_matrix(x.shape[0], scale, True), resize_matrix(x.shape[1], scale, True)
    return np.einsum('pw,ow...->op...', mw, np.einsum('oh,hw...->ow...', mh, x))


def main():
    x = np.random.default_rng(0).random((1356, 2040, 3))
    xt = torch.from_numpy(x).permute(2, 0, 1)[None]
    print('| scale | implementation | ms | speed-up vs einsum | max abs diff vs einsum |\n|---|---|---|---|---|')
    for s in (0.25, 0.4):
        t0, ref = best_of(lambda: einsum_baseline(x, s), 1)
        t1, a = best_of(lambda: imresize(x, s))
        t2, b = best_of(lambda: imresize(xt, s))
        b = b[0].permute(1, 2, 0).numpy()
        for name, t, out in (('np.einsum (baseline)', t0, ref), ('imresize, numpy', t1, a), ('imresize, torch (float64)', t2, b)):
            print(f'| {s} | {name} | {1000 * t:.0f} | {t0 / t:.1f}x | {np.abs(out - ref).max():.1e} |')


if __name__ == '__main__':
    main()
