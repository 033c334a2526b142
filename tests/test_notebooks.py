"""Execute every notebook in nbs/ with papermill at its default (smoke) parameters.

The pipeline notebooks run in order through `ranksrgan_nb.reproduce` (the same code path as
`python -m ranksrgan_nb.reproduce --profile smoke`), sharing one temporary run directory, with figures
and tables sent to temporary folders, so nothing is written into nbs/, figures/, results/ or runs/.
Notebooks outside the pipeline are executed on their own. Per-notebook times are printed at the end.
"""
import json
from pathlib import Path

import pytest

from ranksrgan_nb.reproduce import PIPELINE, main, reproduce, run_notebook

NBS = Path(__file__).resolve().parents[1] / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
OTHERS = [p for p in NOTEBOOKS if p.stem not in PIPELINE]
TIMES: dict[str, float] = {}


@pytest.fixture(scope='module')
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp('smoke')
    return {k: base / k for k in ('run_dir', 'fig_dir', 'results_dir')}


@pytest.mark.parametrize('name', PIPELINE)
def test_pipeline_notebook(name, dirs):
    (res,) = reproduce('smoke', only=[name], log=lambda s: None, **dirs)
    assert res.status == 'ok' and res.output.exists()
    TIMES[f'{name}.ipynb'] = res.seconds


@pytest.mark.parametrize('nb', OTHERS, ids=[p.stem for p in OTHERS])
def test_other_notebook(nb, tmp_path):
    TIMES[nb.name] = run_notebook(nb, tmp_path / nb.name, {'run_dir': str(tmp_path / 'run')})


def test_reproduce_skips_done_and_reports(dirs, capsys):
    args = ['--profile', 'smoke', '--only', '00_config', '--run-dir', str(dirs['run_dir']),
            '--fig-dir', str(dirs['fig_dir']), '--results-dir', str(dirs['results_dir'])]
    assert main(args) == 0                                   # runs it, or skips it if the pipeline test did
    capsys.readouterr()
    assert main(args) == 0
    assert 'skipped (done' in capsys.readouterr().out
    assert main(args + ['--redo']) == 0
    assert '00_config        ok' in capsys.readouterr().out
    record = json.loads((dirs['run_dir'] / 'reproduce.json').read_text())
    assert record['00_config']['status'] == 'ok'
    assert main(['--profile', 'smoke', '--only', 'nothing-like-this']) == 1
    assert 'no pipeline notebook matches' in capsys.readouterr().err


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_declares_kernel_and_parameters(nb):
    """`papermill nbs/X.ipynb out.ipynb` (no -k) needs a kernelspec; pipeline notebooks need a parameters cell."""
    meta = json.loads(nb.read_text())
    assert meta['metadata'].get('kernelspec', {}).get('name') == 'python3'
    if nb.stem != '00_config':
        tagged = [c for c in meta['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, 'exactly one cell tagged "parameters"'
        src = ''.join(tagged[0]['source'])
        assert "profile = 'smoke'" in src
        body = ''.join(''.join(c['source']) for c in meta['cells']
                       if c['cell_type'] == 'code' and not ''.join(c['source']).startswith('#| export'))
        if 'resolve_dirs(' in body:    # every output folder must be a parameter, so tests never write into the repo
            for p in ('run_dir', 'fig_dir', 'results_dir'): assert f'{p} = None' in src, p
