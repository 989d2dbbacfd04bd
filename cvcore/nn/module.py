"""The module contract every layer, block and model follows.

A :class:`Module` holds :class:`Parameter` objects (trainable arrays with a ``.grad``), buffers
(non-trainable state such as BatchNorm running statistics) and child modules, registered simply by
assigning them as attributes. Names are dotted paths built from the attribute names, exactly as
PyTorch builds them, so ``model.layer1[0].conv2.weight`` is ``"layer1.0.conv2.weight"`` in
:meth:`Module.state_dict` and a torchvision state dict loads without a renaming table.

The forward/backward contract::

    logits = model(x)              # forward; caches what backward needs
    dx = model.backward(dlogits)   # fills .grad of every parameter that requires it; returns dx

``backward`` *overwrites* ``.grad`` (it does not accumulate as PyTorch does): one forward, one
backward, one optimiser step. Frozen parameters (``requires_grad=False``) get ``grad = None``.

A training step needs no gradient of the images themselves (PyTorch computes none for an input
that does not require one). The models and the layers that can start a network
(:class:`~cvcore.nn.conv.Conv2d`, :class:`~cvcore.nn.layers.Sequential`, the ResNets,
EfficientNet) take ``backward(dout, input_grad=False)``: the parameters' gradients are the same,
and the first convolution's input gradient is skipped (``None`` is returned; in a ResNet-20 step
at batch 128, ~2 ms of ~350 on two threads). :func:`takes_input_grad` tells whether a module's
``backward`` has that option; the trainer passes it where it has.

Backward works in both modes. The mode (:meth:`Module.train` / :meth:`Module.eval`) chooses *what*
is computed, as in PyTorch: BatchNorm2d normalises by batch statistics and updates its running
averages in training mode, by the running averages (left unchanged) in eval mode, and its backward
differentiates whichever it used; Dropout is the identity in eval mode, backward too. Every other
layer is the same in both modes. Eval-mode backward serves fine-tuning with frozen BatchNorm
statistics and gradient (saliency) maps.

Whether the forward pass keeps the caches backward needs is a separate switch, the *gradient
mode* (``torch.no_grad``'s analogue): on by default; inside ``with no_grad():`` every forward
keeps nothing (and drops a cache left by an earlier forward), so inference holds no activations
and a following ``backward`` raises. Inference paths (:func:`cvcore.train.loop.predict_batches`,
and through it the trained pipelines' predictions) run under :func:`no_grad`. The mode is
per thread, like PyTorch's, so a server thread predicting does not switch off another thread's
training.
"""
from __future__ import annotations

import contextlib
import inspect
import threading
from collections import OrderedDict
from typing import Iterator

import numpy as np

from cvcore._threads import in_network_call, network_call

__all__ = ["Parameter", "Module", "no_grad", "is_grad_enabled", "takes_input_grad"]

_grad_mode = threading.local()


def is_grad_enabled() -> bool:
    """Whether forward passes in this thread keep what backward needs (``True`` by default)."""
    return getattr(_grad_mode, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Run forward passes without keeping caches (inference): ``with nn.no_grad(): model(x)``.

    Inside the block every module's forward keeps nothing for backward, in either mode, so
    memory stays that of one layer's output at a time; a ``backward`` after such a forward raises
    ``RuntimeError``. Blocks nest; the previous mode is restored on exit, also on an exception.
    Works as a decorator too (``@nn.no_grad()``).
    """
    previous = is_grad_enabled()
    _grad_mode.enabled = False
    try:
        yield
    finally:
        _grad_mode.enabled = previous


# Bumped by every attribute assignment on a module but a layer's cache: inference plans
# (:mod:`cvcore.nn.inference`) made for an older layout are rebuilt.
_structure = [0]


def structure_version() -> int:
    """A number that changes whenever an attribute of any module is assigned (a layer replaced,
    a setting changed), except the caches the forward pass keeps."""
    return _structure[0]


class Parameter:
    """A trainable array and its gradient.

    Attributes
    ----------
    data : ndarray, float32
        The value. Optimisers update it in place.
    grad : ndarray or None
        Same shape as ``data``; set by the owning module's ``backward``.
    requires_grad : bool
        ``False`` freezes the parameter: no gradient is computed and optimisers skip it.
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad: bool = True):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.grad = None
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, requires_grad={self.requires_grad})"


class Module:
    """Base class: parameter/buffer/child registration, naming, state dicts and modes."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration -------------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               f"before assigning attributes")
        if name != "_cache":                   # a layer, parameter or setting may have changed
            _structure[0] += 1
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value) -> None:
        """Register non-trainable state (saved in the state dict, not optimised)."""
        arr = None if value is None else np.asarray(value)
        self._buffers[name] = arr
        object.__setattr__(self, name, arr)

    def _set_buffer(self, name: str, value) -> None:
        """Replace a registered buffer's array (used by layers updating running statistics)."""
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    # -- traversal ----------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator["Module"]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted_name, parameter)`` in registration order, as PyTorch does."""
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    # -- modes --------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set training (``True``) or evaluation mode on this module and its descendants.

        Cheap to call per batch (``predict_batches`` calls it twice per call, ``cvcore
        serve`` once per forward pass): the descendants are walked once and kept as a list
        until any module's structure changes (:func:`structure_version`); on ResNet-20 the
        walk (``named_modules``, a dotted name per module) cost ~0.1 ms a call."""
        mode = bool(mode)
        for m in self._walked():
            object.__setattr__(m, "training", mode)
        return self

    def _walked(self) -> list:
        """``list(self.modules())``, kept until the structure changes; keyed on ``id(self)``
        too, so that a copy of the module (which may carry the list in its ``__dict__``)
        walks its own."""
        key = (_structure[0], id(self))
        kept = self.__dict__.get("_walk")
        if kept is None or kept[0] != key:
            kept = (key, list(self.modules()))
            object.__setattr__(self, "_walk", kept)  # not a structure change
        return kept[1]

    def eval(self) -> "Module":
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Freeze (``False``) or unfreeze every parameter of this module and its children."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameters then buffers of each module, in PyTorch's order, as copies."""
        out = OrderedDict()
        for mod_name, mod in self.named_modules():
            for name, p in mod._parameters.items():
                out[f"{mod_name}.{name}" if mod_name else name] = p.data.copy()
            for name, b in mod._buffers.items():
                if b is not None:
                    out[f"{mod_name}.{name}" if mod_name else name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays from ``state`` into this module's parameters and buffers.

        Raises
        ------
        KeyError
            With ``strict``, when keys are missing or unexpected (both lists are named).
        ValueError
            When an array's shape differs from the module's (the key and both shapes are named).
        """
        targets = {}
        for mod_name, mod in self.named_modules():
            for name in mod._parameters:
                targets[f"{mod_name}.{name}" if mod_name else name] = (mod, name, True)
            for name, b in mod._buffers.items():
                if b is not None:
                    targets[f"{mod_name}.{name}" if mod_name else name] = (mod, name, False)
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"state dict does not match {type(self).__name__}: "
                           f"missing keys {missing}, unexpected keys {unexpected}")
        for key, (mod, name, is_param) in targets.items():
            if key not in state:
                continue
            value = np.asarray(state[key])
            current = mod._parameters[name].data if is_param else mod._buffers[name]
            if value.shape != current.shape:
                raise ValueError(f"{key}: shape {value.shape} in the state dict, "
                                 f"{current.shape} in the model")
            if is_param:
                mod._parameters[name].data[...] = value
            else:
                mod._set_buffer(name, np.array(value, dtype=current.dtype, copy=True))

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        # The outermost forward runs on as many threads as there are free cores
        # (cvcore._threads.network_call); its numbers do not depend on the thread count. A
        # backward does not: its weight gradients are sums over the batch in per-thread partial
        # sums, whose last bits change with the number of threads, so it runs on the threads the
        # user set, and training stays reproducible (a resumed run equals an uninterrupted one).
        if in_network_call():
            return self.forward(*args, **kwargs)
        with network_call():
            return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return "\n".join(lines) + ")" if len(lines) > 1 else lines[0] + ")"


_TAKES_INPUT_GRAD: dict = {}


def takes_input_grad(module) -> bool:
    """Whether ``module.backward`` has the ``input_grad`` option (see the module docstring)."""
    if not callable(getattr(module, "backward", None)):
        raise TypeError(f"takes_input_grad needs a Module (something with a backward method), "
                        f"got {type(module).__name__}")
    kind = type(module)
    if kind not in _TAKES_INPUT_GRAD:
        _TAKES_INPUT_GRAD[kind] = "input_grad" in inspect.signature(module.backward).parameters
    return _TAKES_INPUT_GRAD[kind]
