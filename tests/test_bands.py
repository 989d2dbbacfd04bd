"""Row bands on several threads (cvcore._bands): every band runs exactly once, and
every banded filter gives the same result, bit for bit, on one thread and on many."""
import threading

import numpy as np
import pytest

from cvcore import _bands


def test_every_row_is_computed_exactly_once(monkeypatch):
    monkeypatch.setattr(_bands, "band_threads", lambda: 3)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
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
    """A worker that gets no core (here: a pool whose thread is blocked) takes no band; the
    caller takes them all and returns without waiting for it."""
    monkeypatch.setattr(_bands, "band_threads", lambda: 2)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_bands, "MIN_BAND_ROWS", 1)
    gate = threading.Event()
    pool = _bands._executor(1)
    blocker = pool.submit(gate.wait)                    # occupies the only worker
    try:
        rows = np.zeros(64, np.int64)

        def kernel(out, r0, r1):
            out[r0:r1] += 1

        _bands.run_bands(kernel, 64, 1, rows)
        assert (rows == 1).all()
    finally:
        gate.set()
        blocker.result()


def test_an_error_in_any_band_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(_bands, "band_threads", lambda: 2)
    monkeypatch.setattr(_bands, "MIN_PARALLEL_PIXELS", 0)
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
            ok = int((child == 1).all() and _bands._pool["pid"] == os.getpid())
        finally:
            os.write(write, bytes([ok]))
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"\x01"
    assert (rows == 1).all()
