import dataclasses

import pytest

from ranksrgan_nb.config import PROFILES, get_profile, project_root, resolve_dirs


def test_profiles_exist_and_are_valid():
    assert set(PROFILES) == {'smoke', 'cpu', 'paper'}
    for name, p in PROFILES.items():
        assert p.name == name
        assert get_profile(name) == p


def test_paper_profile_is_the_official_config():
    # the official codes/options/train/train_RankSRGAN.yml and train_Ranker.yml values,
    # typed in (not computed by the code)
    p = PROFILES['paper']
    assert (p.g_nf, p.g_nb, p.d_nf, p.r_nf) == (64, 16, 64, 64)
    assert (p.batch_size, p.hr_patch, p.gan_iters, p.gan_lr) == (8, 296, 500_000, 1e-4)
    assert [round(s * p.gan_iters) for s in p.gan_lr_steps] == [50_000, 100_000, 200_000, 300_000]
    assert (p.w_pix, p.w_fea, p.w_gan, p.w_R, p.R_bias, p.lr_gamma) == (0, 1, 5e-3, 3e-2, 0, 0.5)
    assert (p.rank_reduction, p.ranker_bn, p.ranker_design) == ('sum', 'train', 'official')
    assert (p.ranker_lr, p.ranker_wd, p.ranker_batch, p.ranker_iters) == (1e-4, 1e-4, 16, 400_000)
    assert (p.ranker_margin, p.ranker_clamp) == (0.5, 5.0)


def test_overrides_and_none():
    p = get_profile('smoke', gan_iters=None, w_R=0, rank_levels=['hr', 'bicubic'])
    assert p.gan_iters == PROFILES['smoke'].gan_iters
    assert p.w_R == 0.0 and isinstance(p.w_R, float)
    assert p.rank_levels == ('hr', 'bicubic')
    assert get_profile(p, seed=3).seed == 3          # a Profile can be the base
    assert get_profile('cpu', amp='false').amp is False


@pytest.mark.parametrize('kw,msg', [
    (dict(gan_iter=1), 'valid settings'),
    (dict(name='x'), 'valid settings'),
    (dict(gan_iters='x'), 'gan_iters expects int'),
    (dict(gan_iters=2.5), 'gan_iters expects int'),
    (dict(w_R='big'), 'w_R expects float'),
    (dict(ranker_design='frozen'), "not one of ['official', 'eval']"),
    (dict(batch_size=0), 'batch_size must be > 0'),
    (dict(hr_patch=33), 'multiple of scale'),
    (dict(gan_lr_steps=(0.5, 0.2)), 'increasing fractions'),
    (dict(rank_levels=('one',)), 'at least 2'),
    (dict(rank_val_frac=1.0), 'rank_val_frac'),
    (dict(seed=-1), 'seed must be >= 0'),
    (dict(sr_lr=-1), 'sr_lr must be > 0'),
    (dict(ranker_lr=0), 'ranker_lr must be > 0'),
    (dict(lr_gamma=0), 'lr_gamma'),
    (dict(lr_gamma=1.5), 'lr_gamma'),
    (dict(w_gan=-0.01), 'w_gan must be >= 0'),
    (dict(gan_lr=float('nan')), 'gan_lr=nan must be a finite number'),
    (dict(sr_lr_steps='0.5,seven'), 'sr_lr_steps expects float items'),
    (dict(sr_lr_steps=['0.7', '0.5']), 'increasing fractions'),
    (dict(rank_levels='srgan,srgan'), '2 different'),
    (dict(rank_levels='srgan,srresent'), "did you mean 'srresnet'"),
    (dict(label_metric='nime'), "did you mean 'niqe'"),
    (dict(device='gpu'), "device='gpu' is not a torch device"),
    (dict(vgg_weights='/nowhere/vgg19.pth'), "vgg_weights='/nowhere/vgg19.pth'"),
    (dict(test_data='sample,Set15'), "a part of test_data='Set15' is unknown"),
    (dict(hr_patch=16), 'hr_patch must be >= 32'),
])
def test_bad_values(kw, msg):
    with pytest.raises((ValueError, TypeError), match=None) as e:
        get_profile('smoke', **kw)
    assert msg in str(e.value)


def test_unknown_profile_lists_choices():
    with pytest.raises(ValueError) as e:
        get_profile('gpu')
    assert "['paper', 'cpu', 'smoke']" in str(e.value)


def test_profile_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES['smoke'].gan_iters = 3


def test_resolve_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # outside the project: the cwd is the root
    assert project_root() == tmp_path
    r, f, res = resolve_dirs(PROFILES['smoke'])
    assert r == tmp_path / 'runs' / 'smoke' and f == tmp_path / 'figures' / 'smoke' and res.is_dir()
    r2, _, _ = resolve_dirs(PROFILES['cpu'], run_dir=tmp_path / 'x')
    assert r2 == tmp_path / 'x' and r2.is_dir()


def test_project_root_found_from_nbs(monkeypatch):
    from conftest import ROOT
    monkeypatch.chdir(ROOT / 'nbs')
    assert project_root() == ROOT


def test_strings_from_the_command_line_are_converted():
    p = get_profile('smoke', sr_lr_steps='0.5,0.7', gan_lr_steps=['0.25', 0.5], seed='7', sr_lr='3e-4', device='cpu:0')
    assert p.sr_lr_steps == (0.5, 0.7) and p.gan_lr_steps == (0.25, 0.5) and p.seed == 7 and p.sr_lr == 3e-4


def test_a_profile_made_directly_is_type_checked():
    from ranksrgan_nb.config import _check_profile
    with pytest.raises(TypeError, match=r"sr_lr_steps=\('0.5', '0.7'\) must hold float values"):
        _check_profile(dataclasses.replace(PROFILES['smoke'], sr_lr_steps=('0.5', '0.7')))
    with pytest.raises(TypeError, match='seed=True must be an integer'):
        _check_profile(dataclasses.replace(PROFILES['smoke'], seed=True))


def test_registered_names_are_accepted(tmp_path):
    from ranksrgan_nb.config import KNOWN_METRICS
    from ranksrgan_nb.metrics import METRICS, register_metric
    with pytest.raises(ValueError, match="label_metric='my_metric' is unknown"):
        get_profile('smoke', label_metric='my_metric')
    register_metric('my_metric', lambda x, crop_border=0: 0.0, higher_is_better=False, full_reference=False)
    try:
        assert get_profile('smoke', label_metric='my_metric', test_data=str(tmp_path)).label_metric == 'my_metric'
    finally:
        METRICS.pop('my_metric')
        KNOWN_METRICS.discard('my_metric')


def test_known_metrics_are_the_registry_and_need_no_torch():
    import subprocess
    import sys
    code = ("import sys; from ranksrgan_nb.config import get_profile; "
            "assert get_profile('smoke', label_metric='grid').label_metric == 'grid'; "
            "assert 'torch' not in sys.modules and 'ranksrgan_nb.metrics' not in sys.modules")
    subprocess.run([sys.executable, '-c', code], check=True)
    code = ("from ranksrgan_nb.config import KNOWN_METRICS; from ranksrgan_nb.metrics import METRICS; "
            "assert set(METRICS) == KNOWN_METRICS, (sorted(METRICS), sorted(KNOWN_METRICS))")
    subprocess.run([sys.executable, '-c', code], check=True)      # the built-in names, written out in config


def test_seed_profile_reads_the_first_seed():
    from ranksrgan_nb.config import seed_profile
    two = get_profile('smoke', gan_seeds=(10, 11), seed=3)
    assert (seed_profile(two).seed, seed_profile(two, 11).seed) == (10, 11)
    assert dataclasses.replace(seed_profile(two, 11), seed=3) == two


def test_w_grid_is_a_setting_that_reaches_the_gan_weights():
    from ranksrgan_nb.train import gan_weights
    assert get_profile('smoke').w_grid == 0.0                            # the paper's objective by default
    assert gan_weights(get_profile('smoke', w_grid='10'), None).w_grid == 10.0   # a papermill string
    with pytest.raises(ValueError, match='w_grid must be >= 0'):
        get_profile('smoke', w_grid=-1.0)
