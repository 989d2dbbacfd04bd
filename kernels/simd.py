"""Register-blocked SIMD micro-kernels for Numba, written as LLVM intrinsics.

Why this module exists
----------------------
A convolution or matrix product runs at the machine's peak only when a block of outputs stays in
vector *registers* for the whole reduction: every step loads a few input vectors and feeds them
to many fused multiply-adds (FMAs), and nothing goes back to memory until the block is done.
Written as plain Numba loops over a scratch array (``acc[k, t] += w * x[t]``), LLVM usually
vectorises the innermost loop but keeps ``acc`` in memory, since it cannot prove that ``acc``
does not overlap the inputs: every FMA then costs a load and a store (measured: 5-25 GFLOP/s).
Whether it does better depends on the tile shape and on the LLVM version (a 8x48 tile happened
to reach 95 GFLOP/s, an 8x32 one 3.6). These intrinsics instead emit the loop directly as LLVM
IR with one ``<VL x float>`` SSA value per accumulator, so the register blocking is explicit and
does not depend on the optimiser's mood.

The two micro-kernels (``T`` is float32 or float64; all pointers are plain array data):

* :func:`fma_tile` — one output tile of a matrix product whose right-hand rows are windows of one
  long vector::

      acc[k, t] = sum_r  w[wrows[k] + r] * x[q0 + offs[r] + t]        k < KB, t < TB

  This is convolution as "implicit GEMM": ``w`` holds the weight matrix ``(K, C*kh*kw)`` row
  after row (``wrows[k]`` is where output channel ``k``'s row starts: the weights are used as
  they are stored), ``x`` the zero-padded input laid out as a strip, and ``offs[r]`` the strip
  offset of tap ``r = (c, i, j)``, so that row ``r`` of the im2col matrix is the window
  ``x[offs[r] : offs[r] + T]`` and no column matrix is ever built. Per reduction step it loads
  ``TB / VL`` vectors of ``x`` and ``KB`` broadcast weights (from ``KB`` sequential streams) and
  does ``KB * TB / VL`` FMAs.

* :func:`dot_tile` — a block of dot products of windows, for the weight gradient::

      acc[i, j, :] = sum over s of  a[aoffs[i] + t0 + s*VL : +VL] * b[boffs[j] + t0 + s*VL : +VL]

  over the vectors ``s`` of ``[t0, t1)`` (``t1 - t0`` a multiple of ``VL``); the ``VL`` lanes of
  each accumulator are left for the caller to add up (one horizontal sum per long reduction).
  :func:`dot_tile_sums` is the same loop with the lanes added up in registers on the way out
  (``sums[i, j]``), for the weight gradient's many short reductions.

Both write their whole output (``acc``) and read nothing else from it. Numba does not know what
an intrinsic reads or writes: inside a ``prange`` body keep the code around a call to plain
loops over ``acc`` (no ``acc[:] = 0`` or ``acc.sum()``, which Numba's parallel passes turn into
loops of their own and may reorder around the call: seen with an earlier ``dot_tile`` that
added into ``acc``, where ``acc = np.zeros(...)`` before the call gave wrong sums inside a
``prange`` body and right ones outside).

Neither checks bounds: the callers in :mod:`kernels.nn_conv` and :mod:`kernels.nn_linear` size
every array so that each window is inside it.

Numba's on-disk cache keys a kernel on its own source file only: after editing this module,
delete ``kernels/__pycache__`` so that the kernels using it are compiled again.

The tile shapes are chosen for the host at import time: with AVX-512 (32 vector registers of
64 bytes) ``KB x TB = 8 x 48`` (24 accumulators + 3 input vectors + broadcasts), otherwise
(16 registers of 32 bytes, AVX2) ``4 x 24``. The readable definition of both operations is the
one-line NumPy expression in each docstring, and the tests compare the kernels against it.
"""
from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _host_has_avx512():
    try:
        return llvm.get_host_cpu_features().get("avx512f", False)
    except Exception:  # pragma: no cover - platforms without feature detection
        return False


AVX512 = _host_has_avx512()
VECTOR_BYTES = 64 if AVX512 else 32
# fma_tile: KB output channels x TB positions (elements, the same for float32 and float64;
# float64 tiles use twice the registers and may spill: they only serve gradient checks)
KB = 8 if AVX512 else 4
TB = 48 if AVX512 else 24
# fma_tile_narrow: as many accumulators, fewer positions and more channels (12 x 32 on
# AVX-512, 6 x 16 on AVX2), for small planes whose positions padded to a multiple of TB would
# be mostly padding (one 7x7 image: 64 grid positions are 96 at TB = 48, 64 at 32)
KBN = 12 if AVX512 else 6
TBN = 32 if AVX512 else 16
# fma_tile_pm: KB output channels x TBP positions (8 x 32 on AVX-512, 4 x 16 on AVX2: 16 and
# 8 accumulators, still more than the FMA latency needs), for the pixel-major forward
# (kernels.nn_conv.conv2d_forward_pm), whose tile is the images of one output pixel in blocks
# of TBP: batches of 32, 64, 96, 128 fill every tile (with TB = 48, 128 images left a third of
# the last block's tile empty)
TBP = 32 if AVX512 else 16
# fma_tile_pmh: KB x TBH = 8 x 16, half of fma_tile_pm's tile (one vector per channel on
# AVX-512), for the pixel-major forward in blocks of 16 images: a server's batches of ~16
# (cvcore serve at 32 clients on 2 model threads), which a 32-image tile would leave half empty.
# Used only with AVX-512 (on AVX2 it would be 4 accumulators: too few for the FMA latency)
TBH = TBP // 2
# dot_tile: DA x DB accumulators of one vector each
DA = 4
DB = 6 if AVX512 else 3


def _lanes(fty):
    return VECTOR_BYTES // (4 if fty == ir.FloatType() else 8)


def _splat(builder, value, vty):
    undef = ir.Constant(vty, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), [0] * vty.count)
    return builder.shuffle_vector(one, undef, mask)


def _load_vec(builder, base, index, vty, itemsize):
    ptr = builder.bitcast(cgutils.gep(builder, base, index), vty.as_pointer())
    return builder.load(ptr, align=itemsize)


def _store_vec(builder, value, base, index, vty, itemsize):
    ptr = builder.bitcast(cgutils.gep(builder, base, index), vty.as_pointer())
    builder.store(value, ptr, align=itemsize)


def _zero_slots(builder, vty, count):
    """``count`` vector accumulators set to zero: stack slots (in the entry block) that LLVM's
    mem2reg turns into registers, since nothing but these loads and stores touches them."""
    zero = ir.Constant(vty, [0.0] * vty.count)
    slots = [cgutils.alloca_once(builder, vty) for _ in range(count)]
    for slot in slots:
        builder.store(zero, slot)
    return slots


def _fmuladd(builder, vty):
    fnty = ir.FunctionType(vty, [vty, vty, vty])
    return cgutils.get_or_insert_function(builder.module, fnty,
                                          f"llvm.fmuladd.v{vty.count}{vty.element.intrinsic_name}")


def _unpack(context, builder, signature, args):
    """The arguments of an intrinsic's codegen: array structs (``.data``, ``.shape``) for the
    arrays, LLVM values for the rest; and the vector type of the float dtype, its item size and
    its lane count."""
    values = [context.make_array(ty)(context, builder, v) if isinstance(ty, types.Array) else v
              for ty, v in zip(signature.args, args)]
    fty = context.get_value_type(signature.args[0].dtype)
    vl = _lanes(fty)
    return values, ir.VectorType(fty, vl), context.get_abi_sizeof(fty), vl


def _is_c_array(ty, ndim):
    return isinstance(ty, types.Array) and ty.ndim == ndim and ty.layout == "C" \
        and ty.dtype in (types.float32, types.float64)


def _is_offsets(ty):
    return isinstance(ty, types.Array) and ty.ndim == 1 and ty.layout == "C" \
        and ty.dtype == types.int64


def _is_mask_table(ty):
    return isinstance(ty, types.Array) and ty.ndim == 2 and ty.layout == "C" \
        and ty.dtype == types.int64


def _lane_mask(builder, masks, index, vl):
    """``masks.flat[index]`` (int64) as a ``<vl x i1>`` lane mask: bit ``l`` is lane ``l``."""
    word = builder.load(cgutils.gep(builder, masks.data, index))
    bits = builder.trunc(word, ir.IntType(vl))
    return builder.bitcast(bits, ir.VectorType(ir.IntType(1), vl))


def _masked(builder, mask, vec):
    """``vec`` where ``mask`` is set, else 0 (the load stays unconditional: every window the
    callers read is inside its array, so LLVM folds this into a zero-masking load)."""
    return builder.select(mask, vec, ir.Constant(vec.type, [0.0] * vec.type.count))


def _count_around(builder, slot, step, end, start):
    """``slot = slot + step``, back to ``start`` when it reaches ``end`` (a counter that walks a
    table's rows or columns along with a loop, without a division per step)."""
    nxt = builder.add(builder.load(slot), step)
    builder.store(builder.select(builder.icmp_signed("==", nxt, end), start, nxt), slot)


def _loops_for_table(builder, masked, table, loop):
    """Emit ``loop(False)``, or with ``masked`` both ``loop(True)`` and ``loop(False)``, taken
    at run time by whether ``table`` (a mask table) has rows: the masked intrinsics run the
    plain loop when called without masks."""
    if not masked:
        loop(False)
        return
    has = builder.icmp_signed("!=", builder.extract_value(table.shape, 0),
                              ir.Constant(ir.IntType(64), 0))
    with builder.if_else(has) as (then, otherwise):
        with then:
            loop(True)
        with otherwise:
            loop(False)


def _make_fma_tile(kb_name, tb_name, masked=False):
    """The :func:`fma_tile` intrinsic for a tile of the module constants named ``kb_name x
    tb_name`` (read when a caller is compiled; the tile width a multiple of the vector
    length); ``masked``: the :func:`fma_tile_masked` variant, with a lane mask per tap."""

    def typer(x, q0, w, wrows, offs, masks, acc):
        if not (_is_c_array(x, 1) and _is_c_array(w, 1) and _is_c_array(acc, 2)
                and x.dtype == w.dtype == acc.dtype and _is_offsets(wrows)
                and _is_offsets(offs) and (not masked or _is_mask_table(masks))):
            return None
        sig = types.void(x, types.int64, w, wrows, offs, *((masks,) if masked else ()), acc)

        def codegen(context, builder, signature, args):
            values, vty, itemsize, vl = _unpack(context, builder, signature, args)
            xs, q0v, ws, wr, os_ = values[:5]
            ms, ac = values[5:] if masked else (None, values[5])
            KB, TB = globals()[kb_name], globals()[tb_name]
            nv = TB // vl
            i64 = ir.IntType(64)
            fmuladd = _fmuladd(builder, vty)
            R = builder.extract_value(os_.shape, 0)
            rows = [builder.load(cgutils.gep(builder, wr.data, ir.Constant(i64, k)))
                    for k in range(KB)]
            slots = _zero_slots(builder, vty, KB * nv)

            def loop(with_masks):
                if with_masks:
                    # vector v's row of the table: its phase (q0 / VL + v) mod phases; the
                    # column, tap r mod T, counts along with r (no division in the loop)
                    phases = builder.extract_value(ms.shape, 0)
                    T = builder.extract_value(ms.shape, 1)
                    first = builder.sdiv(q0v, ir.Constant(i64, vl))
                    mrows = [builder.mul(builder.srem(builder.add(first, ir.Constant(i64, v)),
                                                      phases), T) for v in range(nv)]
                    col = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
                with cgutils.for_range(builder, R) as loop:
                    r = loop.index
                    start = builder.add(q0v, builder.load(cgutils.gep(builder, os_.data, r)))
                    xv = [_load_vec(builder, xs.data,
                                    builder.add(start, ir.Constant(i64, v * vl)), vty, itemsize)
                          for v in range(nv)]
                    if with_masks:
                        j = builder.load(col)
                        xv = [_masked(builder, _lane_mask(builder, ms, builder.add(mrows[v], j),
                                                          vl), xv[v]) for v in range(nv)]
                        _count_around(builder, col, ir.Constant(i64, 1), T, ir.Constant(i64, 0))
                    for k in range(KB):
                        wk = builder.load(cgutils.gep(builder, ws.data, builder.add(rows[k], r)))
                        wv = _splat(builder, wk, vty)
                        for v in range(nv):
                            slot = slots[k * nv + v]
                            builder.store(builder.call(fmuladd,
                                                       [wv, xv[v], builder.load(slot)]), slot)

            _loops_for_table(builder, masked, ms, loop)
            for k in range(KB):
                for v in range(nv):
                    _store_vec(builder, builder.load(slots[k * nv + v]), ac.data,
                               ir.Constant(i64, k * TB + v * vl), vty, itemsize)
            return context.get_dummy_value()

        return sig, codegen

    if masked:
        def fma_tile(typingctx, x, q0, w, wrows, offs, masks, acc):
            return typer(x, q0, w, wrows, offs, masks, acc)
    else:
        def fma_tile(typingctx, x, q0, w, wrows, offs, acc):
            return typer(x, q0, w, wrows, offs, None, acc)
    return fma_tile


_FMA_DOC = """``acc[k, t] = sum_r w[wrows[k] + r] * x[q0 + offs[r] + t]`` for ``k < KB, t < TB``.

    Parameters (all C-contiguous, one float dtype; nothing is bounds-checked)
    ----------
    x, w : 1-D arrays
    q0 : int
    wrows : 1-D int64 array (KB,)
    offs : 1-D int64 array (R,)
    acc : 2-D array (KB, TB), written
    """
_f = _make_fma_tile("KB", "TB")
_f.__name__, _f.__doc__ = "fma_tile", _FMA_DOC
fma_tile = intrinsic(_f)
_f = _make_fma_tile("KBN", "TBN")
_f.__name__, _f.__doc__ = "fma_tile_narrow", _FMA_DOC.replace("KB", "KBN").replace("TB", "TBN")
fma_tile_narrow = intrinsic(_f)
_MASKED_DOC = """:func:`fma_tile` with lane masks from a table of ``P x T``: ``acc[k, t] =
    sum_r w[wrows[k] + r] * x[q0 + offs[r] + t] * (masks[(q0 + t) // VL % P, r % T] >> (t % VL)
    & 1)``, a dropped read counting as 0 whatever it holds. ``q0`` is a multiple of the vector
    length ``VL``, so every vector of the tile has one row of the table (its *phase*) and each
    tap one column; bit ``l`` keeps lane ``l``. Without masks when the table has no rows. For
    the packed strip of :mod:`kernels.nn_conv` (images back to back, no gap rows or columns): a
    tap reaching past a row's or an image's edge reads the neighbouring row or image there, and
    the table drops it (``P`` vectors per image, ``T`` taps per channel).

    Parameters as :func:`fma_tile`, and ``masks`` : 2-D int64 array (P, T), or (0, 0): none.
    """
_f = _make_fma_tile("KB", "TB", masked=True)
_f.__name__, _f.__doc__ = "fma_tile_masked", _MASKED_DOC
fma_tile_masked = intrinsic(_f)
_f = _make_fma_tile("KBN", "TBN", masked=True)
_f.__name__ = "fma_tile_narrow_masked"
_f.__doc__ = _MASKED_DOC.replace("fma_tile`", "fma_tile_narrow`")
fma_tile_narrow_masked = intrinsic(_f)
_f = _make_fma_tile("KB", "TBP")
_f.__name__, _f.__doc__ = "fma_tile_pm", _FMA_DOC.replace("TB", "TBP")
fma_tile_pm = intrinsic(_f)
_f = _make_fma_tile("KB", "TBH")
_f.__name__, _f.__doc__ = "fma_tile_pmh", _FMA_DOC.replace("TB", "TBH")
fma_tile_pmh = intrinsic(_f)
del _f


def _dot_slots(context, builder, signature, args, masked=False):
    """The loop of :func:`dot_tile` and :func:`dot_tile_sums` (``masked``:
    :func:`dot_tile_sums_masked`): ``DA * DB`` vector accumulators (stack slots) holding the
    lane sums; returns them with the output array and vector type."""
    values, vty, itemsize, vl = _unpack(context, builder, signature, args)
    if masked:
        A, AO, B, BO, BM, BC, t0v, t1v, C = values
    else:
        (A, AO, B, BO, t0v, t1v, C), BM = values, None
    i64 = ir.IntType(64)
    fmuladd = _fmuladd(builder, vty)
    abase = [builder.load(cgutils.gep(builder, AO.data, ir.Constant(i64, i)))
             for i in range(DA)]
    bbase = [builder.load(cgutils.gep(builder, BO.data, ir.Constant(i64, j)))
             for j in range(DB)]
    slots = _zero_slots(builder, vty, DA * DB)
    steps = builder.sdiv(builder.sub(t1v, t0v), ir.Constant(i64, vl))

    def loop(with_masks):
        if with_masks:
            # the step's row of the table: its phase (t / VL) mod phases, counted along with
            # the steps; the columns bcols[j] are the same at every step
            phases = builder.extract_value(BM.shape, 0)
            T = builder.extract_value(BM.shape, 1)
            cols = [builder.load(cgutils.gep(builder, BC.data, ir.Constant(i64, j)))
                    for j in range(DB)]
            end = builder.mul(phases, T)
            row = cgutils.alloca_once_value(
                builder, builder.mul(builder.srem(builder.sdiv(t0v, ir.Constant(i64, vl)),
                                                  phases), T))
        with cgutils.for_range(builder, steps) as loop:
            t = builder.add(t0v, builder.mul(loop.index, ir.Constant(i64, vl)))
            av = [_load_vec(builder, A.data, builder.add(abase[i], t), vty, itemsize)
                  for i in range(DA)]
            bv = [_load_vec(builder, B.data, builder.add(bbase[j], t), vty, itemsize)
                  for j in range(DB)]
            if with_masks:
                m = builder.load(row)
                bv = [_masked(builder, _lane_mask(builder, BM, builder.add(m, cols[j]), vl),
                              bv[j]) for j in range(DB)]
                _count_around(builder, row, T, end, ir.Constant(i64, 0))
            for i in range(DA):
                for j in range(DB):
                    slot = slots[i * DB + j]
                    builder.store(builder.call(fmuladd, [av[i], bv[j], builder.load(slot)]),
                                  slot)

    _loops_for_table(builder, masked, BM, loop)
    return slots, C, vty, itemsize, vl


def _halves_sum(builder, vec, count):
    """The sum of a vector's ``count`` lanes by halving: lanes ``[0, count/2)`` plus lanes
    ``[count/2, count)``, and again, down to one (``log2(count)`` shuffles and adds)."""
    while count > 1:
        half = count // 2
        lo = builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(ir.IntType(32), half),
                                                          list(range(half))))
        hi = builder.shuffle_vector(vec, vec, ir.Constant(ir.VectorType(ir.IntType(32), half),
                                                          list(range(half, count))))
        vec = builder.fadd(lo, hi)
        count = half
    return builder.extract_element(vec, ir.Constant(ir.IntType(32), 0))


def _make_dot_tile(out_ndim, lane_sums, masked=False):
    """The :func:`dot_tile` intrinsic (``lane_sums`` false: each accumulator stored whole,
    ``out`` (DA, DB, VL)) or :func:`dot_tile_sums` (true: each added up across its lanes,
    ``out`` (DA, DB)); ``masked``: with a lane mask per ``b`` window
    (:func:`dot_tile_sums_masked`)."""

    def typer(a, aoffs, b, boffs, bmasks, bcols, out):
        if not (_is_c_array(a, 1) and _is_c_array(b, 1) and _is_c_array(out, out_ndim)
                and a.dtype == b.dtype == out.dtype and _is_offsets(aoffs)
                and _is_offsets(boffs)
                and (not masked or (_is_mask_table(bmasks) and _is_offsets(bcols)))):
            return None
        sig = types.void(a, aoffs, b, boffs, *((bmasks, bcols) if masked else ()), types.int64,
                         types.int64, out)

        def codegen(context, builder, signature, args):
            slots, C, vty, itemsize, vl = _dot_slots(context, builder, signature, args, masked)
            i64 = ir.IntType(64)
            for i in range(DA * DB):
                vec = builder.load(slots[i])
                if lane_sums:
                    builder.store(_halves_sum(builder, vec, vl),
                                  cgutils.gep(builder, C.data, ir.Constant(i64, i)))
                else:
                    _store_vec(builder, vec, C.data, ir.Constant(i64, i * vl), vty, itemsize)
            return context.get_dummy_value()

        return sig, codegen

    if masked:
        def dot_tile(typingctx, a, aoffs, b, boffs, bmasks, bcols, t0, t1, out):
            return typer(a, aoffs, b, boffs, bmasks, bcols, out)
    else:
        def dot_tile(typingctx, a, aoffs, b, boffs, t0, t1, out):
            return typer(a, aoffs, b, boffs, None, None, out)
    return dot_tile


_f = _make_dot_tile(3, False)
_f.__name__ = "dot_tile"
_f.__doc__ = """``acc[i, j, :] =`` lane sums of ``a[aoffs[i] + t] * b[boffs[j] + t]`` over ``t0 <= t < t1``.

    Parameters (C-contiguous, one float dtype; nothing is bounds-checked)
    ----------
    a, b : 1-D arrays
    aoffs : 1-D int64 array (DA,); boffs : 1-D int64 array (DB,)
    t0, t1 : int, ``t1 - t0`` a multiple of the vector length ``VL`` (:func:`vector_lanes`)
    acc : 3-D array (DA, DB, VL), written
    """
dot_tile = intrinsic(_f)
_f = _make_dot_tile(2, True)
_f.__name__ = "dot_tile_sums"
_f.__doc__ = """``sums[i, j] = sum_t a[aoffs[i] + t] * b[boffs[j] + t]`` over ``t0 <= t < t1``: the
    accumulators of :func:`dot_tile`, each added up across its lanes in registers (by halves:
    four shuffles and adds on AVX-512 float32) as it leaves the loop.

    For the weight gradient's short reductions (a block of 864-4096 positions per call): there
    the caller of :func:`dot_tile` added the ``DA * DB * VL`` lanes from memory, one scalar add
    each. The weight-gradient kernel with this intrinsic took 0.92 of its time on ResNet-20's
    8x8 planes at batch 128 and 0.96-0.97 on the 16x16 and strided ones (one thread, the two
    kernels alternating in one process; session 11).

    Parameters as :func:`dot_tile`, but ``sums`` : 2-D array (DA, DB), written.
    """
dot_tile_sums = intrinsic(_f)
_f = _make_dot_tile(2, True, masked=True)
_f.__name__ = "dot_tile_sums_masked"
_f.__doc__ = """:func:`dot_tile_sums` with the lane masks of :func:`fma_tile_masked` on the ``b``
    windows: ``sums[i, j] = sum_t a[aoffs[i] + t] * b[boffs[j] + t] * (bmasks[t // VL % P,
    bcols[j]] >> (t % VL) & 1)`` (``t0`` a multiple of the vector length ``VL``; the table's row
    counts along with the steps, no division in the loop), or without masks when the table has
    no rows: the weight gradient on the packed strip of :mod:`kernels.nn_conv`.

    Parameters ``a, aoffs, b, boffs, bmasks, bcols, t0, t1, sums``: as :func:`dot_tile_sums`,
    and ``bmasks`` : 2-D int64 array (P, T), or (0, 0): none; ``bcols`` : 1-D int64 (DB,), the
    table's column of each ``b`` window.
    """
dot_tile_sums_masked = intrinsic(_f)
del _f


def vector_lanes(dtype):
    """Elements of ``dtype`` per vector register on this host (the ``VL`` of :func:`dot_tile`)."""
    import numpy as np
    return VECTOR_BYTES // np.dtype(dtype).itemsize
