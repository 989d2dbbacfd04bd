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

from kernels.conv import ROW_BLOCK, fill_ring

# Columns processed at once: the (n, TILE) slot buffer of a 5x5 window then fits in L1/L2.
TILE = 256


@njit(cache=True, parallel=True, fastmath=True)
def rank_network(image, kh, kw, rows, cols, cx, cval, pairs, rank, out):
    """Order statistic ``rank`` of every ``kh`` x ``kw`` window of the extended image.

    Parameters
    ----------
    image : (H, W) float32
    kh, kw : int
        Window size.
    rows, cols : int64
        Border maps (:func:`kernels.conv.border_map`) for a window centred at
        ``(kh // 2, cx)``; -1 stands for ``cval``.
    pairs : (P, 2) int64
        Compare-exchange pairs of a sorting network on ``kh * kw`` slots (possibly pruned).
    rank : int
        Slot to read after the network (0 = minimum).
    out : (H, W) float32
        Receives the result.

    Parallel over blocks of rows; each block keeps its ``kh`` extended source rows in a ring
    (:func:`kernels.conv.fill_ring`), so no padded copy of the image is made.
    """
    H, W = out.shape
    n = kh * kw
    fill = np.float32(cval)
    nblocks = (H + ROW_BLOCK - 1) // ROW_BLOCK
    for b in prange(nblocks):
        i0 = b * ROW_BLOCK
        ring = np.empty((kh, W + kw - 1), np.float32)
        buf = np.empty((n, TILE), np.float32)
        for i in range(i0, min(H, i0 + ROW_BLOCK)):
            fill_ring(ring, image, rows, cols, cx, fill, i, i == i0)
            for j0 in range(0, W, TILE):
                width = min(TILE, W - j0)
                for u in range(kh):
                    src = ring[(i + u) % kh]
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


@njit(cache=True, parallel=True, fastmath=True)
def median3x3(image, rows, cols, cval, out):
    """3 x 3 median of the extended image (border maps for a centred 3 x 3 window), by
    sorted columns.

    Sort the three values of every column (``lo <= mid <= hi``, shared by the three windows
    that contain the column); the median of a window is then
    ``med3(max(lo), med3(mid), min(hi))`` over its three columns (the 3 x 3 median identity,
    Paeth 1990, "Median finding on a 3 x 3 grid", Graphics Gems I). About 14 min/max per pixel
    instead of the 24 compare-exchanges of the pruned general network.
    """
    H, W = out.shape
    fill = np.float32(cval)
    n = W + 2
    nblocks = (H + ROW_BLOCK - 1) // ROW_BLOCK
    for blk in prange(nblocks):
        i0 = blk * ROW_BLOCK
        ring = np.empty((3, n), np.float32)
        lo = np.empty(n, np.float32)
        mid = np.empty(n, np.float32)
        hi = np.empty(n, np.float32)
        for i in range(i0, min(H, i0 + ROW_BLOCK)):
            fill_ring(ring, image, rows, cols, 1, fill, i, i == i0)
            a = ring[i % 3]
            b = ring[(i + 1) % 3]
            c = ring[(i + 2) % 3]
            for j in range(n):
                x = a[j]
                y = b[j]
                z = c[j]
                s = min(x, y)
                t = max(x, y)
                lo[j] = min(s, z)
                u = max(s, z)
                hi[j] = max(t, u)
                mid[j] = min(t, u)
            lo0, lo1, lo2 = lo[0:W], lo[1:W + 1], lo[2:W + 2]
            md0, md1, md2 = mid[0:W], mid[1:W + 1], mid[2:W + 2]
            hi0, hi1, hi2 = hi[0:W], hi[1:W + 1], hi[2:W + 2]
            dst = out[i]
            for j in range(W):
                p = max(max(lo0[j], lo1[j]), lo2[j])
                q = min(min(hi0[j], hi1[j]), hi2[j])
                # med3(m0, m1, m2) = max(min(m0, m1), min(max(m0, m1), m2))
                r = max(min(md0[j], md1[j]), min(max(md0[j], md1[j]), md2[j]))
                dst[j] = max(min(p, r), min(max(p, r), q))


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
