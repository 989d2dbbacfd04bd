"""Running a row kernel over an image in bands of rows on several threads, as OpenCV's
``parallel_for_`` runs its filter engine over horizontal stripes.

The filter kernels (:mod:`kernels.conv`, :mod:`kernels.filters`, :mod:`kernels.edges`, and the
SIFT, HOG and some nn kernels) are serial ``nogil`` Numba functions that compute
the output rows ``[r0, r1)`` of an image; every output row depends only on the input, so any
split of the rows gives the same result, bit for bit. :func:`run_bands` splits the rows into a
few bands per thread and lets the calling thread and up to ``threads - 1`` pool threads take
bands from a shared counter until none is left.

Why not ``parallel=True`` and ``prange`` in the kernels (the resizes and warps do run their band
kernels on other threads, :mod:`cvcore._team`, through the kernel's address, which costs
no second compile of the kernel but one small trampoline per tuple of argument types):

* **Compile time.** Each ``prange`` loop is compiled into a gufunc module of its own: a filter
  kernel compiled with ``parallel=True`` costs twice the CPU time of the same body serial
  (measured on ``median3x3``: 2.7 s against 1.4 s; ``gradient3x3``: 3.9 s against 1.7 s), and
  the user waits for it on the first call.
* **A busy machine.** An OpenMP region ends at a barrier that waits for every thread of the
  team; when another process holds a core, the call waits for a descheduled thread
  (``cvcore/_threads.py`` measures it). Here two things keep a call from waiting for a thread
  that cannot run. Before the call, :func:`band_threads` caps the threads at the cores no
  other process's task holds (:func:`cvcore._threads.usable_threads`, a few microseconds:
  this process's own threads, OpenCV's or PyTorch's pool threads spinning after their own
  calls among them, are not competitors). During the call, the bands are taken dynamically: a
  pool thread that gets no core takes no band, the caller takes them all and waits only for
  bands that were actually started.

The hand-off. A thread asleep in the kernel takes 30-80 us to wake on the 2-core virtual
machine of ``benchmarks/README.md`` (the futex wake, an inter-processor interrupt through the
hypervisor, the idle vCPU leaving ``hlt``); handing bands to a ``ThreadPoolExecutor`` cost
0.1-0.15 ms per call there, as much as a 512 x 512 resize. So the pool threads here do what an
OpenMP runtime's do: after a call's last band each keeps polling a word of memory (without the
GIL, :func:`kernels.bands.leave_and_wait`) for :data:`SPIN_SECONDS` before it sleeps on a
lock; a call bumps the word (and releases the lock only of a thread that did go to sleep), so
back-to-back calls find their helpers awake. The caller waits for the bands it did not run the
same way: polling their done flags for at most :data:`SPIN_SECONDS`, then sleeping until the
last one is done. The spin is bounded by a count of polls calibrated once per process
(:func:`spin_polls`), as ``GOMP_SPINCOUNT`` bounds OpenMP's.

The GIL. A pool thread needs the GIL to start a band (the kernel's dispatcher is Python) and to
get back to its poll after the last one; a thread that asks for the GIL while another holds it
sleeps on it, and the 30-80 us wake-up is then paid again. So neither side asks for it while the
other is about to hold it: a pool thread that sees a new call polls :data:`SETTLE_SECONDS` more
(the caller holds the GIL until its own kernel starts), and the caller, after its last band,
waits without the GIL until every pool thread that joined the call is back in its poll
(:func:`kernels.bands.wait_job`; each pool thread marks the call it is in, ``_Pool.words``).

One pool per process, created on first use, safe to call from several threads at once (each
call is a job of its own; helpers join the newest). A forked child gets a pool of its own
(``os.register_at_fork``: the child has none of the parent's threads; since the caller never
waits for a band nobody started, a stale pool would not hang it either).
"""
from __future__ import annotations

import itertools
import os
import threading
import time

import numpy as np

#: Bands per thread: more than one, so a thread that starts late (or is descheduled) costs
#: the others at most a band's time, not half the image.
BANDS_PER_THREAD = 4
#: Below this many output pixels a call runs in the calling thread alone: a hand-off to a
#: polling pool thread costs a few microseconds, to a sleeping one 30-80 us on the machine of
#: ``benchmarks/README.md``, the time of 20 000-60 000 pixels of the cheapest filter.
MIN_PARALLEL_PIXELS = 1 << 16
#: A call above :data:`MIN_PARALLEL_PIXELS` is still run in the caller alone when its kernel's
#: measured cost says it takes less than this on one thread. Callers state their work in units
#: of their own (a pixel, a pixel times taps, ...), whose cost differs 5x between rooms; so
#: each kernel's CPU seconds per unit are learned from the calls themselves (:func:`_learn`).
#: The value is the break-even measured on the 2-core VM of ``benchmarks/README.md`` (section
#: "The band runner and the free-core rule"): with the hand-off's ~30-100 us, a Sobel
#: derivative or a 3x3 median under ~0.2 ms of one-thread work lost on two threads, a Gaussian,
#: a 5x5 correlation or a resize from ~0.2 ms up gained.
MIN_PARALLEL_SECONDS = 150e-6
#: Weight of the newest measurement in a kernel's running cost (an exponential average).
COST_SMOOTHING = 0.25
#: Fewest rows in a band (kernels with a ring of source rows refill it once per band).
MIN_BAND_ROWS = 16
#: How long a pool thread keeps polling for the next call after a call's last band, and the
#: caller for the pool's bands, before each sleeps on a lock. Of the order of GNU OpenMP's short
#: spin (``GOMP_SPINCOUNT=10000`` polls, which :mod:`kernels` sets): long enough for
#: back-to-back calls (a filter chain, a pyramid, a network's layers) to find the pool awake,
#: short enough that a core is not held long after the last call. ``CVCORE_BAND_SPIN_US``
#: overrides it (``0``: never spin).
SPIN_SECONDS = float(os.environ.get("CVCORE_BAND_SPIN_US", "100")) * 1e-6
#: How long a pool thread that has just seen a new call keeps polling before it takes the GIL
#: to start a band: the caller still holds the GIL for a few microseconds after it publishes
#: the call (the Numba dispatcher checking its kernel's arguments), and a thread that asks for
#: the GIL meanwhile sleeps on it and wakes 10-80 us later. Measured at real-time priority on
#: the 2-core VM of ``benchmarks/README.md`` (a 0.2 ms kernel in 8 bands on two threads): 2 us
#: gave the shortest calls (117 against 132 us with none); 10 us was already slower than 2.
SETTLE_SECONDS = 2e-6
#: Polls timed to calibrate :func:`spin_polls` (a fraction of a millisecond, once).
CALIBRATION_POLLS = 4096


def _kernels():
    import kernels.bands
    return kernels.bands


_calibrated = {"polls_per_second": None}


def spin_polls(seconds: float) -> int:
    """How many polls of :func:`kernels.bands.leave_and_wait` take about ``seconds`` here
    (timed once per process: the fastest of three runs, so a run the scheduler interrupted
    does not count)."""
    if seconds <= 0:
        return 0
    rate = _calibrated["polls_per_second"]
    if rate is None:
        words = np.zeros(2, np.int64)
        wait = _kernels().leave_and_wait
        wait(words, 1, 0, 1, 0)                              # compile (or load) first
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            wait(words, 1, 0, CALIBRATION_POLLS, 0)
            best = min(best, time.perf_counter() - t0)
        rate = _calibrated["polls_per_second"] = CALIBRATION_POLLS / max(best, 1e-9)
    return max(1, int(seconds * rate))


class _Job:
    """One :func:`run_bands` call: its bands, a counter handing them out, a done flag per band
    (polled without the GIL by the caller) and the errors raised in them."""

    __slots__ = ("kernel", "args", "bounds", "n_bands", "next_band", "ticket", "helpers",
                 "done", "errors", "lock", "sleeper", "epoch")

    def __init__(self, kernel, args, bounds, helpers):
        self.kernel, self.args, self.bounds = kernel, args, bounds
        self.n_bands = len(bounds) - 1
        self.next_band = itertools.count().__next__   # atomic under the GIL
        self.ticket = itertools.count().__next__
        self.helpers = helpers                         # pool threads this call may use
        self.done = np.zeros(self.n_bands, np.int64)
        self.errors = []                               # re-raised by the caller
        self.lock = threading.Lock()
        self.sleeper = None                            # a lock the caller sleeps on, if it does
        self.epoch = 0                                 # the pool's number for it (publish)

    def take(self, mark=None) -> int:
        """Run bands until none is left; returns how many this thread ran. ``mark(done, b)``
        flags band ``b`` done (a pool thread flags it without the GIL,
        :func:`kernels.bands.set_flag`, so that the caller, polling, does not find the GIL
        still held and sleep for it)."""
        ran = 0
        while True:
            b = self.next_band()
            if b >= self.n_bands:
                return ran
            ran += 1
            try:
                self.kernel(*self.args, self.bounds[b], self.bounds[b + 1])
            except BaseException as exc:            # e.g. a dispatcher refusing the arguments
                self.errors.append(exc)
            finally:
                if mark is None:
                    self.done[b] = 1
                else:
                    mark(self.done, b)
                if self.sleeper is not None:
                    self._wake_caller()

    def help(self, words, slot: int):
        """A pool thread's part: bands, if this call still wants another helper. While in the
        call, the thread's word ``words[slot]`` holds the call's epoch (the thread clears it
        without the GIL once it is back in its idle wait, :func:`kernels.bands.leave_and_wait`)."""
        if self.ticket() < self.helpers:
            words[slot] = self.epoch
            self.take(_kernels().set_flag)

    def _wake_caller(self):
        with self.lock:
            if self.sleeper is not None and self.done.all():
                self.sleeper.release()
                self.sleeper = None

    def join(self, words, polls: int):
        """Return once every band is done (each was taken by somebody: the caller took the
        last ones), polling first, then asleep. The poll (:func:`kernels.bands.wait_job`,
        without the GIL) also waits, within the same bound, for every pool thread that joined
        the call to be back in its idle wait: a helper still running Python after its last
        band holds the GIL, and a caller that wants it then sleeps for a wake-up (30-80 us
        here), while a helper that finds the GIL taken sleeps on it instead of polling for the
        next call."""
        if _kernels().wait_job(self.done, words, self.epoch, polls):
            return
        # The gate is published first and the flags read after it, the reverse of a pool
        # thread's order (set its flag, then look for a gate: :meth:`take`), so one of the two
        # always sees the other. Read first and published after, a band that ended in between
        # (its helper saw no gate) left the caller asleep on a gate nobody would open: a
        # process idle forever (session 10's stopped benchmark run).
        gate = threading.Lock()
        gate.acquire()
        with self.lock:
            self.sleeper = gate
            if self.done.all():
                self.sleeper = None
                return
        gate.acquire()                              # released by whoever ends the last band


class _Pool:
    """Persistent helper threads that poll ``words[0]`` (the epoch, bumped for every job
    published) for a new job, then sleep. ``words[k]``, ``k >= 1``: the epoch of the job pool
    thread ``k`` is in, 0 while it is idle."""

    def __init__(self):
        import numba
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.words = np.zeros(1 + max(1, numba.config.NUMBA_NUM_THREADS), np.int64)
        self.job = None
        self.threads = 0
        self.sleepers = []                         # wake locks of helpers asleep
        self.polls = spin_polls(SPIN_SECONDS)
        self.settle = spin_polls(SETTLE_SECONDS)

    def publish(self, job: _Job, helpers: int):
        with self.lock:
            helpers = min(helpers, self.words.shape[0] - 1)
            while self.threads < helpers:
                self.threads += 1
                threading.Thread(target=self._help, args=(int(self.words[0]), self.threads),
                                 daemon=True, name=f"cvcore-band-{self.threads}").start()
            self.job = job
            job.epoch = int(self.words[0]) + 1
            self.words[0] = job.epoch
            woken, self.sleepers = self.sleepers[:helpers], self.sleepers[helpers:]
        for wake in woken:
            wake.release()

    def _help(self, seen: int, slot: int):
        wait = _kernels().leave_and_wait
        words = self.words
        wake = threading.Lock()
        wake.acquire()
        while True:
            epoch = wait(words, slot, seen, self.polls, self.settle)
            if epoch == seen:                      # nothing new for SPIN_SECONDS: sleep
                with self.lock:
                    asleep = words[0] == seen
                    if asleep:
                        self.sleepers.append(wake)
                if asleep:
                    wake.acquire()                 # released by publish()
                continue
            seen = epoch
            job = self.job
            if job is not None:
                job.help(words, slot)


_pool_lock = threading.Lock()
_pool = {"pool": None}


def _after_fork_in_child():
    """A forked child has none of the parent's pool threads (and a lock another thread held
    at the fork would stay held): start from scratch."""
    global _pool_lock
    _pool_lock = threading.Lock()
    _pool["pool"] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _the_pool() -> _Pool:
    pool = _pool["pool"]
    if pool is None or pool.pid != os.getpid():
        with _pool_lock:
            pool = _pool["pool"]
            if pool is None or pool.pid != os.getpid():
                pool = _pool["pool"] = _Pool()
    return pool


def band_threads() -> int:
    """Threads a band run uses: Numba's current thread count (``numba.set_num_threads``,
    ``NUMBA_NUM_THREADS``: one setting governs every cvcore kernel), capped at the free cores
    by the rule :func:`network_call` uses too (:func:`cvcore._threads.usable_threads`: other
    processes' tasks holding a core compete, this process's threads do not; a few microseconds;
    ``CVCORE_ADAPTIVE_THREADS=0`` switches the cap off)."""
    from cvcore._threads import numba_threads, usable_threads
    return usable_threads(numba_threads())


_cost: dict = {}                     # kernel -> CPU seconds per unit of work, learned


def _learn(kernel, seconds: float, units: float):
    """Fold one measurement (CPU seconds of the calling thread over ``units`` of work) into the
    kernel's running cost."""
    if units <= 0:
        return
    per_unit = seconds / units
    old = _cost.get(kernel)
    if old is None and len(_cost) > 4096:     # kernels made on the fly: keep the dict small
        _cost.clear()
    _cost[kernel] = per_unit if old is None else old + COST_SMOOTHING * (per_unit - old)


def run_bands(kernel, n_rows: int, row_pixels: int, *args) -> None:
    """Call ``kernel(*args, r0, r1)`` for bands ``[r0, r1)`` covering ``range(n_rows)``.

    ``row_pixels`` (pixels per row of output, a measure of the work) decides whether the call
    is worth splitting: at least :data:`MIN_PARALLEL_PIXELS` in all, and, once the kernel's
    cost per unit has been measured (the CPU time of the calling thread, on this call's
    bands), at least :data:`MIN_PARALLEL_SECONDS` of one-thread work. The bands run on the calling thread and on pool threads, each taking
    the next band from a shared counter, so every band runs exactly once; the call returns
    when all have finished. ``kernel`` should release the GIL (``nogil=True``) and must write
    only its own rows; an exception raised in any band is raised here once all bands are done.
    """
    work = n_rows * row_pixels
    if work < MIN_PARALLEL_PIXELS or n_rows < 2 * MIN_BAND_ROWS:
        kernel(*args, 0, n_rows)
        return
    per_unit = _cost.get(kernel)
    if per_unit is not None and per_unit * work < MIN_PARALLEL_SECONDS:
        threads = 1
    else:
        threads = band_threads()
    if threads <= 1:
        start = time.thread_time()
        kernel(*args, 0, n_rows)
        _learn(kernel, time.thread_time() - start, work)
        return
    n_bands = max(2, min(threads * BANDS_PER_THREAD, n_rows // MIN_BAND_ROWS))
    bounds = [n_rows * b // n_bands for b in range(n_bands + 1)]
    job = _Job(kernel, args, bounds, threads - 1)
    pool = _the_pool()
    start = time.thread_time()
    pool.publish(job, threads - 1)
    ran = job.take()
    _learn(kernel, time.thread_time() - start, work * ran / n_bands)
    job.join(pool.words, pool.polls)
    if job.errors:
        raise job.errors[0]
