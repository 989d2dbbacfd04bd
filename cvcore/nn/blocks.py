"""Residual blocks of He et al. 2016, laid out exactly as torchvision's ``BasicBlock`` and
``Bottleneck`` so parameter names match (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``conv3``,
``bn3``, ``downsample.0`` (1x1 conv), ``downsample.1`` (BN)).

A block computes ``y = relu(F(x) + S(x))`` (He et al. 2016, eq. 1-2): ``F`` the residual branch,
``S`` the identity, or a projection (1x1 convolution + batch norm, the paper's option B) when the
stride or channel count changes.

* ``BasicBlock`` (expansion 1): ``F = bn2(conv3x3(relu(bn1(conv3x3_stride(x)))))``.
* ``Bottleneck`` (expansion 4): ``F = bn3(conv1x1(relu(bn2(conv3x3_stride(relu(bn1(conv1x1(x))))))))``
  with the stride on the 3x3 convolution ("ResNet v1.5", as torchvision; the paper put it on the
  first 1x1).

Backward: the gradient at the block output goes through the final ReLU, then to both the residual
branch and the shortcut; the two input gradients are summed. Inside the branch each ReLU is fused
into the batch norm before it (:meth:`BatchNorm2d.forward_relu`, one pass) and the residual sum
with the final ReLU is one in-place pass, so no activation is copied; the block keeps the ReLU
outputs as the masks for the backward pass. The ``relu`` attribute exists for torchvision's
layout (it has no parameters) and is not called.
"""
from __future__ import annotations

import numpy as np

from cvcore.nn.conv import Conv2d
from cvcore.nn.layers import (NESTED, BatchNorm2d, ReLU, Sequential, _as_input, _CachingModule,
                              _kernels, call_child, elementwise, top_level)

__all__ = ["BasicBlock", "Bottleneck", "conv1x1", "conv3x3"]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, rng=None) -> Conv2d:
    """3x3 convolution with padding 1 and no bias (torchvision's ``conv3x3``)."""
    return Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False,
                  rng=rng)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1, rng=None) -> Conv2d:
    """1x1 convolution with no bias (torchvision's ``conv1x1``)."""
    return Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False, rng=rng)


def _relu_backward_inplace(d: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``d = d * (y > 0)`` in place (``d`` is a fresh gradient array nobody else holds)."""
    elementwise(_kernels("nn_act").relu_backward, d, y, d)
    return d


class _ResidualBlock(_CachingModule):
    """Shared forward/backward plumbing: the branch is a list of (conv, bn) stages with a ReLU
    after each but the last; then ``relu(branch + shortcut)``."""

    expansion = 1
    _stages: tuple = ()       # names of (conv, bn) pairs in order, e.g. (("conv1", "bn1"), ...)

    def _label(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def extra_repr(self):
        return f"{self.inplanes}, {self.planes}, stride={self.stride}"

    def forward(self, x):
        if top_level():
            x = _as_input(x, f"{self._label()} input", ndim=4, check_nan=True)
        relu_outputs = []
        with NESTED:
            out = x
            last = len(self._stages) - 1
            for k, (conv_name, bn_name) in enumerate(self._stages):
                out = call_child(conv_name, getattr(self, conv_name).forward, out)
                bn = getattr(self, bn_name)
                if k < last:                           # relu(bn(.)) in one pass; keep the mask
                    out = call_child(bn_name, bn.forward_relu, out)
                    relu_outputs.append(out)
                else:
                    out = call_child(bn_name, bn.forward, out)
            if self.downsample is not None:
                identity = call_child("downsample", self.downsample.forward, x)
            else:
                identity = x
        self._add_shortcut(out, identity)
        self._keep((tuple(relu_outputs), out), out)
        return out

    def _add_shortcut(self, out, identity):
        """``out = relu(out + identity)`` in place, after checking the shapes agree."""
        if identity.shape != out.shape:
            raise ValueError(f"{self._label()}: the residual branch gives shape {out.shape} but "
                             f"the shortcut gives {identity.shape}; a block that changes stride "
                             f"or channels needs a downsample projection")
        identity = np.ascontiguousarray(identity, dtype=out.dtype)
        elementwise(_kernels("nn_act").add_relu_forward, out, identity, out)

    def backward(self, dy):
        (relu_outputs, out), dy = self._take(dy)
        dsum = np.empty_like(dy)                       # gradient at the residual sum
        elementwise(_kernels("nn_act").relu_backward, dy, out, dsum)
        d = dsum
        for k in range(len(self._stages) - 1, -1, -1):
            conv_name, bn_name = self._stages[k]
            bn = getattr(self, bn_name)
            if k < len(self._stages) - 1:
                # d is a conv's fresh input gradient, owned here: mask it and let BN overwrite it
                d = _relu_backward_inplace(d, relu_outputs[k])
                d = call_child(bn_name, bn.backward, d, d)
            else:
                d = call_child(bn_name, bn.backward, d)       # dsum: the shortcut needs it too
            d = call_child(conv_name, getattr(self, conv_name).backward, d)
        if self.downsample is not None:
            dshort = call_child("downsample", self.downsample.backward, dsum)
        else:
            dshort = dsum
        d = np.ascontiguousarray(d)
        elementwise(_kernels("nn_act").add_inplace, d, dshort)
        return d


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions with a residual connection (He et al. 2016, fig. 2 / fig. 5 left).

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Channels of both convolutions and of the output (``expansion = 1``).
    stride : int
        Stride of the first 3x3 convolution (2 halves the resolution).
    downsample : Module, optional
        The shortcut projection, ``Sequential(conv1x1(inplanes, planes, stride), BatchNorm2d)``,
        needed when ``stride != 1`` or ``inplanes != planes``. With ``downsample=True`` the block
        builds that projection itself when the shape changes.
    rng : numpy.random.Generator, int or None
        Initial weights of the convolutions (the models re-initialise them).
    """

    expansion = 1
    _stages = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, inplanes, planes, stride=1, downsample=None, rng=None):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.inplanes, self.planes, self.stride = int(inplanes), int(planes), int(stride)
        self.conv1 = conv3x3(inplanes, planes, stride, rng=rng)
        self.bn1 = BatchNorm2d(planes)
        self.relu = ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, rng=rng)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = _shortcut(downsample, inplanes, planes * self.expansion, stride, rng)


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand, with a residual connection (He et al. 2016, fig. 5 right),
    the stride on the 3x3 convolution (ResNet v1.5, torchvision's layout).

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Width of the 1x1 and 3x3 convolutions; the output has ``planes * 4`` channels.
    stride : int
        Stride of the 3x3 convolution.
    downsample : Module, True or None
        The shortcut projection (see :class:`BasicBlock`).
    rng : numpy.random.Generator, int or None
    """

    expansion = 4
    _stages = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, inplanes, planes, stride=1, downsample=None, rng=None):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.inplanes, self.planes, self.stride = int(inplanes), int(planes), int(stride)
        width = planes                   # torchvision: planes * (base_width / 64) * groups
        self.conv1 = conv1x1(inplanes, width, rng=rng)
        self.bn1 = BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, rng=rng)
        self.bn2 = BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion, rng=rng)
        self.bn3 = BatchNorm2d(planes * self.expansion)
        self.relu = ReLU(inplace=True)
        self.downsample = _shortcut(downsample, inplanes, planes * self.expansion, stride, rng)


def _shortcut(downsample, inplanes, outplanes, stride, rng):
    """The given projection; or, for ``True``, a 1x1 conv + BN projection when needed."""
    if downsample is True:
        if stride == 1 and inplanes == outplanes:
            return None
        return Sequential(conv1x1(inplanes, outplanes, stride, rng=rng), BatchNorm2d(outplanes))
    return downsample

