"""What the fuzzing harness calls: one list of :class:`Entry` per module of the public API.

An entry is a function (``"module:name"``) and a Hypothesis strategy for each argument. Every
value strategy yields ``(value, tame)``: tame values are finite and moderate, and a case made
only of tame values must return finite floats. The strategies mix in what breaks kernels:
empty and 1x1 shapes, every dtype, non-contiguous strides, NaN, infinity, float64 beyond
float32, tiny and huge scalars, wrong types, and pairs that do not fit each other.

To cover a new function, add an ``Entry`` to its module's list (or a new list to ``REGISTRY``):

    PREPROCESS.append(Entry("cvcore.preprocess:my_filter", [image()], {"radius": integer(0, 9)}))

Helpers such as :func:`nn_pair` run several calls as one case (a forward, then its backward
with a gradient that may not fit), for properties that need more than one call.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

DTYPES = ("float32", "float64", "uint8", "uint16", "int32", "float16", "bool")
#: Share of cases drawn "clean": every array non-empty, of its strategy's first dtype and free of
#: special values, every scalar inside its range. The rest draw rare events as below. Without
#: it most cases of a many-argument function held one rare event and were refused (58 % in the
#: first long run), so the functions' accepting paths were fuzzed far less than their checks.
CLEAN_SHARE = 0.6
_DRAW = threading.local()         # .clean while one case is drawn (benchmarks.fuzz: threads)


def _clean() -> bool:
    return getattr(_DRAW, "clean", False)
BAD_SCALARS = (None, "3", [1, 2], float("nan"), float("inf"), -float("inf"), 1e300, -1e300,
               5e-324, 0, -1, 0.0, -0.0, 2 ** 62, True)


# -- value strategies: each yields (value, tame) -----------------------------------------------

@st.composite
def array(draw, ndim=(2,), side=(0, 12), dtypes=DTYPES, low=0.0, high=1.0, fixed=None):
    """An array with ``ndim`` axes, sides in ``side`` (or the shape ``fixed``, a tuple whose
    ``None`` entries are drawn), values in ``[low, high]`` or special ones."""
    nd = draw(st.sampled_from(ndim)) if fixed is None else len(fixed)
    lo, hi = side
    # The rare events come from a seeded NumPy generator, not from Hypothesis, whose draws lean
    # towards their simplest value (an empty side, the first dtype) far more than one in ten.
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    clean = _clean()
    shape = tuple((lo if rng.random() < 0.06 and not clean else
                   int(rng.integers(max(lo, 1), max(hi, 1) + 1)))
                  if fixed is None or fixed[i] is None else fixed[i] for i in range(nd))
    dtype = np.dtype(dtypes[0] if clean or rng.random() < 0.5 else
                     dtypes[rng.integers(len(dtypes))])
    values = low + (high - low) * rng.random(shape)
    tame = min(shape, default=1) > 0
    special = "plain" if clean else rng.choice(["plain"] * 8 + ["const", "special"])
    if special == "const":
        values[...] = rng.choice([low, high, 0.0])
    elif special == "special" and values.size:
        bad = rng.choice([np.nan, np.inf, -np.inf, 3.3e38, -3.3e38, 1e300, 1e-40, 1e6, -1e6])
        idx = tuple(rng.integers(0, s) for s in shape)
        values[idx] = bad
        tame = tame and abs(bad) <= 1e6 and (dtype.kind != "f" or dtype.itemsize > 2)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = np.nan_to_num(values, nan=0.0, posinf=info.max, neginf=info.min)
        arr = np.clip(np.round(values * (255 if high <= 1 else 1)), info.min, info.max)
        arr = arr.astype(dtype)
    elif dtype == np.bool_:
        arr = np.nan_to_num(values) > 0.5
    else:
        with np.errstate(over="ignore"):
            arr = values.astype(dtype)
        if dtype == np.float16 and not np.isfinite(arr).all():
            tame = False
    layout = rng.choice(["c"] * 6 + ["strided", "fortran"])
    if layout == "strided" and arr.ndim:
        from tests.fuzz_harness import Strided
        big = np.zeros((arr.shape[0] * 2,) + arr.shape[1:], arr.dtype)
        big[::2] = arr
        arr = Strided(big)          # pickling would make a view contiguous: rebuilt in the worker
    elif layout == "fortran":
        arr = np.asfortranarray(arr)
    return arr, tame


def image(side=(0, 24), dtypes=DTYPES, channels=(None, 1, 3, 4)):
    """An image (H, W) or (H, W, C)."""
    @st.composite
    def build(draw):
        c = draw(st.sampled_from(channels))
        fixed = (None, None) if c is None else (None, None, c)
        return draw(array(fixed=fixed, side=side, dtypes=dtypes))
    return build()


def _rarely_bad(good, bad_values, p=0.08):
    """``good`` (tame), or one of ``bad_values`` (not tame) with probability ``p``, decided by a
    seeded generator (Hypothesis's own choice between branches leans to the simplest one)."""
    @st.composite
    def build(draw):
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        if bad_values and not _clean() and rng.random() < p:
            return bad_values[rng.integers(len(bad_values))], False
        return draw(good)
    return build()


def real(lo, hi, bad=True):
    """A float in ``[lo, hi]`` (tame) or, sometimes, a bad scalar (not tame)."""
    return _rarely_bad(st.floats(lo, hi, allow_nan=False).map(lambda v: (v, True)),
                       BAD_SCALARS if bad else ())


def integer(lo, hi, bad=True):
    return _rarely_bad(st.integers(lo, hi).map(lambda v: (v, True)), BAD_SCALARS if bad else ())


def pair(lo, hi):
    return st.one_of(integer(lo, hi), st.tuples(integer(lo, hi, bad=False),
                                                integer(lo, hi)).map(
        lambda t: ((t[0][0], t[1][0]), t[0][1] and t[1][1])))


def choice(*values, bad=("nope", None, 3)):
    return _rarely_bad(st.sampled_from(values).map(lambda v: (v, True)), tuple(bad or ()))


def const(value):
    return st.just((value, True))


# -- entries -----------------------------------------------------------------------------------

@dataclass
class Entry:
    target: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    #: why a tame case may return NaN/inf (documented behaviour); empty: it may not
    nonfinite_ok: str = ""
    #: label of the entry (default: the target's name)
    name: str = ""

    def case(self):
        """A strategy for ``(args, kwargs, tame)``."""
        @st.composite
        def build(draw):
            seed = draw(st.integers(0, 2 ** 32 - 1))
            _DRAW.clean = np.random.default_rng(seed).random() < CLEAN_SHARE
            try:
                tame = True
                args = []
                for s in self.args:
                    v, t = draw(s)
                    args.append(v)
                    tame = tame and t
                kwargs = {}
                for k, s in self.kwargs.items():
                    v, t = draw(s)
                    kwargs[k] = v
                    tame = tame and t
            finally:
                _DRAW.clean = False
            return tuple(args), kwargs, tame and not self.nonfinite_ok
        return build()


# -- helpers that run several calls as one case ------------------------------------------------

def nn_pair(name, x, params, dy_change):
    """``<name>_forward(x, *params)``, then ``<name>_backward(dy, cache)`` with ``dy`` of the
    output's shape changed by ``dy_change`` ("same", "longer", "shorter", "float64", "other
    cache": the cache of a ReLU instead)."""
    from cvcore import nn
    forward = getattr(nn, f"{name}_forward")
    backward = getattr(nn, f"{name}_backward")
    y, cache = forward(x, *params)
    y = np.asarray(y)
    if dy_change == "longer":
        dy = np.ones((y.shape[0] + 3,) + y.shape[1:], np.float32) if y.ndim else np.ones(3)
    elif dy_change == "shorter":
        dy = np.ones((max(y.shape[0] - 1, 0),) + y.shape[1:], np.float32) if y.ndim else \
            np.ones(0)
    elif dy_change == "float64":
        dy = np.ones(y.shape, np.float64)
    elif dy_change == "other cache":
        dy = np.ones(y.shape, np.float32)
        cache = nn.relu_forward(np.ones(3, np.float32))[1]
    else:
        dy = np.linspace(-1, 1, max(y.size, 1))[:y.size].reshape(y.shape).astype(y.dtype)
    return backward(dy, cache)


def cross_entropy_pair(logits, target, smoothing, dloss):
    from cvcore.nn import cross_entropy_backward, cross_entropy_forward
    loss, cache = cross_entropy_forward(logits, target, smoothing)
    return loss, cross_entropy_backward(dloss, cache)


def module_forward_backward(kind, ctor, x):
    """A layer module: forward, then backward with ``dy`` = ones like the output."""
    from cvcore import nn
    m = getattr(nn, kind)(*ctor)
    y = m(x)
    return m.backward(np.ones_like(y))


def augment_apply(kind, ctor, x, params):
    """``<kind>(**ctor).apply(x, params)``: the parameters ``sample`` draws for ``x``, with the
    fields given in the dict ``params`` replaced (explicit, possibly unfitting values)."""
    from cvcore import augment
    t = getattr(augment, kind)(**ctor)
    x4 = np.asarray(x)
    shape = (x4.shape[0], 1) + x4.shape[1:3] if x4.ndim == 3 else \
        (x4.shape[0], x4.shape[3]) + x4.shape[1:3]
    try:
        drawn = t.sample(shape, np.random.default_rng(0))
    except (ValueError, TypeError, IndexError):
        cls = {"RandomCrop": augment.CropParams, "RandomHorizontalFlip": augment.FlipParams,
               "ColorJitter": augment.JitterParams, "RandomAffine": augment.AffineParams}[kind]
        drawn = cls(*[np.zeros(max(len(x4), 0)) for _ in cls._fields])
    return t.apply(x, drawn._replace(**params))


def augment_call(kind, ctor, x, seed):
    from cvcore import augment
    return getattr(augment, kind)(**ctor)(x, seed=seed)


def classify_fit_predict(kind, X, y, Xq):
    """Fit, save and reload, predict. ``y`` None: three classes in turn, one label per row."""
    from cvcore import classify
    if y is None:
        y = np.arange(len(np.asarray(X))) % 3
    from cvcore.classify import load_classifier
    clf = getattr(classify, kind)().fit(X, y)
    again = load_classifier(clf.state())
    return again.predict_proba(Xq), clf.predict(Xq)


def scale_space_stages(image, n_scales, sigma, double, contrast, edge):
    """The SIFT stages in order, each through its public function."""
    from cvcore.features import (describe_keypoints, detect_keypoints, dog_scale_space,
                                 gaussian_scale_space, localize_keypoints, scale_space_extrema)
    space = gaussian_scale_space(image, n_scales, sigma, double)
    dogs = dog_scale_space(space)
    ext = scale_space_extrema(dogs[0], 0.5 * contrast / n_scales)
    loc = localize_keypoints(dogs[0], space.gauss[0], ext, n_scales, sigma, contrast, edge)
    kp = detect_keypoints(space, dogs, contrast, edge)
    return loc, describe_keypoints(space, kp[:20])


def match_pair(name, src, dst, kwargs):
    """``cvcore.match.<name>(src, dst, **kwargs)``; ``dst`` None: an affine image of ``src``
    plus noise (the usual case), else the given (possibly unfitting) points."""
    from cvcore import match
    if dst is None:
        s = np.asarray(src, np.float64)
        if s.ndim == 2 and s.shape[1:] == (2,):
            rng = np.random.default_rng(len(s))
            dst = s @ np.array([[1.1, 0.2], [-0.1, 0.9]]) + [3.0, -2.0] + \
                rng.normal(0, 0.5, s.shape)
        else:
            dst = s
    return getattr(match, name)(src, dst, **kwargs)


def describe_at(image, xy, size, angle):
    from cvcore.features import Keypoints, sift
    return sift(image, keypoints=Keypoints.from_xy(xy, size, angle))


def affine_maps(angle, scale, shear, tx, ty, h, w):
    from cvcore.augment import AffineParams, affine_inverse_maps
    return affine_inverse_maps(AffineParams(angle, scale, shear, tx, ty), h, w)


# -- the registry ------------------------------------------------------------------------------

def _vec(n, lo=-2.0, hi=2.0, dtypes=("float32", "float64", "int32")):
    return array(fixed=(n,), dtypes=dtypes, low=lo, high=hi)


def _dict(d):
    """A dict of (value, tame) pairs as (dict of values, all tame)."""
    return {k: v[0] for k, v in d.items()}, all(v[1] for v in d.values())


def _some(fields):
    """Explicit parameter fields: none (the sampled ones) half the time, else one of them."""
    return st.one_of(const({}), *[st.tuples(st.just(k), v).map(
        lambda t: ({t[0]: t[1][0]}, t[1][1])) for k, v in fields.items()])
IMG = image()
SMALL_IMG = image(side=(0, 40), dtypes=("float32", "float64", "uint8", "uint16"))
BATCH = array(ndim=(3, 4), side=(0, 10), dtypes=("float32", "float64", "uint8"))
NCHW = array(fixed=(None, None, None, None), side=(0, 7), low=-2, high=2,
             dtypes=("float32", "float64", "int32"))
MODE = choice("reflect", "mirror", "nearest", "constant", "wrap")

PREPROCESS = [
    Entry("cvcore.preprocess:rgb2gray", [IMG]),
    Entry("cvcore.preprocess:gray2rgb", [IMG]),
    Entry("cvcore.preprocess:adjust_brightness", [IMG, real(0, 3)]),
    Entry("cvcore.preprocess:adjust_contrast", [IMG, real(0, 3)]),
    Entry("cvcore.preprocess:adjust_gamma", [IMG, real(0.05, 5), real(0, 3)]),
    Entry("cvcore.preprocess:equalize_hist", [IMG], {"nbins": integer(2, 512)}),
    Entry("cvcore.preprocess:equalize_adapthist", [IMG],
          {"clip_limit": real(0.1, 10), "tile_grid": pair(1, 8)}),
    Entry("cvcore.preprocess:standardize", [IMG], {"per_channel": choice(True, False)}),
    Entry("cvcore.preprocess:resize", [IMG, pair(1, 30)],
          {"interpolation": choice("nearest", "bilinear", "bicubic", "area")}),
    Entry("cvcore.preprocess:warp_affine", [IMG, array(fixed=(2, 3), low=-2, high=2)],
          {"output_shape": st.one_of(const(None), pair(1, 20)), "mode": MODE,
           "cval": real(-1, 1)}),
    Entry("cvcore.preprocess:warp_perspective", [IMG, array(fixed=(3, 3), low=-2, high=2)],
          {"output_shape": st.one_of(const(None), pair(1, 20)), "mode": MODE,
           "cval": real(-1, 1)}),
    Entry("cvcore.preprocess:correlate", [IMG, array(ndim=(2,), side=(0, 6), low=-1, high=1)],
          {"mode": MODE, "cval": real(-1, 1)}),
    Entry("cvcore.preprocess:convolve", [IMG, array(ndim=(1, 2, 3), side=(0, 6), low=-1)],
          {"mode": MODE, "cval": real(-1, 1)}),
    Entry("cvcore.preprocess:gaussian", [IMG, st.one_of(real(0.01, 6), st.tuples(
        real(0.01, 6, bad=False), real(0.01, 6)).map(lambda t: ((t[0][0], t[1][0]), t[1][1])))],
          {"truncate": real(0.5, 6), "mode": MODE, "cval": real(-1, 1)}),
    Entry("cvcore.preprocess:sobel", [IMG], {"axis": choice(None, 0, 1), "mode": MODE}),
    Entry("cvcore.preprocess:scharr", [IMG], {"axis": choice(None, 0, 1), "mode": MODE}),
    Entry("cvcore.preprocess:prewitt", [IMG], {"axis": choice(None, 0, 1), "mode": MODE}),
    Entry("cvcore.preprocess:laplace", [IMG], {"mode": MODE, "cval": real(-1, 1)}),
    Entry("cvcore.preprocess:median", [IMG], {"size": pair(1, 9), "mode": MODE}),
]

FEATURES = [
    Entry("cvcore.features:canny", [SMALL_IMG],
          {"sigma": real(0.1, 4), "low_threshold": st.one_of(const(None), real(0, 0.2)),
           "high_threshold": st.one_of(const(None), real(0.2, 0.5)),
           "use_quantiles": choice(False)}),
    Entry("cvcore.features:harris", [SMALL_IMG],
          {"method": choice("k", "eps"), "k": real(0, 0.2), "sigma": real(0.1, 3)}),
    Entry("cvcore.features:shi_tomasi", [SMALL_IMG], {"sigma": real(0.1, 3)}),
    Entry("cvcore.features:corner_peaks", [array(side=(0, 20), low=-1, high=1)],
          {"min_distance": integer(1, 5), "threshold_rel": st.one_of(const(None), real(0, 1)),
           "num_peaks": st.one_of(const(None), integer(1, 10))}),
    Entry("cvcore.features:hog", [SMALL_IMG],
          {"orientations": integer(1, 12), "pixels_per_cell": pair(1, 10),
           "cells_per_block": pair(1, 4),
           "block_norm": choice("L1", "L1-sqrt", "L2", "L2-Hys"),
           "transform_sqrt": choice(True, False)}),
    Entry("cvcore.features:hog_batch", [BATCH],
          {"orientations": integer(1, 12), "pixels_per_cell": pair(1, 6),
           "cells_per_block": pair(1, 3)}),
    Entry("cvcore.features:sift", [SMALL_IMG],
          {"n_features": st.one_of(const(None), integer(1, 50)), "n_scales": integer(1, 5),
           "sigma": real(0.3, 3), "contrast_threshold": real(0, 0.1),
           "edge_threshold": real(1, 20), "double_image": choice(True, False),
           "upright": choice(True, False), "root_sift": choice(True, False)}),
    Entry("tests.fuzz_registry:scale_space_stages",
          [SMALL_IMG, integer(1, 4), real(0.5, 2.5), choice(True, False), real(0, 0.1),
           real(1, 20)]),
    Entry("tests.fuzz_registry:describe_at",
          [SMALL_IMG, array(fixed=(None, 2), side=(0, 5), low=-10, high=50),
           real(0.5, 30), real(-400, 400)]),
    Entry("cvcore.features:orientation_histogram",
          [array(side=(0, 30), low=0, high=1), integer(0, 30), integer(0, 30), real(0.1, 10)]),
    Entry("cvcore.features:scale_space_extrema",
          [array(fixed=(None, None, None), side=(0, 16), low=-0.1, high=0.1), real(0, 0.05)],
          {"border": integer(1, 6)}),
    Entry("cvcore.features:localize_keypoints",
          [array(fixed=(5, None, None), side=(0, 16), low=-0.1, high=0.1),
           array(fixed=(6, None, None), side=(0, 16)),
           array(fixed=(None, 3), side=(0, 5), low=0, high=12, dtypes=("int32", "int64"))],
          {"n_scales": integer(1, 4)}),
]

MATCH = [
    Entry("cvcore.match:match_descriptors",
          [array(fixed=(None, 8), side=(0, 12), low=-1), array(fixed=(None, 8), side=(0, 12))],
          {"ratio": st.one_of(const(None), real(0.1, 1)), "cross_check": choice(True, False)}),
    Entry("tests.fuzz_registry:match_pair",
          [const("fit_homography"), array(fixed=(None, 2), side=(0, 12), high=50),
           st.one_of(*([const(None)] * 3), array(fixed=(None, 2), side=(0, 12), high=50)),
           const({})]),
    Entry("tests.fuzz_registry:match_pair",
          [const("fit_affine"), array(fixed=(None, 2), side=(0, 12), high=50),
           st.one_of(*([const(None)] * 3), array(fixed=(None, 2), side=(0, 12), high=50)),
           const({})]),
    Entry("cvcore.match:apply_homography", [array(fixed=(3, 3), low=-2, high=2),
                                            array(fixed=(None, 2), side=(0, 10), high=50)],
          nonfinite_ok="a point on the line H maps to infinity (h3.p = 0) comes out as inf, "
                       "as documented"),
    Entry("cvcore.match:refine_homography",
          [array(fixed=(3, 3), low=-2, high=2), array(fixed=(None, 2), side=(0, 10), high=50),
           array(fixed=(None, 2), side=(0, 10), high=50)], {"iterations": integer(1, 5)}),
    Entry("tests.fuzz_registry:match_pair",
          [const("ransac_homography"), array(fixed=(None, 2), side=(0, 12), high=50),
           st.one_of(*([const(None)] * 3), array(fixed=(None, 2), side=(0, 12), high=50)),
           st.fixed_dictionaries({"threshold": real(0.1, 5), "max_trials": integer(1, 100),
                                   "confidence": real(0.5, 0.999)}).map(_dict)]),
    Entry("tests.fuzz_registry:match_pair",
          [const("ransac_affine"), array(fixed=(None, 2), side=(0, 12), high=50),
           st.one_of(*([const(None)] * 3), array(fixed=(None, 2), side=(0, 12), high=50)),
           st.fixed_dictionaries({"threshold": real(0.1, 5),
                                   "max_trials": integer(1, 100)}).map(_dict)]),
]

AUGMENT = [
    Entry("tests.fuzz_registry:augment_apply",
          [const("RandomCrop"),
           st.fixed_dictionaries({"size": pair(1, 8), "padding": pair(0, 3),
                                  "fill": real(-1, 1)}).map(_dict),
           BATCH, _some({"top": _vec(None, 0, 6, ("int64", "int32", "float64")),
                         "left": _vec(None, 0, 6, ("int64", "int32", "float64"))})]),
    Entry("tests.fuzz_registry:augment_apply",
          [const("RandomHorizontalFlip"), const({}), BATCH,
           _some({"flip": _vec(None, 0, 1, ("bool", "int32", "float32"))})]),
    Entry("tests.fuzz_registry:augment_apply",
          [const("ColorJitter"), st.fixed_dictionaries(
              {"brightness": real(0, 1), "contrast": real(0, 1), "saturation": real(0, 1),
               "hue": real(0, 0.5)}).map(_dict), BATCH,
           _some({k: _vec(None, 0, 2, ("float32", "float64"))
                  for k in ("brightness", "contrast", "saturation", "hue")})]),
    Entry("tests.fuzz_registry:augment_apply",
          [const("RandomAffine"), st.fixed_dictionaries(
              {"degrees": real(0, 90), "fill": real(-1, 1)}).map(_dict), BATCH,
           _some({"angle": _vec(None, -180, 180, ("float64", "float32")),
                  "scale": _vec(None, 0.5, 2, ("float64", "float32")),
                  "shear": _vec(None, -30, 30, ("float64",)),
                  "tx": _vec(None, -5, 5, ("float64",)),
                  "ty": _vec(None, -5, 5, ("float64",))})]),
    Entry("tests.fuzz_registry:augment_call",
          [const("RandomRotation"), st.fixed_dictionaries(
              {"degrees": real(0, 180), "fill": real(-1, 1)}).map(_dict),
           BATCH, integer(0, 1000)]),
    Entry("tests.fuzz_registry:augment_call",
          [const("ColorJitter"), st.fixed_dictionaries(
              {"brightness": real(0, 1), "contrast": real(0, 1), "saturation": real(0, 1),
               "hue": real(0, 0.5)}).map(_dict), BATCH, integer(0, 1000)]),
    Entry("tests.fuzz_registry:affine_maps",
          [_vec(None, -90, 90, ("float64",)), _vec(None, 0.5, 2, ("float64",)),
           _vec(None, -30, 30, ("float64",)), _vec(None, -5, 5, ("float64",)),
           _vec(None, -5, 5, ("float64",)), integer(1, 20), integer(1, 20)]),
]

CLASSIFY = [
    Entry("tests.fuzz_registry:classify_fit_predict",
          [choice("LinearSVM", "SoftmaxRegression", "KNeighborsClassifier", bad=()),
           array(fixed=(None, 5), side=(0, 30), low=-1),
           st.one_of(*([const(None)] * 4), array(fixed=(None,), side=(0, 30), low=0, high=3,
                                                  dtypes=("int64", "int32", "uint8",
                                                          "float32"))),
           array(fixed=(None, 5), side=(0, 10), low=-1)]),
]

NN = [
    Entry("tests.fuzz_registry:nn_pair", [const("relu"), NCHW, const(()),
                                          choice("same", "longer", "shorter", "float64",
                                                 "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("batchnorm2d_train"), NCHW,
           st.tuples(_vec(None), _vec(None)).map(lambda t: ((t[0][0], t[1][0]),
                                                            t[0][1] and t[1][1])),
           choice("same", "longer", "float64", "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("batchnorm2d_eval"), NCHW,
           st.tuples(_vec(None), _vec(None), _vec(None), _vec(None, 0, 2)).map(
               lambda t: (tuple(v[0] for v in t), all(v[1] for v in t))),
           choice("same", "shorter", "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("maxpool2d"), NCHW, st.tuples(pair(1, 4), pair(1, 3), pair(0, 2)).map(
              lambda t: (tuple(v[0] for v in t), all(v[1] for v in t))),
           choice("same", "longer", "shorter", "float64", "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("avgpool2d"), NCHW, st.tuples(pair(1, 4), pair(1, 3), pair(0, 2)).map(
              lambda t: (tuple(v[0] for v in t), all(v[1] for v in t))),
           choice("same", "longer", "shorter", "float64", "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("adaptive_avgpool2d"), NCHW, st.tuples(pair(1, 9)).map(
              lambda t: ((t[0][0],), t[0][1])),
           choice("same", "longer", "shorter", "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("linear"), array(ndim=(1, 2, 3), side=(0, 6), low=-1),
           st.tuples(array(fixed=(None, None), side=(0, 6), low=-1),
                     st.one_of(const(None), _vec(None))).map(
               lambda t: ((t[0][0], t[1][0]), t[0][1] and t[1][1])),
           choice("same", "longer", "shorter", "float64", "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("dropout"), NCHW, st.tuples(real(0, 1)).map(
              lambda t: ((t[0][0], np.random.default_rng(0)), t[0][1])),
           choice("same", "longer", "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("flatten"), NCHW, st.tuples(integer(-4, 3), integer(-4, 3)).map(
              lambda t: ((t[0][0], t[1][0]), t[0][1] and t[1][1])),
           choice("same", "longer", "other cache")]),
    Entry("tests.fuzz_registry:nn_pair",
          [const("conv2d"), NCHW,
           st.tuples(array(fixed=(None, None, None, None), side=(0, 4), low=-1),
                     st.one_of(const(None), _vec(None)), integer(1, 3), integer(0, 2),
                     integer(1, 2)).map(lambda t: (tuple(v[0] for v in t),
                                                   all(v[1] for v in t))),
           choice("same", "longer", "shorter", "float64", "other cache")]),
    Entry("tests.fuzz_registry:cross_entropy_pair",
          [array(fixed=(None, None), side=(0, 6), low=-5, high=5),
           array(fixed=(None,), side=(0, 6), low=0, high=5, dtypes=("int64", "int32", "float32")),
           real(0, 1), real(-2, 2)]),
    Entry("tests.fuzz_registry:module_forward_backward",
          [choice("BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", bad=()),
           st.tuples(integer(1, 4)).map(lambda t: ((t[0][0],), t[0][1])), NCHW]),
    Entry("tests.fuzz_registry:module_forward_backward",
          [const("Linear"), st.tuples(integer(1, 5), integer(1, 5)).map(
              lambda t: ((t[0][0], t[1][0]), t[0][1] and t[1][1])),
           array(ndim=(1, 2, 3), side=(0, 6), low=-1)]),
    Entry("tests.fuzz_registry:module_forward_backward",
          [const("Conv2d"), st.tuples(integer(1, 3), integer(1, 3), integer(1, 3)).map(
              lambda t: (tuple(v[0] for v in t), all(v[1] for v in t))), NCHW]),
]



# -- helpers of the rooms added later (SURF, integral images, HOG objects, drawing, detection,
#    depthwise networks, attacks, calibration and trust, optimisers and schedules) --------------

def _fit(a, shape, fit):
    """``a`` (possibly not fitting) or, with ``fit``, an array of ``shape`` built from its values
    (cycled; zeros if it has none), keeping its dtype: most cases then fit their partner."""
    a = np.asarray(a)
    if not fit:
        return a
    flat = a.ravel()
    n = int(np.prod(shape))
    if flat.size == 0:
        return np.zeros(shape, a.dtype if a.dtype.kind in "fiu" else np.float32)
    return np.resize(flat, n).reshape(shape)


def integral_boxes(image, bounds, squared, sort):
    """``box_sum`` over an integral image of ``image``; ``bounds`` (K, 4) as (r0, c0, r1, c1),
    with ``sort`` made valid boxes (start <= end) first."""
    from cvcore.preprocess import box_sum, integral_image, squared_integral_image
    table = (squared_integral_image if squared else integral_image)(image)
    b = np.asarray(bounds)
    if sort and b.ndim == 2 and b.shape[1] == 4 and b.dtype.kind in "iu":
        b = b.copy()
        b[:, [0, 2]] = np.sort(b[:, [0, 2]], axis=1)
        b[:, [1, 3]] = np.sort(b[:, [1, 3]], axis=1)
    if b.ndim != 2 or b.shape[1:] != (4,):
        return box_sum(table, b, b, b, b)
    return box_sum(table, b[:, 0], b[:, 1], b[:, 2], b[:, 3])


def surf_stages(image, n_octaves, n_layers, step, threshold, extended, upright):
    """The SURF stages in order, each through its public function."""
    from cvcore.features import (assign_orientations, describe_surf, detect_surf,
                                 fast_hessian, hessian_maxima, integral_gray,
                                 interpolate_maxima, orientation_angles)
    ii = integral_gray(image)
    pyramid = fast_hessian(ii, n_octaves, n_layers, step)
    maxima = hessian_maxima(pyramid, 0, threshold)
    first = interpolate_maxima(pyramid, 0, maxima)
    kp = detect_surf(pyramid, threshold)[:20]
    if not upright:
        orientation_angles(ii, kp)
        kp = assign_orientations(ii, kp)
    return first, describe_surf(ii, kp, extended)


def surf_at(image, xy, size, angle, upright):
    """SURF descriptors at given keypoints (``surf(keypoints=...)``)."""
    from cvcore.features import Keypoints, surf
    return surf(image, keypoints=Keypoints.from_xy(xy, size, angle), upright=upright)


def hog_descriptor(image, cell, block_cells, stride_cells, n_strides, nbins, win_stride,
                   padding):
    """``HOGDescriptor(...).compute(image, win_stride, padding)`` and its block grid, the
    geometry given in cells (so that it fits: block = cells x cell, stride = cells x cell,
    window = block + n x stride); a bad number gets through to the descriptor's checks."""
    from cvcore.features import HOGDescriptor

    def times(a, b):
        try:
            return tuple(int(x) * int(y) for x, y in zip(a, b))
        except (TypeError, ValueError, OverflowError):
            return a
    block = times(block_cells, cell)
    stride = times(stride_cells, cell)
    try:
        win = tuple(b + n * t for b, n, t in zip(block, n_strides, stride))
    except TypeError:
        win = n_strides
    d = HOGDescriptor(win_size=win, block_size=block, block_stride=stride, cell_size=cell,
                      nbins=nbins)
    return d.compute(image, win_stride, padding), d.compute_block_grid(image)


def hog_backward_case(images, orientations, ppc, cpb, norm, sqrt, change):
    """``hog_backward`` with ``dfeatures`` of the features' shape, changed by ``change``
    ("same", "longer", "float64", "nan")."""
    from cvcore.features import hog_backward, hog_batch
    x = np.asarray(images)
    try:
        f = hog_batch(x, orientations, ppc, cpb, norm, sqrt)
        shape = f.shape
    except (ValueError, TypeError):
        shape = (max(len(x), 1), 7)
    d = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape).astype(np.float32)
    if change == "longer":
        d = np.ones((shape[0], shape[1] + 1), np.float32)
    elif change == "float64":
        d = d.astype(np.float64)
    elif change == "nan" and d.size:
        d.flat[0] = np.nan
    return hog_backward(images, d, orientations, ppc, cpb, norm, sqrt)


def hog_picture_case(cells, ppc, shape):
    from cvcore.features._hog import hog_picture
    return hog_picture(cells, ppc, shape)


def draw_call(name, *args, **kwargs):
    """A matplotlib drawing of :mod:`cvcore.features.draw` into a new figure, then closed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cvcore import features
    try:
        ax = getattr(features, name)(*args, **kwargs)
        return np.asarray(ax.figure.canvas.get_width_height(), np.float64)
    finally:
        plt.close("all")


def draw_keypoints_case(image, xy, size, angle):
    from cvcore.features import Keypoints
    kp = Keypoints.from_xy(xy, size, angle)
    return draw_call("draw_keypoints", image, kp)


def draw_outline_case(H, shape):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cvcore.features import draw_outline
    fig, ax = plt.subplots()
    try:
        draw_outline(H, shape, ax)
        return np.asarray([len(ax.lines)], np.float64)
    finally:
        plt.close(fig)


def boxes_from(corners, fit):
    """(K, 4) boxes ``(x1, y1, x2, y2)``: with ``fit`` each ``(x, y, w, h)`` row of ``corners``
    made a box (x2 = x1 + |w|), else the values as they are."""
    c = np.asarray(corners)
    if not fit or c.ndim != 2 or c.shape[1:] != (4,) or c.dtype.kind != "f":
        return c
    return np.concatenate([c[:, :2], c[:, :2] + np.abs(c[:, 2:])], axis=1)


def detect_call(name, corners, fit, *rest, **kwargs):
    from cvcore import detect
    return getattr(detect, name)(boxes_from(corners, fit), *rest, **kwargs)


def iou_case(a, b, fit):
    from cvcore.detect import box_iou
    return box_iou(boxes_from(a, fit), boxes_from(b, fit))


def nms_case(corners, scores, iou, fit):
    from cvcore.detect import nms
    boxes = boxes_from(corners, fit)
    return nms(boxes, _fit(scores, (len(boxes),), fit and np.ndim(boxes) == 2), iou)


def rects_case(name, rects, scores, fit, *rest, **kwargs):
    """``clip_rects`` / ``group_rectangles`` on integer ``(x, y, w, h)`` rects."""
    from cvcore import detect
    r = np.asarray(rects)
    if fit and r.ndim == 2 and r.shape[1:] == (4,):
        r = np.abs(r).astype(np.int64)
    sc = None if scores is None else _fit(scores, (len(r),), fit and r.ndim == 2)
    if name == "clip_rects":
        return detect.clip_rects(r, sc, *rest)
    return detect.group_rectangles(r, *rest, scores=sc, **kwargs)


def evaluate_boxes(kind, n_images, gt, det, scores, crowd, fit, kwargs):
    """``coco_evaluate`` / ``voc_evaluate`` over ``n_images`` images sharing the given arrays
    (each image gets a shifted copy), crowd flags per ground-truth box."""
    from cvcore import detect
    g, d = boxes_from(gt, fit), boxes_from(det, fit)
    s = _fit(scores, (len(d),), fit and np.ndim(d) == 2)
    c = None if crowd is None else _fit(crowd, (len(g),), fit and np.ndim(g) == 2)
    gts = [g + i if np.asarray(g).dtype.kind == "f" else g for i in range(n_images)]
    dets = [d for _ in range(n_images)]
    fn = detect.coco_evaluate if kind == "coco" else detect.voc_evaluate
    extra = {"gt_crowd" if kind == "coco" else "gt_difficult": None if c is None else
             [c] * n_images}
    r = fn(gts, dets, [s] * n_images, **extra, **kwargs)
    return np.asarray([r.ap], np.float64)


def voc_ap_case(curve, method):
    """``voc_ap(recall, precision)`` from the two columns of ``curve`` (K, 2)."""
    from cvcore.detect import voc_ap
    c = np.asarray(curve)
    if c.ndim == 2 and c.shape[1:] == (2,):
        return voc_ap(c[:, 0], c[:, 1], method)
    return voc_ap(c, c[:1], method)


def draw_boxes_case(image, corners, fit, scores, width):
    from cvcore.detect import draw_boxes
    boxes = boxes_from(corners, fit)
    sc = None if scores is None else _fit(scores, (len(boxes),), fit and np.ndim(boxes) == 2)
    return draw_boxes(image, boxes, sc, width=width)


def pyramid_case(image, window, scale, max_levels):
    from cvcore.detect import image_pyramid
    return [level for level in image_pyramid(image, window, scale, max_levels)][:3]


def hog_detector_case(image, win, cell, nbins, weights, bias, method, kwargs):
    """A ``HOGDetector`` (window ``win``, 2x2-cell blocks) with ``weights`` fitted to its
    descriptor length, run by ``score_map`` / ``candidates`` / ``detect_multiscale`` /
    ``detect``."""
    from cvcore.detect import HOGDetector
    from cvcore.features import HOGDescriptor
    block = (2 * cell[0], 2 * cell[1]) if isinstance(cell, tuple) else cell
    d = HOGDescriptor(win_size=win, block_size=block, block_stride=cell, cell_size=cell,
                      nbins=nbins)
    w = np.asarray(weights)
    if w.ndim == 1 and w.size:
        w = np.resize(w, d.descriptor_size)
    det = HOGDetector(d, w, bias)
    out = getattr(det, method)(image, **kwargs)
    return out


def haar_case(image, scale, min_neighbors, min_size):
    from cvcore.detect import HaarCascade, opencv_cascade_path
    cascade = HaarCascade(opencv_cascade_path("haarcascade_frontalface_default.xml"))
    return cascade.detect_multiscale(image, scale, min_neighbors, min_size)


def object_detector_case(image, object_box, scale, threshold):
    from cvcore.detect import HOGDetector, ObjectDetector
    from cvcore.features import HOGDescriptor
    d = HOGDescriptor(win_size=(24, 24), block_size=(8, 8), block_stride=(4, 4),
                      cell_size=(4, 4), nbins=9)
    w = np.cos(np.arange(d.descriptor_size, dtype=np.float32))
    return ObjectDetector(HOGDetector(d, w, -0.5), object_box, scale, threshold).detect(image)


def grouped_conv_pair(x, groups, out_mult, kernel, stride, padding, dilation, bias, fit,
                      dy_change):
    """``grouped_conv2d_forward`` / ``_backward`` with a weight (C_out, C / groups, kh, kw);
    with ``fit`` the weight fits ``x``'s channels, else it is drawn from ``x``'s own values."""
    from cvcore import nn
    xa = np.asarray(x)
    C = xa.shape[1] if xa.ndim == 4 else 1
    g = groups
    if fit and isinstance(groups, int) and not isinstance(groups, bool) and groups > 0 and C:
        g = max(d for d in range(1, min(groups, C) + 1) if C % d == 0)
    cin = C // g if isinstance(g, int) and not isinstance(g, bool) and g > 0 else C
    k = kernel if isinstance(kernel, int) and 1 <= kernel <= 5 else 3
    cout = (g if isinstance(g, int) and not isinstance(g, bool) and g > 0 else 1) * \
        (out_mult if isinstance(out_mult, int) and 1 <= out_mult <= 3 else 1)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((cout, cin if fit else max(cin - 1, 0), k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32) if bias else None
    y, cache = nn.grouped_conv2d_forward(x, w, b, stride, padding, dilation, g)
    y = np.asarray(y)
    dy = np.ones(y.shape, np.float32)
    if dy_change == "longer":
        dy = np.ones((y.shape[0] + 1,) + y.shape[1:], np.float32)
    elif dy_change == "float64":
        dy = dy.astype(np.float64)
    elif dy_change == "other cache":
        cache = nn.relu_forward(np.ones(3, np.float32))[1]
    return y, nn.grouped_conv2d_backward(dy, cache)


def module_pair(kind, ctor, x, train, fit=False):
    """A module of ``cvcore.nn`` built from ``ctor``: forward (train or eval mode), then
    backward with ones like the output. With ``fit``, ``x`` gets the module's input channels
    (``ctor[0]``) from its own values."""
    from cvcore import nn
    xa = np.asarray(x)
    if fit and xa.ndim == 4 and ctor and isinstance(ctor[0], int) and 0 < ctor[0] <= 8:
        x = _fit(xa, (max(xa.shape[0], 1), ctor[0]) + tuple(max(v, 1) for v in xa.shape[2:]),
                 True)
    m = getattr(nn, kind)(*ctor, rng=np.random.default_rng(0)) \
        if kind in ("Conv2dSame", "MBConvBlock") else getattr(nn, kind)(*ctor)
    m.train(bool(train))
    y = m(x)
    return y, m.backward(np.ones_like(y))


def efficientnet_forward(x, num_classes):
    """EfficientNet-Lite0 (random weights, eval mode) on a small batch."""
    from cvcore import nn
    net = nn.efficientnet_lite0(num_classes=num_classes, in_channels=3,
                                rng=np.random.default_rng(0))
    net.eval()
    with nn.no_grad():
        return net(x)


def _tiny_net(channels):
    from cvcore import nn
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Conv2d(channels, 2, 3, padding=1, rng=rng), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3, rng=rng))


def attack_case(kind, x, y, eps, kwargs, fit=True):
    """``fgsm`` / ``pgd`` / ``robust_accuracy`` on a tiny CNN (3 classes) around ``x``."""
    from cvcore import adversarial
    xa = np.asarray(x)
    if fit and xa.ndim == 4:
        y = _fit(y, (len(xa),), True)
    model = adversarial.NetworkModel(_tiny_net(xa.shape[1] if xa.ndim == 4 else 1),
                                     num_classes=3)
    if kind == "robust_accuracy":
        return adversarial.robust_accuracy(model, x, y, eps, **kwargs)
    return getattr(adversarial, kind)(model, x, y, eps, **kwargs)


def hog_attack_case(x, y, eps, steps, fit=True):
    """PGD on a HOG + linear model (its input gradient is ``hog_backward``)."""
    from cvcore.adversarial import HOGLinearModel, pgd
    from cvcore.features import hog_batch
    params = {"cell_sizes": [[4, 4], [8, 8]], "orientations": 9, "cells_per_block": [2, 2],
              "block_norm": "L2-Hys", "transform_sqrt": False}
    D = sum(hog_batch(np.zeros((1, 16, 16), np.float32), pixels_per_cell=tuple(c),
                      cells_per_block=(2, 2)).shape[1] for c in params["cell_sizes"])
    rng = np.random.default_rng(0)
    model = HOGLinearModel(rng.standard_normal((3, D)).astype(np.float32), np.zeros(3),
                           np.zeros(D, np.float32), np.ones(D, np.float32), params)
    xa = np.asarray(x)
    if fit and xa.ndim == 3:
        y = _fit(y, (len(xa),), True)
    return pgd(model, x, y, eps, steps=steps)


def proba_case(fn, n, k, seed, corrupt, kwargs):
    """A trust function of ``cvcore.train`` / ``cvcore.classify`` on probabilities (n, k) (a
    softmax of seeded logits) and labels (n,), unless ``corrupt`` names what is wrong:
    "nan", "negative", "unnormalised", "short labels", "label out of range", "float labels",
    "1-d proba"."""
    from tests.fuzz_harness import resolve
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, k))
    proba = np.exp(logits - logits.max(axis=1, keepdims=True)) if k else logits
    proba = proba / proba.sum(axis=1, keepdims=True) if k else proba
    labels = rng.integers(0, max(k, 1), n)
    if corrupt == "nan" and proba.size:
        proba[0, 0] = np.nan
    elif corrupt == "negative" and proba.size:
        proba[0, 0] = -0.5
    elif corrupt == "unnormalised":
        proba = proba * 3
    elif corrupt == "short labels":
        labels = labels[:-1]
    elif corrupt == "label out of range" and n:
        labels[0] = k + 2
    elif corrupt == "float labels":
        labels = labels + 0.5
    elif corrupt == "1-d proba":
        proba = proba.ravel()
    f = resolve(fn)
    if fn.endswith(("fit_temperature", "nll")):
        return f(logits.astype(np.float32), labels, **kwargs)
    if fn.endswith("temperature_scale"):
        return f(logits, **kwargs)
    if fn.endswith("find_label_issues"):
        return len(f(labels, proba, **kwargs))
    if fn.endswith(("expected_calibration_error", "adaptive_calibration_error",
                    "reliability_bins", "selective_accuracy", "accuracy_coverage_curve",
                    "evaluate", "top_k_accuracy")):
        return f(labels, proba, **kwargs)
    if fn.endswith("reject"):
        return f(proba, **kwargs)
    return f(labels, proba, **kwargs)


def folds_case(per_class, k, folds, seed, corrupt):
    """``stratified_folds`` on ``k`` classes of ``per_class`` images each, shuffled; "one
    class" or "float" labels when ``corrupt`` says so."""
    from cvcore.train.labels import stratified_folds
    if corrupt == "none" and isinstance(folds, int) and isinstance(per_class, int):
        per_class = max(per_class, folds)        # every class in every fold
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(k), per_class))
    if corrupt == "one class":
        labels[:] = 0
    elif corrupt == "float":
        labels = labels + 0.5
    return stratified_folds(labels, folds, seed)


def tta_case(x, padding, flip, shift):
    from cvcore.train.tta import tta_views
    return [v for v in tta_views(x, padding, flip, shift)][:4]


def optimizer_steps(kind, kwargs, data, grad, steps, fit=True):
    """``steps`` steps of an optimiser of ``cvcore.nn`` on one parameter (``grad`` given the
    parameter's shape from its own values with ``fit``)."""
    from cvcore import nn
    grad = _fit(grad, np.shape(data), fit and np.ndim(data) == 1)
    p = nn.Parameter(data)
    opt = getattr(nn, kind)([p], **kwargs)
    for _ in range(steps):
        p.grad = grad
        opt.step()
    again = getattr(nn, kind)([nn.Parameter(data)], **kwargs)
    again.load_state_dict(opt.state_dict())
    return p.data


def schedule_steps(kind, kwargs, steps):
    """``steps`` epochs of a learning-rate schedule of ``cvcore.nn`` (an SGD with momentum
    underneath); returns the learning rates."""
    from cvcore import nn
    opt = nn.SGD([nn.Parameter(np.zeros(2, np.float32))], lr=0.1, momentum=0.9)
    sched = getattr(nn, kind)(opt, **kwargs)
    lrs = []
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    return np.asarray(lrs, np.float64)


# -- entries of the rooms added later ---------------------------------------------------------

def _tuple2(lo, hi):
    """A pair of ints (both tame) or, rarely, a bad one (as :func:`pair`)."""
    return st.tuples(integer(lo, hi), integer(lo, hi)).map(
        lambda t: ((t[0][0], t[1][0]), t[0][1] and t[1][1]))


GRAY_U8 = image(side=(0, 60), dtypes=("uint8", "float32", "uint16"), channels=(None, None, 3))
DET_IMG = image(side=(0, 90), dtypes=("uint8", "float32", "uint16"), channels=(None, None, 3))
SURF_IMG = image(side=(0, 64), dtypes=("float32", "uint8", "float64"), channels=(None, None, 3))
BOXES = array(fixed=(None, 4), side=(0, 8), low=0, high=40, dtypes=("float64", "float32",
                                                                         "int32"))
RECTS = array(fixed=(None, 4), side=(0, 8), low=0, high=40, dtypes=("int64", "int32",
                                                                        "float32"))
FIT = choice(True, True, True, False, bad=())
SMALL_NCHW = array(fixed=(None, None, None, None), side=(0, 6), low=-2, high=2,
                   dtypes=("float32", "float64"))
PROBA_CORRUPT = choice(*(["none"] * 14), "nan", "negative", "unnormalised", "short labels",
                       "label out of range", "float labels", "1-d proba", bad=())

FEATURES_MORE = [
    Entry("cvcore.features:surf", [SURF_IMG],
          {"threshold": real(0, 0.01), "n_features": st.one_of(const(None), integer(1, 50)),
           "n_octaves": integer(1, 4), "n_layers": integer(3, 5), "initial_step": integer(1, 3),
           "upright": choice(True, False), "extended": choice(True, False)}),
    Entry("tests.fuzz_registry:surf_stages",
          [SURF_IMG, integer(1, 3), integer(3, 5), integer(1, 2), real(0, 0.01),
           choice(True, False), choice(True, False)]),
    Entry("tests.fuzz_registry:surf_at",
          [SURF_IMG, array(fixed=(None, 2), side=(0, 5), low=-10, high=70),
           real(1, 40), real(-400, 400), choice(True, False)]),
    Entry("cvcore.features:integral_gray", [SURF_IMG]),
    Entry("cvcore.features.corners:structure_tensor",
          [image(side=(0, 40), dtypes=("float32", "float64", "uint8"),
                 channels=(None,) * 5 + (3,))],
          {"sigma": real(0.1, 4)}),
    Entry("tests.fuzz_registry:hog_descriptor",
          [DET_IMG, _tuple2(2, 8), _tuple2(1, 3), _tuple2(1, 2), _tuple2(0, 3),
           integer(1, 12), st.one_of(const(None), _tuple2(1, 16)),
           st.one_of(const(None), _tuple2(0, 8))]),
    Entry("tests.fuzz_registry:hog_descriptor",     # OpenCV's people geometry, halved
          [DET_IMG, const((4, 4)), const((2, 2)), const((1, 1)), const((2, 6)),
           integer(1, 12), st.one_of(const(None), _tuple2(1, 16)),
           st.one_of(const(None), _tuple2(0, 8))]),
    Entry("tests.fuzz_registry:hog_backward_case",
          [array(fixed=(None, None, None), side=(1, 24), dtypes=("float32", "float64",
                                                                  "uint8")),
           integer(1, 12), _tuple2(2, 8), _tuple2(1, 3), choice("L1", "L1-sqrt", "L2", "L2-Hys"),
           choice(True, False), choice("same", "same", "longer", "float64", "nan")]),
    Entry("tests.fuzz_registry:hog_picture_case",
          [array(fixed=(None, None, None), side=(0, 6), low=0, high=1), _tuple2(1, 10),
           _tuple2(0, 60)]),
    Entry("tests.fuzz_registry:draw_keypoints_case",
          [SMALL_IMG, array(fixed=(None, 2), side=(0, 5), low=-5, high=40), real(0.5, 20),
           real(-360, 360)]),
    Entry("tests.fuzz_registry:draw_call",
          [const("draw_matches"), SMALL_IMG, SMALL_IMG,
           array(fixed=(6, 2), low=0, high=30), array(fixed=(6, 2), low=0, high=30),
           array(fixed=(None, 2), side=(0, 6), low=0, high=6, dtypes=("int64", "int32",
                                                                     "float32")),
           st.one_of(const(None), array(fixed=(None,), side=(0, 6), dtypes=("bool", "int64")))]),
    Entry("tests.fuzz_registry:draw_outline_case",
          [array(fixed=(3, 3), low=-2, high=2), _tuple2(1, 50)]),
]

PREPROCESS_MORE = [
    Entry("cvcore.preprocess:integral_image", [IMG]),
    Entry("cvcore.preprocess:squared_integral_image", [IMG]),
    Entry("tests.fuzz_registry:integral_boxes",
          [IMG, array(fixed=(None, 4), side=(0, 6), low=0, high=13,
                      dtypes=("int64", "int32", "float64")),
           choice(True, False), choice(True, True, True, False, bad=())]),
]

DETECT = [
    Entry("tests.fuzz_registry:detect_call", [const("box_area"), BOXES, FIT]),
    Entry("tests.fuzz_registry:detect_call", [const("boxes_to_rects"), BOXES, FIT]),
    Entry("cvcore.detect:rects_to_boxes", [RECTS]),
    Entry("tests.fuzz_registry:iou_case", [BOXES, BOXES, FIT],
          nonfinite_ok="two empty boxes have IoU 0 / 0 = NaN, as documented (torchvision's)"),
    Entry("tests.fuzz_registry:nms_case",
          [BOXES, array(fixed=(None,), side=(0, 8), low=-1, high=1), real(0, 1), FIT]),
    Entry("tests.fuzz_registry:rects_case",
          [const("clip_rects"), RECTS, array(fixed=(None,), side=(0, 8)), FIT,
           integer(0, 50), integer(0, 50)]),
    Entry("tests.fuzz_registry:rects_case",
          [const("group_rectangles"), RECTS,
           st.one_of(const(None), array(fixed=(None,), side=(0, 8))), FIT, integer(0, 3)],
          {"eps": real(0, 1)}),
    Entry("cvcore.detect:pyramid_scales",
          [_tuple2(1, 400), _tuple2(1, 64), real(1.01, 2)], {"max_levels": integer(1, 64)}),
    Entry("tests.fuzz_registry:pyramid_case",
          [GRAY_U8, _tuple2(1, 32), real(1.05, 2), integer(1, 64)]),
    Entry("cvcore.detect:resize_exact", [GRAY_U8, _tuple2(1, 40)]),
    Entry("tests.fuzz_registry:voc_ap_case",
          [array(fixed=(None, 2), side=(0, 10)), choice("all", "11point")]),
    Entry("tests.fuzz_registry:evaluate_boxes",
          [choice("coco", "voc", bad=()), integer(1, 3), BOXES, BOXES,
           array(fixed=(None,), side=(0, 8)),
           st.one_of(const(None), array(fixed=(None,), side=(0, 8), dtypes=("bool", "int32"))),
           FIT, const({})]),
    Entry("tests.fuzz_registry:hog_detector_case",
          [DET_IMG, const((16, 16)), const((4, 4)), integer(1, 9),
           array(fixed=(None,), side=(1, 40), low=-1, high=1), real(-1, 1),
           choice("score_map", "candidates", "detect_multiscale", "detect", bad=()),
           const({})]),
    Entry("tests.fuzz_registry:hog_detector_case",
          [DET_IMG, const((24, 16)), const((4, 4)), integer(1, 9),
           array(fixed=(None,), side=(1, 40), low=-1, high=1), real(-1, 1),
           choice("detect", "candidates", bad=()),
           st.fixed_dictionaries({"scale": real(1.05, 2),
                                  "win_stride": st.one_of(const(None), _tuple2(1, 8))}
                                 ).map(_dict)]),
    Entry("tests.fuzz_registry:haar_case",
          [DET_IMG, real(1.05, 2), integer(0, 4), _tuple2(0, 30)]),
    Entry("tests.fuzz_registry:object_detector_case",
          [DET_IMG, array(fixed=(4,), low=0, high=24), real(1.05, 2), real(-1, 1)]),
    Entry("tests.fuzz_registry:draw_boxes_case",
          [image(side=(0, 40), dtypes=("uint8", "float32"), channels=(None, 3)), BOXES, FIT,
           st.one_of(const(None), array(fixed=(None,), side=(0, 8))), integer(1, 4)]),
]

NN_MORE = [
    Entry("tests.fuzz_registry:nn_pair", [const("relu6"), NCHW, const(()),
                                          choice("same", "longer", "shorter", "float64",
                                                 "other cache")]),
    Entry("tests.fuzz_registry:grouped_conv_pair",
          [SMALL_NCHW, integer(1, 4), integer(1, 3), integer(1, 5), integer(1, 3),
           integer(0, 2), integer(1, 2), choice(True, False), FIT,
           choice("same", "same", "longer", "float64", "other cache")]),
    Entry("cvcore.nn:same_padding", [integer(0, 300), integer(1, 7), integer(1, 4)],
          {"dilation": integer(1, 3)}),
    Entry("tests.fuzz_registry:module_pair",
          [const("Conv2dSame"), st.tuples(integer(1, 3), integer(1, 3), integer(1, 5),
                                          integer(1, 3)).map(
              lambda t: (tuple(v[0] for v in t), all(v[1] for v in t))),
           SMALL_NCHW, choice(True, False), FIT]),
    Entry("tests.fuzz_registry:module_pair",
          [const("MBConvBlock"), st.tuples(integer(1, 4), integer(1, 4), choice(3, 5),
                                           integer(1, 2), choice(1, 6)).map(
              lambda t: (tuple(v[0] for v in t), all(v[1] for v in t))),
           SMALL_NCHW, choice(True, False), FIT]),
    Entry("tests.fuzz_registry:module_pair",
          [const("ReLU6"), const(()), NCHW, choice(True, False)]),
    Entry("tests.fuzz_registry:efficientnet_forward",
          [array(fixed=(None, 3, None, None), side=(1, 40), low=-2, high=2,
                 dtypes=("float32", "float64")), integer(1, 5)]),
    Entry("tests.fuzz_registry:optimizer_steps",
          [choice("SGD", bad=()), st.fixed_dictionaries(
              {"lr": real(0, 1), "momentum": real(0, 0.99), "weight_decay": real(0, 0.1),
               "nesterov": choice(False, True)}).map(_dict),
           _vec(None), _vec(None), integer(1, 4), FIT]),
    Entry("tests.fuzz_registry:optimizer_steps",
          [choice("Adam", "AdamW", bad=()), st.fixed_dictionaries(
              {"lr": real(0, 1), "betas": st.tuples(real(0, 0.99), real(0.5, 0.999)).map(
                  lambda t: ((t[0][0], t[1][0]), t[0][1] and t[1][1])),
               "eps": real(1e-10, 1e-3), "weight_decay": real(0, 0.1),
               "amsgrad": choice(False, True)}).map(_dict),
           _vec(None), _vec(None), integer(1, 4), FIT]),
    Entry("tests.fuzz_registry:schedule_steps",
          [const("StepLR"), st.fixed_dictionaries(
              {"step_size": integer(1, 5), "gamma": real(0, 1)}).map(_dict), integer(1, 12)]),
    Entry("tests.fuzz_registry:schedule_steps",
          [const("CosineAnnealingLR"), st.fixed_dictionaries(
              {"T_max": integer(1, 10), "eta_min": real(0, 0.05)}).map(_dict),
           integer(1, 25)]),
    Entry("tests.fuzz_registry:schedule_steps",
          [const("LinearLR"), st.fixed_dictionaries(
              {"start_factor": real(0.01, 1), "end_factor": real(0.01, 1),
               "total_iters": integer(1, 10)}).map(_dict), integer(1, 15)]),
    Entry("tests.fuzz_registry:schedule_steps",
          [const("OneCycleLR"), st.fixed_dictionaries(
              {"max_lr": real(0.001, 1), "total_steps": integer(2, 20),
               "pct_start": real(0.05, 0.95), "anneal_strategy": choice("cos", "linear"),
               "three_phase": choice(False, True)}).map(_dict), integer(1, 19)]),
]

ADVERSARIAL = [
    Entry("tests.fuzz_registry:attack_case",
          [choice("fgsm", bad=()), array(fixed=(None, 1, None, None), side=(1, 8)),
           array(fixed=(None,), side=(1, 8), low=0, high=2, dtypes=("int64", "int32",
                                                                     "float32")),
           real(0, 0.5), st.fixed_dictionaries({"targeted": choice(False, True)}).map(_dict),
           FIT]),
    Entry("tests.fuzz_registry:attack_case",
          [choice("pgd", bad=()), array(fixed=(None, 1, None, None), side=(1, 8)),
           array(fixed=(None,), side=(1, 8), low=0, high=2, dtypes=("int64", "int32")),
           real(0, 0.5), st.fixed_dictionaries(
               {"norm": choice("linf", "l2"), "steps": integer(1, 5),
                "step_size": st.one_of(const(None), real(0.001, 0.2)),
                "restarts": integer(1, 2), "random_start": choice(True, False)}).map(_dict),
           FIT]),
    Entry("tests.fuzz_registry:attack_case",
          [choice("robust_accuracy", bad=()), array(fixed=(None, 1, None, None), side=(1, 8)),
           array(fixed=(None,), side=(1, 8), low=0, high=2, dtypes=("int64",)),
           st.tuples(real(0, 0.3), real(0, 0.3)).map(
               lambda t: ([t[0][0], t[1][0]], t[0][1] and t[1][1])),
           st.fixed_dictionaries({"attack": choice("fgsm", "pgd")}).map(_dict), FIT]),
    Entry("tests.fuzz_registry:hog_attack_case",
          [array(fixed=(None, 16, 16), side=(1, 4)),
           array(fixed=(None,), side=(1, 4), low=0, high=2, dtypes=("int64",)),
           real(0, 0.3), integer(1, 3), FIT]),
]

TRUST = [
    Entry("tests.fuzz_registry:proba_case",
          [const(fn), integer(1, 40, bad=False), integer(2, 6, bad=False),
           integer(0, 1000, bad=False), PROBA_CORRUPT, kw],
          name=fn.split(":")[1],
          nonfinite_ok={"reliability_bins": "an empty bin's confidence and accuracy are NaN, "
                                            "as documented",
                        "selective_accuracy": "the accuracy of an empty selection (every sample "
                                              "rejected) is NaN, as documented"
                        }.get(fn.split(":")[1], ""))
    for fn, kw in [
        ("cvcore.train.metrics:expected_calibration_error",
         st.fixed_dictionaries({"n_bins": integer(1, 30)}).map(_dict)),
        ("cvcore.train.metrics:adaptive_calibration_error",
         st.fixed_dictionaries({"n_bins": integer(1, 30)}).map(_dict)),
        ("cvcore.train.metrics:reliability_bins",
         st.fixed_dictionaries({"n_bins": integer(1, 30),
                                "adaptive": choice(False, True)}).map(_dict)),
        ("cvcore.train.metrics:selective_accuracy",
         st.fixed_dictionaries({"min_confidence": real(0, 1)}).map(_dict)),
        ("cvcore.train.metrics:reject",
         st.fixed_dictionaries({"min_confidence": real(0, 1)}).map(_dict)),
        ("cvcore.train.metrics:accuracy_coverage_curve", const({})),
        ("cvcore.train.metrics:evaluate",
         st.fixed_dictionaries({"k": integer(1, 6)}).map(_dict)),
        ("cvcore.train.labels:confident_thresholds", const({})),
        ("cvcore.train.labels:confident_joint",
         st.fixed_dictionaries({"calibrate": choice(True, False)}).map(_dict)),
        ("cvcore.train.labels:label_issue_mask",
         st.fixed_dictionaries({"min_keep": integer(0, 3)}).map(_dict)),
        ("cvcore.train.labels:find_label_issues", const({})),
        ("cvcore.classify.calibration:fit_temperature", const({})),
        ("cvcore.classify.calibration:nll",
         st.fixed_dictionaries({"temperature": real(0.05, 20)}).map(_dict)),
        ("cvcore.classify.calibration:temperature_scale",
         st.fixed_dictionaries({"temperature": real(0.05, 20)}).map(_dict)),
    ]
] + [
    Entry("tests.fuzz_registry:folds_case",
          [integer(0, 12, bad=False), integer(2, 5, bad=False), integer(2, 6), integer(0, 100),
           choice("none", "none", "none", "none", "one class", "float", bad=())]),
    Entry("tests.fuzz_registry:tta_case",
          [array(fixed=(None, None, None, None), side=(0, 10), dtypes=("float32", "float64")),
           integer(0, 4), choice(True, False), integer(0, 4)]),
]

#: module name -> its entries. Other rooms add their list here (e.g. ``REGISTRY["detect"]``).
REGISTRY = {"preprocess": PREPROCESS, "features": FEATURES, "match": MATCH,
            "augment": AUGMENT, "classify": CLASSIFY, "nn": NN,
            "features+": FEATURES_MORE, "preprocess+": PREPROCESS_MORE, "detect": DETECT,
            "nn+": NN_MORE, "adversarial": ADVERSARIAL, "trust": TRUST}


def all_entries():
    """``(label, Entry)`` for every entry, labels unique (``module.function#i``)."""
    out = []
    for module, entries in REGISTRY.items():
        seen = {}
        for e in entries:
            base = f"{module}.{e.name or e.target.split(':')[1]}"
            first = getattr(e.args[0], "value", None) if e.args else None   # const("name")
            if not e.name and isinstance(first, tuple) and isinstance(first[0], str):
                base += f"[{first[0]}]"
            seen[base] = seen.get(base, 0) + 1
            out.append((f"{base}#{seen[base]}", e))
    return out
