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

import numpy as np

from cvcore import _team
from cvcore._team import run_parts
from cvcore._threads import numba_threads

__all__ = ["LaneSteps", "run_lanes", "threads"]

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


class LaneSteps:
    """A fixed sequence of :func:`run_lanes` calls, run by one call from Python
    (:func:`kernels.team.run_steps`): each call's lanes in one OpenMP region, one region after
    the other, no Python between them.

    For calls whose arguments are the same arrays every time (the inference plan's
    convolutions, :mod:`cvcore.nn.inference`, on buffers it keeps): each call's address,
    trampoline and copy of its arguments (:func:`cvcore._team.run_parts`' per-call work, ~3.6
    us of Python) are worked out once, in :meth:`add`. The arrays must stay as they are (the
    same objects, the same memory) while the steps live: the steps hold references to them.
    """

    def __init__(self):
        self._calls = []            # (kernel, n, args, copy of args): kept alive with the steps
        self._rows = []
        self._table = None
        self._failed = np.zeros(1, np.int64)

    def __len__(self):
        return len(self._calls)

    def add(self, kernel, n, *args, lanes=None, ns=None):
        """Append ``kernel(*args, i0, i1)`` over ``range(n)``, its lanes chosen as
        :func:`run_lanes` chooses them (``lanes``, ``ns``), now, once."""
        n = int(n)
        parts = _lane_count(n, threads() if lanes is None else lanes, ns)
        entry, words = _team.entry(args)
        address = _team.band_address(kernel, args)
        copy = np.empty(words, np.int64)
        from kernels.team import store_args
        data = store_args(copy, args)
        self._calls.append((kernel, n, args, copy))
        self._rows.append((entry, address, data, n, parts))
        self._table = None

    def run(self, first=0, last=None):
        """Run steps ``first .. last - 1`` (default: all). A step that raised is run again in
        this thread, where its exception is raised (as :func:`cvcore._team.run_parts` does),
        and, should it not raise again, so are the steps after it."""
        from kernels.team import run_steps
        if self._table is None:
            self._table = np.array(self._rows, dtype=np.int64).reshape(-1, 5)
        table = self._table if first == 0 and last is None else self._table[first:last]
        failed = self._failed
        failed[0] = 0
        s = run_steps(table, _team._FORKED["child"], failed)
        if s >= 0:
            for kernel, n, args, _ in self._calls[first + s:last]:
                kernel(*args, 0, n)
