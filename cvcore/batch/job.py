"""A folder job: a frozen file list cut into partitions, run anywhere, written piece by piece.

The stages, in order
--------------------
1. **Prepare** (:meth:`FolderJob.prepare`). A new job walks its inputs once
   (:func:`cvcore.batch.files.walk_images`), streaming the paths into ``files.jsonl`` in its
   parts folder, then writes ``manifest.json`` (the settings that decide the output, the number
   of files, the partition size). Both are written atomically. A job whose parts folder already
   holds a manifest with the same settings is *resumed*: the saved file list is used as it is
   (not walked again), so partition ``i`` is the same files as in the first run even if the
   folder changed since. A manifest with other settings is refused with a ValueError.
2. **Run** (:func:`run_job`). Partition ``i`` is the files ``[i P, (i + 1) P)`` of the list. A
   partition whose piece is already in the parts folder is skipped; the others go to a
   scheduler: ``"local"`` (threads of this process decode, this thread computes), or Dask
   (``"processes:N"``, ``"tcp://host:port"`` or a ``distributed.Client``), where one task runs
   one partition and the window of tasks in flight is bounded, so the driver's memory does not
   grow with the number of files. Each result is written as its partition's piece, atomically
   (:func:`cvcore.io.atomic.atomic_write`), as soon as it arrives, in whatever order.
3. **Assemble**. When every piece is there the job's store joins them in partition order into the
   final output (also atomically) and removes the parts folder.

What a stop costs
-----------------
A killed driver loses the partitions in flight; everything written is whole, because every file
is written to a temporary name and renamed (temporaries left by a kill are removed on resume). A
Dask worker that dies loses the task it was running; the scheduler runs it again on another
worker (Dask's ``allowed-failures``, 3 by default, bounds how often one task may kill workers).
A task that raises is retried :data:`TASK_RETRIES` times, then the job stops with its error; the
pieces written so far remain for a resume.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cvcore.batch.files import WalkStats, walk_images
from cvcore.io.atomic import atomic_write

__all__ = ["FolderJob", "JobReport", "PieceStore", "run_job", "parse_scheduler",
           "remove_temporaries", "DEFAULT_PARTITION_SIZE"]

MANIFEST_FORMAT = "cvcore-batch-1"
#: Files per partition. Large enough that the scheduler's per-task cost (~1-5 ms for Dask on
#: loopback, benchmarks/README.md) is small beside the work (~0.3-3 ms an image), small enough that
#: a lost partition costs seconds and a partition's images fit in memory.
DEFAULT_PARTITION_SIZE = 256
#: Times a task that raised is submitted again before the job fails.
TASK_RETRIES = 2
#: Tasks in flight per Dask worker: one running, one queued so a worker never waits for the driver.
IN_FLIGHT_PER_WORKER = 2


def parse_scheduler(scheduler):
    """Check a ``--scheduler`` value: ``"local"``, ``"processes:N"``, ``"tcp://HOST:PORT"`` or a
    ``distributed.Client``. Returns ``("local", None)``, ``("processes", N)``, ``("address",
    str)`` or ``("client", client)``.

    >>> parse_scheduler("processes:2")
    ('processes', 2)
    >>> parse_scheduler("tcp://127.0.0.1:8786")
    ('address', 'tcp://127.0.0.1:8786')
    """
    if scheduler is None or scheduler == "local":
        return "local", None
    if isinstance(scheduler, str):
        if scheduler.startswith("processes:"):
            n = scheduler.split(":", 1)[1]
            if not n.isdigit() or int(n) < 1:
                raise ValueError(f"--scheduler processes:N needs a worker count N >= 1, "
                                 f"got {scheduler!r}")
            return "processes", int(n)
        if "://" in scheduler:
            return "address", scheduler
        raise ValueError(f"unknown scheduler {scheduler!r}: use local, processes:N (a Dask "
                         f"LocalCluster of N worker processes) or tcp://HOST:PORT (a running "
                         f"Dask scheduler)")
    if type(scheduler).__name__ == "Client" and hasattr(scheduler, "submit"):
        return "client", scheduler
    raise TypeError(f"scheduler must be a string or a distributed.Client, got "
                    f"{type(scheduler).__name__}")


@dataclass
class JobReport:
    """What a run did: counts, time, and where the work ran."""
    files: int = 0
    errors: int = 0
    skipped: int = 0                  # non-image files left out by the walk
    partitions: int = 0
    resumed: int = 0                  # partitions found done at the start
    seconds: float = 0.0              # wall time of this run (walk, run, assembly)
    run_seconds: float = 0.0          # first partition sent .. last written (no cluster start)
    run_files: int = 0                # files in the partitions run now (not resumed)
    compute_seconds: float = 0.0      # summed time inside the partitions run now
    scheduler: str = "local"
    workers: int = 1
    model_loads: int = 0              # how often a worker (or this process) loaded the model
    unreadable: list = field(default_factory=list)
    output: str = ""

    def summary(self) -> str:
        done = self.files - self.errors
        run = self.partitions - self.resumed
        rate = (f" ({self.run_files / self.run_seconds:,.0f} images/s)"
                if self.run_seconds > 0 and self.run_files else "")
        text = (f"{done:,} images done, {self.errors:,} error rows, {self.skipped:,} non-image "
                f"files skipped; {run} of {self.partitions} partitions run in "
                f"{self.run_seconds:.1f} s{rate} on {self.scheduler}")
        if self.resumed:
            text += f", {self.resumed} resumed from an earlier run"
        if self.unreadable:
            text += f"; {len(self.unreadable)} unreadable folders (first: {self.unreadable[0]})"
        return text + (f"; wrote {self.output}" if self.output else "")


class FolderJob:
    """The parts folder of one job: its manifest, file list and finished pieces.

    Parameters
    ----------
    parts_dir : path
        Where the manifest, the file list and the pieces live until the output is assembled.
    settings : dict
        JSON-able settings that decide the output (the job kind, the model's hash, ...); a resume
        requires the same.
    inputs : list of str
        Folders and files, as given.
    partition_size : int
        Files per partition.
    """

    def __init__(self, parts_dir, settings: dict, inputs, partition_size: int):
        if not isinstance(partition_size, int) or partition_size < 1:
            raise ValueError(f"partition_size must be an integer >= 1, got {partition_size!r}")
        if not inputs:
            raise ValueError("no input folders or files given")
        self.dir = Path(parts_dir)
        self.settings = dict(settings)
        self.inputs = [os.fspath(p) for p in inputs]
        self.partition_size = partition_size
        self.n_files = 0
        self.skipped = 0
        self.unreadable: list = []

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def files_path(self) -> Path:
        return self.dir / "files.jsonl"

    @property
    def n_partitions(self) -> int:
        return -(-self.n_files // self.partition_size)

    def _identity(self) -> dict:
        return {"format": MANIFEST_FORMAT, "settings": self.settings, "inputs": self.inputs,
                "partition_size": self.partition_size}

    def prepare(self) -> bool:
        """Create the job or pick up the one in ``parts_dir``; True when resuming."""
        for inp in self.inputs:
            if not os.path.exists(inp):
                raise FileNotFoundError(f"no such file or folder: {inp}")
        if self.manifest_path.is_file():
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            mine = self._identity()
            theirs = {k: manifest.get(k) for k in mine}
            if theirs != mine:
                diff = sorted(k for k in mine if theirs[k] != mine[k])
                if "settings" in diff:
                    diff = [f"settings.{k}" for k in sorted(
                        set(mine["settings"]) | set(theirs["settings"] or {}))
                        if (theirs["settings"] or {}).get(k) != mine["settings"].get(k)]
                raise ValueError(f"{self.dir} holds an unfinished job with other settings "
                                 f"({', '.join(diff)}); run it again as it was started to "
                                 f"resume it, or delete {self.dir} to start over")
            self.n_files = manifest["files"]
            self.skipped = manifest["skipped"]
            self.unreadable = manifest.get("unreadable", [])
            remove_temporaries(self.dir)
            return True
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_temporaries(self.dir)
        stats = WalkStats()
        n = 0
        with atomic_write(self.files_path, "w") as f:
            for path in walk_images(self.inputs, stats):
                f.write(json.dumps(path) + "\n")
                n += 1
        self.n_files, self.skipped, self.unreadable = n, stats.skipped, stats.unreadable
        manifest = dict(self._identity(), files=n, skipped=stats.skipped,
                        unreadable=stats.unreadable[:100])
        with atomic_write(self.manifest_path, "w") as f:
            json.dump(manifest, f, indent=1)
        return False


    def partitions(self):
        """Yield ``(i, paths)`` for every partition, reading the file list as a stream."""
        batch, i = [], 0
        with open(self.files_path, encoding="utf-8") as f:
            for line in f:
                batch.append(json.loads(line))
                if len(batch) == self.partition_size:
                    yield i, batch
                    batch, i = [], i + 1
        if batch:
            yield i, batch

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def remove_temporaries(folder) -> int:
    """Delete the temporary files that a killed write left in ``folder`` (atomic_write's
    ``.NAME.*.tmp``: never renamed, so part of no result); returns how many."""
    n = 0
    for root, _, names in os.walk(folder):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(os.path.join(root, name))
                n += 1
    return n


class PieceStore:
    """The driver's side of a job's pieces: ``piece(i)`` is the JSON-lines file whose presence
    marks partition ``i`` done (written last, atomically). Subclasses add ``write`` and
    ``assemble``."""

    def __init__(self, job: FolderJob):
        self.job = job

    def piece(self, i: int) -> Path:
        return self.job.dir / f"part-{i:07d}.jsonl"

    def done(self, i: int) -> bool:
        return self.piece(i).is_file()

    def errors_in(self, i: int) -> int:
        """Error rows in a finished piece (a resumed job's count starts with them)."""
        with open(self.piece(i), encoding="utf-8") as f:
            return sum("error" in json.loads(line) for line in f)


# -- schedulers ---------------------------------------------------------------------------------

def run_task(task, paths):
    """One partition on a worker: ``task.compute(paths, task.decode(paths))``, timed.

    Module-level so that Dask pickles it by reference; the task object carries its settings.
    """
    decoded, seconds = _timed(task.decode, paths)
    return _add_seconds(task.compute(paths, decoded), seconds)


def _timed(fn, *args):
    t0 = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t0


def _add_seconds(result, seconds: float):
    """Count the decoding time in the partition's ``seconds`` (the compute step set its own)."""
    result.seconds += seconds
    return result


def _run_local(task, todo, threads: int, on_result) -> None:
    """Decode partitions on ``threads`` threads, ``threads + 1`` partitions ahead, and compute
    each in this thread, in order (the models are not shared between threads)."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cvcore-decode") as pool:
        pending: deque = deque()
        it = iter(todo)

        def fill():
            while len(pending) <= threads:
                try:
                    i, paths = next(it)
                except StopIteration:
                    return
                pending.append((i, paths, pool.submit(_timed, task.decode, paths)))

        fill()
        while pending:
            i, paths, future = pending.popleft()
            decoded, seconds = future.result()
            fill()
            on_result(i, paths, _add_seconds(task.compute(paths, decoded), seconds))


def _local_cluster(n_workers: int):
    """A Dask LocalCluster of ``n_workers`` processes, one task at a time each, with the cores
    shared between them (Numba's threads per worker = cores / workers, at least 1)."""
    from distributed import LocalCluster
    threads = max(1, (os.cpu_count() or 1) // n_workers)
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0",
                        silence_logs=logging.CRITICAL,
                        env={"NUMBA_NUM_THREADS": str(threads)})


def _client_for(kind, value):
    """(client, things to close) for a parsed scheduler."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler processes:N and tcp://... need Dask's distributed "
                         "scheduler: pip install \"cvcore[batch]\"") from None
    if kind == "client":
        return value, []
    if kind == "processes":
        cluster = _local_cluster(value)
        client = Client(cluster)
        return client, [client, cluster]
    try:
        client = Client(value, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {value}: {exc}") from None
    return client, [client]


def _check_workers(client, task) -> None:
    """Refuse, in one line, a cluster whose workers cannot import cvcore or the task's module:
    Dask would otherwise leave tasks it cannot deserialise waiting for ever."""
    import importlib.util
    for module in dict.fromkeys(["cvcore.batch.job", type(task).__module__]):
        try:
            found = client.run(importlib.util.find_spec, module)
        except ImportError as exc:
            found = {f"a worker ({exc})": None}
        missing = [worker for worker, spec in found.items() if spec is None]
        if missing:
            raise ValueError(f"Dask worker {missing[0]} cannot import {module} "
                             f"({len(missing)} of {len(found)} workers): install cvcore and its "
                             f"dependencies on every worker")


def _run_dask(client, task, todo, on_result, label: str) -> int:
    """Submit one task per partition, at most :data:`IN_FLIGHT_PER_WORKER` per worker at a time;
    write each result as it arrives. Returns the number of workers."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    _check_workers(client, task)
    workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    window = IN_FLIGHT_PER_WORKER * workers
    token = uuid.uuid4().hex[:8]
    in_flight = {}
    it = iter(todo)
    done = as_completed()

    def submit_next() -> None:
        try:
            i, paths = next(it)
        except StopIteration:
            return
        future = client.submit(run_task, task, paths, key=f"cvcore-{label}-{token}-{i:07d}",
                               retries=TASK_RETRIES, pure=False)
        in_flight[future.key] = (i, paths)
        done.add(future)

    for _ in range(window):
        submit_next()
    for future in done:
        i, paths = in_flight.pop(future.key)
        try:
            result = future.result()        # re-raises the task's error after its retries
        except ImportError as exc:
            raise ValueError(f"a Dask worker cannot import what the job needs ({exc}); install "
                             f"cvcore and its dependencies on every worker") from exc
        except KilledWorker as exc:
            raise ValueError(f"partition {i} ({paths[0]} .. {paths[-1]}) was running each "
                             f"time one of {getattr(exc, 'allowed_failures', 3) + 1} workers "
                             f"died: look for a file that exhausts a worker's memory; the "
                             f"finished partitions are kept for a resume") from exc
        future.release()
        on_result(i, paths, result)
        submit_next()
    return workers


def run_job(job: FolderJob, task, store, scheduler="local", threads: int | None = None,
            progress=None, on_partition=None) -> JobReport:
    """Prepare or resume ``job``, run its missing partitions, and assemble the output.

    Parameters
    ----------
    job : FolderJob
    task : object
        Picklable, with ``decode(paths) -> decoded`` and ``compute(paths, decoded) -> result``
        (run on the workers) and ``load_count()``.
    store : object
        Driver side: ``done(i) -> bool``, ``write(i, paths, result) -> (n_rows, n_errors)``,
        ``errors_in(i) -> int`` for a resumed piece, and ``assemble(job) -> str`` (the output).
    scheduler : str or distributed.Client
        See :func:`parse_scheduler`.
    threads : int, optional
        ``local``: decoding threads (default: the number of cores).
    progress : cvcore.batch.progress.Progress, optional
    on_partition : callable(i), optional
        Called after each partition's piece is written (tests stop a worker from here).
    """
    t0 = time.perf_counter()
    kind, value = parse_scheduler(scheduler)
    job.prepare()
    report = JobReport(files=job.n_files, skipped=job.skipped, partitions=job.n_partitions,
                       unreadable=list(job.unreadable))
    todo, errors, resumed_files = set(), 0, 0
    for i, paths in job.partitions():
        if store.done(i):
            report.resumed += 1
            resumed_files += len(paths)
            errors += store.errors_in(i)
        else:
            todo.add(i)
    if progress is not None:
        progress.start(total=job.n_files, done=resumed_files, errors=errors)
    pending = ((i, p) for i, p in job.partitions() if i in todo)

    def on_result(i, paths, result):
        nonlocal errors
        n_errors = store.write(i, paths, result)
        errors += n_errors
        report.run_files += len(paths)
        report.compute_seconds += getattr(result, "seconds", 0.0)
        report.model_loads += getattr(result, "loads", 0)
        if progress is not None:
            progress.advance(len(paths), n_errors)
        if on_partition is not None:
            on_partition(i)

    closers = []
    t_run = time.perf_counter()
    try:
        if todo and kind == "local":
            report.scheduler = "local"
            report.workers = 1
            _run_local(task, pending, threads or os.cpu_count() or 1, on_result)
        elif todo:
            client, closers = _client_for(kind, value)
            t_run = time.perf_counter()            # not the cluster's start-up
            report.scheduler = {"processes": f"processes:{value}", "address": str(value),
                                "client": "a Dask client"}[kind]
            report.workers = _run_dask(client, task, pending, on_result,
                                       job.settings.get("job", "job"))
        report.run_seconds = time.perf_counter() - t_run
    finally:
        for c in closers:
            c.close()
        if progress is not None:
            progress.finish()
    report.errors = errors
    report.output = store.assemble(job)
    job.remove()
    report.seconds = time.perf_counter() - t0
    return report
