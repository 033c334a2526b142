"""02b_method: the method's losses and steps (the Ranker's, the generator's, the grid-consistency term of issue 25)."""
import numpy as np
import pytest
import torch

from ranksrgan_nb import method as ME
from ranksrgan_nb.config import get_profile
from ranksrgan_nb.models import Ranker, build_discriminator, build_generator, build_vgg


def _phases_reference(x: np.ndarray, block: int, period: int) -> np.ndarray:
    "grid_phases written out with loops: per block, channel and phase, the phase's mean minus the block's."
    B, C, H, W = x.shape
    out = np.zeros((B, C, H // block, period, W // block, period))
    for b, c, by, bx in np.ndindex(B, C, H // block, W // block):
        blk = x[b, c, by * block:(by + 1) * block, bx * block:(bx + 1) * block]
        for i, j in np.ndindex(period, period):
            out[b, c, by, i, bx, j] = blk[i::period, j::period].mean() - blk.mean()
    return out


@pytest.mark.parametrize('block,period', [(32, 4), (16, 4), (12, 2)])
def test_grid_phases_match_loops(block, period):
    x = torch.rand(2, 3, 3 * block + 5, 2 * block + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = ME.grid_phases(x, block, period).numpy()
    assert np.allclose(got, _phases_reference(x.numpy(), block, period), atol=1e-12)


def test_grid_consistency_sees_only_the_period_4_component():
    g = torch.Generator().manual_seed(1)
    hr = torch.rand(1, 3, 64, 96, dtype=torch.float64, generator=g)
    assert ME.grid_consistency(hr + 0.2, hr).item() == pytest.approx(0.0, abs=1e-12)     # brightness: no grid
    assert ME.grid_consistency(hr, hr).item() == 0.0
    tile = torch.tensor([[1., -1, 1, -1], [-1, 1, -1, 1], [1, -1, 1, -1], [-1, 1, -1, 1]], dtype=torch.float64)
    checker = 0.05 * tile.repeat(16, 24)                                  # a 2-px checkerboard: period 4 too
    assert ME.grid_consistency(hr + checker, hr).item() == pytest.approx(0.05, rel=1e-9)
    smooth = 0.05 * torch.sin(torch.arange(96.0, dtype=torch.float64) / 7)               # not periodic with 4
    assert ME.grid_consistency(hr + smooth, hr).item() < 0.05 / 10
    with pytest.raises(ValueError, match='blocks of 32 px'):
        ME.grid_consistency(torch.rand(1, 3, 31, 64), torch.rand(1, 3, 31, 64))


def test_grid_term_is_off_by_default_and_logged_as_l_g_grid():
    cfg = get_profile('smoke', device='cpu')
    torch.manual_seed(0)
    G, D, V = build_generator(cfg), build_discriminator(cfg), build_vgg(cfg)
    lr, hr = torch.rand(2, 3, cfg.hr_patch // 4, cfg.hr_patch // 4), torch.rand(2, 3, cfg.hr_patch, cfg.hr_patch)
    with torch.no_grad():
        sr = G(lr)
        assert 'l_g_grid' not in ME.generator_losses(sr, hr, D, V, ME.GanWeights())
        losses = ME.generator_losses(sr, hr, D, V, ME.GanWeights(w_grid=3.0))
    assert losses['l_g_grid'].item() == pytest.approx(3.0 * ME.grid_consistency(sr, hr).item(), rel=1e-6)
    assert ME.GanWeights().w_grid == 0.0


def test_ranker_step_is_the_margin_loss_of_two_passes():
    torch.manual_seed(0)
    R, R2 = Ranker(nf=8), Ranker(nf=8)
    R2.load_state_dict(R.state_dict())
    b = {'img1': torch.rand(3, 3, 32, 32), 'img2': torch.rand(3, 3, 32, 32),
         'score1': torch.tensor([1., 5, 2]), 'score2': torch.tensor([2., 1, 2])}
    out = ME.make_ranker_step(R, torch.optim.SGD(R.parameters(), lr=0.0), torch.device('cpu'))(b)
    R2.train()
    s1, s2 = R2(b['img1']), R2(b['img2'])
    assert out['l_rank'] == pytest.approx(ME.margin_rank_loss(s1, s2, b['score1'], b['score2']).item(), rel=1e-6)
    gamma = torch.tensor([-1., 1, 1])                                                   # y1 >= y2 -> +1 (ties too)
    assert out['batch_acc'] == pytest.approx((torch.sign(s1 - s2).reshape(-1) == gamma).float().mean().item())


def test_multi_ranker_terms_are_named_rank_terms():
    torch.manual_seed(0)
    m = ME.MultiRankerLoss({'niqe': (Ranker(nf=8), 0.1, 0.0), 'level': (Ranker(nf=8), 0.0, 0.0)})
    assert list(m.rank_terms) == ['niqe', 'level']
    x = torch.rand(2, 3, 32, 32)
    t = m.terms(x)
    assert t['level'].item() == 0.0 and m(x).item() == pytest.approx(t['niqe'].item())
