"""Residual networks (He et al. 2016) with torchvision's module names.

Two families share one :class:`ResNet` class:

* **ImageNet-style** (``resnet18``, ``resnet50``; He et al. 2016, table 1): 7x7/2 convolution with
  64 channels, batch norm, ReLU, 3x3/2 max pool, four stages of 64/128/256/512 planes (strides
  1/2/2/2), global average pool, fully connected layer. Names exactly as torchvision's
  ``resnet18`` / ``resnet50``: ``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``, so a
  torchvision state dict loads without renaming.
* **CIFAR-style** (``resnet20``, ``resnet32``, ``resnet56``; He et al. 2016, sec. 4.2): 3x3
  convolution with 16 channels, batch norm, ReLU, three stages of ``n`` BasicBlocks with 16/32/64
  planes (strides 1/2/2), global average pool, fully connected layer; depth ``6n + 2``. Where the
  shape changes the shortcut is a projection (1x1 conv + BN, the paper's option B) rather than
  the paper's zero-padding option A, so the layout is torchvision's (``layer2.0.downsample.0``).

Initialisation is torchvision's: convolutions ``kaiming_normal_(mode="fan_out",
nonlinearity="relu")`` (He et al. 2015, eq. 14 with the fan-out), i.e. N(0, 2 / (K kh kw));
batch norm weight 1 and bias 0; the classifier keeps ``nn.Linear``'s default; with
``zero_init_residual`` the last batch norm of every block starts at weight 0 (Goyal et al. 2017),
so each block starts as the identity.
"""
from __future__ import annotations

import math

import numpy as np

from cvcore._validate import check_int
from cvcore.nn.blocks import BasicBlock, Bottleneck, conv1x1
from cvcore.nn.conv import Conv2d
from cvcore.nn.module import is_grad_enabled, structure_version
from cvcore.nn.layers import (NESTED, AdaptiveAvgPool2d, BatchNorm2d, Linear, MaxPool2d, ReLU,
                              Sequential, _as_input, _CachingModule, _kernels, call_child,
                              elementwise)

__all__ = ["ResNet", "resnet20", "resnet32", "resnet56", "resnet18", "resnet50"]

IMAGENET_WIDTHS = (64, 128, 256, 512)   # He et al. 2016, table 1
CIFAR_WIDTHS = (16, 32, 64)             # He et al. 2016, sec. 4.2
RELU_GAIN = math.sqrt(2.0)              # torch.nn.init.calculate_gain("relu")


class ResNet(_CachingModule):
    """A residual network: stem, stages of residual blocks, global average pool, classifier.

    Parameters
    ----------
    block : BasicBlock or Bottleneck (the class)
    layers : sequence of int
        Blocks per stage; one stage per entry (4 for ImageNet-style, 3 for CIFAR-style).
    num_classes : int
        Outputs of ``fc``.
    in_channels : int
        Channels of the input images.
    stem : {"imagenet", "cifar"}
        ``"imagenet"``: conv 7x7/2 (64) + BN + ReLU + max pool 3x3/2; ``"cifar"``: conv 3x3/1
        + BN + ReLU, no pooling.
    widths : sequence of int, optional
        Planes per stage (default 64/128/256/512 or 16/32/64 by stem); the first is also the
        stem's width.
    zero_init_residual : bool
        Start the last BN of every block at weight 0.
    rng : numpy.random.Generator, int or None
        Source of the initial weights.

    Notes
    -----
    ``model(x)`` with ``x`` (N, in_channels, H, W) returns logits (N, num_classes);
    ``model.backward(dlogits)`` (after a forward in either mode, outside
    :func:`cvcore.nn.no_grad`) fills every ``.grad`` and returns ``dx``. Errors name the layer by its dotted path (``"layer2.0.conv1: ..."``).
    """

    def __init__(self, block, layers, num_classes=1000, in_channels=3, stem="imagenet",
                 widths=None, zero_init_residual=False, rng=None):
        super().__init__()
        if block not in (BasicBlock, Bottleneck):
            raise TypeError(f"block must be BasicBlock or Bottleneck, got {block!r}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        layers = [check_int(n, "blocks per stage", 1) for n in layers]
        widths = tuple(widths) if widths is not None else (
            IMAGENET_WIDTHS if stem == "imagenet" else CIFAR_WIDTHS)[:len(layers)]
        if len(widths) != len(layers):
            raise ValueError(f"{len(layers)} stages need {len(layers)} widths, got {widths}")
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.stem = stem
        rng = np.random.default_rng(rng)
        self.inplanes = widths[0]
        if stem == "imagenet":
            self.conv1 = Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3,
                                bias=False, rng=rng)
        else:
            self.conv1 = Conv2d(in_channels, self.inplanes, kernel_size=3, stride=1, padding=1,
                                bias=False, rng=rng)
        self.bn1 = BatchNorm2d(self.inplanes)
        self.relu = ReLU(inplace=True)
        if stem == "imagenet":
            self.maxpool = MaxPool2d(kernel_size=3, stride=2, padding=1)
        for i, (planes, blocks) in enumerate(zip(widths, layers)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", self._make_layer(block, planes, blocks, stride, rng))
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.fc = Linear(widths[-1] * block.expansion, num_classes, rng=rng)
        self._stage_names = tuple(f"layer{i + 1}" for i in range(len(layers)))
        self._init_weights(rng, zero_init_residual)

    def _make_layer(self, block, planes, blocks, stride, rng):
        """torchvision's ``_make_layer``: the first block strides and projects if needed."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = Sequential(conv1x1(self.inplanes, planes * block.expansion, stride,
                                            rng=rng),
                                    BatchNorm2d(planes * block.expansion))
        out = [block(self.inplanes, planes, stride, downsample, rng=rng)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            out.append(block(self.inplanes, planes, rng=rng))
        return Sequential(*out)

    def _init_weights(self, rng, zero_init_residual):
        for m in self.modules():
            if isinstance(m, Conv2d):
                K, _, kh, kw = m.weight.data.shape
                std = RELU_GAIN / math.sqrt(K * kh * kw)       # kaiming_normal_, mode="fan_out"
                m.weight.data[...] = rng.normal(0.0, std, m.weight.data.shape)
            elif isinstance(m, BatchNorm2d):
                m.weight.data[...] = 1.0
                m.bias.data[...] = 0.0
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    m.bn3.weight.data[...] = 0.0
                elif isinstance(m, BasicBlock):
                    m.bn2.weight.data[...] = 0.0

    def extra_repr(self):
        return f"stem={self.stem!r}, num_classes={self.num_classes}"

    def _label(self):
        return "ResNet"

    def train(self, mode=True):
        """Training or eval mode; with the attribute ``freeze_bn`` set, batch norms stay in eval
        mode (fine-tuning with the pretrained statistics, as :class:`cvcore.nn.EfficientNet`)."""
        super().train(mode)
        if getattr(self, "freeze_bn", False):
            for m in self.modules():
                if isinstance(m, BatchNorm2d):
                    object.__setattr__(m, "training", False)
        return self

    def _body(self):
        """Children after the stem's ReLU, in order."""
        return ((["maxpool"] if self.stem == "imagenet" else []) + list(self._stage_names)
                + ["avgpool"])

    def forward(self, x):
        """Logits (N, num_classes) of images ``x`` (N, in_channels, H, W).

        The stem's ``relu(bn1(conv1(x)))`` runs the ReLU inside batch norm's output pass
        (:meth:`BatchNorm2d.forward_relu`); ``self.relu`` is kept for torchvision's layout.
        """
        if not self.training and not is_grad_enabled():
            logits = self._planned(x)
            if logits is not None:
                return logits
        stem, pooled = self._trunk(x)
        with NESTED:
            logits = call_child("fc", self.fc.forward, pooled.reshape(pooled.shape[0], -1))
        self._keep((stem, pooled.shape), logits)
        return logits

    def _planned(self, x, output="logits"):
        """The fused inference forward (:class:`cvcore.nn.inference.ResNetPlan`), or None
        where it does not apply (the layer-by-layer forward then runs and reports errors)."""
        plan = self.__dict__.get("_plan")
        if plan is None or (plan is not False and plan.version != structure_version()):
            from cvcore.nn.inference import ResNetPlan, Unplanned
            try:
                plan = ResNetPlan(self)
            except TypeError:                      # a layout the plan does not know
                plan = Unplanned()
            object.__setattr__(self, "_plan", plan)
        if plan is False or self.conv1.weight.data.dtype != np.float32:
            return None
        x = np.ascontiguousarray(_as_input(x, "ResNet input", ndim=4, check_nan=False),
                                 dtype=np.float32)   # the parameters' precision, as _trunk
        if not np.isfinite(x.sum(dtype=np.float64)):
            return None                            # NaN/inf (or an overflow): let conv1 say
        logits = plan.run(x, output)
        if logits is not None and self._cache is not None:
            for m in self.modules():               # as a layer-by-layer no_grad forward:
                if "_cache" in m.__dict__:         # no older cache survives it
                    object.__setattr__(m, "_cache", None)
        return logits

    def embed(self, x):
        """The penultimate layer: globally average-pooled features (N, C) of images ``x``
        (N, in_channels, H, W), the input of ``fc`` (C = 64 for the CIFAR networks, 512 for
        ResNet-18, 2048 for ResNet-50). Run it in eval mode under :func:`cvcore.nn.no_grad`
        for inference, as :meth:`forward`."""
        if not self.training and not is_grad_enabled():
            pooled = self._planned(x, "embed")
            if pooled is not None:
                return pooled
        _, pooled = self._trunk(x)
        return pooled.reshape(pooled.shape[0], -1)

    def features(self, x):
        """Activations of the last stage (N, C, h, w), the input of the global average pool,
        for images ``x`` (N, in_channels, H, W): the maps Grad-CAM weighs (Selvaraju et al.
        2017, eq. 1-2), with ``avgpool`` and ``fc`` the head whose backward gives their weights.

        Meant for inference under :func:`cvcore.nn.no_grad` (it keeps no cache of its own, so
        :meth:`backward` does not follow it).
        """
        if not self.training and not is_grad_enabled():
            maps = self._planned(x, "features")
            if maps is not None:
                return maps
        return self._trunk(x, self._body()[:-1])[1]

    def _trunk(self, x, body=None):
        """``(stem, out)``: the stem's ReLU output (kept for the backward pass) and the output
        of the last child named in ``body`` (default: every child up to the global average
        pool, whose output is (N, C, 1, 1))."""
        body = self._body() if body is None else body
        # conv1 checks the channel count, the spatial size and NaN, naming itself
        x = _as_input(x, "ResNet input", ndim=4, check_nan=False)
        dtype = self.conv1.weight.data.dtype
        x = np.ascontiguousarray(x, dtype=dtype)       # compute in the parameters' precision
        with NESTED:
            x = call_child("conv1", self.conv1.forward, x, True)      # checks NaN, once
            stem = x = call_child("bn1", self.bn1.forward_relu, x)
            for name in body:
                x = call_child(name, getattr(self, name).forward, x)
        return stem, x

    def backward(self, dlogits, input_grad=True):
        """Fill ``.grad`` of every parameter that requires it; return ``dx`` (N, C, H, W), or
        ``None`` with ``input_grad=False`` (a training step: the stem's input gradient is not
        computed)."""
        (stem, pooled_shape), dlogits = self._take(dlogits)
        d = call_child("fc", self.fc.backward, dlogits).reshape(pooled_shape)
        for name in reversed(self._body()):
            d = call_child(name, getattr(self, name).backward, d)
        d = np.ascontiguousarray(d)
        elementwise(_kernels("nn_act").relu_backward, d, stem, d)
        d = call_child("bn1", self.bn1.backward, d)
        return call_child("conv1", self.conv1.backward, d, input_grad=input_grad)


def _cifar(depth_n, num_classes, in_channels, zero_init_residual, rng):
    return ResNet(BasicBlock, [depth_n] * 3, num_classes=num_classes, in_channels=in_channels,
                  stem="cifar", zero_init_residual=zero_init_residual, rng=rng)


def resnet20(num_classes=10, in_channels=3, zero_init_residual=False, rng=None) -> ResNet:
    """ResNet-20 for 32x32 images (He et al. 2016, sec. 4.2, n = 3; 0.27 M parameters)."""
    return _cifar(3, num_classes, in_channels, zero_init_residual, rng)


def resnet32(num_classes=10, in_channels=3, zero_init_residual=False, rng=None) -> ResNet:
    """ResNet-32 for 32x32 images (He et al. 2016, sec. 4.2, n = 5)."""
    return _cifar(5, num_classes, in_channels, zero_init_residual, rng)


def resnet56(num_classes=10, in_channels=3, zero_init_residual=False, rng=None) -> ResNet:
    """ResNet-56 for 32x32 images (He et al. 2016, sec. 4.2, n = 9)."""
    return _cifar(9, num_classes, in_channels, zero_init_residual, rng)


def resnet18(num_classes=1000, in_channels=3, zero_init_residual=False, rng=None) -> ResNet:
    """ResNet-18 (He et al. 2016, table 1; torchvision's layout, 11.7 M parameters)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_channels=in_channels,
                  stem="imagenet", zero_init_residual=zero_init_residual, rng=rng)


def resnet50(num_classes=1000, in_channels=3, zero_init_residual=False, rng=None) -> ResNet:
    """ResNet-50 (He et al. 2016, table 1; torchvision's v1.5 layout, 25.6 M parameters)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, in_channels=in_channels,
                  stem="imagenet", zero_init_residual=zero_init_residual, rng=rng)
