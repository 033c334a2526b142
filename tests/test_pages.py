"""The pages of docs/ as a reader meets them: maths rendered, figures shown, no bar frozen at 0 %, 07's comparison
working without a kernel. The static checks read the HTML files; the browser checks open them in headless Chromium
(Debian's `chromium`), which .ci/run installs and requires (RANKSRGAN_BROWSER_TESTS=1 turns a missing browser from a
skip into a failure)."""
import base64
import io
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import pytest
from bs4 import BeautifulSoup
from PIL import Image

from ranksrgan_nb.fileio import write_image
from ranksrgan_nb.release import comparison_html, render_docs

DOCS = Path(__file__).resolve().parents[1] / 'docs'
PAGES = sorted(DOCS.glob('0*.html'))
BROWSER = next((b for b in map(shutil.which, ('chromium', 'chromium-browser', 'google-chrome')) if b), None)


def browser():
    "The Chromium binary; a skip (a failure where RANKSRGAN_BROWSER_TESTS=1, as in CI) when there is none."
    if BROWSER: return BROWSER
    msg = 'no chromium binary on PATH (Debian: apt-get install chromium); the browser checks of docs/ need one'
    if os.environ.get('RANKSRGAN_BROWSER_TESTS') == '1': pytest.fail(msg)
    pytest.skip(msg)


def dump_dom(url: str) -> str:
    "The DOM of `url` after its scripts ran, as headless Chromium dumps it."
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([browser(), '--headless', '--no-sandbox', '--disable-gpu', f'--user-data-dir={profile}',
                              '--virtual-time-budget=2000', '--dump-dom', url],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and '<html' in out.stdout, out.stderr[-2000:]
    return out.stdout


def facts(page: str) -> dict:
    "What the checks read from a page's HTML, parsed once: its formulas, images, comparison, tables and visible prose."
    soup = BeautifulSoup(page, 'html.parser')
    out = {'math': len(soup.select('math')), 'block_fracs': len(soup.select('math[display=block] mfrac')),
           'images': [Image.open(io.BytesIO(base64.b64decode(i['src'].split(',', 1)[1]))).size
                      for i in soup.select('img[src^="data:image/"]') if not i.find_parent(class_='ba-compare')],
           'compare': {k: soup.select_one(f'.ba-compare .ba-{k}') for k in ('data', 'split', 'out', 'a', 'b', 'line')},
           'options': [o.get_text() for o in soup.select('.ba-left option')],
           'cells': [td.get_text().strip() for td in soup.select('table.dataframe td')], 'text': soup.get_text()}
    for t in soup.select('script, style, pre, code, .jp-CodeCell .jp-InputArea'): t.decompose()
    return out | {'prose': soup.body.get_text() if soup.body else soup.get_text()}


def assert_no_raw_tex(text: str):
    assert '$$' not in text and '$\\' not in text, re.findall(r'.{40}\$.{40}', text)[:3]


# ---- the files of docs/, without a browser

@pytest.fixture(scope='module')
def files():
    "{page name: facts of its file}."
    if not PAGES: pytest.skip(f'no pages in {DOCS} (a copy of the project without docs/)')
    return {p.stem: facts(p.read_text(encoding='utf-8')) for p in PAGES}


@pytest.mark.parametrize('page', PAGES, ids=[p.stem for p in PAGES])
def test_docs_page_has_no_raw_tex_no_frozen_bar_no_widget_text(files, page):
    f = files[page.stem]
    assert_no_raw_tex(f['prose'])
    assert not re.search(r': +0%\| +\| 0/\d+ \[00:00<\?', f['text']), 'a progress bar frozen at 0 %'
    assert 'VBox(children=' not in f['text']


def test_docs_07_holds_its_comparison_and_short_numbers(files):
    f = files['07_evaluate']
    assert f['compare']['data'] and f['compare']['split']['type'] == 'range'
    assert f['cells'] and not [c for c in f['cells'] if re.fullmatch(r'-?\d+\.\d{5,}', c)]
    assert '.jp-RenderedImage img { max-width: none; }' in (DOCS / 'notebook.css').read_text()


# ---- in the browser

@pytest.fixture(scope='module')
def doms(files):
    "{page name: facts of its DOM in Chromium}, the pages opened four at a time (07 at ?split=30)."
    browser()
    urls = [p.as_uri() + ('?split=30' if p.stem == '07_evaluate' else '') for p in PAGES]
    with ThreadPoolExecutor(4) as pool:
        return {p.stem: facts(d) for p, d in zip(PAGES, pool.map(dump_dom, urls))}


@pytest.mark.parametrize('page', PAGES, ids=[p.stem for p in PAGES])
def test_browser_shows_maths_and_figures(doms, files, page):
    dom, f = doms[page.stem], files[page.stem]
    assert_no_raw_tex(dom['prose'])
    assert (dom['math'], dom['images']) == (f['math'], f['images'])      # every formula a MathML tree, every figure
    assert all(min(size) > 16 for size in dom['images'])


def test_browser_maths_and_figures_in_the_pages_that_have_them(doms):
    counts = {n: (d['math'], len(d['images'])) for n, d in doms.items()}
    assert all(counts[n][0] >= 10 for n in ('01_metrics', '02_models', '05_train_gan')), counts
    assert all(counts[n][1] >= 1 for n in ('00b_data', '01_metrics', '03_train_sr', '07_evaluate')), counts


def test_browser_docs_07_comparison_reads_its_split(doms):
    c = doms['07_evaluate']['compare']
    assert c['out'].get_text() == '30 %'
    assert '70%' in c['a']['style'] and c['line']['style'].endswith('left: 30%;')
    assert c['a']['src'].startswith('data:image/jpeg') and c['a']['src'] != c['b']['src']   # two images, stacked


def test_browser_comparison_responds_to_input(tmp_path):
    "A scripted move of the range and a change of the left method redraw the comparison."
    a, b = np.zeros((8, 12, 3), np.uint8), np.full((8, 12, 3), 200, np.uint8)
    page = tmp_path / 'c.html'
    page.write_text('<!DOCTYPE html><html><body>' + comparison_html({'x': {'A': a, 'B': b}}) + """<script>
      const r = document.querySelector('.ba-split'), s = document.querySelector('.ba-left');
      r.value = 20; r.dispatchEvent(new Event('input')); s.value = 'B'; s.dispatchEvent(new Event('input'));
    </script></body></html>""")
    c = facts(dump_dom(page.as_uri()))['compare']
    assert c['out'].get_text() == '20 %'
    assert '80%' in c['a']['style'] and c['line']['style'].endswith('left: 20%;')
    assert c['a']['src'] == c['b']['src']                                         # left is B now, as right


def _executed_notebook(run: Path) -> None:
    "A notebook as papermill leaves it: a formula, a finished tqdm bar, a figure, 07's widget; and its run's cache."
    st = lambda name, **s: {'model_name': name, 'state': s}
    kids = lambda *ids: [f'IPY_MODEL_{i}' for i in ids]
    state = {'bar': st('HBoxModel', children=kids('l', 'p', 'r')), 'l': st('HTMLModel', value='srgan:\u2007100%'),
             'p': st('FloatProgressModel', value=6.0, max=6.0), 'r': st('HTMLModel', value='\u20076/6\u2007[00:01]'),
             'w': st('VBoxModel', children=kids('h', 's')), 'h': st('HBoxModel', children=kids('d1', 'd2', 'd3')),
             's': st('FloatSliderModel', value=0.5),
             'd1': st('DropdownModel', _options_labels=['cat'], index=0),
             'd2': st('DropdownModel', _options_labels=['SRGAN', 'RankSRGAN', 'HR'], index=0),
             'd3': st('DropdownModel', _options_labels=['SRGAN', 'RankSRGAN', 'HR'], index=1)}
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), np.uint8)).save(buf, 'png')
    view = lambda mid, text: nbformat.v4.new_output('display_data', {
        'text/plain': text, 'application/vnd.jupyter.widget-view+json': {'model_id': mid}})
    code = nbformat.v4.new_code_cell('1', outputs=[
        view('bar', 'srgan:   0%|          | 0/6 [00:00<?, ?it/s]'), view('w', 'VBox(children=(HBox(children=...'),
        nbformat.v4.new_output('display_data', {'image/png': base64.b64encode(buf.getvalue()).decode(),
                                                'text/plain': '<Figure>'})])
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell('# 07\n\n> A page.\n\n$$\\mathcal{L}_R = \\frac{1}{n}\\sum_i x_i$$ and $a^2$.'),
        code])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    nb.metadata['widgets'] = {'application/vnd.jupyter.widget-state+json': {'state': state, 'version_major': 2}}
    (run / 'notebooks').mkdir(parents=True)
    nbformat.write(nb, run / 'notebooks' / '07_evaluate.ipynb')
    for m, v in (('SRGAN', 40), ('RankSRGAN', 180)):
        write_image(run / 'eval' / 'set' / m / 'cat.png', np.full((16, 16, 3), v, np.uint8))


def test_render_docs_page_in_browser(tmp_path):
    "render_docs of an executed notebook: MathML, the bar at its end, the figure, and a working comparison."
    _executed_notebook(tmp_path / 'run')
    page = render_docs(tmp_path / 'run', tmp_path / 'docs')[0]
    dom = facts(dump_dom(page.as_uri()))
    assert dom['math'] == 2 and dom['block_fracs'] == 1 and not re.search(r'\$\S', dom['prose'])
    assert 'srgan: 100%|██████████| 6/6 [00:01]' in dom['text'] and ' 0%|' not in dom['text']
    assert dom['images'] == [(96, 64)]                                                # the figure
    assert dom['compare']['out'].get_text() == '50 %' and dom['compare']['a']['src'].startswith('data:image/jpeg')
    assert dom['options'] == ['SRGAN', 'RankSRGAN']                                   # HR: not in the cache
