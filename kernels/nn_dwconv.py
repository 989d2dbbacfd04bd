"""Numba kernels for depthwise 2-D convolution (``groups == C``) in NCHW, forward and backward.

A depthwise convolution filters every input channel with its own ``kh x kw`` kernels (``m`` of
them per channel, the *channel multiplier*: output channel ``k`` reads input channel
``k // m``), PyTorch's ``Conv2d(C, C*m, k, groups=C)`` (Howard et al. 2017, sec. 3.1;
Sandler et al. 2018, sec. 3.2)::

    y[n, k, oh, ow] = b[k] + sum_{i, j} w[k, 0, i, j] * xpad[n, k // m, oh*sh + i*dh, ow*sw + j*dw]

with ``xpad`` zero-padded by ``pt`` rows at the top and ``pl`` columns at the left; the padding
at the bottom and right is whatever the output size ``(Ho, Wo)`` (chosen by the caller) reaches,
so TensorFlow's asymmetric 'SAME' padding needs nothing special.

There is no reduction over channels, so there is nothing for a matrix product to block: each
output plane is ``kh*kw`` shifted, scaled copies of one input plane added up (2 flops per tap
and output value against one read of the input and one write of the output), a memory-bound
stencil. How the kernels run it (one input plane at a time, one plane per parallel work item):

1. **Phase planes.** The plane is copied once, zero-padded, into a small scratch buffer that
   stays in the core's cache, split into its ``sh * sw`` *phases* (``xph[a, b][r, q] =
   xpad[r*sh + a, q*sw + b]``), each ``Hq x Wq`` with ``Wq = Wo + ((kw-1)*dw) // sw`` and
   ``Hq = Ho + ((kh-1)*dh) // sh``. Tap ``(i, j)`` then reads phase ``(i*dh % sh, j*dw % sw)``
   shifted by ``(i*dh // sh, j*dw // sw)``, a stride-1 read whatever the stride.
2. **Flat windows.** Output ``(oh, ow)`` is kept at flat position ``p = oh*Wq + ow`` (the
   ``Wq - Wo`` extra columns of each row are computed and thrown away), so that every tap is
   ``acc[p] += w[i, j] * xph_flat[off(i, j) + p]`` over one long contiguous range of ``p``,
   whatever the plane's width: a 7x7 plane gives loops of 53 values, not 25 loops of 7 (the
   old kernel's weak spot; the same "strip" trick as :mod:`kernels.nn_conv`). Loops run over
   blocks of ``FLAT_BLOCK`` positions so the accumulator block stays in the L1 cache.
3. **Epilogue.** The valid columns leave the accumulator as
   ``min(max(acc * scale[k] + shift[k], lo), hi)``: a bias (``scale = 1``), an eval-mode
   batch norm folded in (``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean*scale``)
   and ReLU6 (``lo, hi = 0, 6``) cost no extra pass over the output.

Backward, on the same layout:

* ``dx``: the transpose, ``gph_flat[off(i, j) + p] += w[i, j] * dy_flat[p]`` into zeroed phase
  planes (``dy_flat``: ``dy`` with zero extra columns), then the phases are put back in place;
  one input plane per work item (its ``m`` output planes add into it);
* ``dw[k, 0, i, j] = sum_{n, p} dy_flat[p] * xph_flat[off(i, j) + p]``: one input channel per
  work item (its ``m`` output channels, all images), each plane's dot product in the input dtype
  (reassociated into vector lanes), the planes summed in float64;
* ``db`` is a plain sum of ``dy`` (NumPy, in the caller).

The readable twin is :mod:`kernels.reference.nn_dwconv` (``depthwise_conv2d_forward``, with
the same phase planes and flat windows written in NumPy).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, uint64

# Flat output positions per block of the tap loop: 512 float32 accumulators (2 KiB) stay in the
# L1 cache (32-48 KiB on current x86 cores) beside the input rows the taps read.
FLAT_BLOCK = 512
# Work items (planes or channels) per thread in a call: a few, so that a thread slowed down by
# another process does not hold up the whole call.
ITEMS_PER_LANE = 4


@njit(cache=True, nogil=True)
def phase_geometry(Ho, Wo, kh, kw, sh, sw, dh, dw):
    """``(Hq, Wq, offs)``: the size of each phase plane and every tap's flat offset
    ``(phase * Hq + i*dh // sh) * Wq + j*dw // sw`` (``offs`` is ``(kh*kw,)`` int64)."""
    Hq = Ho + ((kh - 1) * dh) // sh
    Wq = Wo + ((kw - 1) * dw) // sw
    offs = np.empty(kh * kw, dtype=np.int64)
    for i in range(kh):
        a, qh = (i * dh) % sh, (i * dh) // sh
        for j in range(kw):
            b, qw = (j * dw) % sw, (j * dw) // sw
            offs[i * kw + j] = ((a * sw + b) * Hq + qh) * Wq + qw
    return Hq, Wq, offs


@njit(cache=True, nogil=True, inline="always")
def _column_range(W, Wq, sw, off):
    """Columns ``q`` (a range ``lo..hi``) whose input column ``q*sw + off`` lies in ``[0, W)``."""
    lo = 0
    if off < 0:
        lo = (-off + sw - 1) // sw
    hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
    return min(lo, Wq), max(min(lo, Wq), min(Wq, hi))


@njit(cache=True, nogil=True)
def fill_phases(xf, x0, H, W, sh, sw, pt, pl, Hq, Wq, xph):
    """``xph[((a*sw + b)*Hq + r)*Wq + q] = xpad[r*sh + a, q*sw + b]`` for the plane that starts
    at ``xf[x0]`` (``H x W``, row-major): its zero-padded phases (padding ``pt`` rows on top,
    ``pl`` columns on the left, zeros wherever the phases reach beyond the plane).

    Every index here and in the kernels below is cast to ``uint64``: Numba then drops its
    negative-index wrap-around, which otherwise keeps LLVM from vectorising the loops (measured
    7-10x); every index is non-negative by construction."""
    for r in range(Hq):                    # input rows in order (the prefetcher streams them)
        for a in range(sh):
            ih = r * sh + a - pt
            for b in range(sw):
                base = ((a * sw + b) * Hq + r) * Wq
                if ih < 0 or ih >= H:
                    for q in range(Wq):
                        xph[uint64(base + q)] = 0.0
                    continue
                lo, hi = _column_range(W, Wq, sw, b - pl)
                for q in range(lo):
                    xph[uint64(base + q)] = 0.0
                src = x0 + ih * W + b - pl         # + q*sw >= 0 for q >= lo
                if sw == 1:
                    for q in range(lo, hi):
                        xph[uint64(base + q)] = xf[uint64(src + q)]
                elif sw == 2:                      # a constant stride vectorises as a gather
                    for q in range(lo, hi):
                        xph[uint64(base + q)] = xf[uint64(src + 2 * q)]
                else:
                    for q in range(lo, hi):
                        xph[uint64(base + q)] = xf[uint64(src + sw * q)]
                for q in range(hi, Wq):
                    xph[uint64(base + q)] = 0.0


@njit(cache=True, nogil=True)
def fill_flat(df, d0, Ho, Wo, Wq, out):
    """``out[oh*Wq + ow] = plane[oh, ow]`` with zeros in the columns ``Wo..Wq-1``, for the
    ``Ho x Wo`` plane that starts at ``df[d0]``."""
    for oh in range(Ho):
        src = d0 + oh * Wo
        dst = oh * Wq
        for ow in range(Wo):
            out[uint64(dst + ow)] = df[uint64(src + ow)]
        for ow in range(Wo, Wq):
            out[uint64(dst + ow)] = 0.0


@njit(cache=True, nogil=True)
def _lane_items(total, nlanes):
    """Number of work chunks: about ITEMS_PER_LANE per lane, at most one per item."""
    return max(1, min(total, nlanes * ITEMS_PER_LANE))


@njit(cache=True, parallel=True, nogil=True)
def dwconv2d_forward(x, w, scale, shift, clamp, sh, sw, pt, pl, dh, dw, nlanes, y):
    """``y = min(max(dwconv(x, w) * scale + shift, clamp[0]), clamp[1])``, per output channel.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), C-contiguous
    w : ndarray, shape (C*m, 1, kh, kw), the dtype of ``x``
    scale, shift : ndarray, shape (C*m,), the dtype of ``x``
        ``1`` and the bias for a plain convolution; an eval-mode batch norm folded in.
    clamp : ndarray, shape (2,), the dtype of ``x``
        ``(-inf, inf)`` for none; ``(0, 6)`` for ReLU6.
    sh, sw, pt, pl, dh, dw : int
        Stride, zero padding at the top and left (>= 0), dilation.
    nlanes : int
        Threads (the work is cut into a few chunks per thread).
    y : ndarray, shape (N, C*m, Ho, Wo), C-contiguous, written
    """
    N, C, H, W = x.shape
    K, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    m = K // C
    Ho, Wo = y.shape[2], y.shape[3]
    Hq, Wq, offs = phase_geometry(Ho, Wo, kh, kw, sh, sw, dh, dw)
    T = kh * kw
    rows = max(1, FLAT_BLOCK // Wq)                # output rows per block
    total = N * C
    chunks = _lane_items(total, nlanes)
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    wf = w.reshape(-1)
    lo, hi = clamp[0], clamp[1]
    for chunk in prange(chunks):
        xph = np.empty(sh * sw * Hq * Wq, dtype=x.dtype)
        acc = np.empty(rows * Wq, dtype=x.dtype)
        for nc in range(chunk * total // chunks, (chunk + 1) * total // chunks):
            n = nc // C
            c = nc - n * C
            fill_phases(xf, nc * H * W, H, W, sh, sw, pt, pl, Hq, Wq, xph)
            for k in range(c * m, (c + 1) * m):
                s = scale[k]
                b = shift[k]
                y0 = (n * K + k) * Ho * Wo
                for oh0 in range(0, Ho, rows):
                    oh1 = min(Ho, oh0 + rows)
                    P = (oh1 - oh0 - 1) * Wq + Wo
                    p0 = oh0 * Wq
                    for p in range(P):
                        acc[p] = 0.0
                    for t in range(T):
                        wv = wf[k * T + t]
                        o = offs[t] + p0
                        for p in range(P):
                            acc[p] += wv * xph[uint64(o + p)]
                    for oh in range(oh0, oh1):
                        a0 = (oh - oh0) * Wq
                        o0 = y0 + oh * Wo
                        for ow in range(Wo):
                            v = acc[uint64(a0 + ow)] * s + b
                            yf[uint64(o0 + ow)] = min(max(v, lo), hi)


@njit(cache=True, parallel=True, nogil=True)
def dwconv2d_input_grad(dy, w, sh, sw, pt, pl, dh, dw, nlanes, dx):
    """``dx[n, c] = sum over the ``m`` output planes of channel ``c`` and the taps of
    ``w * dy`` put back where the forward read it (the transpose of :func:`dwconv2d_forward`
    with ``scale = 1``, no clamp).

    Parameters
    ----------
    dy : ndarray, shape (N, C*m, Ho, Wo), C-contiguous
    w : ndarray, shape (C*m, 1, kh, kw)
    nlanes : int
    dx : ndarray, shape (N, C, H, W), C-contiguous, written
    """
    N, C, H, W = dx.shape
    K, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    m = K // C
    Ho, Wo = dy.shape[2], dy.shape[3]
    Hq, Wq, offs = phase_geometry(Ho, Wo, kh, kw, sh, sw, dh, dw)
    T = kh * kw
    L = sh * sw * Hq * Wq
    P = (Ho - 1) * Wq + Wo
    total = N * C
    chunks = _lane_items(total, nlanes)
    dyf = dy.reshape(-1)
    dxf = dx.reshape(-1)
    wf = w.reshape(-1)
    for chunk in prange(chunks):
        gph = np.empty(L, dtype=dx.dtype)
        d = np.empty(Ho * Wq, dtype=dx.dtype)
        for nc in range(chunk * total // chunks, (chunk + 1) * total // chunks):
            n = nc // C
            c = nc - n * C
            for i in range(L):
                gph[i] = 0.0
            for k in range(c * m, (c + 1) * m):
                fill_flat(dyf, (n * K + k) * Ho * Wo, Ho, Wo, Wq, d)
                for p0 in range(0, P, FLAT_BLOCK):
                    n0 = min(P - p0, FLAT_BLOCK)
                    for t in range(T):
                        wv = wf[k * T + t]
                        o = offs[t] + p0
                        for p in range(n0):
                            gph[uint64(o + p)] += wv * d[uint64(p0 + p)]
            x0 = nc * H * W
            for h in range(H):
                a, r = (h + pt) % sh, (h + pt) // sh
                if r >= Hq:
                    for v in range(W):
                        dxf[uint64(x0 + h * W + v)] = 0.0
                    continue
                for b in range(sw):
                    # columns v = q*sw + b - pl of phase b, row r: a contiguous run of q
                    lo, hi = _column_range(W, Wq, sw, b - pl)
                    src = ((a * sw + b) * Hq + r) * Wq
                    dst = x0 + h * W + b - pl
                    for q in range(lo, hi):
                        dxf[uint64(dst + q * sw)] = gph[uint64(src + q)]
                # columns whose phase column lies beyond Wq are never read: zero
                vmax = Wq * sw - pl
                for v in range(max(vmax, 0), W):
                    dxf[uint64(x0 + h * W + v)] = 0.0


@njit(cache=True, parallel=True, nogil=True, fastmath={"reassoc"})
def dwconv2d_weight_grad(x, dy, sh, sw, pt, pl, dh, dw, nlanes, dwt):
    """``dwt[k, 0, i, j] = sum_{n, oh, ow} dy[n, k, oh, ow] * xpad[n, k // m, oh*sh + i*dh,
    ow*sw + j*dw]``; each plane's dot product in the input dtype (reassociated into vector
    lanes), the planes summed in float64.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), C-contiguous
    dy : ndarray, shape (N, C*m, Ho, Wo), C-contiguous
    nlanes : int
    dwt : ndarray, shape (C*m, 1, kh, kw), written
    """
    N, C, H, W = x.shape
    K, kh, kw = dwt.shape[0], dwt.shape[2], dwt.shape[3]
    m = K // C
    Ho, Wo = dy.shape[2], dy.shape[3]
    Hq, Wq, offs = phase_geometry(Ho, Wo, kh, kw, sh, sw, dh, dw)
    T = kh * kw
    P = (Ho - 1) * Wq + Wo
    chunks = _lane_items(C, nlanes)
    xf = x.reshape(-1)
    dyf = dy.reshape(-1)
    for chunk in prange(chunks):
        xph = np.empty(sh * sw * Hq * Wq, dtype=x.dtype)
        d = np.empty(Ho * Wq, dtype=x.dtype)
        acc = np.empty(m * T)
        for c in range(chunk * C // chunks, (chunk + 1) * C // chunks):
            for u in range(m * T):
                acc[u] = 0.0
            for n in range(N):
                fill_phases(xf, (n * C + c) * H * W, H, W, sh, sw, pt, pl, Hq, Wq, xph)
                for u in range(m):
                    fill_flat(dyf, (n * K + c * m + u) * Ho * Wo, Ho, Wo, Wq, d)
                    for t in range(T):
                        o = offs[t]
                        s = xph[0] * 0.0
                        for p in range(P):
                            s += d[p] * xph[uint64(o + p)]
                        acc[u * T + t] += s
            for u in range(m):
                for t in range(T):
                    dwt[c * m + u, 0, t // kw, t % kw] = acc[u * T + t]
