"""Whole models from data to predictions: HOG + classical classifiers, and residual CNNs.

A trained model is one ``model.npz`` (written atomically through
:func:`cvcore.train.checkpoint.save_state`, no pickle) holding everything needed to predict on new
images: the model kind, class names, input size and colour mode, feature or normalisation
parameters, the weights, and the calibration temperature fitted on the validation split.
:func:`load_model` rebuilds it and :meth:`TrainedModel.predict_proba` takes raw ``uint8`` images
of any size and returns calibrated probabilities (optionally averaged over test-time views).

Models
------
``hog-svm``, ``hog-linear``, ``hog-knn``
    HOG features (Dalal & Triggs 2005; :func:`cvcore.features.hog_batch`) standardised per
    dimension, then :class:`~cvcore.classify.LinearSVM`, :class:`~cvcore.classify.SoftmaxRegression`
    or :class:`~cvcore.classify.KNeighborsClassifier`.
``resnet20``, ``resnet32``, ``resnet56``
    CIFAR-style residual networks (He et al. 2016, sec. 4.2) trained by :class:`Trainer` with
    SGD (Nesterov momentum), a one-cycle schedule, random horizontal flips and padded crops.
``hog-detector``
    A sliding-window object detector (HOG + linear SVM with hard-negative mining,
    :func:`cvcore.detect.train_hog_detector`) trained on annotated photos; it finds boxes
    (:meth:`TrainedModel.detector`) instead of predicting classes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvcore.train.checkpoint import load_state, save_state

__all__ = ["HOG_MODELS", "CNN_MODELS", "DETECTOR_MODELS", "MODELS", "HOGParams", "TrainedModel",
           "load_model", "prepare_images", "stratified_split", "top_classes"]

HOG_MODELS = ("hog-svm", "hog-linear", "hog-knn")
# the ImageNet-size networks that start from pretrained weights (cvcore.train.transfer)
TRANSFER_MODELS = ("efficientnet-lite0", "resnet18", "resnet50")
CNN_MODELS = ("resnet20", "resnet32", "resnet56") + TRANSFER_MODELS
DETECTOR_MODELS = ("hog-detector",)
MODELS = HOG_MODELS + CNN_MODELS + DETECTOR_MODELS
MODEL_FORMAT = "cvcore-model-1"
#: Zero padding of the training crops of the CNNs (He et al. 2016, sec. 4.2: "4 pixels are
#: padded on each side").
STANDARD_CROP_PADDING = 4
#: A k-NN vote share can be 0; its log is taken from here.
PROBABILITY_FLOOR = 1e-300


@dataclass
class HOGParams:
    """HOG features at several cell sizes, concatenated (a two-level HOG pyramid).

    The defaults suit small images such as 28x28 Fashion-MNIST: 4x4-pixel cells (7x7 cells, 6x6
    blocks of 2x2: 1296 values) and 7x7-pixel cells (4x4 cells, 3x3 blocks: 324 values), on the
    square root of the image (Dalal & Triggs 2005, sec. 6.1). They were chosen on a validation
    split of the Fashion-MNIST training set (50 000 / 10 000, seed 0, linear SVM, C = 0.003):
    4x4 cells alone 88.9%, with 3x3 blocks 89.0%, 12 orientations 88.95%, the square root
    89.2%, both cell sizes 89.5%, both with the square root 89.75%.
    """
    cell_sizes: tuple = ((4, 4), (7, 7))
    orientations: int = 9
    cells_per_block: tuple = (2, 2)
    block_norm: str = "L2-Hys"
    transform_sqrt: bool = True

    def as_dict(self) -> dict:
        return {"cell_sizes": [list(c) for c in self.cell_sizes],
                "orientations": self.orientations, "cells_per_block": list(self.cells_per_block),
                "block_norm": self.block_norm, "transform_sqrt": self.transform_sqrt}


def prepare_images(images, size, mode: str, crop_fraction=None) -> np.ndarray:
    """Bring raw images to a model's input: colour mode, then size, as uint8 (N, H, W[, 3]).

    ``images`` is a uint8 array (N, H, W[, 3]) already at ``size``, or a list of uint8 images of
    any size (as :func:`cvcore.imread` returns them), which are converted and resized (area
    interpolation when shrinking, bilinear when enlarging); with ``crop_fraction`` (the
    pretrained models' view) the aspect ratio is kept and the centre cut out
    (:func:`cvcore.preprocess.resize_center_crop`).
    """
    from cvcore.preprocess import gray2rgb, resize, rgb2gray
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and \
            images.shape[1:3] == tuple(size) and (images.ndim == 3) == (mode == "gray"):
        return images
    out = []
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.dtype != np.uint8:
            raise TypeError(f"image {i} has dtype {img.dtype}; expected uint8")
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        if mode == "gray" and img.ndim == 3:
            img = np.round(rgb2gray(img.astype(np.float32) / 255) * 255).astype(np.uint8)
        elif mode == "rgb" and img.ndim == 2:
            img = gray2rgb(img)
        if img.shape[:2] != tuple(size) and crop_fraction is not None:
            from cvcore.preprocess.geometry import resize_center_crop
            img = np.clip(np.round(resize_center_crop(img, tuple(size), crop_fraction)), 0,
                          255).astype(np.uint8)
        elif img.shape[:2] != tuple(size):
            shrink = img.shape[0] > size[0] or img.shape[1] > size[1]
            img = resize(img.astype(np.float32), tuple(size),
                         interpolation="area" if shrink else "bilinear")
            img = np.clip(np.round(img), 0, 255).astype(np.uint8)
        out.append(img)
    return np.stack(out)


@dataclass
class TrainedModel:
    """A trained model ready to predict: see the module docstring for the kinds."""
    kind: str
    class_names: list
    size: tuple
    mode: str
    params: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)
    _net: object = None
    _clf: object = None

    # -- building the predictor ---------------------------------------------------------------
    def _classifier(self):
        if self._clf is None:
            from cvcore.classify import load_classifier
            self._clf = load_classifier(self.arrays["classifier"])
        return self._clf

    def _network(self):
        if self._net is None:
            from cvcore import nn
            net = getattr(nn, self.kind.replace("-", "_"))(
                num_classes=len(self.class_names), in_channels=1 if self.mode == "gray" else 3)
            net.load_state_dict(self.arrays["state_dict"])
            net.eval()
            self._net = net
        return self._net

    # -- inputs -------------------------------------------------------------------------------
    @property
    def crop_fraction(self):
        """The centre-crop fraction of the pretrained models' input view (None: plain resize)."""
        return self.params.get("preprocess", {}).get("crop_fraction")

    def features(self, images) -> np.ndarray:
        """Standardised HOG features (N, D) of uint8 images at the model's size (HOG models)."""
        mean, std = self.arrays["feature_mean"], self.arrays["feature_std"]
        return (self.hog_features(images) - mean) / std

    def hog_features(self, images) -> np.ndarray:
        """The HOG features (N, D) of every cell size, concatenated, before standardisation."""
        from cvcore.features import hog_batch
        hp = self.params["hog"]
        x = np.asarray(images, dtype=np.float32) / 255.0
        return np.hstack([
            hog_batch(x, orientations=hp["orientations"], pixels_per_cell=tuple(cell),
                      cells_per_block=tuple(hp["cells_per_block"]), block_norm=hp["block_norm"],
                      transform_sqrt=hp["transform_sqrt"])
            for cell in hp["cell_sizes"]])

    def network_input(self, images) -> np.ndarray:
        """Normalised float32 NCHW batch from uint8 images at the model's size (CNN models)."""
        from cvcore.io.datasets import to_nchw
        x = to_nchw(images)
        mean = self.arrays["mean"].reshape(1, -1, 1, 1)
        std = self.arrays["std"].reshape(1, -1, 1, 1)
        return ((x - mean) / std).astype(np.float32)

    def detector(self):
        """The :class:`cvcore.detect.ObjectDetector` of a ``hog-detector`` model."""
        if self.kind not in DETECTOR_MODELS:
            raise ValueError(f"a {self.kind} model classifies images; it has no detector")
        if self._clf is None:
            from cvcore.detect.training import ObjectDetector
            self._clf = ObjectDetector.from_state(self.params["detector"],
                                                  self.arrays["detector"])
        return self._clf

    # -- predicting ---------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        """The calibration temperature stored with the model (1.0: not calibrated)."""
        return float((self.params.get("calibration") or {}).get("temperature", 1.0))

    def _augmentation(self) -> dict:
        """The training augmentation of a CNN: ``{"padding": int, "flip": bool}``. Files written
        before it was recorded were all trained with the standard recipe."""
        return self.params.get("augment", {"padding": STANDARD_CROP_PADDING, "flip": True})

    def scores(self, images, batch_size: int = 500) -> np.ndarray:
        """Uncalibrated scores (N, n_classes) float64 whose softmax is the model's probability:
        a CNN's logits; the linear classifiers' decision scores (divided by the SVM's own
        training-set temperature), computed in float64 so that no probability underflows; for
        k-NN the log of the vote shares (floored at :data:`PROBABILITY_FLOOR`). Images as for
        :meth:`predict_proba`."""
        if self.kind in DETECTOR_MODELS:
            raise ValueError(f"a {self.kind} model finds boxes, it does not classify images: "
                             "use `cvcore detect` / TrainedModel.detector()")
        images = prepare_images(images, self.size, self.mode, self.crop_fraction)
        if self.kind in HOG_MODELS:
            clf = self._classifier()
            feats = self.features(images)
            if self.kind == "hog-knn":
                proba = clf.predict_proba(feats).astype(np.float64)
                return np.log(np.maximum(proba, PROBABILITY_FLOOR))
            scores = clf.decision_function(feats).astype(np.float64)
            return scores / float(getattr(clf, "temperature_", 1.0))
        from cvcore.train.loop import predict_batches
        net, x = self._network(), self.network_input(images)
        return predict_batches(net, x, batch_size).astype(np.float64)

    def predict_proba(self, images, batch_size: int = 500, *, calibrated: bool = True,
                      tta: bool = False) -> np.ndarray:
        """Class probabilities (N, n_classes) of raw uint8 images (see :func:`prepare_images`).

        Parameters
        ----------
        calibrated : bool
            Apply the temperature stored by :meth:`calibrate` (``softmax(scores / T)``); the
            default, so that every caller (predict, eval, batch jobs, the server) gets
            calibrated probabilities. False gives the model's raw probabilities.
        tta : bool
            CNNs: the mean of the (calibrated) probabilities over the flips and crops the model
            was trained with (:mod:`cvcore.train.tta`), ten forward passes per image for the
            standard recipe. The HOG models are trained without augmentation and refuse it.
        """
        from cvcore.classify.calibration import temperature_scale
        if self.kind in DETECTOR_MODELS:
            return self.scores(images)      # refuses, with the reason
        t = self.temperature if calibrated else 1.0
        if self.kind in HOG_MODELS:
            if tta:
                raise ValueError(f"test-time augmentation needs a model trained with "
                                 f"augmentation; {self.kind} is trained on unaugmented images")
            if t == 1.0:
                images = prepare_images(images, self.size, self.mode, self.crop_fraction)
                return self._classifier().predict_proba(self.features(images))
            return temperature_scale(self.scores(images), t)
        if not tta:
            return temperature_scale(self.scores(images, batch_size), t)
        return self._predict_proba_tta(images, batch_size, [t])[0]

    def _predict_proba_tta(self, images, batch_size, temperatures) -> list[np.ndarray]:
        """The mean over the test-time views of softmax(logits / t), for each t given (one pass
        over the views serves every temperature)."""
        from cvcore.classify.calibration import temperature_scale
        from cvcore.train.loop import predict_batches
        from cvcore.train.tta import tta_views
        aug = self._augmentation()
        if not aug["padding"] and not aug["flip"]:
            raise ValueError("test-time augmentation needs a model trained with augmentation; "
                             "this one was trained with --no-augment")
        images = prepare_images(images, self.size, self.mode, self.crop_fraction)
        mean = self.arrays["mean"].reshape(1, -1, 1, 1)
        std = self.arrays["std"].reshape(1, -1, 1, 1)
        net = self._network()
        out = [[] for _ in temperatures]
        for i in range(0, len(images), batch_size):
            x01 = self.network_input(images[i:i + batch_size]) * std + mean
            totals, views = [0.0] * len(temperatures), 0
            for view in tta_views(x01, padding=aug["padding"], flip=aug["flip"]):
                logits = predict_batches(net, ((view - mean) / std).astype(np.float32),
                                         batch_size)
                totals = [tot + temperature_scale(logits, t) for tot, t in zip(totals, temperatures)]
                views += 1
            for chunks, tot in zip(out, totals):
                chunks.append(tot / views)
        return [np.concatenate(chunks) for chunks in out]

    def proba_pair(self, images, batch_size: int = 500, tta: bool = False):
        """``(calibrated, uncalibrated)`` probabilities, computed from one pass of the model."""
        from cvcore.classify.calibration import temperature_scale
        if tta:
            if self.kind in HOG_MODELS:
                return self.predict_proba(images, tta=True)   # refuses, with the reason
            return tuple(self._predict_proba_tta(images, batch_size, [self.temperature, 1.0]))
        if self.kind in HOG_MODELS and self.temperature == 1.0:
            proba = self.predict_proba(images, batch_size)
            return proba, proba
        scores = self.scores(images, batch_size)
        return temperature_scale(scores, self.temperature), temperature_scale(scores, 1.0)

    def calibrate(self, images, labels) -> dict:
        """Fit the temperature on held-out ``(images, labels)`` and store it with the model.

        Temperature scaling (Guo et al. 2017; :func:`cvcore.classify.fit_temperature`) on the
        uncalibrated :meth:`scores`: for the CNNs their logits, for the linear HOG models their
        decision scores (the multi-class Platt scaling of :mod:`cvcore.classify.calibration`). Returns (and keeps in
        ``params["calibration"]``, saved in ``model.npz``) the temperature with the held-out NLL
        and ECE before and after. k-NN vote shares have no scores to scale and are refused.
        """
        from cvcore.classify.calibration import fit_temperature, nll, temperature_scale
        from cvcore.train.metrics import expected_calibration_error
        if self.kind == "hog-knn":
            raise ValueError("hog-knn's probabilities are vote shares, not a softmax of scores: "
                             "temperature scaling does not apply")
        labels = np.asarray(labels)
        scores = self.scores(images)
        if len(labels) != len(scores):
            raise ValueError(f"{len(labels)} labels for {len(scores)} images")
        t = fit_temperature(scores, labels)
        self.params["calibration"] = {
            "method": "temperature", "temperature": t, "n": int(len(labels)),
            "nll_before": nll(scores, labels), "nll_after": nll(scores, labels, t),
            "ece_before": expected_calibration_error(labels, temperature_scale(scores, 1.0)),
            "ece_after": expected_calibration_error(labels, temperature_scale(scores, t))}
        return dict(self.params["calibration"])

    def embed(self, images, batch_size: int = 500) -> np.ndarray:
        """Penultimate-layer embeddings (N, C) float32 of raw uint8 images (CNN models): the
        network's globally pooled features (:meth:`cvcore.nn.ResNet.embed`), in eval mode under
        :func:`cvcore.nn.no_grad`, ``batch_size`` images at a time."""
        from cvcore.nn import no_grad
        if self.kind not in CNN_MODELS:
            raise ValueError(f"a {self.kind} model has no network to embed images with; use a "
                             f"CNN model ({', '.join(CNN_MODELS)})")
        x = self.network_input(prepare_images(images, self.size, self.mode, self.crop_fraction))
        net = self._network()
        with no_grad():
            return np.concatenate([net.embed(x[i:i + batch_size]).astype(np.float32)
                                   for i in range(0, len(x), batch_size)])

    def evaluate(self, images, labels, *, tta: bool = False, min_confidence=None) -> dict:
        """:func:`cvcore.train.metrics.evaluate` on ``(images, labels)``, plus ``seconds``."""
        return self.assess(images, labels, tta=tta, min_confidence=min_confidence)[0]

    def assess(self, images, labels, *, tta: bool = False, min_confidence=None):
        """Evaluate on ``(images, labels)``; returns ``(metrics, proba, proba_uncalibrated)``.

        ``metrics`` is :func:`cvcore.train.metrics.evaluate`'s dict of the (calibrated,
        optionally test-time augmented) probabilities, with ``seconds``, ``tta``, and when a
        temperature is stored ``calibration`` (the temperature, the ECE and adaptive ECE of the
        uncalibrated probabilities); with ``min_confidence``, ``selective`` (coverage and
        accuracy of the kept predictions, :func:`cvcore.train.metrics.selective_accuracy`).
        """
        from cvcore.train.metrics import (adaptive_calibration_error, check_min_confidence,
                                          evaluate, expected_calibration_error,
                                          selective_accuracy)
        if min_confidence is not None:
            check_min_confidence(min_confidence)
        t0 = time.perf_counter()
        proba, raw = self.proba_pair(images, tta=tta)
        out = evaluate(labels, proba, self.class_names)
        out["seconds"] = time.perf_counter() - t0
        out["tta"] = bool(tta)
        if "calibration" in self.params:
            out["calibration"] = {
                "method": self.params["calibration"]["method"], "temperature": self.temperature,
                "ece_uncalibrated": expected_calibration_error(labels, raw),
                "adaptive_ece_uncalibrated": adaptive_calibration_error(labels, raw)}
        if min_confidence is not None:
            out["selective"] = selective_accuracy(labels, proba, min_confidence)
        return out, proba, raw

    # -- files --------------------------------------------------------------------------------
    def save(self, path) -> None:
        save_state(path, {"format": MODEL_FORMAT, "kind": self.kind,
                          "class_names": list(self.class_names), "size": list(self.size),
                          "mode": self.mode, "params": self.params, "arrays": self.arrays})


def load_model(path) -> TrainedModel:
    """Load a ``model.npz`` written by :meth:`TrainedModel.save`, checked against its kind's
    schema (:data:`MODEL_SCHEMAS`): every array present with the shape and dtype the kind
    requires and the class names matching the classifier, else one ``ValueError`` naming the
    file and the array (a tampered file must not load and predict nonsense)."""
    state = load_state(path)
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        fmt = state.get("format") if isinstance(state, dict) else None
        raise ValueError(f"{path} is not a cvcore model file (format {fmt!r})")
    if state.get("kind") not in MODELS:
        raise ValueError(f"{path}: unknown model kind {state.get('kind')!r}")
    model = _check_common(path, state)
    check = MODEL_SCHEMAS.get(model.kind)
    if check is not None:
        check(path, model)
    return model


class _Schema:
    """Checks of one model file, each failure one ``ValueError`` naming the file and field."""

    def __init__(self, path):
        self.path = path

    def fail(self, name, problem):
        raise ValueError(f"{self.path}: {name} {problem}; the file is damaged or was not "
                         f"written by `cvcore train`")

    def array(self, container, key, name, shape=None, kinds="f", finite=True,
              positive=False) -> np.ndarray:
        """``container[key]``: an ndarray of a dtype kind in ``kinds`` and ``shape`` (``None``
        entries free); returns it."""
        if not isinstance(container, dict) or key not in container:
            self.fail(name, "is missing")
        a = container[key]
        if not isinstance(a, np.ndarray) or a.dtype.kind not in kinds:
            self.fail(name, f"must be an array of kind {kinds!r}, got "
                            f"{getattr(a, 'dtype', type(a).__name__)}")
        if shape is not None and (a.ndim != len(shape) or any(
                want is not None and got != want for got, want in zip(a.shape, shape))):
            want = tuple("*" if w is None else w for w in shape)
            self.fail(name, f"has shape {a.shape}, expected {want}")
        if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
            self.fail(name, "holds NaN or infinity")
        if positive and a.size and not (a > 0).all():
            self.fail(name, "must be positive")
        return a


def _check_common(path, state) -> TrainedModel:
    sc = _Schema(path)
    names = state.get("class_names")
    if not isinstance(names, list) or not names or \
            not all(isinstance(n, str) for n in names):
        sc.fail("class_names", "must be a non-empty list of strings")
    if len(set(names)) != len(names):
        sc.fail("class_names", "holds a name twice")
    size = state.get("size")
    if not isinstance(size, list) or len(size) != 2 or \
            not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535
                    for v in size):
        sc.fail("size", f"must be [height, width] of positive integers, got {size!r}")
    if state.get("mode") not in ("gray", "rgb"):
        sc.fail("mode", f"must be 'gray' or 'rgb', got {state.get('mode')!r}")
    for key in ("params", "arrays"):
        if not isinstance(state.get(key), dict):
            sc.fail(key, "is missing")
    calibration = state["params"].get("calibration")        # optional (older files lack it)
    if calibration is not None:
        t = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t) \
                or t <= 0:
            sc.fail("params.calibration.temperature", f"must be a positive number, got {t!r}")
    return TrainedModel(state["kind"], names, tuple(size), state["mode"], state["params"],
                        state["arrays"])


def _check_hog(path, model: TrainedModel) -> None:
    """HOG + classifier: the standardisation vectors and the classifier's arrays must fit the
    HOG length of the model's image size, and the classifier must know every class name."""
    from cvcore.classify import load_classifier
    sc = _Schema(path)
    try:
        D = model.hog_features(np.zeros((1,) + tuple(model.size), np.uint8)).shape[1]
    except (KeyError, TypeError, ValueError) as exc:
        sc.fail("params.hog", f"does not describe HOG features of a {model.size} image ({exc})")
    arrays = model.arrays
    sc.array(arrays, "feature_mean", "arrays.feature_mean", (D,))
    sc.array(arrays, "feature_std", "arrays.feature_std", (D,), positive=True)
    clf = arrays.get("classifier")
    if not isinstance(clf, dict):
        sc.fail("arrays.classifier", "is missing")
    K = len(model.class_names)
    classes = sc.array(clf, "classes_", "arrays.classifier.classes_", (None,), kinds="iu")
    if not np.array_equal(classes, np.arange(K)):
        sc.fail("arrays.classifier.classes_", f"is {classes.tolist()[:12]}, but the model has "
                                              f"{K} class names (labels 0..{K - 1})")
    kind = str(np.asarray(clf.get("kind", "")))
    rows = 1 if K == 2 else K
    if kind in ("linear-svm", "softmax"):
        if kind == "softmax":
            rows = K
        sc.array(clf, "coef_", "arrays.classifier.coef_", (rows, D))
        sc.array(clf, "intercept_", "arrays.classifier.intercept_", (rows,))
        if kind == "linear-svm":
            sc.array(clf, "temperature_", "arrays.classifier.temperature_", (), positive=True)
    elif kind == "knn":
        X = sc.array(clf, "X_", "arrays.classifier.X_", (None, D))
        y = sc.array(clf, "y_", "arrays.classifier.y_", (X.shape[0],), kinds="iu")
        if y.size and (y.min() < 0 or y.max() >= K):
            sc.fail("arrays.classifier.y_", f"holds labels outside 0..{K - 1}")
    else:
        sc.fail("arrays.classifier.kind", f"is {kind!r}, not a cvcore classifier")
    try:
        load_classifier(clf)
    except (KeyError, TypeError, ValueError) as exc:
        sc.fail("arrays.classifier", f"cannot be rebuilt ({exc})")


def _check_cnn(path, model: TrainedModel) -> None:
    """Residual networks: input normalisation per channel, and every tensor of the network's
    ``state_dict`` with the shape and dtype the architecture has (the last layer's rows = the
    class names)."""
    from cvcore import nn
    sc = _Schema(path)
    C = 1 if model.mode == "gray" else 3
    sc.array(model.arrays, "mean", "arrays.mean", (C,))
    sc.array(model.arrays, "std", "arrays.std", (C,), positive=True)
    sd = model.arrays.get("state_dict")
    if not isinstance(sd, dict):
        sc.fail("arrays.state_dict", "is missing")
    reference = getattr(nn, model.kind.replace("-", "_"))(num_classes=len(model.class_names),
                                                          in_channels=C)
    for key, want in reference.state_dict().items():
        want = np.asarray(want)
        got = sc.array(sd, key, f"arrays.state_dict.{key}", want.shape,
                       kinds=want.dtype.kind)
        del got
    extra = sorted(set(sd) - set(reference.state_dict()))
    if extra:
        sc.fail(f"arrays.state_dict.{extra[0]}", f"is not a tensor of {model.kind}")


def _check_detector(path, model: TrainedModel) -> None:
    """HOG window detector: the window geometry, the scalars of detection, and the weights
    with the descriptor length of that window (the model's size is the window's)."""
    import math

    from cvcore.detect.training import ObjectDetector
    sc = _Schema(path)
    params, arrays = model.params.get("detector"), model.arrays.get("detector")
    if not isinstance(params, dict):
        sc.fail("params.detector", "is missing")
    if not isinstance(arrays, dict):
        sc.fail("arrays.detector", "is missing")
    for key in ("win_size", "block_size", "block_stride", "cell_size"):
        v = params.get(key)
        if not isinstance(v, list) or len(v) != 2 or not all(
                isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 65535 for n in v):
            sc.fail(f"params.detector.{key}", f"must be [width, height] of positive integers, "
                                              f"got {v!r}")
    for key in ("nbins", "scale", "threshold", "bias"):
        v = params.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            sc.fail(f"params.detector.{key}", f"must be a finite number, got {v!r}")
    if params["scale"] <= 1:
        sc.fail("params.detector.scale", f"must be greater than 1 (the pyramid's step), got "
                                         f"{params['scale']!r}")
    box = params.get("object_box")
    if not isinstance(box, list) or len(box) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in box):
        sc.fail("params.detector.object_box", f"must be [x1, y1, x2, y2], got {box!r}")
    ww, wh = params["win_size"]
    if tuple(model.size) != (wh, ww):
        sc.fail("size", f"is {list(model.size)}, but the detector's window is {wh} x {ww}")
    sc.array(arrays, "weights", "arrays.detector.weights", (None,))
    try:
        model._clf = ObjectDetector.from_state(params, arrays)
    except (TypeError, ValueError) as exc:
        name = "arrays.detector.weights" if "weights" in str(exc) else "params.detector"
        sc.fail(name, f"does not make a detector ({exc})")


def _check_preprocess(path, model: TrainedModel) -> None:
    """The optional view of pretrained weights: a centre-crop fraction in (0, 1]."""
    import math
    fraction = model.params.get("preprocess", {}).get("crop_fraction")
    if fraction is not None and (isinstance(fraction, bool) or not isinstance(
            fraction, (int, float)) or not (math.isfinite(fraction) and 0 < fraction <= 1)):
        _Schema(path).fail("params.preprocess.crop_fraction",
                           f"must be a number in (0, 1], got {fraction!r}")


def _check_cnn_file(path, model: TrainedModel) -> None:
    _check_preprocess(path, model)
    _check_cnn(path, model)


#: kind -> check(path, model) run by :func:`load_model` after the common fields. Rooms that add
#: a kind register its check here; fields a check does not name (optional ones such as a
#: calibration temperature) pass through untouched.
MODEL_SCHEMAS = {kind: _check_hog for kind in HOG_MODELS}
MODEL_SCHEMAS.update({kind: _check_cnn_file for kind in CNN_MODELS})
MODEL_SCHEMAS.update({kind: _check_detector for kind in DETECTOR_MODELS})


def check_class_coverage(y_train, class_names) -> None:
    """Refuse training when a class has no training image: its label would have no row in the
    classifier, and the class names would no longer line up with the outputs."""
    counts = np.bincount(np.asarray(y_train, np.int64), minlength=len(class_names))
    if len(counts) > len(class_names):
        raise ValueError(f"labels go up to {len(counts) - 1} but there are only "
                         f"{len(class_names)} class names")
    empty = [class_names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise ValueError(f"class{'es' if len(empty) > 1 else ''} {', '.join(map(repr, empty))} "
                         f"ha{'ve' if len(empty) > 1 else 's'} no readable training image; add "
                         f"images or remove the folder{'s' if len(empty) > 1 else ''}")


def stratified_split(labels, fraction: float, seed: int = 0):
    """Indices ``(keep, held)``, each sorted: a seeded share ``fraction`` of every class held out
    (``round(fraction * n_c)``, at least one per class of two or more images, never all)."""
    labels = np.asarray(labels)
    if isinstance(fraction, bool) or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = int(round(fraction * len(idx)))
        n_held = min(max(n_held, 1), len(idx) - 1) if len(idx) >= 2 else 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def top_classes(proba, class_names, k: int) -> list[list[dict]]:
    """The ``k`` most probable classes of each row of ``proba`` (N, n_classes), most probable
    first, ties in class order: ``[[{"class": name, "probability": p}, ...], ...]``.

    ``k`` is clipped to ``1..n_classes``. This is the row format of ``cvcore predict --json``
    and of the batch job's output (:func:`cvcore.batch.predict_folder`).

    >>> top_classes(np.array([[0.2, 0.5, 0.3]]), ["a", "b", "c"], 2)
    [[{'class': 'b', 'probability': 0.5}, {'class': 'c', 'probability': 0.3}]]
    """
    proba = np.asarray(proba)
    k = max(1, min(int(k), proba.shape[1]))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [[{"class": class_names[i], "probability": float(p[i])} for i in top]
            for p, top in zip(proba, order)]


def prediction_rows(proba, class_names, k: int, min_confidence: float | None = None) -> list:
    """What ``cvcore predict --json`` and the batch jobs say about each image: ``{"label": top-1
    class, or "unknown" below min_confidence, "confidence": top-1 probability, "top": the k most
    probable classes (:func:`top_classes`)}``.

    >>> prediction_rows(np.array([[0.55, 0.45]]), ["a", "b"], 1, min_confidence=0.6)
    [{'label': 'unknown', 'confidence': 0.55, 'top': [{'class': 'a', 'probability': 0.55}]}]
    """
    from cvcore.train.metrics import UNKNOWN, reject
    labels = reject(proba, 0.0 if min_confidence is None else min_confidence)
    return [{"label": "unknown" if label == UNKNOWN else class_names[label],
             "confidence": float(np.max(p)), "top": top}
            for p, label, top in zip(proba, labels, top_classes(proba, class_names, k))]


def _mode_and_size(x_train):
    return ("gray" if x_train.ndim == 3 else "rgb"), tuple(x_train.shape[1:3])


def train_hog_model(kind, x_train, y_train, class_names, hog: HOGParams | None = None,
                    C: float = 0.003, alpha: float = 1e-4, k: int = 5, log=print,
                    calibration_fraction: float = 0.0, seed: int = 0,
                    features=None) -> TrainedModel:
    """Fit a HOG + classifier model on uint8 images (N, H, W[, 3]); ``features``: their
    :meth:`TrainedModel.hog_features` if already computed (a model search reuses them).

    With ``calibration_fraction > 0`` (linear models only), the model is calibrated by
    temperature scaling without giving up training images: a seeded, class-stratified share is
    held out (:func:`stratified_split`), a first model is fitted on the rest and its temperature
    fitted on the held-out share; then the model is refitted on every image and keeps that
    temperature (the ``ensemble=False`` scheme of scikit-learn's ``CalibratedClassifierCV``).
    The training cost doubles.
    """
    check_class_coverage(y_train, class_names)
    if calibration_fraction and kind != "hog-knn":
        fit, held = stratified_split(y_train, calibration_fraction, seed)
        probe = train_hog_model(kind, x_train[fit], y_train[fit], class_names, hog, C, alpha, k,
                                log)
        calibration = probe.calibrate(x_train[held], y_train[held])
        log(f"temperature {calibration['temperature']:.3f} on {len(held)} held-out images: "
            f"ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}")
        model = train_hog_model(kind, x_train, y_train, class_names, hog, C, alpha, k, log)
        model.params["calibration"] = dict(calibration, refit=True)
        return model
    mode, size = _mode_and_size(x_train)
    if mode != "gray":
        x_train = prepare_images(list(x_train), size, "gray")
        mode = "gray"
    hog = hog or HOGParams()
    model = TrainedModel(kind, list(class_names), size, mode, {"hog": hog.as_dict()})
    t0 = time.perf_counter()
    feats = model.hog_features(x_train) if features is None else features
    log(f"HOG features {feats.shape} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    clf, mean, std = train_hog_classifier(kind, feats, y_train, C, alpha, k)
    model.arrays = {"feature_mean": mean, "feature_std": std}
    model.arrays["classifier"] = clf.state()
    model.params["classifier"] = {"C": C, "alpha": alpha, "k": k}
    model._clf = clf
    log(f"{type(clf).__name__} fitted in {time.perf_counter() - t0:.1f} s")
    return model


def train_detector_model(annotations, C: float = 0.1, rounds: int = 2, seed: int = 0,
                         log=print) -> TrainedModel:
    """Train a ``hog-detector`` on annotated photos (:func:`cvcore.detect.train_hog_detector`)."""
    from cvcore.detect.training import train_hog_detector
    detector = train_hog_detector(annotations, C=C, rounds=rounds, seed=seed, log=log)
    params, arrays = detector.state()
    labels = sorted({lab for a in annotations for lab in a.labels}) or ["object"]
    ww, wh = detector.window_size
    model = TrainedModel("hog-detector", labels, (wh, ww), "gray",
                         {"detector": params, "train": {"C": C, "rounds": rounds, "seed": seed}},
                         {"detector": arrays})
    model._clf = detector
    return model


def train_hog_classifier(kind, feats, y, C: float = 0.003, alpha: float = 1e-4, k: int = 5):
    """Standardise HOG features (N, D) per dimension and fit the classifier of a HOG model kind.

    Returns ``(classifier, mean, std)``, the last two float32 (D,): a model's features are
    ``(hog - mean) / std``.
    """
    from cvcore.classify import KNeighborsClassifier, LinearSVM, SoftmaxRegression
    mean = feats.mean(axis=0)
    std = feats.std(axis=0) + 1e-6
    x = ((feats - mean) / std).astype(np.float32)
    if kind == "hog-svm":
        clf = LinearSVM(C=C)
    elif kind == "hog-linear":
        clf = SoftmaxRegression(alpha=alpha)
    else:
        clf = KNeighborsClassifier(k=k)
    clf.fit(x, y)
    return clf, mean.astype(np.float32), std.astype(np.float32)


def train_cnn_model(kind, x_train, y_train, x_val, y_val, class_names, config, out_dir=None,
                    resume: bool = False, augment: bool = True, progress: bool = True):
    """Train a residual network on uint8 images; returns (TrainedModel, history).

    With a validation split, the finished model is calibrated on it by temperature scaling
    (:meth:`TrainedModel.calibrate`), so its ``predict_proba`` gives calibrated probabilities.
    """
    from cvcore import nn
    from cvcore.io.datasets import to_nchw
    from cvcore.train.loop import Trainer
    check_class_coverage(y_train, class_names)
    mode, size = _mode_and_size(x_train)
    xt = to_nchw(x_train)
    mean = xt.mean(axis=(0, 2, 3)).astype(np.float32)
    std = (xt.std(axis=(0, 2, 3)) + 1e-6).astype(np.float32)
    model = TrainedModel(kind, list(class_names), size, mode, {"train": dict(config.__dict__)},
                         {"mean": mean, "std": std})
    net = getattr(nn, kind)(num_classes=len(class_names), in_channels=xt.shape[1],
                            rng=np.random.default_rng(config.seed))
    aug = _standard_augment(size, mean, std) if augment else None
    trainer = Trainer(net, config, out_dir=out_dir, augment=aug, progress=progress,
                      input_stats=(mean, std))
    history = trainer.fit(model.network_input(x_train), y_train,
                          None if x_val is None else model.network_input(x_val), y_val,
                          resume=resume)
    model.arrays["state_dict"] = dict(net.state_dict())
    model.params["augment"] = {"padding": STANDARD_CROP_PADDING if augment else 0,
                               "flip": bool(augment)}
    net.eval()
    model._net = net
    if x_val is not None and len(x_val):
        model.calibrate(x_val, y_val)
    return model, history


def _standard_augment(size, mean, std):
    """Random horizontal flip and a random crop after 4 pixels of zero padding (He et al. 2016,
    sec. 4.2), seeded per batch.

    The padding is black in the 0..1 image, as in the usual torchvision recipe (pad, then
    normalise), so the normalised batch is mapped back to 0..1, augmented and normalised again.
    """
    from cvcore.augment import Compose, RandomCrop, RandomHorizontalFlip
    pipeline = Compose([RandomCrop(size, padding=STANDARD_CROP_PADDING), RandomHorizontalFlip()])
    mean = mean.reshape(1, -1, 1, 1)
    std = std.reshape(1, -1, 1, 1)

    def augment(x, seed):
        return ((pipeline(x * std + mean, seed=seed) - mean) / std).astype(np.float32)
    return augment


def model_path(out_dir) -> Path:
    return Path(out_dir) / "model.npz"
