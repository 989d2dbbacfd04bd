"""Warp kernels: inverse mapping through a 3x3 projective matrix with nearest or bilinear sampling.

For every output pixel centre ``(x, y)`` (column, row) the source position is
``(u, v, s) = Minv @ (x, y, 1)``, ``(x_src, y_src) = (u / s, v / s)``; an affine matrix is the
case ``Minv[2] = (0, 0, 1)``. Samples that fall outside the image are taken through a border mode
(the codes and :func:`border_index` of :mod:`kernels.conv`, SciPy ``ndimage`` names; OpenCV
equivalents in brackets):

* ``MODE_CONSTANT``: ``cval`` (``BORDER_CONSTANT``)
* ``MODE_NEAREST``: the edge pixel repeated, ``a a | a b c d | d d`` (``BORDER_REPLICATE``)
* ``MODE_REFLECT``: ``b a | a b c d | d c`` (``BORDER_REFLECT``)
* ``MODE_MIRROR``: ``c b | a b c d | c b`` (``BORDER_REFLECT_101``)
* ``MODE_WRAP``: ``c d | a b c d | a b`` (``BORDER_WRAP``)

A point whose ``s`` is 0 or whose position is not finite gets ``cval`` in every mode.
Readable twin: :mod:`kernels.reference.warp`.
"""
import math

import numpy as np
from numba import njit, prange

# one border rule for the whole toolkit, shared with the filters (-1 means cval)
from kernels.conv import (MODE_CONSTANT, MODE_MIRROR, MODE_NEAREST, MODE_REFLECT,  # noqa: F401
                          MODE_WRAP, border_index)

COORD_LIMIT = 1e9    # positions are clamped to +-this before the integer conversion


@njit(cache=True)
def _source(Minv, x, y):
    """Source position of output pixel (x, y); (nan, nan) where it is undefined."""
    u = Minv[0, 0] * x + Minv[0, 1] * y + Minv[0, 2]
    v = Minv[1, 0] * x + Minv[1, 1] * y + Minv[1, 2]
    s = Minv[2, 0] * x + Minv[2, 1] * y + Minv[2, 2]
    if s == 0.0:
        return np.nan, np.nan
    xs = u / s
    ys = v / s
    if not (math.isfinite(xs) and math.isfinite(ys)):
        return np.nan, np.nan
    return min(max(xs, -COORD_LIMIT), COORD_LIMIT), min(max(ys, -COORD_LIMIT), COORD_LIMIT)


@njit(cache=True)
def _nearest_row(Minv, y, H, W, mode, rows, cols):
    """Source pixel (rows[x], cols[x]) of every pixel of output row ``y``; -1 means cval."""
    for x in range(rows.shape[0]):
        xs, ys = _source(Minv, x, y)
        if math.isnan(xs):
            rows[x] = -1
            cols[x] = -1
            continue
        r = int(math.floor(ys + 0.5))
        q = int(math.floor(xs + 0.5))
        if not (0 <= r < H and 0 <= q < W):
            r = border_index(r, H, mode)
            q = border_index(q, W, mode)
        rows[x] = r
        cols[x] = q


@njit(parallel=True, cache=True)
def warp_nearest(image, Minv, mode, cval, out):
    """Nearest-neighbour warp: the source position is rounded half up, ``floor(p + 0.5)``.

    image (C, H, W) float32; Minv (3, 3) float64; out (C, h, w) float32. Each output row first
    gets its source pixels (shared by the channels), then every channel gathers them.
    """
    C, H, W = image.shape
    h, w = out.shape[1], out.shape[2]
    for y in prange(h):
        rows = np.empty(w, dtype=np.int64)
        cols = np.empty(w, dtype=np.int64)
        _nearest_row(Minv, y, H, W, mode, rows, cols)
        for c in range(C):
            plane = image[c]
            dst = out[c, y]
            for x in range(w):
                if rows[x] < 0 or cols[x] < 0:
                    dst[x] = cval
                else:
                    dst[x] = plane[rows[x], cols[x]]


@njit(cache=True)
def _bilinear_row(Minv, y, H, W, mode, taps, fracs):
    """The four taps of every pixel of output row ``y``: ``taps[x] = (r0, r1, c0, c1)`` (-1
    means cval) and ``fracs[x] = (fx, fy)``, the weights of the second column and row."""
    for x in range(taps.shape[0]):
        xs, ys = _source(Minv, x, y)
        if math.isnan(xs):
            taps[x, 0] = taps[x, 1] = taps[x, 2] = taps[x, 3] = -1
            fracs[x, 0] = fracs[x, 1] = 0.0
            continue
        x0 = math.floor(xs)
        y0 = math.floor(ys)
        fracs[x, 0] = xs - x0
        fracs[x, 1] = ys - y0
        ix = int(x0)
        iy = int(y0)
        if 0 <= ix and ix + 1 < W and 0 <= iy and iy + 1 < H:
            # all four taps inside: no border logic (most pixels of most warps)
            taps[x, 0], taps[x, 1], taps[x, 2], taps[x, 3] = iy, iy + 1, ix, ix + 1
        else:
            taps[x, 0] = border_index(iy, H, mode)
            taps[x, 1] = border_index(iy + 1, H, mode)
            taps[x, 2] = border_index(ix, W, mode)
            taps[x, 3] = border_index(ix + 1, W, mode)


@njit(parallel=True, cache=True)
def warp_bilinear(image, Minv, mode, cval, out):
    """Bilinear warp: the four pixels around the source position, each fetched through the border
    mode (a tap outside the image in constant mode contributes ``cval``), weighted by the
    fractional distances. image (C, H, W) float32; Minv (3, 3) float64; out (C, h, w) float32.
    Each output row first gets its taps and weights (shared by the channels).
    """
    C, H, W = image.shape
    h, w = out.shape[1], out.shape[2]
    for y in prange(h):
        taps = np.empty((w, 4), dtype=np.int64)
        fracs = np.empty((w, 2), dtype=np.float32)
        _bilinear_row(Minv, y, H, W, mode, taps, fracs)
        for c in range(C):
            plane = image[c]
            dst = out[c, y]
            for x in range(w):
                r0, r1, c0, c1 = taps[x, 0], taps[x, 1], taps[x, 2], taps[x, 3]
                fx, fy = fracs[x, 0], fracs[x, 1]
                if r0 >= 0 and r1 >= 0 and c0 >= 0 and c1 >= 0:
                    p00, p01 = plane[r0, c0], plane[r0, c1]
                    p10, p11 = plane[r1, c0], plane[r1, c1]
                else:
                    p00 = plane[r0, c0] if (r0 >= 0 and c0 >= 0) else cval
                    p01 = plane[r0, c1] if (r0 >= 0 and c1 >= 0) else cval
                    p10 = plane[r1, c0] if (r1 >= 0 and c0 >= 0) else cval
                    p11 = plane[r1, c1] if (r1 >= 0 and c1 >= 0) else cval
                top = p00 + (p01 - p00) * fx
                bottom = p10 + (p11 - p10) * fx
                dst[x] = top + (bottom - top) * fy
