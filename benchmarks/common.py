"""The benchmark harness: time a function, measure its peak memory, print one table.

Every benchmark runs cvcore and the references on the same input in the same process and prints
the ratio, so the figures compare like with like on whatever machine runs them::

    rows = [Row("5x5 correlate 1024^2", cvcore=lambda: f(x), refs={"cv2": lambda: g(x)})]
    print_table(run_rows(rows))

Timing: one warm-up call (whose time is reported separately as the first call: for a Numba kernel
not yet in the on-disk cache this includes compilation), then the median of ``repeats`` calls.
Peak memory: the largest increase of the process's resident set over the call, sampled by a
background thread, which sees allocations made by NumPy, Numba, OpenCV and PyTorch alike
(``tracemalloc`` would see only Python's allocator).
"""
from __future__ import annotations

import gc
import importlib
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

# cvcore's OpenMP spin default (kernels/__init__.py sets GOMP_SPINCOUNT) must be in the
# environment before Numba starts its OpenMP threads, which a benchmark's
# ``numba.set_num_threads`` does, before it first calls cvcore: with GNU OpenMP's own default
# the team's threads spin for milliseconds after each cvcore region, on the core OpenCV's next
# call wants (measured: the session 10 preprocess rows at two threads read OpenCV at its
# one-thread times).
import kernels  # noqa: E402,F401


def optional(module: str):
    """Import an optional reference library, or return None (the table then shows 'n/a')."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn: Callable, interval: float = 0.0005) -> int:
    """Largest resident-set growth in bytes while ``fn()`` runs (0 where /proc is absent)."""
    if not os.path.exists("/proc/self/statm"):
        fn()
        return 0
    gc.collect()
    base = _rss_bytes()
    peak = base
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            time.sleep(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    peak = max(peak, _rss_bytes())
    return peak - base


@dataclass
class Timing:
    first: float      # seconds, first call (includes JIT compilation when not cached)
    median: float     # seconds, median of the repeats after warm-up
    peak_bytes: int   # resident-set growth during one call


def time_fn(fn: Callable, repeats: int = 7, min_time: float = 0.0) -> Timing:
    """Time ``fn``: the first call alone, then the median of ``repeats`` further calls.

    ``min_time`` makes each repeat loop the call until at least that many seconds have passed
    (useful for calls well under a millisecond) and reports the per-call time.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        n = 0
        t0 = time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        times.append(elapsed / n)
    return Timing(first, statistics.median(times), peak_memory(fn))


@dataclass
class Row:
    """One line of a table: a cvcore call and the reference calls on the same input."""
    name: str
    cvcore: Callable
    refs: dict = field(default_factory=dict)   # label -> callable, or None when not installed
    repeats: int = 7
    min_time: float = 0.0
    #: label -> rounds: a slow reference timed in only the first rounds (SciPy's 5x5 median
    #: takes 0.4 s a call), so that the fast calls of its row still get all ``repeats`` rounds
    ref_rounds: dict = field(default_factory=dict)


def run_rows(rows, verbose: bool = True):
    """Time every row; return a list of (row name, {label: Timing or None})."""
    results = []
    for row in rows:
        timings = {"cvcore": time_fn(row.cvcore, row.repeats, row.min_time)}
        for label, fn in row.refs.items():
            timings[label] = None if fn is None else time_fn(
                fn, row.ref_rounds.get(label, row.repeats), row.min_time)
        results.append((row.name, timings))
        if verbose:
            print(f"  timed {row.name}", flush=True)
    return results


def run_interleaved(rows, clock=time.perf_counter, stat=statistics.median, memory=True,
                    warm_each=False):
    """Time every row with its calls interleaved: one warm-up call each (reported as the first
    call), then ``repeats`` rounds of cvcore and each reference (rotating who goes first);
    ``stat`` per call (the median, or the minimum on a loaded machine); ``memory=False`` skips
    the extra call that measures each call's peak memory (reported as 0); ``warm_each=True``
    makes an untimed call of the same function right before each timed one, so that each
    library is timed in its own steady state (its allocator's blocks, its output in cache), not
    in the aftermath of another library's call (``benchmarks.preprocess`` times that way); an
    integer ``warm_each=k`` makes ``k`` untimed calls (``True`` is 1).
    Returns what :func:`run_rows` returns (the ``median`` field holds ``stat``); a change of the
    machine's load during a row hits every library alike."""
    results = []
    for row in rows:
        calls = {"cvcore": row.cvcore}
        calls.update({label: fn for label, fn in row.refs.items() if fn is not None})
        first, times = {}, {label: [] for label in calls}
        for label, fn in calls.items():
            t0 = clock()
            fn()
            first[label] = clock() - t0
        order = list(calls.items())
        for r in range(row.repeats):
            # Rotate who goes first: a call that follows another on the same image finds it
            # in cache (a slow reference before cvcore halved cvcore's Sobel on a busy machine).
            for label, fn in order[r % len(order):] + order[:r % len(order)]:
                if r >= row.ref_rounds.get(label, row.repeats):
                    continue
                for _ in range(int(warm_each)):
                    fn()
                t0 = clock()
                fn()
                times[label].append(clock() - t0)
        timings = {label: Timing(first[label], stat(times[label]),
                                 peak_memory(fn) if memory else 0) for label, fn in calls.items()}
        timings.update({label: None for label, fn in row.refs.items() if fn is None})
        results.append((row.name, timings))
        print(f"  timed {row.name}", flush=True)
    return results


def _ms(t: float) -> str:
    return f"{t * 1e3:9.3f}"


def format_table(results) -> str:
    """One table: per row and per reference, the warm times, the ratio and the memory.

    ``ratio`` is reference time / cvcore time: above 1 means cvcore is faster.
    """
    lines = [f"{'benchmark':<34} {'ref':<14} {'cvcore ms':>9} {'ref ms':>9} {'ratio':>7} "
             f"{'cv 1st ms':>9} {'cv MiB':>7} {'ref MiB':>7}"]
    lines.append("-" * len(lines[0]))
    for name, timings in results:
        cv = timings["cvcore"]
        refs = [(k, v) for k, v in timings.items() if k != "cvcore"] or [("-", None)]
        for label, ref in refs:
            if ref is None:
                ref_ms, ratio, ref_mem = "      n/a", "    n/a", "    n/a"
            else:
                ref_ms = _ms(ref.median)
                ratio = f"{ref.median / cv.median:7.2f}"
                ref_mem = f"{ref.peak_bytes / 2**20:7.1f}"
            lines.append(f"{name:<34} {label:<14} {_ms(cv.median)} {ref_ms} {ratio} "
                         f"{_ms(cv.first)} {cv.peak_bytes / 2**20:7.1f} {ref_mem}")
    return "\n".join(lines)


def print_table(results) -> None:
    print(format_table(results))


def machine_line() -> str:
    """A one-line description of the machine and library versions for the record."""
    import platform

    import numba
    import numpy
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}, Numba {numba.__version__}")
