"""Running a row kernel over an image in bands of rows on several threads, as OpenCV's
``parallel_for_`` runs its filter engine over horizontal stripes.

The filter kernels (:mod:`kernels.conv`, :mod:`kernels.filters`, :mod:`kernels.edges`) are
serial ``nogil`` Numba functions that compute the output rows ``[r0, r1)`` of an image; every
output row depends only on the input, so any split of the rows gives the same result, bit for
bit. :func:`run_bands` splits the rows into a few bands per thread and lets the calling thread
and up to ``numba.get_num_threads() - 1`` pool threads take bands from a shared counter until
none is left.

Why not ``parallel=True`` and ``prange`` in the kernels:

* **Compile time.** Each ``prange`` loop is compiled into a gufunc module of its own: a filter
  kernel compiled with ``parallel=True`` costs twice the CPU time of the same body serial
  (measured on ``median3x3``: 2.7 s against 1.4 s; ``gradient3x3``: 3.9 s against 1.7 s), and
  the user waits for it on the first call.
* **A busy machine.** An OpenMP region ends at a barrier that waits for every thread of the
  team; when another process holds a core, the call waits for a descheduled thread
  (``cvcore/_threads.py`` measures it). Here two things keep a call from waiting for a thread
  that cannot run. Before the call, :func:`band_threads` caps the threads at the cores no
  other process's task wants (:func:`cvcore._threads.usable_threads`, a few microseconds:
  this process's own threads, OpenCV's or PyTorch's pool threads spinning after their own
  calls among them, are not competitors). During the call, the
  bands are taken dynamically: a pool thread that gets no core takes no band, the caller takes
  them all and waits only for bands that were actually started.

The pool is created on first use, one per process (re-created after a ``fork``: the child
has no pool threads, and since the caller never waits for a band nobody started, a stale pool
would not hang it either).
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

#: Bands per thread: more than one, so a thread that starts late (or is descheduled) costs
#: the others at most a band's time, not half the image.
BANDS_PER_THREAD = 4
#: Below this many output pixels a call runs in the calling thread alone: handing a band to
#: another thread costs ~10-20 us, the time of ~50 000 pixels of the cheapest filter.
MIN_PARALLEL_PIXELS = 1 << 16
#: Fewest rows in a band (kernels with a ring of source rows refill it once per band).
MIN_BAND_ROWS = 16

_pool_lock = threading.Lock()
_pool: dict = {"pid": None, "executor": None, "workers": 0}


def _after_fork_in_child():
    """A forked child has none of the parent's pool threads (and a lock another thread held
    at the fork would stay held): start from scratch."""
    global _pool_lock
    _pool_lock = threading.Lock()
    _pool.update(pid=None, executor=None, workers=0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _executor(workers: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if _pool["pid"] != os.getpid() or _pool["workers"] < workers:
            # A new process has none of the parent's threads; a larger thread count needs
            # more workers (the old executor's idle threads exit when it shuts down).
            old = None if _pool["pid"] != os.getpid() else _pool["executor"]
            _pool.update(pid=os.getpid(), workers=workers,
                         executor=ThreadPoolExecutor(workers, thread_name_prefix="cvcore-band"))
            if old is not None:
                old.shutdown(wait=False)
        return _pool["executor"]


def band_threads() -> int:
    """Threads a band run uses: Numba's current thread count (``numba.set_num_threads``,
    ``NUMBA_NUM_THREADS``: one setting governs every cvcore kernel), capped at the free cores
    by the rule :func:`network_call` uses too (:func:`cvcore._threads.usable_threads`: other
    processes' runnable tasks compete, this process's threads do not; a few microseconds;
    ``CVCORE_ADAPTIVE_THREADS=0`` switches the cap off)."""
    import numba

    from cvcore._threads import usable_threads
    return usable_threads(numba.get_num_threads())


def run_bands(kernel, n_rows: int, row_pixels: int, *args) -> None:
    """Call ``kernel(*args, r0, r1)`` for bands ``[r0, r1)`` covering ``range(n_rows)``.

    ``row_pixels`` (pixels per row of output, a measure of the work) decides whether the call
    is worth splitting. The bands run on the calling thread and on pool threads, each taking
    the next band from a shared counter, so every band runs exactly once; the call returns
    when all have finished. ``kernel`` should release the GIL (``nogil=True``) and must write
    only its own rows; an exception raised in any band is raised here once all bands are done.
    """
    if n_rows * row_pixels < MIN_PARALLEL_PIXELS or n_rows < 2 * MIN_BAND_ROWS:
        kernel(*args, 0, n_rows)
        return
    threads = band_threads()
    if threads <= 1:
        kernel(*args, 0, n_rows)
        return
    n_bands = max(2, min(threads * BANDS_PER_THREAD, n_rows // MIN_BAND_ROWS))
    bounds = [n_rows * b // n_bands for b in range(n_bands + 1)]
    counter = itertools.count()          # next() on it is atomic under the GIL
    done = threading.Semaphore(0)
    errors = []                          # raised in a pool thread: re-raised by the caller

    def take():
        while True:
            b = next(counter)
            if b >= n_bands:
                return
            try:
                kernel(*args, bounds[b], bounds[b + 1])
            except BaseException as exc:       # e.g. a dispatcher refusing the arguments
                errors.append(exc)
            finally:
                done.release()

    pool = _executor(threads - 1)
    for _ in range(threads - 1):
        pool.submit(take)
    take()
    # Every band index below n_bands was taken by someone; wait for exactly those.
    for _ in range(n_bands):
        done.acquire()
    if errors:
        raise errors[0]
