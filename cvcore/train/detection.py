"""The detector side of the ``cvcore`` command: ``train --model hog-detector``, ``detect`` and
``eval`` of a detector, on annotated photos (VOC XML, COCO JSON, dlib imglab XML or CSV; see
:mod:`cvcore.detect.annotations`).

* ``cvcore train --model hog-detector --data ANNOTATIONS --out DIR`` learns a HOG + linear SVM
  window detector with hard-negative mining and writes ``DIR/model.npz``;
* ``cvcore detect IMAGE... --weights DIR/model.npz --out PICS`` prints the boxes (JSON with
  ``--json``) and writes each image with its boxes drawn into ``PICS``;
* ``cvcore eval DIR/model.npz --data ANNOTATIONS`` prints COCO's AP@[.5:.95], AP50 and AP75, VOC's
  AP, precision and recall at the model's threshold, and draws the precision-recall curves.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "run_detect", "train", "evaluate", "EVAL_MARGIN"]

#: Detections down to this far below the model's threshold enter the precision-recall curve
#: (the SVM margin: a curve needs the low-scoring tail, a user the confident ones).
EVAL_MARGIN = 1.0
#: Default SVM C of a detector (chosen on the dlib-faces training photos; see benchmarks).
DETECTOR_C = 0.1


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _error(msg):
    """A user-facing error: ``cvcore`` prints it as one line (ValueError, as the CLI expects)."""
    return ValueError(msg)


def _read_grey(path):
    from cvcore.io.images import imread
    img = imread(path, mode="gray")
    if img.dtype != np.uint8:
        raise _error(f"{path}: the detector works on 8-bit images, this one is {img.dtype}")
    return img


def add_parser(sub):
    """Register ``cvcore detect``."""
    p = sub.add_parser("detect", help="find objects in images with a trained detector",
                       description="Run a hog-detector model.npz over images: prints the boxes "
                                   "(x1, y1, x2, y2, score) and writes each image with its "
                                   "boxes drawn into --out.")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--weights", required=True, help="a model.npz from `cvcore train --model "
                                                    "hog-detector`")
    p.add_argument("--threshold", type=float, default=None,
                   help="minimum window score (default: the model's, 0)")
    p.add_argument("--out", default="cvcore-detect",
                   help="folder for the pictures with boxes drawn (default cvcore-detect)")
    p.add_argument("--json", action="store_true", help="print one JSON line per image")
    p.set_defaults(func=run_detect)


def _load_detector(path):
    from cvcore.train.pipeline import DETECTOR_MODELS, load_model
    model = load_model(path)
    if model.kind not in DETECTOR_MODELS:
        raise _error(f"{path} holds a {model.kind} classifier, not a detector; use "
                     "`cvcore predict` for it")
    return model, model.detector()


def run_detect(args):
    from cvcore.detect.draw import draw_boxes
    from cvcore.io.images import imwrite
    _, detector = _load_detector(args.weights)
    out = Path(args.out)
    from cvcore.io.images import imread
    for path in args.images:
        grey = _read_grey(path)
        boxes, scores = detector.detect(grey, threshold=args.threshold)
        picture = out / (Path(path).stem + "-detections.png")
        imwrite(picture, draw_boxes(imread(path, mode="rgb"), boxes, scores))
        rows = [[round(float(v), 2) for v in b] + [round(float(s), 4)]
                for b, s in zip(boxes, scores)]
        if args.json:
            print(json.dumps({"image": str(path), "boxes": rows, "picture": str(picture)}))
        else:
            print(f"{path}: {len(rows)} object(s) -> {picture}")
            for r in rows:
                print(f"  x1 {r[0]:.1f} y1 {r[1]:.1f} x2 {r[2]:.1f} y2 {r[3]:.1f} "
                      f"score {r[4]:.3f}")


def _annotations(data):
    from cvcore.detect.annotations import read_annotations
    return read_annotations(data)


def _detect_all(detector, annotations, threshold):
    images = [_read_grey(a.path) for a in annotations]
    return [detector.detect(im, threshold=threshold) for im in images]


def _scores(annotations, found, threshold):
    """COCO and VOC numbers, and precision / recall of the detections >= threshold."""
    from cvcore.detect.metrics import coco_evaluate, voc_evaluate
    gts = [a.boxes for a in annotations]
    crowd = [a.ignore for a in annotations]
    boxes = [b for b, _ in found]
    scores = [s for _, s in found]
    coco = coco_evaluate(gts, boxes, scores, gt_crowd=crowd)
    voc = voc_evaluate(gts, boxes, scores, gt_difficult=crowd)
    kept = [s >= threshold for s in scores]
    at = voc_evaluate(gts, [b[k] for b, k in zip(boxes, kept)],
                      [s[k] for s, k in zip(scores, kept)], gt_difficult=crowd)
    curve = next(iter(at.curves.values()), (np.zeros(0), np.zeros(0), None))
    precision = float(curve[1][-1]) if len(curve[1]) else 0.0
    recall = float(curve[0][-1]) if len(curve[0]) else 0.0
    return {"ap": coco.ap, "ap50": coco.ap50, "ap75": coco.ap75, "voc_ap": voc.ap,
            "precision": precision, "recall": recall, "threshold": threshold,
            "n_images": len(annotations), "n_ground_truth": coco.n_ground_truth,
            "n_detections": int(sum(int(k.sum()) for k in kept))}, coco


def plot_pr_curves(result, path, title="Precision-recall"):
    """COCO's raw curves at IoU 0.5 and 0.75 (every class), written as a PNG."""
    from cvcore.train.report import _figure, save_figure
    fig = _figure(figsize=(5, 4))
    ax = fig.add_subplot(111)
    for (cls, t), (rc, pr, _) in sorted(result.curves.items(), key=lambda kv: kv[0][1]):
        if min(abs(t - 0.5), abs(t - 0.75)) > 1e-9 or not len(rc):
            continue
        name = f"IoU {t:.2f}" + (f" ({cls})" if len(result.classes) > 1 else "")
        envelope = np.maximum.accumulate(pr[::-1])[::-1]
        ax.step(np.concatenate([[0], rc]), np.concatenate([[envelope[0]], envelope]),
                where="post", label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title}: AP {result.ap:.3f}, AP50 {result.ap50:.3f}")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def train(args):
    """``cvcore train --model hog-detector``."""
    from cvcore.train.pipeline import model_path, train_detector_model
    t0 = time.perf_counter()
    annotations = _annotations(args.data)
    n_boxes = sum(len(a.boxes) for a in annotations)
    _log(f"data: {len(annotations)} photos, {n_boxes} boxes from {args.data}")
    C = DETECTOR_C if args.C is None else args.C
    model = train_detector_model(annotations, C=C, rounds=args.rounds, seed=args.seed, log=_log)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    model.save(model_path(out))
    detector = model.detector()
    metrics, _ = _scores(annotations, _detect_all(detector, annotations,
                                                  detector.threshold - EVAL_MARGIN),
                         detector.threshold)
    _log(f"trained in {seconds:.1f} s; on the training photos AP50 {metrics['ap50']:.3f}, "
         f"AP {metrics['ap']:.3f}; wrote {model_path(out)}")
    if args.json:
        print(json.dumps({"model": model.kind, "data": str(args.data), "seconds": seconds,
                          "train_ap": metrics["ap"], "train_ap50": metrics["ap50"]}))


def evaluate(args, model):
    """``cvcore eval`` of a detector: AP on annotated photos, and the PR curve figure."""
    t0 = time.perf_counter()
    if args.data is None or args.data == "fashion-mnist-small":
        raise _error("a detector is evaluated on annotated photos: pass --data ANNOTATIONS "
                     "(VOC XML, COCO JSON, imglab XML or CSV)")
    detector = model.detector()
    annotations = _annotations(args.data)
    found = _detect_all(detector, annotations, detector.threshold - EVAL_MARGIN)
    metrics, coco = _scores(annotations, found, detector.threshold)
    metrics["seconds"] = time.perf_counter() - t0
    out = Path(args.out) if args.out else Path(args.weights).parent
    figure = out / "pr_curve.png"
    plot_pr_curves(coco, figure)
    if args.json:
        print(json.dumps({**metrics, "model": model.kind, "data": str(args.data),
                          "figure": str(figure)}))
    else:
        print(f"{metrics['n_images']} photos, {metrics['n_ground_truth']} objects")
        print(f"COCO AP@[.50:.95] {metrics['ap']:.4f}   AP50 {metrics['ap50']:.4f}   "
              f"AP75 {metrics['ap75']:.4f}")
        print(f"VOC AP (IoU 0.5, all points) {metrics['voc_ap']:.4f}")
        print(f"at threshold {metrics['threshold']:g}: {metrics['n_detections']} detections, "
              f"precision {metrics['precision']:.4f}, recall {metrics['recall']:.4f}")
        print(f"precision-recall curves: {figure}")
