"""Readable twin of :mod:`kernels.integral`: the summed-area table from its definition.

``ii[r, c]`` is the sum of every pixel above and to the left of the corner ``(r, c)``:
``image[:r, :c]``. Built the slow, obvious way: first the running sum along each row, then the
running sum of those down each column (the same order of additions as the fast kernel, so the two
agree bit for bit).
"""
import numpy as np


def integral_image(image):
    """(H, W) array -> (H + 1, W + 1) float64 table with a zero first row and column."""
    image = np.asarray(image, dtype=np.float64)
    H, W = image.shape
    row_prefix = np.zeros((H, W + 1))
    for r in range(H):
        for c in range(W):
            row_prefix[r, c + 1] = row_prefix[r, c] + image[r, c]
    ii = np.zeros((H + 1, W + 1))
    for r in range(H):
        for c in range(W + 1):
            ii[r + 1, c] = ii[r, c] + row_prefix[r, c]
    return ii


def box_sum(image, r0, c0, r1, c1):
    """Sum of ``image[r0:r1, c0:c1]`` pixel by pixel (no table)."""
    total = 0.0
    for r in range(r0, r1):
        for c in range(c0, c1):
            total += float(image[r, c])
    return total


def box_sum_clamped(image, r0, c0, r1, c1):
    """Sum over the box ``[r0, r1) x [c0, c1)`` counting the pixels outside the image as zero."""
    H, W = image.shape
    total = 0.0
    for r in range(r0, r1):
        for c in range(c0, c1):
            if 0 <= r < H and 0 <= c < W:
                total += float(image[r, c])
    return total
