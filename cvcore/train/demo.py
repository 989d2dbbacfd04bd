"""``cvcore demo``: the whole pipeline on data that ships inside the package.

1. A photo (``roofs1.jpg``, VLFeat's test image, BSD-2) through the preprocessing and feature
   stages: grey conversion, Gaussian smoothing, Sobel gradient, Canny edges, Harris corners and
   the HOG picture, drawn into ``pipeline.png``.
2. The embedded Fashion-MNIST subset (4000 training and 1000 test images): a HOG + linear SVM,
   a HOG + softmax regression and a ResNet-20 trained from scratch, each evaluated on the test
   images, with their weights (``<model>/model.npz``), metrics, confusion matrices and most
   confidently wrong images, and a ``report.md`` that compares them.
"""
from __future__ import annotations

import importlib.resources
import json
import sys
import time
from pathlib import Path

import numpy as np

from cvcore.io.atomic import atomic_write

#: Share of the training set held out to fit each model's calibration temperature (and, for the
#: ResNet, to validate each epoch): the default ``--val-fraction`` of ``cvcore train``.
CALIBRATION_FRACTION = 0.1

__all__ = ["run_demo", "pipeline_figure"]


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def pipeline_figure(path) -> dict:
    """Run the filter and feature stages on the bundled photo and draw them; returns counts."""
    from matplotlib.figure import Figure

    from cvcore.features import canny, corner_peaks, harris, hog
    from cvcore.io.images import imread
    from cvcore.preprocess import gaussian, rgb2gray, sobel
    from cvcore.train.report import save_figure
    photo = importlib.resources.files("cvcore") / "data" / "roofs1.jpg"
    rgb = imread(str(photo), mode="rgb")
    gray = rgb2gray(rgb)
    if gray.dtype != np.float32:
        gray = gray.astype(np.float32) / (255.0 if gray.dtype == np.uint8 else 1.0)
    smooth = gaussian(gray, 2.0)
    grad = sobel(smooth)
    edges = canny(gray, sigma=2.0)
    response = harris(gray, sigma=1.5)
    corners = corner_peaks(response, min_distance=7, threshold_rel=0.02)
    _, hog_image = hog(gray, orientations=9, pixels_per_cell=(12, 12), cells_per_block=(2, 2),
                       visualize=True)
    panels = [("input (RGB)", rgb, None), ("grey, Gaussian sigma=2", smooth, "gray"),
              ("Sobel gradient magnitude", grad, "magma"), ("Canny edges (sigma=2)", edges, "gray"),
              (f"Harris corners ({len(corners)})", gray, "gray"), ("HOG (12x12 cells)", hog_image,
                                                                   "gray")]
    fig = Figure(figsize=(12, 6.5))
    for i, (title, img, cmap) in enumerate(panels):
        ax = fig.add_subplot(2, 3, i + 1)
        # The HOG picture's few strong glyphs would leave the rest black: clip at the 99th
        # percentile, as scikit-image's example rescales its intensity.
        vmax = np.percentile(img, 99) if title.startswith("HOG") else None
        ax.imshow(img, cmap=cmap, vmax=vmax)
        if title.startswith("Harris"):
            ax.plot(corners[:, 1], corners[:, 0], "r+", markersize=6)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle("roofs1.jpg through cvcore's preprocessing and feature stages")
    save_figure(fig, path, dpi=90)
    return {"edge_pixels": int(edges.sum()), "corners": int(len(corners))}


def run_demo(out_dir="cvcore-demo", epochs: int = 5, quick: bool = False) -> dict:
    """Train and compare the models on the embedded data set; returns the summary dict."""
    from cvcore.io.datasets import load_embedded
    from cvcore.train.loop import TrainConfig
    from cvcore.train.pipeline import (model_path, stratified_split, train_cnn_model,
                                       train_hog_model)
    from cvcore.train.report import write_evaluation
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    _log("[1/4] preprocessing and features on roofs1.jpg")
    stages = pipeline_figure(out / "pipeline.png")

    data = load_embedded()
    if quick:
        data.x_train, data.y_train = data.x_train[:600], data.y_train[:600]
        data.x_test, data.y_test = data.x_test[:200], data.y_test[:200]
        epochs = 1
    _log(f"data: {data!r}")
    results = {}

    def finish(name, model, seconds_train):
        metrics, proba, raw = model.assess(data.x_test, data.y_test)
        metrics["seconds_predict"] = metrics.pop("seconds")
        metrics["seconds_train"] = seconds_train
        folder = out / name
        model.save(model_path(folder))
        write_evaluation(folder, metrics, proba, data.x_test, data.y_test, data.class_names, name,
                         proba_uncalibrated=raw)
        results[name] = metrics
        _log(f"    {name}: test accuracy {metrics['accuracy']:.4f} "
             f"(trained in {seconds_train:.1f} s)")

    for step, kind in ((2, "hog-svm"), (3, "hog-linear")):
        _log(f"[{step}/4] {kind}")
        t0 = time.perf_counter()
        model = train_hog_model(kind, data.x_train, data.y_train, data.class_names,
                                log=lambda m: _log("    " + m),
                                calibration_fraction=CALIBRATION_FRACTION)
        finish(kind, model, time.perf_counter() - t0)

    _log(f"[4/4] resnet20, {epochs} epoch(s)")
    t0 = time.perf_counter()
    config = TrainConfig(epochs=epochs, batch_size=128, lr=0.2, seed=0)
    # A validation share of the training set, for the curves and the calibration temperature
    keep, held = stratified_split(data.y_train, CALIBRATION_FRACTION, seed=0)
    model, history = train_cnn_model("resnet20", data.x_train[keep], data.y_train[keep],
                                     data.x_train[held], data.y_train[held], data.class_names,
                                     config, out_dir=out / "resnet20")
    finish("resnet20", model, time.perf_counter() - t0)

    summary = {"seconds": time.perf_counter() - t_start, "pipeline": stages,
               "models": {k: {"accuracy": v["accuracy"], "top5": v["top5"],
                              "macro_f1": v["macro_f1"], "seconds_train": v["seconds_train"]}
                          for k, v in results.items()}}
    with atomic_write(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    _write_markdown(out, data, summary, epochs)
    print(f"cvcore demo: report in {out.resolve()}/report.md "
          f"({summary['seconds']:.0f} s)")
    return summary


def _write_markdown(out: Path, data, summary, epochs) -> None:
    lines = ["# cvcore demo", "",
             f"Data: the embedded Fashion-MNIST subset, {len(data.y_train)} training and "
             f"{len(data.y_test)} test images of 28x28, {len(data.class_names)} classes.", "",
             "![pipeline](pipeline.png)", "",
             "| model | test accuracy | top-5 | macro F1 | training time |",
             "|---|---|---|---|---|"]
    for name, m in summary["models"].items():
        lines.append(f"| {name} | {m['accuracy']:.4f} | {m['top5']:.4f} | {m['macro_f1']:.4f} | "
                     f"{m['seconds_train']:.1f} s |")
    lines += ["", f"ResNet-20: {epochs} epoch(s) of SGD with Nesterov momentum and a one-cycle "
                  "schedule, random flips and padded crops; training curves in "
                  "`resnet20/curves.png`.", "",
              "Each model's folder holds `model.npz` (load with `cvcore predict --weights` or "
              "`cvcore eval`), `metrics.json`, `report.txt`, `confusion.png`, `mistakes.png`, "
              "`reliability.png` (calibration before and after temperature scaling, fitted on "
              "10% of the training set) and `coverage.png` (accuracy against coverage for "
              "`--min-confidence`).",
              ""]
    with atomic_write(out / "report.md", "w") as f:
        f.write("\n".join(lines))
