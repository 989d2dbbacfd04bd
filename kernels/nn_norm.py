"""Batch normalisation kernels (Ioffe & Szegedy 2015), NCHW viewed as ``(N, C, L)`` with
``L = H * W``.

The readable twin is ``kernels/reference/nn_norm.py``; the API (validation, running statistics,
modes) is :mod:`cvcore.nn.layers`. Every kernel is serial and ``nogil`` and computes a range of
channels (the statistics and the backward pass) or of planes (the element-wise passes); the
caller splits the range between threads (the statistics and the backward pass in lanes of one
OpenMP loop, :func:`cvcore.nn._lanes.run_lanes`; the element-wise passes in bands,
:func:`cvcore._bands.run_bands`; a ``prange`` here doubled a kernel's cold compile). The
statistics and the backward pass read each channel's ``N`` contiguous rows of ``L`` values and
accumulate in float64; the element-wise passes use per-channel coefficients in the dtype of
``x`` (computed by the caller, or for the backward pass in the kernel, rounded to that dtype), so a float32 pass stays float32 and vectorises. ``x``,
``dy`` and the outputs share one floating dtype (float32 in normal use, float64 in gradient
checks).
The reductions are declared reassociable (``fastmath={"reassoc"}``, nothing else) so LLVM may
split each sum into vector lanes; the inputs are finite (checked by the caller).

With :math:`M = N L` values per channel, :math:`\\hat x = (x - \\mu) / \\sqrt{\\sigma^2 + \\epsilon}`
and :math:`y = \\gamma \\hat x + \\beta`, the backward pass (Ioffe & Szegedy 2015, sec. 3) is

.. math::
    \\partial\\beta = \\sum dy, \\quad \\partial\\gamma = \\sum dy\\,\\hat x, \\quad
    dx = \\frac{\\gamma}{M\\sqrt{\\sigma^2+\\epsilon}}
         \\left(M\\,dy - \\partial\\beta - \\hat x\\,\\partial\\gamma\\right)
"""
from numba import njit

# Only reassociation (sums split over SIMD lanes); no assumptions about NaN, inf or signed zeros.
REASSOC = {"reassoc"}


@njit(cache=True, fastmath=REASSOC, nogil=True, error_model="numpy")
def batchnorm_stats(x, mean, var, c0, c1):
    """Per-channel mean and biased variance by two passes (mean first, then squared deviations).

    Parameters
    ----------
    x : (N, C, L) float32 or float64, C-contiguous
    mean, var : (C,) float64, outputs; ``var`` is the biased (divide by ``M``) variance.
    c0, c1 : int
        The channels in ``[c0, c1)`` are computed (one thread; the caller splits the channels
        between threads with :func:`cvcore.nn._lanes.run_lanes`: a ``prange`` here doubled the
        kernel's cold compile).
    """
    N, C, L = x.shape
    M = N * L
    for c in range(c0, c1):
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


@njit(cache=True, nogil=True)
def channel_affine(x, scale, shift, y, p0, p1):
    """``y[n, c, i] = x[n, c, i] * scale[c] + shift[c]``.

    Batch norm's forward pass in both modes (``scale = gamma * invstd``,
    ``shift = beta - mean * scale``) and its eval-mode input gradient (``shift = 0``).

    Parameters
    ----------
    x : (N, C, L) float, C-contiguous
    scale, shift : (C,) same dtype as ``x``
    y : (N, C, L) same dtype as ``x``, output (may be ``x`` itself)
    p0, p1 : int
        The planes ``p = n * C + c`` in ``[p0, p1)`` are written (one thread; callers split
        the planes between threads with :func:`cvcore._bands.run_bands`: a
        ``prange`` here cost ~0.9 s of cold compile per kernel against ~0.2 s serial).
    """
    C, L = x.shape[1], x.shape[2]
    for p in range(p0, p1):
        n, c = p // C, p % C
        a = scale[c]
        b = shift[c]
        for i in range(L):
            y[n, c, i] = x[n, c, i] * a + b


@njit(cache=True, nogil=True)
def channel_affine_relu(x, scale, shift, y, p0, p1):
    """``y[n, c, i] = max(x[n, c, i] * scale[c] + shift[c], 0)``: batch norm followed by ReLU in
    one pass (the residual blocks' ``relu(bn(conv(x)))``), saving a read and a write of ``y``.

    Parameters
    ----------
    x : (N, C, L) float, C-contiguous
    scale, shift : (C,) same dtype as ``x``
    y : (N, C, L) same dtype as ``x``, output (may be ``x`` itself)
    p0, p1 : int
        The planes ``p = n * C + c`` in ``[p0, p1)`` are written (one thread; callers split
        the planes between threads with :func:`cvcore._bands.run_bands`: a
        ``prange`` here cost ~0.9 s of cold compile per kernel against ~0.2 s serial).
    """
    C, L = x.shape[1], x.shape[2]
    for p in range(p0, p1):
        n, c = p // C, p % C
        a = scale[c]
        b = shift[c]
        for i in range(L):
            v = x[n, c, i] * a + b
            y[n, c, i] = v if v > 0 else 0.0


@njit(cache=True, nogil=True)
def channel_affine_relu6(x, scale, shift, y, p0, p1):
    """``y[n, c, i] = min(max(x[n, c, i] * scale[c] + shift[c], 0), 6)``: batch norm followed by
    ReLU6 in one pass (the inverted-residual blocks' ``relu6(bn(conv(x)))``).

    Parameters
    ----------
    x : (N, C, L) float, C-contiguous
    scale, shift : (C,) same dtype as ``x``
    y : (N, C, L) same dtype as ``x``, output (may be ``x`` itself)
    p0, p1 : int
        The planes ``p = n * C + c`` in ``[p0, p1)`` are written (one thread; callers split
        the planes between threads with :func:`cvcore._bands.run_bands`: a
        ``prange`` here cost ~0.9 s of cold compile per kernel against ~0.2 s serial).
    """
    C, L = x.shape[1], x.shape[2]
    for p in range(p0, p1):
        n, c = p // C, p % C
        a = scale[c]
        b = shift[c]
        for i in range(L):
            v = x[n, c, i] * a + b
            y[n, c, i] = 0.0 if v < 0 else (6.0 if v > 6 else v)


@njit(cache=True, fastmath=REASSOC, nogil=True, error_model="numpy")
def batchnorm_backward(dy, x, mean, invstd, gamma, train, coef, dgamma, dbeta, dx, c0, c1):
    """Batch norm's whole backward pass, channel by channel: the channel's two sums, then its
    input gradient while the channel is still in cache (one pass per channel, not two passes
    over the batch). One thread, for the channels ``[c0, c1)``: the caller splits the channels
    between threads with :func:`cvcore.nn._lanes.run_lanes` (a ``prange`` here doubled the cold
    compile: a parallel loop is a module of its own, ``benchmarks/README.md``).

    Per channel ``c``, with ``M = N L``, ``m = mean[c]``, ``s = invstd[c]``:

    * ``dbeta = sum(dy)``, ``dgamma = s * sum(dy * (x - m))`` (float64 sums of the float
      products ``dy * (x - m)`` in the dtype of ``x``);
    * ``dx = k * dy + slope * (x - m) + shift`` with ``k = gamma[c] * s`` and, in training mode
      (the batch statistics depend on ``x``), ``slope = -k * s * dgamma / M``,
      ``shift = -k * dbeta / M``; in eval mode (running statistics: constants)
      ``slope = shift = 0``, so ``dx = k * dy``. The coefficients are formed in float64 and
      rounded to the dtype of ``x`` (through ``coef``), so a float32 pass stays float32.

    Parameters
    ----------
    dy, x : (N, C, L) float32 or float64, C-contiguous, same dtype
    mean, invstd : (C,) float64
        The statistics the forward pass normalised with (batch or running ones).
    gamma : (C,) same dtype as ``x``
    train : bool
    coef : (C, 3) same dtype as ``x``, scratch
    dgamma, dbeta : (C,) float64, outputs
    dx : (N, C, L) same dtype as ``x``, output; may be ``dy`` itself (each element of ``dy``
        is read before that element of ``dx`` is written)
    c0, c1 : int
        The channels to compute (``0, C`` for all).
    """
    N, C, L = x.shape
    M = N * L
    for c in range(c0, c1):
        coef[c, 0] = mean[c]                  # the mean in the dtype of x, as the forward
        m = coef[c, 0]
        s1 = 0.0
        s2 = 0.0
        for n in range(N):
            for i in range(L):
                g = dy[n, c, i]
                s1 += g
                s2 += g * (x[n, c, i] - m)
        s = invstd[c]
        dg = s2 * s
        dgamma[c] = dg
        dbeta[c] = s1
        k = gamma[c] * s
        coef[c, 0] = k
        coef[c, 1] = -k * s * dg / M if train else 0.0
        coef[c, 2] = -k * s1 / M if train else 0.0
        a, b, d = coef[c, 0], coef[c, 1], coef[c, 2]
        for n in range(N):
            for i in range(L):
                dx[n, c, i] = a * dy[n, c, i] + b * (x[n, c, i] - m) + d
