"""2-D convolution: the functional forward/backward pair and the :class:`Conv2d` layer.

Convention: PyTorch's ``torch.nn.functional.conv2d`` (a cross-correlation; no kernel flip),
NCHW layout, zero padding, no groups::

    y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]

    Ho = floor((H + 2*ph - dh*(kh - 1) - 1) / sh) + 1        (Wo likewise)

The algorithm is im2col + GEMM (Chellapilla et al. 2006, sec. 2), done in blocks:

1. The work is cut into items of one image x a block of output rows, sized so that the block's
   column matrix (``C*kh*kw`` rows, one column per output pixel) stays in a core's L2 cache.
2. Each thread builds an item's column matrix (for stride 1 in the "padded-width" layout, where
   every row is one contiguous copy of the zero-padded input), multiplies it by the weight matrix
   ``W (K, C*kh*kw)`` with BLAS, and copies the product into the NCHW output.
   All of this runs inside one Numba parallel loop, BLAS single-threaded (see
   :mod:`kernels.nn_conv` for why).
3. Backward: ``dW = sum_n dY_n @ cols_n^T``, ``dcols = W^T @ dY_n`` and ``col2im`` (the adjoint
   of im2col) for ``dx``; ``db`` sums ``dY`` over ``n, oh, ow``. The column matrices are rebuilt
   in the backward pass from the cached input rather than kept: they are ``kh*kw`` times larger
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

from cvcore._validate import check_array, check_finite, check_int, check_pair
from cvcore.nn.module import Module, Parameter, is_grad_enabled

__all__ = ["Conv2d", "Conv2dCache", "conv2d_forward", "conv2d_backward", "conv2d_output_shape"]

# PyTorch's Conv2d.reset_parameters: kaiming_uniform_(weight, a=sqrt(5)), which reduces to
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias is drawn from the same bound.
KAIMING_A = math.sqrt(5.0)

# Bytes of column matrix per work item (one image x a block of output rows): small enough to stay
# in a core's L2 cache (1 MiB on Zen 4) between im2col and the product, large enough to keep the
# product efficient. Measured with ``python -m benchmarks.cnn`` (see benchmarks/README.md).
BLOCK_BYTES = 512 * 2**10


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


def _block_rows(N, Ho, row_bytes, nlanes):
    """Output rows per work item: the item's column matrix takes about BLOCK_BYTES; with fewer
    images than lanes, rows are split further so every lane has work."""
    rows = int(max(1, min(Ho, BLOCK_BYTES // max(1, row_bytes))))
    nblk = -(-Ho // rows)
    if N * nblk < nlanes:
        nblk = min(Ho, -(-nlanes // N))
    return -(-Ho // nblk)


def _forward_blocks(N, K, Ho, row_bytes, weight_bytes, nlanes):
    """``(block_rows, k_blocks)`` of the forward pass.

    Every row block multiplies the whole weight matrix, so when the weights outgrow the cache
    (deep layers: 2.4-9.4 MB in ResNet-50's last stages) and there are fewer images than lanes,
    an item takes the whole image and the lanes split the output channels instead; otherwise
    :func:`_block_rows` and one channel block.
    """
    if N < nlanes and weight_bytes > BLOCK_BYTES:
        return Ho, min(K, -(-nlanes // N))
    return _block_rows(N, Ho, row_bytes, nlanes), 1


class _SingleThreadedBlas:
    """Context manager: the BLAS that Numba's ``np.dot`` calls (SciPy's OpenBLAS) runs
    single-threaded inside, as it is called from every lane of a parallel loop; the previous
    thread count is restored on exit. NumPy's own BLAS is a different library and is untouched.
    Where SciPy's OpenBLAS cannot be found (other platforms or builds) this does nothing.
    """
    _lib = None
    _looked = False

    @classmethod
    def _find(cls):
        if cls._looked:
            return cls._lib
        cls._looked = True
        try:
            import ctypes

            import scipy.linalg.cython_blas  # noqa: F401  (loads the library Numba uses)
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
            for path in sorted(paths):
                if "scipy" not in path or "numpy" in path:
                    continue
                lib = ctypes.CDLL(path)
                for prefix in ("scipy_openblas", "openblas"):
                    get = getattr(lib, f"{prefix}_get_num_threads", None)
                    put = getattr(lib, f"{prefix}_set_num_threads", None)
                    if get is not None and put is not None:
                        get.restype = ctypes.c_int
                        put.argtypes = [ctypes.c_int]
                        cls._lib = (get, put)
                        return cls._lib
        except (OSError, ImportError):
            pass
        return None

    def __enter__(self):
        lib = self._find()
        self._previous = None
        if lib is not None:
            self._previous = lib[0]()
            if self._previous != 1:
                lib[1](1)
        return self

    def __exit__(self, *exc):
        if self._previous is not None and self._previous != 1:
            self._lib[1](self._previous)
        return False


def _lanes():
    import numba
    return numba.get_num_threads()


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
    check_finite(x, f"{name} input")      # np.isfinite is SIMD: ~0.15 ms per 8 MB
    dtype = _compute_dtype(x, w, b)
    x = np.ascontiguousarray(x, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    if b is not None:
        b = np.asarray(b, dtype=dtype)

    _, _, Ho, Wo = conv2d_output_shape(x.shape, w.shape, stride, padding, dilation)
    y = np.empty((N, K, Ho, Wo), dtype=dtype)
    w_mat = w.reshape(K, C * kh * kw)
    nk = _kernels()
    lanes = _lanes()
    with _SingleThreadedBlas():
        if stride == (1, 1):        # includes the 1x1 convolutions (no junk columns then)
            Wp = W + 2 * padding[1]
            rows, kb = _forward_blocks(N, K, Ho, C * kh * kw * Wp * x.itemsize, w.nbytes, lanes)
            nk.conv2d_s1_forward(x, w_mat, kh, kw, *padding, *dilation, rows, kb, lanes, y)
        else:
            rows, kb = _forward_blocks(N, K, Ho, C * kh * kw * Wo * x.itemsize, w.nbytes, lanes)
            nk.conv2d_forward_general(x, w_mat, kh, kw, *stride, *padding, *dilation, rows,
                                      kb, lanes, y)
    if b is not None:
        y.reshape(N, K, Ho * Wo)[...] += b[:, None]
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
    rows = C * kh * kw
    w_mat = w.reshape(K, rows)
    db = dy.sum(axis=(0, 2, 3)) if (cache.has_bias and need_dw) else None
    dx = np.empty((N, C, H, W), dtype=dtype) if need_dx else None
    nk = _kernels()
    lanes = _lanes()
    dw_lanes = np.zeros((lanes if need_dw else 1, K, rows), dtype=dtype)
    if dx is None:
        dx = np.empty((1, 1, 1, 1), dtype=dtype)            # placeholder, not written
    with _SingleThreadedBlas():
        if cache.stride == (1, 1):
            Wp = W + 2 * cache.padding[1]
            brows = _block_rows(N, Ho, rows * Wp * x.itemsize, lanes)
            nk.conv2d_s1_backward(x, w_mat, dy, kh, kw, *cache.padding, *cache.dilation, brows,
                                  lanes, need_dx, need_dw, dx, dw_lanes)
        else:
            brows = _block_rows(N, Ho, rows * Wo * x.itemsize, lanes)
            nk.conv2d_backward_general(x, w_mat, dy, kh, kw, *cache.stride, *cache.padding,
                                       *cache.dilation, brows, lanes, need_dx, need_dw, dx,
                                       dw_lanes)
    dw = dw_lanes.sum(axis=0).reshape(w.shape) if need_dw else None
    return (dx if need_dx else None), dw, db


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
    ``forward`` caches its input (in both modes; nothing inside :func:`cvcore.nn.no_grad`, which
    also drops an older cache); ``backward`` fills
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
        self._cache = cache if is_grad_enabled() else None
        return y

    def backward(self, dy):
        """Fill ``weight.grad`` / ``bias.grad`` and return ``dx`` (N, C, H, W)."""
        if self._cache is None:
            raise RuntimeError(f"{self._name()}: backward called without a forward pass "
                               f"outside cvcore.nn.no_grad() (each forward allows one backward)")
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
