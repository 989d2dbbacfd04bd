"""Rank-filter kernels (the median filter as a pruned sorting network applied to image rows)
and the gradient magnitude.

A sorting network is a fixed list of compare-exchange pairs ``(a, b)``, ``a < b``, after which
slot ``a`` holds ``min`` and slot ``b`` holds ``max``. For a window of ``n`` pixels, slot ``t``
holds the pixel at window offset ``t``; after the network, slot ``rank`` holds the
``rank``-th smallest value. Applied to whole image rows at once (slot ``t`` is a row of
values, one per output pixel), every compare-exchange is an elementwise min/max over a
contiguous row, which LLVM vectorises. The network itself is built (and pruned to the
comparators that can affect slot ``rank``) in :mod:`cvcore.preprocess.filters`.
"""
import numpy as np
from numba import njit, prange

# Columns processed at once: the (n, TILE) slot buffer of a 5x5 window then fits in L1/L2.
TILE = 256


@njit(cache=True, parallel=True, fastmath=True)
def rank_network_padded(padded, kh, kw, pairs, rank, out):
    """Order statistic ``rank`` of every ``kh`` x ``kw`` window of a padded image.

    Parameters
    ----------
    padded : (H + kh - 1, W + kw - 1) float32
    kh, kw : int
        Window size.
    pairs : (P, 2) int64
        Compare-exchange pairs of a sorting network on ``kh * kw`` slots (possibly pruned).
    rank : int
        Slot to read after the network (0 = minimum).
    out : (H, W) float32
        Receives the result.
    """
    H, W = out.shape
    n = kh * kw
    for i in prange(H):
        buf = np.empty((n, TILE), np.float32)
        for j0 in range(0, W, TILE):
            width = min(TILE, W - j0)
            for u in range(kh):
                src = padded[i + u]
                for v in range(kw):
                    # Views that start at index 0 let LLVM vectorise the loops below.
                    slot = buf[u * kw + v]
                    window = src[j0 + v:j0 + v + width]
                    for j in range(width):
                        slot[j] = window[j]
            for p in range(pairs.shape[0]):
                ra = buf[pairs[p, 0]]
                rb = buf[pairs[p, 1]]
                for j in range(width):
                    x = ra[j]
                    y = rb[j]
                    ra[j] = min(x, y)
                    rb[j] = max(x, y)
            res = buf[rank]
            dst = out[i, j0:j0 + width]
            for j in range(width):
                dst[j] = res[j]


@njit(cache=True, parallel=True)
def magnitude(a, b, out):
    """``out = sqrt(a^2 + b^2)`` elementwise for (H, W) float32 arrays, computed in float64
    so that no square overflows (the result is ``numpy.hypot`` rounded to float32)."""
    H, W = out.shape
    for i in prange(H):
        for j in range(W):
            x = np.float64(a[i, j])
            y = np.float64(b[i, j])
            out[i, j] = np.sqrt(x * x + y * y)
