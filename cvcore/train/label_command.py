"""``cvcore check DATA --labels``: rank the images whose label is probably wrong.

Loads the training images of a data set (with their file paths for an image folder; for the
array data sets, whose images have no files, ``train[i]``, the index in the training split),
computes out-of-fold probabilities with a fast HOG + linear model (or ``--model``), runs
confident learning (:mod:`cvcore.train.labels`) and writes into ``--out``:

* ``label_issues.csv``: rank, path, given label, likely label, confidence, label quality;
* ``label_issues.json``: the same list, with the settings and counts;
* ``label_issues.png``: a contact sheet of the ``--sheet`` most suspicious images.

It prints the top of the list (or, with ``--json``, one JSON line whose ``label_issues`` holds
the whole list of ``{path, label, likely_label, confidence}``).
"""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_options", "run", "load_training_images"]

DEFAULT_MODEL = "hog-svm"
DEFAULT_FOLDS = 5


def add_options(p) -> None:
    """The options of ``cvcore check`` that belong to ``--labels``."""
    g = p.add_argument_group("label check (--labels)")
    g.add_argument("--labels", action="store_true",
                   help="find images whose label is probably wrong (confident learning on "
                        "out-of-fold probabilities)")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"the model trained in each fold (default {DEFAULT_MODEL}; any model of "
                        "`cvcore train`)")
    g.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                   help=f"number of folds, at least 2 (default {DEFAULT_FOLDS})")
    g.add_argument("--epochs", type=int, default=4, help="CNN models: epochs per fold")
    g.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="image folders: resize every image to H x W")
    g.add_argument("--seed", type=int, default=0, help="seed of the folds and the models")
    g.add_argument("--out", default="cvcore-labels",
                   help="folder for label_issues.csv/.json/.png (default cvcore-labels)")
    g.add_argument("--top", type=int, default=20, help="how many suspects to print (default 20)")
    g.add_argument("--sheet", type=int, default=48,
                   help="how many suspects the contact sheet shows (default 48)")


def load_training_images(data, size=None, mode=None):
    """``(images, labels, class_names, paths, name)`` of the images whose labels are checked.

    An image folder: the ``train/`` split if there is one, else every image, with the file
    paths relative to the data set's folder. Anything else :func:`cvcore.io.load_dataset` takes:
    its training split, with paths ``train[i]``.
    """
    from cvcore.io.datasets import ImageFolder, _find_split_dirs, _is_idx_folder, load_dataset
    root = Path(str(data))
    if root.is_dir() and not _is_idx_folder(root):
        dirs = _find_split_dirs(root)
        folder = ImageFolder(dirs[0] if dirs else root, size=size, mode=mode or "rgb",
                             cache=False)
        x, y, problems = folder.load()
        bad = {p for p, _ in problems}
        paths = [str(p.relative_to(root)) for p, _ in folder.samples if str(p) not in bad]
        return x, y, folder.classes, paths, str(root)
    ds = load_dataset(data, size=size, mode=mode)
    return (ds.x_train, ds.y_train, ds.class_names,
            [f"train[{i}]" for i in range(len(ds.y_train))], ds.name)


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(args) -> dict:
    """Run the label check for parsed ``cvcore check`` arguments; returns the summary dict."""
    from cvcore.io.atomic import atomic_write
    from cvcore.train.labels import check_labels
    from cvcore.train.loop import TrainConfig
    from cvcore.train.pipeline import CNN_MODELS, HOG_MODELS
    from cvcore.train.report import plot_label_issues
    models = HOG_MODELS + CNN_MODELS
    if args.model not in models:
        raise ValueError(f"unknown model {args.model!r}; choose one of {', '.join(models)}")
    if args.folds < 2:
        raise ValueError(f"--folds must be at least 2, got {args.folds}")
    t0 = time.perf_counter()
    x, y, class_names, paths, name = load_training_images(args.data, args.size)
    _log(f"checking the labels of {len(y)} images of {name} with {args.model}, "
         f"{args.folds} folds")
    config = TrainConfig(epochs=args.epochs, seed=args.seed) if args.model in CNN_MODELS else None
    issues, proba = check_labels(x, y, class_names, paths, args.model, args.folds, args.seed,
                                 log=_log, config=config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["rank", "path", "label", "likely_label", "confidence", "label_quality"])
    for rank, item in enumerate(issues, 1):
        writer.writerow([rank, item["path"], item["label"], item["likely_label"],
                         f"{item['confidence']:.4f}", f"{item['label_quality']:.4f}"])
    with atomic_write(out / "label_issues.csv", "w") as f:
        f.write(buf.getvalue())
    drawn = plot_label_issues(x, issues, class_names, out / "label_issues.png", n=args.sheet,
                              title=f"{name}: {len(issues)} suspected label errors, "
                                    f"most suspicious first")
    summary = {"data": name, "model": args.model, "folds": args.folds, "n": int(len(y)),
               "out_of_fold_accuracy": float(np.mean(proba.argmax(1) == y)),
               "n_issues": len(issues), "seconds": time.perf_counter() - t0,
               "files": [str(out / f) for f in ("label_issues.csv", "label_issues.json",
                                                "label_issues.png")],
               "label_issues": [{k: item[k] for k in ("path", "label", "likely_label",
                                                      "confidence")} for item in issues]}
    with atomic_write(out / "label_issues.json", "w") as f:
        json.dump(dict(summary, label_issues=issues), f, indent=1)
    if args.json:
        print(json.dumps(summary))
        return summary
    print(f"{len(issues)} of {len(y)} labels look wrong ({100 * len(issues) / len(y):.2f}%); "
          f"out-of-fold accuracy {summary['out_of_fold_accuracy']:.4f}")
    for rank, item in enumerate(issues[:args.top], 1):
        print(f"{rank:>4}  {item['path']}  given {item['label']!r}, likely "
              f"{item['likely_label']!r} ({item['confidence']:.3f})")
    print(f"wrote {out / 'label_issues.csv'}, label_issues.json and label_issues.png "
          f"({drawn} images)")
    return summary
