import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_TARGET_S = 45   # each notebook at the smoke profile, on 2 CPU cores (README)


@pytest.fixture
def rng():
    import numpy as np
    return np.random.default_rng(1234)


def pytest_terminal_summary(terminalreporter):
    try:
        from test_notebooks import TIMES
    except ImportError:
        return
    if TIMES:
        terminalreporter.write_sep('-', f'notebook execution times (smoke profile; target: under {NOTEBOOK_TARGET_S} s each)')
        for name, t in TIMES.items():
            flag = f'   over the {NOTEBOOK_TARGET_S} s target' if t > NOTEBOOK_TARGET_S else ''
            terminalreporter.write_line(f'{name:28s} {t:7.1f} s{flag}')
        terminalreporter.write_line(f'{"total":28s} {sum(TIMES.values()):7.1f} s')
