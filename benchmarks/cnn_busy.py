"""cvcore and PyTorch on a busy machine: the model rows idle and under background loads.

Run from the repository root (``python -m benchmarks.cnn --busy`` runs the same)::

    python -m benchmarks.cnn_busy                 # ~3-4 minutes on 2 idle cores (15 at load 9)
    python -m benchmarks.cnn_busy --seconds 1     # shorter: ~1 s of calls per measurement (1.5)
    python -m benchmarks.cnn_busy --no-shared     # skip the shared-process pair
    python -m benchmarks.cnn_busy --fixed         # also cvcore with the free-core rule off
    python -m benchmarks.cnn_busy --rows 2 --loads "spin x1,torch job"   # a subset
    python -m benchmarks.cnn_busy --regions       # the cost of one small parallel region

The three model rows of :mod:`benchmarks.cnn` (ResNet-20 training step at batch 128, ResNet-20
inference at batch 128, ResNet-50 inference at batch 1 on 224x224) run in worker processes
that this script starts and keeps for the whole run:

* ``cvcore``: cvcore alone (``torch`` cannot be imported there), Numba's OpenMP pool only;
* ``torch``: PyTorch alone (its own bundled libgomp), on as many threads as there are cores;
* ``shared``: both in one process, as :mod:`benchmarks.cnn` runs them. Two libgomp copies are
  mapped there (Numba's omppool links the system one, torch bundles its own), but torch loads
  its copy globally first, so Numba's OpenMP calls bind to torch's (``LD_DEBUG=bindings``): one
  runtime, with the wait policy torch's copy read at import (the default spin; the short spin
  :mod:`kernels` sets comes too late for it).

Each is timed idle, then under background loads that the script starts and stops itself:

* ``spin x1`` / ``spin x2``: one / two processes spinning in a Python loop;
* ``torch job``: another process running ResNet-20 inference at batch 64 in PyTorch, on its
  own threads (as many as cores, torch's default), in a loop;
* ``short procs``: a stream of short-lived processes (a Python interpreter summing a range,
  ~30 ms each, one after the other: what a package install or a build does to a machine).

For every row and load it prints the median wall time per call, the CPU time of the whole
worker process per call (all its threads: a spinning thread shows up here), each slow-down
relative to the idle run of the same worker, and cvcore's slow-down over PyTorch's (below or
at 1: cvcore degrades no worse than PyTorch). The machine's other load is not controlled: the
load average is printed at the start and at the end of each load.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time

ROWS = ("resnet20 train step b128", "resnet20 inference b128", "resnet50 inference b1 224")
SHORT = {"resnet20 train step b128": "r20 train b128", "resnet20 inference b128": "r20 infer b128",
         "resnet50 inference b1 224": "r50 infer b1"}
PREFIX = "@@ "          # protocol lines of the worker start with this (anything else is noise)

SPIN = "while True:\n    pass\n"
TORCH_JOB = """
import sys, torch
from benchmarks.torch_models import torch_resnet
torch.set_num_threads(%d)
net = torch_resnet("resnet20", 10).eval()
x = torch.randn(64, 3, 32, 32)
with torch.no_grad():
    net(x)
    print("ready", flush=True)
    while True:
        net(x)
"""
SHORT_PROCS = """
import subprocess, sys
print("ready", flush=True)
while True:
    subprocess.run([sys.executable, "-S", "-c", "sum(range(400000))"])
"""
LOADS = {
    "spin x1": [SPIN],
    "spin x2": [SPIN, SPIN],
    "torch job": [TORCH_JOB % (os.cpu_count() or 1)],
    "short procs": [SHORT_PROCS],
}


# -- the cost of one parallel region ------------------------------------------------------------

REGION_VARIANTS = {                      # label -> (environment, Numba threads)
    "2 threads, short spin (cvcore's default)": ({}, 2),
    "2 threads, libgomp's default spin": ({"GOMP_SPINCOUNT": "300000"}, 2),
    "2 threads, passive wait": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
    "1 thread": ({}, 1),
}


def region_child(threads):
    """Print the wall and CPU microseconds per Numba parallel region of ~10 us of work per
    thread (a network's typical small region), over 2000 regions."""
    import numba
    import numpy as np
    from numba import njit, prange

    import kernels  # noqa: F401  (the wait policy default)

    @njit(parallel=True)
    def region(x, lanes):
        for lane in prange(lanes):
            n = x.size // lanes
            for i in range(lane * n, (lane + 1) * n):
                x[i] = x[i] * np.float32(0.999) + np.float32(0.001)

    numba.set_num_threads(threads)
    x = np.ones(20000, np.float32)
    region(x, threads)
    count = 2000
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(count):
        region(x, threads)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(PREFIX + json.dumps({"wall": wall / count, "cpu": cpu / count}), flush=True)


def regions(loads):
    """The table of :func:`region_child` per wait policy and thread count, idle and under
    ``loads``: what a descheduled team thread costs every region."""
    print(f"one parallel region of ~10 us of work per thread: wall / CPU microseconds per "
          f"region (load average at the start {_load_avg()})")
    names = ["idle"] + loads
    print(f"{'':<42}" + "".join(f"{n:>18}" for n in names))
    table = {}
    for name in names:
        load = Load(LOADS[name]) if name != "idle" else None
        try:
            for label, (env, threads) in REGION_VARIANTS.items():
                res = subprocess.run([sys.executable, "-m", "benchmarks.cnn_busy",
                                      "--region-child", str(threads)], capture_output=True,
                                     text=True, env={**os.environ, **env}, check=True)
                line = [ln for ln in res.stdout.splitlines() if ln.startswith(PREFIX)][-1]
                table[(label, name)] = json.loads(line[len(PREFIX):])
        finally:
            if load is not None:
                load.stop()
    for label in REGION_VARIANTS:
        cells = "".join(f"{table[(label, n)]['wall'] * 1e6:9.0f} /{table[(label, n)]['cpu'] * 1e6:6.0f} "
                        for n in names)
        print(f"{label:<42}{cells}")


# -- the worker ----------------------------------------------------------------------------------

def worker(impls):
    """Build the workloads of ``impls`` ("cvcore", "torch" or both), warm them up, then serve
    ``ROW-INDEX IMPL SECONDS`` requests from stdin with one JSON line of timings each."""
    if "torch" not in impls:
        sys.modules["torch"] = None          # this process must not load torch's libgomp
    from benchmarks import cnn
    if "torch" in impls:
        cnn.torch.set_num_threads(cnn.THREADS)
    fns = {}
    for impl in impls:
        for i, name in enumerate(ROWS):
            fn = cnn._workload(impl, name, cnn.MODEL_WORKLOADS[name])
            fn()
            fn()
            fns[(i, impl)] = fn
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:                      # no parallel region has run here (torch alone)
        layer = "not started"
    print(PREFIX + json.dumps({"ready": True, "threading_layer": layer,
                               "numba_threads": numba.get_num_threads(),
                               "libgomp": _libgomps()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        i, impl, seconds = line.split()
        fn = fns[(int(i), impl)]
        walls, cpus = [], []
        start = time.perf_counter()
        while len(walls) < 3 or (time.perf_counter() - start < float(seconds)
                                 and len(walls) < 50):
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        print(PREFIX + json.dumps({"wall": statistics.median(walls),
                                   "cpu": statistics.median(cpus), "n": len(walls)}), flush=True)


def _libgomps():
    """The OpenMP runtimes mapped into this process (paths)."""
    try:
        with open("/proc/self/maps") as f:
            return sorted({ln.split()[-1] for ln in f if "gomp" in ln or "libiomp" in ln})
    except OSError:
        return []


class Worker:
    """A worker process (:func:`worker`) running the workloads of ``impls``; ``env``: extra
    environment variables for it."""

    def __init__(self, label, impls, env=None):
        self.label, self.impls = label, impls
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.cnn_busy", "--worker", ",".join(impls)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, **(env or {})})
        self.info = self._reply()

    def _reply(self):
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])
        raise RuntimeError(f"worker {self.label} exited with {self.proc.wait()}")

    def measure(self, row, impl, seconds):
        self.proc.stdin.write(f"{row} {impl} {seconds}\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# -- background loads ------------------------------------------------------------------------------

class Load:
    """Background processes started together and stopped together (each in its own process
    group, so that the short-lived children of ``short procs`` go too)."""

    def __init__(self, scripts):
        self.procs = []
        for script in scripts:
            p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                                 cwd=os.getcwd())
            self.procs.append(p)
        for p in self.procs:                  # wait for "ready" from scripts that print it
            if "ready" in (p.args[-1]):
                ready, _, _ = select.select([p.stdout], [], [], 120)
                if ready:
                    p.stdout.readline()
        time.sleep(0.5)                       # let the scheduler settle

    def stop(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def _load_avg():
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


# -- the run ---------------------------------------------------------------------------------------

def run(seconds, shared=True, rows=None, loads=None, fixed=False):
    """Measure ``rows`` (indices into :data:`ROWS`, default all) idle and under ``loads``
    (names in :data:`LOADS`, default all); print the tables; return the raw results."""
    rows = list(range(len(ROWS))) if rows is None else rows
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        raise SystemExit("benchmarks.cnn_busy: torch is not installed; the busy-machine table "
                         "compares cvcore with PyTorch (pip install torch)")
    t_start = time.perf_counter()
    print(f"load average at the start: {_load_avg()} (the rest of the machine is not "
          f"controlled)", flush=True)
    workers = [Worker("cvcore", ["cvcore"]), Worker("torch", ["torch"])]
    if shared:
        workers.append(Worker("shared", ["cvcore", "torch"]))
    if fixed:
        workers.append(Worker("fixed", ["cvcore"], {"CVCORE_ADAPTIVE_THREADS": "0"}))
    for w in workers:
        info = w.info
        print(f"worker {w.label:<7}: Numba {info['threading_layer']} x{info['numba_threads']}; "
              f"OpenMP runtimes {', '.join(info['libgomp']) or 'none'}", flush=True)
    # columns: (worker, impl)
    cols = [(w, impl) for w in workers for impl in w.impls]
    results = {}                             # (load, row, worker label, impl) -> reply
    loads = ["idle"] + list(LOADS if loads is None else loads)
    try:
        for load_name in loads:
            load = Load(LOADS[load_name]) if load_name != "idle" else None
            try:
                before = _load_avg()
                for r in rows:
                    # alternate the order row by row so drift hits both frameworks alike
                    order = cols if r % 2 == 0 else cols[::-1]
                    for w, impl in order:
                        results[(load_name, r, w.label, impl)] = w.measure(r, impl, seconds)
                print(f"  measured {load_name} (load average {before} -> {_load_avg()})",
                      flush=True)
            finally:
                if load is not None:
                    load.stop()
            time.sleep(1.0)
    finally:
        for w in workers:
            w.close()
    print_tables(results, workers, loads, rows)
    print(f"load average at the end: {_load_avg()}; {time.perf_counter() - t_start:.0f} s in all")
    return results


def print_tables(results, workers, loads, rows):
    pairs = [("separate processes", "cvcore", "torch")]
    if any(w.label == "shared" for w in workers):
        pairs.append(("one process (cvcore and torch share it)", "shared", "shared"))
    if any(w.label == "fixed" for w in workers):
        pairs.append(("separate processes, cvcore on a fixed thread count "
                      "(CVCORE_ADAPTIVE_THREADS=0: as before the free-core rule)", "fixed", "torch"))
    for title, cv_worker, t_worker in pairs:
        print(f"\n{title}: wall ms per call (x idle), CPU ms per call of the worker process; "
              f"last column: cvcore's slow-down / torch's (<= 1: cvcore degrades no worse)")
        print(f"{'load':<12} {'row':<15} {'cvcore ms':>16} {'cv CPU':>7} {'torch ms':>16} "
              f"{'t CPU':>7} {'torch/cv':>8} {'slow cv/t':>9}")
        worst = []
        for load in loads:
            for r in rows:
                name = ROWS[r]
                cv = results[(load, r, cv_worker, "cvcore")]
                t = results[(load, r, t_worker, "torch")]
                cv0 = results[("idle", r, cv_worker, "cvcore")]
                t0 = results[("idle", r, t_worker, "torch")]
                s_cv, s_t = cv["wall"] / cv0["wall"], t["wall"] / t0["wall"]
                rel = f"{s_cv / s_t:9.2f}" if load != "idle" else f"{'':>9}"
                print(f"{load:<12} {SHORT[name]:<15} {cv['wall'] * 1e3:8.1f} ({s_cv:4.1f}x) "
                      f"{cv['cpu'] * 1e3:7.1f} {t['wall'] * 1e3:8.1f} ({s_t:4.1f}x) "
                      f"{t['cpu'] * 1e3:7.1f} {t['wall'] / cv['wall']:8.2f} {rel}")
                if load != "idle":
                    worst.append((s_cv / s_t, load, SHORT[name]))
        if worst:
            w = max(worst)
            held = sum(1 for x in worst if x[0] <= 1.0)
            print(f"cvcore degraded no worse than torch in {held} of {len(worst)} (load, row) "
                  f"pairs; worst slow-down ratio {w[0]:.2f} ({w[1]}, {w[2]})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="time spent calling each row per measurement (at least 3 calls)")
    parser.add_argument("--no-shared", action="store_true",
                        help="skip the worker that runs cvcore and torch in one process")
    parser.add_argument("--rows", default="0,1,2",
                        help="which rows, by index: 0 ResNet-20 train step, 1 ResNet-20 "
                             "inference, 2 ResNet-50 batch 1 (default all)")
    parser.add_argument("--loads", default=",".join(LOADS),
                        help=f"which loads, comma-separated (default all: {', '.join(LOADS)})")
    parser.add_argument("--fixed", action="store_true",
                        help="also a cvcore worker with the free-core rule off "
                             "(CVCORE_ADAPTIVE_THREADS=0), to see what the rule changes")
    parser.add_argument("--regions", action="store_true",
                        help="only the cost of one small parallel region per wait policy and "
                             "thread count, idle and under the loads (~1 minute)")
    parser.add_argument("--region-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker.split(","))
        return
    if args.region_child:
        region_child(args.region_child)
        return
    rows = [int(r) for r in args.rows.split(",")]
    loads = [name.strip() for name in args.loads.split(",") if name.strip()]
    for r in rows:
        if not 0 <= r < len(ROWS):
            parser.error(f"--rows: {r} is not a row index (0-{len(ROWS) - 1})")
    for name in loads:
        if name not in LOADS:
            parser.error(f"--loads: unknown load {name!r} (known: {', '.join(LOADS)})")
    if args.regions:
        regions(loads)
        return
    run(args.seconds, shared=not args.no_shared, rows=rows, loads=loads, fixed=args.fixed)


if __name__ == "__main__":
    main()
