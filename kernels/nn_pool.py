"""Pooling kernels: max, average and adaptive average pooling, forward and backward.

Inputs are NCHW arrays viewed as ``(P, H, W)`` planes with ``P = N * C``; every kernel runs one
plane per parallel iteration, so overlapping windows never race in the backward scatter. The
readable twin is ``kernels/reference/nn_pool.py``; the API is :mod:`cvcore.nn.layers`.

Window ``(oi, oj)`` of a ``(kh, kw)`` pool with stride ``(sh, sw)``, padding ``(ph, pw)`` and
dilation ``(dh, dw)`` covers input rows ``oi * sh - ph + a * dh`` for ``a = 0 .. kh - 1``
(PyTorch's ``nn.MaxPool2d`` / ``nn.AvgPool2d`` convention, ``ceil_mode=False``); positions outside
the image are padding (``-inf`` for max, zero for average).
"""
from numba import njit, prange

# Window sums may be reassociated (split over SIMD lanes); nothing else is relaxed.
REASSOC = {"reassoc"}


@njit(cache=True, inline="always", nogil=True)
def _taps(o, stride, pad, dil, k, size):
    """Kernel taps ``a`` in ``[lo, hi)`` whose input index ``o*stride - pad + a*dil`` lies inside
    ``[0, size)``; returns ``(start, lo, hi)`` with ``start = o*stride - pad``."""
    start = o * stride - pad
    lo = 0
    if start < 0:
        lo = (-start + dil - 1) // dil
    hi = k
    last = size - 1 - start                   # a*dil <= last
    if last < (k - 1) * dil:
        hi = last // dil + 1 if last >= 0 else 0
    return start, lo, hi


@njit(cache=True, parallel=True, nogil=True)
def maxpool2d_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, y, argmax):
    """Max over each window; records the flat in-plane index ``row * W + col`` of the maximum.

    The first maximum in row-major window order wins ties, as in PyTorch. Every window holds at
    least one real pixel because the caller enforces ``padding <= effective kernel / 2``; the
    taps falling in the padding are skipped by computing each window's valid range once.

    Parameters
    ----------
    x : (P, H, W) float, C-contiguous
    kh, kw, sh, sw, ph, pw, dh, dw : int
    y : (P, OH, OW) same dtype as ``x``, output
    argmax : (P, OH, OW) int32, output
    """
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for p in prange(P):
        for oi in range(OH):
            r0, a_lo, a_hi = _taps(oi, sh, ph, dh, kh, H)
            for oj in range(OW):
                c0, b_lo, b_hi = _taps(oj, sw, pw, dw, kw, W)
                r = r0 + a_lo * dh
                col = c0 + b_lo * dw
                best = x[p, r, col]
                where = r * W + col
                for a in range(a_lo, a_hi):
                    r = r0 + a * dh
                    for b in range(b_lo, b_hi):
                        col = c0 + b * dw
                        v = x[p, r, col]
                        if v > best:
                            best = v
                            where = r * W + col
                y[p, oi, oj] = best
                argmax[p, oi, oj] = where


@njit(cache=True, parallel=True, nogil=True)
def maxpool2d_backward(dy, argmax, dx):
    """Route each output gradient to the input position that held the maximum.

    Parameters
    ----------
    dy : (P, OH, OW) float
    argmax : (P, OH, OW) int32, from :func:`maxpool2d_forward`
    dx : (P, H, W) same dtype as ``dy``, output (overwritten; zeroed here)
    """
    P, OH, OW = dy.shape
    W = dx.shape[2]
    for p in prange(P):
        dx[p] = 0.0
        for oi in range(OH):
            for oj in range(OW):
                k = argmax[p, oi, oj]
                dx[p, k // W, k % W] += dy[p, oi, oj]


@njit(cache=True, parallel=True, fastmath=REASSOC, nogil=True)
def avgpool2d_forward(x, kh, kw, sh, sw, ph, pw, count_include_pad, y):
    """Mean over each window.

    The divisor is ``kh * kw`` when ``count_include_pad`` (zeros of the padding count, PyTorch's
    default) and otherwise the number of real pixels in the window.

    Parameters
    ----------
    x : (P, H, W) float, C-contiguous
    kh, kw, sh, sw, ph, pw : int
    count_include_pad : bool
    y : (P, OH, OW) same dtype as ``x``, output
    """
    P, H, W = x.shape
    OH, OW = y.shape[1], y.shape[2]
    for p in prange(P):
        for oi in range(OH):
            r0 = oi * sh - ph
            r_lo = max(r0, 0)
            r_hi = min(r0 + kh, H)
            for oj in range(OW):
                c0 = oj * sw - pw
                c_lo = max(c0, 0)
                c_hi = min(c0 + kw, W)
                s = 0.0
                for r in range(r_lo, r_hi):
                    for col in range(c_lo, c_hi):
                        s += x[p, r, col]
                if count_include_pad:
                    count = kh * kw
                else:
                    count = (r_hi - r_lo) * (c_hi - c_lo)
                y[p, oi, oj] = s / count


@njit(cache=True, parallel=True, nogil=True)
def avgpool2d_backward(dy, kh, kw, sh, sw, ph, pw, count_include_pad, dx):
    """Spread each output gradient evenly (``1 / divisor``) over its window's real pixels.

    Parameters
    ----------
    dy : (P, OH, OW) float
    kh, kw, sh, sw, ph, pw : int
    count_include_pad : bool, as in :func:`avgpool2d_forward`
    dx : (P, H, W) same dtype as ``dy``, output (overwritten; zeroed here)
    """
    P, OH, OW = dy.shape
    H, W = dx.shape[1], dx.shape[2]
    for p in prange(P):
        dx[p] = 0.0
        for oi in range(OH):
            r0 = oi * sh - ph
            r_lo = max(r0, 0)
            r_hi = min(r0 + kh, H)
            for oj in range(OW):
                c0 = oj * sw - pw
                c_lo = max(c0, 0)
                c_hi = min(c0 + kw, W)
                if count_include_pad:
                    count = kh * kw
                else:
                    count = (r_hi - r_lo) * (c_hi - c_lo)
                g = dy[p, oi, oj] / count
                for r in range(r_lo, r_hi):
                    for col in range(c_lo, c_hi):
                        dx[p, r, col] += g


@njit(cache=True, fastmath=REASSOC, nogil=True)
def adaptive_avgpool2d_forward(x, y, p0, p1):
    """Adaptive average pooling to ``y``'s spatial size (PyTorch's bin edges).

    Output cell ``i`` of ``OH`` averages input rows ``floor(i * H / OH)`` to
    ``ceil((i + 1) * H / OH) - 1`` (likewise for columns), so bins may overlap by one pixel.

    Parameters
    ----------
    x : (P, H, W) float, C-contiguous
    y : (P, OH, OW) same dtype as ``x``, output
    p0, p1 : int
        The planes ``[p0, p1)`` are pooled (one thread; callers split the planes between
        threads with :func:`cvcore._bands.run_bands`, which compiles far less than a
        ``prange``).
    """
    H, W = x.shape[1], x.shape[2]
    OH, OW = y.shape[1], y.shape[2]
    for p in range(p0, p1):
        for oi in range(OH):
            r_lo = (oi * H) // OH
            r_hi = ((oi + 1) * H + OH - 1) // OH
            for oj in range(OW):
                c_lo = (oj * W) // OW
                c_hi = ((oj + 1) * W + OW - 1) // OW
                s = 0.0
                for r in range(r_lo, r_hi):
                    for col in range(c_lo, c_hi):
                        s += x[p, r, col]
                y[p, oi, oj] = s / ((r_hi - r_lo) * (c_hi - c_lo))


@njit(cache=True, parallel=True, nogil=True)
def adaptive_avgpool2d_backward(dy, dx):
    """Spread each output gradient evenly over its bin (bins as in the forward).

    Parameters
    ----------
    dy : (P, OH, OW) float
    dx : (P, H, W) same dtype as ``dy``, output (overwritten; zeroed here)
    """
    P, OH, OW = dy.shape
    H, W = dx.shape[1], dx.shape[2]
    for p in prange(P):
        dx[p] = 0.0
        for oi in range(OH):
            r_lo = (oi * H) // OH
            r_hi = ((oi + 1) * H + OH - 1) // OH
            for oj in range(OW):
                c_lo = (oj * W) // OW
                c_hi = ((oj + 1) * W + OW - 1) // OW
                g = dy[p, oi, oj] / ((r_hi - r_lo) * (c_hi - c_lo))
                for r in range(r_lo, r_hi):
                    for col in range(c_lo, c_hi):
                        dx[p, r, col] += g
