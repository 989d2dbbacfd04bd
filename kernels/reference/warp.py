"""Readable twin of :mod:`kernels.warp`: one output pixel at a time, straight from the definition.

For output pixel (x, y): source ``(u, v, s) = Minv @ (x, y, 1)``, position ``(u / s, v / s)``;
sample the input there (nearest: round half up; bilinear: the four neighbours), reading pixels
outside the image through the border mode (SciPy ndimage names).

The fast affine kernels evaluate the same position with the row's constant first,
``u = Minv[0, 0] * x + (Minv[0, 1] * y + Minv[0, 2])``, which differs from the product here only
in the last bits (tests: agreement to 1e-5, and to 1e-6 on exact maps).
"""
import math

import numpy as np


def border_index(i, n, mode):
    """Index inside 0..n-1 for index i under ``mode``, or None for the constant fill."""
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "nearest":
        return min(max(i, 0), n - 1)
    if mode == "wrap":
        return i % n
    if mode == "reflect":                  # b a | a b c d | d c
        i = i % (2 * n)
        return i if i < n else 2 * n - 1 - i
    if n == 1:                             # mirror: c b | a b c d | c b
        return 0
    i = i % (2 * n - 2)
    return i if i < n else 2 * n - 2 - i


def warp(image, Minv, rows, cols, interpolation, mode, cval):
    """Warp a float (H, W, C) image by the inverse map ``Minv`` (3x3); returns float64."""
    H, W, C = image.shape
    out = np.empty((rows, cols, C))

    def pixel(r, c):
        r, c = border_index(r, H, mode), border_index(c, W, mode)
        if r is None or c is None:
            return np.full(C, cval)
        return image[r, c].astype(np.float64)

    for y in range(rows):
        for x in range(cols):
            u, v, s = Minv @ np.array([x, y, 1.0])
            if s == 0 or not (math.isfinite(u / s) and math.isfinite(v / s)):
                out[y, x] = cval
                continue
            xs, ys = u / s, v / s
            if interpolation == "nearest":
                out[y, x] = pixel(math.floor(ys + 0.5), math.floor(xs + 0.5))
            else:
                x0, y0 = math.floor(xs), math.floor(ys)
                fx, fy = xs - x0, ys - y0
                out[y, x] = ((1 - fy) * ((1 - fx) * pixel(y0, x0) + fx * pixel(y0, x0 + 1))
                             + fy * ((1 - fx) * pixel(y0 + 1, x0) + fx * pixel(y0 + 1, x0 + 1)))
    return out
