"""Why do generators trained at the cpu profile shift colours? The SRResNet's initialisation against the data.

    RANKSRGAN_NB_DATA=/path/to/datasets OMP_NUM_THREADS=1 python benchmarks/colour_init.py --iters 600

Trains the full-width SRResNet (L1, Adam 2e-4, batch 8 of 96-px HR patches, the cpu profile's settings) twice
from the same seed and on the same batches: with the official initialisation (Kaiming-normal x 0.1, no
image-level skip) and with `init='identity'` (02_models: starts as nearest-neighbour upsampling). Every
`--every` iterations it prints, on the validation images (Set5 when the data root holds it, else the bundled
test photographs), the colour error (01_metrics: mean CIEDE2000 of 8x8 box means), PSNR-Y and PSNR-RGB of
both, next to bicubic's, and the mean R, G, B of the outputs against the HR's (a nearly grey output shows
there). Training images: Sun-Hays 80 when the data root holds it, else the bundled photographs.

To check the other hypothesis (the training photographs' colours differ from the test images'), it first
prints the colour statistics of every image set it finds: per image the mean a* and b* (CIELAB) of its
pixels, then over the images of a set the mean and standard deviation of those means, and the mean within-image
standard deviation of a* and b*.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage.color import rgb2lab

from ranksrgan_nb.data import (PairedPatchDataset, TestImageDataset, bicubic_upsample, data_root, get_dataset,
                               load_images, sample_images)
from ranksrgan_nb.metrics import box_mean, get_metric
from ranksrgan_nb.models import SRResNet
from ranksrgan_nb.train import batches, make_sr_step, seed_everything, super_resolve

METRICS = ('delta_e', 'psnr', 'psnr_rgb')


def prepared(name: str):
    "The HR folder of dataset `name` under the data root, or None when it is not there (nothing is downloaded)."
    try: return get_dataset(name, download_missing=False)
    except FileNotFoundError: return None


def lab_stats(images: dict[str, np.ndarray]) -> dict[str, float]:
    "Mean/SD over images of the per-image mean a*, b*; mean within-image SD of a*, b* (on 4x4 box means)."
    per = []
    for img in images.values():
        q = torch.from_numpy(np.ascontiguousarray(img[:img.shape[0] // 4 * 4, :img.shape[1] // 4 * 4].transpose(2, 0, 1)))[None]
        lab = rgb2lab(box_mean(q, 4)[0].permute(1, 2, 0).numpy() / 255.0).reshape(-1, 3)
        per.append([lab[:, 1].mean(), lab[:, 2].mean(), lab[:, 1].std(), lab[:, 2].std(), np.hypot(lab[:, 1], lab[:, 2]).mean()])
    p = np.array(per)
    return {'images': len(p), 'a* mean': p[:, 0].mean(), 'a* SD(images)': p[:, 0].std(), 'b* mean': p[:, 1].mean(),
            'b* SD(images)': p[:, 1].std(), 'a* SD(pixels)': p[:, 2].mean(), 'b* SD(pixels)': p[:, 3].mean(),
            'chroma': p[:, 4].mean()}


def scores(sr_of, val: TestImageDataset) -> dict[str, float]:
    "Mean of each metric over `val` (crop 4), and the mean R, G, B of the outputs."
    out, rgb = {m: [] for m in METRICS}, []
    for item in val:
        sr = sr_of(item['lr'])
        for m in METRICS: out[m].append(get_metric(m)(sr, item['hr'], crop_border=val.scale))
        rgb.append(sr.reshape(-1, 3).mean(0))
    return {m: float(np.mean(v)) for m, v in out.items()} | {'rgb': np.mean(rgb, 0)}


def fmt(s: dict) -> str:
    r, g, b = s['rgb']
    return f"dE {s['delta_e']:6.2f}  PSNR-Y {s['psnr']:6.2f}  PSNR-RGB {s['psnr_rgb']:6.2f}  RGB means {r:5.1f} {g:5.1f} {b:5.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--iters', type=int, default=600, help='training iterations per initialisation (default 600)')
    ap.add_argument('--every', type=int, default=200, help='validate every N iterations (default 200)')
    ap.add_argument('--patch', type=int, default=96, help='HR patch size (default 96, the cpu profile)')
    ap.add_argument('--batch', type=int, default=8)
    ap.add_argument('--lr', type=float, default=2e-4)
    ap.add_argument('--nf', type=int, default=64)
    ap.add_argument('--nb', type=int, default=16)
    ap.add_argument('--seed', type=int, default=10)
    ap.add_argument('--inits', default='official,identity', help='initialisations to train, comma-separated')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    root = data_root()
    print(f'data root: {root}   torch threads: {torch.get_num_threads()}')

    train_dir, val_dir = prepared('SunHays80'), prepared('Set5')
    train = load_images(train_dir) if train_dir else sample_images('train')
    val = TestImageDataset(val_dir if val_dir else sample_images('test'), 4)
    print(f"training images: {'SunHays80' if train_dir else 'the bundled photographs'} ({len(train)}); "
          f"validation: {'Set5' if val_dir else 'the bundled test photographs'} ({len(val)})")
    hr_means = np.mean([it['hr'].reshape(-1, 3).mean(0) for it in val], 0)
    print(f'validation HR RGB means: {hr_means[0]:.1f} {hr_means[1]:.1f} {hr_means[2]:.1f}')

    print('\ncolour statistics (CIELAB of 4x4 box means; a*: green- / red+, b*: blue- / yellow+)')
    sets = {'train: ' + ('SunHays80' if train_dir else 'bundled'): train}
    for name in ('Set5', 'Set14', 'CBSD68'):
        if (d := prepared(name)) is not None: sets[name] = load_images(d)
    if len(sets) == 1: sets['bundled test'] = sample_images('test')
    head = ['images', 'a* mean', 'a* SD(images)', 'b* mean', 'b* SD(images)', 'a* SD(pixels)', 'b* SD(pixels)', 'chroma']
    print(f"{'set':18s}" + ''.join(f'{h:>15s}' for h in head))
    for name, imgs in sets.items():
        st = lab_stats(imgs)
        print(f'{name:18s}' + ''.join(f'{st[h]:15.2f}' if h != 'images' else f'{st[h]:15d}' for h in head))
    print(f'({time.perf_counter() - t0:.0f} s)')

    bic = scores(lambda lr: bicubic_upsample(lr, 4), val)
    print(f'\nbicubic                    {fmt(bic)}')
    ds = PairedPatchDataset(train, hr_patch=a.patch, scale=4, augment=True, seed=a.seed)
    final = {}
    for init in a.inits.split(','):
        seed_everything(a.seed)
        G = SRResNet(a.nf, a.nb, 4, init=init)
        opt = torch.optim.Adam(G.parameters(), lr=a.lr, betas=(0.9, 0.99))
        step, t, losses = make_sr_step(G, opt, torch.device('cpu'), amp=False), time.perf_counter(), []
        s = scores(lambda lr: super_resolve(G, lr), val)
        print(f'{init:9s} iter {0:5d}           {fmt(s)}', flush=True)
        for it, batch in enumerate(batches(ds, a.batch, 0, a.iters), 1):
            losses.append(step(batch)['l_pix'])
            if it % a.every == 0 or it == a.iters:
                s = scores(lambda lr: super_resolve(G, lr), val)
                print(f'{init:9s} iter {it:5d} L1 {np.mean(losses[-a.every:]):.4f} {fmt(s)}  '
                      f'({(time.perf_counter() - t) / it:.2f} s/iter)', flush=True)
        final[init] = s
    print('\nafter', a.iters, 'iterations, on', 'Set5' if val_dir else 'the bundled test photographs')
    print(f"{'bicubic':10s} {fmt(bic)}")
    for init, s in final.items(): print(f'{init:10s} {fmt(s)}')
    print(f'total {time.perf_counter() - t0:.0f} s')


if __name__ == '__main__':
    main()
