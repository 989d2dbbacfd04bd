"""Batch augmentation (cvcore.augment) against PyTorch, OpenCV, SciPy and scikit-image, and the
data-set loaders' wall time, in one run.

    python -m benchmarks.augment [--batch 128] [--datasets DIR]

Inputs: a float32 batch of ``--batch`` RGB 32x32 images (CIFAR-sized, NCHW) in 0..1. Every row
applies the same per-image parameters in cvcore and in the reference. References: PyTorch batched
tensor ops where they exist (pad + per-image slice for the crop, ``flip``, broadcast blends,
``affine_grid`` + ``grid_sample``), else per-image loops over OpenCV ``warpAffine``, SciPy
``affine_transform`` and scikit-image ``rgb2hsv``/``hsv2rgb``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Row, machine_line, optional, print_table, run_rows
from cvcore import augment as A


def rows(batch: int):
    rng = np.random.default_rng(0)
    x = rng.random((batch, 3, 32, 32), dtype=np.float32)
    torch = optional("torch")
    cv2 = optional("cv2")
    ndi = optional("scipy.ndimage")
    skc = optional("skimage.color")
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
        tx = torch.from_numpy(x)

    crop = A.RandomCrop(32, padding=4)
    pc = crop.sample(x.shape, rng)
    flip = A.RandomHorizontalFlip()
    pf = flip.sample(x.shape, rng)
    jit = A.ColorJitter(0.4, 0.4, 0.4)
    pj = jit.sample(x.shape, rng)
    hue = A.ColorJitter(hue=0.1)
    ph = hue.sample(x.shape, rng)
    aff = A.RandomAffine(15, (0.1, 0.1), (0.9, 1.1), 5)
    pa = aff.sample(x.shape, rng)
    mats = A.affine_inverse_maps(pa, 32, 32)

    def torch_crop():
        padded = torch.nn.functional.pad(tx, (4, 4, 4, 4))
        return torch.stack([padded[k, :, t:t + 32, l:l + 32]
                            for k, (t, l) in enumerate(zip(pc.top.tolist(), pc.left.tolist()))])

    mask = torch.from_numpy(pf.flip.astype(bool)) if torch is not None else None

    def torch_flip():
        return torch.where(mask[:, None, None, None], tx.flip(3), tx)

    if torch is not None:
        b, c, s = (torch.from_numpy(v)[:, None, None, None] for v in pj[:3])
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)

    def torch_jitter():
        y = (b * tx).clamp(0, 1)
        m = (y * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        y = (c * y + (1 - c) * m).clamp(0, 1)
        g = (y * luma).sum(1, keepdim=True)
        return (s * y + (1 - s) * g).clamp(0, 1)

    def skimage_hue():
        out = np.empty_like(x)
        for k in range(batch):
            hsv = skc.rgb2hsv(x[k].transpose(1, 2, 0))
            hsv[..., 0] = (hsv[..., 0] + ph.hue[k]) % 1.0
            out[k] = skc.hsv2rgb(hsv).transpose(2, 0, 1)
        return out

    if torch is not None:
        # grid_sample works in normalised coordinates (align_corners=True: -1 and 1 are the centres
        # of the border pixels), so convert each pixel-space inverse map: u = (2 / (n - 1)) p - 1.
        S = np.diag([2 / 31, 2 / 31, 1.0])
        S[:2, 2] = -1
        theta = []
        for m in mats:
            M = np.array([[m[0], m[1], m[2]], [m[3], m[4], m[5]], [0, 0, 1]])
            theta.append((S @ M @ np.linalg.inv(S))[:2])
        theta = torch.from_numpy(np.array(theta, dtype=np.float32))

    def torch_affine():
        grid = torch.nn.functional.affine_grid(theta, list(tx.shape), align_corners=True)
        return torch.nn.functional.grid_sample(tx, grid, mode="bilinear", padding_mode="zeros",
                                               align_corners=True)

    def cv2_affine():
        out = np.empty_like(x)
        for k in range(batch):
            m = mats[k].reshape(2, 3)
            img = np.ascontiguousarray(x[k].transpose(1, 2, 0))
            out[k] = cv2.warpAffine(img, m, (32, 32), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0).transpose(2, 0, 1)
        return out

    def scipy_affine():
        out = np.empty_like(x)
        for k in range(batch):
            m = mats[k]
            for ch in range(3):
                out[k, ch] = ndi.affine_transform(x[k, ch], [[m[4], m[3]], [m[1], m[0]]],
                                                  offset=[m[5], m[2]], order=1,
                                                  mode="grid-constant", cval=0.0)
        return out

    have = lambda mod, fn: fn if mod is not None else None  # noqa: E731
    full = A.Compose([A.RandomCrop(32, padding=4), A.RandomHorizontalFlip(),
                      A.ColorJitter(0.4, 0.4, 0.4, 0.1), A.RandomAffine(15, (0.1, 0.1), (0.9, 1.1))],
                     seed=0)
    return [
        Row(f"pad-crop {batch}x3x32x32", lambda: crop.apply(x, pc), {"torch": have(torch, torch_crop)}),
        Row(f"hflip {batch}x3x32x32", lambda: flip.apply(x, pf), {"torch": have(torch, torch_flip)}),
        Row(f"bright+contr+satur {batch}x3x32x32", lambda: jit.apply(x, pj),
            {"torch": have(torch, torch_jitter)}),
        Row(f"hue {batch}x3x32x32", lambda: hue.apply(x, ph), {"skimage": have(skc, skimage_hue)},
            repeats=3),
        Row(f"affine {batch}x3x32x32", lambda: aff.apply(x, pa),
            {"torch grid_smp": have(torch, torch_affine), "cv2 loop": have(cv2, cv2_affine),
             "scipy loop": have(ndi, scipy_affine)}),
        Row(f"full pipeline {batch}x3x32x32", lambda: full(x), {}),
    ]


def loader_times(datasets: Path):
    from cvcore.io import check, load_dataset
    from cvcore.io.datasets import ImageFolder
    print("\ndata-set loaders (wall seconds, one run each):")
    jobs = [("load_dataset('fashion-mnist-small')", lambda: load_dataset("fashion-mnist-small"))]
    if (datasets / "fashion-mnist").is_dir():
        jobs.append(("load_dataset(fashion-mnist folder), MD5 verified",
                     lambda: load_dataset("fashion-mnist", root=datasets / "fashion-mnist")))
        jobs.append(("check(fashion-mnist folder)", lambda: check(datasets / "fashion-mnist")))
    if (datasets / "cifar10").is_dir():
        jobs.append(("ImageFolder(cifar10/test).load(), 10k JPEGs",
                     lambda: ImageFolder(datasets / "cifar10" / "test").load()))
    for name, fn in jobs:
        t0 = time.perf_counter()
        fn()
        print(f"  {name:<52} {time.perf_counter() - t0:7.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--datasets", default=os.environ.get(
        "CVCORE_DATASETS", str(Path(__file__).resolve().parents[2] / "shared" / "datasets")))
    args = parser.parse_args(argv)
    print(machine_line())
    print_table(run_rows(rows(args.batch)))
    loader_times(Path(args.datasets))


if __name__ == "__main__":
    main()
