"""How well a Ranker imitates NIQE when its rank dataset comes from more photographs.

    python benchmarks/ranker_on_photos.py --photos /usr/share/backgrounds/mate/nature \
        --generators runs/cpu --out runs/cpu_photos

The cpu profile builds its rank dataset from the five bundled photographs (four scenes), so its
held-out set is one scene. This script keeps everything of the cpu profile (the SR levels come from
the generators already trained in `--generators`, the filters, the labels, the Ranker's training) and
only changes where the patches come from: a folder of photographs, shrunk so that the longer side is
at most `--max-side` pixels (MATLAB-style antialiased bicubic, as DIV2K's LR images are made). Whole
photographs are held out (`rank_val_frac`). It prints the time of each stage and SRCC / KRCC / pair
accuracy of this Ranker and of the cpu profile's own Ranker on (a) the held-out photographs and
(b) the tuples from the bundled test photographs (built by 04_ranker in `--generators`).

Any folder of photographs works; on Debian `apt install mate-backgrounds` gives twelve nature photos
(the package is only used for this experiment, never by ranksrgan_nb itself).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ranksrgan_nb.config import get_profile
from ranksrgan_nb.data import imresize, list_images, read_image
from ranksrgan_nb.ranker import build_rank_dataset, evaluate_ranker, load_ranker, read_rank_dataset, train_ranker
from ranksrgan_nb.train import final_path


def shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    s = max_side / max(img.shape[:2])
    if s >= 1: return img
    return np.clip(np.round(imresize(img / 255.0, s) * 255), 0, 255).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--photos', required=True, help='folder of photographs')
    ap.add_argument('--generators', default='runs/cpu', help='run directory whose SR levels and Ranker to use')
    ap.add_argument('--out', default='runs/cpu_photos', help='where the rank dataset and the new Ranker go')
    ap.add_argument('--profile', default='cpu')
    ap.add_argument('--max-side', type=int, default=1024)
    ap.add_argument('--val-frac', type=float, default=0.2, help='fraction of photographs held out')
    ap.add_argument('-p', nargs=2, action='append', default=[], metavar=('KEY', 'VALUE'), help='profile override')
    a = ap.parse_args(argv)
    cfg = get_profile(a.profile, rank_val_frac=a.val_frac, **dict(a.p))
    gen, out = Path(a.generators), Path(a.out)
    times = {}

    t = time.perf_counter()
    images = {p.stem: shrink(read_image(p), a.max_side) for p in list_images(a.photos)}
    times['read + shrink photographs'] = time.perf_counter() - t
    print(f'{len(images)} photographs from {a.photos}: ' + ', '.join(f'{k} {v.shape[1]}x{v.shape[0]}' for k, v in images.items()))

    # the SR outputs are cached under --generators (named by photograph); the tuples go to --out
    t = time.perf_counter()
    tr, va = build_rank_dataset(cfg, gen, images, out_dir=out / 'rank_dataset')
    times['rank dataset (SR, filters, NIQE labels)'] = time.perf_counter() - t
    man = json.loads((out / 'rank_dataset' / 'manifest.json').read_text())
    print(f"tuples: {len(tr)} train, {len(va)} held out (photographs {man['valid_images']})")

    t = time.perf_counter()
    path = final_path(out, 'ranker')
    if not path.exists(): path = train_ranker(cfg, out, tr, va, 'ranker')
    times['Ranker training'] = time.perf_counter() - t

    test_dir = gen / 'rank_dataset_test'
    sets = {'held-out photographs': va}
    if (test_dir / 'train_label.txt').exists():
        sets['bundled test photographs'] = read_rank_dataset(test_dir / 'train', test_dir / 'train_label.txt')
    rankers = {'photos Ranker': path, f'{cfg.name} Ranker (bundled photos)': final_path(gen, 'ranker')}
    rows = []
    for rname, rpath in rankers.items():
        if not rpath.exists(): continue
        R = load_ranker(cfg, rpath).eval()
        for sname, rd in sets.items():
            if len(rd): rows.append({'Ranker': rname, 'evaluated on': sname} | evaluate_ranker(R, rd))
    table = pd.DataFrame(rows)[['Ranker', 'evaluated on', 'n_tuples', 'pair_accuracy', 'srcc', 'krcc']]
    print('\nseconds per stage:'); [print(f'  {k:42s} {v:8.1f}') for k, v in times.items()]
    print('\n' + table.to_string(index=False, float_format=lambda x: f'{x:.3f}'))
    table.to_csv(out / 'ranker_on_photos.csv', index=False)


if __name__ == '__main__':
    main()
