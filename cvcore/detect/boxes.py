"""Boxes: intersection over union, non-maximum suppression, OpenCV's rectangle grouping.

Conventions
-----------
* A *box* is ``(x1, y1, x2, y2)`` in continuous pixel coordinates, float: pixel ``(row r, col c)``
  covers ``[c, c + 1) x [r, r + 1)``, so a box's width is ``x2 - x1`` (no ``+ 1``), as in
  torchvision and COCO.
* A *rectangle* is OpenCV's ``(x, y, width, height)`` in integers; it covers the same area as the
  box ``(x, y, x + width, y + height)``. :func:`rects_to_boxes` / :func:`boxes_to_rects` convert.

Two ways to merge the many overlapping windows a sliding-window detector fires on one object:

* :func:`nms` (greedy non-maximum suppression; Dalal 2006 ch. 5, Felzenszwalb et al. 2010): keep
  the best-scoring box, drop every box overlapping it by more than a threshold, repeat. The rule
  is torchvision's ``ops.nms``: a box is dropped when its IoU with a kept, higher-scoring box is
  *strictly* greater than ``iou_threshold``; ties in score keep the input order.
* :func:`group_rectangles` (OpenCV's ``groupRectangles``, used by its cascade and HOG detectors):
  cluster similar rectangles, average each cluster, drop clusters with too few members and those
  inside a stronger cluster.
"""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array, check_finite, check_int

__all__ = ["box_iou", "box_area", "nms", "group_rectangles", "clip_rects", "rects_to_boxes",
           "boxes_to_rects"]

#: OpenCV's grouping tolerance in ``CascadeClassifier`` and ``HOGDescriptor`` (``GROUP_EPS``).
GROUP_EPS = 0.2


def _kernels():
    from kernels import detect as k
    return k


def check_boxes(boxes, name="boxes", allow_empty=True) -> np.ndarray:
    """Validate ``(N, 4)`` boxes ``(x1, y1, x2, y2)``; return them as float64, C-contiguous.

    Raises ValueError for a wrong shape, NaN/infinity, or an inverted box (``x2 < x1`` or
    ``y2 < y1``).
    """
    arr = check_array(boxes, name, dtypes="uif", allow_empty=True)
    if arr.size == 0 and allow_empty:
        return np.zeros((0, 4), np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got {arr.shape}")
    check_finite(arr, name)
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    bad = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] = {arr[bad[0]].tolist()} is inverted "
                         f"(x2 < x1 or y2 < y1); boxes are (x1, y1, x2, y2)")
    return arr


def box_area(boxes) -> np.ndarray:
    """Areas ``(x2 - x1) * (y2 - y1)`` of ``(N, 4)`` boxes, float64 ``(N,)``."""
    b = check_boxes(boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(boxes1, boxes2) -> np.ndarray:
    """Pairwise intersection over union, as ``torchvision.ops.box_iou``.

    .. math:: \\mathrm{IoU}(a, b) = |a \\cap b| / (|a| + |b| - |a \\cap b|)

    Parameters
    ----------
    boxes1 : (N, 4) float, ``(x1, y1, x2, y2)``
    boxes2 : (M, 4) float

    Returns
    -------
    (N, M) float64. Two empty boxes give NaN (0 / 0), as torchvision.

    Examples
    --------
    >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]])
    array([[0.33333333, 0.        ]])
    """
    a = check_boxes(boxes1, "boxes1")
    b = check_boxes(boxes2, "boxes2")
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes, scores, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy non-maximum suppression with ``torchvision.ops.nms``'s rule.

    Boxes are visited by decreasing score (ties: input order); each is kept unless its IoU with a
    box kept before it is strictly greater than ``iou_threshold``.

    Parameters
    ----------
    boxes : (N, 4) float, ``(x1, y1, x2, y2)``
    scores : (N,) float
    iou_threshold : float
        In [0, 1]; 1 keeps every box, 0 drops every box that overlaps a kept one at all.

    Returns
    -------
    (K,) int64 indices of the kept boxes, by decreasing score. Empty input gives an empty array.

    Examples
    --------
    >>> nms([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], [0.9, 0.8, 0.7], 0.5)
    array([0, 2])
    """
    b = check_boxes(boxes)
    s = check_array(scores, "scores", ndim=1, dtypes="uif", allow_empty=True)
    if s.shape[0] != b.shape[0]:
        raise ValueError(f"scores has {s.shape[0]} entries for {b.shape[0]} boxes")
    check_finite(s, "scores")
    t = float(iou_threshold)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if b.shape[0] == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-s.astype(np.float64), kind="stable").astype(np.int64)
    keep = np.empty(b.shape[0], np.int64)
    n = _kernels().nms_sorted(b, order, t, keep)
    return keep[:n].copy()


def rects_to_boxes(rects) -> np.ndarray:
    """OpenCV ``(x, y, w, h)`` rectangles -> ``(x1, y1, x2, y2)`` float64 boxes."""
    r = check_array(rects, "rects", dtypes="uif", allow_empty=True).reshape(-1, 4)
    r = r.astype(np.float64)
    return np.stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]], axis=1)


def boxes_to_rects(boxes) -> np.ndarray:
    """``(x1, y1, x2, y2)`` boxes -> ``(x, y, w, h)`` int64 rectangles (rounded to nearest)."""
    b = check_boxes(boxes)
    x1, y1 = np.rint(b[:, 0]), np.rint(b[:, 1])
    return np.stack([x1, y1, np.rint(b[:, 2]) - x1, np.rint(b[:, 3]) - y1],
                    axis=1).astype(np.int64)


def _check_rects(rects):
    r = check_array(rects, "rects", dtypes="ui", allow_empty=True)
    if r.size == 0:
        return np.zeros((0, 4), np.int64)
    if r.ndim != 2 or r.shape[1] != 4:
        raise ValueError(f"rects must have shape (N, 4) as (x, y, w, h), got {r.shape}")
    return np.ascontiguousarray(r, dtype=np.int64)


def group_rectangles(rects, group_threshold: int, eps: float = GROUP_EPS, scores=None):
    """Cluster similar rectangles and average each cluster, as OpenCV's ``groupRectangles``.

    1. Two rectangles are *similar* when each of their four sides differs by at most
       ``delta = eps * (min(w1, w2) + min(h1, h2)) / 2``; clusters are the connected components
       of this relation (``cv::partition``), numbered in order of their first member.
    2. Each cluster becomes the rounded mean of its rectangles.
    3. A cluster of ``n <= group_threshold`` members is dropped, and so is one lying inside a
       cluster ``j`` (grown by ``eps`` times its size) that has ``n_j > max(3, n)`` members, or
       any inside one when ``n < 3``.

    Parameters
    ----------
    rects : (N, 4) int, ``(x, y, w, h)``
    group_threshold : int
        Minimum cluster size minus one (``minNeighbors`` of the cascade detector). ``<= 0``
        returns the input unchanged, as OpenCV does.
    eps : float
        Relative tolerance of the similarity.
    scores : (N,) float or None
        None: ``cv2.groupRectangles`` (the mean is taken in float32, as in
        ``objdetect/src/cascadedetect.cpp``); the second output is each cluster's size.
        Given: ``HOGDescriptor::groupRectangles`` (mean in float64); the second output is each
        cluster's highest score.

    Returns
    -------
    rects : (K, 4) int64
    weights : (K,) int64 cluster sizes, or (K,) float64 best scores when ``scores`` is given.

    Examples
    --------
    >>> r, n = group_rectangles([[10, 10, 20, 20], [11, 10, 20, 21], [50, 50, 5, 5]], 1)
    >>> r.tolist(), n.tolist()
    ([[10, 10, 20, 20]], [2])
    """
    r = _check_rects(rects)
    group_threshold = check_int(group_threshold, "group_threshold")
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if scores is not None:
        s = check_array(scores, "scores", ndim=1, dtypes="uif", allow_empty=True)
        if s.shape[0] != r.shape[0]:
            raise ValueError(f"scores has {s.shape[0]} entries for {r.shape[0]} rects")
        s = s.astype(np.float64)
    if group_threshold <= 0 or r.shape[0] == 0:
        if scores is None:
            return r.copy(), np.ones(r.shape[0], np.int64)
        return r.copy(), s.copy()
    labels = np.empty(r.shape[0], np.int64)
    n_classes = _kernels().partition_rects(r, eps, labels)
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.zeros((n_classes, 4), np.int64)
    np.add.at(sums, labels, r)
    if scores is None:
        # cascadedetect.cpp: float s = 1.f / n; saturate_cast<int>(sum * s) (in float32)
        inv = np.float32(1) / counts.astype(np.float32)
        means = np.rint(sums.astype(np.float32) * inv[:, None]).astype(np.int64)
        weights = counts
    else:
        # hog.cpp, HOGDescriptor::groupRectangles: the mean in double, then cvRound
        means = np.rint(sums.astype(np.float64) * (1.0 / counts)[:, None]).astype(np.int64)
        weights = np.full(n_classes, -np.finfo(np.float64).max)
        np.maximum.at(weights, labels, s)
    keep = []
    for i in range(n_classes):
        n1 = counts[i]
        if n1 <= group_threshold:
            continue
        x1, y1, w1, h1 = means[i]
        inside = False
        for j in range(n_classes):
            n2 = counts[j]
            if j == i or n2 <= group_threshold:
                continue
            x2, y2, w2, h2 = means[j]
            dx = int(np.rint(w2 * eps))
            dy = int(np.rint(h2 * eps))
            if (x1 >= x2 - dx and y1 >= y2 - dy and x1 + w1 <= x2 + w2 + dx
                    and y1 + h1 <= y2 + h2 + dy and (n2 > max(3, n1) or n1 < 3)):
                inside = True
                break
        if not inside:
            keep.append(i)
    keep = np.asarray(keep, np.int64)
    return means[keep].reshape(-1, 4), weights[keep]


def clip_rects(rects, scores, width, height):
    """OpenCV's ``clipObjects``: intersect ``(x, y, w, h)`` rectangles with the
    ``width x height`` image and drop those left empty; ``scores`` follow. Returns
    ``(rects (K, 4) int64, scores (K,))``."""
    rects = _check_rects(rects)
    scores = np.asarray(scores)
    if scores.shape != (len(rects),):
        raise ValueError(f"scores must have one value per rect ({len(rects)}), got shape "
                         f"{scores.shape}")
    width = check_int(width, "width", minimum=0)
    height = check_int(height, "height", minimum=0)
    x1 = np.maximum(rects[:, 0], 0)
    y1 = np.maximum(rects[:, 1], 0)
    x2 = np.minimum(rects[:, 0] + rects[:, 2], width)
    y2 = np.minimum(rects[:, 1] + rects[:, 3], height)
    keep = (x2 > x1) & (y2 > y1)
    out = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)[keep].reshape(-1, 4)
    return out.astype(np.int64), scores[keep]
