"""Viola-Jones cascades of boosted Haar-feature classifiers, reading OpenCV's XML files.

Stages (Viola & Jones 2004; Lienhart & Maydt 2002; OpenCV ``CascadeClassifier``)
    1. pyramid: for ``factor = 1, f, f^2, ...`` while the window ``round(window * factor)`` fits
       the image, the image resized to ``round(size / factor)`` (OpenCV's bit-exact bilinear
       resize, :func:`cvcore.detect.resize_exact`) -- the features stay at the trained size;
    2. the level's summed-area tables of the pixels and of their squares
       (:mod:`kernels.integral`; float64 sums of 8-bit pixels are exact);
    3. every window (step 2 pixels while ``factor < 2``, then 1) is normalised by its standard
       deviation and runs through the stages (:func:`kernels.detect.cascade_row`): each stage
       adds up the leaves its trees reach and rejects the window below its threshold
       (steps 1-3 of all levels run in one kernel, :func:`kernels.detect.cascade_pyramid`,
       whose threads each take whole levels, most windows first);
    4. windows passing every stage become rectangles ``(round(x * factor), round(y * factor),
       round(window * factor))``, and OpenCV's :func:`~cvcore.detect.group_rectangles` keeps the
       clusters of more than ``min_neighbors`` of them; the result is cut to the image.

:class:`HaarCascade` returns the rectangles of ``cv2.CascadeClassifier.detectMultiScale`` with
the same ``scaleFactor``, ``minNeighbors``, ``minSize`` and ``maxSize`` (tested on the
shared photos). Cascades with tilted (45 degree) features or LBP features are not supported.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from cvcore._threads import threads_for
from cvcore._validate import check_int, check_pair
from cvcore.detect.boxes import GROUP_EPS, clip_rects, group_rectangles
from cvcore.detect.pyramid import axis_coefficients, check_scale_factor, check_uint8_image

__all__ = ["HaarCascade", "opencv_cascade_path", "rgb_to_gray_opencv"]

#: OpenCV subtracts this from every stage threshold when it reads a cascade
#: (cascadedetect.cpp, ``THRESHOLD_EPS``).
THRESHOLD_EPS = np.float32(1e-5)
#: ``cv2.CascadeClassifier.detectMultiScale`` defaults.
DEFAULT_SCALE_FACTOR = 1.1
DEFAULT_MIN_NEIGHBORS = 3
#: Window step of a level: 2 pixels below this scale, 1 from it on (``ystep``).
FINE_STEP_SCALE = 2.0
#: OpenCV's fixed-point BGR->grey weights (imgproc color.hpp: R 4899, G 9617, B 1868, >> 14).
GRAY_WEIGHTS = (4899, 9617, 1868)
GRAY_SHIFT = 14
#: Below this many pixels over all levels the pyramid runs on one thread.
PARALLEL_MIN_PIXELS = 1 << 17


def _kernels():
    from kernels import detect as k
    return k


def opencv_cascade_path(name: str) -> Path:
    """Path of a cascade shipped with the installed OpenCV (``cv2.data.haarcascades``), e.g.
    ``"haarcascade_frontalface_alt2.xml"``; ValueError when OpenCV or the file is absent."""
    try:
        import cv2
    except ImportError:
        raise ValueError("OpenCV's cascades come with opencv-python; install it or pass the "
                         "path of a cascade XML file") from None
    path = Path(cv2.data.haarcascades) / name
    if not path.is_file():
        raise ValueError(f"no cascade {name!r} in {cv2.data.haarcascades}")
    return path


def rgb_to_gray_opencv(image) -> np.ndarray:
    """uint8 RGB -> grey as ``cv2.cvtColor(bgr, COLOR_BGR2GRAY)``: fixed-point BT.601,
    ``(4899 R + 9617 G + 1868 B + 2^13) >> 14``."""
    rgb = image[:, :, :3].astype(np.int32)
    wr, wg, wb = GRAY_WEIGHTS
    return ((rgb[:, :, 0] * wr + rgb[:, :, 1] * wg + rgb[:, :, 2] * wb
             + (1 << (GRAY_SHIFT - 1))) >> GRAY_SHIFT).astype(np.uint8)


def _numbers(node, path, what, dtype=float):
    if node is None or node.text is None:
        raise ValueError(f"{path}: a weak classifier lacks <{what}>")
    try:
        return [dtype(v) for v in node.text.split()]
    except ValueError:
        raise ValueError(f"{path}: <{what}> holds something that is not a number") from None


class HaarCascade:
    """A boosted cascade of Haar-feature trees read from an OpenCV cascade XML file.

    Parameters
    ----------
    path : str or Path
        A new-format OpenCV cascade (``<cascade type_id="opencv-cascade-classifier">``, as all
        of ``cv2.data.haarcascades``), or a file name found there.
    """

    def __init__(self, path):
        p = Path(path)
        if not p.is_file() and not p.is_absolute() and len(p.parts) == 1:
            p = opencv_cascade_path(str(p))
        if not p.is_file():
            raise ValueError(f"cascade file {p} does not exist")
        try:
            root = ET.parse(p).getroot()
        except ET.ParseError as exc:
            raise ValueError(f"{p}: not valid XML ({exc})") from None
        cascade = root.find("cascade")
        if cascade is None:
            raise ValueError(f"{p}: not a new-format OpenCV cascade (no <cascade>)")
        if (cascade.findtext("stageType") or "").strip() != "BOOST":
            raise ValueError(f"{p}: only BOOST cascades are supported")
        if (cascade.findtext("featureType") or "").strip() != "HAAR":
            raise ValueError(f"{p}: only HAAR features are supported, not "
                             f"{cascade.findtext('featureType')}")
        self.path = p
        self.window = (int(cascade.findtext("width")), int(cascade.findtext("height")))
        self._read_features(cascade, p)
        self._read_stages(cascade, p)
        # each tree node's feature, copied per node for the scan (one read less per node)
        feature = self._nodes[2]
        self._node_rects = np.ascontiguousarray(self._rects[feature])
        self._node_weights = np.ascontiguousarray(self._weights[feature])
        self._plans = {}      # image geometry -> the level tables of candidates()

    def _read_features(self, cascade, p):
        features = cascade.find("features")
        if features is None or not len(features):
            raise ValueError(f"{p}: no <features>")
        F = len(features)
        rects = np.zeros((F, 3, 4), np.int64)
        weights = np.zeros((F, 3), np.float32)
        W, H = self.window
        for f, feat in enumerate(features):
            if (feat.findtext("tilted") or "0").strip() not in ("0", ""):
                raise ValueError(f"{p}: feature {f} is tilted; tilted Haar features are not "
                                 "supported")
            items = feat.find("rects")
            if items is None or not 1 <= len(items) <= 3:
                raise ValueError(f"{p}: feature {f} needs 1 to 3 rectangles")
            for k, r in enumerate(items):
                x, y, w, h, wt = _numbers(r, p, "rects")
                x, y, w, h = int(x), int(y), int(w), int(h)
                if x < 0 or y < 0 or w < 0 or h < 0 or x + w > W or y + h > H:
                    raise ValueError(f"{p}: feature {f} rectangle {k} leaves the {W}x{H} window")
                rects[f, k] = (x, y, w, h)
                weights[f, k] = np.float32(wt)
        self._rects, self._weights = rects, weights

    def _read_stages(self, cascade, p):
        stages = cascade.find("stages")
        if stages is None or not len(stages):
            raise ValueError(f"{p}: no <stages>")
        left, right, feature, threshold, leaves = [], [], [], [], []
        tree_nodes, tree_leaves, stage_first, stage_count, stage_threshold = [], [], [], [], []
        F = len(self._rects)
        for stage in stages:
            weak = stage.find("weakClassifiers")
            stage_first.append(len(tree_nodes))
            stage_count.append(len(weak))
            stage_threshold.append(np.float32(float(stage.findtext("stageThreshold")))
                                   - THRESHOLD_EPS)
            for tree in weak:
                nodes = _numbers(tree.find("internalNodes"), p, "internalNodes")
                values = _numbers(tree.find("leafValues"), p, "leafValues")
                if len(nodes) % 4 or len(values) != len(nodes) // 4 + 1:
                    raise ValueError(f"{p}: a tree needs 4 numbers per node and one more leaf "
                                     "than nodes")
                tree_nodes.append(len(left))
                tree_leaves.append(len(leaves))
                n_nodes = len(nodes) // 4
                for k in range(0, len(nodes), 4):
                    lft, rgt, feat = (int(v) for v in nodes[k:k + 3])
                    if not (0 <= feat < F and -n_nodes <= lft < n_nodes
                            and -n_nodes <= rgt < n_nodes):
                        raise ValueError(f"{p}: a tree node refers to a missing feature or node")
                    left.append(lft)
                    right.append(rgt)
                    feature.append(feat)
                    threshold.append(nodes[k + 3])
                leaves.extend(values)
        i64 = np.int64
        self._nodes = (np.array(left, i64), np.array(right, i64), np.array(feature, i64),
                       np.array(threshold, np.float32))
        self._leaves = np.array(leaves, np.float32)
        self._trees = (np.array(tree_nodes, i64), np.array(tree_leaves, i64))
        self._stages = (np.array(stage_first, i64), np.array(stage_count, i64),
                        np.array(stage_threshold, np.float32))

    @property
    def n_stages(self) -> int:
        return len(self._stages[0])

    def scales(self, image_size, scale_factor=DEFAULT_SCALE_FACTOR, min_size=(0, 0),
               max_size=None):
        """OpenCV's pyramid factors (float32): ``1, f, f^2, ...`` while the window
        ``round(window * factor)`` fits the image, limited to ``[min_size, max_size]``."""
        scale_factor = check_scale_factor(scale_factor)
        W, H = image_size
        ww, wh = self.window
        max_w, max_h = (W, H) if max_size is None else max_size
        out = []
        factor = 1.0
        while True:
            size = (round(ww * factor), round(wh * factor))
            if size[0] > W or size[1] > H:
                break
            if size[0] > max_w or size[1] > max_h:
                break
            if size[0] >= min_size[0] and size[1] >= min_size[1]:
                out.append(np.float32(factor))
            factor *= scale_factor
        return out

    def candidates(self, image, scale_factor=DEFAULT_SCALE_FACTOR, min_size=(0, 0),
                   max_size=None):
        """Every window that passes all stages, as ``(x, y, w, h)`` int64 (N, 4).

        ``image``: uint8 grey (H, W) or RGB (H, W, 3) (converted as OpenCV does).
        """
        img = check_uint8_image(image)
        if img.shape[2] == 1:
            grey = img
        elif img.shape[2] in (3, 4):
            grey = rgb_to_gray_opencv(img)[:, :, None]
        else:
            raise ValueError(f"image must be grey or RGB, got shape {img.shape}")
        H, W = grey.shape[:2]
        ww, wh = self.window
        if W < ww or H < wh:
            raise ValueError(f"the {ww}x{wh} cascade window (width x height) is larger than "
                             f"the {W}x{H} image")
        min_size = check_pair(min_size, "min_size", minimum=0)
        if max_size is not None:
            max_size = check_pair(max_size, "max_size", minimum=1)
        plan = self._pyramid_plan(H, W, check_scale_factor(scale_factor), min_size, max_size)
        hits = np.zeros(plan["n_windows"], np.bool_)
        if plan["n_windows"] == 0:
            return np.zeros((0, 4), np.int64)
        import numba
        k = _kernels()
        with threads_for(plan["pixels"] >= PARALLEL_MIN_PIXELS):
            left, right, _, threshold = self._nodes
            k.cascade_pyramid(np.ascontiguousarray(grey), plan["levels"], plan["order"],
                              *plan["coefficients"], ww, wh, self._node_rects,
                              self._node_weights, left, right, threshold, self._leaves,
                              *self._trees, *self._stages, numba.get_num_threads(), hits)
        found = np.flatnonzero(hits)
        levels = plan["levels"]
        lv = np.searchsorted(levels[:, k.CL_HITS], found, side="right") - 1
        local = found - levels[lv, k.CL_HITS]
        nx = levels[lv, k.CL_NX]
        step = levels[lv, k.CL_STEP]
        factor = plan["factors"][lv]                     # float32, as OpenCV's
        r = np.empty((found.size, 4), np.int64)
        r[:, 0] = np.rint(((local % nx) * step).astype(np.float32) * factor)
        r[:, 1] = np.rint(((local // nx) * step).astype(np.float32) * factor)
        r[:, 2] = np.rint(np.float32(ww) * factor)
        r[:, 3] = np.rint(np.float32(wh) * factor)
        return r

    def _pyramid_plan(self, H, W, scale_factor, min_size, max_size):
        """Level tables of :func:`kernels.detect.cascade_pyramid` (kept per image geometry)."""
        key = (H, W, scale_factor, min_size, max_size)
        plan = self._plans.get(key)          # get, not "in" then []: another thread may clear
        if plan is not None:
            return plan
        ww, wh = self.window
        rows, factors, yofs, ycoef, xofs, xcoef = [], [], [], [], [], []
        n_rows = n_cols = n_windows = pixels = 0
        for factor in self.scales((W, H), scale_factor, min_size, max_size):
            # cascadedetect.cpp: Size(cvRound(imgsz.width / scale), ...) in float
            Ho = int(np.rint(np.float32(H) / factor))
            Wo = int(np.rint(np.float32(W) / factor))
            step = 1 if factor >= FINE_STEP_SCALE else 2
            ny = -(-max(Ho + 1 - wh, 0) // step)
            nx = -(-max(Wo + 1 - ww, 0) // step)
            if ny == 0 or nx == 0:
                continue
            rows.append((Ho, Wo, n_rows, n_cols, step, ny, nx, n_windows))
            factors.append(factor)
            for ofs, coef, n_in, n_out in ((yofs, ycoef, H, Ho), (xofs, xcoef, W, Wo)):
                o, c = axis_coefficients(n_in, n_out)
                ofs.append(o)
                coef.append(c)
            n_rows, n_cols = n_rows + Ho, n_cols + Wo
            n_windows += ny * nx
            pixels += Ho * Wo
        levels = np.array(rows, np.int64).reshape(-1, 8)
        empty = np.zeros(0, np.int64)
        cat = lambda parts: np.concatenate(parts) if parts else empty    # noqa: E731
        plan = {"levels": levels,
                "order": np.argsort(-(levels[:, 5] * levels[:, 6]), kind="stable"),
                "coefficients": (cat(yofs), cat(ycoef), cat(xofs), cat(xcoef)),
                "factors": np.array(factors, np.float32),
                "n_windows": n_windows, "pixels": pixels}
        if len(self._plans) > 16:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def detect_multiscale(self, image, scale_factor=DEFAULT_SCALE_FACTOR,
                          min_neighbors: int = DEFAULT_MIN_NEIGHBORS, min_size=(0, 0),
                          max_size=None):
        """``cv2.CascadeClassifier.detectMultiScale``: rectangles ``(x, y, w, h)`` int64 (K, 4)
        of the clusters of more than ``min_neighbors`` windows (0: every window). Empty when
        nothing is found.

        Raises
        ------
        ValueError
            ``scale_factor <= 1``, the window larger than the image, a wrong image shape.
        TypeError
            A non-uint8 image.
        """
        min_neighbors = check_int(min_neighbors, "min_neighbors", minimum=0)
        rects = self.candidates(image, scale_factor, min_size, max_size)
        rects = group_rectangles(rects, min_neighbors, GROUP_EPS)[0]
        # objdetect's CascadeClassifier::detectMultiScale ends with clipObjects
        H, W = np.shape(image)[:2]
        return clip_rects(rects, np.zeros(len(rects)), W, H)[0]

    def __repr__(self):
        return (f"HaarCascade({self.path.name!r}, window={self.window}, "
                f"stages={self.n_stages})")
