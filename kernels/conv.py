"""2-D correlation kernels: border index mapping, padding, general and separable correlation.

Conventions (the caller in :mod:`cvcore.preprocess.filters` guarantees them):

* images are 2-D float32, C-contiguous; kernels float32 C-contiguous (2-D or 1-D);
* correlation, not convolution: ``out[i, j] = sum_{u, v} k[u, v] * in[i + u - cy, j + v - cx]``
  where ``(cy, cx)`` is the kernel's centre (SciPy's ``origin=0`` puts it at ``n // 2``);
* the border is handled once, by building a padded copy of the image whose extra rows and
  columns come from :func:`border_index`; the correlation loops then run over the padded
  buffer with no branch per pixel, and their innermost loop walks one contiguous row so LLVM
  can vectorise it.

Border modes and their integer codes (SciPy ``ndimage`` names and meanings, see the
``mode`` parameter of ``scipy.ndimage.correlate``)::

    reflect   (d c b a | a b c d | d c b a)   half-sample symmetric      MODE_REFLECT  = 0
    mirror    (d c b | a b c d | c b a)       whole-sample symmetric     MODE_MIRROR   = 1
    nearest   (a a a a | a b c d | d d d d)   edge value repeated        MODE_NEAREST  = 2
    constant  (k k k k | a b c d | k k k k)   fixed value cval           MODE_CONSTANT = 3
    wrap      (a b c d | a b c d | a b c d)   periodic                   MODE_WRAP     = 4
"""
import numpy as np
from numba import njit, prange

MODE_REFLECT = 0
MODE_MIRROR = 1
MODE_NEAREST = 2
MODE_CONSTANT = 3
MODE_WRAP = 4


@njit(cache=True)
def border_index(i, n, mode):
    """Map a possibly out-of-range index ``i`` on an axis of length ``n`` into ``[0, n)``.

    Works for any distance outside the axis (a 15-tap kernel on a 1-pixel image reaches 7
    pixels out), because the symmetric modes are periodic: ``reflect`` with period ``2 n``,
    ``mirror`` with period ``2 n - 2`` (a 1-pixel axis mirrors onto itself), ``wrap`` with
    period ``n``. Returns -1 for ``constant`` outside the axis (the caller uses ``cval``).
    """
    if i >= 0 and i < n:
        return i
    if mode == MODE_CONSTANT:
        return -1
    if mode == MODE_NEAREST:
        return 0 if i < 0 else n - 1
    if mode == MODE_WRAP:
        return i % n                      # Python semantics: non-negative for n > 0
    if mode == MODE_REFLECT:
        period = 2 * n
        m = i % period
        return m if m < n else period - 1 - m
    # MODE_MIRROR
    if n == 1:
        return 0
    period = 2 * n - 2
    m = i % period
    return m if m < n else period - m


@njit(cache=True)
def border_map(n, before, after, mode):
    """Source index for each position of an axis padded by ``before`` and ``after`` cells."""
    out = np.empty(n + before + after, np.int64)
    for p in range(out.size):
        out[p] = border_index(p - before, n, mode)
    return out


@njit(cache=True, parallel=True)
def pad2d(image, top, bottom, left, right, mode, cval):
    """Return ``image`` (H, W) float32 padded to (H + top + bottom, W + left + right).

    The border cells hold ``image[border_index(r), border_index(c)]`` or ``cval`` when either
    index is -1 (constant mode).
    """
    H, W = image.shape
    Hp = H + top + bottom
    Wp = W + left + right
    out = np.empty((Hp, Wp), np.float32)
    cols = border_map(W, left, right, mode)
    fill = np.float32(cval)
    for r in prange(Hp):
        src = border_index(r - top, H, mode)
        if src < 0:
            for c in range(Wp):
                out[r, c] = fill
            continue
        for c in range(left):
            s = cols[c]
            out[r, c] = fill if s < 0 else image[src, s]
        for c in range(W):
            out[r, left + c] = image[src, c]
        for c in range(left + W, Wp):
            s = cols[c]
            out[r, c] = fill if s < 0 else image[src, s]
    return out


@njit(cache=True, parallel=True, fastmath={"contract"})
def correlate2d_padded(padded, kernel, out):
    """General 2-D correlation of a padded image: ``out[i, j] = sum k[u, v] padded[i+u, j+v]``.

    ``padded`` is (H + kh - 1, W + kw - 1), ``kernel`` (kh, kw), ``out`` (H, W), all float32.
    Parallel over output rows; for each row, each tap adds ``k[u, v]`` times a shifted input
    row into the output row (a contiguous, vectorisable loop). Zero taps are skipped.
    """
    H, W = out.shape
    kh, kw = kernel.shape
    for i in prange(H):
        acc = out[i]
        for j in range(W):
            acc[j] = 0.0
        for u in range(kh):
            src = padded[i + u]
            for v in range(kw):
                w = kernel[u, v]
                if w != 0.0:
                    for j in range(W):
                        acc[j] += w * src[j + v]


@njit(cache=True, parallel=True, fastmath={"contract"})
def correlate_axis0(image, ky, rows, cval, out):
    """1-D correlation down the columns, with the border folded into a row map.

    ``out[i, j] = sum_u ky[u] * image[rows[i + u], j]``, where ``rows`` (H + n - 1,) comes
    from :func:`border_map` and a -1 entry stands for a row of ``cval``. No padded copy is
    made: each tap adds a whole (contiguous) source row into the output row.
    ``image`` and ``out`` are (H, W) float32, ``ky`` (n,) float32.
    """
    H, W = out.shape
    for i in prange(H):
        acc = out[i]
        for j in range(W):
            acc[j] = 0.0
        for u in range(ky.size):
            w = ky[u]
            if w == 0.0:
                continue
            r = rows[i + u]
            if r < 0:
                wc = w * np.float32(cval)
                for j in range(W):
                    acc[j] += wc
            else:
                src = image[r]
                for j in range(W):
                    acc[j] += w * src[j]


@njit(cache=True, parallel=True, fastmath={"contract"})
def correlate_axis1(image, kx, cols, cval, out):
    """1-D correlation along the rows: ``out[i, j] = sum_v kx[v] * image[i, cols[j + v]]``.

    ``cols`` (W + n - 1,) comes from :func:`border_map` (-1: ``cval``). Each row is first
    copied into a padded row buffer, then every tap adds a shifted copy of that buffer.
    """
    H, W = out.shape
    n = kx.size
    Wp = W + n - 1
    fill = np.float32(cval)
    for i in prange(H):
        buf = np.empty(Wp, np.float32)
        src = image[i]
        for c in range(Wp):
            s = cols[c]
            buf[c] = fill if s < 0 else src[s]
        acc = out[i]
        for j in range(W):
            acc[j] = 0.0
        for v in range(n):
            w = kx[v]
            if w != 0.0:
                for j in range(W):
                    acc[j] += w * buf[j + v]
