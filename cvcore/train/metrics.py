"""Classification metrics: accuracy, top-k, confusion matrix, per-class precision/recall/F1;
calibration (expected calibration error, reliability bins) and selective classification (the
reject option, accuracy against coverage).

Conventions follow scikit-learn: ``confusion_matrix[i, j]`` counts samples of true class ``i``
predicted as ``j``; precision of class ``j`` is ``cm[j, j] / cm[:, j].sum()``, recall
``cm[j, j] / cm[j, :].sum()``, F1 their harmonic mean; a ratio with a zero denominator is 0
(scikit-learn's ``zero_division=0``).

Calibration is that of the top-1 prediction (Guo et al. 2017, sec. 2): a sample's *confidence*
is its largest probability, and it is *correct* when that class is the true one. A model is
calibrated when, among the samples predicted with confidence ``c``, a share ``c`` is correct.
"""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array, check_finite, check_int

__all__ = ["accuracy", "top_k_accuracy", "confusion_matrix", "precision_recall_f1", "evaluate",
           "format_report", "ECE_BINS", "reliability_bins", "expected_calibration_error",
           "adaptive_calibration_error", "UNKNOWN", "check_min_confidence", "reject",
           "selective_accuracy", "accuracy_coverage_curve"]

#: Bins of the expected calibration error: 15 of equal width on [0, 1], as in Guo et al. 2017
#: (sec. 5, "M = 15 bins").
ECE_BINS = 15
#: The label :func:`reject` gives a prediction below the confidence threshold ("unknown").
UNKNOWN = -1
#: Rows of a probability matrix may sum to 1 within this (float32 softmax outputs do not reach
#: 1 exactly).
PROBABILITY_SUM_TOL = 1e-3


def _labels(y, name):
    return check_array(y, name, ndim=1, dtypes="biu").astype(np.int64)


def _same_length(a, b, name_a, name_b):
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} entries but {name_b} has {len(b)}")


def accuracy(y_true, y_pred) -> float:
    """Share of samples whose predicted label equals the true one."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _same_length(y_true, y_pred, "y_true", "y_pred")
    return float(np.mean(y_true == y_pred))


def top_k_accuracy(y_true, scores, k: int = 5) -> float:
    """Share of samples whose true class is among the ``k`` highest scores.

    ``scores`` is (N, n_classes) (probabilities or logits); ``k`` is capped at ``n_classes``.
    Ties are broken towards the lower class index, as :func:`numpy.argsort` with a stable sort.
    """
    y_true = _labels(y_true, "y_true")
    scores = check_finite(check_array(scores, "scores", ndim=2, dtypes="uif"), "scores")
    _same_length(y_true, scores, "y_true", "scores")
    k = min(check_int(k, "k", minimum=1), scores.shape[1])
    if y_true.min() < 0 or y_true.max() >= scores.shape[1]:
        raise ValueError(f"y_true holds labels outside 0..{scores.shape[1] - 1}")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean((top == y_true[:, None]).any(axis=1)))


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """(n_classes, n_classes) int64 counts; rows are true classes, columns predictions."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _same_length(y_true, y_pred, "y_true", "y_pred")
    if min(y_true.min(), y_pred.min()) < 0:
        raise ValueError("labels must be non-negative class indices")
    if n_classes is None:
        n_classes = int(max(y_true.max(), y_pred.max())) + 1
    elif max(y_true.max(), y_pred.max()) >= n_classes:
        raise ValueError(f"labels must be below n_classes={n_classes}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _ratio(num, den):
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def precision_recall_f1(cm) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    precision = _ratio(tp, cm.sum(axis=0))
    recall = _ratio(tp, cm.sum(axis=1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return precision, recall, f1, cm.sum(axis=1).astype(np.int64)


def evaluate(y_true, scores, class_names=None, k: int = 5) -> dict:
    """Every metric of a classifier's scores on held-out data, as a JSON-ready dict.

    Returns ``accuracy``, ``top5`` (or ``top{k}``), ``macro_f1``, ``per_class`` (name ->
    precision, recall, f1, support), ``confusion_matrix`` (nested lists) and ``n``.
    """
    y_true = _labels(y_true, "y_true")
    scores = check_array(scores, "scores", ndim=2, dtypes="uif")
    n_classes = scores.shape[1]
    names = [str(i) for i in range(n_classes)] if class_names is None else list(class_names)
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for {n_classes} score columns")
    y_pred = np.argmax(scores, axis=1)
    cm = confusion_matrix(y_true, y_pred, n_classes)
    precision, recall, f1, support = precision_recall_f1(cm)
    return {
        "n": int(len(y_true)),
        "accuracy": accuracy(y_true, y_pred),
        f"top{k}": top_k_accuracy(y_true, scores, k),
        "macro_f1": float(f1.mean()),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f),
                             "support": int(s)}
                      for name, p, r, f, s in zip(names, precision, recall, f1, support)},
        "confusion_matrix": cm.tolist(),
        **_calibration_entries(y_true, scores),
    }


def _calibration_entries(y_true, scores) -> dict:
    """``ece`` and ``adaptive_ece`` when ``scores`` are probabilities (rows in [0, 1] summing
    to 1), nothing for logits or other scores, whose "confidence" has no meaning."""
    s = np.asarray(scores, dtype=np.float64)
    if not (np.isfinite(s).all() and s.min() >= 0 and s.max() <= 1
            and np.abs(s.sum(axis=1) - 1).max() <= PROBABILITY_SUM_TOL):
        return {}
    return {"ece": expected_calibration_error(y_true, s),
            "adaptive_ece": adaptive_calibration_error(y_true, s)}


def format_report(metrics: dict) -> str:
    """A plain-text table of :func:`evaluate`'s output."""
    names = list(metrics["per_class"])
    width = max(12, max(len(n) for n in names) + 2)
    lines = [f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<{width}}{m['precision']:>10.4f}{m['recall']:>10.4f}"
                     f"{m['f1']:>10.4f}{m['support']:>10d}")
    topk = [k for k in metrics if k.startswith("top")]
    lines.append("")
    lines.append(f"accuracy {metrics['accuracy']:.4f}   "
                 + "   ".join(f"{k} {metrics[k]:.4f}" for k in topk)
                 + f"   macro F1 {metrics['macro_f1']:.4f}   n={metrics['n']}")
    if "ece" in metrics:
        lines.append(f"calibration: ECE {metrics['ece']:.4f}   adaptive ECE "
                     f"{metrics['adaptive_ece']:.4f}   ({ECE_BINS} bins)")
    cal = metrics.get("calibration")
    if cal and "ece_uncalibrated" in cal:
        lines.append(f"  before {cal['method']} scaling (T = {cal['temperature']:.3f}): ECE "
                     f"{cal['ece_uncalibrated']:.4f}   adaptive ECE "
                     f"{cal['adaptive_ece_uncalibrated']:.4f}")
    sel = metrics.get("selective")
    if sel:
        lines.append(f"reject below confidence {sel['min_confidence']:.3f}: coverage "
                     f"{sel['coverage']:.4f}   accuracy of the kept {sel['accuracy']:.4f}   "
                     f"({sel['rejected']} unknown)")
    cm = np.asarray(metrics["confusion_matrix"])
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    cell = max(5, len(str(cm.max())) + 1)
    lines.append(" " * width + "".join(f"{i:>{cell}d}" for i in range(len(names))))
    for i, name in enumerate(names):
        lines.append(f"{i:>2d} {name[:width - 4]:<{width - 3}}"
                     + "".join(f"{v:>{cell}d}" for v in cm[i]))
    return "\n".join(lines)


# -- calibration ------------------------------------------------------------------------------

def _proba_and_labels(y_true, proba):
    y_true = _labels(y_true, "y_true")
    proba = check_finite(check_array(proba, "proba", ndim=2, dtypes="f"), "proba")
    _same_length(y_true, proba, "y_true", "proba")
    if y_true.min() < 0 or y_true.max() >= proba.shape[1]:
        raise ValueError(f"y_true holds labels outside 0..{proba.shape[1] - 1}")
    if proba.min() < 0 or proba.max() > 1:
        raise ValueError("proba must hold probabilities in [0, 1]")
    return y_true, proba.astype(np.float64)


def reliability_bins(y_true, proba, n_bins: int = ECE_BINS, adaptive: bool = False) -> dict:
    """Top-1 confidence and accuracy per confidence bin: the data of a reliability diagram.

    Parameters
    ----------
    y_true : array of int, shape (N,)
    proba : array of float, shape (N, n_classes)
        Predicted probabilities.
    n_bins : int
    adaptive : bool
        False: ``n_bins`` bins of equal width, bin ``m`` (from 1) holding the confidences in
        ``((m - 1) / M, m / M]`` (Guo et al. 2017, sec. 2). True: bins of equal mass, the
        samples sorted by confidence (ties in input order) and cut into ``n_bins`` runs whose
        sizes differ by at most one (``numpy.array_split``; Nguyen & O'Connor 2015, Nixon et al.
        2019's adaptive binning).

    Returns
    -------
    dict
        ``edges`` (n_bins + 1,) float64: bin limits (for equal-mass bins, the smallest
        confidence of each bin and the largest of the last); ``count`` (n_bins,) int64;
        ``confidence`` and ``accuracy`` (n_bins,) float64: mean confidence and share correct in
        each bin (NaN for an empty bin).
    """
    y_true, proba = _proba_and_labels(y_true, proba)
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    if adaptive:
        order = np.argsort(conf, kind="stable")
        groups = [g for g in np.array_split(order, n_bins)]
        bin_of = np.empty(len(conf), dtype=np.int64)
        for m, g in enumerate(groups):
            bin_of[g] = m
        edges = np.array([conf[g[0]] if len(g) else np.nan for g in groups] + [conf.max()])
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        # searchsorted(side="left") - 1 puts c in bin m exactly when edges[m] < c <= edges[m+1]
        bin_of = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bin_of, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(bin_of, conf, minlength=n_bins) / count
        acc = np.bincount(bin_of, correct, minlength=n_bins) / count
    return {"edges": edges, "count": count, "confidence": confidence, "accuracy": acc}


def _ece_from_bins(bins) -> float:
    count = bins["count"]
    full = count > 0
    gaps = np.abs(bins["accuracy"][full] - bins["confidence"][full])
    return float(np.sum(count[full] * gaps) / count.sum())


def expected_calibration_error(y_true, proba, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-width confidence bins (Naeini et al. 2015; Guo et
    al. 2017, eq. 3):

    .. math:: \\mathrm{ECE} = \\sum_{m=1}^{M} \\frac{|B_m|}{n}
        \\left| \\mathrm{acc}(B_m) - \\mathrm{conf}(B_m) \\right|

    with :math:`B_m` the samples whose top-1 confidence lies in :math:`((m-1)/M, m/M]`. 0 is
    perfect; temperature scaling, which leaves the top-1 class unchanged, lowers it.

    Examples
    --------
    Four samples all predicted with confidence 0.8, three of them correctly: one bin, gap 0.05.

    >>> p = np.array([[0.8, 0.2]] * 4)
    >>> round(expected_calibration_error([0, 0, 0, 1], p), 6)
    0.05
    """
    return _ece_from_bins(reliability_bins(y_true, proba, n_bins, adaptive=False))


def adaptive_calibration_error(y_true, proba, n_bins: int = ECE_BINS) -> float:
    """The ECE formula over ``n_bins`` bins of equal mass (see :func:`reliability_bins`), which
    does not leave most bins empty when confidences crowd near 1 (Nixon et al. 2019, "Measuring
    calibration in deep learning"; the top-1 variant, as Mukhoti et al. 2020's AdaECE)."""
    return _ece_from_bins(reliability_bins(y_true, proba, n_bins, adaptive=True))


# -- the reject option (selective classification) ------------------------------------------

def check_min_confidence(min_confidence) -> float:
    """A confidence threshold as a float in [0, 1], or a clear ``ValueError``/``TypeError``."""
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float, np.number)):
        raise TypeError(f"min_confidence must be a number in [0, 1], got {min_confidence!r}")
    value = float(min_confidence)
    if not 0.0 <= value <= 1.0:   # also refuses NaN
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    return value


def reject(proba, min_confidence) -> np.ndarray:
    """Top-1 classes (N,) int64, with :data:`UNKNOWN` (-1) where the top probability is below
    ``min_confidence`` (selective classification, Chow 1970; Geifman & El-Yaniv 2017).

    Examples
    --------
    >>> reject(np.array([[0.9, 0.1], [0.55, 0.45]]), 0.6)
    array([ 0, -1])
    """
    threshold = check_min_confidence(min_confidence)
    proba = check_finite(check_array(proba, "proba", ndim=2, dtypes="f"), "proba")
    pred = proba.argmax(axis=1).astype(np.int64)
    pred[proba.max(axis=1) < threshold] = UNKNOWN
    return pred


def selective_accuracy(y_true, proba, min_confidence) -> dict:
    """Coverage (share of samples kept) and accuracy on the kept samples at one threshold.

    Returns ``{"min_confidence", "coverage", "accuracy", "rejected"}``; the accuracy of an empty
    selection is NaN.
    """
    y_true, proba = _proba_and_labels(y_true, proba)
    pred = reject(proba, min_confidence)
    kept = pred != UNKNOWN
    acc = float(np.mean(pred[kept] == y_true[kept])) if kept.any() else float("nan")
    return {"min_confidence": check_min_confidence(min_confidence),
            "coverage": float(kept.mean()), "accuracy": acc, "rejected": int((~kept).sum())}


def accuracy_coverage_curve(y_true, proba) -> dict:
    """Accuracy of the kept samples against coverage, for every threshold (the risk-coverage
    curve of Geifman & El-Yaniv 2017, as accuracy).

    Samples are kept in order of decreasing confidence; point ``i`` keeps the ``i + 1`` most
    confident ones (with ties, every sample of the same confidence is kept together: the
    threshold cannot split them).

    Returns
    -------
    dict
        ``coverage``, ``accuracy`` and ``threshold`` (K,) float64 arrays, coverage increasing
        to 1; ``threshold[i]`` is the ``min_confidence`` that keeps exactly that share.
    """
    y_true, proba = _proba_and_labels(y_true, proba)
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    hits = np.cumsum(correct)
    last_of_tie = np.r_[conf[1:] != conf[:-1], True]
    kept = np.flatnonzero(last_of_tie) + 1
    return {"coverage": kept / len(conf), "accuracy": hits[kept - 1] / kept,
            "threshold": conf[kept - 1]}
