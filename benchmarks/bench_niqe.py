"""NIQE throughput: the batched torch implementation (`ranksrgan_nb.metrics.niqe`) against a straightforward
per-image NumPy port of the same algorithm, in the same run.

    python benchmarks/bench_niqe.py            # default: 5 interleaved repeats, torch with 1 and 2 threads
    python benchmarks/bench_niqe.py --repeat 9

Workloads: a batch of 16 patches of 296x296 (the rank-dataset patch size) cut from the bundled training photos,
and 8 images of 512x512. NIQE convention: Y channel, crop 4 (the Ranker labels). The two implementations are
run alternately and the median time of each is reported, so that load from other processes hits both alike;
the load average is printed before and after (on a shared machine, compare the speed-ups, not the absolute
numbers). This is a benchmark, not a test: it asserts only that both implementations agree.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ranksrgan_nb import metrics as M
from ranksrgan_nb.data import img2tensor, sample_images

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
from niqe_reference import ref_niqe, ref_y  # noqa: E402  (tests/ put on the path just above)

# ----------------------------------------------------------------------------------------------------------
# The baseline: MATLAB's computequality.m transcribed to NumPy, one image and one block at a time
# (tests/niqe_reference.py, the reference of the tests): same algorithm and conventions as
# ranksrgan_nb.metrics.niqe, written independently.
# ----------------------------------------------------------------------------------------------------------
def niqe_numpy(img: np.ndarray, crop_border: int = 4) -> float:
    "NIQE (Y, rounded) of one uint8 HxWx3 RGB image, literally as computequality.m."
    y = ref_y(img)
    return ref_niqe(y[crop_border:-crop_border, crop_border:-crop_border] if crop_border else y)


# ----------------------------------------------------------------------------------------------------------
def workloads() -> dict[str, list[np.ndarray]]:
    imgs = sample_images('all')
    patches = []
    for name in ('astronaut', 'coffee', 'rocket', 'motorcycle_left'):
        a = imgs[name]
        for (i, j) in ((0, 0), (0, 148), (100, 0), (100, 148)):             # stride-148 grid, as the rank dataset
            patches.append(a[i:i + 296, j:j + 296])
    g = imgs['grace_hopper'][:512]
    big = [imgs['astronaut'], g, imgs['astronaut'][:, ::-1], g[:, ::-1]] * 2
    return {'16 patches 296x296': patches, '8 images 512x512': big}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--repeat', type=int, default=5, help='interleaved repeats; the median is reported')
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='torch intra-op threads to try')
    args = ap.parse_args()
    print(f'torch {torch.__version__}, {os.cpu_count()} CPU(s), load average before: {os.getloadavg()}')
    rows = []
    for wname, imgs in workloads().items():
        batch = torch.stack([img2tensor(a) for a in imgs])
        ref = np.array([niqe_numpy(a) for a in imgs])
        ours = M.niqe(batch, 4).numpy()
        diff = float(np.max(np.abs(ours - ref)))
        assert diff < 1e-6, f'implementations disagree by {diff}'
        runs = {'numpy per-image': []}
        variants = [('torch batched', t, None) for t in args.threads]
        variants += [('torch, whole batch in one chunk', max(args.threads), 2 ** 40)]
        for v in variants: runs[v[:2]] = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            for a in imgs: niqe_numpy(a)
            runs['numpy per-image'].append(time.perf_counter() - t)
            for label, threads, chunk in variants:
                torch.set_num_threads(threads)
                old = M._CHUNK_PIXELS['cpu']
                if chunk: M._CHUNK_PIXELS['cpu'] = chunk
                try:
                    M.niqe(batch, 4)  # warm
                    t = time.perf_counter()
                    M.niqe(batch, 4)
                    runs[(label, threads)].append(time.perf_counter() - t)
                finally: M._CHUNK_PIXELS['cpu'] = old
        base = statistics.median(runs['numpy per-image'])
        for key, ts in runs.items():
            label, threads = (key, 1) if isinstance(key, str) else key
            m = statistics.median(ts)
            rows.append((wname, label, threads, m * 1000, len(imgs) / m, base / m))
        print(f'{wname}: max |torch - numpy| = {diff:.1e}')
    print(f'load average after: {os.getloadavg()}\n')
    print("| workload | implementation | threads | ms per batch | images/s | speed-up vs NumPy |")
    print("|---|---|---|---|---|---|")
    for w, l, t, ms, ips, sp in rows: print(f'| {w} | {l} | {t} | {ms:.0f} | {ips:.1f} | {sp:.1f}x |')


if __name__ == '__main__':
    main()
