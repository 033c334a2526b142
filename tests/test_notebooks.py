"""Execute every notebook in nbs/ with papermill at its default (smoke) parameters.

Notebooks run in name order, sharing one temporary run directory as the pipeline does, with their
figures and tables sent to temporary folders too, so nothing is written into nbs/, figures/ or runs/.
The per-notebook times are printed at the end of the pytest run.
"""
import time
from pathlib import Path

import papermill as pm
import pytest

NBS = Path(__file__).resolve().parents[1] / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
TIMES: dict[str, float] = {}


@pytest.fixture(scope='module')
def shared_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp('nb_run')
    return {'run_dir': str(base / 'run'), 'fig_dir': str(base / 'figures'), 'results_dir': str(base / 'results'),
            'out': base / 'executed'}


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(nb, shared_dirs):
    declared = pm.inspect_notebook(str(nb))        # only pass the parameters this notebook declares
    params = {k: v for k, v in shared_dirs.items() if k in declared}
    out = shared_dirs['out'] / nb.name
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name='python3', cwd=str(NBS),
                        progress_bar=False)
    TIMES[nb.name] = time.perf_counter() - t0


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_declares_kernel_and_parameters(nb):
    """`papermill nbs/X.ipynb out.ipynb` (no -k) needs a kernelspec; pipeline notebooks need a parameters cell."""
    import json
    meta = json.loads(nb.read_text())
    assert meta['metadata'].get('kernelspec', {}).get('name') == 'python3'
    cells = meta['cells']
    if nb.stem != '00_config':
        tagged = [c for c in cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, 'exactly one cell tagged "parameters"'
        assert "profile = 'smoke'" in ''.join(tagged[0]['source'])
