"""Readable twins of :mod:`kernels.nn_act`: ReLU and the residual sum in plain NumPy."""
import numpy as np


def relu_forward(x):
    """``max(x, 0)`` element-wise."""
    return np.maximum(x, 0)


def relu_backward(dy, y):
    """Pass ``dy`` where the forward output ``y`` was positive, 0 elsewhere."""
    return np.where(y > 0, dy, 0).astype(dy.dtype)


def add_relu_forward(a, b):
    """The residual sum followed by ReLU: ``max(a + b, 0)`` (He et al. 2016, eq. 1)."""
    return np.maximum(a + b, 0)


def add_inplace(a, b):
    """``a + b`` (the kernel writes it into ``a``)."""
    return a + b


def relu6_forward(x):
    """``min(max(x, 0), 6)`` element-wise."""
    return np.clip(x, 0, 6)


def relu6_backward(dy, y):
    """Pass ``dy`` where the forward output was strictly between 0 and 6."""
    return np.where((y > 0) & (y < 6), dy, 0).astype(dy.dtype)
