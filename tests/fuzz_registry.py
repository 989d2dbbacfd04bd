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

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

DTYPES = ("float32", "float64", "uint8", "uint16", "int32", "float16", "bool")
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
    shape = tuple((lo if rng.random() < 0.06 else int(rng.integers(max(lo, 1), max(hi, 1) + 1)))
                  if fixed is None or fixed[i] is None else fixed[i] for i in range(nd))
    dtype = np.dtype(dtypes[0] if rng.random() < 0.5 else dtypes[rng.integers(len(dtypes))])
    values = low + (high - low) * rng.random(shape)
    tame = min(shape, default=1) > 0
    special = rng.choice(["plain"] * 8 + ["const", "special"])
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
        if bad_values and rng.random() < p:
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

    def case(self):
        """A strategy for ``(args, kwargs, tame)``."""
        @st.composite
        def build(draw):
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

#: module name -> its entries. Other rooms add their list here (e.g. ``REGISTRY["detect"]``).
REGISTRY = {"preprocess": PREPROCESS, "features": FEATURES, "match": MATCH,
            "augment": AUGMENT, "classify": CLASSIFY, "nn": NN}


def all_entries():
    """``(label, Entry)`` for every entry, labels unique (``module.function#i``)."""
    out = []
    for module, entries in REGISTRY.items():
        seen = {}
        for e in entries:
            base = f"{module}.{e.target.split(':')[1]}"
            seen[base] = seen.get(base, 0) + 1
            out.append((f"{base}#{seen[base]}", e))
    return out
