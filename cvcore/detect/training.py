"""Training a HOG + linear SVM window detector from annotated photos (Dalal & Triggs 2005).

Stages
    1. window: the object's aspect ratio is the median of the annotated boxes'; the object
       spans about ``OBJECT_CELLS`` cells with one cell of context on every side (Dalal &
       Triggs, sec. 6.6: a margin around the object helps), and the cell size is chosen so that
       the smallest annotated object still fills the object part of the window at scale 1;
    2. positives: each annotated box (not marked *ignore*), cut with its context and one more
       cell of border, resized to the window, and its mirror image;
    3. negatives: random windows of every pyramid level that overlap no annotated box;
    4. a linear SVM (:class:`cvcore.classify.LinearSVM`, squared hinge) on those;
    5. hard negatives (sec. 4 of the paper): the detector runs over every training photo's
       pyramid; windows scoring above ``-1`` (inside the margin) that overlap no annotated box
       join the negatives, and the SVM is fitted again; repeated ``rounds`` times.

Detection (:class:`ObjectDetector`) slides the window over the pyramid (step ``DEFAULT_SCALE``),
keeps windows scoring above a threshold, maps each to the object box inside it and merges them
with greedy non-maximum suppression.
"""
from __future__ import annotations

import math
import time

import numpy as np

from cvcore._validate import check_int, check_positive
from cvcore.detect.boxes import box_iou, nms
from cvcore.detect.hog_detector import HOGDetector
from cvcore.detect.pyramid import check_uint8_image, image_pyramid, resize_exact
from cvcore.features._hog import HOGDescriptor

__all__ = ["ObjectDetector", "train_hog_detector", "load_annotated_images"]

#: The object part of the window spans about this many cells (Dalal & Triggs' person: 6 x 14
#: cells of 8 px inside the 8 x 16 window; a face is about 6 x 6).
OBJECT_CELLS = 36
#: Cell size bounds in pixels (Dalal & Triggs, sec. 6.4: 6-8 px cells work best for people).
MIN_CELL, MAX_CELL = 4, 8
#: Largest relative shift and scale change of a jittered positive.
JITTER = 0.05
#: Pyramid step of detection and mining.
DEFAULT_SCALE = 1.1
#: A window overlapping an annotated box by more than this IoU is not a negative.
NEGATIVE_MAX_IOU = 0.3
#: Hard negatives are windows scoring above this (inside the SVM margin).
MINING_SCORE = -1.0
#: Non-maximum suppression of detections (Dalal 2006, ch. 5, merges overlapping windows).
NMS_IOU = 0.3


class ObjectDetector:
    """A trained sliding-window detector: HOG window classifier plus the object's place in it.

    Parameters
    ----------
    detector : HOGDetector
    object_box : (x1, y1, x2, y2)
        The object's box inside the window, in window pixels.
    scale : float
        Pyramid step.
    threshold : float
        Windows scoring at least this are detections.
    """

    def __init__(self, detector: HOGDetector, object_box, scale: float = DEFAULT_SCALE,
                 threshold: float = 0.0):
        self.detector = detector
        self.object_box = np.asarray(object_box, np.float64).reshape(4)
        self.scale = float(scale)
        self.threshold = float(threshold)

    @property
    def window_size(self):
        return self.detector.descriptor.win_size

    def detect(self, image, threshold: float | None = None, iou_threshold: float = NMS_IOU):
        """Object boxes ``(x1, y1, x2, y2)`` float64 (K, 4) and scores (K,), best first.

        ``image``: uint8 grey (H, W) or colour (H, W, 3) (converted to grey, BT.601). An image
        smaller than the window, or with no object, gives empty arrays.
        """
        img = self._grey(image)
        t = self.threshold if threshold is None else float(threshold)
        ww, wh = self.window_size
        if img.shape[0] < wh or img.shape[1] < ww:
            return np.zeros((0, 4)), np.zeros(0)
        rects, scores = self.detector.candidates(img, t, self.detector.descriptor.cell_size,
                                                 None, self.scale)
        boxes = self._object_boxes(rects)
        keep = nms(boxes, scores, iou_threshold)
        return boxes[keep], scores[keep]

    def _object_boxes(self, rects):
        """Window rectangles -> the object boxes inside them."""
        ww, wh = self.window_size
        sx = rects[:, 2] / ww
        sy = rects[:, 3] / wh
        x1, y1, x2, y2 = self.object_box
        return np.stack([rects[:, 0] + x1 * sx, rects[:, 1] + y1 * sy,
                         rects[:, 0] + x2 * sx, rects[:, 1] + y2 * sy], axis=1)

    @staticmethod
    def _grey(image):
        img = check_uint8_image(image)
        if img.shape[2] == 1:
            return img[:, :, 0]
        if img.shape[2] not in (3, 4):
            raise ValueError(f"image must be grey or RGB, got shape {img.shape}")
        rgb = img[:, :, :3].astype(np.int32)
        # ITU-R BT.601, rounded, as cvcore.imread(mode="gray") and Pillow's convert("L")
        return ((rgb[:, :, 0] * 299 + rgb[:, :, 1] * 587 + rgb[:, :, 2] * 114 + 500)
                // 1000).astype(np.uint8)

    # -- files ---------------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        """``(params, arrays)`` for :func:`cvcore.train.checkpoint.save_state`."""
        d = self.detector.descriptor
        params = {"win_size": list(d.win_size), "block_size": list(d.block_size),
                  "block_stride": list(d.block_stride), "cell_size": list(d.cell_size),
                  "nbins": d.nbins, "object_box": self.object_box.tolist(),
                  "scale": self.scale, "threshold": self.threshold, "bias": self.detector.bias}
        return params, {"weights": self.detector.weights}

    @classmethod
    def from_state(cls, params, arrays):
        try:
            d = HOGDescriptor(win_size=tuple(params["win_size"]),
                              block_size=tuple(params["block_size"]),
                              block_stride=tuple(params["block_stride"]),
                              cell_size=tuple(params["cell_size"]), nbins=int(params["nbins"]))
            det = HOGDetector(d, arrays["weights"], float(params["bias"]))
            return cls(det, params["object_box"], params["scale"], params["threshold"])
        except KeyError as exc:
            raise ValueError(f"detector file lacks {exc}") from None


def load_annotated_images(annotations):
    """Grey uint8 images of :class:`~cvcore.detect.annotations.ImageAnnotation` entries."""
    from cvcore.io.images import imread
    images = []
    for ann in annotations:
        img = imread(ann.path, mode="gray")
        if img.dtype != np.uint8:
            raise ValueError(f"{ann.path}: expected an 8-bit image, got {img.dtype}")
        images.append(img)
    return images


def _geometry(boxes):
    """Descriptor and object box from the annotated boxes' shapes (stage 1)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    aspect = float(np.median(w / h))
    oh = max(2, round(math.sqrt(OBJECT_CELLS / aspect)))
    ow = max(2, round(aspect * oh))
    smallest = float(np.min(np.minimum(w / ow, h / oh)))      # pixels per cell of the smallest
    cell = int(min(MAX_CELL, max(MIN_CELL, math.floor(smallest))))
    descriptor = HOGDescriptor(win_size=((ow + 2) * cell, (oh + 2) * cell),
                               block_size=(2 * cell, 2 * cell), block_stride=(cell, cell),
                               cell_size=(cell, cell))
    object_box = (cell, cell, (ow + 1) * cell, (oh + 1) * cell)
    return descriptor, object_box


def _positive(image, box, descriptor, object_box, mirror):
    """Descriptor of an annotated box cut with its context (stage 2)."""
    ww, wh = descriptor.win_size
    cw, ch = descriptor.cell_size
    ox1, oy1, ox2, oy2 = object_box
    sx = (box[2] - box[0]) / (ox2 - ox1)
    sy = (box[3] - box[1]) / (oy2 - oy1)
    # the window plus one cell of border, so that the window's edge gradients are real
    x0 = box[0] - (ox1 + cw) * sx
    y0 = box[1] - (oy1 + ch) * sy
    W0, H0 = (ww + 2 * cw) * sx, (wh + 2 * ch) * sy
    H, W = image.shape
    cols = np.clip(np.round(x0 + np.arange(int(math.ceil(W0)))).astype(int), 0, W - 1)
    rows = np.clip(np.round(y0 + np.arange(int(math.ceil(H0)))).astype(int), 0, H - 1)
    crop = image[np.ix_(rows, cols)]
    if mirror:
        crop = crop[:, ::-1]
    crop = resize_exact(np.ascontiguousarray(crop), (wh + 2 * ch, ww + 2 * cw))
    desc = descriptor.compute(crop, win_stride=(cw, ch)).reshape(3, 3, -1)
    return desc[1, 1]


def _window_descriptors(detector, level, stride, windows):
    """Descriptors of the given windows ``(wy, wx)`` of one level, from its block grid."""
    d = detector.descriptor
    grid = d.compute_block_grid(level, (0, 0), stride)
    nbx, nby = d.blocks_per_window
    wy, wx = windows
    bx, by = np.meshgrid(np.arange(nbx), np.arange(nby), indexing="ij")    # OpenCV's order
    rows = wy[:, None] + by.ravel()[None, :]
    cols = wx[:, None] + bx.ravel()[None, :]
    return grid[rows, cols].reshape(len(wy), -1)


def _level_windows(detector, level, level_scale, stride, gt_boxes, object_box):
    """Scores and object boxes (image coordinates) of every window of one level."""
    scores, _ = detector.score_map(level, stride, None)
    ww, wh = detector.descriptor.win_size
    wy, wx = np.indices(scores.shape)
    wy, wx = wy.ravel(), wx.ravel()
    x1, y1, x2, y2 = object_box
    boxes = np.stack([(wx * stride[0] + x1) * level_scale, (wy * stride[1] + y1) * level_scale,
                      (wx * stride[0] + x2) * level_scale, (wy * stride[1] + y2) * level_scale],
                     axis=1)
    free = np.ones(len(boxes), bool)
    if len(gt_boxes):
        free = box_iou(boxes, gt_boxes).max(axis=1) <= NEGATIVE_MAX_IOU
    return scores.ravel(), wy, wx, free


def train_hog_detector(annotations, images=None, C: float = 0.1, rounds: int = 2,
                       jitter: int = 4, negatives_per_image: int = 300,
                       max_hard_per_image: int = 500, seed: int = 0,
                       log=print) -> ObjectDetector:
    """Learn a HOG + linear SVM window detector from annotated photos (module stages 1-5).

    Parameters
    ----------
    annotations : list of ImageAnnotation
        From :func:`cvcore.detect.read_annotations`; one class (labels are ignored).
    images : list of uint8 grey images, or None to read them from the annotations' paths.
    C : float
        SVM inverse regularisation.
    rounds : int
        Hard-negative mining rounds (0: random negatives only).
    jitter : int
        Extra copies of each positive, shifted and scaled at random by up to ``JITTER`` of its
        size (with so few photos, this teaches the window some tolerance).
    negatives_per_image, max_hard_per_image : int
        Random negatives drawn, and hard negatives kept (the highest scoring), per photo and round.
    seed : int
    log : callable
        Receives one line of progress per stage.

    Returns
    -------
    ObjectDetector
    """
    C = check_positive(C, "C")
    rounds = check_int(rounds, "rounds", minimum=0)
    jitter = check_int(jitter, "jitter", minimum=0)
    negatives_per_image = check_int(negatives_per_image, "negatives_per_image", minimum=1)
    max_hard_per_image = check_int(max_hard_per_image, "max_hard_per_image", minimum=1)
    if not annotations:
        raise ValueError("no annotated images to train on")
    if images is None:
        images = load_annotated_images(annotations)
    if len(images) != len(annotations):
        raise ValueError(f"{len(images)} images for {len(annotations)} annotations")
    images = [ObjectDetector._grey(im) for im in images]
    all_boxes = [a.boxes[~a.ignore] for a in annotations]
    if sum(len(b) for b in all_boxes) == 0:
        raise ValueError("the annotations hold no boxes (all images are empty or ignored)")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    descriptor, object_box = _geometry(np.concatenate(all_boxes))
    ww, wh = descriptor.win_size
    log(f"window {ww}x{wh} px, cells {descriptor.cell_size[0]} px, object box {object_box}, "
        f"{descriptor.descriptor_size} features")

    pos = []
    for im, boxes in zip(images, all_boxes):
        for b in boxes:
            # the box itself and `jitter` copies shifted and scaled by a few per cent
            size = np.array([b[2] - b[0], b[3] - b[1]])
            variants = [b]
            for _ in range(jitter):
                centre = (b[:2] + b[2:]) / 2 + rng.uniform(-JITTER, JITTER, 2) * size
                half = size * (1 + rng.uniform(-JITTER, JITTER)) / 2
                variants.append(np.concatenate([centre - half, centre + half]))
            for v in variants:
                for mirror in (False, True):
                    pos.append(_positive(im, v, descriptor, object_box, mirror))
    pos = np.array(pos, np.float32)
    probe = HOGDetector(descriptor, np.zeros(descriptor.descriptor_size, np.float32), 0.0)
    stride = descriptor.cell_size
    neg = []
    for im, ann, gt in zip(images, annotations, all_boxes):
        if im.shape[0] < wh or im.shape[1] < ww:
            continue
        levels = list(image_pyramid(im, (ww, wh), DEFAULT_SCALE))
        per_level = max(1, negatives_per_image // len(levels))
        ignore = np.concatenate([gt, ann.boxes[ann.ignore]])
        for s, level in levels:
            _, wy, wx, free = _level_windows(probe, level, s, stride, ignore, object_box)
            idx = np.flatnonzero(free)
            if idx.size:
                pick = rng.choice(idx, min(per_level, idx.size), replace=False)
                neg.append(_window_descriptors(probe, level, stride, (wy[pick], wx[pick])))
    if not neg:
        raise ValueError(f"no negative windows: every photo is smaller than the {ww}x{wh} "
                         "window or covered by its boxes")
    neg = np.concatenate(neg).astype(np.float32)
    log(f"{len(pos)} positives (with mirror images), {len(neg)} random negatives "
        f"({time.perf_counter() - t0:.1f} s)")
    detector = _fit(pos, neg, descriptor, C)
    log(f"SVM fitted ({time.perf_counter() - t0:.1f} s)")

    for r in range(rounds):
        hard = []
        for im, ann, gt in zip(images, annotations, all_boxes):
            if im.shape[0] < wh or im.shape[1] < ww:
                continue
            ignore = np.concatenate([gt, ann.boxes[ann.ignore]])
            found = []
            for s, level in image_pyramid(im, (ww, wh), DEFAULT_SCALE):
                score, wy, wx, free = _level_windows(detector, level, s, stride, ignore,
                                                     object_box)
                idx = np.flatnonzero(free & (score > MINING_SCORE))
                if idx.size:
                    found.append((score[idx], level, wy[idx], wx[idx]))
            if not found:
                continue
            # keep the highest-scoring windows of this photo
            cut = np.sort(np.concatenate([f[0] for f in found]))[::-1]
            cut = cut[min(max_hard_per_image, len(cut)) - 1]
            for score, level, wy, wx in found:
                keep = score >= cut
                if keep.any():
                    hard.append(_window_descriptors(detector, level, stride,
                                                    (wy[keep], wx[keep])))
        n_hard = sum(len(h) for h in hard)
        log(f"round {r + 1}/{rounds}: {n_hard} hard negatives "
            f"({time.perf_counter() - t0:.1f} s)")
        if n_hard == 0:
            break
        neg = np.concatenate([neg] + hard).astype(np.float32)
        detector = _fit(pos, neg, descriptor, C)
        log(f"round {r + 1}/{rounds}: SVM refitted on {len(neg)} negatives "
            f"({time.perf_counter() - t0:.1f} s)")
    return ObjectDetector(detector, object_box, DEFAULT_SCALE, 0.0)


def _fit(pos, neg, descriptor, C):
    from cvcore.classify import LinearSVM
    X = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    svm = LinearSVM(C=C).fit(X, y)
    return HOGDetector(descriptor, svm.coef_[0], float(svm.intercept_[0]))
