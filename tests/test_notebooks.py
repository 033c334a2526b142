"""Execute every notebook in nbs/ with papermill at its default (smoke) parameters.

The pipeline notebooks run in order through `ranksrgan_nb.reproduce` (the same code path as
`python -m ranksrgan_nb.reproduce --profile smoke`), sharing one temporary run directory, with figures
and tables sent to temporary folders, so nothing is written into nbs/, figures/, results/ or runs/.
Notebooks outside the pipeline are executed on their own. Per-notebook times are printed at the end.
Executed notebooks must be quiet: each warning at most once, none from toy LR schedulers, no echoed source.
"""
import json
import re
from collections import Counter
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


WARNING = re.compile(r'^(\S*:\d+: )?(\w*Warning): (.*)$')
ECHO_ALLOWED = {'00b_data'}   # its check of the small-image warning still shows the warning's source line


def check_quiet(executed: Path):
    "Each warning at most once, no LR-scheduler warning from toy cells, no source line echoed under a warning."
    name, seen = executed.stem, Counter()
    for cell in json.loads(executed.read_text())['cells']:
        for out in cell.get('outputs', []):
            if out.get('name') != 'stderr': continue
            lines = ''.join(out['text']).splitlines()
            for i, line in enumerate(lines):
                if not (m := WARNING.match(line)): continue
                seen[m.group(3)] += 1
                echoed = i + 1 < len(lines) and lines[i + 1].startswith('  ') and not WARNING.match(lines[i + 1])
                assert not echoed or name in ECHO_ALLOWED, (
                    f'{name}: source line echoed under {line!r}: {lines[i + 1]!r}')
    assert not [w for w in seen if 'lr_scheduler.step()' in w], f'{name}: LR-scheduler warning'
    assert all(n == 1 for n in seen.values()), f'{name}: repeated warnings {[w[:80] for w, n in seen.items() if n > 1]}'


@pytest.mark.parametrize('name', PIPELINE)
def test_pipeline_notebook(name, dirs):
    (res,) = reproduce('smoke', only=[name], log=lambda s: None, **dirs)
    assert res.status == 'ok' and res.output.exists()
    TIMES[f'{name}.ipynb'] = res.seconds
    check_quiet(res.output)


@pytest.mark.parametrize('nb', OTHERS, ids=[p.stem for p in OTHERS])
def test_other_notebook(nb, tmp_path):
    TIMES[nb.name] = run_notebook(nb, tmp_path / nb.name, {'run_dir': str(tmp_path / 'run')})
    check_quiet(tmp_path / nb.name)


def test_reproduce_skips_done_and_reports(dirs, capsys):
    args = ['--profile', 'smoke', '--only', '00a_config', '--run-dir', str(dirs['run_dir']),
            '--fig-dir', str(dirs['fig_dir']), '--results-dir', str(dirs['results_dir'])]
    assert main(args) == 0                                   # runs it, or skips it if the pipeline test did
    capsys.readouterr()
    assert main(args) == 0
    assert 'skipped (done' in capsys.readouterr().out
    assert main(args + ['--rerun']) == 0
    assert '00a_config       ok' in capsys.readouterr().out
    record = json.loads((dirs['run_dir'] / 'reproduce.json').read_text())
    assert record['00a_config']['status'] == 'ok'


def test_check_quiet_catches_noise(tmp_path):
    def executed(*stderr):
        p = tmp_path / 'x.ipynb'
        p.write_text(json.dumps({'cells': [{'outputs': [{'name': 'stderr', 'text': t} for t in stderr]}]}))
        return p
    check_quiet(executed('ranksrgan_nb:0: RandomVGGWarning: random VGG19\n', 'other output\n'))
    with pytest.raises(AssertionError, match='repeated warnings'):
        check_quiet(executed('a.py:3: UserWarning: once\n', 'a.py:3: UserWarning: once\n'))
    with pytest.raises(AssertionError, match='source line echoed'):
        check_quiet(executed('/tmp/ipykernel_1/2.py:29: UserWarning: skipped\n  if small: warnings.warn(...)\n'))
    with pytest.raises(AssertionError, match='LR-scheduler'):
        check_quiet(executed('x.py:35: UserWarning: Detected call of `lr_scheduler.step()` '
                             'before `optimizer.step()`.\n'))


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_declares_kernel_and_parameters(nb):
    """`papermill nbs/X.ipynb out.ipynb` (no -k) needs a kernelspec; pipeline notebooks need a parameters cell."""
    meta = json.loads(nb.read_text())
    assert meta['metadata'].get('kernelspec', {}).get('name') == 'python3'
    if nb.stem in PIPELINE and nb.stem != '00a_config':
        tagged = [c for c in meta['cells'] if 'parameters' in c.get('metadata', {}).get('tags', [])]
        assert len(tagged) == 1, 'exactly one cell tagged "parameters"'
        src = ''.join(tagged[0]['source'])
        assert "profile = 'smoke'" in src
        body = ''.join(''.join(c['source']) for c in meta['cells']
                       if c['cell_type'] == 'code' and not ''.join(c['source']).startswith('#| export'))
        if 'resolve_dirs(' in body:    # every output folder must be a parameter, so tests never write into the repo
            for p in ('run_dir', 'fig_dir', 'results_dir'): assert f'{p} = None' in src, p
