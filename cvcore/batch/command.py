"""The command-line side of the batch room: ``cvcore predict FOLDER --out FILE`` and
``cvcore features``.

``cvcore predict`` keeps its parser in :mod:`cvcore.cli`; :func:`add_predict_options` adds the
batch options to it, and :func:`run_predict` runs the job when a folder or ``--out`` is given.
"""
from __future__ import annotations

import os
import sys

__all__ = ["add_predict_options", "wants_batch", "run_predict", "add_parser", "run"]


def _add_job_options(p) -> None:
    from cvcore.batch.job import DEFAULT_PARTITION_SIZE
    p.add_argument("--scheduler", default="local",
                   help="local (threads of this process; the default), processes:N (a Dask "
                        "LocalCluster of N worker processes) or tcp://HOST:PORT (a running Dask "
                        "scheduler); the last two need pip install \"cvcore[batch]\"")
    p.add_argument("--partition-size", type=int, default=DEFAULT_PARTITION_SIZE,
                   help=f"images per task and per output piece (default {DEFAULT_PARTITION_SIZE})")
    p.add_argument("--threads", type=int, default=None,
                   help="local: decoding threads (default: the number of cores)")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def add_predict_options(p) -> None:
    """The batch options of ``cvcore predict``."""
    p.add_argument("--out", default=None,
                   help="run as a batch job over files and folders (recursive, image files "
                        "found by content) into FILE: .jsonl, .csv or .parquet; a stopped job "
                        "resumes when started again")
    _add_job_options(p)


def wants_batch(args) -> bool:
    """A folder among the inputs, or ``--out``: the batch job rather than one batch in memory.
    Raises ValueError for a batch option given without them (it would do nothing)."""
    if args.out is not None or any(os.path.isdir(p) for p in args.images):
        return True
    if args.scheduler != "local":
        raise ValueError("--scheduler applies to a batch job: give --out FILE (.jsonl, .csv or "
                         ".parquet)")
    return False


def _finish(report, quiet: bool) -> None:
    if not quiet:
        print(f"cvcore: {report.summary()}", file=sys.stderr, flush=True)


def _guard(fn, parts_hint: str):
    """Run the job; on Ctrl-C say how to resume, and exit 130."""
    try:
        return fn()
    except KeyboardInterrupt:
        print(f"\ncvcore: stopped; finished partitions are kept in {parts_hint}: run the same "
              f"command again to resume", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


def run_predict(args) -> None:
    from cvcore.batch.predict import parts_dir_for, predict_folder
    if args.out is None:
        folders = [p for p in args.images if os.path.isdir(p)]
        raise ValueError(f"{folders[0]} is a folder: give --out FILE (.jsonl, .csv or "
                         f".parquet) to predict every image under it")
    report = _guard(lambda: predict_folder(
        args.images, args.weights, args.out, top=args.top, tta=args.tta,
        min_confidence=args.min_confidence, scheduler=args.scheduler,
        partition_size=args.partition_size, threads=args.threads, progress=not args.quiet),
        parts_dir_for(args.out))
    _finish(report, args.quiet)


def add_parser(subparsers) -> None:
    """Register ``cvcore features``."""
    from cvcore.batch.features import FEATURE_KINDS, HOG_DEFAULTS
    kinds = "; ".join(f"{k.name}: {k.help}" for k in FEATURE_KINDS.values())
    p = subparsers.add_parser(
        "features", help="features of every image under folders, in shards with an index",
        description=f"Write features of every image file under FOLDER (recursive) to shards "
                    f"(.npy / .npz) with index.jsonl in --out; resumable. Kinds: {kinds}.")
    p.add_argument("inputs", nargs="+", metavar="FOLDER", help="folders and image files")
    p.add_argument("--kind", required=True, choices=list(FEATURE_KINDS))
    p.add_argument("--out", required=True, help="output folder (new, empty, or a stopped run)")
    p.add_argument("--weights", default=None, help="cnn: a CNN model.npz from cvcore train")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="resize every image to H x W (needed by hog)")
    p.add_argument("--orientations", type=int, default=None,
                   help=f"hog: orientation bins (default {HOG_DEFAULTS['orientations']})")
    p.add_argument("--pixels-per-cell", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help=f"hog: cell size (default {HOG_DEFAULTS['pixels_per_cell']})")
    p.add_argument("--cells-per-block", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help=f"hog: block size in cells (default {HOG_DEFAULTS['cells_per_block']})")
    p.add_argument("--max-keypoints", type=int, default=None,
                   help="keypoint kinds: keep the strongest N per image (default all)")
    _add_job_options(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from cvcore.batch.features import FEATURE_KINDS, extract_features
    spec = FEATURE_KINDS[args.kind]
    params = {}
    for name in ("orientations", "pixels_per_cell", "cells_per_block", "max_keypoints"):
        value = getattr(args, name)
        if value is None:
            continue
        if name not in spec.params:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to --kind {args.kind}")
        params[name] = tuple(value) if isinstance(value, list) else value
    report = _guard(lambda: extract_features(
        args.inputs, args.out, args.kind, weights=args.weights, size=args.size,
        scheduler=args.scheduler, partition_size=args.partition_size, threads=args.threads,
        progress=not args.quiet, **params), os.path.join(args.out, "parts"))
    _finish(report, args.quiet)
