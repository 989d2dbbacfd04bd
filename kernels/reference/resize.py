"""Readable twin of :mod:`kernels.resize`: each axis as a dense (n_out, n_in) weight matrix.

``resize(image) = Wy @ image @ Wx.T`` for every channel, where row ``d`` of ``Wx`` holds the
weights output column ``d`` gives to the input columns. The matrices are built straight from the
definitions (OpenCV ``cv::resize``, pixel centres at integer coordinates, ``scale = n_in / n_out``).
"""
import math

import numpy as np


def nearest_matrix(n_in, n_out):
    """out[d] = in[min(floor(d * scale), n_in - 1)]."""
    scale = 1.0 / (n_out / n_in)
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        m[d, min(math.floor(d * scale), n_in - 1)] = 1.0
    return m


def linear_matrix(n_in, n_out):
    """Linear interpolation at the source position (d + 0.5) * scale - 0.5, clamped to the image."""
    scale = 1.0 / (n_out / n_in)
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        pos = min(max((d + 0.5) * scale - 0.5, 0.0), n_in - 1)
        left = math.floor(pos)
        frac = pos - left
        m[d, left] += 1.0 - frac
        if frac > 0:
            m[d, left + 1] += frac
    return m


def area_matrix(n_in, n_out):
    """Shrinking: output cell d covers [d * scale, (d + 1) * scale); weight = overlap / cell."""
    scale = 1.0 / (n_out / n_in)
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        start, stop = d * scale, min((d + 1) * scale, n_in)
        for s in range(n_in):
            overlap = min(stop, s + 1) - max(start, s)
            if overlap > 1e-3:               # OpenCV drops slivers below 1e-3 of a pixel
                m[d, s] = overlap
        m[d] /= stop - start
    return m


def area_linear_matrix(n_in, n_out):
    """OpenCV's INTER_AREA rule when an axis grows: linear blend only across cell boundaries."""
    scale = 1.0 / (n_out / n_in)
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        s = math.floor(d * scale)
        frac = (d + 1) - (s + 1) / scale
        frac = 0.0 if frac <= 0 else frac - math.floor(frac)
        if s >= n_in - 1:
            s, frac = n_in - 1, 0.0
        m[d, s] += 1.0 - frac
        if frac > 0:
            m[d, s + 1] += frac
    return m


def resize(image, rows, cols, interpolation):
    """Resize a float (H, W) or (H, W, C) image; returns float64."""
    H, W = image.shape[:2]
    if interpolation == "nearest":
        wy, wx = nearest_matrix(H, rows), nearest_matrix(W, cols)
    elif interpolation == "bilinear":
        wy, wx = linear_matrix(H, rows), linear_matrix(W, cols)
    elif rows > H or cols > W:
        wy, wx = area_linear_matrix(H, rows), area_linear_matrix(W, cols)
    else:
        wy, wx = area_matrix(H, rows), area_matrix(W, cols)
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 2:
        return wy @ x @ wx.T
    return np.einsum("yh,hwc,xw->yxc", wy, x, wx)
