"""``cvcore features FOLDER --kind KIND --out DIR``: features of every image, in shards.

Kinds (:data:`FEATURE_KINDS`, one entry each)
------------------------------------------------
``hog``
    HOG vectors (Dalal & Triggs 2005; :func:`cvcore.features.hog_batch`, equal to
    ``skimage.feature.hog``) of the grey image resized to ``--size``: one float32 row each.
``sift``
    SIFT keypoints and descriptors (Lowe 2004; :func:`cvcore.features.sift`) of the grey image at
    its own size (or ``--size``): a variable number of keypoints each.
``surf``
    SURF keypoints and 64-d descriptors (Bay et al. 2008; :func:`cvcore.features.surf`), the
    same layout as ``sift`` plus ``laplacian``, the sign of each keypoint's Laplacian (match
    with ``match_descriptors(..., groups=(lap1, lap2))``).
``cnn``
    The penultimate-layer embedding of a CNN trained by ``cvcore train`` (``--weights``):
    :meth:`cvcore.train.pipeline.TrainedModel.embed`, one float32 row each.

A new kind is one :class:`FeatureKind` entry: a name, the colour mode it reads images in, whether
its rows are fixed-length vectors (``"dense"``) or keypoint sets (``"keypoints"``), and a
module-level function ``extract(images, params, model) -> list`` turning a partition's uint8
images into one result per image (a vector, or ``(Keypoints, descriptors)``).

What is written in ``DIR``
--------------------------
``shards/part-NNNNNNN.npy`` (dense kinds)
    float32 ``(n, D)``: row ``r`` is the ``r``-th readable image of partition ``NNNNNNN``.
    ``np.load(path, mmap_mode="r")`` reads rows without loading the shard.
``shards/part-NNNNNNN.npz`` (keypoint kinds)
    ``xy (K, 2)``, ``size``, ``angle``, ``response`` ``(K,)`` float32, ``octave (K,)`` int32,
    ``descriptors (K, D)`` float32 for the K keypoints of all the partition's images, and
    ``offsets (n + 1,)`` int64: image ``r``'s keypoints are ``offsets[r]:offsets[r + 1]``;
    ``surf`` adds ``laplacian (K,)`` int8 (+1 / -1, :class:`cvcore.features.SurfKeypoints`).
``index.jsonl``
    One line per image file in the job's order: ``{"image": PATH, "shard": "shards/...",
    "row": r}`` (keypoint kinds add ``"keypoints": K``), or ``{"image": PATH, "error": WHY}``.
``features.json``
    The kind, its parameters, the vector length ``dim``, and the counts.

Shards are written atomically as partitions finish; the index is assembled at the end, so a
stopped run started again resumes (:mod:`cvcore.batch.job`).

Memory: a partition's images are held decoded between decoding and extraction; ``hog`` and
``cnn`` hold them at ``--size`` or the model's input size, the keypoint kinds without ``--size``
at full resolution, so for folders of large photos give those a smaller ``--partition-size``.
"""
from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cvcore.batch.job import (DEFAULT_PARTITION_SIZE, FolderJob, PieceStore,
                              remove_temporaries, run_job)
from cvcore.batch.progress import Progress
from cvcore.batch.worker import cached_model, decode_files, map_batch
from cvcore.io.atomic import atomic_write

__all__ = ["FeatureKind", "FEATURE_KINDS", "extract_features", "load_features"]

FEATURES_FORMAT = "cvcore-features-1"
#: HOG defaults: scikit-image's ``hog`` defaults (9 orientations, 8x8 cells, 3x3 blocks, L2-Hys).
HOG_DEFAULTS = {"orientations": 9, "pixels_per_cell": (8, 8), "cells_per_block": (3, 3)}


@dataclass(frozen=True)
class FeatureKind:
    """One kind of features for :func:`extract_features` (see the module docstring).

    Attributes
    ----------
    name, help : str
    mode : {"gray", "rgb", "model"}
        How images are decoded; ``"model"``: in the colour mode of ``--weights``.
    layout : {"dense", "keypoints"}
    extract : callable(images, params, model) -> list
        Module-level (Dask sends it to workers by reference).
    params : dict
        Parameter names and defaults; ``extract_features(**params)`` may set them.
    needs_weights, needs_size : bool
    """
    name: str
    help: str
    mode: str
    layout: str
    extract: Callable
    params: dict = field(default_factory=dict)
    needs_weights: bool = False
    needs_size: bool = False


def _hog(images, params, model):
    from cvcore.features import hog_batch
    x = np.stack(images).astype(np.float32) / np.float32(255)
    return list(hog_batch(x, orientations=params["orientations"],
                          pixels_per_cell=tuple(params["pixels_per_cell"]),
                          cells_per_block=tuple(params["cells_per_block"]),
                          dtype=np.float32))


def _sift(images, params, model):
    from cvcore.features import sift
    return [sift(image, n_features=params["max_keypoints"]) for image in images]


def _surf(images, params, model):
    from cvcore.features import surf
    return [surf(image, n_features=params["max_keypoints"]) for image in images]


def _cnn(images, params, model):
    return list(model.embed(images))


FEATURE_KINDS = {
    "hog": FeatureKind("hog", "HOG vectors of the grey image at --size (scikit-image's defaults)",
                       "gray", "dense", _hog, dict(HOG_DEFAULTS), needs_size=True),
    "sift": FeatureKind("sift", "SIFT keypoints and 128-d descriptors of the grey image",
                        "gray", "keypoints", _sift, {"max_keypoints": None}),
    "surf": FeatureKind("surf", "SURF keypoints and 64-d descriptors of the grey image",
                        "gray", "keypoints", _surf, {"max_keypoints": None}),
    "cnn": FeatureKind("cnn", "penultimate-layer embedding of a CNN's --weights",
                       "model", "dense", _cnn, needs_weights=True),
}


@dataclass
class FeatureResult:
    """A partition's index rows, the arrays of its readable images, time, model loads."""
    rows: list
    values: list
    seconds: float
    loads: int = 0


@dataclass(frozen=True)
class FeatureTask:
    """What a worker needs for a partition: the kind, its parameters, the size, the model."""
    kind: str
    params: tuple           # sorted (name, value) pairs: hashable, picklable
    size: tuple | None
    weights: str | None
    digest: str | None
    root: str

    def _model(self, count=True):
        return cached_model(self.weights, self.digest, count) if self.weights else (None, False)

    def decode(self, paths) -> list:
        kind = FEATURE_KINDS[self.kind]
        model = self._model(count=False)[0] if kind.mode == "model" else None
        return decode_files(paths, self.root, model.mode if model else kind.mode, self.size,
                            model=model)

    def compute(self, paths, decoded) -> FeatureResult:
        t0 = time.perf_counter()
        kind = FEATURE_KINDS[self.kind]
        model, first = self._model()
        params = dict(self.params)
        good = [j for j, d in enumerate(decoded) if not isinstance(d, str)]
        found = map_batch(lambda images: kind.extract(images, params, model),
                          [decoded[j] for j in good], "the feature extractor refused the image")
        by_index = dict(zip(good, found))
        rows, values = [], []
        for j, path in enumerate(paths):
            value = by_index.get(j, decoded[j])
            if isinstance(value, str):
                rows.append({"image": path, "error": value})
            else:
                rows.append({"image": path})
                values.append(value)
        return FeatureResult(rows, values, time.perf_counter() - t0, int(first))


class FeatureStore(PieceStore):
    """Shards in ``DIR/shards``; index pieces in the parts folder, joined into ``index.jsonl``."""

    def __init__(self, job: FolderJob, out: Path, kind: FeatureKind, describe: dict):
        super().__init__(job)
        self.out, self.kind, self.describe = out, kind, describe
        self.shards = out / "shards"
        remove_temporaries(self.shards)

    def shard_name(self, i: int) -> str:
        ext = ".npy" if self.kind.layout == "dense" else ".npz"
        return f"shards/part-{i:07d}{ext}"

    def write(self, i: int, paths, result: FeatureResult) -> int:
        name = self.shard_name(i)
        counts = self._write_shard(self.out / name, result.values) if result.values else None
        r = 0
        with atomic_write(self.piece(i), "w") as f:       # written last: marks the piece done
            for row in result.rows:
                if "error" not in row:
                    row = dict(row, shard=name, row=r)
                    if counts is not None and self.kind.layout == "keypoints":
                        row["keypoints"] = int(counts[r])
                    r += 1
                f.write(json.dumps(row) + "\n")
        return sum("error" in row for row in result.rows)

    def _write_shard(self, path: Path, values):
        buffer = io.BytesIO()
        if self.kind.layout == "dense":
            np.save(buffer, np.stack(values).astype(np.float32))
            counts = None
        else:
            kps = [kp for kp, _ in values]
            counts = np.array([len(kp) for kp in kps], np.int64)
            desc = [np.asarray(d, np.float32) for _, d in values]
            extra = {}
            if kps and all(getattr(kp, "laplacian", None) is not None for kp in kps):
                extra["laplacian"] = np.concatenate([kp.laplacian for kp in kps]).astype(np.int8)
            np.savez(buffer, offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                     xy=np.concatenate([kp.xy for kp in kps]).astype(np.float32).reshape(-1, 2),
                     size=np.concatenate([kp.size for kp in kps]).astype(np.float32),
                     angle=np.concatenate([kp.angle for kp in kps]).astype(np.float32),
                     response=np.concatenate([kp.response for kp in kps]).astype(np.float32),
                     octave=np.concatenate([kp.octave for kp in kps]).astype(np.int32),
                     descriptors=np.concatenate(desc).reshape(-1, desc[0].shape[-1]), **extra)
        with atomic_write(path, "wb") as f:
            f.write(buffer.getbuffer())
        return counts

    def assemble(self, job: FolderJob) -> str:
        n_rows = n_errors = 0
        with atomic_write(self.out / "index.jsonl", "wb") as f:
            for i in range(job.n_partitions):
                with open(self.piece(i), "rb") as src:
                    for line in src:
                        n_rows += 1
                        n_errors += b'"error"' in line
                        f.write(line)
        with atomic_write(self.out / "features.json", "w") as f:
            json.dump(dict(self.describe, format=FEATURES_FORMAT, dim=self._dim(job),
                           images=n_rows - n_errors, errors=n_errors), f, indent=1)
        return os.fspath(self.out)

    def _dim(self, job) -> int | None:
        """The length of one vector (descriptor for keypoint kinds), from the first shard."""
        for path in sorted(self.shards.glob("part-*")):
            if self.kind.layout == "dense":
                return int(np.load(path, mmap_mode="r").shape[1])
            with np.load(path) as z:
                return int(z["descriptors"].shape[1])
        return None


def extract_features(inputs, out, kind: str = "hog", *, weights=None, size=None,
                     scheduler="local", partition_size: int = DEFAULT_PARTITION_SIZE,
                     threads: int | None = None, progress=True, on_partition=None, **params):
    """Compute features of every image file under ``inputs`` into shards in the folder ``out``.

    Parameters
    ----------
    inputs : path or sequence of paths
        Folders (recursive, image files found by content) and image files.
    out : path
        A new or empty folder, or the folder of a stopped run with the same settings (resumed).
    kind : str
        A key of :data:`FEATURE_KINDS`.
    weights : path, optional
        A ``model.npz`` from ``cvcore train`` (the ``cnn`` kind: a ResNet).
    size : (H, W), optional
        Resize every image to this size (required by ``hog``: its vectors have one length only
        for one image size; the ``cnn`` kind resizes to the model's size itself).
    scheduler, partition_size, threads, progress, on_partition
        As in :func:`cvcore.batch.predict_folder`.
    **params
        The kind's parameters (:attr:`FeatureKind.params`), e.g. ``orientations=12`` for hog,
        ``max_keypoints=500`` for sift.

    Returns
    -------
    cvcore.batch.job.JobReport
    """
    from cvcore.io.download import sha256_file
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose one of "
                         f"{', '.join(FEATURE_KINDS)}")
    spec = FEATURE_KINDS[kind]
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ValueError(f"the {kind} kind takes no parameter {', '.join(unknown)} (it takes "
                         f"{', '.join(spec.params) or 'none'})")
    params = dict(spec.params, **params)
    if size is not None:
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be two positive integers (H, W), got {size}")
    if spec.needs_size and size is None:
        raise ValueError(f"--kind {kind} needs --size H W: its vectors have one length only "
                         f"for one image size")
    digest = None
    if spec.needs_weights:
        if weights is None:
            raise ValueError(f"--kind {kind} needs --weights (a model.npz from cvcore train)")
        from cvcore.train.pipeline import CNN_MODELS, load_model
        weights = os.path.abspath(os.fspath(weights))
        model = load_model(weights)
        if model.kind not in CNN_MODELS:
            raise ValueError(f"{weights} is a {model.kind} model; --kind {kind} needs a CNN "
                             f"({', '.join(CNN_MODELS)})")
        digest = sha256_file(weights)
    elif weights is not None:
        raise ValueError(f"--kind {kind} takes no --weights")
    _check_params(kind, params)
    out = Path(out)
    parts = out / "parts"
    if out.exists() and not (parts / "manifest.json").is_file() and any(out.iterdir()):
        raise ValueError(f"--out {out} is a folder that is not empty and holds no stopped run "
                         f"to resume; choose a new folder or empty it")
    describe = {"kind": kind, "layout": spec.layout, "params": _jsonable(params),
                "size": list(size) if size else None, "weights_sha256": digest}
    job = FolderJob(parts, dict(describe, job=f"features-{kind}"), list(inputs), partition_size)
    task = FeatureTask(kind, tuple(sorted((k, _hashable(v)) for k, v in params.items())),
                       size, weights, digest, os.getcwd())
    if progress is True:
        progress = Progress(f"features {kind}")
    out.mkdir(parents=True, exist_ok=True)
    return run_job(job, task, FeatureStore(job, out, spec, describe), scheduler,
                   threads=threads, progress=progress or None, on_partition=on_partition)


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def _jsonable(params: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _check_params(kind: str, params: dict) -> None:
    """Refuse bad parameters here, with their names, rather than in every partition."""
    from cvcore._validate import check_int
    for name, value in params.items():
        if value is None:
            continue
        if name in ("pixels_per_cell", "cells_per_block"):
            if len(tuple(value)) != 2:
                raise ValueError(f"{name} must be two integers, got {value!r}")
            for v in value:
                check_int(v, name, 1)
        else:
            check_int(value, name, 1)


def load_features(out):
    """Read a finished dense-kind folder back: ``(paths, X)`` with ``X`` (n, D) float32 in the
    index's order (images with an error row are left out), plus nothing else loaded.

    For keypoint kinds, read the shards named in ``index.jsonl`` (see the module docstring).
    """
    out = Path(out)
    meta = json.loads((out / "features.json").read_text(encoding="utf-8"))
    if meta["layout"] != "dense":
        raise ValueError(f"{out} holds {meta['kind']} keypoint sets; read its shards with "
                         f"np.load as index.jsonl describes")
    paths, blocks, current, rows = [], [], None, []
    with open(out / "index.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "error" in row:
                continue
            if row["shard"] != current:
                if current is not None:
                    blocks.append(np.load(out / current, mmap_mode="r")[rows])
                current, rows = row["shard"], []
            rows.append(row["row"])
            paths.append(row["image"])
    if current is not None:
        blocks.append(np.load(out / current, mmap_mode="r")[rows])
    X = np.concatenate(blocks) if blocks else np.zeros((0, meta["dim"] or 0), np.float32)
    return paths, np.ascontiguousarray(X, dtype=np.float32)
