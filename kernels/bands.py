"""Bounded spin-waits on words of memory that other threads write, for the band runner
(:mod:`cvcore._bands`): a sleeping thread on this virtual machine takes 30-80 us to wake
(futex wake, an inter-processor interrupt through the hypervisor, the idle vCPU's exit from
``hlt``), a spinning one sees the new value in well under a microsecond. These functions spin
without the GIL (``nogil``) so the threads they wait for can run Python meanwhile; each poll is
an atomic *acquire* load (LLVM ``load atomic ... acquire``: the compiler may not hoist it out of
the loop, and the writes the writer made before its store are visible once the new value is),
followed on x86 by ``pause``, the spin-loop hint GNU OpenMP's ``cpu_relax`` and every spinlock
use (Intel SDM vol. 2B, PAUSE: "improves the performance of spin-wait loops" and saves power).

The spin is bounded by ``spins`` polls: the caller calibrates how many polls make a given
time (:func:`cvcore._bands.spin_polls`) and sleeps on an ordinary lock after that, as GNU
OpenMP spins ``GOMP_SPINCOUNT`` times before it sleeps on a futex.

Readable twins: in each docstring (``tests/test_bands.py`` compares the results).
"""
import platform

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: ``pause`` exists on x86 only; elsewhere the loop polls without a hint.
_HAS_PAUSE = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _load_acquire(typingctx, words, index):
    """``words[index]`` read as one atomic acquire load. ``words``: (n,) int64, C order."""
    sig = types.int64(words, types.intp)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.gep(array.data, [args[1]])
        return builder.load_atomic(address, "acquire", 8)
    return sig, codegen


@intrinsic
def _cpu_relax(typingctx):
    """The x86 ``pause`` instruction (a no-op elsewhere)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _HAS_PAUSE:
            pause = builder.module.declare_intrinsic("llvm.x86.sse2.pause", (),
                                                     ir.FunctionType(ir.VoidType(), ()))
            builder.call(pause, ())
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, nogil=True)
def leave_and_wait(words, slot, seen, spins, settle):
    """A pool thread's idle wait. First ``words[slot] = 0`` ("I am out of every call": a
    release store made after the GIL is released, so a caller waiting for it then finds the GIL
    free); then poll ``words[0]`` until it differs from ``seen``, at most ``spins`` times; once
    it did, ``settle`` more polls' time (the caller still holds the GIL right after it
    publishes). Returns the last value of ``words[0]`` read (``seen`` when the spin ran out).

    Twin: ``words[slot] = 0; while spins and words[0] == seen: spins -= 1``."""
    _store_release(words, slot, 0)
    value = _load_acquire(words, 0)
    while value == seen and spins > 0:
        _cpu_relax()
        spins -= 1
        value = _load_acquire(words, 0)
    if value != seen:
        while settle > 0:
            _cpu_relax()
            settle -= 1
    return value


@njit(cache=True, nogil=True)
def wait_job(flags, words, job, spins):
    """A caller's wait at the end of a banded call: poll the int64 ``flags`` until every one is
    non-zero (every band done), then ``words[1:]`` until none equals ``job`` (every pool thread
    that joined the call is back in its idle wait, where it holds no GIL). Each of the two polls
    is bounded by ``spins`` rounds. Returns whether every flag is set (a pool thread slow to
    leave only costs the caller the GIL hand-off this wait is there to avoid).

    Twin: ``while spins and not flags.all(): spins -= 1``, the same for ``(words[1:] == job)``,
    then ``flags.all()``."""
    i = 0
    left = spins
    while i < flags.shape[0]:
        if _load_acquire(flags, i) != 0:
            i += 1
        elif left > 0:
            _cpu_relax()
            left -= 1
        else:
            return False
    i = 1
    while i < words.shape[0]:
        if _load_acquire(words, i) != job:
            i += 1
        elif spins > 0:
            _cpu_relax()
            spins -= 1
        else:
            return True
    return True


@intrinsic
def _store_release(typingctx, words, index, value):
    """``words[index] = value`` as one atomic release store. ``words``: (n,) int64, C order."""
    sig = types.void(words, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.gep(array.data, [args[1]])
        builder.store_atomic(args[2], address, "release", 8)
        return context.get_dummy_value()
    return sig, codegen


@njit(cache=True, nogil=True)
def set_flag(flags, index):
    """``flags[index] = 1`` (int64), stored after the GIL is released: a thread polling the
    flag that then wants the GIL finds it free instead of sleeping until it is."""
    _store_release(flags, index, 1)
