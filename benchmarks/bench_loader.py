"""Training samples per second of the data loader, on the CPU, with 0, 1 and 2 worker processes (issue 24).

    python benchmarks/bench_loader.py                                 # SunHays80 from ../shared/datasets
    python benchmarks/bench_loader.py --images DIR --patch 296 --batch 8 --batches 40

Two ways to read the paper profile's data (HR patch 296, batch 8, random flips and rotations):
- `memory`: PairedPatchDataset, every image and its bicubic LR held in memory (what the smoke and cpu profiles use);
  its start-up (reading the images and resizing each) is printed apart;
- `subimages`: SubImageDataset over 480-px sub-images cut once by extract_subimages (what the paper profile uses
  for DIV2K), two PNG files read and decoded per sample.
DIV2K is not on this machine; the Sun-Hays photographs (~1024 px) stand in for it: per sample, the sub-image path
reads the same amount whatever the source images were, so its rate is DIV2K's on the same CPU.
A GPU step of the paper profile needs batch / (iterations per second) samples each second (gpu_check.py prints its
it/s); the printed rates say how many workers feed it.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from ranksrgan_nb.data import PairedPatchDataset, SubImageDataset, extract_subimages, list_images
from ranksrgan_nb.train import batches

ROOT = Path(__file__).resolve().parents[1]


def rate(ds, batch: int, n_batches: int, workers: int) -> float:
    "Samples per second of `batches` over `ds` (the first batch, with the workers' start, not timed)."
    it = iter(batches(ds, batch, 0, n_batches + 1, num_workers=workers, pin_memory=False))
    next(it)
    t = time.perf_counter()
    for _ in it: pass
    return n_batches * batch / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--images', default=str(ROOT.parent / 'shared' / 'datasets' / 'SunHays80' / 'HR'))
    ap.add_argument('--n-images', type=int, default=12, help='how many of the images (extraction takes a while)')
    ap.add_argument('--patch', type=int, default=296)
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--batches', type=int, default=25)
    ap.add_argument('--workers', default='0,1,2')
    a = ap.parse_args()
    torch.set_num_threads(1)
    files = list_images(a.images)[:a.n_images]
    print(f'{len(files)} images from {a.images}; HR patch {a.patch}, batch {a.batch}, {a.batches} batches; '
          f'{os.cpu_count()} CPUs, torch {torch.__version__}')
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        mem = PairedPatchDataset(files, hr_patch=a.patch, seed=0)
        print(f'memory: start-up {time.perf_counter() - t:.1f} s ({(time.perf_counter() - t) / len(files):.2f} s '
              'per image: read + bicubic LR), in every process')
        t = time.perf_counter()
        sub = SubImageDataset(extract_subimages(files, Path(d) / 'sub', progress=False), hr_patch=a.patch, seed=0)
        print(f'subimages: one-time extraction {time.perf_counter() - t:.1f} s for {len(sub.names)} sub-images '
              f'({(time.perf_counter() - t) / len(files):.2f} s per image)')
        print(f'{"dataset":10s} {"workers":>7s} {"samples/s":>10s}')
        for name, ds in (('memory', mem), ('subimages', sub)):
            for w in (int(x) for x in a.workers.split(',')):
                print(f'{name:10s} {w:7d} {rate(ds, a.batch, a.batches, w):10.1f}', flush=True)


if __name__ == '__main__':
    main()
