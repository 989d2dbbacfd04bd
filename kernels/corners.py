"""Corner kernels: structure-tensor responses, a sliding maximum, greedy peak spacing.

Conventions: all maps are float32 (H, W), C-contiguous; coordinates are (row, column).
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True, fastmath={"contract"})
def harris_response(arr, arc, acc, k, eps, use_k, out):
    """Harris & Stephens 1988 response from the smoothed structure tensor
    ``A = [[arr, arc], [arc, acc]]``: ``det A - k trace(A)^2`` when ``use_k``, else Noble's
    ``2 det A / (trace A + eps)`` (Noble 1989; scikit-image ``method='eps'``)."""
    H, W = out.shape
    for i in prange(H):
        for j in range(W):
            det = arr[i, j] * acc[i, j] - arc[i, j] * arc[i, j]
            tr = arr[i, j] + acc[i, j]
            if use_k:
                out[i, j] = det - k * tr * tr
            else:
                out[i, j] = 2.0 * det / (tr + eps)


@njit(cache=True, parallel=True)
def shi_tomasi_response(arr, arc, acc, out):
    """Smaller eigenvalue of the structure tensor (Shi & Tomasi 1994):
    ``((arr + acc) - sqrt((arr - acc)^2 + 4 arc^2)) / 2``."""
    H, W = out.shape
    for i in prange(H):
        for j in range(W):
            d = arr[i, j] - acc[i, j]
            out[i, j] = ((arr[i, j] + acc[i, j]) - np.sqrt(d * d + 4.0 * arc[i, j] * arc[i, j])) / 2


@njit(cache=True, inline="always")
def _clamp(v, lo, hi):
    """``min(max(v, lo), hi)`` for integers, without the builtins (each of those is one more
    Numba-internal specialisation to compile in every kernel that uses it)."""
    return lo if v < lo else (hi if v > hi else v)


@njit(cache=True, parallel=True)
def max_filter_nearest(image, radius, out):
    """Maximum over the (2 radius + 1)^2 window, ``nearest`` border
    (``scipy.ndimage.maximum_filter(image, 2 * radius + 1, mode='nearest')``).

    Separable: a row maximum into a scratch image, then a column maximum; border indices are
    clamped, which is the ``nearest`` extension.
    """
    H, W = image.shape
    rowmax = np.empty((H, W), np.float32)
    for i in prange(H):
        for j in range(W):
            m = image[i, j]
            for d in range(-radius, radius + 1):
                jj = _clamp(j + d, 0, W - 1)
                if image[i, jj] > m:
                    m = image[i, jj]
            rowmax[i, j] = m
    for i in prange(H):
        for j in range(W):
            out[i, j] = rowmax[i, j]
        for d in range(-radius, radius + 1):
            ii = _clamp(i + d, 0, H - 1)
            for j in range(W):
                if rowmax[ii, j] > out[i, j]:
                    out[i, j] = rowmax[ii, j]


@njit(cache=True)
def greedy_spacing(coords, H, W, reach, keep):
    """Greedy non-maximum suppression by distance (Chebyshev metric).

    ``coords`` (K, 2) int64 are visited in order (strongest first); a point is kept unless a
    point kept before it lies within ``reach`` rows and ``reach`` columns. ``keep`` (K,) uint8
    receives 1 for kept points. A grid of kept points makes each test O(reach^2).
    """
    taken = np.zeros((H, W), np.uint8)
    for p in range(coords.shape[0]):
        r = coords[p, 0]
        c = coords[p, 1]
        clash = False
        for rr in range(max(r - reach, 0), min(r + reach + 1, H)):
            for cc in range(max(c - reach, 0), min(c + reach + 1, W)):
                if taken[rr, cc]:
                    clash = True
                    break
            if clash:
                break
        keep[p] = 0 if clash else 1
        if not clash:
            taken[r, c] = 1
