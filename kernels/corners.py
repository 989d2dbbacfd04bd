"""Corner kernels: structure-tensor responses, a sliding maximum, greedy peak spacing.

Conventions: all maps are float32 (H, W), C-contiguous; coordinates are (row, column).
"""
import numpy as np
from numba import njit, prange

from kernels.scalar import clamp


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


@njit(cache=True, nogil=True)
def max_rows_nearest(image, radius, out, r0, r1):
    """``out[i, j] = max(image[i, j - radius .. j + radius])``, columns clamped to the image
    (the ``nearest`` border), for rows ``[r0, r1)``: the first pass of a separable maximum
    filter (:func:`max_cols_nearest` is the second).

    One shift ``d`` at a time over whole rows, the clamped columns apart: plain loops over
    contiguous memory, which vectorise (a clamped index per element does not)."""
    W = image.shape[1]
    for i in range(r0, r1):
        src = image[i]
        dst = out[i]
        for j in range(W):
            dst[j] = src[j]
        for d in range(1, radius + 1):
            e = d if d < W else W
            # a select, not a conditional store: the loops then vectorise
            right = src[d:]                          # (views: indices from 0 vectorise)
            for j in range(W - e):                   # right neighbour j + d
                v, m = right[j], dst[j]
                dst[j] = v if v > m else m
            last = src[W - 1]
            for j in range(W - e, W):                # past the last column: the last column
                m = dst[j]
                dst[j] = last if last > m else m
            shifted = dst[e:]
            for j in range(W - e):                   # left neighbour j - d
                v, m = src[j], shifted[j]
                shifted[j] = v if v > m else m
            first = src[0]
            for j in range(e):                       # before the first column: the first
                m = dst[j]
                dst[j] = first if first > m else m


@njit(cache=True, nogil=True)
def max_cols_nearest(rowmax, radius, out, r0, r1):
    """``out[i, j] = max(rowmax[i - radius .. i + radius, j])``, rows clamped to the image,
    for rows ``[r0, r1)``: the second pass of the separable maximum filter.

    Together with :func:`max_rows_nearest` this is ``scipy.ndimage.maximum_filter(image,
    2 * radius + 1, mode='nearest')``. Both are one-thread kernels over a band of rows; the
    caller runs bands on several threads (:func:`cvcore._bands.run_bands`; a ``prange`` per
    pass cost a gufunc module each on a cold start)."""
    H, W = out.shape
    for i in range(r0, r1):
        dst = out[i]
        src = rowmax[i]
        for j in range(W):
            dst[j] = src[j]
        for d in range(-radius, radius + 1):
            row = rowmax[clamp(i + d, 0, H - 1)]
            for j in range(W):
                v, m = row[j], dst[j]
                dst[j] = v if v > m else m


@njit(cache=True, nogil=True)
def greedy_spacing(coords, taken, reach, keep):
    """Greedy non-maximum suppression by distance (Chebyshev metric).

    ``coords`` (K, 2) int64 are visited in order (strongest first); a point is kept unless a
    point kept before it lies within ``reach`` rows and ``reach`` columns. ``keep`` (K,) uint8
    receives 1 for kept points. A grid of kept points, ``taken`` (H, W) uint8, zero on entry
    (the caller's: an array made here is one more Numba specialisation of ``np.zeros`` to
    compile), makes each test O(reach^2).
    """
    H, W = taken.shape
    for p in range(coords.shape[0]):
        r = coords[p, 0]
        c = coords[p, 1]
        clash = False
        for rr in range(clamp(r - reach, 0, H), clamp(r + reach + 1, 0, H)):
            for cc in range(clamp(c - reach, 0, W), clamp(c + reach + 1, 0, W)):
                if taken[rr, cc]:
                    clash = True
                    break
            if clash:
                break
        keep[p] = 0 if clash else 1
        if not clash:
            taken[r, c] = 1
