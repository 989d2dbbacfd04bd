"""Layers of a convolutional network as forward/backward function pairs, and thin Module classes.

Every layer is first a pair of functions (cs231n's ``layers.py``, llm.c's ``*_forward`` /
``*_backward``)::

    y, cache = <layer>_forward(x, ...)          # cache: a NamedTuple of what backward needs
    dx[, dparams...] = <layer>_backward(dy, cache)

and then a :class:`~cvcore.nn.module.Module` that holds the parameters and buffers (names as in
PyTorch: ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``), calls
the pair, keeps the cache and fills ``.grad``.

Conventions
-----------
* Layout NCHW. float32 is the working precision; float64 inputs (gradient checks) run through the
  same kernels in float64, and a layer computes in float64 when its input *or* its parameters are
  float64. Integer, bool and float16 inputs are converted to float32.
* Module caches follow the module contract (:mod:`cvcore.nn.module`): a module keeps what backward
  needs in both training and eval mode, unless the forward runs inside ``cvcore.nn.no_grad()``
  (inference: nothing kept, ``backward`` raises). In eval mode :class:`BatchNorm2d` runs
  ``batchnorm2d_eval_forward`` / ``batchnorm2d_eval_backward`` (running statistics, left
  unchanged) and :class:`Dropout` is the identity, backward too.
* ``backward`` consumes the cache (one forward, one backward) and *overwrites* ``.grad``.
* Input checks (dimensions, dtype, channel count, spatial size, NaN) run before any kernel, with a
  message naming the layer. Inside a container (:class:`Sequential`, the residual blocks, the
  ResNets) the NaN scan runs once at the container's entry instead of at every layer, and an error
  raised by a child is re-raised with the child's dotted path prepended
  (``"layer2.0.bn1: BatchNorm2d(32): ..."``).
"""
from __future__ import annotations

import math
import threading
from typing import NamedTuple, Optional

import numpy as np

from cvcore._validate import (_check_real, check_array, check_cache, check_float_array,
                              check_grad, check_int, check_pair, check_positive)
from cvcore.nn.module import Module, Parameter, is_grad_enabled, takes_input_grad
from cvcore._bands import run_bands
from cvcore.nn._lanes import run_lanes
from cvcore._threads import renew_network_threads

__all__ = [
    "ReLU", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Linear", "Dropout",
    "Flatten", "Identity", "Sequential",
    "relu_forward", "relu_backward", "ReLUCache",
    "batchnorm2d_train_forward", "batchnorm2d_train_backward", "BatchNormTrainCache",
    "batchnorm2d_eval_forward", "batchnorm2d_eval_backward", "BatchNormEvalCache",
    "maxpool2d_forward", "maxpool2d_backward", "MaxPoolCache",
    "avgpool2d_forward", "avgpool2d_backward", "AvgPoolCache",
    "adaptive_avgpool2d_forward", "adaptive_avgpool2d_backward", "AdaptivePoolCache",
    "linear_forward", "linear_backward", "LinearCache",
    "dropout_forward", "dropout_backward", "DropoutCache",
    "flatten_forward", "flatten_backward", "FlattenCache",
]

# PyTorch's BatchNorm2d defaults (torch.nn.BatchNorm2d: eps=1e-5, momentum=0.1).
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
# PyTorch's Linear.reset_parameters: kaiming_uniform_(weight, a=sqrt(5)), i.e.
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
KAIMING_A = math.sqrt(5.0)


# ------------------------------------------------------------------------------------------------
# plumbing shared by the layers, blocks and models
# ------------------------------------------------------------------------------------------------
def _kernels(name):
    """Import a kernel module on first use (``import cvcore.nn`` does not import Numba)."""
    import importlib
    return importlib.import_module(f"kernels.{name}")


#: ``kernels.nn_act.CHUNK`` (kept here: :func:`elementwise` runs a few hundred times a step,
#: and importing the kernel module to read it cost ~1 us a call)
_ACT_CHUNK = 1 << 14


def elementwise(kernel, *arrays):
    """Run an element-wise kernel of :mod:`kernels.nn_act` over ``arrays`` (C-contiguous, one
    shape and dtype, viewed flat; outputs among them), in chunks of ``kernels.nn_act.CHUNK``
    elements, in lanes on several threads (:func:`cvcore.nn._lanes.run_lanes`; one chunk: one
    call)."""
    flat = [a.reshape(-1) for a in arrays]
    run_lanes(kernel, -(-flat[0].size // _ACT_CHUNK), *flat)


_STATE = threading.local()


class _Nested:
    """Context manager marking "inside a container": layers skip their own NaN scan there,
    because the container scanned its input once at entry."""

    __slots__ = ()

    def __enter__(self):
        _STATE.depth = getattr(_STATE, "depth", 0) + 1

    def __exit__(self, *exc):
        _STATE.depth -= 1


NESTED = _Nested()


def top_level() -> bool:
    """True when the current call is not inside a container's forward pass."""
    return getattr(_STATE, "depth", 0) == 0


def check_finite_fast(x: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ``x`` holds NaN or infinity.

    One summation in the common case: a sum of finite values is finite unless it overflows, and
    only then (or when ``x`` really holds NaN/inf) is the element-wise test run.
    """
    if x.dtype.kind != "f":
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = x.sum(dtype=np.float64)
    if not np.isfinite(total):
        bad = np.isnan(x)
        if bad.any():
            first = tuple(int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"{name} contains NaN ({int(bad.sum())} values, first at index "
                             f"{first})")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains infinity")


def with_path(exc: Exception, name: str) -> Exception:
    """Return a copy of ``exc`` whose message starts with the dotted module path ``name.…``.

    Containers call this on errors raised by a child, so the path grows one level per container
    (``"fc: ..."`` -> ``"layer4.1.bn2: ..."``) and the user learns which layer refused the input.
    """
    inner = getattr(exc, "_cvcore_path", None)
    message = getattr(exc, "_cvcore_message", None)
    if message is None:
        message = exc.args[0] if (len(exc.args) == 1 and isinstance(exc.args[0], str)) \
            else str(exc)
    path = f"{name}.{inner}" if inner else name
    try:
        new = type(exc)(f"{path}: {message}")
    except Exception:  # an exception type with an unusual constructor: leave it as it is
        return exc
    new._cvcore_path = path
    new._cvcore_message = message
    return new.with_traceback(exc.__traceback__)


def call_child(name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, re-raising a ValueError/TypeError/RuntimeError/KeyError with
    ``name``. Inside a forward pass the thread count is first decided again when the machine's load
    was last read :data:`cvcore._threads.REFRESH_S` ago (:func:`cvcore._threads.
    renew_network_threads`; a backward pass keeps its thread count)."""
    renew_network_threads()
    try:
        return fn(*args, **kwargs)
    except (ValueError, TypeError, RuntimeError, KeyError) as exc:
        raise with_path(exc, name) from None


def _compute_dtype(*arrays):
    """float64 when any given array is float64 (gradient checks), else float32."""
    for a in arrays:
        if a is not None and a.dtype == np.float64:
            return np.float64
    return np.float32


def _as_input(x, name: str, ndim=None, check_nan: bool = True) -> np.ndarray:
    """Validate a layer input; return it C-contiguous in float32 (float64 stays float64)."""
    x = check_array(x, name, ndim=ndim, dtypes="buif")
    if check_nan:
        check_finite_fast(x, name)
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    return np.ascontiguousarray(x, dtype=dtype)


def _as_grad(dy, name: str, shape, dtype) -> np.ndarray:
    """Validate an output gradient against the forward output's shape; cast to the compute dtype."""
    dy = check_array(dy, name, dtypes="buif", allow_empty=True)
    if dy.shape != tuple(shape):
        raise ValueError(f"{name} has shape {dy.shape}; the forward output had {tuple(shape)}")
    return np.ascontiguousarray(dy, dtype=dtype)


def _pool_output_size(size, kernel, stride, padding, dilation=1):
    """PyTorch's pooling output length (``ceil_mode=False``)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _as_rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _cached(a, name: str, ndim=None) -> np.ndarray:
    """An array held in a cache: a C-contiguous float32/float64 ndarray (of ``ndim`` axes), as
    the forward pass made it. A cache built by hand with anything else is refused, because the
    backward kernels index it without bounds checks."""
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64) \
            or not a.flags.c_contiguous or (ndim is not None and a.ndim != ndim):
        what = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a C-contiguous float32/float64 "
                        f"{'' if ndim is None else f'{ndim}-d '}array from the forward pass, "
                        f"got {what}")
    return a


def _shape4(shape, name: str) -> tuple:
    """A cached ``(N, C, H, W)`` input shape, checked."""
    if not isinstance(shape, tuple) or len(shape) != 4 or \
            not all(isinstance(v, (int, np.integer)) and v >= 0 for v in shape):
        raise TypeError(f"{name} must be a (N, C, H, W) tuple of sizes, got {shape!r}")
    return tuple(int(v) for v in shape)


def _eps(eps) -> float:
    return check_positive(eps, "eps")


class _CachingModule(Module):
    """A module that keeps one cache between forward and backward (in either mode; none inside
    :func:`cvcore.nn.no_grad`)."""

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "_cache", None)

    def _keep(self, cache, y) -> None:
        """Keep ``cache`` and the output's shape and dtype, unless gradients are off
        (:func:`cvcore.nn.no_grad`), in which case any older cache is dropped too."""
        kept = (cache, y.shape, y.dtype) if is_grad_enabled() else None
        object.__setattr__(self, "_cache", kept)

    def _take(self, dy):
        """Return ``(cache, dy)`` with ``dy`` checked against the forward output; drop the cache."""
        kept = self._cache
        if kept is None:
            raise RuntimeError(f"{self._label()}: backward needs a forward pass first, outside "
                               f"cvcore.nn.no_grad() (each forward allows one backward)")
        cache, shape, dtype = kept
        dy = _as_grad(dy, f"{self._label()} dy", shape, dtype)
        object.__setattr__(self, "_cache", None)
        return cache, dy

    def _label(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


# ------------------------------------------------------------------------------------------------
# ReLU
# ------------------------------------------------------------------------------------------------
class ReLUCache(NamedTuple):
    y: np.ndarray          # the forward output (its positive entries are the pass-through mask)


def relu_forward(x: np.ndarray, inplace: bool = False):
    """Rectified linear unit, ``y = max(x, 0)`` (Nair & Hinton 2010).

    Parameters
    ----------
    x : ndarray, any shape, float32 or float64, C-contiguous
    inplace : bool
        Overwrite ``x`` with the result (saves one array; ``x`` must not be needed afterwards).

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``
    cache : ReLUCache
    """
    x_in = x
    x = check_float_array(x, "relu_forward x")
    inplace = bool(inplace) and x is x_in and x.flags.writeable
    y = x if inplace else np.empty_like(x)
    elementwise(_kernels("nn_act").relu_forward, x, y)
    return y, ReLUCache(y)


def relu_backward(dy: np.ndarray, cache: ReLUCache) -> np.ndarray:
    """``dx = dy * (y > 0)``; the subgradient at 0 is 0, as in PyTorch.

    ``dy`` must have the shape of the forward output (``cache.y``); it is cast to its dtype.
    """
    y = _cached(check_cache(cache, ReLUCache, "relu_backward").y, "relu_backward cache.y")
    dy = check_grad(dy, "relu_backward dy", y.shape, y.dtype)
    dx = np.empty_like(y)
    elementwise(_kernels("nn_act").relu_backward, dy, y, dx)
    return dx


class _Activation(_CachingModule):
    """An element-wise activation module over its functional pair ``_forward(x, inplace) ->
    (y, cache)`` and ``_backward(dy, cache) -> dx`` (ReLU, ReLU6), with torch's ``inplace``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        x_in = x
        x = _as_input(x, f"{self._label()} input", check_nan=top_level())
        inplace = self.inplace and x is x_in and x.flags.writeable
        y, cache = self._forward(x, inplace=inplace)
        self._keep(cache, y)
        return y

    def backward(self, dy):
        cache, dy = self._take(dy)
        return self._backward(dy, cache)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class ReLU(_Activation):
    """``y = max(x, 0)`` element-wise.

    Parameters
    ----------
    inplace : bool
        Honoured: the input array itself receives the result (as ``torch.nn.ReLU(inplace=True)``)
        when it is already a C-contiguous float32/float64 array; otherwise a new array is made.
    """

    _forward = staticmethod(relu_forward)
    _backward = staticmethod(relu_backward)


# ------------------------------------------------------------------------------------------------
# BatchNorm2d
# ------------------------------------------------------------------------------------------------
class BatchNormTrainCache(NamedTuple):
    x: np.ndarray          # (N, C, H, W) forward input (a reference, not a copy)
    gamma: np.ndarray      # (C,) compute dtype
    mean: np.ndarray       # (C,) float64 batch mean
    var: np.ndarray        # (C,) float64 biased batch variance
    invstd: np.ndarray     # (C,) float64, 1 / sqrt(var + eps)


class BatchNormEvalCache(NamedTuple):
    x: np.ndarray          # (N, C, H, W) forward input
    gamma: np.ndarray      # (C,) compute dtype
    mean: np.ndarray       # (C,) float64 running mean used
    invstd: np.ndarray     # (C,) float64, 1 / sqrt(running_var + eps)


def _bn_view(x):
    N, C, H, W = x.shape
    return x.reshape(N, C, H * W)


def batchnorm2d_train_forward(x, gamma, beta, eps: float = BN_EPS, fuse_relu: bool = False):
    """Batch normalisation with the statistics of this batch (Ioffe & Szegedy 2015, alg. 1).

    .. math::
        \\mu_c = \\frac1M \\sum_{n,h,w} x_{nchw}, \\quad
        \\sigma^2_c = \\frac1M \\sum_{n,h,w} (x_{nchw} - \\mu_c)^2, \\quad
        y = \\gamma_c \\frac{x - \\mu_c}{\\sqrt{\\sigma^2_c + \\epsilon}} + \\beta_c

    with :math:`M = NHW` (the biased variance normalises, as in PyTorch). The statistics are
    accumulated in float64; the normalisation runs as one per-channel affine map
    ``y = x * scale + shift`` in the dtype of ``x``.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64, C-contiguous
    gamma, beta : ndarray (C,), same dtype as ``x``
    eps : float
    fuse_relu : bool or "relu6"
        Return ``max(y, 0)`` computed in the same pass (batch norm followed by ReLU, as in the
        residual blocks), or ``min(max(y, 0), 6)`` for ``"relu6"`` (the inverted-residual
        blocks). The backward pass is unchanged: the caller first masks ``dy`` with the
        output (``dy * (y > 0)``, or ``0 < y < 6``), exactly as a separate ReLU would.

    Returns
    -------
    y : ndarray (N, C, H, W)
    cache : BatchNormTrainCache (its ``mean`` and biased ``var`` feed the running averages)
    """
    x, gamma, beta = _bn_arrays(x, gamma, beta, "batchnorm2d_train_forward")
    eps = _eps(eps)
    N, C, H, W = x.shape
    if N * H * W < 1:
        raise ValueError(f"batchnorm2d_train_forward: x of shape {x.shape} has no values per "
                         f"channel to take statistics of")
    nk = _kernels("nn_norm")
    mean = np.empty(C)
    var = np.empty(C)
    run_lanes(nk.batchnorm_stats, C, _bn_view(x), mean, var)
    invstd = 1.0 / np.sqrt(var + eps)
    y = np.empty_like(x)
    _normalize(x, mean, invstd, gamma, beta, y, fuse_relu)
    return y, BatchNormTrainCache(x, gamma, mean, var, invstd)


def _bn_arrays(x, gamma, beta, name):
    """Check ``x`` (N, C, H, W) and ``gamma``, ``beta`` (C,); return all three C-contiguous in
    the compute dtype (float64 if any of them is, else float32)."""
    x = check_array(x, f"{name} x", ndim=4, dtypes="buif", allow_empty=True)
    gamma = check_array(gamma, f"{name} gamma", ndim=1, dtypes="buif", allow_empty=True)
    beta = check_array(beta, f"{name} beta", ndim=1, dtypes="buif", allow_empty=True)
    C = x.shape[1]
    for arr, what in ((gamma, "gamma"), (beta, "beta")):
        if arr.shape != (C,):
            raise ValueError(f"{name}: {what} has shape {arr.shape}; x has {C} channels "
                             f"(shape {x.shape})")
    dtype = _compute_dtype(x, gamma, beta)
    return (np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(gamma, dtype=dtype),
            np.ascontiguousarray(beta, dtype=dtype))


def _bn_cache(cache, cls, name):
    """The arrays of a batch-norm cache, checked against each other."""
    check_cache(cache, cls, name)
    x = _cached(cache.x, f"{name} cache.x", ndim=4)
    C = x.shape[1]
    for field in ("gamma", "mean", "invstd"):
        a = getattr(cache, field)
        if not isinstance(a, np.ndarray) or a.shape != (C,) or a.dtype.kind != "f":
            raise TypeError(f"{name}: cache.{field} must be a float array of shape ({C},), got "
                            f"{getattr(a, 'shape', type(a).__name__)}")
    return x


def _normalize(x, mean, invstd, gamma, beta, y, fuse_relu=False):
    """``y = (x - mean) * invstd * gamma + beta`` as ``x * scale + shift`` per channel
    (then ``max(y, 0)`` in the same pass with ``fuse_relu``; ``min(max(y, 0), 6)`` with
    ``fuse_relu="relu6"``)."""
    scale = gamma * invstd
    shift = beta - mean * scale
    nk = _kernels("nn_norm")
    kernel = (nk.channel_affine_relu6 if fuse_relu == "relu6" else
              nk.channel_affine_relu if fuse_relu else nk.channel_affine)
    xv = _bn_view(x)
    N, C, L = xv.shape
    run_bands(kernel, N * C, L, xv, scale.astype(x.dtype), shift.astype(x.dtype), _bn_view(y))


def _bn_backward(dy, x, cache, train, out):
    """``dx, dgamma, dbeta`` of batch norm by :func:`kernels.nn_norm.batchnorm_backward` (one
    pass per channel; ``train``: the statistics were the batch's)."""
    C = x.shape[1]
    t = x.dtype
    dgamma = np.empty(C)
    dbeta = np.empty(C)
    dx = _grad_out(out, x)
    xv = _bn_view(x)
    run_lanes(_kernels("nn_norm").batchnorm_backward, C, _bn_view(dy), xv,
              np.ascontiguousarray(cache.mean, dtype=np.float64),
              np.ascontiguousarray(cache.invstd, dtype=np.float64),
              np.ascontiguousarray(cache.gamma, dtype=t), bool(train),
              np.empty((C, 3), dtype=t), dgamma, dbeta, _bn_view(dx))
    return dx, dgamma.astype(t), dbeta.astype(t)


def _grad_out(out, x):
    """A new array like ``x``, or ``out`` after checking it can hold ``dx``."""
    if out is None:
        return np.empty_like(x)
    if out.shape != x.shape or out.dtype != x.dtype or not out.flags.c_contiguous \
            or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous {x.dtype} array of shape "
                         f"{x.shape}, got {out.dtype} {out.shape}")
    return out


def batchnorm2d_train_backward(dy, cache: BatchNormTrainCache, out=None):
    """Gradients of :func:`batchnorm2d_train_forward` (Ioffe & Szegedy 2015, sec. 3).

    .. math::
        \\partial\\beta = \\sum dy, \\quad \\partial\\gamma = \\sum dy\\,\\hat x, \\quad
        dx = \\frac{\\gamma}{M\\sqrt{\\sigma^2+\\epsilon}}
             (M\\,dy - \\partial\\beta - \\hat x\\,\\partial\\gamma)

    ``out`` (optional) receives ``dx``; it may be ``dy`` itself (each element of ``dy`` is read
    before the same element of ``dx`` is written), which saves an allocation when the caller
    owns ``dy``.

    Returns
    -------
    dx : ndarray (N, C, H, W); dgamma, dbeta : ndarray (C,), the compute dtype
    """
    x = _bn_cache(cache, BatchNormTrainCache, "batchnorm2d_train_backward")
    dy = check_grad(dy, "batchnorm2d_train_backward dy", x.shape, x.dtype)
    return _bn_backward(dy, x, cache, True, out)


def batchnorm2d_eval_forward(x, gamma, beta, running_mean, running_var, eps: float = BN_EPS,
                             fuse_relu: bool = False):
    """Inference-mode batch normalisation: a per-channel affine map with the running statistics,
    ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64, C-contiguous
    gamma, beta : ndarray (C,), same dtype as ``x``
    running_mean, running_var : ndarray (C,), any float dtype
    fuse_relu : bool
        Return ``max(y, 0)`` (see :func:`batchnorm2d_train_forward`).

    Returns
    -------
    y : ndarray (N, C, H, W); cache : BatchNormEvalCache
    """
    name = "batchnorm2d_eval_forward"
    x, gamma, beta = _bn_arrays(x, gamma, beta, name)
    eps = _eps(eps)
    C = x.shape[1]
    stats = []
    for arr, what in ((running_mean, "running_mean"), (running_var, "running_var")):
        arr = check_array(arr, f"{name} {what}", ndim=1, dtypes="buif", allow_empty=True)
        if arr.shape != (C,):
            raise ValueError(f"{name}: {what} has shape {arr.shape}; x has {C} channels")
        stats.append(np.asarray(arr, dtype=np.float64))
    mean, var = stats
    if not (var + eps > 0).all() or not np.isfinite(mean).all() or not np.isfinite(var).all():
        raise ValueError(f"{name}: running_mean and running_var must be finite and "
                         f"running_var + eps positive (a variance)")
    invstd = 1.0 / np.sqrt(var + eps)
    y = np.empty_like(x)
    _normalize(x, mean, invstd, gamma, beta, y, fuse_relu)
    return y, BatchNormEvalCache(x, gamma, mean, invstd)


def batchnorm2d_eval_backward(dy, cache: BatchNormEvalCache, out=None):
    """Gradients of :func:`batchnorm2d_eval_forward` (the statistics are constants):
    ``dx = dy * gamma * invstd``, ``dgamma = sum(dy * xhat)``, ``dbeta = sum(dy)``.
    ``out`` as in :func:`batchnorm2d_train_backward`.

    Returns
    -------
    dx : ndarray (N, C, H, W); dgamma, dbeta : ndarray (C,), the compute dtype
    """
    x = _bn_cache(cache, BatchNormEvalCache, "batchnorm2d_eval_backward")
    dy = check_grad(dy, "batchnorm2d_eval_backward dy", x.shape, x.dtype)
    return _bn_backward(dy, x, cache, False, out)


class BatchNorm2d(_CachingModule):
    """Batch normalisation over (N, H, W) per channel, PyTorch's ``nn.BatchNorm2d``.

    Training mode normalises with the batch statistics and updates the running averages
    (PyTorch's convention: the *unbiased* batch variance enters ``running_var``)::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)
        num_batches_tracked += 1

    With ``momentum=None`` the factor is ``1 / num_batches_tracked`` (a cumulative average), as
    in PyTorch. Eval mode normalises with the running statistics.

    Parameters
    ----------
    num_features : int
        Channels ``C``.
    eps : float
        Added to the variance (PyTorch's default 1e-5).
    momentum : float or None
        Weight of the new batch in the running averages (PyTorch's default 0.1).

    Attributes
    ----------
    weight, bias : Parameter (C,), initialised to 1 and 0
    running_mean, running_var : ndarray (C,) float32 buffers, initialised to 0 and 1
    num_batches_tracked : ndarray () int64 buffer
    """

    def __init__(self, num_features: int, eps: float = BN_EPS,
                 momentum: Optional[float] = BN_MOMENTUM):
        super().__init__()
        self.num_features = check_int(num_features, "num_features", 1)
        self.eps = float(eps)
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
        if momentum is not None and not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        self.momentum = None if momentum is None else float(momentum)
        C = self.num_features
        self.weight = Parameter(np.ones(C, dtype=np.float32))
        self.bias = Parameter(np.zeros(C, dtype=np.float32))
        self.register_buffer("running_mean", np.zeros(C, dtype=np.float32))
        self.register_buffer("running_var", np.ones(C, dtype=np.float32))
        self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def extra_repr(self):
        return f"{self.num_features}"

    def forward(self, x):
        """Normalise ``x`` (N, C, H, W): batch statistics in training mode, running ones in eval."""
        return self._forward(x, fuse_relu=False)

    def forward_relu(self, x):
        """``relu(self.forward(x))`` in one pass over the output (used by the residual blocks).

        ``backward`` then expects ``dy`` already masked by the ReLU (``dy * (y > 0)``); the
        module keeps no mask itself, its caller does (it holds ``y``).
        """
        return self._forward(x, fuse_relu=True)

    def forward_relu6(self, x):
        """``relu6(self.forward(x))`` in one pass (the inverted-residual blocks); ``backward``
        then expects ``dy`` already masked (``dy * (0 < y < 6)``), as :meth:`forward_relu`."""
        return self._forward(x, fuse_relu="relu6")

    def _forward(self, x, fuse_relu):
        name = self._label()
        x = _as_input(x, f"{name} input", ndim=4, check_nan=top_level())
        N, C, H, W = x.shape
        if C != self.num_features:
            raise ValueError(f"{name}: expected {self.num_features} channels, got {C} "
                             f"(input shape {x.shape})")
        dtype = _compute_dtype(x, self.weight.data, self.bias.data)
        x = np.ascontiguousarray(x, dtype=dtype)
        gamma = np.asarray(self.weight.data, dtype=dtype)
        beta = np.asarray(self.bias.data, dtype=dtype)
        if not self.training:
            y, cache = batchnorm2d_eval_forward(x, gamma, beta, self.running_mean,
                                                self.running_var, self.eps, fuse_relu)
            self._keep(cache, y)
            return y
        M = N * H * W
        if M < 2:
            raise ValueError(f"{name}: training mode needs more than one value per channel, got "
                             f"input shape {x.shape} (use eval mode for a single 1x1 sample)")
        y, cache = batchnorm2d_train_forward(x, gamma, beta, self.eps, fuse_relu)
        self._update_running(cache.mean, cache.var, M)
        self._keep(cache, y)
        return y

    def _update_running(self, mean, var, M):
        nbt = self.num_batches_tracked
        nbt[...] = nbt + 1                     # in place: the registered buffer stays the same
        factor = 1.0 / float(nbt) if self.momentum is None else self.momentum
        unbiased = var * (M / (M - 1.0))
        rm, rv = self.running_mean, self.running_var
        rm[...] = (1.0 - factor) * rm + factor * mean
        rv[...] = (1.0 - factor) * rv + factor * unbiased

    def backward(self, dy, out=None):
        """Fill ``weight.grad``, ``bias.grad``; return ``dx`` (written into ``out`` if given,
        which may be ``dy`` itself when the caller no longer needs it)."""
        cache, dy = self._take(dy)
        if isinstance(cache, BatchNormTrainCache):
            dx, dgamma, dbeta = batchnorm2d_train_backward(dy, cache, out)
        else:
            dx, dgamma, dbeta = batchnorm2d_eval_backward(dy, cache, out)
        self.weight.grad = dgamma.astype(self.weight.data.dtype) if self.weight.requires_grad \
            else None
        self.bias.grad = dbeta.astype(self.bias.data.dtype) if self.bias.requires_grad else None
        return dx


# ------------------------------------------------------------------------------------------------
# Pooling
# ------------------------------------------------------------------------------------------------
def _pool_geometry(kernel_size, stride, padding, dilation=1):
    kernel = check_pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else check_pair(stride, "stride", 1)
    padding = check_pair(padding, "padding", 0)
    dilation = check_pair(dilation, "dilation", 1)
    for k, p, d in zip(kernel, padding, dilation):
        effective = d * (k - 1) + 1
        if p > effective // 2:
            raise ValueError(f"padding {padding} must be at most half of the effective kernel "
                             f"size {effective} (PyTorch's rule: every window must hold a "
                             f"real pixel)")
    return kernel, stride, padding, dilation


def _pool_output_shape(x_shape, kernel, stride, padding, dilation, name):
    N, C, H, W = x_shape
    out = []
    for axis, size, k, s, p, d in zip(("height", "width"), (H, W), kernel, stride, padding,
                                      dilation):
        effective = d * (k - 1) + 1
        if size + 2 * p < effective:
            raise ValueError(f"{name}: input {axis} {size} with padding {p} is {size + 2 * p}, "
                             f"smaller than the kernel {effective}")
        out.append(_pool_output_size(size, k, s, p, d))
    return N, C, out[0], out[1]


class MaxPoolCache(NamedTuple):
    argmax: np.ndarray      # (N, C, OH, OW) int32, flat in-plane index row * W + col of each max
    input_shape: tuple      # (N, C, H, W)


def maxpool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, name="max_pool2d"):
    """Max pooling, PyTorch's ``F.max_pool2d`` (``ceil_mode=False``, ``-inf`` padding).

    ``y[n, c, i, j] = max_{a, b} x[n, c, i*sh - ph + a*dh, j*sw - pw + b*dw]`` over the window's
    pixels inside the image, and ``OH = (H + 2 ph - dh (kh - 1) - 1) // sh + 1``.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64, C-contiguous
    kernel_size, stride, padding, dilation : int or pair; ``stride`` defaults to the kernel size
    name : str, used in error messages

    Returns
    -------
    y : ndarray (N, C, OH, OW); cache : MaxPoolCache
    """
    x = check_float_array(x, f"{name} x", ndim=4)
    kernel, stride, padding, dilation = _pool_geometry(kernel_size, stride, padding, dilation)
    N, C, OH, OW = _pool_output_shape(x.shape, kernel, stride, padding, dilation, name)
    H, W = x.shape[2:]
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int32)
    _kernels("nn_pool").maxpool2d_forward(
        x.reshape(N * C, H, W), kernel[0], kernel[1], stride[0], stride[1], padding[0],
        padding[1], dilation[0], dilation[1], y.reshape(N * C, OH, OW),
        argmax.reshape(N * C, OH, OW))
    return y, MaxPoolCache(argmax, x.shape)


def maxpool2d_backward(dy, cache: MaxPoolCache):
    """Each output gradient goes to the input pixel that was the window's maximum.

    ``dy`` must have the forward output's shape (``cache.argmax.shape``); the cached indices
    are checked to lie inside the input plane.
    """
    name = "maxpool2d_backward"
    check_cache(cache, MaxPoolCache, name)
    N, C, H, W = _shape4(cache.input_shape, f"{name} cache.input_shape")
    argmax = cache.argmax
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.int32 or argmax.ndim != 4 \
            or argmax.shape[:2] != (N, C) or not argmax.flags.c_contiguous:
        raise TypeError(f"{name}: cache.argmax must be a C-contiguous int32 array of shape "
                        f"({N}, {C}, OH, OW)")
    if argmax.size and (int(argmax.min()) < 0 or int(argmax.max()) >= H * W):
        raise ValueError(f"{name}: cache.argmax holds indices outside the {H}x{W} input plane")
    dy = np.asarray(dy)
    dtype = np.float64 if getattr(dy, "dtype", None) == np.float64 else np.float32
    dy = check_grad(dy, f"{name} dy", argmax.shape, dtype)
    return _maxpool2d_backward(dy, cache)


def _maxpool2d_backward(dy, cache: MaxPoolCache):
    """:func:`maxpool2d_backward` on a checked ``dy`` and a cache the forward made."""
    N, C, H, W = cache.input_shape
    OH, OW = cache.argmax.shape[2:]
    dx = np.empty(cache.input_shape, dtype=dy.dtype)
    _kernels("nn_pool").maxpool2d_backward(dy.reshape(N * C, OH, OW),
                                           cache.argmax.reshape(N * C, OH, OW),
                                           dx.reshape(N * C, H, W))
    return dx


class AvgPoolCache(NamedTuple):
    input_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    count_include_pad: bool


def avgpool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True,
                      name="avg_pool2d"):
    """Average pooling, PyTorch's ``F.avg_pool2d`` (``ceil_mode=False``).

    The window sum is divided by ``kh * kw`` when ``count_include_pad`` (PyTorch's default: the
    zero padding counts) and by the number of real pixels in the window otherwise.

    Returns
    -------
    y : ndarray (N, C, OH, OW); cache : AvgPoolCache
    """
    x = check_float_array(x, f"{name} x", ndim=4)
    kernel, stride, padding, _ = _pool_geometry(kernel_size, stride, padding)
    N, C, OH, OW = _pool_output_shape(x.shape, kernel, stride, padding, (1, 1), name)
    H, W = x.shape[2:]
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    _kernels("nn_pool").avgpool2d_forward(
        x.reshape(N * C, H, W), kernel[0], kernel[1], stride[0], stride[1], padding[0],
        padding[1], bool(count_include_pad), y.reshape(N * C, OH, OW))
    return y, AvgPoolCache(x.shape, kernel, stride, padding, bool(count_include_pad))


def avgpool2d_backward(dy, cache: AvgPoolCache):
    """Each output gradient is spread evenly (``1 / divisor``) over its window's real pixels.

    ``dy`` must have the forward output's shape (recomputed from the cached geometry).
    """
    name = "avgpool2d_backward"
    check_cache(cache, AvgPoolCache, name)
    shape = _shape4(cache.input_shape, f"{name} cache.input_shape")
    kernel, stride, padding, _ = _pool_geometry(cache.kernel, cache.stride, cache.padding)
    out_shape = _pool_output_shape(shape, kernel, stride, padding, (1, 1), name)
    dtype = np.float64 if getattr(dy, "dtype", None) == np.float64 else np.float32
    dy = check_grad(dy, f"{name} dy", out_shape, dtype)
    N, C, H, W = shape
    OH, OW = dy.shape[2:]
    dx = np.empty(shape, dtype=dy.dtype)
    (kh, kw), (sh, sw), (ph, pw) = cache.kernel, cache.stride, cache.padding
    _kernels("nn_pool").avgpool2d_backward(dy.reshape(N * C, OH, OW), kh, kw, sh, sw, ph, pw,
                                           cache.count_include_pad, dx.reshape(N * C, H, W))
    return dx


class AdaptivePoolCache(NamedTuple):
    input_shape: tuple


def adaptive_avgpool2d_forward(x, output_size=1):
    """Adaptive average pooling to ``output_size`` (PyTorch's ``F.adaptive_avg_pool2d`` bins:
    output row ``i`` averages input rows ``floor(i H / OH)`` .. ``ceil((i+1) H / OH) - 1``).
    ``output_size=1`` is the global average pool of a ResNet's head.

    Returns
    -------
    y : ndarray (N, C, OH, OW); cache : AdaptivePoolCache
    """
    x = check_float_array(x, "adaptive_avgpool2d_forward x", ndim=4)
    OH, OW = check_pair(output_size, "output_size", 1)
    N, C, H, W = x.shape
    if H < 1 or W < 1:
        raise ValueError(f"adaptive_avgpool2d_forward: x of shape {x.shape} has no pixels to "
                         f"average")
    y = np.empty((N, C, OH, OW), dtype=x.dtype)
    run_bands(_kernels("nn_pool").adaptive_avgpool2d_forward, N * C, H * W,
              x.reshape(N * C, H, W), y.reshape(N * C, OH, OW))
    return y, AdaptivePoolCache(x.shape)


def adaptive_avgpool2d_backward(dy, cache: AdaptivePoolCache):
    """Each output gradient is spread evenly over its bin (``dy``: (N, C, OH, OW), the forward
    output's shape)."""
    name = "adaptive_avgpool2d_backward"
    check_cache(cache, AdaptivePoolCache, name)
    N, C, H, W = _shape4(cache.input_shape, f"{name} cache.input_shape")
    dy = check_array(dy, f"{name} dy", ndim=4, dtypes="buif", allow_empty=True)
    if dy.shape[:2] != (N, C) or dy.shape[2] < 1 or dy.shape[3] < 1 or H < 1 or W < 1:
        raise ValueError(f"{name}: dy has shape {dy.shape}; the forward input had "
                         f"{(N, C, H, W)}, so dy must be ({N}, {C}, OH, OW) with OH, OW >= 1")
    dy = np.ascontiguousarray(dy, dtype=np.float64 if dy.dtype == np.float64 else np.float32)
    OH, OW = dy.shape[2:]
    dx = np.empty(cache.input_shape, dtype=dy.dtype)
    if (OH, OW) == (1, 1):
        # the global pool (a ResNet's head): one bin, a broadcast; NumPy does it without a
        # kernel to compile on a cold start (same values as the kernel: dy / (H W) in float64,
        # rounded to the dtype)
        dx[...] = (dy.astype(np.float64) / (H * W)).astype(dy.dtype)
        return dx
    _kernels("nn_pool").adaptive_avgpool2d_backward(dy.reshape(N * C, OH, OW),
                                                    dx.reshape(N * C, H, W))
    return dx


class MaxPool2d(_CachingModule):
    """Max pooling (``torch.nn.MaxPool2d`` with ``ceil_mode=False``).

    Parameters
    ----------
    kernel_size : int or pair
    stride : int or pair, optional (default: ``kernel_size``)
    padding : int or pair; at most half the effective kernel size (``-inf`` padding)
    dilation : int or pair
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        (self.kernel_size, self.stride, self.padding,
         self.dilation) = _pool_geometry(kernel_size, stride, padding, dilation)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
                + (f", dilation={self.dilation}" if self.dilation != (1, 1) else ""))

    def forward(self, x):
        x = _as_input(x, f"{self._label()} input", ndim=4, check_nan=top_level())
        y, cache = maxpool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                     self.dilation, name=self._label())
        self._keep(cache, y)
        return y

    def backward(self, dy):
        cache, dy = self._take(dy)
        return _maxpool2d_backward(dy, cache)


class AvgPool2d(_CachingModule):
    """Average pooling (``torch.nn.AvgPool2d`` with ``ceil_mode=False``).

    Parameters
    ----------
    kernel_size : int or pair
    stride : int or pair, optional (default: ``kernel_size``)
    padding : int or pair; at most half the kernel size
    count_include_pad : bool
        Whether padding zeros count in the divisor (PyTorch's default: True).
    """

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding, _ = _pool_geometry(kernel_size, stride,
                                                                        padding)
        self.count_include_pad = bool(count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x):
        x = _as_input(x, f"{self._label()} input", ndim=4, check_nan=top_level())
        y, cache = avgpool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                     self.count_include_pad, name=self._label())
        self._keep(cache, y)
        return y

    def backward(self, dy):
        cache, dy = self._take(dy)
        return avgpool2d_backward(dy, cache)


class AdaptiveAvgPool2d(_CachingModule):
    """Adaptive average pooling to a fixed output size (``torch.nn.AdaptiveAvgPool2d``).

    Parameters
    ----------
    output_size : int or pair
        ``1`` (the ResNet head's global average pool) or any ``(OH, OW)``.
    """

    def __init__(self, output_size=1):
        super().__init__()
        self.output_size = check_pair(output_size, "output_size", 1)

    def extra_repr(self):
        return f"output_size={self.output_size}"

    def forward(self, x):
        x = _as_input(x, f"{self._label()} input", ndim=4, check_nan=top_level())
        y, cache = adaptive_avgpool2d_forward(x, self.output_size)
        self._keep(cache, y)
        return y

    def backward(self, dy):
        cache, dy = self._take(dy)
        return adaptive_avgpool2d_backward(dy, cache)


# ------------------------------------------------------------------------------------------------
# Linear
# ------------------------------------------------------------------------------------------------
class LinearCache(NamedTuple):
    x: np.ndarray          # (N, in_features) forward input, flattened to 2-D
    w: np.ndarray          # (out_features, in_features) compute dtype
    has_bias: bool
    input_shape: tuple     # the original (*, in_features) shape


def _matmul_nt(a, b):
    """``a @ b.T`` on Numba's thread pool (:mod:`kernels.nn_linear`, which says why not BLAS):
    a small product on one thread, dot products when either side has few rows, else a GEMM
    with the smaller operand transposed (the output transposed with it)."""
    import numba
    nk = _kernels("nn_linear")
    dtype = np.float64 if np.float64 in (a.dtype, b.dtype) else np.float32
    a, b = np.ascontiguousarray(a, dtype=dtype), np.ascontiguousarray(b, dtype=dtype)
    (M, T), N = a.shape, b.shape[0]
    out = np.zeros((M, N), dtype=a.dtype)
    if out.size == 0 or T == 0:
        return out
    if M * N * T <= nk.SMALL_WORK:
        nk.small_matmul_nt(a, b, out)
    elif min(M, N) < nk.SMALL:
        nk.dots(a, b, out)
    else:
        TB = _kernels("simd").TB
        small, big, transposed = (b, a, False) if N <= M else (a, b, True)
        width = -(-small.shape[0] // TB) * TB
        nk.gemm(big, nk.transpose(small, width), width, numba.get_num_threads(), out, transposed)
    return out


def linear_forward(x, w, b=None):
    """Affine map ``y = x W^T + b`` (PyTorch's ``F.linear``) over the last axis.

    Parameters
    ----------
    x : ndarray (..., in_features), float32 or float64
    w : ndarray (out_features, in_features), same dtype
    b : ndarray (out_features,) or None

    Returns
    -------
    y : ndarray (..., out_features)
    cache : LinearCache
    """
    x = check_array(x, "linear_forward x", dtypes="buif", allow_empty=True)
    w = check_array(w, "linear_forward w", ndim=2, dtypes="buif", allow_empty=True)
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear_forward: x has shape {x.shape} but w has shape {w.shape}: "
                         f"the last axis of x must have w.shape[1] = {w.shape[1]} features")
    if b is not None:
        b = check_array(b, "linear_forward b", ndim=1, dtypes="buif", allow_empty=True)
        if b.shape != (w.shape[0],):
            raise ValueError(f"linear_forward: b has shape {b.shape} for {w.shape[0]} outputs")
    dtype = _compute_dtype(x, w, b)
    x = np.asarray(x, dtype=dtype)
    w = np.ascontiguousarray(w, dtype=dtype)
    b = None if b is None else np.asarray(b, dtype=dtype)
    x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
    y = _matmul_nt(x2, w)
    if b is not None:
        y += b
    return y.reshape(x.shape[:-1] + (w.shape[0],)), LinearCache(x2, w, b is not None, x.shape)


def linear_backward(dy, cache: LinearCache, need_dw: bool = True):
    """Backward of :func:`linear_forward`: ``dx = dy W``, ``dW = dy^T x``, ``db = sum_n dy``.

    ``dw`` and ``db`` are ``None`` for a missing bias or when ``need_dw`` is false.

    Returns
    -------
    dx : ndarray (..., in_features)
    dw : ndarray (out_features, in_features) or None
    db : ndarray (out_features,) or None
    """
    name = "linear_backward"
    check_cache(cache, LinearCache, name)
    w = _cached(cache.w, f"{name} cache.w", ndim=2)
    x = _cached(cache.x, f"{name} cache.x", ndim=2)
    in_shape = cache.input_shape
    if not isinstance(in_shape, tuple) or len(in_shape) < 1 or x.shape[1] != w.shape[1] or \
            in_shape[-1] != w.shape[1] or int(np.prod(in_shape[:-1])) != x.shape[0]:
        raise ValueError(f"{name}: cache is inconsistent (x {x.shape}, w {w.shape}, input "
                         f"shape {in_shape!r})")
    dy = check_grad(dy, f"{name} dy", tuple(in_shape[:-1]) + (w.shape[0],), w.dtype)
    dy2 = dy.reshape(-1, w.shape[0])
    dx = _matmul_nt(dy2, cache.w.T).reshape(cache.input_shape)
    dw = _matmul_nt(dy2.T, cache.x.T) if need_dw else None
    db = dy2.sum(axis=0) if (cache.has_bias and need_dw) else None
    return dx, dw, db


class Linear(_CachingModule):
    """Fully connected layer ``y = x W^T + b`` (``torch.nn.Linear``).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool
    rng : numpy.random.Generator, int or None
        Source of the initial values, PyTorch's default initialisation: weight and bias
        ~ U(-1/sqrt(in_features), 1/sqrt(in_features)) (``kaiming_uniform_(a=sqrt(5))``).

    Attributes
    ----------
    weight : Parameter (out_features, in_features); bias : Parameter (out_features,) or None
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        rng = _as_rng(rng)
        gain = math.sqrt(2.0 / (1.0 + KAIMING_A ** 2))
        bound = gain * math.sqrt(3.0 / self.in_features)       # = 1 / sqrt(fan_in)
        self.weight = Parameter(rng.uniform(-bound, bound, (self.out_features, self.in_features)))
        if bias:
            b = 1.0 / math.sqrt(self.in_features)
            self.bias = Parameter(rng.uniform(-b, b, self.out_features))
        else:
            self.bias = None

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}"
                + ("" if self.bias is not None else ", bias=False"))

    def forward(self, x):
        name = self._label()
        x = _as_input(x, f"{name} input", check_nan=top_level())
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{name}: expected {self.in_features} input features on the last "
                             f"axis, got input shape {x.shape}")
        b = None if self.bias is None else self.bias.data
        dtype = _compute_dtype(x, self.weight.data, b)
        y, cache = linear_forward(np.asarray(x, dtype=dtype),
                                  np.asarray(self.weight.data, dtype=dtype),
                                  None if b is None else np.asarray(b, dtype=dtype))
        self._keep(cache, y)
        return y

    def backward(self, dy):
        cache, dy = self._take(dy)
        need_dw = self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad)
        dx, dw, db = linear_backward(dy, cache, need_dw=need_dw)
        self.weight.grad = dw.astype(self.weight.data.dtype, copy=False) \
            if self.weight.requires_grad else None
        if self.bias is not None:
            self.bias.grad = db.astype(self.bias.data.dtype, copy=False) \
                if self.bias.requires_grad else None
        return dx


# ------------------------------------------------------------------------------------------------
# Dropout, Flatten, Identity
# ------------------------------------------------------------------------------------------------
class DropoutCache(NamedTuple):
    mask: np.ndarray       # same shape as x: 0 where dropped, 1 / (1 - p) where kept


def dropout_forward(x, p: float, rng: np.random.Generator):
    """Inverted dropout (Srivastava et al. 2014; scaling at training time as PyTorch does):
    each value is zeroed with probability ``p`` and the survivors are scaled by ``1 / (1 - p)``,
    so the expected output equals the input. ``p = 1`` zeroes everything.

    Returns
    -------
    y : ndarray, like ``x``; cache : DropoutCache
    """
    x = check_float_array(x, "dropout_forward x")
    p = _check_real(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    keep = rng.random(x.shape) >= p
    scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    mask = keep.astype(x.dtype) * x.dtype.type(scale)
    return x * mask, DropoutCache(mask)


def dropout_backward(dy, cache: DropoutCache):
    """``dx = dy * mask`` (the same zeros and scaling as the forward pass)."""
    mask = _cached(check_cache(cache, DropoutCache, "dropout_backward").mask,
                   "dropout_backward cache.mask")
    return check_grad(dy, "dropout_backward dy", mask.shape, mask.dtype) * mask


class Dropout(_CachingModule):
    """Inverted dropout (``torch.nn.Dropout``): active in training mode, identity in eval mode.

    Parameters
    ----------
    p : float in [0, 1]
        Probability of zeroing a value.
    rng : numpy.random.Generator, int or None
        The seeded source of the masks (one draw per forward pass).
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
        self.p = p
        object.__setattr__(self, "rng", _as_rng(rng))

    def extra_repr(self):
        return f"p={self.p}"

    def forward(self, x):
        x = _as_input(x, f"{self._label()} input", check_nan=top_level())
        if not self.training:
            self._keep(None, x)             # identity: backward needs only the shape
            return x
        y, cache = dropout_forward(x, self.p, self.rng)
        self._keep(cache, y)
        return y

    def backward(self, dy):
        """``dy`` times the forward pass's mask and scale; ``dy`` itself after an eval forward."""
        cache, dy = self._take(dy)
        return dy if cache is None else dropout_backward(dy, cache)


class FlattenCache(NamedTuple):
    input_shape: tuple


def flatten_forward(x, start_dim: int = 1, end_dim: int = -1):
    """Merge axes ``start_dim`` to ``end_dim`` into one (a view for contiguous input)."""
    x = check_array(x, "flatten_forward x", dtypes="buif", allow_empty=True)
    start_dim = check_int(start_dim, "start_dim")
    end_dim = check_int(end_dim, "end_dim")
    nd = x.ndim
    s = start_dim + nd if start_dim < 0 else start_dim
    e = end_dim + nd if end_dim < 0 else end_dim
    if not 0 <= s <= e < nd:
        raise ValueError(f"cannot flatten dims {start_dim}..{end_dim} of an input of shape "
                         f"{x.shape}")
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return x.reshape(shape), FlattenCache(x.shape)


def flatten_backward(dy, cache: FlattenCache):
    """Reshape the gradient back to the input's shape (``dy`` must hold as many values)."""
    shape = check_cache(cache, FlattenCache, "flatten_backward").input_shape
    dy = check_array(dy, "flatten_backward dy", dtypes="buif", allow_empty=True)
    if not isinstance(shape, tuple) or dy.size != int(np.prod(shape)):
        raise ValueError(f"flatten_backward: dy has shape {dy.shape}, which does not hold the "
                         f"forward input's shape {shape!r}")
    return dy.reshape(shape)


class Flatten(_CachingModule):
    """Flatten axes ``start_dim`` to ``end_dim`` (``torch.nn.Flatten``; default: all but batch)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim")
        self.end_dim = check_int(end_dim, "end_dim")

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        x = _as_input(x, f"{self._label()} input", check_nan=top_level())
        try:
            y, cache = flatten_forward(x, self.start_dim, self.end_dim)
        except ValueError as exc:
            raise ValueError(f"{self._label()}: {exc}") from None
        self._keep(cache, y)
        return y

    def backward(self, dy):
        cache, dy = self._take(dy)
        return flatten_backward(dy, cache)


class Identity(Module):
    """``y = x`` (``torch.nn.Identity``); its backward returns ``dy``."""

    def forward(self, x):
        return x

    def backward(self, dy):
        return dy


# ------------------------------------------------------------------------------------------------
# Sequential
# ------------------------------------------------------------------------------------------------
class Sequential(Module):
    """Modules applied in order; children are named ``'0'``, ``'1'``, ... as in PyTorch.

    ``backward`` runs the children's backward passes in reverse order. Indexing with an int gives
    a child, with a slice a new :class:`Sequential` sharing the children. The input is scanned for
    NaN once here; an error from a child names it by its index (``"2: MaxPool2d(...): ..."``).
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*items[index])
        index = check_int(index, "index")
        if not -len(items) <= index < len(items):
            raise IndexError(f"Sequential index {index} out of range for {len(items)} modules")
        return items[index]

    def append(self, module: Module) -> "Sequential":
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append needs a Module, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def forward(self, x):
        if top_level():
            x = _as_input(x, "Sequential input", check_nan=True)
        with NESTED:
            for name, m in self._modules.items():
                x = call_child(name, m.forward, x)
        return x

    def backward(self, dy, input_grad=True):
        """The children's backward passes, last first; ``input_grad=False`` skips the input's
        gradient (``None`` is returned) where the first child can
        (:func:`~cvcore.nn.module.takes_input_grad`)."""
        items = list(self._modules.items())
        for i in range(len(items) - 1, -1, -1):
            name, m = items[i]
            if i == 0 and not input_grad:
                if takes_input_grad(m):
                    return call_child(name, m.backward, dy, input_grad=False)
                call_child(name, m.backward, dy)
                return None
            dy = call_child(name, m.backward, dy)
        return dy if input_grad else None
