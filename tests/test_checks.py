"""The generic setting checks of 94_checks (harness): types, strings to values, did-you-mean hints, devices."""
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from ranksrgan_nb.checks import check_device, check_types, coerce, did_you_mean


@dataclass(frozen=True)
class Settings:
    n: int = 1
    lr: float = 0.1
    name: str = 'x'
    steps: tuple = (0.5,)


ITEMS = {'steps': 'float'}


def test_check_types_names_the_field():
    check_types(Settings(), ITEMS)
    check_types(Settings(lr=0), ITEMS)                     # an integer is a float
    for kw, msg in [(dict(n=True), 'n=True must be an integer'), (dict(n=1.0), 'n=1.0 must be an integer'),
                    (dict(lr=math.inf), 'lr=inf must be a finite number'), (dict(name=3), 'name=3 must be a string'),
                    (dict(steps=[0.5]), 'steps=[0.5] must be a tuple'),
                    (dict(steps=('a',)), "steps=('a',) must hold float values, e.g. (0.5,)")]:
        with pytest.raises(TypeError, match=None) as e:
            check_types(dataclasses.replace(Settings(), **kw), ITEMS)
        assert msg in str(e.value)


@pytest.mark.parametrize('value,kind,item,want', [
    ('3', 'int', None, 3), (3.0, 'int', None, 3), ('-2', 'int', None, -2), ('true', 'bool', None, True),
    ('0', 'bool', None, False), (0, 'float', None, 0.0), ('1e-3', 'float', None, 1e-3), (Path('/d'), 'str', None, '/d'),
    ('0.5, 0.7', 'tuple', 'float', (0.5, 0.7)), (['10', 11.0], 'tuple', 'int', (10, 11)),
    ('a,b', 'tuple', 'str', ('a', 'b')),
    ((1, 2), 'tuple', 'float', (1.0, 2.0)), (False, 'bool', None, False), ('s', 'str', None, 's'),
])
def test_coerce(value, kind, item, want):
    got = coerce('x', value, kind, item)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize('value,kind,item,msg', [
    ('many', 'int', None, 'x expects int'), (2.5, 'int', None, 'x expects int, got 2.5 (float)'),
    (True, 'float', None, 'x expects float, got True (bool)'), ('maybe', 'bool', None, 'x expects bool'),
    ('0.5,y', 'tuple', 'float', 'x expects float items'), (3, 'str', None, 'x expects str'),
])
def test_coerce_refuses(value, kind, item, msg):
    with pytest.raises(TypeError, match=re.escape(msg)):
        coerce('x', value, kind, item)


def test_did_you_mean():
    hint = "m='nime' is unknown (did you mean 'niqe'?); known: ['niqe', 'psnr']"
    assert str(did_you_mean('m', 'nime', ['niqe', 'psnr'])) == hint
    assert str(did_you_mean('m', 'zzz', {'b', 'a'})) == "m='zzz' is unknown; known: ['a', 'b']"


def test_check_device_branches():
    assert check_device('cpu') == 'cpu'
    with pytest.raises(ValueError, match="device='gpu' is not a torch device"):
        check_device('gpu')
    gpus = mock.patch('torch.cuda.device_count', return_value=2)
    with mock.patch('torch.cuda.is_available', return_value=True), gpus:
        assert check_device('cuda:1') == 'cuda:1' and check_device('cuda') == 'cuda'
        with pytest.raises(ValueError, match=r'it has 2 CUDA GPU\(s\), cuda:0 to cuda:1'):
            check_device('cuda:2')
    with mock.patch('torch.cuda.is_available', return_value=False):
        with pytest.raises(ValueError, match='not available on this machine'):
            check_device('cuda')
    with mock.patch('torch.backends.mps.is_available', return_value=False):
        with pytest.raises(ValueError, match="Apple's MPS is not available"):
            check_device('mps')
