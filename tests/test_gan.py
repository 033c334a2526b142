"""05_train_gan: RankSRGAN training, its pairs and seeds, the levels it trains for 04; the SRGAN step and the
rank-content loss through gan's old import paths (their homes are 02b_method and 03_train_sr)."""
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
    G2 = T.build_generator(cfg)
    G2.load_state_dict(G.state_dict())
    D2 = T.build_discriminator(cfg)
    D2.load_state_dict(D.state_dict())
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
        GN.train_gan(cfg, tmp_path / 'b', init=sr, cbs=[T.HookCB(_stop_at(3))])
    resumed = GN.train_gan(cfg, tmp_path / 'b', init=sr)
    _assert_same(_weights(full), _weights(resumed))
    # and an unrelated run with another seed really differs (the comparison can fail)
    other = GN.train_gan(get_profile(cfg, seed=11), tmp_path / 'c', init=sr)
    assert not torch.equal(_weights(full)['G']['conv_first.weight'], _weights(other)['G']['conv_first.weight'])


# ------------------------------------------------------------------ the loss functions, one by one
def test_discriminator_losses_by_hand():
    torch.manual_seed(0)
    D = T.build_discriminator(get_profile('smoke'))
    hr, sr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32, requires_grad=True)
    l_real, l_fake, p_real, p_fake = GN.discriminator_losses(D, hr, sr)
    with torch.no_grad():
        zr, zf = D(hr), D(sr)
    assert l_real.item() == pytest.approx(torch.log1p(torch.exp(-zr)).mean().item(), rel=1e-5)   # -log sigmoid(z)
    assert l_fake.item() == pytest.approx(torch.log1p(torch.exp(zf)).mean().item(), rel=1e-5)    # -log(1 - sigmoid(z))
    assert torch.allclose(p_real, zr) and torch.allclose(p_fake, zf)
    (l_real + l_fake).backward()
    assert sr.grad is None                                                          # SR detached


def test_generator_losses_terms_and_weights(cfg):
    torch.manual_seed(0)
    D, V = T.build_discriminator(cfg), T.build_vgg(cfg)
    sr, hr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        w = GN.GanWeights(w_pix=2.0, w_fea=0.0, w_gan=0.1)
        out = GN.generator_losses(sr, hr, D, V, w, {'x': lambda s: s.sum()})
        assert list(out) == ['l_g_pix', 'l_g_gan', 'x']                              # a weight of 0: no term at all
        assert out['l_g_pix'].item() == pytest.approx(2.0 * (sr - hr).abs().mean().item(), rel=1e-6)
        bce = torch.nn.functional.softplus(-D(sr)).mean().item()
        assert out['l_g_gan'].item() == pytest.approx(0.1 * bce, rel=1e-5)
        assert out['x'].item() == pytest.approx(sr.sum().item(), rel=1e-6)


def test_gan_state_optimizers_and_schedule(cfg):
    G, D = T.build_generator(cfg), T.build_discriminator(cfg)
    st = GN.gan_state(get_profile(cfg, gan_lr=3e-4, gan_lr_steps=(0.25, 0.5), lr_gamma=0.5), G, D, {'m': 1}, 8,
                      extra_models={'R': Ranker(nf=8)})
    assert list(st.models) == ['G', 'D', 'R'] and list(st.optims) == ['G', 'D'] and st.meta == {'m': 1}
    for k, net in (('G', G), ('D', D)):
        o = st.optims[k]
        assert isinstance(o, torch.optim.Adam) and o.param_groups[0]['betas'] == (0.9, 0.99)
        assert [id(p) for p in o.param_groups[0]['params']] == [id(p) for p in net.parameters()]
    lrs = []
    for _ in range(6):
        lrs.append(st.optims['G'].param_groups[0]['lr'])
        st.optims['G'].step()
        st.scheds['G'].step()
    assert lrs == pytest.approx([3e-4, 3e-4, 1.5e-4, 1.5e-4, 7.5e-5, 7.5e-5])        # milestones at 2 and 4 of 8


# ------------------------------------------------------------------ seeds and stage names
def test_seed_stage_names():
    from ranksrgan_nb.config import seed_stage, split_seed, stage_label
    assert [seed_stage('ranksrgan', s, (3, 7, 11)) for s in (3, 7, 11)] == \
        ['ranksrgan', 'ranksrgan_s7', 'ranksrgan_s11']
    with pytest.raises(ValueError, match='not one of gan_seeds'):
        seed_stage('srgan', 4, (3, 7))
    assert split_seed('srgan_s7') == ('srgan', 7) and split_seed('srgan_plus') == ('srgan_plus', None)
    assert split_seed('multi_n0_s3') == ('multi_n0_s3', None) and split_seed('srgan_s') == ('srgan_s', None)
    assert stage_label('srgan_plus_s4') == 'SRGAN+ (seed 4)' and stage_label('srgan') == 'SRGAN'


def test_gan_runs_and_seed_profile():
    cfg = get_profile('cpu')
    assert GN.gan_runs(cfg) == [(10, 'control', 'ranksrgan'), (11, 'control_s11', 'ranksrgan_s11')]
    assert GN.gan_runs(get_profile('smoke')) == [(10, 'control', 'ranksrgan')]
    p = GN.seed_profile(cfg, 11)
    others = lambda c: {f: getattr(c, f) for f in vars(cfg) if f != 'seed'}
    assert p.seed == 11 and others(p) == others(cfg)


def test_arms_share_start_seed_and_data_order(cfg, tmp_path):
    """Two seeds: each seed's arms train with its seed from one start; with w_R = 0 the RankSRGAN arm is bit for bit the
    control of the same seed, so nothing but the extra term differs between arms; the two seeds differ."""
    two = get_profile(cfg, gan_seeds=(10, 11), w_R=0.0)
    sr = T.train_srresnet(two, tmp_path)
    arms = GN.ensure_arms(two, tmp_path, ('control', 'ranksrgan'), start=sr)
    assert {s: {a: p.parent.name for a, p in d.items()} for s, d in arms.items()} == \
        {10: {'control': 'control', 'ranksrgan': 'ranksrgan'},
         11: {'control': 'control_s11', 'ranksrgan': 'ranksrgan_s11'}}
    for s, d in arms.items():
        a, b = d['control'], d['ranksrgan']
        assert T.load_checkpoint(a)['meta']['seed'] == s == T.load_checkpoint(b)['meta']['seed']
        assert T.load_checkpoint(b)['meta']['arm'] == 'ranksrgan'
        assert T.load_checkpoint(a)['meta']['start'] == 'srresnet'
        _assert_same(_weights(a), _weights(b))                                 # G, D and G_ema, bit for bit
    first = lambda p: _weights(p)['G']['conv_first.weight']
    assert not torch.equal(first(arms[10]['control']), first(arms[11]['control']))
    runs = GN.ensure_gan_runs(two, tmp_path, init=sr)                          # the old wrapper: reused, same paths
    assert runs == {s: (d['control'], d['ranksrgan']) for s, d in arms.items()}
    a, b = (T.stage_loader(GN.seed_profile(two, s), T.train_set(GN.seed_profile(two, s)), torch.device('cpu'))(0, 1)
            for s in (10, 11))
    assert not torch.equal(next(iter(a))['hr'], next(iter(b))['hr'])                  # the seed sets the data order


def test_arm_recipe_starts_from_the_start_g_and_d(cfg, tmp_path):
    torch.manual_seed(3)
    G, D = T.build_generator(cfg), T.build_discriminator(cfg)
    st = T.save_final(tmp_path, 'start', {'G': G.state_dict(), 'D': D.state_dict()}, {'scale': 4, 'g_nf': 8, 'g_nb': 2})
    r = GN.arm_recipe(get_profile(cfg, ema_decay=0.9), 'control', 'control', st)
    for k, net in (('G', G), ('D', D), ('G_ema', G)):
        assert all(torch.equal(v, net.state_dict()[k2]) for (k2, v) in r.state.models[k].state_dict().items())
    assert r.state.meta['ema_decay'] == 0.9 and r.state.meta['arm'] == 'control' and r.state.meta['start'] == 'start'
    g_only = T.save_final(tmp_path, 'g_only', {'G': G.state_dict()}, {'scale': 4, 'g_nf': 8, 'g_nb': 2})
    fresh = GN.arm_recipe(get_profile(cfg, ema_decay=0.0), 'control', 'control', g_only)
    assert not all(torch.equal(v, D.state_dict()[k]) for k, v in fresh.state.models['D'].state_dict().items())
    assert 'G_ema' not in fresh.state.models and 'ema_decay' not in fresh.state.meta      # ema_decay = 0: no EMA


def test_arm_interrupted_and_resumed_is_bitwise_identical(cfg, tmp_path):
    """An arm (the start's D loaded, G_ema kept) stopped at iteration 3 and resumed ends where an uninterrupted one
    does."""
    torch.manual_seed(3)
    nets = {'G': T.build_generator(cfg).state_dict(), 'D': T.build_discriminator(cfg).state_dict()}
    st = T.save_final(tmp_path, 'start', nets, {'scale': 4, 'g_nf': 8, 'g_nb': 2})
    ema = get_profile(cfg, ema_decay=0.5)
    full = GN.train_arm(ema, tmp_path / 'a', 'dniqe', start=st)
    with pytest.raises(KeyboardInterrupt):
        GN.train_arm(ema, tmp_path / 'b', 'dniqe', start=st, cbs=[T.HookCB(_stop_at(3))])
    resumed = GN.train_arm(ema, tmp_path / 'b', 'dniqe', start=st)
    _assert_same(_weights(full), _weights(resumed))
    assert set(_weights(full)) == {'G', 'D', 'G_ema'}


def test_arm_naming():
    """Arms are named <arm> for the first seed and <arm>_s<seed> after; the control is never 03's 'srgan'."""
    from ranksrgan_nb.config import split_seed, stage_label
    three = get_profile('smoke', gan_seeds=(10, 11, 12))
    names = {(a, s): GN.arm_stage(three, a, s).name for a in GN.ARMS for s in three.gan_seeds}
    assert GN.ARMS == ('control', 'ranksrgan', 'dniqe') and 'srgan' not in names.values()
    assert names[('control', 10)] == 'control' and names[('dniqe', 12)] == 'dniqe_s12'
    assert split_seed('control_s11') == ('control', 11) and stage_label('control_s11') == 'SRGAN (control) (seed 11)'
    assert stage_label('dniqe').startswith('dNIQE')
    assert GN.arm_stage(three, 'ranksrgan', 11).profile(three).seed == 11
    assert GN.arm_stage(three, 'dniqe').keys == GN.ARM_KEYS['dniqe'] and 'w_R' in GN.ARM_KEYS['dniqe']
    with pytest.raises(ValueError, match='unknown arm'):
        GN.arm_stage(three, 'srgan', 10)
    with pytest.raises(ValueError, match='not one of gan_seeds'):
        GN.arm_stage(three, 'control', 13)
    with pytest.raises(ValueError, match='unknown arm'):
        GN.train_arm(three, '/nowhere', 'esrgan')


def test_seeds_agree_only_when_every_seed_does():
    assert GN.seeds_agree([-0.1, -2.0, -0.01])
    assert not GN.seeds_agree([-0.1, -2.0, 0.0])              # 0 is no improvement
    assert not GN.seeds_agree([-3.0, 0.1])                    # a big mean does not outvote a seed
    assert not GN.seeds_agree([]) and not GN.seeds_agree([-1.0, float('nan')])


def test_arm_deltas_and_claim():
    import pandas as pd
    idx = pd.MultiIndex.from_tuples([(s, a) for s in (10, 11, 12) for a in ('control', 'ranksrgan', 'dniqe')],
                                    names=['seed', 'arm'])
    t = pd.DataFrame({'niqe': [5, 4.8, 3, 6, 5.5, 4, 5, 5.1, 3.5], 'psnr': [24, 23.9, 23, 24, 24.2, 23, 24, 23.7, 22],
                      'grid': [1.0] * 9}, index=idx)
    d = GN.arm_deltas(t)
    assert list(d.index) == [10, 11, 12] and d.niqe.round(6).tolist() == [-0.2, -0.5, 0.1]
    line = GN.effect_claim(d)
    assert line.startswith('FAIL: RankSRGAN below the control on NIQE in 2 of 3 seeds') and 'mean ΔNIQE -0.200' in line
    assert 'mean ΔPSNR-Y -0.07 dB' in line                                  # (-0.1 + 0.2 - 0.3) / 3
    assert GN.effect_claim(GN.arm_deltas(t, 'dniqe'), 'dNIQE').startswith('PASS: dNIQE below the control')
    assert GN.effect_claim(d, judged=False).startswith('(smoke: not judged)')


def test_dniqe_loss_and_mirror_tile():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 48)
    t = GN.mirror_tile(x)
    assert t.shape == (2, 3, 256, 192) and torch.equal(t[..., 32:64, :48], x.flip(-2))
    assert torch.equal(t[..., 64:96, 48:96], x.flip(-1))
    from ranksrgan_nb.metrics import niqe_diff
    sr = torch.rand(2, 3, 32, 48, requires_grad=True)
    ref = 0.5 * torch.sigmoid((niqe_diff(GN.mirror_tile(sr), crop_border=0) - 6.0) / 2.0)
    assert GN.dniqe_loss(0.5)(sr).item() == pytest.approx(ref.sum().item(), rel=1e-6)
    assert GN.dniqe_loss(0.5, 'mean')(sr).item() == pytest.approx(ref.mean().item(), rel=1e-6)
    GN.dniqe_loss(0.5)(sr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_ensure_reuses_and_refuses_other_settings(cfg, tmp_path):
    sr = T.train_srresnet(cfg, tmp_path)
    torch.manual_seed(1)
    rk = T.save_final(tmp_path, 'myranker', {'R': Ranker(nf=cfg.r_nf).state_dict()}, {'r_nf': cfg.r_nf})
    p = GN.ensure_ranksrgan(cfg, tmp_path, ranker=rk, init=sr)
    stamp = p.stat().st_mtime_ns
    assert GN.ensure_ranksrgan(cfg, tmp_path, ranker=rk, init=sr) == p and p.stat().st_mtime_ns == stamp   # reused
    with pytest.raises(ValueError, match="other settings.*w_R"):
        GN.ensure_ranksrgan(get_profile(cfg, w_R=0.5), tmp_path, ranker=rk, init=sr)
    with pytest.raises(ValueError, match='not one of gan_seeds'):
        GN.ensure_srgan(cfg, tmp_path, seed=99, init=sr)


# ------------------------------------------------------------------ check (c): the pixel-space probe
def _sets():
    from ranksrgan_nb.data import TestImageDataset
    import numpy as np
    return {'A': TestImageDataset({'a': np.zeros((40, 60, 3), np.uint8), 'b': np.zeros((24, 80, 3), np.uint8)}, 4),
            'B': TestImageDataset({f'c{k}': np.full((36, 40, 3), k, np.uint8) for k in range(5)}, 4)}


def test_probe_crops_spread_and_centre():
    crops = GN.probe_crops(_sets(), 2, 32)
    assert list(crops) == ['A/a', 'B/c4']                                            # first and last of 6 eligible
    assert crops['B/c4'].shape == (32, 32, 3) and (crops['B/c4'] == 4).all()
    assert list(GN.probe_crops(_sets(), 1, 32)) == ['A/a']
    assert len(GN.probe_crops(_sets(), 50, 32)) == 6                                  # fewer eligible than asked
    import numpy as np
    from ranksrgan_nb.data import TestImageDataset
    img = np.arange(40 * 48 * 3, dtype=np.int64).reshape(40, 48, 3) % 251
    c = GN.probe_crops({'S': TestImageDataset({'x': img.astype(np.uint8)}, 4)}, 1, 32)['S/x']
    assert np.array_equal(c, img[4:36, 8:40].astype(np.uint8))                       # the centre
    with pytest.raises(ValueError, match='lower probe_crop'):
        GN.probe_crops(_sets(), 3, 41)


def test_refine_pixels_is_adam_on_pixels():
    torch.manual_seed(0)
    x0, hr = torch.rand(3, 3, 36, 36), torch.rand(3, 3, 36, 36)
    one = GN.refine_pixels(x0, hr, 1, 0.02)
    assert torch.allclose(one, (x0 - 0.02 * torch.sign(x0 - hr)).clamp(0, 1), atol=1e-6)   # Adam's 1st step: lr * sign
    # two steps by hand: m = 0.1 g1 + ..., bias-corrected; written out for the content gradient g = sign(x - hr) / N
    x = x0.clone()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    for t in (1, 2):
        g = torch.sign(x - hr) / (3 * 36 * 36)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = (x - 0.02 * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-8)).clamp(0, 1)
    assert torch.allclose(GN.refine_pixels(x0, hr, 2, 0.02), x, atol=1e-5)
    assert torch.equal(GN.refine_pixels(x0, x0, 4, 0.02), x0)                          # at the target: no move
    assert GN.refine_pixels(torch.ones(1, 3, 8, 8), torch.full((1, 3, 8, 8), 2.0), 3, 0.5).max() == 1   # clamped
    assert not x0.requires_grad                                                        # the input is left alone


def test_refine_pixels_rank_term_and_batch_independence():
    torch.manual_seed(0)
    R = Ranker(nf=8).eval()
    x0, hr = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 40, 40)
    rank = GN.RankContentLoss(R, weight=1.0, bn_mode='eval')
    both = GN.refine_pixels(x0, hr, 3, 0.01, rank)
    assert not torch.equal(both, GN.refine_pixels(x0, hr, 3, 0.01))
    # eval-mode BatchNorm and per-image content: each image of the batch is refined as if alone
    alone = torch.cat([GN.refine_pixels(x0[i:i + 1], hr[i:i + 1], 3, 0.01, rank) for i in range(2)])
    assert torch.allclose(both, alone, atol=1e-6)
    assert not any(p.requires_grad for p in R.parameters())


def test_pixel_probe_values():
    import numpy as np
    from ranksrgan_nb.data import bicubic_degrade, img2tensor, sample_images, tensor2img
    from ranksrgan_nb.metrics import niqe, psnr
    crops = {k: v[:200, :212] for k, v in sample_images('test').items()}
    G = torch.nn.Upsample(scale_factor=4, mode='bicubic')
    torch.manual_seed(0)
    R = Ranker(nf=8)
    df = GN.pixel_probe(G, R, crops, steps=2, lr=0.01, weight=0.5, bn_mode='train', batch=2)
    assert list(df.index) == ['chelsea', 'grace_hopper'] and df.shape == (2, 6)
    for n, hr in crops.items():
        start = tensor2img(G(img2tensor(bicubic_degrade(hr, 4))[None]).clamp(0, 1)[0])
        assert df.loc[n, 'niqe_start'] == pytest.approx(niqe(start, crop_border=4), abs=1e-9)
        assert df.loc[n, 'psnr_start'] == pytest.approx(psnr(start, hr, crop_border=4), abs=1e-9)
    assert np.isfinite(df.values).all() and not np.array_equal(df.niqe_rank.values, df.niqe_content.values)
    same = GN.pixel_probe(G, R, crops, steps=2, lr=0.01, weight=0.0, bn_mode='train', batch=1)
    assert np.array_equal(same.niqe_rank.values, same.niqe_content.values)
    batched = GN.pixel_probe(G, R, crops, 2, 0.01, 0.0, batch=2)
    assert np.array_equal(same.niqe_content.values, batched.niqe_content.values)


# ------------------------------------------------------------------ check (d), verdicts, the convergence figure
def test_rank_term_trend():
    import pandas as pd
    log = pd.DataFrame({'iter': [30, 10, 20, 40, 50, 60, 70, 80, 90, 100, 110],
                        'l_g_rank': [3.0, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]})
    first, last, k = GN.rank_term_trend(log)
    assert k == 2 and first == pytest.approx(1.5) and last == pytest.approx(10.5)   # ceil(0.1 * 11) = 2 rows each
    assert GN.rank_term_trend(log, frac=0.5)[2] == 6
    assert GN.rank_term_trend(log.iloc[:1]) == (3.0, 3.0, 1)                        # one row: both ends are it
    renamed = log.rename(columns={'l_g_rank': 'l_g_rank_niqe'})
    assert GN.rank_term_trend(renamed, 'l_g_rank_niqe')[0] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="no 'l_g_rank' column"):
        GN.rank_term_trend(log.drop(columns='l_g_rank'))


def test_verdict():
    assert GN.verdict(True, 'a 1') == 'PASS: a 1' and GN.verdict(False, 'b') == 'FAIL: b'
    assert GN.verdict(True, 'c', judged=False) == '(smoke: not judged) c'


def test_plot_convergence():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import pandas as pd
    v = lambda a: pd.DataFrame({'iter': [1, 2, 3], 'niqe': a, 'psnr': [20.0, 21.0, 22.0]})
    fig = GN.plot_convergence({'srgan': v([5, 4, 3]), 'ranksrgan': v([5, 3, 2]), 'srgan_s11': v([6, 5, 4]),
                               'ranksrgan_s11': v([6, 4, 1])})
    assert len(fig.axes) == 2
    lines = {l.get_label(): l for l in fig.axes[0].get_lines()}
    assert list(lines) == ['SRGAN', 'RankSRGAN', 'SRGAN (seed 11)', 'RankSRGAN (seed 11)']
    assert lines['SRGAN'].get_color() == lines['SRGAN (seed 11)'].get_color() != lines['RankSRGAN'].get_color()
    style = {k: v.get_linestyle() for k, v in lines.items()}
    assert style['SRGAN'] == style['RankSRGAN'] != style['RankSRGAN (seed 11)']
    assert list(lines['RankSRGAN (seed 11)'].get_ydata()) == [6, 4, 1]
    assert list(fig.axes[1].get_lines()[0].get_ydata()) == [20.0, 21.0, 22.0]
    plt.close(fig)
