"""Resize kernels: per-axis sampling tables and the passes that apply them.

Every mode here is separable: an output column ``dx`` is a weighted sum of a few input columns,
``out[:, dx] = sum_t w[dx, t] * in[:, idx[dx, t]]``, and rows likewise. A table is built once per
axis (``*_table``), then :func:`resize_separable` applies the column table to every row and the
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
    """Fill ``idx`` (int64, (n_out, 1)) and ``w`` (float32, (n_out, 1)) for nearest sampling."""
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


@njit(parallel=True, cache=True, nogil=True)
def resize_nearest(image, rows, cols, out):
    """``out[c, y, x] = image[c, rows[y], cols[x]]``: image (C, H, W), out (C, h, w), float32.

    Channel planes (not interleaved channels) keep the inner loop a plain gather along a row.
    """
    C, h, w = out.shape
    for p in prange(C * h):
        c = p // h
        y = p % h
        src = image[c, rows[y]]
        dst = out[c, y]
        for x in range(w):
            dst[x] = src[cols[x]]


@njit(parallel=True, cache=True, nogil=True)
def resize_separable(image, row_idx, row_w, col_idx, col_w, rows_needed, tmp, out):
    """Apply a column table, then a row table (float32 throughout), plane by plane.

    image (C, H, W); tmp (C, H, w) receives the horizontal pass for the rows flagged in
    ``rows_needed`` (bool, H: the rows the row table uses with a non-zero weight); out (C, h, w).
    The vertical pass adds whole weighted rows of ``tmp``, a contiguous loop LLVM vectorises.
    """
    C, H, W = image.shape
    h, w = out.shape[1], out.shape[2]
    col_taps = col_idx.shape[1]
    row_taps = row_idx.shape[1]
    for p in prange(C * H):
        c = p // H
        y = p % H
        if not rows_needed[y]:
            continue
        src = image[c, y]
        dst = tmp[c, y]
        for x in range(w):
            acc = np.float32(0.0)
            for t in range(col_taps):
                acc += col_w[x, t] * src[col_idx[x, t]]
            dst[x] = acc
    for p in prange(C * h):
        c = p // h
        y = p % h
        dst = out[c, y]
        dst[:] = 0.0
        for t in range(row_taps):
            weight = row_w[y, t]
            if weight == 0.0:           # unused slot of an area table (or a zero linear tap)
                continue
            src = tmp[c, row_idx[y, t]]
            for x in range(w):
                dst[x] += weight * src[x]
