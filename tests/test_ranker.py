"""Stages 1 and 2: windows, labels and their noise, level admission, the rank dataset (official format), pairs,
the margin-ranking loss, the checks in the GAN's BatchNorm mode, and Ranker training by design."""
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from ranksrgan_nb import ranker as RK
from ranksrgan_nb.config import get_profile
from ranksrgan_nb.data import imresize, read_image, write_image
from ranksrgan_nb.metrics import niqe
from ranksrgan_nb.models import Ranker

warnings.filterwarnings('ignore', category=UserWarning)


# ---------------------------------------------------------------- windows

def test_window_starts_follow_matlab_colon():
    # MATLAB: h = 1:148:H-296 (1-based); written out by hand for three heights
    assert RK.window_starts(600, 296, 148) == [0, 148, 296]       # 1, 149, 297
    assert RK.window_starts(592, 296, 148) == [0, 148]            # 1, 149  (297 > 296)
    assert RK.window_starts(296, 296, 148) == []                  # 1:148:0 is empty
    assert RK.window_starts(297, 296, 148) == [0]
    assert RK.window_grid(300, 450, 296, 148) == [(0, 0), (0, 148)]


def test_shifted_window_stays_inside():
    assert RK.shifted(0, 600, 296, 8) == 8                        # room below: down
    assert RK.shifted(300, 600, 296, 8) == 292                    # 308 > 304: up instead
    assert RK.shifted(2, 300, 296, 8) == 4                        # neither fits whole: as far as the image allows
    img = np.arange(320 * 330 * 3, dtype=np.int64).reshape(320, 330, 3) % 251
    img = img.astype(np.uint8)
    w = RK.crop_windows(img, [(0, 0), (20, 30)], 296, shift=8)
    assert w.dtype == torch.float64 and w.shape == (2, 3, 296, 296)
    got = np.round(w[1].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert (got == img[12:308, 22:318]).all()                     # 28 > 24 and 38 > 34: moved up and left
    assert RK.crop_windows(img, [], 296).shape == (0, 3, 296, 296)


def test_label_windows_nan_for_flat_and_level_labels():
    img = np.full((210, 420, 3), 90, np.uint8)
    img[:, 210:] = np.random.default_rng(1).integers(0, 256, (210, 210, 3))
    v = RK.label_windows(img, [(0, 0), (0, 210)], 200)
    assert np.isnan(v[0]) and v[1] == pytest.approx(niqe(img[:200, 210:410], crop_border=4, color='y'), abs=1e-6)
    assert list(RK.label_windows(img, [(0, 0), (0, 210)], 200, 'level_order', level_index=1)) == [1.0, 1.0]
    assert len(RK.label_windows(img, [], 200)) == 0


# ---------------------------------------------------------------- label noise and reliability

def test_robust_sd_against_scipy():
    from scipy.stats import median_abs_deviation
    x = np.random.default_rng(0).normal(2, 0.5, 5001)
    assert RK.robust_sd(x) == pytest.approx(median_abs_deviation(x, scale='normal'), rel=1e-4)
    assert RK.robust_sd(np.r_[x, [1e6] * 50, [np.nan] * 5]) == pytest.approx(0.5, abs=0.03)   # outliers, NaN
    assert np.isnan(RK.robust_sd([np.nan]))
    assert RK.robust_sd([1.0, 2.0, 4.0]) == pytest.approx(1.4826 * 1.0)   # median 2, |dev| 1, 0, 2 -> 1


def _table(rng, n=400, gaps=(0.1, 3.0), noise=0.2, names=('hr', 'close', 'far')):
    base = rng.normal(3, 1, n)
    d = {'image': [f'im{i % 10}' for i in range(n)], 'y': 0, 'x': np.arange(n), 'sharpness': 50.0, 'textured': True}
    for name, g in zip(names, (0.0, *gaps)):
        d[f'label_{name}'] = base + g
        d[f'retest_{name}'] = base + g + rng.normal(0, noise, n)
    return pd.DataFrame(d)


def test_pair_and_level_stats_by_hand():
    t = pd.DataFrame({'label_a': [1., 2, 3, 4], 'retest_a': [1.2, 2.2, 2.8, 4.0],
                      'label_b': [2., 1, 5, 6], 'retest_b': [2., 1, 5, 6], 'label_c': [9.] * 4, 'retest_c': [9.] * 4})
    ps = RK.pair_stats(t, ['a', 'b', 'c'])
    assert list(ps.index) == ['a < b', 'b < c', 'a < c']
    assert ps.loc['a < b', 'better on'] == 0.75 and ps.loc['a < b', 'median gap'] == 1.5        # gaps 1, -1, 2, 2
    # retest changes of a: .2, .2, -.2, 0 -> median .1; |dev| .1, .1, .3, .1 -> .1
    assert ps.loc['a < b', 'median gap / noise'] == pytest.approx(1.5 / 0.14826)
    assert ps.loc['b < c', 'median gap / noise'] == np.inf   # b and c have no noise
    ls = RK.level_stats(t, ['a', 'b', 'c'])
    assert ls.loc['a', 'median label'] == 2.5 and ls.loc['a', 'retest noise'] == pytest.approx(0.14826)
    assert RK.pair_stats(t, ['a', 'b']).index.tolist() == ['a < b']                               # two levels: one row


def test_labelled_drops_undefined_windows():
    t = pd.DataFrame({'label_a': [1., np.nan, 3], 'retest_a': [1., 2, np.nan],
                      'label_b': [1., 2, 3], 'retest_b': [1., 2, 3]})
    assert RK.labelled(t, ['a', 'b']).index.tolist() == [0]
    assert RK.labelled(t, ['b']).index.tolist() == [0, 1, 2]


# ---------------------------------------------------------------- level admission and the gap filter

def test_admission_drops_a_level_inside_the_noise():
    t = _table(np.random.default_rng(0))
    admitted, why = RK.admit_levels(t, ['hr', 'close', 'far'], 2.0)
    assert admitted == ['hr', 'far']
    assert why.loc['close', 'admitted'] == False and why.loc['far', 'compared with'] == 'hr'     # noqa: E712
    assert why.loc['far', 'median gap'] == pytest.approx(3.0)
    assert RK.admit_levels(t, ['hr', 'close', 'far'], 0.0)[0] == ['hr', 'close', 'far']   # k = 0: the rule is off
    assert RK.admit_levels(t, ['hr', 'close', 'far'], 0.3)[0] == ['hr', 'close', 'far']          # 0.1 > 0.3 x ~0.2


def test_admission_compares_with_the_last_admitted_level():
    # 'mid' is 1.0 above 'hr'; 'low' only 0.5 above 'mid' (inside 2 x noise of ~0.3) but 1.5 above 'hr'
    t = _table(np.random.default_rng(1), gaps=(1.0, 1.5), noise=0.3, names=('hr', 'mid', 'low'))
    admitted, why = RK.admit_levels(t, ['hr', 'mid', 'low'], 2.0)
    assert admitted == ['hr', 'mid'] and why.loc['low', 'compared with'] == 'mid'


def test_fewer_than_two_levels_is_an_error_that_says_what_to_do():
    t = _table(np.random.default_rng(0), gaps=(0.05,), names=('hr', 'close'))
    with pytest.raises(ValueError,
                       match=r"rank_noise_k=2 admits no level besides 'hr'.*rank_levels.*rank_patch.*rank_noise_k=0"):
        RK.admit_levels(t, ['hr', 'close'], 2.0)
    empty = t.assign(label_close=np.nan)
    with pytest.raises(ValueError, match='0 labelled windows'):
        RK.admit_levels(empty, ['hr', 'close'], 2.0)


def test_zero_noise_levels_are_admitted():
    # method-ordered labels ('level_order' metric): no noise at all, a gap of 1 between levels
    t = pd.DataFrame({f'{c}_{lv}': [float(k)] * 5 for k, lv in enumerate('abc') for c in ('label', 'retest')})
    assert RK.admit_levels(t, list('abc'), 2.0)[0] == list('abc')


def test_separated_every_adjacent_pair():
    t = pd.DataFrame({'label_a': [1., 1, 1, 1, 1], 'label_b': [2., 1.05, 2, np.nan, 0.5],
                      'label_c': [3., 3, 2.05, 3, 3]})
    assert list(RK.separated(t, ['a', 'b', 'c'], 0.1)) == [True, False, False, False, True]   # |gap| counts either way
    assert list(RK.separated(t, ['a', 'c'], 0.1)) == [True] * 5
    assert list(RK.separated(t, ['a', 'b', 'c'], -1.0)) == [True] * 5


def test_cap_and_select_windows():
    t = _table(np.random.default_rng(0), n=60)
    cap = RK.cap_per_image(t.image, 4, np.random.default_rng(0))
    assert cap.sum() == 40 and all(n == 4 for n in t.image[cap].value_counts())
    cfg = get_profile('smoke', rank_max_per_image=3, rank_diff_min=0.5, rank_val_frac=0.2)
    kept, counts = RK.select_windows(t, ['hr', 'far'], cfg, np.random.default_rng(0))
    assert counts.kept.sum() == len(kept) == 30 and (counts.windows == 6).all()
    assert set(kept.split) == {'train', 'valid'}
    assert not set(kept.image[kept.split == 'valid']) & set(kept.image[kept.split == 'train'])   # whole images held out
    kept2, counts2 = RK.select_windows(t, ['hr', 'close'], cfg, np.random.default_rng(0))         # gaps 0.1 < 0.5
    assert len(kept2) == 0 and counts2.separated.sum() == 0


# ---------------------------------------------------------------- the official file format

def _official_folder(tmp_path, flat=False):
    rng = np.random.default_rng(0)
    lines = []
    for i in (1, 2, 10):
        for lv, base in (('srres', 3.0), ('srgan', 2.0), ('esrgan', 1.0)):
            sub = tmp_path if flat else tmp_path / f'DF2K_train_patch_{lv}'
            write_image(sub / f'{i}_{lv}.png', rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
            lines.append(f'{i}_{lv}.png {base + i / 100:.6f}')
    (tmp_path / 'label.txt').write_text('\n'.join(lines) + '\n')
    return tmp_path / 'label.txt'


@pytest.mark.parametrize('flat', [False, True])
def test_read_official_format(tmp_path, flat):
    lab = _official_folder(tmp_path, flat)
    rd = RK.read_rank_dataset(tmp_path, lab)
    assert rd.levels == ['esrgan', 'srgan', 'srres']               # ordered by mean score, best (lowest) first
    assert sorted(rd.items) == ['1', '10', '2'] and rd.noise == {}  # no manifest: noise unknown
    assert rd.items['10']['srgan'][1] == pytest.approx(2.1)
    RK.write_labels(rd, tmp_path / 'back.txt')
    assert sorted((tmp_path / 'back.txt').read_text().split()) == sorted(lab.read_text().split())
    first = (tmp_path / 'back.txt').read_text().splitlines()[:3]
    assert [l.split()[0] for l in first] == ['1_srres.png', '1_srgan.png', '1_esrgan.png']   # worst level first


def test_read_errors(tmp_path):
    lab = _official_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        RK.read_rank_dataset(tmp_path, tmp_path / 'none.txt')
    (tmp_path / 'bad.txt').write_text('1_srres.png\n')
    with pytest.raises(ValueError, match='bad.txt:1'):
        RK.read_rank_dataset(tmp_path, tmp_path / 'bad.txt')
    (tmp_path / 'gone.txt').write_text('99_srres.png 1.0\n')
    with pytest.raises(FileNotFoundError, match='99_srres.png'):
        RK.read_rank_dataset(tmp_path, tmp_path / 'gone.txt')
    lines = lab.read_text().splitlines()
    (tmp_path / 'partial.txt').write_text('\n'.join(lines[:-1]) + '\n')      # id 10 loses a level
    with pytest.raises(ValueError, match='without all levels'):
        RK.read_rank_dataset(tmp_path, tmp_path / 'partial.txt', levels=['esrgan', 'srgan', 'srres'])


# ---------------------------------------------------------------- building the rank dataset

@pytest.fixture(scope='module')
def photos():
    from skimage.data import astronaut, coffee, rocket
    return {'astronaut': astronaut()[:400, :400], 'coffee': coffee(), 'rocket': rocket()}


def _methods():
    def hr(lr, hr): return hr
    def noisy(lr, hr):
        n = np.random.default_rng(1).normal(0, 12, hr.shape)
        return np.clip(hr + n, 0, 255).astype(np.uint8)
    def bicubic(lr, hr): return np.clip(np.round(imresize(lr / 255.0, 4) * 255), 0, 255).astype(np.uint8)
    return {'hr': hr, 'noisy': noisy, 'bicubic': bicubic}


def test_build_rank_dataset_with_user_methods(tmp_path, photos):
    cfg = get_profile('smoke', rank_patch=200, rank_stride=100, rank_max_per_image=3, rank_sharpness_min=0,
                      rank_diff_min=0.1, rank_val_frac=0.3, rank_levels=('hr', 'noisy', 'bicubic'))
    tr, va = RK.build_rank_dataset(cfg, tmp_path, photos, _methods())
    out = tmp_path / 'rank_dataset'
    man = json.loads((out / 'manifest.json').read_text())
    assert man['levels'] == man['candidate_levels'] == ['hr', 'noisy', 'bicubic']
    assert man['n_train'] == len(tr) and man['n_valid'] == len(va) and len(man['valid_images']) == 1 and len(va) > 0
    assert set(man['noise']) == {'hr', 'noisy', 'bicubic'} and all(v >= 0 for v in man['noise'].values())
    assert tr.noise == man['noise'] and set(man['admission']) == {'noisy', 'bicubic'}
    for name, c in man['counts'].items():
        assert c['kept'] <= 3 and c['kept'] <= c['separated'] <= c['labelled'] <= c['textured'] <= c['windows']
    windows = pd.read_csv(out / 'windows.csv')
    assert len(windows) == sum(c['windows'] for c in man['counts'].values())
    # the labels are NIQE on Y with a 4-pixel shave of the saved window (checked with the numpy path)
    i = sorted(tr.items)[0]
    for lv in tr.levels:
        path, score = tr.items[i][lv]
        assert read_image(path).shape == (200, 200, 3)
        assert score == pytest.approx(niqe(read_image(path), crop_border=4, color='y'), abs=1e-5)
    # every adjacent pair of kept labels differs by more than rank_diff_min
    for d in list(tr.items.values()) + list(va.items.values()):
        assert all(abs(d[a][1] - d[b][1]) > 0.1 for a, b in zip(tr.levels, tr.levels[1:]))
    # reading it back gives the same dataset, with the noise of the manifest
    back = RK.read_rank_dataset(out / 'train', out / 'train_label.txt')
    assert back.levels == tr.levels and sorted(back.items) == sorted(tr.items) and back.noise == tr.noise


def test_build_rank_dataset_drops_a_level_niqe_cannot_separate(tmp_path, photos):
    m = _methods()
    methods = {'hr': m['hr'], 'hr_again': m['hr'], 'bicubic': m['bicubic']}   # 'hr_again' is 'hr' itself: gap 0
    cfg = get_profile('smoke', rank_noise_k=2.0, rank_diff_min=0.0, rank_val_frac=0.0,
                      rank_levels=('hr', 'srgan', 'bicubic'))
    tr, _ = RK.build_rank_dataset(cfg, tmp_path, photos, methods)
    man = json.loads((tmp_path / 'rank_dataset' / 'manifest.json').read_text())
    assert tr.levels == man['levels'] == ['hr', 'bicubic'] and man['admission']['hr_again']['admitted'] is False
    out = tmp_path / 'rank_dataset' / 'train'
    assert (out / 'bicubic').is_dir() and not (out / 'hr_again').exists()


def test_build_rank_dataset_with_one_separable_level_fails(tmp_path, photos):
    m = _methods()
    cfg = get_profile('smoke', rank_noise_k=2.0, rank_levels=('hr', 'srgan'))
    with pytest.raises(ValueError, match="admits no level besides 'hr'"):
        RK.build_rank_dataset(cfg, tmp_path, photos, {'hr': m['hr'], 'hr_again': m['hr']})


def test_build_rank_dataset_nothing_passes(tmp_path, photos):
    cfg = get_profile('smoke', rank_sharpness_min=1e9, rank_levels=('hr', 'noisy', 'bicubic'))
    with pytest.raises(ValueError, match='admits no level|no training window passed the filters'):
        RK.build_rank_dataset(cfg, tmp_path, photos, _methods())
    cfg = get_profile('smoke', rank_diff_min=1e9, rank_stride=200, rank_levels=('hr', 'noisy', 'bicubic'))
    with pytest.raises(ValueError, match='no training window passed the filters'):
        RK.build_rank_dataset(cfg, tmp_path / 'b', {'coffee': photos['coffee']}, _methods())


@pytest.mark.parametrize('metric', ['level_order', 'level'])   # 'level': the old name, still accepted
def test_level_order_labels(tmp_path, photos, metric):
    cfg = get_profile('smoke', label_metric=metric, rank_levels=('hr', 'noisy', 'bicubic'), rank_val_frac=0.0,
                      rank_noise_k=2.0)
    tr, va = RK.build_rank_dataset(cfg, tmp_path, photos, _methods())
    assert len(va) == 0 and tr.levels == ['hr', 'noisy', 'bicubic']
    assert tr.noise == {'hr': 0.0, 'noisy': 0.0, 'bicubic': 0.0}
    for d in tr.items.values():
        assert [d[lv][1] for lv in tr.levels] == [0.0, 1.0, 2.0]
    assert list(RK.label_scores(torch.rand(3, 3, 8, 8), metric, level_index=2)) == [2.0, 2.0, 2.0]


def test_label_metric_names():
    assert get_profile('smoke', label_metric='level_order').label_metric == 'level_order'
    with pytest.raises(ValueError, match="did you mean 'level_order'"):
        get_profile('smoke', label_metric='level_ordr')


def test_ensure_rank_dataset_reuses_or_refuses(tmp_path, photos):
    cfg = get_profile('smoke', rank_levels=('hr', 'bicubic'), rank_val_frac=0.3)
    tr, va = RK.build_rank_dataset(cfg, tmp_path, photos, {k: v for k, v in _methods().items() if k != 'noisy'})
    tr2, va2 = RK.ensure_rank_dataset(cfg, tmp_path)                       # read back, nothing rebuilt
    assert sorted(tr2.items) == sorted(tr.items) and sorted(va2.items) == sorted(va.items) and tr2.noise == tr.noise
    with pytest.raises(ValueError, match='other settings.*rank_noise_k'):
        RK.ensure_rank_dataset(get_profile(cfg, rank_noise_k=3.0), tmp_path)
    with pytest.raises(ValueError, match='other settings'):
        RK.ensure_rank_dataset(get_profile(cfg, rank_patch=240), tmp_path)


def test_test_tuples_come_from_the_test_photographs(tmp_path, photos):
    test_dir = tmp_path / 'test_photos'
    write_image(test_dir / 'rocket_test.png', photos['rocket'])
    cfg = get_profile('smoke', test_data=str(test_dir), rank_patch=200, rank_stride=100, rank_max_per_image=3,
                      rank_sharpness_min=0, rank_diff_min=0.0, rank_val_frac=0.3, rank_levels=('hr', 'bicubic'))
    # a training image of the same name, whose SR outputs are cached first, must not stand in for the test image
    RK.build_rank_dataset(cfg, tmp_path / 'run', {'rocket_test': photos['coffee']},
                          out_dir=tmp_path / 'run' / 'train_rd')
    te = RK.ensure_test_tuples(cfg, tmp_path / 'run')
    cached = read_image(tmp_path / 'run' / 'rank_dataset' / 'sr' / 'hr' / 'test_rocket_test.png')
    want = photos['rocket'][:424]                            # the HR level is the photograph cropped to a multiple of 4
    assert cached.shape == want.shape and (cached == want).all()
    man = json.loads((tmp_path / 'run' / 'rank_dataset_test' / 'manifest.json').read_text())
    assert list(man['counts']) == ['test_rocket_test'] and man['n_valid'] == 0 and man['n_train'] == len(te) > 0
    assert man['counts']['test_rocket_test']['kept'] == len(te)
    again = RK.ensure_test_tuples(cfg, tmp_path / 'run')     # built once: asking again reads the same tuples back
    assert sorted(again.items) == sorted(te.items)


def test_ensure_levels_trains_missing_levels_only(tmp_path, capsys):
    from ranksrgan_nb.stages import final_path
    cfg = get_profile('smoke', device='cpu')
    with pytest.raises(FileNotFoundError, match=r"'srgan_plus' \(04_ranker\)"):
        RK.level_checkpoint(tmp_path, 'srgan')                     # no build_level: a missing stage is an error
    p = final_path(tmp_path, 'srgan')
    assert RK.ensure_levels(cfg, tmp_path, ['srgan', 'hr']) == {'srgan': p, 'hr': None}   # SRResNet, then SRGAN
    out = capsys.readouterr().out
    assert 'srgan: not in' in out and 'srresnet: not in' in out and 'a level of the rank dataset' in out
    assert final_path(tmp_path, 'srresnet').exists() and not final_path(tmp_path, 'srgan_plus').exists()
    when = p.stat().st_mtime_ns
    assert RK.ensure_levels(cfg, tmp_path, ['srgan']) == {'srgan': p} and p.stat().st_mtime_ns == when   # reused
    assert 'srgan: reusing' in capsys.readouterr().out
    assert RK.level_checkpoint(tmp_path, 'srgan') == p and RK.ensure_levels(cfg, tmp_path, [str(p)]) == {str(p): p}
    with pytest.raises(FileNotFoundError, match="'ranksrgan'"):
        RK.ensure_levels(cfg, tmp_path, ['ranksrgan'])             # not a level the pipeline trains
    q = RK.ensure_levels(cfg, tmp_path, ['srgan_plus'])['srgan_plus']   # SRGAN+ from that SRGAN, not trained again
    meta = torch.load(q, weights_only=True)['meta']
    assert (meta['w_gan'], meta['n_iters']) == (cfg.plus_w_gan, cfg.plus_iters) and p.stat().st_mtime_ns == when
    with pytest.raises(ValueError, match='other settings'):
        RK.ensure_levels(get_profile(cfg, plus_iters=cfg.plus_iters + 1), tmp_path, ['srgan_plus'])
    # the old way still works: a build_level that trains a missing level
    built = []
    assert RK.level_checkpoint(tmp_path / 'b', 'srgan', lambda lv: built.append(lv) or q) == q and built == ['srgan']


# ---------------------------------------------------------------- pairs

def _flat_levels(tmp_path, n=4, size=48, levels='abc'):
    "Level k of every tuple is a flat image of grey 40 k; its label is 10 k + the tuple id."
    flat = lambda i, k, lv: write_image(tmp_path / f'{i}_{lv}.png', np.full((size, size, 3), 40 * k, np.uint8))
    return RK.RankData(list(levels), {str(i): {lv: (flat(i, k, lv), 10.0 * k + i) for k, lv in enumerate(levels)}
                                      for i in range(n)})


def _level(x): return round(float(x.mean()) * 255 / 40)


def test_pair_order_fixed_vs_random(tmp_path):
    rd = _flat_levels(tmp_path)
    fixed, rand = RK.RankPairDataset(rd, seed=3), RK.RankPairDataset(rd, seed=3, order='random')
    assert all(_level(fixed[k]['img1']) < _level(fixed[k]['img2']) for k in range(200))           # better level first
    firsts = [_level(rand[k]['img1']) < _level(rand[k]['img2']) for k in range(200)]
    assert 0.35 < np.mean(firsts) < 0.65   # either, about half each
    seen = {(_level(fixed[k]['img1']), _level(fixed[k]['img2'])) for k in range(200)}
    assert seen == {(0, 1), (0, 2), (1, 2)}                                                         # all three pairs
    a, b = rand[7], rand[7]
    assert torch.equal(a['img1'], b['img1']) and a['score1'] == b['score1']                        # deterministic in k
    assert len(fixed.pairs) == 3 and len(RK.RankPairDataset(rd, oversample=True).pairs) == 5
    with pytest.raises(ValueError, match='pair order must be one of'):
        RK.RankPairDataset(rd, order='best')
    with pytest.raises(ValueError, match='at least two levels'):
        RK.RankPairDataset(RK.RankData(['a'], {}))


def test_fixed_order_follows_the_levels_not_the_labels(tmp_path):
    # official: img1 is the better *level*; a tuple whose labels disagree keeps the level order (gamma = -1 in the loss)
    rd = _flat_levels(tmp_path, n=1, levels='ab')
    rd.items['0']['a'] = (rd.items['0']['a'][0], 5.0)                 # level 'a' labelled worse than 'b' (10)
    rd.items['0']['b'] = (rd.items['0']['b'][0], 1.0)
    s = RK.RankPairDataset(rd)[0]
    assert _level(s['img1']) == 0 and float(s['score1']) == 5.0 and float(s['score2']) == 1.0


def test_crops_same_place_borders_and_too_small():
    rng = np.random.default_rng(0)
    assert {RK.random_box(10, 12, 4, rng) for _ in range(3000)} == {(y, x) for y in range(7) for x in range(9)}
    assert {RK.random_box(5, 5, 5, rng) for _ in range(10)} == {(0, 0)}   # crop = window: one place
    a = torch.arange(3 * 10 * 12.).view(3, 10, 12)
    c1, c2 = RK.same_crop(a, -a, 4, rng)
    assert c1.shape == (3, 4, 4) and torch.equal(c2, -c1)
    with pytest.raises(ValueError, match=r'10x12 rank window is smaller than the crop 11 \(ranker_crop\)'):
        RK.same_crop(a, a, 11, rng)


def test_pair_dataset_crops_and_window_smaller_than_crop(tmp_path):
    rd = _flat_levels(tmp_path, size=48)
    assert RK.RankPairDataset(rd, crop=32)[0]['img1'].shape == (3, 32, 32)
    assert RK.RankPairDataset(rd, crop=48)[0]['img1'].shape == (3, 48, 48)
    with pytest.raises(ValueError, match='smaller than the crop 64'):
        RK.RankPairDataset(rd, crop=64)[0]


def test_cross_pairs_margin_and_no_partner(tmp_path):
    rd = RK.RankData(['a', 'b'], {str(i): {'a': (f'{i}a', float(i)), 'b': (f'{i}b', i + 0.5)} for i in range(6)})
    cp, rng = RK.CrossPairs(rd, margin=1.0), np.random.default_rng(0)
    pairs = [cp(rng) for _ in range(500)]
    assert all(p is not None and p[1][1] - p[0][1] > 1.0 for p in pairs)   # more than the margin, lower first
    assert all(p[0][0][0] != p[1][0][0] for p in pairs)                     # two different tuples
    assert len({(p[0][0], p[1][0]) for p in pairs}) > 20                    # many different pairs
    assert RK.CrossPairs(rd, margin=6.0)(rng) is None                       # labels span 5.5: no partner
    assert RK.CrossPairs(RK.RankData(['a', 'b'], {'1': rd.items['1']}))(rng) is None   # a single tuple


def test_pair_dataset_cross_fraction_and_fallback(tmp_path):
    rd = _flat_levels(tmp_path, n=6)
    ds = RK.RankPairDataset(rd, seed=0, cross=0.5, cross_margin=0.0, order='random')
    ids = lambda s: (int(float(s['score1'])) % 10, int(float(s['score2'])) % 10)   # label = 10 k + id
    cross = np.mean([len(set(ids(ds[k]))) == 2 for k in range(400)])
    assert 0.4 < cross < 0.6                                                 # about half of the pairs cross
    never = RK.RankPairDataset(rd, seed=0, cross=0.99, cross_margin=1e3)      # no partner: co-located pairs instead
    assert all(len(set(ids(never[k]))) == 1 for k in range(50))
    fixed = RK.RankPairDataset(rd, seed=0, cross=0.99, cross_margin=5.0)      # fixed order: the lower label first
    assert all(float(fixed[k]['score1']) < float(fixed[k]['score2']) for k in range(100))


# ---------------------------------------------------------------- loss and metrics

def test_margin_loss_and_metrics():
    s1, s2 = torch.tensor([3.0, -7.0, 0.1]), torch.tensor([1.0, 0.0, 0.0])
    y1, y2 = torch.tensor([2.0, 1.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])
    # by hand: gamma = [1, -1, 1]; clamp -7 -> -5; terms max(0, -(2)+.5)=0, max(0, (-5-0)+.5)=0, max(0, -0.1+.5)=0.4
    assert RK.margin_rank_loss(s1, s2, y1, y2).item() == pytest.approx(0.4 / 3)
    rd = RK.RankData(['a', 'b'], {'1': {'a': ('x', 1.0), 'b': ('x', 2.0)}, '2': {'a': ('x', 1.0), 'b': ('x', 3.0)}})
    m = RK.rank_metrics(rd, {('1', 'a'): 0.0, ('1', 'b'): 1.0, ('2', 'a'): 5.0, ('2', 'b'): 2.0})
    assert m['pair_accuracy'] == 0.5 and m['n_tuples'] == 2


def test_per_window_srcc_by_hand():
    rd = RK.RankData(['a', 'b', 'c'], {'1': {'a': ('x', 1.0), 'b': ('x', 2.0), 'c': ('x', 3.0)},
                                       '2': {'a': ('x', 1.0), 'b': ('x', 2.0), 'c': ('x', 3.0)},
                                       '3': {'a': ('x', 1.0), 'b': ('x', 1.0), 'c': ('x', 1.0)}})   # tied: out
    sc = {('1', 'a'): 0., ('1', 'b'): 1., ('1', 'c'): 2., ('2', 'a'): 2., ('2', 'b'): 0., ('2', 'c'): 1.,
          ('3', 'a'): 0., ('3', 'b'): 1., ('3', 'c'): 2.}
    # window 1: rho = 1; window 2: ranks (3, 1, 2) vs (1, 2, 3): d = 2, -1, -1 -> 1 - 6*6/24 = -0.5
    assert RK.per_window_srcc(rd, sc) == pytest.approx((1.0 - 0.5) / 2)
    assert np.isnan(RK.per_window_srcc(RK.RankData(['a', 'b'], {'1': rd.items['3']}), sc))


def test_batch_order_by_hand():
    means = {'a': np.array([0., 1, 2, 3]), 'b': np.array([1., 0, 3, 4]), 'c': np.array([5., 5, 1, 4])}
    assert RK.batch_order(means, ['a', 'b', 'c']) == {'batches a<b': 0.75, 'batches b<c': 0.5, 'batches a<c': 0.75}
    assert RK.batch_order(means, ['a', 'b']) == {'batches a<b': 0.75}


# ---------------------------------------------------------------- BatchNorm modes and homogeneous batches

def test_bn_mode_restores_statistics_and_mode():
    torch.manual_seed(0)
    R = Ranker(nf=8).eval()
    before = {k: v.clone() for k, v in R.state_dict().items()}
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad(), RK.bn_mode(R, 'train'):
        assert R.training
        st = R(x)
    with torch.no_grad(), RK.bn_mode(R, 'eval'):
        se = R(x)
    assert not torch.allclose(st, se)
    assert all(torch.equal(v, before[k]) for k, v in R.state_dict().items()) and not R.training
    with pytest.raises(ValueError, match="'train' or 'eval'"):
        with RK.bn_mode(R, 'frozen'):
            pass


def test_train_mode_scores_depend_on_the_batch_eval_mode_scores_do_not():
    torch.manual_seed(0)
    R, x = Ranker(nf=8), torch.rand(8, 3, 64, 64)
    with torch.no_grad(), RK.bn_mode(R, 'eval'):
        assert torch.allclose(R(x)[:4], R(x[:4]), atol=1e-5)
    with torch.no_grad(), RK.bn_mode(R, 'train'):
        assert not torch.allclose(R(x)[:4], R(x[:4]), atol=1e-5)


def test_homogeneous_batches_same_windows_and_positions(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    png = lambda i, name, im: write_image(tmp_path / f'{i}_{name}.png', im)
    rd = RK.RankData(['a', 'b'], {str(i): {'a': (png(i, 'a', np.roll(img, i, 0)), 0.),
                                           'b': (png(i, 'b', 255 - np.roll(img, i, 0)), 1.)} for i in range(3)})
    hb = RK.homogeneous_batches(rd, 32, 4, 5, seed=1)
    assert hb['a'].shape == (5, 4, 3, 32, 32) and torch.allclose(hb['b'], 1 - hb['a'], atol=1e-6)
    assert torch.equal(RK.homogeneous_batches(rd, 32, 4, 5, seed=1)['a'], hb['a'])             # seeded
    assert RK.homogeneous_batches(rd, 0, 2, 1)['a'].shape == (1, 2, 3, 80, 96)                  # 0: whole windows
    with pytest.raises(ValueError, match='smaller than the crop 96'):
        RK.homogeneous_batches(rd, 96, 2, 1)


def test_batch_means_of_a_scorer_that_reads_brightness():
    class Bright(torch.nn.Module):                         # a stand-in "Ranker": darker = better, no BatchNorm
        def forward(self, x): return x.mean(dim=(1, 2, 3))[:, None]
    hb = {'dark': torch.full((3, 2, 3, 8, 8), 0.1), 'light': torch.full((3, 2, 3, 8, 8), 0.9)}
    m = RK.batch_means(Bright(), hb, 'train')
    assert np.allclose(m['dark'], 0.1) and np.allclose(m['light'], 0.9)
    assert RK.batch_order(m, ['dark', 'light']) == {'batches dark<light': 1.0}


# ---------------------------------------------------------------- designs, stages and training

def test_rankers_have_one_folder_per_design():
    # the folder carries the design, whatever design the profile names (an override selects the other folder)
    assert {d: s.name for d, s in RK.RANKERS.items()} == {'official': 'ranker_official', 'eval': 'ranker_eval'}
    for cfg in (get_profile('cpu'), get_profile('smoke'), get_profile('cpu', ranker_design='official')):
        for d, s in RK.RANKERS.items():
            assert s.profile(cfg).ranker_design == d and s.keys == ('r_nf', 'label_metric', 'ranker_design')
    assert RK.PAIR_ORDER == {'official': 'fixed', 'eval': 'random'}
    assert not hasattr(RK, 'ranker_stage')


def test_ranker_pairs_follow_the_design(tmp_path):
    rd = _flat_levels(tmp_path)
    rd.noise = {'a': 0.5, 'b': 2.0, 'c': 1.0}
    ds = RK.ranker_pairs(get_profile('smoke', ranker_design='eval', ranker_crop=32, ranker_cross=0.25), rd)
    assert (ds.order, ds.crop, ds.cross, ds.cross_pairs.margin) == ('random', 32, 0.25, 4.0)   # 2 x largest noise
    assert RK.ranker_pairs(get_profile('smoke'), rd).order == 'fixed'
    assert RK.ranker_pairs(get_profile('smoke'), rd).cross_pairs is None


def test_train_ranker_records_the_design_and_ensure_checks_it(tmp_path, photos):
    cfg = get_profile('smoke', r_nf=8, rank_levels=('hr', 'bicubic'), rank_val_frac=0.3, ranker_iters=2, ranker_crop=64,
                      device='cpu')
    m = _methods()
    tr, va = RK.build_rank_dataset(cfg, tmp_path, photos, {'hr': m['hr'], 'bicubic': m['bicubic']})
    p = RK.train_ranker(cfg, tmp_path, tr, va, design='eval')
    assert p == tmp_path / 'ranker_eval' / 'final.pth'
    meta = torch.load(p, weights_only=True)['meta']
    assert meta['ranker_design'] == 'eval' and meta['ranker_crop'] == 64 and meta['levels'] == ['hr', 'bicubic']
    assert (tmp_path / 'ranker_eval' / 'val.csv').read_text().startswith('iter,batches hr<bicubic')
    # ensure_ranker reuses a finished Ranker of the same design, and refuses one of the other design
    assert RK.ensure_ranker(get_profile(cfg, ranker_design='eval'), tmp_path) == p
    with pytest.raises(ValueError, match='other settings'):
        RK.ensure_ranker(cfg, tmp_path, stage='ranker_eval')
    assert RK.ensure(RK.RANKERS['eval'], cfg, tmp_path) == p                 # RANKERS['eval'] is that Ranker's stage
    assert not (tmp_path / 'ranker_official').exists()
    checks = RK.ranker_checks(RK.load_ranker(cfg, p), va, get_profile(cfg, ranker_design='eval'), n_batches=2)
    assert checks['bn_mode'] == 'eval' and checks['crop'] == 64
    assert set(checks) >= {'batches hr<bicubic', 'srcc', 'srcc_per_window'}
    assert checks['official pair accuracy (eval mode)'] == checks['pair_accuracy']
    out = json.loads(RK.write_checks(tmp_path, 'ranker_eval', checks).read_text())
    assert out['srcc'] == pytest.approx(checks['srcc'], nan_ok=True)


def test_ranker_learns_an_easy_ordering(tmp_path, photos):
    """Sharp HR vs a bicubic reconstruction: a tiny Ranker trained briefly orders held-out windows and batches."""
    cfg = get_profile('smoke', r_nf=8, rank_levels=('hr', 'bicubic'), label_metric='level_order', rank_val_frac=0.34,
                      rank_max_per_image=6, rank_stride=50, ranker_iters=60, ranker_batch=8, ranker_lr=1e-3,
                      val_every=1000, ckpt_every=1000, device='cpu', ranker_design='eval', ranker_crop=64, batch_size=4)
    m = _methods()
    tr, va = RK.build_rank_dataset(cfg, tmp_path, photos, {'hr': m['hr'], 'bicubic': m['bicubic']})
    R = RK.load_ranker(cfg, RK.train_ranker(cfg, tmp_path, tr, va))
    res = RK.evaluate_ranker(R, va)
    assert res['pair_accuracy'] >= 0.9, res
    checks = RK.ranker_checks(R, va, cfg, n_batches=8)
    assert checks['batches hr<bicubic'] >= 0.9, checks


# ---------------------------------------------------------------- the fair gate (issue 25, item 4)

def test_lr_content_is_the_l1_of_the_bicubic_downscale_to_the_input():
    from ranksrgan_nb.data import bicubic_degrade, img2tensor
    hr = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    lr = torch.stack([img2tensor(bicubic_degrade(h, 4)) for h in hr])
    x = torch.stack([img2tensor(h) for h in hr])
    assert RK.lr_content(x, lr) <= 2 * 0.5 / 255 + 1e-6          # the HR that made the LR: only 8-bit rounding left
    shifted = (x + 0.1).clamp(0, 1)                                 # a brightness shift survives the downscale
    by_hand = sum(np.abs(imresize(shifted[i].permute(1, 2, 0).numpy().astype(np.float64), 1 / 4)
                         - lr[i].permute(1, 2, 0).numpy()).mean() for i in range(2))
    assert RK.lr_content(shifted, lr).item() == pytest.approx(by_hand, rel=1e-5)
    y = x.clone().requires_grad_()
    RK.lr_content(y, torch.zeros_like(lr)).backward()
    assert y.grad is not None and (y.grad != 0).float().mean() > 0.9   # every pixel feeds some LR pixel


def _gate_table(d_niqe, d_psnr, arm='ranker'):
    return pd.DataFrame({'niqe_content': [5.0, 6.0], 'psnr_content': [30.0, 28.0],
                         f'niqe_{arm}': [5.0 + d_niqe, 6.0 + d_niqe], f'psnr_{arm}': [30.0 + d_psnr, 28.0 + d_psnr]})


@pytest.mark.parametrize('srresnet, srgan, passed', [
    ((-1.0, -0.5), (0.0, 0.0), True),        # exactly at both limits
    ((-2.0, 0.25), (-0.5, 0.0), True),
    ((-0.75, -0.25), (-0.5, 0.0), False),    # NIQE lowered by less than 1.0
    ((-2.0, -0.75), (-0.5, 0.0), False),     # more than 0.5 dB lost
    ((-2.0, -0.25), (0.25, 0.0), False),     # NIQE raised from the SRGAN start
])
def test_gate_verdict_rule(srresnet, srgan, passed):
    ok, line = RK.gate_verdict(_gate_table(*srresnet), _gate_table(*srgan))
    assert ok is passed and line.startswith('PASS' if passed else 'FAIL')
    assert f'{srresnet[0]:+.2f}' in line and RK.gate_verdict(_gate_table(*srresnet), _gate_table(*srgan), False)[1] \
        .startswith('(smoke: not judged)')


def test_gate_verdict_prints_the_positive_control():
    control = _gate_table(-3.0, -0.5, 'niqe_diff')[['niqe_niqe_diff', 'psnr_niqe_diff']]
    a = pd.concat([_gate_table(-2.0, -0.25), control], axis=1)
    ok, line = RK.gate_verdict(a, a)
    assert ok and "niqe_diff arm (positive control, not the paper's method): NIQE -3.00 at -0.50 dB" in line


def test_a_ranker_that_knows_only_the_generator_scores_the_baseline():
    "Scores = the level's mean label: its pair accuracy is the generator baseline, and it knows nothing within a level."
    from ranksrgan_nb.ranker import RankData, generator_baseline, rank_metrics
    rng = np.random.default_rng(0)
    lv = ['good', 'mid', 'bad']
    items = {str(k): {l: ('x', float(m + rng.normal(0, 0.8))) for l, m in zip(lv, (3, 4, 5))} for k in range(200)}
    rd = RankData(lv, items)
    means = {l: np.mean([d[l][1] for d in items.values()]) for l in lv}
    by_level = {(i, l): means[l] for i in items for l in lv}
    g = generator_baseline(rd, by_level)
    assert g['pair_accuracy_by_level'] == rank_metrics(rd, by_level)['pair_accuracy'] < 1
    assert all(np.isnan(g[f'srcc_within_{l}']) for l in lv)
    oracle = generator_baseline(rd, {(i, l): d[l][1] for i, d in items.items() for l in lv})
    assert all(oracle[f'srcc_within_{l}'] == pytest.approx(1.0) for l in lv)
