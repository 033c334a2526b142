"""07_evaluate: methods, stages, test sets, the tidy evaluation with its cache, tables, the PD plane and the
before/after slider."""
import io
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ranksrgan_nb import evaluate as E
from ranksrgan_nb.config import get_profile
from ranksrgan_nb.data import TestImageDataset, bicubic_degrade, imresize, modcrop, read_image, rgb_to_y, write_image
from ranksrgan_nb.metrics import METRICS, niqe
from ranksrgan_nb.models import SRResNet
from ranksrgan_nb.train import build_generator, save_final, stage_meta

warnings.filterwarnings('ignore', category=UserWarning)


# ------------------------------------------------------------------ helpers (independent references)
def photo(h=208, w=224, seed=0):
    "A smooth random colour field with fine noise, big enough for NIQE (>= 200 px), uint8."
    rng = np.random.default_rng(seed)
    base = imresize(rng.random((h // 8 + 1, w // 8 + 1, 3)), 8)[:h, :w]
    return np.clip(np.round((base * 0.8 + 0.2 * rng.random((h, w, 3))) * 255), 0, 255).astype(np.uint8)


def y_float(img, crop):
    "Unrounded BT.601 Y in 0..255 after cropping `crop` pixels (what SR papers' PSNR-Y uses)."
    y = rgb_to_y(img.astype(np.float64) / 255.0) * 255.0
    return y[crop:-crop, crop:-crop] if crop else y


def psnr_ref(a, b, crop):
    return 10 * math.log10(255.0 ** 2 / np.mean((y_float(a, crop) - y_float(b, crop)) ** 2))


def cubic(x):
    x = np.abs(x)
    return np.where(x <= 1, 1.5 * x**3 - 2.5 * x**2 + 1, np.where(x <= 2, -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2, 0))


def upsample_ref(lr, s):
    "Keys bicubic (a = -0.5) upsampling by s, exact away from the borders."
    m = lambda n: cubic(((np.arange(n * s) + 0.5) / s - 0.5)[:, None] - np.arange(n)[None])
    return np.einsum('ih,jw,hwc->ijc', m(lr.shape[0]), m(lr.shape[1]), lr.astype(np.float64), optimize=True)


class Counting:
    "A method function that counts its calls (bicubic underneath)."
    def __init__(self, scale=4): self.calls, self.bic = 0, E.bicubic_method(scale)
    def __call__(self, lr):
        self.calls += 1
        return self.bic(lr)


@pytest.fixture(scope='module')
def images():
    return {'a': photo(208, 224, 0), 'b': photo(210, 202, 1)}           # b is not a multiple of 4: modcrop


@pytest.fixture(scope='module')
def cfg():
    return get_profile('smoke', device='cpu')


# ------------------------------------------------------------------ methods
@pytest.mark.parametrize('shape', [(52, 56), (51, 53)])                # odd sizes too
def test_bicubic_method_is_matlab_bicubic(shape):
    lr = photo(*shape, seed=3)
    sr = E.bicubic_method(4)(lr)
    assert sr.dtype == np.uint8 and sr.shape == (shape[0] * 4, shape[1] * 4, 3)
    ref = np.clip(np.round(upsample_ref(lr, 4)), 0, 255)
    assert np.abs(sr[8:-8, 8:-8].astype(float) - ref[8:-8, 8:-8]).max() <= 1
    assert np.mean(sr[8:-8, 8:-8] == ref[8:-8, 8:-8]) > 0.99


def test_generator_method_is_the_network_rounded():
    torch.manual_seed(0)
    G = SRResNet(nf=8, nb=1)
    lr = photo(20, 27, 2)
    with torch.no_grad():
        y = G(torch.from_numpy(lr.astype(np.float32) / 255).permute(2, 0, 1)[None])[0]
    expected = np.round(np.clip(y.permute(1, 2, 0).numpy(), 0, 1) * 255).astype(np.uint8)
    m = E.generator_method('tiny', G, 'cpu', source='s')
    np.testing.assert_array_equal(m(lr), expected)
    assert (m.name, m.source) == ('tiny', 's') and not G.training


def test_official_method_mmsr_layout(tmp_path):
    torch.manual_seed(1)
    G = SRResNet(nf=8, nb=1).eval()
    torch.save(G.state_dict(), tmp_path / 'plain.pth')                  # mmsr: the same key names
    torch.save({'params': G.state_dict()}, tmp_path / 'wrapped.pth')     # a wrapped state dict
    lr = photo(16, 20, 4)
    want = E.generator_method('ref', G)(lr)
    for f in ('plain.pth', 'wrapped.pth'):
        m = E.official_method(tmp_path / f, arch='srresnet', nf=8, nb=1)
        np.testing.assert_array_equal(m(lr), want)
        parts = m.source.split(':')                                      # path:size:mtime
        assert m.name == f[:-4] and int(parts[-2]) == (tmp_path / f).stat().st_size
    assert E.official_method(tmp_path / 'plain.pth', 'RankSRGAN_NIQE', nf=8, nb=1).name == 'RankSRGAN_NIQE'
    with pytest.raises(ValueError, match='arch must be one of'):
        E.official_method(tmp_path / 'plain.pth', arch='esrgan', nf=8, nb=1)
    with pytest.raises(FileNotFoundError):
        E.official_method(tmp_path / 'missing.pth', nf=8, nb=1)
    with pytest.raises(Exception, match='missing from the checkpoint'):
        E.official_method(tmp_path / 'plain.pth', nf=8, nb=2)           # wrong depth: a clear error


def test_parse_official():
    assert E.parse_official('') == [] and E.parse_official(None) == []
    assert E.parse_official('A=/w/a.pth:rrdb,  B = /w/b.pth ,') == [('A', '/w/a.pth', 'rrdb'),
                                                                   ('B', '/w/b.pth', 'srresnet')]
    for bad, msg in (('/w/a.pth', "expected 'name=path'"), ('A=', "expected 'name=path'"), ('=x.pth', "expected"),
                     ('A=/w/a.pth:esrgan', 'arch must be one of')):
        with pytest.raises(ValueError, match=msg):
            E.parse_official(bad)


# ------------------------------------------------------------------ stages of a run
def test_stage_methods_load_takes_the_ema_generator(cfg, tmp_path):
    "An arm that kept G_ema is evaluated with it (models.load_generator, 05's arm_generator); with ema=False, with G."
    from ranksrgan_nb import gan as GN
    from ranksrgan_nb.models import load_generator
    torch.manual_seed(0)
    G, E_ = build_generator(cfg), build_generator(cfg)         # identity init: the outputs are images, not zeros
    with torch.no_grad():
        for q in E_.parameters(): q.add_(0.02 * torch.randn_like(q))
    save_final(tmp_path, 'control', {'G': G.state_dict(), 'G_ema': E_.state_dict()},
               stage_meta(cfg, ('scale', 'g_nf', 'g_nb')))
    lr = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    want = {'G': E.generator_method('g', G)(lr), 'G_ema': E.generator_method('e', E_)(lr)}
    raw = lambda c, p, d: load_generator(c, p, d, ema=False)
    assert np.array_equal(E.stage_methods(cfg, tmp_path)['SRGAN (control)'](lr), want['G_ema'])
    assert np.array_equal(E.stage_methods(cfg, tmp_path, load=GN.arm_generator)['SRGAN (control)'](lr), want['G_ema'])
    assert np.array_equal(E.stage_methods(cfg, tmp_path, load=raw)['SRGAN (control)'](lr), want['G'])
    assert not np.array_equal(want['G'], want['G_ema'])


def test_stage_methods_finds_generators_only(cfg, tmp_path, capsys):
    meta = stage_meta(cfg, ('scale', 'g_nf', 'g_nb'))
    torch.manual_seed(0)
    for s in ('multi_n0.03_l0', 'ranksrgan', 'srgan', 'zz_custom'):
        save_final(tmp_path, s, {'G': build_generator(cfg).state_dict(), 'D': {}}, meta)
    save_final(tmp_path, 'ranker', {'R': {}}, {})                        # a Ranker stage: not a generator
    (tmp_path / 'srresnet').mkdir()                                      # started, never finished: no final.pth
    (tmp_path / 'srresnet' / 'ckpt_0000002.pth').write_bytes(b'')
    (tmp_path / 'broken').mkdir()
    (tmp_path / 'broken' / 'final.pth').write_bytes(b'not a checkpoint')
    save_final(tmp_path, 'wide', {'G': SRResNet(nf=cfg.g_nf * 2, nb=cfg.g_nb).state_dict()},
               meta | {'g_nf': cfg.g_nf * 2})
    (tmp_path / 'notes.txt').write_text('a file, not a stage')
    assert E.generator_stages(tmp_path) == ['srgan', 'ranksrgan', 'multi_n0.03_l0', 'wide', 'zz_custom']
    ms = E.stage_methods(cfg, tmp_path)
    assert list(ms) == ['SRGAN', 'RankSRGAN', 'MultiRanker(n0.03_l0)', 'zz_custom']
    out = capsys.readouterr().out
    assert 'skipping broken' in out and "skipping stage 'wide'" in out
    lr = photo(12, 13, 5)
    assert ms['SRGAN'](lr).shape == (48, 52, 3)
    assert ms['SRGAN'].source.startswith(str((tmp_path / 'srgan' / 'final.pth').resolve()))
    assert E.stage_methods(cfg, tmp_path / 'empty_run') == {}            # a missing run folder: nothing


# ------------------------------------------------------------------ metrics of one image
@pytest.mark.parametrize('scale', [4, 2])
def test_image_metrics_against_hand_references(images, scale):
    from skimage.metrics import structural_similarity
    hr = modcrop(images['a'], scale)
    sr = E.bicubic_method(scale)(bicubic_degrade(hr, scale))
    v = E.image_metrics(sr, hr, scale=scale)
    assert list(v) == E.metric_names() + ['rmse'] and list(v)[:2] == ['psnr', 'ssim']
    rmse = math.sqrt(np.mean((y_float(sr, scale) - y_float(hr, scale)) ** 2))
    assert v['rmse'] == pytest.approx(rmse, rel=1e-10)
    assert v['psnr'] == pytest.approx(psnr_ref(sr, hr, scale), abs=1e-9)
    ssim_ref = structural_similarity(y_float(sr, scale), y_float(hr, scale), data_range=255, gaussian_weights=True,
                                     sigma=1.5, use_sample_covariance=False)
    assert v['ssim'] == pytest.approx(ssim_ref, abs=2e-4)
    assert v['niqe'] == pytest.approx(niqe(sr[scale:-scale, scale:-scale], crop_border=0), abs=1e-9)  # shave = scale


def test_image_metrics_gray_and_rgba_inputs(images):
    hr = modcrop(images['a'], 4)
    sr = E.bicubic_method(4)(bicubic_degrade(hr, 4))
    g_sr, g_hr = sr[..., 1], hr[..., 1]
    a = E.image_metrics(g_sr, g_hr, ['psnr'], 4)
    b = E.image_metrics(np.repeat(g_sr[..., None], 3, -1), np.repeat(g_hr[..., None], 3, -1), ['psnr'], 4)
    assert a == pytest.approx(b)
    rgba = lambda x: np.concatenate([x, np.full(x.shape[:2] + (1,), 7, np.uint8)], -1)
    assert E.image_metrics(rgba(sr), rgba(hr), ['psnr'], 4) == pytest.approx(E.image_metrics(sr, hr, ['psnr'], 4))


# ------------------------------------------------------------------ evaluate, with its cache
def test_evaluate_values_cache_and_reference(images, tmp_path):
    ds = {'syn': TestImageDataset(images, 4)}
    f = Counting()
    methods = [E.Method('Bic', f, 'v1')]
    df = E.evaluate(methods, ds, cache_dir=tmp_path)
    assert f.calls == 2 and list(df.columns) == ['dataset', 'image', 'method', 'metric', 'value']
    assert set(df[df.method == 'Bic'].metric) == set(E.metric_names()) | {'rmse'}
    assert set(df[df.method == 'HR'].metric) == {m for m in E.metric_names() if not METRICS[m].full_reference}
    v = df.set_index(['image', 'method', 'metric']).value
    for it in ds['syn']:
        png = read_image(tmp_path / 'syn' / 'Bic' / f'{it["name"]}.png')          # the cached output, read back
        np.testing.assert_array_equal(png, E.bicubic_method(4)(it['lr']))
        assert v[it['name'], 'Bic', 'psnr'] == pytest.approx(psnr_ref(png, it['hr'], 4), abs=1e-9)
        assert v[it['name'], 'HR', 'niqe'] == pytest.approx(niqe(it['hr'], crop_border=4), abs=1e-12)
    again = E.evaluate([E.Method('Bic', f, 'v1')], ds, cache_dir=tmp_path)
    assert f.calls == 2                                                     # everything from the cache
    pd.testing.assert_frame_equal(again, df)
    E.evaluate([E.Method('Bic', f, 'v2')], ds, metrics=['psnr'], cache_dir=tmp_path, reference=None)
    assert f.calls == 4                                                     # another source: recomputed
    E.evaluate([E.Method('Bic', f, 'v2')], ds, metrics=['psnr'], cache_dir=None, reference=None)
    assert f.calls == 6                                                     # no cache: always computed
    write_image(tmp_path / 'syn' / 'Bic' / 'a.png', np.zeros((8, 8, 3), np.uint8))  # a stale file of the wrong size
    E.evaluate([E.Method('Bic', f, 'v2')], ds, metrics=['psnr'], cache_dir=tmp_path, reference=None)
    assert f.calls == 7 and read_image(tmp_path / 'syn' / 'Bic' / 'a.png').shape == ds['syn'][0]['hr'].shape


def test_evaluate_errors_and_degenerate_outputs(images, tmp_path):
    ds = {'syn': TestImageDataset({'a': images['a']}, 4)}
    bic = E.bicubic_method(4)
    with pytest.raises(ValueError, match='unique'):
        E.evaluate([bic, E.Method('Bicubic', bic.fn)], ds)
    with pytest.raises(ValueError, match='unique'):
        E.evaluate([E.Method('HR', bic.fn)], ds)
    with pytest.raises(ValueError, match='unknown metric'):
        E.evaluate([bic], ds, metrics=['lpips'])
    with pytest.raises(ValueError, match='returned'):
        E.evaluate([E.Method('small', lambda lr: lr)], ds, metrics=['psnr'], cache_dir=tmp_path)
    assert not list((tmp_path / 'syn' / 'small').glob('*.png'))            # nothing wrong was cached
    flat = E.Method('flat', lambda lr: np.full((lr.shape[0] * 4, lr.shape[1] * 4, 3), 128, np.uint8))
    with pytest.warns(RuntimeWarning, match='NIQE is undefined'):
        df = E.evaluate({'flat': flat}, ds, metrics=['psnr', 'niqe'], reference=None)
    v = df.set_index(['method', 'metric']).value
    assert v['flat', 'niqe'] == math.inf and np.isfinite(v['flat', 'psnr'])
    assert '| flat | ' in E.to_markdown(E.results_table(df)) and 'inf' in E.to_markdown(E.results_table(df))


# ------------------------------------------------------------------ tables
def tidy(rng):
    rows = []
    for d in ('S1', 'S2'):
        for img in ('i1', 'i2', 'i3'):
            for m in ('M1', 'M2', 'M3'):
                for k in ('psnr', 'ssim', 'niqe', 'rmse'):
                    rows.append((d, img, m, k, float(rng.normal(20, 5))))
            rows.append((d, img, 'HR', 'niqe', float(rng.normal(3, 0.5))))
    return pd.DataFrame(rows, columns=['dataset', 'image', 'method', 'metric', 'value'])


def test_results_table_means_by_hand(rng):
    df = tidy(rng)
    t = E.results_table(df)
    assert list(t.index) == ['M1', 'M2', 'M3', 'HR']
    assert list(t.columns) == [(d, k) for d in ('S1', 'S2') for k in ('psnr', 'ssim', 'niqe')]   # rmse left out
    sums = {}
    for r in df.itertuples():
        s = sums.setdefault((r.method, r.dataset, r.metric), [0.0, 0])
        s[0] += r.value
        s[1] += 1
    for (m, d, k), (total, n) in sums.items():
        if k != 'rmse':
            assert t.loc[m, (d, k)] == pytest.approx(total / n, rel=1e-12)
    assert np.isnan(t.loc['HR', ('S1', 'psnr')])
    t2 = E.results_table(df, metrics=['rmse', 'psnr'])
    assert list(t2.columns) == [('S1', 'rmse'), ('S1', 'psnr'), ('S2', 'rmse'), ('S2', 'psnr')]


def test_to_markdown_bold_best_by_direction():
    df = pd.DataFrame([('D', 'i', 'A', 'psnr', 30.0), ('D', 'i', 'A', 'niqe', 4.0), ('D', 'i', 'A', 'custom', 1.0),
                       ('D', 'i', 'B', 'psnr', 25.0), ('D', 'i', 'B', 'niqe', 3.0), ('D', 'i', 'B', 'custom', 2.0),
                       ('D', 'i', 'HR', 'niqe', 2.5), ('D', 'i', 'A', 'ssim', 0.123456)],
                      columns=['dataset', 'image', 'method', 'metric', 'value'])
    md = E.to_markdown(E.results_table(df))
    lines = md.strip().split('\n')
    assert lines[0] == '| Method | D PSNR-Y ↑ | D NIQE ↓ | D custom | D SSIM-Y ↑ |'   # custom: not registered: no arrow
    assert lines[1] == '|:---|---:|---:|---:|---:|'
    assert lines[2] == '| A | **30.00** | 4.000 | 1.000 | **0.1235** |'
    assert lines[3] == '| B | 25.00 | **3.000** | 2.000 | – |'                           # HR's 2.5 is not "best"
    assert lines[4] == '| HR | – | 2.500 | – | – |'


def test_pd_points_by_hand(rng):
    df = tidy(rng)
    p = E.pd_points(df)
    assert list(p.columns) == ['dataset', 'method', 'rmse', 'niqe'] and len(p) == 8
    for r in p.itertuples():
        sel = df[(df.dataset == r.dataset) & (df.method == r.method)]
        want_rmse = 0.0 if r.method == 'HR' else sel[sel.metric == 'rmse'].value.mean()
        assert r.rmse == pytest.approx(want_rmse) and r.niqe == pytest.approx(sel[sel.metric == 'niqe'].value.mean())
    assert 'HR' not in set(E.pd_points(df, reference=None).method)           # no RMSE for HR without the convention
    import matplotlib.pyplot as plt
    ax = E.pd_plane(df)
    assert len(ax.collections) == 8 and 'RMSE' in ax.get_xlabel()
    plt.close(ax.figure)


def test_pd_plane_legend_and_zoom():
    import matplotlib.pyplot as plt
    rows = [('S', 'i', m, k, v) for m, r, n in (('A', 9.0, 7.0), ('B', 9.5, 7.2))
            for k, v in (('rmse', r), ('niqe', n))]
    df = pd.DataFrame(rows + [('S', 'i', 'HR', 'niqe', 3.0)], columns=['dataset', 'image', 'method', 'metric', 'value'])
    ax = E.pd_plane(df)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ['A', 'B', 'HR']   # one dataset: no marker entries
    (ins,) = ax.child_axes                                   # HR 4 NIQE below, methods 0.2 apart: zoomed inset
    assert len(ins.collections) == 2 and ins.get_ylim()[0] > 6.5 and ins.get_xlim()[0] > 8.5
    plt.close(ax.figure)
    ax = E.pd_plane(df, zoom=False)
    assert not ax.child_axes
    plt.close(ax.figure)
    ax = E.pd_plane(df, reference=None)
    assert not ax.child_axes
    plt.close(ax.figure)  # HR has no RMSE: not drawn


# ------------------------------------------------------------------ before / after
def test_before_after():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (6, 11, 3), dtype=np.uint8), rng.integers(0, 255, (6, 11, 3), dtype=np.uint8)
    a0, b0 = a.copy(), b.copy()
    np.testing.assert_array_equal(E.before_after(a, b, 0.0), b)
    np.testing.assert_array_equal(E.before_after(a, b, 1.0), a)
    c = E.before_after(a, b, 0.5, line=2)                    # split at round(5.5) = 6: the line covers 5 and 6
    np.testing.assert_array_equal(c[:, :5], a[:, :5])
    np.testing.assert_array_equal(c[:, 7:], b[:, 7:])
    assert (c[:, 5:7] == 255).all()
    np.testing.assert_array_equal(E.before_after(a, b, 3 / 11, line=0)[:, :3], a[:, :3])
    np.testing.assert_array_equal(E.before_after(a, b, 3 / 11, line=0)[:, 3:], b[:, 3:])
    np.testing.assert_array_equal(E.before_after(a, b, 1 / 11, line=4)[:, 3:], b[:, 3:])   # a line at the edge: clipped
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)  # inputs untouched
    g = E.before_after(a[..., 0], b[..., 0], 0.5, line=1, value=0)                          # gray
    assert g.shape == (6, 11) and (g[:, 6] == 0).all() and (g[:, :6] == a[:, :6, 0]).all()
    rgba = E.before_after(np.dstack([a, a[..., :1]]), np.dstack([b, b[..., :1]]), 0.5)
    assert rgba.shape == (6, 11, 4)
    with pytest.raises(ValueError, match='same shape'):
        E.before_after(a, b[:, :10])
    with pytest.raises(ValueError, match='frac'):
        E.before_after(a, b, -0.1)


def test_before_after_widget_redraws():
    rng = np.random.default_rng(1)
    ims = {n: {m: rng.integers(0, 255, (5, 9, 3), dtype=np.uint8) for m in ('A', 'B', 'C')} for n in ('x', 'y')}
    w = E.before_after_widget(ims, left='B', right='C')
    (pick, left, _), split, view = w.children[0].children, w.children[1], w.children[2]
    shown = lambda: np.array(Image.open(io.BytesIO(view.value)))
    np.testing.assert_array_equal(shown(), E.before_after(ims['x']['B'], ims['x']['C'], 0.5))
    split.value = 0.2
    np.testing.assert_array_equal(shown(), E.before_after(ims['x']['B'], ims['x']['C'], 0.2))
    pick.value, left.value = 'y', 'A'
    np.testing.assert_array_equal(shown(), E.before_after(ims['y']['A'], ims['y']['C'], 0.2))
    assert split.min == 0 and split.max == 1 and list(left.options) == ['A', 'B', 'C']


# ------------------------------------------------------------------ visual comparison
def test_detail_box():
    img = np.zeros((200, 240, 3), np.uint8)
    img[100:, 120:] = np.random.default_rng(0).integers(0, 255, (100, 120, 3))
    assert E.detail_box(img, (100, 120)) == (100, 200, 120, 240)
    assert E.detail_box(img[:50, :61], (100, 120)) == (0, 50, 0, 61)
    assert E.detail_box(img[..., 0], (100, 120)) == (100, 200, 120, 240)   # gray


def test_visual_comparison_reads_the_cache_and_the_table(images, tmp_path):
    import matplotlib.pyplot as plt
    ds = TestImageDataset(images, 4)
    f = Counting()
    m = E.Method('Bic', f, 'v1')
    df = E.evaluate([m], {'syn': ds}, metrics=['psnr'], cache_dir=tmp_path)
    fig = E.visual_comparison(ds, [m], df, 'syn', tmp_path, max_images=5, size=(64, 80))
    assert f.calls == 2 and len(fig.axes) == 4                              # 2 images x (1 method + HR), from the cache
    v = df.set_index(['image', 'method', 'metric']).value
    assert fig.axes[0].get_title() == f"Bic\n{v['a', 'Bic', 'psnr']:.2f} dB" and fig.axes[1].get_title() == 'HR'
    y0, y1, x0, x1 = E.detail_box(ds[0]['hr'], (64, 80))
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(),
                                  read_image(tmp_path / 'syn' / 'Bic' / 'a.png')[y0:y1, x0:x1])
    plt.close(fig)


# ------------------------------------------------------------------ seeds among the stages
def test_generator_stages_put_seeds_after_their_first(cfg, tmp_path):
    meta = stage_meta(cfg, ('scale', 'g_nf', 'g_nb'))
    for s in ('ranksrgan_s11', 'zz', 'srgan', 'srgan_s11', 'ranksrgan_s3', 'ranksrgan', 'srresnet', 'multi_n0_l0.03',
              'srgan_plus'):
        save_final(tmp_path, s, {'G': build_generator(cfg).state_dict()}, meta)
    assert E.generator_stages(tmp_path) == ['srresnet', 'srgan', 'srgan_s11', 'srgan_plus', 'ranksrgan', 'ranksrgan_s3',
                                            'ranksrgan_s11', 'multi_n0_l0.03', 'zz']
    assert list(E.stage_methods(cfg, tmp_path))[:7] == ['SRResNet', 'SRGAN', 'SRGAN (seed 11)', 'SRGAN+', 'RankSRGAN',
                                                         'RankSRGAN (seed 3)', 'RankSRGAN (seed 11)']


# ------------------------------------------------------------ colour metrics (stand-ins when 01 does not register them)
def _lowpass8(a):
    h, w = a.shape[0] // 8 * 8, a.shape[1] // 8 * 8
    return a[:h, :w].astype(np.float64).reshape(h // 8, 8, w // 8, 8, 3).mean((1, 3)) / 255.0


@pytest.fixture
def colour_metrics():
    "delta_e and psnr_rgb in the registry for this test: 01's when registered, else test-only stand-ins, removed after."
    from skimage.color import deltaE_ciede2000, rgb2lab
    from ranksrgan_nb.metrics import psnr, register_metric
    added = []
    if 'delta_e' not in METRICS:
        de = lambda a, b, crop_border=0: float(deltaE_ciede2000(rgb2lab(_lowpass8(b)), rgb2lab(_lowpass8(a))).mean())
        register_metric('delta_e', de, higher_is_better=False, full_reference=True)
        added.append('delta_e')
    if 'psnr_rgb' not in METRICS:
        register_metric('psnr_rgb', lambda a, b, crop_border=0: psnr(a, b, crop_border=crop_border, color='rgb'),
                        higher_is_better=True, full_reference=True)
        added.append('psnr_rgb')
    yield
    for k in added: METRICS.pop(k)


def test_colour_metrics_in_every_table(images, colour_metrics):
    ds = {'syn': TestImageDataset(images, 4)}
    tint = E.Method('tint', lambda lr: np.clip(E.bicubic_method(4)(lr).astype(int) + [30, 0, -30], 0, 255)
                    .astype(np.uint8))
    df = E.evaluate([E.bicubic_method(4), tint], ds)
    t = E.results_table(df)
    assert ([m for _, m in t.columns] == ['psnr', 'ssim', 'niqe', 'delta_e', 'psnr_rgb']
            or {'delta_e', 'psnr_rgb'} <= {m for _, m in t.columns})
    head = E.to_markdown(t).split('\n')[0]
    assert 'syn ΔE00 ↓' in head and 'syn PSNR-RGB ↑' in head and 'syn PSNR-Y ↑' in head and 'syn SSIM-Y ↑' in head
    row = [r for r in E.to_markdown(t).split('\n') if r.startswith('| tint |')][0].split(' | ')
    col = [c.strip() for c in head.split('|')[1:-1]].index('syn ΔE00 ↓')
    assert row[col] == f"{t.loc['tint', ('syn', 'delta_e')]:.2f}"
    c = E.colour_check(df)
    assert list(c.index) == ['tint'] and c.loc['tint', 'excess'] > 1 and not c.loc['tint', 'ok']   # a tint fails


def test_colour_check_by_hand():
    rows = [('S', 'i', 'Bicubic', 0.5), ('S', 'j', 'Bicubic', 0.7), ('S', 'i', 'G', 1.4), ('S', 'j', 'G', 1.7),
            ('S', 'i', 'HR', 0.0), ('T', 'k', 'G', 50.0), ('T', 'k', 'Bicubic', 0.6), ('S', 'i', 'G', 9.0)]
    df = pd.DataFrame([(d, i, m, 'delta_e' if k < 7 else 'psnr', v) for k, (d, i, m, v) in enumerate(rows)],
                      columns=['dataset', 'image', 'method', 'metric', 'value'])
    c = E.colour_check(df, ['S'])
    assert list(c.index) == ['G'] and list(c.columns) == ['delta_e', 'Bicubic', 'excess', 'ok']   # HR is no generator
    assert c.loc['G', 'delta_e'] == pytest.approx(1.55) and c.loc['G', 'Bicubic'] == pytest.approx(0.6)
    assert c.loc['G', 'excess'] == pytest.approx(0.95) and c.loc['G', 'ok']                     # within 1 dE
    assert not E.colour_check(df, ['S'], tolerance=0.9).loc['G', 'ok']
    pooled = E.colour_check(df)                                                        # every image of every set
    assert pooled.loc['G', 'delta_e'] == pytest.approx((1.4 + 1.7 + 50.0) / 3) and not pooled.loc['G', 'ok']
    with pytest.raises(ValueError, match='registered'):
        E.colour_check(df, metric='psnr_rgb')
    with pytest.raises(ValueError, match="no 'delta_e' values of 'Bicubic'"):
        E.colour_check(df[df.method != 'Bicubic'])


# ------------------------------------------------------------------ bicubic against the literature
def test_bicubic_vs_literature():
    cols = pd.MultiIndex.from_tuples([(d, m) for d in ('Set5', 'Set14', 'CBSD68') for m in ('psnr', 'ssim')])
    t = pd.DataFrame([[28.43, 0.8113, 26.09, 0.7050, 26.07, 0.6833], [1, 1, 1, 1, 1, 1]], index=['Bicubic', 'X'],
                     columns=cols)
    b = E.bicubic_vs_literature(t)
    assert list(b.index) == ['Set5', 'Set14']                                          # CBSD68 has no literature row
    assert b.loc['Set14', 'PSNR-Y difference'] == pytest.approx(0.09) and b.loc['Set5', 'SSIM-Y literature'] == 0.8104
    assert E.bicubic_vs_literature(t, 'X').loc['Set5', 'PSNR-Y here'] == 1
    assert E.bicubic_vs_literature(t[['CBSD68']]).empty


def test_gray_image_gains_20log10_255_over_219_on_y(images):
    g = images['a'][..., 1]
    rgb = np.repeat(g[..., None], 3, -1)
    sr = E.bicubic_method(4)(bicubic_degrade(modcrop(rgb, 4), 4))
    hr = modcrop(rgb, 4)
    # MATLAB: the one channel
    gray = 10 * math.log10(255.0 ** 2 / np.mean((sr[4:-4, 4:-4, 0].astype(float) - hr[4:-4, 4:-4, 0]) ** 2))
    assert psnr_ref(sr, hr, 4) - gray == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)
    assert E.image_metrics(sr, hr, ['psnr'], 4)['psnr'] == pytest.approx(psnr_ref(sr, hr, 4), abs=1e-9)


# ------------------------------------------------------------------ paired statistics
def _pairs_df():
    rows = []
    rng = np.random.default_rng(5)
    for d, n in (('S1', 6), ('S2', 4)):
        for i in range(n):
            a = float(rng.normal(6, 1))
            rows += [(d, f'i{i}', 'A', 'niqe', a), (d, f'i{i}', 'B', 'niqe', a + float(rng.normal(-0.4, 0.3))),
                     (d, f'i{i}', 'A', 'psnr', 25.0 + i), (d, f'i{i}', 'B', 'psnr', 24.9 + i)]
    return pd.DataFrame(rows, columns=['dataset', 'image', 'method', 'metric', 'value'])


def test_paired_differences():
    df = _pairs_df()
    d = E.paired_differences(df, 'A', 'B', 'niqe')
    v = df.set_index(['dataset', 'image', 'method', 'metric']).value
    assert len(d) == 10 and all(d[k] == v[k + ('B', 'niqe')] - v[k + ('A', 'niqe')] for k in d.index)
    assert list(E.paired_differences(df, 'A', 'B', 'niqe', ['S2']).index.get_level_values(0).unique()) == ['S2']
    bad = df.copy()
    bad.loc[(bad.image == 'i0') & (bad.method == 'B') & (bad.metric == 'niqe'), 'value'] = [np.nan, np.inf]   # 2 sets
    bad = bad[~((bad.image == 'i1') & (bad.method == 'A'))]                                  # a missing value
    assert len(E.paired_differences(bad, 'A', 'B', 'niqe')) == 10 - 2 - 2
    with pytest.raises(ValueError, match=r"no niqe values of \['C'\]"):
        E.paired_differences(df, 'A', 'C', 'niqe')


def test_paired_stats_against_scipy():
    from scipy.stats import wilcoxon
    d = E.paired_differences(_pairs_df(), 'A', 'B', 'niqe').to_numpy()
    s = E.paired_stats(d, 'niqe')
    n = len(d)
    mean = sum(d) / n
    assert s['n'] == n and s['mean'] == pytest.approx(mean, rel=1e-12)
    assert s['se'] == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n), rel=1e-12)
    assert s['p'] == pytest.approx(wilcoxon(list(d)).pvalue, rel=1e-12) and s['p'] < 0.05
    assert s['improved'] == sum(x < 0 for x in d) / n
    psnr_d = E.paired_differences(_pairs_df(), 'A', 'B', 'psnr').to_numpy()
    sp = E.paired_stats(psnr_d, 'psnr')
    assert sp['improved'] == 0.0 and sp['mean'] == pytest.approx(-0.1)                        # PSNR: higher is better


def test_paired_stats_edge_cases():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')                                   # identical methods: no scipy warning or error
        same = E.paired_stats(np.zeros(7), 'niqe')
    assert same == {'n': 7, 'mean': 0.0, 'se': 0.0, 'p': 1.0, 'improved': 0.0}
    one = E.paired_stats(np.array([0.3]), 'niqe')
    assert one['n'] == 1 and math.isnan(one['se']) and one['p'] == 1.0 and one['improved'] == 0.0
    empty = E.paired_stats(np.array([]), 'psnr')
    assert empty['n'] == 0 and all(math.isnan(empty[k]) for k in ('mean', 'se', 'p', 'improved'))
    ties = E.paired_stats(np.array([0.0, 0.0, -1.0, -2.0, -3.0]), 'niqe')              # zeros are dropped by Wilcoxon
    from scipy.stats import wilcoxon
    assert ties['p'] == pytest.approx(wilcoxon([-1.0, -2.0, -3.0]).pvalue) and ties['improved'] == 0.6


def test_paired_table_and_markdown(capsys):
    df = _pairs_df()
    t = E.paired_table(df, {'s1': ('A', 'B'), 'gone': ('A', 'Missing'), 'rev': ('B', 'A')}, metrics=['niqe', 'psnr'],
                       datasets=['S1'])
    assert list(t.index) == ['s1', 'rev'] and 'pair' in capsys.readouterr().out
    assert "'gone'" in capsys.readouterr().out + "'gone'"
    assert list(t.columns) == [(m, k) for m in ('niqe', 'psnr') for k in E.PAIRED_COLUMNS]
    want = E.paired_stats(E.paired_differences(df, 'A', 'B', 'niqe', ['S1']), 'niqe')
    assert t.loc['s1', ('niqe', 'n')] == 6
    assert all(t.loc['s1', ('niqe', k)] == pytest.approx(v) for k, v in want.items())
    assert t.loc['rev', ('niqe', 'mean')] == pytest.approx(-t.loc['s1', ('niqe', 'mean')])
    md = E.paired_markdown(t).split('\n')
    assert md[0] == ('| pair | images | ΔNIQE (mean ± SE) | p (Wilcoxon) | improved | ΔPSNR-Y (mean ± SE) | '
                     'p (Wilcoxon) | improved |')
    m, se, p, imp = (t.loc['s1', ('niqe', k)] for k in ('mean', 'se', 'p', 'improved'))
    p_psnr = t.loc['s1', ('psnr', 'p')]
    assert md[2] == (f'| s1 | 6 | {m:+.3f} ± {se:.3f} | {p:.2g} | {100 * imp:.0f} % | -0.10 ± 0.00 | {p_psnr:.2g} '
                     '| 0 % |')
    assert E.paired_table(df, {'x': ('A', 'Z')}).empty                                       # every pair missing: empty


def test_plot_paired():
    import matplotlib.pyplot as plt
    df = _pairs_df()
    d = {'s1': E.paired_differences(df, 'A', 'B', 'niqe'), 's2': -E.paired_differences(df, 'A', 'B', 'niqe')}
    ax = E.plot_paired(d, 'niqe')
    assert len(ax.collections) == 2 and 'NIQE' in ax.get_ylabel()
    assert [l.get_ydata()[0] for l in ax.get_lines()] == [0]                                   # the zero line
    order = pd.DataFrame(d).mean(axis=1).sort_values().index
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 1], d['s1'][order].to_numpy())
    plt.close(ax.figure)


# ------------------------------------------------------------------ shipped weights
def test_shipped_default_width_fits_and_loads(tmp_path):
    torch.manual_seed(0)
    G = SRResNet()
    save_final(tmp_path / 'run', 'srgan', {'G': G.state_dict()}, {'seed': 10, 'n_iters': 600})
    files = E.write_shipped(tmp_path / 'run', tmp_path / 'w', {'srgan': 'srgan'})
    f = files['srgan']
    assert f == tmp_path / 'w' / 'srgan.pth' and f.stat().st_size <= 4_000_000
    sd = torch.load(f, weights_only=True)
    assert all(v.dtype == torch.float16 for v in sd.values())
    H = SRResNet()
    H.load_state_dict({k: v.float() for k, v in sd.items()})  # the documented way
    for k, v in G.state_dict().items():
        assert torch.equal(H.state_dict()[k], v.half().float())
    with pytest.raises(ValueError, match='more than the 1,000,000 of a shipped'):
        E.write_shipped(tmp_path / 'run', tmp_path / 'w2', {'srgan': 'srgan'}, max_bytes=1_000_000)
    with pytest.raises(FileNotFoundError, match="stage '(srresnet|ranksrgan)' is not finished"):
        E.write_shipped(tmp_path / 'run', tmp_path / 'w3')


def test_shipped_and_cli_weights_are_the_average_when_a_stage_kept_one(tmp_path):
    from ranksrgan_nb import cli
    torch.manual_seed(0)
    G, E_ = SRResNet(nf=8, nb=1), SRResNet(nf=8, nb=1)                 # E_: stands for G_ema
    p = save_final(tmp_path / 'run', 'ranksrgan', {'G': G.state_dict(), 'D': {}, 'G_ema': E_.state_dict()},
                   {'seed': 10, 'n_iters': 6})
    sd = torch.load(E.write_shipped(tmp_path / 'run', tmp_path / 'w', {'ranksrgan': 'ranksrgan'})['ranksrgan'],
                    weights_only=True)
    assert torch.equal(sd['conv_first.weight'], E_.conv_first.weight.detach().half())
    assert torch.equal(cli.load_sr_model(p, device='cpu').conv_first.weight, E_.conv_first.weight)


def test_shipped_smoke_run_loads_in_the_cli(tmp_path, monkeypatch, images):
    """A smoke run's final generators written into a temp folder: the CLI finds them by name and super-resolves."""
    import hashlib
    from ranksrgan_nb import cli
    from ranksrgan_nb import gan as GN
    from ranksrgan_nb import train as T
    from ranksrgan_nb.models import Ranker
    cfg = get_profile('smoke', sr_iters=3, gan_iters=2, ckpt_every=2, val_every=2, log_every=1, device='cpu')
    sr = T.train_srresnet(cfg, tmp_path / 'run')
    rk = T.save_final(tmp_path / 'run', 'ranker', {'R': Ranker(nf=cfg.r_nf).state_dict()},
                      {'r_nf': cfg.r_nf, 'label_metric': 'niqe'})
    T.train_gan(cfg, tmp_path / 'run', 'srgan', init=sr)                        # 03's SRGAN: the arms' start
    GN.ensure_arms(cfg, tmp_path / 'run', ('ranksrgan',), ranker=rk)
    files = E.write_shipped(tmp_path / 'run', tmp_path / 'weights')
    assert sorted(files) == ['ranksrgan', 'srgan', 'srresnet'] == sorted(cli.SHIPPED)
    monkeypatch.setattr(cli, 'WEIGHTS_DIR', tmp_path / 'weights')
    write_image(tmp_path / 'in' / 'x.png', images['a'][:40, :44])
    assert cli.main(['sr', str(tmp_path / 'in' / 'x.png'), '-o', str(tmp_path / 'out'), '--weights', 'ranksrgan',
                     '--device', 'cpu']) == 0
    got = read_image(tmp_path / 'out' / 'x.png')
    G = T.load_generator(cfg, T.final_path(tmp_path / 'run', 'ranksrgan'))
    full = E.generator_method('r', G)(images['a'][:40, :44])
    assert got.shape == full.shape and np.abs(got.astype(int) - full).max() <= 2      # fp16 weights: a grey level
    readme = E.shipped_readme(files, cfg, tmp_path / 'run', '| Method | x |\n').read_text()
    for name, f in files.items():
        assert f'`{hashlib.sha256(f.read_bytes()).hexdigest()}`' in readme and f'| `{name}.pth` | {name} |' in readme
    assert '| `srgan.pth` | srgan | `SRResNet(nf=8, nb=2)` | 10 | 2 |' in readme and readme.endswith('| Method | x |\n')


def test_to_markdown_without_reference_row():
    "The shipped-weights table has no HR row: reference=None marks the best of every row."
    t = pd.DataFrame({('S', 'psnr'): [1.0, 2.0], ('S', 'niqe'): [5.0, 4.0]}, index=['A', 'B'])
    t.columns = pd.MultiIndex.from_tuples(t.columns)
    md = E.to_markdown(t, reference=None)
    assert '**2.00**' in md and '**4.000**' in md and '| A | 1.00 | 5.000 |' in md
