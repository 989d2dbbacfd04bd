"""Gradient checking by central differences in float64.

A backward pass is checked against the definition of the derivative. With a fixed random
projection ``R`` of the output (seeded), the scalar objective is ``f = sum(R * y)``; its
analytical gradient with respect to every checked array is what the backward pass returns when
given ``dy = R``, and its numerical gradient is the central difference

.. math::
    \\frac{\\partial f}{\\partial a_i} \\approx \\frac{f(a + h e_i) - f(a - h e_i)}{2h},

whose truncation error is :math:`O(h^2)` (e.g. Nocedal & Wright 2006, sec. 8.1). Entry ``i`` passes
when :math:`|g_a - g_n| \\le \\mathrm{atol} + \\mathrm{rtol}\\,|g_n|` (``torch.autograd.gradcheck``'s
test and default tolerances).

Two kinds of target:

* **a functional pair** ``forward(*inputs) -> (y, cache)`` and ``backward(dy, cache)`` returning
  one gradient per input (a tuple, or a single array for one input; ``None`` for an input that is
  not differentiated). Non-array arguments (stride, eps, ...) are bound with a lambda.
* **a Module**: ``module(*inputs)`` returns ``y`` and ``module.backward(dy)`` returns the gradient
  of the *first* input and fills ``.grad`` of every parameter. For the duration of the check the
  parameters' data are replaced by float64 copies and the floating inputs are cast to float64 (the
  layers compute in float64 when their input or parameters are float64, through the same kernels);
  afterwards the original parameter arrays and buffers (BatchNorm running statistics) are put back
  and ``.grad`` is reset to None. The module is run in its current mode (training mode by
  default) and must be deterministic: check Dropout through its functional pair with a fresh
  seeded generator per call.

Integer inputs (class labels) are passed through unchanged and not differentiated.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np

from cvcore.nn.module import Module

__all__ = ["gradcheck", "GradcheckResult", "GradcheckError"]

# torch.autograd.gradcheck's defaults: eps=1e-6, atol=1e-5, rtol=1e-3.
DEFAULT_EPS = 1e-6
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-3


class GradcheckError(AssertionError):
    """The analytical and numerical gradients disagree (the message names the array and entry)."""


class GradcheckResult(NamedTuple):
    ok: bool
    max_abs_error: float     # largest |analytical - numerical| over every checked entry
    max_rel_error: float     # largest |analytical - numerical| / max(|numerical|, atol)
    worst: str               # "<array name>[index]: analytical a, numerical n" of the worst entry
    checked: int             # number of entries compared


def _is_float_array(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _objective(y, R) -> float:
    return float(np.sum(np.asarray(y, dtype=np.float64) * R))


def _pick(size: int, limit: Optional[int], rng: np.random.Generator):
    if limit is None or size <= limit:
        return np.arange(size)
    return np.sort(rng.choice(size, limit, replace=False))


def gradcheck(target, inputs, backward: Optional[Callable] = None, *, eps: float = DEFAULT_EPS,
              atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, seed: int = 0,
              max_entries: Optional[int] = None, check_params: bool = True,
              raise_on_failure: bool = True) -> GradcheckResult:
    """Compare a backward pass with central differences of its forward pass, in float64.

    Parameters
    ----------
    target : Module or callable
        A module, or the forward function of a functional pair (then ``backward`` is required).
    inputs : ndarray or tuple
        The forward arguments. Floating arrays are copied to float64 and differentiated; other
        arguments (integer labels, numbers) are passed unchanged.
    backward : callable, optional
        ``backward(dy, cache)`` of a functional pair.
    eps : float
        The central-difference step ``h``.
    atol, rtol : float
        Tolerances of the per-entry test ``|g_a - g_n| <= atol + rtol |g_n|``.
    seed : int
        Seeds the projection ``R`` and the choice of entries.
    max_entries : int, optional
        Check at most this many randomly chosen entries of each array (all by default).
    check_params : bool
        For a Module, also check every parameter that requires a gradient.
    raise_on_failure : bool
        Raise :class:`GradcheckError` on failure (default) instead of returning ``ok=False``.

    Returns
    -------
    GradcheckResult
    """
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    inputs = tuple(np.array(a, dtype=np.float64) if _is_float_array(a) else a for a in inputs)
    rng = np.random.default_rng(seed)
    if isinstance(target, Module):
        if backward is not None:
            raise TypeError("gradcheck: backward is given by the module itself; pass "
                            "backward only with a forward function")
        return _check_module(target, inputs, eps, atol, rtol, rng, max_entries, check_params,
                             raise_on_failure)
    if backward is None:
        raise TypeError("gradcheck: a forward function needs its backward function")
    return _check_pair(target, backward, inputs, eps, atol, rtol, rng, max_entries,
                       raise_on_failure)


def _compare(named, numeric_fn, eps, atol, rtol, rng, max_entries, raise_on_failure):
    """``named``: list of (name, array, analytical gradient). ``numeric_fn()`` -> objective."""
    max_abs = 0.0
    max_rel = 0.0
    worst = ""
    worst_score = -np.inf
    failures = []
    checked = 0
    for name, arr, grad in named:
        if grad is None:
            raise GradcheckError(f"gradcheck: backward returned no gradient for {name}")
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != arr.shape:
            raise GradcheckError(f"gradcheck: gradient of {name} has shape {grad.shape}, the "
                                 f"array has {arr.shape}")
        flat = arr.reshape(-1)          # a view: perturbing it perturbs the array itself
        gflat = grad.reshape(-1)
        for i in _pick(flat.size, max_entries, rng):
            old = flat[i]
            flat[i] = old + eps
            f_plus = numeric_fn()
            flat[i] = old - eps
            f_minus = numeric_fn()
            flat[i] = old
            numeric = (f_plus - f_minus) / (2.0 * eps)
            analytic = gflat[i]
            err = abs(analytic - numeric)
            rel = err / max(abs(numeric), atol)
            checked += 1
            max_abs = max(max_abs, err)
            max_rel = max(max_rel, rel)
            score = err - (atol + rtol * abs(numeric))
            index = np.unravel_index(i, arr.shape)
            if score > worst_score:
                worst_score = score
                worst = (f"{name}{list(int(v) for v in index)}: analytical {analytic:.10g}, "
                         f"numerical {numeric:.10g}")
            if score > 0:
                failures.append(index)
    ok = not failures
    result = GradcheckResult(ok, max_abs, max_rel, worst, checked)
    if not ok and raise_on_failure:
        raise GradcheckError(f"gradcheck failed on {len(failures)} of {checked} entries "
                             f"(atol {atol}, rtol {rtol}); worst {worst}")
    return result


def _check_pair(forward, backward, inputs, eps, atol, rtol, rng, max_entries, raise_on_failure):
    y, cache = forward(*inputs)
    R = rng.standard_normal(np.shape(y))
    grads = backward(R.astype(np.asarray(y).dtype) if np.ndim(y) else float(R), cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    named = []
    for k, a in enumerate(inputs):
        if _is_float_array(a) and k < len(grads) and grads[k] is not None:
            named.append((f"input {k}", a, grads[k]))
    if not named:
        raise GradcheckError("gradcheck: no floating input received a gradient")
    return _compare(named, lambda: _objective(forward(*inputs)[0], R), eps, atol, rtol, rng,
                    max_entries, raise_on_failure)


def _check_module(module, inputs, eps, atol, rtol, rng, max_entries, check_params,
                  raise_on_failure):
    params = list(module.named_parameters())
    saved_data = [p.data for _, p in params]
    saved_buffers = module.state_dict()
    try:
        for _, p in params:
            p.data = np.array(p.data, dtype=np.float64)
            p.grad = None
        y = module(*inputs)
        R = rng.standard_normal(np.shape(y))
        dx = module.backward(R if np.ndim(y) else float(R))
        named = []
        if _is_float_array(inputs[0]):
            named.append(("input", inputs[0], dx))
        if check_params:
            for name, p in params:
                if p.requires_grad:
                    named.append((name, p.data, p.grad))

        def numeric():
            return _objective(module(*inputs), R)

        return _compare(named, numeric, eps, atol, rtol, rng, max_entries, raise_on_failure)
    finally:
        for (_, p), data in zip(params, saved_data):
            p.data = data
            p.grad = None
        param_names = {name for name, _ in params}
        module.load_state_dict({k: v for k, v in saved_buffers.items() if k not in param_names},
                               strict=False)
