"""`reproduce`: strict command line, failed notebooks kept beside good ones, the real run folder, --rerun vs --retrain.

The notebooks run here are tiny ones written by the tests, or `00a_config` (about a second); the whole pipeline
runs in test_notebooks.py.
"""
import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import ranksrgan_nb
from ranksrgan_nb import reproduce as R
from ranksrgan_nb.reproduce import (PIPELINE, StageFailed, check_parameters, main, notebook_parameters, notebooks_dir,
                                    render_docs, reproduce, retire, run_notebook, select, stage_folders)

NBS = Path(__file__).resolve().parents[1] / 'nbs'


def write_nb(path: Path, *sources: str, params: str | None = None) -> Path:
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    if params is not None:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata['tags'] = ['parameters']
        cells.insert(0, cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def outputs(path: Path) -> str:
    return ''.join(''.join(o.get('text', '')) for c in nbformat.read(path, 4).cells for o in c.get('outputs', []))


# --- which notebooks, which parameters -------------------------------------------------------------------------
def test_select_names_prefixes_and_files():
    assert select(None) == select([]) == list(PIPELINE)
    assert select(['05']) == ['05_train_gan']
    assert select(['07_evaluate', '00b_data.ipynb', 'nbs/03_train_sr.ipynb']) == \
        ['00b_data', '03_train_sr', '07_evaluate']
    assert select(['00']) == ['00a_config', '00b_data']
    assert select(['02']) == ['02_models', '02b_method']                  # a prefix names both 02 notebooks


@pytest.mark.parametrize('bad', [['09'], ['05', 'train_gan'], ['nothing-like-this'], ['06_multi_ranker_x']])
def test_select_rejects_entries_that_match_nothing(bad):
    with pytest.raises(ValueError, match='no pipeline notebook has such a name or prefix') as e:
        select(bad)
    assert str([b for b in bad if b not in ('05',)]) in str(e.value)


def test_notebook_parameters_read_from_the_tagged_cell(tmp_path):
    nb = write_nb(tmp_path / 'p.ipynb', 'y = x + 1', params="x = 1        # the x\nname = 'a'   # a name")
    assert notebook_parameters(nb) == {'x': 'the x', 'name': 'a name'}
    assert notebook_parameters(write_nb(tmp_path / 'q.ipynb', 'x = 1')) == {}
    p05 = notebook_parameters(NBS / '05_train_gan.ipynb')
    assert {'profile', 'run_dir', 'fig_dir', 'results_dir', 'w_R', 'device'} <= set(p05) and 'amp' not in p05


def test_unknown_parameters_are_an_error_listing_each_notebook():
    declared = {'00b_data': {'profile': '', 'run_dir': ''}, '05_train_gan': {'profile': '', 'w_R': ''}}
    check_parameters({'w_R': 0.1, 'profile': 'cpu'}, declared)                 # each declared by one of them
    with pytest.raises(ValueError) as e:
        check_parameters({'w_R': 0.1, 'amp': False, 'wR': 1}, declared)
    msg = str(e.value)
    assert "['amp', 'wR']" in msg and '00b_data: profile, run_dir' in msg and '05_train_gan: profile, w_R' in msg


def test_a_parameter_of_a_notebook_not_in_the_run_is_unknown(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)\[.w_R.\].*00a_config: \(none\)"):   # 05 declares w_R, 00a does not
        reproduce('smoke', only=['00a_config'], extra={'w_R': 0.1}, out=tmp_path, log=lambda s: None)
    assert not (tmp_path / 'runs').exists()                                   # checked before anything is created


def test_main_reports_unknown_names_and_notebooks(capsys, tmp_path):
    assert main(['--only', '00a_config', '-p', 'amp', 'false', '--out', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and "declares the parameter(s) ['amp']" in err and '00a_config' in err
    assert main(['--only', '05', 'nope', '--out', str(tmp_path)]) == 1
    assert "--only ['nope']" in capsys.readouterr().err
    assert main(['-p', 'profile', 'cpu', '--out', str(tmp_path)]) == 1
    assert 'choose the profile with --profile cpu' in capsys.readouterr().err


# --- one notebook ------------------------------------------------------------------------------------------------
def test_failed_notebook_is_kept_beside_the_last_good_one(tmp_path):
    out = tmp_path / 'runs' / 'toy.ipynb'
    run_notebook(write_nb(tmp_path / 'toy.ipynb', "print('good run')"), out, {})
    with pytest.raises(StageFailed) as e:
        run_notebook(write_nb(tmp_path / 'toy.ipynb', "print('bad run')", '1 / 0'), out, {})
    failed = tmp_path / 'runs' / 'toy.failed.ipynb'
    assert 'toy.ipynb: cell 1 (In [2]) raised ZeroDivisionError' in str(e.value) and str(failed) in str(e.value)
    assert 'good run' in outputs(out) and 'bad run' in outputs(failed)      # the good one is untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ['toy.failed.ipynb', 'toy.ipynb']
    run_notebook(write_nb(tmp_path / 'toy.ipynb', "print('fixed')"), out, {})
    assert 'fixed' in outputs(out) and not failed.exists()                    # a success clears the stale failure


def test_only_declared_parameters_are_injected(tmp_path):
    nb = write_nb(tmp_path / 'p.ipynb', 'print(x, "y" in globals())', params='x = 1  # x')
    run_notebook(nb, tmp_path / 'out.ipynb', {'x': 5, 'y': 2, 'z': None})
    assert '5 False' in outputs(tmp_path / 'out.ipynb')


# --- the run ----------------------------------------------------------------------------------------------------
def test_run_dir_given_with_p_is_the_run_folder(tmp_path):
    logs = []
    (r,) = reproduce('smoke', only=['00a_config'], extra={'run_dir': str(tmp_path / 'mine')}, out=tmp_path / 'base',
                     log=logs.append)
    run = (tmp_path / 'mine').resolve()
    assert r.status == 'ok' and r.output == run / 'notebooks' / '00a_config.ipynb' and r.output.exists()
    assert json.loads((run / 'reproduce.json').read_text())['00a_config']['status'] == 'ok'
    assert str(run) in logs[0] and f'executed notebooks in {run / "notebooks"}' in logs[-1]
    assert not (tmp_path / 'base' / 'runs').exists() and (tmp_path / 'base' / 'figures' / 'smoke').is_dir()
    with pytest.raises(ValueError, match='run_dir is given twice'):
        reproduce('smoke', run_dir=tmp_path / 'a', extra={'run_dir': str(tmp_path / 'b')}, out=tmp_path)


def test_out_holds_runs_figures_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                                               # not inside a clone
    assert main(['--only', '00a_config']) == 0
    assert (tmp_path / 'runs' / 'smoke' / 'notebooks' / '00a_config.ipynb').exists()
    assert all((tmp_path / d / 'smoke').is_dir() for d in ('figures', 'results'))
    assert f'run folder {tmp_path.resolve() / "runs" / "smoke"}' in capsys.readouterr().out


def test_rerun_executes_again_and_keeps_stages(tmp_path, capsys):
    args = ['--only', '00a_config', '--out', str(tmp_path)]
    run = tmp_path / 'runs' / 'smoke'
    assert main(args) == 0
    (run / 'srresnet').mkdir()
    (run / 'srresnet' / 'final.pth').write_text('trained')
    capsys.readouterr()
    assert main(args) == 0 and 'skipped (done' in capsys.readouterr().out
    assert main(args + ['--rerun']) == 0
    out = capsys.readouterr().out
    assert '00a_config       ok' in out and 'skipped (done' not in out
    assert (run / 'srresnet' / 'final.pth').read_text() == 'trained'             # --rerun never retrains


def test_retrain_moves_stages_aside_and_reruns(tmp_path, capsys):
    args = ['--only', '00a_config', '--out', str(tmp_path)]
    run = tmp_path / 'runs' / 'smoke'
    assert main(args) == 0
    for s in ('srresnet', 'ranker'):
        (run / s).mkdir()
        (run / s / 'final.pth').write_text(s)
    assert main(args + ['--retrain', 'srgan']) == 1
    assert "--retrain ['srgan']: no such stage folder" in capsys.readouterr().err and (run / 'ranker').exists()
    assert main(args + ['--retrain', 'ranker']) == 0
    out = capsys.readouterr().out
    assert 'retrain: moved ranker' in out and '00a_config       ok' in out
    assert stage_folders(run) == ['srresnet']
    (old,) = (run / 'retired').glob('*/ranker')
    assert (old / 'final.pth').read_text() == 'ranker'                          # nothing deleted
    assert main(args + ['--retrain']) == 0 and stage_folders(run) == []         # no names: every stage


def test_retire_unknown_and_empty(tmp_path):
    assert retire(tmp_path) == []
    with pytest.raises(ValueError, match=r"there are: \[\]"):
        retire(tmp_path, ['srresnet'])


# --- where the notebooks are ------------------------------------------------------------------------------------
def test_notebooks_dir_in_a_clone_and_in_a_wheel(tmp_path, monkeypatch):
    assert notebooks_dir() == NBS
    pkg = tmp_path / 'site-packages' / 'ranksrgan_nb'
    for n in PIPELINE: write_nb(pkg / 'notebooks' / f'{n}.ipynb', 'pass')
    monkeypatch.setattr(ranksrgan_nb, '__file__', str(pkg / '__init__.py'))
    assert notebooks_dir() == pkg / 'notebooks'                                 # a wheel: the packaged copies
    (pkg / 'notebooks' / '04_ranker.ipynb').unlink()
    with pytest.raises(FileNotFoundError, match='no pipeline notebooks in'):
        notebooks_dir()


def test_one_thread_for_smoke_kernels_unless_the_environment_says(tmp_path, monkeypatch):
    import os
    nb = write_nb(tmp_path / 'p.ipynb', 'import os; print(os.environ.get("OMP_NUM_THREADS"))')
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    run_notebook(nb, tmp_path / 'a.ipynb', {}, threads=1)
    assert outputs(tmp_path / 'a.ipynb') == '1\n' and 'OMP_NUM_THREADS' not in os.environ
    run_notebook(nb, tmp_path / 'b.ipynb', {})
    assert outputs(tmp_path / 'b.ipynb') == 'None\n'
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    run_notebook(nb, tmp_path / 'c.ipynb', {}, threads=1)
    assert outputs(tmp_path / 'c.ipynb') == '3\n'
    seen = []
    monkeypatch.setattr(R, 'run_notebook', lambda *a, threads=None: seen.append(threads) or 0.0)
    for profile in ('smoke', 'cpu'):
        reproduce(profile, only=['00a_config'], out=tmp_path / profile, log=lambda s: None, docs=False)
    assert seen == [1, None]


def test_kernels_keep_their_figures_when_the_shell_says_agg(tmp_path, monkeypatch):
    import os
    monkeypatch.setenv('MPLBACKEND', 'Agg')                                 # as CI and many shells export it
    nb = write_nb(tmp_path / 'f.ipynb', 'import matplotlib.pyplot as plt\nplt.plot([0, 1])\nplt.show()')
    run_notebook(nb, tmp_path / 'out.ipynb', {})
    kinds = [k for c in nbformat.read(tmp_path / 'out.ipynb', 4).cells for o in c.outputs for k in o.get('data', {})]
    assert 'image/png' in kinds, kinds                                      # under Agg the kernel would keep none
    assert os.environ['MPLBACKEND'] == 'Agg'                                # the caller's setting is back


# --- the executed notebooks as HTML (docs/) -------------------------------------------------------------------
def test_reproduce_and_release_load_no_torch():
    "`ranksrgan reproduce` starts without torch: reproduce and the release harness it calls import none."
    code = ("import sys, ranksrgan_nb.reproduce, ranksrgan_nb.release; "
            "assert 'torch' not in sys.modules, 'reproduce or release imported torch'")
    subprocess.run([sys.executable, '-c', code], check=True)


def test_render_docs_embeds_figures_drops_widgets_and_loads_nothing(tmp_path):
    from PIL import Image
    buf = io.BytesIO()
    Image.new('RGB', (3, 2), (255, 0, 0)).save(buf, format='png')
    png = base64.b64encode(buf.getvalue()).decode()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# Metrics here\n\n> One line on them.'),
                                         nbformat.v4.new_code_cell('fig')])
    nb.cells[1].outputs = [nbformat.v4.new_output('display_data', {'image/png': png, 'text/plain': '<Figure>'}),
                           nbformat.v4.new_output('display_data',
                                                  {'application/vnd.jupyter.widget-view+json': {'model_id': 'x'},
                                                   'text/plain': 'a slider'})]
    nb.metadata['widgets'] = {'application/vnd.jupyter.widget-state+json': {'state': {'x': {'big': 'y' * 100_000}}}}
    run = tmp_path / 'run'
    (run / 'notebooks').mkdir(parents=True)
    nbformat.write(nb, run / 'notebooks' / '01_metrics.ipynb')
    (run / 'notebooks' / 'not_in_the_pipeline.ipynb').write_text('{}')
    written = render_docs(run, tmp_path / 'docs')
    assert [p.name for p in written] == ['01_metrics.html', 'notebook.css', 'index.html']
    html = (tmp_path / 'docs' / '01_metrics.html').read_text()
    (b64,) = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', html)   # the figure is in the page, as a PNG
    import numpy as np
    assert (np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert('RGB')) == [255, 0, 0]).all()
    assert 'y' * 1000 not in html and 'widget-state' not in html            # widget state dropped
    assert not re.findall(r'<(?:script|link)[^>]*(?:src|href)="(?:https?:)?//', html)   # nothing from the internet
    assert len(html) < 100_000                                              # the stylesheet is shared, not repeated
    index = (tmp_path / 'docs' / 'index.html').read_text()
    assert '<a href="01_metrics.html">01_metrics</a>: <b>Metrics here</b>. One line on them.' in index
    with pytest.raises(FileNotFoundError, match='no executed notebook'):
        render_docs(tmp_path / 'empty', tmp_path / 'docs2')


def test_cpu_profile_renders_docs_by_default(tmp_path):
    log = []
    reproduce('cpu', only=['00a_config'], out=tmp_path, log=log.append)
    assert sorted(p.name for p in (tmp_path / 'docs').iterdir()) == ['00a_config.html', 'index.html', 'notebook.css']
    assert 'notebook(s) as HTML in' in log[-1]
    reproduce('smoke', only=['00a_config'], out=tmp_path / 's', log=log.append)
    assert not (tmp_path / 's' / 'docs').exists()                           # other profiles: only when asked
    assert main(['--only', '00a_config', '--out', str(tmp_path / 's'), '--docs']) == 0
    assert (tmp_path / 's' / 'docs' / 'index.html').exists()


# --- the record of a run (issue 21) ------------------------------------------------------------------------------
def test_record_is_written_atomically(tmp_path, monkeypatch):
    record_path = tmp_path / 'reproduce.json'
    record = {'00a_config': {'status': 'ok', 'seconds': 1.0}}
    R._note(record_path, dict(record), '00b_data', {'status': 'ok', 'seconds': 2.0})
    before = record_path.read_text()
    real = Path.write_text
    def killed_halfway(self, text, *a, **k):                                  # a kill (or a full disk) while writing
        real(self, text[:len(text) // 2], *a, **k)
        raise KeyboardInterrupt
    monkeypatch.setattr(Path, 'write_text', killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        R._note(record_path, json.loads(before), '01_metrics', {'status': 'running'})
    monkeypatch.undo()
    assert record_path.read_text() == before                                 # the old record, whole
    assert [p.name for p in tmp_path.iterdir()] == ['reproduce.json']         # no temporary file left


@pytest.mark.parametrize('damage', ['', '{"00a_config": {"status": "ok"', '[]'])
def test_damaged_record_names_the_file_and_rerun_replaces_it(tmp_path, capsys, damage):
    args = ['--only', '00a_config', '--out', str(tmp_path)]
    record_path = tmp_path / 'runs' / 'smoke' / 'reproduce.json'
    record_path.parent.mkdir(parents=True)
    record_path.write_text(damage)                                            # emptied by a full disk, cut, or edited
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f'error: {record_path} is damaged' in err and 'delete it, or run with --rerun' in err
    assert record_path.read_text() == damage                                  # left for the user to look at
    assert main(args + ['--rerun']) == 0
    assert json.loads(record_path.read_text())['00a_config']['status'] == 'ok'
