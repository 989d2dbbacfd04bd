"""Batch normalisation kernels (Ioffe & Szegedy 2015), NCHW viewed as ``(N, C, L)`` with
``L = H * W``.

The readable twin is ``kernels/reference/nn_norm.py``; the API (validation, running statistics,
modes) is :mod:`cvcore.nn.layers`. Every kernel runs one channel per parallel iteration
(``prange`` over ``C``), reads each channel's ``N`` contiguous rows of ``L`` values and accumulates
in float64; the element-wise passes use per-channel coefficients (``(C,)`` arrays, computed by the
caller) in the dtype of ``x``, so a float32 pass stays float32 and vectorises. ``x``, ``dy`` and
the outputs share one floating dtype (float32 in normal use, float64 in gradient checks).
The reductions are declared reassociable (``fastmath={"reassoc"}``, nothing else) so LLVM may
split each sum into vector lanes; the inputs are finite (checked by the caller).

With :math:`M = N L` values per channel, :math:`\\hat x = (x - \\mu) / \\sqrt{\\sigma^2 + \\epsilon}`
and :math:`y = \\gamma \\hat x + \\beta`, the backward pass (Ioffe & Szegedy 2015, sec. 3) is

.. math::
    \\partial\\beta = \\sum dy, \\quad \\partial\\gamma = \\sum dy\\,\\hat x, \\quad
    dx = \\frac{\\gamma}{M\\sqrt{\\sigma^2+\\epsilon}}
         \\left(M\\,dy - \\partial\\beta - \\hat x\\,\\partial\\gamma\\right)
"""
from numba import njit, prange

# Only reassociation (sums split over SIMD lanes); no assumptions about NaN, inf or signed zeros.
REASSOC = {"reassoc"}


@njit(cache=True, parallel=True, fastmath=REASSOC, nogil=True)
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


@njit(cache=True, parallel=True, nogil=True)
def channel_affine(x, scale, shift, y):
    """``y[n, c, i] = x[n, c, i] * scale[c] + shift[c]``.

    Batch norm's forward pass in both modes (``scale = gamma * invstd``,
    ``shift = beta - mean * scale``) and its eval-mode input gradient (``shift = 0``).

    Parameters
    ----------
    x : (N, C, L) float, C-contiguous
    scale, shift : (C,) same dtype as ``x``
    y : (N, C, L) same dtype as ``x``, output (may be ``x`` itself)
    """
    N, C, L = x.shape
    for c in prange(C):
        a = scale[c]
        b = shift[c]
        for n in range(N):
            for i in range(L):
                y[n, c, i] = x[n, c, i] * a + b


@njit(cache=True, parallel=True, nogil=True)
def channel_affine_relu(x, scale, shift, y):
    """``y[n, c, i] = max(x[n, c, i] * scale[c] + shift[c], 0)``: batch norm followed by ReLU in
    one pass (the residual blocks' ``relu(bn(conv(x)))``), saving a read and a write of ``y``.

    Parameters
    ----------
    x : (N, C, L) float, C-contiguous
    scale, shift : (C,) same dtype as ``x``
    y : (N, C, L) same dtype as ``x``, output (may be ``x`` itself)
    """
    N, C, L = x.shape
    for c in prange(C):
        a = scale[c]
        b = shift[c]
        for n in range(N):
            for i in range(L):
                v = x[n, c, i] * a + b
                y[n, c, i] = v if v > 0 else 0.0


@njit(cache=True, parallel=True, nogil=True)
def channel_affine_relu6(x, scale, shift, y):
    """``y[n, c, i] = min(max(x[n, c, i] * scale[c] + shift[c], 0), 6)``: batch norm followed by
    ReLU6 in one pass (the inverted-residual blocks' ``relu6(bn(conv(x)))``).

    Parameters
    ----------
    x : (N, C, L) float, C-contiguous
    scale, shift : (C,) same dtype as ``x``
    y : (N, C, L) same dtype as ``x``, output (may be ``x`` itself)
    """
    N, C, L = x.shape
    for c in prange(C):
        a = scale[c]
        b = shift[c]
        for n in range(N):
            for i in range(L):
                v = x[n, c, i] * a + b
                y[n, c, i] = 0.0 if v < 0 else (6.0 if v > 6 else v)


@njit(cache=True, parallel=True, fastmath=REASSOC, nogil=True)
def batchnorm_grad_sums(dy, x, mean, sum_dy, sum_dy_xmu):
    """``sum_dy[c] = sum(dy)`` and ``sum_dy_xmu[c] = sum(dy * (x - mean[c]))`` over batch and
    space; then ``dbeta = sum_dy`` and ``dgamma = sum_dy_xmu * invstd``.

    Parameters
    ----------
    dy, x : (N, C, L) float, C-contiguous, same dtype
    mean : (C,) same dtype as ``x``
    sum_dy, sum_dy_xmu : (C,) float64, outputs
    """
    N, C, L = x.shape
    for c in prange(C):
        m = mean[c]
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            for i in range(L):
                g = dy[n, c, i]
                s1 += g
                s2 += g * (x[n, c, i] - m)
        sum_dy[c] = s1
        sum_dy_xmu[c] = s2


@njit(cache=True, parallel=True, nogil=True)
def batchnorm_train_dx(dy, x, mean, k, slope, shift, dx):
    """Input gradient of training-mode batch norm (batch statistics depend on ``x``).

    ``dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma)`` is, per element,
    ``dx = k * dy + slope * (x - mean) + shift`` with the per-channel coefficients
    ``k = gamma * invstd``, ``slope = -k * invstd * dgamma / M``, ``shift = -k * dbeta / M``.

    Parameters
    ----------
    dy, x : (N, C, L) float, C-contiguous, same dtype
    mean, k, slope, shift : (C,) same dtype as ``x``
    dx : (N, C, L) same dtype as ``x``, output (may alias ``dy``)
    """
    N, C, L = x.shape
    for c in prange(C):
        m = mean[c]
        a = k[c]
        b = slope[c]
        d = shift[c]
        for n in range(N):
            for i in range(L):
                dx[n, c, i] = a * dy[n, c, i] + b * (x[n, c, i] - m) + d
