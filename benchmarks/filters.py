"""Filters, edges and corners (cvcore.preprocess / cvcore.features) against OpenCV, SciPy and
scikit-image, in one run.

    python -m benchmarks.filters [--size 1024] [--repeats 15] [--threads N] [--clock cpu]
                                 [--stat min] [--cold]

Inputs: a ``size`` x ``size`` float32 image of uniform noise in 0..1 for the filters; the real
photograph ``river1.jpg`` (768 x 1024 grey, from ``../shared/datasets/test-images``; noise of that
shape when the data is absent) for Canny and Harris. Every row computes the same quantity with
the same border convention where the reference allows it (OpenCV's ``BORDER_REFLECT`` is SciPy's
``reflect``); rows whose reference is a different algorithm say so in their name:

* Canny, two rows. On the float photograph ``skimage`` computes the same edges as cvcore and
  ``cv2.Canny`` (bare: uint8, no Gaussian step, L1 gradient norm) is a speed reference only.
  On the same uint8 image, cvcore (``canny(u8, 1.0, 50, 100)``: thresholds in uint8 units on
  the Sobel magnitude of the blurred image) stands beside ``skimage`` (same algorithm, same
  call) and beside OpenCV doing the same stages, ``GaussianBlur`` (sigma 1, 9 taps) then
  ``Canny(..., 50, 100, L2gradient=True)``. What still differs from OpenCV: it blurs in uint8
  (the blurred image is rounded to integers) and differentiates that with int16 Sobel; its
  non-maximum suppression picks one of four directions instead of interpolating between two
  neighbours; its border is ``reflect101``, cvcore's blur is zero-padded and renormalised. The
  row's name gives the share of pixels on which cvcore and that OpenCV pipeline agree.
* ``cv2.cornerHarris`` averages the structure tensor with a box filter instead of a Gaussian.

Timing: the calls of a row are interleaved (cvcore and each reference in turn, the first of
each round rotating, so none always runs on an image another has just brought into cache), so
a load that comes and goes on a shared machine hits them alike; each timed call is the fourth
call of its function in a row (:data:`WARM_CALLS`: each library in its own steady state, not on
the slow first calls after another library's); ``--clock cpu`` reports process CPU
time instead of wall time (meaningful with ``--threads 1``). The table ends with each row's
ratio to its fastest reference, whichever it is.

First-call times: the ``cv 1st ms`` column is the first call in this process. Run the script
twice: the first run in a fresh Numba cache compiles (set ``NUMBA_CACHE_DIR`` to an empty
directory to force it), the second loads the cached machine code and the column drops to about
the warm time. ``--cold`` prints only the compile cost: the process CPU seconds of each row's
first cvcore call, in a fresh process with an empty Numba cache, rows in table order (a kernel
shared by two rows is paid by the first; Numba's own start, ~0.4 s, by the first row).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

# No OMP_WAIT_POLICY here: the benchmark measures the wait policy users get (kernels/__init__.py).
import numpy as np

from benchmarks.common import Row, machine_line, optional, print_table, run_interleaved
from cvcore.features import canny, harris
from cvcore.preprocess import correlate, gaussian, median, sobel

#: Untimed calls of the same function right before each timed one. On the 2-core VM of
#: ``benchmarks/README.md`` a call that follows another library's (or a pause of 20 ms) reads
#: 1.5-3x its steady time, and the next ones recover over about three calls, for OpenCV and
#: cvcore alike (section "Session 9: filters and features": after SciPy's Sobel, cvcore's
#: Sobel read 0.71, 0.44, 0.34, 0.32, 0.32 ms on calls 1-5, cv2.Sobel 0.69, 0.40, 0.31, 0.30,
#: 0.30). With one warm call, the timed call was still on that slope, and the rotation of
#: three callables put cvcore's rounds after SciPy's call twice as often as OpenCV's (orders
#: abc, bca, cab: a follows c twice, b once), so the rows compared cvcore's second call after
#: SciPy with OpenCV's second call mostly after cvcore's. Each library is now timed at its
#: fourth call in a row: its own steady state.
WARM_CALLS = 3
DATA = Path(os.environ.get("CVCORE_DATASETS",
                           Path(__file__).resolve().parents[2] / "shared" / "datasets"))


def photo():
    path = DATA / "test-images" / "river1.jpg"
    if not path.exists():
        return np.random.default_rng(1).random((768, 1024), dtype=np.float32), "noise 768x1024"
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("L"), np.float32) / 255.0, "river1 768x1024"


def _cv2_canny_pipeline(cv2, u8):
    """OpenCV doing Canny's stages on uint8: Gaussian blur (sigma 1, radius 4 as cvcore's),
    then Sobel, L2 magnitude, non-maximum suppression and hysteresis at 50 / 100."""
    return cv2.Canny(cv2.GaussianBlur(u8, (9, 9), 1.0), 50, 100, L2gradient=True)


def _canny_agreement(u8, cv2):
    """' (NN.N% = cv2)': the share of pixels where cvcore's and OpenCV's uint8 edges agree."""
    if cv2 is None:
        return ""
    same = (canny(u8, 1.0, 50, 100) == (_cv2_canny_pipeline(cv2, u8) > 0)).mean()
    return f" ({100 * same:.1f}% = cv2)"


def rows(size: int, repeats: int, agreement: bool = True):
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
        # SciPy's median takes 0.1-0.4 s a call: it is timed in the first rounds only, cvcore
        # and OpenCV (0.5-4 ms) in all of them (5 rounds in all read the 3x3 row 0.87-0.95 at
        # one thread where 30 alternating calls read 1.04-1.10)
        Row(f"median 3x3 {n}", lambda: median(x, 3), repeats=repeats, refs={
            "cv2.medianBlur": ref(cv2, lambda: cv2.medianBlur(x, 3)),
            "scipy": ref(ndi, lambda: ndi.median_filter(x, 3)),
        }, ref_rounds={"scipy": min(repeats, 3)}),
        Row(f"median 5x5 {n}", lambda: median(x, 5), repeats=repeats, refs={
            "cv2.medianBlur": ref(cv2, lambda: cv2.medianBlur(x, 5)),
            "scipy": ref(ndi, lambda: ndi.median_filter(x, 5)),
        }, ref_rounds={"scipy": min(repeats, 3)}),
        Row(f"canny sigma=1 {label}", lambda: canny(img), repeats=repeats, refs={
            "skimage": ref(skf, lambda: skf.canny(img)),
            "cv2.Canny u8*": ref(cv2, lambda: cv2.Canny(u8, 50, 100)),
        }),
        Row(f"canny u8 sigma=1 50/100{_canny_agreement(u8, cv2) if agreement else ''}",
            lambda: canny(u8, 1.0, 50, 100), repeats=repeats, refs={
                "skimage": ref(skf, lambda: skf.canny(u8, 1.0, 50, 100)),
                "cv2 blur+Canny": ref(cv2, lambda: _cv2_canny_pipeline(cv2, u8)),
            }),
        Row(f"harris sigma=1 {label}", lambda: harris(img), repeats=repeats, refs={
            "skimage": ref(skf, lambda: skf.corner_harris(img)),
            "cv2.cornerHar*": ref(cv2, lambda: cv2.cornerHarris(img, 3, 3, 0.05)),
        }),
    ]


def fastest_table(results):
    """Per row: cvcore's time, the fastest reference (a * one included: another algorithm) and
    the ratio (above 1: cvcore faster)."""
    lines = [f"{'benchmark':<44} {'cvcore ms':>9}  {'fastest reference':<16} {'ref ms':>9} "
             f"{'ratio':>6}"]
    lines.append("-" * len(lines[0]))
    for name, timings in results:
        pool = {k: v for k, v in timings.items() if k != "cvcore" and v is not None}
        if not pool:
            continue
        label = min(pool, key=lambda k: pool[k].median)
        cv, ref = timings["cvcore"].median, pool[label].median
        lines.append(f"{name:<44} {cv * 1e3:9.3f}  {label:<16} {ref * 1e3:9.3f} "
                     f"{ref / cv:6.2f}")
    return "\n".join(lines)


def cold_start(size: int) -> None:
    """First cvcore call of every row in a fresh process with an empty Numba cache: process
    CPU seconds, compilation included."""
    import subprocess
    import sys
    import tempfile
    root = Path(__file__).resolve().parents[1]
    code = (
        "import time\n"
        "from benchmarks.filters import rows\n"
        f"table = rows({size}, 1, agreement=False)\n"
        "total = 0.0\n"
        "for row in table:\n"
        "    t = time.process_time(); row.cvcore(); d = time.process_time() - t; total += d\n"
        "    print(f'{row.name:<44} {d:7.2f} s')\n"
        "print(f'{\"all rows\":<44} {total:7.2f} s')\n")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(root))
        print(f"first cvcore call of each row, empty Numba cache, process CPU s ({size}^2):")
        subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both Numba and OpenCV (default: each library's own)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or this process's CPU time (use with --threads 1)")
    parser.add_argument("--stat", choices=("median", "min"), default="median",
                        help="per-call statistic over the repeats (min: on a loaded machine)")
    parser.add_argument("--cold", action="store_true",
                        help="only the first-call (compile) time of each row, empty Numba cache")
    args = parser.parse_args(argv)
    if args.cold:
        cold_start(args.size)
        return
    import numba
    if args.threads is not None:
        numba.set_num_threads(args.threads)
        cv2 = optional("cv2")
        if cv2 is not None:
            cv2.setNumThreads(args.threads)
    print(machine_line())
    cache = os.environ.get("NUMBA_CACHE_DIR", "(default: __pycache__ beside the kernels)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    stat = min if args.stat == "min" else statistics.median
    table = run_interleaved(rows(args.size, args.repeats), clock, stat, warm_each=WARM_CALLS)
    print(f"Numba threading layer {numba.threading_layer()}, {numba.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}; cache {cache}; "
          f"clock: {args.clock}, {args.stat} of {args.repeats}")
    cv2 = optional("cv2")
    if cv2 is not None:
        print(f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")
    print_table(table)
    print("ratio = reference ms / cvcore ms (above 1: cvcore faster). * = different algorithm, "
          "speed reference only (see the module docstring).")
    print()
    print(fastest_table(table))


if __name__ == "__main__":
    main()
