"""Histogram kernels: equal-width binning (histogram equalisation) and CLAHE.

The readable twins are in :mod:`kernels.reference.histogram`.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True)
def histogram_equal_bins(values, edges, counts):
    """Count ``values`` (float64, 1-D) into ``len(edges) - 1`` equal-width bins.

    ``edges`` (float64) are ``np.linspace(first, last, nbins + 1)`` with every value inside
    ``[first, last]``. The last bin is closed. The bin of a value is found as ``np.histogram`` finds
    it: from ``(v - first) / (last - first) * nbins``, then corrected by one bin where floating-point
    rounding put it on the wrong side of an edge. ``counts`` (int64, nbins) is added to.
    """
    nbins = edges.shape[0] - 1
    first = edges[0]
    width = edges[nbins] - first
    for i in range(values.shape[0]):
        v = values[i]
        k = int((v - first) / width * nbins)
        if k >= nbins:
            k = nbins - 1
        if k < 0:
            k = 0
        if v < edges[k] and k > 0:
            k -= 1
        elif k != nbins - 1 and v >= edges[k + 1]:
            k += 1
        counts[k] += 1


@njit(cache=True)
def _clip_and_redistribute(hist, clip_limit):
    """OpenCV's CLAHE clipping: cut every bin at ``clip_limit``, then hand the excess back,
    ``excess // nbins`` to every bin and the remainder one by one at a regular step."""
    nbins = hist.shape[0]
    clipped = 0
    for i in range(nbins):
        if hist[i] > clip_limit:
            clipped += hist[i] - clip_limit
            hist[i] = clip_limit
    batch = clipped // nbins
    residual = clipped - batch * nbins
    for i in range(nbins):
        hist[i] += batch
    if residual != 0:
        step = max(nbins // residual, 1)
        i = 0
        while i < nbins and residual > 0:
            hist[i] += 1
            i += step
            residual -= 1


@njit(parallel=True, cache=True)
def clahe_luts(padded, tile_h, tile_w, clip_limit, lut_scale, luts):
    """Per-tile look-up tables of CLAHE on a ``uint8`` image.

    ``padded`` (uint8, (tiles_y * tile_h, tiles_x * tile_w)) is the image padded to whole tiles;
    ``luts`` (uint8, (tiles_y, tiles_x, 256)) receives ``round(cdf(v) * lut_scale)`` of each
    tile's clipped histogram. ``clip_limit`` (int) <= 0 disables clipping; ``lut_scale`` is
    float32 ``255 / (tile_h * tile_w)``.
    """
    tiles_y, tiles_x = luts.shape[0], luts.shape[1]
    for k in prange(tiles_y * tiles_x):
        ty = k // tiles_x
        tx = k % tiles_x
        hist = np.zeros(256, dtype=np.int64)
        for y in range(ty * tile_h, (ty + 1) * tile_h):
            for x in range(tx * tile_w, (tx + 1) * tile_w):
                hist[padded[y, x]] += 1
        if clip_limit > 0:
            _clip_and_redistribute(hist, clip_limit)
        total = 0
        for v in range(256):
            total += hist[v]
            level = np.rint(np.float32(total) * lut_scale)
            luts[ty, tx, v] = np.uint8(min(level, np.float32(255.0)))


@njit(cache=True)
def _tile_neighbours(i, inv_size, n_tiles):
    """The two tiles whose centres surround pixel ``i`` (clamped to the grid) and the weight of
    the second, from the float32 position ``i / tile_size - 0.5`` in tile units."""
    pos = np.float32(i) * inv_size - np.float32(0.5)
    t1 = int(np.floor(pos))
    frac = pos - np.float32(t1)
    return max(t1, 0), min(t1 + 1, n_tiles - 1), frac


@njit(parallel=True, cache=True)
def clahe_interpolate(image, luts, tile_h, tile_w, out):
    """Map every pixel through the four nearest tiles' tables, bilinearly weighted by the
    distance to the tile centres (float32 arithmetic, as OpenCV does). ``image`` (uint8, (H, W)),
    ``out`` (uint8, (H, W))."""
    H, W = image.shape
    tiles_y, tiles_x = luts.shape[0], luts.shape[1]
    one = np.float32(1.0)
    inv_tw = one / np.float32(tile_w)
    inv_th = one / np.float32(tile_h)
    for y in prange(H):
        ty1, ty2, ya = _tile_neighbours(y, inv_th, tiles_y)
        ya1 = one - ya
        for x in range(W):
            tx1, tx2, xa = _tile_neighbours(x, inv_tw, tiles_x)
            xa1 = one - xa
            v = image[y, x]
            top = np.float32(luts[ty1, tx1, v]) * xa1 + np.float32(luts[ty1, tx2, v]) * xa
            bottom = np.float32(luts[ty2, tx1, v]) * xa1 + np.float32(luts[ty2, tx2, v]) * xa
            res = np.rint(top * ya1 + bottom * ya)
            out[y, x] = np.uint8(min(max(res, np.float32(0.0)), np.float32(255.0)))
