"""Element-wise kernels of the residual networks: ReLU, ReLU6, the residual sum and its ReLU, and
an in-place add for summing gradients of two branches.

All arrays are flat (``ravel()`` of a C-contiguous array) and of one floating dtype. Every kernel
is one thread, ``nogil``, over the chunks ``[r0, r1)`` of :data:`CHUNK` elements (the last one
shorter); the caller runs chunks on several threads (:func:`cvcore.nn.layers.elementwise`,
in lanes of one OpenMP loop, :func:`cvcore.nn._lanes.run_lanes`). A ``prange`` here compiled a parallel module per
kernel (twice the cold compile of the serial loop). The readable twin is
``kernels/reference/nn_act.py``.

Kernels whose output may be one of their inputs have two loops: one for the in-place call
(that array is read and written through the same name) and one for distinct arrays. One loop
for both would not vectorise in place: LLVM vectorises a loop that writes one array and reads
another only after a run-time check that the two do not overlap, and in place they do, so the
scalar loop would run, with a branch per element that the predictor loses on a ReLU mask
(measured 25x slower). (A ``prange`` body is compiled assuming no aliasing.) Indices are
unsigned: a signed loop that does not start at 0 indexes with a wraparound check (negative
indices count from the end), which also keeps it from vectorising.
"""
import numpy as np
from numba import njit

#: Elements per chunk: 64 KiB of float32 per array (a band of the caller's split is one or more
#: chunks).
CHUNK = 1 << 14


@njit(cache=True, inline="always", nogil=True)
def _span(size, r0, r1):
    """Elements ``[i0, i1)`` of chunks ``[r0, r1)`` of an array of ``size`` elements, unsigned."""
    i1 = r1 * CHUNK
    return np.uint64(r0 * CHUNK), np.uint64(i1 if i1 < size else size)


@njit(cache=True, inline="always", nogil=True)
def _same(a, b):
    """Whether ``a`` and ``b`` start at the same address (the caller's in-place call)."""
    return a.ctypes.data == b.ctypes.data


@njit(cache=True, nogil=True, error_model="numpy")
def relu_forward(x, y, r0, r1):
    """``y = max(x, 0)``; ``y`` may be ``x`` itself (in-place ReLU).

    Parameters
    ----------
    x, y : (S,) float, same dtype
    r0, r1 : int
        Chunks of :data:`CHUNK` elements to compute (``0, ceil(S / CHUNK)`` for all).
    """
    i0, i1 = _span(x.shape[0], r0, r1)
    if _same(x, y):
        for i in range(i0, i1):
            v = x[i]
            x[i] = v if v > 0 else 0.0
    else:
        for i in range(i0, i1):
            v = x[i]
            y[i] = v if v > 0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def relu_backward(dy, y, dx, r0, r1):
    """``dx = dy`` where the ReLU output ``y > 0``, else 0 (the subgradient at 0 is 0, as PyTorch).

    Parameters
    ----------
    dy, y : (S,) float, same dtype; ``y`` is the forward output
    dx : (S,) output (may be ``dy`` itself)
    r0, r1 : int
        Chunks, as :func:`relu_forward`.
    """
    i0, i1 = _span(dy.shape[0], r0, r1)
    if _same(dy, dx):
        for i in range(i0, i1):
            g = dy[i]
            dy[i] = g if y[i] > 0 else 0.0
    else:
        for i in range(i0, i1):
            dx[i] = dy[i] if y[i] > 0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def add_relu_forward(a, b, y, r0, r1):
    """``y = max(a + b, 0)``: the residual sum followed by ReLU (He et al. 2016, eq. 1 and fig. 2).

    Parameters
    ----------
    a, b : (S,) float, same dtype
    y : (S,) output (may be ``a`` itself)
    r0, r1 : int
        Chunks, as :func:`relu_forward`.
    """
    i0, i1 = _span(a.shape[0], r0, r1)
    if _same(a, y):
        for i in range(i0, i1):
            v = a[i] + b[i]
            a[i] = v if v > 0 else 0.0
    else:
        for i in range(i0, i1):
            v = a[i] + b[i]
            y[i] = v if v > 0 else 0.0


@njit(cache=True, nogil=True, error_model="numpy")
def add_inplace(a, b, r0, r1):
    """``a += b`` (gradients of the two branches meeting at a residual block's input).

    Parameters
    ----------
    a, b : (S,) float, same dtype; ``a`` is overwritten
    r0, r1 : int
        Chunks, as :func:`relu_forward`.
    """
    i0, i1 = _span(a.shape[0], r0, r1)
    for i in range(i0, i1):
        a[i] += b[i]


@njit(cache=True, nogil=True, error_model="numpy")
def relu6_forward(x, y, r0, r1):
    """``y = min(max(x, 0), 6)``; ``y`` may be ``x`` itself.

    Parameters
    ----------
    x, y : (S,) float, same dtype
    r0, r1 : int
        Chunks, as :func:`relu_forward`.
    """
    i0, i1 = _span(x.shape[0], r0, r1)
    if _same(x, y):
        for i in range(i0, i1):
            v = x[i]
            x[i] = 0.0 if v < 0 else (6.0 if v > 6 else v)
    else:
        for i in range(i0, i1):
            v = x[i]
            y[i] = 0.0 if v < 0 else (6.0 if v > 6 else v)


@njit(cache=True, nogil=True, error_model="numpy")
def relu6_backward(dy, y, dx, r0, r1):
    """``dx = dy`` where the ReLU6 output ``0 < y < 6``, else 0 (PyTorch's subgradient).

    Parameters
    ----------
    dy, y : (S,) float, same dtype; ``y`` is the forward output
    dx : (S,) output (may be ``dy`` itself)
    r0, r1 : int
        Chunks, as :func:`relu_forward`.
    """
    i0, i1 = _span(dy.shape[0], r0, r1)
    if _same(dy, dx):
        for i in range(i0, i1):
            v = y[i]
            g = dy[i]
            dy[i] = g if (v > 0 and v < 6) else 0.0
    else:
        for i in range(i0, i1):
            v = y[i]
            dx[i] = dy[i] if (v > 0 and v < 6) else 0.0
