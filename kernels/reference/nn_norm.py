"""Readable twins of :mod:`kernels.nn_norm`: batch normalisation in plain NumPy, NCHW.

Ioffe & Szegedy 2015, alg. 1 (forward) and sec. 3 (backward). Statistics are over the batch and
both spatial axes, one value per channel; ``M = N * H * W`` values per channel.
"""
import numpy as np

AXES = (0, 2, 3)  # batch, rows, columns: everything except the channel axis


def batchnorm_stats(x):
    """Per-channel mean and biased variance of ``x`` (N, C, H, W); float64 (C,) each."""
    x = x.astype(np.float64)
    mean = x.mean(axis=AXES)
    var = ((x - mean[None, :, None, None]) ** 2).mean(axis=AXES)
    return mean, var


def channel_affine(x, scale, shift):
    """``x * scale + shift`` with per-channel vectors broadcast over N, H, W.

    Batch norm's forward is this map with ``scale = gamma / sqrt(var + eps)`` and
    ``shift = beta - mean * scale``.
    """
    c = (None, slice(None), None, None)
    return (x * scale[c] + shift[c]).astype(x.dtype)


def channel_affine_relu(x, scale, shift):
    """``max(x * scale + shift, 0)``: batch norm and the ReLU after it."""
    return np.maximum(channel_affine(x, scale, shift), 0)


def channel_affine_relu6(x, scale, shift):
    """``min(max(x * scale + shift, 0), 6)``: batch norm and the ReLU6 after it."""
    return np.clip(channel_affine(x, scale, shift), 0, 6)


def batchnorm_grad_sums(dy, x, mean):
    """``sum(dy)`` and ``sum(dy * (x - mean))`` per channel (float64)."""
    c = (None, slice(None), None, None)
    xmu = x.astype(np.float64) - mean[c]
    return dy.astype(np.float64).sum(axis=AXES), (dy * xmu).sum(axis=AXES)


def batchnorm_train_dx(dy, x, mean, invstd, gamma, dgamma, dbeta):
    """``dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma)`` per channel."""
    c = (None, slice(None), None, None)
    M = x.shape[0] * x.shape[2] * x.shape[3]
    xhat = (x.astype(np.float64) - mean[c]) * invstd[c]
    dx = gamma[c] * invstd[c] / M * (M * dy - dbeta[c] - xhat * dgamma[c])
    return dx.astype(x.dtype)


def batchnorm_backward(dy, x, mean, invstd, gamma, train=True):
    """The whole backward pass: ``dx, dgamma, dbeta`` (the fast kernel does it in one pass per
    channel). ``train``: the statistics were the batch's and depend on ``x``
    (:func:`batchnorm_train_dx`); otherwise (running statistics) ``dx = gamma * invstd * dy``."""
    c = (None, slice(None), None, None)
    sum_dy, sum_dy_xmu = batchnorm_grad_sums(dy, x, mean)
    dgamma, dbeta = sum_dy_xmu * invstd, sum_dy
    if train:
        dx = batchnorm_train_dx(dy, x, mean, invstd, gamma, dgamma, dbeta)
    else:
        dx = (gamma[c] * invstd[c] * dy).astype(x.dtype)
    return dx, dgamma, dbeta
