"""Grouped and depthwise 2-D convolution, TensorFlow's 'SAME' padding, ReLU6.

Grouped convolution (PyTorch's ``Conv2d(..., groups=G)``): the ``C`` input and ``K`` output
channels are cut into ``G`` equal groups and output group ``g`` is an ordinary convolution of
input group ``g``; the weight is ``(K, C/G, kh, kw)``::

    y[n, k, oh, ow] = b[k] + sum_{c' < C/G, i, j} w[k, c', i, j]
                      * xpad[n, (k // (K/G)) * (C/G) + c', oh*sh + i*dh, ow*sw + j*dw]

* ``G = C`` (depthwise; Howard et al. 2017, sec. 3.1; Sandler et al. 2018, sec. 3.2) runs
  through its own kernels (:mod:`kernels.nn_dwconv`): one filter per channel is a memory-bound
  stencil, not a matrix product.
* Any other ``G > 1`` runs each group through the dense convolution (:mod:`cvcore.nn.conv`).

Padding is PyTorch's symmetric ``(ph, pw)``, or ``(top, bottom, left, right)``: TensorFlow's
'SAME' padding of a strided convolution puts the odd row and column at the bottom and right
(:func:`same_padding`), which EfficientNet's weights were trained with. The depthwise kernels take
the top/left padding and the output size, so asymmetric padding costs nothing there; a dense or
grouped convolution with asymmetric padding pads its input explicitly (one copy; EfficientNet has
one such layer, its stem).

The readable twin of all of this is :mod:`kernels.reference.nn_dwconv`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cvcore._validate import (check_array, check_cache, check_finite, check_grad, check_int,
                              check_pair)
from cvcore.nn.layers import _Activation, _kernels, elementwise

__all__ = ["grouped_conv2d_forward", "grouped_conv2d_backward", "GroupedConv2dCache",
           "depthwise_conv2d_affine",
           "same_padding", "ReLU6", "ReLU6Cache", "relu6_forward", "relu6_backward", "RELU6_CAP"]

RELU6_CAP = 6.0          # ReLU6 = min(max(x, 0), 6) (Krizhevsky 2010; Howard et al. 2017)


def same_padding(size, kernel, stride, dilation=1):
    """TensorFlow's 'SAME' padding along one axis: ``(before, after)``.

    The output has ``ceil(size / stride)`` values; the padding needed for that,
    ``max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)``, is split with the
    smaller half before (TensorFlow's ``get_pad`` in ``conv_ops``; EfficientNet-PyTorch's
    ``Conv2dStaticSamePadding``).

    Examples
    --------
    >>> same_padding(224, 3, 2)       # the odd row goes to the bottom
    (0, 1)
    >>> same_padding(112, 5, 2)
    (1, 2)
    >>> same_padding(56, 3, 1)
    (1, 1)
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _padding4(padding, name):
    """``(top, bottom, left, right)`` from an int, a pair or a 4-tuple."""
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        out = tuple(check_int(p, f"{name} padding", 0) for p in padding)
        return out
    ph, pw = check_pair(padding, f"{name} padding", 0)
    return ph, ph, pw, pw


class GroupedConv2dCache(NamedTuple):
    """What :func:`grouped_conv2d_backward` needs (``x`` is the forward input itself)."""
    x: np.ndarray            # (N, C, H, W) compute dtype, C-contiguous
    w: np.ndarray            # (K, C // groups, kh, kw)
    has_bias: bool
    stride: tuple
    padding: tuple           # (top, bottom, left, right)
    dilation: tuple
    groups: int


def _lanes():
    import numba
    return numba.get_num_threads()


def _output_size(size, pad_before, pad_after, kernel, stride, dilation):
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def _is_depthwise(C, w, groups):
    return groups == C and w.shape[1] == 1


def _prepare(x, w, b, stride, padding, dilation, groups, name, check_input):
    """The argument checks of :func:`grouped_conv2d_forward`: contiguous ``x, w`` and ``bias``
    (zeros for none) of the compute dtype, the geometry as pairs / a 4-tuple, the output size."""
    stride = check_pair(stride, f"{name} stride", 1)
    dilation = check_pair(dilation, f"{name} dilation", 1)
    padding = _padding4(padding, name)
    groups = check_int(groups, f"{name} groups", 1)
    x = check_array(x, f"{name} input", ndim=4, dtypes="buif")
    w = check_array(w, f"{name} weight", ndim=4, dtypes="buif")
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    if Cg * groups != C:
        raise ValueError(f"{name}: expected {Cg * groups} input channels ({groups} groups of "
                         f"{Cg}), got {C} (input shape {x.shape})")
    if K % groups:
        raise ValueError(f"{name}: groups={groups} must divide the output channels ({K})")
    if b is not None:
        b = check_array(b, f"{name} bias", ndim=1, dtypes="buif")
        if b.shape[0] != K:
            raise ValueError(f"{name}: bias has {b.shape[0]} values for {K} output channels")
    pt, pb, pl, pr = padding
    for axis, size, k, before, after, d in (("height", H, kh, pt, pb, dilation[0]),
                                            ("width", W, kw, pl, pr, dilation[1])):
        if size + before + after < d * (k - 1) + 1:
            raise ValueError(f"{name}: input {axis} {size} with padding ({before}, {after}) is "
                             f"{size + before + after}, smaller than the (dilated) kernel "
                             f"{d * (k - 1) + 1}")
    if check_input:
        check_finite(x, f"{name} input")
    dtype = np.float64 if np.float64 in (x.dtype, w.dtype, None if b is None else b.dtype) \
        else np.float32
    x = np.ascontiguousarray(x, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    bias = np.zeros(K, dtype=dtype) if b is None else np.ascontiguousarray(b, dtype=dtype)
    Ho = _output_size(H, pt, pb, kh, stride[0], dilation[0])
    Wo = _output_size(W, pl, pr, kw, stride[1], dilation[1])
    return x, w, bias, stride, padding, dilation, (Ho, Wo)


def grouped_conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
                           name="conv2d", check_input=True):
    """Grouped (or depthwise) convolution ``y = conv(x, w, groups) + b``, PyTorch's semantics.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 (float64 for gradient checks)
    w : ndarray, shape (K, C // groups, kh, kw)
    b : ndarray, shape (K,), or None
    stride, dilation : int or pair of int
    padding : int, pair ``(ph, pw)`` (both sides) or ``(top, bottom, left, right)``
    groups : int, dividing both ``C`` and ``K``
    name : str
        Layer name used in error messages.
    check_input : bool
        Scan ``x`` for NaN and infinity.

    Returns
    -------
    y : ndarray, shape (N, K, Ho, Wo),
        ``Ho = (H + top + bottom - dh*(kh - 1) - 1) // sh + 1`` (``Wo`` likewise)
    cache : GroupedConv2dCache

    Raises
    ------
    ValueError
        Channels not divisible by ``groups``, a weight of the wrong shape, an input smaller than
        the kernel, NaN in ``x``; the message names the layer.
    """
    x, w, bias, stride, padding, dilation, (Ho, Wo) = _prepare(
        x, w, b, stride, padding, dilation, groups, name, check_input)
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    dtype = x.dtype
    pt, pb, pl, pr = padding
    cache = GroupedConv2dCache(x, w, b is not None, stride, padding, dilation, groups)
    if _is_depthwise(C, w, groups):
        y = np.empty((N, K, Ho, Wo), dtype=dtype)
        _kernels("nn_dwconv").dwconv2d_forward(x, w, np.ones(K, dtype=dtype), bias,
                                               np.array([-np.inf, np.inf], dtype=dtype),
                                               *stride, pt, pl, *dilation, _lanes(), y)
        return y, cache
    from cvcore.nn.conv import _run_forward
    xp, pad2 = _padded(x, padding)
    cg, kg = C // groups, K // groups
    y = np.empty((N, K, Ho, Wo), dtype=dtype)
    for g in range(groups):
        xg = np.ascontiguousarray(xp[:, g * cg:(g + 1) * cg])
        y[:, g * kg:(g + 1) * kg] = _run_forward(xg, np.ascontiguousarray(w[g * kg:(g + 1) * kg]),
                                                 bias[g * kg:(g + 1) * kg], stride, pad2,
                                                 dilation)
    return y, cache


def depthwise_conv2d_affine(x, w, scale, shift, stride=1, padding=0, dilation=1, clamp=None,
                            name="conv2d", check_input=True):
    """Depthwise convolution with a per-channel affine map and a clamp applied as the output
    leaves the kernel, in one pass (inference: no cache is kept)::

        y[n, k] = min(max(dwconv(x, w)[n, k] * scale[k] + shift[k], lo), hi)

    An eval-mode batch norm after the convolution is ``scale = gamma / sqrt(var + eps)``,
    ``shift = beta - mean * scale`` (plus ``bias * scale`` for a convolution with a bias), and
    ReLU6 is ``clamp = (0, 6)``: the inverted-residual block's ``relu6(bn(dwconv(x)))`` without
    the two extra passes over the output (the fusion inference engines apply; e.g. TensorFlow
    Lite folds batch norm into the preceding convolution).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W), float32 (float64 for tests)
    w : ndarray, shape (C*m, 1, kh, kw)
    scale, shift : array_like, shape (C*m,)
    stride, padding, dilation : as :func:`grouped_conv2d_forward`
    clamp : (float, float) or None
        ``(lo, hi)`` with ``lo <= hi``; None for no clamp.
    name : str
    check_input : bool

    Returns
    -------
    y : ndarray, shape (N, C*m, Ho, Wo), the compute dtype
    """
    x = check_array(x, f"{name} input", ndim=4, dtypes="buif")
    w = check_array(w, f"{name} weight", ndim=4, dtypes="buif")
    if w.shape[1] != 1 or w.shape[0] % max(x.shape[1], 1):
        raise ValueError(f"{name}: a depthwise weight has shape (C*m, 1, kh, kw) for "
                         f"C = {x.shape[1]} input channels, got {w.shape}")
    x, w, _, stride, padding, dilation, (Ho, Wo) = _prepare(
        x, w, None, stride, padding, dilation, x.shape[1], name, check_input)
    K = w.shape[0]
    coeffs = []
    for arr, what in ((scale, "scale"), (shift, "shift")):
        arr = check_array(arr, f"{name} {what}", ndim=1, dtypes="buif")
        if arr.shape != (K,):
            raise ValueError(f"{name}: {what} has shape {arr.shape}, expected ({K},)")
        check_finite(arr, f"{name} {what}")
        coeffs.append(np.ascontiguousarray(arr, dtype=x.dtype))
    lo, hi = (-np.inf, np.inf) if clamp is None else clamp
    if not (isinstance(lo, (int, float, np.number)) and isinstance(hi, (int, float, np.number))
            and lo <= hi) or np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"{name}: clamp must be a pair (lo, hi) of numbers with lo <= hi, "
                         f"got {clamp!r}")
    y = np.empty((x.shape[0], K, Ho, Wo), dtype=x.dtype)
    _kernels("nn_dwconv").dwconv2d_forward(x, w, coeffs[0], coeffs[1],
                                           np.array([lo, hi], dtype=x.dtype), *stride,
                                           padding[0], padding[2], *dilation, _lanes(), y)
    return y


def _padded(x, padding):
    """``x`` and the symmetric padding to give the dense kernel: ``x`` itself when the padding
    is symmetric, else ``x`` explicitly zero-padded and no further padding."""
    pt, pb, pl, pr = padding
    if pt == pb and pl == pr:
        return x, (pt, pl)
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))), (0, 0)


def _check_cache(cache):
    """The cache's ``x`` and ``w``, checked to be what :func:`grouped_conv2d_forward` made (the
    kernels index them without bounds checks)."""
    check_cache(cache, GroupedConv2dCache, "grouped_conv2d_backward")
    x, w = cache.x, cache.w
    for a, what in ((x, "x"), (w, "w")):
        if not isinstance(a, np.ndarray) or a.ndim != 4 or not a.flags.c_contiguous or \
                a.dtype not in (np.float32, np.float64):
            raise TypeError(f"grouped_conv2d_backward: cache.{what} must be a C-contiguous 4-d "
                            f"float32/float64 array from the forward pass")
    groups = check_int(cache.groups, "cache.groups", 1)
    if x.dtype != w.dtype or w.shape[1] * groups != x.shape[1] or w.shape[0] % groups:
        raise ValueError(f"grouped_conv2d_backward: cache.x {x.dtype} {x.shape} and cache.w "
                         f"{w.dtype} {w.shape} do not belong to one forward pass with "
                         f"groups={groups}")
    padding = _padding4(cache.padding, "cache")
    stride = check_pair(cache.stride, "cache.stride", 1)
    dilation = check_pair(cache.dilation, "cache.dilation", 1)
    for size, k, before, after, d in ((x.shape[2], w.shape[2], padding[0], padding[1],
                                       dilation[0]),
                                      (x.shape[3], w.shape[3], padding[2], padding[3],
                                       dilation[1])):
        if size + before + after < d * (k - 1) + 1:
            raise ValueError("grouped_conv2d_backward: the cached input is smaller than the "
                             "kernel")
    del stride
    return x, w


def grouped_conv2d_backward(dy, cache, need_dx=True, need_dw=True):
    """Gradients of :func:`grouped_conv2d_forward`.

    Depthwise: :func:`kernels.nn_dwconv.dwconv2d_input_grad` and ``dwconv2d_weight_grad``; other
    groups: each group's dense backward pass (:func:`cvcore.nn.conv.conv2d_backward`), the
    explicit padding cropped off ``dx``.

    Returns
    -------
    dx : ndarray (N, C, H, W) or None; dw : ndarray (K, C // groups, kh, kw) or None;
    db : ndarray (K,) or None (no bias, or ``need_dw`` false)
    """
    x, w = _check_cache(cache)
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    pt, pb, pl, pr = cache.padding
    Ho = _output_size(H, pt, pb, kh, cache.stride[0], cache.dilation[0])
    Wo = _output_size(W, pl, pr, kw, cache.stride[1], cache.dilation[1])
    dy = check_grad(dy, "grouped_conv2d_backward dy", (N, K, Ho, Wo), x.dtype)
    db = dy.sum(axis=(0, 2, 3)) if (cache.has_bias and need_dw) else None
    if _is_depthwise(C, w, cache.groups):
        nk = _kernels("nn_dwconv")
        dx = dw = None
        if need_dx:
            dx = np.empty_like(x)
            nk.dwconv2d_input_grad(dy, w, *cache.stride, pt, pl, *cache.dilation, _lanes(), dx)
        if need_dw:
            dw = np.empty_like(w)
            nk.dwconv2d_weight_grad(x, dy, *cache.stride, pt, pl, *cache.dilation, _lanes(), dw)
        return dx, dw, db
    from cvcore.nn.conv import Conv2dCache, conv2d_backward
    xp, pad2 = _padded(x, cache.padding)
    G = cache.groups
    cg, kg = C // G, K // G
    dxp = np.empty_like(xp) if need_dx else None
    dw = np.empty_like(w) if need_dw else None
    for g in range(G):
        sub = Conv2dCache(np.ascontiguousarray(xp[:, g * cg:(g + 1) * cg]),
                          np.ascontiguousarray(w[g * kg:(g + 1) * kg]), False, cache.stride,
                          pad2, cache.dilation)
        dxg, dwg, _ = conv2d_backward(dy[:, g * kg:(g + 1) * kg], sub, need_dx, need_dw)
        if need_dx:
            dxp[:, g * cg:(g + 1) * cg] = dxg
        if need_dw:
            dw[g * kg:(g + 1) * kg] = dwg
    dx = None
    if need_dx:
        dx = dxp if xp is x else np.ascontiguousarray(dxp[:, :, pt:pt + H, pl:pl + W])
    return dx, dw, db


# ------------------------------------------------------------------------------------------------
# ReLU6
# ------------------------------------------------------------------------------------------------
class ReLU6Cache(NamedTuple):
    y: np.ndarray          # the forward output: the gradient passes where 0 < y < 6


def relu6_forward(x, inplace=False):
    """``y = min(max(x, 0), 6)`` (PyTorch's ``relu6``; Howard et al. 2017, sec. 3.1, who chose
    it for its robustness in low precision).

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64, C-contiguous
    inplace : bool
        Write the result into ``x``.

    Returns
    -------
    y : ndarray like ``x``; cache : ReLU6Cache
    """
    y = x if inplace else np.empty_like(x)
    elementwise(_kernels("nn_act").relu6_forward, x, y)
    return y, ReLU6Cache(y)


def relu6_backward(dy, cache):
    """``dx = dy`` where ``0 < x < 6`` (read off the output: ``0 < y < 6``), else 0; at the two
    corners the gradient is 0, as PyTorch's ``hardtanh_backward``."""
    check_cache(cache, ReLU6Cache, "relu6_backward")
    y = cache.y
    if not isinstance(y, np.ndarray) or y.dtype not in (np.float32, np.float64) or \
            not y.flags.c_contiguous:
        raise TypeError("relu6_backward: cache.y must be the C-contiguous float output of "
                        "relu6_forward")
    dy = check_grad(dy, "relu6_backward dy", y.shape, y.dtype)
    dx = np.empty_like(y)
    elementwise(_kernels("nn_act").relu6_backward, dy, y, dx)
    return dx


class ReLU6(_Activation):
    """``y = min(max(x, 0), 6)`` element-wise (``torch.nn.ReLU6``).

    Parameters
    ----------
    inplace : bool
        As :class:`cvcore.nn.ReLU`: the input array receives the result when it is already a
        writeable C-contiguous float32/float64 array.
    """

    _forward = staticmethod(relu6_forward)
    _backward = staticmethod(relu6_backward)
