"""Batch normalisation kernels (Ioffe & Szegedy 2015), NCHW viewed as ``(N, C, L)`` with
``L = H * W``.

The readable twin is ``kernels/reference/nn_norm.py``; the API (validation, running statistics,
modes) is :mod:`cvcore.nn.layers`. Every kernel runs one channel per parallel iteration
(``prange`` over ``C``), reads each channel's ``N`` contiguous rows of ``L`` values and accumulates
in float64. Per-channel vectors (``mean``, ``invstd``) are float64; ``x``, ``dy`` and the outputs
share one floating dtype (float32 in normal use, float64 in gradient checks).

With :math:`M = N L` values per channel, :math:`\\hat x = (x - \\mu) / \\sqrt{\\sigma^2 + \\epsilon}`
and :math:`y = \\gamma \\hat x + \\beta`, the backward pass (Ioffe & Szegedy 2015, sec. 3) is

.. math::
    \\partial\\beta = \\sum dy, \\quad \\partial\\gamma = \\sum dy\\,\\hat x, \\quad
    dx = \\frac{\\gamma}{M\\sqrt{\\sigma^2+\\epsilon}}
         \\left(M\\,dy - \\partial\\beta - \\hat x\\,\\partial\\gamma\\right)
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def batchnorm_stats(x, mean, var):
    """Per-channel mean and biased variance by two passes (mean first, then squared deviations).

    Parameters
    ----------
    x : (N, C, L) float32 or float64, C-contiguous
    mean, var : (C,) float64, outputs; ``var`` is the biased (divide by ``M``) variance.
    """
    N, C, L = x.shape
    M = N * L
    for c in prange(C):
        s = 0.0
        for n in range(N):
            for i in range(L):
                s += x[n, c, i]
        m = s / M
        ss = 0.0
        for n in range(N):
            for i in range(L):
                d = x[n, c, i] - m
                ss += d * d
        mean[c] = m
        var[c] = ss / M


@njit(cache=True, parallel=True)
def batchnorm_normalize(x, mean, invstd, gamma, beta, y):
    """``y = (x - mean[c]) * invstd[c] * gamma[c] + beta[c]`` per channel.

    Parameters
    ----------
    x : (N, C, L) float, C-contiguous
    mean, invstd : (C,) float64
    gamma, beta : (C,) same dtype as ``x``
    y : (N, C, L) same dtype as ``x``, output (may be ``x`` itself)
    """
    N, C, L = x.shape
    for c in prange(C):
        scale = invstd[c] * gamma[c]
        shift = beta[c] - mean[c] * scale
        for n in range(N):
            for i in range(L):
                y[n, c, i] = x[n, c, i] * scale + shift


@njit(cache=True, parallel=True)
def batchnorm_grad_sums(dy, x, mean, invstd, dgamma, dbeta):
    """``dbeta[c] = sum(dy)``, ``dgamma[c] = sum(dy * xhat)`` over batch and space.

    Parameters
    ----------
    dy, x : (N, C, L) float, C-contiguous, same dtype
    mean, invstd : (C,) float64
    dgamma, dbeta : (C,) float64, outputs
    """
    N, C, L = x.shape
    for c in prange(C):
        m = mean[c]
        sdy = 0.0
        sdyx = 0.0
        for n in range(N):
            for i in range(L):
                g = dy[n, c, i]
                sdy += g
                sdyx += g * (x[n, c, i] - m)
        dbeta[c] = sdy
        dgamma[c] = sdyx * invstd[c]


@njit(cache=True, parallel=True)
def batchnorm_train_dx(dy, x, mean, invstd, gamma, dgamma, dbeta, dx):
    """Input gradient of training-mode batch norm (batch statistics depend on ``x``).

    ``dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma)``, written per element as
    ``dx = k * dy - k * dbeta / M - k * invstd * dgamma / M * (x - mean)`` with ``k = gamma*invstd``.

    Parameters
    ----------
    dy, x : (N, C, L) float, C-contiguous, same dtype
    mean, invstd, dgamma, dbeta : (C,) float64
    gamma : (C,) same dtype as ``x``
    dx : (N, C, L) same dtype as ``x``, output (may alias ``dy``)
    """
    N, C, L = x.shape
    M = N * L
    for c in prange(C):
        k = gamma[c] * invstd[c]
        shift = -k * dbeta[c] / M
        slope = -k * invstd[c] * dgamma[c] / M
        m = mean[c]
        for n in range(N):
            for i in range(L):
                dx[n, c, i] = k * dy[n, c, i] + slope * (x[n, c, i] - m) + shift
