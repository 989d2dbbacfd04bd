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
           "write_evaluation"]


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
                     header: str = "") -> list[str]:
    """Write one model's test evaluation into ``out_dir``; returns the file names written.

    ``metrics.json`` (:func:`cvcore.train.metrics.evaluate`'s dict), ``report.txt`` (``header``,
    then :func:`cvcore.train.metrics.format_report`), ``confusion.png`` and ``mistakes.png``
    (``proba``: (N, n_classes) predicted probabilities of ``x_test``), each written atomically.
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
    return ["metrics.json", "report.txt", "confusion.png", "mistakes.png"]


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
