"""Numba kernels for 2-D convolution in NCHW: implicit GEMM on a "strip", register-blocked.

The readable twin is :mod:`kernels.reference.nn_conv` (im2col + one matrix product); the
conventions (PyTorch's cross-correlation, output size, tap order ``r = (c*kh + i)*kw + j``) are
documented there. The caller (:mod:`cvcore.nn.conv`) validates every argument, allocates the
outputs and workspaces, and prepares the flipped weights of the input gradient.

The strip
---------
im2col writes every output pixel's ``C*kh*kw`` input values as one column and multiplies the
column matrix by the weights. Here the column matrix is never built. Each input channel of all
``N`` images is laid out as ONE long vector, the **strip**: image after image, row after row,
with just enough zeros between rows and between images to serve as the zero padding
(:func:`strip_geometry`). Output pixel ``(n, oh, ow)`` becomes *position*
``q = n*pitch + oh*Wg + ow`` on a grid of ``Wg`` columns, and its tap ``r = (c, i, j)`` reads
``strip[offs[r] + q]`` for a constant offset ``offs[r]``: row ``r`` of the column matrix is a
*window* of the strip. The convolution is then the matrix product

    Y[k, q] = sum_r W[k, r] * strip[offs[r] + q]

which :func:`kernels.simd.fma_tile` computes tile by tile (8 output channels x 48 positions in
24 vector registers on AVX-512), reading the input straight from the strip. Positions that are
not output pixels (the gap columns and rows) are computed and dropped: 6 % extra work at 32x32,
13 % at 16x16, 27 % at 8x8 (3x3 kernel, padding 1). So small planes get a **packed** strip
(:func:`packed`): the images back to back with no gaps at all, every position an output pixel;
a tap past the edge of a row or an image then reads a neighbour's pixel, and a table of lane
masks (:func:`tap_masks`; :func:`kernels.simd.fma_tile_masked`) drops those reads.

Strided convolutions use a **phase strip** (:func:`fill_phase_strip`): the zero-padded input is
split into its ``sh*sw`` phases (every ``sh``-th row from row ``a``, every ``sw``-th column from
column ``b``); a stride-``s`` convolution reads each phase with stride 1, so tap ``(c, i, j)`` is
again one window, of phase ``(i*dh % sh, j*dw % sw)`` of channel ``c``.

Backward (:mod:`cvcore.nn.conv` drives it):

* the weight gradient ``dW[k, r] = sum_q dY[k, q] * strip[offs[r] + q]`` is a block of dot
  products of windows (:func:`conv2d_weight_grad`, micro-kernel :func:`kernels.simd.dot_tile_sums`),
  with ``dY`` laid out on the same positions (zero on the dropped ones); for few positions
  (small planes, one image) the dot products are too short for that, and
  :func:`conv2d_weight_grad_cols` builds the (then small) transposed column matrix instead;
* the input gradient is itself a stride-1 convolution of ``dy`` (flipped kernel, complementary
  padding; for strided convolutions one output channel per input channel and phase, put back
  in place by :func:`phases_to_image`), so it runs through :func:`conv2d_forward` too.

Every kernel here is a one-thread ``nogil`` kernel over a range of its work (tiles of
positions, planes, lanes of the weight gradient); :mod:`cvcore.nn.conv` runs the range on several
threads in lanes of one OpenMP loop (:func:`cvcore.nn._lanes.run_lanes`), which calls the kernel
by address: a ``prange`` inside each kernel compiled its body two to three times over (a parallel
loop is a module of its own, and a called kernel is linked and optimised again in its caller's
module; :mod:`kernels.team`). Nothing calls BLAS.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels import simd
from kernels.scalar import clamp


# -- strip layouts (plain Python: computed once per convolution by the driver,
#    :func:`cvcore.nn.conv.make_strip`, not inside a kernel) ----------------------------------

#: Largest plane (pixels) whose stride-1 strip is packed (:func:`packed`). The gaps of a 3x3
#: kernel's strip are 27 % of the positions of an 8x8 plane, 13 % at 16x16, 6 % at 32x32, 3.5 %
#: at 56x56; the masked loads cost a little in the forward and more in the backward: one
#: thread, batch 128, packed against gapped, forward 1.20 / 1.07 / 1.09x as fast at 8 / 16 /
#: 32, backward 1.16 / 1.06 / 1.05x; ResNet-50's 56x56 at batch 8 forward 1.01x, backward
#: 0.91-0.95x (``benchmarks/README.md``).
PACKED_MAX_PIXELS = 1024


def packed(H, W, Ho, Wo, ph, pw, vl):
    """Whether the stride-1 strip of an ``H x W`` input (output ``Ho x Wo``, padding ``ph,
    pw``) is *packed*, the images back to back with no gap rows or columns
    (:func:`strip_geometry`): when there is padding to stand for, the output is no larger than
    the input, the plane at most :data:`PACKED_MAX_PIXELS`, and a whole number of vectors of
    ``vl`` lanes (lane ``l`` of a vector is then the same pixel of its image wherever the
    vector starts, so a table of lane masks, one per vector of a plane and tap of a kernel,
    says which reads fall outside the image: :func:`tap_masks`)."""
    return vl > 0 and ph >= 0 and pw >= 0 and ph + pw > 0 and Ho <= H and Wo <= W \
        and H * W <= PACKED_MAX_PIXELS and H * W % vl == 0


def stride1_grid(H, W, Ho, Wo, ph, pw, vl=0):
    """``(Wg, pitch)`` of the stride-1 strip (:func:`strip_geometry`)."""
    if packed(H, W, Ho, Wo, ph, pw, vl):
        return W, H * W
    Wg = W + max(pw, Wo - W, 0)
    return Wg, (H + max(ph, Ho - H, 0)) * Wg


def strip_geometry(N, H, W, Ho, Wo, kh, kw, ph, pw, dh, dw, span, vl=0):
    """Layout of the stride-1 strip.

    Channel ``c`` of the strip holds image ``n``'s row ``h`` at ``c*Ls + m0 + n*pitch + h*Wg``
    (``W`` values, then ``Wg - W`` zeros), and zero rows after each image up to ``pitch``.
    Output pixel ``(n, oh, ow)`` is position ``q = n*pitch + oh*Wg + ow``; its tap ``(i, j)``
    reads element ``c*Ls + m0 + q + (i*dh - ph)*Wg + (j*dw - pw)``, and a tap that falls outside
    the image lands on a zero: the zero padding. The gaps are as narrow as that allows:
    ``Wg - W = max(pw, Wo - W, 0)`` columns (the gap after a row is also the left padding of
    the next) and ``max(ph, Ho - H, 0)`` rows between images. Negative ``ph, pw`` (a crop: the
    input gradient of a convolution whose padding exceeds its kernel's reach) need no gap.

    A :func:`packed` strip has no gaps at all, ``Wg = W`` and ``pitch = H*W``: a tap past the
    edge of a row or of an image reads the neighbouring row or image there, and the kernels
    drop those reads with lane masks (:func:`tap_masks`, :func:`kernels.simd.fma_tile_masked`).
    That saves the gaps' positions: ResNet-20's 8x8 planes are 64 positions per image instead
    of 81, its 16x16 ones 256 instead of 289, its 32x32 ones 1024 instead of 1089.

    Parameters
    ----------
    span : int
        Positions are rounded up to a multiple of this (the caller's tile or block; a multiple
        of ``vl`` for a packed strip).
    vl : int
        The vector length of the kernels that read the strip (:func:`kernels.simd.vector_lanes`);
        0: a strip with gaps whatever the plane.

    Returns
    -------
    Wg, pitch, m0 : int
        Grid width, positions per image, leading margin.
    P : int
        Number of positions, ``N*pitch`` rounded up to a multiple of ``span``.
    Ls : int
        Length of one channel of the strip: every tap of every position is inside it.
    """
    Wg, pitch = stride1_grid(H, W, Ho, Wo, ph, pw, vl)
    m0 = max(0, ph * Wg + pw)
    P = (N * pitch + span - 1) // span * span
    reach = max(0, (dh * (kh - 1) - ph) * Wg + dw * (kw - 1) - pw)
    return Wg, pitch, m0, P, m0 + P + reach


def _padded(offs, count):
    """``offs`` (1-D int64) padded to ``count`` entries by repeating the first (they pad the taps
    to whole micro-kernel tiles; their results are dropped)."""
    out = np.full(max(count, offs.size), offs[0], dtype=np.int64)
    out[:offs.size] = offs
    return out


def tap_offsets(C, kh, kw, ph, pw, dh, dw, Wg, m0, Ls, count):
    """Stride-1 strip offsets ``offs[(c*kh + i)*kw + j] = c*Ls + m0 + (i*dh - ph)*Wg +
    (j*dw - pw)``, padded to ``count`` (:func:`_padded`)."""
    c = np.arange(C, dtype=np.int64)[:, None, None]
    i = np.arange(kh, dtype=np.int64)[None, :, None]
    j = np.arange(kw, dtype=np.int64)[None, None, :]
    return _padded((c * Ls + m0 + (i * dh - ph) * Wg + (j * dw - pw)).reshape(-1), count)


def tap_masks(H, W, kh, kw, ph, pw, dh, dw, vl):
    """The lane masks of a :func:`packed` strip, ``(H*W // vl, kh*kw)`` int64: bit ``l`` of
    ``masks[p, i*kw + j]`` is set when tap ``(i, j)`` of pixel ``p*vl + l`` of an image (row
    ``oh``, column ``ow``) reads inside the image: ``0 <= oh + i*dh - ph < H`` and
    ``0 <= ow + j*dw - pw < W``. Every channel's taps share the table: tap ``r`` of the kernels
    is column ``r % (kh*kw)``."""
    pos = np.arange(H * W, dtype=np.int64)
    oh, ow = pos // W, pos % W
    i = np.arange(kh, dtype=np.int64)[:, None, None] * dh - ph
    j = np.arange(kw, dtype=np.int64)[None, :, None] * dw - pw
    inside = (oh + i >= 0) & (oh + i < H) & (ow + j >= 0) & (ow + j < W)   # (kh, kw, H*W)
    bits = inside.reshape(kh * kw, H * W // vl, vl).astype(np.int64)
    words = (bits << np.arange(vl, dtype=np.int64)).sum(axis=2)           # (taps, vectors)
    return np.ascontiguousarray(words.T)


def phase_geometry(N, H, W, kh, kw, sh, sw, ph, pw, dh, dw, span):
    """Layout of the phase strip of a stride-``(sh, sw)`` convolution.

    Phase ``(a, b)`` of channel ``c`` is the plane ``xpad[n, c, a::sh, b::sw]`` of the
    zero-padded input, ``Hq x Wq`` with ``Hq = ceil((H + 2*ph) / sh)`` (``Wq`` likewise); it is
    strip channel ``(c*sh + a)*sw + b``, image ``n`` at ``n*pitch``, ``pitch = Hq*Wq``, and the
    padding is stored in it. Output pixel ``(n, oh, ow)`` is position ``q = n*pitch + oh*Wq +
    ow``; tap ``(i, j)`` reads phase ``(i*dh % sh, j*dw % sw)`` at ``q + (i*dh // sh)*Wq +
    j*dw // sw``.

    Returns ``Wq, pitch, P, Ls`` as :func:`strip_geometry` (no leading margin).
    """
    Hq = (H + 2 * ph + sh - 1) // sh
    Wq = (W + 2 * pw + sw - 1) // sw
    pitch = Hq * Wq
    P = (N * pitch + span - 1) // span * span
    reach = (dh * (kh - 1) // sh) * Wq + dw * (kw - 1) // sw
    return Wq, pitch, P, P + reach


def phase_tap_offsets(C, kh, kw, sh, sw, dh, dw, Wq, Ls, count):
    """Phase-strip offsets of tap ``(c, i, j)``: channel ``(c*sh + i*dh % sh)*sw + j*dw % sw``,
    shifted by ``(i*dh // sh)*Wq + j*dw // sw``; padded to ``count`` as :func:`tap_offsets`."""
    c = np.arange(C, dtype=np.int64)[:, None, None]
    i = np.arange(kh, dtype=np.int64)[None, :, None] * dh
    j = np.arange(kw, dtype=np.int64)[None, None, :] * dw
    chan = (c * sh + i % sh) * sw + j % sw
    return _padded((chan * Ls + (i // sh) * Wq + j // sw).reshape(-1), count)


def strip_layout(N, C, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw, span, count, vl=0):
    """Everything :func:`fill_strip` / :func:`fill_phase_strip` and the kernels reading the
    strip need, for an input ``(N, C, H, W)`` and this convolution: ``(Wg, pitch, m0, P, Ls,
    length, offs, used, masks)``, with ``length`` the strip's length, ``offs`` the tap offsets
    padded to ``count``, ``used`` None for the stride-1 strip, else the ``(sh, sw)`` bool array
    of the phases some tap reads (``m0 = 0`` then), and ``masks`` the lane masks of a
    packed strip (:func:`tap_masks`; ``vl`` as :func:`strip_geometry`), else of shape (0, 0)."""
    none = np.empty((0, 0), dtype=np.int64)
    if sh == 1 and sw == 1:
        Wg, pitch, m0, P, Ls = strip_geometry(N, H, W, Ho, Wo, kh, kw, ph, pw, dh, dw, span, vl)
        offs = tap_offsets(C, kh, kw, ph, pw, dh, dw, Wg, m0, Ls, count)
        masks = (tap_masks(H, W, kh, kw, ph, pw, dh, dw, vl) if packed(H, W, Ho, Wo, ph, pw, vl)
                 else none)
        return Wg, pitch, m0, P, Ls, C * Ls, offs, None, masks
    Wg, pitch, P, Ls = phase_geometry(N, H, W, kh, kw, sh, sw, ph, pw, dh, dw, span)
    used = np.zeros((sh, sw), dtype=np.bool_)
    used[(np.arange(kh) * dh % sh)[:, None], (np.arange(kw) * dw % sw)[None, :]] = True
    offs = phase_tap_offsets(C, kh, kw, sh, sw, dh, dw, Wg, Ls, count)
    return Wg, pitch, 0, P, Ls, C * sh * sw * Ls, offs, used, none


@njit(cache=True, nogil=True, error_model="numpy")
def fill_strip(x, Wg, pitch, m0, Ls, xs, p0, p1):
    """Write planes ``nc = n*C + c`` in ``[p0, p1)`` of ``x`` (N, C, H, W) into the strip ``xs``
    (C*Ls,) of :func:`strip_geometry`, with the zeros around them (plane ``(0, c)`` the leading
    margin, plane ``(N - 1, c)`` the tail). One thread, ``nogil``: the caller splits the planes
    between threads (:func:`cvcore.nn.conv.make_strip`); a ``prange`` doubled the cold compile."""
    N, C, H, W = x.shape
    for nc in range(p0, p1):
        n = nc // C
        c = nc - n * C
        base = c * Ls + m0 + n * pitch
        if n == 0:
            _zero(xs[c * Ls:base])                    # leading margin
        if Wg == W:                                   # no gap columns: the plane is one run
            dst = xs[base:base + H * W]
            src = x[n, c]
            for h in range(H):
                for v in range(W):
                    dst[h * W + v] = src[h, v]
        else:
            for h in range(H):
                # plain loops over zero-based views: a slice assignment compiles to Numba's
                # generic strided copy, 2x slower here (measured at one thread)
                dst = xs[base + h * Wg:base + (h + 1) * Wg]
                src = x[n, c, h]
                for v in range(W):
                    dst[v] = src[v]
                _zero(dst[W:])
        end = base + pitch if n < N - 1 else (c + 1) * Ls
        _zero(xs[base + H * Wg:end])                  # gap rows; after the last image the tail


@njit(cache=True, inline="always", nogil=True)
def _zero(a):
    """``a[:] = 0`` as a plain loop (see :func:`fill_strip`)."""
    for i in range(a.size):
        a[i] = 0


@njit(cache=True, inline="always", nogil=True)
def _min(a, b):
    """``min(a, b)`` for integers, without the builtin (see :mod:`kernels.scalar`)."""
    return a if a < b else b


@njit(cache=True, nogil=True, error_model="numpy")
def fill_phase_strip(x, sh, sw, ph, pw, Wq, pitch, Ls, used, xs, p0, p1):
    """Write the phases of planes ``nc = n*C + c`` in ``[p0, p1)`` of ``x`` (N, C, H, W),
    zero-padded by ``ph, pw``, into ``xs`` (C*sh*sw*Ls,), laid out as in
    :func:`phase_geometry`, with the zeros around them. Phases with ``used[a, b]`` false (no tap
    reads them: a 1x1 kernel with stride 2 reads one of four) are left unwritten. One thread,
    ``nogil``, as :func:`fill_strip`."""
    N, C, H, W = x.shape
    Hq = pitch // Wq
    xflat = x.reshape(N * C * H * W)
    for nc in range(p0, p1):
        n = nc // C
        c = nc - n * C
        for a in range(sh):
            for b in range(sw):
                if not used[a, b]:
                    continue
                chan = (c * sh + a) * sw + b
                base = chan * Ls + n * pitch
                # columns v of the phase that are inside the image: 0 <= v*sw + b - pw < W
                v0 = clamp((pw - b + sw - 1) // sw, 0, Wq)
                v1 = clamp((W - 1 + pw - b) // sw + 1, v0, Wq)
                for u in range(Hq):
                    row = base + u * Wq
                    h = u * sh + a - ph
                    if h < 0 or h >= H:
                        lo = hi = Wq                  # a padding row: all zeros
                    else:
                        lo, hi = v0, v1
                    src = ((n * C + c) * H + h) * W + b - pw
                    # zeros, the phase's columns, zeros: three plain loops (one loop with a
                    # branch per element is not vectorised); unsigned indices: no wraparound
                    for v in range(lo):
                        xs[np.uint64(row + v)] = 0
                    for v in range(lo, hi):
                        xs[np.uint64(row + v)] = xflat[np.uint64(src + v * sw)]
                    for v in range(hi, Wq):
                        xs[np.uint64(row + v)] = 0
                if n == N - 1:
                    xs[base + pitch:(chan + 1) * Ls] = 0


# -- forward -----------------------------------------------------------------------------------

@njit(cache=True, inline="always", nogil=True)
def _forward(xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps, lo, hi, res, status,
             i0, i1, KB, TB, narrow):
    """The body of :func:`conv2d_forward` (``KB x TB`` tiles of
    :func:`kernels.simd.fma_tile_masked`, which without masks is :func:`kernels.simd.fma_tile`)
    and :func:`conv2d_forward_narrow` (:func:`kernels.simd.fma_tile_narrow_masked`); inlined
    into each, so the tile size is a constant there."""
    N = y.shape[0]
    K, Ho, Wo = y.shape[1], y.shape[2], y.shape[3]
    # the epilogue's per-channel terms (each share folds them: K values, no extra call)
    ok, scale, shift, has_affine, has_bias = _fold(affine, bias, eps, K, xs.dtype)
    if not ok:
        status[0] = -1
        return
    has_res = res.size > 0
    has_clamp = lo > -np.inf or hi < np.inf
    clamp = np.empty(2, dtype=xs.dtype)
    clamp[0] = lo
    clamp[1] = hi
    rows = pitch // Wg
    R = w_mat.shape[1]
    wflat = w_mat.reshape(K * R)
    nkb = (K + KB - 1) // KB
    per_group = (nkb + kgroups - 1) // kgroups
    yf = y.reshape(N * K * Ho * Wo)
    rf = res.reshape(res.size)
    plane = Ho * Wo
    # scratch of the share, allocated once (an allocation per tile measured ~30 % of the time)
    acc = np.empty((KB, TB), dtype=xs.dtype)
    wrows = np.empty(KB, dtype=np.int64)
    runs = np.empty((TB, 3), dtype=np.int64)
    tmp = np.empty(TB, dtype=xs.dtype)
    for item in range(i0, i1):
        q0 = (item // kgroups) * TB
        g = item - (item // kgroups) * kgroups
        # the tile's output pixels as runs along grid rows: (first position, length, index)
        nruns = 0
        n = q0 // pitch
        oh = (q0 - n * pitch) // Wg
        ow = q0 - n * pitch - oh * Wg
        t = 0
        while t < TB:
            step = min(Wg - ow, TB - t)
            if n < N and oh < Ho and ow < Wo:
                runs[nruns, 0] = t
                runs[nruns, 1] = min(step, Wo - ow)
                runs[nruns, 2] = (n * K * Ho + oh) * Wo + ow
                nruns += 1
            t += step
            ow += step
            if ow == Wg:
                ow = 0
                oh += 1
                if oh == rows:
                    oh = 0
                    n += 1
        if nruns == 0:
            continue
        for kb in range(g * per_group, min(nkb, (g + 1) * per_group)):
            for k in range(KB):              # past the last channel: repeat it, drop it
                wrows[k] = min(kb * KB + k, K - 1) * R
            if narrow:
                simd.fma_tile_narrow_masked(xs, q0, wflat, wrows, offs, masks, acc)
            else:
                simd.fma_tile_masked(xs, q0, wflat, wrows, offs, masks, acc)
            for k in range(min(KB, K - kb * KB)):
                base = (kb * KB + k) * plane
                row = acc[k]                       # plain loops around the intrinsic:
                c = shift[kb * KB + k]             # see kernels.simd
                if has_affine:
                    a = scale[kb * KB + k]
                    for t in range(TB):
                        row[t] = row[t] * a + c
                elif has_bias:
                    for t in range(TB):
                        row[t] += c
                for s in range(nruns):
                    t0, length = runs[s, 0], runs[s, 1]
                    at = base + runs[s, 2]
                    dst = yf[at:at + length]
                    src = row[t0:t0 + length]
                    if has_res:
                        # the sum into the lane's row first: ``res`` is often ``y`` itself
                        # (the plan's in-place residual), and a loop reading and writing
                        # one array is not vectorised (measured +3 ms on a 32x32 call)
                        rsrc = rf[at:at + length]
                        v = tmp[:length]
                        for t in range(length):
                            v[t] = src[t] + rsrc[t]
                        if has_clamp:
                            for t in range(length):
                                dst[t] = min(max(v[t], clamp[0]), clamp[1])
                        else:
                            for t in range(length):
                                dst[t] = v[t]
                    elif has_clamp:
                        for t in range(length):
                            dst[t] = min(max(src[t], clamp[0]), clamp[1])
                    else:
                        for t in range(length):
                            dst[t] = src[t]


@njit(cache=True, nogil=True, error_model="numpy")
def conv2d_forward(xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps, lo, hi, res,
                   status, i0, i1):
    """``y = conv(x, w) + bias`` as an implicit GEMM on the strip ``xs`` of ``x``, work items
    ``[i0, i1)``, with an optional epilogue applied as each tile leaves the registers (no extra
    pass over ``y``):

    * ``affine`` = ``(gamma, beta, mean, var)`` of an eval-mode batch norm (Ioffe & Szegedy
      2015), folded per output channel as :func:`cvcore.nn.layers.batchnorm2d_eval_forward`
      folds it (in float64: ``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean *
      scale``, then cast to the dtype of ``x``): the tile leaves as ``acc * scale + shift``
      (``bias`` is then ignored: fold it into ``beta``);
    * ``res``: a residual added after that (``y = ... + res``; ``res`` may be ``y`` itself);
    * ``lo, hi``: a clamp applied last, ``min(max(v, lo), hi)`` (ReLU is ``0, inf``, ReLU6
      ``0, 6``); applied only when one of them is finite, so that a NaN stays NaN.

    So a residual block's ``relu(bn2(conv2(h)) + identity)`` is one call. Every step rounds to
    the dtype of ``x`` as the separate layers do, so the fused result equals theirs bit for bit.

    One thread, ``nogil``: :func:`cvcore.nn.conv.strip_forward` lays out the strip
    (:func:`fill_strip`) and runs the items in lanes of one OpenMP loop
    (:func:`cvcore.nn._lanes.run_lanes`), as every other kernel of a network step. (A
    ``prange`` here cost 2.5x the cold compile of this serial kernel: :mod:`kernels.team`.)

    Parameters
    ----------
    xs : ndarray, 1-D
        The strip of ``x`` (N, C, H, W) for this convolution (:func:`strip_layout`:
        :func:`fill_strip`, or :func:`fill_phase_strip` for a strided one).
    offs : ndarray, 1-D int64
        Its tap offsets (:func:`strip_layout`, ``C*kh*kw`` of them).
    masks : ndarray, 2-D int64
        The lane masks of a packed strip (:func:`tap_masks`), else of shape (0, 0).
    Wg, pitch : int
        Its grid width and positions per image.
    w_mat : ndarray, shape (K, C*kh*kw), C-contiguous
        The weights ``w[k, c, i, j]`` at ``w_mat[k, (c*kh + i)*kw + j]`` (the usual reshape).
    kgroups : int
        Work items are (tile of ``simd.TB`` positions, group of output channels), item ``i``
        tile ``i // kgroups``; more than one group only when there are too few tiles to keep
        every thread busy. ``P // simd.TB * kgroups`` items in all.
    bias : ndarray, shape (K,), the dtype of ``x`` (zeros for none)
    y : ndarray, shape (N, K, Ho, Wo), C-contiguous, written (the items' pixels)
    affine : tuple of 4 ndarrays, each (K,) of the dtype of ``x``, or each of size 0 (none)
    eps : float
    lo, hi : float
    res : ndarray, shape (N, K, Ho, Wo), C-contiguous, or of size 0 (none)
    status : ndarray (1,) int64
        Set to -1 (and ``y`` left untouched) when the batch-norm statistics are not a valid
        variance (``var + eps <= 0``, or not finite); not written otherwise.
    i0, i1 : int
        The work items to compute.
    """
    _forward(xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps, lo, hi, res, status,
             i0, i1, simd.KB, simd.TB, False)


@njit(cache=True, nogil=True, error_model="numpy")
def conv2d_forward_narrow(xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps, lo, hi,
                          res, status, i0, i1):
    """:func:`conv2d_forward` with ``simd.KBN x simd.TBN`` tiles (12 x 32 on AVX-512) instead
    of ``simd.KB x simd.TB`` (8 x 48), for small planes: positions are padded to a multiple of
    the tile width, and one 7x7 image's 64 grid positions are 96 at 48 but 64 at 32. Each
    output is the same sum in the same order as with the wide tile (bit-equal). A kernel of its
    own, compiled on first use only (:func:`cvcore.nn.conv.narrow_tile` picks it), so that
    networks without such planes do not pay its compile time."""
    _forward(xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps, lo, hi, res, status,
             i0, i1, simd.KBN, simd.TBN, True)


@njit(cache=True, inline="always", nogil=True)
def _fill_then_forward(x, m0, Ls, xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps,
                       lo, hi, res, status, nitems, nlanes, KB, TB, narrow):
    """The body of :func:`conv2d_forward_fused` (``KB x TB`` tiles, ``narrow`` as
    :func:`_forward`)."""
    planes = x.shape[0] * x.shape[1]
    for lane in prange(nlanes):
        fill_strip(x, Wg, pitch, m0, Ls, xs, lane * planes // nlanes,
                   (lane + 1) * planes // nlanes)
    for lane in prange(nlanes):
        _forward(xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps, lo, hi, res,
                 status, lane * nitems // nlanes, (lane + 1) * nitems // nlanes, KB, TB, narrow)


@njit(cache=True, parallel=True, nogil=True)
def conv2d_forward_fused(x, m0, Ls, xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine,
                         eps, lo, hi, res, status, nitems, nlanes):
    """:func:`fill_strip` of all of ``x`` (a stride-1 strip), then :func:`conv2d_forward` of
    items ``[0, nitems)``, each in ``nlanes`` lanes of a parallel loop, both in one call and
    both bodies compiled into it (not called by address, :mod:`kernels.team`).

    For the many small convolutions of an inference at batch 1 (EfficientNet-Lite0's 1x1
    convolutions take 0.1-0.5 ms: :mod:`cvcore.nn.efficientnet`), where the two calls by address
    cost ~10 us more per convolution (two threads: 148 against 138 us for a 40->240 channel
    1x1 convolution on 28x28, ``benchmarks/README.md``), ~4 % of the network. A kernel of its
    own, compiled on first use only (~4 s): the training step and the demo never call it."""
    _fill_then_forward(x, m0, Ls, xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps,
                       lo, hi, res, status, nitems, nlanes, simd.KB, simd.TB, False)


@njit(cache=True, parallel=True, nogil=True)
def conv2d_forward_narrow_fused(x, m0, Ls, xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y,
                                affine, eps, lo, hi, res, status, nitems, nlanes):
    """:func:`conv2d_forward_fused` with the narrow tile (:func:`conv2d_forward_narrow`)."""
    _fill_then_forward(x, m0, Ls, xs, offs, masks, Wg, pitch, w_mat, kgroups, bias, y, affine, eps,
                       lo, hi, res, status, nitems, nlanes, simd.KBN, simd.TBN, True)


# -- forward, pixel-major ----------------------------------------------------------------------

@njit(cache=True, inline="always", nogil=True)
def _fold(affine, bias, eps, K, dtype):
    """The epilogue's per-channel terms (see :func:`conv2d_forward`, whose body computes them
    the same way): ``ok, scale, shift, has_affine, has_bias``; ``ok`` false when the
    batch-norm statistics are not a variance. One plain loop: no implicit parallel loop."""
    has_affine = affine[0].size > 0
    scale = np.empty(K, dtype=dtype)
    shift = np.empty(K, dtype=dtype)
    has_bias = False
    for k in range(K):
        if has_affine:
            var = np.float64(affine[3][k])
            mean = np.float64(affine[2][k])
            if not (np.isfinite(var) and np.isfinite(mean) and var + eps > 0):
                return False, scale, shift, has_affine, has_bias
            s = np.float64(affine[0][k]) * (1.0 / np.sqrt(var + eps))
            scale[k] = s
            shift[k] = np.float64(affine[1][k]) - mean * s
        else:
            shift[k] = bias[k]
            has_bias = has_bias or bias[k] != 0
    return True, scale, shift, has_affine, has_bias


@njit(cache=True, nogil=True)
def _leave_tile(acc, nk, nb, scale, shift, y, at, res, tmp, has_res, has_clamp, clamp):
    """Rows ``k < nk`` of a tile leave the registers for ``y[at + k*nb:][:nb]``: ``acc[k] *
    scale[k] + shift[k]`` (a batch norm; a bias is ``scale = 1``, exact), then ``+ res[...]``
    (``has_res``), then ``min(max(., clamp[0]), clamp[1])`` (``has_clamp``): the operations of
    :func:`_forward`'s epilogue in the same order, so the same bits.

    :func:`_forward` writes its epilogue inline: called from its ``prange`` body, a helper
    made a 16x16 convolution 1.7x slower (one thread, batch 96), and inlined
    (``inline="always"``) into :func:`conv2d_forward_pm` it made that one 1.5x slower; one
    call per tile, not per row: the stem's tiles (27 taps) are short."""
    for k in range(nk):
        src = acc[k]
        a, c = scale[k], shift[k]
        dst = y[at + k * nb:at + (k + 1) * nb]
        if has_res:
            # the sum into the scratch row first: ``res`` is often ``y`` itself (the plan's
            # in-place residual), and a loop reading and writing one array is not vectorised
            # (measured +3 ms on a 32x32 call)
            rsrc = res[at + k * nb:at + (k + 1) * nb]
            for t in range(nb):
                tmp[t] = (src[t] * a + c) + rsrc[t]
            if has_clamp:
                for t in range(nb):
                    dst[t] = min(max(tmp[t], clamp[0]), clamp[1])
            else:
                for t in range(nb):
                    dst[t] = tmp[t]
        elif has_clamp:
            for t in range(nb):
                dst[t] = min(max(src[t] * a + c, clamp[0]), clamp[1])
        else:
            for t in range(nb):
                dst[t] = src[t] * a + c


@njit(cache=True, inline="always", nogil=True)
def pixel_major_taps(C, Ws, nb, kh, kw, ph, pw, dh, dw):
    """Offsets of tap ``(c, i, j)`` in a pixel-major block of ``nb`` images (see
    :func:`conv2d_forward_pm`): ``offs[(c*kh + i)*kw + j] = ((i*dh - ph)*Ws + j*dw - pw)*C*nb
    + c*nb``, from the stored pixel of an output pixel's unpadded top-left tap (some are
    negative: the stored border is at least the padding)."""
    offs = np.empty(C * kh * kw, dtype=np.int64)
    for c in range(C):
        for i in range(kh):
            for j in range(kw):
                offs[(c * kh + i) * kw + j] = ((i * dh - ph) * Ws + j * dw - pw) * C * nb + c * nb
    return offs


@njit(cache=True, nogil=True)
def conv2d_forward_pm(x, w_mat, kh, kw, sh, sw, ph, pw, dh, dw, bias, y, affine, eps, lo, hi,
                      res, pm, tb, status, i0, i1):
    """:func:`conv2d_forward` on activations stored **pixel-major**, tiles ``[i0, i1)`` (a
    serial kernel: :func:`cvcore._bands.run_bands` splits the tiles over threads). The same
    sums in the same order, so the same bits.

    The layout, in blocks of ``TB = tb`` images (the tile width: ``simd.TBP``, 32 on AVX-512,
    :func:`kernels.simd.fma_tile_pm`; or ``simd.TBH``, 16, :func:`kernels.simd.fma_tile_pmh`,
    for batches of about 16): images ``[b*TB, b*TB + nb)`` (``nb =
    min(TB, N - b*TB)``) form block ``b``, which starts at element ``b*TB*Hs*Ws*C`` and holds
    element ``(hs, ws, c, n)`` at ``((hs*Ws + ws)*C + c)*nb + n``: pixel by pixel, channel by
    channel, the block's images side by side, with ``pm`` rows and columns of zero pixels
    stored around each image (``Hs = H + 2*pm``, ``Ws = W + 2*pm``). Tile ``t`` is output
    pixel ``(oh, ow)`` of block ``b`` (``t = (b*Ho + oh)*Wo + ow``): its ``nb`` images, one
    window of the input per tap, whatever the stride. So

    * no gap position is computed (the strip's gap columns and rows: 13 % of the positions at
      16x16, 27 % at 8x8), and a strided convolution needs no phase strip; a partial block
      (``nb < TB``) computes ``TB`` positions for its ``nb``;
    * a tile reads, per input row, the ``C`` channels of a few neighbouring pixels, one
      contiguous run, and the next tile the runs after them (the channel-major layout, ``C``
      planes side by side, read ``3*C`` runs per tile, and missed the cache on each: as slow as
      the strip);
    * the tile leaves as ``KB`` whole vectors, one contiguous run of ``K*nb`` per pixel.

    Parameters
    ----------
    x : ndarray (Hs, Ws, C, N), float32 or float64, C-contiguous
        The input in that layout (the 4-D shape gives its geometry; the border must be zero).
        Its buffer must go on for ``tb`` elements after the view: a partial block's last
        tile reads past its last pixel (those positions are dropped).
    w_mat, kh, kw, sh, sw, ph, pw, dh, dw, bias, affine, eps, lo, hi :
        As :func:`conv2d_forward`; ``ph, pw <= pm``.
    y : ndarray (Ho + 2*pm, Wo + 2*pm, K, N), written (its border too)
    res : as ``y``, or of size 0 (none); may be ``y`` itself
    pm : int
        The stored border.
    tb : int
        Images per block and tile: ``simd.TBP`` or ``simd.TBH`` (nothing else).
    status : ndarray (1,) int64
        Set to -1 (and ``y`` left untouched) when the batch-norm statistics are not a
        variance; not written otherwise.
    i0, i1 : int
        The tiles to compute, of ``ceil(N / TB) * Ho * Wo``.
    """
    Hs, Ws, C, N = x.shape
    Hso, Wso, K = y.shape[0], y.shape[1], y.shape[2]
    Ho, Wo = Hso - 2 * pm, Wso - 2 * pm
    KB, TB = simd.KB, tb
    half = tb != simd.TBP                            # the 16-image tile
    ok, scale, shift, has_affine, _ = _fold(affine, bias, eps, K, x.dtype)
    if not ok:
        status[0] = -1
        return
    if not has_affine:                               # a bias: acc * 1 + bias, exact
        scale[:] = 1
    has_res = res.size > 0
    has_clamp = lo > -np.inf or hi < np.inf
    clamp = np.empty(2, dtype=x.dtype)
    clamp[0] = lo
    clamp[1] = hi
    rest = N % TB                                    # images of the partial block, if any
    offs = pixel_major_taps(C, Ws, TB, kh, kw, ph, pw, dh, dw)
    offs_last = pixel_major_taps(C, Ws, max(rest, 1), kh, kw, ph, pw, dh, dw)
    R = w_mat.shape[1]
    wflat = w_mat.reshape(K * R)
    xs = x.reshape(x.size)
    yf = y.reshape(y.size)
    rf = res.reshape(res.size)
    nkb = (K + KB - 1) // KB
    acc = np.empty((KB, TB), dtype=x.dtype)
    wrows = np.empty(KB, dtype=np.int64)
    tmp = np.empty(TB, dtype=x.dtype)
    for tile in range(i0, i1):
        blk = tile // (Ho * Wo)
        oh = (tile - blk * Ho * Wo) // Wo
        ow = tile - blk * Ho * Wo - oh * Wo
        nb = min(TB, N - blk * TB)
        taps = offs if nb == TB else offs_last
        q0 = blk * TB * Hs * Ws * C + ((oh * sh + pm) * Ws + pm + ow * sw) * C * nb
        ybase = blk * TB * Hso * Wso * K
        pix = ybase + ((oh + pm) * Wso + pm + ow) * K * nb
        for kb in range(nkb):
            for k in range(KB):                      # past the last channel: repeat it, drop it
                wrows[k] = min(kb * KB + k, K - 1) * R
            if half:
                simd.fma_tile_pmh(xs, q0, wflat, wrows, taps, acc)
            else:
                simd.fma_tile_pm(xs, q0, wflat, wrows, taps, acc)
            _leave_tile(acc, min(KB, K - kb * KB), nb, scale[kb * KB:], shift[kb * KB:], yf,
                        pix + kb * KB * nb, rf, tmp, has_res, has_clamp, clamp)
        # the zero border: the block's first tile zeros the pixels before it, each row's last
        # tile those between it and the next row's first (or the block's end)
        if oh == 0 and ow == 0:
            for t in range(ybase, pix):
                yf[t] = 0
        if ow == Wo - 1:
            end = ybase + ((oh + 1 + pm) * Wso + pm) * K * nb if oh < Ho - 1 else \
                ybase + Hso * Wso * K * nb
            for t in range(pix + K * nb, end):
                yf[t] = 0


# -- backward ----------------------------------------------------------------------------------

@njit(cache=True, nogil=True, error_model="numpy")
def conv2d_weight_grad(xs, offs, masks, dys, dbase, dpitch, P, block, nlanes, dw_lanes, l0,
                       l1):
    """``dW[k, (c*kh + i)*kw + j] = sum_{n, oh, ow} dy[n, k, oh, ow] *
    xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]``: dot products of strip windows,
    ``dW[k, r] = sum_q dys[dbase + k*dpitch + q] * xs[offs[r] + q]`` over the positions
    ``q < P``, for the lanes ``l0 .. l1 - 1``.

    The caller lays out both strips first (:func:`cvcore.nn.conv.make_strip` for ``x``, with
    ``offs`` padded to a multiple of ``simd.DB``; :func:`fill_strip` for ``dy``, on the same
    positions, zero on the dropped ones: either a strip of its own, ``dbase = 0`` and
    ``dpitch = P``, or the strip the input gradient's convolution of ``dy`` has just read,
    whose grid is the same, ``dbase`` its leading margin and ``dpitch`` its channel length).
    Calling them from Python, not from here, keeps their code out of this kernel's module (a
    cold start compiled and optimised it once more in every caller).

    One thread, ``nogil``: the caller runs the lanes on several threads
    (:func:`cvcore.nn._lanes.run_lanes`). A ``prange`` over the lanes here cost twice the
    cold compile (a parallel loop is a module of its own, compiled and optimised again), for
    the same split of the work.

    Parameters
    ----------
    xs, dys : 1-D, one float dtype
        The strips of ``x`` and of ``dy`` (``K`` channels of ``P``).
    offs : 1-D int64, at least ``R`` rounded up to a multiple of ``simd.DB``
    masks : 2-D int64, the lane masks of a packed strip (:func:`tap_masks`), or (0, 0)
    dbase, dpitch : int
        Where channel ``k`` of ``dy`` starts in ``dys``: ``dbase + k*dpitch``.
    P, block : int
        Positions (a multiple of the vector length), in blocks of ``block`` (a multiple of the
        vector length; the last block may be shorter).
    nlanes : int
        Lane ``l`` takes every ``nlanes``-th block of positions and adds its sums into
        ``dw_lanes[l]``; the caller adds up the lanes (so the result does not depend on which
        thread ran which lane).
    dw_lanes : (nlanes, K, R), the dtype of ``xs``, zero on entry
    l0, l1 : int
        The lanes to compute (``0, nlanes`` for all).
    """
    K, R = dw_lanes.shape[1], dw_lanes.shape[2]
    DA, DB = simd.DA, simd.DB
    sums = np.empty((DA, DB), dtype=xs.dtype)
    aoffs = np.empty(DA, dtype=np.int64)
    mcols = np.zeros(DB, dtype=np.int64)                 # the windows' columns of ``masks``
    taps = max(1, masks.shape[1])
    for lane in range(l0, l1):
        part = dw_lanes[lane]
        for blk in range(lane, (P + block - 1) // block, nlanes):
            t0 = blk * block
            t1 = _min(t0 + block, P)
            for k0 in range(0, K, DA):
                for i in range(DA):
                    aoffs[i] = dbase + _min(k0 + i, K - 1) * dpitch
                for r0 in range(0, R, DB):
                    # the block's dot products, each already added up across the vector's
                    # lanes in registers (simd.dot_tile_sums_masked: the masks' columns too)
                    for j in range(DB):
                        mcols[j] = (r0 + j) % taps
                    simd.dot_tile_sums_masked(dys, aoffs, xs, offs[r0:r0 + DB], masks, mcols,
                                              t0, t1, sums)
                    for i in range(_min(DA, K - k0)):     # plain loops around the intrinsic:
                        for j in range(_min(DB, R - r0)):  # see kernels.simd
                            part[k0 + i, r0 + j] += sums[i, j]


@njit(cache=True, nogil=True, error_model="numpy")
def conv2d_weight_grad_cols(xs, offs, masks, dys, P, nlanes, tiles, dw_out, l0, l1):
    """The weight gradient of :func:`conv2d_weight_grad` for few positions (small planes, one
    image): with a short reduction the horizontal sums of ``dot_tile`` would dominate, so here
    each tile ``dW[k0:k0+KB, r0:r0+TB]`` is one :func:`kernels.simd.fma_tile` over the
    positions, vectorised along the taps, reading a tile of the transposed column matrix
    ``colT[q, r0 + t] = xs[offs[r0 + t] + q]`` (``P x TB``, zero past the last tap).

    Work items are (tap tile, channel block) pairs, tap tile outer; lane ``l`` takes the
    ``l``-th contiguous share of them, builds the column tile of its current tap tile in its
    own part of ``tiles`` and reuses it for the channel blocks that follow (so the column
    matrix is gathered about once). One thread, ``nogil``, for the lanes ``l0 .. l1 - 1``: the
    caller runs the lanes on several threads, as :func:`conv2d_weight_grad`.

    Parameters
    ----------
    xs, offs, masks, dys, P : as :func:`conv2d_weight_grad`, with ``P`` the exact number of
        positions (strips laid out with ``span = 1``) and ``offs`` of length ``R``
    nlanes : int
    tiles : 1-D, the dtype of ``xs``, at least ``nlanes * P * simd.TB`` long, scratch
    dw_out : (K, R), written
    l0, l1 : int
        The lanes to compute (``0, nlanes`` for all).
    """
    K, R = dw_out.shape
    KB, TB = simd.KB, simd.TB
    vl = simd.VECTOR_BYTES // xs.itemsize
    phases, taps = masks.shape
    nkb = (K + KB - 1) // KB
    nitems = nkb * ((R + TB - 1) // TB)
    acc = np.empty((KB, TB), dtype=xs.dtype)
    wrows = np.empty(KB, dtype=np.int64)
    qoffs = np.empty(P, dtype=np.int64)
    for q in range(P):
        qoffs[q] = q * TB
    tcol = np.empty(TB, dtype=np.int64)                # the taps' columns of ``masks``
    for lane in range(l0, l1):
        tile = tiles[lane * P * TB:(lane + 1) * P * TB]
        built = -1
        for item in range(lane * nitems // nlanes, (lane + 1) * nitems // nlanes):
            r0 = (item // nkb) * TB
            k0 = (item - (item // nkb) * nkb) * KB
            if r0 != built:                          # gather the column tile of taps r0..
                nt = _min(TB, R - r0)
                if phases > 0:
                    for t in range(nt):
                        tcol[t] = (r0 + t) % taps
                for q in range(P):
                    row = tile[q * TB:(q + 1) * TB]
                    if phases > 0:                    # a packed strip: drop the reads past
                        mrow = masks[(q // vl) % phases]   # the image's edges (tap_masks)
                        bit = q % vl
                        for t in range(nt):
                            v = xs[offs[r0 + t] + q]
                            row[t] = v if (mrow[tcol[t]] >> bit) & 1 else 0
                    else:
                        for t in range(nt):
                            row[t] = xs[offs[r0 + t] + q]
                    for t in range(nt, TB):
                        row[t] = 0
                built = r0
            for k in range(KB):                      # past the last channel: repeat it
                wrows[k] = _min(k0 + k, K - 1) * P
            simd.fma_tile(tile, 0, dys, wrows, qoffs, acc)
            for k in range(_min(KB, K - k0)):         # plain loops around the intrinsic
                for t in range(_min(TB, R - r0)):
                    dw_out[k0 + k, r0 + t] = acc[k, t]


@njit(cache=True, nogil=True, error_model="numpy")
def phases_to_image(dphase, phase_index, sh, sw, ph, pw, dx, p0, p1):
    """Interleave phase planes back into an image: ``dx[n, c, h, w] = dphase[p, n, c, u, v]``
    where ``h + ph = u*sh + a``, ``w + pw = v*sw + b`` and ``p = phase_index[a, b]``; zero where
    the phase is unused (``p < 0``) or ``(u, v)`` is outside the plane.

    ``dphase`` (nph, N, C, Hq, Wq) holds the gradient of the zero-padded input's phases. The
    planes ``nc = n*C + c`` in ``[p0, p1)`` of ``dx`` are written, on one thread (``nogil``:
    the caller splits the planes between threads with :func:`cvcore.nn._lanes.run_lanes`; a
    ``prange`` here doubled the kernel's cold compile).
    """
    N, C, H, W = dx.shape
    Hq, Wq = dphase.shape[3], dphase.shape[4]
    # does every pixel get a value from some phase? if not, zero the plane first
    covered = Hq * sh >= H + ph and Wq * sw >= W + pw
    for a in range(sh):
        for b in range(sw):
            covered = covered and phase_index[a, b] >= 0
    dflat = dx.reshape(N * C * H * W)
    sflat = dphase.reshape(dphase.size)
    for nc in range(p0, p1):
        n = nc // C
        c = nc - n * C
        out = nc * H * W
        if not covered:
            for i in range(H * W):
                dflat[out + i] = 0
        for a in range(sh):
            for b in range(sw):
                p = phase_index[a, b]
                if p < 0:
                    continue
                src = ((p * N + n) * C + c) * Hq * Wq
                # pixels of this phase: h = u*sh + a - ph in [0, H), w = v*sw + b - pw in [0, W)
                u0 = clamp((ph - a + sh - 1) // sh, 0, Hq)
                u1 = _min(Hq, (H - 1 + ph - a) // sh + 1)
                v0 = clamp((pw - b + sw - 1) // sw, 0, Wq)
                v1 = _min(Wq, (W - 1 + pw - b) // sw + 1)
                for u in range(u0, u1):
                    row = out + (u * sh + a - ph) * W + b - pw
                    srow = src + u * Wq
                    for v in range(v0, v1):           # unsigned indices: no wraparound check
                        dflat[np.uint64(row + v * sw)] = sflat[np.uint64(srow + v)]
