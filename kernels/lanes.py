"""One OpenMP parallel loop that runs a serial ``nogil`` kernel in lanes, called by address.

The network kernels (:mod:`kernels.nn_conv`, :mod:`kernels.nn_norm`, :mod:`kernels.nn_act`) are
one-thread kernels over a range ``[i0, i1)`` of their work: ``kernel(*args, i0, i1)``.
:func:`run_lanes` runs ``n`` such units on ``nlanes`` threads: lane ``l`` of one Numba parallel
loop (``prange``; OpenMP threads, no GIL to hand over) computes the ``l``-th contiguous share
``[l*n // nlanes, (l + 1)*n // nlanes)``.

Why by address
--------------
A ``prange`` loop is compiled as a function of its own (a "gufunc"), and a Numba function that
calls another links the callee's LLVM module into its own and optimises and compiles it again.
So a ``prange`` around a kernel's body, inlined or called, compiled that body twice or three
times over: with an empty cache, ResNet-20's forward convolution cost 1.7 s of compile CPU as a
serial kernel, 4.2 s inside a ``prange`` (inlined), 1.7 + 1.6 s as a serial kernel called from
a ``prange`` (the callee optimised again in the loop's module; ``benchmarks/README.md``). Here the
loop calls the kernel through a function pointer that the caller passes in
(:func:`cvcore.nn._lanes.run_lanes` looks it up), so the kernel is compiled once, on its own, and
this loop, about 0.3 s per argument-type signature, holds only the call. The address is a run-time
argument, never a constant in the code, so the loop is cached (``cache=True``) like any kernel.

The call uses Numba's own calling convention: the address must be that of the kernel compiled
for exactly the types of ``args`` followed by two ``int64`` (:func:`cvcore.nn._lanes.run_lanes`
guarantees it), and the kernel must return nothing. An exception raised in the kernel (an index
error under ``NUMBA_BOUNDSCHECK=1``) is passed on as a Numba call passes it; inside the parallel
loop Numba drops it, as it does in any ``prange`` body (a one-lane call, made directly, raises
it).

:mod:`kernels.team` (session 10, the resizes and warps) does the same for bands of image rows;
this module also takes arguments that hold tuples (a batch norm's four arrays: :func:`pack`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def pack(typingctx, args):
    """A pointer to a copy of the tuple ``args`` in the caller's stack frame: the parallel loop
    takes it as one scalar (its loop body cannot take a tuple holding a tuple of arrays)."""
    if not isinstance(args, types.BaseTuple):
        return None

    def codegen(context, builder, signature, llargs):
        model = context.data_model_manager[args]
        slot = cgutils.alloca_once(builder, model.get_data_type())
        builder.store(model.as_data(builder, llargs[0]), slot)
        return slot

    return types.CPointer(args)(args), codegen


@intrinsic
def call_at(typingctx, address, packed, i0, i1):
    """``kernel(*args, i0, i1)`` for the kernel compiled at ``address`` (an ``int64`` from
    ``library.get_pointer_to_function``) and the tuple ``args`` at ``packed`` (:func:`pack`),
    returning nothing: an indirect call with Numba's calling convention, so the kernel's code
    is not linked into the caller's module."""
    if not (isinstance(address, types.Integer) and isinstance(packed, types.CPointer)
            and isinstance(packed.dtype, types.BaseTuple)
            and i0 == types.int64 and i1 == types.int64):
        return None
    args = packed.dtype

    def codegen(context, builder, signature, llargs):
        addr, ptr, lo, hi = llargs
        tup = context.data_model_manager[args].from_data(builder, builder.load(ptr))
        argtys = [*args.types, types.int64, types.int64]
        values = [builder.extract_value(tup, k) for k in range(len(args.types))] + [lo, hi]
        fnty = context.call_conv.get_function_type(types.none, argtys)
        fn = builder.inttoptr(addr, fnty.as_pointer())
        status, _ = context.call_conv.call_function(builder, fn, types.none, argtys, values)
        with builder.if_then(status.is_error, likely=False):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return types.void(address, packed, i0, i1), codegen


@njit(cache=True, parallel=True, nogil=True)
def run_lanes(address, n, nlanes, args):
    """``kernel(*args, i0, i1)`` (the kernel at ``address``) over ``range(n)`` in ``nlanes``
    contiguous shares, one per iteration of a parallel loop."""
    packed = pack(args)
    for lane in prange(nlanes):
        i0 = np.int64(lane) * n // nlanes
        i1 = (np.int64(lane) + 1) * n // nlanes
        call_at(address, packed, np.int64(i0), np.int64(i1))

