"""Choosing how many Numba threads a call uses.

Two rules, both about not waiting for a thread that cannot run:

* small work runs on one thread (:func:`threads_for`): waking and joining the thread team costs
  more than the work;
* a network call runs on no more threads than there are free cores (:func:`usable_threads`,
  applied by :func:`network_call` around every outermost :class:`cvcore.nn.Module` forward, and
  by Harris corners and the large-image HOG descriptor around their kernels; the filters, Canny,
  resizes, warps, SIFT and scikit-image HOG run serial band kernels on threads instead, under
  the same cap, through :func:`cvcore._bands.run_bands`). Only where the result
  does not depend on the number of threads: a network's backward sums weight gradients over the
  batch in per-thread partial sums, whose last bits change with the thread count, so it keeps the
  user's thread count and training stays reproducible (``tests/test_threads.py``).

Why the second rule. Every Numba parallel region ends at an OpenMP barrier that waits for every
thread of the team. A ResNet launches a few hundred regions per call (each convolution, batch
norm and activation is one or two), each 0.05-1 ms of work. When another process holds a core,
the team's second thread is descheduled for a scheduler slice (milliseconds) at some of those
barriers, and the first spins, then sleeps, waiting for it: the call becomes a chain of
scheduling delays. Measured on the 2-core machine of ``benchmarks/README.md`` at load 10 (a
Numba region of 10 us of work per thread, 2 threads vs 1): 2650 us wall and 525 us of CPU per
region with GNU OpenMP's short spin (``GOMP_SPINCOUNT=10000``), 9280 us / 1176 us with its
default spin, 224 us / 20 us with passive waiting, 68 us / 12 us on one thread. So when no core
is free, one thread is fastest, whatever the wait policy; and the wait policy is not even ours to
choose in every process: when PyTorch is imported before cvcore, Numba's OpenMP calls bind to
PyTorch's own libgomp (loaded globally, with its default spin read at import), so the short spin
of :mod:`kernels` does not apply there.

The free cores are counted from the kernel's instantaneous count of runnable tasks
(``/proc/loadavg``, fourth field) minus the calling thread and its would-be team among this
process's running threads (a pool thread still spinning after the previous region is ours, not
a competitor), over the cores this process may run on (``os.sched_getaffinity``). A reading is kept for :data:`REFRESH_S` and the smaller count of
competitors of the last two readings is used, so one transient task (a kernel worker waking up)
does not take a core away. Where ``/proc`` is absent the count is not limited.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time

#: Seconds a reading of the machine's load is reused (one reading costs 30-300 us).
REFRESH_S = 0.01
#: ``CVCORE_ADAPTIVE_THREADS=0`` turns the free-core rule off (for measuring it).
ADAPTIVE = os.environ.get("CVCORE_ADAPTIVE_THREADS", "1") != "0"

_local = threading.local()
_lock = threading.Lock()
_reading = {"time": -1.0, "others": (0, 0)}


def _own_running() -> int:
    """Threads of this process in state R (running or runnable) right now."""
    count = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:                       # the thread has just exited
            continue
        end = stat.rfind(b")")                # the name may hold spaces and parentheses
        if stat[end + 2:end + 3] == b"R":
            count += 1
    return max(count, 1)


def other_runnable(team: int = 1) -> int | None:
    """Runnable tasks on the machine, right now, other than the calling thread and up to
    ``team`` other running threads of this process (the thread pool's workers, which may still
    be spinning after the previous parallel region: they are the team a call is about to use,
    not competitors; any further running thread of this process, a data loader say, is one).
    None where ``/proc/loadavg`` cannot be read."""
    try:
        with open("/proc/loadavg", "rb") as fh:
            running = int(fh.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None
    if running <= 1:                          # only the thread reading it
        return 0
    return competitors(running, _own_running(), team)


def competitors(running: int, own: int, team: int) -> int:
    """Of ``running`` runnable tasks, those that are neither the calling thread nor up to
    ``team`` of the ``own - 1`` other running threads of this process."""
    return max(0, running - 1 - min(max(own - 1, 0), team))


def _cores() -> tuple[int, int]:
    """Cores this process may run on, and cores the machine has online."""
    online = os.cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0)), online
    except (AttributeError, OSError):
        return online, online


def usable_threads(cap: int) -> int:
    """How many of ``cap`` threads a call should use now: ``min(cap, max(1, free cores))``.

    A core is free when no other task wants it: free = cores of this process's affinity mask
    minus the other runnable tasks (:func:`other_runnable`; the smaller count of the last two
    readings, each kept for :data:`REFRESH_S` seconds). The count is machine-wide; where the
    process may run on only some of the online cores (a cpuset), the competitors are taken as
    spread evenly over all of them.
    """
    if cap <= 1 or not ADAPTIVE:
        return cap
    now = time.monotonic()
    with _lock:
        if now - _reading["time"] >= REFRESH_S:
            others = other_runnable(cap - 1)
            if others is None:
                return cap
            _reading["others"] = (_reading["others"][1], others)
            _reading["time"] = now
        others = min(_reading["others"])
    mine, online = _cores()
    if mine < online:
        others = others * mine // online
    return min(cap, max(1, mine - others))


def in_network_call() -> bool:
    """True inside :func:`network_call` on this thread (the outermost call decided)."""
    return getattr(_local, "active", False)


@contextlib.contextmanager
def network_call():
    """Run the enclosed kernels on :func:`usable_threads` of the current Numba thread count
    (the user's setting, e.g. ``numba.set_num_threads``, stays the upper bound and is restored
    on exit). Nested uses keep the outermost decision."""
    if getattr(_local, "active", False):
        yield
        return
    import numba
    before = numba.get_num_threads()
    use = usable_threads(before)
    _local.active = True
    try:
        if use != before:
            numba.set_num_threads(use)
        yield
    finally:
        _local.active = False
        if use != before:
            numba.set_num_threads(before)


@contextlib.contextmanager
def threads_for(parallel: bool):
    """Run the enclosed kernels on one thread unless ``parallel``.

    Small work (a small image, an octave of few pixels, a handful of keypoints) takes less time
    than waking and joining the thread team, most of all on a machine whose cores are busy; the
    caller decides what counts as small.
    """
    if parallel:
        yield
        return
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)
