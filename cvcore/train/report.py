"""Report figures: confusion matrix, training curves, the most confidently wrong images; and
:func:`write_evaluation`, the files of one model's test evaluation (used by ``cvcore train``,
``cvcore eval`` and the demo).

Each figure is drawn with matplotlib's non-interactive Agg canvas and written as a PNG atomically.
"""
from __future__ import annotations

import io

import numpy as np

from cvcore.io.atomic import atomic_write

__all__ = ["plot_confusion_matrix", "plot_curves", "plot_confident_mistakes", "save_figure",
           "write_evaluation", "plot_reliability", "plot_accuracy_coverage", "plot_label_issues"]


def _figure(*args, **kwargs):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    return Figure(*args, **kwargs)


def save_figure(fig, path, dpi: int = 110) -> None:
    """Render ``fig`` to PNG in memory, then write it to ``path`` atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def write_evaluation(out_dir, metrics, proba, x_test, y_test, class_names, name: str,
                     header: str = "", proba_uncalibrated=None) -> list[str]:
    """Write one model's test evaluation into ``out_dir``; returns the file names written.

    ``metrics.json`` (:func:`cvcore.train.metrics.evaluate`'s dict), ``report.txt`` (``header``,
    then :func:`cvcore.train.metrics.format_report`), ``confusion.png``, ``mistakes.png``,
    ``reliability.png`` (the reliability diagram of ``proba`` and, when given, of
    ``proba_uncalibrated``: before and after calibration) and ``coverage.png`` (accuracy against
    coverage for the reject option, the threshold of ``metrics["selective"]`` marked), each
    written atomically. ``proba``: (N, n_classes) predicted probabilities of ``x_test``.
    """
    import json
    from pathlib import Path

    from cvcore.train.metrics import format_report
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "metrics.json", "w") as f:
        json.dump(metrics, f, indent=1)
    with atomic_write(out / "report.txt", "w") as f:
        f.write((f"{header}\n\n" if header else "") + format_report(metrics) + "\n")
    plot_confusion_matrix(metrics["confusion_matrix"], class_names, out / "confusion.png",
                          f"{name}: confusion matrix")
    plot_confident_mistakes(x_test, y_test, proba, class_names, out / "mistakes.png")
    temperature = (metrics.get("calibration") or {}).get("temperature")
    plot_reliability(y_test, proba, out / "reliability.png", proba_uncalibrated,
                     title=f"{name}: reliability"
                     + (f" (temperature {temperature:.3f})" if temperature else ""))
    plot_accuracy_coverage(y_test, proba, out / "coverage.png",
                           (metrics.get("selective") or {}).get("min_confidence"),
                           title=f"{name}: accuracy against coverage")
    return ["metrics.json", "report.txt", "confusion.png", "mistakes.png", "reliability.png",
            "coverage.png"]


def plot_reliability(y_true, proba, path, proba_uncalibrated=None,
                     n_bins: int | None = None, title: str = "Reliability diagram") -> None:
    """Reliability diagram (DeGroot & Fienberg 1983; Guo et al. 2017, fig. 1): accuracy against
    mean top-1 confidence in each of ``n_bins`` equal-width bins, the diagonal being perfect
    calibration, with the ECE in the legend; below it, how many samples fall in each bin.

    ``proba`` (N, n_classes) are the probabilities shown ("calibrated" when
    ``proba_uncalibrated``, the same model's probabilities before calibration, is drawn beside
    them).
    """
    from cvcore.train.metrics import ECE_BINS, expected_calibration_error, reliability_bins
    n_bins = n_bins or ECE_BINS
    curves = [("calibrated" if proba_uncalibrated is not None else "model", proba, "C0")]
    if proba_uncalibrated is not None:
        curves.insert(0, ("uncalibrated", proba_uncalibrated, "C3"))
    fig = _figure(figsize=(5, 6))
    ax = fig.add_axes((0.13, 0.34, 0.82, 0.58))
    hist = fig.add_axes((0.13, 0.08, 0.82, 0.18), sharex=ax)
    ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="perfect")
    width = 1.0 / n_bins
    for k, (label, p, colour) in enumerate(curves):
        bins = reliability_bins(y_true, p, n_bins)
        full = bins["count"] > 0
        ece = expected_calibration_error(y_true, p, n_bins)
        ax.plot(bins["confidence"][full], bins["accuracy"][full], marker="o", color=colour,
                label=f"{label}: ECE {ece:.4f}")
        centres = bins["edges"][:-1] + width / 2
        offset = (k - (len(curves) - 1) / 2) * width / len(curves)
        hist.bar(centres + offset, bins["count"], width=width / len(curves), color=colour,
                 alpha=0.7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel(f"top-1 confidence ({n_bins} bins)")
    hist.set_ylabel("samples")
    save_figure(fig, path)


def plot_accuracy_coverage(y_true, proba, path, min_confidence=None,
                           title: str = "Accuracy against coverage") -> None:
    """Accuracy of the kept predictions against the share kept (coverage) when predictions below
    a confidence threshold are rejected; the threshold is marked along the curve, so a user can
    read off the ``--min-confidence`` that gives the accuracy they need."""
    from cvcore.train.metrics import accuracy_coverage_curve, selective_accuracy
    curve = accuracy_coverage_curve(y_true, proba)
    fig = _figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    ax.plot(curve["coverage"], curve["accuracy"], color="C0")
    for t in (0.5, 0.7, 0.9, 0.95, 0.99):
        above = np.flatnonzero(curve["threshold"] >= t)   # thresholds fall along the curve
        if len(above):
            i = int(above[-1])
            ax.plot(curve["coverage"][i], curve["accuracy"][i], "o", color="C0", markersize=3)
            ax.annotate(f"{t:g}", (curve["coverage"][i], curve["accuracy"][i]), fontsize=7,
                        textcoords="offset points", xytext=(3, -9))
    if min_confidence is not None:
        sel = selective_accuracy(y_true, proba, min_confidence)
        ax.plot(sel["coverage"], sel["accuracy"], "*", color="C3", markersize=10,
                label=f"--min-confidence {min_confidence:g}: coverage {sel['coverage']:.3f}, "
                      f"accuracy {sel['accuracy']:.3f}")
        ax.legend(loc="lower left", fontsize=7)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("coverage (share of predictions kept)")
    ax.set_ylabel("accuracy of the kept predictions")
    ax.set_title(title + " (labels: confidence threshold)", fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_confusion_matrix(cm, class_names, path, title: str = "Confusion matrix") -> None:
    """Row-normalised confusion matrix with the counts written in the cells."""
    cm = np.asarray(cm)
    n = len(class_names)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = _figure(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
    ax = fig.add_subplot()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    save_figure(fig, path)


def plot_curves(rows, path, title: str = "Training curves") -> None:
    """Loss and accuracy per epoch from the metric log (a list of dicts with ``epoch`` and any of
    ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``)."""
    fig = _figure(figsize=(9, 3.4))
    for idx, (metric, label) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        ax = fig.add_subplot(1, 2, idx + 1)
        for split in ("train", "val"):
            pts = [(r["epoch"], r[f"{split}_{metric}"]) for r in rows if f"{split}_{metric}" in r]
            if pts:
                e, v = zip(*pts)
                ax.plot(e, v, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path)


def plot_confident_mistakes(images, y_true, proba, class_names, path, n: int = 16) -> int:
    """A grid of the ``n`` wrong predictions with the highest predicted probability.

    ``images`` (N, H, W) or (N, H, W, 3) in 0..1 or 0..255; returns how many were drawn.
    """
    proba = np.asarray(proba)
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != np.asarray(y_true))
    order = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:n]
    cols = max(1, min(8, len(order)))
    rows = max(1, -(-len(order) // cols))
    fig = _figure(figsize=(1.6 * cols, 1.9 * rows))
    for k, i in enumerate(order):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = np.asarray(images[i])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(f"{class_names[pred[i]]} {proba[i, pred[i]]:.2f}\n"
                     f"(true: {class_names[y_true[i]]})", fontsize=7)
        ax.axis("off")
    if not len(order):
        fig.add_subplot().text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle("Most confidently wrong")
    save_figure(fig, path)
    return len(order)


def plot_label_issues(images, issues, class_names, path, n: int = 32, cols: int = 8,
                      title: str = "Suspected label errors (most suspicious first)") -> int:
    """A contact sheet of the ``n`` most suspicious labels, for a person to judge.

    ``images``: (N, H, W[, 3]) uint8 or 0..1; ``issues``: dicts with ``index`` (into
    ``images``), ``path``, ``label``, ``likely_label`` (class names) and ``confidence``, as
    :func:`cvcore.train.labels.find_label_issues` ranks them. Returns how many were drawn.
    """
    shown = list(issues)[:n]
    cols = max(1, min(cols, len(shown)))
    rows = max(1, -(-len(shown) // cols))
    fig = _figure(figsize=(1.7 * cols, 2.15 * rows + 0.4))
    for k, item in enumerate(shown):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = np.asarray(images[item["index"]])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        name = str(item["path"])
        name = name if len(name) <= 18 else "..." + name[-15:]
        ax.set_title(f"given: {item['label'][:14]}\nlikely: {item['likely_label'][:14]} "
                     f"{item['confidence']:.2f}\n{name}", fontsize=6.5)
        ax.axis("off")
    if not shown:
        fig.add_subplot().text(0.5, 0.5, "no label issues found", ha="center", va="center")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
    return len(shown)
