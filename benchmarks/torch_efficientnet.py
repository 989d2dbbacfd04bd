"""A PyTorch twin of EfficientNet-Lite0 with EfficientNet-PyTorch's module names (built here from
the architecture's description, no EfficientNet-PyTorch package): the reference for the tests and
the benchmark. Imported only where torch is installed."""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from cvcore.nn.efficientnet import LITE0_BLOCKS, LITE_BN_EPS, LITE_BN_MOMENTUM


class SameConv(nn.Conv2d):
    """nn.Conv2d with TensorFlow 'SAME' padding (EfficientNet-PyTorch's
    Conv2dDynamicSamePadding): pad (left, right, top, bottom) with the odd one after."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
        ph = max((oh - 1) * sh + (kh - 1) * self.dilation[0] + 1 - ih, 0)
        pw = max((ow - 1) * sw + (kw - 1) * self.dilation[1] + 1 - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def bn(c):
    return nn.BatchNorm2d(c, eps=LITE_BN_EPS, momentum=LITE_BN_MOMENTUM)


class Block(nn.Module):
    def __init__(self, cin, cout, k, s, e):
        super().__init__()
        hidden = cin * e
        self.e = e
        if e != 1:
            self._expand_conv = SameConv(cin, hidden, 1, bias=False)
            self._bn0 = bn(hidden)
        self._depthwise_conv = SameConv(hidden, hidden, k, s, groups=hidden, bias=False)
        self._bn1 = bn(hidden)
        self._project_conv = SameConv(hidden, cout, 1, bias=False)
        self._bn2 = bn(cout)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        h = x
        if self.e != 1:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class TorchEfficientNetLite0(nn.Module):
    def __init__(self, num_classes=1000, blocks=LITE0_BLOCKS):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = bn(32)
        layers, width = [], 32
        for r, k, s, e, c in blocks:
            for i in range(r):
                layers.append(Block(width, c, k, s if i == 0 else 1, e))
                width = c
        self._blocks = nn.ModuleList(layers)
        self._conv_head = SameConv(width, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._avg_pooling(x).flatten(1)

    def forward(self, x):
        return self._fc(self._dropout(self.features(x)))
