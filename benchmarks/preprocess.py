"""Preprocessing benchmark: resize (each mode), warps and equalisation on a 1024x1024 image.

Run from the repository root: ``python -m benchmarks.preprocess`` (``--threads 1`` for one
thread on both sides: Numba's and OpenCV's pools; ``--only warp`` for the rows whose name holds
``warp``; ``--compile`` for the cold compile of each function instead). cvcore and every reference run on the same float32 (or uint8 where the reference needs
it) image in one process, their calls interleaved (cvcore, then each reference, repeated), so a
change of machine load hits both alike; the ratio is reference time / cvcore time (above 1:
cvcore is faster). Where a reference computes a different variant of the operation (Pillow's
BILINEAR antialiases when shrinking, scikit-image's resize filters first), the label carries a
``*``: those ratios compare cost, not identical work. The last table gives every row's ratio to
its fastest reference that does the same work (no ``*``), the figure the speed goal is about.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from benchmarks.common import Row, Timing, machine_line, optional, peak_memory, print_table

SIZE = 1024
#: Pause before each library's calls in :func:`time_interleaved`: longer than the spin of
#: OpenMP's threads after a region (cvcore's Numba team, ``GOMP_SPINCOUNT=10000``, ~0.2 ms) and
#: of OpenCV's pool, so that no library's helper threads still hold a core while the next
#: library's call is timed (under ``chrt -f 1`` a spinning team slowed the next ``cv2.resize``
#: 1.3-1.9x).
SETTLE_SECONDS = 0.002


def _image():
    """A 1024x1024 float32 image in 0..1: a real photo (roofs1.jpg bundled with cvcore) tiled and
    cropped, so that the equalisers see a natural histogram."""
    from importlib.resources import files

    from cvcore import imread, to_float
    from cvcore.preprocess import rgb2gray
    photo = rgb2gray(to_float(imread(files("cvcore") / "data" / "roofs1.jpg")))
    reps = (SIZE // photo.shape[0] + 1, SIZE // photo.shape[1] + 1)
    return np.ascontiguousarray(np.tile(photo, reps)[:SIZE, :SIZE], dtype=np.float32)


def time_interleaved(row: Row, repeats: int):
    """Time a row's calls interleaved: one warm-up each (reported as the first call), then
    ``repeats`` rounds of cvcore followed by every reference, each an untimed and a timed call
    (the untimed one keeps a call from paying for the previous library's allocations: a
    reference's 1 MB output allocated right after a 50 ms scikit-image call measured 10x its
    steady time), each library's pair after a pause of :data:`SETTLE_SECONDS`; medians per call.

    Returns ``({label: Timing or None}, {label: median process CPU seconds})``: the CPU time is
    the one-thread cost when the run is limited to one thread.
    """
    calls = {"cvcore": row.cvcore, **row.refs}
    first, walls, cpus = {}, {k: [] for k in calls}, {k: [] for k in calls}
    shapes = {}
    for label, fn in calls.items():
        if fn is not None:
            t0 = time.perf_counter()
            result = fn()
            first[label] = time.perf_counter() - t0
            shapes[label] = np.asarray(result).shape
    wrong = {k: v for k, v in shapes.items() if v != shapes["cvcore"]}
    if wrong:       # a reference computing something else would make its ratio meaningless
        raise RuntimeError(f"{row.name}: output shapes differ from cvcore's "
                           f"{shapes['cvcore']}: {wrong}")
    for _ in range(repeats):
        for label, fn in calls.items():
            if fn is None:
                continue
            time.sleep(SETTLE_SECONDS)      # the previous library's threads stop spinning
            fn()                        # untimed: each library times its own steady state
            c0, t0 = time.process_time(), time.perf_counter()   # (allocator, caches), not the
            fn()                                                # aftermath of the previous call
            walls[label].append(time.perf_counter() - t0)
            cpus[label].append(time.process_time() - c0)
    timings = {k: None if fn is None else
               Timing(first[k], statistics.median(walls[k]), peak_memory(fn))
               for k, fn in calls.items()}
    return timings, {k: statistics.median(v) for k, v in cpus.items() if v}


def fastest_table(results, cpu) -> str:
    """Per row: cvcore against its fastest same-work reference (labels without ``*``, the
    fastest by wall time); ``cpu ratio`` = the reference's process CPU time / cvcore's (at
    ``--threads 1`` the one-thread kernel comparison, less sensitive to a busy machine)."""
    lines = [f"{'benchmark':<34} {'fastest ref':<16} {'cvcore ms':>9} {'ref ms':>9} {'ratio':>7} "
             f"{'cv cpu ms':>9} {'ref cpu ms':>10} {'cpu ratio':>9}"]
    lines.append("-" * len(lines[0]))
    for name, timings in results:
        cv = timings["cvcore"]
        same = [(k, t) for k, t in timings.items() if k != "cvcore" and t is not None
                and "*" not in k]
        if not same:
            lines.append(f"{name:<34} {'n/a':<16} {cv.median * 1e3:9.3f}")
            continue
        label, ref = min(same, key=lambda kv: kv[1].median)
        cv_cpu, ref_cpu = cpu[name]["cvcore"], cpu[name][label]
        lines.append(f"{name:<34} {label:<16} {cv.median * 1e3:9.3f} {ref.median * 1e3:9.3f} "
                     f"{ref.median / cv.median:7.2f} {cv_cpu * 1e3:9.3f} {ref_cpu * 1e3:10.3f} "
                     f"{ref_cpu / cv_cpu if cv_cpu > 0 else float('nan'):9.2f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for Numba and OpenCV alike (default: every core)")
    parser.add_argument("--only", default="",
                        help="run only the rows whose name contains this text")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds per row")
    parser.add_argument("--compile", action="store_true",
                        help="instead of the table: the cold compile (CPU seconds) of each "
                             "geometry function's first call, in a fresh process whose Numba "
                             "cache is empty")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.compile:
        cold_compile()
        return
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    run(args)


COLD_SCRIPT = """
import time
import numpy as np
from numba import njit
from cvcore.preprocess import resize, warp_affine, warp_perspective

@njit
def _first(x):
    return x + 1

t = time.process_time()
_first(1)
print(f"{'Numba start-up (a 1-line function)':<34} {time.process_time() - t:6.2f}")
# large enough for two bands (cvcore._team: the parallel region's kernel is compiled too)
img = np.random.default_rng(0).random((512, 512)).astype(np.float32)
M = np.array([[1.0, 0.1, 2.0], [-0.1, 1.0, 1.0]])
calls = [
    ("resize nearest", lambda: resize(img, (256, 256), "nearest")),
    ("resize area 2x / bilinear 2x", lambda: resize(img, (256, 256), "area")),
    ("resize bilinear (any size)", lambda: resize(img, (360, 360), "bilinear")),
    ("resize area 512->360 (its table)", lambda: resize(img, (360, 360), "area")),
    ("warp_affine bilinear", lambda: warp_affine(img, M)),
    ("warp_affine nearest", lambda: warp_affine(img, M, interpolation="nearest")),
    ("warp_perspective bilinear", lambda: warp_perspective(img, np.vstack([M, [1e-4, 0, 1]]))),
]
total = 0.0
for name, call in calls:
    t = time.process_time()
    call()
    total += time.process_time() - t
    print(f"{name:<34} {time.process_time() - t:6.2f}")
print(f"{'geometry total':<34} {total:6.2f}")
"""


def cold_compile():
    """Print the CPU seconds of each geometry function's first call in a fresh process with an
    empty Numba cache (what a new install waits for), in the order a pipeline meets them; with
    the free-core rule off (``CVCORE_ADAPTIVE_THREADS=0``), so that on more than one thread
    the calls run in bands on the team and its parallel kernel is compiled whatever the load
    (on one thread it is never compiled)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, CVCORE_ADAPTIVE_THREADS="0")
        import numba
        print(f"cold compile, CPU seconds per first call, {numba.config.NUMBA_NUM_THREADS} "
              f"Numba threads (load average {os.getloadavg()[0]:.1f})", flush=True)
        subprocess.run([sys.executable, "-c", COLD_SCRIPT], env=env, check=True)


def run(args):
    from cvcore.io.images import to_uint8
    from cvcore.preprocess import (equalize_adapthist, equalize_hist, resize, warp_affine,
                                   warp_perspective)

    cv2 = optional("cv2")
    if cv2 is not None:
        cv2.setNumThreads(args.threads)
    transform = optional("skimage.transform")
    exposure = optional("skimage.exposure")
    PIL_Image = optional("PIL.Image")
    img = _image()
    img8 = to_uint8(img)
    pil = PIL_Image.fromarray(img) if PIL_Image else None

    def cv(fn):
        return fn if cv2 is not None else None

    def sk(fn):
        return fn if transform is not None else None

    def pl(fn):
        return fn if pil is not None else None

    def resize_rows(label, h, w):
        """The rows of one output size (a function, so that each row's calls bind their own
        size: lambdas made in a loop over sizes would all see the last one)."""
        out = [Row(f"resize nearest {label}", lambda: resize(img, (h, w), "nearest"), {
            "cv2 NEAREST": cv(lambda: cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)),
            "Pillow NEAREST": pl(lambda: pil.resize((w, h), PIL_Image.Resampling.NEAREST)),
            "skimage ord0": sk(lambda: transform.resize(img, (h, w), order=0,
                                                        anti_aliasing=False)),
        }), Row(f"resize bilinear {label}", lambda: resize(img, (h, w), "bilinear"), {
            "cv2 LINEAR": cv(lambda: cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)),
            "Pillow BILIN*": pl(lambda: pil.resize((w, h), PIL_Image.Resampling.BILINEAR)),
            "skimage ord1": sk(lambda: transform.resize(img, (h, w), order=1,
                                                        anti_aliasing=False)),
        })]
        if h < SIZE:
            out.append(Row(f"resize area {label}", lambda: resize(img, (h, w), "area"), {
                "cv2 AREA": cv(lambda: cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)),
                "Pillow BOX": pl(lambda: pil.resize((w, h), PIL_Image.Resampling.BOX)),
                "skimage aa*": sk(lambda: transform.resize(img, (h, w), order=1,
                                                           anti_aliasing=True)),
            }))
        return out

    rows = [row for label, n in (("shrink 1024->512", 512), ("shrink 1024->700", 700),
                                 ("grow 1024->1536", 1536))
            for row in resize_rows(label, n, n)]

    angle = np.deg2rad(17.0)
    c, s = np.cos(angle), np.sin(angle)
    centre = SIZE / 2
    M = np.array([[c * 1.1, -s * 1.1, 0.0], [s * 1.1, c * 1.1, 0.0]])
    M[:, 2] = centre - M[:, :2] @ [centre, centre]
    H = np.vstack([M, [2e-4, -1e-4, 1.0]])
    full = np.vstack([M, [0, 0, 1.0]])
    for interp, order, flag in (("bilinear", 1, "INTER_LINEAR"), ("nearest", 0, "INTER_NEAREST")):
        rows.append(Row(f"warp_affine {interp} rot17 x1.1",
                        lambda i=interp: warp_affine(img, M, interpolation=i), {
            "cv2 warpAffine": cv(lambda f=flag: cv2.warpAffine(img, M, (SIZE, SIZE),
                                                               flags=getattr(cv2, f))),
            "skimage warp": sk(lambda o=order: transform.warp(
                img, transform.AffineTransform(np.linalg.inv(full)), order=o)),
        }))
    rows.append(Row("warp_perspective bilinear", lambda: warp_perspective(img, H), {
        "cv2 warpPersp": cv(lambda: cv2.warpPerspective(img, H, (SIZE, SIZE))),
        "skimage warp": sk(lambda: transform.warp(
            img, transform.ProjectiveTransform(np.linalg.inv(H)), order=1)),
    }))
    rows.append(Row("equalize_adapthist uint8 8x8", lambda: equalize_adapthist(img8), {
        "cv2 CLAHE": cv(lambda: cv2.createCLAHE(40.0, (8, 8)).apply(img8)),
        "skimage CLAHE*": (lambda: exposure.equalize_adapthist(img8)) if exposure else None,
    }, repeats=3))
    rows.append(Row("equalize_hist float32", lambda: equalize_hist(img), {
        "skimage": (lambda: exposure.equalize_hist(img)) if exposure else None,
        "cv2 equalizeHist*": cv(lambda: cv2.equalizeHist(img8)),
    }))

    import numba
    rows = [r for r in rows if args.only in r.name]
    results, cpu = [], {}
    for row in rows:
        timings, cpu[row.name] = time_interleaved(row, args.repeats)
        results.append((row.name, timings))
        print(f"  timed {row.name}", flush=True)
    print(machine_line())
    print(f"threads: numba {numba.get_num_threads()}, cv2 "
          f"{cv2.getNumThreads() if cv2 is not None else 'n/a'} (Pillow and scikit-image use one); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"input {SIZE}x{SIZE} float32 (uint8 for CLAHE and cv2.equalizeHist); "
          f"* = the reference computes a different variant (see the module docstring); "
          f"ratio = ref ms / cvcore ms, calls interleaved, median of {args.repeats}")
    print_table(results)
    print()
    print("ratio to the fastest reference doing the same work (cpu = process CPU time per call)")
    print(fastest_table(results, cpu))


if __name__ == "__main__":
    main()
