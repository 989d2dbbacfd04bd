"""Readable twins of :mod:`kernels.nn_pool`: pooling on NCHW arrays with explicit windows.

Window ``(oi, oj)`` covers rows ``oi * sh - ph + a * dh`` (``a < kh``) and columns likewise;
positions outside the image are padding. Output size (PyTorch, ``ceil_mode=False``):
``OH = (H + 2 ph - dh (kh - 1) - 1) // sh + 1``.
"""
import numpy as np


def pool_output_size(size, kernel, stride, padding, dilation=1):
    """Output length of a pooling (or convolution) along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def maxpool2d_forward(x, kernel, stride, padding, dilation=(1, 1)):
    """Max pooling; returns ``(y, argmax)`` with ``argmax`` the flat in-plane index of each max."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    OH, OW = pool_output_size(H, kh, sh, ph, dh), pool_output_size(W, kw, sw, pw, dw)
    padded = np.full((N, C, H + 2 * ph, W + 2 * pw), -np.inf, dtype=x.dtype)
    padded[:, :, ph:ph + H, pw:pw + W] = x
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int64)
    for oi in range(OH):
        for oj in range(OW):
            rows = oi * sh + dh * np.arange(kh)           # in padded coordinates
            cols = oj * sw + dw * np.arange(kw)
            window = padded[:, :, rows[:, None], cols[None, :]].reshape(N, C, -1)
            k = window.argmax(axis=2)                     # first maximum wins ties
            y[:, :, oi, oj] = np.take_along_axis(window, k[..., None], axis=2)[..., 0]
            r, c = rows[k // kw] - ph, cols[k % kw] - pw  # back to image coordinates
            argmax[:, :, oi, oj] = r * W + c
    return y, argmax


def maxpool2d_backward(dy, argmax, input_shape):
    """Send each output gradient to the input pixel that held the maximum."""
    N, C, H, W = input_shape
    dx = np.zeros((N, C, H * W), dtype=dy.dtype)
    for n in range(N):
        for c in range(C):
            np.add.at(dx[n, c], argmax[n, c].ravel(), dy[n, c].ravel())
    return dx.reshape(input_shape)


def avgpool2d_forward(x, kernel, stride, padding, count_include_pad=True):
    """Average pooling; padding zeros count in the divisor when ``count_include_pad``."""
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = pool_output_size(H, kh, sh, ph), pool_output_size(W, kw, sw, pw)
    padded = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=np.float64)
    padded[:, :, ph:ph + H, pw:pw + W] = x
    real = np.zeros((H + 2 * ph, W + 2 * pw))
    real[ph:ph + H, pw:pw + W] = 1.0                       # 1 where a pixel is not padding
    y = np.empty((N, C, OH, OW), dtype=np.float64)
    for oi in range(OH):
        for oj in range(OW):
            win = (slice(oi * sh, oi * sh + kh), slice(oj * sw, oj * sw + kw))
            count = kh * kw if count_include_pad else real[win].sum()
            y[:, :, oi, oj] = padded[(slice(None), slice(None)) + win].sum(axis=(2, 3)) / count
    return y.astype(x.dtype)


def avgpool2d_backward(dy, input_shape, kernel, stride, padding, count_include_pad=True):
    """Spread each output gradient evenly over its window (the adjoint of the forward)."""
    N, C, H, W = input_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    OH, OW = dy.shape[2:]
    dpadded = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=np.float64)
    real = np.zeros((H + 2 * ph, W + 2 * pw))
    real[ph:ph + H, pw:pw + W] = 1.0
    for oi in range(OH):
        for oj in range(OW):
            win = (slice(oi * sh, oi * sh + kh), slice(oj * sw, oj * sw + kw))
            count = kh * kw if count_include_pad else real[win].sum()
            dpadded[(slice(None), slice(None)) + win] += dy[:, :, oi, oj, None, None] / count
    return dpadded[:, :, ph:ph + H, pw:pw + W].astype(dy.dtype)


def adaptive_bins(size, out):
    """PyTorch's adaptive pooling bins: ``[floor(i * size / out), ceil((i + 1) * size / out))``."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_avgpool2d_forward(x, output_size):
    """Average over adaptive bins so the output is ``output_size`` (OH, OW)."""
    N, C, H, W = x.shape
    OH, OW = output_size
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    for oi, (r0, r1) in enumerate(adaptive_bins(H, OH)):
        for oj, (c0, c1) in enumerate(adaptive_bins(W, OW)):
            y[:, :, oi, oj] = x[:, :, r0:r1, c0:c1].astype(np.float64).mean(axis=(2, 3))
    return y


def adaptive_avgpool2d_backward(dy, input_shape):
    """Spread each output gradient evenly over its bin."""
    N, C, H, W = input_shape
    OH, OW = dy.shape[2:]
    dx = np.zeros(input_shape, dtype=np.float64)
    for oi, (r0, r1) in enumerate(adaptive_bins(H, OH)):
        for oj, (c0, c1) in enumerate(adaptive_bins(W, OW)):
            dx[:, :, r0:r1, c0:c1] += dy[:, :, oi, oj, None, None] / ((r1 - r0) * (c1 - c0))
    return dx.astype(dy.dtype)
