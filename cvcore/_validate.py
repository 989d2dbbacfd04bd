"""Argument checks shared by every public function.

Numba kernels do no bounds checks, so everything a kernel receives is checked here first. Each
check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape, size or
value) with a message that names the argument, and returns the value in the form the kernels want.
"""
from __future__ import annotations

import numbers
import os
import stat

import numpy as np

__all__ = [
    "as_float_image",
    "check_array",
    "check_finite",
    "check_choice",
    "check_positive",
    "check_nonnegative",
    "check_int",
    "check_pair",
    "check_float32_scalar",
    "check_float_array",
    "check_cache",
    "check_grad",
    "check_limit",
    "FLOAT32_MAX",
    "check_regular_file",
]


def check_array(a, name: str, ndim=None, dtypes=None, allow_empty: bool = False) -> np.ndarray:
    """Return ``a`` as an ndarray after checking its kind, dimensionality and size.

    Parameters
    ----------
    a : array_like
        The value to check. Lists are accepted and converted; objects that are not numeric are not.
    name : str
        The argument's name, used in the error message.
    ndim : int or tuple of int, optional
        Allowed numbers of dimensions.
    dtypes : tuple of numpy dtype kinds, optional
        Allowed ``dtype.kind`` letters, e.g. ``"uif"`` (unsigned, signed, float) or ``"b"``.
    allow_empty : bool
        Whether an array with a zero-length axis is acceptable.
    """
    if isinstance(a, np.ndarray):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except Exception as exc:  # ragged nested lists and the like
            raise TypeError(f"{name} must be an array, got {type(a).__name__}: {exc}") from None
    if arr.dtype == object or arr.dtype.kind not in "biufc":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if dtypes is not None and arr.dtype.kind not in dtypes:
        raise TypeError(f"{name} has dtype {arr.dtype}; expected one of kinds {tuple(dtypes)} "
                        f"(b=bool, u=unsigned int, i=int, f=float)")
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    return arr


def check_finite(arr: np.ndarray, name: str) -> np.ndarray:
    """Raise ``ValueError`` if a float array holds NaN or infinity."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "infinity"
        raise ValueError(f"{name} contains {bad}; clean the input first")
    return arr


def as_float_image(image, name: str = "image", ndim=(2, 3), finite: bool = True) -> np.ndarray:
    """Check an image and return it as a C-contiguous float32 array.

    Integer images keep their values (a uint8 200 becomes 200.0, as SciPy's filters treat it);
    use :func:`cvcore.to_float` first for the 0..1 range.
    """
    arr = check_array(image, name, ndim=ndim, dtypes="buif")
    if finite:
        check_finite(arr, name)
    if arr.dtype == np.float64 and arr.size:
        # A finite float64 beyond float32's range would become infinity in the cast.
        big = float(np.abs(arr).max())
        if big > float(np.finfo(np.float32).max):
            raise ValueError(f"{name} has values up to {big:.3g}, beyond float32's range "
                             f"(about 3.4e38), cvcore's working precision")
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_choice(value, choices, name: str):
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def _check_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_positive(value, name: str) -> float:
    """Return ``value`` as a float, raising unless it is a finite number > 0."""
    value = _check_real(value, name)
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def check_nonnegative(value, name: str) -> float:
    """Return ``value`` as a float, raising unless it is a finite number >= 0."""
    value = _check_real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return value


def check_int(value, name: str, minimum: int | None = None) -> int:
    """Return ``value`` as an int, raising unless it is an integer (and >= ``minimum``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_pair(value, name: str, minimum: int | None = 1) -> tuple[int, int]:
    """Return an int or a pair of ints as a ``(rows, cols)`` tuple."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an integer or a pair of integers, got {value!r}") from None
    return check_int(a, name, minimum), check_int(b, name, minimum)


# -- shared by the functional layer pairs, the feature stages and the command ------------------

FLOAT32_MAX = float(np.finfo(np.float32).max)   # about 3.4e38


def check_float32_scalar(value, name: str) -> float:
    """Return ``value`` as a float, raising unless it is finite *and* within float32's range.

    A float64 such as ``1e300`` is finite but turns into infinity when a kernel uses it in
    float32 (cvcore's working precision), so fill values, gains and offsets are checked here.
    """
    value = _check_real(value, name)
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{name} = {value:.3g} is beyond float32's range (about 3.4e38), "
                         f"cvcore's working precision")
    return value


def check_float_array(a, name: str, ndim=None, allow_empty: bool = True) -> np.ndarray:
    """Check a numeric array and return it C-contiguous as float32, or float64 if it is float64.

    The form the functional layer pairs of :mod:`cvcore.nn` compute in (integer, bool and
    float16 inputs become float32). Shape and kind only: no scan of the values, so the cost does
    not grow with the array.
    """
    arr = check_array(a, name, ndim=ndim, dtypes="buif", allow_empty=allow_empty)
    dtype = np.float64 if arr.dtype == np.float64 else np.float32
    return np.ascontiguousarray(arr, dtype=dtype)


def check_cache(cache, cls, name: str):
    """Raise ``TypeError`` unless ``cache`` is the NamedTuple ``cls`` a forward pass returned."""
    if not isinstance(cache, cls):
        raise TypeError(f"{name}: cache must be the {cls.__name__} returned by the forward pass, "
                        f"got {type(cache).__name__}")
    return cache


def check_grad(dy, name: str, shape, dtype) -> np.ndarray:
    """Check an output gradient against the forward output's ``shape``; return it C-contiguous
    in ``dtype`` (the compute dtype of the forward pass).

    A gradient longer or shorter than the forward output would make a kernel read or write
    past the end of the cached arrays, so the shape must match exactly.
    """
    dy = check_array(dy, name, dtypes="buif", allow_empty=True)
    if dy.shape != tuple(shape):
        raise ValueError(f"{name} has shape {dy.shape}; the forward output had {tuple(shape)}")
    return np.ascontiguousarray(dy, dtype=dtype)


def check_limit(value: int, limit: int, what: str, reason: str) -> int:
    """Refuse a size that would exhaust memory or time: ``ValueError`` naming the limit and why."""
    if value > limit:
        raise ValueError(f"{what} is {value}, above the limit of {limit}: {reason}")
    return value


def check_regular_file(path, what: str = "file") -> str:
    """Raise unless ``path`` is a regular file, looking with ``os.stat`` only: opening a FIFO
    (named pipe) would block until a writer appears, and a device may never end.

    ``FileNotFoundError`` when nothing is there, ``IsADirectoryError`` for a folder,
    ``ValueError`` for a pipe, socket or device. Returns the path as a string.
    """
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no such {what}: {path}") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory, not a {what}")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise ValueError(f"{path} is {kind}, not a {what}; cvcore reads regular files only "
                         f"(reading it could block forever)")
    return path
