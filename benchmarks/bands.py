"""The band runner (``cvcore._bands``): what handing bands to a second thread costs, and where
two threads start to pay, beside OpenCV in the same process.

Run from the repository root::

    python -m benchmarks.bands                 # ~20 s on 2 idle cores
    python -m benchmarks.bands --repeats 60    # more rounds per row

Three tables, all in one process with OpenCV imported and used (its pool threads spin after
each of its calls, as in every benchmark of ``benchmarks/``):

* **hand-off**: one call of an empty ``nogil`` kernel over 64 rows, in the caller alone and
  split over 2 threads (8 bands); the difference is the runner's cost per call. Then the cost of
  one free-core reading (``cvcore._threads.usable_threads``, fresh and cached).
* **1 vs 2 threads**: filters and resizes at 256^2, 512^2 and 1024^2 (float32), cvcore on one
  thread (``band_threads`` forced to 1), on two (forced to 2, every call split), and as it runs
  by default (``rule``: two threads capped by the free-core rule, and calls under
  ``MIN_PARALLEL_SECONDS`` of measured one-thread work kept in the caller), beside ``cv2`` on two threads; calls interleaved
  (cvcore's three ways and OpenCV in turn, the first of each round rotating, so that none always
  follows a forced two-thread call whose helper is still spinning), median wall ms. ``2thr/1thr`` below 1: the second
  thread pays; ``cv2/2thr`` above 1: cvcore on two threads is faster than OpenCV.

The machine's load is printed at the start and the end: on a busy machine the two-thread
figures are those of a second core that is often not free.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _timeit(call, n, rounds=5):
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            call()
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def hand_off(cv2):
    from numba import njit

    from cvcore import _bands, _threads

    @njit(nogil=True, cache=True)
    def touch(out, r0, r1):
        for r in range(r0, r1):
            out[r] += 1.0

    out = np.zeros(64)
    touch(out, 0, 64)
    x = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    saved = (_bands.band_threads, _bands.MIN_PARALLEL_PIXELS, _bands.MIN_BAND_ROWS,
             _bands.MIN_PARALLEL_SECONDS)
    _bands.MIN_PARALLEL_PIXELS, _bands.MIN_BAND_ROWS, _bands.MIN_PARALLEL_SECONDS = 0, 1, 0.0
    try:
        back, after = {}, {}
        for label, threads in (("caller alone", 1), ("2 threads, 8 bands", 2)):
            _bands.band_threads = lambda t=threads: t
            back[label] = _timeit(lambda: _bands.run_bands(touch, 64, 1, out), 2000)
            after[label] = []
        for _ in range(200):                 # a cv2 call, then ours: the two ways interleaved
            for label, threads in (("caller alone", 1), ("2 threads, 8 bands", 2)):
                _bands.band_threads = lambda t=threads: t
                cv2.GaussianBlur(x, (3, 3), 0)
                t0 = time.perf_counter()
                _bands.run_bands(touch, 64, 1, out)
                after[label].append((time.perf_counter() - t0) * 1e6)
    finally:
        (_bands.band_threads, _bands.MIN_PARALLEL_PIXELS, _bands.MIN_BAND_ROWS,
         _bands.MIN_PARALLEL_SECONDS) = saved
    print("hand-off: us per run_bands call of an empty kernel (64 rows): best of 5 x 2000 back to "
          "back; median of 200 right after a cv2.GaussianBlur (its pool threads spinning)")
    print(f"{'':24s} {'back to back':>13s} {'after a cv2 call':>17s}")
    for label in back:
        print(f"{label:24s} {back[label]:13.1f} {statistics.median(after[label]):17.1f}")
    refresh = _threads.REFRESH_S
    try:
        _threads.REFRESH_S = 0.0
        fresh = _timeit(lambda: _threads.usable_threads(2), 2000)
    finally:
        _threads.REFRESH_S = refresh
    cached = _timeit(lambda: _threads.usable_threads(2), 2000)
    print(f"free-core rule: {fresh:.1f} us a fresh reading ({_threads.own_on_cpu.__name__} over "
          f"this process's threads), {cached:.1f} us cached")


def rows(cv2, sizes):
    import cvcore.preprocess.filters as F
    import cvcore.preprocess.geometry as G
    k5 = (np.arange(25, dtype=np.float32).reshape(5, 5) - 12) / 100
    M = np.array([[0.95, 0.3, 5.0], [-0.3, 0.95, 20.0]])
    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        x = rng.random((n, n), dtype=np.float32)
        up = (int(n * 1.5), int(n * 1.5))
        out += [
            (f"gaussian s2 {n}", lambda x=x: F.gaussian(x, 2.0),
             lambda x=x: cv2.GaussianBlur(x, (0, 0), 2.0)),
            (f"correlate 5x5 {n}", lambda x=x: F.correlate(x, k5),
             lambda x=x: cv2.filter2D(x, -1, k5, borderType=cv2.BORDER_REFLECT)),
            (f"sobel dx {n}", lambda x=x: F.sobel(x, 1),
             lambda x=x: cv2.Sobel(x, cv2.CV_32F, 1, 0)),
            (f"median 3x3 {n}", lambda x=x: F.median(x, 3), lambda x=x: cv2.medianBlur(x, 3)),
            (f"resize bilinear {n}->{up[0]}", lambda x=x, up=up: G.resize(x, up, "bilinear"),
             lambda x=x, up=up: cv2.resize(x, up, interpolation=cv2.INTER_LINEAR)),
            (f"warp_affine bilinear {n}", lambda x=x, n=n: G.warp_affine(x, M, (n, n)),
             lambda x=x, n=n: cv2.warpAffine(x, M, (n, n), flags=cv2.INTER_LINEAR)),
        ]
    return out


def one_vs_two(cv2, sizes, repeats):
    from cvcore import _bands
    rule, break_even = _bands.band_threads, _bands.MIN_PARALLEL_SECONDS
    ways = {"1thr": (lambda: 1, 0.0), "2thr": (lambda: 2, 0.0), "rule": (rule, break_even)}
    print("\n1 vs 2 threads: median wall ms, calls interleaved")
    print(f"{'row':30s} {'1thr':>8s} {'2thr':>8s} {'rule':>8s} {'cv2':>8s} "
          f"{'2thr/1thr':>10s} {'cv2/2thr':>9s} {'cv2/rule':>9s}")
    try:
        for name, ours, ref in rows(cv2, sizes):
            for way, seconds in ways.values():
                _bands.band_threads, _bands.MIN_PARALLEL_SECONDS = way, seconds
                ours()
            ref()
            times = {k: [] for k in (*ways, "cv2")}
            order = [*ways, "cv2"]
            for i in range(repeats):             # the first of each round rotates
                for key in order[i % len(order):] + order[:i % len(order)]:
                    if key == "cv2":
                        t0 = time.perf_counter()
                        ref()
                        times["cv2"].append(time.perf_counter() - t0)
                        continue
                    _bands.band_threads, _bands.MIN_PARALLEL_SECONDS = ways[key]
                    t0 = time.perf_counter()
                    ours()
                    times[key].append(time.perf_counter() - t0)
            m = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            print(f"{name:30s} {m['1thr']:8.3f} {m['2thr']:8.3f} {m['rule']:8.3f} {m['cv2']:8.3f} "
                  f"{m['2thr'] / m['1thr']:10.2f} {m['cv2'] / m['2thr']:9.2f} "
                  f"{m['cv2'] / m['rule']:9.2f}")
    finally:
        _bands.band_threads, _bands.MIN_PARALLEL_SECONDS = rule, break_even


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--repeats", type=int, default=30, help="rounds per row")
    args = parser.parse_args(argv)
    import cv2
    import numba
    cv2.setNumThreads(2)
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    with open("/proc/loadavg") as fh:
        print("load average at the start:", " ".join(fh.read().split()[:3]))
    hand_off(cv2)
    one_vs_two(cv2, [int(s) for s in args.sizes.split(",")], args.repeats)
    with open("/proc/loadavg") as fh:
        print("load average at the end:", " ".join(fh.read().split()[:3]))


if __name__ == "__main__":
    main()
