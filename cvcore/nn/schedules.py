"""Learning-rate schedules: step decay, cosine annealing, one-cycle and linear warm-up.

A schedule owns an optimiser and rewrites ``group["lr"]`` of each of its parameter groups. The
conventions are PyTorch's (``torch/optim/lr_scheduler.py``), so a recipe written for PyTorch gives
the same learning rates here:

- Building the schedule is step 0: it records ``group["initial_lr"]`` (the *base* rate) and sets
  the rate for the first epoch (or batch).
- ``scheduler.step()`` is called *after* ``optimizer.step()``, once per epoch (``StepLR``,
  ``CosineAnnealingLR``, ``LinearLR``) or once per batch (``OneCycleLR``), and advances
  ``last_epoch`` by one.
- ``get_last_lr()`` returns the rates now in the groups.

``StepLR``, ``CosineAnnealingLR`` and ``LinearLR`` update the rate *recursively* from the current
``group["lr"]`` exactly as PyTorch does, which makes them composable: stepping a ``LinearLR``
warm-up and a ``CosineAnnealingLR`` on the same optimiser multiplies their effects, as PyTorch's
``ChainedScheduler`` does. Each class documents its closed form; without outside changes to the
rate the two agree to rounding (tested). ``OneCycleLR`` is computed in closed form, as in PyTorch.
"""
from __future__ import annotations

import math

from cvcore._validate import check_choice, check_int, check_nonnegative, check_positive
from cvcore.nn.optim import Optimizer

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR", "LinearLR", "OneCycleLR",
           "ChainedScheduler"]


class LRScheduler:
    """Base class: base rates, the step counter, ``get_last_lr`` and state dicts.

    Parameters
    ----------
    optimizer : Optimizer
        The optimiser whose ``param_groups[i]["lr"]`` this schedule sets.
    last_epoch : int
        -1 (default) starts a new schedule. To resume, prefer :meth:`load_state_dict`.
    """

    #: Attributes saved by :meth:`state_dict` besides the counters (subclasses extend it).
    _config: tuple[str, ...] = ()

    def __init__(self, optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a cvcore optimizer")
        self.optimizer = optimizer
        last_epoch = check_int(last_epoch, "last_epoch", minimum=-1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr': resume a schedule by "
                                   f"loading the optimizer's state dict first")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._initial = True
        self.step()
        self._initial = False

    def get_lr(self) -> list[float]:
        """The rates for ``self.last_epoch`` (already advanced by :meth:`step`)."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch (or batch, for :class:`OneCycleLR`) and set the new rates."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group after the last :meth:`step`."""
        return list(self._last_lr)

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Counters, base rates and configuration, as plain Python values."""
        out = {"last_epoch": self.last_epoch, "_step_count": self._step_count,
               "base_lrs": list(self.base_lrs), "_last_lr": list(self._last_lr)}
        for key in self._config:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, list) else value
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the counters and configuration saved by :meth:`state_dict`.

        The optimiser's rates are restored by the optimiser's own ``load_state_dict``.
        """
        expected = {"last_epoch", "_step_count", "base_lrs", "_last_lr", *self._config}
        if not isinstance(state_dict, dict) or set(state_dict) != expected:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{type(self).__name__} state dict must have keys "
                             f"{sorted(expected)}, got {got}")
        if len(state_dict["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__} state dict has "
                             f"{len(state_dict['base_lrs'])} base rates, the optimizer has "
                             f"{len(self.optimizer.param_groups)} parameter groups")
        for key, value in state_dict.items():
            setattr(self, key, list(value) if isinstance(value, list) else value)


class StepLR(LRScheduler):
    r"""Multiply the rate by ``gamma`` every ``step_size`` epochs.

    Closed form: :math:`\eta_t = \eta_0\, \gamma^{\lfloor t / s \rfloor}` (``torch.optim.lr_scheduler
    .StepLR``). Recursively: at each non-zero multiple of ``step_size`` the current rate is
    multiplied by ``gamma``.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        :math:`s`, epochs between decays (>= 1).
    gamma : float
        Decay factor (default 0.1).
    """

    _config = ("step_size", "gamma")

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = check_int(step_size, "step_size", minimum=1)
        self.gamma = check_nonnegative(gamma, "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the base rate to ``eta_min`` over ``T_max`` epochs (no restarts).

    Closed form (Loshchilov & Hutter 2017, SGDR, eq. 5 with :math:`T_{cur} = t`):

    .. math::

        \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})
                 \left(1 + \cos\frac{\pi t}{T_{max}}\right)

    computed, as in ``torch.optim.lr_scheduler.CosineAnnealingLR``, recursively from the previous
    rate: :math:`\eta_t = \eta_{min} + (\eta_{t-1} - \eta_{min}) (1 + \cos(\pi t / T)) /
    (1 + \cos(\pi (t-1) / T))`, with PyTorch's special case where the denominator is zero
    (:math:`t - 1 - T` a multiple of :math:`2T`). Past ``T_max`` the rate rises again along the
    same cosine, as PyTorch's does.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Half-period in epochs (>= 1).
    eta_min : float
        The lowest rate (default 0).
    """

    _config = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = check_int(T_max, "T_max", minimum=1)
        self.eta_min = check_nonnegative(eta_min, "eta_min")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return self._current_lrs()
        if self._step_count == 1 and t > 0:  # as PyTorch: closed form on a first explicit step
            return [eta_min + (base - eta_min) * (1 + math.cos(t * math.pi / T)) / 2
                    for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (base - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for lr, base in zip(self._current_lrs(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (lr - eta_min) + eta_min for lr in self._current_lrs()]


class LinearLR(LRScheduler):
    r"""Linear warm-up (or decay): scale the base rate by a factor going linearly from
    ``start_factor`` to ``end_factor`` over ``total_iters`` epochs, then hold it.

    Closed form (``torch.optim.lr_scheduler.LinearLR``):

    .. math::

        \eta_t = \eta_0 \left(f_s + (f_e - f_s) \frac{\min(t, T)}{T}\right)

    computed recursively from the previous rate, as PyTorch does, so that it composes with a
    schedule stepped on the same optimiser (warm-up followed by cosine decay).

    Parameters
    ----------
    optimizer : Optimizer
    start_factor : float
        :math:`f_s` in (0, 1], default 1/3.
    end_factor : float
        :math:`f_e` in [0, 1], default 1.
    total_iters : int
        :math:`T`, epochs of the ramp (default 5).

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore.nn.module import Parameter
    >>> from cvcore.nn.optim import SGD
    >>> opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    >>> warmup = LinearLR(opt, start_factor=0.25, total_iters=3)
    >>> lrs = [warmup.get_last_lr()[0]]
    >>> for epoch in range(4):
    ...     warmup.step()
    ...     lrs.append(warmup.get_last_lr()[0])
    >>> [round(lr, 6) for lr in lrs]
    [0.025, 0.05, 0.075, 0.1, 0.1]
    """

    _config = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        start_factor = check_positive(start_factor, "start_factor")
        end_factor = check_nonnegative(end_factor, "end_factor")
        if start_factor > 1:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor}")
        if end_factor > 1:
            raise ValueError(f"end_factor must be in [0, 1], got {end_factor}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = check_int(total_iters, "total_iters", minimum=1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, fs, fe, T = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
        if t == 0:
            return [lr * fs for lr in self._current_lrs()]
        if self._initial or t > T:
            return self._current_lrs()
        factor = 1.0 + (fe - fs) / (T * fs + (t - 1) * (fe - fs))
        return [lr * factor for lr in self._current_lrs()]


# Smith & Topin 2019 ("Super-Convergence"), with fastai's two-phase default, as PyTorch's OneCycleLR.
ONE_CYCLE_PCT_START = 0.3
ONE_CYCLE_DIV_FACTOR = 25.0
ONE_CYCLE_FINAL_DIV_FACTOR = 1e4
ONE_CYCLE_BASE_MOMENTUM = 0.85
ONE_CYCLE_MAX_MOMENTUM = 0.95


def _per_group(value, name: str, optimizer) -> list[float]:
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} values, the optimizer has {n} groups")
        return [check_nonnegative(v, name) for v in value]
    return [check_nonnegative(value, name)] * n


class OneCycleLR(LRScheduler):
    r"""The one-cycle policy (Smith & Topin 2019): warm up to ``max_lr``, then anneal far below.

    Stepped once per *batch*. With ``total_steps`` :math:`N` and ``pct_start`` :math:`p`, phase 1
    runs from step 0 to :math:`pN - 1`, rate from ``max_lr / div_factor`` up to ``max_lr`` and
    momentum from ``max_momentum`` down to ``base_momentum``; phase 2 runs to step :math:`N - 1`,
    rate down to ``initial_lr / final_div_factor`` and momentum back up. With ``three_phase`` the
    second phase mirrors the first and a third anneals to the minimum. Each phase interpolates
    with ``anneal_strategy``: ``"cos"``, :math:`e + (s - e)(1 + \cos \pi x) / 2`, or
    ``"linear"``, :math:`s + (e - s) x`, for the fraction :math:`x` of the phase done.

    The defaults are PyTorch's (``pct_start=0.3``, cosine, ``div_factor=25``,
    ``final_div_factor=1e4``, momentum 0.85..0.95, two phases). Momentum cycling writes
    ``group["momentum"]`` (SGD) or ``group["betas"][0]`` (Adam/AdamW).

    Parameters
    ----------
    optimizer : Optimizer
    max_lr : float or list of float
        Peak rate, per group.
    total_steps : int, optional
        :math:`N`; or give ``epochs`` and ``steps_per_epoch``.
    """

    _config = ("total_steps", "_phases", "anneal_strategy", "cycle_momentum", "use_beta1")

    def __init__(self, optimizer, max_lr, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = ONE_CYCLE_PCT_START, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum=ONE_CYCLE_BASE_MOMENTUM,
                 max_momentum=ONE_CYCLE_MAX_MOMENTUM, div_factor: float = ONE_CYCLE_DIV_FACTOR,
                 final_div_factor: float = ONE_CYCLE_FINAL_DIV_FACTOR, three_phase: bool = False,
                 last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a cvcore optimizer")
        if total_steps is not None:
            self.total_steps = check_int(total_steps, "total_steps", minimum=1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (check_int(epochs, "epochs", minimum=1)
                                * check_int(steps_per_epoch, "steps_per_epoch", minimum=1))
        else:
            raise ValueError("OneCycleLR needs total_steps, or both epochs and steps_per_epoch")
        pct_start = check_nonnegative(pct_start, "pct_start")
        if pct_start > 1:
            raise ValueError(f"pct_start must be in [0, 1], got {pct_start}")
        self.anneal_strategy = check_choice(anneal_strategy, {"cos", "linear"}, "anneal_strategy")
        div_factor = check_positive(div_factor, "div_factor")
        final_div_factor = check_positive(final_div_factor, "final_div_factor")
        N = self.total_steps
        if three_phase:
            self._phases = [
                (float(pct_start * N) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct_start * N) - 2, "max_lr", "initial_lr", "base_momentum",
                 "max_momentum"),
                (N - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [
                (float(pct_start * N) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (N - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        max_lrs = _per_group(max_lr, "max_lr", optimizer)
        if last_epoch == -1:
            for group, peak in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        self.use_beta1 = False
        if self.cycle_momentum:
            groups = optimizer.param_groups
            if all("betas" in g for g in groups):
                self.use_beta1 = True
            elif not all("momentum" in g for g in groups):
                raise ValueError("cycle_momentum needs an optimizer with momentum (SGD) or betas "
                                 "(Adam); pass cycle_momentum=False")
            max_moms = _per_group(max_momentum, "max_momentum", optimizer)
            base_moms = _per_group(base_momentum, "base_momentum", optimizer)
            if last_epoch == -1:
                for group, m_max, m_base in zip(groups, max_moms, base_moms):
                    if self.use_beta1:
                        group["betas"] = (m_max, *group["betas"][1:])
                    else:
                        group["momentum"] = m_max
                    group["max_momentum"] = m_max
                    group["base_momentum"] = m_base
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR stepped {step} times; total_steps is {self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, lr0, lr1, mom0, mom1) in enumerate(self._phases):
                last = i == len(self._phases) - 1
                # a phase of no length (few total_steps) is passed over: PyTorch divides by
                # zero there (ZeroDivisionError; found by the fuzzing harness)
                if (step <= end_step and end_step > start_step) or last:
                    span = end_step - start_step
                    pct = (step - start_step) / span if span > 0 else 1.0
                    lr = self._anneal(group[lr0], group[lr1], pct)
                    if self.cycle_momentum:
                        momentum = self._anneal(group[mom0], group[mom1], pct)
                    break
                start_step = end_step
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    group["momentum"] = momentum
        return lrs

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        if "_phases" in state_dict:
            state_dict["_phases"] = [tuple(p) for p in state_dict["_phases"]]
        super().load_state_dict(state_dict)


class ChainedScheduler:
    """Step several schedules of one optimiser together (``torch.optim.lr_scheduler
    .ChainedScheduler``): their multiplicative updates compose, so a :class:`LinearLR` warm-up
    chained with :class:`CosineAnnealingLR` warms up into a cosine decay.

    Parameters
    ----------
    schedulers : sequence of LRScheduler
        Built on the same optimiser, in the order they are stepped.

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore.nn.module import Parameter
    >>> from cvcore.nn.optim import SGD
    >>> opt = SGD([Parameter(np.zeros(1))], lr=0.1)
    >>> schedule = ChainedScheduler([LinearLR(opt, start_factor=0.5, total_iters=2),
    ...                              CosineAnnealingLR(opt, T_max=4)])
    >>> lrs = [schedule.get_last_lr()[0]]
    >>> for epoch in range(4):
    ...     schedule.step()
    ...     lrs.append(schedule.get_last_lr()[0])
    >>> [round(lr, 4) for lr in lrs]
    [0.05, 0.064, 0.05, 0.0146, 0.0]
    """

    def __init__(self, schedulers):
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError("ChainedScheduler needs at least one schedule")
        optimizer = schedulers[0].optimizer
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(f"schedule {i} is a {type(scheduler).__name__}, not a cvcore "
                                f"LRScheduler")
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"schedule {i} ({type(scheduler).__name__}) drives another "
                                 f"optimizer; all must share one")
        self.optimizer = optimizer
        self.schedulers = schedulers
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def step(self) -> None:
        """Step every schedule, in order."""
        for scheduler in self.schedulers:
            scheduler.step()
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {"_last_lr": list(self._last_lr),
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state_dict: dict) -> None:
        if (not isinstance(state_dict, dict) or set(state_dict) != {"_last_lr", "schedulers"}
                or len(state_dict["schedulers"]) != len(self.schedulers)):
            raise ValueError(f"ChainedScheduler state dict must hold _last_lr and "
                             f"{len(self.schedulers)} schedule states")
        for scheduler, state in zip(self.schedulers, state_dict["schedulers"]):
            scheduler.load_state_dict(state)
        self._last_lr = list(state_dict["_last_lr"])
