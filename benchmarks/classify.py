"""HOG + linear classifiers on the full MNIST and Fashion-MNIST, cvcore against
scikit-image HOG + scikit-learn LinearSVC, in one run.

    python -m benchmarks.classify [--datasets DIR] [--skip-reference]

For each data set it prints the test accuracy and the seconds spent on feature extraction and on
training, for cvcore (``hog_batch`` + :class:`cvcore.classify.LinearSVM`, the same settings as
``cvcore train --model hog-svm``) and for the references on the same images.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line, optional


def cvcore_run(x_train, y_train, x_test, y_test, class_names):
    from cvcore.train.pipeline import train_hog_model
    times = {}
    t0 = time.perf_counter()
    model = train_hog_model("hog-svm", x_train, y_train, class_names, log=lambda m: None)
    times["fit (features + svm)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    acc = float(np.mean(model.predict_proba(x_test).argmax(1) == y_test))
    times["predict"] = time.perf_counter() - t0
    return acc, times


def reference_run(x_train, y_train, x_test, y_test):
    skf = optional("skimage.feature")
    svm = optional("sklearn.svm")
    if skf is None or svm is None:
        return None, {}

    def feats(x):
        return np.stack([skf.hog(im, orientations=9, pixels_per_cell=(4, 4),
                                 cells_per_block=(2, 2), block_norm="L2-Hys") for im in x])
    times = {}
    t0 = time.perf_counter()
    f_train, f_test = feats(x_train), feats(x_test)
    times["features"] = time.perf_counter() - t0
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    t0 = time.perf_counter()
    clf = svm.LinearSVC(C=0.1).fit((f_train - mean) / std, y_train)
    times["svm"] = time.perf_counter() - t0
    return float(clf.score((f_test - mean) / std, y_test)), times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=os.environ.get(
        "CVCORE_DATASETS", str(Path(__file__).resolve().parents[2] / "shared" / "datasets")))
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)
    from cvcore.io.datasets import load_dataset
    print(machine_line())
    print(f"{'data set':<15} {'library':<28} {'accuracy':>9} {'seconds':>9}  detail")
    for name in ("fashion-mnist", "mnist"):
        data = load_dataset(name, root=Path(args.datasets) / name)
        acc, times = cvcore_run(data.x_train, data.y_train, data.x_test, data.y_test,
                                data.class_names)
        detail = ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
        print(f"{name:<15} {'cvcore hog_batch+LinearSVM':<28} {acc:9.4f} "
              f"{sum(times.values()):9.1f}  {detail}", flush=True)
        if not args.skip_reference:
            acc, times = reference_run(data.x_train, data.y_train, data.x_test, data.y_test)
            if acc is None:
                print(f"{name:<15} {'skimage+sklearn':<28} {'n/a':>9}")
            else:
                detail = ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
                print(f"{name:<15} {'skimage hog+LinearSVC':<28} {acc:9.4f} "
                      f"{sum(times.values()):9.1f}  {detail}", flush=True)


if __name__ == "__main__":
    main()
