"""Numba kernel for the fully connected layer's matrix products, on :func:`kernels.simd.dot_tile`.

``Linear`` needs ``x W^T`` (forward), ``dy W`` and ``dy^T x`` (backward). All three are
``A B^T`` for suitable (transposed) operands: every output is the dot product of a row of ``A``
and a row of ``B``, which :func:`matmul_nt` computes in tiles of ``simd.DA x simd.DB`` dot
products held in vector registers. The readable definition is ``a @ b.T``.

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


@njit(cache=True, parallel=True)
def matmul_nt(a, b, out):
    """``out = a @ b.T``.

    Parameters
    ----------
    a : ndarray, shape (M, T), C-contiguous
    b : ndarray, shape (N, T), C-contiguous, the same float dtype
    out : ndarray, shape (M, N), written
    """
    M, T = a.shape
    N = b.shape[0]
    DA, DB = simd.DA, simd.DB
    VL = simd.VECTOR_BYTES // a.itemsize
    Tp = (T + VL - 1) // VL * VL                  # rows zero-padded to whole vectors
    ap = np.zeros(M * Tp, dtype=a.dtype)
    bp = np.zeros(N * Tp, dtype=a.dtype)
    for i in prange(M):
        ap[i * Tp:i * Tp + T] = a[i]
    for j in prange(N):
        bp[j * Tp:j * Tp + T] = b[j]
    nb = (N + DB - 1) // DB
    for item in prange(((M + DA - 1) // DA) * nb):
        i0 = (item // nb) * DA
        j0 = (item - (item // nb) * nb) * DB
        aoffs = np.empty(DA, dtype=np.int64)
        boffs = np.empty(DB, dtype=np.int64)
        for i in range(DA):                       # past the last row: repeat it, drop the result
            aoffs[i] = min(i0 + i, M - 1) * Tp
        for j in range(DB):
            boffs[j] = min(j0 + j, N - 1) * Tp
        acc = np.empty((DA, DB, VL), dtype=a.dtype)
        simd.dot_tile(ap, aoffs, bp, boffs, 0, Tp, acc)
        for i in range(min(DA, M - i0)):             # plain loops around the intrinsic: see
            for j in range(min(DB, N - j0)):         # kernels.simd
                total = acc[i, j, 0]
                for lane in range(1, VL):
                    total += acc[i, j, lane]
                out[i0 + i, j0 + j] = total
