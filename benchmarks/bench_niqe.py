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
import time

import numpy as np
import torch
from scipy import ndimage
from scipy.special import gamma

from ranksrgan_nb import metrics as M
from ranksrgan_nb.data import img2tensor, imresize, sample_images

# ----------------------------------------------------------------------------------------------------------
# The baseline: MATLAB's computequality.m transcribed to NumPy, one image and one block at a time.
# Same algorithm and conventions as ranksrgan_nb.metrics.niqe (incl. zeroing |I - mu| < 1e-10), written
# independently: 2-D 7x7 correlation, a Python loop over blocks, MATLAB's full scan of the 9801-value grid.
# ----------------------------------------------------------------------------------------------------------
_x = np.arange(7) - 3.0
_WIN = np.exp(-(_x[:, None] ** 2 + _x[None] ** 2) / (2 * (7 / 6) ** 2)); _WIN /= _WIN.sum()  # fspecial('gaussian',7,7/6)
_GAM = np.arange(200, 10001) / 1000.0                                                         # 0.2:0.001:10
_R_GAM = gamma(2 / _GAM) ** 2 / (gamma(1 / _GAM) * gamma(3 / _GAM))


def _aggd(vec):
    neg, pos = vec[vec < 0], vec[vec > 0]
    with np.errstate(all='ignore'):
        left = np.sqrt(np.mean(neg ** 2)) if neg.size else np.nan
        right = np.sqrt(np.mean(pos ** 2)) if pos.size else np.nan
        g = left / right
        rhat = np.mean(np.abs(vec)) ** 2 / np.mean(vec ** 2)
        rhatnorm = rhat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    alpha = _GAM[0 if np.isnan(rhatnorm) else int(np.argmin((_R_GAM - rhatnorm) ** 2))]
    c = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * c, right * c


def _block_features(block):
    alpha, bl, br = _aggd(block.ravel())
    feat = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, bl, br = _aggd((block * np.roll(block, shift, axis=(0, 1))).ravel())
        feat += [alpha, (br - bl) * gamma(2 / alpha) / gamma(1 / alpha), bl, br]
    return feat


def niqe_numpy(img: np.ndarray, crop_border: int = 4, block: int = 96) -> float:
    "NIQE (Y, rounded) of one uint8 HxWx3 RGB image, literally as computequality.m."
    num = img.astype(np.int64) @ np.array([65481, 128553, 24966]) + 16 * 255000
    im = ((num + 127500) // 255000).astype(np.float64)                   # rgb2ycbcr Y, rounded
    if crop_border: im = im[crop_border:-crop_border, crop_border:-crop_border]
    H, W = im.shape
    im = im[:H // block * block, :W // block * block]
    feats = []
    for scale in (1, 2):
        mu = ndimage.correlate(im, _WIN, mode='nearest')                  # imfilter(..., 'replicate')
        sigma = np.sqrt(np.abs(ndimage.correlate(im * im, _WIN, mode='nearest') - mu * mu))
        d = im - mu
        d[np.abs(d) < 1e-10] = 0
        s = d / (sigma + 1)
        b = block // scale
        feats.append([_block_features(s[i:i + b, j:j + b])
                      for i in range(0, s.shape[0], b) for j in range(0, s.shape[1], b)])
        if scale == 1: im = imresize(im, 0.5)
    f = np.concatenate([np.array(x) for x in feats], 1)
    mu_p, cov_p = M.niqe_pristine_params()
    mu_d = np.nanmean(f, 0)
    cov_d = np.cov(f[~np.isnan(f).any(1)], rowvar=False)
    d = mu_p - mu_d
    S = (cov_p + cov_d) / 2
    return float(np.sqrt(d @ np.linalg.pinv(S, rcond=S.shape[0] * np.finfo(float).eps) @ d))


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
        variants = [(f'torch batched', t, None) for t in args.threads] + [('torch, whole batch in one chunk', max(args.threads), 2 ** 40)]
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
                    t = time.perf_counter(); M.niqe(batch, 4); runs[(label, threads)].append(time.perf_counter() - t)
                finally: M._CHUNK_PIXELS['cpu'] = old
        base = statistics.median(runs['numpy per-image'])
        for key, ts in runs.items():
            label, threads = (key, 1) if isinstance(key, str) else key
            m = statistics.median(ts)
            rows.append((wname, label, threads, m * 1000, len(imgs) / m, base / m))
        print(f'{wname}: max |torch - numpy| = {diff:.1e}')
    print(f'load average after: {os.getloadavg()}\n')
    print(f"| workload | implementation | threads | ms per batch | images/s | speed-up vs NumPy |")
    print(f"|---|---|---|---|---|---|")
    for w, l, t, ms, ips, sp in rows: print(f'| {w} | {l} | {t} | {ms:.0f} | {ips:.1f} | {sp:.1f}x |')


if __name__ == '__main__':
    main()
