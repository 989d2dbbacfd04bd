"""Calibrating a classifier's scores into probabilities that mean what they say.

Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks", sec. 4.2)
divides every score (logit) by one number ``T > 0`` before the softmax:

.. math:: \\hat p(x) = \\mathrm{softmax}(z(x) / T)

``T`` is the value that minimises the negative log-likelihood of held-out labels. ``T > 1``
softens over-confident probabilities, ``T < 1`` sharpens timid ones. Dividing by a positive number
keeps the order of the scores, so the top-1 class (and the accuracy) never changes. For a linear
model whose probabilities are a softmax of its scores, this is the multi-class form of Platt
scaling (Platt 1999) with one shared slope and no intercept.

The minimisation runs over :math:`\\log T` (so ``T`` stays positive and the problem is
well-scaled) in float64, by bounded Brent search; the NLL is convex in :math:`1/T`, so it has one
minimum.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from cvcore._validate import check_array, check_finite, check_positive

__all__ = ["fit_temperature", "temperature_scale", "nll", "LOG_T_BOUNDS"]

#: Search interval of log T: T from e^-6 (0.0025) to e^6 (403), far beyond the 1-5 that Guo et
#: al. 2017 (table 1 scale) report for networks; a minimum at a bound means the scores carry no
#: usable confidence (or are already probabilities from a near-perfect fit).
LOG_T_BOUNDS = (-6.0, 6.0)
#: Brent's absolute tolerance on log T: T to a relative 1e-6.
LOG_T_TOL = 1e-6


def _scores_and_labels(scores, labels):
    scores = check_finite(check_array(scores, "scores", ndim=2, dtypes="f"), "scores")
    labels = check_array(labels, "labels", ndim=1, dtypes="iu").astype(np.int64)
    if len(labels) != len(scores):
        raise ValueError(f"labels has {len(labels)} entries for {len(scores)} rows of scores")
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must be class indices in 0..{scores.shape[1] - 1}")
    return scores.astype(np.float64), labels


def nll(scores, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(scores / temperature)``.

    ``scores`` (N, n_classes) float logits, ``labels`` (N,) int class indices; float64 inside.
    """
    scores, labels = _scores_and_labels(scores, labels)
    t = check_positive(temperature, "temperature")
    return float(-np.mean(log_softmax(scores / t, axis=1)[np.arange(len(labels)), labels]))


def fit_temperature(scores, labels) -> float:
    """The temperature ``T`` minimising :func:`nll` of held-out ``labels`` (Guo et al. 2017).

    Parameters
    ----------
    scores : array of float, shape (N, n_classes)
        Logits (or any scores whose softmax is the model's probability) of held-out samples:
        not the training samples, on which a network is over-confident.
    labels : array of int, shape (N,)

    Returns
    -------
    float
        ``T > 0``, within ``exp(LOG_T_BOUNDS)``.

    Examples
    --------
    Scores twice as large as the ones that generated the labels are undone by T close to 2:

    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(4000, 3)) * 2
    >>> p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    >>> y = np.array([rng.choice(3, p=row) for row in p])
    >>> round(fit_temperature(2 * z, y), 1)
    2.0
    """
    scores, labels = _scores_and_labels(scores, labels)
    rows = np.arange(len(labels))

    def objective(log_t):
        return -np.mean(log_softmax(scores / np.exp(log_t), axis=1)[rows, labels])

    res = minimize_scalar(objective, bounds=LOG_T_BOUNDS, method="bounded",
                          options={"xatol": LOG_T_TOL})
    return float(np.exp(res.x))


def temperature_scale(scores, temperature: float) -> np.ndarray:
    """``softmax(scores / temperature)``, (N, n_classes) float64, rows summing to 1.

    Scores of ``-inf`` (a log-probability of 0) stay at probability 0.
    """
    scores = check_array(scores, "scores", ndim=2, dtypes="f")
    if np.isnan(scores).any():
        raise ValueError("scores contains NaN")
    t = check_positive(temperature, "temperature")
    z = scores.astype(np.float64) / t
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z
