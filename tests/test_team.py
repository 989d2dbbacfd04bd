"""Bands of rows on Numba's OpenMP team (cvcore._team, kernels.team): the band kernel, called
through its address from a ``prange``, gives the one-band result, an exception in a band
reaches the caller, and the bands follow the threads and the work."""
import numpy as np
import pytest
from numba import njit

from cvcore import _team
from kernels import team as team_kernels


@njit(cache=True, nogil=True)
def _rows_kernel(image, scale, out, y0, y1):
    """A band kernel: ``out[y] = scale * image[y] + y`` for rows y0:y1; raises on a negative
    pixel (a check a real kernel leaves to its caller; here to test the error path)."""
    for y in range(y0, y1):
        for x in range(image.shape[1]):
            if image[y, x] < 0:
                raise ValueError("negative pixel")
            out[y, x] = scale * image[y, x] + y


def _forced(monkeypatch, bands, pool=False):
    """``bands`` threads for every call (``pool``: on the helper pool, else in OpenMP
    regions)."""
    import numba

    monkeypatch.setitem(_team.POOL, "on", pool)
    monkeypatch.setattr(_team, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_team, "bands_for", lambda rows, work: (bands, numba.get_num_threads()))


@pytest.mark.parametrize("bands", [2, 3, 7, 40])
def test_bands_on_the_team_give_the_one_band_result(rng, monkeypatch, bands):
    """Every row written once, exactly as by one call over all rows, for fewer bands than
    threads, as many, more, and more bands than rows (empty bands)."""
    image = rng.random((37, 11)).astype(np.float32)
    expected = np.full_like(image, -1.0)
    _rows_kernel(image, np.float32(2.5), expected, 0, 37)
    _forced(monkeypatch, bands)
    out = np.full_like(image, -1.0)
    assert _team.run_team(_rows_kernel, 37, 1, image, np.float32(2.5), out) == bands
    np.testing.assert_array_equal(out, expected)


def test_the_kernel_runs_through_its_address_in_one_region(rng, monkeypatch):
    """More than one band: one call of the team kernel with the band kernel's native address,
    compiled for exactly these argument types (a read-only image gets a version of its own)."""
    regions = []
    real = team_kernels.run_team
    monkeypatch.setattr(team_kernels, "run_team", lambda entry, address, data, n, bands, failed:
                        regions.append((entry, address, n, bands))
                        or real(entry, address, data, n, bands, failed))
    _forced(monkeypatch, 2)
    image = rng.random((8, 5)).astype(np.float32)
    out = np.zeros_like(image)
    _team.run_team(_rows_kernel, 8, 1, image, np.float32(1.0), out)
    address = _team.band_address(_rows_kernel, (image, np.float32(1.0), out))
    trampoline = _team.entry((image, np.float32(1.0), out))[0]
    assert regions == [(trampoline, address, 8, 2)] and address > 0 and trampoline > 0
    frozen = image.copy()
    frozen.flags.writeable = False
    assert _team.band_address(_rows_kernel, (frozen, np.float32(1.0), out)) != address
    again = np.zeros_like(image)
    _team.run_team(_rows_kernel, 8, 1, frozen, np.float32(1.0), again)
    np.testing.assert_array_equal(again, out)


@pytest.mark.parametrize("bad_row", [0, 5, 36])
def test_an_exception_in_any_band_is_raised(rng, monkeypatch, bad_row):
    """A parallel region drops a band's exception; the caller must still see it."""
    image = rng.random((37, 11)).astype(np.float32)
    image[bad_row, 3] = -1.0
    _forced(monkeypatch, 3)
    with pytest.raises(ValueError, match="negative pixel"):
        _team.run_team(_rows_kernel, 37, 1, image, np.float32(1.0), np.zeros_like(image))
    args = (image, np.float32(1.0), np.zeros_like(image))
    trampoline, words = _team.entry(args)
    copy, failed = np.empty(words, np.int64), np.zeros(1, np.int64)
    team_kernels.run_team(trampoline, _team.band_address(_rows_kernel, args),
                          team_kernels.store_args(copy, args), 37, 3, failed)
    assert failed[0] == 1
    args[0][bad_row, 3] = 0.5                           # the same call without the bad pixel
    failed[0] = 0
    team_kernels.run_team(trampoline, _team.band_address(_rows_kernel, args),
                          team_kernels.store_args(copy, args), 37, 3, failed)
    assert failed[0] == 0


def test_team_bands_follow_the_threads_and_the_work(monkeypatch):
    """One band for small work or one thread; else the free threads, at most one per row."""
    import numba

    threads = numba.get_num_threads()
    big = _team.MIN_PARALLEL_PIXELS
    assert _team.bands_for(1000, 10) == (1, threads)
    monkeypatch.setattr(_team, "usable_threads", lambda cap: cap)
    assert _team.bands_for(1000, big) == (threads, threads)
    assert _team.bands_for(1, big) == (1, threads)
    monkeypatch.setattr(_team, "usable_threads", lambda cap: 1)
    assert _team.bands_for(1000, big) == (1, threads)


def test_fewer_bands_than_threads_run_on_that_many_threads(rng, monkeypatch):
    """A team of more threads than bands would wake a thread with nothing to do and wait for
    it: the thread count is set to the bands for the call and restored after it, also when the
    call fails; one band is a plain call in this thread, without a region."""
    import numba

    counts, regions = [], []
    monkeypatch.setattr(numba, "set_num_threads", counts.append)
    monkeypatch.setattr(team_kernels, "run_team", lambda entry, address, data, n, bands, failed:
                        regions.append(bands))
    monkeypatch.setitem(_team.POOL, "on", False)
    monkeypatch.setattr(_team, "MIN_PARALLEL_PIXELS", 0)
    monkeypatch.setattr(_team, "bands_for", lambda rows, work: (2, 5))
    image = rng.random((8, 5)).astype(np.float32)
    _team.run_team(_rows_kernel, 8, 1, image, np.float32(1.0), np.zeros_like(image))
    assert counts == [2, 5] and regions == [2]
    monkeypatch.setattr(team_kernels, "run_team", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        _team.run_team(_rows_kernel, 8, 1, image, np.float32(1.0), np.zeros_like(image))
    assert counts == [2, 5, 2, 5]
    monkeypatch.setattr(_team, "bands_for", lambda rows, work: (1, 5))
    out = np.zeros_like(image)
    _team.run_team(_rows_kernel, 8, 1, image, np.float32(1.0), out)
    assert counts == [2, 5, 2, 5] and regions == [2] and out[7, 0] == image[7, 0] + 7


def test_threads_of_their_own_run_teams_at_once(rng, monkeypatch):
    """Request threads of a server resize at the same time: each call's region is a team of
    its own (GNU OpenMP starts one per calling thread), and every result is the one-thread
    result."""
    import cvcore.preprocess as pp

    import numba

    if numba.get_num_threads() < 2:
        pytest.skip("needs two Numba threads for teams")
    monkeypatch.setitem(_team.POOL, "on", False)
    monkeypatch.setattr(_team, "usable_threads", lambda cap: cap)
    regions = []
    real = team_kernels.run_team
    monkeypatch.setattr(team_kernels, "run_team", lambda entry, address, data, n, bands, failed:
                        regions.append(bands) or real(entry, address, data, n, bands, failed))
    image = rng.random((600, 528)).astype(np.float32)        # every call above the threshold
    jobs = [lambda: pp.resize(image, (300, 264), "area"),
            lambda: pp.resize(image, (422, 190), "bilinear"),
            lambda: pp.resize(image, (450, 396), "nearest"),
            lambda: pp.warp_affine(image, np.eye(3)[:2] * 1.1)]
    want = [job() for job in jobs]
    assert len(regions) == len(jobs)
    assert _in_threads(jobs, want, 4, 40) == [] and len(regions) == len(jobs) + 4 * 40


def _in_threads(jobs, want, n_threads, calls):
    """Run ``calls`` random jobs in each of ``n_threads`` threads at once; returns the indices
    of the jobs whose result differed from ``want``."""
    import threading

    wrong = []

    def worker(seed):
        for i in np.random.default_rng(seed).integers(len(jobs), size=calls):
            if not np.array_equal(jobs[i](), want[i]):
                wrong.append(int(i))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return wrong


needs_pool = pytest.mark.skipif(not __import__("kernels.pool").pool.HAS_FUTEX,
                                reason="the helper pool needs Linux's futex")


@needs_pool
@pytest.mark.parametrize("threads, rows", [(2, 37), (2, 200), (3, 37), (2, 5)])
def test_the_helper_pool_gives_the_one_band_result(rng, monkeypatch, threads, rows):
    """On the helper pool a call is cut into parts taken one by one: every row is written
    once, exactly as by one call over all rows (more parts than rows: empty parts)."""
    image = rng.random((rows, 11)).astype(np.float32)
    expected = np.full_like(image, -1.0)
    _rows_kernel(image, np.float32(2.5), expected, 0, rows)
    _forced(monkeypatch, threads, pool=True)
    for _ in range(20):
        out = np.full_like(image, -1.0)
        parts = _team.run_team(_rows_kernel, rows, 1, image, np.float32(2.5), out)
        assert 2 <= parts <= rows
        np.testing.assert_array_equal(out, expected)


@needs_pool
@pytest.mark.parametrize("bad_row", [0, 5, 36])
def test_an_exception_in_any_part_on_the_pool_is_raised(rng, monkeypatch, bad_row):
    """A part's exception is only counted by the pool; the caller must still see it, and the
    pool must run the next call."""
    image = rng.random((37, 11)).astype(np.float32)
    image[bad_row, 3] = -1.0
    _forced(monkeypatch, 2, pool=True)
    with pytest.raises(ValueError, match="negative pixel"):
        _team.run_team(_rows_kernel, 37, 1, image, np.float32(1.0), np.zeros_like(image))
    image[bad_row, 3] = 0.5
    out, expected = np.zeros_like(image), np.zeros_like(image)
    _rows_kernel(image, np.float32(1.0), expected, 0, 37)
    _team.run_team(_rows_kernel, 37, 1, image, np.float32(1.0), out)
    np.testing.assert_array_equal(out, expected)


@needs_pool
def test_the_caller_never_waits_for_a_helper_that_has_not_started(rng):
    """A job whose helpers never come (here: a job array no helper thread serves) is run by the
    caller alone, every part, and returns: the caller waits only for parts a helper took."""
    from kernels import pool as native

    image = rng.random((64, 9)).astype(np.float32)
    args = (image, np.float32(3.0), np.zeros_like(image))
    expected = np.zeros_like(image)
    _rows_kernel(image, np.float32(3.0), expected, 0, 64)
    trampoline, words = _team.entry(args)
    copy = np.empty(words, np.int64)
    job = np.zeros(native.JOB_WORDS, np.int64)
    for epoch in (1, 2):
        args[2][:] = 0
        failed = native.run_job(job, trampoline, _team.band_address(_rows_kernel, args),
                                team_kernels.store_args(copy, args), 64, 4, 3, 1, 100)
        assert failed == 0 and job[native.DONE] == 64 and job[native.EPOCH] == epoch
        assert job[native.CLAIM] == (epoch << native.ROW_BITS) + 64    # every row claimed
        # parts of a quarter of the rows left, at least 3: 16 12 9 6 5 4 3 3 3 3
        assert job[native.PARTS_RUN] == 10
        np.testing.assert_array_equal(args[2], expected)


@needs_pool
def test_pool_helpers_spin_a_bounded_time_then_sleep_and_wake_again(rng, monkeypatch):
    """After a call the helper polls for a bounded time, then sleeps on the epoch (counted in
    ``SLEEPERS``); the next call wakes it and runs as before. A helper beyond the call's
    thread count (the free-core rule) goes back to sleep without taking a part."""
    import threading
    import time

    from kernels import pool as native

    _forced(monkeypatch, 2, pool=True)
    image = rng.random((200, 30)).astype(np.float32)
    expected = np.zeros_like(image)
    _rows_kernel(image, np.float32(1.0), expected, 0, 200)
    pool = _team._the_pool()
    for _ in range(3):
        out = np.zeros_like(image)
        _team.run_team(_rows_kernel, 200, 1, image, np.float32(1.0), out)
        np.testing.assert_array_equal(out, expected)
        deadline = time.monotonic() + 5
        while pool.job[native.SLEEPERS] < pool.threads and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.job[native.SLEEPERS] == pool.threads >= 1     # every helper asleep
    job = np.zeros(native.JOB_WORDS, np.int64)       # one helper, never wanted (HELPERS 0)
    helper = threading.Thread(target=native.serve, args=(job, 1, 1000), daemon=True)
    helper.start()
    args = (image, np.float32(1.0), np.zeros_like(image))
    trampoline, words = _team.entry(args)
    copy = np.empty(words, np.int64)
    for _ in range(5):
        native.run_job(job, trampoline, _team.band_address(_rows_kernel, args),
                       team_kernels.store_args(copy, args), 200, 4, 8, 0, 1000)
        np.testing.assert_array_equal(args[2], expected)
    job[native.EPOCH] = -1                                        # shut it down
    native._wake_all(job)
    helper.join(5)
    assert not helper.is_alive()


@needs_pool
def test_threads_of_their_own_share_the_pool(rng, monkeypatch):
    """Several threads resizing at once: one holds the pool, the others run OpenMP regions
    (or wait for nothing); every result is the one-thread result."""
    import cvcore.preprocess as pp

    monkeypatch.setitem(_team.POOL, "on", True)
    monkeypatch.setattr(_team, "usable_threads", lambda cap: max(cap, 2))
    monkeypatch.setattr(_team, "numba_threads", lambda: 2)
    image = rng.random((600, 528)).astype(np.float32)
    jobs = [lambda: pp.resize(image, (300, 264), "area"),
            lambda: pp.resize(image, (422, 190), "bilinear"),
            lambda: pp.resize(image, (450, 396), "nearest"),
            lambda: pp.warp_affine(image, np.eye(3)[:2] * 1.1)]
    want = [job() for job in jobs]
    assert _in_threads(jobs, want, 4, 40) == []
