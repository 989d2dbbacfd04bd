"""Resize kernels: per-axis sampling tables and the passes that apply them.

Every mode here is separable: an output column ``dx`` is a weighted sum of a few input columns,
``out[:, dx] = sum_t w[dx, t] * in[:, idx[dx, t]]``, and rows likewise. A table is built once per
axis (``*_table``), then :func:`resize_rows` applies the column table to every row and the
row table to every column. The tables reproduce OpenCV's ``cv::resize`` (``imgproc/src/resize.cpp``)
with ``scale = 1 / (n_out / n_in)`` and pixel centres at integer coordinates:

* nearest: ``idx = min(floor(dx * scale), n_in - 1)`` (``INTER_NEAREST``, not centre-aligned);
* linear: source coordinate ``(dx + 0.5) * scale - 0.5`` (centre-aligned), two taps, clamped at
  the borders (``INTER_LINEAR``);
* area, shrinking: output pixel ``dx`` covers ``[dx * scale, (dx + 1) * scale)`` of the input; each
  input pixel is weighted by the length of its overlap divided by the cell width (``INTER_AREA``);
* area, enlarging: OpenCV's two-tap variant ``fx = (dx + 1) - (floor(dx * scale) + 1) / scale``,
  wrapped to ``[0, 1)`` (``INTER_AREA`` when any axis grows).

Readable twin: :mod:`kernels.reference.resize`.
"""
import math

import numpy as np
from numba import njit, prange

AREA_MIN_FRACTION = 1e-3   # resize.cpp computeResizeAreaTab: partial overlaps below this dropped


@njit(cache=True, nogil=True)
def nearest_table(n_in, n_out, scale, idx, w):
    """Fill ``idx`` (int32, (n_out, 1)) and ``w`` (float32, (n_out, 1)) for nearest sampling."""
    for d in range(n_out):
        s = int(math.floor(d * scale))
        idx[d, 0] = min(s, n_in - 1)
        w[d, 0] = 1.0


@njit(cache=True, nogil=True)
def _two_taps(d, s, f, n_in, idx, w):
    """Row ``d`` of a two-tap table: ``(1 - f)`` at ``s`` and ``f`` at ``s + 1``; a left tap
    outside the image is moved onto the edge pixel with ``f = 0`` (OpenCV's clamping)."""
    if s < 0:
        s = 0
        f = np.float32(0.0)
    if s >= n_in - 1:
        s = n_in - 1
        f = np.float32(0.0)
    idx[d, 0] = s
    idx[d, 1] = min(s + 1, n_in - 1)
    w[d, 0] = np.float32(1.0) - f
    w[d, 1] = f


@njit(cache=True, nogil=True)
def linear_table(n_in, n_out, scale, idx, w):
    """Two-tap centre-aligned linear table, (n_out, 2); float32 fractions as OpenCV computes."""
    for d in range(n_out):
        f = np.float32((d + 0.5) * scale - 0.5)
        s = int(math.floor(f))
        _two_taps(d, s, f - np.float32(s), n_in, idx, w)


@njit(cache=True, nogil=True)
def area_linear_table(n_in, n_out, scale, idx, w):
    """OpenCV's ``INTER_AREA`` table for an enlarging resize, (n_out, 2)."""
    inv_scale = 1.0 / scale
    for d in range(n_out):
        s = int(math.floor(d * scale))
        f = np.float32((d + 1) - (s + 1) * inv_scale)
        if f <= 0:
            f = np.float32(0.0)
        else:
            f = f - np.float32(math.floor(f))
        _two_taps(d, s, f, n_in, idx, w)


@njit(cache=True, nogil=True)
def area_table(n_in, n_out, scale, idx, w):
    """Box-overlap table for shrinking (scale >= 1), (n_out, taps) with taps >= ceil(scale) + 1.

    Unused taps get weight 0 and index 0.
    """
    taps = idx.shape[1]
    for d in range(n_out):
        for t in range(taps):
            idx[d, t] = 0
            w[d, t] = 0.0
        start = d * scale
        stop = start + scale
        cell = min(scale, n_in - start)
        s1 = int(math.ceil(start))
        s2 = min(int(math.floor(stop)), n_in - 1)
        s1 = min(s1, s2)
        t = 0
        if s1 - start > AREA_MIN_FRACTION:
            idx[d, t] = s1 - 1
            w[d, t] = np.float32((s1 - start) / cell)
            t += 1
        for s in range(s1, s2):
            idx[d, t] = s
            w[d, t] = np.float32(1.0 / cell)
            t += 1
        if stop - s2 > AREA_MIN_FRACTION:
            idx[d, t] = s2
            w[d, t] = np.float32(min(min(stop - s2, 1.0), cell) / cell)


ROW_BLOCK = 16        # output rows per parallel task at least: a task passes every input row its
                     # output rows read, so tiny blocks would pass the rows they share twice
ROW_BATCH = 4         # input rows passed together: one load of the column table serves four rows


NEAREST = 0           # the block functions of :func:`resize_rows` (its ``kind``)
COLUMNS_FIRST = 1
ROWS_FIRST = 2
BLOCK_MEAN = 3


@njit(parallel=True, cache=True, nogil=True)
def resize_rows(image, row_idx, row_w, col_idx, col_w, kind, out):
    """Resize channel planes by separable tables, in parallel blocks of output rows.

    image (C, H, W) float32; row_idx / row_w (h, taps) the row table, int32 / float32; col_idx /
    col_w (taps, w) the column table, tap-major; out (C, h, w) float32. Each parallel task takes a
    block of output rows of one channel and runs the block function ``kind``:

    * NEAREST (:func:`_block_nearest`): one-tap tables, a plain gather;
    * COLUMNS_FIRST (:func:`_block_columns_first`, OpenCV's order) and ROWS_FIRST
      (:func:`_block_rows_first`): the same weighted sums, the passes in either order. The column
      pass gathers (it does not vectorise), the row pass adds whole rows (it does): columns first
      gathers ``(input rows read) * w`` times, fewer when the row count grows, rows first
      ``h * w`` times, fewer when it shrinks. They differ only by float rounding;
    * BLOCK_MEAN (:func:`_block_mean`): integer factors ``H // h`` and ``W // w``, no tables.

    One parallel driver for the four keeps the compile time of a single parallel kernel (each
    costs seconds on a cold cache; the block functions are plain, cheaper to compile).
    """
    C = image.shape[0]
    h = out.shape[1]
    block, n_blocks = _row_blocks(h)
    for task in prange(C * n_blocks):
        c, y0, y1 = _block_of_task(task, block, n_blocks, h)
        if kind == NEAREST:
            _block_nearest(image[c], row_idx, col_idx, y0, y1, out[c])
        elif kind == ROWS_FIRST:
            _block_rows_first(image[c], row_idx, row_w, col_idx, col_w, y0, y1, out[c])
        elif kind == COLUMNS_FIRST:
            _block_columns_first(image[c], row_idx, row_w, col_idx, col_w, y0, y1, out[c])
        else:
            _block_mean(image[c], y0, y1, out[c])


@njit(cache=True, nogil=True)
def _block_nearest(plane, row_idx, col_idx, y0, y1, out):
    """``out[y, x] = plane[row_idx[y, 0], col_idx[0, x]]`` for rows ``y0:y1`` (valid indices)."""
    cols = col_idx[0]
    for y in range(y0, y1):
        src = plane[row_idx[y, 0]]
        dst = out[y]
        for x in range(dst.shape[0]):
            dst[x] = src[np.uint32(cols[x])]    # unsigned: no negative-index wrap to test


@njit(cache=True, nogil=True)
def _horizontal(src, col_idx, col_w, dst):
    """One input row through the column table: ``dst[x] = sum_t col_w[t, x] * src[col_idx[t, x]]``.

    The tables are stored tap-major, (taps, w), so each tap is one contiguous pass over ``x``;
    indices are cast to unsigned so that Numba does not test them for negative wrap-around.
    """
    taps, w = col_idx.shape
    i0, w0 = col_idx[0], col_w[0]
    if taps == 2:               # linear tables: one fused pass
        i1, w1 = col_idx[1], col_w[1]
        for x in range(w):
            dst[x] = w0[x] * src[np.uint32(i0[x])] + w1[x] * src[np.uint32(i1[x])]
        return
    for x in range(w):
        dst[x] = w0[x] * src[np.uint32(i0[x])]
    for t in range(1, taps):
        it, wt = col_idx[t], col_w[t]
        for x in range(w):
            dst[x] += wt[x] * src[np.uint32(it[x])]


@njit(cache=True, nogil=True)
def _horizontal4(s0, s1, s2, s3, col_idx, col_w, d0, d1, d2, d3):
    """:func:`_horizontal` for four rows at once (same arithmetic, per row): the column indices
    and weights are loaded once for the four gathers, which halves the loads per output."""
    taps, w = col_idx.shape
    if taps == 2:               # linear tables: one fused pass, same sums as below
        i0, i1, w0, w1 = col_idx[0], col_idx[1], col_w[0], col_w[1]
        for x in range(w):
            j, k = np.uint32(i0[x]), np.uint32(i1[x])
            a, b = w0[x], w1[x]
            d0[x] = a * s0[j] + b * s0[k]
            d1[x] = a * s1[j] + b * s1[k]
            d2[x] = a * s2[j] + b * s2[k]
            d3[x] = a * s3[j] + b * s3[k]
        return
    for t in range(taps):
        it, wt = col_idx[t], col_w[t]
        for x in range(w):
            i = np.uint32(it[x])
            a = wt[x]
            if t == 0:
                d0[x] = a * s0[i]
                d1[x] = a * s1[i]
                d2[x] = a * s2[i]
                d3[x] = a * s3[i]
            else:
                d0[x] += a * s0[i]
                d1[x] += a * s1[i]
                d2[x] += a * s2[i]
                d3[x] += a * s3[i]


@njit(cache=True, nogil=True)
def _row_blocks(h):
    """Split ``h`` output rows into blocks for the parallel tasks: (rows per block, blocks)."""
    block = max(ROW_BLOCK, (h + 7) // 8)
    return block, (h + block - 1) // block


@njit(cache=True, nogil=True)
def _block_of_task(task, block, n_blocks, h):
    """Channel and output rows ``y0:y1`` of parallel task ``task`` (tasks run channel-major)."""
    y0 = (task % n_blocks) * block
    return task // n_blocks, y0, min(y0 + block, h)


@njit(cache=True, nogil=True)
def _block_columns_first(plane, row_idx, row_w, col_idx, col_w, y0, y1, out):
    """Output rows ``y0:y1`` of one plane (H, W) -> ``out`` (h, w): pass the input rows they read
    (non-zero weight; each once, four at a time) through the column table into a block buffer,
    then make each output row as the weighted sum of its buffer rows."""
    H = plane.shape[0]
    w = out.shape[1]
    taps = row_idx.shape[1]
    # the input rows this block reads: rows lo..hi, flagged where used
    lo, hi = H, -1
    for y in range(y0, y1):
        for t in range(taps):
            if row_w[y, t] != 0.0:
                lo = min(lo, row_idx[y, t])
                hi = max(hi, row_idx[y, t])
    used = np.zeros(hi - lo + 1, dtype=np.bool_)
    for y in range(y0, y1):
        for t in range(taps):
            if row_w[y, t] != 0.0:
                used[row_idx[y, t] - lo] = True
    rows = np.empty(hi - lo + 1, dtype=np.int64)
    n = 0
    for i in range(hi - lo + 1):
        if used[i]:
            rows[n] = lo + i
            n += 1
    buf = np.empty((hi - lo + 1, w), dtype=np.float32)
    i = 0
    while i + ROW_BATCH <= n:
        r0, r1, r2, r3 = rows[i], rows[i + 1], rows[i + 2], rows[i + 3]
        _horizontal4(plane[r0], plane[r1], plane[r2], plane[r3], col_idx, col_w,
                     buf[r0 - lo], buf[r1 - lo], buf[r2 - lo], buf[r3 - lo])
        i += ROW_BATCH
    while i < n:
        _horizontal(plane[rows[i]], col_idx, col_w, buf[rows[i] - lo])
        i += 1
    for y in range(y0, y1):
        _vertical(buf, row_idx, row_w, y, lo, out[y])


@njit(cache=True, nogil=True)
def _block_rows_first(plane, row_idx, row_w, col_idx, col_w, y0, y1, out):
    """Output rows ``y0:y1`` of one plane (H, W) -> ``out`` (h, w): blend each output row from
    its input rows (full width W, vectorised), then pass it through the column table (four
    rows at a time)."""
    W = plane.shape[1]
    tmp = np.empty((ROW_BATCH, W), dtype=np.float32)
    y = y0
    while y + ROW_BATCH <= y1:
        for i in range(ROW_BATCH):
            _vertical(plane, row_idx, row_w, y + i, 0, tmp[i])
        _horizontal4(tmp[0], tmp[1], tmp[2], tmp[3], col_idx, col_w,
                     out[y], out[y + 1], out[y + 2], out[y + 3])
        y += ROW_BATCH
    while y < y1:
        _vertical(plane, row_idx, row_w, y, 0, tmp[0])
        _horizontal(tmp[0], col_idx, col_w, out[y])
        y += 1


@njit(cache=True, nogil=True)
def _vertical(plane, row_idx, row_w, y, lo, dst):
    """``dst[:] = sum_t row_w[y, t] * plane[row_idx[y, t] - lo, :]`` over the taps of non-zero
    weight (``plane`` holds rows from ``lo`` on; whole rows: contiguous loops LLVM vectorises)."""
    if row_idx.shape[1] == 2 and row_w[y, 0] != 0.0 and row_w[y, 1] != 0.0:
        a, b = row_w[y, 0], row_w[y, 1]     # linear tables: one fused pass, the same sums
        top, bottom = plane[row_idx[y, 0] - lo], plane[row_idx[y, 1] - lo]
        for x in range(dst.shape[0]):
            dst[x] = a * top[x] + b * bottom[x]
        return
    first = True
    for t in range(row_idx.shape[1]):
        weight = row_w[y, t]
        if weight == 0.0:               # unused slot of an area table (or a zero linear tap)
            continue
        src = plane[row_idx[y, t] - lo]
        if first:
            for x in range(dst.shape[0]):
                dst[x] = weight * src[x]
            first = False
        else:
            for x in range(dst.shape[0]):
                dst[x] += weight * src[x]


@njit(cache=True, nogil=True)
def _block_mean(plane, y0, y1, out):
    """Block mean for the integer factors ``ky = H // h``, ``kx = W // w``: ``out[y, x]`` is the
    mean of ``plane[ky*y : ky*y + ky, kx*x : kx*x + kx]`` (OpenCV's ``resizeAreaFast``), rows
    ``y0:y1``. Each output row sums its ``ky`` input rows into a row buffer (contiguous,
    vectorised), then adds each run of ``kx`` neighbours.
    """
    H, W = plane.shape
    h, w = out.shape
    ky, kx = H // h, W // w
    scale = np.float32(1.0 / (ky * kx))
    rowsum = np.empty(W, dtype=np.float32)
    for y in range(y0, y1):
        top = plane[y * ky]
        for x in range(W):
            rowsum[x] = top[x]
        for i in range(1, ky):
            src = plane[y * ky + i]
            for x in range(W):
                rowsum[x] += src[x]
        dst = out[y]
        if kx == 2:             # the common halving: a fixed stride LLVM vectorises
            for x in range(w):
                dst[x] = (rowsum[2 * x] + rowsum[2 * x + 1]) * scale
        else:
            for x in range(w):
                acc = np.float32(0.0)
                for j in range(kx):
                    acc += rowsum[x * kx + j]
                dst[x] = acc * scale
