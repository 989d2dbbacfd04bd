"""Numba kernels for 2-D convolution in NCHW: parallel im2col and its adjoint col2im.

The readable twin is :mod:`kernels.reference.nn_conv`; the conventions (PyTorch's
cross-correlation, output size, column order ``(c*kh + i)*kw + j``) are documented there.
The caller (:mod:`cvcore.nn.conv`) validates every argument, allocates the outputs and runs the
matrix products with NumPy (OpenBLAS); these kernels only move data:

* ``im2col_chunk`` fills the column matrices of images ``n0 .. n0+B-1`` (one ``(C*kh*kw, Ho*Wo)``
  matrix per image, so ``W @ cols[b]`` lands directly in the NCHW output, no transpose);
* ``col2im_chunk`` adds column-matrix gradients back into the input gradient.

Both run in parallel over the ``B*C`` (image, channel) planes: each plane of ``cols`` rows (resp.
of ``dx``) is written by exactly one thread, so there are no races. The zero padding is never
materialised: for each kernel tap the range of output columns that read inside the image is
computed once, the rest is written as zeros (resp. skipped).
"""
from __future__ import annotations

from numba import njit, prange


@njit(cache=True, inline="always")
def _valid_range(out_len, in_len, offset, stride):
    """Output indices ``o`` in ``[lo, hi)`` with ``0 <= o*stride + offset < in_len``."""
    # smallest o with o*stride + offset >= 0
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    # smallest o with o*stride + offset >= in_len
    hi = out_len
    if in_len - offset <= 0:
        hi = 0
    else:
        hi = min(out_len, (in_len - offset + stride - 1) // stride)
    if hi < lo:
        hi = lo
    return lo, hi


@njit(cache=True, parallel=True)
def im2col_chunk(x, n0, kh, kw, sh, sw, ph, pw, dh, dw, cols):
    """Fill ``cols[b]`` with the column matrix of image ``x[n0 + b]``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), C-contiguous
    n0 : int
        First image of the chunk.
    kh, kw, sh, sw, ph, pw, dh, dw : int
        Kernel size, stride, zero padding and dilation (rows, cols).
    cols : ndarray, shape (B, C*kh*kw, Ho*Wo), C-contiguous, written
        ``cols[b, (c*kh + i)*kw + j, oh*Wo + ow] = xpad[n0+b, c, oh*sh + i*dh, ow*sw + j*dw]``.
    """
    B = cols.shape[0]
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for bc in prange(B * C):
        b = bc // C
        c = bc - b * C
        n = n0 + b
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(Ho, H, i * dh - ph, sh)
            for j in range(kw):
                row = (c * kh + i) * kw + j
                ow_lo, ow_hi = _valid_range(Wo, W, j * dw - pw, sw)
                for oh in range(Ho):
                    base = oh * Wo
                    if oh < oh_lo or oh >= oh_hi:
                        for ow in range(Wo):
                            cols[b, row, base + ow] = 0
                        continue
                    ih = oh * sh + i * dh - ph
                    for ow in range(ow_lo):
                        cols[b, row, base + ow] = 0
                    iw0 = j * dw - pw
                    for ow in range(ow_lo, ow_hi):
                        cols[b, row, base + ow] = x[n, c, ih, ow * sw + iw0]
                    for ow in range(ow_hi, Wo):
                        cols[b, row, base + ow] = 0


@njit(cache=True, parallel=True)
def col2im_chunk(dcols, n0, kh, kw, sh, sw, ph, pw, dh, dw, dx):
    """Set ``dx[n0 + b]`` to the adjoint of :func:`im2col_chunk` applied to ``dcols[b]``.

    Parameters
    ----------
    dcols : ndarray, shape (B, C*kh*kw, Ho*Wo), C-contiguous
    n0 : int
        First image of the chunk.
    kh, kw, sh, sw, ph, pw, dh, dw : int
        As for :func:`im2col_chunk`.
    dx : ndarray, shape (N, C, H, W), C-contiguous
        Planes ``dx[n0:n0+B]`` are overwritten (zeroed, then accumulated).
    """
    B = dcols.shape[0]
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    for bc in prange(B * C):
        b = bc // C
        c = bc - b * C
        n = n0 + b
        for ih in range(H):
            for iw in range(W):
                dx[n, c, ih, iw] = 0
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(Ho, H, i * dh - ph, sh)
            for j in range(kw):
                row = (c * kh + i) * kw + j
                ow_lo, ow_hi = _valid_range(Wo, W, j * dw - pw, sw)
                iw0 = j * dw - pw
                for oh in range(oh_lo, oh_hi):
                    ih = oh * sh + i * dh - ph
                    base = oh * Wo
                    for ow in range(ow_lo, ow_hi):
                        dx[n, c, ih, ow * sw + iw0] += dcols[b, row, base + ow]
