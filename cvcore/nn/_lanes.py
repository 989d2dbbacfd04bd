"""Run a serial ``nogil`` network kernel on several threads: lanes of one OpenMP loop.

``run_lanes(kernel, n, *args)`` calls ``kernel(*args, i0, i1)`` for shares ``[i0, i1)`` of
``range(n)``, one per thread, inside one Numba parallel loop (:func:`cvcore._team.run_parts`,
the loop the resizes and warps run their bands in), which calls the kernel by address so that
its code is compiled once (see :mod:`kernels.team`).
The shares are contiguous and fixed (OpenMP's static schedule, as a ``prange`` over the units
had them), and the threads are Numba's (``numba.get_num_threads()``, which
:mod:`cvcore._threads` may lower on a busy machine).

This is the network step's threading; :func:`cvcore._bands.run_bands` hands bands to a pool of
Python threads instead, which costs each call a GIL hand-off (~45 us measured, session 9): fine
for a few large calls, not for the 300-odd calls of a ResNet-20 training step.
"""
from __future__ import annotations

from cvcore._team import run_parts
from cvcore._threads import numba_threads

__all__ = ["run_lanes", "threads"]

#: Least work per lane, in nanoseconds of one thread: a smaller call runs on fewer lanes (one:
#: called directly, no parallel loop). Starting and joining the loop's threads costs a few
#: microseconds: two threads, 2026-12-07, a strip fill of 9 400 values took 9.7 us on one lane
#: and 8.1 on two, one of 200 000 values 22.5 and 13.9 us.
MIN_LANE_NS = 2_000


#: The thread count Numba's parallel loops use now (``numba.get_num_threads()``, which
#: :mod:`cvcore._threads` may lower on a busy machine), without that function's per-call locks.
threads = numba_threads


def run_lanes(kernel, n, *args, lanes=None, ns=None):
    """``kernel(*args, i0, i1)`` over ``range(n)``: in one call when there is one thread (or
    one unit), else in ``lanes`` (default: Numba's thread count, at most ``n``) contiguous
    shares on that many threads. ``ns``: the call's work in nanoseconds of one thread, roughly
    (at most one lane per :data:`MIN_LANE_NS`), when the caller knows it.

    ``kernel`` is a ``@njit(nogil=True)`` dispatcher returning nothing, whose shares write
    disjoint outputs (or per-lane parts the caller adds up). An exception raised in any share
    is raised here (:func:`cvcore._team.run_parts`); a forked child runs the call in one share.
    """
    run_parts(kernel, int(n), _lane_count(n, threads() if lanes is None else lanes, ns), *args)


def _lane_count(n, lanes, ns):
    lanes = min(int(lanes), int(n))
    if ns is not None and ns < lanes * MIN_LANE_NS:
        lanes = int(ns // MIN_LANE_NS)
    return lanes
