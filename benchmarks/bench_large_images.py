"""Peak memory and time of NIQE, SSIM, PSNR, `imresize` and `bicubic_degrade` on one large image.

    OMP_NUM_THREADS=2 python benchmarks/bench_large_images.py                 # 8000x8000, stripes vs one stripe
    OMP_NUM_THREADS=2 python benchmarks/bench_large_images.py --size 4000 --stripes default

Each case runs in its own subprocess, so its peak resident memory (`os.wait4`'s ru_maxrss, which sees torch's
allocations that tracemalloc does not) is its own. "stripes" = `data.STRIPE_PIXELS` as shipped; "one stripe" =
`STRIPE_PIXELS = None`, the whole image at once (the way these functions worked before they were striped).
`base` is the peak before the call (Python, torch, the input arrays); `peak` includes the call. A case that
needs more than `--max-gb` of address space stops with MemoryError instead of pushing the machine into swap.
Part of what the striped cases add to `base` is glibc keeping freed stripe buffers in its heap (with
MALLOC_MMAP_THRESHOLD_=1000000 the PSNR peak at 8000x8000 drops from 1.3 to 0.76 GB); it does not grow with
the image.

The inputs: a uint8 8000x8000 RGB photograph made of mirrored tiles of scikit-image's astronaut, the same image
shifted by one pixel as the reference of SSIM/PSNR, and for `imresize` the same photograph as float32 in [0, 1]
(768 MB) resized by 1/2.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

CASES = ('niqe', 'ssim', 'psnr', 'imresize', 'bicubic_degrade')


def _photo(n: int):
    import numpy as np
    from skimage.data import astronaut
    a = astronaut()
    tile = np.concatenate([np.concatenate([a, a[:, ::-1]], 1), np.concatenate([a[::-1], a[::-1, ::-1]], 1)], 0)
    reps = -(-n // tile.shape[0])
    return np.ascontiguousarray(np.tile(tile, (reps, reps, 1))[:n, :n])


def child(case: str, stripes: str, n: int) -> None:
    "Run one case and print 'result seconds base_kb'."
    import numpy as np
    from ranksrgan_nb import data as D, metrics as M
    if stripes == 'one':
        if not hasattr(D, 'STRIPE_PIXELS'): raise SystemExit('this version of ranksrgan_nb has no STRIPE_PIXELS')
        D.STRIPE_PIXELS = None
    img = _photo(n)
    args = {'niqe': lambda: (M.niqe, (img, 4)),
            'ssim': lambda: (M.ssim, (img, np.roll(img, 1, 1), 4)),
            'psnr': lambda: (M.psnr, (img, np.roll(img, 1, 1), 4)),
            'imresize': lambda: (D.imresize, (np.divide(img, 255, dtype=np.float32), 0.5)),
            'bicubic_degrade': lambda: (D.bicubic_degrade, (img, 4))}
    fn, a = args[case]()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = fn(*a)
    dt = time.perf_counter() - t0
    summary = f'{float(out):.6f}' if np.ndim(out) == 0 else f'{out.shape} {out.dtype}'
    print(f'RESULT {summary}|{dt:.2f}|{base}')


def run(case: str, stripes: str, n: int, max_gb: float) -> tuple[str, float, float, float]:
    "(result, seconds, base GB, peak GB) of one case in a fresh process."
    def limit():
        lim = int(max_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    with tempfile.TemporaryFile('w+') as fo, tempfile.TemporaryFile('w+') as fe:
        p = subprocess.Popen([sys.executable, __file__, '--child', case, '--stripes', stripes, '--size', str(n)],
                             stdout=fo, stderr=fe, text=True, preexec_fn=limit)
        _, p.returncode, ru = os.wait4(p.pid, 0)
        fo.seek(0); fe.seek(0); out, err = fo.read(), fe.read()
    peak = ru.ru_maxrss / 2 ** 20                                    # kB -> GB (Linux reports kB)
    line = next((l for l in out.splitlines() if l.startswith('RESULT ')), None)
    if line is None:
        return f'failed: {(err.strip().splitlines() or ["?"])[-1][:80]}', float('nan'), float('nan'), peak
    res, dt, base = line[len('RESULT '):].split('|')
    return res, float(dt), int(base) / 2 ** 20, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--size', type=int, default=8000)
    ap.add_argument('--cases', default=','.join(CASES))
    ap.add_argument('--stripes', default='default,one', help="'default' (as shipped) and/or 'one' (STRIPE_PIXELS=None)")
    ap.add_argument('--max-gb', type=float, default=16.0, help='address-space limit of each case')
    ap.add_argument('--child', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: return child(a.child, a.stripes, a.size)
    import ranksrgan_nb, torch
    print(f'{a.size}x{a.size} RGB, torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS")}, ranksrgan_nb from {os.path.dirname(ranksrgan_nb.__file__)}')
    print('| case | stripes | seconds | base GB | peak GB | result |\n|---|---|---|---|---|---|')
    for case in a.cases.split(','):
        for s in a.stripes.split(','):
            res, dt, base, peak = run(case, s, a.size, a.max_gb)
            print(f'| {case} | {"as shipped" if s == "default" else "one (whole image)"} | {dt:.1f} | {base:.2f} | {peak:.2f} | {res} |',
                  flush=True)


if __name__ == '__main__':
    main()
