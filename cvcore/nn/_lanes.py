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

__all__ = ["run_lanes"]

_ADDRESSES: dict = {}
_NUMBA = []


def _numba():
    """``(numba, kernels.lanes, fingerprint)``, imported on first use (``import cvcore.nn`` does
    not import Numba). ``fingerprint(args)`` is Numba's own C-level summary of what decides the
    Numba types of ``args`` (dtype, dimensions, layout and writability of each array, through
    nested tuples; ~0.3 us, against ~5 us for the same key built in Python): the dispatcher
    keys its type cache on it."""
    if not _NUMBA:
        import numba
        from numba._dispatcher import compute_fingerprint
        from kernels import lanes
        _NUMBA.extend((numba, lanes, compute_fingerprint))
    return _NUMBA


def address(kernel, args):
    """The address of ``kernel`` compiled for the types of ``(*args, i0, i1)`` (``int64``
    bounds), compiling it (or loading it from the cache) first; kept per kernel and argument
    types."""
    numba, _, fingerprint = _numba()
    key = (kernel, fingerprint(args))
    addr = _ADDRESSES.get(key)
    if addr is None:
        sig = tuple(numba.typeof(a) for a in args) + (numba.int64, numba.int64)
        kernel.compile(sig)
        cres = kernel.overloads[sig]
        if cres.signature.return_type != numba.types.none:
            raise TypeError(f"run_lanes: {kernel.__name__} must return nothing")
        addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
        _ADDRESSES[key] = addr
    return addr


def run_lanes(kernel, n, *args, lanes=None):
    """``kernel(*args, i0, i1)`` over ``range(n)``: in one call when there is one thread (or
    one unit), else in ``lanes`` (default: Numba's thread count, at most ``n``) contiguous
    shares on that many threads.

    ``kernel`` is a ``@njit(nogil=True)`` dispatcher returning nothing, whose shares write
    disjoint outputs (or per-lane parts the caller adds up).
    """
    numba, lanes_mod, _ = _numba()
    if lanes is None:
        lanes = numba.get_num_threads()
    lanes = min(int(lanes), int(n))
    if lanes < 2:
        kernel(*args, 0, int(n))
        return
    lanes_mod.run_lanes(address(kernel, args), int(n), lanes, args)
