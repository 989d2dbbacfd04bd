"""Classification metrics: accuracy, top-k, confusion matrix, per-class precision/recall/F1.

Conventions follow scikit-learn: ``confusion_matrix[i, j]`` counts samples of true class ``i``
predicted as ``j``; precision of class ``j`` is ``cm[j, j] / cm[:, j].sum()``, recall
``cm[j, j] / cm[j, :].sum()``, F1 their harmonic mean; a ratio with a zero denominator is 0
(scikit-learn's ``zero_division=0``).
"""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array, check_finite, check_int

__all__ = ["accuracy", "top_k_accuracy", "confusion_matrix", "precision_recall_f1", "evaluate",
           "format_report"]


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
    }


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
    cm = np.asarray(metrics["confusion_matrix"])
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted)")
    cell = max(5, len(str(cm.max())) + 1)
    lines.append(" " * width + "".join(f"{i:>{cell}d}" for i in range(len(names))))
    for i, name in enumerate(names):
        lines.append(f"{i:>2d} {name[:width - 4]:<{width - 3}}"
                     + "".join(f"{v:>{cell}d}" for v in cm[i]))
    return "\n".join(lines)
