"""SIFT: scale-invariant keypoints and their descriptors (Lowe 2004).

The stages, each a function you can call and plot on its own:

1. :func:`base_image`            grey float image in [0, 1], doubled (``double_image``) and blurred
                                 from the assumed camera blur 0.5 up to ``sigma`` (sec. 3.3).
2. :func:`gaussian_scale_space`  per octave, ``n_scales + 3`` images ``L(x, y, sigma_0 2^(i/S))``,
                                 each blurred incrementally from the previous; the next octave
                                 starts from level ``n_scales`` taken every second pixel (sec. 3).
3. :func:`dog_scale_space`       differences of adjacent levels, ``D_i = L_{i+1} - L_i`` (eq. 1).
4. :func:`scale_space_extrema`   samples larger (smaller) than their 26 neighbours (sec. 3.1).
5. :func:`localize_keypoints`    sub-pixel and sub-scale fit, contrast and edge rejection (sec. 4),
                                 and one keypoint per dominant orientation-histogram peak (sec. 5).
6. :func:`describe_keypoints`              the 4x4x8 histogram-of-gradients descriptor (sec. 6).

:func:`sift` runs them all: ``keypoints, descriptors = sift(image)``.

Conventions
-----------
- Coordinates are ``(x, y)`` = (column, row), pixel centres at integers (OpenCV's convention).
- ``angle`` is in degrees in [0, 360), measured from +x towards +y with y pointing down (clockwise
  on screen), as OpenCV's ``KeyPoint.angle``.
- ``size`` is the diameter of the keypoint's neighbourhood, ``2 sigma`` in input pixels (OpenCV).
- ``octave`` is the pyramid octave, -1 for the doubled image, 0 for the input resolution, ...;
  ``layer`` the Gaussian level within it (1..n_scales for detected keypoints).
- Descriptors are float32 with unit L2 norm (an all-zero descriptor where a patch has no gradient).
  OpenCV scales its descriptors to 512 and rounds them to integers; divide OpenCV's by their
  norm to compare.
- Intensities: uint8 images are divided by 255, uint16 by 65535; float images are taken as given
  and should lie in [0, 1], the range ``contrast_threshold`` is defined for.

The defaults follow OpenCV's ``SIFT_create()`` (itself Lowe's paper): 3 scales per octave,
``sigma = 1.6``, contrast threshold 0.04 (divided by ``n_scales``), edge threshold 10, the
input doubled by OpenCV's bilinear ``resize`` (half-pixel centres). One deliberate difference:
a doubled-image position ``X`` is reported as ``X / 2 - 0.25``, where it lies in the input;
OpenCV reports ``X / 2``, a quarter-pixel shift (which its ``enable_precise_upscale`` option
removes by resampling differently). Compare positions with OpenCV's after adding 0.25.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from cvcore._threads import threads_for
from cvcore._validate import (check_array, check_finite, check_int, check_limit,
                              check_nonnegative, check_positive)
from cvcore._bands import run_bands

SIGMA = 1.6                 # Lowe 2004, sec. 3.3: blur of the first level of each octave
N_SCALES = 3                # Lowe 2004, sec. 3.2: intervals per octave (best repeatability)
INIT_SIGMA = 0.5            # Lowe 2004, sec. 3.3: blur assumed already present in the input
CONTRAST_THRESHOLD = 0.04   # OpenCV's default; applied as |D(x^)| >= 0.04 / n_scales (Lowe: 0.03)
EDGE_THRESHOLD = 10.0       # Lowe 2004, sec. 4.1: r = 10, principal-curvature ratio
BORDER = 5                  # OpenCV SIFT_IMG_BORDER: no extrema this close to an octave's edge
ORI_SIGMA_FACTOR = 1.5      # Lowe 2004, sec. 5: orientation window sigma = 1.5 x keypoint scale
ORI_RADIUS_FACTOR = 3.0 * ORI_SIGMA_FACTOR   # window radius: 3 window sigmas
ORI_PEAK_RATIO = 0.8        # Lowe 2004, sec. 5: peaks within 80% of the highest make keypoints
DESC_SCALE_FACTOR = 3.0     # OpenCV SIFT_DESCR_SCL_FCTR: each of the 4x4 cells is 3 sigma wide
DESC_CLIP = 0.2             # Lowe 2004, sec. 6.1: clip normalised entries at 0.2
# Longest Gaussian kernel built (taps): sigma up to ~8000 pixels. A longer kernel is wider than
# any image cvcore can hold in memory, and building it would only cost time and memory.
MAX_KERNEL_TAPS = 65537
# Keypoint coordinates beyond this (pixels) cannot be on an image: float32 holds every integer
# up to 2^24, and the kernels round positions to int.
MAX_COORDINATE = float(2 ** 24)
# Largest intensity magnitude accepted (the images are 0..1): gradients of values up to this
# square to at most ~1e31, so the magnitudes, their sums and the DoG stay finite in float32.
# Beyond it (a float32 image holding 3e38 is finite) they overflow to inf, the histograms get
# NaN, and a NaN direction cast to int indexes outside the histogram.
MAX_INTENSITY = 1e15
# Most scales per octave: each is a blurred copy of the octave (n_scales + 3 levels), and Lowe's
# repeatability peaks at 3 (2004, fig. 3); n_scales = 2^62 built a Python list of 2^62 blur
# increments and never returned (found by the fuzzing harness).
MAX_SCALES = 64
GAUSS_TRUNCATE = 4.0        # OpenCV GaussianBlur on float images: ksize = round(8 sigma + 1) | 1
DOUBLED_OFFSET = -0.25      # doubled-image pixel X is input position X / 2 - 0.25 (half-pixel)
PARALLEL_MIN_PIXELS = 1 << 17   # octaves smaller than this run on one thread (see threads_for)
PARALLEL_MIN_KEYPOINTS = 64     # fewer keypoints than this in an octave: described on one thread
# Work of one refinement candidate and of one descriptor in pixels of a blur pass (one thread:
# ~2 us and ~20 us, a pixel ~2 ns): run_bands splits a call into bands on several threads only
# when it holds enough work to pay for handing them out.
REFINE_PIXELS = 1 << 10
DESCRIPTOR_PIXELS = 1 << 13
_LUMA = (0.299, 0.587, 0.114)   # ITU-R BT.601 weights, as OpenCV's RGB->grey
# Most bytes of scratch buffers sift() keeps per thread between calls (_Workspace): a 640x480
# image needs ~70 MB; a larger image's buffers are allocated per call instead of held.
WORKSPACE_MAX_BYTES = 1 << 28


class _Workspace:
    """Scratch arrays that :func:`sift` reuses from one call to the next on the same thread.

    A 640x480 image's scale space, DoG octave and extremum masks are ~70 MB of memory per call.
    glibc gives blocks that large back to the kernel when they are freed, so every call took
    them again page by page: 3500 page faults and 27 ms of system time per call, 17% of its CPU
    (``benchmarks/README.md``, SIFT, session 6). Held here they are faulted in once. Buffers
    are kept while their total stays within :data:`WORKSPACE_MAX_BYTES`; beyond it they are
    allocated per call, as before. Only :func:`sift` uses one (its scale space never leaves
    the call); the stage functions return fresh arrays.
    """

    def __init__(self):
        self.buffers = {}

    def take(self, name, shape, dtype=np.float32) -> np.ndarray:
        """An uninitialised C-contiguous array of ``shape``: the front of buffer ``name``."""
        n = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.size < n:
            self.buffers.pop(name, None)
            buf = np.empty(n, dtype)
            held = sum(b.nbytes for b in self.buffers.values())
            if held + buf.nbytes <= WORKSPACE_MAX_BYTES:
                self.buffers[name] = buf
        return buf[:n].reshape(shape)


_local = threading.local()


def _workspace() -> _Workspace:
    ws = getattr(_local, "workspace", None)
    if ws is None:
        ws = _local.workspace = _Workspace()
    return ws


def _take(ws, name, shape, dtype=np.float32) -> np.ndarray:
    """``ws.take(...)``, or a new array without a workspace."""
    return np.empty(shape, dtype) if ws is None else ws.take(name, shape, dtype)


@dataclass(frozen=True)
class Keypoints:
    """K keypoints as parallel arrays (index or mask it like an array: ``kp[:10]``, ``kp[mask]``).

    Attributes
    ----------
    xy : ndarray (K, 2) float32
        ``(x, y)`` positions in input pixels (pixel centres at integers).
    size : ndarray (K,) float32
        Neighbourhood diameter, ``2 sigma`` in input pixels.
    angle : ndarray (K,) float32
        Dominant orientation in degrees, [0, 360), clockwise on screen (OpenCV convention).
    response : ndarray (K,) float32
        ``|D|`` at the refined extremum, intensities in [0, 1].
    octave : ndarray (K,) int32
        Pyramid octave (-1: the doubled image).
    layer : ndarray (K,) int32
        Gaussian level within the octave the keypoint was found on; -1 if unknown (keypoints made
        by :meth:`from_xy`: :func:`describe_keypoints` then picks the level from ``size``).
    """
    xy: np.ndarray
    size: np.ndarray
    angle: np.ndarray
    response: np.ndarray
    octave: np.ndarray
    layer: np.ndarray

    def __len__(self):
        return int(self.xy.shape[0])

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            index = [index]                      # one keypoint stays a Keypoints of length 1
        return Keypoints(self.xy[index], self.size[index], self.angle[index],
                         self.response[index], self.octave[index], self.layer[index])

    @staticmethod
    def empty() -> "Keypoints":
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                         np.zeros(0, np.float32), np.zeros(0, np.float32),
                         np.zeros(0, np.int32), np.zeros(0, np.int32))

    @staticmethod
    def from_xy(xy, size, angle=0.0) -> "Keypoints":
        """Keypoints at caller-given positions, sizes (diameters) and angles, for :func:`describe_keypoints`.

        >>> kp = Keypoints.from_xy([[10.0, 20.0]], size=[8.0], angle=[45.0])
        >>> len(kp), kp.layer.tolist()
        (1, [-1])
        """
        xy = check_array(xy, "xy", ndim=2, dtypes="uif", allow_empty=True)
        if xy.shape[1] != 2:
            raise ValueError(f"xy must have shape (K, 2), got {xy.shape}")
        check_finite(xy, "xy")
        K = xy.shape[0]
        size = np.broadcast_to(np.asarray(size, np.float32), (K,)).copy()
        angle = np.broadcast_to(np.asarray(angle, np.float32), (K,)).copy()
        check_finite(size, "size")
        check_finite(angle, "angle")
        if np.any(size <= 0):
            raise ValueError("size must be positive for every keypoint")
        return Keypoints(np.ascontiguousarray(xy, np.float32), size, np.mod(angle, 360.0),
                         np.zeros(K, np.float32), np.zeros(K, np.int32),
                         np.full(K, -1, np.int32))

    def to_cv2(self):
        """A list of ``cv2.KeyPoint`` (needs OpenCV), with OpenCV's packed ``octave`` field."""
        import cv2
        packed = (self.octave.astype(np.int64) & 255) | (np.maximum(self.layer, 0) << 8)
        return [cv2.KeyPoint(float(x), float(y), float(s), float(a), float(r), int(o))
                for (x, y), s, a, r, o in zip(self.xy, self.size, self.angle, self.response,
                                              packed)]

    @staticmethod
    def from_cv2(keypoints) -> "Keypoints":
        """Convert a sequence of ``cv2.KeyPoint``, unpacking OpenCV's octave and layer."""
        K = len(keypoints)
        if K == 0:
            return Keypoints.empty()
        xy = np.array([k.pt for k in keypoints], np.float32)
        packed = np.array([k.octave for k in keypoints], np.int64)
        octave = packed & 255
        octave = np.where(octave < 128, octave, octave - 256).astype(np.int32)
        layer = ((packed >> 8) & 255).astype(np.int32)
        return Keypoints(xy, np.array([k.size for k in keypoints], np.float32),
                         np.array([k.angle for k in keypoints], np.float32),
                         np.array([k.response for k in keypoints], np.float32), octave, layer)


class ScaleSpace(NamedTuple):
    """The Gaussian scale space of one image.

    Attributes
    ----------
    gauss : list of ndarray
        One (n_scales + 3, H_o, W_o) float32 array per octave; level ``i`` of octave ``o`` has blur
        ``sigma 2^(i / n_scales)`` in that octave's pixels.
    first_octave : int
        -1 when the input was doubled, else 0; octave ``o`` of the list has pixels
        ``2^(o + first_octave)`` input pixels wide.
    n_scales : int
        Scales per octave.
    sigma : float
        Blur of the first level of each octave, in that octave's pixels.
    offset : float
        Sample ``x`` of the list's octave ``o`` lies at ``x 2^(o + first_octave) + offset`` in
        the input: -0.25 when doubled (half-pixel-centred upsampling), else 0.
    """
    gauss: list
    first_octave: int
    n_scales: int
    sigma: float
    offset: float = 0.0


def _kernels():
    from kernels import sift as ks   # imported on first use: keeps `import cvcore` quick
    return ks


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The 1-D Gaussian OpenCV's ``GaussianBlur`` uses on float images.

    Length ``round(2 * 4 sigma + 1) | 1`` (odd), taps ``exp(-t^2 / (2 sigma^2))`` normalised to sum 1.

    >>> gaussian_kernel(1.0).shape
    (9,)
    """
    sigma = check_positive(sigma, "sigma")
    ksize = int(round(sigma * GAUSS_TRUNCATE * 2 + 1)) | 1
    check_limit(ksize, MAX_KERNEL_TAPS, f"the Gaussian kernel of sigma={sigma:.4g} (taps)",
                "such a blur is wider than any image that fits in memory")
    r = (ksize - 1) // 2
    t = np.arange(-r, r + 1, dtype=np.float64)
    # (t / sigma)^2 rather than t^2 / sigma^2: a tiny sigma squares to 0 (1e-200^2), which made
    # 0 / 0 = NaN at the centre tap; this way the centre is exp(0) = 1 and the rest exp(-inf) = 0.
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur a 2-D float32 image with :func:`gaussian_kernel` (reflect-101 border)."""
    image = _as_gray(image, "image")
    out = np.empty_like(image)
    _blur_into(image, sigma, np.empty_like(image), out)
    return out


def _blur_into(src, sigma, tmp, dst, kernel=None):
    """Blur ``src`` into ``dst`` by :func:`gaussian_kernel` (``sigma``) or by ``kernel``: the
    horizontal pass into ``tmp``, then the vertical one, each in bands of rows on the threads
    (every vertical band needs the horizontal rows around it, so the passes run one after the
    other)."""
    ks = _kernels()
    kernel = gaussian_kernel(sigma) if kernel is None else kernel
    H, W = src.shape
    run_bands(ks.blur_rows_horizontal, H, W, src, kernel, tmp)
    run_bands(ks.blur_rows_vertical, H, W, tmp, kernel, dst)


def _check_magnitude(arr, name):
    """Raise unless every value of ``arr`` is finite and at most ``MAX_INTENSITY`` in size."""
    check_finite(arr, name)
    if arr.dtype.kind == "f" and arr.size and float(np.abs(arr).max()) > MAX_INTENSITY:
        raise ValueError(f"{name} has values up to {float(np.abs(arr).max()):.3g}; SIFT takes "
                         f"intensities in 0..1 (at most {MAX_INTENSITY:.0e}: larger ones "
                         f"overflow float32 in the gradients)")
    return arr


def _as_gray(image, name="image") -> np.ndarray:
    """Validate an image and return it as a C-contiguous float32 grey image in [0, 1]."""
    arr = check_array(image, name, ndim=(2, 3), dtypes="buif")
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.shape[2] in (3, 4):
            arr = arr[:, :, :3]
        else:
            raise ValueError(f"{name} must be (H, W) grey or (H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        scale = 1.0 / 255.0
    elif arr.dtype == np.uint16:
        scale = 1.0 / 65535.0
    else:
        scale = 1.0
    _check_magnitude(arr, name)
    if arr.ndim == 3:
        arr = arr.astype(np.float32) @ np.asarray(_LUMA, np.float32)
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if scale != 1.0:
        out = out * np.float32(scale)
    return out


def base_image(image, sigma: float = SIGMA, double_image: bool = True) -> np.ndarray:
    """The first level of the scale space: the grey image, doubled if asked, blurred to ``sigma``.

    The input is assumed to carry a blur of ``INIT_SIGMA`` = 0.5 pixels (2 x 0.5 once doubled), so
    the extra blur is ``sqrt(sigma^2 - (0.5 k)^2)``, ``k = 2`` when doubled (Lowe 2004, sec. 3.3).

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3)
        uint8, uint16 or float in [0, 1].

    Returns
    -------
    ndarray (2H, 2W) or (H, W) float32
    """
    gray = _as_gray(image)
    sigma = check_positive(sigma, "sigma")
    shape = (2 * gray.shape[0], 2 * gray.shape[1]) if double_image else gray.shape
    out = np.empty(shape, np.float32)
    _base_into(gray, sigma, double_image, None, out)
    return out


def _base_shape(image, double_image):
    h, w = np.shape(image)[:2]
    return (2 * h, 2 * w) if double_image else (h, w)


def _base_into(gray, sigma, double_image, ws, out):
    """:func:`base_image` of a checked grey float32 image into ``out``; scratch from ``ws``."""
    factor = 2.0 if double_image else 1.0
    if double_image:
        src = _take(ws, "doubled", out.shape)
        with threads_for(out.size >= PARALLEL_MIN_PIXELS):
            run_bands(_kernels().upsample2x_linear, src.shape[0], src.shape[1], gray, src)
    else:
        src = gray
    sig_diff = math.sqrt(max(sigma * sigma - (INIT_SIGMA * factor) ** 2, 0.01))
    with threads_for(out.size >= PARALLEL_MIN_PIXELS):
        _blur_into(src, sig_diff, _take(ws, "blur", out.shape), out)


def octave_count(shape, double_image: bool = True) -> int:
    """Number of octaves, OpenCV's rule: ``round(log2(min(H, W)) - 2)`` of the base image, plus
    one for the doubled one; octaves whose image would be empty are not built."""
    h, w = shape[:2]
    first = -1 if double_image else 0
    base_min = min(h, w) * (2 if double_image else 1)
    n = int(round(math.log2(base_min) - 2)) - first
    n_possible = int(math.floor(math.log2(base_min))) + 1   # halving until 1 pixel
    return max(1, min(n, n_possible))


def gaussian_scale_space(image, n_scales: int = N_SCALES, sigma: float = SIGMA,
                         double_image: bool = True, n_octaves: int | None = None) -> ScaleSpace:
    """Build the Gaussian scale space (Lowe 2004, sec. 3).

    Level ``i`` (0 .. n_scales + 2) of each octave has blur ``sigma k^i``, ``k = 2^(1/n_scales)``;
    it is made from level ``i - 1`` by a further blur ``sigma k^(i-1) sqrt(k^2 - 1)``, since
    Gaussian blurs add in quadrature. Octave ``o + 1`` starts from level ``n_scales`` of octave
    ``o`` (blur ``2 sigma``) sampled at every second pixel, which is blur ``sigma`` in its pixels.

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3)
    n_scales : int
        Scales per octave ``S`` (the DoG extrema are searched on S levels).
    sigma : float
    double_image : bool
        Start from the image upsampled 2x (more keypoints at small scales; OpenCV's default).
    n_octaves : int, optional
        Default :func:`octave_count`.

    Returns
    -------
    ScaleSpace
    """
    n_scales = check_int(n_scales, "n_scales", minimum=1)
    check_limit(n_scales, MAX_SCALES, "n_scales", "every scale is another blurred copy of each "
                "octave (Lowe 2004 uses 3)")
    sigma = check_positive(sigma, "sigma")
    gray = _as_gray(image)
    if n_octaves is not None:
        n_octaves = check_int(n_octaves, "n_octaves", minimum=1)
    return _scale_space(gray, np.shape(image), n_scales, sigma, double_image, n_octaves, None)


def _scale_space(gray, input_shape, n_scales, sigma, double_image, n_octaves, ws) -> ScaleSpace:
    """:func:`gaussian_scale_space` of a checked grey image; its arrays from ``ws`` if given."""
    base_shape = _base_shape(gray, double_image)
    if n_octaves is None:
        n_octaves = octave_count(input_shape, double_image)
    n_octaves = min(n_octaves, int(math.floor(math.log2(min(base_shape)))) + 1)
    k = 2.0 ** (1.0 / n_scales)
    increments = [sigma * k ** (i - 1) * math.sqrt(k * k - 1.0) for i in range(1, n_scales + 3)]
    kernels = [gaussian_kernel(s) for s in increments]
    gauss = []
    for o in range(n_octaves):
        if o == 0:
            shape = base_shape
        else:
            prev = gauss[-1][n_scales]
            shape = (prev.shape[0] // 2, prev.shape[1] // 2)
        levels = _take(ws, f"octave{o}", (n_scales + 3,) + shape)
        if o == 0:
            _base_into(gray, sigma, double_image, ws, levels[0])   # the base, written in place
        else:
            levels[0] = prev[: 2 * shape[0]: 2, : 2 * shape[1]: 2]
        tmp = _take(ws, "blur", shape)
        with threads_for(levels[0].size >= PARALLEL_MIN_PIXELS):
            for i in range(1, n_scales + 3):
                _blur_into(levels[i - 1], None, tmp, levels[i], kernels[i - 1])
        gauss.append(levels)
    return ScaleSpace(gauss, -1 if double_image else 0, n_scales, sigma,
                      DOUBLED_OFFSET if double_image else 0.0)


def _dog_into(levels, dog):
    L, H, W = dog.shape
    run_bands(_kernels().difference_of_gaussians, L * H, W, levels, dog)


def dog_scale_space(scale_space: ScaleSpace) -> list:
    """Differences of Gaussians, one (n_scales + 2, H_o, W_o) float32 array per octave.

    ``D_i = L_{i+1} - L_i`` approximates ``(k - 1) sigma^2 del^2 L`` (Lowe 2004, eq. 1 and sec. 3).
    """
    dogs = []
    for levels in check_scale_space(scale_space).gauss:
        dog = np.empty((levels.shape[0] - 1,) + levels.shape[1:], np.float32)
        _dog_into(levels, dog)
        dogs.append(dog)
    return dogs


def scale_space_extrema(dog: np.ndarray, threshold: float, border: int = BORDER) -> np.ndarray:
    """Samples of one DoG octave that are extrema among their 26 neighbours (Lowe 2004, sec. 3.1).

    Only the middle levels (1 .. L-2) are searched, ``border`` pixels or more from the edges, and
    only samples with ``|D| > threshold`` (a cheap pre-filter; :func:`sift` uses half the final
    contrast threshold, as Lowe and OpenCV do).

    Parameters
    ----------
    dog : ndarray (L, H, W) float32

    Returns
    -------
    ndarray (K, 3) int32
        ``(level, row, col)`` of each extremum, in level-then-row-major order.
    """
    dog = check_array(dog, "dog", ndim=3, dtypes="f", allow_empty=True)
    _check_magnitude(dog, "dog")
    dog = np.ascontiguousarray(dog, dtype=np.float32)
    threshold = check_nonnegative(threshold, "threshold")
    border = check_int(border, "border", minimum=1)
    return _extrema(dog, threshold, border)


def _extrema(dog, threshold, border, ws=None):
    """:func:`scale_space_extrema` on checked arguments (the mask from ``ws`` if given)."""
    L, H, W = dog.shape
    if L < 3 or H <= 2 * border or W <= 2 * border:
        return np.zeros((0, 3), np.int32)
    ks = _kernels()
    mask = _take(ws, "mask", dog.shape, np.uint8)   # the kernel writes every row it searches
    counts = np.zeros((L, H), np.int64)
    run_bands(ks.dog_extrema_mask, (L - 2) * (H - 2 * border), W, dog, np.float32(threshold),
              border, mask, counts)
    flat = counts.ravel()
    offsets = np.zeros_like(flat)
    np.cumsum(flat[:-1], out=offsets[1:])
    K = int(flat.sum())
    out = np.empty((3, K), np.int32)
    ks.gather_extrema(mask, counts, offsets, out[0], out[1], out[2])
    return np.ascontiguousarray(out.T)


class Localized(NamedTuple):
    """Keypoints of one octave in that octave's pixels (the output of :func:`localize_keypoints`).

    x, y, scale (sigma), response: (K,) float64; level: (K,) int32 Gaussian level;
    offset: (K,) sub-level offset in [-0.5, 0.5]; angle: (K,) float64 degrees.
    """
    x: np.ndarray
    y: np.ndarray
    level: np.ndarray
    offset: np.ndarray
    scale: np.ndarray
    response: np.ndarray
    angle: np.ndarray


def _check_octave(dog, gauss, extrema, border):
    """Validate one octave's DoG, Gaussian levels and extrema before a kernel indexes them."""
    dog = check_array(dog, "dog", ndim=3, dtypes="f")
    gauss = check_array(gauss, "gauss", ndim=3, dtypes="f")
    _check_magnitude(dog, "dog")
    _check_magnitude(gauss, "gauss")
    if gauss.shape != (dog.shape[0] + 1,) + dog.shape[1:]:
        raise ValueError(f"gauss must have shape (L + 1, H, W) for dog {dog.shape}, "
                         f"got {gauss.shape}")
    ext = check_array(extrema, "extrema", ndim=2, dtypes="ui", allow_empty=True)
    if ext.shape[1] != 3:
        raise ValueError(f"extrema must have shape (K, 3), got {ext.shape}")
    L, H, W = dog.shape
    if ext.size and ((ext[:, 0] < 1).any() or (ext[:, 0] > L - 2).any()
                     or (ext[:, 1] < border).any() or (ext[:, 1] >= H - border).any()
                     or (ext[:, 2] < border).any() or (ext[:, 2] >= W - border).any()):
        raise ValueError(f"extrema must lie on levels 1..{L - 2} and at least {border} pixels "
                         f"inside the {H}x{W} octave")
    return (np.ascontiguousarray(dog, np.float32), np.ascontiguousarray(gauss, np.float32),
            np.ascontiguousarray(ext, np.int32))


def localize_keypoints(dog: np.ndarray, gauss: np.ndarray, extrema: np.ndarray,
                       n_scales: int = N_SCALES, sigma: float = SIGMA,
                       contrast_threshold: float = CONTRAST_THRESHOLD,
                       edge_threshold: float = EDGE_THRESHOLD, upright: bool = False,
                       border: int = BORDER) -> Localized:
    """Refine the extrema of one octave, reject weak and edge-like ones, assign orientations.

    See :func:`kernels.sift.refine_and_orient` for the formulas (Lowe 2004, sec. 4, 4.1 and 5).
    A candidate with several dominant orientations gives one keypoint per orientation.

    Parameters
    ----------
    dog : ndarray (n_scales + 2, H, W) float32
    gauss : ndarray (n_scales + 3, H, W) float32
    extrema : ndarray (K, 3) int32, from :func:`scale_space_extrema`
    upright : bool
        Skip orientation assignment; every keypoint gets angle 0.

    Returns
    -------
    Localized
    """
    border = check_int(border, "border", minimum=1)
    dog, gauss, ext = _check_octave(dog, gauss, extrema, border)
    n_scales = check_int(n_scales, "n_scales", minimum=1)
    if dog.shape[0] != n_scales + 2:
        raise ValueError(f"dog has {dog.shape[0]} levels; n_scales={n_scales} needs "
                         f"{n_scales + 2}")
    sigma = check_positive(sigma, "sigma")
    contrast_threshold = check_nonnegative(contrast_threshold, "contrast_threshold")
    edge_threshold = check_positive(edge_threshold, "edge_threshold")
    return _localize(dog, gauss, ext, n_scales, sigma, contrast_threshold, edge_threshold,
                     upright, border)


def _localize(dog, gauss, ext, n_scales, sigma, contrast_threshold, edge_threshold, upright,
              border=BORDER):
    """:func:`localize_keypoints` on checked arguments."""
    ks = _kernels()
    K = ext.shape[0]
    out = np.zeros((K, 8), np.float64)
    angles = np.zeros((K, ks.MAX_PEAKS), np.float64)
    if K:
        params = np.array([n_scales, sigma, contrast_threshold, edge_threshold, border,
                           ORI_RADIUS_FACTOR, ORI_SIGMA_FACTOR, ORI_PEAK_RATIO,
                           1.0 if upright else 0.0], np.float64)
        run_bands(ks.refine_and_orient, ks.refine_jobs(K), REFINE_PIXELS, dog, gauss, ext,
                  params, out, angles)
    ok, x, y, lev, off, scale, resp, n_ang = out.T
    lev = lev.astype(np.int32)
    n_ang = np.where(ok == 1, n_ang, 0).astype(np.int64)
    rep = np.repeat(np.arange(K), n_ang)
    within = np.arange(rep.size) - np.repeat(np.cumsum(n_ang) - n_ang, n_ang)
    return Localized(x[rep], y[rep], lev[rep], off[rep], scale[rep], resp[rep],
                     angles[rep, within])


def orientation_histogram(image: np.ndarray, x: int, y: int, scale: float) -> np.ndarray:
    """The smoothed 36-bin orientation histogram at integer ``(x, y)`` of a Gaussian level, for a
    keypoint of sigma ``scale`` (in that level's pixels): the histogram :func:`localize_keypoints`
    takes its peaks from (Lowe 2004, sec. 5). Bin ``b`` covers angles around ``10 b`` degrees."""
    ks = _kernels()
    image = check_array(image, "image", ndim=2, dtypes="f")
    # A NaN gradient has no direction: its bin index would be garbage and the vote would be
    # written outside the histogram (a segmentation fault before this check).
    _check_magnitude(image, "image")
    image = np.ascontiguousarray(image, np.float32)
    H, W = image.shape
    x, y = check_int(x, "x"), check_int(y, "y")
    if not (0 <= x < W and 0 <= y < H):
        raise ValueError(f"(x, y) = ({x}, {y}) is outside the {H}x{W} image")
    scale = check_positive(scale, "scale")
    check_limit(int(round(ORI_RADIUS_FACTOR * scale)), int(math.hypot(H, W)) + 1,
                f"the orientation window radius of scale={scale:.4g}",
                "a window wider than the image's diagonal adds nothing and costs memory")
    hist = np.zeros(ks.ORI_HIST_BINS, np.float64)
    ks.orientation_histogram(image, int(y), int(x), int(round(ORI_RADIUS_FACTOR * scale)),
                             ORI_SIGMA_FACTOR * scale, hist)
    return hist


def detect_keypoints(scale_space: ScaleSpace, dogs=None,
                     contrast_threshold: float = CONTRAST_THRESHOLD,
                     edge_threshold: float = EDGE_THRESHOLD, upright: bool = False) -> Keypoints:
    """Keypoints of a scale space: stages 4 and 5 over every octave, in input-image pixels.

    Exact duplicates (same position, size and angle, reached from two starting samples) are
    dropped, as OpenCV does. Order: by response, highest first, ties by x, y, size, angle.
    """
    scale_space = check_scale_space(scale_space)
    contrast_threshold = check_nonnegative(contrast_threshold, "contrast_threshold")
    edge_threshold = check_positive(edge_threshold, "edge_threshold")
    if dogs is not None:
        if not isinstance(dogs, (list, tuple)) or len(dogs) != len(scale_space.gauss):
            raise TypeError(f"dogs must be the list dog_scale_space returns, one array per "
                            f"octave ({len(scale_space.gauss)})")
        dogs = list(dogs)
        for o, (dog, levels) in enumerate(zip(dogs, scale_space.gauss)):
            dog = check_array(dog, f"dogs[{o}]", ndim=3, dtypes="f")
            if dog.shape != (levels.shape[0] - 1,) + levels.shape[1:]:
                raise ValueError(f"dogs[{o}] has shape {dog.shape}; octave {o} of the scale "
                                 f"space needs {(levels.shape[0] - 1,) + levels.shape[1:]}")
            _check_magnitude(dog, f"dogs[{o}]")
            dogs[o] = np.ascontiguousarray(dog, np.float32)
    return _detect(scale_space, dogs, contrast_threshold, edge_threshold, bool(upright))


def check_scale_space(scale_space) -> ScaleSpace:
    """Check a :class:`ScaleSpace` (built by :func:`gaussian_scale_space`, or by hand) before
    the kernels index it: per octave a finite C-contiguous float32 (n_scales + 3, H, W) array,
    each octave half the previous one's size, and valid scalars."""
    if not isinstance(scale_space, ScaleSpace):
        raise TypeError(f"scale_space must be a ScaleSpace (see gaussian_scale_space), got "
                        f"{type(scale_space).__name__}")
    S = check_int(scale_space.n_scales, "scale_space.n_scales", minimum=1)
    check_positive(scale_space.sigma, "scale_space.sigma")
    first = check_int(scale_space.first_octave, "scale_space.first_octave")
    if first not in (-1, 0):
        raise ValueError(f"scale_space.first_octave must be -1 or 0, got {first}")
    offset = float(scale_space.offset)
    if not math.isfinite(offset):
        raise ValueError("scale_space.offset must be finite")
    gauss = scale_space.gauss
    if not isinstance(gauss, (list, tuple)) or len(gauss) == 0:
        raise TypeError("scale_space.gauss must be a non-empty list of arrays, one per octave")
    prev = None
    for o, levels in enumerate(gauss):
        name = f"scale_space.gauss[{o}]"
        if not isinstance(levels, np.ndarray) or levels.dtype != np.float32 or levels.ndim != 3 \
                or not levels.flags.c_contiguous:
            raise TypeError(f"{name} must be a C-contiguous float32 (n_scales + 3, H, W) array")
        if levels.shape[0] != S + 3 or levels.shape[1] < 1 or levels.shape[2] < 1:
            raise ValueError(f"{name} has shape {levels.shape}; n_scales={S} needs "
                             f"({S + 3}, H, W) with H, W >= 1")
        if prev is not None and levels.shape[1:] != (prev[0] // 2, prev[1] // 2):
            raise ValueError(f"{name} has shape {levels.shape}: each octave must be half the "
                             f"previous one {prev}")
        _check_magnitude(levels, name)
        prev = levels.shape[1:]
    return ScaleSpace(list(gauss), first, S, float(scale_space.sigma), offset)


def _check_keypoints(keypoints) -> Keypoints:
    """Check caller-given :class:`Keypoints`: equal lengths, finite positions within
    ``MAX_COORDINATE``, positive finite sizes within it, finite angles."""
    if not isinstance(keypoints, Keypoints):
        raise TypeError(f"keypoints must be a Keypoints, got {type(keypoints).__name__}")
    xy = check_array(keypoints.xy, "keypoints.xy", ndim=2, dtypes="uif", allow_empty=True)
    if xy.shape[1] != 2:
        raise ValueError(f"keypoints.xy must have shape (K, 2), got {xy.shape}")
    K = xy.shape[0]
    fields = {}
    for name in ("size", "angle", "response", "octave", "layer"):
        a = check_array(getattr(keypoints, name), f"keypoints.{name}", ndim=1, dtypes="uif",
                        allow_empty=True)
        if a.shape != (K,):
            raise ValueError(f"keypoints.{name} has {a.shape[0]} entries for {K} keypoints")
        fields[name] = a
    for name, a in (("xy", xy), ("size", fields["size"]), ("angle", fields["angle"])):
        check_finite(a, f"keypoints.{name}")
        if K and np.abs(a).max() > MAX_COORDINATE:
            raise ValueError(f"keypoints.{name} holds values beyond {MAX_COORDINATE:.0f}, "
                             f"farther than any image cvcore can hold")
    if np.any(fields["size"] <= 0):
        raise ValueError("keypoints.size must be positive")
    return Keypoints(np.ascontiguousarray(xy, np.float32),
                     np.ascontiguousarray(fields["size"], np.float32),
                     np.ascontiguousarray(fields["angle"], np.float32),
                     np.ascontiguousarray(fields["response"], np.float32),
                     np.ascontiguousarray(fields["octave"], np.int32),
                     np.ascontiguousarray(fields["layer"], np.int32))


def _detect(scale_space, dogs, contrast_threshold, edge_threshold, upright,
            ws=None) -> Keypoints:
    """:func:`detect_keypoints` on checked arguments (scratch from ``ws`` if given)."""
    S = scale_space.n_scales
    threshold = 0.5 * contrast_threshold / S
    parts = []
    for o, levels in enumerate(scale_space.gauss):
        with threads_for(levels[0].size >= PARALLEL_MIN_PIXELS):
            if dogs is not None:
                dog = dogs[o]
            else:   # one octave at a time: the whole DoG pyramid is never held at once
                dog = _take(ws, "dog", (levels.shape[0] - 1,) + levels.shape[1:])
                _dog_into(levels, dog)
            ext = _extrema(dog, threshold, BORDER, ws)
            loc = _localize(dog, levels, ext, S, scale_space.sigma, contrast_threshold,
                            edge_threshold, upright)
        octave = o + scale_space.first_octave
        f = 2.0 ** octave
        xy = np.stack([loc.x * f, loc.y * f], axis=1) + scale_space.offset
        parts.append((xy, 2.0 * loc.scale * f, loc.angle,
                      loc.response, np.full(loc.x.shape, octave), loc.level))
    xy, size, angle, resp, octv, layer = (np.concatenate(p) for p in zip(*parts))
    kp = Keypoints(xy.astype(np.float32), size.astype(np.float32), angle.astype(np.float32),
                   resp.astype(np.float32), octv.astype(np.int32), layer.astype(np.int32))
    return _sort_unique(kp)


def _sort_unique(kp: Keypoints) -> Keypoints:
    """Drop exact duplicates; order by response (descending), then x, y, size, angle."""
    if len(kp) == 0:
        return kp
    order = np.lexsort((kp.angle, kp.size, kp.xy[:, 1], kp.xy[:, 0], -kp.response))
    kp = kp[order]
    key = np.stack([kp.xy[:, 0], kp.xy[:, 1], kp.size, kp.angle], axis=1)
    # duplicates share the response too, so they are adjacent after the sort
    dup = np.zeros(len(kp), bool)
    dup[1:] = np.all(key[1:] == key[:-1], axis=1)
    return kp[~dup]


def _levels_from_size(kp: Keypoints, scale_space: ScaleSpace):
    """Octave and level for keypoints whose level is unknown: the level whose blur is closest to
    ``size / 2`` (in scale steps), octave chosen so the level lies in 1..n_scales when possible."""
    S = scale_space.n_scales
    first = scale_space.first_octave
    n_oct = len(scale_space.gauss)
    v = S * np.log2(kp.size.astype(np.float64) / (2.0 * scale_space.sigma)) - first * S
    octave = np.floor((v - 0.5) / S).astype(np.int64)
    octave = np.clip(octave, 0, n_oct - 1)
    level = np.clip(np.round(v - octave * S), 0, S + 2).astype(np.int32)
    return (octave + first).astype(np.int32), level


def describe_keypoints(scale_space: ScaleSpace, keypoints: Keypoints, root_sift: bool = False) -> np.ndarray:
    """SIFT descriptors of keypoints (Lowe 2004, sec. 6.1).

    Around each keypoint, on the Gaussian level of its scale, a grid of 4 x 4 cells, each
    ``3 sigma`` wide, rotated to the keypoint's angle, collects gradient magnitudes weighted by a
    Gaussian of half the grid's width into 8 orientation bins (relative to the keypoint's angle), by
    trilinear interpolation. The 128-vector is normalised to unit length, clipped at 0.2 and
    normalised again.

    Parameters
    ----------
    keypoints : Keypoints
        From :func:`detect_keypoints`, or caller-given (:meth:`Keypoints.from_xy`; their level is chosen from
        ``size``).
    root_sift : bool
        Return RootSIFT instead (Arandjelovic & Zisserman 2012): the square root of the
        L1-normalised clipped descriptor, which also has unit L2 norm, so that Euclidean distance
        between RootSIFT vectors is the Hellinger distance between the SIFT histograms.

    Returns
    -------
    ndarray (K, 128) float32, order ``[row cell][col cell][orientation bin]``.
    """
    return _describe(check_scale_space(scale_space), _check_keypoints(keypoints),
                     bool(root_sift))


def _describe(scale_space, keypoints, root_sift) -> np.ndarray:
    """:func:`describe_keypoints` on checked arguments."""
    ks = _kernels()
    K = len(keypoints)
    out = np.zeros((K, ks.DESC_LENGTH), np.float32)
    if K == 0:
        return out
    first = scale_space.first_octave
    n_oct = len(scale_space.gauss)
    S = scale_space.n_scales
    octave = keypoints.octave.astype(np.int64)
    layer = keypoints.layer.astype(np.int64)
    unknown = (layer < 0) | (layer > S + 2) | (octave < first) | (octave >= first + n_oct)
    if unknown.any():
        o2, l2 = _levels_from_size(keypoints[unknown], scale_space)
        octave[unknown] = o2
        layer[unknown] = l2
    for o in range(n_oct):
        sel = np.flatnonzero(octave == o + first)
        if sel.size == 0:
            continue
        f = 2.0 ** (o + first)
        px = np.ascontiguousarray((keypoints.xy[sel, 0] - scale_space.offset) / f, np.float64)
        py = np.ascontiguousarray((keypoints.xy[sel, 1] - scale_space.offset) / f, np.float64)
        scale = np.ascontiguousarray(keypoints.size[sel] * 0.5 / f, np.float64)
        ang = np.ascontiguousarray(keypoints.angle[sel], np.float64)
        lev = np.ascontiguousarray(layer[sel], np.int64)
        block = np.zeros((sel.size, ks.DESC_LENGTH), np.float32)
        with threads_for(sel.size >= PARALLEL_MIN_KEYPOINTS):
            run_bands(ks.sift_descriptors, sel.size, DESCRIPTOR_PIXELS, scale_space.gauss[o],
                      px, py, lev, ang, scale, DESC_SCALE_FACTOR, DESC_CLIP, bool(root_sift),
                      block)
        out[sel] = block
    return out


def sift(image, n_features: int | None = None, n_scales: int = N_SCALES, sigma: float = SIGMA,
         contrast_threshold: float = CONTRAST_THRESHOLD, edge_threshold: float = EDGE_THRESHOLD,
         double_image: bool = True, upright: bool = False, root_sift: bool = False,
         keypoints: Keypoints | None = None):
    """Detect SIFT keypoints and compute their descriptors (Lowe 2004).

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3)
        uint8 (divided by 255), uint16 (by 65535) or float in [0, 1]; RGB is converted to grey
        with the BT.601 weights.
    n_features : int, optional
        Keep only the ``n_features`` keypoints of highest response.
    n_scales : int
        Scales per octave (default 3).
    sigma : float
        Blur of each octave's first level (default 1.6).
    contrast_threshold : float
        Reject keypoints with ``|D(x^)| < contrast_threshold / n_scales`` (default 0.04).
    edge_threshold : float
        Reject keypoints with principal-curvature ratio >= this (default 10).
    double_image : bool
        Upsample the input 2x first (default True, as OpenCV).
    upright : bool
        No orientation assignment: every angle is 0 (faster; for images known to be upright).
    root_sift : bool
        Return RootSIFT descriptors.
    keypoints : Keypoints, optional
        Describe these keypoints instead of detecting (the image's scale space is still built).

    Returns
    -------
    keypoints : Keypoints
        K keypoints, highest response first (ties broken by x, y, size, angle): deterministic.
    descriptors : ndarray (K, 128) float32
        Unit L2 norm (zero where a patch has no gradient at all).

    Notes
    -----
    Memory: the scale space, one DoG octave and its masks (~70 MB for a 640x480 image) are kept
    per calling thread between calls and reused (up to ``WORKSPACE_MAX_BYTES`` per thread),
    which saves the page faults of taking them afresh each call; the stage functions
    (:func:`gaussian_scale_space`, ...) allocate new arrays instead.

    Examples
    --------
    >>> img = np.zeros((64, 64), np.float32); img[20:44, 20:44] = 1.0
    >>> kp, desc = sift(img)
    >>> desc.shape[1], bool(np.allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-4))
    (128, True)
    """
    if n_features is not None:
        n_features = check_int(n_features, "n_features", minimum=1)
    n_scales = check_int(n_scales, "n_scales", minimum=1)
    sigma = check_positive(sigma, "sigma")
    contrast_threshold = check_nonnegative(contrast_threshold, "contrast_threshold")
    edge_threshold = check_positive(edge_threshold, "edge_threshold")
    if keypoints is not None and not isinstance(keypoints, Keypoints):
        raise TypeError("keypoints must be a cvcore.features.Keypoints "
                        f"(see Keypoints.from_xy), got {type(keypoints).__name__}")
    if keypoints is not None:
        keypoints = _check_keypoints(keypoints)
    check_limit(n_scales, MAX_SCALES, "n_scales", "every scale is another blurred copy of each "
                "octave (Lowe 2004 uses 3)")
    gray = _as_gray(image)
    ws = _workspace()
    # run_bands uses no more threads than there are free cores; results do not depend on it
    space = _scale_space(gray, np.shape(image), n_scales, sigma, bool(double_image), None, ws)
    if keypoints is None:
        keypoints = _detect(space, None, contrast_threshold, edge_threshold, bool(upright), ws)
    if n_features is not None:
        keypoints = keypoints[:n_features]
    return keypoints, _describe(space, keypoints, bool(root_sift))
