"""2-D correlation kernels: border index mapping, row extension, general and separable correlation.

Conventions (the caller in :mod:`cvcore.preprocess.filters` guarantees them):

* images are 2-D float32, C-contiguous; a kernel arrives as its non-zero taps (int64 offsets,
  float32 weights) and is laid out dense (zeros included) for the register tiles;
* correlation, not convolution: ``out[i, j] = sum_{u, v} k[u, v] * in[i + u - cy, j + v - cx]``
  where ``(cy, cx)`` is the kernel's centre (SciPy's ``origin=0`` puts it at ``n // 2``);
* the border is folded into two index maps (:func:`border_map`: for each row / column of the
  virtually padded image, its source row / column, or -1 for ``cval``), built once per call.
  No padded copy of the image is made: each block of output rows extends only the few
  source rows it needs into a small ring of row buffers (:func:`_pad_row`), and sums its
  outputs in vector registers (:func:`_correlate_tiles`), the separable kernel with a
  ``len(ky) x 1`` tile then a ``1 x len(kx)`` tile. The kernels compute a band of output rows
  ``[r0, r1)`` and are serial (``nogil``): the caller runs bands on several threads
  (:func:`cvcore._bands.run_bands`). :func:`fill_ring` keeps the median filter's ring.
  Avoiding whole-image temporaries matters: a fresh 4 MB array costs ~1-2 ms of page faults
  on first touch on the test machine, as much as the 5 x 5 correlation itself.

Border modes and their integer codes (SciPy ``ndimage`` names and meanings, see the
``mode`` parameter of ``scipy.ndimage.correlate``)::

    reflect   (d c b a | a b c d | d c b a)   half-sample symmetric      MODE_REFLECT  = 0
    mirror    (d c b | a b c d | c b a)       whole-sample symmetric     MODE_MIRROR   = 1
    nearest   (a a a a | a b c d | d d d d)   edge value repeated        MODE_NEAREST  = 2
    constant  (k k k k | a b c d | k k k k)   fixed value cval           MODE_CONSTANT = 3
    wrap      (a b c d | a b c d | a b c d)   periodic                   MODE_WRAP     = 4
"""
import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

MODE_REFLECT = 0
MODE_MIRROR = 1
MODE_NEAREST = 2
MODE_CONSTANT = 3
MODE_WRAP = 4

@njit(cache=True)
def border_index(i, n, mode):
    """Map a possibly out-of-range index ``i`` on an axis of length ``n`` into ``[0, n)``.

    Works for any distance outside the axis (a 15-tap kernel on a 1-pixel image reaches 7
    pixels out), because the symmetric modes are periodic: ``reflect`` with period ``2 n``,
    ``mirror`` with period ``2 n - 2`` (a 1-pixel axis mirrors onto itself), ``wrap`` with
    period ``n``. Returns -1 for ``constant`` outside the axis (the caller uses ``cval``).
    """
    if i >= 0 and i < n:
        return i
    if mode == MODE_CONSTANT:
        return -1
    if mode == MODE_NEAREST:
        return 0 if i < 0 else n - 1
    if mode == MODE_WRAP:
        return i % n                      # Python semantics: non-negative for n > 0
    if mode == MODE_REFLECT:
        period = 2 * n
        m = i % period
        return m if m < n else period - 1 - m
    # MODE_MIRROR
    if n == 1:
        return 0
    period = 2 * n - 2
    m = i % period
    return m if m < n else period - m


@njit(cache=True)
def border_map(n, before, after, mode):
    """Source index for each position of an axis padded by ``before`` and ``after`` cells."""
    out = np.empty(n + before + after, np.int64)
    for p in range(out.size):
        out[p] = border_index(p - before, n, mode)
    return out


@njit(cache=True)
def _pad_row(src, cols, cx, fill, buf):
    """``buf[c] = src[cols[c]]`` (``fill`` where ``cols[c]`` is -1): the row ``src`` extended
    by its border. The ``W`` interior cells are a plain copy starting at ``cx``."""
    W = src.size
    for c in range(min(cx, buf.size)):
        s = cols[c]
        buf[c] = fill if s < 0 else src[s]
    if cx < buf.size:
        mid = buf[cx:cx + W]
        for j in range(mid.size):
            mid[j] = src[j]
    for c in range(cx + W, buf.size):
        s = cols[c]
        buf[c] = fill if s < 0 else src[s]


@njit(cache=True)
def _extend_in_place(buf, cols, cx, W, fill):
    """Border cells of a row already sitting at ``buf[cx:cx + W]``: ``buf[c] = buf[cx + cols[c]]``
    (``fill`` where ``cols[c]`` is -1) for the cells before and after it."""
    for c in range(cx):
        s = cols[c]
        buf[c] = fill if s < 0 else buf[cx + s]
    for c in range(cx + W, buf.size):
        s = cols[c]
        buf[c] = fill if s < 0 else buf[cx + s]


@njit(cache=True)
def fill_ring(ring, image, rows, cols, cx, fill, i, first):
    """Bring the ring of extended source rows up to date for output row ``i``.

    The ring holds, for a window of ``kh = ring.shape[0]`` rows, source row ``i + u`` (mapped
    by ``rows``, extended by ``cols``) in slot ``(i + u) % kh``. For the first row of a block
    (``first``) all ``kh`` slots are filled; afterwards only the one new row ``i + kh - 1``.
    """
    kh = ring.shape[0]
    for u in range(0 if first else kh - 1, kh):
        slot = (i + u) % kh
        r = rows[i + u]
        if r < 0:                              # a whole row of cval
            for c in range(ring.shape[1]):
                ring[slot, c] = fill
        else:
            _pad_row(image[r], cols, cx, fill, ring[slot])


# ----------------------------------------------------------------------------- general 2-D
#
# The general correlation keeps a tile of outputs in vector registers, as OpenCV's filter
# engine keeps its sums in registers (``FilterVec_32f`` in imgproc/src/filter.simd.hpp), but
# turned round: OpenCV walks the taps of ONE output row, loading a shifted source vector per
# tap (25 unaligned loads per output vector for a 5 x 5 kernel); here each shifted source
# vector, once loaded, feeds every output row of the tile that uses it. A tile is TILE_ROWS
# output rows by TILE_VECTORS vectors of columns; source row ``s`` of the tile (ext row
# ``i + s``) shifted by ``v`` serves output row ``k`` with the weight ``k[s - k, v]`` whenever
# ``0 <= s - k < kh``. Per output vector (5 x 5, 4 rows): 10 source loads instead of 25, 25
# fused multiply-adds, one store; the loop is bound by the multiply-adds, not the loads.
# LLVM does not find this blocking by itself from plain loops (it keeps accumulators in memory
# and needs more run-time alias checks than it allows), so the tile is written as LLVM IR
# with one ``<VL x float>`` value per accumulator (as :mod:`kernels.simd` does for the nets).


def _host_has_avx512():
    try:
        return llvm.get_host_cpu_features().get("avx512f", False)
    except Exception:  # pragma: no cover - platforms without feature detection
        return False


#: float32 lanes per vector register: 16 with AVX-512 (32 registers), else 8 (AVX2, 16).
VECTOR_LANES = 16 if _host_has_avx512() else 8
#: Output rows per tile, and vectors of columns per tile: 16 (AVX-512) or 8 (AVX2)
#: accumulators, plus the tile's source vectors and a broadcast weight, fit the registers.
TILE_ROWS = 4
TILE_VECTORS = 4 if VECTOR_LANES == 16 else 2
#: Output columns per tile.
TILE_WIDTH = VECTOR_LANES * TILE_VECTORS


@intrinsic
def _correlate_tiles(typingctx, ring, srow, weights, kh, kw, out, orow, width):
    """For the TILE_ROWS output rows ``k`` of one block and every column ``j < width``:
    ``out[orow[k] + j] = sum_{u < kh, v < kw} weights[u * kw + v] * ring[srow[k + u] + j + v]``.

    ``ring`` and ``out`` are 2-D, addressed as flat: ``ring`` holds the block's
    ``TILE_ROWS + kh - 1`` extended source rows, row ``s`` starting at flat index ``srow[s]``;
    ``weights`` is the dense ``kh x kw`` kernel, row-major. The columns are
    covered by tiles of TILE_WIDTH, the last one moved back to end at ``width``
    (``width >= TILE_WIDTH``; overlapping tiles write the same values). Sums run over ``u``
    then ``v`` in one fused multiply-add chain per output. C-contiguous float32 arrays, int64
    offsets; nothing is bounds-checked.
    """
    def floats(a, ndim):
        return a == types.Array(types.float32, ndim, "C")

    i64a = types.Array(types.int64, 1, "C")
    if not (floats(ring, 2) and floats(weights, 1) and floats(out, 2) and srow == i64a
            and orow == i64a):
        return None
    sig = types.void(ring, srow, weights, types.int64, types.int64, out, orow, types.int64)

    def codegen(context, builder, signature, args):
        ring_a, srow_a, w_a, _, _, out_a, orow_a, _ = [
            context.make_array(t)(context, builder, a) if isinstance(t, types.Array) else None
            for t, a in zip(signature.args, args)]
        khv, kwv, widthv = args[3], args[4], args[7]
        i64 = ir.IntType(64)
        vty = ir.VectorType(ir.FloatType(), VECTOR_LANES)
        fmuladd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]),
            f"llvm.fmuladd.v{VECTOR_LANES}f32")

        def const(n):
            return ir.Constant(i64, n)

        def at(base, index):
            return builder.gep(base, [index], inbounds=True)

        def vector_at(base, index):
            return builder.bitcast(at(base, index), vty.as_pointer())

        def splat(value):
            undef = ir.Constant(vty, ir.Undefined)
            one = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
            zeros = ir.Constant(ir.VectorType(ir.IntType(32), VECTOR_LANES),
                                [0] * VECTOR_LANES)
            return builder.shuffle_vector(one, undef, zeros)

        # Accumulators as stack slots touched only by whole loads and stores: mem2reg makes
        # them registers.
        acc = [cgutils.alloca_once(builder, vty) for _ in range(TILE_ROWS * TILE_VECTORS)]
        zero = ir.Constant(vty, [0.0] * VECTOR_LANES)
        n_src = builder.add(khv, const(TILE_ROWS - 1))
        out_rows = [builder.load(at(orow_a.data, const(k))) for k in range(TILE_ROWS)]
        n_tiles = builder.sdiv(builder.add(widthv, const(TILE_WIDTH - 1)), const(TILE_WIDTH))
        last = builder.sub(widthv, const(TILE_WIDTH))
        with cgutils.for_range(builder, n_tiles) as tiles:
            j0 = builder.mul(tiles.index, const(TILE_WIDTH))
            j0 = builder.select(builder.icmp_signed(">", j0, last), last, j0)
            for slot in acc:
                builder.store(zero, slot)
            # Shifts outside, source rows inside: whether output row k uses source row s
            # changes with s, so LLVM has no invariant test to unswitch (16 loop copies).
            with cgutils.for_range(builder, kwv) as shifts:
                v = shifts.index
                with cgutils.for_range(builder, n_src) as sources:
                    s = sources.index
                    first = builder.add(builder.add(builder.load(at(srow_a.data, s)), j0), v)
                    x = [builder.load(vector_at(ring_a.data,
                                                builder.add(first, const(c * VECTOR_LANES))),
                                      align=4)
                         for c in range(TILE_VECTORS)]
                    # Output row k takes source row s through kernel row u = s - k, if any.
                    for k in range(TILE_ROWS):
                        u = builder.sub(s, const(k))
                        inside = builder.and_(builder.icmp_signed(">=", u, const(0)),
                                              builder.icmp_signed("<", u, khv))
                        with builder.if_then(inside, likely=True):
                            w = splat(builder.load(at(w_a.data,
                                                      builder.add(builder.mul(u, kwv), v))))
                            for c in range(TILE_VECTORS):
                                slot = acc[k * TILE_VECTORS + c]
                                builder.store(builder.call(fmuladd, [w, x[c],
                                                                     builder.load(slot)]), slot)
            for k in range(TILE_ROWS):
                first = builder.add(out_rows[k], j0)
                for c in range(TILE_VECTORS):
                    builder.store(builder.load(acc[k * TILE_VECTORS + c]),
                                  vector_at(out_a.data,
                                            builder.add(first, const(c * VECTOR_LANES))),
                                  align=4)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, error_model="numpy")
def correlate2d(image, tu, tv, tw, kh, kw, rows, cols, cx, cval, out, r0, r1):
    """General 2-D correlation of output rows ``[r0, r1)``, border folded into index maps (no
    padded image).

    ``out[i, j] = sum_t tw[t] * ext[rows[i + tu[t]], cols[j + tv[t]]]``: the kernel is given
    as its non-zero taps (row ``tu``, column ``tv``, weight ``tw``) of a ``kh`` x ``kw``
    window; ``ext`` is ``image`` extended by ``cval`` at index -1,
    ``rows = border_map(H, cy, kh - 1 - cy)``, ``cols = border_map(W, cx, kw - 1 - cx)``.

    Output rows go in blocks of TILE_ROWS, each block by register tiles
    (:func:`_correlate_tiles`: every shifted source vector loaded once for all the block's
    rows). The block's ``TILE_ROWS + kh - 1`` source rows sit, extended by their border, in a
    ring of row buffers (ext row ``p`` in slot ``p % (TILE_ROWS + kh - 1)``), so moving down a
    block extends just TILE_ROWS new rows. The last block of the band is moved up to end at
    ``r1`` (rows computed twice get the same values). A band of fewer than TILE_ROWS rows, or
    an image narrower than TILE_WIDTH, is computed into a scratch block and copied.
    ``image``, ``out`` (H, W) float32; ``tw`` float32; ``tu``, ``tv`` int64. Serial: the caller
    runs bands of rows on several threads (:func:`cvcore._bands.run_bands`).
    """
    H, W = out.shape
    fill = np.float32(cval)
    weights = np.zeros(kh * kw, np.float32)
    for t in range(tw.size):
        weights[tu[t] * kw + tv[t]] = tw[t]
    n_ring = TILE_ROWS + kh - 1
    wide = W if W > TILE_WIDTH else TILE_WIDTH   # columns computed per row (no min/max
    # builtin on a Literal[int] global: one more specialisation to compile)
    ext_width = W + kw - 1                    # columns of an extended row
    stride = wide + kw - 1                    # ring row length (zeros beyond ext_width)
    ring = np.zeros((n_ring, stride), np.float32)
    srow = np.empty(n_ring, np.int64)
    orow = np.empty(TILE_ROWS, np.int64)
    direct = W >= TILE_WIDTH and r1 - r0 >= TILE_ROWS
    dst = out if direct else np.empty((TILE_ROWS, wide), np.float32)
    filled = r0                               # next ext row to bring into the ring
    i = r0
    while i < r1:
        if direct and i + TILE_ROWS > r1:
            i = r1 - TILE_ROWS
        for p in range(filled if filled > i else i, i + n_ring):
            buf = ring[p % n_ring, :ext_width]
            r = rows[p] if p < rows.size else -2      # -2: below the image (scratch rows)
            if r >= 0:
                _pad_row(image[r], cols, cx, fill, buf)
            else:
                value = fill if r == -1 else np.float32(0.0)
                for c in range(ext_width):
                    buf[c] = value
        filled = i + n_ring
        for s in range(n_ring):
            srow[s] = ((i + s) % n_ring) * stride
        for k in range(TILE_ROWS):
            orow[k] = (i + k) * W if direct else k * wide
        _correlate_tiles(ring, srow, weights, kh, kw, dst, orow, wide)
        if not direct:
            for k in range(TILE_ROWS if i + TILE_ROWS <= r1 else r1 - i):
                for j in range(W):
                    out[i + k, j] = dst[k, j]
        i += TILE_ROWS


@njit(cache=True, nogil=True, error_model="numpy")
def correlate_separable(image, yu, yw, xv, xw, nx, rows, cols, cx, cval, cval_second, out,
                        r0, r1):
    """Axis-0 pass then axis-1 pass, fused block by block, for output rows ``[r0, r1)``.

    The 1-D kernels are given as their non-zero taps: ``ky[yu[t]] = yw[t]`` and
    ``kx[xv[t]] = xw[t]``, ``nx = len(kx)``. For each output row ``i``:
    ``t[j] = sum_u ky[u] * ext[rows[i + u], j]`` (beyond the top and bottom: ``cval``), then
    ``out[i, j] = sum_v kx[v] * t_ext[cols[j + v]]`` (beyond the sides: ``cval_second``).
    This is exactly SciPy's ``correlate1d`` along axis 0 followed by ``correlate1d`` along
    axis 1 (``cval_second = cval``), and the 2-D correlation with ``outer(ky, kx)`` when
    ``cval_second = cval * sum(ky)``. A 1-D pass is the case ``kx = [1]`` (``cx = 0``) or
    ``ky = [1]`` (``rows = arange(H)``).

    Both passes are register tiles (:func:`_correlate_tiles`) over a block of TILE_ROWS
    output rows: the column pass (a ``len(ky) x 1`` kernel) reads the block's source rows
    from a ring (ext row ``p`` in slot ``p % (TILE_ROWS + len(ky) - 1)``, a row of ``cval``
    beyond the top and bottom) and writes the block's ``t`` rows into the middle of a small
    buffer, which is extended by the column border in place; the row pass (a ``1 x nx``
    kernel) reads that buffer. No padded or intermediate image is made. Last block, short
    bands and narrow images as in :func:`correlate2d`. Serial: the caller runs bands of rows
    on several threads.
    """
    H, W = out.shape
    ny = rows.size - H + 1                    # len(ky): rows = border_map(H, cy, ny - 1 - cy)
    fill = np.float32(cval)
    fill2 = np.float32(cval_second)
    wy = np.zeros(ny, np.float32)
    for t in range(yu.size):
        wy[yu[t]] = yw[t]
    wx = np.zeros(nx, np.float32)
    for t in range(xv.size):
        wx[xv[t]] = xw[t]
    n_ring = TILE_ROWS + ny - 1
    wide = W if W > TILE_WIDTH else TILE_WIDTH   # columns computed per row (no min/max
    # builtin on a Literal[int] global: one more specialisation to compile)
    ring = np.zeros((n_ring, wide), np.float32)
    ext_width = W + nx - 1
    tbuf = np.zeros((TILE_ROWS, wide + nx - 1), np.float32)
    srow = np.empty(n_ring, np.int64)
    trow = np.empty(TILE_ROWS, np.int64)
    orow = np.empty(TILE_ROWS, np.int64)
    for k in range(TILE_ROWS):
        trow[k] = k * tbuf.shape[1]
    direct = W >= TILE_WIDTH and r1 - r0 >= TILE_ROWS
    dst = out if direct else np.empty((TILE_ROWS, wide), np.float32)
    filled = r0                               # next ext row to bring into the ring
    i = r0
    while i < r1:
        if direct and i + TILE_ROWS > r1:
            i = r1 - TILE_ROWS
        # The column pass reads the image rows in place when all of the block's rows are
        # image rows (wide images, away from a constant border); else their ring copies.
        in_place = W >= TILE_WIDTH
        for s in range(n_ring):
            p = i + s
            in_place = in_place and p < rows.size and rows[p] >= 0
        if in_place:
            for s in range(n_ring):
                srow[s] = rows[i + s] * W
        else:
            for p in range(filled if filled > i else i, i + n_ring):
                buf = ring[p % n_ring]
                r = rows[p] if p < rows.size else -2  # -2: below the image (scratch rows)
                if r >= 0:
                    src = image[r]
                    for c in range(W):
                        buf[c] = src[c]
                else:
                    value = fill if r == -1 else np.float32(0.0)
                    for c in range(W):
                        buf[c] = value
            filled = i + n_ring
            for s in range(n_ring):
                srow[s] = ((i + s) % n_ring) * wide
        for k in range(TILE_ROWS):
            orow[k] = k * tbuf.shape[1] + cx
        _correlate_tiles(image if in_place else ring, srow, wy, ny, 1, tbuf, orow, wide)
        for k in range(TILE_ROWS):
            _extend_in_place(tbuf[k, :ext_width], cols, cx, W, fill2)
            orow[k] = (i + k) * W if direct else k * wide
        _correlate_tiles(tbuf, trow, wx, 1, nx, dst, orow, wide)        # row pass
        if not direct:
            for k in range(TILE_ROWS if i + TILE_ROWS <= r1 else r1 - i):
                for j in range(W):
                    out[i + k, j] = dst[k, j]
        i += TILE_ROWS
