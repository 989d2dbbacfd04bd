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
stencil. The kernels therefore run one plane per parallel iteration, one output row at a time,
and for each tap add ``w * x_row[ow*sw + off]`` over the contiguous range of ``ow`` whose input
column lies inside the image (the zero padding is never read: rows and columns that would read
it are skipped), an inner loop that LLVM vectorises for stride 1. The readable twin is
:mod:`kernels.reference.nn_dwconv`.

Backward:

* ``dx``: the same loops with the roles of input and output exchanged (scatter ``w * dy`` into
  the input row), one input plane per parallel iteration (its ``m`` output planes add into it, so
  no two iterations write the same plane);
* ``dw[k, 0, i, j] = sum_{n, oh, ow} dy[n, k, oh, ow] * xpad[...]``: one output channel per
  parallel iteration, each tap's sum over a row taken in the input dtype and added up in
  float64;
* ``db`` is a plain sum of ``dy`` (NumPy, in the caller).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _column_range(W, Wo, sw, off):
    """Output columns ``ow`` (a range ``lo..hi``) whose input column ``ow*sw + off`` lies in
    ``[0, W)``."""
    lo = 0
    if off < 0:
        lo = (-off + sw - 1) // sw
    hi = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
    return lo, max(lo, min(Wo, hi))


@njit(cache=True, parallel=True, nogil=True)
def dwconv2d_forward(x, w, bias, sh, sw, pt, pl, dh, dw, y):
    """``y = dwconv(x, w) + bias``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), C-contiguous
    w : ndarray, shape (C*m, 1, kh, kw), the dtype of ``x``
    bias : ndarray, shape (C*m,), the dtype of ``x`` (zeros for none)
    sh, sw, pt, pl, dh, dw : int
        Stride, zero padding at the top and left (>= 0), dilation.
    y : ndarray, shape (N, C*m, Ho, Wo), C-contiguous, written
    """
    N, C, H, W = x.shape
    K, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    m = K // C
    Ho, Wo = y.shape[2], y.shape[3]
    for nk in prange(N * K):
        n = nk // K
        k = nk - n * K
        c = k // m
        plane = y[n, k]
        b = bias[k]
        for oh in range(Ho):
            row = plane[oh]
            for ow in range(Wo):
                row[ow] = b
            for i in range(kh):
                ih = oh * sh + i * dh - pt
                if ih < 0 or ih >= H:
                    continue
                xrow = x[n, c, ih]
                for j in range(kw):
                    off = j * dw - pl
                    lo, hi = _column_range(W, Wo, sw, off)
                    wv = w[k, 0, i, j]
                    if sw == 1:
                        for ow in range(lo, hi):
                            row[ow] += wv * xrow[ow + off]
                    else:
                        for ow in range(lo, hi):
                            row[ow] += wv * xrow[ow * sw + off]


@njit(cache=True, parallel=True, nogil=True)
def dwconv2d_input_grad(dy, w, sh, sw, pt, pl, dh, dw, dx):
    """``dx[n, c] = sum over the ``m`` output planes of channel ``c`` and the taps of
    ``w * dy`` put back where the forward read it (the transpose of :func:`dwconv2d_forward`).

    Parameters
    ----------
    dy : ndarray, shape (N, C*m, Ho, Wo), C-contiguous
    w : ndarray, shape (C*m, 1, kh, kw)
    dx : ndarray, shape (N, C, H, W), C-contiguous, written
    """
    N, C, H, W = dx.shape
    K, kh, kw = w.shape[0], w.shape[2], w.shape[3]
    m = K // C
    Ho, Wo = dy.shape[2], dy.shape[3]
    for nc in prange(N * C):
        n = nc // C
        c = nc - n * C
        plane = dx[n, c]
        for h in range(H):
            for v in range(W):
                plane[h, v] = 0.0
        for k in range(c * m, (c + 1) * m):
            for oh in range(Ho):
                dyrow = dy[n, k, oh]
                for i in range(kh):
                    ih = oh * sh + i * dh - pt
                    if ih < 0 or ih >= H:
                        continue
                    xrow = plane[ih]
                    for j in range(kw):
                        off = j * dw - pl
                        lo, hi = _column_range(W, Wo, sw, off)
                        wv = w[k, 0, i, j]
                        if sw == 1:
                            for ow in range(lo, hi):
                                xrow[ow + off] += wv * dyrow[ow]
                        else:
                            for ow in range(lo, hi):
                                xrow[ow * sw + off] += wv * dyrow[ow]


@njit(cache=True, parallel=True, nogil=True, fastmath={"reassoc"})
def dwconv2d_weight_grad(x, dy, sh, sw, pt, pl, dh, dw, dwt):
    """``dwt[k, 0, i, j] = sum_{n, oh, ow} dy[n, k, oh, ow] * xpad[n, k // m, oh*sh + i*dh,
    ow*sw + j*dw]``; each row's dot product in the input dtype (reassociated into vector lanes),
    the rows summed in float64.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), C-contiguous
    dy : ndarray, shape (N, C*m, Ho, Wo), C-contiguous
    dwt : ndarray, shape (C*m, 1, kh, kw), written
    """
    N, C, H, W = x.shape
    K, kh, kw = dwt.shape[0], dwt.shape[2], dwt.shape[3]
    m = K // C
    Ho, Wo = dy.shape[2], dy.shape[3]
    for k in prange(K):
        c = k // m
        acc = np.zeros((kh, kw))
        for n in range(N):
            for oh in range(Ho):
                dyrow = dy[n, k, oh]
                for i in range(kh):
                    ih = oh * sh + i * dh - pt
                    if ih < 0 or ih >= H:
                        continue
                    xrow = x[n, c, ih]
                    for j in range(kw):
                        off = j * dw - pl
                        lo, hi = _column_range(W, Wo, sw, off)
                        s = xrow[0] * 0.0
                        if sw == 1:
                            for ow in range(lo, hi):
                                s += dyrow[ow] * xrow[ow + off]
                        else:
                            for ow in range(lo, hi):
                                s += dyrow[ow] * xrow[ow * sw + off]
                        acc[i, j] += s
        for i in range(kh):
            for j in range(kw):
                dwt[k, 0, i, j] = acc[i, j]
