"""cvcore._threads: network calls use no more Numba threads than there are free cores."""
import subprocess
import sys
import time

import numba
import numpy as np
import pytest

from cvcore import _threads


@pytest.fixture
def machine(monkeypatch):
    """A fake machine: ``machine.others`` runnable competitors on 2 cores, read fresh on every
    call (no reuse of an old reading)."""
    class Machine:
        others = 0
    m = Machine()
    monkeypatch.setattr(_threads, "other_runnable", lambda: m.others)
    monkeypatch.setattr(_threads, "_cores", lambda: (2, 2))
    monkeypatch.setattr(_threads, "REFRESH_S", 0.0)
    monkeypatch.setattr(_threads, "ADAPTIVE", True)
    monkeypatch.setitem(_threads._reading, "others", (0, 0))
    return m


def test_free_cores_rule(machine):
    machine.others = 0
    assert _threads.usable_threads(2) == 2
    machine.others = 1                      # one reading of a competitor: not yet believed
    assert _threads.usable_threads(2) == 2
    assert _threads.usable_threads(2) == 1  # two readings: one core free
    machine.others = 5
    assert _threads.usable_threads(2) == 1  # never fewer than one
    assert _threads.usable_threads(2) == 1
    machine.others = 0
    assert _threads.usable_threads(2) == 2  # the smaller of the last two readings
    assert _threads.usable_threads(1) == 1  # never more than asked


def test_network_call_sets_and_restores_the_thread_count(machine):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread only")
    before = numba.get_num_threads()
    machine.others = 3
    _threads.usable_threads(2)
    with _threads.network_call():
        assert numba.get_num_threads() == 1
        assert _threads.in_network_call()
        machine.others = 0                 # nested calls keep the outermost decision
        with _threads.network_call():
            assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    assert not _threads.in_network_call()


def test_user_setting_is_the_upper_bound(machine):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread only")
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        machine.others = 0
        with _threads.network_call():
            assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)


def test_module_forward_runs_on_free_cores_and_backward_on_the_users_threads(machine):
    """A model's outermost forward runs under the rule (the layers inside see the outermost
    decision); its backward keeps the user's thread count, so a training step gives the same
    bits on a busy machine as on an idle one (gradient sums depend on the thread count)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread only")
    import cvcore.nn as cnn
    from cvcore.nn.conv import Conv2d
    seen = []
    orig_fwd, orig_bwd = Conv2d.forward, Conv2d.backward

    def fwd(self, x):
        seen.append(("f", numba.get_num_threads()))
        return orig_fwd(self, x)

    def bwd(self, dy):
        seen.append(("b", numba.get_num_threads()))
        return orig_bwd(self, dy)

    x = np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32)
    outs = []
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        for others in (0, 4):
            machine.others = others
            _threads.usable_threads(2)          # two readings of the same load
            m = cnn.Sequential(Conv2d(3, 8, 3, padding=1, rng=0), cnn.ReLU(),
                               Conv2d(8, 4, 3, padding=1, rng=1))
            m.train()
            Conv2d.forward, Conv2d.backward = fwd, bwd
            try:
                y = m(x)
                dx = m.backward(np.ones_like(y))
            finally:
                Conv2d.forward, Conv2d.backward = orig_fwd, orig_bwd
            outs.append((y, dx, [p.grad.copy() for p in m.parameters()]))
    finally:
        numba.set_num_threads(before)
    assert seen == [("f", 2), ("f", 2), ("b", 2), ("b", 2), ("f", 1), ("f", 1), ("b", 2), ("b", 2)]
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    for g_idle, g_busy in zip(outs[0][2], outs[1][2]):
        np.testing.assert_array_equal(g_idle, g_busy)


def test_a_forward_decides_again_between_its_steps(machine):
    """A load seen at the start of a forward pass binds it only until the reading ages
    (REFRESH_S, 0 here): the next step of a container reads again. Regression: one reading at
    the outermost call held a whole training forward (~100 ms) on one thread."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one Numba thread only")
    import cvcore.nn as cnn
    from cvcore.nn.conv import Conv2d
    seen = []
    orig_fwd = Conv2d.forward

    def fwd(self, x):
        seen.append(numba.get_num_threads())
        machine.others = 0                       # the competitor is gone after the first step
        return orig_fwd(self, x)

    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    m = cnn.Sequential(Conv2d(3, 4, 3, padding=1, rng=0), Conv2d(4, 4, 3, padding=1, rng=1),
                       Conv2d(4, 4, 3, padding=1, rng=2))
    before = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        machine.others = 3
        _threads.usable_threads(2)               # two readings of a competitor
        _threads.usable_threads(2)
        Conv2d.forward = fwd
        try:
            y_busy = m(x)
        finally:
            Conv2d.forward = orig_fwd
        assert numba.get_num_threads() == 2      # restored
        y_idle = m(x)
    finally:
        numba.set_num_threads(before)
    assert seen == [1, 2, 2]
    np.testing.assert_array_equal(y_busy, y_idle)


def test_renewal_outside_a_forward_does_nothing(machine):
    before = numba.get_num_threads()
    machine.others = 5
    _threads.usable_threads(2)
    _threads.renew_network_threads()             # a backward pass: the user's threads
    assert numba.get_num_threads() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_spinning_process_is_counted():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        seen = 0
        while time.monotonic() < deadline and not seen:
            seen = _threads.other_runnable()
            time.sleep(0.01)
        assert seen >= 1
    finally:
        spinner.kill()
        spinner.wait()


@pytest.mark.skipif(not hasattr(time, "pthread_getcpuclockid"), reason="no thread CPU clocks")
def test_thread_clock_ids_are_those_of_the_c_library():
    """The clock id made from a thread id is the one glibc's pthread_getcpuclockid gives."""
    import threading
    assert (_threads._thread_clock(threading.get_native_id())
            == time.pthread_getcpuclockid(threading.get_ident()))


OWN_THREADS_CHILD = """
import hashlib, sys, threading, time
from cvcore import _threads
asleep = threading.Event()
sleeper = threading.Thread(target=asleep.wait, daemon=True)
sleeper.start()
time.sleep(0.5)                    # until it sleeps (start() returns while it still runs)
idle = [_threads.own_on_cpu() for _ in range(20)]
stop = []
def spin():                        # hashing a large buffer runs without the GIL
    data = bytes(1 << 20)
    while not stop:
        hashlib.sha256(data).digest()
spinner = threading.Thread(target=spin, daemon=True)
spinner.start()
_threads._tasks["time"] = -1.0     # list the threads again
busy, deadline = 0, time.monotonic() + 10
while not busy and time.monotonic() < deadline:
    busy = _threads.own_on_cpu()
    time.sleep(0.001)
stop.append(1)
print(max(idle), busy)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and thread clocks")
def test_own_threads_on_a_cpu_are_told_from_sleeping_ones():
    """A thread of this process that computes is seen on a CPU (its CPU-time clock advances
    between two readings); a sleeping one never is. Run in a child with exactly those threads."""
    out = subprocess.run([sys.executable, "-c", OWN_THREADS_CHILD], capture_output=True,
                         text=True, timeout=60, cwd=str(__import__("pathlib").Path(__file__)
                                                        .resolve().parents[1]))
    assert out.returncode == 0, out.stderr
    idle, busy = map(int, out.stdout.split())
    assert idle == 0
    assert busy == 1


def test_own_threads_are_not_competitors(monkeypatch):
    """Of the runnable tasks, the caller and this process's threads on a CPU (OpenCV's or
    PyTorch's pool threads spinning after their own calls, the band pool) do not compete;
    anything else holding a core does."""
    def machine(running, own, online=64):
        monkeypatch.setattr(_threads, "runnable_tasks", lambda: running)
        monkeypatch.setattr(_threads, "own_on_cpu", lambda: own)
        monkeypatch.setattr(_threads, "_cores", lambda: (online, online))
        return _threads.other_runnable()
    assert machine(1, 0) == 0              # the caller alone on the machine
    assert machine(3, 2) == 0              # the caller, cv2's and torch's spinning workers
    assert machine(4, 2) == 1              # ... and a process elsewhere
    assert machine(2, 3) == 0              # a thread left between the readings: never < 0
    assert machine(None, 0) is None        # no /proc/loadavg: no reading
    # Only tasks holding a core count: on 2 cores, with the caller on one and this process's
    # pool thread on the other, a third runnable task is waiting for a core (the pool
    # thread's, which it gives back when its spin ends), not holding one.
    assert machine(3, 1, online=2) == 0
    assert machine(3, 0, online=2) == 1    # our pool thread waits: the other task holds a core
    assert machine(2, 0, online=2) == 1
    assert machine(5, 1, online=4) == 2    # 4 cores: the caller, our thread, two others


def test_competitors_are_spread_over_the_online_cores(machine, monkeypatch):
    """A process on 4 of 64 cores: 40 runnable tasks elsewhere on the machine are taken as
    2.5 per 4 cores (2 after rounding down), leaving 2 of its 4 cores."""
    monkeypatch.setattr(_threads, "_cores", lambda: (4, 64))
    machine.others = 40
    _threads.usable_threads(4)
    assert _threads.usable_threads(4) == 2
    machine.others = 0
    _threads.usable_threads(4)
    assert _threads.usable_threads(4) == 4


def test_a_real_time_thread_has_no_normal_competitors(monkeypatch):
    """Under SCHED_FIFO/RR a normal task cannot take the core: it is not counted."""
    monkeypatch.setattr(_threads, "runnable_tasks", lambda: 5)
    monkeypatch.setattr(_threads, "own_on_cpu", lambda: 0)
    monkeypatch.setattr(_threads, "realtime", lambda: False)
    monkeypatch.setattr(_threads, "_cores", lambda: (8, 8))
    assert _threads.other_runnable() == 4
    monkeypatch.setattr(_threads, "realtime", lambda: True)
    assert _threads.other_runnable() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_under_chrt_a_spinning_process_is_not_a_competitor():
    """The real thing: a process started under ``chrt -f 1`` sees no competitor in a spinner
    that the same process without ``chrt`` counts."""
    import shutil
    if shutil.which("chrt") is None:
        pytest.skip("no chrt (util-linux)")
    probe = ("import time; from cvcore import _threads\n"
             "seen = 0\n"
             "for _ in range(100):\n"
             "    seen = max(seen, _threads.other_runnable() or 0); time.sleep(0.01)\n"
             "print(_threads.realtime(), seen)")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        normal = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                timeout=60)
        rt = subprocess.run(["chrt", "-f", "1", sys.executable, "-c", probe],
                            capture_output=True, text=True, timeout=60)
    finally:
        spinner.kill()
        spinner.wait()
    assert normal.stdout.split()[0] == "False" and int(normal.stdout.split()[1]) >= 1
    if rt.returncode != 0:
        pytest.skip(f"chrt -f 1 not permitted here: {rt.stderr.strip()[:200]}")
    assert rt.stdout.split() == ["True", "0"]
