"""The ``cvcore`` command: train, evaluate, predict, check data, and the demo.

Every sub-command prints help with ``-h``. A problem with the input (a wrong path, an unknown
model, an empty or corrupt data set, a diverging run) ends with one line on stderr,
``cvcore: error: ...``, and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]

DEFAULT_DATA = "fashion-mnist-small"


class CommandError(Exception):
    """A user-facing error: printed as one line."""


def _add_data(p, required=False):
    p.add_argument("--data", default=None if required else DEFAULT_DATA, required=required,
                   help="a named data set (fashion-mnist-small [embedded], fashion-mnist, mnist: "
                        "the last two from $CVCORE_DATASETS/<name>), a folder of IDX files, or "
                        "an image folder with train/ and test/ (or val/) subfolders of classes, "
                        "or one folder of classes split by --test-fraction "
                        f"(default: {DEFAULT_DATA})")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="image folders: resize every image to H x W (default: as stored; "
                        "needed when the images differ in size)")
    p.add_argument("--gray", action="store_true", help="image folders: load as grey")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="image folders without train/test subfolders: held-out share per class")
    p.add_argument("--seed", type=int, default=0, help="seed of splits, initialisation, order")


def _add_trust(p):
    p.add_argument("--tta", action="store_true",
                   help="CNN: average the probabilities over the flips and crops the model was "
                        "trained with (test-time augmentation; 10 forward passes per image)")
    p.add_argument("--min-confidence", type=float, default=None, metavar="P",
                   help="reject option: a prediction whose probability is below P (in [0, 1]) "
                        "becomes 'unknown'")


def build_parser() -> argparse.ArgumentParser:
    from cvcore.batch import command as batch_command
    from cvcore.train import transfer as transfer_command
    from cvcore.train.pipeline import MODELS
    parser = argparse.ArgumentParser(
        prog="cvcore", description="Classical computer vision and image recognition on the CPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on a data set",
                       description="Train a model; writes model.npz, metrics and figures to --out.")
    p.add_argument("--model", default="hog-svm", help=f"one of {', '.join(MODELS)}")
    _add_data(p)
    p.add_argument("--out", default="cvcore-out", help="folder for weights, log and report")
    p.add_argument("--epochs", type=int, default=None,
                   help="CNN: epochs (default 4; fine-tuning a pretrained model 3)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="CNN: batch size (default 128; pretrained models 32)")
    p.add_argument("--lr", type=float, default=None,
                   help="CNN: peak learning rate (default 0.2; fine-tuning: 0.01 for the head, "
                        "--backbone-lr-scale times that for the backbone)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--schedule", default="onecycle",
                   help="CNN: onecycle, cosine, step or constant")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="CNN: share of the training set held back for validation each epoch, "
                        "best-model keeping and the calibration temperature; hog-svm and "
                        "hog-linear: the share on which the temperature is fitted before the "
                        "model is refitted on all images; 0: no calibration (default 0.1)")
    p.add_argument("--no-augment", action="store_true", help="CNN: no flips or padded crops")
    p.add_argument("--resume", action="store_true",
                   help="CNN: continue the stopped run in --out from its last checkpoint")
    from cvcore.train.robustness import add_train_arguments
    add_train_arguments(p)
    p.add_argument("--C", type=float, default=None,
                   help="hog-svm: inverse regularisation (default 0.003); hog-detector: its "
                        "SVM's (default 0.1)")
    p.add_argument("--rounds", type=int, default=2,
                   help="hog-detector: rounds of hard-negative mining (default 2)")
    p.add_argument("--json", action="store_true",
                   help="end with one JSON line of the test metrics, for scripts")
    transfer_command.add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate saved weights on a data set's test split")
    p.add_argument("weights", help="a model.npz written by `cvcore train`")
    _add_data(p)
    p.add_argument("--out", default=None, help="also write the report and figures here")
    _add_trust(p)
    p.add_argument("--json", action="store_true", help="end with one JSON line of the metrics")
    from cvcore.train.robustness import add_eval_arguments, add_parser as add_attack_parser
    add_eval_arguments(p)
    p.set_defaults(func=cmd_eval)
    add_attack_parser(sub)

    p = sub.add_parser("predict", help="top-k classes of images from saved weights")
    p.add_argument("images", nargs="+", help="image files, or folders (with --out)")
    p.add_argument("--weights", required=True, help="a model.npz written by `cvcore train`")
    p.add_argument("--top", type=int, default=3, help="how many classes to show (default 3)")
    _add_trust(p)
    p.add_argument("--json", action="store_true", help="print one JSON line per image")
    batch_command.add_predict_options(p)
    p.set_defaults(func=cmd_predict)
    batch_command.add_parser(sub)

    from cvcore.train import search as search_command
    search_command.add_parser(sub, _add_data)

    p = sub.add_parser("check", help="report on a data set: balance, duplicates, corrupt files; "
                                     "with --labels, the images whose label looks wrong")
    p.add_argument("data", help="a data set name or folder (as --data of train)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    from cvcore.train.label_command import add_options as add_label_options
    add_label_options(p)
    p.set_defaults(func=cmd_check)

    from cvcore.train.detection import add_parser as add_detect_parser
    add_detect_parser(sub)

    p = sub.add_parser("demo", help="train and compare HOG+linear and a small ResNet on the "
                                    "embedded data set; writes a report")
    p.add_argument("--out", default="cvcore-demo", help="folder for weights and the report")
    p.add_argument("--epochs", type=int, default=5, help="ResNet epochs (default 5)")
    p.add_argument("--quick", action="store_true",
                   help="a smaller run (600 images, 1 epoch) to check the installation")
    p.set_defaults(func=cmd_demo)

    from cvcore.serve.command import add_parser as add_serve
    add_serve(sub)
    return parser


# -- helpers ---------------------------------------------------------------------------------

def _load_data(args, crop_fraction=None, mode=None):
    from cvcore.io.datasets import load_dataset
    return load_dataset(args.data, size=tuple(args.size) if args.size else None,
                        mode="gray" if args.gray else mode, test_fraction=args.test_fraction,
                        seed=args.seed, crop_fraction=crop_fraction)


def _given(value, default):
    return default if value is None else value


#: (epochs, batch size, peak learning rate) of `cvcore train` when not given: CNNs from scratch,
#: and the pretrained models (fine-tuning; 224x224 batches of 32 fit in memory)
TRAIN_DEFAULTS = {"scratch": (4, 128, 0.2), "pretrained": (3, 32, 0.01)}


def train_defaults(args, kind):
    """``args`` with --epochs, --batch-size and --lr filled in from :data:`TRAIN_DEFAULTS`."""
    epochs, batch, lr = TRAIN_DEFAULTS[kind]
    args.epochs = _given(args.epochs, epochs)
    args.batch_size = _given(args.batch_size, batch)
    args.lr = _given(args.lr, lr)
    return args


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def _write_report(model, metrics, proba, data, out_dir, proba_uncalibrated=None) -> list[str]:
    """Metrics as JSON and text, and the figures; returns the file names written."""
    from cvcore.train.report import write_evaluation
    return write_evaluation(out_dir, metrics, proba, data.x_test, data.y_test, model.class_names,
                            model.kind, header=f"model {model.kind} on {data.name}",
                            proba_uncalibrated=proba_uncalibrated)


def _evaluate(model, data, tta=False, min_confidence=None):
    """(metrics, calibrated probabilities, uncalibrated probabilities) on the test split."""
    return model.assess(data.x_test, data.y_test, tta=tta, min_confidence=min_confidence)


def _json_line(metrics, seconds, extra=None):
    line = {"accuracy": metrics["accuracy"], "top5": metrics["top5"],
            "macro_f1": metrics["macro_f1"], "per_class": metrics["per_class"],
            "n": metrics["n"], "seconds": seconds}
    line.update(extra or {})
    print(json.dumps(line))


def _split_val(data, fraction, seed):
    """Hold back a seeded, class-stratified share of the training set for validation; never
    all of a class (a class of one image stays in training, not only in validation)."""
    import numpy as np
    if fraction <= 0:
        return data.x_train, data.y_train, None, None
    if not 0 < fraction < 1:
        raise CommandError(f"--val-fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(data.y_train):
        idx = rng.permutation(np.flatnonzero(data.y_train == c))
        val.append(idx[:min(int(round(fraction * len(idx))), len(idx) - 1)])
    val = np.sort(np.concatenate(val))
    keep = np.setdiff1d(np.arange(len(data.y_train)), val)
    return data.x_train[keep], data.y_train[keep], data.x_train[val], data.y_train[val]


# -- commands --------------------------------------------------------------------------------

def cmd_train(args):
    from cvcore.train.loop import TrainConfig
    from cvcore.train.robustness import adversarial_config
    from cvcore.train.pipeline import (CNN_MODELS, DETECTOR_MODELS, MODELS, model_path,
                                       train_cnn_model, train_hog_model)
    from cvcore.train.transfer import PREPROCESS, transfer_config_from_args
    if args.model not in MODELS:
        raise CommandError(f"unknown model {args.model!r}; choose one of {', '.join(MODELS)}")
    if args.model in DETECTOR_MODELS:
        from cvcore.train.detection import train
        return train(args)
    t0 = time.perf_counter()
    transfer = args.model in PREPROCESS
    if transfer:
        tconfig = transfer_config_from_args(args)
        args.size = args.size or [224, 224]
        data = _load_data(args, PREPROCESS[args.model]["crop_fraction"], mode="rgb")
    else:
        data = _load_data(args)
    log = _stderr
    log(f"data: {data!r}")
    out = Path(args.out)
    if transfer:
        from cvcore.train.transfer import train_transfer_model
        train_defaults(args, "pretrained")
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay,
                             schedule=args.schedule, seed=args.seed)
        xt, yt, xv, yv = _split_val(data, args.val_fraction, args.seed)
        model, history = train_transfer_model(args.model, xt, yt, xv, yv, data.class_names,
                                              config, tconfig, out_dir=out, resume=args.resume,
                                              augment=not args.no_augment, log=log)
    elif args.model in CNN_MODELS:
        train_defaults(args, "scratch")
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, schedule=args.schedule,
                             seed=args.seed, **adversarial_config(args))
        xt, yt, xv, yv = _split_val(data, args.val_fraction, args.seed)
        model, history = train_cnn_model(args.model, xt, yt, xv, yv, data.class_names, config,
                                         out_dir=out, resume=args.resume,
                                         augment=not args.no_augment)
    else:
        if args.resume or args.adversarial:
            raise CommandError("--resume and --adversarial apply to the CNN models only")
        if not 0 <= args.val_fraction < 1:
            raise CommandError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
        model = train_hog_model(args.model, data.x_train, data.y_train, data.class_names,
                                C=0.003 if args.C is None else args.C, log=log,
                                calibration_fraction=args.val_fraction, seed=args.seed)
    # model.npz last: a run that fails (evaluation, report) leaves no new model behind.
    metrics, proba, raw = _evaluate(model, data)
    files = _write_report(model, metrics, proba, data, out, raw)
    model.save(model_path(out))
    seconds = time.perf_counter() - t0
    log(f"test accuracy {metrics['accuracy']:.4f}, top-5 {metrics['top5']:.4f} "
        f"({seconds:.1f} s); wrote {model_path(out)} and {', '.join(files)} in {out}")
    if args.json:
        _json_line(metrics, seconds, {"model": args.model, "data": data.name})


def cmd_eval(args):
    from cvcore.train.metrics import format_report
    from cvcore.train.metrics import check_min_confidence
    from cvcore.train.pipeline import DETECTOR_MODELS, load_model
    if args.min_confidence is not None:
        check_min_confidence(args.min_confidence)
    t0 = time.perf_counter()
    model = load_model(args.weights)
    if model.kind in DETECTOR_MODELS:
        from cvcore.train.detection import evaluate
        return evaluate(args, model)
    if model.crop_fraction is not None:        # a pretrained model's view of image folders
        args.size = args.size or list(model.size)
        data = _load_data(args, model.crop_fraction, mode=model.mode)
    else:
        data = _load_data(args)
    if len(data.class_names) != len(model.class_names):
        raise CommandError(f"{args.weights} predicts {len(model.class_names)} classes but "
                           f"{data.name} has {len(data.class_names)}")
    metrics, proba, raw = _evaluate(model, data, args.tta, args.min_confidence)
    if args.out:
        _write_report(model, metrics, proba, data, args.out, raw)
    extra = {"model": model.kind, "data": data.name,
             **{k: metrics[k] for k in ("ece", "adaptive_ece", "calibration", "selective", "tta")
                if k in metrics}}
    if args.attack:
        from cvcore.train.robustness import run_eval_attack
        extra.update(run_eval_attack(args, model, data, args.out))
    seconds = time.perf_counter() - t0
    if args.json:
        _json_line(metrics, seconds, extra)
    else:
        print(format_report(metrics))


def cmd_predict(args):
    from cvcore.batch.command import run_predict, wants_batch
    from cvcore.io.datasets import decode_image
    from cvcore.train.metrics import check_min_confidence
    from cvcore.train.pipeline import load_model, prediction_rows
    threshold = 0.0 if args.min_confidence is None else check_min_confidence(args.min_confidence)
    if wants_batch(args):
        return run_predict(args)
    model = load_model(args.weights)
    images = [decode_image(p, model.mode) for p in args.images]
    proba = model.predict_proba(images, tta=args.tta)
    for path, row in zip(args.images, prediction_rows(proba, model.class_names, args.top,
                                                      threshold)):
        if args.json:
            print(json.dumps({"image": path, **row}))
        else:
            shown = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])
            print(f"{path}: " + (f"unknown (below {threshold:g}: {shown})"
                                 if row["label"] == "unknown" else shown))


def cmd_check(args):
    from cvcore.io.datasets import check
    if args.labels:
        from cvcore.train.label_command import run
        return run(args)
    report = check(args.data)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.summary())


def cmd_demo(args):
    from cvcore.train.demo import run_demo
    run_demo(args.out, epochs=args.epochs, quick=args.quick)


def _one_line(exc) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = f"out of memory ({text})"
    return " ".join(text.split())


def main(argv=None) -> int:
    from cvcore.train.loop import TrainingDiverged
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        args.func(args)
    except KeyboardInterrupt:
        _stderr("cvcore: stopped; a CNN run continues from its last checkpoint with --resume")
        return 130
    except (CommandError, TrainingDiverged, ValueError, TypeError, OSError, MemoryError) as exc:
        # Input problems (paths, formats, values) are the user's to fix: one line. With
        # CVCORE_DEBUG set, every error keeps its traceback.
        if os.environ.get("CVCORE_DEBUG"):
            raise
        _stderr(f"cvcore: error: {_one_line(exc)}")
        return 2
    except Exception as exc:
        # Anything else is a bug in cvcore, but the command still keeps its promise of one line.
        if os.environ.get("CVCORE_DEBUG"):
            raise
        _stderr(f"cvcore: error: internal error ({type(exc).__name__}: {_one_line(exc)}); "
                f"CVCORE_DEBUG=1 shows the traceback")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
