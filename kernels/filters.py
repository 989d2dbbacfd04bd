"""Rank-filter kernels (the median filter as a pruned sorting network applied to image rows)
and the 3 x 3 gradient filters (Sobel, Prewitt, Scharr) with their magnitude.

A sorting network is a fixed list of compare-exchange pairs ``(a, b)``, ``a < b``, after which
slot ``a`` holds ``min`` and slot ``b`` holds ``max``. For a window of ``n`` pixels, slot ``t``
holds the pixel at window offset ``t``; after the network, slot ``rank`` holds the
``rank``-th smallest value. Applied to whole image rows at once (slot ``t`` is a row of
values, one per output pixel), every compare-exchange is an elementwise min/max over a
contiguous row, which LLVM vectorises. The network itself is built (and pruned to the
comparators that can affect slot ``rank``) in :mod:`cvcore.preprocess.filters`.

Every kernel here computes a band of output rows ``[r0, r1)``, serially and without the GIL;
the caller runs bands on several threads (:func:`cvcore._bands.run_bands`).
"""
import numpy as np
from numba import njit

from kernels.conv import fill_ring

# Columns processed at once: the (n, TILE) slot buffer of a 5x5 window then fits in L1/L2.
TILE = 256

# The exponent bits of a float32: all set for infinity and NaN. The 3 x 3 median and the
# gradients test each image row for them (in ``bits``, the image viewed as uint32 by
# the caller) while they read it as an output row's own row (every image row is one), and
# set ``bad[r0]`` for the band (``bad`` of size 0: no flag written), so the caller needs no
# separate check pass over a float32 image (0.06-0.09 ms at 1024 x 1024, a seventh of a 3 x 3
# median); it raises after the kernel when a flag is set.
FLOAT32_EXPONENT = 0x7F800000


# ----------------------------------------------------------------------------- row helpers


@njit(cache=True)
def _source_row(image, rows, p, const_row):
    """Row ``p`` of the image extended by the row border map: ``image[rows[p]]``, or
    ``const_row`` (a row of ``cval``) where ``rows[p]`` is -1."""
    r = rows[p]
    return const_row if r < 0 else image[r]


@njit(cache=True)
def _extend_by_one(buf, cols, fill):
    """Fill ``buf[0]`` and ``buf[W + 1]`` (``W = buf.size - 2``, the row sits at ``buf[1:W + 1]``)
    from the column border map ``cols`` (``border_map(W, 1, 1, mode)``); -1 gives ``fill``."""
    W = buf.size - 2
    left = cols[0]
    right = cols[W + 1]
    buf[0] = fill if left < 0 else buf[1 + left]
    buf[W + 1] = fill if right < 0 else buf[1 + right]


@njit(cache=True)
def _extend_by_two(buf, cols, fill):
    """Border cells of a row sitting at ``buf[2:W + 2]`` (``W = buf.size - 4``), from the column
    border map ``cols`` (``border_map(W, 2, 2, mode)``); -1 gives ``fill``."""
    W = buf.size - 4
    for c in (0, 1, W + 2, W + 3):
        src = cols[c]
        buf[c] = fill if src < 0 else buf[2 + src]


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def rank_network(image, kh, kw, rows, cols, cx, cval, pairs, rank, out, r0, r1):
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

    Computes output rows ``[r0, r1)`` (serial; the caller runs bands of rows on several
    threads). The ``kh`` extended source rows sit in a ring (:func:`kernels.conv.fill_ring`),
    so no padded copy of the image is made.
    """
    W = out.shape[1]
    n = kh * kw
    fill = np.float32(cval)
    ring = np.empty((kh, W + kw - 1), np.float32)
    buf = np.empty((n, TILE), np.float32)
    for i in range(r0, r1):
        fill_ring(ring, image, rows, cols, cx, fill, i, i == r0)
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


@njit(cache=True, nogil=True)
def _merge3(x, lo, hi):
    """The values ``x``, ``lo``, ``hi`` sorted, given ``lo <= hi``: 4 min/max."""
    return min(x, lo), max(lo, min(x, hi)), max(x, hi)


@njit(cache=True, nogil=True)
def _median_of_sorted_columns(l0, l1, l2, m0, m1, m2, h0, h1, h2):
    """Median of a 3 x 3 window from its three sorted columns (``l <= m <= h`` each):
    ``med3(max(l), med3(m), min(h))`` (Paeth 1990, "Median finding on a 3 x 3 grid", Graphics
    Gems I), with ``med3(a, b, c) = max(min(a, b), min(max(a, b), c))``: 12 min/max."""
    p = max(max(l0, l1), l2)
    q = min(min(h0, h1), h2)
    r = max(min(m0, m1), min(max(m0, m1), m2))
    return max(min(p, r), min(max(p, r), q))


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def median3x3(image, bits, rows, cols, cval, out, bad, r0, r1):
    """3 x 3 median of the extended image (border maps for a centred 3 x 3 window), by
    sorted columns, two output rows at a time.

    Output rows ``i`` and ``i + 1`` read the extended rows ``a, b, c`` and ``b, c, d``: the
    pair ``(b, c)`` of every column is sorted once (2 min/max) and ``a`` and ``d`` merged into
    it (4 each), so a column's sorted triple costs 5 min/max per output row instead of 6. The
    median of a window is then :func:`_median_of_sorted_columns` of the triples of its three
    columns. Along a row each column's triple serves the three windows that contain it: the
    loop carries the two previous columns' triples in variables (LLVM vectorises the loop
    across ``x`` and shifts the carried vectors by lane permutations, so the triples never go
    through memory). About 17 min/max per pixel (the pruned general network takes 24
    compare-exchanges, OpenCV's ``medianBlur`` 3x3 network 19 on 9 loads).

    ``bad``: the NaN / infinity flag of the band (:data:`FLOAT32_EXPONENT`; each image row is
    tested as the middle row of its own output row). An odd last row is done as the first of a
    pair whose second output goes to a scratch row.
    """
    W = out.shape[1]
    fill = np.float32(cval)
    const_row = np.full(W, fill, np.float32)
    scratch = np.empty(W, np.float32)
    found = 0
    left, right = cols[0], cols[W + 1]          # source columns of the two border columns
    for i in range(r0, r1, 2):
        pair = i + 1 < r1
        a = _source_row(image, rows, i, const_row)
        b = image[i]
        c = _source_row(image, rows, i + 2, const_row)    # image[i + 1] when pair
        d = _source_row(image, rows, i + 3, const_row) if pair else c
        own0 = bits[i]
        own1 = bits[i + 1] if pair else own0
        dst0 = out[i]
        dst1 = out[i + 1] if pair else scratch
        # the border column on the left, then column 0: the first two carried triples
        if left < 0:
            l0 = m0 = h0 = k0 = n0 = g0 = fill
        else:
            lo = min(b[left], c[left])
            hi = max(b[left], c[left])
            l0, m0, h0 = _merge3(a[left], lo, hi)
            k0, n0, g0 = _merge3(d[left], lo, hi)
        lo = min(b[0], c[0])
        hi = max(b[0], c[0])
        l1, m1, h1 = _merge3(a[0], lo, hi)
        k1, n1, g1 = _merge3(d[0], lo, hi)
        for j in range(W - 1):
            lo = min(b[j + 1], c[j + 1])
            hi = max(b[j + 1], c[j + 1])
            l2, m2, h2 = _merge3(a[j + 1], lo, hi)
            k2, n2, g2 = _merge3(d[j + 1], lo, hi)
            dst0[j] = _median_of_sorted_columns(l0, l1, l2, m0, m1, m2, h0, h1, h2)
            dst1[j] = _median_of_sorted_columns(k0, k1, k2, n0, n1, n2, g0, g1, g2)
            found |= (((own0[j] & FLOAT32_EXPONENT) == FLOAT32_EXPONENT)
                      | ((own1[j] & FLOAT32_EXPONENT) == FLOAT32_EXPONENT))
            l0, m0, h0, k0, n0, g0 = l1, m1, h1, k1, n1, g1
            l1, m1, h1, k1, n1, g1 = l2, m2, h2, k2, n2, g2
        # the last column, whose right neighbour is the border column
        if right < 0:
            l2 = m2 = h2 = k2 = n2 = g2 = fill
        else:
            lo = min(b[right], c[right])
            hi = max(b[right], c[right])
            l2, m2, h2 = _merge3(a[right], lo, hi)
            k2, n2, g2 = _merge3(d[right], lo, hi)
        dst0[W - 1] = _median_of_sorted_columns(l0, l1, l2, m0, m1, m2, h0, h1, h2)
        dst1[W - 1] = _median_of_sorted_columns(k0, k1, k2, n0, n1, n2, g0, g1, g2)
        found |= (((own0[W - 1] & FLOAT32_EXPONENT) == FLOAT32_EXPONENT)
                  | ((own1[W - 1] & FLOAT32_EXPONENT) == FLOAT32_EXPONENT))
    if bad.size > 0:
        bad[r0] = found


# The median network of a 5 x 5 window with sorted columns, written out so that all 25 values
# stay in registers: generated by cvcore.preprocess.filters.presorted_median_network(5)
# (tests/test_filters.py checks these lines against it). c<v><t> is rank t of column v.
MEDIAN5_RESULT = "c24"


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def median5x5(image, rows, cols, cval, out, r0, r1):
    """5 x 5 median of the extended image (border maps for a centred 5 x 5 window).

    Per output row: sort the five values of every column once (Batcher's 9 comparators,
    shared by the five windows that contain the column) into five row buffers of ranks
    ``s0 <= ... <= s4``, extended by the column border; then, for every pixel, load its 25
    values from those buffers and run the pruned selection network for sorted columns
    (82 comparators, 140 min/max; :func:`cvcore.preprocess.filters.presorted_median_network`),
    straight-line code over registers that LLVM vectorises across the row. About 158 min/max
    per pixel in all, against 226 for the general network on unsorted values.
    """
    W = out.shape[1]
    fill = np.float32(cval)
    const_row = np.full(W, fill, np.float32)
    ranks = np.empty((5, W + 4), np.float32)
    s0, s1, s2, s3, s4 = ranks[0], ranks[1], ranks[2], ranks[3], ranks[4]
    t0, t1, t2, t3, t4 = s0[2:W + 2], s1[2:W + 2], s2[2:W + 2], s3[2:W + 2], s4[2:W + 2]
    for i in range(r0, r1):
        r0 = _source_row(image, rows, i, const_row)
        r1 = _source_row(image, rows, i + 1, const_row)
        r2 = _source_row(image, rows, i + 2, const_row)
        r3 = _source_row(image, rows, i + 3, const_row)
        r4 = _source_row(image, rows, i + 4, const_row)
        for j in range(W):
            x0, x1, x2, x3, x4 = r0[j], r1[j], r2[j], r3[j], r4[j]
            x0, x1 = min(x0, x1), max(x0, x1)
            x2, x3 = min(x2, x3), max(x2, x3)
            x0, x2 = min(x0, x2), max(x0, x2)
            x1, x3 = min(x1, x3), max(x1, x3)
            x1, x2 = min(x1, x2), max(x1, x2)
            x0, x4 = min(x0, x4), max(x0, x4)
            x2, x4 = min(x2, x4), max(x2, x4)
            x1, x2 = min(x1, x2), max(x1, x2)
            x3, x4 = min(x3, x4), max(x3, x4)
            t0[j], t1[j], t2[j], t3[j], t4[j] = x0, x1, x2, x3, x4
        for r in range(5):
            _extend_by_two(ranks[r], cols, fill)
        dst = out[i]
        for j in range(W):
            c00, c01, c02, c03, c04 = s0[j + 0], s1[j + 0], s2[j + 0], s3[j + 0], s4[j + 0]
            c10, c11, c12, c13, c14 = s0[j + 1], s1[j + 1], s2[j + 1], s3[j + 1], s4[j + 1]
            c20, c21, c22, c23, c24 = s0[j + 2], s1[j + 2], s2[j + 2], s3[j + 2], s4[j + 2]
            c30, c31, c32, c33, c34 = s0[j + 3], s1[j + 3], s2[j + 3], s3[j + 3], s4[j + 3]
            c40, c41, c42, c43, c44 = s0[j + 4], s1[j + 4], s2[j + 4], s3[j + 4], s4[j + 4]
            c00, c10 = min(c00, c10), max(c00, c10)
            c01, c11 = min(c01, c11), max(c01, c11)
            c02, c12 = min(c02, c12), max(c02, c12)
            c03, c13 = min(c03, c13), max(c03, c13)
            c04, c14 = min(c04, c14), max(c04, c14)
            c20, c30 = min(c20, c30), max(c20, c30)
            c21, c31 = min(c21, c31), max(c21, c31)
            c22, c32 = min(c22, c32), max(c22, c32)
            c23, c33 = min(c23, c33), max(c23, c33)
            c24, c34 = min(c24, c34), max(c24, c34)
            c04, c10 = min(c04, c10), max(c04, c10)
            c24, c30 = min(c24, c30), max(c24, c30)
            c02, c04 = min(c02, c04), max(c02, c04)
            c03, c11 = min(c03, c11), max(c03, c11)
            c12, c10 = min(c12, c10), max(c12, c10)
            c22, c24 = min(c22, c24), max(c22, c24)
            c23, c31 = min(c23, c31), max(c23, c31)
            c32, c30 = min(c32, c30), max(c32, c30)
            c01, c02 = min(c01, c02), max(c01, c02)
            c03, c04 = min(c03, c04), max(c03, c04)
            c11, c12 = min(c11, c12), max(c11, c12)
            c13, c10 = min(c13, c10), max(c13, c10)
            c21, c22 = min(c21, c22), max(c21, c22)
            c23, c24 = min(c23, c24), max(c23, c24)
            c31, c32 = min(c31, c32), max(c31, c32)
            c33, c30 = min(c33, c30), max(c33, c30)
            c00, c20 = min(c00, c20), max(c00, c20)
            c01, c21 = min(c01, c21), max(c01, c21)
            c02, c22 = min(c02, c22), max(c02, c22)
            c03, c23 = min(c03, c23), max(c03, c23)
            c04, c24 = min(c04, c24), max(c04, c24)
            c11, c31 = min(c11, c31), max(c11, c31)
            c12, c32 = min(c12, c32), max(c12, c32)
            c13, c33 = min(c13, c33), max(c13, c33)
            c10, c30 = min(c10, c30), max(c10, c30)
            c14, c34 = min(c14, c34), max(c14, c34)
            c10, c20 = min(c10, c20), max(c10, c20)
            c14, c21 = min(c14, c21), max(c14, c21)
            c04, c10 = min(c04, c10), max(c04, c10)
            c11, c14 = min(c11, c14), max(c11, c14)
            c12, c22 = min(c12, c22), max(c12, c22)
            c13, c23 = min(c13, c23), max(c13, c23)
            c24, c20 = min(c24, c20), max(c24, c20)
            c31, c21 = min(c31, c21), max(c31, c21)
            c02, c04 = min(c02, c04), max(c02, c04)
            c03, c11 = min(c03, c11), max(c03, c11)
            c12, c10 = min(c12, c10), max(c12, c10)
            c13, c14 = min(c13, c14), max(c13, c14)
            c22, c24 = min(c22, c24), max(c22, c24)
            c23, c31 = min(c23, c31), max(c23, c31)
            c32, c20 = min(c32, c20), max(c32, c20)
            c33, c21 = min(c33, c21), max(c33, c21)
            c01, c02 = min(c01, c02), max(c01, c02)
            c03, c04 = min(c03, c04), max(c03, c04)
            c12 = max(c11, c12)
            c13, c10 = min(c13, c10), max(c13, c10)
            c14, c22 = min(c14, c22), max(c14, c22)
            c23, c24 = min(c23, c24), max(c23, c24)
            c31 = min(c31, c32)
            c20 = max(c33, c20)
            c21, c30 = min(c21, c30), max(c21, c30)
            c40 = max(c00, c40)
            c41 = max(c01, c41)
            c42 = max(c02, c42)
            c43 = max(c03, c43)
            c44 = max(c04, c44)
            c20 = min(c20, c40)
            c21 = min(c21, c41)
            c30 = min(c30, c42)
            c34 = min(c34, c43)
            c20 = max(c10, c20)
            c21 = max(c14, c21)
            c22 = min(c22, c30)
            c23 = min(c23, c34)
            c24 = min(c24, c44)
            c22 = max(c12, c22)
            c23 = max(c13, c23)
            c24 = min(c24, c20)
            c31 = min(c31, c21)
            c24 = max(c22, c24)
            c23 = min(c23, c31)
            c24 = max(c23, c24)
            dst[j] = c24


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
def _difference_rows(a, c, cols, D):
    """``D[1 + j] = c[j] - a[j]``, extended by one cell each side."""
    W = a.size
    mid = D[1:W + 1]
    for j in range(W):
        mid[j] = c[j] - a[j]
    _extend_by_one(D, cols, np.float32(0.0))


# The magnitude is sqrt(x^2 + y^2) in float32 (its square root costs ~0.2 ms at 1024 x 1024
# against ~0.55 ms for float64's) where the sum of squares lies in [MIN, MAX] (or both
# derivatives are 0): there no square overflows and none loses bits to the subnormals
# (float32's smallest normal is 1.2e-38), so the result is within about an ulp of
# numpy.hypot's. A row with a sum outside that range is computed again in float64.
MAGNITUDE_SQUARE_MAX = np.float32(1e37)
MAGNITUDE_SQUARE_MIN = np.float32(1e-30)

@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def gradient_columns3x3(image, bits, rows, cols, s0, s1, s2, out, bad, r0, r1):
    """The derivative along columns of the 3 x 3 separable gradient filter alone: ``out[i, j] =
    S[i, j + 1] - S[i, j - 1]`` with ``S = s0 * above + s1 * own + s2 * below`` (the column
    smoothing, rows extended by ``rows``, columns by ``cols``; border maps as
    :func:`gradient3x3`'s). Equal to :func:`gradient3x3`'s ``gc`` bit for bit (the same float32
    expressions, contracted alike), in one loop per row: each smoothed value is computed once
    and carried two columns in registers (``p1``, ``p2``; LLVM vectorises the loop with lane
    shifts), where :func:`gradient3x3` stores the smoothed row and loads it twice shifted.
    0.206 against 0.254 ms at 1024 x 1024 (one thread, CPU; ``cv2.Sobel`` 0.295).

    Tests each image row's float32 bits for NaN or infinity as it reads it as a row's own row
    and sets ``bad[r0]`` (as :func:`gradient3x3`; ``bad`` of size 0: no flag). Writes rows
    ``[r0, r1)`` of ``out`` (serial; the caller runs bands of rows on several threads).
    """
    W = image.shape[1]
    s0, s1, s2 = np.float32(s0), np.float32(s1), np.float32(s2)   # float32 arithmetic
    zero = np.zeros(W, np.float32)
    left = cols[0]
    right = cols[W + 1]
    found = 0
    for i in range(r0, r1):
        a = _source_row(image, rows, i, zero)        # above
        c = _source_row(image, rows, i + 2, zero)    # below
        b = image[i]
        own = bits[i]
        o = out[i]
        # S at extended column 0 (left of column 0), then at column 0
        p2 = np.float32(0.0) if left < 0 else s0 * a[left] + s1 * b[left] + s2 * c[left]
        p1 = s0 * a[0] + s1 * b[0] + s2 * c[0]
        for j in range(W - 1):
            s = s0 * a[j + 1] + s1 * b[j + 1] + s2 * c[j + 1]
            o[j] = s - p2
            p2 = p1
            p1 = s
            found |= (own[j] & FLOAT32_EXPONENT) == FLOAT32_EXPONENT
        last = np.float32(0.0) if right < 0 else s0 * a[right] + s1 * b[right] + s2 * c[right]
        o[W - 1] = last - p2
        found |= (own[W - 1] & FLOAT32_EXPONENT) == FLOAT32_EXPONENT
    if bad.size > 0:
        bad[r0] = found


# Which outputs :func:`gradient3x3` writes.
GRADIENT_ROWS = 0       # the derivative along rows only
GRADIENT_COLUMNS = 1    # the derivative along columns only (gradient_columns3x3 is faster)
GRADIENT_BOTH = 2       # both derivatives and the magnitude (or, with empty gr and gc, the
                        # magnitude only: the derivatives go to a one-row scratch in cache)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def gradient3x3(image, bits, rows, cols, s0, s1, s2, which, gr, gc, mag, bad, r0, r1):
    """The 3 x 3 separable gradient filter with smoothing taps ``(s0, s1, s2)``, one pass over
    the image: ``gr`` the derivative along rows, ``gc`` along columns, ``mag = sqrt(gr^2 +
    gc^2)`` (float32 where the squares are safe, else float64 for the row: within about an
    ulp of ``numpy.hypot``; :data:`MAGNITUDE_SQUARE_MAX`).

    ``which`` picks the outputs written: ``GRADIENT_ROWS`` (``gr``), ``GRADIENT_COLUMNS``
    (``gc``) or ``GRADIENT_BOTH`` (all three; with ``gr`` and ``gc`` empty, ``mag`` only: the
    derivatives then go to one-row scratch buffers that stay in cache, no 8 bytes per pixel
    written to memory); the outputs not written may be empty arrays. One kernel for
    the three cases, chosen per row outside the pixel loops, compiles once instead of thrice.
    (``gc`` alone is faster with :func:`gradient_columns3x3`, one loop per row instead of two;
    this kernel's ``GRADIENT_COLUMNS`` serves callers that also need ``gr`` and would rather
    compile one kernel, Harris on the demo's path.)
    ``image`` and the outputs are (H, W) float32, ``bits`` is ``image.view(np.uint32)``;
    ``rows = border_map(H, 1, 1, mode)``,
    ``cols = border_map(W, 1, 1, mode)`` (-1 only for ``constant`` mode with ``cval = 0``).
    Equal to ``scipy.ndimage.sobel`` (``prewitt``; Scharr's taps) up to float32 rounding of
    the pass order. Writes rows ``[r0, r1)`` (serial; the caller runs bands of rows on
    several threads), with two row buffers.

    Unless ``which`` is ``GRADIENT_ROWS``, the loop that smooths the three source rows also
    tests the own row's float32 bits for NaN or infinity (exponent all ones) while it has
    them in registers, and sets ``bad[r0]`` to 1 if it met one (0 otherwise; ``bad`` of size
    0: no flag written). Every image row is some output row's own row, so the caller can skip
    its separate check pass over the image (0.06 ms of a 0.3 ms Sobel at 1024 x 1024).
    """
    W = image.shape[1]
    s0, s1, s2 = np.float32(s0), np.float32(s1), np.float32(s2)   # float32 arithmetic
    found = 0
    zero = np.zeros(W, np.float32)
    S = np.empty(W + 2, np.float32)
    D = np.empty(W + 2, np.float32)
    keep = gr.shape[0] > 0                  # derivatives wanted (else a scratch row each)
    r_rows = gr if keep else np.empty((1, W), np.float32)
    c_rows = gc if keep else np.empty((1, W), np.float32)
    S_left, S_right = S[0:W], S[2:W + 2]
    D_left, D_centre, D_right = D[0:W], D[1:W + 1], D[2:W + 2]
    for i in range(r0, r1):
        a = _source_row(image, rows, i, zero)        # above
        c = _source_row(image, rows, i + 2, zero)    # below
        b = image[i]
        if which != GRADIENT_ROWS:
            own = bits[i]
            mid = S[1:W + 1]
            for j in range(W):
                mid[j] = s0 * a[j] + s1 * b[j] + s2 * c[j]
                found |= (own[j] & FLOAT32_EXPONENT) == FLOAT32_EXPONENT
            _extend_by_one(S, cols, np.float32(0.0))
        if which != GRADIENT_COLUMNS:
            _difference_rows(a, c, cols, D)
        if which == GRADIENT_ROWS:
            r_out = gr[i]
            for j in range(W):
                r_out[j] = s0 * D_left[j] + s1 * D_centre[j] + s2 * D_right[j]
        elif which == GRADIENT_COLUMNS:
            c_out = gc[i]
            for j in range(W):
                c_out[j] = S_right[j] - S_left[j]
        else:
            r_out = r_rows[i if keep else 0]
            c_out = c_rows[i if keep else 0]
            m_out = mag[i]
            extreme = 0
            for j in range(W):
                x = s0 * D_left[j] + s1 * D_centre[j] + s2 * D_right[j]
                y = S_right[j] - S_left[j]
                r_out[j] = x
                c_out[j] = y
                m2 = x * x + y * y
                m_out[j] = np.sqrt(m2)
                extreme += (m2 > MAGNITUDE_SQUARE_MAX) | ((m2 < MAGNITUDE_SQUARE_MIN)
                                                          & ((x != 0) | (y != 0)))
            if extreme:
                # A sum of squares beyond float32's safe range (overflow, or bits lost to the
                # subnormals): the row again in float64, numpy.hypot rounded to float32.
                for j in range(W):
                    x64 = np.float64(r_out[j])
                    y64 = np.float64(c_out[j])
                    m_out[j] = np.sqrt(x64 * x64 + y64 * y64)
    if bad.size > 0:
        bad[r0] = found
