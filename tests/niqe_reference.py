"""A literal NumPy transcription of MATLAB's NIQE (`computequality.m` of the release), one block at a time: the
reference that tests/test_metrics.py checks `ranksrgan_nb.metrics.niqe` against, and that benchmarks/bench_niqe.py
times it against. Written independently of the package's NIQE: 2-D 7x7 correlation, MATLAB's `blkproc` order
(column-major blocks, each read column-major), MATLAB's full scan of the 9801-value grid; the same zeroing of
|I - mu| < 1e-10 as the package. Only `imresize` (MATLAB bicubic) and the pristine model come from the package."""
import math

import numpy as np
from scipy import ndimage
from scipy.special import gamma

from ranksrgan_nb.data import imresize
from ranksrgan_nb.metrics import niqe_pristine_params

GAM = np.arange(200, 10001) / 1000.0                                    # MATLAB's gam = 0.2:0.001:10
R_GAM = gamma(2 / GAM) ** 2 / (gamma(1 / GAM) * gamma(3 / GAM))         # rho(alpha) on the grid
_X7 = np.arange(7) - 3.0
W7 = np.exp(-(_X7[:, None] ** 2 + _X7[None] ** 2) / (2 * (7 / 6) ** 2))
W7 /= W7.sum()                                                           # fspecial('gaussian', 7, 7/6)


def ref_aggd(v):
    "(alpha, beta_l, beta_r) of the moment-matching AGGD fit of the samples `v` (estimateaggdparam.m)."
    neg, pos = v[v < 0], v[v > 0]
    with np.errstate(all='ignore'):
        left = np.sqrt(np.mean(neg ** 2)) if neg.size else np.nan
        right = np.sqrt(np.mean(pos ** 2)) if pos.size else np.nan
        g = left / right
        rn = np.mean(np.abs(v)) ** 2 / np.mean(v ** 2) * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    d = (R_GAM - rn) ** 2
    a = GAM[0 if np.all(np.isnan(d)) else int(np.nanargmin(d))]         # MATLAB min: first index; all-NaN -> 1
    c = np.sqrt(gamma(1 / a) / gamma(3 / a))
    return a, left * c, right * c


def ref_block_features(blk):
    "The 18 features of one MSCN block: the AGGD of the block, and of its products with 4 shifted copies."
    a, bl, br = ref_aggd(blk.flatten('F'))
    f = [a, (bl + br) / 2]
    for sh in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a, bl, br = ref_aggd(blk.flatten('F') * np.roll(blk, sh, axis=(0, 1)).flatten('F'))
        f += [a, (br - bl) * gamma(2 / a) / gamma(1 / a), bl, br]
    return f


def ref_niqe(im):
    "computequality.m on a 0..255 gray image (the channel already chosen and cropped)."
    im = im.astype(np.float64)
    im = im[:im.shape[0] // 96 * 96, :im.shape[1] // 96 * 96]
    cols = []
    for sc in (1, 2):
        mu = ndimage.correlate(im, W7, mode='nearest')                   # imfilter(..., 'replicate')
        sig = np.sqrt(np.abs(ndimage.correlate(im * im, W7, mode='nearest') - mu * mu))
        d = im - mu
        d[np.abs(d) < 1e-10] = 0
        s = d / (sig + 1)
        b = 96 // sc
        cols.append(np.array([ref_block_features(s[i:i + b, j:j + b])     # blkproc order: column-major
                              for j in range(0, s.shape[1], b) for i in range(0, s.shape[0], b)]))
        im = imresize(im, 0.5)
    f = np.concatenate(cols, 1)
    mu_p, cov_p = niqe_pristine_params()
    ok = ~np.isnan(f).any(1)
    if not ok.any(): return math.nan
    cov = np.cov(f[ok], rowvar=False) if ok.sum() > 1 else np.zeros((36, 36))
    d = mu_p - np.nanmean(f, 0)
    S = (cov_p + cov) / 2
    return float(np.sqrt(d @ np.linalg.pinv(S, rcond=36 * np.finfo(float).eps) @ d))


def ref_y(a):
    "MATLAB's rgb2ycbcr Y of a uint8 RGB array, rounded half up, computed exactly in integers."
    return (a.astype(np.int64) @ np.array([65481, 128553, 24966]) + 16 * 255000 + 127500) // 255000
