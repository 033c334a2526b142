"""Package metadata for ranksrgan_nb, read from settings.ini (the nbdev 2 layout)."""
import shutil
from configparser import ConfigParser
from pathlib import Path

import setuptools
from setuptools.command.build_py import build_py

here = Path(__file__).parent
config = ConfigParser(delimiters=['='])
config.read(here / 'settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

for key in ('version', 'description', 'keywords', 'author', 'author_email', 'copyright',
            'lib_name', 'user', 'license', 'status', 'min_python', 'audience', 'language'):
    if key not in cfg: raise KeyError(f'settings.ini lacks required key {key!r}')

licenses = {'apache2': 'Apache-2.0'}   # SPDX expression
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
py_versions = ['3.10', '3.11', '3.12', '3.13']
lic = licenses[cfg['license']]
min_python = cfg['min_python']

requirements = cfg.get('requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
scripts = [s.strip() for s in cfg.get('console_scripts', '').split() if s.strip()]


class build_py_with_notebooks(build_py):
    "Also put the notebooks (nbs/*.ipynb) into the package as ranksrgan_nb/notebooks/, so `ranksrgan reproduce` runs from a wheel."
    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False): return   # an editable install uses nbs/ beside the package
        nbs = sorted((here / cfg['nbs_path']).glob('[0-9]*.ipynb'))
        if not nbs: raise FileNotFoundError(f"no notebooks in {here / cfg['nbs_path']}: build from a clone or the sdist")
        dest = Path(self.build_lib) / cfg['lib_path'] / 'notebooks'
        dest.mkdir(parents=True, exist_ok=True)
        for nb in nbs: shutil.copyfile(nb, dest / nb.name)


setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(here / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    license=lic,
    url=cfg['git_url'],
    keywords=cfg['keywords'],
    classifiers=[
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'],
        'Natural Language :: ' + cfg['language'],
        'Topic :: Scientific/Engineering :: Image Processing',
    ] + [f'Programming Language :: Python :: {v}' for v in py_versions[py_versions.index(min_python):]],
    packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    include_package_data=True,
    package_data={cfg['lib_name'] + '.assets': ['*.npz', '*.md', '*.tsv'], cfg['lib_name'] + '.assets.weights.cpu': ['*.pth', '*.md']},
    python_requires='>=' + min_python,
    install_requires=requirements,
    extras_require={'dev': dev_requirements},
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    cmdclass={'build_py': build_py_with_notebooks},
    zip_safe=False,
)
