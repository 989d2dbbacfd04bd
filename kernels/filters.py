"""Rank-filter kernels (the median filter as a pruned sorting network applied to image rows)
and the 3 x 3 gradient filters (Sobel, Prewitt, Scharr) with their magnitude.

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


# ----------------------------------------------------------------------------- 3x3 gradients
#
# The derivative filters (Sobel, Prewitt, Scharr) are 3 x 3 and separable: a derivative
# ``[-1, 0, 1]`` along one axis and a smoothing ``[s0, s1, s2]`` along the other. For output row
# ``i`` only three source rows matter (above ``a``, own ``b``, below ``c``), so one pass down the
# image computes, per row, the column smoothing ``S = s0 a + s1 b + s2 c`` and the column
# difference ``D = c - a`` into two row buffers extended by one cell on either side, then
#
#     d/dcolumns[i, j] = S[j + 1] - S[j - 1]
#     d/drows[i, j]    = s0 D[j - 1] + s1 D[j] + s2 D[j + 1]
#
# Both act along columns first, so extending S or D by the column border map equals extending
# the image rows first (the border of a column is the same for every row). Rows beyond the top
# or bottom come from the row border map; -1 there (``constant`` mode) is a row of zeros: the
# caller takes the general path for a non-zero ``cval``, where SciPy's pass order matters.


@njit(cache=True)
def _extend_by_one(buf, cols):
    """Fill ``buf[0]`` and ``buf[W + 1]`` (``W = buf.size - 2``, the row sits at ``buf[1:W + 1]``)
    from the column border map ``cols`` (``border_map(W, 1, 1, mode)``); -1 gives 0."""
    W = buf.size - 2
    left = cols[0]
    right = cols[W + 1]
    buf[0] = 0.0 if left < 0 else buf[1 + left]
    buf[W + 1] = 0.0 if right < 0 else buf[1 + right]


@njit(cache=True)
def _source_row(image, rows, p, zero):
    """Row ``p`` of the image extended by the row border map: ``image[rows[p]]``, or the row
    of zeros ``zero`` where ``rows[p]`` is -1."""
    r = rows[p]
    return zero if r < 0 else image[r]


@njit(cache=True)
def _smooth_rows(a, b, c, s0, s1, s2, cols, S):
    """``S[1 + j] = s0 a[j] + s1 b[j] + s2 c[j]``, extended by one cell each side."""
    W = a.size
    mid = S[1:W + 1]
    for j in range(W):
        mid[j] = s0 * a[j] + s1 * b[j] + s2 * c[j]
    _extend_by_one(S, cols)


@njit(cache=True)
def _difference_rows(a, c, cols, D):
    """``D[1 + j] = c[j] - a[j]``, extended by one cell each side."""
    W = a.size
    mid = D[1:W + 1]
    for j in range(W):
        mid[j] = c[j] - a[j]
    _extend_by_one(D, cols)


@njit(cache=True, parallel=True, fastmath={"contract"})
def gradient3x3(image, rows, cols, s0, s1, s2, axis, out):
    """Derivative along ``axis`` (0: rows, 1: columns) of the 3 x 3 separable gradient filter
    with smoothing taps ``(s0, s1, s2)`` along the other axis, one pass over the image.

    ``image``, ``out`` (H, W) float32; ``rows = border_map(H, 1, 1, mode)``,
    ``cols = border_map(W, 1, 1, mode)`` (-1 only for ``constant`` mode with ``cval = 0``).
    Equal to ``scipy.ndimage.sobel`` (``prewitt``; Scharr's taps) up to float32 rounding of
    the pass order. Parallel over blocks of ``ROW_BLOCK`` rows, two row buffers per block.
    """
    H, W = out.shape
    s0, s1, s2 = np.float32(s0), np.float32(s1), np.float32(s2)   # float32 arithmetic
    nblocks = (H + ROW_BLOCK - 1) // ROW_BLOCK
    for blk in prange(nblocks):
        zero = np.zeros(W, np.float32)
        buf = np.empty(W + 2, np.float32)
        left = buf[0:W]
        centre = buf[1:W + 1]
        right = buf[2:W + 2]
        for i in range(blk * ROW_BLOCK, min(H, (blk + 1) * ROW_BLOCK)):
            a = _source_row(image, rows, i, zero)        # above
            c = _source_row(image, rows, i + 2, zero)    # below
            b = image[i]
            dst = out[i]
            if axis == 1:
                _smooth_rows(a, b, c, s0, s1, s2, cols, buf)
                for j in range(W):
                    dst[j] = right[j] - left[j]
            else:
                _difference_rows(a, c, cols, buf)
                for j in range(W):
                    dst[j] = s0 * left[j] + s1 * centre[j] + s2 * right[j]


@njit(cache=True, parallel=True, fastmath={"contract"})
def gradient3x3_magnitude(image, rows, cols, s0, s1, s2, gr, gc, mag):
    """Both derivatives of :func:`gradient3x3` and the magnitude in one pass over the image:
    ``gr`` along rows, ``gc`` along columns, ``mag = sqrt(gr^2 + gc^2)`` computed in float64
    (no square overflows; ``numpy.hypot`` rounded to float32). All (H, W) float32."""
    H, W = mag.shape
    s0, s1, s2 = np.float32(s0), np.float32(s1), np.float32(s2)   # float32 arithmetic
    nblocks = (H + ROW_BLOCK - 1) // ROW_BLOCK
    for blk in prange(nblocks):
        zero = np.zeros(W, np.float32)
        S = np.empty(W + 2, np.float32)
        D = np.empty(W + 2, np.float32)
        S_left, S_right = S[0:W], S[2:W + 2]
        D_left, D_centre, D_right = D[0:W], D[1:W + 1], D[2:W + 2]
        for i in range(blk * ROW_BLOCK, min(H, (blk + 1) * ROW_BLOCK)):
            a = _source_row(image, rows, i, zero)        # above
            c = _source_row(image, rows, i + 2, zero)    # below
            b = image[i]
            _smooth_rows(a, b, c, s0, s1, s2, cols, S)
            _difference_rows(a, c, cols, D)
            r_out = gr[i]
            c_out = gc[i]
            m_out = mag[i]
            for j in range(W):
                x = s0 * D_left[j] + s1 * D_centre[j] + s2 * D_right[j]
                y = S_right[j] - S_left[j]
                r_out[j] = x
                c_out[j] = y
                x64 = np.float64(x)
                y64 = np.float64(y)
                m_out[j] = np.sqrt(x64 * x64 + y64 * y64)
