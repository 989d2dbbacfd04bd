"""SURF: Speeded-Up Robust Features (Bay, Ess, Tuytelaars & Van Gool 2008, CVIU 110(3), 346-359).

SIFT's Gaussian scale space replaced by box filters on one integral image: every filter costs
the same few table reads whatever its size, so the scale space is built by enlarging the filter,
never by blurring or shrinking the image. The stages, each a function you can call and plot:

1. :func:`integral_gray`      the grey image in [0, 1] and its summed-area table (sec. 2).
2. :func:`fast_hessian`       per octave, the determinant of the box-filter Hessian
                              ``det = Dxx Dyy - (0.9 Dxy)^2`` (eq. 4) at filter sides 9, 15, 21, 27
                              (octave 0), 15, 27, 39, 51 (octave 1), ..., on a grid whose step
                              doubles every octave, and the sign of the Laplacian (sec. 3.2-3.3).
                              Plot ``pyramid.det[o][k]`` with ``imshow``.
3. :func:`hessian_maxima`     samples above the threshold larger than their 26 neighbours in
                              (layer, row, col) (sec. 3.4).
4. :func:`interpolate_maxima` quadratic fit of position and scale (sec. 3.4) -> keypoints.
5. :func:`assign_orientations` Haar responses of side 4s on a disc of radius 6s, the longest
                              sum in a sliding 60-degree window (sec. 4.1); skipped by U-SURF.
6. :func:`describe_surf`      4 x 4 sub-regions of summed Haar responses of side 2s: 64 values,
                              or 128 for the extended descriptor (sec. 4.2).

:func:`surf` runs them all: ``keypoints, descriptors = surf(image)``. Draw the keypoints with
:func:`cvcore.features.draw_keypoints`; match with :func:`cvcore.match.match_descriptors`.

Conventions (as :mod:`cvcore.features._sift`)
---------------------------------------------
- ``(x, y)`` = (column, row), pixel centres at integers.
- ``angle`` in degrees, [0, 360), from +x towards +y with y down (clockwise on screen).
- Two scales. The paper's ``s = 1.2 L / 9`` for a filter of side ``L`` (its 9 x 9 boxes stand
  for Gaussian derivatives of sigma 1.2, sec. 3.2) sets the geometry of orientation and
  descriptor (radius 6s, window 20s). But a Gaussian blob of sigma ``b`` responds most strongly at
  ``L = 5.5 b`` (``BLOB_SIDE_RATIO``), i.e. at ``s = 0.73 b``: the nominal ``s`` is 0.46 octave
  below the blob's sigma. ``Keypoints.size`` is ``2 L / 5.5``, the blob's diameter ``2 b``,
  the same meaning as SIFT's ``2 sigma`` (so sizes of the two detectors compare, and a
  Gaussian blob of sigma b gets size 2b). :func:`paper_scale` converts. OpenCV's SURF reports
  the filter side ``L`` itself as its size.
- ``octave`` 0..3 and ``layer`` 1..2: where the maximum was found.
- ``laplacian`` (on :class:`SurfKeypoints`): the sign of ``Dxx + Dyy``, +1 for a dark blob on a
  bright background, -1 for a bright blob on a dark one. Two keypoints of different signs never
  correspond, so a matcher may compare only equal signs (sec. 4.3):
  ``match_descriptors(d1, d2, groups=(kp1.laplacian, kp2.laplacian))``.
- Descriptors are float32 with unit L2 norm, sub-regions in row-major order of the keypoint's
  frame, ``(sum dx, sum dy, sum |dx|, sum |dy|)`` each (extended: see :func:`describe_surf`).
- Intensities as SIFT: uint8 / 255, uint16 / 65535, floats as given (expected in [0, 1], the range
  ``threshold`` is defined for); RGB to grey with the BT.601 weights.

Where this follows a choice the paper leaves open
-------------------------------------------------
- Box filters are evaluated at every ``step``-th pixel, ``step = initial_step 2^o``
  (``initial_step=1`` as OpenCV; OpenSURF uses 2). A maximum is searched only where the filter of
  the layer above fits inside the image.
- The fit of sec. 3.4 is one Newton step; it is rejected when the offset exceeds ``MAX_OFFSET``
  samples along an axis (OpenCV surf.cpp uses 1; OpenSURF 0.5).
- Haar wavelets of stages 5 and 6 are read at sub-pixel positions by bilinear interpolation of the
  table, which is exact for boxes with real-valued corners (:func:`kernels.surf.integral_at`);
  the original rounds the positions to whole pixels. The turned descriptor window's responses are
  interpolated from an upright grid of responses (see :mod:`kernels.surf`).
- Octave 0 gets a 3 x 3 filter below the 9 x 9 one (``small_scales``), so that maxima are found
  from the 9 x 9 filter up, as SIFT's doubled image reaches below its first octave. On Oxford
  boat (zoom up to 2.8x) it lifts the 3 px repeatability from 0.46 to 0.69.
- ``threshold`` 0.001 was chosen on Oxford graf and boat to give about as many keypoints as
  cvcore's SIFT (the paper gives no value; OpenSURF's default is 0.0004 on the same scale).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from cvcore._threads import threads_for
from cvcore._validate import check_array, check_finite, check_int, check_nonnegative, check_positive
from cvcore.features._sift import Keypoints, _as_gray

BASE_SIZE = 9               # Bay et al. 2008, sec. 3.3: the first filter is 9 x 9 ...
BASE_SIGMA = 1.2            # sec. 3.2: ... approximating Gaussian derivatives of sigma 1.2
BLOB_SIDE_RATIO = 5.5       # a Gaussian blob of sigma b gives its strongest det at a filter side
                            # L = 5.5 b: measured on blobs b = 2..12 (tests/test_surf.py, blob
                            # test), 5.1 for the continuous boxes (erf integrals at the centre)
SIZE_STEP = 6               # sec. 3.3: sides grow by 6 in octave 0, the step doubling per octave
N_OCTAVES = 4               # sec. 3.3 / fig. 6: four octaves
N_LAYERS = 4                # sec. 3.3: four filters per octave (maxima on the middle two)
INITIAL_STEP = 1            # sampling step of octave 0, doubled per octave (OpenCV's default)
THRESHOLD = 0.001           # det threshold for images in [0, 1]: chosen, see the module notes
SMALL_SCALES = True         # octave 0 also gets a 3 x 3 filter: maxima from scale 1.2 up (see
                            # filter_sizes); the paper's pyramid starts its search at 2.0
MAX_OFFSET = 1.0            # reject fits moving more than one sample (OpenCV surf.cpp)
CACHE_BAND = 16             # rows per band of the keypoints' processing order (_table_order)
PARALLEL_MIN_KEYPOINTS = 32   # fewer keypoints than this: oriented / described on one thread


def _kernels():
    from kernels import surf as ks   # imported on first use: keeps `import cvcore` quick
    return ks


@dataclass(frozen=True)
class SurfKeypoints(Keypoints):
    """:class:`Keypoints` with the sign of the Laplacian (Bay et al. 2008, sec. 4.3).

    Attributes (besides those of :class:`Keypoints`)
    ------------------------------------------------
    laplacian : ndarray (K,) int8
        +1 where ``Dxx + Dyy > 0`` (a dark blob on a bright background), -1 for the reverse.
    """
    laplacian: np.ndarray = None

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            index = [index]
        return SurfKeypoints(self.xy[index], self.size[index], self.angle[index],
                             self.response[index], self.octave[index], self.layer[index],
                             self.laplacian[index])

    @staticmethod
    def empty() -> "SurfKeypoints":
        base = Keypoints.empty()
        return SurfKeypoints(base.xy, base.size, base.angle, base.response, base.octave,
                             base.layer, np.zeros(0, np.int8))


class HessianPyramid(NamedTuple):
    """The fast-Hessian responses of one image (the output of :func:`fast_hessian`).

    det : list of ndarray
        One ``(n_layers, Hs, Ws)`` float32 array per octave: ``det[o][k, i, j]`` is the response
        of filter ``sizes[o][k]`` at pixel ``(i steps[o], j steps[o])``.
    sign : list of ndarray
        The same shapes, int8: the sign of the Laplacian ``Dxx + Dyy``.
    sizes : list of ndarray
        ``(n_layers,)`` int64 filter sides per octave.
    steps : list of int
        Sampling step (pixels) per octave.
    shape : tuple of int
        ``(H, W)`` of the image.
    """
    det: list
    sign: list
    sizes: list
    steps: list
    shape: tuple


def filter_sizes(octave: int, n_layers: int = N_LAYERS, small_scales: bool = False) -> np.ndarray:
    """Filter sides of one octave: ``L = 9 + 6 (2^o k - 1)``, ``k = 1 .. n_layers`` (sec. 3.3).

    Lobes are ``L / 3 = 1 + 2^(o+1) k`` wide, odd, so every filter has a centre pixel. With
    ``small_scales`` octave 0 starts one step lower, at ``L = 3`` (``k = 0``: one-pixel lobes, the
    plain second differences), so that maxima are searched from the 9 x 9 filter on.

    >>> filter_sizes(0).tolist(), filter_sizes(1).tolist(), filter_sizes(3).tolist()
    ([9, 15, 21, 27], [15, 27, 39, 51], [51, 99, 147, 195])
    >>> filter_sizes(0, small_scales=True).tolist()
    [3, 9, 15, 21, 27]
    """
    octave = check_int(octave, "octave", minimum=0)
    n_layers = check_int(n_layers, "n_layers", minimum=3)
    first = 0 if (small_scales and octave == 0) else 1
    k = np.arange(first, n_layers + 1, dtype=np.int64)
    # octave o starts where octave o - 1's second filter was; its step is SIZE_STEP 2^o
    return BASE_SIZE + SIZE_STEP * ((1 << octave) * k - 1)


def size_to_scale(size):
    """Scale ``s`` (pixels) of a filter of side ``size``: ``1.2 size / 9`` (sec. 3.2).

    >>> float(size_to_scale(9)), round(float(size_to_scale(27)), 6)
    (1.2, 3.6)
    """
    return BASE_SIGMA * np.asarray(size, np.float64)[()] / BASE_SIZE


def paper_scale(size):
    """The paper's scale ``s = 1.2 L / 9`` of keypoints of diameter ``size`` (= ``2 L / 5.5``).

    >>> round(float(paper_scale(2 * 9 / BLOB_SIDE_RATIO)), 6)    # the 9 x 9 filter
    1.2
    """
    return size_to_scale(0.5 * np.asarray(size, np.float64) * BLOB_SIDE_RATIO)


def integral_gray(image) -> np.ndarray:
    """The grey image in [0, 1] (as :func:`cvcore.features.sift` reads it) and its integral table.

    Returns
    -------
    (H + 1, W + 1) float64
        ``ii[r, c] = sum(gray[:r, :c])`` (:func:`cvcore.preprocess.integral_image`).
    """
    from cvcore.preprocess import integral_image
    return integral_image(_as_gray(image))


def _check_table(ii, name="ii"):
    ii = check_array(ii, name, ndim=2, dtypes="f")
    if ii.shape[0] < 2 or ii.shape[1] < 2:
        raise ValueError(f"{name} must be an (H + 1, W + 1) integral table of a non-empty image, "
                         f"got shape {ii.shape}")
    if ii[0].any() or ii[:, 0].any():
        raise ValueError(f"{name} must have a zero first row and column (from integral_gray or "
                         "cvcore.preprocess.integral_image)")
    check_finite(ii, name)
    return np.ascontiguousarray(ii, np.float64)


def fast_hessian(ii, n_octaves: int = N_OCTAVES, n_layers: int = N_LAYERS,
                 initial_step: int = INITIAL_STEP, small_scales: bool = SMALL_SCALES
                 ) -> HessianPyramid:
    """Box-filter Hessian responses for every octave (Bay et al. 2008, sec. 3.2-3.3, eq. 4).

    .. math:: \\det(H_{approx}) = D_{xx} D_{yy} - (0.9 D_{xy})^2

    with each ``D`` the box filter's sum divided by its area ``L^2``; see :mod:`kernels.surf` for
    the boxes. Octaves whose smallest filter does not fit in the image are left out.

    Parameters
    ----------
    ii : (H + 1, W + 1) float64
        From :func:`integral_gray`.
    n_octaves, n_layers : int
    initial_step : int
        Sampling step of octave 0 in pixels; doubled for every further octave.
    small_scales : bool
        Give octave 0 a fifth, 3 x 3 filter below the 9 x 9 one (:func:`filter_sizes`), so
        maxima are found from scale 1.2 up instead of 2.0.

    Returns
    -------
    HessianPyramid
    """
    ii = _check_table(ii)
    n_octaves = check_int(n_octaves, "n_octaves", minimum=1)
    n_layers = check_int(n_layers, "n_layers", minimum=3)
    initial_step = check_int(initial_step, "initial_step", minimum=1)
    H, W = ii.shape[0] - 1, ii.shape[1] - 1
    ks = _kernels()
    dets, signs, sizes, steps = [], [], [], []
    for o in range(n_octaves):
        L = filter_sizes(o, n_layers, bool(small_scales))
        if L[1] > min(H, W):
            break
        step = initial_step << o
        Hs, Ws = -(-H // step), -(-W // step)
        det = np.empty((len(L), Hs, Ws), np.float32)
        sign = np.empty((len(L), Hs, Ws), np.int8)
        # Octaves share filter sides (15 and 27 are in octaves 0 and 1, 27 and 51 in 1 and 2):
        # at twice the step, such a layer is every other sample of the finer octave's, the same
        # numbers, so it is copied rather than computed again. They are the octave's first layers.
        first = 0
        if dets and steps[-1] * 2 == step:
            prev = list(sizes[-1])
            while first < len(L) and int(L[first]) in prev:
                k = prev.index(int(L[first]))
                det[first] = dets[-1][k, ::2, ::2]
                sign[first] = signs[-1][k, ::2, ::2]
                first += 1
        if first < len(L):
            with threads_for(Hs * Ws * (len(L) - first) >= 1 << 15):
                ks.hessian_octave(ii, L[first:], step, det[first:], sign[first:])
        dets.append(det)
        signs.append(sign)
        sizes.append(L)
        steps.append(step)
    return HessianPyramid(dets, signs, sizes, steps, (H, W))


def _search_bounds(shape, sizes, step, Hs, Ws):
    """Per layer, the first and last sample row / column where the next layer's filter fits."""
    H, W = shape
    n = len(sizes)
    lo = np.zeros((n, 2), np.int64)
    hi = np.full((n, 2), -1, np.int64)
    for k in range(1, n - 1):
        b = (int(sizes[k + 1]) - 1) // 2
        for axis, (size, count) in enumerate(((H, Hs), (W, Ws))):
            lo[k, axis] = max(1, -(-b // step))
            hi[k, axis] = min(count - 2, (size - 1 - b) // step)
    return lo, hi


def _check_octave(pyramid, octave):
    if not isinstance(pyramid, HessianPyramid):
        raise TypeError(f"pyramid must be a HessianPyramid (from fast_hessian), "
                        f"got {type(pyramid).__name__}")
    octave = check_int(octave, "octave", minimum=0)
    if octave >= len(pyramid.det):
        raise ValueError(f"octave must be < {len(pyramid.det)} (the pyramid's octaves), got "
                         f"{octave}")
    return octave


def hessian_maxima(pyramid: HessianPyramid, octave: int,
                   threshold: float = THRESHOLD) -> np.ndarray:
    """Maxima of one octave's responses in 3 x 3 x 3 neighbourhoods (Bay et al. 2008, sec. 3.4).

    A sample of a middle layer is kept when its ``det`` exceeds ``threshold`` and each of its 26
    neighbours in (layer, row, col), and the filter of the layer above fits inside the image there.

    Returns
    -------
    ndarray (K, 3) int32
        ``(layer, row, col)`` in samples of the octave, in layer-then-row-major order.
    """
    octave = _check_octave(pyramid, octave)
    threshold = check_nonnegative(threshold, "threshold")
    det = pyramid.det[octave]
    n, Hs, Ws = det.shape
    lo, hi = _search_bounds(pyramid.shape, pyramid.sizes[octave], pyramid.steps[octave], Hs, Ws)
    mask = np.zeros(det.shape, np.uint8)
    counts = np.zeros((n, Hs), np.int64)
    ks = _kernels()
    with threads_for(det.size >= 1 << 15):
        ks.extrema_mask(det, threshold, lo, hi, mask, counts)
        offsets = np.zeros_like(counts)
        flat = counts.ravel()
        np.cumsum(flat[:-1], out=offsets.ravel()[1:])
        out = np.empty((int(flat.sum()), 3), np.int32)
        ks.gather_extrema(mask, counts, offsets, out)
    return out


def interpolate_maxima(pyramid: HessianPyramid, octave: int, maxima: np.ndarray,
                       max_offset: float = MAX_OFFSET) -> SurfKeypoints:
    """Fit position and scale of each maximum (sec. 3.4) and return them as keypoints.

    The offset ``-H^-1 g`` of the quadratic through the 3 x 3 x 3 neighbourhood (Brown & Lowe
    2002) moves the sample to ``x = (col + d_col) step`` and the filter side to
    ``L = L_layer + d_layer SIZE_STEP 2^o``; fits moving more than ``max_offset`` samples are
    dropped. Angles are 0 (see :func:`assign_orientations`).

    Returns
    -------
    SurfKeypoints
        ``response`` is ``det`` at the fitted point; ``layer`` the layer of the maximum.
    """
    octave = _check_octave(pyramid, octave)
    max_offset = check_positive(max_offset, "max_offset")
    det = pyramid.det[octave]
    ext = check_array(maxima, "maxima", ndim=2, dtypes="ui", allow_empty=True)
    if ext.shape[1] != 3:
        raise ValueError(f"maxima must have shape (K, 3), got {ext.shape}")
    n, Hs, Ws = det.shape
    if ext.size and ((ext[:, 0] < 1).any() or (ext[:, 0] > n - 2).any()
                     or (ext[:, 1] < 1).any() or (ext[:, 1] > Hs - 2).any()
                     or (ext[:, 2] < 1).any() or (ext[:, 2] > Ws - 2).any()):
        raise ValueError(f"maxima must lie on layers 1..{n - 2} and one sample inside the "
                         f"{Hs}x{Ws} grid")
    ext = np.ascontiguousarray(ext, np.int32)
    K = ext.shape[0]
    if K == 0:
        return SurfKeypoints.empty()
    fit = np.zeros((K, 5), np.float64)
    _kernels().interpolate_extrema(det, ext, max_offset, fit)
    ok = fit[:, 0] == 1.0
    fit, ext = fit[ok], ext[ok]
    step = pyramid.steps[octave]
    sizes = pyramid.sizes[octave]
    size_step = float(sizes[1] - sizes[0])
    L = sizes[0] + fit[:, 1] * size_step
    xy = np.stack([fit[:, 3] * step, fit[:, 2] * step], axis=1)
    lap = pyramid.sign[octave][ext[:, 0], ext[:, 1], ext[:, 2]]
    return SurfKeypoints(xy.astype(np.float32), (2.0 * L / BLOB_SIDE_RATIO).astype(np.float32),
                         np.zeros(len(xy), np.float32), fit[:, 4].astype(np.float32),
                         np.full(len(xy), octave, np.int32), ext[:, 0].astype(np.int32),
                         lap.astype(np.int8))


def _concat(parts) -> SurfKeypoints:
    if not parts:
        return SurfKeypoints.empty()
    return SurfKeypoints(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("xy", "size", "angle", "response", "octave", "layer",
                                     "laplacian")))


def _sort(kp: SurfKeypoints) -> SurfKeypoints:
    """Highest response first; ties by x, y, size (deterministic)."""
    if len(kp) == 0:
        return kp
    return kp[np.lexsort((kp.size, kp.xy[:, 1], kp.xy[:, 0], -kp.response))]


def detect_surf(pyramid: HessianPyramid, threshold: float = THRESHOLD,
                max_offset: float = MAX_OFFSET) -> SurfKeypoints:
    """Keypoints of every octave (stages 3 and 4), highest response first, angles 0."""
    parts = [interpolate_maxima(pyramid, o, hessian_maxima(pyramid, o, threshold), max_offset)
             for o in range(len(pyramid.det))]
    return _sort(_concat(parts))


def _keypoint_arrays(keypoints):
    if not isinstance(keypoints, Keypoints):
        raise TypeError(f"keypoints must be a Keypoints, got {type(keypoints).__name__}")
    for name in ("xy", "size", "angle"):
        check_finite(np.asarray(getattr(keypoints, name)), f"keypoints.{name}")
    if np.any(keypoints.size <= 0):
        raise ValueError("keypoints.size must be positive")
    x = np.ascontiguousarray(keypoints.xy[:, 0], np.float64)
    y = np.ascontiguousarray(keypoints.xy[:, 1], np.float64)
    s = np.ascontiguousarray(paper_scale(keypoints.size), np.float64)
    return x, y, s


def _table_order(x, y):
    """An order of the keypoints by row band, then column: consecutive keypoints then read nearby
    parts of the table, which stay in cache (the table of a 640 x 480 image is 2.4 MB; read in the
    detector's order, by response, the keypoints' reads miss the cache at random)."""
    return np.lexsort((x, np.floor(y / CACHE_BAND)))


def orientation_angles(ii, keypoints: Keypoints) -> np.ndarray:
    """Dominant orientation of each keypoint (Bay et al. 2008, sec. 4.1), in degrees.

    Haar responses of side ``4s`` at the points ``(x + j s, y + i s)`` with ``i^2 + j^2 <= 36``,
    Gaussian-weighted (sigma ``2s``), are summed inside a 60-degree window that slides round in
    5-degree steps; the longest sum gives the angle. ``s`` = :func:`paper_scale` of the size.

    Returns
    -------
    ndarray (K,) float32 in [0, 360)
    """
    ii = _check_table(ii)
    x, y, s = _keypoint_arrays(keypoints)
    out = np.zeros(len(x), np.float64)
    if len(x):
        order = _table_order(x, y)
        done = np.empty(len(x), np.float64)
        with threads_for(len(x) >= PARALLEL_MIN_KEYPOINTS):
            _kernels().orientations(ii, x[order], y[order], s[order], done)
        out[order] = done
    return np.mod(out, 360.0).astype(np.float32)


def assign_orientations(ii, keypoints: Keypoints) -> Keypoints:
    """The keypoints with their angles set by :func:`orientation_angles` (same type, order)."""
    angles = orientation_angles(ii, keypoints)
    return type(keypoints)(**{**keypoints.__dict__, "angle": angles})


def describe_surf(ii, keypoints: Keypoints, extended: bool = False) -> np.ndarray:
    """SURF descriptors (Bay et al. 2008, sec. 4.2).

    A ``20s``-wide square turned to the keypoint's angle is cut into 4 x 4 sub-regions of 5 x 5
    samples; Haar responses of side ``2s`` at each sample, turned into the keypoint's frame
    (``dx`` along the angle, ``dy`` across it) and weighted by a Gaussian of sigma ``3.3s``, add
    up per sub-region. ``s`` = :func:`paper_scale` of the size; any :class:`Keypoints` can be
    described (SIFT's too).

    Parameters
    ----------
    ii : (H + 1, W + 1) float64
        From :func:`integral_gray`.
    keypoints : Keypoints
    extended : bool
        SURF-128: per sub-region ``sum dx, sum |dx|`` over ``dy >= 0``, the same over ``dy < 0``,
        then ``sum dy, sum |dy|`` over ``dx >= 0`` and over ``dx < 0`` (OpenCV's order).

    Returns
    -------
    ndarray (K, 64) or (K, 128) float32
        Unit L2 norm (zero for a patch without any intensity change).
    """
    ii = _check_table(ii)
    x, y, s = _keypoint_arrays(keypoints)
    ks = _kernels()
    D = (8 if extended else 4) * ks.DESC_CELLS * ks.DESC_CELLS
    out = np.zeros((len(x), D), np.float32)
    if len(x):
        angle = np.ascontiguousarray(keypoints.angle, np.float64)
        order = _table_order(x, y)
        done = np.empty_like(out)
        with threads_for(len(x) >= PARALLEL_MIN_KEYPOINTS):
            ks.descriptors(ii, x[order], y[order], s[order], angle[order], bool(extended), done)
        out[order] = done
    return out


def surf(image, threshold: float = THRESHOLD, n_features: int | None = None,
         n_octaves: int = N_OCTAVES, n_layers: int = N_LAYERS, initial_step: int = INITIAL_STEP,
         small_scales: bool = SMALL_SCALES, upright: bool = False, extended: bool = False,
         keypoints: Keypoints | None = None):
    """Detect SURF keypoints and compute their descriptors (Bay et al. 2008).

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3)
        uint8 (divided by 255), uint16 (by 65535) or float in [0, 1]; RGB to grey (BT.601).
    threshold : float
        Keep maxima with ``det(H_approx) > threshold`` (default 0.001, for intensities in [0, 1]).
    n_features : int, optional
        Keep only the ``n_features`` keypoints of highest response.
    n_octaves, n_layers : int
        Octaves (default 4) and filters per octave (default 4).
    initial_step : int
        Sampling step of octave 0 (default 1), doubled per octave.
    small_scales : bool
        Search octave 0 from the 9 x 9 filter (scale 1.2) with a 3 x 3 filter below it (default
        True); False gives the paper's pyramid, whose search starts at 15 x 15 (scale 2.0).
    upright : bool
        U-SURF: no orientation, every angle 0 (faster; for images known to be upright).
    extended : bool
        The 128-value descriptor instead of 64.
    keypoints : Keypoints, optional
        Describe these instead of detecting (sizes as SIFT's, ``2 sigma``; angles kept).

    Returns
    -------
    keypoints : SurfKeypoints (or the given Keypoints)
        Highest response first; ``laplacian`` holds the sign of the Laplacian.
    descriptors : ndarray (K, 64) or (K, 128) float32
        Unit L2 norm.

    Examples
    --------
    >>> img = np.zeros((80, 80), np.float32); img[30:50, 30:50] = 1.0
    >>> kp, desc = surf(img)
    >>> desc.shape[1], bool(np.allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5))
    (64, True)
    >>> int(kp.laplacian[0])     # a bright square on black: a bright blob
    -1
    """
    threshold = check_nonnegative(threshold, "threshold")
    if n_features is not None:
        n_features = check_int(n_features, "n_features", minimum=1)
    if keypoints is not None and not isinstance(keypoints, Keypoints):
        raise TypeError("keypoints must be a cvcore.features.Keypoints "
                        f"(see Keypoints.from_xy), got {type(keypoints).__name__}")
    ii = integral_gray(image)
    if keypoints is None:
        pyramid = fast_hessian(ii, n_octaves, n_layers, initial_step, small_scales)
        keypoints = detect_surf(pyramid, threshold)
        if n_features is not None:
            keypoints = keypoints[:n_features]
        if not upright:
            keypoints = assign_orientations(ii, keypoints)
    elif n_features is not None:
        keypoints = keypoints[:n_features]
    return keypoints, describe_surf(ii, keypoints, bool(extended))
