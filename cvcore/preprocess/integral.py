"""Integral images (summed-area tables) and box sums.

Conventions
-----------
* ``integral_image(image)[r, c] == image[:r, :c].sum()``: the table is one row and one column
  larger than the image, its first row and column zero (OpenCV ``cv::integral``'s layout;
  ``skimage.transform.integral_image`` has no zero border and is ``table[1:, 1:]`` here).
* Box bounds are half-open, like slices: ``box_sum(table, r0, c0, r1, c1) ==
  image[r0:r1, c0:c1].sum()``, with ``0 <= r0 <= r1 <= H`` and ``0 <= c0 <= c1 <= W``.
* The table is float64: exact for integer-valued images while the total stays below 2**53, and
  within about ``(H + W) * 1.1e-16`` of the total for any other values (see :mod:`kernels.integral`
  for the precision argument). Squared tables (``squared_integral_image``) serve variance
  normalisation (Viola & Jones 2001, sec. 5.6): ``var = E[x^2] - E[x]^2`` over a window.
* A multi-channel ``(H, W, C)`` image gets one table per channel, ``(H + 1, W + 1, C)``.

Kernels: :mod:`kernels.integral` (``integral_image``, and ``box_sum`` / ``box_sum_clamped`` for
other kernels to call); readable twin: :mod:`kernels.reference.integral`.
"""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array, check_finite

__all__ = ["integral_image", "squared_integral_image", "box_sum"]

EXACT_INTEGER_LIMIT = 2 ** 53   # float64 holds every integer up to this (IEEE 754 binary64)


def _as_float64(image, name):
    """Image as C-contiguous float64 (H, W) or (H, W, C), finite, non-empty."""
    arr = check_array(image, name, ndim=(2, 3), dtypes="buif")
    check_finite(arr, name)
    return np.ascontiguousarray(arr, dtype=np.float64)


def _table(values):
    from kernels.integral import integral_image as kernel
    H, W = values.shape[:2]
    if values.ndim == 2:
        out = np.empty((H + 1, W + 1), np.float64)
        kernel(values, out)
        return out
    out = np.empty((H + 1, W + 1, values.shape[2]), np.float64)
    for c in range(values.shape[2]):
        plane = np.empty((H + 1, W + 1), np.float64)
        kernel(np.ascontiguousarray(values[:, :, c]), plane)
        out[:, :, c] = plane
    return out


def integral_image(image) -> np.ndarray:
    """Summed-area table of an image (Crow 1984; Viola & Jones 2001, sec. 2.1).

    .. math:: ii(r, c) = \\sum_{r' < r} \\sum_{c' < c} I(r', c')

    Parameters
    ----------
    image : (H, W) or (H, W, C) array of bool, int or float
        Any real dtype; values are kept (uint8 200 stays 200). Must be finite and non-empty.

    Returns
    -------
    (H + 1, W + 1) or (H + 1, W + 1, C) float64
        Zero first row and column; ``ii[H, W]`` is the image's sum. Equal bit for bit to
        ``np.cumsum(np.cumsum(image, axis=1), axis=0)`` padded with the zero row and column.

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore.preprocess import integral_image, box_sum
    >>> ii = integral_image(np.arange(6).reshape(2, 3))
    >>> ii
    array([[ 0.,  0.,  0.,  0.],
           [ 0.,  0.,  1.,  3.],
           [ 0.,  3.,  8., 15.]])
    >>> float(box_sum(ii, 0, 1, 2, 3))   # rows 0..1, columns 1..2: 1 + 2 + 4 + 5
    12.0
    """
    return _table(_as_float64(image, "image"))


def squared_integral_image(image) -> np.ndarray:
    """Summed-area table of the squared image, ``ii2[r, c] = sum(image[:r, :c] ** 2)``.

    With :func:`integral_image` it gives a window's variance in eight reads (Viola & Jones 2001,
    sec. 5.6). Squares of uint8 values are at most 65025, so the table stays exact up to
    1.4e11 pixels; float32 values square exactly in float64.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array of bool, int or float

    Returns
    -------
    (H + 1, W + 1) or (H + 1, W + 1, C) float64

    Examples
    --------
    >>> import numpy as np
    >>> squared_integral_image(np.array([[1, 2], [3, 4]]))[-1, -1]   # 1 + 4 + 9 + 16
    np.float64(30.0)
    """
    values = _as_float64(image, "image")
    return _table(np.square(values))


def _bound(value, name):
    arr = np.asarray(value)
    if arr.dtype == object or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer or an array of integers, got {arr.dtype}")
    return arr.astype(np.int64)


def box_sum(table, r0, c0, r1, c1):
    """Sums over half-open boxes ``image[r0:r1, c0:c1]`` read from an integral image.

    .. math:: S = ii(r_1, c_1) - ii(r_0, c_1) - ii(r_1, c_0) + ii(r_0, c_0)

    Parameters
    ----------
    table : (H + 1, W + 1) or (H + 1, W + 1, C) float64
        From :func:`integral_image` (or :func:`squared_integral_image`).
    r0, c0, r1, c1 : int or int arrays
        Box bounds, broadcast against each other; ``0 <= r0 <= r1 <= H``, ``0 <= c0 <= c1 <= W``.
        An empty box (``r0 == r1``) sums to 0.

    Returns
    -------
    float64 scalar or array of the broadcast shape (with a trailing C axis for a channel table).

    Raises
    ------
    ValueError
        A bound outside the table or a box whose end comes before its start.
    """
    ii = check_array(table, "table", ndim=(2, 3), dtypes="f")
    if ii.shape[0] < 1 or ii.shape[1] < 1:
        raise ValueError(f"table must have at least one row and column, got shape {ii.shape}")
    H, W = ii.shape[0] - 1, ii.shape[1] - 1
    try:
        r0, c0, r1, c1 = np.broadcast_arrays(*(_bound(v, n) for v, n in
                                              zip((r0, c0, r1, c1), ("r0", "c0", "r1", "c1"))))
    except ValueError as exc:
        raise ValueError(f"box bounds do not broadcast together: {exc}") from None
    for lo, hi, size, axis in ((r0, r1, H, "rows"), (c0, c1, W, "columns")):
        if lo.size and (lo.min() < 0 or hi.max() > size):
            raise ValueError(f"box {axis} must lie in 0..{size} (the table is {ii.shape[:2]}), "
                             f"got {int(lo.min())}..{int(hi.max())}")
        if np.any(hi < lo):
            raise ValueError(f"box end before its start along the {axis}")
    total = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
    return total[()] if total.ndim == 0 else total
