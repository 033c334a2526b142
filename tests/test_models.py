"""Tests of ranksrgan_nb.models (nbs/02_models.ipynb).

The references here are written independently of the module: the parameter counts of the official networks
(counted on the official RankSRGAN_arch.py classes), the key/shape layouts of the released checkpoints
(tests/fixtures/official_state_dict_layouts.json), explicit
old->new key tables, the old BasicSR networks written the way BasicSR wrote them, and the new ones
written out with torch.nn.functional.
"""
import hashlib
import json
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ranksrgan_nb import models as M
from ranksrgan_nb.datasets import DownloadError
from ranksrgan_nb.models import (CheckpointError, Discriminator, Ranker, RandomVGGWarning, RRDBNet, SRResNet,
                                 VGGFeatures, count_params, load_official, map_official)

LAYOUT_FILE = Path(__file__).parent / 'fixtures' / 'official_state_dict_layouts.json'
LAYOUT_FILE = LAYOUT_FILE if LAYOUT_FILE.is_file() else None
needs_layouts = pytest.mark.skipif(LAYOUT_FILE is None, reason='official_state_dict_layouts.json not in tests/fixtures')
VGG_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]   # torchvision vgg19().features conv indices
VGG_CH = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


@pytest.fixture(scope='module')
def layouts():
    return json.loads(LAYOUT_FILE.read_text())


def layout(layouts, prefix):
    (name,) = [k for k in layouts if k.startswith(prefix + '(')]
    return [(k, tuple(s)) for k, s in layouts[name]['keys']], layouts[name]['params']


def synthetic(keys, seed=0):
    "A state dict with the given (key, shape) list and random, distinct values."
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randint(0, 10**6, s, generator=g) if k.endswith('num_batches_tracked')
                else torch.randn(s, generator=g))
            for k, s in keys}


def quiet_vgg(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RandomVGGWarning)
        return VGGFeatures(**kw)


# ------------------------------------------------------------------ old BasicSR networks, written as BasicSR did
def conv(i, o, k=3, s=1, bias=True):
    return nn.Conv2d(i, o, k, s, (k - 1) // 2, bias=bias)          # BasicSR get_valid_padding


class Shortcut(nn.Module):
    def __init__(self, sub):
        super().__init__()
        self.sub = sub
    def forward(self, x): return x + self.sub(x)


class OldResNetBlock(nn.Module):
    def __init__(self, nf):
        super().__init__()
        self.res = nn.Sequential(conv(nf, nf), nn.ReLU(), conv(nf, nf))
    def forward(self, x): return x + self.res(x)


class OldSRResNet(nn.Module):
    def __init__(self, nf=64, nb=16, scale=4):
        super().__init__()
        r, n = (3, 1) if scale == 3 else (2, scale // 2)
        up = []
        for _ in range(n): up += [conv(nf, nf * r * r), nn.PixelShuffle(r), nn.ReLU()]
        self.model = nn.Sequential(conv(3, nf),
                                   Shortcut(nn.Sequential(*[OldResNetBlock(nf) for _ in range(nb)], conv(nf, nf))),
                                   *up, conv(nf, nf), nn.ReLU(), conv(nf, 3))
    def forward(self, x): return self.model(x)


class OldRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        for i in range(1, 5): setattr(self, f'conv{i}', nn.Sequential(conv(nf + (i - 1) * gc, gc), nn.LeakyReLU(0.2)))
        self.conv5 = nn.Sequential(conv(nf + 4 * gc, nf))
    def forward(self, x):
        x1 = self.conv1(x)
        x2 = self.conv2(torch.cat((x, x1), 1))
        x3 = self.conv3(torch.cat((x, x1, x2), 1))
        x4 = self.conv4(torch.cat((x, x1, x2, x3), 1))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5.mul(0.2) + x


class OldRRDB(nn.Module):
    def __init__(self, nf, gc):
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = OldRDB(nf, gc), OldRDB(nf, gc), OldRDB(nf, gc)
    def forward(self, x): return self.RDB3(self.RDB2(self.RDB1(x))).mul(0.2) + x


class OldRRDBNet(nn.Module):
    def __init__(self, nf=64, nb=23, gc=32, scale=4):
        super().__init__()
        r, n = (3, 1) if scale == 3 else (2, scale // 2)
        up = []
        for _ in range(n): up += [nn.Upsample(scale_factor=r, mode='nearest'), conv(nf, nf), nn.LeakyReLU(0.2)]
        self.model = nn.Sequential(conv(3, nf),
                                   Shortcut(nn.Sequential(*[OldRRDB(nf, gc) for _ in range(nb)], conv(nf, nf))),
                                   *up, conv(nf, nf), nn.LeakyReLU(0.2), conv(nf, 3))
    def forward(self, x): return self.model(x)


def old_features(nf):
    layers, c_in = [], 3
    for i, c in enumerate((nf, nf * 2, nf * 4, nf * 8, nf * 8)):
        for j, (k, s) in enumerate(((3, 1), (4, 2))):
            layers.append(conv(c_in, c, k, s))
            if (i, j) != (0, 0): layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c
    return nn.Sequential(*layers)


class OldRanker(nn.Module):
    def __init__(self, nf=64):
        super().__init__()
        self.features = old_features(nf)
        self.classifier = nn.Sequential(nn.Linear(nf * 8, 100), nn.LeakyReLU(0.2), nn.Linear(100, 1))
    def forward(self, x):
        f = self.features(x)
        return self.classifier(F.avg_pool2d(f, f.shape[-1]).flatten(1))   # official AvgPool2d(kernel=H)


class OldDiscriminator(nn.Module):
    def __init__(self, nf=64, patch=296):
        super().__init__()
        self.features = old_features(nf)
        self.classifier = nn.Sequential(nn.Linear(nf * 8 * (patch // 32) ** 2, 100), nn.LeakyReLU(0.2),
                                        nn.Linear(100, 1))
    def forward(self, x): return self.classifier(self.features(x).flatten(1))


@torch.no_grad()
def randomise(model, seed=0):
    "Random values everywhere, BN statistics included, so a mis-mapped tensor cannot go unnoticed."
    g = torch.Generator().manual_seed(seed)
    for k, t in model.state_dict().items():
        if k.endswith('num_batches_tracked'): t.fill_(7)
        elif k.endswith('running_var'): t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        else: t.copy_(torch.randn(t.shape, generator=g) * (0.1 if t.ndim > 1 else 0.5))
    return model


# ------------------------------------------------------------------ explicit old -> new key tables
_OLD_VGG = {0: 'conv0_0', 2: 'conv0_1', 3: 'bn0_1', 5: 'conv1_0', 6: 'bn1_0', 8: 'conv1_1', 9: 'bn1_1',
            11: 'conv2_0', 12: 'bn2_0', 14: 'conv2_1', 15: 'bn2_1', 17: 'conv3_0', 18: 'bn3_0',
            20: 'conv3_1', 21: 'bn3_1', 23: 'conv4_0', 24: 'bn4_0', 26: 'conv4_1', 27: 'bn4_1'}


def new_name(kind, k, nb=None):
    "The mmsr key an old BasicSR key must land in (written from the two architectures, not from the loader)."
    if kind == 'SRResNet':
        if m := re.fullmatch(r'model\.1\.sub\.(\d+)\.res\.([02])\.(\w+)', k):
            return f'recon_trunk.{m[1]}.conv{1 + int(m[2]) // 2}.{m[3]}'
        if m := re.fullmatch(rf'model\.1\.sub\.{nb or 16}\.(\w+)', k): return f'LRconv.{m[1]}'
        m = re.fullmatch(r'model\.(\d+)\.(\w+)', k)
        return f"{ {'0': 'conv_first', '2': 'upconv1', '5': 'upconv2', '8': 'HRconv', '10': 'conv_last'}[m[1]] }.{m[2]}"
    if kind == 'RRDBNet':
        if m := re.fullmatch(r'model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(\w+)', k):
            return f'RRDB_trunk.{m[1]}.RDB{m[2]}.conv{m[3]}.{m[4]}'
        if m := re.fullmatch(rf'model\.1\.sub\.{nb or 23}\.(\w+)', k): return f'trunk_conv.{m[1]}'
        m = re.fullmatch(r'model\.(\d+)\.(\w+)', k)
        return f"{ {'0': 'conv_first', '3': 'upconv1', '6': 'upconv2', '8': 'HRconv', '10': 'conv_last'}[m[1]] }.{m[2]}"
    if kind in ('Ranker', 'Discriminator'):
        if k.startswith('classifier.'):
            return {'Ranker': k,
                    'Discriminator': k.replace('classifier.0', 'linear1').replace('classifier.2', 'linear2')}[kind]
        m = re.fullmatch(r'features\.(\d+)\.(\w+)', k)
        return f'{_OLD_VGG[int(m[1])]}.{m[2]}'
    raise ValueError(kind)


# ------------------------------------------------------------------ parameter counts and layouts
def test_param_counts():
    with torch.device('meta'):
        assert count_params(SRResNet()) == 1_554_499
        assert count_params(RRDBNet()) == 16_697_987
        assert count_params(Discriminator()) == 17_827_401
        assert count_params(Ranker()) == 13_734_281
    assert count_params(quiet_vgg(weights='random')) == 20_024_384
    assert count_params(quiet_vgg(weights='random'), trainable_only=True) == 0
    lin = nn.Linear(3, 2)
    lin.bias.requires_grad_(False)
    assert (count_params(lin), count_params(lin, trainable_only=True)) == (8, 6)


@needs_layouts
@pytest.mark.parametrize('prefix,make', [('mmsr.SRResNet', lambda: SRResNet()), ('mmsr.RRDBNet', lambda: RRDBNet()),
                                         ('mmsr.Discriminator_VGG_296', lambda: Discriminator()),
                                         ('mmsr.Ranker_VGG12_296', lambda: Ranker())])
def test_mmsr_names_and_order(layouts, prefix, make):
    keys, n = layout(layouts, prefix)
    with torch.device('meta'): model = make()
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == keys
    assert count_params(model) == n


@needs_layouts
@pytest.mark.parametrize('prefix,make', [('basicsr_old.SRResNet', lambda: OldSRResNet()),
                                         ('basicsr_old.RRDBNet', lambda: OldRRDBNet()),
                                         ('basicsr_old.Ranker_VGG12', lambda: OldRanker())])
def test_old_references_match_official_layout(layouts, prefix, make):
    "The BasicSR-style reference networks above have exactly the released old layouts."
    keys, n = layout(layouts, prefix)
    with torch.device('meta'): model = make()
    assert sorted((k, tuple(v.shape)) for k, v in model.state_dict().items()) == sorted(keys)
    assert count_params(model) == n


# ------------------------------------------------------------------ loading the official layouts
LAYOUTS = [('mmsr.SRResNet', 'SRResNet', SRResNet), ('mmsr.RRDBNet', 'RRDBNet', RRDBNet),
           ('mmsr.Discriminator_VGG_296', 'Discriminator', Discriminator), ('mmsr.Ranker_VGG12_296', 'Ranker', Ranker),
           ('basicsr_old.SRResNet', 'SRResNet', SRResNet), ('basicsr_old.RRDBNet', 'RRDBNet', RRDBNet),
           ('basicsr_old.Ranker_VGG12', 'Ranker', Ranker)]


@needs_layouts
@pytest.mark.parametrize('prefix,kind,cls', LAYOUTS, ids=[p for p, _, _ in LAYOUTS])
@pytest.mark.parametrize('order', ['file', 'alphabetical'])
def test_load_synthetic_official(layouts, prefix, kind, cls, order):
    keys, _ = layout(layouts, prefix)
    if order == 'alphabetical': keys = sorted(keys)          # e.g. after a safetensors round trip: sub.10 before sub.2
    src = synthetic(keys)
    model = load_official(cls(), src)
    got = model.state_dict()
    expected = {(k if prefix.startswith('mmsr') else new_name(kind, k)): v for k, v in src.items()}
    assert set(expected) == set(got)                         # every model tensor filled, each exactly once
    for k, v in expected.items(): assert torch.equal(got[k], v), k


@pytest.mark.parametrize('wrap', ['params', 'params_ema', 'state_dict', 'model', 'module', 'module+params', 'file'])
def test_wrappers_and_prefixes(tmp_path, wrap):
    sd = randomise(SRResNet(8, 2)).state_dict()
    if wrap == 'module': src = {f'module.{k}': v for k, v in sd.items()}
    elif wrap == 'module+params': src = {'params': {f'module.{k}': v for k, v in sd.items()}, 'iter': 3}
    elif wrap == 'file':
        torch.save({'state_dict': sd, 'optimizer': {'lr': 1}}, tmp_path / 'g.pth')
        src = str(tmp_path / 'g.pth')
    else: src = {wrap: sd}
    got = load_official(SRResNet(8, 2), src).state_dict()
    for k, v in sd.items(): assert torch.equal(got[k], v), k


def test_old_file_without_num_batches_tracked():
    old = randomise(OldRanker(8)).state_dict()
    src = {k: v for k, v in old.items() if not k.endswith('num_batches_tracked')}   # PyTorch < 0.4.1
    r = load_official(Ranker(8), src)
    assert torch.equal(r.bn3_1.running_var, old['features.21.running_var'])
    assert r.bn3_1.num_batches_tracked.item() == 0


# ------------------------------------------------------------------ same outputs as the old networks
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_old_srresnet_equivalent(scale):
    old = randomise(OldSRResNet(8, 3, scale))
    x = torch.rand(2, 3, 11, 7)
    torch.testing.assert_close(load_official(SRResNet(8, 3, scale), old.state_dict())(x), old(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_old_rrdbnet_equivalent(scale):
    old = randomise(OldRRDBNet(8, 2, 4, scale))
    x = torch.rand(1, 3, 9, 6)
    torch.testing.assert_close(load_official(RRDBNet(8, 2, 4, scale), old.state_dict())(x), old(x),
                               rtol=1e-4, atol=1e-5)


def test_old_ranker_equivalent():
    old = randomise(OldRanker(8))
    new = load_official(Ranker(8), old.state_dict())
    x = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(new.eval()(x), old.eval()(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(new.train()(x), old.train()(x), rtol=1e-4, atol=1e-5)


def test_old_discriminator_bias_fold():
    "Old BasicSR D (bias on every conv) into mmsr D (no bias before BN): same outputs, eval and train."
    old = randomise(OldDiscriminator(8, 64))
    old_sd = {k: v.clone() for k, v in old.state_dict().items()}
    new = load_official(Discriminator(8, patch_size=64), old_sd)
    x = torch.rand(4, 3, 64, 64)
    torch.testing.assert_close(new.eval()(x), old.eval()(x), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(new.train()(x), old.train()(x), rtol=1e-4, atol=1e-4)   # also updates running stats
    torch.testing.assert_close(new.eval()(x), old.eval()(x), rtol=1e-4, atol=1e-4)     # still equal after the update
    torch.testing.assert_close(new.linear1.weight, old_sd['classifier.0.weight'])
    torch.testing.assert_close(new.bn4_1.weight, old_sd['features.27.weight'])


# ------------------------------------------------------------------ forward passes vs F.* references and shapes
def test_srresnet_functional_reference():
    g = randomise(SRResNet(8, 2))
    sd = g.state_dict()
    c = lambda t, n: F.conv2d(t, sd[f'{n}.weight'], sd[f'{n}.bias'], padding=1)
    x = torch.rand(2, 3, 17, 23)
    fea = h = c(x, 'conv_first')
    for i in range(2): h = h + c(F.relu(c(h, f'recon_trunk.{i}.conv1')), f'recon_trunk.{i}.conv2')
    h = c(h, 'LRconv') + fea
    h = F.relu(F.pixel_shuffle(c(h, 'upconv1'), 2))
    h = F.relu(F.pixel_shuffle(c(h, 'upconv2'), 2))
    out = g(x)
    assert out.shape == (2, 3, 68, 92)
    torch.testing.assert_close(out, c(F.relu(c(h, 'HRconv')), 'conv_last'), rtol=1e-4, atol=1e-5)


def test_discriminator_functional_reference():
    d = randomise(Discriminator(8, patch_size=64))
    sd = d.state_dict()
    x = torch.rand(3, 3, 64, 64)
    h = x
    for i in range(5):
        for j, s in ((0, 1), (1, 2)):
            h = F.conv2d(h, sd[f'conv{i}_{j}.weight'], sd.get(f'conv{i}_{j}.bias'), stride=s, padding=1)
            if (i, j) != (0, 0): h = F.batch_norm(h, sd[f'bn{i}_{j}.running_mean'], sd[f'bn{i}_{j}.running_var'],
                                                  sd[f'bn{i}_{j}.weight'], sd[f'bn{i}_{j}.bias'])
            h = F.leaky_relu(h, 0.2)
    ref = F.linear(F.leaky_relu(F.linear(h.flatten(1), sd['linear1.weight'], sd['linear1.bias']), 0.2),
                   sd['linear2.weight'], sd['linear2.bias'])
    torch.testing.assert_close(d.eval()(x), ref, rtol=1e-4, atol=1e-4)
    assert sum(m.bias is not None for m in d.modules() if isinstance(m, nn.Conv2d)) == 1


@pytest.mark.parametrize('cls', [SRResNet, RRDBNet])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_generator_shapes_odd_sizes(cls, scale):
    kw = dict(nf=8, nb=1) if cls is SRResNet else dict(nf=8, nb=1, gc=4)
    for h, w in ((17, 23), (1, 1), (5, 2)):
        assert cls(scale=scale, **kw)(torch.rand(2, 3, h, w)).shape == (2, 3, h * scale, w * scale)


def test_discriminator_and_ranker_shapes():
    assert Discriminator(8, patch_size=32).train()(torch.rand(2, 3, 32, 32)).shape == (2, 1)
    assert Discriminator(8, patch_size=296).eval()(torch.rand(1, 3, 296, 296)).shape == (1, 1)
    r = Ranker(8)
    for h, w in ((32, 32), (33, 71), (100, 40), (296, 296)): assert r.train()(torch.rand(2, 3, h, w)).shape == (2, 1)


def test_ranker_pooling_is_official_on_square_inputs():
    old = randomise(OldRanker(8)).eval()
    new = load_official(Ranker(8), old.state_dict()).eval()
    for n in (32, 96, 150):
        x = torch.rand(2, 3, n, n)
        torch.testing.assert_close(new(x), old(x), rtol=1e-4, atol=1e-5)


def test_srresnet_init():
    torch.manual_seed(0)
    g = SRResNet()
    for m, fan_in in ((g.conv_first, 27), (g.recon_trunk[7].conv2, 576), (g.upconv1, 576), (g.HRconv, 576),
                      (g.conv_last, 576)):
        assert abs(m.weight.std().item() / (0.1 * (2 / fan_in) ** 0.5) - 1) < 0.1
        assert m.bias.abs().max().item() == 0
    assert g.LRconv.weight.std() > 3 * g.HRconv.weight.std()       # PyTorch default init, as the official code


# ------------------------------------------------------------------ error paths
def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match='scale 2, 3 or 4'): SRResNet(scale=8)
    with pytest.raises(ValueError, match='scale 2, 3 or 4'): RRDBNet(scale=1)
    with pytest.raises(ValueError, match='>= 32'): Discriminator(patch_size=31)


def test_discriminator_wrong_input_size():
    d = Discriminator(8, patch_size=64)
    for h, w in ((65, 64), (64, 70), (32, 32), (296, 296)):
        with pytest.raises(ValueError, match=r'patch_size=64\) takes 64x64 inputs, got %dx%d' % (h, w)):
            d(torch.rand(2, 3, h, w))


def test_ranker_too_small():
    for h, w in ((31, 64), (64, 31), (16, 16)):
        with pytest.raises(ValueError, match=f'at least 32x32 pixels.*got {h}x{w}'): Ranker(8)(torch.rand(2, 3, h, w))


def test_load_errors_by_name():
    sd = randomise(SRResNet(8, 2)).state_dict()
    with pytest.raises(CheckpointError, match=r"1 missing from the checkpoint, first: \['HRconv.bias'\]"):
        load_official(SRResNet(8, 2), {k: v for k, v in sd.items() if k != 'HRconv.bias'})
    with pytest.raises(CheckpointError,
                       match=r"upconv1.weight is \(72, 8, 3, 3\) in the checkpoint, \(32, 8, 3, 3\) in the model"):
        load_official(SRResNet(8, 2), {**sd, 'upconv1.weight': torch.zeros(72, 8, 3, 3)})
    with pytest.raises(CheckpointError, match=r"not in the model, first: \['upconv3.weight'\]"):
        load_official(SRResNet(8, 2), {**sd, 'upconv3.weight': torch.zeros(1)})
    with pytest.raises(CheckpointError, match='wrong shape'):          # a x4 checkpoint into a x3 model
        load_official(SRResNet(8, 2, scale=3), sd)
    with pytest.raises(CheckpointError, match='missing from the checkpoint'):   # a generator checkpoint into D
        load_official(Discriminator(8, 32), sd)
    untouched = SRResNet(8, 2)
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    with pytest.raises(CheckpointError): load_official(untouched, {**sd, 'HRconv.bias': torch.zeros(3)})
    assert all(torch.equal(v, untouched.state_dict()[k]) for k, v in before.items())   # nothing half-loaded


def test_load_errors_by_order():
    old = randomise(OldSRResNet(8, 2)).state_dict()
    with pytest.raises(CheckpointError, match=r"nothing for the model's \['conv_last.bias'\]"):
        load_official(SRResNet(8, 2), {k: v for k, v in old.items() if k != 'model.10.bias'})
    with pytest.raises(CheckpointError, match=r"left over in the checkpoint: \['model.11.weight'\]"):
        load_official(SRResNet(8, 2), {**old, 'model.11.weight': torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r'the checkpoint has 20 tensors, the model 24'):
        load_official(SRResNet(8, 3), old)                   # 2 blocks into a 3-block model
    with pytest.raises(CheckpointError,
                       match=r'model.5.weight \(32, 8, 3, 3\) would go to HRconv.weight \(8, 8, 3, 3\)'):
        load_official(SRResNet(8, 2, scale=2), old)          # x4 into x2
    with pytest.raises(CheckpointError, match='do not fit in order'):
        # an old D is not a Ranker: classifier.0 is 4x wider
        load_official(Ranker(8), randomise(OldDiscriminator(8, 64)).state_dict())
    bad = dict(old)
    bad['model.2.weight'] = torch.zeros(32, 8, 1, 1)
    with pytest.raises(CheckpointError,
                       match=r'model.2.weight \(32, 8, 1, 1\) would go to upconv1.weight \(32, 8, 3, 3\)'):
        load_official(SRResNet(8, 2), bad)


def test_load_errors_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere/G.pth'):
        load_official(SRResNet(8, 1), tmp_path / 'nowhere' / 'G.pth')
    with pytest.raises(CheckpointError, match="top-level keys \\['optimizer', 'iter'\\]"):
        load_official(SRResNet(8, 1), {'optimizer': {}, 'iter': 1})
    with pytest.raises(CheckpointError, match='got list'): load_official(SRResNet(8, 1), [torch.zeros(1)])
    with pytest.raises(CheckpointError): load_official(SRResNet(8, 1), {'foo.weight': torch.zeros(1)})  # neither layout


def test_map_official_pairs():
    old = randomise(OldSRResNet(8, 2)).state_dict()
    _, pairs = map_official(SRResNet(8, 2), old)
    assert len(pairs) == len(old)
    assert all(new == new_name('SRResNet', o, nb=2) for o, new in pairs)
    assert ('model.1.sub.2.bias', 'LRconv.bias') in pairs and ('model.10.weight', 'conv_last.weight') in pairs


# ------------------------------------------------------------------ VGG19 features
def torchvision_vgg19_state(seed=0, classifier=True):
    "A torchvision-format vgg19 state dict with random values (features.N.*, classifier.*)."
    g = torch.Generator().manual_seed(seed)
    sd, c_in = {}, 3
    for i, c in zip(VGG_CONVS, VGG_CH):
        sd[f'features.{i}.weight'] = torch.randn(c, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        sd[f'features.{i}.bias'] = torch.randn(c, generator=g) * 0.1
        c_in = c
    if classifier:
        for i, (o, n) in zip((0, 3, 6), ((16, 32), (16, 16), (10, 16))):       # small stand-ins for 4096x25088 etc.
            sd[f'classifier.{i}.weight'], sd[f'classifier.{i}.bias'] = (torch.randn(o, n, generator=g),
                                                                        torch.randn(o, generator=g))
    return sd


def vgg_reference(x, sd, last_conv_index, relu_after=False):
    "torchvision VGG19 cfg 'E' written out with F.* (ImageNet normalisation first)."
    x = ((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
         / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    for i in VGG_CONVS:
        if i in (5, 10, 19, 28): x = F.max_pool2d(x, 2, 2)
        x = F.conv2d(x, sd[f'features.{i}.weight'], sd[f'features.{i}.bias'], padding=1)
        if i == last_conv_index: return F.relu(x) if relu_after else x
        x = F.relu(x)


@pytest.fixture(scope='module')
def tv_file(tmp_path_factory):
    p = tmp_path_factory.mktemp('vgg') / 'vgg19_tv.pth'
    sd = torchvision_vgg19_state()
    torch.save(sd, p)
    return p, sd


def test_vgg_torchvision_layout_and_values(tv_file):
    path, sd = tv_file
    v = VGGFeatures(weights=str(path))
    assert list(v.state_dict()) == [f'features.{i}.{p}' for i in VGG_CONVS for p in ('weight', 'bias')]
    assert len(v.features) == 35
    for k, t in v.state_dict().items(): assert torch.equal(t, sd[k]), k
    x = torch.rand(2, 3, 37, 50)
    torch.testing.assert_close(v(x), vgg_reference(x, sd, 34), rtol=1e-4, atol=1e-4)
    assert v(x).shape == (2, 512, 2, 3)
    assert v.weights_source == str(path)


@pytest.mark.parametrize('layer,before_relu,last,n',
                         [('conv3_4', False, 16, 18), ('conv1_2', True, 2, 3), ('conv4_4', True, 25, 26)])
def test_vgg_other_layers(tv_file, layer, before_relu, last, n):
    _, sd = tv_file
    v = VGGFeatures(layer, before_relu=before_relu, weights=sd)   # a state dict works as well as a file
    assert len(v.features) == n
    x = torch.rand(1, 3, 32, 40)
    torch.testing.assert_close(v(x), vgg_reference(x, sd, last, relu_after=not before_relu), rtol=1e-4, atol=1e-4)


def test_vgg_frozen_eval_and_grad_to_input(tv_file):
    v = VGGFeatures('conv2_2', weights=tv_file[1])
    assert not v.training and not v.train().training and not v.train(True).training
    assert all(not p.requires_grad for p in v.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    v(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in v.parameters())
    # mean/std not saved
    assert set(v.state_dict()) == {f'features.{i}.{p}' for i in (0, 2, 5, 7) for p in ('weight', 'bias')}


def test_vgg_random_is_seeded_and_warns():
    with pytest.warns(RandomVGGWarning, match="not the paper's"):
        torch.manual_seed(1)
        a = VGGFeatures(weights='random')
        state = torch.random.get_rng_state()
    torch.manual_seed(1)
    assert torch.equal(state, torch.random.get_rng_state())           # the global RNG did not move
    with pytest.warns(RandomVGGWarning):
        torch.manual_seed(2)
        b = VGGFeatures(weights=None)
    for k, t in a.state_dict().items(): assert torch.equal(t, b.state_dict()[k]), k
    w = a.features[0].weight
    assert abs(w.std().item() / (2 / (64 * 9)) ** 0.5 - 1) < 0.1      # torchvision's kaiming fan_out init
    assert a.weights_source == 'random'


def test_vgg_auto(tmp_path, monkeypatch, tv_file):
    monkeypatch.setenv('RANKSRGAN_NB_CACHE', str(tmp_path))
    assert M.cache_dir() == tmp_path / 'weights'
    # nothing cached: random, says where to put it
    with pytest.warns(RandomVGGWarning, match=str(tmp_path / 'weights')):
        assert VGGFeatures().weights_source == 'random'
    (tmp_path / 'weights').mkdir()
    cached = tmp_path / 'weights' / 'vgg19-dcbb9e9d.pth'
    cached.write_bytes(tv_file[0].read_bytes())
    # our stand-in file
    monkeypatch.setattr(M, 'VGG19_HASH', 'sha256:' + hashlib.sha256(cached.read_bytes()).hexdigest())
    monkeypatch.setattr(M, 'VGG19_URL', 'http://127.0.0.1:9/vgg19-dcbb9e9d.pth')                     # no network used
    with warnings.catch_warnings():
        warnings.simplefilter('error', RandomVGGWarning)
        v = VGGFeatures(weights='auto')
    assert v.weights_source == str(cached)
    assert torch.equal(v.features[34].weight, tv_file[1]['features.34.weight'])


def test_vgg_imagenet_offline(tmp_path, monkeypatch):
    monkeypatch.setenv('RANKSRGAN_NB_CACHE', str(tmp_path))
    monkeypatch.setattr(M, 'VGG19_URL', 'http://127.0.0.1:9/vgg19-dcbb9e9d.pth')       # nothing listens: as offline
    with pytest.raises(DownloadError, match=re.escape(str(tmp_path / 'weights' / 'vgg19-dcbb9e9d.pth'))):
        VGGFeatures(weights='imagenet')


def test_vgg_weight_errors(tmp_path, tv_file):
    sd = tv_file[1]
    with pytest.raises(FileNotFoundError, match='vgg_missing.pth'):
        VGGFeatures(weights=str(tmp_path / 'vgg_missing.pth'))
    with pytest.raises(CheckpointError, match=r"missing \['features.30.weight'\]"):
        VGGFeatures(weights={k: v for k, v in sd.items() if k != 'features.30.weight'})
    with pytest.raises(CheckpointError, match=r'features.2.weight is \(64, 64, 1, 1\)'):
        VGGFeatures(weights={**sd, 'features.2.weight': torch.zeros(64, 64, 1, 1)})
    with pytest.raises(CheckpointError, match=r"unexpected \['features.1.weight'\]"):
        VGGFeatures(weights={**sd, 'features.1.weight': torch.zeros(1)})
    with pytest.raises(CheckpointError, match='not a torchvision VGG19'):
        VGGFeatures(weights={**sd, 'fc.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match='VGG19 conv name'): VGGFeatures('relu5_4', weights=sd)
    v = VGGFeatures('conv2_2', weights={f'module.{k}': t for k, t in sd.items() if k in (
        'features.0.weight', 'features.0.bias', 'features.2.weight', 'features.2.bias',
        'features.5.weight', 'features.5.bias', 'features.7.weight', 'features.7.bias')})
    assert torch.equal(v.features[7].bias, sd['features.7.bias'])     # only the layers kept are needed


# ------------------------------------------------------------------ the identity initialisation of SRResNet
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_identity_init_is_nearest_upsampling(scale):
    torch.manual_seed(scale)
    x = torch.rand(2, 3, 13, 9)
    # full width and tiny
    for g in (SRResNet(scale=scale, init='identity'), SRResNet(8, 1, scale=scale, init='identity')):
        with torch.no_grad(): out = g(x)
        assert torch.equal(out, F.interpolate(x, scale_factor=scale, mode='nearest'))
        assert torch.equal(out[..., ::scale, ::scale], x)  # and each block of scale^2 copies its LR pixel


def test_identity_init_changes_only_the_carrying_weights():
    torch.manual_seed(7)
    off = SRResNet(16, 3, init='official').state_dict()
    torch.manual_seed(7)
    ide = SRResNet(16, 3, init='identity').state_dict()
    assert {k: v.shape for k, v in off.items()} == {k: v.shape for k, v in ide.items()}   # the official layout
    changed = {k for k in off if not torch.equal(off[k], ide[k])}
    assert changed == {f'{n}.{w}' for n in ('conv_first', 'LRconv', 'upconv1', 'upconv2', 'HRconv', 'conv_last',
                                            *(f'recon_trunk.{i}.conv2' for i in range(3)))
                       for w in ('weight', 'bias')} - {
        f'{n}.bias' for n in ('conv_first', 'upconv1', 'upconv2', 'HRconv', 'conv_last',
                              *(f'recon_trunk.{i}.conv2' for i in range(3)))}
    rows = {'conv_first': 3, 'LRconv': 3, 'HRconv': 3, 'upconv1': 12, 'upconv2': 12, 'recon_trunk.0.conv2': 3}
    for n, r in rows.items():
        # rows beyond the carried channels: official
        assert torch.equal(off[f'{n}.weight'][r:], ide[f'{n}.weight'][r:]), n
    w = ide['conv_last.weight']
    assert w[:, 3:].abs().sum() == 0 and torch.equal(w[:, :3, 1, 1], torch.eye(3)) and w[:, :3].abs().sum() == 3
    up = ide['upconv1.weight']                                              # channel c to sub-positions 4c..4c+3
    assert all(up[4 * c + k, c, 1, 1] == 1 and up[4 * c + k].abs().sum() == 1 for c in range(3) for k in range(4))


def test_identity_init_trains_and_loads_official_weights():
    torch.manual_seed(0)
    g = SRResNet(8, 2, init='identity')
    x, y = torch.rand(2, 3, 6, 6), torch.rand(2, 3, 24, 24)
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    for _ in range(2):
        opt.zero_grad()
        F.l1_loss(g(x), y).backward()
        opt.step()
    assert g.HRconv.weight.grad[3:].abs().sum() > 0                         # the other channels learn too (from step 2)
    with torch.no_grad(): assert not torch.equal(g(x), F.interpolate(x, scale_factor=4, mode='nearest'))
    official = SRResNet(8, 2).state_dict()
    h = load_official(SRResNet(8, 2, init='identity'), official)            # a checkpoint replaces the start entirely
    assert all(torch.equal(h.state_dict()[k], v) for k, v in official.items())


def test_identity_init_errors_and_build_generator():
    with pytest.raises(ValueError, match="'official' or 'identity'"): SRResNet(8, 1, init='kaiming')
    with pytest.raises(ValueError, match='in_nc == out_nc <= nf'): SRResNet(2, 1, init='identity')
    with pytest.raises(ValueError, match='in_nc == out_nc <= nf'): SRResNet(8, 1, in_nc=3, out_nc=1, init='identity')
    from ranksrgan_nb.config import get_profile
    from ranksrgan_nb.train import build_generator
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(build_generator(get_profile('smoke', g_init='identity'))(x),
                           F.interpolate(x, scale_factor=4, mode='nearest'))
        # near zero: nothing of x yet
        assert build_generator(get_profile('smoke', g_init='official'))(x).abs().mean() < 0.05
    assert get_profile('cpu').g_init == 'identity' and get_profile('paper').g_init == 'official'
