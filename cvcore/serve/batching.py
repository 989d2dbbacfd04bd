"""Dynamic batching: requests that arrive close together run as one forward pass.

How it works (the scheme of TorchServe's ``batch_size`` / ``max_batch_delay`` and Triton's
dynamic batcher):

1. A request handler calls :meth:`Batcher.submit` with one prepared input; it waits (without
   blocking the event loop) for its own result.
2. One collector task per model takes the first waiting input, then keeps taking inputs until the
   batch holds ``max_batch_size`` of them or ``max_delay`` seconds have passed since the *first*
   one arrived, whichever comes first. Inputs that queued while the previous batch was running
   have already waited longer than the window, so a busy server sends full batches at once.
   The window is only worth waiting for when more inputs are on their way: requests announce
   themselves (:meth:`Batcher.announce`) while their upload is read and decoded, and when none is
   announced the batch leaves at once. So a lone request pays no batching delay (its latency is
   one forward pass plus the HTTP and decoding work), and concurrent ones share a pass.
3. The batch runs in a worker thread (``run_in_executor``): the event loop keeps accepting and
   decoding uploads meanwhile, and the Numba kernels of the forward pass release the GIL
   (``nogil=True``). Every result goes back to the future of its request. Given several
   executors, the collector starts the next batch on whichever is free, so several batches can
   run at once (one per executor); while one runs, the next starts only once the queue holds as
   many inputs as the largest running batch (or a full batch), so that a busy server's batches
   stay as large as with one executor instead of being split into small ones. With
   ``pipeline``, batches are capped at a share of the recent load so that one batch waits in
   the queue while the executors run (:meth:`Batcher._cap`).

Bounds: at most ``max_queue`` inputs wait (one more is refused with :class:`Overloaded`, which the
server turns into 503 with ``Retry-After``), and a request that waited ``timeout`` seconds gets
:class:`Timeout` and is dropped from the queue if it has not started.

``max_batch_size=1`` (or ``max_delay=0`` under light load) turns batching off: every request is
its own forward pass, in arrival order.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Callable

__all__ = ["Batcher", "Overloaded", "Timeout"]


#: Seconds per window over which :class:`Batcher` keeps the peak count of inputs in the server
#: (queued, running or announced); the larger of this window's and the previous one's is used:
#: long enough to span many batches, short enough to follow the load within half a second.
PEAK_WINDOW_S = 0.25
#: Smallest batch :meth:`Batcher._cap` cuts a load into so as to keep one batch queued beside
#: the running ones; below it the fixed cost of a forward pass outweighs the gain (see there).
MIN_PIPELINED_BATCH = 8


class Overloaded(Exception):
    """The queue is full: try again later (HTTP 503 with ``Retry-After``)."""


class Timeout(Exception):
    """A request waited longer than its timeout (HTTP 503 with ``Retry-After``)."""


class _Entry:
    __slots__ = ("item", "future", "arrived")

    def __init__(self, item, future, arrived):
        self.item = item
        self.future = future
        self.arrived = arrived


def _expire(future, timeout) -> None:
    if not future.done():
        future.set_exception(Timeout(f"no result within the request timeout of {timeout:g} s"))


class Batcher:
    """Collect single inputs into batches and run ``run_batch`` on them in a worker thread.

    Parameters
    ----------
    run_batch : callable
        ``run_batch(items) -> results``: a list of inputs to a list of results of the same length
        and order. Called in ``executor``'s thread, one batch at a time per batcher.
    executor : concurrent.futures.Executor, or a list of them
        Where batches run. With a list, up to one batch runs on each executor at a time, so
        ``len(executor)`` batches may run at once (give each executor one thread).
    max_batch_size : int
        Largest batch (1 = no batching).
    max_delay : float
        Seconds the first input of a batch may wait for more to arrive.
    max_queue : int
        Inputs allowed to wait; :meth:`submit` raises :class:`Overloaded` past it.
    on_batch : callable, optional
        ``on_batch(batch_size, seconds)`` after every batch (metrics).
    pipeline : bool
        Cap every batch at a share of the recent load, so that one batch stays queued while the
        executors run (:meth:`_cap`); by default a batch takes up to ``max_batch_size``.
    """

    def __init__(self, run_batch: Callable, executor, max_batch_size: int = 32,
                 max_delay: float = 0.005, max_queue: int = 256, on_batch=None,
                 pipeline: bool = False, fill_from: int = 0):
        if int(max_batch_size) < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if not max_delay >= 0:
            raise ValueError(f"max_delay must be >= 0 seconds, got {max_delay}")
        if int(max_queue) < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if int(fill_from) < 0:
            raise ValueError(f"fill_from must be >= 0 inputs per executor (0: never), got "
                             f"{fill_from}")
        self.run_batch = run_batch
        self.executors = list(executor) if isinstance(executor, (list, tuple)) else [executor]
        if not self.executors:
            raise ValueError("Batcher needs at least one executor")
        self.max_batch_size = int(max_batch_size)
        self.max_delay = float(max_delay)
        self.max_queue = int(max_queue)
        self.on_batch = on_batch
        self.pipeline = bool(pipeline)
        self.fill_from = int(fill_from)
        self._free = list(self.executors)  # executors not running a batch now
        self._runs: set = set()
        self._running: list = []           # sizes of the batches running now
        self.incoming = 0                  # inputs announced but not yet submitted
        self._peaks = [0, 0, 0.0]          # inputs in the server: previous window's peak, this
                                           # window's, this window's start (time.monotonic())
        self._queue: collections.deque = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the collector task on the running event loop."""
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Stop collecting; inputs still waiting get :class:`Overloaded`."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._runs:                     # the batches already running finish and answer
            await asyncio.gather(*self._runs, return_exceptions=True)
        while self._queue:
            entry = self._queue.popleft()
            if not entry.future.done():
                entry.future.set_exception(Overloaded("the server is shutting down"))

    @property
    def depth(self) -> int:
        """Inputs waiting for a batch (not counting the batch running now)."""
        return len(self._queue)

    # -- requests -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def announce(self):
        """``with batcher.announce(): image = await decode(...)``: one input is on its way, so
        an open batch waits for it (within ``max_delay``) rather than leaving without it. Use
        on the event loop's thread, around the work that precedes :meth:`submit`."""
        self.incoming += 1
        try:
            yield
        finally:
            self.incoming -= 1
            if self._wakeup is not None:
                self._wakeup.set()

    async def submit(self, item, timeout: float | None = None):
        """Queue ``item`` and return its result once its batch has run.

        Raises
        ------
        Overloaded
            ``max_queue`` inputs are already waiting.
        Timeout
            No result within ``timeout`` seconds (the input is dropped if it has not started).
        """
        if self._task is None:
            raise RuntimeError("Batcher.start() must run before submit()")
        if len(self._queue) >= self.max_queue:
            raise Overloaded(f"{len(self._queue)} requests are already waiting "
                             f"(the queue holds {self.max_queue})")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        now = time.monotonic()
        self._queue.append(_Entry(item, future, now))
        self._note_load(now)
        self._wakeup.set()
        # The timeout fails the future itself (one timer; no wrapping task per request): the
        # collector skips done entries, and a batch that already took it drops its result.
        timer = None if timeout is None else loop.call_later(timeout, _expire, future, timeout)
        try:
            return await future            # cancelled with it if the client goes away
        finally:
            if timer is not None:
                timer.cancel()

    async def _collect(self) -> None:
        while True:
            while not self._queue or not self._free or not self._may_start():
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._queue[0].arrived + self.max_delay
            while len(self._queue) < self.max_batch_size and self.incoming > 0 and \
                    not self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch, cap = [], self._cap()
            while self._queue and len(batch) < cap:
                entry = self._queue.popleft()
                if not entry.future.done():
                    batch.append(entry)
            if not batch:
                continue
            self._running.append(len(batch))
            run = asyncio.get_running_loop().create_task(self._run(batch, self._free.pop()))
            self._runs.add(run)
            run.add_done_callback(self._runs.discard)

    def _note_load(self, now: float) -> None:
        """Keep the peak count of inputs in the server (queued, running, announced) per window
        of :data:`PEAK_WINDOW_S`."""
        load = len(self._queue) + sum(self._running) + self.incoming
        peaks = self._peaks
        if now - peaks[2] >= PEAK_WINDOW_S:
            peaks[0], peaks[1], peaks[2] = peaks[1], 0, now
        if load > peaks[1]:
            peaks[1] = load

    def _cap(self) -> int:
        """The largest batch to start now: ``max_batch_size``; with ``pipeline``, at most a
        share of the recent peak of inputs in the server, ``floor(peak / (executors + 1))``,
        or where that is below :data:`MIN_PIPELINED_BATCH`, ``ceil(peak / executors)`` (at
        most that constant).

        Why: with clients that each send their next request when the last is answered (a page,
        a pipeline, the benchmark's connections), the inputs of a batch come back only after its
        forward pass, their answers and their next uploads. When the executors' batches hold
        every input, each executor idles for that round trip after every batch. Batches of
        ``1 / (executors + 1)`` of the inputs leave one batch's worth queued or on its way while
        the executors run, so a free executor finds its next batch waiting, at the price of
        smaller batches, each paying a forward pass's fixed cost (ResNet-20 on one thread: 1.48
        ms per image at batch 11 against 1.42 at 16, but 1.96 at 3 against 1.80 at 4; hence the
        floor). The share is rounded down, so that the batches in the server leave a few inputs
        over: rounded up (32 inputs, 2 executors: 11 + 11 + 10), the queued batch could never
        reach the size of the running one (:meth:`_may_start`) before one of the just-answered
        clients came back, and a free executor still waited for a round trip; rounded down
        (10 + 10 + 12), it starts at once. Under a load that outgrows the executors the queue
        lengthens, the peak with it, and batches grow back to ``max_batch_size``.
        Measured at 32 clients on 2 cores: ``benchmarks/README.md``.

        Except from ``fill_from`` inputs per executor (when set): then a batch takes up to
        ``max_batch_size`` again. A model whose forward pass gets cheaper per image from some
        batch size on (a ResNet's pixel-major plan from 16 images,
        :func:`cvcore.serve.models.pixel_major_batch`) gains more from reaching it than from
        keeping a batch queued: ResNet-20 at 32 clients on 2 cores, batches of 16 served 1.14x
        the images per second of the pipelined batches of 10, and 1.20x at 64 clients, while
        at 8 and 16 clients the pipelined cap served 1.10x (``benchmarks/README.md``, "Idle run
        (coordinator, end of session 9)")."""
        if not self.pipeline:
            return self.max_batch_size
        peak = max(self._peaks[0], self._peaks[1], 1)
        executors = len(self.executors)
        if self.fill_from and -(-peak // executors) >= self.fill_from:
            return self.max_batch_size
        share = peak // (executors + 1)
        if share < MIN_PIPELINED_BATCH:
            share = min(-(-peak // executors), MIN_PIPELINED_BATCH)
        return max(1, min(self.max_batch_size, share))

    def _may_start(self) -> bool:
        """Whether a free executor should start a batch of the queue now: at once when no
        batch is running; while another runs, only once the queue holds as many inputs as the
        largest running batch (or a full batch, see :meth:`_cap`). Starting on whatever is
        queued would split a busy server's work into many small batches, each paying a forward
        pass's fixed cost; waiting for the queue to match keeps batches as large as with one
        executor, while several of them run side by side."""
        if not self._running:
            return True
        return len(self._queue) >= min(self._cap(), max(self._running))

    async def _run(self, batch, executor) -> None:
        """Run one batch in the executor and hand every result to its request's future."""
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            results = await loop.run_in_executor(executor, self.run_batch,
                                                  [e.item for e in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch returned {len(results)} results for "
                                   f"{len(batch)} inputs")
        except Exception as exc:           # a bug in the model code: every waiter learns of it
            for e in batch:
                if not e.future.done():
                    e.future.set_exception(exc)
            return
        finally:
            self._free.append(executor)
            self._running.remove(len(batch))
            self._wakeup.set()
        if self.on_batch is not None:
            self.on_batch(len(batch), time.perf_counter() - t0)
        for e, r in zip(batch, results):
            if not e.future.done():
                e.future.set_result(r)
