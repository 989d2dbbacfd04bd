"""Losses: softmax cross-entropy with optional label smoothing, as a forward/backward pair and as
a criterion object::

    criterion = CrossEntropyLoss(label_smoothing=0.1)
    loss = criterion(logits, y)          # a Python float, the mean over the batch
    dlogits = criterion.backward()       # (N, K), the gradient of that mean
    model.backward(dlogits)
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cvcore._validate import _check_real, check_array, check_cache
from cvcore.nn.layers import check_finite_fast
from cvcore.nn.module import Module

__all__ = ["CrossEntropyLoss", "cross_entropy_forward", "cross_entropy_backward",
           "CrossEntropyCache"]


class CrossEntropyCache(NamedTuple):
    probs: np.ndarray        # (N, K) softmax of the logits, compute dtype
    target: np.ndarray       # (N,) int64 class indices
    label_smoothing: float


def _check_target(target, n, k, name="target"):
    target = check_array(target, name, ndim=1, dtypes="iu")
    if target.shape[0] != n:
        raise ValueError(f"{name} has {target.shape[0]} labels for {n} rows of logits")
    lo, hi = int(target.min()), int(target.max())
    if lo < 0 or hi >= k:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{name} holds class {bad}, outside 0..{k - 1} for {k} logits per row")
    return target.astype(np.int64, copy=False)


def cross_entropy_forward(logits, target, label_smoothing: float = 0.0):
    """Mean softmax cross-entropy, PyTorch's ``F.cross_entropy(reduction='mean')``.

    With :math:`\\log p = \\mathrm{log\\_softmax}(z)`, :math:`K` classes and smoothing
    :math:`\\varepsilon`, the target distribution is :math:`q = (1-\\varepsilon)\\,e_y +
    \\varepsilon / K` (Szegedy et al. 2016, sec. 7; PyTorch's ``label_smoothing``), and

    .. math::
        \\ell_n = -\\sum_k q_{nk} \\log p_{nk}
               = (1-\\varepsilon)(-\\log p_{n y_n}) + \\frac{\\varepsilon}{K}\\sum_k (-\\log p_{nk}),
        \\qquad L = \\frac1N \\sum_n \\ell_n

    Parameters
    ----------
    logits : ndarray (N, K), float32 or float64
    target : ndarray (N,), integer class indices in ``0 .. K-1``
    label_smoothing : float in [0, 1]

    Returns
    -------
    loss : float
    cache : CrossEntropyCache
    """
    logits = check_array(logits, "cross_entropy_forward logits", ndim=2, dtypes="buif")
    dtype = np.float64 if logits.dtype == np.float64 else np.float32
    N, K = logits.shape
    target = _check_target(target, N, K, "cross_entropy_forward target")
    eps = _check_real(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    # In float64: the shift by the row maximum cannot overflow there (float32 logits of
    # +-3e38 differ by more than float32 can hold), and (N, K) is small.
    logits64 = logits.astype(np.float64)
    z = logits64 - logits64.max(axis=1, keepdims=True)       # shift for a stable exp
    log_norm = np.log(np.exp(z).sum(axis=1, keepdims=True))
    log_p = z - log_norm
    nll = -log_p[np.arange(N), target]
    per_sample = (1.0 - eps) * nll.astype(np.float64)
    if eps > 0:
        per_sample += eps / K * (-log_p.astype(np.float64)).sum(axis=1)
    loss = float(per_sample.mean())
    return loss, CrossEntropyCache(np.exp(log_p).astype(dtype), target, eps)


def cross_entropy_backward(dloss, cache: CrossEntropyCache):
    """Gradient of the mean cross-entropy: ``dlogits = dloss * (softmax(z) - q) / N``."""
    probs, target, eps = check_cache(cache, CrossEntropyCache, "cross_entropy_backward")
    if not isinstance(probs, np.ndarray) or probs.ndim != 2 or probs.dtype.kind != "f":
        raise TypeError("cross_entropy_backward: cache.probs must be the (N, K) float array of "
                        "the forward pass")
    N, K = probs.shape
    _check_target(target, N, K, "cross_entropy_backward cache.target")
    dloss = _check_real(dloss, "dloss")
    q = np.full_like(probs, eps / K)
    q[np.arange(N), target] += 1.0 - eps
    return (probs - q) * probs.dtype.type(float(dloss) / N)


class CrossEntropyLoss(Module):
    """Softmax cross-entropy, mean over the batch (``torch.nn.CrossEntropyLoss``).

    Parameters
    ----------
    label_smoothing : float in [0, 1]
        PyTorch's smoothing: the target is ``(1 - eps) * one_hot + eps / K``.

    ``forward(logits, target)`` returns the loss as a float and keeps what ``backward`` needs;
    ``backward(dloss=1.0)`` returns ``dlogits`` (N, K). The criterion keeps its cache in eval mode
    too (it holds no parameters, only the (N, K) probabilities).
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        eps = float(label_smoothing)
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = eps
        object.__setattr__(self, "_cache", None)

    def extra_repr(self):
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""

    def forward(self, logits, target):
        name = f"CrossEntropyLoss({self.extra_repr()})"
        logits = check_array(logits, f"{name} logits", ndim=2, dtypes="buif")
        check_finite_fast(logits, f"{name} logits")
        dtype = np.float64 if logits.dtype == np.float64 else np.float32
        logits = np.ascontiguousarray(logits, dtype=dtype)
        N, K = logits.shape
        target = _check_target(target, N, K, f"{name} target")
        loss, cache = cross_entropy_forward(logits, target, self.label_smoothing)
        object.__setattr__(self, "_cache", cache)
        return loss

    def backward(self, dloss=1.0):
        cache = self._cache
        if cache is None:
            raise RuntimeError("CrossEntropyLoss.backward needs a forward pass first (each "
                               "forward allows one backward)")
        object.__setattr__(self, "_cache", None)
        return cross_entropy_backward(dloss, cache)
