import os
from pathlib import Path

import pytest

# One thread per process (and per notebook kernel, which inherits it) unless OMP_NUM_THREADS says otherwise:
# the smoke profile's tiny networks gain nothing from more, and where other programs keep the cores busy,
# PyTorch's threads wait for each other (05 at smoke on this project's 2-core machine, shared with another
# job: 211 s with two threads, 15 s with one).
os.environ.setdefault('OMP_NUM_THREADS', '1')
import torch  # noqa: E402

torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
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
        terminalreporter.write_sep(
            '-', f'notebook execution times (smoke profile; target: under {NOTEBOOK_TARGET_S} s each)')
        for name, t in TIMES.items():
            flag = f'   over the {NOTEBOOK_TARGET_S} s target' if t > NOTEBOOK_TARGET_S else ''
            terminalreporter.write_line(f'{name:28s} {t:7.1f} s{flag}')
        terminalreporter.write_line(f'{"total":28s} {sum(TIMES.values()):7.1f} s')


@pytest.fixture(scope='session')
def shared_datasets():
    "The prepared photographs (Set5, Set14, CBSD68, SunHays80, BSDS500) in shared/datasets beside the clone, else skip."
    d = ROOT.parent / 'shared' / 'datasets'
    if not (d / 'MANIFEST.tsv').is_file():
        pytest.skip(f'the prepared photographs are not at {d} (they are not shipped with the package; '
                    'a clone gets them with ranksrgan_nb.data.get_dataset)')
    return d
