"""The one interface every attack uses, and its implementations for cvcore's models.

An attack needs two things of a classifier ``f`` mapping images ``x`` to logits ``z = f(x)``:

``logits(x)``
    ``(N, K)`` scores of a batch ``x`` of images in the valid pixel range, in eval mode (no
    dropout, BatchNorm by its running statistics, nothing updated);
``loss_gradient(x, y)``
    the per-sample softmax cross-entropy ``l_n = -log softmax(z_n)[y_n]`` (float64, ``(N,)``)
    and its gradient with respect to the input, ``d l_n / d x_n`` (``x``'s shape, float32).
    Each sample's gradient is that of its own loss (the gradient of the *sum*, not the mean,
    over the batch), so an attack's result does not depend on how the data is cut into batches.
    PyTorch attack libraries differentiate the batch mean, ``1/N`` times this: the same sign
    and, after per-sample normalisation, the same L2 direction.

:class:`NetworkModel` provides both for a :class:`cvcore.nn.Module` (its forward and backward
passes, with an optional per-channel normalisation ``(x - mean) / std`` inside, so that attacks
work in pixel space); :class:`HOGLinearModel` for a HOG + linear classifier. Anything else with
these two methods and ``num_classes`` works with :func:`cvcore.adversarial.fgsm` and
:func:`cvcore.adversarial.pgd` too.
"""
from __future__ import annotations

import contextlib

import numpy as np

from cvcore._validate import check_array

__all__ = ["AttackModel", "NetworkModel", "HOGLinearModel", "check_attack_model",
           "softmax_cross_entropy"]


class AttackModel:
    """Base class of the attack interface (see the module notes). Subclasses define
    :meth:`logits` and :meth:`loss_gradient`, and ``num_classes``."""

    num_classes: int

    def logits(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def loss_gradient(self, x: np.ndarray, y: np.ndarray):
        raise NotImplementedError

    def predict(self, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """Predicted classes ``(N,)`` of ``x``, batch by batch."""
        return np.concatenate([np.argmax(self.logits(x[i:i + batch_size]), axis=1)
                               for i in range(0, len(x), batch_size)])


def check_attack_model(model) -> "AttackModel":
    """Raise ``TypeError`` unless ``model`` offers ``logits``, ``loss_gradient`` and
    ``num_classes`` (a :class:`cvcore.nn.Module` is wrapped in :class:`NetworkModel`)."""
    from cvcore.nn.module import Module
    if isinstance(model, Module):
        return NetworkModel(model)
    missing = [name for name in ("logits", "loss_gradient", "num_classes")
               if not hasattr(model, name)]
    if missing:
        raise TypeError(f"an attack needs a model with logits(x), loss_gradient(x, y) and "
                        f"num_classes (see cvcore.adversarial.models); "
                        f"{type(model).__name__} lacks {', '.join(missing)}")
    return model


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray):
    """Per-sample cross-entropy and its gradient with respect to the logits.

    ``l_n = log sum_k exp(z_nk) - z_{n y_n}``, ``d l_n / d z_n = softmax(z_n) - e_{y_n}``
    (computed from the max-shifted logits, float64 loss, gradient in the logits' dtype).

    Returns
    -------
    loss : (N,) float64
    dlogits : (N, K), the logits' float dtype
    """
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = np.log(total[:, 0].astype(np.float64)) - z[rows, y].astype(np.float64)
    dlogits = e / total
    dlogits[rows, y] -= 1
    return loss, dlogits


def _has_backward(net) -> bool:
    from cvcore.nn.module import Module
    return type(net).backward is not Module.backward


@contextlib.contextmanager
def _frozen_eval(net, train_mode=False):
    """Eval mode (or training mode) with every parameter frozen (no weight gradients
    computed); both restored."""
    was_training = net.training
    flags = [(p, p.requires_grad) for p in net.parameters()]
    net.train(train_mode)
    for p, _ in flags:
        p.requires_grad = False
    try:
        yield net
    finally:
        for p, flag in flags:
            p.requires_grad = flag
            p.grad = None
        net.train(was_training)


class NetworkModel(AttackModel):
    """A :class:`cvcore.nn.Module` classifier as an attack target.

    Parameters
    ----------
    net : Module
        Maps ``(N, C, H, W)`` float32 to logits ``(N, K)`` and has a ``backward``.
    mean, std : float or (C,) array_like, optional
        The network sees ``(x - mean) / std`` (the normalisation it was trained with); the attack
        works on ``x``, the pixels in ``[0, 1]``. Default: no normalisation.
    num_classes : int, optional
        Read from the first forward pass when not given.
    train_mode : bool
        Run the network in training mode instead (BatchNorm by batch statistics, updating its
        running averages; dropout active): only for crafting examples *during* adversarial
        training, as Madry et al.'s and Wong et al.'s code do. Attacks that evaluate a model
        use the default, eval mode.

    Notes
    -----
    Every call runs the network in eval mode with its parameters frozen (their gradients are
    not computed, which saves about a third of a backward pass), and restores both afterwards.
    The input gradient is ``dx = net.backward(dlogits) / std``.

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore import nn
    >>> from cvcore.adversarial import NetworkModel
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, rng=np.random.default_rng(0)))
    >>> model = NetworkModel(net)
    >>> x = np.full((2, 1, 2, 2), 0.5, np.float32)
    >>> loss, dx = model.loss_gradient(x, np.array([0, 2]))
    >>> loss.shape, dx.shape, dx.dtype
    ((2,), (2, 1, 2, 2), dtype('float32'))
    """

    def __init__(self, net, mean=None, std=None, num_classes=None, train_mode=False):
        from cvcore.nn.module import Module
        if not isinstance(net, Module):
            raise TypeError(f"NetworkModel needs a cvcore.nn.Module, got {type(net).__name__}")
        if not _has_backward(net):
            raise TypeError(f"{type(net).__name__} has no backward pass, so no input gradient: "
                            f"gradient attacks need a differentiable model")
        self.net = net
        self.mean = None if mean is None else np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        self.std = None if std is None else np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        if self.std is not None and not (np.all(np.isfinite(self.std)) and np.all(self.std > 0)):
            raise ValueError(f"std must be positive and finite, got {std!r}")
        self.num_classes = num_classes
        self.train_mode = bool(train_mode)

    def _input(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        return np.ascontiguousarray(x, dtype=np.float32)

    def logits(self, x):
        from cvcore.nn.module import no_grad
        with _frozen_eval(self.net, self.train_mode), no_grad():
            z = self.net(self._input(x))
        if self.num_classes is None:
            self.num_classes = z.shape[1]
        return z

    def loss_gradient(self, x, y):
        with _frozen_eval(self.net, self.train_mode):
            z = self.net(self._input(x))
            if self.num_classes is None:
                self.num_classes = z.shape[1]
            loss, dz = softmax_cross_entropy(z, y)
            dx = self.net.backward(dz.astype(np.float32, copy=False))
        if self.std is not None:
            dx = dx / self.std
        return loss, np.asarray(dx, dtype=np.float32)


class HOGLinearModel(AttackModel):
    """A HOG + linear classifier as an attack target: ``z = W s + b`` with
    ``s = (concat_c hog_c(x) - mu) / sigma`` the standardised HOG features of every cell size.

    The input gradient runs the chain backwards: ``ds = W^T dz``, ``dh = ds / sigma``, then the
    HOG backward (:func:`cvcore.features.hog_backward`) of each cell size's slice, summed.

    Parameters
    ----------
    coef : (K, D) array, intercept : (K,) array
        The linear classifier (a linear SVM's one-vs-rest scores or softmax regression's logits).
    feature_mean, feature_std : (D,) arrays
        The standardisation of the features.
    hog_params : dict
        ``cell_sizes`` (list of (rows, cols)), ``orientations``, ``cells_per_block``,
        ``block_norm``, ``transform_sqrt`` (:class:`cvcore.train.pipeline.HOGParams`).
    temperature : float
        The logits are ``z / temperature`` (a calibrated SVM's probabilities are the softmax of
        these); the attack's loss is the cross-entropy of those probabilities.

    Images are ``(N, 1, H, W)`` (or ``(N, H, W)``) grey float in ``[0, 1]``.
    """

    def __init__(self, coef, intercept, feature_mean, feature_std, hog_params, temperature=1.0):
        self.coef = np.asarray(coef, np.float64)
        self.intercept = np.asarray(intercept, np.float64)
        self.mean = np.asarray(feature_mean, np.float64)
        self.std = np.asarray(feature_std, np.float64)
        self.hog = dict(hog_params)
        self.temperature = float(temperature)
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        K, D = self.coef.shape
        if self.intercept.shape != (K,) or self.mean.shape != (D,) or self.std.shape != (D,):
            raise ValueError(f"coef {self.coef.shape}, intercept {self.intercept.shape}, "
                             f"feature_mean {self.mean.shape} and feature_std {self.std.shape} "
                             f"do not agree")
        for name, a in (("coef", self.coef), ("intercept", self.intercept),
                        ("feature_mean", self.mean), ("feature_std", self.std)):
            if not np.isfinite(a).all():
                raise ValueError(f"{name} holds NaN or infinity")
        if not (self.std > 0).all():
            raise ValueError("feature_std must be positive")
        missing = [k for k in HOG_PARAM_KEYS if k not in self.hog]
        if missing:
            raise ValueError(f"hog_params lacks {', '.join(missing)}; it needs "
                             f"{', '.join(HOG_PARAM_KEYS)} (as HOGParams.as_dict())")
        self.num_classes = K

    @staticmethod
    def _images(x):
        x = check_array(x, "x", ndim=(3, 4), dtypes="f")
        if x.ndim == 4:
            if x.shape[1] != 1:
                raise ValueError(f"HOG models take grey images (N, 1, H, W), got {x.shape}")
            x = x[:, 0]
        return np.ascontiguousarray(x, dtype=np.float64)

    def _hog_args(self, cell):
        h = self.hog
        return dict(orientations=h["orientations"], pixels_per_cell=tuple(cell),
                    cells_per_block=tuple(h["cells_per_block"]), block_norm=h["block_norm"],
                    transform_sqrt=h["transform_sqrt"])

    def _features(self, images):
        from cvcore.features import hog_batch
        return np.hstack([hog_batch(images, dtype=np.float64, **self._hog_args(cell))
                          for cell in self.hog["cell_sizes"]])

    def logits(self, x):
        s = (self._features(self._images(x)) - self.mean) / self.std
        return (s @ self.coef.T + self.intercept) / self.temperature

    def loss_gradient(self, x, y):
        from cvcore.features import hog_backward
        shape = np.shape(x)
        images = self._images(x)
        s = (self._features(images) - self.mean) / self.std
        z = (s @ self.coef.T + self.intercept) / self.temperature
        loss, dz = softmax_cross_entropy(z, y)
        dfeat = (dz / self.temperature) @ self.coef / self.std
        dx = np.zeros_like(images)
        start = 0
        for cell in self.hog["cell_sizes"]:
            args = self._hog_args(cell)
            width = _hog_length(images.shape[1:], args)
            dx += hog_backward(images, dfeat[:, start:start + width], **args)
            start += width
        return loss, dx.reshape(shape).astype(np.float32)


#: The HOG settings a :class:`HOGLinearModel` reads (the fields of ``HOGParams.as_dict()``).
HOG_PARAM_KEYS = ("cell_sizes", "orientations", "cells_per_block", "block_norm",
                  "transform_sqrt")


def _hog_length(shape, args) -> int:
    (cr, cc), (br, bc) = args["pixels_per_cell"], args["cells_per_block"]
    ncr, ncc = shape[0] // cr, shape[1] // cc
    return (ncr - br + 1) * (ncc - bc + 1) * br * bc * args["orientations"]
