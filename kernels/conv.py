"""2-D correlation kernels: border index mapping, padding, general and separable correlation.

Conventions (the caller in :mod:`cvcore.preprocess.filters` guarantees them):

* images are 2-D float32, C-contiguous; kernels float32 C-contiguous (2-D or 1-D);
* correlation, not convolution: ``out[i, j] = sum_{u, v} k[u, v] * in[i + u - cy, j + v - cx]``
  where ``(cy, cx)`` is the kernel's centre (SciPy's ``origin=0`` puts it at ``n // 2``);
* the border is folded into two index maps (:func:`border_map`: for each row / column of the
  virtually padded image, its source row / column, or -1 for ``cval``), built once per call.
  The correlation loops then add whole shifted source rows into an output row; only the few
  border columns of each row go through the column map, the rest is a contiguous loop that
  LLVM vectorises. No padded copy of the image is made (:func:`pad2d` makes one for the
  median filter, which needs whole windows).

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


@njit(cache=True, inline="always")
def _add_shifted_row(acc, src, w, off, cols, v, cval):
    """``acc[j] += w * row[j + off]`` for every j, where ``row`` is ``src`` extended by the
    border map ``cols`` (``cols[j + v]`` is the source column of ``j + off``; -1: ``cval``).

    The columns whose source lies inside the row run as one contiguous, vectorisable loop;
    only the few border columns go through the map.
    """
    W = acc.size
    lo = max(0, -off)
    hi = min(W, W - off)
    if hi > lo:
        # Views starting at 0 let LLVM prove the indices non-negative and vectorise.
        a = acc[lo:hi]
        s = src[lo + off:hi + off]
        for j in range(hi - lo):
            a[j] += w * s[j]
    for j in range(0, min(lo, W)):
        c = cols[j + v]
        acc[j] += w * (cval if c < 0 else src[c])
    for j in range(max(hi, lo), W):
        c = cols[j + v]
        acc[j] += w * (cval if c < 0 else src[c])


@njit(cache=True, parallel=True, fastmath={"contract"})
def correlate2d(image, kernel, rows, cols, cx, cval, out):
    """General 2-D correlation, border folded into index maps (no padded copy).

    ``out[i, j] = sum_{u, v} kernel[u, v] * ext[rows[i + u], cols[j + v]]`` where ``ext`` is
    ``image`` extended by ``cval`` at index -1, ``rows = border_map(H, cy, kh - 1 - cy)`` and
    ``cols = border_map(W, cx, kw - 1 - cx)``.

    Parallel over output rows; each tap adds ``kernel[u, v]`` times a shifted source row into
    the output row (a contiguous loop LLVM vectorises). Zero taps are skipped.
    ``image``, ``out`` (H, W) float32; ``kernel`` (kh, kw) float32.
    """
    H, W = out.shape
    kh, kw = kernel.shape
    fill = np.float32(cval)
    for i in prange(H):
        acc = out[i]
        for j in range(W):
            acc[j] = 0.0
        for u in range(kh):
            r = rows[i + u]
            if r < 0:                          # a whole row of cval
                s = np.float32(0.0)
                for v in range(kw):
                    s += kernel[u, v]
                s *= fill
                for j in range(W):
                    acc[j] += s
                continue
            src = image[r]
            for v in range(kw):
                w = kernel[u, v]
                if w != 0.0:
                    _add_shifted_row(acc, src, w, v - cx, cols, v, fill)


@njit(cache=True, parallel=True, fastmath={"contract"})
def correlate_separable(image, ky, kx, rows, cols, cx, cval, cval_second, out):
    """Axis-0 pass with ``ky`` then axis-1 pass with ``kx``, fused row by row.

    For each output row ``i``: ``t[j] = sum_u ky[u] * ext[rows[i + u], j]`` (beyond the top
    and bottom: ``cval``), then ``out[i, j] = sum_v kx[v] * t_ext[cols[j + v]]`` (beyond the
    sides: ``cval_second``). This is exactly SciPy's ``correlate1d`` along axis 0 followed by
    ``correlate1d`` along axis 1 (``cval_second = cval``), and the 2-D correlation with
    ``outer(ky, kx)`` when ``cval_second = cval * sum(ky)``. A 1-D pass is the case
    ``kx = [1]`` (``cx = 0``) or ``ky = [1]`` (``rows = arange(H)``).
    The intermediate row stays in cache; no padded copy or intermediate image is made.
    """
    H, W = out.shape
    fill = np.float32(cval)
    fill2 = np.float32(cval_second)
    for i in prange(H):
        t = np.zeros(W, np.float32)
        for u in range(ky.size):
            w = ky[u]
            if w == 0.0:
                continue
            r = rows[i + u]
            if r < 0:
                wc = w * fill
                for j in range(W):
                    t[j] += wc
            else:
                src = image[r]
                for j in range(W):
                    t[j] += w * src[j]
        acc = out[i]
        for j in range(W):
            acc[j] = 0.0
        for v in range(kx.size):
            w = kx[v]
            if w != 0.0:
                _add_shifted_row(acc, t, w, v - cx, cols, v, fill2)
