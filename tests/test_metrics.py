"""Tests of ranksrgan_nb.metrics against independent references: scikit-image (PSNR, SSIM), published MATLAB
NIQE values (the parity images, when a folder holds them: $RANKSRGAN_PARITY_DIR or shared/parity beside the clone),
a literal NumPy transcription of the MATLAB NIQE code (tests/niqe_reference.py), and brute-force scans."""
import dataclasses
import math
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import gennorm
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio as sk_psnr, structural_similarity as sk_ssim

from ranksrgan_nb import metrics as M
from ranksrgan_nb.config import KNOWN_METRICS, project_root
from ranksrgan_nb.data import bicubic_degrade, imresize, img2tensor, read_image, rgb_to_y, tensor2img

from niqe_reference import W7, ref_aggd, ref_niqe, ref_y

torch.set_num_threads(1)  # robust when other processes share the cores (CI, nbdev_test workers)
ASTRO = skdata.astronaut()
RNG = np.random.default_rng(0)


def _parity_dir():
    for d in (os.environ.get('RANKSRGAN_PARITY_DIR'), project_root(Path(__file__).parent).parent / 'shared' / 'parity'):
        if d and Path(d).is_dir(): return Path(d)
    return None

PARITY = _parity_dir()
needs_parity = pytest.mark.skipif(PARITY is None, reason='parity fixtures not found: set RANKSRGAN_PARITY_DIR or put '
                                  'them in shared/parity beside the clone (they are not shipped with the package)')


def _sr(hr):
    "Bicubic x4 reconstruction of uint8 `hr`, rounded to uint8."
    return np.clip(np.round(imresize(bicubic_degrade(hr) / 255.0, 4) * 255), 0, 255).astype(np.uint8)


def _y(a): return rgb_to_y(a / 255.0) * 255.0


# ------------------------------------------------------------------------------------------ pixels and channels
def test_y_rounding_equals_rgb_to_y_except_exact_ties():
    c = np.arange(256, dtype=np.uint8)
    colours = np.stack(np.meshgrid(c, c, c[::3], indexing='ij'), -1).reshape(256, -1, 3)
    num = colours.astype(np.int64) @ np.array([65481, 128553, 24966]) + 16 * 255000
    tie = num % 255000 == 127500
    ours = M.luma(M._quantise(colours)[0])[0, 0].numpy()
    assert tie.sum() > 0
    np.testing.assert_array_equal(ours[~tie], rgb_to_y(colours)[~tie])
    np.testing.assert_array_equal(ours[tie], (num[tie] + 127500) // 255000)  # half up


def test_gray_is_matlab_rgb2gray_rounded():
    a = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    ref = np.floor(a.astype(np.float64) @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103]) + 0.5)
    np.testing.assert_array_equal(M.luma(M._quantise(a)[0], 'gray')[0, 0].numpy(), ref)


def test_tensor_quantisation_is_tensor2img():
    t = torch.rand(3, 3, 9, 11) * (1 + 0.98 / 255) - 0.49 / 255        # within half a grey level of [0, 1]: accepted
    t[0, 0, 0, :4] = torch.tensor([0.5 / 255, 1.5 / 255, 254.5 / 255, 1.0])
    q = M._quantise(t)[0]
    for i in range(3): np.testing.assert_array_equal(q[i].permute(1, 2, 0).numpy(), tensor2img(t[i:i + 1]))
    t2 = torch.full((1, 3, 4, 4), 0.5)
    t2[0, 0, 0, 0], t2[0, 1, 0, 0] = -0.2, 1.2
    with pytest.raises(ValueError, match=r'in \[0, 1\], got values -0.2..1.2'):   # further out: an error, not a clamp
        M._quantise(t2)


def test_input_errors():
    with pytest.raises(TypeError, match='uint8'): M.psnr(ASTRO / 255.0, ASTRO / 255.0)
    with pytest.raises(ValueError, match=r'img\[None\]'): M.niqe(img2tensor(ASTRO))
    with pytest.raises(ValueError, match='B,3,H,W'): M.niqe(torch.rand(1, 1, 200, 200))
    with pytest.raises(TypeError, match='float tensor'): M.niqe(torch.zeros(1, 3, 200, 200, dtype=torch.uint8))
    with pytest.raises(ValueError, match='NaN'): M.niqe(torch.full((1, 3, 200, 200), math.nan))
    with pytest.raises(ValueError, match="'y' or 'gray'"): M.niqe(ASTRO, color='rgb')
    with pytest.raises(ValueError, match='>= 0'): M.niqe(ASTRO, crop_border=-1)
    with pytest.raises(ValueError, match="'y' or 'rgb'"): M.psnr(ASTRO, ASTRO, color='gray')
    with pytest.raises(ValueError, match='differ in shape'): M.psnr(ASTRO, ASTRO[:500])
    with pytest.raises(TypeError, match='both'): M.psnr(ASTRO, img2tensor(ASTRO)[None])
    with pytest.raises(ValueError, match='leaves nothing'): M.psnr(ASTRO[:8, :8], ASTRO[:8, :8], crop_border=4)


# ------------------------------------------------------------------------------------------ PSNR and SSIM
@pytest.mark.parametrize('shape', [(512, 512), (37, 53), (130, 97)])
@pytest.mark.parametrize('crop', [0, 4])
def test_psnr_ssim_against_skimage(shape, crop):
    hr = ASTRO[:shape[0], :shape[1]]
    sr = np.clip(hr.astype(int) + RNG.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    c = np.s_[crop:hr.shape[0] - crop, crop:hr.shape[1] - crop]
    ssim_kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    assert abs(M.psnr(sr, hr, crop) - sk_psnr(_y(hr)[c], _y(sr)[c], data_range=255)) < 1e-6
    assert abs(M.psnr(sr, hr, crop, 'rgb') - sk_psnr(hr[c].astype(float), sr[c].astype(float), data_range=255)) < 1e-6
    assert abs(M.ssim(sr, hr, crop) - sk_ssim(_y(sr)[c], _y(hr)[c], **ssim_kw)) < 1e-6
    sk_rgb = sk_ssim(sr[c].astype(float), hr[c].astype(float), channel_axis=2, **ssim_kw)
    assert abs(M.ssim(sr, hr, crop, 'rgb') - sk_rgb) < 1e-6


def test_psnr_ssim_tensors_batch_and_identity():
    hr = ASTRO[:120, :100]
    srs = [_sr(hr), np.clip(hr.astype(int) + 9, 0, 255).astype(np.uint8), hr]
    a = torch.stack([img2tensor(s) for s in srs])
    b = img2tensor(hr)[None].expand(3, -1, -1, -1)
    p, s = M.psnr(a, b, 4), M.ssim(a, b, 4)
    assert p.shape == s.shape == (3,) and p.device == a.device
    for i in range(2):
        assert abs(float(p[i]) - M.psnr(srs[i], hr, 4)) < 1e-9 and abs(float(s[i]) - M.ssim(srs[i], hr, 4)) < 1e-9
    assert math.isinf(float(p[2])) and abs(float(s[2]) - 1) < 1e-12
    assert M.psnr(ASTRO, ASTRO) == math.inf


def test_psnr_gray_and_rgba_inputs():
    g = ASTRO[..., 1]
    assert M.psnr(g, ASTRO[..., 2], 4) == M.psnr(np.repeat(g[..., None], 3, 2), np.repeat(ASTRO[..., 2:], 3, 2), 4)
    rgba = np.dstack([_sr(ASTRO), np.full(ASTRO.shape[:2], 3, np.uint8)])
    assert M.psnr(rgba, ASTRO, 4) == M.psnr(_sr(ASTRO), ASTRO, 4)


def test_ssim_rgb_equals_the_official_3d_computation():
    "The official codes/utils/util.py::calculate_ssim on RGB: SSIM of the HxWx3 array (OpenCV: channel by channel)."
    hr, sr = ASTRO[:90, :70].astype(float), _sr(ASTRO)[:90, :70].astype(float)
    x = np.arange(11) - 5.0
    w = np.exp(-x ** 2 / 4.5)
    w = np.outer(w, w) / np.outer(w, w).sum()
    f = lambda a: np.stack([ndimage.correlate(a[..., k], w) for k in range(3)], -1)[5:-5, 5:-5]
    mu1, mu2 = f(sr), f(hr)
    s1, s2, s12 = f(sr * sr) - mu1 ** 2, f(hr * hr) - mu2 ** 2, f(sr * hr) - mu1 * mu2
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ref = (((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1 ** 2 + mu2 ** 2 + C1) * (s1 + s2 + C2))).mean()
    assert abs(M.ssim(sr.astype(np.uint8), hr.astype(np.uint8), 0, 'rgb') - ref) < 1e-9


def test_ssim_too_small():
    with pytest.raises(ValueError, match='11x11'): M.ssim(ASTRO[:18, :30], ASTRO[:18, :30], crop_border=4)


# ------------------------------------------------------------------------------------------ NIQE: a literal reference
# tests/niqe_reference.py: MATLAB's computequality.m transcribed to NumPy (benchmarks/bench_niqe.py times it too)


@pytest.mark.parametrize('crop', [0, 4])
def test_niqe_against_literal_reference(crop):
    half_flat = ASTRO[:250, :300].copy()
    half_flat[:, :150] = 200  # flat blocks: NaN rows dropped
    for a in (ASTRO[:300, :300], ASTRO[100:333, 17:429], half_flat, _sr(ASTRO)[:290, :390]):
        y = ref_y(a)
        if crop: y = y[crop:-crop, crop:-crop]
        assert abs(M.niqe(a, crop) - ref_niqe(y)) < 1e-6


def test_niqe_gray_against_literal_reference():
    a = _sr(ASTRO)[:300, :300]
    g = np.floor(a @ np.array(M.GRAY_WEIGHTS) + 0.5)
    assert abs(M.niqe(a, 0, 'gray') - ref_niqe(g)) < 1e-6


def test_niqe_batched_equals_one_by_one_and_chunks_do_not_matter():
    imgs = [ASTRO[:296, :296], _sr(ASTRO)[100:396, 100:396], ASTRO[216:, 216:], ASTRO[::-1, ::-1][:296, :296]]
    imgs[3] = imgs[3].copy()
    imgs[3][:150] = 40
    batch = torch.stack([img2tensor(a) for a in imgs])
    one = [M.niqe(a, 4) for a in imgs]
    out = M.niqe(batch, 4)
    assert out.shape == (4,) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), one, atol=1e-6)
    old = dict(M._CHUNK_PIXELS)
    try:
        M._CHUNK_PIXELS['cpu'] = 2 ** 40
        np.testing.assert_allclose(M.niqe(batch, 4).numpy(), one, atol=1e-9)
    finally: M._CHUNK_PIXELS.update(old)


def test_niqe_tensor_with_grad_and_gray_rgba_inputs():
    t = img2tensor(ASTRO)[None].requires_grad_()
    assert abs(float(M.niqe(t)) - M.niqe(ASTRO)) < 1e-12
    g = ASTRO[..., 0]
    assert M.niqe(g) == M.niqe(np.repeat(g[..., None], 3, 2))              # gray is expanded as read_image does
    assert M.niqe(np.dstack([ASTRO, ASTRO[..., :1]])) == M.niqe(ASTRO)     # alpha dropped


def test_niqe_sizes():
    assert math.isfinite(M.niqe(ASTRO[:192, :192]))
    assert math.isfinite(M.niqe(ASTRO[:200, :333], 4))
    for a, crop in ((ASTRO[:191, :400], 0), (ASTRO[:199, :400], 4), (ASTRO[:50, :50], 0)):
        with pytest.raises(ValueError, match='at least 192x192'): M.niqe(a, crop)


def test_niqe_constant_image_is_inf_with_warning():
    const = np.full((256, 256, 3), 90, np.uint8)
    with pytest.warns(RuntimeWarning, match='undefined for 1 image'):
        assert M.niqe(const) == math.inf
    batch = torch.stack([img2tensor(const), img2tensor(ASTRO[:256, :256])])
    with pytest.warns(RuntimeWarning):
        out = M.niqe(batch)
    assert math.isinf(out[0]) and abs(float(out[1]) - M.niqe(ASTRO[:256, :256])) < 1e-6


def test_niqe_flat_region_noise_is_zeroed():
    "A saturated region gives exact zeros, whatever the offset of the flat value."
    for v in (16, 200, 234, 235):
        a = ASTRO[:288, :288].copy()
        a[:100, :100] = v
        y, _ = M.niqe_luma(a)
        s = M.mscn(y)[0][0, 0, 10:90, 10:90]
        assert (s == 0).all()


# ------------------------------------------------------------------------------------------ NIQE pieces
def test_pristine_params_and_window():
    mu, cov = M.niqe_pristine_params()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    np.testing.assert_allclose(mu[:5], [2.601314, 0.905703, 0.812048, 0.090427, 0.138733], atol=1e-6)
    assert abs(np.trace(cov) - 1.6309188) < 1e-7
    np.testing.assert_allclose(cov, cov.T, atol=1e-12)
    ref = resources.files('ranksrgan_nb') / 'assets' / 'niqe_pris_params.npz'
    with resources.as_file(ref) as p, np.load(p) as d:
        np.testing.assert_allclose(np.outer(M._K7, M._K7), d['gaussian_window'], atol=1e-16)
    readme = (resources.files('ranksrgan_nb') / 'assets' / 'README.md').read_text()
    assert 'Apache' in readme and 'BasicSR' in readme and 'Mittal' in readme


def test_grid_argmin_is_matlab_min():
    T = M._aggd_tables(torch.device('cpu'))
    x = torch.cat([torch.rand(3000, dtype=torch.float64) * 0.9 - 0.05, T['rho'][::500] + 1e-13,
                   (T['rho'][1:] + T['rho'][:-1])[::700] / 2, torch.tensor([math.nan, math.inf, -math.inf, 7.0])])
    r = T['rho'].numpy()
    brute = [0 if not math.isfinite(v) else int(np.argmin((r - v) ** 2)) for v in x.tolist()]
    np.testing.assert_array_equal(M.grid_argmin(x, T['rho']).numpy(), brute)


def _aggd_fit(v):
    "The fast fit, (alpha, beta_l, beta_r): aggd_solve on aggd_moments, then the grid's alpha and beta factor."
    i, sigma_l, sigma_r = M.aggd_solve(*M.aggd_moments(v), n=v.shape[-1])
    T = M._aggd_tables(v.device)
    return T['alpha'][i], sigma_l * T['beta'][i], sigma_r * T['beta'][i]


@pytest.mark.parametrize('alpha,bl,br', [(2.0, 1.0, 1.0), (1.0, 0.4, 0.4), (0.7, 0.1, 0.3), (3.0, 0.8, 0.5)])
def test_aggd_fit_recovers_parameters(alpha, bl, br):
    rng = np.random.default_rng(1)
    g = np.abs(gennorm.rvs(alpha, size=300_000, random_state=rng))
    v = np.where(rng.random(g.size) < bl / (bl + br), -bl * g, br * g)
    a, l, r = (float(t) for t in _aggd_fit(torch.from_numpy(v)))
    assert abs(a - alpha) < 0.03 * alpha and abs(l - bl) < 0.02 * bl and abs(r - br) < 0.02 * br
    a2, l2, r2 = ref_aggd(v)
    assert a == a2 and abs(l - l2) < 1e-10 and abs(r - r2) < 1e-10


def test_aggd_fit_degenerate_samples_follow_matlab():
    a, l, r = _aggd_fit(torch.tensor([[0.0, 0.0, 0.0], [0.5, 1.0, 2.0]], dtype=torch.float64))
    assert a.tolist() == [0.2, 0.2] and math.isnan(l[0]) and math.isnan(l[1]) and math.isnan(r[0]) and r[1] > 0


def test_mvg_distance_against_numpy():
    mu_p, cov_p = M.niqe_pristine_params()
    f = RNG.normal(size=(3, 12, 36)) * 0.1 + mu_p
    f[0, 3, 7] = np.nan                                                  # a NaN block: dropped from the covariance
    f[1, :, 2] = np.nan
    f[1, 4, 2] = 0.3  # one complete block: covariance 0 (MATLAB)
    f[2, :, 5] = np.nan                                                  # no complete block: undefined
    out = M.mvg_distance(torch.from_numpy(f), mu_p, cov_p)
    pinv = lambda S: np.linalg.pinv(S, rcond=36 * np.finfo(float).eps)
    for i in range(2):
        ok = ~np.isnan(f[i]).any(1)
        cov = np.cov(f[i][ok], rowvar=False) if ok.sum() > 1 else np.zeros((36, 36))
        d = mu_p - np.nanmean(f[i], 0)
        assert abs(float(out[i]) - np.sqrt(d @ pinv((cov_p + cov) / 2) @ d)) < 1e-9
    assert math.isnan(out[2])


# ------------------------------------------------------------------------------------------ NIQE parity
_PARITY_ROWS = [('baboon.png', 'y', 0, 5.72957338, 1e-3, None), ('baboon.png', 'y', 4, 5.989246, 1e-3, None),
                ('tid2013_I04.bmp', 'gray', 0, 3.6549, None, 0.01), ('tid2013_I06.bmp', 'gray', 0, 3.2355, None, 0.01)]


@needs_parity
@pytest.mark.parametrize('name,color,crop,ref,atol,rtol', _PARITY_ROWS)
def test_niqe_parity_files(name, color, crop, ref, atol, rtol):
    v = M.niqe(read_image(PARITY / name), crop, color)
    assert abs(v - ref) <= (atol if atol else rtol * ref), (v, ref)


@pytest.mark.parametrize('crop,ref', [(0, 3.064948), (4, 2.991296)])
def test_niqe_parity_astronaut(crop, ref):
    assert abs(M.niqe(ASTRO, crop) - ref) <= 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_niqe_on_cuda_matches_cpu():
    t = torch.stack([img2tensor(ASTRO[:300, :300]), img2tensor(ASTRO[200:, 200:])])
    out = M.niqe(t.cuda(), 4)
    assert out.device.type == 'cuda'
    np.testing.assert_allclose(out.cpu().numpy(), M.niqe(t, 4).numpy(), atol=1e-6)


# ------------------------------------------------------------------------------------------ sharpness
def _ref_sharpness(a):
    g = np.floor(a.astype(np.float64) @ np.array(M.GRAY_WEIGHTS) + 0.5)
    s = np.sqrt(ndimage.correlate((g - ndimage.correlate(g, W7, mode='nearest')) ** 2, W7, mode='nearest'))
    p = np.zeros((-(-s.shape[0] // 96) * 96, -(-s.shape[1] // 96) * 96))
    p[:s.shape[0], :s.shape[1]] = s
    return sum(p[i:i + 96, j:j + 96].mean() for i in range(0, p.shape[0], 96) for j in range(0, p.shape[1], 96))


@pytest.mark.parametrize('shape', [(296, 296), (100, 150), (97, 200), (8, 8)])
def test_sharpness_against_reference(shape):
    a = ASTRO[:shape[0], :shape[1]]
    assert abs(M.sharpness(a) - _ref_sharpness(a)) < 1e-9


def test_sharpness_batch_constant_and_small():
    ps = [ASTRO[:296, :296], ASTRO[200:496, 100:396]]
    out = M.sharpness(torch.stack([img2tensor(p) for p in ps]))
    np.testing.assert_allclose(out.numpy(), [M.sharpness(p) for p in ps], atol=1e-9)
    assert M.sharpness(np.full((296, 296, 3), 50, np.uint8)) == 0.0
    with pytest.raises(ValueError, match='4x4'): M.sharpness(ASTRO[:3, :3])


# ------------------------------------------------------------------------------------------ registry
def test_registry_entries():
    n, p, s = M.get_metric('niqe'), M.get_metric('psnr'), M.get_metric('ssim')
    assert (n.higher_is_better, n.full_reference) == (False, False)
    assert (p.higher_is_better, p.full_reference) == (True, True) and s.higher_is_better and s.full_reference
    a = ASTRO[:260, :260]
    assert n.fn(a) == M.niqe(a, 4) and n.fn(a, crop_border=0) == M.niqe(a, 0)
    assert p.fn(_sr(ASTRO), ASTRO) == M.psnr(_sr(ASTRO), ASTRO, 4)
    with pytest.raises(dataclasses.FrozenInstanceError): n.name = 'x'


def test_registry_unknown_register_and_orient():
    with pytest.raises(ValueError, match=r"known metrics: \['delta_e', 'grid', 'niqe', 'psnr', 'psnr_rgb', 'ssim'\]"):
        M.get_metric('ma')
    with pytest.raises(ValueError, match='already registered'): M.register_metric('psnr', M.psnr, True, True)
    try:
        m = M.register_metric('test_ma', lambda img, crop_border=4: 7.0, higher_is_better=True, full_reference=False)
        assert M.get_metric('test_ma') is m and M.orient('test_ma', 7.0) == -7.0
        M.register_metric('test_ma', lambda img, crop_border=4: 1.0, False, False, overwrite=True)
        assert M.orient('test_ma', 7.0) == 7.0
    finally:
        M.METRICS.pop('test_ma', None)
        KNOWN_METRICS.discard('test_ma')
    np.testing.assert_array_equal(M.orient('psnr', [30.0, 25.0]), [-30.0, -25.0])
    assert torch.equal(M.orient('ssim', torch.tensor([0.9])), torch.tensor([-0.9]))
    assert torch.equal(M.orient(M.get_metric('niqe'), torch.tensor([3.0, 5.0])), torch.tensor([3.0, 5.0]))


# ------------------------------------------------------------------------------------------ colour error
SHARMA = [  # Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula", Table 1: Lab 1, Lab 2, dE00
    ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425), ((50, 3.1571, -77.2803), (50, 0, -82.7485), 2.8615),
    ((50, 2.8361, -74.0200), (50, 0, -82.7485), 3.4412), ((50, -1.3802, -84.2814), (50, 0, -82.7485), 1.0000),
    ((50, -1.1848, -84.8006), (50, 0, -82.7485), 1.0000), ((50, -0.9009, -85.5211), (50, 0, -82.7485), 1.0000),
    ((50, 0, 0), (50, -1, 2), 2.3669), ((50, -1, 2), (50, 0, 0), 2.3669),
    ((50, 2.5, 0), (73, 25, -18), 27.1492), ((50, 2.5, 0), (61, -5, 29), 22.8977),
    ((50, 2.5, 0), (56, -27, -3), 31.9030), ((50, 2.5, 0), (58, 24, 15), 19.4535),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644)]


def _lab(rgb):
    "sRGB (0..255) -> CIELAB with the textbook formulas (IEC 61966-2-1 linearisation, sRGB/D65 matrix, CIE 1976 Lab)."
    c = np.asarray(rgb, np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]]).T
    t = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_ciede2000_sharma_pairs():
    lab1, lab2, ref = (np.array([p[k] for p in SHARMA], np.float64) for k in range(3))
    np.testing.assert_allclose(M.ciede2000(lab1, lab2), ref, atol=5e-5)
    np.testing.assert_allclose(M.ciede2000(lab2[None], lab1[None])[0], ref, atol=5e-5)  # symmetric, any leading shape


def test_delta_e_of_uniform_colours_is_ciede2000_of_their_lab():
    rng = np.random.default_rng(3)
    for c1, c2 in rng.integers(0, 256, (6, 2, 3)):
        a, b = np.full((40, 48, 3), c1, np.uint8), np.full((40, 48, 3), c2, np.uint8)
        ref = float(M.ciede2000(_lab(c1), _lab(c2)))
        assert M.delta_e(a, b) == pytest.approx(ref, abs=2e-3)
        assert M.colour_error_map(a, b, 4).shape == (1, 4, 5)             # 32x40 after the crop: 4x5 blocks


def test_box_mean_is_the_block_mean():
    q = torch.from_numpy(RNG.integers(0, 256, (2, 3, 24, 16))).double()
    ref = np.array([[[[q[b, c, 8 * i:8 * i + 8, 8 * j:8 * j + 8].mean().item() for j in range(2)] for i in range(3)]
                     for c in range(3)] for b in range(2)])
    np.testing.assert_allclose(M.box_mean(q).numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(M.box_mean(q, 4).numpy()[0, 0, 0, 0], q[0, 0, :4, :4].mean().item())
    with pytest.raises(ValueError, match='multiples of f=8'): M.box_mean(q[..., :20, :])


def test_delta_e_zero_for_identical_and_for_texture_within_blocks():
    assert M.delta_e(ASTRO, ASTRO, 4) == 0.0
    base = np.clip(ASTRO[:128, :160], 20, 235).astype(np.int16)
    checker = 10 * (np.indices((128, 160)).sum(0) % 2 * 2 - 1)   # +-10 alternating: zero mean in every 8x8 block
    textured = (base + checker[..., None]).astype(np.uint8)
    assert M.psnr(textured, base.astype(np.uint8), 0) < 30                 # PSNR sees the texture
    assert M.delta_e(textured, base.astype(np.uint8), 0) == 0.0            # the colour error does not
    shifted = textured.copy()
    shifted[:8, :8] = (textured[:8, :8].astype(int) + (6, -6, 0)).clip(0, 255)
    m = M.colour_error_map(shifted, base.astype(np.uint8))[0]
    assert m[0, 0] > 2 and (m.ravel()[1:] == 0).all()   # a colour change in one block: only that block


def test_delta_e_sees_a_colour_shift_that_y_metrics_miss():
    hr = ASTRO[100:300, 100:300].astype(np.float64)
    y_grey = (hr @ np.array([65.481, 128.553, 24.966]) / 219)[..., None]  # the grey with the same BT.601 Y
    grey = np.clip(np.round(y_grey + 0.4 * (hr - y_grey)), 0, 255).astype(np.uint8)
    hr = hr.astype(np.uint8)
    assert M.psnr(grey, hr, 4) > 45 and M.ssim(grey, hr, 4) > 0.999        # Y metrics: nearly identical
    assert M.delta_e(grey, hr, 4) > 5                                      # plainly visible
    assert M.psnr(grey, hr, 4, 'rgb') < 30


def test_delta_e_crop_blocks_tensors_and_errors():
    a, b = ASTRO[:45, :61], ASTRO[3:48, 2:63]
    m = M.colour_error_map(a, b, crop_border=2)                            # 41x57 -> 40x56: 5x7 blocks
    np.testing.assert_array_equal(m, M.colour_error_map(a[2:42, 2:58].copy(), b[2:42, 2:58].copy()))
    assert m.shape == (1, 5, 7) and M.delta_e(a, b, 2) == pytest.approx(m.mean(), abs=1e-12)
    ta = torch.stack([img2tensor(ASTRO[:64, :80]), img2tensor(ASTRO[64:128, :80])]).requires_grad_()
    tb = torch.stack([img2tensor(ASTRO[1:65, :80]), img2tensor(ASTRO[64:128, 1:81])])
    got = M.delta_e(ta, tb, 4)
    assert got.shape == (2,) and got.dtype == torch.float64
    one_by_one = [M.delta_e(tensor2img(ta[i:i + 1]), tensor2img(tb[i:i + 1]), 4) for i in range(2)]
    np.testing.assert_allclose(got.numpy(), one_by_one, atol=1e-12)
    with pytest.raises(ValueError, match='at least one 8x8 block'): M.delta_e(ASTRO[:15, :40], ASTRO[:15, :40], 4)
    with pytest.raises(ValueError, match='differ in shape'): M.delta_e(ASTRO[:16, :16], ASTRO[:16, :24])
    with pytest.raises(TypeError, match='both be uint8 arrays'):
        M.delta_e(ASTRO[:16, :16], img2tensor(ASTRO[:16, :16])[None])
    with pytest.raises(ValueError, match=r'\[0, 1\]'): M.delta_e(tb * 255, tb)


def test_colour_metrics_registered():
    d, p = M.get_metric('delta_e'), M.get_metric('psnr_rgb')
    assert (d.higher_is_better, d.full_reference, p.higher_is_better, p.full_reference) == (False, True, True, True)
    sr = _sr(ASTRO)
    assert d(sr, ASTRO) == M.delta_e(sr, ASTRO, 4) and d(sr, ASTRO, crop_border=0) == M.delta_e(sr, ASTRO, 0)
    assert p(sr, ASTRO) == pytest.approx(sk_psnr(ASTRO[4:-4, 4:-4], sr[4:-4, 4:-4], data_range=255), abs=1e-9)
    assert M.orient('delta_e', 1.5) == 1.5 and M.orient('psnr_rgb', 30.0) == -30.0
    assert list(M.METRICS)[:3] == ['niqe', 'psnr', 'ssim']               # the paper's metrics keep their places


# ------------------------------------------------------------------------------------------ differentiable NIQE
def _bundled_crops(side: int = 296) -> dict:
    "Top-left, centre and bottom-right side x side crops of every bundled photograph."
    from ranksrgan_nb.data import sample_images
    out = {}
    for n, im in sample_images('all').items():
        H, W = im.shape[:2]
        at = {'top left': (0, 0), 'centre': ((H - side) // 2, (W - side) // 2), 'bottom right': (H - side, W - side)}
        for pos, (i, j) in at.items(): out[(n, pos)] = im[i:i + side, j:j + side]
    return out


def test_niqe_diff_close_to_niqe_on_bundled_crops():
    crops = _bundled_crops()
    t = torch.stack([img2tensor(c) for c in crops.values()])
    ref = M.niqe(t, 4)
    d, r = M.niqe_diff(t) - ref, M.niqe_diff(t, rounded=True) - ref
    assert d.dtype == torch.float64 and d.shape == (21,)
    assert r.abs().max() <= 0.05                      # rounded like niqe: only the interpolation (measured 0.019)
    k = {key: i for i, key in enumerate(crops)}
    for textured in (('chelsea', 'centre'), ('grace_hopper', 'centre'), ('motorcycle_left', 'bottom right')):
        assert abs(float(d[k[textured]])) <= 0.05, textured
    assert d.abs().median() <= 0.05 and d.abs().max() <= 1.0   # unrounded: largest on the rocket's sky (0.93)


def test_niqe_diff_gradients_finite_nonzero_and_match_finite_differences():
    from ranksrgan_nb.data import sample_images
    x = img2tensor(ASTRO[:296, :296])[None].double().requires_grad_()      # black background: undefined fits, flat MSCN
    for rounded in (False, True):
        g, = torch.autograd.grad(M.niqe_diff(x, rounded=rounded).sum(), x)
        assert torch.isfinite(g).all() and g.abs().sum() > 0 and g[..., :4, :].abs().sum() == 0   # the shaved border: 0
    x0 = img2tensor(sample_images('test')['chelsea'][50:242, 150:342])[None].double()   # textured: no flat region
    r = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 0.5
    d = torch.nn.functional.interpolate(r, size=192, mode='bilinear') * 0.05              # a smooth direction
    xr = x0.clone().requires_grad_()
    g, = torch.autograd.grad(M.niqe_diff(xr, 0).sum(), xr)
    h = 1e-5
    fd = (float(M.niqe_diff(x0 + h * d, 0)) - float(M.niqe_diff(x0 - h * d, 0))) / (2 * h)
    assert float((g * d).sum()) == pytest.approx(fd, rel=1e-4)


def test_niqe_diff_pieces_pass_gradcheck():
    v = torch.randn(2, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(M.aggd_fit_diff, (v,))
    y = torch.rand(1, 1, 12, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 255
    y.requires_grad_()
    assert torch.autograd.gradcheck(M.mscn_diff, (y,))
    R = (torch.rand(20, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(M.aggd_alpha_interp, (R,))


def test_niqe_diff_batch_equals_one_by_one_and_errors():
    t = torch.stack([img2tensor(c) for c in list(_bundled_crops(200).values())[:3]])
    one = torch.cat([M.niqe_diff(t[k:k + 1]) for k in range(3)])
    np.testing.assert_allclose(M.niqe_diff(t).numpy(), one.numpy(), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match='at least 192x192'): M.niqe_diff(t[:, :, :199])   # 191 rows after the shave
    with pytest.raises(ValueError, match='divide a 0..255 tensor by 255'): M.niqe_diff(t * 255)
    with pytest.raises(ValueError, match=r'\(B,3,H,W\)'): M.niqe_diff(t[0])
    with pytest.raises(ValueError, match=r'\(B,3,H,W\)'): M.niqe_diff(ASTRO)
    with pytest.warns(RuntimeWarning, match='undefined'):
        assert math.isinf(float(M.niqe_diff(torch.full((1, 3, 200, 200), 0.4))[0]))


def test_niqe_diff_on_the_shared_photographs(shared_datasets):
    rows = []
    files = [sorted((shared_datasets / d).iterdir()) for d in ('benchmark/Set14/HR', 'CBSD68/HR')]
    for f in files[0] + files[1][:20]:                                     # Set14 and 20 of colour BSD68
        im = read_image(f)
        H, W = im.shape[:2]
        crops = [im[i:i + 296, j:j + 296] for i in range(0, H - 295, 148) for j in range(0, W - 295, 148)]
        if not crops: continue
        t = torch.stack([img2tensor(c) for c in crops])
        ref = M.niqe(t, 4)
        rows.append(torch.stack([M.niqe_diff(t) - ref, M.niqe_diff(t, rounded=True) - ref], 1))
    d = torch.cat(rows).abs()
    assert len(d) > 80 and d[:, 1].max() <= 0.05              # rounded: within 0.05 on every window (measured 0.036)
    assert d[:, 0].median() <= 0.05                            # unrounded: median 0.02-0.04, up to 0.35 (smooth)


# ------------------------------------------------------------------------------------------ periodic grid
def _grid_ref(img, crop=4, p=4):
    "The grid measure written out from its definition with NumPy, one harmonic at a time."
    y = _y(img)[crop:img.shape[0] - crop, crop:img.shape[1] - crop]
    h, w = y.shape[0] // p * p, y.shape[1] // p * p
    y = y[:h, :w] - y[:h, :w].mean()
    P = np.abs(np.fft.fft2(y * np.outer(np.hanning(h), np.hanning(w)))) ** 2
    logs = []
    for k in range(p):
        for l in range(p):
            if (k, l) == (0, 0): continue
            win = np.roll(P, (3 - k * h // p, 3 - l * w // p), (0, 1))[:7, :7]       # the 7x7 bins around it
            ring = np.concatenate([win[:2].ravel(), win[5:].ravel(), win[2:5, :2].ravel(), win[2:5, 5:].ravel()])
            logs.append(np.log(win[2:5, 2:5].sum() / (9 * np.median(ring))))
    return float(np.exp(np.mean(logs)))


def _with_grid(img, amp=1):
    tile = np.array([[1, -1, 0, 1], [0, 1, -1, -1], [-1, 0, 1, 0], [1, 0, -1, 0]])
    t = amp * tile[np.arange(img.shape[0]) % 4][:, np.arange(img.shape[1]) % 4]
    return np.clip(img.astype(np.int64) + t[..., None], 0, 255).astype(np.uint8)


@pytest.mark.parametrize('shape', [(512, 512), (301, 455), (23, 17)])
def test_grid_against_its_definition(shape):
    a = ASTRO[:shape[0], :shape[1]]
    assert M.grid_score(a, 4) == pytest.approx(_grid_ref(a), rel=1e-9)
    assert M.grid_score(_with_grid(a), 4) == pytest.approx(_grid_ref(_with_grid(a)), rel=1e-9)


def test_grid_photographs_low_pattern_high_offset_invariant():
    from ranksrgan_nb.data import sample_images
    for name, im in sample_images('all').items():
        g, gg = M.grid_score(im, 4), M.grid_score(_with_grid(im), 4)
        assert 0.5 < g < 2 and gg > 5 and gg > 3 * g, (name, g, gg)
    dark = (ASTRO // 2).astype(np.uint8)
    assert M.grid_score(dark + 70, 4) == pytest.approx(M.grid_score(dark, 4), rel=1e-9)
    assert M.grid_score(ASTRO, 4, period=2) != M.grid_score(ASTRO, 4)


def test_grid_tensors_batch_registry_and_errors():
    a, b = ASTRO[:200, :240], _with_grid(ASTRO[200:400, :240])
    t = torch.stack([img2tensor(a), img2tensor(b)])
    out = M.grid_score(t, 4)
    assert out.shape == (2,) and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), [M.grid_score(a, 4), M.grid_score(b, 4)], rtol=1e-12)
    m = M.get_metric('grid')
    assert (m.higher_is_better, m.full_reference) == (False, False) and m(a) == M.grid_score(a, 4)
    assert M.grid_score(ASTRO[:16, :16], 4) > 0                                     # 8x8 after the shave: enough
    with pytest.raises(ValueError, match='at least 8x8 pixels after crop_border=4; got 7x8'):
        M.grid_score(ASTRO[:15, :16], 4)
    with pytest.raises(TypeError, match='uint8'): M.grid_score(ASTRO / 255.0)
    with pytest.warns(RuntimeWarning, match='constant'):
        assert math.isnan(M.grid_score(np.full((40, 40, 3), 9, np.uint8)))
