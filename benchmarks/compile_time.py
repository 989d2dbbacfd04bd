"""Cold start of each command: how much of a fresh install's first run is Numba compilation.

Every command path runs twice in a fresh process: first with an empty Numba cache (``cold``:
every kernel it needs is compiled and written to the cache), then again with the cache the first
run wrote (``warm``: the compiled code is loaded, nothing compiled). For each run the script
records the process's CPU time (user + system, ``os.wait4``; compilation is single-threaded CPU
work, so on a shared machine CPU time is steadier than wall time) and the wall time, and inside
the process it listens to Numba's ``"numba:compile"`` events (:mod:`numba.core.event`), which
fire once per compiled specialisation and *not* for one loaded from the cache. The table shows

* ``cold`` / ``warm``: CPU seconds of the whole command (wall seconds in brackets);
* ``compile``: CPU seconds inside compile events (outermost events only, so a kernel compiled
  while its caller compiles is counted once), and ``share`` = compile / cold;
* ``specs``: specialisations compiled cold; ``misses``: compile events in the warm run (a kernel
  the on-disk cache failed to serve: should be 0).

and then, per path, the compile time of each kernel module and the functions with the most
compile time of their own (time in nested compiles of callees subtracted), with how many
specialisations each compiled.

Paths (the files the later paths need are made once, first, in a set-up cache):

* ``demo``: ``cvcore demo`` (``--quick``: ``cvcore demo --quick``, 600 images, 1 epoch);
* ``predict-hog`` / ``predict-resnet20``: ``cvcore predict`` of one photo with the demo's
  ``hog-svm`` / ``resnet20`` weights;
* ``serve``: ``cvcore serve`` of the ``resnet20`` and ``hog-svm`` weights until ``/readyz``
  answers 200 (every model compiled and warmed; needs the ``serve`` extra);
* ``detect``: ``cvcore detect`` on a photo with a HOG face detector trained on
  ``dlib-faces/training.xml`` (needs the shared data sets; skipped with a reason otherwise).

Run from the repository root::

    python -m benchmarks.compile_time                 # every path, the full demo
    python -m benchmarks.compile_time --quick         # the quick demo instead (faster)
    python -m benchmarks.compile_time --paths demo --repeat 2

``NUMBA_NUM_THREADS`` is passed through; the cache directories live in a temporary folder that is
removed at the end (``--keep`` keeps it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))
PHOTO = ROOT / "cvcore" / "data" / "roofs1.jpg"
FACES = DATA / "dlib-faces"
#: how long one command may run before it counts as hung (seconds, wall)
TIMEOUT = 3600
PATHS = ("demo", "predict-hog", "predict-resnet20", "serve", "detect")


# -- the child: one command under a compile-event listener -----------------------------------

def _child(out_json: str, argv: list[str]) -> None:
    """Run ``cvcore <argv>`` in this process, recording every Numba compile event."""
    from numba.core import event

    records = []          # (function, signature, self CPU s, total CPU s, wall s, depth)
    stack = []            # per open event: [thread CPU at start, wall at start, child CPU]
    lock = threading.Lock()

    class Listener(event.Listener):
        def on_start(self, ev):
            with lock:
                stack.append([time.thread_time(), time.perf_counter(), 0.0])

        def on_end(self, ev):
            cpu1, wall1 = time.thread_time(), time.perf_counter()
            with lock:
                cpu0, wall0, nested = stack.pop()
                total = cpu1 - cpu0
                if stack:
                    stack[-1][2] += total
                disp = ev.data["dispatcher"]
                name = f"{disp.py_func.__module__}.{disp.py_func.__qualname__}"
                sig = ", ".join(str(a) for a in ev.data["args"])
                records.append((name, sig, total - nested, total, wall1 - wall0, len(stack)))

    event.register("numba:compile", Listener())
    t_wall = time.perf_counter()
    status = {"ok": True}

    def dump():
        result = {"records": records, "wall": time.perf_counter() - t_wall,
                  "cpu": time.process_time(), "ok": status["ok"]}
        Path(out_json).write_text(json.dumps(result))

    from cvcore.cli import main
    if argv and argv[0] == "serve":
        port = argv[argv.index("--port") + 1]

        def wait_ready():
            import urllib.request
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(0.05)
            dump()
            os._exit(0)

        threading.Thread(target=wait_ready, daemon=True).start()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    status["ok"] = code in (0, None)
    dump()
    sys.stdout.flush()
    os._exit(0 if status["ok"] else 1)


# -- the parent: cold and warm runs ------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_command(argv: list[str], cache_dir: Path, work: Path, log: Path) -> dict:
    """One ``cvcore`` command in a fresh process with ``NUMBA_CACHE_DIR=cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONDONTWRITEBYTECODE="1")
    out_json = work / "child.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.compile_time", "--child", str(out_json), "--", *argv]
    t0 = time.perf_counter()
    with open(log, "ab") as logf:
        logf.write(("\n$ " + " ".join(argv) + f"  (NUMBA_CACHE_DIR={cache_dir})\n").encode())
        logf.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{' '.join(argv)} did not finish in {TIMEOUT} s (log: {log})")
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0 or not out_json.exists():
        raise RuntimeError(f"`cvcore {' '.join(argv)}` failed; see {log}")
    child = json.loads(out_json.read_text())
    records = child["records"]
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall,
            "compile": sum(r[3] for r in records if r[5] == 0),
            "compile_wall": sum(r[4] for r in records if r[5] == 0),
            "specs": len(records), "records": records}


def path_commands(work: Path, quick: bool) -> dict:
    """``{path: argv}`` of every path, given the files :func:`setup` made in ``work``."""
    demo = work / "setup" / "demo"
    return {
        "demo": ["demo", "--out", str(work / "demo-out")] + (["--quick"] if quick else []),
        "predict-hog": ["predict", str(PHOTO), "--weights", str(demo / "hog-svm" / "model.npz")],
        "predict-resnet20": ["predict", str(PHOTO), "--weights",
                             str(demo / "resnet20" / "model.npz")],
        "serve": ["serve", str(demo / "resnet20" / "model.npz"),
                  str(demo / "hog-svm" / "model.npz"), "--port", "PORT"],
        "detect": ["detect", str(FACES / "2008_002470.jpg"), "--weights",
                   str(work / "setup" / "faces" / "model.npz"), "--out", str(work / "detect-out")],
    }


def setup(work: Path, paths, log: Path) -> dict:
    """Make the weights the later paths read (in a cache of their own); ``{path: skip reason}``."""
    skip = {}
    cache = work / "cache-setup"
    needs_demo = {"predict-hog", "predict-resnet20", "serve"} & set(paths)
    if needs_demo:
        print("set-up: cvcore demo --quick (weights for predict and serve) ...", flush=True)
        run_command(["demo", "--quick", "--out", str(work / "setup" / "demo")], cache, work, log)
    if "serve" in paths:
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            skip["serve"] = "the serve extra (fastapi, uvicorn) is not installed"
    if "detect" in paths:
        if not (FACES / "training.xml").exists():
            skip["detect"] = f"no {FACES / 'training.xml'} (set CVCORE_DATASETS)"
        else:
            print("set-up: cvcore train --model hog-detector (dlib-faces) ...", flush=True)
            run_command(["train", "--model", "hog-detector", "--data",
                         str(FACES / "training.xml"), "--out", str(work / "setup" / "faces")],
                        cache, work, log)
    return skip


def top_functions(records, n):
    """The ``n`` functions with the most own compile CPU: (name, seconds, [signatures])."""
    per = {}
    for name, sig, own, _total, _wall, _depth in records:
        entry = per.setdefault(name, [0.0, []])
        entry[0] += own
        entry[1].append(sig)
    return sorted(((k, v[0], v[1]) for k, v in per.items()), key=lambda t: -t[1])[:n]


def by_module(records):
    """Own compile CPU per module, largest first: [(module, seconds)]; Numba's own overloads
    (``np.empty``, ``min``, ...) are summed as ``numba``."""
    per = {}
    for name, _sig, own, _total, _wall, _depth in records:
        module = "numba" if name.startswith("numba.") else name.rsplit(".", 1)[0]
        per[module] = per.get(module, 0.0) + own
    return sorted(per.items(), key=lambda t: -t[1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paths", default=",".join(PATHS),
                    help=f"comma-separated subset of {','.join(PATHS)}")
    ap.add_argument("--quick", action="store_true", help="the demo path runs `demo --quick`")
    ap.add_argument("--repeat", type=int, default=1, help="cold + warm pairs per path (default 1)")
    ap.add_argument("--top", type=int, default=12, help="functions listed per path (default 12)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        ap.error(f"unknown paths {sorted(unknown)}; choose from {PATHS}")

    work = Path(tempfile.mkdtemp(prefix="cvcore-compile-"))
    log = work / "commands.log"
    print(f"cvcore cold start; work folder {work}; commands' output in {log}")
    print(f"python {sys.version.split()[0]}, NUMBA_NUM_THREADS="
          f"{os.environ.get('NUMBA_NUM_THREADS', '(default)')}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    results = {}
    try:
        skip = setup(work, paths, log)
        commands = path_commands(work, args.quick)
        for path in paths:
            if path in skip:
                print(f"{path}: skipped ({skip[path]})", flush=True)
                continue
            for rep in range(args.repeat):
                cache = work / f"cache-{path}-{rep}"
                argv = [str(_free_port()) if a == "PORT" else a for a in commands[path]]
                cold = run_command(argv, cache, work, log)
                argv = [str(_free_port()) if a == "PORT" else a for a in commands[path]]
                warm = run_command(argv, cache, work, log)
                results.setdefault(path, []).append({"cold": cold, "warm": warm})
                print(f"{path} (run {rep + 1}): cold {cold['cpu']:.1f} s CPU, warm "
                      f"{warm['cpu']:.1f} s, compile {cold['compile']:.1f} s, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print("| path | cold CPU s (wall) | warm CPU s (wall) | compile CPU s | share | specs | "
          "warm misses |")
    print("|---|---|---|---|---|---|---|")
    for path, runs in results.items():
        for r in runs:
            c, w = r["cold"], r["warm"]
            print(f"| {path} | {c['cpu']:.1f} ({c['wall']:.1f}) | {w['cpu']:.1f} "
                  f"({w['wall']:.1f}) "
                  f"| {c['compile']:.1f} | {c['compile'] / c['cpu']:.0%} | {c['specs']} | "
                  f"{w['specs']} |")
    for path, runs in results.items():
        c = runs[0]["cold"]
        print(f"\n{path}: own compile CPU by module (cold run 1): " +
              ", ".join(f"{m} {t:.1f}" for m, t in by_module(c["records"])))
        print(f"{path}: top functions by own compile CPU (cold run 1)")
        for name, secs, sigs in top_functions(c["records"], args.top):
            shown = "; ".join(sigs[:3]) + (f"; ... ({len(sigs)})" if len(sigs) > 3 else "")
            print(f"  {secs:6.2f} s  {len(sigs)} x {name}({shown})")
        misses = sorted({r[0] for r in runs[0]["warm"]["records"]})
        if misses:
            print(f"  warm-run cache misses: {', '.join(misses)}")
    print(f"\nload average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[4:])
    else:
        main()
