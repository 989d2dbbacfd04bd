"""Run a serial ``nogil`` network kernel on several threads: lanes of one OpenMP loop.

``run_lanes(kernel, n, *args)`` calls ``kernel(*args, i0, i1)`` for shares ``[i0, i1)`` of
``range(n)``, one per thread, inside one Numba parallel loop (:func:`kernels.lanes.run_lanes`),
which calls the kernel by address so that its code is compiled once (see :mod:`kernels.lanes`).
The shares are contiguous and fixed (OpenMP's static schedule, as a ``prange`` over the units
had them), and the threads are Numba's (``numba.get_num_threads()``, which
:mod:`cvcore._threads` may lower on a busy machine).

This is the network step's threading; :func:`cvcore._bands.run_bands` hands bands to a pool of
Python threads instead, which costs each call a GIL hand-off (~45 us measured, session 9): fine
for a few large calls, not for the 300-odd calls of a ResNet-20 training step.
"""
from __future__ import annotations

import numpy as np

__all__ = ["run_lanes", "threads"]

#: Least work per lane, in nanoseconds of one thread: a smaller call runs on fewer lanes (one:
#: called directly, no parallel loop). Starting and joining the loop's threads costs a few
#: microseconds: two threads, 2026-12-07, a strip fill of 9 400 values took 9.7 us on one lane
#: and 8.1 on two, one of 200 000 values 22.5 and 13.9 us.
MIN_LANE_NS = 2_000

_ADDRESSES: dict = {}


class _Numba:
    """Numba's parts used here, imported on first use (``import cvcore.nn`` does not import
    Numba)."""
    numba = lanes = fingerprint = num_threads = None

    @classmethod
    def load(cls):
        import numba
        from numba._dispatcher import compute_fingerprint
        from numba.np.ufunc import parallel
        from kernels import lanes
        numba.get_num_threads()                     # starts the threading layer
        # Numba's own C-level summary of what decides the Numba types of the arguments
        # (dtype, dimensions, layout and writability of each array, through nested tuples;
        # ~0.3 us, against ~5 us for the same key built in Python): the dispatcher keys its
        # type cache on it
        cls.fingerprint = compute_fingerprint
        # ``numba.get_num_threads()`` without its per-call lock (~2 us; a convolution asks
        # three times): the threading layer's own counter, per thread as that function's
        cls.num_threads = parallel._get_num_threads
        cls.numba, cls.lanes = numba, lanes
        return cls


def _numba():
    return _Numba if _Numba.numba is not None else _Numba.load()


def threads():
    """The thread count Numba's parallel loops use now (``numba.get_num_threads()``, which
    :mod:`cvcore._threads` may lower on a busy machine)."""
    return _numba().num_threads()


def address(kernel, args):
    """The address of ``kernel`` compiled for the types of ``(*args, i0, i1)`` (``int64``
    bounds), compiling it (or loading it from the cache) first; kept per kernel and argument
    types."""
    nb = _numba()
    key = (kernel, nb.fingerprint(args))
    addr = _ADDRESSES.get(key)
    if addr is None:
        numba = nb.numba
        sig = tuple(numba.typeof(a) for a in args) + (numba.int64, numba.int64)
        kernel.compile(sig)
        cres = kernel.overloads[sig]
        if cres.signature.return_type != numba.types.none:
            raise TypeError(f"run_lanes: {kernel.__name__} must return nothing")
        addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
        _ADDRESSES[key] = addr
    return addr


def run_lanes(kernel, n, *args, lanes=None, ns=None):
    """``kernel(*args, i0, i1)`` over ``range(n)``: in one call when there is one thread (or
    one unit), else in ``lanes`` (default: Numba's thread count, at most ``n``) contiguous
    shares on that many threads. ``ns``: the call's work in nanoseconds of one thread, roughly
    (at most one lane per :data:`MIN_LANE_NS`), when the caller knows it.

    ``kernel`` is a ``@njit(nogil=True)`` dispatcher returning nothing, whose shares write
    disjoint outputs (or per-lane parts the caller adds up).
    """
    lanes = _lane_count(n, threads() if lanes is None else lanes, ns)
    if lanes < 2:
        kernel(*args, 0, int(n))
        return
    _numba().lanes.run_lanes(address(kernel, args), int(n), lanes, args)


def _lane_count(n, lanes, ns):
    lanes = min(int(lanes), int(n))
    if ns is not None and ns < lanes * MIN_LANE_NS:
        lanes = int(ns // MIN_LANE_NS)
    return lanes

