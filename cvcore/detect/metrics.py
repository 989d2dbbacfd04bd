"""Average precision of a detector, as COCO and PASCAL VOC compute it, with precision-recall curves.

Stages (both)
    1. per image and class, match detections (by decreasing score) to ground-truth boxes by IoU;
       a matched detection is a true positive, an unmatched one a false positive;
    2. over all images, sort the detections of a class by score and accumulate
       ``precision = TP / (TP + FP)`` and ``recall = TP / n_ground_truth`` detection by detection;
    3. summarise the curve in one number.

COCO (``pycocotools.cocoeval.COCOeval``, bounding boxes, area range "all", 100 detections per
image; Lin et al. 2014, cocodataset.org/#detection-eval)
    Matching: each detection takes the unmatched ground truth with the highest IoU ``>= t``
    (a crowd box may be matched many times and its matches count neither way). Precision is made
    monotone (``p[i] = max(p[i:])``) and read at 101 recall points ``0, 0.01, ..., 1`` (the first
    curve point with recall ``>= r``; 0 past the end). AP@t is their mean; **AP** is the mean over
    ``t = 0.50, 0.55, ..., 0.95`` and classes; **AP50** the mean over classes at ``t = 0.5``.
PASCAL VOC (Everingham et al. 2010, sec. 4.2; VOC devkit ``VOCevaldet.m``, ``VOCap.m``)
    Matching: each detection takes the ground truth with the highest IoU in its image; if that
    IoU is ``>= 0.5`` and the box is not yet taken it is a true positive, otherwise a false
    positive (a *difficult* box neither). AP is the area under the monotone precision envelope
    (all-point, VOC 2010 and later), or the mean of the best precision at recall ``>= r`` for
    ``r = 0, 0.1, ..., 1`` (11-point, VOC 2007).

Boxes are ``(x1, y1, x2, y2)`` in continuous coordinates (see :mod:`cvcore.detect.boxes`): a VOC
box ``[xmin, xmax]`` of inclusive 1-based pixels is ``(xmin - 1, xmax)`` here, so the devkit's
``+ 1`` in widths is already in the box.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cvcore._validate import check_array, check_finite, check_int
from cvcore.detect.boxes import check_boxes

__all__ = ["coco_evaluate", "voc_evaluate", "voc_ap", "COCO_IOU_THRESHOLDS",
           "COCO_RECALL_THRESHOLDS", "DetectionResult"]

#: COCOeval's ``iouThrs``: 0.50, 0.55, ..., 0.95.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
#: COCOeval's ``recThrs``: 0, 0.01, ..., 1 (101 points).
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1)
#: COCOeval's ``maxDets[-1]``: detections per image that count.
COCO_MAX_DETECTIONS = 100
#: PASCAL VOC's overlap criterion (Everingham et al. 2010, sec. 4.2).
VOC_IOU_THRESHOLD = 0.5


@dataclass
class DetectionResult:
    """Scores of a set of detections against ground truth.

    Attributes
    ----------
    ap : float
        COCO AP@[.5:.95] (or VOC AP for :func:`voc_evaluate`), mean over classes; -1 without
        any ground truth (COCO's convention).
    ap50, ap75 : float
        COCO AP at IoU 0.5 and 0.75 (NaN for VOC).
    classes : list
        The classes with ground truth, in sorted order.
    curves : dict
        ``{(class, iou_threshold): (recall, precision, scores)}``, the raw curve point per
        detection (before COCO's interpolation), float64 arrays.
    precision : (T, R, K) float64
        COCO's interpolated precision at each IoU threshold, recall point and class (-1: no
        ground truth). Empty for VOC.
    recall : (T, K) float64
        Final recall at each IoU threshold and class.
    """
    ap: float
    ap50: float
    ap75: float
    classes: list
    curves: dict = field(repr=False)
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    n_ground_truth: int = 0
    n_detections: int = 0

    def as_dict(self) -> dict:
        return {"ap": self.ap, "ap50": self.ap50, "ap75": self.ap75,
                "classes": [str(c) for c in self.classes],
                "n_ground_truth": self.n_ground_truth, "n_detections": self.n_detections}


def _per_image(values, n_images, name, check):
    if len(values) != n_images:
        raise ValueError(f"{name} has {len(values)} images, expected {n_images}")
    return [check(v, f"{name}[{i}]") for i, v in enumerate(values)]


def _labels(labels, n, name):
    if labels is None:
        return np.zeros(n, np.int64)
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have one label per box ({n}), got shape {arr.shape}")
    return arr


def _prepare(gt_boxes, det_boxes, det_scores, gt_labels, det_labels, gt_flags, flag_name):
    if not isinstance(gt_boxes, (list, tuple)) or not isinstance(det_boxes, (list, tuple)):
        raise TypeError("gt_boxes and det_boxes must be lists with one (N, 4) array per image")
    n = len(gt_boxes)
    gts = _per_image(gt_boxes, n, "gt_boxes", check_boxes)
    dets = _per_image(det_boxes, n, "det_boxes", check_boxes)

    def scores_check(v, name):
        s = check_array(v, name, ndim=1, dtypes="uif", allow_empty=True)
        return check_finite(s, name).astype(np.float64)
    scores = _per_image(det_scores, n, "det_scores", scores_check)
    out = []
    for i in range(n):
        if scores[i].shape[0] != dets[i].shape[0]:
            raise ValueError(f"det_scores[{i}] has {scores[i].shape[0]} scores for "
                             f"{dets[i].shape[0]} boxes")
        gl = _labels(None if gt_labels is None else gt_labels[i], len(gts[i]), f"gt_labels[{i}]")
        dl = _labels(None if det_labels is None else det_labels[i], len(dets[i]),
                     f"det_labels[{i}]")
        flags = (np.zeros(len(gts[i]), bool) if gt_flags is None
                 else np.asarray(gt_flags[i], dtype=bool).reshape(-1))
        if flags.shape[0] != len(gts[i]):
            raise ValueError(f"{flag_name}[{i}] must have one flag per ground-truth box")
        out.append((gts[i], gl, flags, dets[i], scores[i], dl))
    if (gt_labels is None) != (det_labels is None):
        raise ValueError("give both gt_labels and det_labels, or neither")
    classes = sorted({c for g in out for c in g[1].tolist()})
    return out, classes


def _coco_iou(dets, gts, crowd):
    """``pycocotools.mask.iou`` for boxes (``bbIou``): (D, G); a crowd box divides by the
    detection's area only."""
    dw, dh = dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1]
    gw, gh = gts[:, 2] - gts[:, 0], gts[:, 3] - gts[:, 1]
    w = np.minimum(dets[:, None, 2], gts[None, :, 2]) - np.maximum(dets[:, None, 0],
                                                                   gts[None, :, 0])
    h = np.minimum(dets[:, None, 3], gts[None, :, 3]) - np.maximum(dets[:, None, 1],
                                                                   gts[None, :, 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = np.where(crowd[None, :], (dw * dh)[:, None],
                     (dw * dh)[:, None] + (gw * gh)[None, :] - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _coco_match(dets, gts, crowd, thresholds):
    """COCOeval.evaluateImg for one image and class: (T, D) matched flags and ignored flags.

    ``dets`` are sorted by score and cut to the per-image maximum; ``gts`` are sorted so that
    the crowd (ignored) boxes come last, as COCOeval sorts them.
    """
    T, D, G = len(thresholds), len(dets), len(gts)
    matched = np.zeros((T, D), bool)
    ignored = np.zeros((T, D), bool)
    if D == 0 or G == 0:
        return matched, ignored
    ious = _coco_iou(dets, gts, crowd)
    for t, thr in enumerate(thresholds):
        taken = np.zeros(G, bool)
        for d in range(D):
            best = min(thr, 1 - 1e-10)
            m = -1
            for g in range(G):
                if taken[g] and not crowd[g]:
                    continue
                if m > -1 and not crowd[m] and crowd[g]:
                    break                   # the rest are crowd boxes: a real match wins
                if ious[d, g] < best:
                    continue
                best = ious[d, g]
                m = g
            if m == -1:
                continue
            ignored[t, d] = crowd[m]
            matched[t, d] = True
            taken[m] = True
    return matched, ignored


def _pr_curve(matched, ignored, n_positive):
    """Cumulative (recall, precision) of score-sorted detections; ignored ones are skipped."""
    tp = np.cumsum(matched & ~ignored).astype(np.float64)
    fp = np.cumsum(~matched & ~ignored).astype(np.float64)
    recall = tp / n_positive
    precision = tp / (fp + tp + np.spacing(1))
    return recall, precision


def coco_evaluate(gt_boxes, det_boxes, det_scores, gt_labels=None, det_labels=None,
                  gt_crowd=None, max_detections: int = COCO_MAX_DETECTIONS) -> DetectionResult:
    """COCO's box AP (``COCOeval(..., "bbox")``, area range "all"), for lists of images.

    Parameters
    ----------
    gt_boxes : list of (G_i, 4) float
        Ground-truth boxes ``(x1, y1, x2, y2)`` of each image.
    det_boxes : list of (D_i, 4) float
        Detections of each image (same length as ``gt_boxes``).
    det_scores : list of (D_i,) float
    gt_labels, det_labels : list of (G_i,) / (D_i,) labels, or None for one class
    gt_crowd : list of (G_i,) bool or None
        COCO's ``iscrowd``: such a box may absorb any number of detections, which then count
        neither as true nor as false positives, and it is not a positive itself.
    max_detections : int
        Highest-scoring detections per image and class that count (COCO: 100).

    Returns
    -------
    DetectionResult
        ``ap`` = AP@[.50:.95], ``ap50``, ``ap75`` as ``COCOeval.summarize`` prints them
        (``-1`` when no class has ground truth).

    Examples
    --------
    >>> r = coco_evaluate([np.array([[0., 0, 10, 10]])], [np.array([[0., 0, 10, 9]])], [[0.9]])
    >>> round(r.ap50, 6), round(r.ap, 6)     # IoU 0.9: a hit at thresholds 0.50..0.90
    (1.0, 0.9)
    """
    max_detections = check_int(max_detections, "max_detections", minimum=1)
    images, classes = _prepare(gt_boxes, det_boxes, det_scores, gt_labels, det_labels,
                               gt_crowd, "gt_crowd")
    thresholds = COCO_IOU_THRESHOLDS
    T, R, K = len(thresholds), len(COCO_RECALL_THRESHOLDS), len(classes)
    precision = -np.ones((T, R, K))
    recall = -np.ones((T, K))
    curves = {}
    n_gt = n_det = 0
    for k, cls in enumerate(classes):
        scores, matched, ignored = [], [], []
        n_positive = 0
        for gts, gl, crowd, dets, ds, dl in images:
            g_in = gl == cls
            d_in = dl == cls
            g, c = gts[g_in], crowd[g_in]
            gorder = np.argsort(c, kind="mergesort")            # crowd boxes last
            g, c = g[gorder], c[gorder]
            s = ds[d_in]
            dorder = np.argsort(-s, kind="mergesort")[:max_detections]
            d, s = dets[d_in][dorder], s[dorder]
            if len(g) == 0 and len(d) == 0:
                continue
            m, ig = _coco_match(d, g, c, thresholds)
            scores.append(s)
            matched.append(m)
            ignored.append(ig)
            n_positive += int((~c).sum())
        n_gt += n_positive
        if n_positive == 0:
            continue
        s = np.concatenate(scores)
        n_det += len(s)
        order = np.argsort(-s, kind="mergesort")
        m = np.concatenate(matched, axis=1)[:, order]
        ig = np.concatenate(ignored, axis=1)[:, order]
        for t in range(T):
            rc, pr = _pr_curve(m[t], ig[t], n_positive)
            curves[(cls, float(thresholds[t]))] = (rc, pr.copy(), s[order][~ig[t]])
            recall[t, k] = rc[-1] if len(rc) else 0.0
            # monotone envelope, read at the recall points (0 past the end of the curve)
            envelope = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
            idx = np.searchsorted(rc, COCO_RECALL_THRESHOLDS, side="left")
            q = np.zeros(R)
            inside = idx < len(envelope)
            q[inside] = envelope[idx[inside]]
            precision[t, :, k] = q

    def summary(p):
        valid = p[p > -1]
        return float(valid.mean()) if valid.size else -1.0
    return DetectionResult(summary(precision), summary(precision[0]),
                           summary(precision[int(np.argmin(np.abs(thresholds - 0.75)))]),
                           classes, curves, precision, recall, n_gt, n_det)


def voc_ap(recall, precision, method: str = "all") -> float:
    """PASCAL VOC's average precision of one precision-recall curve.

    Parameters
    ----------
    recall, precision : (N,) float
        Cumulative curve points, detections sorted by decreasing score.
    method : {"all", "11point"}
        ``"all"`` (VOC 2010+, ``VOCap.m``): with ``p_interp(r) = max_{r' >= r} p(r')``,
        ``AP = sum_i (r_i - r_{i-1}) p_interp(r_i)`` over the curve's points (``r_0 = 0``).
        ``"11point"`` (VOC 2007): ``AP = (1/11) sum_{r in 0, 0.1, .., 1} max_{r' >= r} p(r')``
        (0 when no point reaches ``r``).

    Examples
    --------
    >>> voc_ap([0.5, 0.5, 1.0], [1.0, 0.5, 0.667], "all")      # doctest: +ELLIPSIS
    0.8335...
    """
    rc = np.asarray(recall, dtype=np.float64).reshape(-1)
    pr = np.asarray(precision, dtype=np.float64).reshape(-1)
    if rc.shape != pr.shape:
        raise ValueError(f"recall and precision differ in length: {rc.shape} vs {pr.shape}")
    if method == "11point":
        ap = 0.0
        for r in np.arange(11) / 10:         # the decimals 0.0, 0.1, ..., 1.0 as typed
            above = pr[rc >= r]
            ap += (above.max() if above.size else 0.0) / 11
        return float(ap)
    if method != "all":
        raise ValueError(f"method must be 'all' or '11point', got {method!r}")
    mrec = np.concatenate([[0.0], rc, [1.0]])
    mpre = np.concatenate([[0.0], pr, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def voc_evaluate(gt_boxes, det_boxes, det_scores, gt_labels=None, det_labels=None,
                 gt_difficult=None, iou_threshold: float = VOC_IOU_THRESHOLD,
                 method: str = "all") -> DetectionResult:
    """PASCAL VOC detection AP (``VOCevaldet.m``), per class and its mean over classes.

    Parameters are as :func:`coco_evaluate`'s; ``gt_difficult`` marks VOC's *difficult* boxes (a
    detection matched to one counts neither way; they are not positives). ``method`` as in
    :func:`voc_ap`. The result's ``ap`` is the mean AP over classes with ground truth;
    ``curves[(class, iou_threshold)]`` holds each class's curve.
    """
    images, classes = _prepare(gt_boxes, det_boxes, det_scores, gt_labels, det_labels,
                               gt_difficult, "gt_difficult")
    t = float(iou_threshold)
    if not 0 < t <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if method not in ("all", "11point"):
        raise ValueError(f"method must be 'all' or '11point', got {method!r}")
    from cvcore.detect.boxes import box_iou
    aps, curves, recall = [], {}, []
    n_gt = n_det = 0
    for cls in classes:
        entries = []                        # (score, image, box)
        n_positive = 0
        for i, (gts, gl, diff, dets, ds, dl) in enumerate(images):
            n_positive += int((~diff[gl == cls]).sum())
            for j in np.flatnonzero(dl == cls):
                entries.append((ds[j], i, dets[j]))
        n_gt += n_positive
        if n_positive == 0:
            continue
        n_det += len(entries)
        order = np.argsort(-np.array([e[0] for e in entries]), kind="stable")
        taken = [np.zeros(int((img[1] == cls).sum()), bool) for img in images]
        tp = np.zeros(len(order), bool)
        fp = np.zeros(len(order), bool)
        for rank, e in enumerate(order):
            score, i, box = entries[e]
            gts, gl, diff = images[i][0], images[i][1], images[i][2]
            g = gts[gl == cls]
            dflag = diff[gl == cls]
            if len(g) == 0:
                fp[rank] = True
                continue
            ious = box_iou(box[None], g)[0]
            best = int(np.argmax(ious))
            if ious[best] >= t:
                if dflag[best]:
                    continue
                if not taken[i][best]:
                    tp[rank] = taken[i][best] = True
                else:
                    fp[rank] = True
            else:
                fp[rank] = True
        ctp, cfp = np.cumsum(tp).astype(float), np.cumsum(fp).astype(float)
        counted = tp | fp
        rc = (ctp / n_positive)[counted]
        pr = (ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps))[counted]
        scores = np.array([entries[e][0] for e in order])[counted]
        curves[(cls, t)] = (rc, pr, scores)
        recall.append(rc[-1] if len(rc) else 0.0)
        aps.append(voc_ap(rc, pr, method))
    ap = float(np.mean(aps)) if aps else -1.0
    return DetectionResult(ap, float("nan"), float("nan"), classes, curves, np.zeros((0, 0, 0)),
                           np.asarray([recall]), n_gt, n_det)
