"""Optimisers: stochastic gradient descent with momentum, Adam and AdamW, with PyTorch's rules.

Each optimiser holds *parameter groups*: lists of :class:`~cvcore.nn.module.Parameter` that share
hyper-parameters (``lr``, ``momentum``, ...). A learning-rate schedule (:mod:`cvcore.nn.schedules`)
changes ``group["lr"]`` between steps. The training loop is::

    logits = model(x)
    loss = criterion(logits, y)
    model.backward(criterion.backward())   # fills p.grad
    optimizer.step()                       # updates p.data in place
    scheduler.step()                       # optional: next learning rate

A parameter is skipped when ``requires_grad`` is False or its ``grad`` is None (a frozen layer, or
one the last backward did not reach), exactly as ``torch.optim`` skips it.

The update rules are those of ``torch.optim.SGD`` / ``Adam`` / ``AdamW`` (PyTorch 2.x,
``torch/optim/sgd.py`` and ``adam.py``, single-tensor path), written with NumPy in float32 in the
same order of operations, so ten steps agree with PyTorch to float32 rounding (tested to 1e-5).

Optimiser state (momentum buffers, Adam moments, step counts) is plain NumPy arrays and ints, keyed
by parameter *name* when the optimiser was built from ``model.named_parameters()``, so
``state_dict()`` / ``load_state_dict()`` resume a stopped run and refuse a state that belongs to a
different model, naming the keys that differ.
"""
from __future__ import annotations

import copy
import math
import numbers

import numpy as np

from cvcore._validate import check_nonnegative
from cvcore.nn.module import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Base class: parameter groups, the skip rule, ``zero_grad`` and state dicts.

    Parameters
    ----------
    params : iterable
        One of: Parameters; ``(name, Parameter)`` pairs such as ``model.named_parameters()``; or
        dicts ``{"params": <either of the above>, "lr": ..., ...}``, one per parameter group, whose
        keys override ``defaults`` for that group.
    defaults : dict
        Hyper-parameters of every group that does not set its own.

    Attributes
    ----------
    param_groups : list of dict
        Each has ``"params"`` (list of Parameter), ``"param_names"`` (list of str) and the
        hyper-parameters. Schedules write ``group["lr"]``.
    state : dict
        ``id(parameter) -> dict`` of that parameter's buffers (NumPy arrays) and counters (ints).
    """

    #: Names of the per-parameter state entries that are arrays shaped like the parameter.
    _array_state: tuple[str, ...] = ()

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}
        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError("params must be an iterable of Parameters, (name, Parameter) pairs or "
                            f"parameter-group dicts, got a single {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- groups -------------------------------------------------------------------------------
    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters (for example a new head when fine-tuning)."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"a parameter group must be a dict with a 'params' entry, got {group!r}")
        group = dict(group)
        entries = group.pop("params")
        if isinstance(entries, Parameter):
            entries = [entries]
        group_index = len(self.param_groups)
        params, names = [], []
        for i, entry in enumerate(entries):
            if isinstance(entry, tuple) and len(entry) == 2:
                name, p = entry
                if not isinstance(name, str):
                    raise TypeError(f"parameter name must be a str, got {name!r}")
            else:
                name, p = None, entry
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizer can only optimize cvcore Parameters, got "
                                f"{type(p).__name__} at position {i} of group {group_index}")
            params.append(p)
            names.append(name)
        if not params:
            raise ValueError(f"parameter group {group_index} is empty")
        named = [n is not None for n in names]
        if any(named) and not all(named):
            raise ValueError(f"parameter group {group_index} mixes named and unnamed parameters")
        if not any(named):
            names = [f"{group_index}.{i}" for i in range(len(params))]
        seen_ids = {id(p) for g in self.param_groups for p in g["params"]}
        seen_names = {n for g in self.param_groups for n in g["param_names"]}
        for name, p in zip(names, params):
            if id(p) in seen_ids:
                raise ValueError(f"parameter {name} appears in more than one place; every "
                                 f"parameter must be given once")
            if name in seen_names:
                raise ValueError(f"parameter name {name!r} appears more than once")
            seen_ids.add(id(p))
            seen_names.add(name)
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_hyperparameters(group)
        group["params"] = params
        group["param_names"] = names
        self.param_groups.append(group)

    def _check_hyperparameters(self, group: dict) -> None:
        check_nonnegative(group["lr"], "lr")
        check_nonnegative(group["weight_decay"], "weight_decay")

    # -- stepping -----------------------------------------------------------------------------
    def _gradients(self, group: dict):
        """Yield ``(name, param, grad)`` for the parameters of ``group`` that take a step.

        The gradient is checked (shape, finite) and returned as float32.
        """
        for name, p in zip(group["param_names"], group["params"]):
            if not p.requires_grad or p.grad is None:
                continue
            grad = np.asarray(p.grad)
            if grad.shape != p.data.shape:
                raise ValueError(f"gradient of {name} has shape {grad.shape}, parameter has "
                                 f"shape {p.data.shape}")
            if grad.dtype != np.float32:
                if grad.dtype.kind != "f":
                    raise TypeError(f"gradient of {name} has dtype {grad.dtype}; expected float")
                grad = grad.astype(np.float32)
            # The sum is NaN or inf whenever an element is (one fast pass, no temporary); only
            # then look closer, since a sum of huge finite values can overflow on its own.
            with np.errstate(over="ignore", invalid="ignore"):
                total = np.add.reduce(grad, axis=None)
            if not math.isfinite(total) and not np.isfinite(grad).all():
                bad = "NaN" if np.isnan(grad).any() else "infinity"
                raise ValueError(f"gradient of {name} contains {bad}; the step was not taken "
                                 f"(lower the learning rate or check the loss)")
            yield name, p, grad

    def step(self) -> None:
        """Update every parameter that has a gradient, in place."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Set every parameter's ``grad`` to None (PyTorch's ``set_to_none=True`` default)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimiser's state as plain Python values and copied NumPy arrays.

        Returns
        -------
        dict
            ``{"state": {name: {buffer: ndarray or int}}, "param_groups": [{hyper-parameter:
            value, "params": [name, ...]}]}``. Parameters that never took a step have no entry.
        """
        state = {}
        groups = []
        for group in self.param_groups:
            for name, p in zip(group["param_names"], group["params"]):
                if id(p) in self.state:
                    state[name] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                   for k, v in self.state[id(p)].items()}
            saved = {k: copy.deepcopy(v) for k, v in group.items()
                     if k not in ("params", "param_names")}
            saved["params"] = list(group["param_names"])
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state saved by :meth:`state_dict` (resuming a stopped run).

        Raises
        ------
        ValueError
            When the number of groups, the parameter names of a group, or the shape of a saved
            buffer differ from this optimiser's (the group, names and shapes are named).
        """
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("optimizer state dict must be a dict with keys 'state' and "
                             "'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"optimizer state dict has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        by_name = {}
        for index, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            names = list(saved["params"])
            if names != group["param_names"]:
                missing = [n for n in group["param_names"] if n not in names]
                unexpected = [n for n in names if n not in group["param_names"]]
                raise ValueError(f"parameter group {index} of the optimizer state dict does not "
                                 f"match: missing {missing}, unexpected {unexpected}"
                                 + ("" if missing or unexpected else " (order differs)"))
            for name, p in zip(group["param_names"], group["params"]):
                by_name[name] = p
        unknown = [n for n in state_dict["state"] if n not in by_name]
        if unknown:
            raise ValueError(f"optimizer state dict has state for unknown parameters {unknown}")
        new_state = {}
        for name, entry in state_dict["state"].items():
            p = by_name[name]
            restored = {}
            for key, value in entry.items():
                if key in self._array_state:
                    arr = np.array(value, dtype=np.float32, copy=True)
                    if arr.shape != p.data.shape:
                        raise ValueError(f"optimizer state {name}.{key} has shape {arr.shape}, "
                                         f"parameter has shape {p.data.shape}")
                    restored[key] = arr
                else:
                    restored[key] = copy.deepcopy(value)
            new_state[id(p)] = restored
        # Only now, with everything checked, replace the state and hyper-parameters.
        self.state = new_state
        for group, saved in zip(self.param_groups, saved_groups):
            for key, value in saved.items():
                if key != "params":
                    group[key] = copy.deepcopy(value)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k not in ("params", "param_names")):
                lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.

    For each parameter :math:`\theta` with gradient :math:`g` (PyTorch's ``torch.optim.SGD``;
    Sutskever et al. 2013, eq. 3-4 for momentum in this "velocity" form):

    .. math::

        g &\leftarrow g + \lambda \theta \quad (\text{weight decay } \lambda) \\
        b &\leftarrow g \text{ on the first step, else } \mu b + (1 - \tau) g \\
        g &\leftarrow g + \mu b \text{ (Nesterov) or } b \\
        \theta &\leftarrow \theta - \gamma g

    Parameters
    ----------
    params : iterable
        Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
    lr : float
        Learning rate :math:`\gamma` (>= 0; default 1e-3, as PyTorch 2.x).
    momentum : float
        :math:`\mu` (>= 0); 0 disables the buffer.
    dampening : float
        :math:`\tau`; applied from the second step on, as in PyTorch.
    weight_decay : float
        :math:`\lambda`, an L2 penalty added to the gradient.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore.nn.module import Parameter
    >>> w = Parameter(np.array([1.0, 2.0]))
    >>> opt = SGD([("w", w)], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = np.ones(2, dtype=np.float32)
    ...     opt.step()
    >>> w.data          # b = 1 then 0.9 * 1 + 1 = 1.9: w = 1 - 0.1 - 0.19
    array([0.71, 1.71], dtype=float32)
    """

    _array_state = ("momentum_buffer",)

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=bool(nesterov)))

    def _check_hyperparameters(self, group):
        super()._check_hyperparameters(group)
        check_nonnegative(group["momentum"], "momentum")
        check_nonnegative(group["dampening"], "dampening")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")

    def step(self) -> None:
        for group in self.param_groups:
            lr = group["lr"]
            momentum = group["momentum"]
            dampening = group["dampening"]
            weight_decay = group["weight_decay"]
            for name, p, grad in self._gradients(group):
                # ``grad`` belongs to the caller; ``g`` is our own scratch once anything is added.
                # Each line keeps PyTorch's order of float32 operations (same rounding).
                g = grad
                if weight_decay != 0:
                    g = np.multiply(p.data, np.float32(weight_decay))     # g = grad + wd * theta
                    g += grad
                if momentum != 0:
                    state = self.state.setdefault(id(p), {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = np.array(g, dtype=np.float32, copy=True)
                        state["momentum_buffer"] = buf
                    else:
                        buf *= np.float32(momentum)
                        if dampening != 0:
                            buf += np.float32(1 - dampening) * g
                        else:
                            buf += g
                    if group["nesterov"]:
                        scaled = np.multiply(buf, np.float32(momentum))   # g = g + mu * b
                        g = np.add(g, scaled, out=scaled)
                    else:
                        g = buf
                step = np.multiply(g, np.float32(lr))
                p.data -= step


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015, Algorithm 1) with PyTorch's bias correction and epsilon placement.

    At step :math:`t` (counted per parameter, from 1), with gradient :math:`g`:

    .. math::

        g &\leftarrow g + \lambda \theta \quad (\text{L2 weight decay, Adam only}) \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2 \\
        \hat v &\leftarrow \max(\hat v, v) \text{ (amsgrad) or } v \\
        \theta &\leftarrow \theta - \frac{\gamma}{1 - \beta_1^t}\,
                 \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}

    Note that :math:`\epsilon` is added *after* the bias correction of :math:`\sqrt{v}`, as in
    PyTorch (the paper's Algorithm 1 writes the same; its "efficient version" in sec. 2 differs).

    Parameters
    ----------
    params : iterable
        Parameters, ``(name, Parameter)`` pairs, or parameter-group dicts.
    lr : float
        :math:`\gamma`.
    betas : (float, float)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float
        :math:`\epsilon`.
    weight_decay : float
        :math:`\lambda` (L2 penalty added to the gradient; see :class:`AdamW` for decoupled decay).
    amsgrad : bool
        Use the running maximum of :math:`v` (Reddi et al. 2018).
    """

    _array_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=bool(amsgrad)))

    def _check_hyperparameters(self, group):
        super()._check_hyperparameters(group)
        check_nonnegative(group["eps"], "eps")
        betas = group["betas"]
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        group["betas"] = (float(betas[0]), float(betas[1]))

    def step(self) -> None:
        for group in self.param_groups:
            lr = group["lr"]
            beta1, beta2 = group["betas"]
            eps = group["eps"]
            weight_decay = group["weight_decay"]
            for name, p, grad in self._gradients(group):
                state = self.state.setdefault(id(p), {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = np.zeros_like(p.data)
                    state["exp_avg_sq"] = np.zeros_like(p.data)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = np.zeros_like(p.data)
                state["step"] += 1
                t = state["step"]
                if weight_decay != 0:
                    if self._decoupled_weight_decay:
                        p.data *= np.float32(1 - lr * weight_decay)
                    else:
                        grad = grad + np.float32(weight_decay) * p.data
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                # m <- m + (1 - beta1) (g - m): PyTorch's lerp, the same as beta1 m + (1 - beta1) g
                scratch = np.subtract(grad, exp_avg)
                scratch *= np.float32(1 - beta1)
                exp_avg += scratch
                # v <- beta2 v + (1 - beta2) g^2
                np.multiply(grad, grad, out=scratch)
                scratch *= np.float32(1 - beta2)
                exp_avg_sq *= np.float32(beta2)
                exp_avg_sq += scratch
                bias_correction1 = 1 - beta1 ** t
                bias_correction2_sqrt = math.sqrt(1 - beta2 ** t)
                step_size = lr / bias_correction1
                if group["amsgrad"]:
                    second = state.setdefault("max_exp_avg_sq", np.zeros_like(p.data))
                    np.maximum(second, exp_avg_sq, out=second)
                else:
                    second = exp_avg_sq
                # theta <- theta - step_size * m / (sqrt(v) / sqrt(bc2) + eps)
                denom = np.sqrt(second, out=scratch)
                denom /= np.float32(bias_correction2_sqrt)
                denom += np.float32(eps)
                np.divide(exp_avg, denom, out=denom)
                denom *= np.float32(step_size)
                p.data -= denom


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2), as
    ``torch.optim.AdamW``.

    Before the Adam update the parameter shrinks, :math:`\theta \leftarrow \theta (1 - \gamma
    \lambda)`, instead of adding :math:`\lambda\theta` to the gradient; the default
    ``weight_decay`` is 1e-2. Other parameters as :class:`Adam`.
    """

    _decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
