"""Gradient attacks: the fast gradient sign method and projected gradient descent.

With ``l(x, y)`` the cross-entropy of the model's logits (:mod:`cvcore.adversarial.models`), a
valid pixel range ``[lo, hi]`` (``clip``) and a budget ``eps``:

FGSM (Goodfellow, Shlens & Szegedy 2015, eq. 3)
    ``x' = clip(x + eps * sign(grad_x l(x, y)), lo, hi)``; targeted at class ``t``:
    ``x' = clip(x - eps * sign(grad_x l(x, t)), lo, hi)``.

PGD (Madry et al. 2018, eq. 2), ``steps`` steps of size ``alpha`` from ``x_0 = x + delta_0``
    L-inf: ``x_{k+1} = clip(x + clip(x_k + alpha * sign(g_k) - x, -eps, eps), lo, hi)``;
    L2: ``x_{k+1} = clip(x + P(x_k + alpha * g_k / (|g_k|_2 + 1e-10) - x), lo, hi)`` with
    ``P(d) = d * min(1, eps / |d|_2)``, the projection on the L2 ball. ``g_k`` is the loss
    gradient at ``x_k`` (its negative for a targeted attack). The random start ``delta_0`` is
    uniform in ``[-eps, eps]`` per pixel (L-inf) or a random direction scaled to a radius
    ``U(0, 1) * eps`` (L2), the start then clipped to ``[lo, hi]``.

The order of operations (step, projection on the ball, clipping to the pixel range, in float32)
is that of torchattacks 3.5.1 (``FGSM``, ``PGD``, ``PGDL2``), ART and Foolbox, which agree with
each other bit for bit on the CPU; ``tests/test_adversarial.py`` checks these functions against
a PyTorch implementation and torchattacks on the same weights.

Restarts: PGD is run ``restarts`` times from independent random starts; per image the result
kept is the first that succeeds (misclassified, or classified as the target), else the one with
the highest loss (lowest, targeted). Randomness is seeded per image from ``(seed, restart,
index)``, so results do not depend on the batch size.
"""
from __future__ import annotations

import math

import numpy as np

from cvcore._validate import check_array, check_choice, check_int
from cvcore.adversarial.models import check_attack_model

__all__ = ["fgsm", "pgd", "robust_accuracy", "transfer_accuracy", "NORMS",
           "default_step_size", "torch_uniform_start"]

NORMS = ("linf", "l2")
#: Step size ``alpha = PGD_STEP_FACTOR * eps / steps`` when none is given (Madry et al.'s
#: robustness library's rule, "step size 2.5 * eps / steps": every pixel can walk to the edge
#: of the ball and back inside the step budget).
PGD_STEP_FACTOR = 2.5
#: Added to the L2 norm of the gradient before dividing (torchattacks' ``eps_for_division``).
L2_DIVISION_EPS = 1e-10
DEFAULT_BATCH = 256


# -- argument checks ------------------------------------------------------------------------------
def _check_eps(eps, name="eps") -> float:
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer,
                                                                 np.floating)):
        raise TypeError(f"{name} must be a number, got {eps!r}")
    value = float(eps)
    if math.isnan(value):
        raise ValueError(f"{name} is NaN; give the perturbation budget as a number >= 0")
    if value < 0 or math.isinf(value):
        raise ValueError(f"{name} must be finite and >= 0, got {eps}")
    return value


def _check_clip(clip):
    if clip is None:
        return None
    if len(clip) != 2:
        raise ValueError(f"clip must be (low, high), got {clip!r}")
    lo, hi = float(clip[0]), float(clip[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"clip must be finite with low < high, got {clip!r}")
    return lo, hi


def _check_inputs(model, x, y, clip, name="x"):
    model = check_attack_model(model)
    x = check_array(x, name, dtypes="f")
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch (N, ...) of images, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or infinity")
    if clip is not None:
        lo, hi = clip
        below, above = float(x.min()), float(x.max())
        if below < lo or above > hi:
            raise ValueError(f"{name} has values in [{below:g}, {above:g}], outside the valid "
                             f"range [{lo:g}, {hi:g}] the attack clips to (scale images to "
                             f"[0, 1], or pass clip=)")
    y = check_array(y, "y", ndim=1, dtypes="iu").astype(np.int64)
    if len(y) != len(x):
        raise ValueError(f"{name} has {len(x)} images but y has {len(y)} labels")
    k = getattr(model, "num_classes", None)
    if y.min() < 0 or (k is not None and y.max() >= k):
        raise ValueError(f"y holds class {int(y.min()) if y.min() < 0 else int(y.max())}, "
                         f"outside 0..{k - 1 if k else '?'}")
    return model, np.ascontiguousarray(x, dtype=np.float32), y


def default_step_size(eps: float, steps: int) -> float:
    """``PGD_STEP_FACTOR * eps / steps`` (see the constant)."""
    return PGD_STEP_FACTOR * eps / steps


def _gradient(model, x, y, targeted):
    loss, g = model.loss_gradient(x, y)
    g = np.asarray(g, dtype=np.float32).reshape(x.shape)
    if not np.all(np.isfinite(g)):
        raise ValueError("the model's input gradient holds NaN or infinity")
    return loss, (-g if targeted else g)


def _clip(x, clip):
    return x if clip is None else np.clip(x, np.float32(clip[0]), np.float32(clip[1]), out=x)


def _batches(n, batch_size):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


# -- FGSM -------------------------------------------------------------------------------------------
def fgsm(model, x, y, eps, *, targeted=False, clip=(0.0, 1.0), batch_size=DEFAULT_BATCH):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of ``eps`` along the sign
    of the input gradient of the loss.

    Parameters
    ----------
    model : AttackModel or cvcore.nn.Module
        See :mod:`cvcore.adversarial.models`; a Module is wrapped in :class:`NetworkModel`.
    x : (N, ...) float array
        Images in the valid range ``clip``.
    y : (N,) int array
        True labels (untargeted) or target labels (``targeted=True``).
    eps : float >= 0
        L-inf budget, in the units of ``x``.
    targeted : bool
        Step *down* the loss of ``y`` (towards the target class) instead of up.
    clip : (float, float) or None
        The valid pixel range the result is clipped to; ``x`` must lie in it.
    batch_size : int

    Returns
    -------
    (N, ...) float32, the adversarial images; ``|x' - x| <= eps`` elementwise.

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore import nn
    >>> from cvcore.adversarial import fgsm
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=np.random.default_rng(0)))
    >>> x = np.full((1, 1, 2, 2), 0.5, np.float32)
    >>> x_adv = fgsm(net, x, np.array([0]), eps=0.1)
    >>> round(float(np.abs(x_adv - x).max()), 6)   # eps, up to float32 rounding of 0.5 + 0.1
    0.1
    """
    eps = _check_eps(eps)
    clip = _check_clip(clip)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    model, x, y = _check_inputs(model, x, y, clip)
    out = np.empty_like(x)
    step = np.float32(eps)
    for b in _batches(len(x), batch_size):
        _, g = _gradient(model, x[b], y[b], targeted)
        out[b] = _clip(x[b] + step * np.sign(g), clip)
    return out


# -- PGD --------------------------------------------------------------------------------------------
def _random_start(shape, eps, norm, seed, restart, index):
    """The initial perturbation of each image, from its own generator ``(seed, restart, i)``."""
    delta = np.empty(shape, np.float32)
    for j, i in enumerate(index):
        rng = np.random.default_rng([seed, restart, int(i)])
        if norm == "linf":
            delta[j] = rng.uniform(-eps, eps, shape[1:])
        else:
            d = rng.standard_normal(shape[1:])
            d *= rng.uniform(0, 1) * eps / max(np.linalg.norm(d), 1e-30)
            delta[j] = d
    return delta


#: Mask and scale of PyTorch's float uniform draw on the CPU: the low 24 bits (float32's
#: significand) of one 32-bit Mersenne Twister output, times 2**-24 (ATen's
#: ``uniform_real_distribution<float>``, ``aten/src/ATen/core/DistributionsHelper.h``).
TORCH_FLOAT_BITS = 24


def torch_uniform_start(shape, eps, seed=0, skip=0):
    """The L-inf random start PyTorch draws on the CPU, reproduced without PyTorch.

    ``torch.manual_seed(seed)`` followed by ``torch.empty(shape).uniform_(-eps, eps)`` (which is
    what torchattacks' ``PGD`` draws: ``torch.empty_like(x).uniform_(-eps, eps)``), after
    ``skip`` earlier 32-bit draws of the same generator. PyTorch's CPU generator is the
    Mersenne Twister MT19937 seeded like NumPy's ``RandomState(seed)``; a float32 tensor is
    filled serially, one 32-bit output per element, as
    ``float32(u * (hi - lo) + lo)`` in float64 with ``u = (r & (2**24 - 1)) * 2**-24`` and the
    bounds first rounded to float32. Because the fill is serial, drawing the starts batch
    after batch gives the same numbers as one draw for the whole set (whatever the batch size),
    as long as nothing else draws in between (a ``DataLoader`` draws one int64, ``skip=2``,
    each time it is iterated; every ``Conv2d`` / ``Linear`` built draws its initial weights).

    Parameters
    ----------
    shape : tuple of int
    eps : float >= 0
    seed : int >= 0
        The ``torch.manual_seed`` value (below 2**32).
    skip : int >= 0
        32-bit outputs drawn from the generator since seeding, before this draw.

    Returns
    -------
    float32 array of ``shape``, in ``[-eps, eps)``; pass it as ``pgd(..., start=...)``.

    Examples
    --------
    >>> from cvcore.adversarial import torch_uniform_start
    >>> torch_uniform_start((4,), 0.3, seed=0)      # torch.manual_seed(0); uniform_(-0.3, 0.3)
    array([-0.00224605,  0.16093308, -0.24691355, -0.22078171], dtype=float32)
    """
    eps = _check_eps(eps)
    seed = check_int(seed, "seed", minimum=0)
    skip = check_int(skip, "skip", minimum=0)
    if seed >= 2 ** 32:
        raise ValueError(f"seed must be below 2**32 (MT19937's seed), got {seed}")
    shape = tuple(check_int(s, "shape", minimum=0) for s in shape)
    n = math.prod(shape)
    raw = np.random.RandomState(seed).randint(0, 2 ** 32, size=skip + n, dtype=np.uint32)[skip:]
    u = (raw & np.uint32((1 << TORCH_FLOAT_BITS) - 1)).astype(np.float64) \
        * 2.0 ** -TORCH_FLOAT_BITS
    lo, hi = float(np.float32(-eps)), float(np.float32(eps))
    return (u * (hi - lo) + lo).astype(np.float32).reshape(shape)


def _pgd_batch(model, x0, y, eps, alpha, steps, norm, delta0, targeted, clip, callback=None):
    eps32, alpha32 = np.float32(eps), np.float32(alpha)
    adv = x0.copy() if delta0 is None else _clip(x0 + delta0, clip)
    n = len(x0)
    for k in range(steps):
        _, g = _gradient(model, adv, y, targeted)
        if norm == "linf":
            adv = adv + alpha32 * np.sign(g)
            delta = np.clip(adv - x0, -eps32, eps32)
        else:
            norms = np.linalg.norm(g.reshape(n, -1), axis=1).astype(np.float32)
            g = g / (norms + np.float32(L2_DIVISION_EPS)).reshape((n,) + (1,) * (g.ndim - 1))
            adv = adv + alpha32 * g
            delta = adv - x0
            dn = np.linalg.norm(delta.reshape(n, -1), axis=1).astype(np.float32)
            # shrink onto the eps-ball only where outside it (dn > eps >= 0, so dn > 0): a zero
            # step at eps = 0 gave 0 / 0 = NaN images before
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(dn > eps32, eps32 / dn, np.float32(1)).astype(np.float32)
            delta = delta * factor.reshape((n,) + (1,) * (delta.ndim - 1))
        adv = _clip(x0 + delta, clip)
        if callback is not None:
            callback(k, adv)
    return adv


def pgd(model, x, y, eps, *, norm="linf", steps=10, step_size=None, random_start=True,
        restarts=1, targeted=False, seed=0, start=None, clip=(0.0, 1.0),
        batch_size=DEFAULT_BATCH, callback=None):
    """Projected gradient descent (Madry et al. 2018) in the L-inf or L2 norm.

    Parameters
    ----------
    model : AttackModel or cvcore.nn.Module
    x : (N, ...) float array in ``clip``
    y : (N,) int array
        True labels, or target labels with ``targeted=True``.
    eps : float >= 0
        Radius of the ball (L-inf: per pixel; L2: per image) in the units of ``x``.
    norm : {"linf", "l2"}
    steps : int >= 1
    step_size : float > 0, optional
        ``alpha``; default ``2.5 * eps / steps`` (:data:`PGD_STEP_FACTOR`).
    random_start : bool
        Start from a random point of the ball (see the module notes) instead of ``x``.
    restarts : int >= 1
        Independent random starts; per image the best result is kept (module notes).
    targeted : bool
    seed : int
        Seeds the random starts (per image: ``(seed, restart, index)``).
    start : (N, ...) array, optional
        An explicit initial perturbation ``delta_0`` (e.g. to replay another library's random
        start); overrides ``random_start``; needs ``restarts=1``.
    clip : (float, float) or None
        The valid pixel range.
    batch_size : int
    callback : callable, optional
        ``callback(step, x_adv_batch)`` after every step of every batch (for step-by-step
        comparisons and progress); the array must not be modified.

    Returns
    -------
    (N, ...) float32 adversarial images, within ``eps`` of ``x`` in the chosen norm.

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore import nn
    >>> from cvcore.adversarial import pgd
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=np.random.default_rng(0)))
    >>> x = np.full((3, 1, 2, 2), 0.5, np.float32)
    >>> x_adv = pgd(net, x, np.array([0, 1, 0]), eps=0.1, steps=5, seed=1)
    >>> bool(np.abs(x_adv - x).max() <= 0.1 + 1e-6)   # float32 rounding of x +- eps
    True
    """
    eps = _check_eps(eps)
    norm = check_choice(norm, NORMS, "norm")
    steps = check_int(steps, "steps", minimum=1)
    restarts = check_int(restarts, "restarts", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    clip = _check_clip(clip)
    alpha = default_step_size(eps, steps) if step_size is None else _check_eps(step_size,
                                                                              "step_size")
    model, x, y = _check_inputs(model, x, y, clip)
    if start is not None:
        if restarts != 1:
            raise ValueError("an explicit start replays one run: use restarts=1")
        start = check_array(start, "start", dtypes="f")
        if start.shape != x.shape:
            raise ValueError(f"start has shape {start.shape}, x has {x.shape}")
        start = start.astype(np.float32)
    out = np.empty_like(x)
    for b in _batches(len(x), batch_size):
        index = np.arange(b.start, b.stop)
        best, best_loss, done = None, None, None
        for r in range(restarts):
            if start is not None:
                delta0 = start[b]
            elif random_start and eps > 0:
                delta0 = _random_start(x[b].shape, eps, norm, seed, r, index)
            else:
                delta0 = None
            adv = _pgd_batch(model, x[b], y[b], eps, alpha, steps, norm, delta0, targeted,
                             clip, callback)
            if restarts == 1:
                best = adv
                break
            loss, _ = model.loss_gradient(adv, y[b])
            pred = np.argmax(model.logits(adv), axis=1)
            success = (pred == y[b]) if targeted else (pred != y[b])
            score = -loss if targeted else loss
            if best is None:
                best, best_loss, done = adv, score, success
                continue
            take = ~done & (success | (score > best_loss))
            best[take] = adv[take]
            best_loss = np.where(take, score, best_loss)
            done |= success
        out[b] = best
    return out


# -- measurements -----------------------------------------------------------------------------------
def _attack(model, x, y, eps, attack, **kwargs):
    if attack == "fgsm":
        return fgsm(model, x, y, eps, **kwargs)
    return pgd(model, x, y, eps, **kwargs)


def robust_accuracy(model, x, y, eps_list, attack="pgd", *, batch_size=DEFAULT_BATCH,
                    return_examples=False, **attack_kwargs):
    """Clean accuracy and accuracy under attack at each budget.

    Parameters
    ----------
    model : AttackModel or cvcore.nn.Module
    x, y : images in [0, 1] and true labels
    eps_list : sequence of float >= 0
    attack : {"pgd", "fgsm"}
    **attack_kwargs
        Passed to :func:`pgd` or :func:`fgsm` (``steps``, ``norm``, ``restarts``...).

    Returns
    -------
    dict
        ``accuracy`` (clean), ``eps`` (the list), ``robust_accuracy`` (one value per eps:
        the share of adversarial images classified correctly), ``attack`` and, with
        ``return_examples``, ``examples`` (eps -> adversarial images).
    """
    attack = check_choice(attack, ("pgd", "fgsm"), "attack")
    eps_list = [_check_eps(e) for e in np.atleast_1d(np.asarray(eps_list, dtype=object))]
    if not eps_list:
        raise ValueError("eps_list is empty")
    model, x, y = _check_inputs(model, x, y, attack_kwargs.get("clip", (0.0, 1.0)))
    clean = float(np.mean(model.predict(x, batch_size) == y))
    out = {"attack": attack, "eps": eps_list, "accuracy": clean, "robust_accuracy": []}
    examples = {}
    for eps in eps_list:
        adv = _attack(model, x, y, eps, attack, batch_size=batch_size, **attack_kwargs)
        out["robust_accuracy"].append(float(np.mean(model.predict(adv, batch_size) == y)))
        if return_examples:
            examples[eps] = adv
    if return_examples:
        out["examples"] = examples
    return out


def transfer_accuracy(source, target, x, y, eps, attack="pgd", **attack_kwargs):
    """Accuracy of ``target`` on adversarial images crafted against ``source`` (a black-box
    transfer attack; Papernot et al. 2016). A white-box attack on ``target`` should do at least
    as well (Carlini et al. 2019, sec. 4.3: a weaker white-box attack hints at gradient masking).
    """
    attack = check_choice(attack, ("pgd", "fgsm"), "attack")
    target = check_attack_model(target)
    adv = _attack(source, x, y, eps, attack, **attack_kwargs)
    return float(np.mean(target.predict(adv) == np.asarray(y)))
