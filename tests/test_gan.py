"""05_train_gan: the SRGAN step and stage, the rank-content loss, RankSRGAN training, and the levels it trains for 04."""
import warnings

import pytest
import torch

from ranksrgan_nb import gan as GN
from ranksrgan_nb import train as T
from ranksrgan_nb.config import get_profile
from ranksrgan_nb.models import Ranker
from test_train import _assert_same, _stop_at, _weights   # the engine's helpers: interrupt a run, compare weights

warnings.filterwarnings('ignore', category=UserWarning)
warnings.filterwarnings('ignore', category=RuntimeWarning)


def test_rank_content_loss_formula_and_frozen_ranker():
    torch.manual_seed(0)
    R = Ranker(nf=8)
    x = torch.rand(3, 3, 48, 40, requires_grad=True)         # not square: the Ranker pools globally
    loss = GN.RankContentLoss(R, weight=0.5, bias=-0.3, reduction='sum', bn_mode='train')
    with torch.no_grad():
        R.train()
        s = R(x).reshape(-1)
    expected = 0.5 * (1 / (1 + torch.exp(-(s + 0.3)))).sum()  # w_R * sum sigmoid(R - g), written out
    out = loss(x)
    assert out.item() == pytest.approx(expected.item(), rel=1e-6)
    out.backward()
    assert x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in R.parameters())
    mean = GN.RankContentLoss(R, weight=0.5, bias=-0.3, reduction='mean')(x)
    assert mean.item() == pytest.approx(expected.item() / 3, rel=1e-6)


def test_bn_modes():
    torch.manual_seed(0)
    R = Ranker(nf=8)
    x = torch.rand(4, 3, 32, 32)
    before = R.bn0_1.running_mean.clone()
    ev = GN.RankContentLoss(R, bn_mode='eval')
    ev.train()                                                 # a module put in train mode keeps R in eval
    ev(x)
    assert torch.equal(R.bn0_1.running_mean, before) and not R.training
    GN.RankContentLoss(R, bn_mode='train')(x)
    assert not torch.equal(R.bn0_1.running_mean, before)        # official: batch statistics, running stats move
    with pytest.raises(ValueError):
        GN.RankContentLoss(R, bn_mode='frozen')


@pytest.fixture
def cfg():
    return get_profile('smoke', sr_iters=6, gan_iters=4, ckpt_every=2, val_every=4, log_every=1, device='cpu')


def test_zero_rank_weight_is_exactly_srgan(cfg, tmp_path):
    sr = T.train_srresnet(cfg, tmp_path)
    a = T.load_checkpoint(GN.train_gan(cfg, tmp_path, 'srgan', init=sr))['weights']
    b = T.load_checkpoint(GN.train_ranksrgan(get_profile(cfg, w_R=0), tmp_path, 'rank0', init=sr))['weights']
    for k in a['G']:
        assert torch.equal(a['G'][k], b['G'][k])
    assert not (tmp_path / 'ranker').exists()                  # no Ranker was needed or built


def test_ranksrgan_with_a_given_ranker(cfg, tmp_path):
    sr = T.train_srresnet(cfg, tmp_path)
    torch.manual_seed(1)
    rk = T.save_final(tmp_path, 'myranker', {'R': Ranker(nf=cfg.r_nf).state_dict()}, {'r_nf': cfg.r_nf})
    p = GN.train_ranksrgan(cfg, tmp_path, ranker=rk, init=sr)
    import pandas as pd
    log = pd.read_csv(tmp_path / 'ranksrgan' / 'log.csv')
    assert 'l_g_rank' in log.columns and (log.l_g_rank > 0).all()
    # the rank term changes the result compared with SRGAN
    a = T.load_checkpoint(GN.train_gan(cfg, tmp_path, 'srgan', init=sr))['weights']['G']['conv_first.weight']
    assert not torch.equal(a, T.load_checkpoint(p)['weights']['G']['conv_first.weight'])


def test_missing_and_mismatched_checkpoints(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match='Ranker checkpoint not found: .*nope.pth'):
        GN.train_ranksrgan(cfg, tmp_path, ranker=tmp_path / 'nope.pth', init=T.train_srresnet(cfg, tmp_path))
    with pytest.raises(FileNotFoundError, match='generator checkpoint not found'):
        GN.train_ranksrgan(cfg, tmp_path, init=tmp_path / 'missing_G.pth')
    wrong = T.save_final(tmp_path, 'wide', {'R': Ranker(nf=16).state_dict()}, {})
    with pytest.raises(ValueError, match=r'does not fit a Ranker\(nf=8\)'):
        GN.train_ranksrgan(cfg, tmp_path, ranker=wrong, init=T.final_path(tmp_path, 'srresnet'))
    torch.save({'conv_first.weight': torch.zeros(1)}, tmp_path / 'junk_G.pth')
    with pytest.raises(ValueError, match='does not fit an SRResNet'):
        GN.train_ranksrgan(cfg, tmp_path, init=tmp_path / 'junk_G.pth')


# ------------------------------------------------------------------ the SRGAN stage (moved here with it from train)
def test_gan_step_matches_hand_written_losses(cfg):
    torch.manual_seed(0)
    G, D, V = T.build_generator(cfg), T.build_discriminator(cfg), T.build_vgg(cfg)
    b = {'lr': torch.rand(2, 3, 8, 8), 'hr': torch.rand(2, 3, 32, 32)}
    G2 = T.build_generator(cfg); G2.load_state_dict(G.state_dict())
    D2 = T.build_discriminator(cfg); D2.load_state_dict(D.state_dict())
    w = GN.GanWeights(w_pix=0.1, w_fea=1.0, w_gan=5e-3)
    extra = {'l_g_extra': lambda sr: 0.7 * sr.mean()}
    out = GN.make_gan_step(G, D, V, torch.optim.SGD(G.parameters(), lr=0), torch.optim.SGD(D.parameters(), lr=0), w,
                          torch.device('cpu'), extra_losses=extra)(b)
    sr = G2(b['lr'])
    ref = (0.1 * (sr - b['hr']).abs().mean() + (V(sr) - V(b['hr'])).abs().mean()
           + 5e-3 * torch.nn.functional.softplus(-D2(sr)).mean() + 0.7 * sr.mean())
    assert abs(out['l_g_total'] - ref.item()) < 1e-5
    d_ref = torch.nn.functional.softplus(-D2(b['hr'])).mean() + torch.nn.functional.softplus(D2(sr.detach())).mean()
    assert abs(out['l_d_real'] + out['l_d_fake'] - d_ref.item()) < 1e-5
    assert set(out) >= {'l_g_pix', 'l_g_fea', 'l_g_gan', 'l_g_extra', 'D_real', 'D_fake'}


def test_gan_interrupted_and_resumed_is_bitwise_identical(cfg, tmp_path):
    sr = T.train_srresnet(cfg, tmp_path / 'sr')
    full = GN.train_gan(cfg, tmp_path / 'a', init=sr)
    with pytest.raises(KeyboardInterrupt):
        GN.train_gan(cfg, tmp_path / 'b', init=sr, hooks=[_stop_at(3)])
    resumed = GN.train_gan(cfg, tmp_path / 'b', init=sr)
    _assert_same(_weights(full), _weights(resumed))
    # and an unrelated run with another seed really differs (the comparison can fail)
    other = GN.train_gan(get_profile(cfg, seed=11), tmp_path / 'c', init=sr)
    assert not torch.equal(_weights(full)['G']['conv_first.weight'], _weights(other)['G']['conv_first.weight'])


def test_level_builder_trains_missing_levels_only(cfg, tmp_path):
    from ranksrgan_nb import ranker as RK
    build = GN.level_builder(cfg, tmp_path)
    with pytest.raises(FileNotFoundError, match="05_train_gan 'srgan'"):
        RK.level_checkpoint(tmp_path, 'srgan')                      # no build_level: a missing stage is an error
    p = RK.level_checkpoint(tmp_path, 'srgan', build)               # trains SRResNet, then SRGAN
    assert p == T.final_path(tmp_path, 'srgan') and T.final_path(tmp_path, 'srresnet').exists()
    assert RK.level_checkpoint(tmp_path, 'srgan') == p              # finished: found without building
    assert RK.level_checkpoint(tmp_path, str(p)) == p               # a checkpoint path is a level too
    with pytest.raises(ValueError, match='can train'):
        build('bicubic_x')
