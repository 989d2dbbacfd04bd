"""Canny edge detector with scikit-image's conventions (``skimage.feature.canny``).

Stages (Canny 1986; the variant of scikit-image 0.19+):

1. Scale the image to floats the scikit-image way (uint8 / 255, int16 / 32767 clipped at -1,
   bool to 0/1, floats unchanged) and smooth it with a Gaussian of ``sigma`` in ``constant``
   mode (zero outside). The blur of the mask (all ones without a mask) divides the result,
   so pixels near the border or the mask edge are not darkened by the zeros beyond it.
2. Gradient by the Sobel operator (``scipy.ndimage.sobel``, ``reflect`` border):
   ``gr`` along rows, ``gc`` along columns, magnitude ``sqrt(gr^2 + gc^2)``.
3. Non-maximum suppression along the gradient with linear interpolation between the two
   neighbours that bracket the gradient direction (:func:`kernels.edges.nonmax_suppression`),
   together with the low threshold. The outer one-pixel frame (and, with a mask, the mask
   eroded by a 3 x 3 square) is never an edge.
4. Hysteresis: keep the 8-connected groups of surviving pixels that contain a pixel with
   magnitude ``>= high_threshold``.

Thresholds are magnitudes of the Sobel gradient of the 0..1-scaled image (or quantiles of the
magnitude with ``use_quantiles=True``); the defaults are 0.1 and 0.2 as in scikit-image.

Differences from scikit-image: everything runs in float32 (scikit-image uses float64 for integer
images), so a pixel whose interpolated neighbour ties with it to within rounding may come out
differently (tests: >= 99.99% of pixels agree on the shared test images); 64-bit integer images
are refused (as scikit-image does); negative thresholds are refused; the Gaussian's border mode
is fixed to scikit-image's default (``constant``, zero).
"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np

from cvcore._validate import check_array, check_finite, check_nonnegative, check_positive

__all__ = ["canny"]

DEFAULT_LOW = 0.1    # skimage.feature.canny: "10% of dtype's max" on the 0..1 scale
DEFAULT_HIGH = 0.2   # skimage.feature.canny: 20%

_NO_FLAGS = np.zeros(0, np.uint8)    # no NaN/infinity flags wanted from kernels.filters.gradient3x3
_WORKSPACES = threading.local()


def _workspace(shape):
    """This thread's scratch images for :func:`canny` at ``shape`` (H, W): ``planes`` (4, H, W)
    float32 (the scaled image then the magnitude, the smoothed image, ``gr``, ``gc``),
    ``state`` (H, W) uint8 (:mod:`kernels.edges`' map) and ``frame`` (H, W) uint8, 1 inside
    the outer one-pixel frame (the maskless ``mask`` of the non-maximum suppression, never
    written).

    Kept between calls, for the last shape only (about 18 bytes per pixel: 14 MB at
    768 x 1024). Fresh images cost more than the stages that fill them on the 2-core VM of
    ``benchmarks/README.md``: freed, glibc hands their pages back to the system, and the next
    call's first touch of each 4 KiB page is a fault (a Sobel gradient into three new images
    took 3.5 ms, into the same three images 0.6; "Session 11: Canny on uint8 at two threads").
    """
    work = getattr(_WORKSPACES, "work", None)
    if work is None or work.shape != shape:
        H, W = shape
        frame = np.zeros(shape, np.uint8)
        frame[1:-1, 1:-1] = 1
        work = _WORKSPACES.work = SimpleNamespace(
            shape=shape, planes=np.empty((4, H, W), np.float32),
            state=np.empty(shape, np.uint8), frame=frame, smoothing={})
    return work


#: Most sigmas whose smoothing set-up a workspace keeps (:func:`_smoothing`).
SMOOTHING_KEPT = 8


def _smoothing(work, sigma):
    """The Gaussian of ``sigma`` for the workspace's shape, kept in ``work.smoothing``: its
    taps (``size``, ``radius``, ``offsets``, ``weights`` as :func:`kernels.conv.correlate_separable`
    takes them), the ``constant`` border maps of the rows and columns, and the maskless
    bleed-over weight (``bleed``: :func:`_bleed_rows`). Building them took 0.09 ms of Python and
    small blurs a call, serial at any thread count. Raises, keeping nothing, for a sigma whose
    Gaussian is too wide (:func:`cvcore.preprocess.filters.gaussian_kernel1d`)."""
    from kernels.conv import border_map
    from cvcore.preprocess.filters import DEFAULT_TRUNCATE, MODES, _taps, gaussian_kernel1d
    found = work.smoothing.get(sigma)
    if found is None:
        gaussian = gaussian_kernel1d(sigma, DEFAULT_TRUNCATE)
        offsets, weights = _taps(gaussian)
        radius = gaussian.size // 2
        H, W = work.shape
        constant = MODES["constant"]
        if len(work.smoothing) >= SMOOTHING_KEPT:
            work.smoothing.clear()
        found = work.smoothing[sigma] = SimpleNamespace(
            size=gaussian.size, radius=radius, offsets=offsets, weights=weights,
            rows=border_map(H, radius, radius, constant),
            cols=border_map(W, radius, radius, constant),
            bleed=_bleed_rows(work.shape, None, sigma))
    return found


def _scaled(image):
    """Image as float32 on scikit-image's float scale, plus the dtype maximum used to scale
    user thresholds (scikit-image's ``dtype_limits(image)[1]``)."""
    arr = check_array(image, "image", ndim=2, dtypes="buif")
    kind = arr.dtype.kind
    if kind in "iu" and arr.dtype.itemsize == 8:
        raise TypeError(f"image has dtype {arr.dtype}; 64-bit integer images are not "
                        f"supported (their range does not fit float32), convert first")
    if kind == "f":
        check_finite(arr, "image")
        out = np.asarray(arr, np.float32)
        if not np.isfinite(out).all():
            raise ValueError("image has values beyond the float32 range (|x| > 3.4e38)")
        return out, 1.0
    if kind == "b":
        return arr.astype(np.float32), 1.0
    imax = float(np.iinfo(arr.dtype).max)
    out = arr.astype(np.float32) / np.float32(imax)
    if kind == "i":
        np.maximum(out, -1.0, out=out)
    return out, imax


def _eroded(mask):
    """The mask eroded by a 3 x 3 square, with False beyond the border
    (``scipy.ndimage.binary_erosion(mask, ones((3, 3)), border_value=0)``)."""
    H, W = mask.shape
    padded = np.zeros((H + 2, W + 2), bool)
    padded[1:-1, 1:-1] = mask
    out = np.ones((H, W), bool)
    for di in range(3):
        for dj in range(3):
            out &= padded[di:di + H, dj:dj + W]
    return out


def _bleed_rows(shape, mask, sigma):
    """scikit-image's bleed-over weight ``gaussian(mask, sigma, mode='constant') + eps`` (the
    share of each smoothed pixel that came from inside the image and the mask, float32), as
    ``(rows, row_of)``: the weight of image row ``i`` is ``rows[row_of[i]]`` (int64 ``row_of``,
    :func:`kernels.edges.divide_rows`).

    Without a mask (a mask of ones) the value at a pixel depends only on which taps fall
    outside the image: on its distance to each border, up to the Gaussian's radius ``r``. So
    the image of ones is blurred at most ``(2r + 1) x (2r + 1)`` large, and its rows and columns
    are repeated: row ``r`` (every tap inside) stands for every interior row, so ``rows`` has
    at most ``2r + 1`` rows. The numbers are those of blurring the full image of ones, bit for
    bit (the blur sums each output's taps in the same order wherever it is), so the edges stay
    scikit-image's exactly; a closed form (the product of the 1-D tap sums) differs from them
    in the last bit and moves edges. With a mask ``rows`` is the full weight image.
    """
    from cvcore.preprocess.filters import (DEFAULT_TRUNCATE, MODES, gaussian_kernel1d,
                                           gaussian_plane)
    eps = np.finfo(np.float32).eps
    H, W = shape
    if mask is not None:
        bleed = gaussian_plane(mask.astype(np.float32), sigma, sigma, DEFAULT_TRUNCATE,
                               MODES["constant"], 0.0)
        bleed += eps
        return bleed, np.arange(H, dtype=np.int64)
    radius = gaussian_kernel1d(sigma, DEFAULT_TRUNCATE).size // 2

    def pieces(n):
        """(small image size, index of the small image's pixel for each of the n pixels): the
        first and last ``radius`` pixels map one to one, every pixel between to the middle."""
        m = min(n, 2 * radius + 1)
        index = np.arange(n, dtype=np.int64)
        if n > m:
            index[radius:n - radius] = radius
            index[n - radius:] -= n - m
        return m, index

    (h, row_of), (w, col_of) = pieces(H), pieces(W)
    small = gaussian_plane(np.ones((h, w), np.float32), sigma, sigma, DEFAULT_TRUNCATE,
                           MODES["constant"], 0.0)
    small += eps
    return np.ascontiguousarray(small[:, col_of]), row_of


def _bleed(shape, mask, sigma):
    """The bleed-over weight of :func:`_bleed_rows` as a full (H, W) float32 image."""
    rows, row_of = _bleed_rows(shape, mask, sigma)
    return rows[row_of]


def canny(image, sigma=1.0, low_threshold=None, high_threshold=None, mask=None,
          use_quantiles=False):
    """Binary edge map by the Canny detector, as ``skimage.feature.canny`` (module docstring).

    Parameters
    ----------
    image : (H, W) array of bool, uint8/16/32, int8/16/32 or float
        Grey image; integers are scaled by their dtype's maximum.
    sigma : float
        Standard deviation of the Gaussian smoothing, > 0.
    low_threshold, high_threshold : float, optional
        Hysteresis thresholds on the gradient magnitude, in the image dtype's units (divided
        by the dtype's maximum, like scikit-image) or, with ``use_quantiles``, quantiles in
        [0, 1]. Defaults 0.1 and 0.2 of the 0..1-scaled magnitude.
    mask : (H, W) bool array, optional
        Where to look for edges; pixels next to a masked-out pixel are not edges.
    use_quantiles : bool
        Treat the thresholds as quantiles of the gradient magnitude.

    Returns
    -------
    edges : (H, W) bool array

    Examples
    --------
    The outline of a bright square, one pixel wide, on the square's own border pixels:

    >>> import numpy as np
    >>> image = np.zeros((16, 16))
    >>> image[4:12, 4:12] = 1
    >>> edges = canny(image)
    >>> int(edges.sum()), bool(edges[4, 4:12].all()), bool(edges[5:11, 5:11].any())
    (28, True, False)
    """
    from kernels.conv import correlate_separable
    from kernels.edges import EDGE, divide_rows, hysteresis, nonmax_suppression, scale_rows
    from kernels.filters import GRADIENT_BOTH, gradient3x3
    from cvcore._bands import run_bands
    from cvcore.preprocess.filters import MODES, SOBEL_SMOOTH, _gradient_maps

    arr = check_array(image, "image", ndim=2, dtypes="buif")
    if arr.dtype == np.uint8:
        img, dtype_max = None, float(np.iinfo(np.uint8).max)     # scaled below, in bands
    else:
        img, dtype_max = _scaled(arr)
    sigma = check_positive(sigma, "sigma")
    if not isinstance(use_quantiles, (bool, np.bool_)):
        raise TypeError(f"use_quantiles must be True or False, got {use_quantiles!r}")
    thresholds = []
    for name, value, default in (("low_threshold", low_threshold, DEFAULT_LOW),
                                 ("high_threshold", high_threshold, DEFAULT_HIGH)):
        if value is None:
            thresholds.append(default)
            continue
        value = check_nonnegative(value, name)
        if use_quantiles:
            if value > 1.0:
                raise ValueError(f"{name} is a quantile with use_quantiles=True and must be in "
                                 f"[0, 1], got {value}")
        else:
            value /= dtype_max
        thresholds.append(value)
    low, high = thresholds
    if high < low:
        raise ValueError(f"low_threshold ({low_threshold}) must not exceed high_threshold "
                         f"({high_threshold})")
    H, W = arr.shape
    if mask is not None:
        m = check_array(mask, "mask", ndim=2, dtypes="bui")
        if m.shape != arr.shape:
            raise ValueError(f"mask has shape {m.shape}, image has shape {arr.shape}")
        m = m.astype(bool)
    work = _workspace((H, W))
    blur = _smoothing(work, sigma)                           # refuses a too wide sigma
    if img is None:
        # _scaled's numbers (the cast, then the division) in one banded pass.
        img = work.planes[0]
        run_bands(scale_rows, H, W, arr, dtype_max, img)
    if mask is None:
        eroded = work.frame
        masked = np.ascontiguousarray(img)
    else:
        eroded = _eroded(m).astype(np.uint8)
        masked = np.where(m, img, np.float32(0.0))

    # Stage 1: normalised Gaussian smoothing (bleed-over compensation): the kernels of
    # cvcore.preprocess.filters.gaussian_plane and gradient_magnitude_plane, into this thread's
    # workspace. Each stage's kernel runs in bands of rows on Numba's thread count
    # (cvcore._bands).
    smoothed = work.planes[1]
    run_bands(correlate_separable, H, W * 2 * blur.weights.size,
              masked, blur.offsets, blur.weights, blur.offsets, blur.weights, blur.size,
              blur.rows, blur.cols, blur.radius, 0.0, 0.0, smoothed)
    weights, row_of = blur.bleed if mask is None else _bleed_rows((H, W), m, sigma)
    run_bands(divide_rows, H, W, smoothed, weights, row_of)
    # Stage 2: Sobel gradient and its magnitude, one pass (reflect border). The scaled image
    # is not read again: its plane takes the magnitude.
    gr, gc, magnitude = work.planes[2], work.planes[3], work.planes[0]
    rows, cols = _gradient_maps(smoothed, MODES["reflect"])
    s0, s1, s2 = SOBEL_SMOOTH
    run_bands(gradient3x3, H, 4 * W, smoothed, smoothed.view(np.uint32), rows, cols,
              s0, s1, s2, GRADIENT_BOTH, gr, gc, magnitude, _NO_FLAGS)
    if use_quantiles:
        low, high = np.percentile(magnitude, [100.0 * low, 100.0 * high])
    # Stage 3: non-maximum suppression with both thresholds (NONE / WEAK / STRONG).
    state = work.state
    run_bands(nonmax_suppression, H, 8 * W,
              gr, gc, magnitude, eroded, float(low), float(high), state)
    # Stage 4: hysteresis, in bands (each band's floods stay in its rows), then from the
    # seams between bands through the whole image (kernels.edges.hysteresis).
    starts = np.zeros(H, np.uint8)
    run_bands(hysteresis, H, W, state, starts)
    if starts[1:].any():
        hysteresis(state, starts, -1, -1)
    return state == EDGE
