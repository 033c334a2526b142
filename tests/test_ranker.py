"""Stage 1 and 2: the rank dataset (official format), pairs, the margin-ranking loss, evaluation."""
import json
import warnings

import numpy as np
import pytest
import torch

from ranksrgan_nb import ranker as RK
from ranksrgan_nb.config import get_profile
from ranksrgan_nb.data import imresize, read_image, write_image
from ranksrgan_nb.metrics import niqe

warnings.filterwarnings('ignore', category=UserWarning)


def test_window_starts_follow_matlab_colon():
    # MATLAB: h = 1:148:H-296 (1-based); written out by hand for three heights
    assert RK.window_starts(600, 296, 148) == [0, 148, 296]       # 1, 149, 297
    assert RK.window_starts(592, 296, 148) == [0, 148]            # 1, 149  (297 > 296)
    assert RK.window_starts(296, 296, 148) == []                  # 1:148:0 is empty
    assert RK.window_starts(297, 296, 148) == [0]


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
    assert sorted(rd.items) == ['1', '10', '2']
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
    man = json.loads((tmp_path / 'rank_dataset' / 'manifest.json').read_text())
    assert man['levels'] == ['hr', 'noisy', 'bicubic'] and man['n_train'] == len(tr) and man['n_valid'] == len(va)
    assert len(man['valid_images']) == 1 and len(va) > 0
    for name, c in man['counts'].items():
        assert c['kept'] <= 3 and c['separated'] <= c['textured'] <= c['windows']
    # the labels are NIQE on Y with a 4-pixel shave of the saved patch (checked with the numpy path)
    i = sorted(tr.items)[0]
    for lv in tr.levels:
        path, score = tr.items[i][lv]
        assert read_image(path).shape == (200, 200, 3)
        assert score == pytest.approx(niqe(read_image(path), crop_border=4, color='y'), abs=1e-5)
    # reading it back gives the same dataset
    back = RK.read_rank_dataset(tmp_path / 'rank_dataset' / 'train', tmp_path / 'rank_dataset' / 'train_label.txt')
    assert back.levels == tr.levels and sorted(back.items) == sorted(tr.items)


def test_build_rank_dataset_nothing_passes(tmp_path, photos):
    cfg = get_profile('smoke', rank_sharpness_min=1e9, rank_levels=('hr', 'noisy', 'bicubic'))
    with pytest.raises(ValueError, match='no training patch passed the filters'):
        RK.build_rank_dataset(cfg, tmp_path, photos, _methods())


def test_level_labels(tmp_path, photos):
    cfg = get_profile('smoke', label_metric='level', rank_levels=('hr', 'noisy', 'bicubic'), rank_val_frac=0.0)
    tr, va = RK.build_rank_dataset(cfg, tmp_path, photos, _methods())
    assert len(va) == 0
    for d in tr.items.values():
        assert [d[lv][1] for lv in tr.levels] == [0.0, 1.0, 2.0]


def test_test_tuples_come_from_the_test_photographs(tmp_path, photos):
    test_dir = tmp_path / 'test_photos'
    write_image(test_dir / 'rocket_test.png', photos['rocket'])
    cfg = get_profile('smoke', test_data=str(test_dir), rank_patch=200, rank_stride=100, rank_max_per_image=3,
                      rank_sharpness_min=0, rank_diff_min=0.0, rank_val_frac=0.3, rank_levels=('hr', 'bicubic'))
    # a training image of the same name, whose SR outputs are cached first, must not stand in for the test image
    RK.build_rank_dataset(cfg, tmp_path / 'run', {'rocket_test': photos['coffee']}, out_dir=tmp_path / 'run' / 'train_rd')
    te = RK.ensure_test_tuples(cfg, tmp_path / 'run')
    cached = read_image(tmp_path / 'run' / 'rank_dataset' / 'sr' / 'hr' / 'test_rocket_test.png')
    want = photos['rocket'][:424]                            # the HR level is the photograph cropped to a multiple of 4
    assert cached.shape == want.shape and (cached == want).all()
    man = json.loads((tmp_path / 'run' / 'rank_dataset_test' / 'manifest.json').read_text())
    assert list(man['counts']) == ['test_rocket_test'] and man['n_valid'] == 0 and man['n_train'] == len(te) > 0
    assert man['counts']['test_rocket_test']['kept'] == len(te)
    # built once: asking again reads the same tuples back
    again = RK.ensure_test_tuples(cfg, tmp_path / 'run')
    assert sorted(again.items) == sorted(te.items)


def test_pair_dataset_deterministic_and_oversampled(tmp_path):
    rd = RK.read_rank_dataset(tmp_path, _official_folder(tmp_path))
    ds = RK.RankPairDataset(rd, seed=3)
    a, b = ds[7], ds[7]
    assert torch.equal(a['img1'], b['img1']) and a['score1'] == b['score1']
    assert len(ds.pairs) == 3 and len(RK.RankPairDataset(rd, oversample=True).pairs) == 5
    seen = {(float(ds[k]['score1']) // 1, float(ds[k]['score2']) // 1) for k in range(200)}
    assert len(seen) == 6                                           # all three pairs, in both orders


def test_margin_loss_and_metrics():
    s1, s2 = torch.tensor([3.0, -7.0, 0.1]), torch.tensor([1.0, 0.0, 0.0])
    y1, y2 = torch.tensor([2.0, 1.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])
    # by hand: gamma = [1, -1, 1]; clamp -7 -> -5; terms max(0, -(2)+.5)=0, max(0, (-5-0)+.5)=0, max(0, -0.1+.5)=0.4
    assert RK.margin_rank_loss(s1, s2, y1, y2).item() == pytest.approx(0.4 / 3)
    rd = RK.RankData(['a', 'b'], {'1': {'a': ('x', 1.0), 'b': ('x', 2.0)}, '2': {'a': ('x', 1.0), 'b': ('x', 3.0)}})
    m = RK.rank_metrics(rd, {('1', 'a'): 0.0, ('1', 'b'): 1.0, ('2', 'a'): 5.0, ('2', 'b'): 2.0})
    assert m['pair_accuracy'] == 0.5 and m['n_tuples'] == 2


def test_ranker_learns_an_easy_ordering(tmp_path, photos):
    """Sharp HR vs a bicubic reconstruction: a tiny Ranker trained briefly orders held-out pairs."""
    cfg = get_profile('smoke', r_nf=8, rank_levels=('hr', 'bicubic'), label_metric='level', rank_val_frac=0.34,
                      rank_max_per_image=6, rank_stride=50, ranker_iters=60, ranker_batch=8, ranker_lr=1e-3,
                      val_every=1000, ckpt_every=1000, device='cpu')
    m = _methods()
    tr, va = RK.build_rank_dataset(cfg, tmp_path, photos, {'hr': m['hr'], 'bicubic': m['bicubic']})
    R = RK.load_ranker(cfg, RK.train_ranker(cfg, tmp_path, tr, va))
    res = RK.evaluate_ranker(R, va)
    assert res['pair_accuracy'] >= 0.9, res
