"""Filters, edges and corners (cvcore.preprocess / cvcore.features) against OpenCV, SciPy and
scikit-image, in one run.

    python -m benchmarks.filters [--size 1024] [--repeats 15] [--threads N]

Inputs: a ``size`` x ``size`` float32 image of uniform noise in 0..1 for the filters; the real
photograph ``river1.jpg`` (768 x 1024 grey, from ``../shared/datasets/test-images``; noise of that
shape when the data is absent) for Canny and Harris. Every row computes the same quantity with
the same border convention where the reference allows it (OpenCV's ``BORDER_REFLECT`` is SciPy's
``reflect``); rows whose reference is a different algorithm say so in their name:

* ``cv2.Canny`` works on uint8 with L1/L2 gradient thresholds of its own (no Gaussian step), so
  its row is a speed reference only; ``skimage`` computes the same edges as cvcore.
* ``cv2.cornerHarris`` averages the structure tensor with a box filter instead of a Gaussian.

First-call times: the ``cv 1st ms`` column is the first call in this process. Run the script
twice: the first run in a fresh Numba cache compiles (set ``NUMBA_CACHE_DIR`` to an empty
directory to force it), the second loads the cached machine code and the column drops to about
the warm time.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

# GNU OpenMP's default lets idle workers spin; on an oversubscribed machine (8 engineers on 2
# cores) every parallel kernel call then waits 20-30 ms for descheduled workers. Passive
# waiting is also the polite setting on a shared machine. Must be set before Numba loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from benchmarks.common import Row, machine_line, optional, print_table, run_rows  # noqa: E402
from cvcore.features import canny, harris  # noqa: E402
from cvcore.preprocess import correlate, gaussian, median, sobel  # noqa: E402

DATA = Path(os.environ.get("CVCORE_DATASETS",
                           Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def photo():
    path = DATA / "test-images" / "river1.jpg"
    if not path.exists():
        return np.random.default_rng(1).random((768, 1024), dtype=np.float32), "noise 768x1024"
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), np.float32) / 255.0, "river1 768x1024"


def rows(size: int, repeats: int):
    rng = np.random.default_rng(0)
    x = rng.random((size, size), dtype=np.float32)
    k5 = rng.standard_normal((5, 5)).astype(np.float32)
    k5_sep = np.outer([1, 4, 6, 4, 1], [1, 2, 3, 2, 1]).astype(np.float32) / 144
    img, label = photo()
    u8 = (img * 255).astype(np.uint8)
    cv2 = optional("cv2")
    ndi = optional("scipy.ndimage")
    skf = optional("skimage.feature")

    def ref(mod, fn):
        return None if mod is None else fn

    reflect = cv2.BORDER_REFLECT if cv2 is not None else None
    n = f"{size}^2"
    return [
        Row(f"correlate 5x5 {n}", lambda: correlate(x, k5), repeats=repeats, refs={
            "cv2.filter2D": ref(cv2, lambda: cv2.filter2D(x, -1, k5, borderType=reflect)),
            "scipy": ref(ndi, lambda: ndi.correlate(x, k5)),
        }),
        Row(f"correlate 5x5 rank-1 {n}", lambda: correlate(x, k5_sep), repeats=repeats, refs={
            "cv2.filter2D": ref(cv2, lambda: cv2.filter2D(x, -1, k5_sep, borderType=reflect)),
            "scipy": ref(ndi, lambda: ndi.correlate(x, k5_sep)),
        }),
        Row(f"gaussian sigma=2 {n}", lambda: gaussian(x, 2.0), repeats=repeats, refs={
            # radius int(4 * 2 + 0.5) = 8: the same 17 taps as SciPy
            "cv2.GaussBlur": ref(cv2, lambda: cv2.GaussianBlur(x, (17, 17), 2.0,
                                                               borderType=reflect)),
            "scipy": ref(ndi, lambda: ndi.gaussian_filter(x, 2.0)),
        }),
        Row(f"sobel axis=1 {n}", lambda: sobel(x, axis=1), repeats=repeats, refs={
            "cv2.Sobel": ref(cv2, lambda: cv2.Sobel(x, cv2.CV_32F, 1, 0, borderType=reflect)),
            "scipy": ref(ndi, lambda: ndi.sobel(x, axis=1)),
        }),
        Row(f"sobel magnitude {n}", lambda: sobel(x), repeats=repeats, refs={
            "cv2 2xSobel+mag": ref(cv2, lambda: cv2.magnitude(
                cv2.Sobel(x, cv2.CV_32F, 1, 0, borderType=reflect),
                cv2.Sobel(x, cv2.CV_32F, 0, 1, borderType=reflect))),
            "scipy": ref(ndi, lambda: np.hypot(ndi.sobel(x, 0), ndi.sobel(x, 1))),
        }),
        # SciPy's median takes ~1 s per call: fewer repeats for these rows.
        Row(f"median 3x3 {n}", lambda: median(x, 3), repeats=min(repeats, 5), refs={
            "cv2.medianBlur": ref(cv2, lambda: cv2.medianBlur(x, 3)),
            "scipy": ref(ndi, lambda: ndi.median_filter(x, 3)),
        }),
        Row(f"median 5x5 {n}", lambda: median(x, 5), repeats=min(repeats, 5), refs={
            "cv2.medianBlur": ref(cv2, lambda: cv2.medianBlur(x, 5)),
            "scipy": ref(ndi, lambda: ndi.median_filter(x, 5)),
        }),
        Row(f"canny sigma=1 {label}", lambda: canny(img), repeats=repeats, refs={
            "skimage": ref(skf, lambda: skf.canny(img)),
            "cv2.Canny u8*": ref(cv2, lambda: cv2.Canny(u8, 50, 100)),
        }),
        Row(f"harris sigma=1 {label}", lambda: harris(img), repeats=repeats, refs={
            "skimage": ref(skf, lambda: skf.corner_harris(img)),
            "cv2.cornerHar*": ref(cv2, lambda: cv2.cornerHarris(img, 3, 3, 0.05)),
        }),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both Numba and OpenCV (default: each library's own)")
    args = parser.parse_args(argv)
    import numba
    if args.threads is not None:
        numba.set_num_threads(args.threads)
        cv2 = optional("cv2")
        if cv2 is not None:
            cv2.setNumThreads(args.threads)
    print(machine_line())
    cache = os.environ.get("NUMBA_CACHE_DIR", "(default: __pycache__ beside the kernels)")
    table = run_rows(rows(args.size, args.repeats))
    print(f"Numba threading layer {numba.threading_layer()}, {numba.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; cache {cache}")
    cv2 = optional("cv2")
    if cv2 is not None:
        print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")
    print_table(table)
    print("ratio = reference ms / cvcore ms (above 1: cvcore faster). * = different algorithm, "
          "speed reference only (see the module docstring).")


if __name__ == "__main__":
    main()
