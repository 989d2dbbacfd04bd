"""2-D convolution: the functional forward/backward pair and the :class:`Conv2d` layer.

Convention: PyTorch's ``torch.nn.functional.conv2d`` (a cross-correlation; no kernel flip),
NCHW layout, zero padding, no groups::

    y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]

    Ho = floor((H + 2*ph - dh*(kh - 1) - 1) / sh) + 1        (Wo likewise)

Mathematically this is im2col + GEMM (Chellapilla et al. 2006, sec. 2): every output pixel's
``C*kh*kw`` input values form a column, and ``Y = W (K, C*kh*kw) @ cols``. The kernels compute
exactly that product without building ``cols`` (:mod:`kernels.nn_conv`):

1. The input is laid out as a *strip*: each channel of all the images as one long vector with
   zero gaps that serve as the padding (for a strided convolution, the input's phases). Then
   row ``(c, i, j)`` of the column matrix is a window of the strip at a fixed offset, and
   the product reads the windows directly ("implicit GEMM").
2. The product runs in register-blocked tiles (8 output channels x 48 pixels on AVX-512, all
   24 accumulators in vector registers: :mod:`kernels.simd`), the tiles spread over the threads
   of one Numba parallel loop. No BLAS.
3. The bias is added as the output leaves the registers (no extra pass).
4. Backward: ``dW = dY @ cols^T`` is a block of dot products of strip windows; ``dx`` is itself
   a stride-1 convolution of ``dY`` (flipped kernel; for a strided convolution one per phase of
   the input), run by the same forward kernel; ``db`` sums ``dY`` over ``n, oh, ow``. Nothing
   but the input is cached between the passes.

The readable twin of all of this is :mod:`kernels.reference.nn_conv`.

Precision: float32 is the working precision. float64 inputs (gradient checks) run through the
same kernels in float64. Other numeric inputs (integers, bool, float16) are converted to float32.
"""
from __future__ import annotations

import math
import threading
from typing import NamedTuple, Optional

import numpy as np

from cvcore.nn._lanes import run_lanes, threads
from cvcore._validate import check_array, check_cache, check_finite, check_int, check_pair
from cvcore.nn.layers import top_level
from cvcore.nn.module import Module, Parameter, is_grad_enabled

__all__ = ["Conv2d", "Conv2dCache", "conv2d_forward", "conv2d_backward", "conv2d_output_shape"]

# PyTorch's Conv2d.reset_parameters: kaiming_uniform_(weight, a=sqrt(5)), which reduces to
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias is drawn from the same bound.
KAIMING_A = math.sqrt(5.0)

# Bytes of x and dy strip rows per block of positions in the weight gradient: the block is read
# once per tile of (output channel, tap) pairs, so it should stay in a core's L2 cache (1 MiB on
# Zen 4/5). Measured with ``python -m benchmarks.cnn`` (see benchmarks/README.md).
BLOCK_BYTES = 512 * 2**10
#: The narrow tile is taken only where it saves this many multiply-adds per call (~0.07 ms of
#: one thread at the micro-kernel's ~55 G multiply-adds/s, ``benchmarks/README.md``):
#: ResNet-50's 7x7 convolutions at batch 1 save 33-75 M, ResNet-20's 1x1/2 projection at batch
#: 1 (the only ResNet-20 call that would take it) 65 k, and the kernel costs 5 s of compile.
NARROW_MIN_SAVED_MACS = 4 * 10**6

#: Rough one-thread costs, for the lanes a call is worth (:func:`cvcore.nn._lanes.run_lanes`,
#: ``ns=``): the micro-kernel's multiply-adds per nanosecond (see above) and nanoseconds per
#: strip value written (measured 0.4-0.9 ns on one thread, short rows the slower).
MACS_PER_NS = 55
STRIP_NS_PER_VALUE = 0.5

# Output pixels (all images) up to which the weight gradient builds the transposed column matrix
# (positions x C*kh*kw, at most 2048 x 4608 floats = 36 MiB in ResNet-50) instead of taking dot
# products of strip windows: measured crossover ~3000 (``kernels.nn_conv.conv2d_weight_grad_cols``;
# at 49-784 positions 2-25x faster, at 8192 5x slower).
COLS_MAX_POSITIONS = 2048


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


_MODULES: dict = {}


def _kernels(name="nn_conv"):
    """``kernels.<name>``, imported on first use (so ``import cvcore.nn`` does not import
    Numba) and then kept: the serving path calls this a few times per convolution."""
    mod = _MODULES.get(name)
    if mod is None:
        import importlib
        mod = _MODULES[name] = importlib.import_module(f"kernels.{name}")
    return mod


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


def _channel_groups(N, Ho, Wo, K, nlanes):
    """Output-channel groups of the forward: 1 unless there are too few position tiles to give
    every lane about four work items (one image with small planes: ResNet-50's last stages at
    batch 1)."""
    from kernels import simd
    tiles = -(-N * Ho * Wo // simd.TB)
    return int(max(1, min(-(-K // simd.KB), -(-4 * nlanes // tiles))))


def _weight_grad_block(P, rows, itemsize, nlanes):
    """Positions per block of the weight gradient, for ``P`` positions (a multiple of the
    vector length): the block's ``rows = C + K`` strip rows of ``x`` and ``dy`` take at most
    about BLOCK_BYTES, and the blocks come in a multiple of ``nlanes``, so that every lane gets
    as many (the last one may be shorter). Lane ``l`` takes blocks ``l, l + nlanes, ...``: with
    11 blocks of 1024 positions (ResNet-20's 8x8 planes at batch 128) one of two lanes had six
    and the other five, now each has six of 864."""
    from kernels import simd
    vl = simd.VECTOR_BYTES // itemsize
    most = max(vl, BLOCK_BYTES // (rows * itemsize) // vl * vl)
    blocks = -(-P // most)
    blocks = -(-blocks // nlanes) * nlanes
    return int(-(-P // (blocks * vl)) * vl)


class _Strip(NamedTuple):
    """A stride-1 strip as :func:`kernels.nn_conv.fill_strip` wrote it
    (:func:`kernels.nn_conv.strip_geometry`): channel ``c`` of the input at ``data[c*Ls + m0:]``,
    position ``q = n*pitch + h*Wg + w``."""
    data: np.ndarray
    Wg: int
    pitch: int
    m0: int
    Ls: int


def _input_grad(dy, cache, keep=None):
    """``dx`` of a convolution: itself a convolution of ``dy``, run by the forward kernel
    (``keep``: a list that receives the strip of ``dy`` it laid out, :class:`_Strip`).

    Stride 1: ``dx = conv(dy, w')`` with ``w'[c, k, i, j] = w[k, c, kh-1-i, kw-1-j]`` (the
    kernel flipped, input and output channels swapped) and padding ``d*(k-1) - p`` (negative: a
    crop). Stride ``s``: every phase ``(a, b)`` of the zero-padded input's gradient
    (``dxpad[a::sh, b::sw]``) is a stride-1 convolution of ``dy`` with the taps of that phase
    (those with ``i*dh % sh == a``, ``j*dw % sw == b``), flipped. ``dy`` is laid out once, as
    for a kernel of the phases' common reach; each phase is one product over that strip with
    its own taps (a 3x3 kernel with stride 2: 4, 2, 2 and 1 taps per channel, 9 in all, where
    one product of all phases at the common 2x2 reach computed 16, 7 of them zero weights), and
    :func:`kernels.nn_conv.phases_to_image` puts the phases back in place.
    """
    x, w = cache.x, cache.w
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = cache.stride, cache.padding, cache.dilation
    if (sh, sw) == (1, 1):
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        return _run_forward(dy, flipped, np.zeros(C, dtype=x.dtype), (1, 1),
                            (dh * (kh - 1) - ph, dw * (kw - 1) - pw), (dh, dw), keep=keep)
    qh, a = np.divmod(np.arange(kh) * dh, sh)       # tap row i: phase row a[i], shift qh[i]
    qw, b = np.divmod(np.arange(kw) * dw, sw)
    QH, QW = int(qh.max()) + 1, int(qw.max()) + 1
    phase_index = np.full((sh, sw), -1, dtype=np.int64)
    used = sorted({(int(ai), int(bj)) for ai in a for bj in b})
    for p, (ai, bj) in enumerate(used):
        phase_index[ai, bj] = p
    # One strip of dy for a QH x QW kernel (padding QH-1, QW-1) serves every phase: phase p is
    # the product of that strip's windows at its own taps' flipped positions with its own
    # weights, into dphase[p]
    Hd, Wd = dy.shape[2], dy.shape[3]
    Hq, Wq = Hd + QH - 1, Wd + QW - 1
    dphase = np.empty((len(used), N, C, Hq, Wq), dtype=x.dtype)
    geometry = (QH, QW, 1, 1, QH - 1, QW - 1, 1, 1)
    narrow = narrow_tile(N, Hd, Wd, Hq, Wq, QH, QW, (1, 1), (QH - 1, QW - 1), (1, 1),
                         K * kh * kw * C // len(used))
    simd = _kernels("simd")
    TB = simd.TBN if narrow else simd.TB
    ws = _workspace(x.dtype)
    lanes = threads()
    fill, xs, offs, masks, Wg, pitch, P = _strip_job(dy, Hq, Wq, geometry, TB, K * QH * QW,
                                                     ws.buffer())
    # no lane masks: the phases' planes are larger than dy's (or unpadded), never packed
    assert masks.size == 0
    _lay_out(fill, xs, Wg, pitch, lanes, keep)
    ws.need(xs.size)
    none_affine, none_res = _no_epilogue(x.dtype)
    zeros = np.zeros(C, dtype=x.dtype)
    status = np.zeros(1, np.int64)
    kgroups = _channel_groups(N, Hq, Wq, C, lanes)
    k_first = np.arange(K, dtype=np.int64)[:, None] * (QH * QW)
    for p, (ap, bp) in enumerate(used):
        ii, jj = np.flatnonzero(a == ap), np.flatnonzero(b == bp)
        # tap (i, j) of the phase reads the strip at grid position (QH-1-qh[i], QW-1-qw[j])
        grid = ((QH - 1 - qh[ii])[:, None] * QW + (QW - 1 - qw[jj])[None, :]).reshape(-1)
        offs_p = offs[(k_first + grid[None, :]).reshape(-1)]
        # w_p[c, k*T + t] = w[k, c, i_t, j_t]
        w_p = np.ascontiguousarray(w[:, :, ii[:, None], jj[None, :]].transpose(1, 0, 2, 3)
                                   .reshape(C, K * grid.size))
        product = _product_job(xs, offs_p, masks, Wg, pitch, P, w_p, kgroups, zeros, dphase[p],
                               none_affine, 0.0, -math.inf, math.inf, none_res, status, narrow)
        run_lanes(product[0], product[1], *product[2], lanes=lanes, ns=product[3])
    dx = np.empty_like(x)
    run_lanes(_kernels().phases_to_image, N * C, dphase, phase_index, sh, sw, ph, pw, dx)
    return dx


class _Workspace:
    """A thread's scratch buffer for the kernels' strips (:func:`_scratch`), kept between
    calls and grown to the longest length a call reported needing (a call given a buffer too
    short allocates its own, and says how long it should have been)."""

    def __init__(self, dtype):
        self.array = np.empty(0, dtype=dtype)
        self._wanted = 0

    def buffer(self):
        """The buffer, first grown to the longest length a call has needed."""
        if self._wanted > self.array.size:
            self.array = np.empty(self._wanted, dtype=self.array.dtype)
        return self.array

    def need(self, length):
        self._wanted = max(self._wanted, int(length))


_WORKSPACES = threading.local()


def _workspace(dtype):
    """This thread's :class:`_Workspace` for ``dtype``."""
    table = getattr(_WORKSPACES, "table", None)
    if table is None:
        table = _WORKSPACES.table = {}
    key = np.dtype(dtype).str
    if key not in table:
        table[key] = _Workspace(np.dtype(dtype))
    return table[key]


def release_workspace():
    """Free this thread's convolution workspaces (they hold the largest strip seen so far:
    about one layer input; for a long-lived process that is done with a large network)."""
    _WORKSPACES.table = {}


def _lanes():
    return threads()


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1, name="conv2d",
                   check_input=True):
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
    check_input : bool
        Check ``x`` for NaN and infinity (~0.2 ms per 8 MB). Layers inside a network skip it:
        the network checks its own input, and the loss its logits.

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
    x, w, b, stride, padding, dilation = _prepare(x, w, b, stride, padding, dilation, name,
                                                  check_input)
    y = _run_forward(x, w, np.zeros(w.shape[0], dtype=x.dtype) if b is None else b, stride,
                     padding, dilation)
    return y, Conv2dCache(x, w, b is not None, stride, padding, dilation)


def _prepare(x, w, b, stride, padding, dilation, name, check_input):
    """The argument checks of :func:`conv2d_forward`; returns contiguous arrays of the compute
    dtype and the geometry as pairs."""
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
    if check_input:
        check_finite(x, f"{name} input")
    dtype = _compute_dtype(x, w, b)
    x = np.ascontiguousarray(x, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    if b is not None:
        b = np.asarray(b, dtype=dtype)
    return x, w, b, stride, padding, dilation


_EMPTY = {}


def _no_epilogue(dtype):
    """``(affine, res)`` meaning "none" for :func:`kernels.nn_conv.conv2d_forward`: arrays of
    size 0 of the right types (one compiled signature serves every call of a dtype)."""
    key = np.dtype(dtype).str
    if key not in _EMPTY:
        empty = np.empty(0, dtype=dtype)
        _EMPTY[key] = ((empty, empty, empty, empty), np.empty((0, 0, 0, 0), dtype=dtype))
    return _EMPTY[key]


def stride1_pitch(H, W, Ho, Wo, ph, pw, dtype=np.float32):
    """Positions per image of the stride-1 strip of an ``H x W`` input for an ``Ho x Wo``
    output with padding ``ph, pw``, for ``dtype`` (:func:`kernels.nn_conv.stride1_grid`:
    ``H*W`` for a packed strip, else the plane with its gaps)."""
    return _kernels().stride1_grid(H, W, Ho, Wo, ph, pw,
                                   _kernels("simd").vector_lanes(dtype))[1]


def narrow_tile(N, H, W, Ho, Wo, kh, kw, stride, padding, dilation, macs=None):
    """Whether the forward kernel should use its narrow tile
    (:func:`kernels.nn_conv.conv2d_forward_narrow`): where padding the grid positions to the
    narrow width gives a quarter fewer than to the wide one (measured: a narrow tile costs up to
    ~1.25x a wide one per position), and, given ``macs`` (multiply-adds per position: ``C*kh*kw*K``),
    where the positions saved are worth :data:`NARROW_MIN_SAVED_MACS` (the narrow kernel is
    compiled on first use: 5 s of a cold start, not worth a few microseconds). The grid is the
    strip's (:func:`kernels.nn_conv.strip_geometry`; strided: :func:`kernels.nn_conv.
    phase_geometry`): ResNet-50's 7x7 planes at batch 1 (64 positions: 96 wide, 64 narrow)
    take it, ResNet-20's planes never."""
    from kernels import simd
    (sh, sw), (ph, pw), _ = stride, padding, dilation
    if (sh, sw) == (1, 1):
        pitch = stride1_pitch(H, W, Ho, Wo, ph, pw)
    else:
        pitch = ((H + 2 * ph + sh - 1) // sh) * ((W + 2 * pw + sw - 1) // sw)
    npos = N * pitch
    narrow = -(-npos // simd.TBN) * simd.TBN
    wide = -(-npos // simd.TB) * simd.TB
    return 5 * narrow < 4 * wide and (macs is None or (wide - narrow) * macs
                                      >= NARROW_MIN_SAVED_MACS)


_LAYOUTS: dict = {}
#: Strip layouts kept (:func:`make_strip`; a network has a few dozen distinct convolutions).
MAX_LAYOUTS = 512


def make_strip(x, Ho, Wo, geometry, span, count, buf, start=0, lanes=None):
    """The strip of ``x`` (N, C, H, W) for a convolution of ``geometry = (kh, kw, sh, sw, ph,
    pw, dh, dw)`` with output planes ``Ho x Wo`` (:func:`kernels.nn_conv.strip_layout`;
    positions rounded up to a multiple of ``span``, tap offsets padded to ``count``), written
    into ``buf[start:]`` when that is long enough (else a new array), the planes in lanes on
    several threads (:func:`kernels.nn_conv.fill_strip`, :func:`kernels.nn_conv.fill_phase_strip`,
    :func:`cvcore.nn._lanes.run_lanes`; ``lanes``: how many, default one per thread).

    Returns ``xs, offs, masks, Wg, pitch, P`` (``masks``: the lane masks of a packed strip,
    :func:`kernels.nn_conv.tap_masks`, else of shape (0, 0)).
    """
    fill, xs, offs, masks, Wg, pitch, P = _strip_job(x, Ho, Wo, geometry, span, count, buf,
                                                     start)
    run_lanes(fill[0], fill[1], *fill[2], lanes=lanes, ns=fill[3])
    return xs, offs, masks, Wg, pitch, P


def _strip_job(x, Ho, Wo, geometry, span, count, buf, start=0):
    """What :func:`make_strip` does, not yet done: ``fill, xs, offs, masks, Wg, pitch, P`` with
    ``fill = (kernel, planes, args, ns)`` the job that writes the strip ``xs`` (for
    :func:`cvcore.nn._lanes.run_lanes`). The layout (a few integers and the
    offsets) is kept per geometry: the serving path asks once per convolution per request."""
    vl = _kernels("simd").vector_lanes(x.dtype)
    key = (x.shape, Ho, Wo, geometry, span, count, vl)
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) >= MAX_LAYOUTS:
            _LAYOUTS.clear()
        layout = _LAYOUTS[key] = _kernels().strip_layout(*x.shape, Ho, Wo, *geometry, span,
                                                         count, vl)
    Wg, pitch, m0, P, Ls, length, offs, used, masks = layout
    xs = _scratch(buf, start, length)
    nk = _kernels()
    if used is None:
        fill = (nk.fill_strip, x.shape[0] * x.shape[1], (x, Wg, pitch, m0, Ls, xs),
                STRIP_NS_PER_VALUE * length)
    else:
        fill = (nk.fill_phase_strip, x.shape[0] * x.shape[1],
                (x, *geometry[2:6], Wg, pitch, Ls, used, xs), STRIP_NS_PER_VALUE * length)
    return fill, xs, offs, masks, Wg, pitch, P


def strip_forward(x, w_mat, kh, kw, sh, sw, ph, pw, dh, dw, kgroups, bias, ws, y, affine, eps,
                  lo, hi, res, narrow=False, lanes=None, fused=False, keep=None):
    """Run :func:`kernels.nn_conv.conv2d_forward` (``narrow``:
    :func:`kernels.nn_conv.conv2d_forward_narrow`) on validated arrays: the strip of ``x`` laid
    out in the workspace ``ws`` (:func:`make_strip`), then the work items, each in lanes of an
    OpenMP loop (:func:`cvcore.nn._lanes.run_lanes`; ``lanes``: how many, default one per
    thread; ``kgroups`` output-channel groups per tile, :func:`_channel_groups`). Arguments as the kernel's (``x`` the (N, C, H, W) input).
    ``fused``: a stride-1 convolution runs as one kernel with both bodies compiled in
    (:func:`kernels.nn_conv.conv2d_forward_fused`: ~10 us less per call, ~4 s more of cold
    compile; for batch-1 inference of many small convolutions). ``keep``: a list to which a
    stride-1 call appends its strip as :class:`_Strip` (the weight gradient reads the input
    gradient's strip of ``dy`` instead of laying out ``dy`` again).

    Returns the workspace length the call needed (the caller grows ``ws`` to it for next
    time), or -1 (``y`` untouched) when the batch-norm statistics are not a variance.
    """
    simd = _kernels("simd")
    nk = _kernels()
    TB = simd.TBN if narrow else simd.TB
    R = w_mat.shape[1]
    fill, xs, offs, masks, Wg, pitch, P = _strip_job(x, y.shape[2], y.shape[3],
                                                     (kh, kw, sh, sw, ph, pw, dh, dw), TB, R, ws)
    status = np.zeros(1, np.int64)
    if fused and fill[0] is nk.fill_strip:
        x, Wg, pitch, m0, Ls, xs = fill[2]
        (nk.conv2d_forward_narrow_fused if narrow else nk.conv2d_forward_fused)(
            x, m0, Ls, xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps, lo, hi,
            res, status, P // TB * kgroups,
            max(1, min(threads() if lanes is None else lanes, fill[1])))
        return -1 if status[0] < 0 else xs.size
    _lay_out(fill, xs, Wg, pitch, lanes, keep)
    product = _product_job(xs, offs, masks, Wg, pitch, P, w_mat, kgroups, bias, y, affine, eps,
                           lo, hi, res, status, narrow)
    run_lanes(product[0], product[1], *product[2], lanes=lanes, ns=product[3])
    return -1 if status[0] < 0 else xs.size


def _lay_out(fill, xs, Wg, pitch, lanes, keep):
    """Run the strip fill ``fill`` of :func:`_strip_job` (writing ``xs``) in lanes; with
    ``keep`` (a list), append a stride-1 strip to it as :class:`_Strip`."""
    run_lanes(fill[0], fill[1], *fill[2], lanes=lanes, ns=fill[3])
    if keep is not None and fill[0] is _kernels().fill_strip:
        keep.append(_Strip(xs, Wg, pitch, fill[2][3], fill[2][4]))


def _forward_jobs(fill, xs, offs, masks, Wg, pitch, P, w_mat, kgroups, bias, y, affine, eps, lo, hi,
                  res, status, narrow):
    """The two lane jobs of :func:`strip_forward`, ``(kernel, n, args, ns)`` each (for
    :func:`cvcore.nn._lanes.run_lanes`): the strip fill ``fill`` (:func:`_strip_job`), then the
    product (:func:`_product_job`)."""
    return fill, _product_job(xs, offs, masks, Wg, pitch, P, w_mat, kgroups, bias, y, affine, eps,
                              lo, hi, res, status, narrow)


def _product_job(xs, offs, masks, Wg, pitch, P, w_mat, kgroups, bias, y, affine, eps, lo, hi, res,
                 status, narrow):
    """The forward kernel's lane job ``(kernel, n, args, ns)`` over the strip ``xs``: ``w_mat``
    (K, R) against the windows at ``offs`` (R,), into ``y``."""
    nk = _kernels()
    TB = _kernels("simd").TBN if narrow else _kernels("simd").TB
    K, R = w_mat.shape
    return (nk.conv2d_forward_narrow if narrow else nk.conv2d_forward, P // TB * kgroups,
            (xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps, lo, hi, res,
             status),
            P * R * K / MACS_PER_NS)


def forward_steps(steps, x, w_mat, kh, kw, sh, sw, ph, pw, dh, dw, kgroups, bias, ws, y, affine,
                  eps, lo, hi, res, status, narrow=False, lanes=None):
    """Append :func:`strip_forward`'s two lane calls to ``steps``
    (:class:`cvcore.nn._lanes.LaneSteps`), to be run later, any number of times, on the same
    arrays (``x``, ``ws``, ``y`` ...: they must not be replaced, their contents may change).
    ``ws`` must hold the strip (:func:`strip_length`); ``status`` (1,) int64 is set to -1 by
    a run whose batch-norm statistics are not a variance."""
    simd = _kernels("simd")
    TB = simd.TBN if narrow else simd.TB
    fill, xs, offs, masks, Wg, pitch, P = _strip_job(x, y.shape[2], y.shape[3],
                                                     (kh, kw, sh, sw, ph, pw, dh, dw), TB,
                                                     w_mat.shape[1], ws)
    if not np.may_share_memory(xs, ws):
        raise ValueError(f"forward_steps: the workspace holds {ws.size} values, the strip "
                         f"needs {xs.size}")
    for kernel, n, args, ns in _forward_jobs(fill, xs, offs, masks, Wg, pitch, P, w_mat, kgroups,
                                             bias, y, affine, eps, lo, hi, res, status, narrow):
        steps.add(kernel, n, *args, lanes=lanes, ns=ns)


def strip_length(x_shape, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, narrow=False):
    """Values of the float32 strip :func:`strip_forward` lays out for an input of ``x_shape``
    (N, C, H, W) (:func:`kernels.nn_conv.strip_layout`)."""
    simd = _kernels("simd")
    TB = simd.TBN if narrow else simd.TB
    R = x_shape[1] * kh * kw
    vl = simd.vector_lanes(np.float32)
    key = (tuple(x_shape), Ho, Wo, (kh, kw, sh, sw, ph, pw, dh, dw), TB, R, vl)
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _kernels().strip_layout(*x_shape, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, TB, R,
                                         vl)
    return int(layout[5])


def _run_forward(x, w, bias, stride, padding, dilation, affine=None, eps=0.0,
                 clamp=(-math.inf, math.inf), res=None, y=None, name="conv2d", fused=False,
                 keep=None):
    """The forward kernel on validated, contiguous arrays of one dtype (``bias``: (K,), zeros
    for none); ``padding`` may be negative (a crop, for input gradients). The epilogue of
    :func:`kernels.nn_conv.conv2d_forward`: ``affine`` = ``(gamma, beta, mean, var)`` of an
    eval-mode batch norm (each (K,), the dtype of ``x``) with ``eps``, then ``res`` (the
    output's shape) added, then ``clamp = (lo, hi)``. ``y``: the output array (N, K, Ho, Wo)
    to write, else a new one. ``name`` names the layer when the batch-norm statistics are
    not a variance. ``keep``: as :func:`strip_forward`'s."""
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation      # padding < 0: a crop
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if y is None:
        y = np.empty((N, K, Ho, Wo), dtype=x.dtype)
    none_affine, none_res = _no_epilogue(x.dtype)
    ws = _workspace(x.dtype)
    lanes = threads()
    need = strip_forward(
        x, w.reshape(K, C * kh * kw), kh, kw, *stride, *padding, *dilation,
        _channel_groups(N, Ho, Wo, K, lanes), bias, ws.buffer(), y,
        none_affine if affine is None else affine, float(eps), float(clamp[0]),
        float(clamp[1]), none_res if res is None else res,
        narrow=narrow_tile(N, H, W, Ho, Wo, kh, kw, stride, padding, dilation, C * kh * kw * K),
        lanes=lanes, fused=fused, keep=keep)
    if need < 0:
        raise ValueError(f"{name}: running_mean and running_var must be finite and "
                         f"running_var + eps positive (a variance)")
    ws.need(need)
    return y


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
    x, w = _check_cache(cache)
    N, C, H, W = x.shape
    K, _, kh, kw = w.shape
    _, _, Ho, Wo = conv2d_output_shape(x.shape, w.shape, cache.stride, cache.padding,
                                       cache.dilation)
    dy = check_array(dy, "conv2d output gradient dy", ndim=4, dtypes="f", allow_empty=True)
    if dy.shape != (N, K, Ho, Wo):
        raise ValueError(f"conv2d backward: dy has shape {dy.shape}, the forward output had "
                         f"{(N, K, Ho, Wo)}")
    dtype = x.dtype
    dy = np.ascontiguousarray(dy, dtype=dtype)
    db = dy.sum(axis=(0, 2, 3)) if (cache.has_bias and need_dw) else None
    lanes = _lanes()
    strips = [] if need_dw else None
    dx = _input_grad(dy, cache, strips) if need_dx else None
    dw = None
    if need_dw:
        dw = _weight_grad(x, dy, K, (kh, kw, *cache.stride, *cache.padding, *cache.dilation),
                          lanes, strips[0] if strips else None).reshape(w.shape)
    return dx, dw, db


def _weight_grad(x, dy, K, geometry, lanes, dy_strip=None):
    """``dW`` (K, C*kh*kw) of a convolution: the strips of ``x`` and ``dy`` laid out here
    (:func:`make_strip`, :func:`kernels.nn_conv.fill_strip`), then the dot
    products of their windows (:func:`kernels.nn_conv.conv2d_weight_grad`), or for few
    positions the transposed column matrix (:func:`kernels.nn_conv.conv2d_weight_grad_cols`).
    The strips are made by separate kernel calls, not inside the weight-gradient kernels, so
    their code is compiled once on a cold start, not once more in each caller.

    ``dy_strip``: the strip of ``dy`` the input gradient's convolution has just read
    (:class:`_Strip`, in this thread's workspace or an array of its own). Its grid is usually
    ``x``'s (``dy``'s planes with the complementary padding: e.g. ``W + 1`` columns for a 3x3
    kernel with padding 1, stride 1 or 2), and then the dot products read ``dy`` from it and
    ``dy`` is not laid out a second time (ResNet-20: 21 strip fills of a training step less)."""
    from kernels import simd
    nk = _kernels()
    N, C = x.shape[:2]
    Ho, Wo = dy.shape[2:]
    kh, kw = geometry[:2]
    R = C * kh * kw
    cols = N * Ho * Wo <= COLS_MAX_POSITIONS           # few positions: explicit columns
    ws = _workspace(x.dtype)
    buf = ws.buffer()
    # positions: one per grid position, rounded up to whole vectors (the columns: exactly)
    span, count = (1, R) if cols else (simd.vector_lanes(x.dtype), -(-R // simd.DB) * simd.DB)
    # the x strip after the dy strip, when that is in the workspace
    start = 0 if dy_strip is None else _end_in(dy_strip.data, buf)
    xs, offs, masks, Wg, pitch, P = make_strip(x, Ho, Wo, tuple(geometry), span, count, buf,
                                               start, lanes=lanes)
    if not cols:
        block = _weight_grad_block(P, C + K, x.itemsize, lanes)
        dw_lanes = np.zeros((lanes, K, R), dtype=x.dtype)
    if not cols and dy_strip is not None and (dy_strip.Wg, dy_strip.pitch) == (Wg, pitch):
        ws.need(start + xs.size)
        run_lanes(nk.conv2d_weight_grad, lanes, xs, offs, masks, dy_strip.data, dy_strip.m0,
                  dy_strip.Ls, P, block, lanes, dw_lanes, lanes=lanes)
        return dw_lanes.sum(axis=0)
    dys = _scratch(buf, start + xs.size, K * P)
    run_lanes(nk.fill_strip, N * K, dy, Wg, pitch, 0, P, dys, lanes=lanes)
    if cols:
        tiles = _scratch(buf, start + xs.size + dys.size, lanes * P * simd.TB)
        ws.need(start + xs.size + dys.size + tiles.size)
        dw = np.empty((K, R), dtype=x.dtype)
        run_lanes(nk.conv2d_weight_grad_cols, lanes, xs, offs, masks, dys, P, lanes, tiles, dw,
                  lanes=lanes)
        return dw
    ws.need(start + xs.size + dys.size)
    run_lanes(nk.conv2d_weight_grad, lanes, xs, offs, masks, dys, 0, P, P, block, lanes,
              dw_lanes, lanes=lanes)
    return dw_lanes.sum(axis=0)


def _end_in(view, buf):
    """Where ``view`` ends in ``buf`` (in elements) when it is a slice of ``buf`` (the
    workspace, :func:`_scratch`), else 0."""
    if view.base is not buf:
        return 0
    return (view.__array_interface__["data"][0] - buf.__array_interface__["data"][0]) \
        // buf.itemsize + view.size


def _scratch(buf, start, n):
    """``buf[start:start + n]`` when the workspace is that long, else a new array: the strips
    are taken from a buffer kept between calls (a fresh multi-megabyte allocation costs a page
    fault per 4 KiB: measured 20 % of a ResNet-20 inference), and the caller reports the length
    it needed so that the buffer grows (:class:`_Workspace`)."""
    if buf.size >= start + n:
        return buf[start:start + n]
    return np.empty(n, dtype=buf.dtype)


def _check_cache(cache):
    """The cache's ``x`` and ``w``, checked: the NamedTuple :func:`conv2d_forward` returns, with
    C-contiguous arrays of one float dtype whose channels agree and a valid geometry (the
    backward kernels index them without bounds checks)."""
    check_cache(cache, Conv2dCache, "conv2d_backward")
    x, w = cache.x, cache.w
    for a, what in ((x, "x"), (w, "w")):
        if not isinstance(a, np.ndarray) or a.ndim != 4 or not a.flags.c_contiguous or \
                a.dtype not in (np.float32, np.float64):
            raise TypeError(f"conv2d_backward: cache.{what} must be a C-contiguous 4-d float32/"
                            f"float64 array from the forward pass")
    if x.dtype != w.dtype or x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d_backward: cache.x {x.dtype} {x.shape} and cache.w {w.dtype} "
                         f"{w.shape} do not belong to one forward pass")
    stride, padding, dilation = _geometry(cache.stride, cache.padding, cache.dilation)
    for size, k, p, d in ((x.shape[2], w.shape[2], padding[0], dilation[0]),
                          (x.shape[3], w.shape[3], padding[1], dilation[1])):
        if size + 2 * p < d * (k - 1) + 1:
            raise ValueError("conv2d_backward: the cached input is smaller than the kernel")
    return x, w


class Conv2d(Module):
    """2-D convolution layer (``torch.nn.Conv2d``).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size, stride, padding, dilation : int or pair of int
    bias : bool
        Whether to learn an additive bias per output channel.
    groups : int
        Channel groups, as PyTorch's: ``groups`` must divide both channel counts; input group
        ``g`` feeds output group ``g`` only. ``groups == in_channels`` is a depthwise
        convolution (its own kernels; :mod:`cvcore.nn.dwconv`), other ``groups > 1`` run one
        dense convolution per group.
    rng : numpy.random.Generator or int or None
        Source of the initial weights (PyTorch's default initialisation
        ``kaiming_uniform_(a=sqrt(5))``: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        ``fan_in = in_channels / groups * kh * kw``).

    Attributes
    ----------
    weight : Parameter, shape (out_channels, in_channels // groups, kh, kw)
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
                 bias=True, rng=None, groups=1):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = check_pair(kernel_size, "kernel_size", 1)
        self.stride, self.padding, self.dilation = _geometry(stride, padding, dilation)
        self.groups = check_int(groups, "groups", 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups={self.groups} must divide in_channels "
                             f"({self.in_channels}) and out_channels ({self.out_channels})")
        rng = np.random.default_rng(rng)
        kh, kw = self.kernel_size
        fan_in = self.in_channels // self.groups * kh * kw
        gain = math.sqrt(2.0 / (1.0 + KAIMING_A ** 2))
        bound = gain * math.sqrt(3.0 / fan_in)          # = 1/sqrt(fan_in)
        self.weight = Parameter(rng.uniform(
            -bound, bound, (self.out_channels, self.in_channels // self.groups, kh, kw)))
        if bias:
            bias_bound = 1.0 / math.sqrt(fan_in)
            self.bias = Parameter(rng.uniform(-bias_bound, bias_bound, self.out_channels))
        else:
            self.bias = None
        self._cache: Optional[Conv2dCache] = None

    def _name(self):
        return f"Conv2d({self.in_channels}->{self.out_channels})"

    def forward(self, x, check_input=None):
        """Convolve ``x`` (N, C, H, W); see :func:`conv2d_forward`.

        ``check_input``: test ``x`` for NaN/infinity; by default only when the layer is called
        on its own (inside a network the network checks its input once).
        """
        return self._convolve(x, self.padding, check_input)

    def _convolve(self, x, padding, check_input):
        """The forward pass with ``padding`` (a pair, or ``(top, bottom, left, right)`` for the
        grouped path), keeping the cache."""
        b = None if self.bias is None else self.bias.data
        if check_input is None:
            check_input = top_level()
        if self.groups == 1 and len(padding) == 2:
            y, cache = conv2d_forward(x, self.weight.data, b, self.stride, padding,
                                      self.dilation, name=self._name(), check_input=check_input)
        else:
            from cvcore.nn.dwconv import grouped_conv2d_forward
            y, cache = grouped_conv2d_forward(x, self.weight.data, b, self.stride, padding,
                                              self.dilation, self.groups, name=self._name(),
                                              check_input=check_input)
        self._cache = cache if is_grad_enabled() else None
        return y

    def backward(self, dy, input_grad=True):
        """Fill ``weight.grad`` / ``bias.grad`` and return ``dx`` (N, C, H, W), or ``None`` with
        ``input_grad=False`` (a network's first layer in training: the input needs none)."""
        if self._cache is None:
            raise RuntimeError(f"{self._name()}: backward called without a forward pass "
                               f"outside cvcore.nn.no_grad() (each forward allows one backward)")
        need_dw = self.weight.requires_grad or (self.bias is not None
                                                and self.bias.requires_grad)
        if isinstance(self._cache, Conv2dCache):
            dx, dw, db = conv2d_backward(dy, self._cache, need_dx=input_grad, need_dw=need_dw)
        else:
            from cvcore.nn.dwconv import grouped_conv2d_backward
            dx, dw, db = grouped_conv2d_backward(dy, self._cache, need_dx=input_grad,
                                                 need_dw=need_dw)
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
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s
