"""Numba kernels for the fully connected layer's matrix products, on :mod:`kernels.simd`.

``Linear`` needs ``x W^T`` (forward), ``dy W`` and ``dy^T x`` (backward); all three are
``A B^T`` for suitable (transposed) operands (the readable definition is ``a @ b.T``),
computed in one of three ways, chosen by :func:`cvcore.nn.layers.linear_forward`'s helper:

* a small product (at most ``SMALL_WORK`` multiply-adds: a classifier head such as ResNet-20's
  64 -> 10 at batch 128, 82k): plain dot products on one thread (:func:`small_matmul_nt`). It
  takes microseconds, and it compiles in a fraction of a second, where the two parallel
  kernels below take about 4 s together on a cold start (each ``prange`` is a module of its
  own to compile: ``benchmarks/README.md``, "First run");

* a register-blocked GEMM (:func:`kernels.simd.fma_tile`): tiles of ``simd.KB`` rows x
  ``simd.TB`` columns of the output held in vector registers, each the sum over ``t`` of a
  broadcast element of one operand times a row of the other one, transposed. The smaller
  operand is the one transposed (:func:`transpose`); the output comes out transposed when that
  operand is ``a``;
* for a matrix-vector-like product (fewer than ``SMALL`` rows of ``a`` or of ``b``), where a
  48-wide tile would be mostly empty: blocks of dot products of rows (:func:`dots`, on
  :func:`kernels.simd.dot_tile`), no transposes.

Why not NumPy's ``@`` (OpenBLAS)? Everything else in :mod:`cvcore.nn` runs on Numba's thread
pool. OpenBLAS has a pool of its own whose threads keep spinning for a while after each call;
on a machine with as many cores as threads they then take cores from Numba's threads for the
next layers. Measured on 2 cores, ResNet-50 inference at batch 1 (one ``Linear`` at the end):
128 ms with OpenBLAS's 2 threads, 34 ms with OpenBLAS limited to one (``benchmarks/README.md``).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from kernels import simd

SMALL = 16          # below this many rows on either side: dots (matrix-vector-like)
#: at most this many multiply-adds (M*N*T): one thread (:func:`small_matmul_nt`). About a
#: millisecond of work; below ResNet-50's and EfficientNet-Lite0's heads at batch 1 (2.0M and
#: 1.3M), which keep the parallel kernels.
SMALL_WORK = 2**20


@njit(cache=True, parallel=True, nogil=True)
def transpose(src, cols_padded):
    """``src.T`` (C, R) as a flat array of ``C`` rows of ``cols_padded >= R`` values, zero
    padded; in 32 x 32 blocks, so that reads and writes both stay in cache lines."""
    R, C = src.shape
    dst = np.empty(C * cols_padded, dtype=src.dtype)
    for cb in prange((C + 31) // 32):
        for c in range(cb * 32, min(C, cb * 32 + 32)):
            dst[c * cols_padded + R:(c + 1) * cols_padded] = 0
        for r0 in range(0, R, 32):
            for c in range(cb * 32, min(C, cb * 32 + 32)):
                row = dst[c * cols_padded:]
                for r in range(r0, min(R, r0 + 32)):
                    row[r] = src[r, c]
    return dst


@njit(cache=True, parallel=True, nogil=True)
def gemm(a, bt, Np, nlanes, out, out_transposed):
    """Register-blocked GEMM: ``a (M, T) @ bt`` where ``bt`` holds ``T`` rows of ``Np`` (a
    multiple of ``simd.TB``)
    columns; the ``(M, N)`` product (``N = out.shape[1]``, or ``out.shape[0]`` if
    ``out_transposed``) written to ``out`` or to ``out.T``."""
    M, T = a.shape
    N = out.shape[0] if out_transposed else out.shape[1]
    KB, TB = simd.KB, simd.TB
    aflat = a.reshape(M * T)
    offs = np.empty(T, dtype=np.int64)            # reduction step t reads row t of bt
    for t in range(T):                            # (a loop: `np.arange(T) * Np` would be
        offs[t] = t * Np                          # one more parallel region to compile)
    nib = (M + KB - 1) // KB
    nitems = nib * (Np // TB)                     # (column tile, row block), column tile outer,
    for lane in prange(nlanes):                   # so a lane reuses its panel of bt from cache
        acc = np.empty((KB, TB), dtype=a.dtype)
        rows = np.empty(KB, dtype=np.int64)
        for item in range(lane * nitems // nlanes, (lane + 1) * nitems // nlanes):
            j0 = (item // nib) * TB
            i0 = (item - (item // nib) * nib) * KB
            for i in range(KB):                   # past the last row: repeat it, drop it
                rows[i] = min(i0 + i, M - 1) * T
            simd.fma_tile(bt, j0, aflat, rows, offs, acc)
            for i in range(min(KB, M - i0)):      # plain loops around the intrinsic
                for j in range(min(TB, N - j0)):
                    if out_transposed:
                        out[j0 + j, i0 + i] = acc[i, j]
                    else:
                        out[i0 + i, j0 + j] = acc[i, j]


@njit(cache=True, parallel=True, nogil=True)
def dots(a, b, out):
    """``out = a @ b.T`` as blocks of row dot products (for few rows on one side)."""
    M, T = a.shape
    N = b.shape[0]
    DA, DB = simd.DA, simd.DB
    VL = simd.VECTOR_BYTES // a.itemsize
    Tp = (T + VL - 1) // VL * VL                  # rows zero-padded to whole vectors
    ap = np.empty(M * Tp, dtype=a.dtype)
    bp = np.empty(N * Tp, dtype=a.dtype)
    for r in prange(M + N):                       # the rows of a, then those of b: one
        src = a[r] if r < M else b[r - M]         # parallel loop (each compiles a gufunc)
        dst = ap[r * Tp:(r + 1) * Tp] if r < M else bp[(r - M) * Tp:(r - M + 1) * Tp]
        for t in range(T):
            dst[t] = src[t]
        for t in range(T, Tp):
            dst[t] = 0
    nb = (N + DB - 1) // DB
    for item in prange(((M + DA - 1) // DA) * nb):
        i0 = (item // nb) * DA
        j0 = (item - (item // nb) * nb) * DB
        aoffs = np.empty(DA, dtype=np.int64)
        boffs = np.empty(DB, dtype=np.int64)
        for i in range(DA):                       # past the last row: repeat it, drop it
            aoffs[i] = min(i0 + i, M - 1) * Tp
        for j in range(DB):
            boffs[j] = min(j0 + j, N - 1) * Tp
        acc = np.empty((DA, DB, VL), dtype=a.dtype)
        simd.dot_tile(ap, aoffs, bp, boffs, 0, Tp, acc)
        for i in range(min(DA, M - i0)):          # plain loops around the intrinsic
            for j in range(min(DB, N - j0)):
                total = acc[i, j, 0]
                for v in range(1, VL):
                    total += acc[i, j, v]
                out[i0 + i, j0 + j] = total


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def small_matmul_nt(a, b, out):
    """``out = a @ b.T`` for a small product, on one thread: ``out[i, j] = sum_t a[i, t] *
    b[j, t]``, each a dot product of two contiguous rows, accumulated in float64 (the sum may be
    reassociated into vector lanes, ``fastmath={"reassoc"}``: the order depends on the
    machine's vector width, never on the thread count).

    Parameters
    ----------
    a : (M, T) float32 or float64, C-contiguous
    b : (N, T) same dtype, C-contiguous
    out : (M, N) same dtype, written
    """
    M, T = a.shape
    N = b.shape[0]
    for i in range(M):
        for j in range(N):
            total = 0.0
            for t in range(T):
                total += a[i, t] * b[j, t]
            out[i, j] = total
