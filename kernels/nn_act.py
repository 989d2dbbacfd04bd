"""Element-wise kernels of the residual networks: ReLU, ReLU6, the residual sum and its ReLU, and
a parallel in-place add for summing gradients of two branches.

All arrays are flat (``ravel()`` of a C-contiguous array) and of one floating dtype; ``prange``
splits them into one chunk per thread. The readable twin is ``kernels/reference/nn_act.py``.
"""
from numba import njit, prange


@njit(cache=True, parallel=True, nogil=True)
def relu_forward(x, y):
    """``y = max(x, 0)``; ``y`` may be ``x`` itself (in-place ReLU).

    Parameters
    ----------
    x, y : (S,) float, same dtype
    """
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = v if v > 0 else 0.0


@njit(cache=True, parallel=True, nogil=True)
def relu_backward(dy, y, dx):
    """``dx = dy`` where the ReLU output ``y > 0``, else 0 (the subgradient at 0 is 0, as PyTorch).

    Parameters
    ----------
    dy, y : (S,) float, same dtype; ``y`` is the forward output
    dx : (S,) output (may be ``dy`` itself)
    """
    for i in prange(dy.shape[0]):
        dx[i] = dy[i] if y[i] > 0 else 0.0


@njit(cache=True, parallel=True, nogil=True)
def add_relu_forward(a, b, y):
    """``y = max(a + b, 0)``: the residual sum followed by ReLU (He et al. 2016, eq. 1 and fig. 2).

    Parameters
    ----------
    a, b : (S,) float, same dtype
    y : (S,) output (may be ``a`` itself)
    """
    for i in prange(a.shape[0]):
        v = a[i] + b[i]
        y[i] = v if v > 0 else 0.0


@njit(cache=True, parallel=True, nogil=True)
def add_inplace(a, b):
    """``a += b`` (gradients of the two branches meeting at a residual block's input).

    Parameters
    ----------
    a, b : (S,) float, same dtype; ``a`` is overwritten
    """
    for i in prange(a.shape[0]):
        a[i] += b[i]


@njit(cache=True, parallel=True, nogil=True)
def relu6_forward(x, y):
    """``y = min(max(x, 0), 6)``; ``y`` may be ``x`` itself.

    Parameters
    ----------
    x, y : (S,) float, same dtype
    """
    for i in prange(x.shape[0]):
        v = x[i]
        y[i] = 0.0 if v < 0 else (6.0 if v > 6 else v)


@njit(cache=True, parallel=True, nogil=True)
def relu6_backward(dy, y, dx):
    """``dx = dy`` where the ReLU6 output ``0 < y < 6``, else 0 (PyTorch's subgradient).

    Parameters
    ----------
    dy, y : (S,) float, same dtype; ``y`` is the forward output
    dx : (S,) output (may be ``dy`` itself)
    """
    for i in prange(dy.shape[0]):
        v = y[i]
        dx[i] = dy[i] if (v > 0 and v < 6) else 0.0
