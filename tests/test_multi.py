"""06: several Rankers in one rank-content loss."""
import pandas as pd
import pytest
import torch

from ranksrgan_nb import multi as MU
from ranksrgan_nb import train as T
from ranksrgan_nb.config import get_profile
from ranksrgan_nb.models import Ranker


def test_multi_loss_is_the_weighted_sum():
    torch.manual_seed(0)
    R1, R2, R3 = Ranker(nf=8), Ranker(nf=8), Ranker(nf=8)
    x = torch.rand(3, 3, 40, 56)
    m = MU.MultiRankerLoss({'a': (R1, 0.03, 0.0), 'b': (R2, 0.2, -1.0), 'c': (R3, 1.0, 0.0)}, reduction='mean')
    with torch.no_grad():
        for R in (R1, R2, R3): R.train()
        ref = (0.03 * torch.sigmoid(R1(x)).mean() + 0.2 * torch.sigmoid(R2(x) + 1.0).mean()
               + 1.0 * torch.sigmoid(R3(x)).mean())
    assert m(x).item() == pytest.approx(ref.item(), rel=1e-6)
    assert set(m.terms(x)) == {'a', 'b', 'c'}


def test_parse_weight_grid():
    assert MU.parse_weight_grid('0.03:0,0:0.03 , 1e-2:2e-2') == [(0.03, 0.0), (0.0, 0.03), (0.01, 0.02)]
    with pytest.raises(ValueError, match='w_niqe:w_level'):
        MU.parse_weight_grid('0.03')
    assert MU.setting_stage(0.015, 0.03) == 'multi_n0.015_l0.03'
    # in multiples of a unit (the notebook passes the profile's w_R); the stage name shows clean absolute weights
    grid = MU.parse_weight_grid('1:1,0:1,3:0', unit=0.003)
    assert grid == [(0.003, 0.003), (0.0, 0.003), (0.009, 0.0)]
    assert [MU.setting_stage(*s) for s in grid] == ['multi_n0.003_l0.003', 'multi_n0_l0.003', 'multi_n0.009_l0']


def test_level_order_profile_and_stage():
    cpu = get_profile('cpu')
    p = MU.level_order_profile(cpu)
    assert p.rank_levels == ('hr', 'srgan', 'srresnet') and p.label_metric == 'level_order' and p.rank_diff_min < 0
    assert MU.level_profile is MU.level_order_profile                     # the old name still works
    st = MU.LEVEL_RANKER
    assert (st.name, st.notebook) == ('ranker_level', '06_multi_ranker') and st.profile(cpu) == p
    assert 'label_metric' in st.keys                                      # a NIQE Ranker in its folder is refused


def test_train_multi_logs_each_ranker_and_skips_zero_weight(tmp_path):
    cfg = get_profile('smoke', sr_iters=4, gan_iters=3, val_every=3, ckpt_every=3, log_every=1, device='cpu')
    sr = T.train_srresnet(cfg, tmp_path)
    torch.manual_seed(0)
    a = T.save_final(tmp_path, 'ra', {'R': Ranker(nf=cfg.r_nf).state_dict()}, {})
    b = T.save_final(tmp_path, 'rb', {'R': Ranker(nf=cfg.r_nf).state_dict()}, {})
    terms = [MU.RankerTerm('niqe', str(a), 0.03), MU.RankerTerm('level', str(b), 0.05, 0.5),
             MU.RankerTerm('unused', str(tmp_path / 'does_not_exist.pth'), 0.0)]   # weight 0: never loaded
    p = MU.train_multi_ranksrgan(cfg, tmp_path, terms, 'multi_test', init=sr)
    log = pd.read_csv(tmp_path / 'multi_test' / 'log.csv')
    assert {'l_g_rank_niqe', 'l_g_rank_level'} <= set(log.columns) and 'l_g_rank_unused' not in log.columns
    assert (log.l_g_rank_level <= 0.05 * cfg.batch_size).all()          # w * sum of sigmoids <= w * batch
    assert T.load_checkpoint(p)['meta']['rankers'][1] == ('level', 'final.pth', 0.05, 0.5)
    with pytest.raises(FileNotFoundError, match="Ranker 'gone'"):
        MU.train_multi_ranksrgan(cfg, tmp_path, [MU.RankerTerm('gone', str(tmp_path / 'x.pth'), 0.1)], 'm2', init=sr)
