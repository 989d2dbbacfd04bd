"""PyTorch twins of cvcore's residual networks, for tests and benchmarks only.

There is no torchvision here, so the networks are built from ``torch.nn`` with torchvision's
attribute names (``conv1``, ``bn1``, ``layer1.0.conv2``, ``downsample.0``, ``fc``), which makes
their ``state_dict`` keys identical to cvcore's and lets weights be copied either way.
Import needs torch; callers skip when it is absent.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """``stem="cifar"``: 3x3 conv to 16 channels, stages of 16/32/64 (He et al. 2016, sec. 4.2).
    ``stem="imagenet"``: 7x7/2 conv and 3x3/2 max pool, stages of 64/128/256/512 (table 1)."""

    def __init__(self, block, layers, num_classes=10, in_channels=3, stem="cifar"):
        super().__init__()
        widths = (16, 32, 64) if stem == "cifar" else (64, 128, 256, 512)
        self.inplanes = widths[0]
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else None
        for i, (w, n) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(self.inplanes, w, 2 if (j == 0 and i > 0) else 1))
                self.inplanes = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.n_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.inplanes, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torch_resnet(arch: str, num_classes=10, in_channels=3) -> ResNet:
    """The PyTorch network of the same name as cvcore's (resnet20/32/56/18/50)."""
    cifar = {"resnet20": 3, "resnet32": 5, "resnet56": 9}
    if arch in cifar:
        return ResNet(BasicBlock, [cifar[arch]] * 3, num_classes, in_channels, "cifar")
    if arch == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, "imagenet")
    if arch == "resnet50":
        return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, "imagenet")
    raise ValueError(f"unknown architecture {arch!r}")


def copy_into_torch(cv_model, torch_model) -> None:
    """Load a cvcore model's state dict into the PyTorch twin (keys must be identical)."""
    state = {k: torch.from_numpy(np.array(v)) for k, v in cv_model.state_dict().items()}
    torch_model.load_state_dict(state, strict=True)
