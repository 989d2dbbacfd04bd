"""Choosing how many Numba threads a call uses.

Two rules, both about not waiting for a thread that cannot run:

* small work runs on one thread (:func:`threads_for`): waking and joining the thread team costs
  more than the work;
* a network call runs on no more threads than there are free cores (:func:`usable_threads`,
  applied by :func:`network_call` around every outermost :class:`cvcore.nn.Module` forward, and
  by Harris corners and the large-image HOG descriptor around their kernels; the filters, Canny,
  SIFT and scikit-image HOG run serial band kernels on threads instead, under the same cap,
  through :func:`cvcore._bands.run_bands`, and the resizes and warps run theirs on a native
  helper pool, in parts taken by up to the usable threads, through
  :func:`cvcore._team.run_team`). Only where the result does not depend on the number of
  threads: a network's backward sums weight gradients over the batch in per-thread partial
  sums, whose last bits change with the thread count, so it keeps the user's thread count and
  training stays reproducible (``tests/test_threads.py``).

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
(``/proc/loadavg``, fourth field, one ``pread`` of a file kept open) minus the calling thread and
every other thread of this process that is on a CPU right now (:func:`own_on_cpu`: a thread
whose CPU-time clock advances between two readings). This process's threads are never
competitors: they are its own pool threads still spinning after the previous call, or OpenCV's
or PyTorch's pool threads spinning after their own calls (as in every benchmark that runs
cvcore beside them), which give the core back within a spin; counting them, as an earlier rule
did, often found no free core where two were. Other processes' tasks are, and they are what
make a barrier wait for a descheduled thread, but only those that hold a core: the count is
capped at the cores the caller and this process's threads on a CPU leave. A task beyond the cap
is waiting for a core, either one another competitor holds (counted already) or one of this
process's (its pool thread spinning after a region, which gives the core back when its spin
ends). On the idle 2-core machine that wait was what the rule saw: in the benchmark's process,
right after a region, a kernel worker or the sandbox's agent woke and waited 20-270 us for the
spinning pool thread's core; 12-23 % of readings counted it, and the benchmark's ResNet-20
training step ran part of its forward on one thread in 2-4 of 5 calls (``benchmarks/README.md``,
session 14). Under a spinning process, another PyTorch job or a stream of short processes, the
capped count sees the competitor in 98-100 % of readings as the uncapped one did. Unless this
thread runs under a real-time policy (``SCHED_FIFO`` or ``SCHED_RR``, as under ``chrt -f 1``;
its pool threads inherit it): then no normal task can take its core, and only other real-time
tasks could, which ``/proc/loadavg`` does not tell apart, so none is counted (:func:`realtime`).
The whole reading costs a few microseconds (about 2 us for ``/proc/loadavg``, 0.4 us per thread
clock read; the list of this process's threads is kept for :data:`TASK_LIST_REFRESH_S`), where
listing every thread's ``/proc/self/task/*/stat`` cost 30-300 us. A reading is kept for
:data:`REFRESH_S` and the smaller count of competitors of the last two readings is used, so one
transient task (a kernel worker waking up) does not take a core away. Where ``/proc`` is absent
the count is not limited. Both :func:`network_call` and the band runner (:func:`cvcore._bands.band_threads`)
use this one rule.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time

#: Seconds a reading of the machine's load is reused (a fresh one costs a few microseconds).
REFRESH_S = 0.01
#: Seconds the list of this process's threads (``/proc/self/task``, ~7 us to list) is reused.
TASK_LIST_REFRESH_S = 0.1
#: ``CVCORE_ADAPTIVE_THREADS=0`` turns the free-core rule off (for measuring it).
ADAPTIVE = os.environ.get("CVCORE_ADAPTIVE_THREADS", "1") != "0"
#: Linux's clock id of a thread's CPU time, from its thread id (``MAKE_THREAD_CPUCLOCK`` in
#: the kernel's ``include/linux/posix-timers_types.h``; glibc's ``pthread_getcpuclockid``
#: makes the same): ``(~tid << 3) | CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED``.
CPUCLOCK_PERTHREAD_MASK, CPUCLOCK_SCHED = 4, 2

_local = threading.local()
_lock = threading.Lock()
_reading = {"time": -1.0, "others": (0, 0)}
_tasks = {"time": -1.0, "clocks": {}}          # thread id -> its CPU-time clock id
_loadavg = {"fd": None}
_online = {"count": None}


def runnable_tasks() -> int | None:
    """Runnable tasks on the machine right now, the calling thread included (``/proc/loadavg``,
    fourth field ``running/total``, one ``pread`` of a file kept open: ~2 us); None where it
    cannot be read."""
    try:
        if _loadavg["fd"] is None:     # pread ignores the file offset: a forked child may share it
            _loadavg["fd"] = os.open("/proc/loadavg", os.O_RDONLY)
        return int(os.pread(_loadavg["fd"], 128, 0).split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _thread_clock(tid: int) -> int:
    return ((~tid) << 3) | CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED


def own_on_cpu() -> int:
    """Threads of this process other than the calling one that are on a CPU right now: those
    whose CPU-time clock advances between two readings (the kernel brings a running thread's
    clock up to date when it is read). Costs ~0.8 us per thread of the process."""
    now = time.monotonic()
    if now - _tasks["time"] >= TASK_LIST_REFRESH_S:
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except (OSError, ValueError):
            return 0
        _tasks["clocks"] = {t: _thread_clock(t) for t in tids}
        _tasks["time"] = now
    me = threading.get_native_id()
    clocks = [c for t, c in _tasks["clocks"].items() if t != me]
    read = time.clock_gettime_ns
    first = []
    for clock in clocks:
        try:
            first.append(read(clock))
        except OSError:                         # the thread has exited
            first.append(None)
    count = 0
    for clock, before in zip(clocks, first):
        try:
            count += before is not None and read(clock) != before
        except OSError:
            pass
    return count


_REALTIME = tuple(getattr(os, name) for name in ("SCHED_FIFO", "SCHED_RR") if hasattr(os, name))


def realtime() -> bool:
    """Whether the calling thread runs under a real-time scheduling policy (~0.2 us)."""
    try:
        return os.sched_getscheduler(0) in _REALTIME
    except (AttributeError, OSError):
        return False


def other_runnable() -> int | None:
    """Tasks on a CPU right now that are not threads of this process (:func:`own_on_cpu`) nor
    the calling thread: the machine's runnable tasks minus those, capped at the cores the caller
    and this process's threads on a CPU leave (the online cores, :func:`_cores`), since a task
    beyond that is waiting for a core, not holding one; 0 for a real-time thread
    (:func:`realtime`: normal tasks cannot take its core). None where ``/proc/loadavg`` cannot
    be read."""
    if realtime():
        return 0
    running = runnable_tasks()
    if running is None:
        return None
    if running <= 1:                          # only the thread reading it
        return 0
    own = own_on_cpu()
    online = _cores()[1]
    return max(0, min(running - 1 - own, online - 1 - own))


def _cores() -> tuple[int, int]:
    """Cores the calling thread may run on (its affinity mask, which may change: read again
    after :data:`REFRESH_S`, kept per thread, as ``sched_getaffinity`` cost 0.4 us of a 1.2 us
    :func:`usable_threads`), and cores the machine has online (read once: ``os.cpu_count``
    costs ~12 us here)."""
    now = time.monotonic()
    kept = getattr(_local, "cores", None)
    if kept is not None and now - kept[0] < REFRESH_S:
        return kept[1], kept[2]
    if _online["count"] is None:
        _online["count"] = os.cpu_count() or 1
    online = _online["count"]
    try:
        mine = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        mine = online
    _local.cores = (now, mine, online)
    return mine, online


_getter: dict = {}           # the threading layer's own thread-count getter


def numba_threads() -> int:
    """``numba.get_num_threads()`` (this thread's setting) for 0.1 us instead of 0.7: after
    the first call, which starts Numba's threading layer, the layer's own getter is called
    directly (the public function checks the start-up under two locks every time)."""
    get = _getter.get("threads")
    if get is None:
        import numba

        numba.get_num_threads()              # starts the threading layer
        try:
            from numba.np.ufunc.parallel import _get_num_threads as get
        except ImportError:  # pragma: no cover - another Numba: the public function
            get = numba.get_num_threads
        _getter["threads"] = get
    return get()


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
    if now - _reading["time"] >= REFRESH_S:   # else the kept reading, without the lock
        with _lock:
            if now - _reading["time"] >= REFRESH_S:
                others = other_runnable()
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
    on exit). Nested uses keep the outermost call's; :func:`renew_network_threads` decides
    again inside it once the reading has aged."""
    if getattr(_local, "active", False):
        yield
        return
    import numba
    before = numba.get_num_threads()
    use = usable_threads(before)
    _local.active = True
    _local.cap, _local.use = before, use
    try:
        if use != before:
            numba.set_num_threads(use)
        yield
    finally:
        _local.active = False
        if _local.use != before:
            numba.set_num_threads(before)


def renew_network_threads() -> None:
    """Inside :func:`network_call`, between two steps of a network (the containers call it
    before each child): decide the thread count again when the load reading it rests on is
    :data:`REFRESH_S` old. Outside, or with a fresh reading, it returns at once (~0.2 us).

    One reading at the outermost call bound the whole forward pass to it: a ResNet-20
    training step's forward at batch 128 is ~100 ms on two threads and ~190 on one, so one
    transient task seen at its start (a kernel worker, a shell) cost it ~90 ms, and the same
    step read 297-398 ms over three quiet runs of ``benchmarks.cnn`` (torch 252-276). Now such a
    reading costs at most the steps up to the next one, :data:`REFRESH_S` later; a lasting load
    is seen as before."""
    if not getattr(_local, "active", False) or time.monotonic() - _reading["time"] < REFRESH_S:
        return
    use = usable_threads(_local.cap)
    if use != _local.use:
        import numba
        numba.set_num_threads(use)
        _local.use = use


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
