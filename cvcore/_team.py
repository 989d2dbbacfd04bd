"""Running a band kernel over an image on several threads, the kernel called through its
address (:mod:`kernels.team`).

:func:`run_team` has the call of :func:`cvcore._bands.run_bands`: ``kernel(*args, r0, r1)``
for bands ``[r0, r1)`` covering ``range(n_rows)``, with ``kernel`` a serial ``nogil`` Numba
function whose output rows depend only on its inputs. The difference is who runs the bands:

* :func:`cvcore._bands.run_bands`: the calling thread and pool threads, each taking bands
  from a counter. A pool thread runs Python between bands, so it must take the GIL, and a
  thread waiting for the GIL sleeps (30-80 us to wake on the 2-core VM of
  ``benchmarks/README.md``). That hand-off was the cost of the resizes and warps at two
  threads (``benchmarks/README.md``, "Session 9": 1024^2 -> 1536^2 bilinear 0.63-0.67 ms
  split there against 0.39 in a ``prange``).
* here, by default: the helper pool of :mod:`kernels.pool` (:func:`run_pooled`): the call is
  cut into parts that shrink as the rows run out (:func:`cut_for`), which the calling thread
  and the helpers take one by one, all in native code, without the GIL. The caller never
  waits for a helper that has not started: an OpenMP region's closing barrier does (below),
  and with cvcore's short OpenMP spin the team's thread is asleep whenever the call follows a
  pause of more than ~0.2 ms (a pipeline that reads a file or runs Python between calls):
  measured, an empty kernel in two parts after a 2 ms pause took 150 us in a region, 92 us on
  the pool, 21 us in one thread
  (``benchmarks/README.md``, "Session 11: resizes and warps at two threads"). And a helper
  descheduled by another process's task costs the caller at most the part it took.
* in one OpenMP region of Numba's team, one band per thread (:func:`run_openmp`; a ``prange``
  that calls the kernel through its address): where the pool cannot run (no futex), when
  another thread of this process holds the pool (a server resizing in several request
  threads), or with ``CVCORE_TEAM_POOL=0``.

How many threads a call uses is the band runner's free-core rule (:func:`bands_for`: one
band, run by the calling thread, below :data:`cvcore._bands.MIN_PARALLEL_PIXELS` units of
work, on one thread, or when no other core is free). A forked child runs its bands in the
calling thread (:data:`_FORKED`; it has none of the parent's helper threads either).

:func:`run_parts` is the OpenMP mechanism alone, also under :func:`cvcore.nn._lanes.run_lanes`
(a network's kernels, launched back to back, find the team spinning).
"""
from __future__ import annotations

import os
import threading

import numpy as np

from cvcore._bands import MIN_PARALLEL_PIXELS
from cvcore._threads import numba_threads, usable_threads

#: Set in a forked child (``os.register_at_fork``): GNU OpenMP terminates a forked child that
#: starts a parallel region when its parent had used OpenMP ("fork() called from a process
#: already using GNU OpenMP, this is unsafe"), so a child runs the bands serially.
_FORKED = {"child": False}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _FORKED.__setitem__("child", True))

#: A call on the helper pool is cut into parts of ``1 / (GUIDED_SPLIT * threads)`` of the rows
#: left (:mod:`kernels.pool`, OpenMP's guided schedule: large parts first, small ones last,
#: so that the caller can take the share of a helper that starts late, asleep or descheduled,
#: and waits at the end for at most a small part), each at least :data:`MIN_PART_ROWS` rows.
#: 1: the first part is half the rows on two threads. Measured against 2 (a quarter first, ~14
#: parts for 512 rows against ~7; each part costs ~0.3 us of claims and counts on the job's
#: cache line, moved between the cores): 1024^2 float32 on two threads, back to back, area 512
#: 49.8 -> 47.5 us, bilinear 700 150 -> 141, nearest 700 124 -> 119, the warps equal or faster
#: (``benchmarks/README.md``, "Session 12: ... (geom3)").
GUIDED_SPLIT = 1
#: Fewest rows in a part (fewer where the image has few rows: :func:`cut_for`).
MIN_PART_ROWS = 8
#: ``POOL["on"]``: bands run on the helper pool (:mod:`kernels.pool`; Linux, where its futex
#: exists), else in OpenMP regions. ``CVCORE_TEAM_POOL=0`` turns the pool off (for measuring).
POOL = {"on": os.environ.get("CVCORE_TEAM_POOL", "1") != "0"}
_pool_lock = threading.Lock()
PARTS_RUN = 3                # kernels.pool.PARTS_RUN (import cvcore stays light: no Numba)

_addresses: dict = {}        # (kernel, argument type keys) -> native address of the kernel
_entries: dict = {}          # argument type keys -> (trampoline address, int64 words of a copy)
_calls: dict = {}            # (kernel, arguments' fingerprint) -> what run_parts passes
_numba = {}                  # Numba's functions, looked up on first use (import cvcore stays light)


def _type_key(value):
    """A hashable key of ``value``'s Numba type: the fingerprint Numba's dispatcher keys its
    compiled versions by (C, ~0.1 us), or the type itself where Numba has no such function."""
    key = _numba.get("type_key")
    if key is None:
        try:
            from numba._dispatcher import compute_fingerprint as key
        except ImportError:  # pragma: no cover - another Numba: the slower public typeof
            from numba import typeof as key
        _numba["type_key"] = key
    return key(value)


def band_address(kernel, args) -> int:
    """The address of ``kernel``'s native function compiled for the types of ``args``
    followed by ``y0, y1`` (``intp``), compiling it on first use (the same compiled version a
    direct call ``kernel(*args, y0, y1)`` uses). Keyed by the kernel and the exact Numba types
    of the arguments (dtype, dimensions, layout, writeability), so a read-only image gets the
    version compiled for read-only arrays, as from a direct call."""
    key = (kernel, tuple(map(_type_key, args)))
    address = _addresses.get(key)
    if address is None:
        from numba import typeof, types

        sig = (*(typeof(a) for a in args), types.intp, types.intp)
        kernel.compile(sig)
        compiled = kernel.overloads[sig]
        if compiled.signature.return_type != types.none:
            raise TypeError(f"{kernel.__name__}: a band kernel must return nothing "
                            f"(returns {compiled.signature.return_type})")
        address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
        if not address:
            raise RuntimeError(f"no native address for {kernel} {sig}")
        _addresses[key] = address
    return address


def entry(args) -> tuple[int, int]:
    """``(address, words)``: the address of :func:`kernels.team.trampoline` compiled for a
    pointer to the tuple type of ``args`` (compiled on first use, once per tuple of argument
    types, whatever the kernel), and how many int64 words hold a copy of the tuple's native
    form (:func:`kernels.team.store_args`)."""
    key = tuple(map(_type_key, args))
    found = _entries.get(key)
    if found is None:
        from numba import typeof, types
        from numba.core.registry import cpu_target

        from kernels.team import trampoline

        tuple_type = typeof(args)
        sig = (types.int64, types.CPointer(tuple_type), types.intp, types.intp)
        trampoline.compile(sig)
        compiled = trampoline.overloads[sig]
        address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
        if not address:
            raise RuntimeError(f"no native address for the trampoline of {tuple_type}")
        context = cpu_target.target_context
        size = context.get_abi_sizeof(context.data_model_manager[tuple_type].get_data_type())
        found = _entries[key] = (address, -(-size // 8))
    return found


def bands_for(n_rows: int, work: int) -> tuple[int, int]:
    """``(bands, threads)``: ``threads`` is Numba's thread count; ``bands`` is 1 below
    :data:`cvcore._bands.MIN_PARALLEL_PIXELS` units of ``work``, else ``threads`` capped at the
    free cores (:func:`cvcore._threads.usable_threads`, the band runner's rule) and at the
    rows."""
    threads = numba_threads()
    if threads == 1 or work < MIN_PARALLEL_PIXELS:
        return 1, threads
    return max(1, min(usable_threads(threads), n_rows)), threads


def run_team(kernel, n_rows: int, work: int, *args) -> int:
    """``kernel(*args, r0, r1)`` over bands covering ``range(n_rows)``; returns the number of
    bands (band ``b`` starts at row ``n_rows * b // bands``).

    ``work`` (in units of the caller's, as :func:`cvcore._bands.run_bands`' ``row_pixels``
    times the rows) decides with the free cores how many threads (:func:`bands_for`). One is
    a plain call in this thread. More run on the helper pool (:func:`run_pooled`, where the
    caller never waits for a helper that is asleep), or, where the pool cannot run (no
    futex; another thread of this process is using it), in one OpenMP region, one band per
    thread (:func:`run_openmp`).
    """
    if work < MIN_PARALLEL_PIXELS or _FORKED["child"]:
        kernel(*args, 0, n_rows)               # (bands_for's first test, without its call)
        return 1
    bands, threads = bands_for(n_rows, work)
    if bands == 1:
        kernel(*args, 0, n_rows)
        return 1
    pool = _the_pool() if POOL["on"] else None
    if pool is not None and pool.lock.acquire(False):
        try:
            return run_pooled(pool, kernel, n_rows, bands, args)
        finally:
            pool.lock.release()
    return run_openmp(kernel, n_rows, bands, threads, args)


def run_openmp(kernel, n_rows: int, bands: int, threads: int, args) -> int:
    """:func:`run_parts` with one band per thread, on a team of ``bands`` threads.

    Fewer bands than threads: Numba's thread count is set to ``bands`` for the call, as a team
    of more threads wakes a thread that has nothing to do and waits for it at the region's end
    (measured 9 us for a 32 x 32 block mean against 2 us; setting the count and back costs
    2-5 us). A band that raised is not reported by the region (:func:`kernels.team.call_band`),
    so then the whole call runs again in this thread, where the kernel raises its exception
    (the kernel is deterministic; should it not raise again, its rows are simply computed).
    """
    if bands >= threads:
        run_parts(kernel, n_rows, bands, *args)
        return bands
    import numba

    numba.set_num_threads(bands)
    try:
        run_parts(kernel, n_rows, bands, *args)
    finally:
        numba.set_num_threads(threads)
    return bands


def cut_for(n_rows: int, threads: int) -> tuple[int, int]:
    """``(divisor, min_rows)`` of a pooled call on ``threads`` threads: each part is ``1 /
    divisor`` of the rows left, at least ``min_rows`` (:data:`MIN_PART_ROWS`, fewer for an
    image of few rows, so that every thread can get two parts)."""
    divisor = GUIDED_SPLIT * threads
    return divisor, max(1, min(MIN_PART_ROWS, n_rows // (2 * divisor)))


def run_pooled(pool, kernel, n_rows: int, threads: int, args) -> int:
    """The call on the helper pool (:mod:`kernels.pool`): cut into parts (:func:`cut_for`)
    that this thread and up to ``threads - 1`` helpers take one by one; returns the number of
    parts run.
    ``pool.lock`` is held by the caller. A part that raised is only counted, so then the whole
    call runs again in this thread, where the exception reaches Python."""
    key = (kernel, _type_key(args))
    found = _calls.get(key)
    if found is None:
        import kernels.team as team

        trampoline, words = entry(args)
        found = _calls[key] = (team, trampoline, band_address(kernel, args), words)
    team, trampoline, address, words = found
    divisor, min_rows = cut_for(n_rows, threads)
    copy = np.empty(words, np.int64)       # the arguments' native form, alive for the call
    pool.start(threads - 1)
    job = pool.job
    if pool.run_job(job, trampoline, address, team.store_args(copy, args), n_rows, divisor,
                    min_rows, threads - 1, pool.polls):
        kernel(*args, 0, n_rows)     # an exception in a part, only counted: raised here
    return int(job[PARTS_RUN])


class _Pool:
    """The helper threads of :mod:`kernels.pool` and their job words; one per process,
    started on first use (:func:`_the_pool`), a thread added when a call wants more."""

    def __init__(self):
        import kernels.pool as native

        from cvcore._bands import SPIN_SECONDS, spin_polls

        self.pid = os.getpid()
        self.lock = threading.Lock()         # one job at a time
        self.job = np.zeros(native.JOB_WORDS, np.int64)
        self.run_job = native.run_job
        self.serve = native.serve
        self.polls = spin_polls(SPIN_SECONDS)   # the band runner's spin, calibrated the same way
        self.threads = 0

    def start(self, helpers: int):
        """At least ``helpers`` helper threads (each spends its life in native code)."""
        while self.threads < helpers:
            self.threads += 1
            threading.Thread(target=self.serve, args=(self.job, self.threads, self.polls),
                             daemon=True, name=f"cvcore-team-{self.threads}").start()


_pools: dict = {}


def _the_pool():
    """This process's :class:`_Pool`, or None where :mod:`kernels.pool` cannot run (no futex
    system call: then ``POOL["on"]`` is switched off)."""
    pool = _pools.get("pool")
    if pool is None or pool.pid != os.getpid():
        with _pool_lock:
            pool = _pools.get("pool")
            if pool is None or pool.pid != os.getpid():
                import kernels.pool as native

                if not native.HAS_FUTEX:
                    POOL["on"] = False
                    return None
                pool = _pools["pool"] = _Pool()
    return pool


def run_parts(kernel, n: int, parts: int, *args) -> None:
    """``kernel(*args, i0, i1)`` over ``parts`` contiguous parts ``[n * p // parts, n * (p + 1)
    // parts)`` of ``range(n)``, in one OpenMP region of Numba's current team
    (:func:`kernels.team.run_team`; one part per thread when ``parts`` is the thread count);
    one call in this thread when ``parts < 2`` or in a forked child (:data:`_FORKED`).

    The mechanism under :func:`run_team` (bands of image rows, their number chosen here) and
    :func:`cvcore.nn._lanes.run_lanes` (a network kernel's work units, in lanes). A part that
    raised is only flagged by the region (:func:`kernels.team.run_team`), so then the whole
    call runs again in this thread, where the kernel raises its exception (the kernel is
    deterministic; should it not raise again, its outputs are simply computed).
    """
    if parts < 2 or _FORKED["child"]:
        kernel(*args, 0, n)
        return
    key = (kernel, _type_key(args))          # one fingerprint of the whole tuple: ~0.3 us
    found = _calls.get(key)
    if found is None:
        import kernels.team as team

        trampoline, words = entry(args)
        found = _calls[key] = (team, trampoline, band_address(kernel, args), words)
    team, trampoline, address, words = found
    copy = np.empty(words, np.int64)       # the arguments' native form, alive for the region
    failed = np.zeros(1, np.int64)
    team.run_team(trampoline, address, team.store_args(copy, args), n, parts, failed)
    if failed[0]:
        kernel(*args, 0, n)     # an exception in a part, dropped by the region: raised here
