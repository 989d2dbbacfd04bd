"""Checkpoints: nested state (model, optimiser, schedule, counters, history) in one npz file.

A training state is a tree of dicts and lists whose leaves are NumPy arrays, numbers, strings,
booleans or None. :func:`save_state` writes it atomically as an ``.npz``: the arrays as members
``a0, a1, ...`` and the tree itself as JSON in the member ``__tree__``, with each array replaced by
``{"__array__": "a0"}``. Nothing is pickled, so loading a checkpoint cannot run code.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from cvcore._validate import check_regular_file
from cvcore.io.atomic import atomic_write

__all__ = ["save_state", "load_state"]

_TREE = "__tree__"


def _flatten(obj, arrays: dict):
    if isinstance(obj, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise TypeError(f"checkpoint dict keys must be strings, got {k!r}")
        return {k: _flatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, arrays) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _unflatten(obj, arrays):
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            return arrays[obj["__array__"]]
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def save_state(path, state: dict) -> None:
    """Write ``state`` (a tree of dicts/lists/arrays/scalars) atomically to ``path`` (npz)."""
    arrays: dict = {}
    tree = _flatten(state, arrays)
    arrays[_TREE] = np.array(json.dumps(tree))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load_state(path) -> dict:
    """Read a tree written by :func:`save_state`.

    Raises
    ------
    ValueError
        If the file is not an npz written by :func:`save_state` (names the path and the problem).
    """
    try:
        check_regular_file(path, "checkpoint file")   # never open a FIFO or device: it blocks
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint file at {path}") from None
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a cvcore checkpoint (not an npz/zip file)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if _TREE not in z.files:
                raise ValueError(f"{path} is not a cvcore checkpoint (no {_TREE} member)")
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable checkpoint: {exc}") from None
    try:
        tree = json.loads(str(arrays.pop(_TREE)))
        return _unflatten(tree, arrays)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a readable checkpoint: its {_TREE} member is damaged "
                         f"({type(exc).__name__}: {exc})") from None
