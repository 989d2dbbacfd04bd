"""Resize kernels: the passes that apply per-axis sampling tables, and OpenCV's special cases.

Every mode here is separable: an output column ``dx`` is a weighted sum of a few input columns,
``out[:, dx] = sum_t w[t, dx] * in[:, idx[t, dx]]``, and rows likewise. The caller builds one
table per axis (``cvcore.preprocess.geometry``; :func:`area_table` here for the shrinking area
table); the tables reproduce OpenCV's ``cv::resize`` (``imgproc/src/resize.cpp``) with
``scale = 1 / (n_out / n_in)`` and pixel centres at integer coordinates:

* nearest: ``idx = min(floor(dx * scale), n_in - 1)`` (``INTER_NEAREST``, not centre-aligned);
* linear: source coordinate ``(dx + 0.5) * scale - 0.5`` (centre-aligned), two taps, clamped at
  the borders (``INTER_LINEAR``);
* area, shrinking: output pixel ``dx`` covers ``[dx * scale, (dx + 1) * scale)`` of the input; each
  input pixel is weighted by the length of its overlap divided by the cell width (``INTER_AREA``);
* area, enlarging: OpenCV's two-tap variant ``fx = (dx + 1) - (floor(dx * scale) + 1) / scale``,
  wrapped to ``[0, 1)`` (``INTER_AREA`` when any axis grows).

Three kernels, one per kind of work, so that a program compiles only the ones it uses:

* :func:`nearest_rows`: one tap per axis, a gather per output row; a 2x shrink is a stride-2
  copy, and an output row whose input row is the previous output row's is a plain copy;
* :func:`block_mean_rows`: integer factors (``INTER_AREA``'s ``resizeAreaFast``, and the 2x
  bilinear shrink, which samples half-way between pixel pairs: the 2x2 mean), no tables;
* :func:`resize_separable`: any table, OpenCV's structure: each input row goes through the column
  table once (the horizontal pass, a gather) into a small ring buffer, and each output row is the
  weighted sum of its buffer rows (the vertical pass, contiguous, vectorised). When the row count
  shrinks, the passes run the other way round (each output row blended from whole input rows,
  then gathered), which gathers fewer values. The horizontal pass works in blocks of LANES
  outputs whose taps all lie in a window of ``2 * LANES`` input values (enlarging, or shrinking
  by less than about 1.9): two vector loads of the window and one AVX2 permute per half and tap
  replace LANES scalar loads (:func:`_blocks_avx2`, an LLVM intrinsic; its plain form
  :func:`_blocks_plain` runs where there is no AVX2): the values are looked up in registers
  instead of one load each.

Each is a plain ``nogil`` kernel over one band of output rows ``y0:y1``; the caller
(``cvcore.preprocess.geometry``, through ``cvcore._team``) runs bands on several threads,
calling the kernel through its address (:mod:`kernels.pool`, :mod:`kernels.team`), so that
the kernel is not compiled a second time for them. While they read the
input, the nearest and separable bands also store (in ``top[y0]``) the largest ``bits &
0x7fffffff`` of the float32 input rows the band owns (the finiteness scan of
:mod:`kernels.finite`, fused so that each row is scanned as it is read, from the cache; the
rows-first pass of linear tables scans the two rows it blends in the blend's own loop,
:func:`_blend_scan`: 1024^2 -> 700^2 on one thread 257 -> 229-236 us); every input row is owned
by exactly one band, read or not (a row read by two bands may be scanned by both).

Readable twin: :mod:`kernels.reference.resize`.
"""
import math

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

AREA_MIN_FRACTION = 1e-3   # resize.cpp computeResizeAreaTab: partial overlaps below this dropped
ABS_MASK = np.uint32(0x7FFFFFFF)   # float32 bits but the sign (kernels.finite)
EXPONENT_ALL_ONES = np.uint32(0x7F800000)   # the bits of +infinity: a scan at or above is bad
LOW_HALF = np.uint64(0xFFFFFFFF)   # the first of two float32 in a little-endian uint64
BATCH = 4             # rows through the column table together (:func:`_horizontal4`)
LANES = 8             # outputs per block of the vector horizontal pass (one AVX2 register)
CHUNK = 32            # output rows per chunk of the columns-first pass: its input rows' buffer
                      # stays in the L2 cache (32 rows enlarging 1.5x: 22 x 1536 floats, 135 KB)


@intrinsic
def _float_bits(typingctx, value):
    """The bits of a float32 as a uint32 (LLVM ``bitcast``; no instruction once vectorised):
    the finiteness test ``bits & ABS_MASK >= EXPONENT_ALL_ONES`` as an integer max in
    registers."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.uint32))
    return types.uint32(value), codegen


@njit(cache=True, nogil=True)
def area_table(n_in, n_out, scale, idx, w):
    """Box-overlap table for shrinking (scale >= 1), (n_out, taps) with taps >= ceil(scale) + 1.

    Unused taps get weight 0 and the index of the last used tap (so that a row's taps stay a
    run of consecutive indices).
    """
    taps = idx.shape[1]
    for d in range(n_out):
        start = d * scale
        stop = start + scale
        cell = min(scale, n_in - start)
        s1 = int(math.ceil(start))
        s2 = min(int(math.floor(stop)), n_in - 1)
        s1 = min(s1, s2)
        t = 0
        if s1 - start > AREA_MIN_FRACTION:
            idx[d, t] = s1 - 1
            w[d, t] = np.float32((s1 - start) / cell)
            t += 1
        for s in range(s1, s2):
            idx[d, t] = s
            w[d, t] = np.float32(1.0 / cell)
            t += 1
        if stop - s2 > AREA_MIN_FRACTION:
            idx[d, t] = s2
            w[d, t] = np.float32(min(min(stop - s2, 1.0), cell) / cell)
            t += 1
        for u in range(t, taps):
            idx[d, u] = idx[d, t - 1]
            w[d, u] = 0.0


@njit(cache=True, nogil=True)
def _scan_rows(bits, lo, hi):
    """Largest ``bits[r, x] & ABS_MASK`` over rows ``lo:hi`` (uint32 view of a float32 plane);
    ``>= 0x7f800000`` means a NaN or an infinity (IEEE 754 binary32). An integer max is
    associative, so LLVM vectorises it."""
    top = np.uint32(0)
    for r in range(lo, hi):
        row = bits[r]
        for x in range(row.shape[0]):
            top = max(top, np.uint32(row[x] & ABS_MASK))   # (Numba widens & to 64 bits)
    return top


@njit(cache=True, nogil=True)
def nearest_rows(bits, pairs, row_idx, col_idx, out, top, y0, y1):
    """Nearest resize of output rows ``y0:y1`` of channel planes: ``out[c, y, x] =
    bits[c, row_idx[y], col_idx[x]]``; ``top[y0]`` (uint32 (h,)) receives the finiteness scan of
    the input rows this band owns (module docstring).

    bits (C, H, W) uint32: the float32 planes' bits (nearest copies values, so it works on
    their bits); pairs: the same memory as uint64 (C, H, W // 2) when W is even, else (C, H, 0);
    row_idx (h,), col_idx (w,) int32, valid and non-decreasing; out (C, h, w) uint32, the
    result's bits. Where ``col_idx[x] == 2 * x`` (a 2x shrink) each output value is the low half
    of a uint64 pair (little-endian): contiguous loads that LLVM vectorises, where a stride-2
    float loop stays scalar (measured 0.046 against 0.12 ms, 1024^2 -> 512^2).
    """
    C, H, W = bits.shape
    h, w = out.shape[1], out.shape[2]
    halving = pairs.shape[2] >= w   # col_idx == 2 * x exactly (OpenCV's nearest 2x shrink)
    for x in range(w):
        if col_idx[x] != 2 * x:
            halving = False
    lo, hi = _owned_rows(row_idx[y0], row_idx[min(y1, h - 1)], y0, y1, h, H)
    worst = np.uint32(0)
    for c in range(C):
        plane, dst_plane = bits[c], out[c]
        scanned = lo                    # rows lo:scanned checked, in reading order (cache-hot)
        y = y0
        while y < y1:
            r = row_idx[y]
            batch = 1
            if (not halving and y + BATCH <= y1 and (y == y0 or r != row_idx[y - 1])
                    and row_idx[y + 1] != r and row_idx[y + 2] != row_idx[y + 1]
                    and row_idx[y + 3] != row_idx[y + 2]):
                batch = BATCH               # four new rows gathered together (one index load)
            last = min(row_idx[y + batch - 1] + 1, hi)
            if last > scanned:
                worst = max(worst, _scan_rows(plane, scanned, last))
                scanned = last
            dst = dst_plane[y]
            if y > y0 and r == row_idx[y - 1]:
                prev = dst_plane[y - 1]             # the same input row: copy (enlarging)
                for x in range(w):
                    dst[x] = prev[x]
            elif halving:
                src2 = pairs[c, r]
                for x in range(w):
                    dst[x] = np.uint32(src2[x] & LOW_HALF)
            elif batch == BATCH:
                s0, s1 = plane[r], plane[row_idx[y + 1]]
                s2, s3 = plane[row_idx[y + 2]], plane[row_idx[y + 3]]
                d1, d2, d3 = dst_plane[y + 1], dst_plane[y + 2], dst_plane[y + 3]
                for x in range(w):
                    j = np.uint32(col_idx[x])       # unsigned: no negative-wrap test
                    dst[x] = s0[j]
                    d1[x] = s1[j]
                    d2[x] = s2[j]
                    d3[x] = s3[j]
            else:
                src = plane[r]
                for x in range(w):
                    dst[x] = src[np.uint32(col_idx[x])]
            y += batch
        worst = max(worst, _scan_rows(plane, scanned, hi))
    top[y0] = worst


@njit(cache=True, nogil=True, inline="always")
def _owned_rows(first_y0, first_y1, y0, y1, h, H):
    """Input rows ``lo:hi`` whose finiteness a band of output rows ``y0:y1`` checks: from the
    first row its first output row reads (0 for the first band) to the first row the next
    band's first output row reads (H for the last band), so the bands own every row once."""
    lo = 0 if y0 == 0 else first_y0
    hi = H if y1 >= h else first_y1
    return lo, hi


@njit(cache=True, nogil=True)
def block_mean_rows(image, out, top, y0, y1):
    """Output rows ``y0:y1`` of the block mean for the integer factors ``ky = H // h``,
    ``kx = W // w``: ``out[c, y, x]`` is the mean of ``image[c, ky*y : ky*y + ky, kx*x : kx*x +
    kx]`` (OpenCV's ``resizeAreaFast``).

    image (C, H, W) float32, out (C, h, w) float32. The 2x2 case is one pass over two input rows
    (``((a[2x] + b[2x]) + (a[2x+1] + b[2x+1])) / 4``); others sum the ``ky`` rows into a row
    buffer (contiguous, vectorised), then each run of ``kx`` neighbours. ``top[y0]`` receives
    the finiteness scan of the band's OUTPUT values, each scanned in registers as it is
    written (the largest ``bits & 0x7fffffff``, :func:`_float_bits`): a block mean has positive weights and counts every input pixel
    once, so a NaN or infinity in the input cannot vanish from the output.
    """
    C, H, W = image.shape
    h, w = out.shape[1], out.shape[2]
    ky, kx = H // h, W // w
    scale = np.float32(1.0 / (ky * kx))
    rowsum = np.empty(W, dtype=np.float32)
    worst = np.uint32(0)
    for c in range(C):
        plane, dst_plane = image[c], out[c]
        for y in range(y0, y1):
            dst = dst_plane[y]
            if ky == 2 and kx == 2:
                a, b = plane[2 * y], plane[2 * y + 1]
                for x in range(w):
                    v = ((a[2 * x] + b[2 * x]) + (a[2 * x + 1] + b[2 * x + 1])) * scale
                    dst[x] = v
                    # the finiteness scan in registers: an integer max of the bits, kept in
                    # 32 bits (Numba widens & to 64: the max then took a quarter of the call)
                    worst = max(worst, np.uint32(_float_bits(v) & ABS_MASK))
                continue
            first = plane[y * ky]
            for x in range(W):
                rowsum[x] = first[x]
            for i in range(1, ky):
                src = plane[y * ky + i]
                for x in range(W):
                    rowsum[x] += src[x]
            for x in range(w):
                acc = np.float32(0.0)
                for j in range(kx):
                    acc += rowsum[x * kx + j]
                v = acc * scale
                dst[x] = v
                worst = max(worst, np.uint32(_float_bits(v) & ABS_MASK))
    top[y0] = worst


def _host_has_avx2():
    try:
        return bool(llvm.get_host_cpu_features().get("avx2", False))
    except Exception:  # pragma: no cover - platforms without feature detection
        return False


#: Whether the horizontal pass uses the AVX2 permute (:func:`_blocks_avx2`); Numba compiles
#: for the host CPU, so the choice is made once, here (elsewhere :func:`_blocks_plain`).
AVX2 = _host_has_avx2()


def _is_c(ty, ndim, dtype):
    return (isinstance(ty, types.Array) and ty.ndim == ndim and ty.layout == "C"
            and ty.dtype == dtype)


def _blocks_codegen(rows):
    """Code generator of the vector horizontal pass over ``rows`` input rows at once (the
    arguments: ``rows`` sources, base, rel, col_w, ``rows`` destinations): per block, each
    tap's relative indices and weights and the test of which window half an index falls in
    are loaded once for all the rows. Two taps (linear tables) run straight, without the
    loop over taps (its set-up per block cost ~10 % of the pass, measured in L1)."""

    def codegen(context, builder, signature, args):
        arrays = [context.make_array(ty)(context, builder, v)
                  for ty, v in zip(signature.args, args)]
        srcs, b, r, wt, dsts = (arrays[:rows], arrays[rows], arrays[rows + 1],
                                arrays[rows + 2], arrays[rows + 3:])
        i64 = ir.IntType(64)
        vf = ir.VectorType(ir.FloatType(), LANES)
        vi = ir.VectorType(ir.IntType(32), LANES)
        permps = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vf, [vf, vi]), "llvm.x86.avx2.permps")
        blocks = builder.extract_value(b.shape, 0)
        taps = builder.extract_value(r.shape, 0)
        rel_stride = builder.extract_value(r.shape, 1)     # blocks * LANES
        w_stride = builder.extract_value(wt.shape, 1)      # w
        half = ir.Constant(vi, [LANES] * LANES)
        accs = [cgutils.alloca_once(builder, vf) for _ in range(rows)]   # registers (mem2reg)

        def load(ptr, index, vty):
            p = builder.bitcast(cgutils.gep(builder, ptr, index), vty.as_pointer())
            return builder.load(p, align=4)

        def tap(windows, t, x):
            """Each row's values of tap t (``src[base + rel[t, x:x + LANES]]``) times the
            tap's weights."""
            idx = load(r.data, builder.add(builder.mul(t, rel_stride), x), vi)
            weights = load(wt.data, builder.add(builder.mul(t, w_stride), x), vf)
            upper = builder.icmp_unsigned(">=", idx, half)
            return [builder.fmul(weights, builder.select(upper, builder.call(permps, [hi, idx]),
                                                         builder.call(permps, [lo, idx])))
                    for lo, hi in windows]

        with cgutils.for_range(builder, blocks) as loop:
            x = builder.mul(loop.index, ir.Constant(i64, LANES))
            start = builder.sext(builder.load(cgutils.gep(builder, b.data, loop.index)), i64)
            windows = [(load(src.data, start, vf),
                        load(src.data, builder.add(start, ir.Constant(i64, LANES)), vf))
                       for src in srcs]
            for acc, value in zip(accs, tap(windows, ir.Constant(i64, 0), x)):
                builder.store(value, acc)
            two = builder.icmp_signed("==", taps, ir.Constant(i64, 2))
            with builder.if_else(two) as (linear, other):
                with linear:            # linear tables: the second tap without a loop
                    for acc, value in zip(accs, tap(windows, ir.Constant(i64, 1), x)):
                        builder.store(builder.fadd(builder.load(acc), value), acc)
                with other:
                    with cgutils.for_range_slice(builder, ir.Constant(i64, 1), taps,
                                                 ir.Constant(i64, 1)) as (t, _):
                        for acc, value in zip(accs, tap(windows, t, x)):
                            builder.store(builder.fadd(builder.load(acc), value), acc)
            for acc, dst in zip(accs, dsts):
                p = builder.bitcast(cgutils.gep(builder, dst.data, x), vf.as_pointer())
                builder.store(builder.load(acc), p, align=4)
        return context.get_dummy_value()

    return codegen


def _blocks_signature(rows, args):
    """The intrinsic's signature, or None (Numba then reports a typing error) unless the
    arguments are ``rows`` float32 rows, int32 base (1-D) and rel (2-D), float32 col_w (2-D)
    and ``rows`` float32 rows, all C-contiguous."""
    f32, i32 = types.float32, types.int32
    kinds = [(1, f32)] * rows + [(1, i32), (2, i32), (2, f32)] + [(1, f32)] * rows
    if all(_is_c(ty, ndim, dtype) for ty, (ndim, dtype) in zip(args, kinds)):
        return types.void(*args)
    return None


@intrinsic
def _blocks_avx2(typingctx, src, base, rel, col_w, dst):
    """:func:`_blocks_plain` as LLVM IR with AVX2's ``vpermps`` (``llvm.x86.avx2.permps``).

    Per block of LANES outputs: two vector loads of ``src[base[b] : base[b] + 2 * LANES]``
    (a window the caller made to hold every tap of the block), and per tap one permute of each
    half by the block's relative indices, a select of the half (index >= LANES: the second),
    a multiply by the weights and an add, in the scalar pass's order (``w0 * s0``, then
    ``+ wt * st`` tap after tap: the same bits). A gather of LANES values costs two permutes
    and a blend instead of LANES scalar loads (measured 0.3 against 0.9 ns per output value,
    one row of 1024 -> 700 or 1536, load 4).
    """
    sig = _blocks_signature(1, (src, base, rel, col_w, dst))
    return None if sig is None else (sig, _blocks_codegen(1))


@intrinsic
def _blocks4_avx2(typingctx, s0, s1, s2, s3, base, rel, col_w, d0, d1, d2, d3):
    """:func:`_blocks_avx2` for four rows at once: the relative indices, weights and window
    halves of a block's taps loaded once for the four rows (measured 0.21 against 0.31-0.34 ns
    per output for four one-row calls, 1024 -> 700 and 1536 columns, load 5.3)."""
    sig = _blocks_signature(4, (s0, s1, s2, s3, base, rel, col_w, d0, d1, d2, d3))
    return None if sig is None else (sig, _blocks_codegen(4))


@njit(cache=True, nogil=True)
def _blocks_plain(src, base, rel, col_w, dst):
    """The first ``LANES * len(base)`` outputs of the horizontal pass, block by block:
    ``dst[x] = sum_t col_w[t, x] * src[base[x // LANES] + rel[t, x]]`` (the taps in order).

    ``base`` (blocks,) int32, ``rel`` (taps, blocks * LANES) int32 in ``[0, 2 * LANES)``: the
    column table rewritten relative to a window of ``2 * LANES`` input values per block
    (``cvcore.preprocess.geometry`` builds it). The readable form of :func:`_blocks_avx2`, and
    what runs on a CPU without AVX2.
    """
    taps = rel.shape[0]
    for b in range(base.shape[0]):
        window = src[base[b]:base[b] + 2 * LANES]
        for x in range(b * LANES, (b + 1) * LANES):
            acc = col_w[0, x] * window[rel[0, x]]
            for t in range(1, taps):
                acc += col_w[t, x] * window[rel[t, x]]
            dst[x] = acc


@njit(cache=True, nogil=True)
def _blocks4_plain(s0, s1, s2, s3, base, rel, col_w, d0, d1, d2, d3):
    """:func:`_blocks_plain` for four rows (the form of :func:`_blocks4_avx2` without AVX2)."""
    _blocks_plain(s0, base, rel, col_w, d0)
    _blocks_plain(s1, base, rel, col_w, d1)
    _blocks_plain(s2, base, rel, col_w, d2)
    _blocks_plain(s3, base, rel, col_w, d3)


_blocks = _blocks_avx2 if AVX2 else _blocks_plain
_blocks4 = _blocks4_avx2 if AVX2 else _blocks4_plain


@njit(cache=True, nogil=True)
def _horizontal(src, col_idx, col_w, base, rel, dst):
    """One row through the column table: ``dst[x] = sum_t col_w[t, x] * src[col_idx[t, x]]``.

    The table is tap-major, (taps, w). The first ``LANES * len(base)`` outputs are done in
    vector blocks (:func:`_blocks_avx2`; ``base``, ``rel`` the same table relative to a window
    per block, empty where the windows do not hold the taps), the rest one value at a time,
    each tap one contiguous pass over ``x``; indices are cast to unsigned so that Numba does
    not test them for negative wrap-around.
    """
    taps, w = col_idx.shape
    x1 = base.shape[0] * LANES
    if x1 > 0:
        _blocks(src, base, rel, col_w, dst)
    i0, w0 = col_idx[0], col_w[0]
    for x in range(x1, w):
        dst[x] = w0[x] * src[np.uint32(i0[x])]
    for t in range(1, taps):
        it, wt = col_idx[t], col_w[t]
        for x in range(x1, w):
            dst[x] += wt[x] * src[np.uint32(it[x])]


@njit(cache=True, nogil=True)
def _horizontal4(s0, s1, s2, s3, col_idx, col_w, base, rel, d0, d1, d2, d3):
    """:func:`_horizontal` for four rows at once (the same sums per row); in the scalar part
    each index and weight is loaded once for four gathers (measured: 0.5-0.6 ns per output
    against 0.8-1.0 for one row at a time, 1024 rows to 700 or 1536 columns)."""
    taps, w = col_idx.shape
    x1 = base.shape[0] * LANES
    if x1 > 0:
        _blocks4(s0, s1, s2, s3, base, rel, col_w, d0, d1, d2, d3)
    for t in range(taps):
        it, wt = col_idx[t], col_w[t]
        for x in range(x1, w):
            j = np.uint32(it[x])
            a = wt[x]
            if t == 0:
                d0[x] = a * s0[j]
                d1[x] = a * s1[j]
                d2[x] = a * s2[j]
                d3[x] = a * s3[j]
            else:
                d0[x] += a * s0[j]
                d1[x] += a * s1[j]
                d2[x] += a * s2[j]
                d3[x] += a * s3[j]


@njit(cache=True, nogil=True)
def _vertical(rows, first, row_w, y, dst):
    """``dst[:] = sum_t row_w[y, t] * rows[(first + t) % len(rows)]`` over the taps of non-zero
    weight (whole rows: contiguous loops that LLVM vectorises)."""
    taps = row_w.shape[1]
    n = rows.shape[0]
    if taps == 2 and row_w[y, 1] != 0.0:        # linear tables: one fused pass, the same sums
        a, b = row_w[y, 0], row_w[y, 1]
        top, bottom = rows[first % n], rows[(first + 1) % n]
        for x in range(dst.shape[0]):
            dst[x] = a * top[x] + b * bottom[x]
        return
    started = False
    for t in range(taps):
        weight = row_w[y, t]
        if weight == 0.0:               # unused slot of an area table (or a zero linear tap)
            continue
        src = rows[(first + t) % n]
        if not started:
            for x in range(dst.shape[0]):
                dst[x] = weight * src[x]
            started = True
        else:
            for x in range(dst.shape[0]):
                dst[x] += weight * src[x]
    if not started:                     # no tap of non-zero weight (not made by the tables)
        dst[:] = 0.0


@njit(cache=True, nogil=True)
def _blend_scan(top, bottom, a, b, dst):
    """``dst[:] = a * top + b * bottom`` (the two-tap vertical pass of :func:`_vertical`, the
    same sums) and the finiteness scan of both rows, in registers as they are read: returns
    the largest ``bits & 0x7fffffff`` of ``top`` and ``bottom`` (:func:`_scan_rows` of the two
    rows, without reading them a second time)."""
    worst = np.uint32(0)
    for x in range(dst.shape[0]):
        u, v = top[x], bottom[x]
        dst[x] = a * u + b * v
        worst = max(worst, np.uint32(_float_bits(u) & ABS_MASK))   # 32-bit max (block mean)
        worst = max(worst, np.uint32(_float_bits(v) & ABS_MASK))
    return worst


@njit(cache=True, nogil=True)
def resize_separable(image, bits, row_idx, row_w, col_idx, col_w, col_base, col_rel,
                     rows_first, out, top, y0, y1):
    """Resize output rows ``y0:y1`` of channel planes by separable tables.

    image (C, H, W) float32 C-contiguous, ``bits`` its uint32 view; row_idx / row_w (h, taps)
    the row table, int32 / float32, each row's taps consecutive input rows (``row_idx[y, t] =
    row_idx[y, 0] + t`` where the weight is not 0, a clamped repeat where it is); col_idx / col_w
    (taps, w) the column table, tap-major; out (C, h, w) float32.

    Columns first (OpenCV's order), in chunks of CHUNK output rows: every input row the chunk
    reads goes through the column table once, four rows at a time, into a buffer small enough
    for the L2 cache, and each output row is the weighted sum of its buffer rows (contiguous,
    vectorised). ``rows_first``: four output rows at a time are first blended from their input
    rows at full width, then gathered through the column table. The gathers are the slow part:
    columns first gathers ``(input rows read) * w`` values, rows first ``h * w``, so the caller
    picks rows first when the row count shrinks. ``col_base``, ``col_rel``: the column table
    for the vector blocks of the horizontal pass (:func:`_horizontal`; empty: no blocks).
    Rows ``y0:y1`` (a band; ``top[y0]`` receives its finiteness scan, as in
    :func:`nearest_rows`).
    """
    C, H, W = image.shape
    h, w = out.shape[1], out.shape[2]
    taps = row_idx.shape[1]
    lo, hi = _owned_rows(row_idx[y0, 0], row_idx[min(y1, h - 1), 0], y0, y1, h, H)
    worst = np.uint32(0)
    # columns first: a chunk of CHUNK output rows reads at most this many input rows (its first
    # tap moves by at most ceil(H / h) rows per output row)
    span = 0 if rows_first else (CHUNK - 1) * ((H + h - 1) // h) + taps + 1
    buf = np.empty((span, w), dtype=np.float32)
    for c in range(C):
        plane, dst_plane, plane_bits = image[c], out[c], bits[c]
        scanned = lo                    # rows lo:scanned checked, in reading order (cache-hot)
        if rows_first:
            tmp = np.empty((BATCH, W), dtype=np.float32)
            for yb in range(y0, y1, BATCH):
                n = min(BATCH, y1 - yb)
                for i in range(n):
                    first = row_idx[yb + i, 0]
                    if taps == 2 and row_w[yb + i, 1] != 0.0:
                        # both rows read (linear tables): their scan fused into the blend, the
                        # rows skipped before them scanned alone
                        if first > scanned:
                            worst = max(worst, _scan_rows(plane_bits, scanned, min(first, hi)))
                        worst = max(worst, _blend_scan(plane[first], plane[first + 1],
                                                       row_w[yb + i, 0], row_w[yb + i, 1],
                                                       tmp[i]))
                        scanned = max(scanned, first + 2)
                        continue
                    last = min(first + taps, hi)
                    if last > scanned:
                        worst = max(worst, _scan_rows(plane_bits, scanned, last))
                        scanned = last
                    _vertical(plane[first:first + taps], 0, row_w, yb + i, tmp[i])
                if n == BATCH:
                    _horizontal4(tmp[0], tmp[1], tmp[2], tmp[3], col_idx, col_w, col_base,
                                 col_rel, dst_plane[yb],
                                 dst_plane[yb + 1], dst_plane[yb + 2], dst_plane[yb + 3])
                else:
                    for i in range(n):
                        _horizontal(tmp[i], col_idx, col_w, col_base, col_rel,
                                    dst_plane[yb + i])
            worst = max(worst, _scan_rows(plane_bits, scanned, hi))
            continue
        for yc in range(y0, y1, CHUNK):
            yc1 = min(yc + CHUNK, y1)
            r_lo = row_idx[yc, 0]
            r_hi = r_lo                             # the input rows of this chunk: r_lo..r_hi
            for y in range(yc, yc1):
                for t in range(taps):
                    if row_w[y, t] != 0.0:
                        r_hi = max(r_hi, row_idx[y, t])
            if min(r_hi + 1, hi) > scanned:
                worst = max(worst, _scan_rows(plane_bits, scanned, min(r_hi + 1, hi)))
                scanned = min(r_hi + 1, hi)
            r = r_lo
            while r + BATCH <= r_hi + 1:
                _horizontal4(plane[r], plane[r + 1], plane[r + 2], plane[r + 3], col_idx,
                             col_w, col_base, col_rel, buf[r - r_lo], buf[r + 1 - r_lo], buf[r + 2 - r_lo],
                             buf[r + 3 - r_lo])
                r += BATCH
            while r <= r_hi:
                _horizontal(plane[r], col_idx, col_w, col_base, col_rel, buf[r - r_lo])
                r += 1
            for y in range(yc, yc1):
                _vertical(buf, row_idx[y, 0] - r_lo, row_w, y, dst_plane[y])
        worst = max(worst, _scan_rows(plane_bits, scanned, hi))
    top[y0] = worst
