"""Calibrating a classifier's scores into probabilities that mean what they say.

Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks", sec. 4.2)
divides every score (logit) by one number ``T > 0`` before the softmax:

.. math:: \\hat p(x) = \\mathrm{softmax}(z(x) / T)

``T`` is the value that minimises the negative log-likelihood of held-out labels. ``T > 1``
softens over-confident probabilities, ``T < 1`` sharpens timid ones. Dividing by a positive number
keeps the order of the scores, so the top-1 class (and the accuracy) never changes. For a linear
model whose probabilities are a softmax of its scores, this is the multi-class form of Platt
scaling (Platt 1999) with one shared slope and no intercept.

The labels are fitted as Platt (1999, sec. 2.2) fits his sigmoid: not as hard 0/1 targets but
smoothed by Laplace's rule of succession, so that the true class's target is
:math:`(N + 1) / (N + 2)` for ``N`` held-out samples and the rest is shared by the other classes.
With hard targets, a held-out set that the model classifies entirely correctly (easy on a small
split, and always so on a linear model's separable training data) has no finite optimum: the NLL
keeps falling as ``T -> 0`` and the probabilities become 1.0 and 1e-50. With the smoothed targets
the optimum is finite, and having seen ``N`` right answers out of ``N`` the model is trusted about
``(N + 1) / (N + 2)``. On thousands of samples the shift of ``T`` is negligible.

The minimisation runs over :math:`\\log T` (so ``T`` stays positive and the problem is
well-scaled) in float64, by bounded Brent search; the cross-entropy is convex in :math:`1/T`, so
it has one minimum.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from cvcore._validate import check_array, check_finite, check_int, check_positive

__all__ = ["fit_temperature", "temperature_scale", "nll", "succession_targets", "LOG_T_BOUNDS"]

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


def succession_targets(labels, n_classes: int) -> np.ndarray:
    """Soft targets (N, n_classes) float64: ``(N + 1) / (N + 2)`` on each row's label, the rest
    ``1 / (N + 2)`` shared equally by the other classes (Platt 1999's targets for ``N`` samples).

    >>> succession_targets(np.array([0, 1]), 2)
    array([[0.75, 0.25],
           [0.25, 0.75]])
    """
    n_classes = check_int(n_classes, "n_classes", minimum=1)
    labels = check_array(labels, "labels", ndim=1, dtypes="iu").astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must be class indices in 0..{n_classes - 1}")
    n = len(labels)
    other = 1.0 / ((n + 2) * (n_classes - 1)) if n_classes > 1 else 0.0
    targets = np.full((n, n_classes), other)
    targets[np.arange(n), labels] = (n + 1) / (n + 2) if n_classes > 1 else 1.0
    return targets


def fit_temperature(scores, labels, targets: str = "succession") -> float:
    """The temperature ``T`` minimising the cross-entropy of ``softmax(scores / T)`` against
    held-out ``labels`` (Guo et al. 2017), smoothed as :func:`succession_targets` says.

    Parameters
    ----------
    scores : array of float, shape (N, n_classes)
        Logits (or any scores whose softmax is the model's probability) of held-out samples:
        not the training samples, on which a network is over-confident.
    labels : array of int, shape (N,)
    targets : {"succession", "onehot"}
        ``"succession"`` (default): Platt's smoothed targets, a finite ``T`` even when every
        sample is classified right. ``"onehot"``: Guo et al.'s plain NLL, whose minimum runs to
        the lower bound of ``T`` on separable data (probabilities become hard 0/1 votes; the
        linear classifiers, which fit ``T`` on their own training data, use that on purpose:
        see :class:`cvcore.classify.LinearSVM`).

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
    if targets == "succession":
        targets = succession_targets(labels, scores.shape[1])
    elif targets == "onehot":
        targets = np.eye(scores.shape[1])[labels]
    else:
        raise ValueError(f"targets must be 'succession' or 'onehot', got {targets!r}")

    def objective(log_t):
        return -np.mean(np.sum(targets * log_softmax(scores / np.exp(log_t), axis=1), axis=1))

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
