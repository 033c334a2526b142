"""`ranksrgan sr` speed and peak memory: the full-width SRResNet (random weights) on a 1000x750 LR image,
i.e. a 4000x3000 output, whole and in tiles. Each setting runs in a fresh process, so its peak resident
memory (ru_maxrss) is its own.

    python benchmarks/bench_sr_tiles.py                  # tiles 0 (whole image), 128, 256, 512
    python benchmarks/bench_sr_tiles.py --tiles 256 --lr 500x375

Prints megapixels of output per second and the peak memory of each setting.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(tile: int, w: int, h: int, threads: int) -> dict:
    import numpy as np
    import torch
    from ranksrgan_nb.models import SRResNet
    from ranksrgan_nb.train import super_resolve
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    G = SRResNet().eval()
    lr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    sr = super_resolve(G, lr, tile=tile or None)
    sec = time.perf_counter() - t
    return {'tile': tile, 'out': f'{sr.shape[1]}x{sr.shape[0]}', 'seconds': round(sec, 1),
            'MP/s': round(sr.shape[0] * sr.shape[1] / 1e6 / sec, 3),
            'peak_GB': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            'before_GB': round(rss0 / 2**20, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--tiles', type=int, nargs='+', default=[0, 128, 256, 512], help='LR tile sizes; 0: the whole image')
    ap.add_argument('--lr', default='1000x750', help='LR size WxH (default: 1000x750, a 4000x3000 output)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--one', type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    w, h = map(int, a.lr.split('x'))
    if a.one is not None:
        print(json.dumps(one(a.one, w, h, a.threads))); return
    print(f'SRResNet(nf=64, nb=16), x4, LR {w}x{h}, {a.threads} threads; peak = max resident memory of the process')
    print(f'{"tile":>6} {"output":>10} {"seconds":>8} {"MP/s":>7} {"peak GB":>8}')
    for tile in a.tiles:
        r = subprocess.run([sys.executable, __file__, '--one', str(tile), '--lr', a.lr, '--threads', str(a.threads)],
                           capture_output=True, text=True, check=True)
        d = json.loads(r.stdout.splitlines()[-1])
        print(f'{d["tile"] or "whole":>6} {d["out"]:>10} {d["seconds"]:8.1f} {d["MP/s"]:7.3f} {d["peak_GB"]:8.2f}')


if __name__ == '__main__':
    main()
