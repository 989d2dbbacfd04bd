"""Batch prediction over a folder: cvcore's local and Dask schedulers beside a PyTorch + Pillow loop.

    python -m benchmarks.batch                     # ../shared/datasets/cifar10/test, 10 000 JPEGs
    python -m benchmarks.batch --limit 2000 --workers 2 --partition-size 256

The work: top-3 classes of every JPEG under the folder with a ResNet-20 (seeded weights; accuracy
is not the point, and both engines get the very same weights), written to JSON lines. Each variant
runs in its own process, whose process tree (driver, Dask scheduler, nannies, workers) is sampled
for its peak resident memory:

* ``local``: ``cvcore predict FOLDER --out F.jsonl`` (threads decode, one thread predicts);
* ``processes:N``: the same on a Dask LocalCluster of N worker processes (cluster start-up is
  reported separately, not counted in images/s);
* ``null local`` / ``null processes:N``: the same job machinery with a task that does no work
  (it returns an empty row per file): the time per partition is the cost of the scheduler, the
  piece writes and the driver alone, i.e. the per-partition overhead;
* ``torch``: the loop a PyTorch user writes: ``sorted(glob)``, ``PIL.Image.open().convert("RGB")``,
  normalise, batches of 256 through the same ResNet-20 in ``torch.no_grad()``, ``softmax``,
  ``topk``, one JSON line per file.

Printed: images per second (of the steady state: after the first partition of each worker, which
pays for importing cvcore and loading the model), the ratio to PyTorch (above 1: cvcore is faster),
the overhead per partition, peak memory, the agreement of the top-1 classes with PyTorch, and a
projection for ten million images in an hour.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_DATA = (Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10"
                / "test")
TORCH_BATCH = 256
TOP = 3
SAMPLE_SECONDS = 0.02


# -- the model ----------------------------------------------------------------------------------

def build_model(data: Path, path: Path) -> None:
    """A seeded ResNet-20 for 32x32 RGB with the per-channel mean and std of 500 of the images."""
    from cvcore import nn
    from cvcore.batch import walk_images
    from cvcore.io.datasets import decode_image
    from cvcore.train.pipeline import TrainedModel
    classes = sorted(p.name for p in data.iterdir() if p.is_dir()) or ["class"]
    files = [p for _, p in zip(range(500), walk_images([data]))]
    x = np.stack([decode_image(p, "rgb", (32, 32)) for p in files]).astype(np.float32) / 255
    mean = x.mean(axis=(0, 1, 2)).astype(np.float32)
    std = (x.std(axis=(0, 1, 2)) + 1e-6).astype(np.float32)
    net = nn.resnet20(num_classes=len(classes), in_channels=3, rng=0)
    TrainedModel("resnet20", classes, (32, 32), "rgb", {},
                 {"mean": mean, "std": std, "state_dict": dict(net.state_dict())}).save(path)


# -- the variants (each in a child process) -----------------------------------------------------

@dataclass(frozen=True)
class NullTask:
    """The job machinery's cost alone: no decoding, no model, an empty row per file."""

    def decode(self, paths):
        return paths

    def compute(self, paths, decoded):
        from cvcore.batch.predict import PartitionResult
        return PartitionResult([{"image": p, "top": []} for p in paths], 0.0, 0)


def child_cvcore(args) -> dict:
    from cvcore.batch import predict_folder
    from cvcore.batch.job import FolderJob, run_job
    from cvcore.batch.predict import PredictStore, parts_dir_for
    stamps = []
    t0 = time.perf_counter()
    if args.variant.startswith("null "):
        scheduler = args.variant[5:]
        job = FolderJob(parts_dir_for(args.out), {"job": "null"}, [str(args.data)],
                        args.partition_size)
        from benchmarks.batch import NullTask as Null     # by its module name, not __main__
        report = run_job(job, Null(), PredictStore(job, args.out, 1), scheduler,
                         on_partition=lambda i: stamps.append(time.perf_counter()))
    else:
        report = predict_folder(args.data, args.model, args.out, top=TOP,
                                scheduler=args.variant, partition_size=args.partition_size,
                                progress=False,
                                on_partition=lambda i: stamps.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    workers = report.workers
    # steady state: from the moment every worker has finished one partition
    skip = min(workers, len(stamps) - 1)
    steady_images = report.run_files - skip * args.partition_size
    steady_seconds = stamps[-1] - stamps[skip - 1] if skip >= 1 else report.run_seconds
    per_partition = steady_seconds / max(len(stamps) - skip, 1)
    return {"variant": args.variant, "files": report.files, "errors": report.errors,
            "partitions": report.partitions, "workers": workers, "wall": wall,
            "run_seconds": report.run_seconds, "startup": wall - report.run_seconds,
            "steady_rate": steady_images / steady_seconds if steady_seconds > 0 else 0.0,
            "per_partition": per_partition, "compute_seconds": report.compute_seconds, "model_loads": report.model_loads}


def child_torch(args) -> dict:
    import torch
    from PIL import Image
    from benchmarks.torch_models import torch_resnet
    from cvcore.train.pipeline import load_model
    torch.set_num_threads(os.cpu_count() or 1)
    cv = load_model(args.model)
    model = torch_resnet("resnet20", num_classes=len(cv.class_names), in_channels=3)
    model.load_state_dict({k: torch.from_numpy(np.array(v))
                           for k, v in cv.arrays["state_dict"].items()})
    model.eval()
    mean, std = cv.arrays["mean"], cv.arrays["std"]
    t0 = time.perf_counter()
    paths = sorted(glob.glob(os.path.join(args.data, "**", "*.jpg"), recursive=True))
    stamps = []
    with open(args.out, "w") as f, torch.no_grad():
        for start in range(0, len(paths), TORCH_BATCH):
            batch = paths[start:start + TORCH_BATCH]
            x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255
                          for p in batch])
            x = torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())
            proba, index = torch.topk(torch.softmax(model(x), dim=1),
                                      min(TOP, len(cv.class_names)))
            for p, pr, ix in zip(batch, proba.tolist(), index.tolist()):
                f.write(json.dumps({"image": p, "top": [
                    {"class": cv.class_names[i], "probability": q} for q, i in zip(pr, ix)]})
                    + "\n")
            stamps.append(time.perf_counter())
    wall = time.perf_counter() - t0
    steady = (len(paths) - len(paths[:TORCH_BATCH])) / (stamps[-1] - stamps[0]) \
        if len(stamps) > 1 else len(paths) / wall
    return {"variant": "torch", "files": len(paths), "errors": 0,
            "partitions": len(stamps), "workers": 1, "wall": wall, "run_seconds": wall,
            "startup": 0.0, "steady_rate": steady, "compute_seconds": wall, "model_loads": 1,
            "per_partition": wall / max(len(stamps), 1)}


# -- the parent: run each child, sample its memory ----------------------------------------------

def tree_rss(proc) -> int:
    import psutil
    total = 0
    try:
        for p in [proc] + proc.children(recursive=True):
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def run_child(variant: str, args, out: Path) -> dict:
    import psutil
    cmd = [sys.executable, "-m", "benchmarks.batch", "--child", variant, "--data",
           str(args.data), "--model", str(args.model_path), "--out", str(out),
           "--partition-size", str(args.partition_size)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    ps = psutil.Process(proc.pid)
    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(ps))
            time.sleep(SAMPLE_SECONDS)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{stderr}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_mib"] = peak / 2**20
    return result


def top1(path) -> dict:
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return {os.path.abspath(r["image"]): r["top"][0]["class"] for r in rows if r.get("top")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N files (copied as links into a temporary "
                             "folder)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.variant = args.child
        result = child_torch(args) if args.child == "torch" else child_cvcore(args)
        print(json.dumps(result))
        return
    if not args.data.is_dir():
        raise SystemExit(f"no data folder {args.data} (the CIFAR-10 test JPEGs of "
                         f"../shared/datasets)")
    tmp = Path(tempfile.mkdtemp(prefix="cvcore-bench-batch-"))
    if args.limit:
        from cvcore.batch import walk_images
        src = args.data
        args.data = tmp / "data"
        for _, p in zip(range(args.limit), walk_images([src])):
            dst = args.data / os.path.relpath(p, src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.abspath(p), dst)
    args.model_path = tmp / "resnet20.npz"
    build_model(args.data, args.model_path)
    print(f"load: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f} "
          f"(1/5/15 min) on {os.cpu_count()} cores", flush=True)
    procs = f"processes:{args.workers}"
    variants = ["local", procs, "null local", f"null {procs}", "torch"]
    results = {}
    for v in variants:
        results[v] = run_child(v, args, tmp / f"{v.replace(' ', '_').replace(':', '')}.jsonl")
        r = results[v]
        print(f"  {v:<20} {r['files']:>6} files {r['steady_rate']:8.0f} images/s "
              f"(wall {r['wall']:.1f} s, start-up {r['startup']:.1f} s) "
              f"peak {r['peak_mib']:.0f} MiB", flush=True)
    same = (tmp / "local.jsonl").read_bytes() == (tmp / f"{procs.replace(':', '')}.jsonl") \
        .read_bytes()
    cv_top, torch_top = top1(tmp / "local.jsonl"), top1(tmp / "torch.jsonl")
    agree = np.mean([cv_top[p] == torch_top.get(p) for p in cv_top]) if cv_top else float("nan")
    print_report(results, args, procs, same, agree)


def print_report(results, args, procs, same, agree) -> None:
    ref = results["torch"]["steady_rate"]
    print()
    print(f"{'variant':<20} {'images/s':>9} {'vs torch':>9} {'ms/partition':>13} "
          f"{'start-up s':>10} {'peak MiB':>9}")
    for v, r in results.items():
        per_part = r["per_partition"] * 1e3
        print(f"{v:<20} {r['steady_rate']:9.0f} {r['steady_rate'] / ref:9.2f} {per_part:13.1f} "
              f"{r['startup']:10.1f} {r['peak_mib']:9.0f}")
    dask, null = results[procs], results[f"null {procs}"]
    workers = dask["workers"]
    per_image = dask["compute_seconds"] / max(dask["files"], 1)          # worker-seconds
    idle = (dask["run_seconds"] * workers - dask["compute_seconds"]) / max(dask["partitions"], 1)
    sched = null["per_partition"]
    local_overhead = results["null local"]["per_partition"]
    print()
    print(f"local and {procs} outputs identical: {same}; top-1 classes equal to PyTorch's: "
          f"{agree:.4f}")
    print(f"per image on a {procs} worker: {per_image * 1e3:.2f} ms (decode + predict, "
          f"measured inside the tasks)")
    print(f"per partition of {args.partition_size}: scheduler + driver alone {sched * 1e3:.1f} ms "
          f"(null tasks on {procs}; local {local_overhead * 1e3:.1f} ms); worker time not "
          f"spent in tasks in the real run {idle * 1e3:.1f} ms")
    n, hour = 10_000_000, 3600.0
    partitions = n / args.partition_size
    worker_seconds = n * per_image + partitions * max(idle, 0.0)
    print(f"projection, {n:,} images in an hour at partitions of {args.partition_size}: "
          f"{worker_seconds / hour:.0f} workers like these ({math.ceil(worker_seconds / hour)} "
          f"rounded up); the scheduler must pass {partitions / hour:.1f} partitions/s, "
          f"{partitions / hour * sched:.0%} of its measured capacity; overhead equals the work "
          f"at partitions of {max(idle, sched) / per_image:.0f} images")


if __name__ == "__main__":
    main()
