"""Readable NumPy twin of :mod:`kernels.conv` and :mod:`kernels.filters`: correlation and the
median filter as "extend the image, then sum (or sort) shifted copies".

This is the version to read first. The fast kernels compute the same sums, but never build the
extended image for correlation (they map border indices on the fly) and parallelise over rows.

Correlation with SciPy ``ndimage``'s conventions (``origin=0``)::

    out[i, j] = sum_{u, v} k[u, v] * ext[i + u, j + v]
    ext[p, q] = image[rows[p], cols[q]]       (cval where rows[p] or cols[q] is -1)

where ``rows[p]`` is the source row of row ``p - cy`` of the extended image (``cy = kh // 2``),
given by the border mode's index map (:func:`border_index`).
"""
from __future__ import annotations

import numpy as np

MODES = ("reflect", "mirror", "nearest", "constant", "wrap")


def border_index(i: int, n: int, mode: str) -> int:
    """Source index of position ``i`` on an axis of length ``n``; -1 means ``cval``.

    The symmetric modes repeat with a period (``reflect``: 2n, ``mirror``: 2n - 2), so taking
    ``i`` modulo the period and folding the second half back works however far ``i`` is out.
    """
    if 0 <= i < n:
        return i
    if mode == "constant":
        return -1
    if mode == "nearest":
        return 0 if i < 0 else n - 1
    if mode == "wrap":
        return i % n
    if mode == "reflect":           # d c b a | a b c d | d c b a
        m = i % (2 * n)
        return m if m < n else 2 * n - 1 - m
    if mode == "mirror":            # d c b | a b c d | c b a
        if n == 1:
            return 0
        m = i % (2 * n - 2)
        return m if m < n else 2 * n - 2 - m
    raise ValueError(f"unknown mode {mode!r}")


def extend(image: np.ndarray, top: int, bottom: int, left: int, right: int, mode: str,
           cval: float = 0.0) -> np.ndarray:
    """The image extended by the given number of rows / columns on each side (float64)."""
    H, W = image.shape
    rows = [border_index(p - top, H, mode) for p in range(H + top + bottom)]
    cols = [border_index(q - left, W, mode) for q in range(W + left + right)]
    out = np.full((len(rows), len(cols)), cval, dtype=np.float64)
    for p, r in enumerate(rows):
        for q, c in enumerate(cols):
            if r >= 0 and c >= 0:
                out[p, q] = image[r, c]
    return out


def correlate_centred(image: np.ndarray, kernel: np.ndarray, cy: int, cx: int, mode: str,
                     cval: float) -> np.ndarray:
    """``out[i, j] = sum_{u, v} kernel[u, v] * ext[i + u, j + v]`` with the kernel centre at
    ``(cy, cx)``: the image is extended by ``cy`` rows above, ``kh - 1 - cy`` below, and so on."""
    kh, kw = kernel.shape
    ext = extend(image, cy, kh - 1 - cy, cx, kw - 1 - cx, mode, cval)
    H, W = image.shape
    out = np.zeros((H, W))
    for u in range(kh):
        for v in range(kw):
            out += kernel[u, v] * ext[u:u + H, v:v + W]
    return out


def correlate_by_blocks(image: np.ndarray, kernel: np.ndarray, mode: str = "reflect",
                        cval: float = 0.0, block_rows: int = 4) -> np.ndarray:
    """:func:`correlate` in the order of the fast general kernel (``kernels.conv.correlate2d``).

    The output goes in blocks of ``block_rows`` rows. Within a block, source row ``s`` of the
    extended image (``s = 0 .. block_rows + kh - 2`` from the block's top) shifted by ``v``
    columns is read ONCE and added to every output row ``k`` of the block that uses it, with
    the weight ``kernel[s - k, v]`` (when ``0 <= s - k < kh``). The fast kernel does this for
    a few vectors of columns at a time with the block's sums in registers: a shifted source
    vector, once loaded, feeds up to ``block_rows`` sums, where the output-row-at-a-time
    order of :func:`correlate_centred` loads it again for each output row.
    """
    kh, kw = kernel.shape
    ext = extend(image, kh // 2, kh - 1 - kh // 2, kw // 2, kw - 1 - kw // 2, mode, cval)
    H, W = image.shape
    out = np.zeros((H, W))
    for i in range(0, H, block_rows):
        rows = min(block_rows, H - i)
        for v in range(kw):
            for s in range(rows + kh - 1):
                shifted = ext[i + s, v:v + W]          # loaded once ...
                for k in range(rows):                  # ... for every output row using it
                    if 0 <= s - k < kh:
                        out[i + k] += kernel[s - k, v] * shifted
    return out


def correlate(image: np.ndarray, kernel: np.ndarray, mode: str = "reflect",
              cval: float = 0.0) -> np.ndarray:
    """2-D correlation of a grey image, ``scipy.ndimage.correlate`` (float64 result)."""
    kh, kw = kernel.shape
    return correlate_centred(image, kernel, kh // 2, kw // 2, mode, cval)


def convolve(image: np.ndarray, kernel: np.ndarray, mode: str = "reflect",
             cval: float = 0.0) -> np.ndarray:
    """2-D convolution, ``scipy.ndimage.convolve``: the sum runs the kernel backwards,
    ``out[i, j] = sum k[u, v] * image[i - u + kh // 2, j - v + kw // 2]``.

    Flipping the kernel and moving its centre to ``(kh - 1) // 2`` (one cell before
    ``kh // 2`` for even sizes, SciPy's shift) turns this into a correlation.
    """
    kh, kw = kernel.shape
    return correlate_centred(image, kernel[::-1, ::-1], (kh - 1) // 2, (kw - 1) // 2, mode, cval)


def median(image: np.ndarray, size, mode: str = "reflect", cval: float = 0.0) -> np.ndarray:
    """Median filter, ``scipy.ndimage.median_filter``: the sorted window element
    ``kh * kw // 2`` (for an even window, the upper middle value)."""
    kh, kw = size
    cy, cx = kh // 2, kw // 2
    ext = extend(image, cy, kh - 1 - cy, cx, kw - 1 - cx, mode, cval)
    H, W = image.shape
    windows = np.stack([ext[u:u + H, v:v + W] for u in range(kh) for v in range(kw)])
    return np.sort(windows, axis=0)[kh * kw // 2]
