"""Readable twin of :mod:`kernels.histogram`: CLAHE on a uint8 image, tile by tile.

Same stages and the same float32 rounding as OpenCV's ``clahe.cpp`` (see
:func:`cvcore.preprocess.equalize_adapthist`), written without speed in mind.
"""
import numpy as np


def clip_histogram(hist, limit):
    """Cut bins at ``limit``; give the excess back evenly, the remainder one per bin at a step."""
    hist = hist.copy()
    excess = int(np.sum(np.maximum(hist - limit, 0)))
    hist = np.minimum(hist, limit)
    hist += excess // hist.size
    residual = excess % hist.size
    if residual:
        step = max(hist.size // residual, 1)
        for i in range(0, hist.size, step)[:residual]:
            hist[i] += 1
    return hist


def clahe(padded, image, tiles_y, tiles_x, limit):
    """padded: uint8, whole tiles; image: the unpadded uint8 image; limit: int clip (0 = none)."""
    tile_h, tile_w = padded.shape[0] // tiles_y, padded.shape[1] // tiles_x
    scale = np.float32(255) / np.float32(tile_h * tile_w)
    luts = np.zeros((tiles_y, tiles_x, 256), dtype=np.uint8)
    for ty in range(tiles_y):
        for tx in range(tiles_x):
            tile = padded[ty * tile_h:(ty + 1) * tile_h, tx * tile_w:(tx + 1) * tile_w]
            hist = np.bincount(tile.ravel(), minlength=256)
            if limit > 0:
                hist = clip_histogram(hist, limit)
            cdf = np.cumsum(hist).astype(np.float32)
            luts[ty, tx] = np.minimum(np.rint(cdf * scale), 255).astype(np.uint8)

    # OpenCV multiplies by the reciprocal of the tile size (float32), which rounds differently
    # from a division at a few pixels; kept for bit-exact agreement
    out = np.empty_like(image)
    for y in range(image.shape[0]):
        # position in tile units relative to the tile centres
        tyf = np.float32(y) * (np.float32(1) / np.float32(tile_h)) - np.float32(0.5)
        ty1 = int(np.floor(tyf))
        ya = tyf - np.float32(ty1)
        ty2, ty1 = min(ty1 + 1, tiles_y - 1), max(ty1, 0)
        for x in range(image.shape[1]):
            txf = np.float32(x) * (np.float32(1) / np.float32(tile_w)) - np.float32(0.5)
            tx1 = int(np.floor(txf))
            xa = txf - np.float32(tx1)
            tx2, tx1 = min(tx1 + 1, tiles_x - 1), max(tx1, 0)
            v = image[y, x]
            f = [np.float32(luts[a, b, v])
                 for a, b in ((ty1, tx1), (ty1, tx2), (ty2, tx1), (ty2, tx2))]
            one = np.float32(1)
            res = (f[0] * (one - xa) + f[1] * xa) * (one - ya) + (f[2] * (one - xa) + f[3] * xa) * ya
            out[y, x] = np.uint8(min(max(np.rint(res), 0), 255))
    return out
