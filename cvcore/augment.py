"""Data augmentation on batches: random crop with padding, flips, colour jitter, affine distortion.

Layout and range
----------------
A batch is a float32 array ``(N, C, H, W)`` (the layout the CNN trains on); ``(N, H, W)`` is taken
as grey images (``C = 1``) and returned in the same shape. Other dtypes are converted to float32.
Use :func:`cvcore.io.to_nchw` to turn ``uint8 (N, H, W[, 3])`` data into this layout in 0..1.
The colour transforms assume values in 0..1 and clip to that range, so apply them before any
normalisation (mean subtraction); the geometric ones work on any values.

Randomness
----------
Each transform has two halves: ``sample(shape, rng)`` draws the parameters of every image of a
batch with a NumPy ``Generator`` (arrays of length ``N``, a ``NamedTuple``), and ``apply(x,
params)`` runs the Numba kernel (:mod:`kernels.augment`, a ``prange`` over the images), which is
deterministic. Calling a transform does both::

    aug = Compose([RandomCrop(28, padding=4), RandomHorizontalFlip()], seed=0)
    xb = aug(xb)                      # uses the pipeline's own generator, seeded by `seed`
    xb = aug(xb, seed=(seed, epoch, step))  # or rng=: any seed / Generator for this batch

The second form makes a batch's augmentation a function of ``(seed, epoch, step)`` only, which is
what a resumable training loop wants; ``get_state`` / ``set_state`` save and restore the pipeline's
own generator instead.

Conventions
-----------
* Pixel centres are at integer coordinates; the centre of an ``H x W`` image is
  ``((H - 1) / 2, (W - 1) / 2)``, and rotation, scaling and shear are about it.
* Angles are in degrees; a positive rotation turns the picture counter-clockwise as displayed
  (rows downwards), as in torchvision and OpenCV.
* Colour jitter factors follow torchvision's ``ColorJitter``: brightness, contrast and saturation
  factors are drawn uniformly from ``[max(0, 1 - a), 1 + a]``, the hue shift from ``[-h, h]``
  (in turns, ``h <= 0.5``); the four are applied in that fixed order.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from cvcore._validate import check_array, check_finite, check_nonnegative, check_pair

__all__ = [
    "Compose",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ColorJitter",
    "RandomAffine",
    "RandomRotation",
    "RandomScale",
    "RandomTranslate",
    "as_batch",
]


def _kernels():
    from kernels import augment  # imported on first use: keeps `import cvcore` free of Numba
    return augment


def as_batch(x, name: str = "x") -> tuple[np.ndarray, bool]:
    """Return ``x`` as a C-contiguous float32 ``(N, C, H, W)`` array and whether it was
    ``(N, H, W)``. Raises ``ValueError`` / ``TypeError`` naming ``name`` on other shapes, empty
    arrays, non-numeric dtypes and NaN or infinity."""
    arr = check_array(x, name, ndim=(3, 4), dtypes="buif")
    check_finite(arr, name)
    squeeze = arr.ndim == 3
    if squeeze:
        arr = arr[:, None]
    return np.ascontiguousarray(arr, dtype=np.float32), squeeze


def _as_rng(rng, default):
    if rng is None:
        return default
    if isinstance(rng, np.random.Generator):
        return rng
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"rng must be None, a numpy Generator or a seed, got {rng!r} ({exc})") from None


def _one_of(rng, seed):
    if rng is not None and seed is not None:
        raise TypeError("pass rng= or seed=, not both")
    return rng if rng is not None else seed


def _check_fill(fill) -> np.float32:
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real) or not math.isfinite(fill):
        raise TypeError(f"fill must be a finite number, got {fill!r}")
    return np.float32(fill)


class Transform:
    """Base class: ``__call__(x, rng=None)`` = ``apply(x, sample(x.shape, rng))``.

    Subclasses implement ``sample(shape, rng)`` (``shape`` is ``(N, C, H, W)``) and
    ``_apply(x4, params)`` on a validated float32 ``(N, C, H, W)`` batch.
    """

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)

    def sample(self, shape, rng=None):
        raise NotImplementedError

    def _apply(self, x, params):
        raise NotImplementedError

    def apply(self, x, params):
        """Apply the transform with given parameters (from :meth:`sample`) to a batch."""
        x4, squeeze = as_batch(x)
        _check_params(params, len(x4))
        y = self._apply(x4, params)
        return y[:, 0] if squeeze else y

    def __call__(self, x, rng=None, *, seed=None):
        """Augment batch ``x`` with parameters drawn from ``rng`` (a ``Generator``, or a seed:
        an int or a sequence of ints such as ``(seed, epoch, step)``); ``seed=`` is the same as
        ``rng=``. Without either, the transform's own generator is used."""
        x4, squeeze = as_batch(x)
        y = self._apply(x4, self.sample(x4.shape, _as_rng(_one_of(rng, seed), self._rng)))
        return y[:, 0] if squeeze else y

    def get_state(self) -> dict:
        """State of the transform's own generator (for checkpoints)."""
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items())
        return f"{type(self).__name__}({args})"

    def _config(self) -> dict:
        return {}


def _check_params(params, n):
    for name, value in params._asdict().items():
        if isinstance(value, np.ndarray) and len(value) != n:
            raise ValueError(f"params.{name} has {len(value)} entries for a batch of {n} images")


# ----------------------------------------------------------------------------------- crop

class CropParams(NamedTuple):
    top: np.ndarray   # int64 (N,): first row of the crop in the padded image
    left: np.ndarray  # int64 (N,): first column of the crop in the padded image


class RandomCrop(Transform):
    """Pad each image by ``padding`` pixels of ``fill`` on every side, then cut out a
    ``size`` window at a uniformly random position (Krizhevsky et al. 2012, sec. 4.1; the
    pad-4-crop-32 recipe of He et al. 2016, sec. 4.2).

    Parameters
    ----------
    size : int or (int, int)
        Output ``(height, width)``.
    padding : int or (int, int)
        Rows added at top and bottom, columns at left and right.
    fill : float
        Value of the padding.
    seed : int, optional
        Seed of the transform's own generator.

    Examples
    --------
    >>> x = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    >>> RandomCrop(2, padding=1).apply(x, CropParams(top=np.array([0]), left=np.array([0])))
    array([[[0., 0.],
            [0., 0.]]], dtype=float32)
    """

    def __init__(self, size, padding=0, fill=0.0, seed=None):
        super().__init__(seed)
        self.size = check_pair(size, "size", minimum=1)
        self.padding = check_pair(padding, "padding", minimum=0)
        self.fill = _check_fill(fill)

    def _config(self):
        return {"size": self.size, "padding": self.padding, "fill": float(self.fill)}

    def _room(self, shape):
        (h, w), (ph, pw) = self.size, self.padding
        room_y, room_x = shape[2] + 2 * ph - h, shape[3] + 2 * pw - w
        if room_y < 0 or room_x < 0:
            raise ValueError(f"crop size {self.size} is larger than the padded image "
                             f"({shape[2] + 2 * ph}, {shape[3] + 2 * pw})")
        return room_y, room_x

    def sample(self, shape, rng=None):
        rng = _as_rng(rng, self._rng)
        room_y, room_x = self._room(shape)
        n = shape[0]
        return CropParams(rng.integers(0, room_y + 1, n, dtype=np.int64),
                          rng.integers(0, room_x + 1, n, dtype=np.int64))

    def _apply(self, x, params):
        room_y, room_x = self._room(x.shape)
        top = np.ascontiguousarray(params.top, dtype=np.int64)
        left = np.ascontiguousarray(params.left, dtype=np.int64)
        if top.min() < 0 or left.min() < 0 or top.max() > room_y or left.max() > room_x:
            raise ValueError(f"crop offsets must lie in 0..{room_y} (top) and 0..{room_x} (left)")
        out = np.empty((x.shape[0], x.shape[1]) + self.size, dtype=np.float32)
        _kernels().pad_crop(x, top, left, self.padding[0], self.padding[1], self.fill, out)
        return out


# ----------------------------------------------------------------------------------- flip

class FlipParams(NamedTuple):
    flip: np.ndarray  # uint8 (N,): 1 = mirror this image


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``.

    Examples
    --------
    >>> x = np.array([[[1., 2., 3.]]], dtype=np.float32)
    >>> RandomHorizontalFlip().apply(x, FlipParams(np.array([1], np.uint8)))
    array([[[3., 2., 1.]]], dtype=float32)
    """

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__(seed)
        p = check_nonnegative(p, "p")
        if p > 1:
            raise ValueError(f"p must be a probability in 0..1, got {p}")
        self.p = p

    def _config(self):
        return {"p": self.p}

    def sample(self, shape, rng=None):
        rng = _as_rng(rng, self._rng)
        return FlipParams((rng.random(shape[0]) < self.p).astype(np.uint8))

    def _apply(self, x, params):
        out = np.empty_like(x)
        _kernels().hflip(x, np.ascontiguousarray(params.flip, dtype=np.uint8), out)
        return out


# ----------------------------------------------------------------------------------- colour

class JitterParams(NamedTuple):
    brightness: np.ndarray  # float32 (N,) factors (1 = unchanged)
    contrast: np.ndarray    # float32 (N,) factors (1 = unchanged)
    saturation: np.ndarray  # float32 (N,) factors (1 = unchanged)
    hue: np.ndarray         # float32 (N,) shifts in turns (0 = unchanged)


def _factor_range(value, name):
    """torchvision's convention: a number ``a`` means ``[max(0, 1 - a), 1 + a]``; a pair is used
    as given."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        lo, hi = (check_nonnegative(v, name) for v in value)
        if lo > hi:
            raise ValueError(f"{name} range {value!r} has low > high")
        return lo, hi
    a = check_nonnegative(value, name)
    return max(0.0, 1.0 - a), 1.0 + a


class ColorJitter(Transform):
    """Random brightness, contrast, saturation and hue changes, per image.

    Each image ``x`` (values in 0..1) goes through, in this order, with its own factors:

    * brightness ``b``: ``x <- clip(b x)``,
    * contrast ``c``: ``x <- clip(c x + (1 - c) mean(grey(x)))``,
    * saturation ``s``: ``x <- clip(s x + (1 - s) grey(x))`` (RGB only),
    * hue ``h``: rotate the HSV hue by ``h`` turns (RGB only),

    where ``grey`` is ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` and ``clip`` clips to
    0..1. These are the definitions of Pillow's ``ImageEnhance`` and torchvision's
    ``ColorJitter`` on float images. A step whose range is the identity is skipped.

    Parameters
    ----------
    brightness, contrast, saturation : float or (float, float)
        ``a`` draws the factor from ``[max(0, 1 - a), 1 + a]``; a pair is the range itself.
    hue : float or (float, float)
        ``h`` in 0..0.5 draws the shift from ``[-h, h]``; a pair (within -0.5..0.5) is the range.
    seed : int, optional
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, seed=None):
        super().__init__(seed)
        self.brightness = _factor_range(brightness, "brightness")
        self.contrast = _factor_range(contrast, "contrast")
        self.saturation = _factor_range(saturation, "saturation")
        if isinstance(hue, (tuple, list)):
            if len(hue) != 2:
                raise ValueError(f"hue must be a number or a (low, high) pair, got {hue!r}")
            lo, hi = float(hue[0]), float(hue[1])
        else:
            h = check_nonnegative(hue, "hue")
            lo, hi = -h, h
        if not -0.5 <= lo <= hi <= 0.5:
            raise ValueError(f"hue range must lie in -0.5..0.5 with low <= high, got {(lo, hi)}")
        self.hue = (lo, hi)

    def _config(self):
        return {"brightness": self.brightness, "contrast": self.contrast,
                "saturation": self.saturation, "hue": self.hue}

    def sample(self, shape, rng=None):
        rng = _as_rng(rng, self._rng)
        n = shape[0]
        draw = lambda r: rng.uniform(r[0], r[1], n).astype(np.float32)  # noqa: E731
        return JitterParams(draw(self.brightness), draw(self.contrast), draw(self.saturation),
                            draw(self.hue))

    def _apply(self, x, params):
        k = _kernels()
        channels = x.shape[1]
        if channels != 3 and (self.saturation != (1.0, 1.0) or self.hue != (0.0, 0.0)):
            raise ValueError(f"saturation and hue jitter need RGB batches (C=3), got C={channels}")
        if channels not in (1, 3) and self.contrast != (1.0, 1.0):
            raise ValueError(f"contrast jitter needs grey or RGB batches (C=1 or 3), got C={channels}")
        out = x.copy()
        steps = ((self.brightness, (1.0, 1.0), k.brightness, params.brightness),
                 (self.contrast, (1.0, 1.0), k.contrast, params.contrast),
                 (self.saturation, (1.0, 1.0), k.saturation, params.saturation),
                 (self.hue, (0.0, 0.0), k.hue, params.hue))
        for rng_range, identity, kernel, values in steps:
            if rng_range != identity:
                kernel(out, np.ascontiguousarray(values, dtype=np.float32), out)
        return out


# ----------------------------------------------------------------------------------- affine

class AffineParams(NamedTuple):
    angle: np.ndarray  # float64 (N,) degrees, counter-clockwise as displayed
    scale: np.ndarray  # float64 (N,) zoom factors (> 1 enlarges)
    shear: np.ndarray  # float64 (N,) degrees of shear along x
    tx: np.ndarray     # float64 (N,) shift right, pixels
    ty: np.ndarray     # float64 (N,) shift down, pixels


def affine_inverse_maps(params: AffineParams, height: int, width: int) -> np.ndarray:
    """The ``(N, 6)`` inverse maps (output pixel -> input point) that
    :func:`kernels.augment.affine_bilinear` takes.

    The forward map of each image, in ``(x, y)`` pixel coordinates about the centre
    ``c = ((W - 1) / 2, (H - 1) / 2)``, is ``p' = c + t + s R(a) Sh(f) (p - c)`` with
    ``R(a) = [[cos a, sin a], [-sin a, cos a]]`` (counter-clockwise on screen, since ``y`` points
    down) and ``Sh(f) = [[1, tan f], [0, 1]]``. Its inverse is
    ``p = c + (s R Sh)^{-1} (p' - c - t)``.
    """
    a = np.deg2rad(np.asarray(params.angle, dtype=np.float64))
    f = np.deg2rad(np.asarray(params.shear, dtype=np.float64))
    s = np.asarray(params.scale, dtype=np.float64)
    n = len(a)
    cos, sin, tan = np.cos(a), np.sin(a), np.tan(f)
    fwd = np.empty((n, 2, 2))
    fwd[:, 0, 0] = s * cos
    fwd[:, 0, 1] = s * (cos * tan + sin)
    fwd[:, 1, 0] = -s * sin
    fwd[:, 1, 1] = s * (cos - sin * tan)
    inv = np.linalg.inv(fwd)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    ox = cx + np.asarray(params.tx, dtype=np.float64)
    oy = cy + np.asarray(params.ty, dtype=np.float64)
    mats = np.empty((n, 6))
    mats[:, 0], mats[:, 1] = inv[:, 0, 0], inv[:, 0, 1]
    mats[:, 3], mats[:, 4] = inv[:, 1, 0], inv[:, 1, 1]
    mats[:, 2] = cx - inv[:, 0, 0] * ox - inv[:, 0, 1] * oy
    mats[:, 5] = cy - inv[:, 1, 0] * ox - inv[:, 1, 1] * oy
    return mats


class RandomAffine(Transform):
    """Random rotation, scaling, shear and translation of each image, about its centre, with
    bilinear interpolation; pixels that come from outside the image get ``fill``.

    Parameters
    ----------
    degrees : float or (float, float)
        Rotation range: ``d`` means ``[-d, d]``.
    translate : (float, float), optional
        Maximum shift as fractions of ``(width, height)``: ``tx`` is drawn from
        ``[-fx W, fx W]``, ``ty`` from ``[-fy H, fy H]`` (not rounded).
    scale : (float, float), optional
        Zoom range, e.g. ``(0.9, 1.1)``.
    shear : float or (float, float)
        Shear-angle range along x, degrees.
    fill : float
    seed : int, optional

    Notes
    -----
    See :func:`affine_inverse_maps` for the map. The parameters of a batch are drawn in the order
    angle, scale, shear, tx, ty.
    """

    def __init__(self, degrees=0.0, translate=None, scale=None, shear=0.0, fill=0.0, seed=None):
        super().__init__(seed)
        self.degrees = _symmetric_range(degrees, "degrees")
        self.shear = _symmetric_range(shear, "shear")
        if max(abs(v) for v in self.shear) >= 80:
            raise ValueError(f"shear must stay within (-80, 80) degrees, got {self.shear}")
        if translate is None:
            self.translate = (0.0, 0.0)
        else:
            fx, fy = _real_pair(translate, "translate")
            if not (0 <= fx <= 1 and 0 <= fy <= 1):
                raise ValueError(f"translate fractions must lie in 0..1, got {translate!r}")
            self.translate = (fx, fy)
        if scale is None:
            self.scale = (1.0, 1.0)
        else:
            lo, hi = _real_pair(scale, "scale")
            if not 0 < lo <= hi:
                raise ValueError(f"scale must be a (low, high) range with 0 < low <= high, got {scale!r}")
            self.scale = (lo, hi)
        self.fill = _check_fill(fill)

    def _config(self):
        return {"degrees": self.degrees, "translate": self.translate, "scale": self.scale,
                "shear": self.shear, "fill": float(self.fill)}

    def sample(self, shape, rng=None):
        rng = _as_rng(rng, self._rng)
        n, _, h, w = shape
        fx, fy = self.translate
        return AffineParams(angle=rng.uniform(*self.degrees, n), scale=rng.uniform(*self.scale, n),
                            shear=rng.uniform(*self.shear, n), tx=rng.uniform(-fx * w, fx * w, n),
                            ty=rng.uniform(-fy * h, fy * h, n))

    def _apply(self, x, params):
        arrays = [np.asarray(v, dtype=np.float64) for v in params]
        if not all(np.isfinite(a).all() for a in arrays) or (arrays[1] <= 0).any():
            raise ValueError("affine parameters must be finite with positive scale")
        mats = affine_inverse_maps(AffineParams(*arrays), x.shape[2], x.shape[3])
        out = np.empty_like(x)
        _kernels().affine_bilinear(x, np.ascontiguousarray(mats), self.fill, out)
        return out


def _symmetric_range(value, name):
    if isinstance(value, (tuple, list)):
        lo, hi = _real_pair(value, name)
        if lo > hi:
            raise ValueError(f"{name} range {value!r} has low > high")
        return lo, hi
    d = check_nonnegative(value, name)
    return -d, d


def _real_pair(value, name):
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers, got {value!r}") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise TypeError(f"{name} must be a pair of finite numbers, got {value!r}")
    return float(a), float(b)


class RandomRotation(RandomAffine):
    """Rotation by an angle drawn from ``[-degrees, degrees]`` (or the given range) about the
    image centre; a :class:`RandomAffine` with only ``degrees``."""

    def __init__(self, degrees, fill=0.0, seed=None):
        super().__init__(degrees=degrees, fill=fill, seed=seed)


class RandomScale(RandomAffine):
    """Zoom about the centre by a factor drawn from ``scale = (low, high)``."""

    def __init__(self, scale, fill=0.0, seed=None):
        super().__init__(scale=scale, fill=fill, seed=seed)


class RandomTranslate(RandomAffine):
    """Shift by up to ``translate = (fx, fy)`` of the width and height (sub-pixel, bilinear)."""

    def __init__(self, translate, fill=0.0, seed=None):
        super().__init__(translate=translate, fill=fill, seed=seed)


# ----------------------------------------------------------------------------------- pipeline

class Compose(Transform):
    """Apply transforms one after the other, drawing each one's parameters from one generator.

    Parameters
    ----------
    transforms : list of Transform
    seed : int, optional
        Seed of the pipeline's generator (used when a call passes no ``rng``). The transforms'
        own generators are not used inside a pipeline.

    Examples
    --------
    >>> aug = Compose([RandomCrop(28, padding=4), RandomHorizontalFlip()], seed=0)
    >>> x = np.zeros((8, 1, 28, 28), np.float32)
    >>> aug(x).shape
    (8, 1, 28, 28)
    >>> np.array_equal(aug(x + 1, rng=5), aug(x + 1, rng=5))
    True
    """

    def __init__(self, transforms, seed=None):
        super().__init__(seed)
        transforms = list(transforms)
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"Compose takes cvcore.augment transforms, got {type(t).__name__}")
        self.transforms = transforms

    def sample(self, shape, rng=None):
        """Parameters of every step, as a list (shapes follow the steps' outputs)."""
        rng = _as_rng(rng, self._rng)
        params, shape = [], tuple(shape)
        for t in self.transforms:
            params.append(t.sample(shape, rng))
            if isinstance(t, RandomCrop):
                shape = shape[:2] + t.size
        return params

    def apply(self, x, params):
        x4, squeeze = as_batch(x)
        if len(params) != len(self.transforms):
            raise ValueError(f"{len(params)} parameter sets for {len(self.transforms)} transforms")
        for t, p in zip(self.transforms, params):
            _check_params(p, len(x4))
            x4 = t._apply(x4, p)
        return x4[:, 0] if squeeze else x4

    def _apply(self, x, params):
        for t, p in zip(self.transforms, params):
            x = t._apply(x, p)
        return x

    def __call__(self, x, rng=None, *, seed=None):
        x4, squeeze = as_batch(x)
        rng = _as_rng(_one_of(rng, seed), self._rng)
        for t in self.transforms:
            x4 = t._apply(x4, t.sample(x4.shape, rng))
        return x4[:, 0] if squeeze else x4

    def __repr__(self):
        inner = ",\n".join(f"    {t!r}" for t in self.transforms)
        return f"Compose([\n{inner}\n])"
