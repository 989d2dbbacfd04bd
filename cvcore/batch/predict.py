"""``cvcore predict FOLDER --out FILE``: top-k classes of every image under folders, resumably.

>>> # predict_folder("photos/", "run1/model.npz", "predictions.jsonl", scheduler="processes:2")

Rows are those of ``cvcore predict --json`` on each file (path, label, confidence, top-k) (see :mod:`cvcore.batch.writers` for
the formats); how the job is cut, run, resumed and assembled is :mod:`cvcore.batch.job`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvcore.batch.job import DEFAULT_PARTITION_SIZE, FolderJob, PieceStore, run_job
from cvcore.batch.progress import Progress
from cvcore.batch.worker import cached_model, decode_files, map_batch
from cvcore.batch.writers import output_format, write_rows
from cvcore.io.atomic import atomic_write

__all__ = ["predict_folder", "PredictTask", "parts_dir_for"]


@dataclass
class PartitionResult:
    """A partition's rows, the seconds spent on it, and 1 if it loaded the model."""
    rows: list
    seconds: float
    loads: int = 0


@dataclass(frozen=True)
class PredictTask:
    """What a worker needs to predict a partition: the model file and its hash, ``top``, and the
    folder relative paths start from. Small, so it travels with every task."""
    weights: str
    digest: str
    top: int
    root: str
    tta: bool = False
    min_confidence: float | None = None

    def decode(self, paths) -> list:
        model, _ = cached_model(self.weights, self.digest, count=False)
        return decode_files(paths, self.root, model.mode, model=model)

    def compute(self, paths, decoded) -> PartitionResult:
        from cvcore.train.pipeline import prediction_rows
        t0 = time.perf_counter()
        model, first = cached_model(self.weights, self.digest)
        good = [j for j, d in enumerate(decoded) if not isinstance(d, str)]
        answers = dict(zip(good, map_batch(
            lambda images: prediction_rows(model.predict_proba(images, tta=self.tta),
                                           model.class_names, self.top, self.min_confidence),
            [decoded[j] for j in good], "the model refused the image")))
        rows = []
        for j, path in enumerate(paths):
            answer = answers.get(j, decoded[j])
            rows.append({"image": path, "error": answer} if isinstance(answer, str)
                        else {"image": path, **answer})
        return PartitionResult(rows, time.perf_counter() - t0, int(first))


class PredictStore(PieceStore):
    """Pieces ``part-NNNNNNN.jsonl`` (the rows) in the parts folder, joined into ``out``."""

    def __init__(self, job: FolderJob, out, k: int):
        super().__init__(job)
        self.out, self.k = os.fspath(out), k

    def write(self, i: int, paths, result: PartitionResult) -> int:
        with atomic_write(self.piece(i), "w") as f:
            for row in result.rows:
                f.write(json.dumps(row) + "\n")
        return sum("error" in row for row in result.rows)

    def assemble(self, job: FolderJob) -> str:
        write_rows(self.out, (self.piece(i) for i in range(job.n_partitions)), self.k)
        return self.out


def parts_dir_for(out) -> Path:
    """Where a job writing ``out`` keeps its pieces until the end: ``OUT.parts`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


def predict_folder(inputs, weights, out, *, top: int = 3, tta: bool = False,
                   min_confidence: float | None = None, scheduler="local",
                   partition_size: int = DEFAULT_PARTITION_SIZE, threads: int | None = None,
                   progress=True, on_partition=None):
    """Predict the top-``top`` classes of every image file under ``inputs`` into ``out``.

    Parameters
    ----------
    inputs : str, os.PathLike or a sequence of them
        Folders (walked recursively; image files found by content, see
        :mod:`cvcore.batch.files`) and image files.
    weights : path
        A ``model.npz`` written by ``cvcore train``.
    out : path
        ``.jsonl``, ``.csv`` or ``.parquet`` (:mod:`cvcore.batch.writers`), written atomically at
        the end; until then the pieces live in ``OUT.parts/`` and a run started again with the
        same inputs and settings resumes from them.
    top : int
        Classes per row (clipped to the number of classes).
    tta, min_confidence
        As ``cvcore predict --tta --min-confidence``: test-time augmentation (CNN models), and
        the label ``"unknown"`` where the top probability is below ``min_confidence``.
    scheduler : str or distributed.Client
        ``"local"`` (threads of this process), ``"processes:N"`` (a Dask LocalCluster of N
        processes, started and stopped here), ``"tcp://HOST:PORT"`` (a running Dask scheduler,
        whose workers can import cvcore and read the files and the weights at the same paths),
        or a ``distributed.Client``.
    partition_size : int
        Images per partition: per task, per piece, and what a lost worker costs.
    threads : int, optional
        ``local``: decoding threads (default: the number of cores).
    progress : bool or Progress
        A progress line on stderr (default).
    on_partition : callable(i), optional
        Called on the driver after each piece is written.

    Returns
    -------
    cvcore.batch.job.JobReport
        Counts (files, error rows, skipped non-image files), time, where it ran.
    """
    from cvcore.io.download import sha256_file
    from cvcore.train.metrics import check_min_confidence
    from cvcore.train.pipeline import CNN_MODELS, HOG_MODELS, load_model
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    output_format(out)
    if not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be an integer >= 1, got {top!r}")
    weights = os.path.abspath(os.fspath(weights))
    model = load_model(weights)                 # refuse a bad model before walking anything
    if model.kind not in HOG_MODELS + CNN_MODELS:
        raise ValueError(f"{weights} is a {model.kind} model, which does not classify images; "
                         f"predict takes {', '.join(HOG_MODELS + CNN_MODELS)}")
    digest = sha256_file(weights)
    if tta and model.kind not in CNN_MODELS:
        raise ValueError(f"--tta needs a CNN trained with augmentation; {weights} is a "
                         f"{model.kind} model")
    if min_confidence is not None:
        min_confidence = check_min_confidence(min_confidence)
    k = min(int(top), len(model.class_names))
    job = FolderJob(parts_dir_for(out),
                    {"job": "predict", "weights_sha256": digest, "top": k, "tta": bool(tta),
                     "min_confidence": min_confidence}, list(inputs), partition_size)
    task = PredictTask(weights, digest, k, os.getcwd(), bool(tta), min_confidence)
    if progress is True:
        progress = Progress("predict")
    return run_job(job, task, PredictStore(job, out, k), scheduler, threads=threads,
                   progress=progress or None, on_partition=on_partition)
