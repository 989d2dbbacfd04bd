"""Numba kernels for 2-D convolution in NCHW: blocked im2col + matrix product, one thread pool.

The readable twin is :mod:`kernels.reference.nn_conv`; the conventions (PyTorch's
cross-correlation, output size, column order ``(c*kh + i)*kw + j``) are documented there.
The caller (:mod:`cvcore.nn.conv`) validates every argument and allocates the outputs.

Design (measured with ``python -m benchmarks.cnn``, see benchmarks/README.md):

* The work is cut into **items** of one image x a block of output rows. Each thread ("lane")
  takes every ``nlanes``-th item, builds that block's column matrix in a small buffer of its own
  (sized to stay in the L2 cache), multiplies it by the weights with ``np.dot`` (BLAS, called
  single-threaded from inside the parallel loop) and copies the result into the NCHW output.
  Running im2col and the product inside ONE parallel loop keeps a single thread pool busy: the
  alternative, a parallel Numba im2col followed by a multi-threaded NumPy product, alternates two
  pools whose idle threads spin, and on a loaded 2-core machine measured 10-50x slower.
* **Padded-width layout for stride 1**: the output block is computed on a grid of ``rows x Wp``
  points (``Wp = W + 2*pw``); the last ``Wp - Wo`` columns of every row are junk and are not
  copied out. Then the row of tap ``(i, j)`` of the column matrix is ONE contiguous run of the
  flattened zero-padded input, ``plane[i*dh*Wp + j*dw : ... + rows*Wp]``, so im2col is ``kh*kw``
  block copies per channel instead of ``kh*kw*rows`` short row copies (cost: ``Wp/Wo - 1`` extra
  product work, 6 % at 32x32, 25 % at 8x8). Any other stride uses the general layout
  (``Ho x Wo`` grid, element-wise gathers).
* Backward: items are whole images (``dx`` of one image is written by one lane, so the halo
  rows shared by neighbouring row blocks never race); ``dW`` is accumulated per lane and summed
  by the caller.

Loops run over 1-D views (``dst = cols[row]``), which LLVM vectorises; indexing the 3-D arrays in
the innermost loop measured 5-9x slower.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _valid_range(out_len, in_len, offset, stride):
    """Output indices ``o`` in ``[lo, hi)`` with ``0 <= o*stride + offset < in_len``."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride          # smallest o with o*stride + offset >= 0
    if in_len - offset <= 0:
        hi = 0
    else:                                              # smallest o with o*stride + offset >= in_len
        hi = min(out_len, (in_len - offset + stride - 1) // stride)
    if hi < lo:
        hi = lo
    return lo, hi


# -- stride 1: padded-width layout -------------------------------------------------------------

@njit(cache=True)
def im2col_rows_s1(x, n, oh0, oh1, kh, kw, ph, pw, dh, dw, plane, cols):
    """Column matrix of output rows ``oh0 .. oh1-1`` of image ``n``, stride 1, padded width.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), C-contiguous
    n, oh0, oh1 : int
    kh, kw, ph, pw, dh, dw : int
        Kernel size, zero padding, dilation.
    plane : ndarray, shape (>= (oh1 - oh0 + dh*(kh-1))*Wp + dw*(kw-1),), scratch
    cols : ndarray, shape (C*kh*kw, (oh1-oh0)*Wp), C-contiguous, written
        ``cols[(c*kh+i)*kw+j, t] = xpad_flat[n, c, (oh0 + i*dh)*Wp + j*dw + t]`` with
        ``Wp = W + 2*pw``; columns with ``t % Wp >= Wo`` are junk (finite).
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Wp = W + 2 * pw
    T = (oh1 - oh0) * Wp
    rows_in = oh1 - oh0 + dh * (kh - 1)          # padded input rows the block reads
    used = rows_in * Wp + dw * (kw - 1)          # the last junk columns read this far
    for c in range(C):
        plane[:used] = 0
        for r in range(rows_in):
            ih = oh0 + r - ph
            if ih >= 0 and ih < H:
                plane[r * Wp + pw:r * Wp + pw + W] = x[n, c, ih]
        for i in range(kh):
            for j in range(kw):
                off = i * dh * Wp + j * dw
                cols[(c * kh + i) * kw + j, :] = plane[off:off + T]


@njit(cache=True)
def col2im_rows_s1(dcols, oh0, oh1, kh, kw, dh, dw, Wp, L, dxpad):
    """Adjoint of :func:`im2col_rows_s1` into the flat zero-padded planes ``dxpad``.

    ``dxpad[c*L + p]`` is padded pixel ``p`` of channel ``c`` (``L >= Hp*Wp + dw*(kw-1)``).
    The junk columns of ``dcols`` must be zero; they land in the padding.
    """
    T = (oh1 - oh0) * Wp
    C = dcols.shape[0] // (kh * kw)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                base = c * L + (oh0 + i * dh) * Wp + j * dw
                src = dcols[(c * kh + i) * kw + j]
                dst = dxpad[base:base + T]
                for t in range(T):
                    dst[t] += src[t]


@njit(cache=True, parallel=True)
def conv2d_s1_forward(x, w_mat, kh, kw, ph, pw, dh, dw, block_rows, k_blocks, nlanes, y):
    """``y = conv(x, w)``, stride 1 (no bias); items = (image, block of rows, block of channels).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), C-contiguous
    w_mat : ndarray, shape (K, C*kh*kw), C-contiguous
    kh, kw, ph, pw, dh, dw : int
    block_rows : int
        Output rows per item.
    k_blocks : int
        Output channels are split into this many blocks (> 1 only for few images and large
        weight matrices, where re-reading the weights for every row block would cost more).
    nlanes : int
        Parallel lanes (threads).
    y : ndarray, shape (N, K, Ho, Wo), C-contiguous, written
    """
    N, W = x.shape[0], x.shape[3]
    K, R = w_mat.shape
    Ho, Wo = y.shape[2], y.shape[3]
    Wp = W + 2 * pw
    nblk = (Ho + block_rows - 1) // block_rows
    kb_len = (K + k_blocks - 1) // k_blocks
    items = N * nblk * k_blocks
    for lane in prange(nlanes):
        plane = np.empty((block_rows + dh * (kh - 1)) * Wp + dw * (kw - 1), dtype=x.dtype)
        colbuf = np.empty(R * block_rows * Wp, dtype=x.dtype)
        ybuf = np.empty(kb_len * block_rows * Wp, dtype=x.dtype)
        for item in range(lane, items, nlanes):
            kb = item % k_blocks
            n = item // (nblk * k_blocks)
            oh0 = (item // k_blocks - n * nblk) * block_rows
            oh1 = min(Ho, oh0 + block_rows)
            k0 = kb * kb_len
            k1 = min(K, k0 + kb_len)
            T = (oh1 - oh0) * Wp
            cols = colbuf[:R * T].reshape(R, T)
            yp = ybuf[:(k1 - k0) * T].reshape(k1 - k0, T)
            im2col_rows_s1(x, n, oh0, oh1, kh, kw, ph, pw, dh, dw, plane, cols)
            np.dot(w_mat[k0:k1], cols, yp)
            for k in range(k0, k1):
                src = yp[k - k0]
                for r in range(oh1 - oh0):
                    y[n, k, oh0 + r, :] = src[r * Wp:r * Wp + Wo]


@njit(cache=True, parallel=True)
def conv2d_s1_backward(x, w_mat, dy, kh, kw, ph, pw, dh, dw, block_rows, nlanes, need_dx,
                       need_dw, dx, dw_lanes):
    """Gradients of :func:`conv2d_s1_forward`; items = whole images.

    Parameters
    ----------
    x, w_mat, kh, kw, ph, pw, dh, dw, block_rows, nlanes
        As for :func:`conv2d_s1_forward`.
    dy : ndarray, shape (N, K, Ho, Wo), C-contiguous
    need_dx, need_dw : bool
    dx : ndarray, shape (N, C, H, W), C-contiguous, written when ``need_dx``
    dw_lanes : ndarray, shape (nlanes, K, C*kh*kw), zero on entry
        Lane ``l`` adds its images' ``dY @ cols^T``; the caller sums over lanes.
    """
    N, C, H, W = x.shape
    K, R = w_mat.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    Wp = W + 2 * pw
    Hp = H + 2 * ph
    L = Hp * Wp + dw * (kw - 1)
    nblk = (Ho + block_rows - 1) // block_rows
    w_t = w_mat.T
    for lane in prange(nlanes):
        plane = np.empty((block_rows + dh * (kh - 1)) * Wp + dw * (kw - 1), dtype=x.dtype)
        colbuf = np.empty(R * block_rows * Wp, dtype=x.dtype)
        dybuf = np.empty(K * block_rows * Wp, dtype=x.dtype)
        part = np.empty((K, R), dtype=x.dtype)
        dxpad = np.empty(C * L, dtype=x.dtype)
        for n in range(lane, N, nlanes):
            if need_dx:
                dxpad[:] = 0
            for blk in range(nblk):
                oh0 = blk * block_rows
                oh1 = min(Ho, oh0 + block_rows)
                T = (oh1 - oh0) * Wp
                cols = colbuf[:R * T].reshape(R, T)
                dyp = dybuf[:K * T].reshape(K, T)
                for k in range(K):                     # dY on the padded-width grid, junk = 0
                    dst = dyp[k]
                    for r in range(oh1 - oh0):
                        dst[r * Wp:r * Wp + Wo] = dy[n, k, oh0 + r]
                        dst[r * Wp + Wo:(r + 1) * Wp] = 0
                if need_dw:
                    im2col_rows_s1(x, n, oh0, oh1, kh, kw, ph, pw, dh, dw, plane, cols)
                    np.dot(dyp, cols.T, part)
                    dw_lanes[lane] += part
                if need_dx:
                    np.dot(w_t, dyp, cols)             # dcols, zero on the junk columns
                    col2im_rows_s1(cols, oh0, oh1, kh, kw, dh, dw, Wp, L, dxpad)
            if need_dx:
                for c in range(C):
                    for ih in range(H):
                        start = c * L + (ih + ph) * Wp + pw
                        dx[n, c, ih, :] = dxpad[start:start + W]


# -- any stride: general layout ----------------------------------------------------------------

@njit(cache=True)
def im2col_rows(x, n, oh0, oh1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, cols):
    """Column matrix of output rows ``oh0 .. oh1-1`` of image ``n`` (general layout).

    ``cols[(c*kh+i)*kw+j, (oh-oh0)*Wo + ow] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]``,
    out-of-image taps written as zeros. ``cols`` has shape (C*kh*kw, (oh1-oh0)*Wo).
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Ho_full = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    for c in range(C):
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(Ho_full, H, i * dh - ph, sh)
            for j in range(kw):
                dst = cols[(c * kh + i) * kw + j]
                iw0 = j * dw - pw
                ow_lo, ow_hi = _valid_range(Wo, W, iw0, sw)
                for oh in range(oh0, oh1):
                    seg = dst[(oh - oh0) * Wo:(oh - oh0 + 1) * Wo]
                    if oh < oh_lo or oh >= oh_hi:
                        seg[:] = 0
                        continue
                    src = x[n, c, oh * sh + i * dh - ph]
                    seg[:ow_lo] = 0
                    for ow in range(ow_lo, ow_hi):
                        seg[ow] = src[ow * sw + iw0]
                    seg[ow_hi:] = 0


@njit(cache=True)
def col2im_rows(dcols, n, oh0, oh1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, dx):
    """Adjoint of :func:`im2col_rows`: add ``dcols`` into ``dx[n]`` (not zeroed here)."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    Ho_full = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    for c in range(C):
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(Ho_full, H, i * dh - ph, sh)
            for j in range(kw):
                src = dcols[(c * kh + i) * kw + j]
                iw0 = j * dw - pw
                ow_lo, ow_hi = _valid_range(Wo, W, iw0, sw)
                for oh in range(max(oh0, oh_lo), min(oh1, oh_hi)):
                    dst = dx[n, c, oh * sh + i * dh - ph]
                    seg = src[(oh - oh0) * Wo:(oh - oh0 + 1) * Wo]
                    for ow in range(ow_lo, ow_hi):
                        dst[ow * sw + iw0] += seg[ow]


@njit(cache=True, parallel=True)
def conv2d_forward_general(x, w_mat, kh, kw, sh, sw, ph, pw, dh, dw, block_rows, k_blocks,
                           nlanes, y):
    """``y = conv(x, w)`` for any stride (no bias); items as in :func:`conv2d_s1_forward`.

    Arguments as for :func:`conv2d_s1_forward`, plus the stride ``sh, sw``.
    """
    N = x.shape[0]
    K, R = w_mat.shape
    Ho, Wo = y.shape[2], y.shape[3]
    nblk = (Ho + block_rows - 1) // block_rows
    kb_len = (K + k_blocks - 1) // k_blocks
    items = N * nblk * k_blocks
    for lane in prange(nlanes):
        colbuf = np.empty(R * block_rows * Wo, dtype=x.dtype)
        ybuf = np.empty(kb_len * block_rows * Wo, dtype=x.dtype)
        for item in range(lane, items, nlanes):
            kb = item % k_blocks
            n = item // (nblk * k_blocks)
            oh0 = (item // k_blocks - n * nblk) * block_rows
            oh1 = min(Ho, oh0 + block_rows)
            k0 = kb * kb_len
            k1 = min(K, k0 + kb_len)
            T = (oh1 - oh0) * Wo
            cols = colbuf[:R * T].reshape(R, T)
            yp = ybuf[:(k1 - k0) * T].reshape(k1 - k0, T)
            im2col_rows(x, n, oh0, oh1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, cols)
            np.dot(w_mat[k0:k1], cols, yp)
            for k in range(k0, k1):
                y[n, k].reshape(Ho * Wo)[oh0 * Wo:oh1 * Wo] = yp[k - k0]


@njit(cache=True, parallel=True)
def conv2d_backward_general(x, w_mat, dy, kh, kw, sh, sw, ph, pw, dh, dw, block_rows, nlanes,
                            need_dx, need_dw, dx, dw_lanes):
    """Gradients of :func:`conv2d_forward_general`; items = whole images.

    Arguments as for :func:`conv2d_s1_backward`, plus the stride ``sh, sw``.
    """
    N = x.shape[0]
    K, R = w_mat.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    nblk = (Ho + block_rows - 1) // block_rows
    w_t = w_mat.T
    for lane in prange(nlanes):
        colbuf = np.empty(R * block_rows * Wo, dtype=x.dtype)
        dybuf = np.empty(K * block_rows * Wo, dtype=x.dtype)
        part = np.empty((K, R), dtype=x.dtype)
        for n in range(lane, N, nlanes):
            if need_dx:
                dx[n] = 0
            for blk in range(nblk):
                oh0 = blk * block_rows
                oh1 = min(Ho, oh0 + block_rows)
                T = (oh1 - oh0) * Wo
                cols = colbuf[:R * T].reshape(R, T)
                dyc = dybuf[:K * T].reshape(K, T)
                for k in range(K):
                    dyc[k, :] = dy[n, k].reshape(Ho * Wo)[oh0 * Wo:oh1 * Wo]
                if need_dw:
                    im2col_rows(x, n, oh0, oh1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, cols)
                    np.dot(dyc, cols.T, part)
                    dw_lanes[lane] += part
                if need_dx:
                    np.dot(w_t, dyc, cols)
                    col2im_rows(cols, n, oh0, oh1, kh, kw, sh, sw, ph, pw, dh, dw, Wo, dx)

