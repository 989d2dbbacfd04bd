"""What runs on a worker: the model kept between partitions, and decoding a partition's files.

A Dask worker is a long-lived process that runs many tasks; a module-level cache in it outlives
each task. :func:`cached_model` loads a ``model.npz`` once per worker process and hands the same
object to every later partition, keyed by the file's path *and* its SHA-256 (checked when it is
loaded), so a worker never predicts with a different file that happens to sit at the same path.
The driver sends only the path and the hash, never the weights.
"""
from __future__ import annotations

import os
import threading

__all__ = ["cached_model", "decode_files", "problem_of", "map_batch"]

_MODELS: dict = {}
_REPORTED: set = set()
_LOCK = threading.Lock()
#: Models kept per worker process; older ones are dropped (a worker serving one job keeps one).
MAX_CACHED_MODELS = 2


def cached_model(path: str, digest: str, count: bool = True):
    """``(model, newly_loaded)``: the :class:`~cvcore.train.pipeline.TrainedModel` in ``path``,
    loaded on this process's first call with this ``(path, digest)``.

    ``newly_loaded`` is True exactly once per process and key, for the first caller with
    ``count`` after the load, so summing it over a job's partition results counts the processes
    that loaded the model (a process that kept it from an earlier job counts 0).

    Raises
    ------
    ValueError
        The file's SHA-256 is not ``digest`` (it changed after the job started, or this worker
        sees another file at that path).
    """
    key = (path, digest)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            from cvcore.io.download import sha256_file
            from cvcore.train.pipeline import load_model
            found = sha256_file(path)
            if found != digest:
                raise ValueError(f"{path} on this worker has SHA-256 {found[:12]}..., not the "
                                 f"{digest[:12]}... the job started with")
            while len(_MODELS) >= MAX_CACHED_MODELS:
                _MODELS.pop(next(iter(_MODELS)))
            model = _MODELS[key] = load_model(path)
        first = count and key not in _REPORTED
        if count:
            _REPORTED.add(key)
    return model, first


def problem_of(exc: BaseException, path: str) -> str:
    """The message of a decoding error without the leading ``"PATH: "`` (the row names the
    file already)."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def decode_files(paths, root: str, mode: str, size=None, model=None) -> list:
    """Decode each file with :func:`cvcore.io.datasets.decode_image` (the function ``cvcore
    predict`` and training use): a uint8 image, or a string naming why it could not be read.

    ``paths`` relative to ``root`` (the driver's working folder) are resolved against it, so a
    worker started elsewhere reads the same files (on a cluster: through a shared file system).
    With a ``model``, each image is brought to the model's input at once
    (:func:`cvcore.train.pipeline.prepare_images`, which the model would apply anyway), so a
    partition of 12-megapixel photos holds 256 small inputs, not 256 photos.
    """
    from cvcore.io.datasets import decode_image
    from cvcore.train.pipeline import prepare_images
    out = []
    for path in paths:
        full = os.path.join(root, path)
        try:
            image = decode_image(full, mode, size)
            if model is not None:
                image = prepare_images([image], model.size, model.mode)[0]
            out.append(image)
        except (OSError, ValueError, TypeError) as exc:
            out.append(problem_of(exc, full))
        except MemoryError:
            out.append("cannot decode image (out of memory)")
    return out


def map_batch(fn, items, refused: str) -> list:
    """``fn(items)`` (a list, one result per item); if the batch as a whole is refused with a
    ValueError or TypeError, ``fn([item])[0]`` for each item, so that only the item at fault
    gets a message (``"REFUSED: why"``) instead of a result."""
    if not items:
        return []
    try:
        return list(fn(items))
    except (ValueError, TypeError):
        out = []
        for item in items:
            try:
                out.append(fn([item])[0])
            except (ValueError, TypeError) as exc:
                out.append(f"{refused}: {exc}")
        return out
