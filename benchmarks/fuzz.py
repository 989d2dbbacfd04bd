"""Fuzz the public API for many thousands of cases (issue 11): ``python -m benchmarks.fuzz``.

Runs every entry of :mod:`tests.fuzz_registry` with ``--cases`` generated cases each, in
``--workers`` long-lived child processes (a crash or hang is caught, reported and the worker
re-spawned), and prints the count of cases by outcome, the seconds, and every finding with its
reproducer. Exit status 1 if there is any finding.

    python -m benchmarks.fuzz --cases 150            # ~9000 cases
    python -m benchmarks.fuzz --only nn. --cases 500
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter


def main(argv=None) -> int:
    from tests.fuzz_harness import WorkerPool, fuzz_entry
    from tests.fuzz_registry import all_entries
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=200, help="cases per entry (default 200)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default="",
                   help="run the entries whose label contains this (several: comma-separated)")
    args = p.parse_args(argv)
    wanted = args.only.split(",")
    entries = [(label, e) for label, e in all_entries() if any(w in label for w in wanted)]
    pool = WorkerPool(size=args.workers)
    totals: Counter = Counter()
    findings: list = []
    lock = threading.Lock()
    t0 = time.perf_counter()
    queue = list(enumerate(entries))

    def drain(worker):
        while True:
            with lock:
                if not queue:
                    return
                i, (label, entry) = queue.pop(0)
            t = time.perf_counter()
            counts, found = fuzz_entry(pool, label, entry, args.cases, seed=args.seed + i,
                                       worker=worker)
            with lock:
                totals.update(counts)
                findings.extend(found)
                print(f"{label:48s} {sum(counts.values()):6d} cases "
                      f"{time.perf_counter() - t:6.1f} s  "
                      + " ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
                for f in found:     # at once too: a run stopped early keeps its reproducers
                    print(f"    {f}", flush=True)

    threads = [threading.Thread(target=drain, args=(w,)) for w in range(args.workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    pool.close()
    seconds = time.perf_counter() - t0
    n = sum(totals.values())
    print(f"\n{n} cases over {len(entries)} entries in {seconds:.0f} s with {args.workers} "
          f"workers (respawned {pool.respawns} times): "
          + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    for f in findings:
        print(f)
    print(f"{len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
