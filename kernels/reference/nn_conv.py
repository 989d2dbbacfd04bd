"""Readable NumPy twin of :mod:`kernels.nn_conv`: 2-D convolution as im2col + one matrix product.

This is the version to read first. The fast kernels compute exactly the same sums but never
build the column matrix: each of its rows is a window of the input laid out as a zero-gapped
"strip", read in place by a register-blocked micro-kernel (:mod:`kernels.nn_conv`).

The convention is PyTorch's ``torch.nn.functional.conv2d`` (a cross-correlation, no kernel flip)::

    y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]

where ``xpad`` is ``x`` with ``ph`` zero rows above and below and ``pw`` zero columns left and
right, and the output size is (PyTorch's ``Conv2d`` documentation, "Shape")::

    Ho = floor((H + 2*ph - dh*(kh - 1) - 1) / sh) + 1       (Wo likewise)

im2col (Chellapilla, Puri & Simard 2006, "High performance convolutional neural networks for
document processing", sec. 2) writes, for every output pixel, the ``C*kh*kw`` input values its
kernel sees as one column; the convolution is then the matrix product ``W (K, C*kh*kw) @ cols``.
The backward pass is the transpose of that linear map:

    dW   = dY @ cols^T                 (summed over the images)
    dcols = W^T @ dY,  dx = col2im(dcols)  (every column entry is added back where it was read)
    db   = sum of dY over n, oh, ow
"""
from __future__ import annotations

import numpy as np


def output_size(size, kernel, stride, padding, dilation):
    """Output length along one axis (PyTorch ``Conv2d`` docs, "Shape")."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kh, kw, stride, padding, dilation):
    """Column matrix of ``x``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kh, kw : int
        Kernel height and width.
    stride, padding, dilation : pair of int
        ``(rows, cols)`` each.

    Returns
    -------
    cols : ndarray, shape (N, C*kh*kw, Ho*Wo)
        ``cols[n, (c*kh + i)*kw + j, oh*Wo + ow] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]``.
    """
    N, C, H, W = x.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    Ho = output_size(H, kh, sh, ph, dh)
    Wo = output_size(W, kw, sw, pw, dw)
    xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((N, C, kh, kw, Ho, Wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            # every output pixel's (i, j) tap: a strided window of the padded image
            cols[:, :, i, j] = xpad[:, :, top:top + sh * (Ho - 1) + 1:sh,
                                    left:left + sw * (Wo - 1) + 1:sw]
    return cols.reshape(N, C * kh * kw, Ho * Wo)


def col2im(dcols, x_shape, kh, kw, stride, padding, dilation):
    """Adjoint of :func:`im2col`: add every column entry back to the input pixel it came from.

    Parameters
    ----------
    dcols : ndarray, shape (N, C*kh*kw, Ho*Wo)
    x_shape : tuple (N, C, H, W)

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    """
    N, C, H, W = x_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    Ho = output_size(H, kh, sh, ph, dh)
    Wo = output_size(W, kw, sw, pw, dw)
    dcols = dcols.reshape(N, C, kh, kw, Ho, Wo)
    dxpad = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            # '+=' on a strided view is safe: within one (i, j) the windows do not overlap
            dxpad[:, :, top:top + sh * (Ho - 1) + 1:sh,
                  left:left + sw * (Wo - 1) + 1:sw] += dcols[:, :, i, j]
    return dxpad[:, :, ph:ph + H, pw:pw + W]


def conv2d_forward(x, w, b, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Reference convolution: ``y = W @ im2col(x) + b``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (K, C, kh, kw)
    b : ndarray, shape (K,), or None
    stride, padding, dilation : pair of int

    Returns
    -------
    y : ndarray, shape (N, K, Ho, Wo)
    cols : ndarray, shape (N, C*kh*kw, Ho*Wo)
        Kept for :func:`conv2d_backward`.
    """
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    Ho = output_size(H, kh, stride[0], padding[0], dilation[0])
    Wo = output_size(W, kw, stride[1], padding[1], dilation[1])
    cols = im2col(x, kh, kw, stride, padding, dilation)
    y = np.matmul(w.reshape(K, -1), cols)            # (N, K, Ho*Wo)
    if b is not None:
        y += b[None, :, None]
    return y.reshape(N, K, Ho, Wo), cols


def conv2d_bn_forward(x, w, gamma, beta, mean, var, eps, stride=(1, 1), padding=(0, 0),
                      dilation=(1, 1), res=None, clamp=(-np.inf, np.inf)):
    """Reference of the fast kernel's inference epilogue: a convolution followed by an
    eval-mode batch norm (Ioffe & Szegedy 2015, the running statistics), an optional residual
    sum and a clamp (ReLU is ``(0, inf)``)::

        scale = gamma / sqrt(var + eps)            (float64, then the dtype of x)
        shift = beta - mean * scale
        y = clip(conv(x, w) * scale + shift [+ res], lo, hi)

    which is a residual block's ``relu(bn(conv(h)) + identity)`` in one expression.
    """
    y, _ = conv2d_forward(x, w, None, stride, padding, dilation)
    var64 = np.asarray(var, np.float64)
    scale = np.asarray(gamma, np.float64) / np.sqrt(var64 + eps)
    shift = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    y = y * scale.astype(x.dtype)[None, :, None, None] + shift.astype(x.dtype)[None, :, None, None]
    if res is not None:
        y = y + res
    return np.clip(y, clamp[0], clamp[1])


def conv2d_backward(dy, x_shape, w, cols, has_bias, stride=(1, 1), padding=(0, 0),
                    dilation=(1, 1)):
    """Reference gradients of :func:`conv2d_forward`.

    Parameters
    ----------
    dy : ndarray, shape (N, K, Ho, Wo)
    x_shape : tuple (N, C, H, W)
    w : ndarray, shape (K, C, kh, kw)
    cols : ndarray, shape (N, C*kh*kw, Ho*Wo), from the forward pass
    has_bias : bool

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    dw : ndarray, shape (K, C, kh, kw)
    db : ndarray, shape (K,), or None when ``has_bias`` is false
    """
    N, K = dy.shape[:2]
    _, C, kh, kw = w.shape
    dy_mat = dy.reshape(N, K, -1)                                   # (N, K, Ho*Wo)
    dw = np.einsum("nkp,nqp->kq", dy_mat, cols).reshape(w.shape)    # dY @ cols^T, summed over n
    dcols = np.matmul(w.reshape(K, -1).T, dy_mat)                   # (N, C*kh*kw, Ho*Wo)
    dx = col2im(dcols, x_shape, kh, kw, stride, padding, dilation)
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db
