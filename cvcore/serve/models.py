"""The models a server holds: finding model files, loading, versioning, warming and reloading.

A model's *version* is the first 16 hex digits of the SHA-256 of its file, so a client can tell
which weights answered. A model file replaced on disk (``cvcore train`` writes it atomically:
a new inode renamed over the old name) is noticed by its ``(inode, size, mtime)`` changing; the
new file is loaded and warmed beside the old model, which keeps answering until the new one
replaces it in a single assignment, so no request is dropped or sees a half-loaded model.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["ServedModel", "find_model_files", "file_signature"]

#: The bytes hashed at a time for a model's version.
_HASH_CHUNK = 1 << 20


def file_signature(path) -> tuple:
    """``(inode, size, mtime_ns)`` of a file: changes whenever the file is replaced."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def find_model_files(sources) -> dict:
    """Map model names to files from ``model.npz`` paths and folders of them.

    A file is named by its stem, except ``model.npz`` which takes its folder's name (``cvcore
    train --out run1`` writes ``run1/model.npz``: the model is ``run1``). A folder contributes
    every ``*.npz`` directly in it and every ``*/model.npz`` below it, skipping files that are
    not model files (``checkpoint.npz`` and ``best.npz`` of a CNN run).

    Raises
    ------
    FileNotFoundError
        A path does not exist.
    ValueError
        No model found, or two models with the same name.
    """
    from cvcore.train.checkpoint import load_state
    found: dict = {}

    def add(path: Path, explicit: bool):
        path = path.resolve()
        if not explicit:
            try:
                state = load_state(path)
            except (ValueError, OSError):
                return
            if not str(state.get("format", "")).startswith("cvcore-model"):
                return
        name = path.parent.name if path.stem == "model" else path.stem
        if name in found and found[name] != path:
            raise ValueError(f"two models are called {name!r}: {found[name]} and {path}; "
                             f"rename one of them")
        found[name] = path

    for src in sources:
        p = Path(src)
        if not p.exists():
            raise FileNotFoundError(f"no model file or folder at {src}")
        if p.is_dir():
            for f in sorted(p.glob("*.npz")) + sorted(p.glob("*/model.npz")):
                add(f, explicit=False)
        else:
            add(p, explicit=True)
    if not found:
        raise ValueError(f"no cvcore model file found in {', '.join(map(str, sources))}")
    return found


class ServedModel:
    """One model the server answers for: its current weights, version and description.

    Attributes
    ----------
    name : str
    path : Path
    model : cvcore.train.pipeline.TrainedModel
        Replaced as a whole on reload (readers take the reference once per batch).
    version : str
    signature : tuple
        :func:`file_signature` of the file that was loaded.
    """

    def __init__(self, name: str, path):
        self.name = name
        self.path = Path(path)
        self.model = None
        self.version = None
        self.signature = None
        self.metrics = None
        self.failed_signature = None

    @staticmethod
    def read(path):
        """Load a model file: ``(model, version, signature, metrics)`` (any thread)."""
        from cvcore.train.pipeline import load_model
        signature = file_signature(path)
        version = _sha256(path)[:16]
        model = load_model(path)
        metrics = None
        side = Path(path).parent / "metrics.json"       # written next to it by `cvcore train`
        if side.is_file():
            try:
                m = json.loads(side.read_text())
                metrics = {k: m[k] for k in ("accuracy", "top5", "macro_f1", "n") if k in m}
            except (ValueError, OSError):
                metrics = None
        return model, version, signature, metrics

    def install(self, loaded) -> None:
        """Make ``loaded`` (from :meth:`read`) the current model: one assignment per field,
        on the event loop's thread, between batches."""
        self.model, self.version, self.signature, self.metrics = loaded

    def describe(self) -> dict:
        m = self.model
        return {"name": self.name, "kind": m.kind, "version": self.version,
                "classes": list(m.class_names), "input_size": list(m.size), "mode": m.mode,
                "file": str(self.path), "metrics": self.metrics,
                "explanation": "grad-cam" if m.kind.startswith("resnet") else
                ("knn-nearest-cells" if m.kind == "hog-knn" else "hog-linear-cells")}


def pixel_major_batch(model, max_batch_size: int) -> int:
    """The batch size from which ``model``'s network runs the fused pixel-major forward
    (:data:`cvcore.nn.inference.PIXEL_MAJOR_MIN_BATCH` images; cheaper per image than the strip
    forward that smaller batches run), or 0 where it does not (not a CNN, a network the fused
    plan does not know, a batch cap below it, or a machine where the plan keeps the strip):
    the :class:`~cvcore.serve.batching.Batcher`'s ``fill_from``. Runs one forward pass at that
    batch; call it on a model thread after :func:`warm_up`."""
    from cvcore.train.pipeline import CNN_MODELS
    if model.kind not in CNN_MODELS:
        return 0
    from cvcore.nn.inference import PIXEL_MAJOR_MIN_BATCH, ResNetPlan
    if max_batch_size < PIXEL_MAJOR_MIN_BATCH:
        return 0
    plan = model._network().__dict__.get("_plan")
    if not isinstance(plan, ResNetPlan):
        return 0
    shape = tuple(model.size) + (() if model.mode == "gray" else (3,))
    x = model.network_input(np.zeros((PIXEL_MAJOR_MIN_BATCH,) + shape, np.uint8))
    calls = plan.step_calls(np.ascontiguousarray(x, dtype=np.float32))
    return PIXEL_MAJOR_MIN_BATCH if any(c[0] == "to_pixel_major" for c in calls) else 0


def warm_up(model, max_batch_size: int) -> None:
    """Compile and run every kernel the server will call: a forward pass at batch 1 and at the
    largest batch, one explanation, and for a CNN trained with augmentation one test-time
    augmented prediction (``?tta=true``: its flips and crops are kernels of their own, which
    would otherwise compile during the first such request). Runs on a model thread."""
    from cvcore.serve.explain import explain
    from cvcore.train.pipeline import CNN_MODELS
    shape = tuple(model.size) + (() if model.mode == "gray" else (3,))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(1, max_batch_size),) + shape, dtype=np.uint8)
    model.predict_proba(images[:1])
    model.predict_proba(images)
    # the resizing (shrinking and enlarging) and colour conversion of uploads of other sizes
    other = (2 * model.size[0], 2 * model.size[1])
    model.predict_proba([rng.integers(0, 256, other + (3,), dtype=np.uint8),
                         rng.integers(0, 256, (model.size[0] // 2 + 1, model.size[1] // 2 + 1),
                                      dtype=np.uint8)])
    explain(model, images[0])
    if model.kind in CNN_MODELS:
        try:
            model.predict_proba(images[:1], tta=True)
        except ValueError:
            pass                          # trained --no-augment: the server answers tta with 422
