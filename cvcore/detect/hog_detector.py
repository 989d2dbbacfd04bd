"""Sliding-window HOG detectors: a linear model over OpenCV-style HOG, at every pyramid level.

Stages (Dalal & Triggs 2005, sec. 3 and 5; OpenCV ``HOGDescriptor::detectMultiScale``)
    1. pyramid: the image at scales ``1, s, s^2, ...`` while the window fits
       (:func:`cvcore.detect.pyramid.pyramid_scales`, OpenCV's bit-exact bilinear resize);
    2. per level, every block histogram once, on a grid of step ``gcd(win_stride, block_stride)``
       (:meth:`cvcore.features.HOGDescriptor.compute_block_grid`);
    3. the score of every window is the correlation of that block map with the weight template,
       plus the bias (:func:`kernels.detect.score_windows`), never a HOG per window;
       :meth:`HOGDetector.candidates` runs steps 1-3 for all levels in one kernel,
       :func:`kernels.detect.hog_pyramid_scores`, whose threads each take whole levels;
    4. windows scoring ``>= hit_threshold`` become boxes in image coordinates
       (``x = round(x_level * scale)``, size ``round(window * scale)``);
    5. overlapping boxes are merged: OpenCV's :func:`~cvcore.detect.group_rectangles` in
       :meth:`HOGDetector.detect_multiscale`, or greedy :func:`~cvcore.detect.nms`.

With OpenCV's default people detector (Dalal & Triggs' 64x128 INRIA person model; its
coefficients are read from an installed OpenCV, see :meth:`HOGDetector.opencv_people`)
:meth:`HOGDetector.detect_multiscale` returns the boxes of ``cv2.HOGDescriptor.detectMultiScale``.
"""
from __future__ import annotations

import math

import numpy as np

from cvcore._threads import threads_for
from cvcore._validate import check_array, check_finite, check_int, check_pair
from cvcore.detect.boxes import GROUP_EPS, clip_rects, group_rectangles, nms, rects_to_boxes
from cvcore.detect.pyramid import (axis_coefficients, check_scale_factor, check_uint8_image,
                                   MAX_LEVELS, pyramid_scales)
from cvcore.features._hog import HOGDescriptor

__all__ = ["HOGDetector", "DEFAULT_SCALE", "DEFAULT_GROUP_THRESHOLD"]

#: ``cv2.HOGDescriptor.detectMultiScale`` defaults: pyramid step and ``finalThreshold``.
DEFAULT_SCALE = 1.05
DEFAULT_GROUP_THRESHOLD = 2
#: Below this many padded pixels over all levels a pyramid runs on one thread (waking the
#: thread team costs more than it saves).
PARALLEL_MIN_PIXELS = 1 << 17


def _kernels():
    from kernels import detect as k
    return k


class HOGDetector:
    """A linear window classifier on :class:`~cvcore.features.HOGDescriptor` features.

    Parameters
    ----------
    descriptor : HOGDescriptor
        Window, block and cell geometry (OpenCV's variant of HOG).
    weights : (D,) float
        One weight per descriptor element, in OpenCV's descriptor order, ``D =
        descriptor.descriptor_size``.
    bias : float
        Added to every window's score (OpenCV's ``rho``, the last element of an SVM detector
        vector of length ``D + 1``).

    A window's score is ``bias + weights . hog(window)``; positive means "object".
    """

    def __init__(self, descriptor: HOGDescriptor, weights, bias: float = 0.0):
        if not isinstance(descriptor, HOGDescriptor):
            raise TypeError(f"descriptor must be a HOGDescriptor, got {type(descriptor).__name__}")
        w = check_array(weights, "weights", ndim=1, dtypes="uif")
        check_finite(w, "weights")
        if w.shape[0] != descriptor.descriptor_size:
            raise ValueError(f"weights has {w.shape[0]} values; the descriptor has "
                             f"{descriptor.descriptor_size}")
        bias = float(bias)
        if not math.isfinite(bias):
            raise ValueError(f"bias must be finite, got {bias}")
        self.descriptor = descriptor
        self.weights = w.astype(np.float32)
        self.bias = bias
        nbx, nby = descriptor.blocks_per_window
        # the template: (blocks across, blocks down, block histogram), OpenCV's block order
        self._template = np.ascontiguousarray(
            self.weights.reshape(nbx, nby, descriptor.block_histogram_size))
        self._plans = {}      # image geometry and pyramid -> the level tables of candidates()

    @classmethod
    def from_opencv(cls, coefficients, descriptor: HOGDescriptor | None = None):
        """From an OpenCV SVM detector vector (``D`` weights, optionally followed by ``rho``)."""
        descriptor = descriptor or HOGDescriptor()
        c = check_array(coefficients, "coefficients", dtypes="f").reshape(-1)
        D = descriptor.descriptor_size
        if c.shape[0] not in (D, D + 1):
            raise ValueError(f"an OpenCV detector for this descriptor has {D} or {D + 1} "
                             f"coefficients, got {c.shape[0]}")
        return cls(descriptor, c[:D], float(c[D]) if c.shape[0] > D else 0.0)

    @classmethod
    def opencv_people(cls, path=None):
        """OpenCV's default 64x128 people detector (``getDefaultPeopleDetector``).

        The coefficients are not shipped with cvcore: they are read from the installed
        ``cv2`` or, with ``path``, from a text or ``.npy`` file holding the 3781 numbers.
        """
        if path is not None:
            from pathlib import Path
            p = Path(path)
            if not p.is_file():
                raise ValueError(f"people detector file {p} does not exist")
            c = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, dtype=np.float32)
        else:
            try:
                import cv2
            except ImportError:
                raise ValueError("OpenCV's people detector needs opencv-python installed, or "
                                 "a file of its coefficients (path=)") from None
            c = np.asarray(cv2.HOGDescriptor_getDefaultPeopleDetector(), np.float32)
        return cls.from_opencv(c.reshape(-1), HOGDescriptor())

    # -- one level ------------------------------------------------------------------------------
    def _strides(self, win_stride, padding):
        d = self.descriptor
        stride = d.cell_size if win_stride is None else check_pair(win_stride, "win_stride")
        pad = (0, 0) if padding is None else check_pair(padding, "padding", minimum=0)
        cache = (math.gcd(stride[0], d.block_stride[0]), math.gcd(stride[1], d.block_stride[1]))
        pad = tuple(-(-pad[a] // cache[a]) * cache[a] for a in range(2))   # OpenCV's alignSize
        return stride, pad, cache

    def score_map(self, image, win_stride=None, padding=None):
        """Scores of every window of one image (one pyramid level).

        Parameters
        ----------
        image : (H, W) or (H, W, 3) uint8
        win_stride : (int, int) or None
            Window step ``(x, y)``; None is ``cell_size`` (OpenCV's default).
        padding : (int, int) or None
            ``(pad_x, pad_y)`` of reflected border on every side, rounded up to the block grid.

        Returns
        -------
        scores : (n_windows_y, n_windows_x) float64
        origin : (int, int)
            ``(x, y)`` of window ``(0, 0)``'s top-left corner: ``(-pad_x, -pad_y)``; window
            ``(i, j)`` starts at ``origin + (j * stride_x, i * stride_y)``.
        """
        stride, pad, cache = self._strides(win_stride, padding)
        img = check_uint8_image(image)
        return self._score_map(img, stride, pad, cache), (-pad[0], -pad[1])

    def _score_map(self, img, stride, pad, cache):
        d = self.descriptor
        H, W = img.shape[:2]
        ww, wh = d.win_size
        Hp, Wp = H + 2 * pad[1], W + 2 * pad[0]
        if Hp < wh or Wp < ww:
            raise ValueError(f"the {ww}x{wh} window (width x height) is larger than the "
                             f"{W}x{H} image plus padding {pad}")
        grid = d.compute_block_grid(img if img.shape[2] == 3 else img[:, :, 0], pad, cache)
        scores = np.empty(((Hp - wh) // stride[1] + 1, (Wp - ww) // stride[0] + 1))
        _kernels().score_windows(grid, self._template, self.bias, stride[1] // cache[1],
                                 stride[0] // cache[0], d.block_stride[1] // cache[1],
                                 d.block_stride[0] // cache[0], scores)
        return scores

    # -- all levels -----------------------------------------------------------------------------
    def candidates(self, image, hit_threshold: float = 0.0, win_stride=None, padding=None,
                   scale: float = DEFAULT_SCALE, max_levels: int = MAX_LEVELS):
        """Every window of every pyramid level scoring ``>= hit_threshold``, before merging.

        Returns
        -------
        rects : (N, 4) int64 ``(x, y, w, h)`` in image coordinates
        scores : (N,) float64

        Raises
        ------
        ValueError
            The window is larger than the image, ``scale <= 1``, a wrong image.
        TypeError
            The image is not uint8.
        """
        img = check_uint8_image(image)
        if img.shape[2] not in (1, 3):
            raise ValueError(f"image must be grey or 3-channel colour, got shape {img.shape}")
        hit_threshold = float(hit_threshold)
        stride, pad, cache = self._strides(win_stride, padding)
        H, W, C = img.shape
        plan = self._pyramid_plan(H, W, stride, pad, cache, scale, max_levels)
        d = self.descriptor
        scores = np.empty(plan["n_windows"])
        import numba
        with threads_for(plan["pixels"] >= PARALLEL_MIN_PIXELS):
            _kernels().hog_pyramid_scores(
                img, d._lut, plan["levels"], plan["order"], *plan["coefficients"],
                *plan["maps"], pad[1], pad[0], np.float32(d.nbins / (
                    (2.0 if d.signed_gradient else 1.0) * math.pi)), np.int32(d.nbins),
                cache[1], cache[0], *d._votes, np.float32(d.l2_hys_threshold),
                self._template, self.bias, stride[1] // cache[1], stride[0] // cache[0],
                d.block_stride[1] // cache[1], d.block_stride[0] // cache[0],
                numba.get_num_threads(), scores)
        hits = np.flatnonzero(scores >= hit_threshold)
        if hits.size == 0:
            return np.zeros((0, 4), np.int64), np.zeros(0)
        k = _kernels()
        levels = plan["levels"]
        lv = np.searchsorted(levels[:, k.LV_SCORES], hits, side="right") - 1
        local = hits - levels[lv, k.LV_SCORES]
        nwx = levels[lv, k.LV_NWX]
        wy, wx = local // nwx, local % nwx
        level_scale = plan["scales"][lv]
        # hog.cpp HOGInvoker: Rect(cvRound(pt.x * scale), cvRound(pt.y * scale), cvRound(win
        # * scale)), pt the window's corner in the level (padding subtracted)
        rects = np.empty((hits.size, 4), np.int64)
        rects[:, 0] = np.rint((wx * stride[0] - pad[0]) * level_scale)
        rects[:, 1] = np.rint((wy * stride[1] - pad[1]) * level_scale)
        rects[:, 2] = plan["window_w"][lv]
        rects[:, 3] = plan["window_h"][lv]
        return rects, scores[hits]

    def _pyramid_plan(self, H, W, stride, pad, cache, scale, max_levels):
        """Level tables of :func:`kernels.detect.hog_pyramid_scores` for an ``H x W`` image
        (kept: a video's frames share them)."""
        key = (H, W, stride, pad, cache, check_scale_factor(scale),
               check_int(max_levels, "max_levels", minimum=1))
        plan = self._plans.get(key)          # get, not "in" then []: another thread may clear
        if plan is not None:
            return plan
        d = self.descriptor
        ww, wh = d.win_size
        bw, bh = d.block_size
        scales = pyramid_scales((W, H), (ww, wh), scale, max_levels)
        rows, yofs, ycoef, xofs, xcoef, ymaps, xmaps = [], [], [], [], [], [], []
        starts = np.zeros(4, np.int64)                  # next free index of each concatenation
        n_windows = pixels = 0
        for s in scales:
            Ho, Wo = round(H / s), round(W / s)         # cvRound, half to even
            Hp, Wp = Ho + 2 * pad[1], Wo + 2 * pad[0]
            nwy, nwx = (Hp - wh) // stride[1] + 1, (Wp - ww) // stride[0] + 1
            P, Q = (Hp - bh) // cache[1] + 1, (Wp - bw) // cache[0] + 1
            rows.append((Ho, Wo, *starts, P, Q, nwy, nwx, n_windows))
            o, c = axis_coefficients(H, Ho)
            yofs.append(o)
            ycoef.append(c)
            o, c = axis_coefficients(W, Wo)
            xofs.append(o)
            xcoef.append(c)
            ymap, xmap = d._border_maps(Ho, Wo, pad)
            ymaps.append(ymap)
            xmaps.append(xmap)
            starts += (Ho, Wo, Hp + 2, Wp + 2)
            n_windows += nwy * nwx
            pixels += Hp * Wp
        levels = np.array(rows, np.int64).reshape(-1, 11)
        cat = np.concatenate
        plan = {"levels": levels,
                "order": np.argsort(-(levels[:, 0] * levels[:, 1]), kind="stable"),
                "coefficients": (cat(yofs), cat(ycoef), cat(xofs), cat(xcoef)),
                "maps": (cat(ymaps), cat(xmaps)),
                "scales": np.array(scales),
                "window_w": np.array([round(ww * s) for s in scales], np.int64),
                "window_h": np.array([round(wh * s) for s in scales], np.int64),
                "n_windows": n_windows, "pixels": pixels}
        if len(self._plans) > 16:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def detect_multiscale(self, image, hit_threshold: float = 0.0, win_stride=None,
                          padding=None, scale: float = DEFAULT_SCALE,
                          group_threshold: int = DEFAULT_GROUP_THRESHOLD,
                          max_levels: int = MAX_LEVELS):
        """OpenCV's ``HOGDescriptor.detectMultiScale``: candidates merged by grouping.

        Parameters are OpenCV's (``hitThreshold``, ``winStride``, ``padding``, ``scale``,
        ``finalThreshold`` -> ``group_threshold``); the candidates of :meth:`candidates` are
        merged with :func:`~cvcore.detect.group_rectangles` (``eps = 0.2``, each group's best
        score), keeping groups of more than ``group_threshold`` windows (0: no merging), then
        cut to the image (OpenCV's ``clipObjects``; rectangles left empty are dropped).

        Returns
        -------
        rects : (K, 4) int64 ``(x, y, w, h)``; empty when nothing is found
        scores : (K,) float64
        """
        group_threshold = check_int(group_threshold, "group_threshold", minimum=0)
        rects, scores = self.candidates(image, hit_threshold, win_stride, padding, scale,
                                        max_levels)
        rects, scores = group_rectangles(rects, group_threshold, GROUP_EPS, scores=scores)
        H, W = np.shape(image)[:2]
        return clip_rects(rects, scores, W, H)

    def detect(self, image, hit_threshold: float = 0.0, win_stride=None, padding=None,
               scale: float = DEFAULT_SCALE, iou_threshold: float = 0.3,
               max_levels: int = MAX_LEVELS):
        """Candidates merged by greedy non-maximum suppression (Dalal 2006, ch. 5).

        Returns
        -------
        boxes : (K, 4) float64 ``(x1, y1, x2, y2)``, by decreasing score; empty when nothing
            is found
        scores : (K,) float64
        """
        rects, scores = self.candidates(image, hit_threshold, win_stride, padding, scale,
                                        max_levels)
        boxes = rects_to_boxes(rects)
        keep = nms(boxes, scores, iou_threshold)
        return boxes[keep], scores[keep]

    def __repr__(self):
        return f"HOGDetector({self.descriptor!r}, bias={self.bias:.4g})"
