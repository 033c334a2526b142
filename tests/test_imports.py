"""The import DAG of ranksrgan_nb (issue 22): lessons import only earlier lessons and the harness; the harness never
imports a lesson; no function-level import of a package module reaches forward. Checked on the generated modules and
on every code cell of the notebooks. KNOWN_VIOLATIONS may only shrink. `import ranksrgan_nb.config` (and `fileio`,
which config will import, and `stages`) loads no torch: the command line's start-up time depends on it.
"""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG, NBS = ROOT / 'ranksrgan_nb', ROOT / 'nbs'

LESSONS = ['config', 'data', 'metrics', 'models', 'method', 'train', 'ranker', 'gan', 'multi', 'evaluate', 'reproduce',
           'cli']
HARNESS = {'fileio': set(), 'checks': set(), 'datasets': {'fileio'}, 'stages': {'fileio'},
           'release': {'fileio', 'stages'}}                       # harness module -> harness modules it may import
NOTEBOOK_MODULE = {'00a_config': 'config', '00b_data': 'data', '01_metrics': 'metrics', '02_models': 'models',
                   '02b_method': 'method', '03_train_sr': 'train', '04_ranker': 'ranker', '05_train_gan': 'gan',
                   '06_multi_ranker': 'multi', '07_evaluate': 'evaluate', '08_reproduce': 'reproduce', '08a_cli': 'cli',
                   '90_io': 'fileio', '91_datasets': 'datasets', '92_stages': 'stages', '93_release': 'release',
                   '94_checks': 'checks', 'index': None}
# Violations when issue 22 began; each step of issue 22 removes its entries; empty when done.
KNOWN_VIOLATIONS: set = set()   # empty since issue 22 step 10 (04 no longer imports gan)


def allowed(src: str | None, dst: str) -> bool:
    "Whether module `src` (None: a notebook without a module) may import module `dst`."
    if src is None or src == dst: return True
    if src in HARNESS: return dst in HARNESS[src]
    if dst in HARNESS: return True
    if dst not in LESSONS or src not in LESSONS: return True   # a module this test does not know yet: no opinion
    return LESSONS.index(dst) < LESSONS.index(src)


def package_imports(tree: ast.AST, relative: bool) -> set[str]:
    "Modules of ranksrgan_nb imported anywhere in `tree` (top level and inside functions)."
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            if relative and n.level == 1 and n.module: out.add(n.module.split('.')[0])
            elif n.module and n.module.startswith('ranksrgan_nb.'): out.add(n.module.split('.')[1])
            elif n.module == 'ranksrgan_nb': out.update(a.name for a in n.names)
        elif isinstance(n, ast.Import):
            out.update(a.name.split('.')[1] for a in n.names if a.name.startswith('ranksrgan_nb.'))
    return out


def code_cells(nb: Path) -> list[tuple[bool, str]]:
    "(exported?, source) of each code cell; magics and shell lines blanked (they are not Python)."
    cells = json.loads(nb.read_text())['cells']
    src = [''.join(c['source']) for c in cells if c['cell_type'] == 'code']
    return [(s.lstrip().startswith('#| export'), re.sub(r'^\s*[%!].*$', '', s, flags=re.M)) for s in src]


def violations() -> set[tuple[str, str, str]]:
    out = set()
    for p in sorted(PKG.glob('*.py')):
        if p.stem.startswith('_'): continue
        for dst in package_imports(ast.parse(p.read_text()), relative=True) - {'_modidx'}:
            if not allowed(p.stem, dst): out.add(('module', p.stem, dst))
    for nb in sorted(NBS.glob('*.ipynb')):
        if nb.stem.startswith('_'): continue
        mod = NOTEBOOK_MODULE.get(nb.stem)
        for exported, cell in code_cells(nb):
            try: tree = ast.parse(cell)
            except SyntaxError: continue
            # a harness notebook's check cells run last in reading order: they may use any lesson
            src = mod if exported or mod not in HARNESS else None
            for dst in package_imports(tree, relative=False):
                if not allowed(src, dst): out.add(('notebook', nb.stem, dst))
    return out


def test_import_dag_only_shrinks():
    found = violations()
    new = found - KNOWN_VIOLATIONS
    assert not new, f'imports that reach forward (or from the harness into a lesson): {new}'
    assert not (KNOWN_VIOLATIONS - found), f'fixed, remove from KNOWN_VIOLATIONS: {KNOWN_VIOLATIONS - found}'


def test_every_notebook_is_mapped():
    assert {nb.stem for nb in NBS.glob('*.ipynb') if not nb.stem.startswith('_')} <= set(NOTEBOOK_MODULE)


@pytest.mark.parametrize('module', ['config', 'fileio', 'stages'])
def test_module_loads_no_torch(module):
    code = f"import sys, ranksrgan_nb.{module}; assert 'torch' not in sys.modules, '{module} imported torch'"
    subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
