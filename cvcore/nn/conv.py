"""2-D convolution: the functional forward/backward pair and the :class:`Conv2d` layer.

Convention: PyTorch's ``torch.nn.functional.conv2d`` (a cross-correlation; no kernel flip),
NCHW layout, zero padding, no groups::

    y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]

    Ho = floor((H + 2*ph - dh*(kh - 1) - 1) / sh) + 1        (Wo likewise)

The stages (He et al. 2016 use exactly this layer; the algorithm is im2col + GEMM, Chellapilla
et al. 2006, sec. 2):

1. ``im2col``: for a chunk of a few images, write every output pixel's receptive field as one
   column of a ``(C*kh*kw, Ho*Wo)`` matrix per image (Numba, parallel over image-channel planes;
   :mod:`kernels.nn_conv`). A 1x1 convolution with stride 1 and no padding needs no im2col: the
   image itself, viewed as ``(C, H*W)``, is the column matrix.
2. ``W (K, C*kh*kw) @ cols`` per image with NumPy's ``matmul`` (OpenBLAS), written straight into
   the NCHW output.
3. Backward: ``dW = sum_n dY_n @ cols_n^T``, ``dcols = W^T @ dY_n`` and ``col2im`` (the adjoint of
   im2col) for ``dx``; ``db`` sums ``dY`` over ``n, oh, ow``. The column matrices are rebuilt in
   the backward pass from the cached input rather than kept: they are ``kh*kw`` times larger
   than the input, and keeping them for every layer of a network costs more memory than
   rebuilding them costs time.

The readable twin of all of this is :mod:`kernels.reference.nn_conv`.

Precision: float32 is the working precision. float64 inputs (gradient checks) run through the
same kernels in float64. Other numeric inputs (integers, bool, float16) are converted to float32.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from cvcore._validate import check_array, check_int, check_pair
from cvcore.nn.module import Module, Parameter

__all__ = ["Conv2d", "Conv2dCache", "conv2d_forward", "conv2d_backward", "conv2d_output_shape"]

# PyTorch's Conv2d.reset_parameters: kaiming_uniform_(weight, a=sqrt(5)), which reduces to
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias is drawn from the same bound.
KAIMING_A = math.sqrt(5.0)

# Bytes of column matrix built per chunk of images: small enough to stay in the L2/L3 caches
# between im2col and the matrix product, large enough to keep the matrix products efficient.
# Measured with ``python -m benchmarks.cnn`` (see benchmarks/README.md).
CHUNK_BYTES = 4 * 2**20


class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` needs from :func:`conv2d_forward`.

    ``x`` is the forward input itself (not a copy): it must not be modified in place between
    the forward and the backward pass.
    """
    x: np.ndarray            # (N, C, H, W) input, compute dtype, C-contiguous
    w: np.ndarray            # (K, C, kh, kw) weights, compute dtype, C-contiguous
    has_bias: bool
    stride: tuple
    padding: tuple
    dilation: tuple


def _kernels():
    # imported on first use, so ``import cvcore.nn`` does not import Numba
    from kernels import nn_conv
    return nn_conv


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0, dilation=1):
    """``(N, K, Ho, Wo)`` of a convolution, with PyTorch's output-size formula."""
    stride, padding, dilation = _geometry(stride, padding, dilation)
    N, _, H, W = x_shape
    K, _, kh, kw = w_shape
    Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return N, K, Ho, Wo


def _geometry(stride, padding, dilation):
    return (check_pair(stride, "stride", 1), check_pair(padding, "padding", 0),
            check_pair(dilation, "dilation", 1))


def _compute_dtype(*arrays):
    """float64 if any array is float64, else float32."""
    if any(a is not None and a.dtype == np.float64 for a in arrays):
        return np.float64
    return np.float32


def _check_finite_fast(x, name):
    """Raise if ``x`` holds NaN or infinity, at the cost of one summation in the common case.

    A sum of finite values is finite unless it overflows; only then (or when the input really
    holds NaN/inf) is the exact element-wise check run.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = x.sum()
    if not np.isfinite(total):
        bad = np.isnan(x)
        if bad.any():
            raise ValueError(f"{name} contains NaN at {len(np.argwhere(bad))} position(s), "
                             f"first at index {tuple(int(v) for v in np.argwhere(bad)[0])}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains infinity")


def _chunk_images(n_images, rows, cols_per_image, itemsize):
    """Images per chunk so that one chunk's column matrices take about CHUNK_BYTES."""
    per_image = max(1, rows * cols_per_image * itemsize)
    return int(max(1, min(n_images, CHUNK_BYTES // per_image)))


def _is_pointwise(kh, kw, stride, padding):
    return kh == 1 and kw == 1 and stride == (1, 1) and padding == (0, 0)


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, name="conv2d"):
    """Convolve a batch of images: ``y = conv(x, w) + b`` (PyTorch semantics).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 (float64 for gradient checks)
        Integer, bool and float16 inputs are converted to float32.
    w : ndarray, shape (K, C, kh, kw)
    b : ndarray, shape (K,), or None
    stride, padding, dilation : int or pair of int
        ``(rows, cols)``; padding is zero padding on both sides.
    name : str
        Layer name used in error messages.

    Returns
    -------
    y : ndarray, shape (N, K, Ho, Wo), the compute dtype (float32, or float64 if any of
        ``x, w, b`` is float64)
    cache : Conv2dCache

    Raises
    ------
    ValueError
        Wrong number of dimensions, channel mismatch, an input (padded) smaller than the
        (dilated) kernel, or NaN/infinity in ``x``; the message names the layer.
    """
    stride, padding, dilation = _geometry(stride, padding, dilation)
    x = check_array(x, f"{name} input", ndim=4, dtypes="buif")
    w = check_array(w, f"{name} weight", ndim=4, dtypes="buif")
    if b is not None:
        b = check_array(b, f"{name} bias", ndim=1, dtypes="buif")
        if b.shape[0] != w.shape[0]:
            raise ValueError(f"{name}: bias has {b.shape[0]} values for {w.shape[0]} "
                             f"output channels")
    N, C, H, W = x.shape
    K, Cw, kh, kw = w.shape
    if C != Cw:
        raise ValueError(f"{name}: expected {Cw} input channels, got {C} "
                         f"(input shape {x.shape})")
    for axis, size, k, p, d in (("height", H, kh, padding[0], dilation[0]),
                                ("width", W, kw, padding[1], dilation[1])):
        if size + 2 * p < d * (k - 1) + 1:
            raise ValueError(f"{name}: input {axis} {size} with padding {p} is {size + 2 * p}, "
                             f"smaller than the (dilated) kernel {d * (k - 1) + 1}")
    _check_finite_fast(x, f"{name} input")
    dtype = _compute_dtype(x, w, b)
    x = np.ascontiguousarray(x, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    if b is not None:
        b = np.asarray(b, dtype=dtype)

    _, _, Ho, Wo = conv2d_output_shape(x.shape, w.shape, stride, padding, dilation)
    P = Ho * Wo
    rows = C * kh * kw
    w_mat = w.reshape(K, rows)
    y = np.empty((N, K, Ho, Wo), dtype=dtype)
    y_mat = y.reshape(N, K, P)
    if _is_pointwise(kh, kw, stride, padding):
        np.matmul(w_mat, x.reshape(N, C, P), out=y_mat)
    else:
        nk = _kernels()
        B = _chunk_images(N, rows, P, x.itemsize)
        cols = np.empty((B, rows, P), dtype=dtype)
        for n0 in range(0, N, B):
            nb = min(B, N - n0)
            nk.im2col_chunk(x, n0, kh, kw, *stride, *padding, *dilation, cols[:nb])
            np.matmul(w_mat, cols[:nb], out=y_mat[n0:n0 + nb])
    if b is not None:
        y_mat += b[:, None]
    return y, Conv2dCache(x, w, b is not None, stride, padding, dilation)


def conv2d_backward(dy, cache, need_dx=True, need_dw=True):
    """Gradients of :func:`conv2d_forward`.

    .. math::

        dW = \\sum_n dY_n \\, cols_n^T, \\quad dx = \\mathrm{col2im}(W^T dY_n), \\quad
        db_k = \\sum_{n, oh, ow} dY[n, k, oh, ow]

    Parameters
    ----------
    dy : ndarray, shape (N, K, Ho, Wo)
        Gradient of the loss with respect to the output.
    cache : Conv2dCache
        From the forward pass.
    need_dx, need_dw : bool
        Skip the input gradient (first layer) or the weight gradient (frozen layer).

    Returns
    -------
    dx : ndarray, shape (N, C, H, W), or None when not needed
    dw : ndarray, shape (K, C, kh, kw), or None when not needed
    db : ndarray, shape (K,), or None when the forward had no bias (or ``need_dw`` is false)
    """
    x, w = cache.x, cache.w
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    _, _, Ho, Wo = conv2d_output_shape(x.shape, w.shape, cache.stride, cache.padding,
                                       cache.dilation)
    dy = check_array(dy, "conv2d output gradient dy", ndim=4, dtypes="f")
    if dy.shape != (N, K, Ho, Wo):
        raise ValueError(f"conv2d backward: dy has shape {dy.shape}, the forward output had "
                         f"{(N, K, Ho, Wo)}")
    dtype = x.dtype
    dy = np.ascontiguousarray(dy, dtype=dtype)
    P = Ho * Wo
    rows = C * kh * kw
    dy_mat = dy.reshape(N, K, P)
    w_mat = w.reshape(K, rows)
    db = dy_mat.sum(axis=(0, 2)) if (cache.has_bias and need_dw) else None
    dw_mat = np.zeros((K, rows), dtype=dtype) if need_dw else None
    dx = np.empty((N, C, H, W), dtype=dtype) if need_dx else None

    if _is_pointwise(kh, kw, cache.stride, cache.padding):
        x_mat = x.reshape(N, C, P)
        if need_dw:
            for n in range(N):
                dw_mat += dy_mat[n] @ x_mat[n].T
        if need_dx:
            np.matmul(w_mat.T, dy_mat, out=dx.reshape(N, C, P))
    else:
        nk = _kernels()
        geometry = (kh, kw, *cache.stride, *cache.padding, *cache.dilation)
        B = _chunk_images(N, rows, P, x.itemsize)
        cols = np.empty((B, rows, P), dtype=dtype)
        for n0 in range(0, N, B):
            nb = min(B, N - n0)
            dyc = dy_mat[n0:n0 + nb]
            if need_dw:
                nk.im2col_chunk(x, n0, *geometry, cols[:nb])
                for b in range(nb):
                    dw_mat += dyc[b] @ cols[b].T
            if need_dx:
                np.matmul(w_mat.T, dyc, out=cols[:nb])
                nk.col2im_chunk(cols[:nb], n0, *geometry, dx)
    dw = dw_mat.reshape(w.shape) if need_dw else None
    return dx, dw, db


class Conv2d(Module):
    """2-D convolution layer (``torch.nn.Conv2d`` without groups).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or pair of int
    bias : bool
        Whether to learn an additive bias per output channel.
    rng : numpy.random.Generator or int or None
        Source of the initial weights (PyTorch's default initialisation
        ``kaiming_uniform_(a=sqrt(5))``: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        ``fan_in = in_channels * kh * kw``).

    Attributes
    ----------
    weight : Parameter, shape (out_channels, in_channels, kh, kw)
    bias : Parameter, shape (out_channels,), or None

    Notes
    -----
    ``forward`` caches its input in training mode (nothing in eval mode); ``backward`` fills
    ``weight.grad`` and ``bias.grad`` (``None`` for frozen parameters) and returns ``dx``.
    The layer computes in its weight's dtype (float32; float64 if the weight data has been
    replaced by a float64 array, as gradient checks do).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, rng=None):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = check_pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding, self.dilation = _geometry(stride, padding, dilation)
        rng = np.random.default_rng(rng)
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        gain = math.sqrt(2.0 / (1.0 + KAIMING_A ** 2))
        bound = gain * math.sqrt(3.0 / fan_in)          # = 1/sqrt(fan_in)
        self.weight = Parameter(rng.uniform(-bound, bound,
                                            (self.out_channels, self.in_channels, kh, kw)))
        if bias:
            bias_bound = 1.0 / math.sqrt(fan_in)
            self.bias = Parameter(rng.uniform(-bias_bound, bias_bound, self.out_channels))
        else:
            self.bias = None
        self._cache: Optional[Conv2dCache] = None

    def _name(self):
        return f"Conv2d({self.in_channels}->{self.out_channels})"

    def forward(self, x):
        """Convolve ``x`` (N, C, H, W); see :func:`conv2d_forward`."""
        b = None if self.bias is None else self.bias.data
        y, cache = conv2d_forward(x, self.weight.data, b, self.stride, self.padding,
                                  self.dilation, name=self._name())
        self._cache = cache if self.training else None
        return y

    def backward(self, dy):
        """Fill ``weight.grad`` / ``bias.grad`` and return ``dx`` (N, C, H, W)."""
        if self._cache is None:
            raise RuntimeError(f"{self._name()}: backward called without a forward pass in "
                               f"training mode")
        need_dw = self.weight.requires_grad or (self.bias is not None
                                                and self.bias.requires_grad)
        dx, dw, db = conv2d_backward(dy, self._cache, need_dx=True, need_dw=need_dw)
        self.weight.grad = dw if self.weight.requires_grad else None
        if self.bias is not None:
            self.bias.grad = db if self.bias.requires_grad else None
        self._cache = None
        return dx

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s
