"""Whole models from data to predictions: HOG + classical classifiers, and residual CNNs.

A trained model is one ``model.npz`` (written atomically through
:func:`cvcore.train.checkpoint.save_state`, no pickle) holding everything needed to predict on new
images: the model kind, class names, input size and colour mode, feature or normalisation
parameters, and the weights. :func:`load_model` rebuilds it and :meth:`TrainedModel.predict_proba`
takes raw ``uint8`` images of any size.

Models
------
``hog-svm``, ``hog-linear``, ``hog-knn``
    HOG features (Dalal & Triggs 2005; :func:`cvcore.features.hog_batch`) standardised per
    dimension, then :class:`~cvcore.classify.LinearSVM`, :class:`~cvcore.classify.SoftmaxRegression`
    or :class:`~cvcore.classify.KNeighborsClassifier`.
``resnet20``, ``resnet32``, ``resnet56``
    CIFAR-style residual networks (He et al. 2016, sec. 4.2) trained by :class:`Trainer` with
    SGD (Nesterov momentum), a one-cycle schedule, random horizontal flips and padded crops.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvcore.train.checkpoint import load_state, save_state

__all__ = ["HOG_MODELS", "CNN_MODELS", "MODELS", "HOGParams", "TrainedModel",
           "load_model", "prepare_images", "top_classes"]

HOG_MODELS = ("hog-svm", "hog-linear", "hog-knn")
# the ImageNet-size networks that start from pretrained weights (cvcore.train.transfer)
TRANSFER_MODELS = ("efficientnet-lite0", "resnet18", "resnet50")
CNN_MODELS = ("resnet20", "resnet32", "resnet56") + TRANSFER_MODELS
MODELS = HOG_MODELS + CNN_MODELS
MODEL_FORMAT = "cvcore-model-1"


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

    # -- predicting ---------------------------------------------------------------------------
    def predict_proba(self, images, batch_size: int = 500) -> np.ndarray:
        """Class probabilities (N, n_classes) of raw uint8 images (see :func:`prepare_images`)."""
        images = prepare_images(images, self.size, self.mode, self.crop_fraction)
        if self.kind in HOG_MODELS:
            return self._classifier().predict_proba(self.features(images))
        from cvcore.classify.linear import softmax
        from cvcore.train.loop import predict_batches
        logits = predict_batches(self._network(), self.network_input(images), batch_size)
        return softmax(logits.astype(np.float64))

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

    def evaluate(self, images, labels) -> dict:
        """:func:`cvcore.train.metrics.evaluate` on ``(images, labels)``, plus ``seconds``."""
        from cvcore.train.metrics import evaluate
        t0 = time.perf_counter()
        proba = self.predict_proba(images)
        out = evaluate(labels, proba, self.class_names)
        out["seconds"] = time.perf_counter() - t0
        return out

    # -- files --------------------------------------------------------------------------------
    def save(self, path) -> None:
        save_state(path, {"format": MODEL_FORMAT, "kind": self.kind,
                          "class_names": list(self.class_names), "size": list(self.size),
                          "mode": self.mode, "params": self.params, "arrays": self.arrays})


def load_model(path) -> TrainedModel:
    """Load a ``model.npz`` written by :meth:`TrainedModel.save`."""
    state = load_state(path)
    if state.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a cvcore model file (format {state.get('format')!r})")
    if state["kind"] not in MODELS:
        raise ValueError(f"{path}: unknown model kind {state['kind']!r}")
    return TrainedModel(state["kind"], state["class_names"], tuple(state["size"]), state["mode"],
                        state["params"], state["arrays"])


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


def _mode_and_size(x_train):
    return ("gray" if x_train.ndim == 3 else "rgb"), tuple(x_train.shape[1:3])


def train_hog_model(kind, x_train, y_train, class_names, hog: HOGParams | None = None,
                    C: float = 0.003, alpha: float = 1e-4, k: int = 5, log=print,
                    features=None) -> TrainedModel:
    """Fit a HOG + classifier model on uint8 images (N, H, W[, 3]); ``features``: their
    :meth:`TrainedModel.hog_features` if already computed (a model search reuses them)."""
    from cvcore.classify import KNeighborsClassifier, LinearSVM, SoftmaxRegression
    mode, size = _mode_and_size(x_train)
    if mode != "gray":
        x_train = prepare_images(list(x_train), size, "gray")
        mode = "gray"
    hog = hog or HOGParams()
    model = TrainedModel(kind, list(class_names), size, mode, {"hog": hog.as_dict()})
    t0 = time.perf_counter()
    feats = model.hog_features(x_train) if features is None else features
    mean = feats.mean(axis=0)
    std = feats.std(axis=0) + 1e-6
    model.arrays = {"feature_mean": mean.astype(np.float32), "feature_std": std.astype(np.float32)}
    feats = ((feats - mean) / std).astype(np.float32)
    log(f"HOG features {feats.shape} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    if kind == "hog-svm":
        clf = LinearSVM(C=C)
    elif kind == "hog-linear":
        clf = SoftmaxRegression(alpha=alpha)
    else:
        clf = KNeighborsClassifier(k=k)
    clf.fit(feats, y_train)
    model.arrays["classifier"] = clf.state()
    model.params["classifier"] = {"C": C, "alpha": alpha, "k": k}
    model._clf = clf
    log(f"{type(clf).__name__} fitted in {time.perf_counter() - t0:.1f} s")
    return model


def train_cnn_model(kind, x_train, y_train, x_val, y_val, class_names, config, out_dir=None,
                    resume: bool = False, augment: bool = True, progress: bool = True):
    """Train a residual network on uint8 images; returns (TrainedModel, history)."""
    from cvcore import nn
    from cvcore.io.datasets import to_nchw
    from cvcore.train.loop import Trainer
    mode, size = _mode_and_size(x_train)
    xt = to_nchw(x_train)
    mean = xt.mean(axis=(0, 2, 3)).astype(np.float32)
    std = (xt.std(axis=(0, 2, 3)) + 1e-6).astype(np.float32)
    model = TrainedModel(kind, list(class_names), size, mode, {"train": dict(config.__dict__)},
                         {"mean": mean, "std": std})
    net = getattr(nn, kind)(num_classes=len(class_names), in_channels=xt.shape[1],
                            rng=np.random.default_rng(config.seed))
    aug = _standard_augment(size, mean, std) if augment else None
    trainer = Trainer(net, config, out_dir=out_dir, augment=aug, progress=progress)
    history = trainer.fit(model.network_input(x_train), y_train,
                          None if x_val is None else model.network_input(x_val), y_val,
                          resume=resume)
    model.arrays["state_dict"] = dict(net.state_dict())
    net.eval()
    model._net = net
    return model, history


def _standard_augment(size, mean, std):
    """Random horizontal flip and a random crop after 4 pixels of zero padding (He et al. 2016,
    sec. 4.2), seeded per batch.

    The padding is black in the 0..1 image, as in the usual torchvision recipe (pad, then
    normalise), so the normalised batch is mapped back to 0..1, augmented and normalised again.
    """
    from cvcore.augment import Compose, RandomCrop, RandomHorizontalFlip
    pipeline = Compose([RandomCrop(size, padding=4), RandomHorizontalFlip()])
    mean = mean.reshape(1, -1, 1, 1)
    std = std.reshape(1, -1, 1, 1)

    def augment(x, seed):
        return ((pipeline(x * std + mean, seed=seed) - mean) / std).astype(np.float32)
    return augment


def model_path(out_dir) -> Path:
    return Path(out_dir) / "model.npz"
