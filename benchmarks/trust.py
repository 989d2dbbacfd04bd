"""Predictions and labels a user can trust: calibration, test-time augmentation, label issues.

    python -m benchmarks.trust calibration [--epochs 5]
    python -m benchmarks.trust tta --data fashion-mnist|cifar10 [--train-n N] [--epochs E]
                                   [--test-n M] [--weights model.npz]
    python -m benchmarks.trust labels [--n 15000] [--noise 0.05] [--folds 5] [--out DIR]

``calibration``: a ResNet-20 trained on the embedded Fashion-MNIST subset (3600 images, 400 held
out for validation and the temperature), then its test-split ECE and adaptive ECE before and
after temperature scaling, and whether any top-1 prediction changed.

``tta``: a ResNet-20 (trained here on a seeded class-stratified subset, or ``--weights``) scored
on the test split plainly and with test-time augmentation (10 views): accuracy, ECE, seconds and
the time ratio.

``labels``: a seeded class-stratified subset of the Fashion-MNIST training set with a share
``--noise`` of its labels flipped (each to a different class drawn uniformly, seeded);
out-of-fold probabilities of ``cvcore check --labels``'s default model; then the label issues of
cvcore's confident learning and of ``cleanlab.filter.find_label_issues`` on the *same*
probabilities: their precision and recall against the flipped set, their overlap and their
time. The unmodified subset is checked too, and its contact sheet of Fashion-MNIST's own
suspicious labels written to ``--out``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line, optional

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))


def _subset(y, n, seed):
    """A seeded class-stratified subset of n indices (sorted)."""
    from cvcore.train.pipeline import stratified_split
    if n >= len(y):
        return np.arange(len(y))
    _, held = stratified_split(y, n / len(y), seed)
    return held


def calibration(args):
    from cvcore.io.datasets import load_embedded
    from cvcore.train.loop import TrainConfig
    from cvcore.train.pipeline import stratified_split, train_cnn_model
    data = load_embedded()
    keep, held = stratified_split(data.y_train, 0.1, seed=0)
    t0 = time.perf_counter()
    model, _ = train_cnn_model("resnet20", data.x_train[keep], data.y_train[keep],
                               data.x_train[held], data.y_train[held], data.class_names,
                               TrainConfig(epochs=args.epochs, seed=0), progress=False)
    seconds = time.perf_counter() - t0
    metrics, proba, raw = model.assess(data.x_test, data.y_test)
    cal = metrics["calibration"]
    changed = int(np.sum(proba.argmax(1) != raw.argmax(1)))
    print(f"ResNet-20, embedded Fashion-MNIST ({len(keep)} train, {len(held)} validation, "
          f"{args.epochs} epochs, {seconds:.0f} s); test split of {len(data.y_test)}")
    print(f"temperature {cal['temperature']:.3f} (validation NLL "
          f"{model.params['calibration']['nll_before']:.4f} -> "
          f"{model.params['calibration']['nll_after']:.4f})")
    print("| probabilities | test accuracy | ECE (15 bins) | adaptive ECE |")
    print("|---|---|---|---|")
    print(f"| uncalibrated | {metrics['accuracy']:.4f} | {cal['ece_uncalibrated']:.4f} | "
          f"{cal['adaptive_ece_uncalibrated']:.4f} |")
    print(f"| temperature-scaled | {metrics['accuracy']:.4f} | {metrics['ece']:.4f} | "
          f"{metrics['adaptive_ece']:.4f} |")
    print(f"ECE drop {cal['ece_uncalibrated'] - metrics['ece']:.4f} "
          f"({100 * (1 - metrics['ece'] / cal['ece_uncalibrated']):.0f}%); top-1 predictions "
          f"changed by the temperature: {changed}")


def tta(args):
    from cvcore.io.datasets import load_dataset
    from cvcore.train.loop import TrainConfig
    from cvcore.train.metrics import expected_calibration_error
    from cvcore.train.pipeline import load_model, stratified_split, train_cnn_model
    name = {"cifar10": str(DATASETS / "cifar10")}.get(args.data, args.data)
    t0 = time.perf_counter()
    data = load_dataset(name, root=DATASETS / args.data if args.data != "cifar10" else None)
    print(f"loaded {data!r} in {time.perf_counter() - t0:.0f} s")
    if args.weights:
        model = load_model(args.weights)
        how = f"weights {args.weights}"
    else:
        idx = _subset(data.y_train, args.train_n, seed=0)
        keep, held = stratified_split(data.y_train[idx], 0.1, seed=0)
        t0 = time.perf_counter()
        model, _ = train_cnn_model("resnet20", data.x_train[idx[keep]], data.y_train[idx[keep]],
                                   data.x_train[idx[held]], data.y_train[idx[held]],
                                   data.class_names, TrainConfig(epochs=args.epochs, seed=0),
                                   progress=False)
        how = (f"trained here on {len(keep)} images ({len(held)} for validation and the "
               f"temperature), {args.epochs} epochs, {time.perf_counter() - t0:.0f} s")
        if args.save:
            model.save(args.save)
    test = _subset(data.y_test, args.test_n, seed=1)
    x, y = data.x_test[test], data.y_test[test]
    rows = []
    for use_tta in (False, True):
        model.predict_proba(x[:8], tta=use_tta)                      # warm-up (compilation)
        t0 = time.perf_counter()
        proba = model.predict_proba(x, tta=use_tta)
        seconds = time.perf_counter() - t0
        rows.append((use_tta, float(np.mean(proba.argmax(1) == y)),
                     expected_calibration_error(y, proba), seconds))
    print(f"ResNet-20 on {args.data}: {how}; {len(y)} test images")
    print("| prediction | test accuracy | ECE | seconds | images/s |")
    print("|---|---|---|---|---|")
    for use_tta, acc, ece, sec in rows:
        print(f"| {'TTA, 10 views' if use_tta else 'plain'} | {acc:.4f} | {ece:.4f} | "
              f"{sec:.1f} | {len(y) / sec:.0f} |")
    print(f"TTA: accuracy {100 * (rows[1][1] - rows[0][1]):+.2f} points, time x"
          f"{rows[1][3] / rows[0][3]:.1f}")


def _flip(y, share, k, seed):
    rng = np.random.default_rng(seed)
    flipped = np.sort(rng.choice(len(y), int(round(share * len(y))), replace=False))
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, k, len(flipped))) % k
    return noisy, flipped


def _pr(mask, truth):
    hit = int(np.sum(mask & truth))
    return hit / max(int(mask.sum()), 1), hit / max(int(truth.sum()), 1)


def labels(args):
    from cvcore.io.datasets import load_dataset
    from cvcore.train.label_command import DEFAULT_MODEL
    from cvcore.train.labels import find_label_issues, label_issue_mask, out_of_fold_proba
    from cvcore.train.report import plot_label_issues
    cl_filter = optional("cleanlab.filter")
    data = load_dataset("fashion-mnist", root=DATASETS / "fashion-mnist")
    idx = _subset(data.y_train, args.n, seed=0)
    x, y = data.x_train[idx], data.y_train[idx]
    k = len(data.class_names)
    noisy, flipped = _flip(y, args.noise, k, seed=args.seed)
    truth = np.zeros(len(y), bool)
    truth[flipped] = True
    print(f"Fashion-MNIST training subset: {len(y)} images (seeded, stratified), "
          f"{len(flipped)} labels flipped ({100 * args.noise:g}%, seed {args.seed}); "
          f"{DEFAULT_MODEL}, {args.folds} folds")
    t0 = time.perf_counter()
    proba = out_of_fold_proba(DEFAULT_MODEL, x, noisy, data.class_names, args.folds,
                              log=lambda m: print("  " + m))
    print(f"out-of-fold probabilities in {time.perf_counter() - t0:.0f} s, accuracy against the "
          f"given labels {np.mean(proba.argmax(1) == noisy):.4f}")
    t0 = time.perf_counter()
    ours = label_issue_mask(noisy, proba)
    t_ours = time.perf_counter() - t0
    print("| method | flagged | precision | recall | seconds |")
    print("|---|---|---|---|---|")
    p, r = _pr(ours, truth)
    print(f"| cvcore confident learning | {int(ours.sum())} | {p:.4f} | {r:.4f} | {t_ours:.3f} |")
    if cl_filter is not None:
        t0 = time.perf_counter()
        theirs = cl_filter.find_label_issues(noisy, proba, n_jobs=1)
        t_theirs = time.perf_counter() - t0
        p, r = _pr(theirs, truth)
        print(f"| cleanlab {__import__('cleanlab').__version__} find_label_issues | "
              f"{int(theirs.sum())} | {p:.4f} | {r:.4f} | {t_theirs:.3f} |")
        both, either = int(np.sum(ours & theirs)), int(np.sum(ours | theirs))
        print(f"overlap: {both} flagged by both, {either} by either (Jaccard "
              f"{both / max(either, 1):.4f}); cleanlab time / cvcore time "
              f"{t_theirs / t_ours:.2f}")
    else:
        print("cleanlab is not installed: no reference column")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print("the unmodified subset:")
        clean = out_of_fold_proba(DEFAULT_MODEL, x, y, data.class_names, args.folds,
                                  log=lambda m: print("  " + m))
        issues = find_label_issues(y, clean, data.class_names,
                                   [f"train[{i}]" for i in idx])
        for item in issues:
            item["index"] = int(np.searchsorted(idx, int(item["path"][6:-1])))
        drawn = plot_label_issues(x, issues, data.class_names, out / "fashion_mnist_suspects.png",
                                  n=48, title=f"Fashion-MNIST training subset ({len(y)} images): "
                                              f"{len(issues)} suspected label errors")
        print(f"{len(issues)} suspects in the unmodified subset; the {drawn} most suspicious in "
              f"{out / 'fashion_mnist_suspects.png'}")
        for item in issues[:10]:
            print(f"  {item['path']}: given {item['label']}, likely {item['likely_label']} "
                  f"({item['confidence']:.3f})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("calibration")
    p.add_argument("--epochs", type=int, default=5)
    p.set_defaults(func=calibration)
    p = sub.add_parser("tta")
    p.add_argument("--data", choices=["fashion-mnist", "cifar10"], default="fashion-mnist")
    p.add_argument("--train-n", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--test-n", type=int, default=2000)
    p.add_argument("--weights", default=None)
    p.add_argument("--save", default=None, help="write the trained model here")
    p.set_defaults(func=tta)
    p = sub.add_parser("labels")
    p.add_argument("--n", type=int, default=15000)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also check the unmodified subset; sheet here")
    p.set_defaults(func=labels)
    args = parser.parse_args(argv)
    print(machine_line())
    args.func(args)


if __name__ == "__main__":
    main()
