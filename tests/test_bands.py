"""Row bands on several threads (cvcore._bands): every band runs exactly once, and
every banded filter gives the same result, bit for bit, on one thread and on many."""
import threading
import time

import numpy as np
import pytest

from cvcore import _bands


def test_every_row_is_computed_exactly_once(monkeypatch):
    monkeypatch.setattr(_bands, "band_threads", lambda: 3)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)
    hits = np.zeros(101, np.int64)
    names = set()
    lock = threading.Lock()

    def kernel(out, r0, r1):
        with lock:
            names.add(threading.current_thread().name)
            out[r0:r1] += 1

    _bands.run_bands(kernel, 101, 1, hits)
    assert (hits == 1).all()
    assert names <= {threading.current_thread().name} | {
        t.name for t in threading.enumerate() if t.name.startswith("cvcore-band")}


def test_one_thread_is_one_call_in_the_caller(monkeypatch):
    monkeypatch.setattr(_bands, "band_threads", lambda: 1)
    calls = []
    _bands.run_bands(lambda r0, r1: calls.append((r0, r1, threading.current_thread().name)),
                     500, 10_000)
    assert calls == [(0, 500, threading.current_thread().name)]


def test_a_pool_that_never_runs_costs_no_wait(monkeypatch):
    """A helper that gets no core (here: one blocked in another call's band) takes no band; the
    caller takes them all and returns without waiting for it."""
    monkeypatch.setattr(_bands, "band_threads", lambda: 2)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)
    started, gate = threading.Event(), threading.Event()

    def block(r0, r1):
        started.set()
        gate.wait()

    blocker = _bands._Job(block, (), [0, 1], 1)
    _bands._the_pool().publish(blocker, 1)          # the helper takes its only band
    assert started.wait(30)
    try:
        rows = np.zeros(64, np.int64)

        def kernel(out, r0, r1):
            out[r0:r1] += 1

        _bands.run_bands(kernel, 64, 1, rows)
        assert (rows == 1).all()
    finally:
        gate.set()
        blocker.join(_bands._the_pool().words, 0)


def test_several_callers_at_once(monkeypatch):
    """Server threads calling band kernels at the same time: every call gets all its rows
    exactly once (helpers join the newest call; a call they miss runs in its caller)."""
    monkeypatch.setattr(_bands, "band_threads", lambda: 2)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)
    failures = []

    def kernel(out, r0, r1):
        out[r0:r1] += 1

    def caller():
        for _ in range(200):
            rows = np.zeros(48, np.int64)
            _bands.run_bands(kernel, 48, 1, rows)
            if not (rows == 1).all():
                failures.append(rows)

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(60)
    assert not any(t.is_alive() for t in callers)
    assert not failures


def test_helpers_spin_a_bounded_time_then_sleep_and_wake_again(monkeypatch):
    """After a call the helpers poll for SPIN_SECONDS, then sleep on a lock (they do not hold
    a core while nothing comes); the next call wakes them."""
    monkeypatch.setattr(_bands, "band_threads", lambda: 2)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)
    pool = _bands._the_pool()
    rows = np.zeros(64, np.int64)

    def kernel(out, r0, r1):
        out[r0:r1] += 1

    _bands.run_bands(kernel, 64, 1, rows)
    deadline = time.monotonic() + 30
    while len(pool.sleepers) < pool.threads and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(pool.sleepers) == pool.threads >= 1
    names = set()

    def slow(out, r0, r1):                  # 8 bands of 20 ms: a woken helper takes some
        names.add(threading.current_thread().name)
        time.sleep(0.02)
        out[r0:r1] += 1

    _bands.run_bands(slow, 64, 1, rows)
    assert (rows == 2).all()
    assert any(name.startswith("cvcore-band") for name in names)


def test_spin_waits_match_their_readable_twins():
    """leave_and_wait: ``words[slot] = 0``, then wait for ``words[0]`` to change; wait_job:
    every flag set, then no ``words[1:]`` equal to the call's epoch, each bounded."""
    from kernels import bands as kb
    words = np.array([3, 7, 9], np.int64)
    assert kb.leave_and_wait(words, 1, 3, 100, 0) == 3 and list(words) == [3, 0, 9]  # runs out
    words[0] = 4
    assert kb.leave_and_wait(words, 2, 3, 0, 5) == 4 and list(words) == [4, 0, 0]  # seen at once
    assert kb.leave_and_wait(words, 1, 4, 5, 5) == 4
    flags = np.zeros(4, np.int64)
    idle = np.array([5, 0, 4], np.int64)
    assert not kb.wait_job(flags, idle, 5, 50)
    for i in range(3):
        kb.set_flag(flags, i)
    assert list(flags) == [1, 1, 1, 0] and not kb.wait_job(flags, idle, 5, 50)
    kb.set_flag(flags, 3)
    assert kb.wait_job(flags, idle, 5, 0)
    assert kb.wait_job(flags, np.array([5, 5, 0], np.int64), 5, 10)   # a helper slow to leave
    assert 0 < _bands.spin_polls(1e-4) <= _bands.spin_polls(1e-3)
    assert _bands.spin_polls(0.0) == 0


def test_the_caller_waits_for_a_helper_to_leave_the_call():
    """A pool thread still in the call (its word holds the call's epoch) is waited for,
    without the GIL, until it clears the word."""
    from kernels import bands as kb
    words = np.array([5, 5], np.int64)
    cleared = []

    def leave():
        cleared.append(time.monotonic())
        kb.leave_and_wait(words, 1, 5, 0, 0)

    t = threading.Timer(0.02, leave)
    t.start()
    assert kb.wait_job(np.ones(2, np.int64), words, 5, _bands.spin_polls(10.0))
    returned = time.monotonic()
    t.join()
    assert words[1] == 0 and cleared and cleared[0] <= returned


def test_a_spin_sees_a_store_made_by_another_thread():
    from kernels import bands as kb
    word = np.zeros(2, np.int64)
    t = threading.Timer(0.01, lambda: word.__setitem__(0, 5))
    t.start()
    value = 0
    for _ in range(1000):                  # each wait is bounded; together up to seconds
        value = kb.leave_and_wait(word, 1, 0, _bands.spin_polls(0.01), 0)
        if value:
            break
    t.join()
    assert value == 5


def test_an_error_in_any_band_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(_bands, "band_threads", lambda: 2)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)

    def kernel(r0, r1):
        if r0 <= 40 < r1:
            raise TypeError("band with row 40")

    with pytest.raises(TypeError, match="row 40"):
        _bands.run_bands(kernel, 64, 1)


@pytest.mark.parametrize("call", [
    lambda F, x: F.correlate(x, np.arange(25, dtype=np.float32).reshape(5, 5) - 12),
    lambda F, x: F.correlate(x, np.outer([1, 4, 6, 4, 1], [1, 2, 1]), mode="constant", cval=2),
    lambda F, x: F.gaussian(x, 1.5, mode="wrap"),
    lambda F, x: F.sobel(x, 0, mode="mirror"),
    lambda F, x: F.sobel(x, 1),
    lambda F, x: F.sobel(x),
    lambda F, x: F.median(x, 3, mode="constant", cval=0.5),
    lambda F, x: F.median(x, 5),
    lambda F, x: F.median(x, (3, 4)),
    lambda F, x: F.canny(x, 1.0).astype(np.float32),
])
def test_filters_equal_on_one_thread_and_in_many_bands(monkeypatch, call):
    from cvcore.features import edges
    from cvcore.preprocess import filters as F

    class Both:                                        # one namespace for the calls above
        correlate, gaussian, sobel, median = F.correlate, F.gaussian, F.sobel, F.median
        canny = staticmethod(edges.canny)

    x = np.random.default_rng(3).random((97, 61), dtype=np.float32)
    monkeypatch.setattr(_bands, "band_threads", lambda: 1)
    one = call(Both, x)
    monkeypatch.setattr(_bands, "band_threads", lambda: 3)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)
    many = call(Both, x)
    np.testing.assert_array_equal(one, many)


def test_a_forked_child_runs_bands_on_a_pool_of_its_own(monkeypatch):
    """After fork the child has none of the parent's pool threads: it makes its own, and its
    bands all run (a stale pool would leave them to the caller, never hang it either)."""
    import os
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(_bands, "band_threads", lambda: 2)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_SECONDS", 0.0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)
    rows = np.zeros(64, np.int64)

    def kernel(out, r0, r1):
        out[r0:r1] += 1

    _bands.run_bands(kernel, 64, 1, rows)               # the parent's pool exists now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                        # child: report and leave at once
        ok = 0
        try:
            child = np.zeros(64, np.int64)
            _bands.run_bands(kernel, 64, 1, child)
            ok = int((child == 1).all() and _bands._pool["pool"].pid == os.getpid())
        finally:
            os.write(write, bytes([ok]))
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"\x01"
    assert (rows == 1).all()


def test_work_measured_below_the_break_even_runs_in_the_caller(monkeypatch):
    """Once a kernel's cost per unit is known, a call whose one-thread time it puts under
    MIN_PARALLEL_SECONDS runs in the caller alone, whatever the caller's unit; above it, the
    call is split."""
    monkeypatch.setattr(_bands, "band_threads", lambda: 2)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)
    calls = []

    def kernel(r0, r1):
        calls.append((r0, r1))

    monkeypatch.setitem(_bands._cost, kernel, 1e-9)         # 1 ns per unit
    _bands.run_bands(kernel, 64, 1000, )                      # 64 us of work: one call
    assert calls == [(0, 64)]
    calls.clear()
    _bands.run_bands(kernel, 64, 10_000)                     # 640 us: split
    assert len(calls) > 1 and sorted(calls)[0][0] == 0 and sorted(calls)[-1][1] == 64


def test_the_cost_is_learned_from_the_callers_own_cpu_time():
    def kernel(r0, r1):
        t = time.thread_time()
        while time.thread_time() - t < 1e-3:                  # 1 ms of CPU
            pass

    _bands._cost.pop(kernel, None)
    _bands.run_bands(kernel, 64, 1 << 12)                    # 2^18 units
    per_unit = _bands._cost[kernel]
    assert 0.5e-3 / (1 << 18) < per_unit < 5e-3 / (1 << 18)
    _bands._learn(kernel, 0.0, 1 << 18)
    assert _bands._cost[kernel] == pytest.approx(per_unit * (1 - _bands.COST_SMOOTHING))


class _FlagsEndingAsRead(np.ndarray):
    """Band done flags whose first ``all()`` reads them, then lets a pool thread end the last
    band (set its flag, then look for the caller's gate) before the caller goes on: the
    interleaving that lost a wake-up in session 10."""

    def all(self, *args, **kwargs):
        result = np.asarray(self).all(*args, **kwargs)
        job = self.job
        if job is not None:
            self.job = None
            looked = threading.Event()

            def pool_thread():
                np.asarray(self)[0] = 1
                gate = job.sleeper
                looked.set()
                if gate is not None:
                    job._wake_caller()
            threading.Thread(target=pool_thread, daemon=True).start()
            assert looked.wait(30)
        return result


def test_a_band_ending_while_the_caller_looks_wakes_it():
    """The caller, its spin over, reads the done flags and goes to sleep; a band ending between
    the read and the sleep must still wake it (the caller publishes its gate before it reads)."""
    job = _bands._Job(lambda r0, r1: None, (), [0, 1], 1)
    job.done = np.zeros(1, np.int64).view(_FlagsEndingAsRead)
    job.done.job = job
    words = np.zeros(2, np.int64)
    caller = threading.Thread(target=job.join, args=(words, 0), daemon=True)
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "the caller sleeps on a gate nobody opens"
