"""Readable NumPy twin of :mod:`kernels.nn_dwconv` and of grouped convolution in general.

A convolution with ``groups = G`` (PyTorch's ``Conv2d(..., groups=G)``; Krizhevsky et al. 2012
split AlexNet into two such groups) cuts the ``C`` input and ``K`` output channels into ``G``
equal groups; output group ``g`` is an ordinary convolution of input group ``g`` with its own
``K/G`` kernels of ``C/G`` channels each, so the weight has shape ``(K, C/G, kh, kw)``.
Depthwise convolution is the case ``G = C`` (Howard et al. 2017, sec. 3.1): every channel is
filtered on its own (``K = C*m``; output channel ``k`` reads input channel ``k // m``).

Padding here is ``(top, bottom, left, right)`` so that TensorFlow's asymmetric 'SAME' padding
(the extra row and column at the bottom and right) is one call.
"""
from __future__ import annotations

import numpy as np

from kernels.reference import nn_conv


def grouped_conv2d_forward(x, w, b, stride, padding, dilation, groups):
    """``y`` (N, K, Ho, Wo) of a grouped convolution: one :func:`nn_conv` convolution per
    group, on the explicitly zero-padded input.

    Parameters
    ----------
    x : ndarray (N, C, H, W)
    w : ndarray (K, C // groups, kh, kw)
    b : ndarray (K,) or None
    stride, dilation : pair of int
    padding : (top, bottom, left, right)
    groups : int
    """
    pt, pb, pl, pr = padding
    xpad = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    C, K = x.shape[1], w.shape[0]
    cg, kg = C // groups, K // groups
    outs = []
    for g in range(groups):
        y, _ = nn_conv.conv2d_forward(xpad[:, g * cg:(g + 1) * cg], w[g * kg:(g + 1) * kg],
                                      None if b is None else b[g * kg:(g + 1) * kg],
                                      stride, (0, 0), dilation)
        outs.append(y)
    return np.concatenate(outs, axis=1)


def grouped_conv2d_backward(dy, x, w, stride, padding, dilation, groups):
    """``(dx, dw, db)`` of :func:`grouped_conv2d_forward`: each group's gradients by the
    reference convolution's backward pass, the padding cropped off ``dx``."""
    pt, pb, pl, pr = padding
    xpad = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    C, K = x.shape[1], w.shape[0]
    cg, kg = C // groups, K // groups
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    for g in range(groups):
        xg = xpad[:, g * cg:(g + 1) * cg]
        wg = w[g * kg:(g + 1) * kg]
        _, cols = nn_conv.conv2d_forward(xg, wg, None, stride, (0, 0), dilation)
        dxg, dwg, _ = nn_conv.conv2d_backward(dy[:, g * kg:(g + 1) * kg], xg.shape, wg, cols,
                                              False, stride, (0, 0), dilation)
        dxpad[:, g * cg:(g + 1) * cg] = dxg
        dw[g * kg:(g + 1) * kg] = dwg
    H, W = x.shape[2], x.shape[3]
    return dxpad[:, :, pt:pt + H, pl:pl + W], dw, dy.sum(axis=(0, 2, 3))


def depthwise_conv2d_forward(x, w, b, stride, padding, dilation, out_size):
    """The depthwise convolution written as a loop over taps (each a shifted, strided view):
    ``y[:, k] = b[k] + sum_{i, j} w[k, 0, i, j] * (shifted, strided view of xpad[:, k // m])``.

    ``out_size = (Ho, Wo)``; ``xpad`` is padded at the bottom/right as far as that needs.
    """
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    m = K // C
    (sh, sw), (dh, dw), (Ho, Wo) = stride, dilation, out_size
    pt, pl = padding
    xpad = np.zeros((N, C, max(pt + H, (Ho - 1) * sh + dh * (kh - 1) + 1),
                     max(pl + W, (Wo - 1) * sw + dw * (kw - 1) + 1)), dtype=x.dtype)
    xpad[:, :, pt:pt + H, pl:pl + W] = x
    xk = np.repeat(xpad, m, axis=1)                     # input channel of every output channel
    y = np.zeros((N, K, Ho, Wo), dtype=np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            view = xk[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                      j * dw:j * dw + sw * (Wo - 1) + 1:sw]
            y += w[None, :, 0, i, j, None, None] * view
    if b is not None:
        y += b[None, :, None, None]
    return y


def depthwise_conv2d_phases(x, w, scale, shift, clamp, stride, padding, dilation, out_size):
    """The depthwise convolution as :mod:`kernels.nn_dwconv` lays it out, in NumPy, followed by
    the kernel's epilogue ``min(max(y * scale + shift, lo), hi)``.

    1. Each input plane, zero-padded, is split into its ``sh * sw`` phases
       ``xph[a, b] = xpad[a::sh, b::sw]``, cut or zero-extended to ``Hq x Wq`` with
       ``Hq = Ho + ((kh-1)*dh) // sh`` and ``Wq = Wo + ((kw-1)*dw) // sw``.
    2. Tap ``(i, j)`` reads phase ``(i*dh % sh, j*dw % sw)`` shifted by
       ``(i*dh // sh, j*dw // sw)``; in the flattened phases that is one window at offset
       ``off(i, j)``, and output ``(oh, ow)`` sits at flat position ``oh*Wq + ow``, so every tap
       adds ``w[i, j] * xph_flat[off + p]`` over all ``p`` at once (the columns
       ``Wo..Wq-1`` of each row are computed and dropped).

    ``scale``, ``shift``: (K,); ``clamp``: ``(lo, hi)``; ``padding``: ``(top, left)``;
    ``out_size``: ``(Ho, Wo)``.
    """
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    m = K // C
    (sh, sw), (dh, dw), (Ho, Wo), (pt, pl) = stride, dilation, out_size, padding
    Hq, Wq = Ho + ((kh - 1) * dh) // sh, Wo + ((kw - 1) * dw) // sw
    rows, cols = Hq * sh, Wq * sw
    xpad = np.zeros((N, C, max(rows, pt + H), max(cols, pl + W)), dtype=x.dtype)
    xpad[:, :, pt:pt + H, pl:pl + W] = x
    xpad = xpad[:, :, :rows, :cols]
    # phases[n, c, a*sw + b] = xpad[n, c, a::sh, b::sw], flattened to Hq*Wq values
    phases = np.stack([xpad[:, :, a::sh, b::sw].reshape(N, C, Hq * Wq)
                       for a in range(sh) for b in range(sw)], axis=2)
    flat = np.repeat(phases.reshape(N, C, -1), m, axis=1)     # (N, K, sh*sw*Hq*Wq)
    P = (Ho - 1) * Wq + Wo                                    # flat positions needed
    acc = np.zeros((N, K, Ho * Wq), dtype=np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            phase = ((i * dh) % sh) * sw + (j * dw) % sw
            off = (phase * Hq + (i * dh) // sh) * Wq + (j * dw) // sw
            acc[:, :, :P] += w[None, :, 0, i, j, None] * flat[:, :, off:off + P]
    y = acc.reshape(N, K, Ho, Wq)[:, :, :, :Wo]
    y = y * scale[None, :, None, None] + shift[None, :, None, None]
    return np.clip(y, clamp[0], clamp[1])
