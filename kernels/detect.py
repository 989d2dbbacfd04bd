"""Object-detection kernels: non-maximum suppression, rectangle grouping, OpenCV's bit-exact
bilinear resize of the image pyramid, window scoring over a block-feature map, and the
Viola-Jones cascade on integral images.

The API, validation and defaults are in :mod:`cvcore.detect`; the readable NumPy twins of these
kernels are in ``tests/test_detect.py`` (``reference_*``). Nothing here validates its input.

Conventions
-----------
* Boxes are ``(x1, y1, x2, y2)`` float64 in continuous pixel coordinates (the box of pixel
  ``(r, c)`` is ``(c, r, c + 1, r + 1)``), as torchvision; areas are ``(x2 - x1) * (y2 - y1)``.
* OpenCV rectangles are ``(x, y, width, height)`` int64.
"""
import math

import numpy as np
from numba import njit, prange


# --- boxes ----------------------------------------------------------------------------------

@njit(cache=True)
def nms_sorted(boxes, order, iou_threshold, keep):
    """Greedy non-maximum suppression, torchvision's rule (``ops.nms``, ``nms_kernel.cpp``).

    Visiting the boxes in ``order`` (scores descending), a box is kept unless its IoU with an
    already kept box is strictly greater than ``iou_threshold``.

    Parameters
    ----------
    boxes : (N, 4) float64, ``(x1, y1, x2, y2)``
    order : (N,) int64, the visiting order (a stable descending sort of the scores)
    iou_threshold : float
    keep : (N,) int64, receives the kept indices in visiting order

    Returns
    -------
    int, the number of kept boxes (the first entries of ``keep``).
    """
    n = order.shape[0]
    suppressed = np.zeros(boxes.shape[0], np.bool_)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    count = 0
    for a in range(n):
        i = order[a]
        if suppressed[i]:
            continue
        keep[count] = i
        count += 1
        x1, y1, x2, y2 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        for b in range(a + 1, n):
            j = order[b]
            if suppressed[j]:
                continue
            w = min(x2, boxes[j, 2]) - max(x1, boxes[j, 0])
            h = min(y2, boxes[j, 3]) - max(y1, boxes[j, 1])
            inter = max(w, 0.0) * max(h, 0.0)
            iou = inter / (areas[i] + areas[j] - inter)
            if iou > iou_threshold:
                suppressed[j] = True
    return count


@njit(cache=True)
def _similar(r, a, b, eps):
    """OpenCV's ``SimilarRects``: every side within ``eps * mean(min w, min h)`` (as double)."""
    delta = eps * (min(r[a, 2], r[b, 2]) + min(r[a, 3], r[b, 3])) * 0.5
    return (abs(r[a, 0] - r[b, 0]) <= delta and abs(r[a, 1] - r[b, 1]) <= delta
            and abs(r[a, 0] + r[a, 2] - r[b, 0] - r[b, 2]) <= delta
            and abs(r[a, 1] + r[a, 3] - r[b, 1] - r[b, 3]) <= delta)


@njit(cache=True)
def _find(parent, i):
    root = i
    while parent[root] >= 0:
        root = parent[root]
    while parent[i] >= 0:           # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(cache=True)
def partition_rects(rects, eps, labels):
    """OpenCV's ``cv::partition`` with ``SimilarRects(eps)``: connected components of the
    "similar" relation, labelled in the order of their first member.

    Parameters
    ----------
    rects : (N, 4) int64 ``(x, y, w, h)``
    eps : float
    labels : (N,) int64, receives each rectangle's class

    Returns
    -------
    int, the number of classes.
    """
    n = rects.shape[0]
    parent = -np.ones(n, np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            if _similar(rects, i, j, eps):
                ri = _find(parent, i)
                rj = _find(parent, j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    # classes numbered by the first index that belongs to each (cv::partition's final pass)
    cls = -np.ones(n, np.int64)
    count = 0
    for i in range(n):
        root = _find(parent, i)
        if cls[root] < 0:
            cls[root] = count
            count += 1
        labels[i] = cls[root]
    return count
