"""Intensity adjustments: brightness, contrast, gamma, histogram equalisation, CLAHE, standardisation.

Value conventions
-----------------
* Point operations (:func:`adjust_brightness`, :func:`adjust_contrast`, :func:`adjust_gamma`) keep
  the image type, as scikit-image's ``adjust_gamma`` does: ``uint8`` and ``uint16`` images come back
  in their own type (rounded to the nearest level and clipped to the type's range), float images
  come back as ``float32`` on the 0..1 scale.
* :func:`equalize_hist` and :func:`equalize_adapthist` return ``float32`` in ``0..1`` whatever the
  input, as scikit-image's equalisers do.
* :func:`standardize` returns ``float32`` with zero mean and unit standard deviation.

References followed (and tested against)
----------------------------------------
* ``adjust_gamma``: ``skimage.exposure.adjust_gamma`` (``gain * x ** gamma`` on the 0..1 scale;
  for ``uint8`` a 256-entry table rounded with ``np.rint``).
* ``equalize_hist``: ``skimage.exposure.equalize_hist`` (the image's own cumulative histogram,
  linearly interpolated at the bin centres).
* ``equalize_adapthist``: OpenCV's ``cv2.createCLAHE(clipLimit, tileGridSize).apply``
  (``modules/imgproc/src/clahe.cpp``), bit for bit on ``uint8`` images.
"""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array, check_finite, check_int, check_nonnegative, check_pair
from cvcore.io.images import to_float, to_uint8

__all__ = ["adjust_brightness", "adjust_contrast", "adjust_gamma", "equalize_hist",
           "equalize_adapthist", "standardize"]

_TYPE_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
CLAHE_CLIP_LIMIT = 40.0     # cv2.createCLAHE default (modules/imgproc/src/clahe.cpp)
CLAHE_TILE_GRID = (8, 8)    # cv2.createCLAHE default, (rows, cols) of tiles
CLAHE_BINS = 256            # 8-bit levels


def _point_input(image):
    """Check an image for a point operation; return (float64 values, type max, output dtype)."""
    arr = check_array(image, "image", ndim=(2, 3), dtypes="uf")
    if arr.dtype.kind == "u":
        if arr.dtype not in _TYPE_MAX:
            raise TypeError(f"image has dtype {arr.dtype}; expected uint8, uint16 or float")
        return arr.astype(np.float64), _TYPE_MAX[arr.dtype], arr.dtype
    check_finite(arr, "image")
    return arr.astype(np.float64), 1.0, np.dtype(np.float32)


def _point_output(values, top, dtype):
    """Clip to ``0..top`` and return in ``dtype`` (rounded for integer types)."""
    values = np.clip(values, 0.0, top)
    if dtype.kind == "u":
        return np.rint(values).astype(dtype)
    return values.astype(np.float32)


def adjust_brightness(image, factor: float) -> np.ndarray:
    """Scale the brightness: ``out = clip(factor * image, 0, max)``.

    The multiplicative definition of torchvision's ``adjust_brightness`` (a blend with a black
    image); ``factor`` 0 gives black, 1 the original. Integer results are rounded (torchvision
    truncates).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), uint8, uint16 or float (0..1 scale)
    factor : float, >= 0

    Returns
    -------
    ndarray, same shape; uint8/uint16 stay so, float becomes float32
    """
    factor = check_nonnegative(factor, "factor")
    values, top, dtype = _point_input(image)
    return _point_output(values * factor, top, dtype)


def adjust_contrast(image, factor: float) -> np.ndarray:
    """Scale the contrast about the mean grey level: ``out = clip(m + factor * (image - m))``.

    ``m`` is the mean luminance of the whole image: the mean of :func:`rgb2gray` (scikit-image's
    BT.709-1 weights) for an ``(H, W, 3)`` or ``(H, W, 4)`` image, the plain mean otherwise, on
    the image's own scale. This is torchvision's ``adjust_contrast`` (a blend with a constant
    image at the mean grey), except that torchvision computes the mean with BT.601 weights.
    ``factor`` 0 gives a flat grey image, 1 the original.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), uint8, uint16 or float (0..1 scale)
    factor : float, >= 0

    Returns
    -------
    ndarray, same shape; uint8/uint16 stay so, float becomes float32
    """
    from cvcore.preprocess.color import RGB2GRAY_WEIGHTS

    factor = check_nonnegative(factor, "factor")
    values, top, dtype = _point_input(image)
    if values.ndim == 3 and values.shape[2] in (3, 4):
        mean = float(np.mean(values[:, :, :3] @ RGB2GRAY_WEIGHTS.astype(np.float64)))
    else:
        mean = float(np.mean(values))
    return _point_output(mean + factor * (values - mean), top, dtype)


def adjust_gamma(image, gamma: float = 1.0, gain: float = 1.0) -> np.ndarray:
    """Gamma correction, ``out = gain * image ** gamma`` on the 0..1 scale (power law).

    Follows ``skimage.exposure.adjust_gamma``: for ``uint8`` a table
    ``min(rint(255 * gain * (v / 255) ** gamma), 255)``; float images are not clipped (as in
    scikit-image). Where scikit-image truncates ``uint16`` results, this rounds and clips them.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), uint8, uint16 or float >= 0
    gamma : float, >= 0
        Below 1 brightens, above 1 darkens.
    gain : float, >= 0

    Returns
    -------
    ndarray, same shape; uint8/uint16 stay so, float becomes float32
    """
    gamma = check_nonnegative(gamma, "gamma")
    gain = check_nonnegative(gain, "gain")
    values, top, dtype = _point_input(image)
    if dtype == np.uint8:
        levels = np.linspace(0.0, 1.0, 256)
        table = np.minimum(np.rint(top * gain * levels ** gamma), top).astype(np.uint8)
        return table[np.asarray(image)]
    if values.min() < 0:
        raise ValueError("image has negative values; gamma correction needs image >= 0")
    out = gain * (values / top) ** gamma * top
    if dtype.kind == "u":
        return _point_output(out, top, dtype)
    return out.astype(np.float32)


def equalize_hist(image, nbins: int = 256) -> np.ndarray:
    """Histogram equalisation: map each value through the image's cumulative histogram.

    As ``skimage.exposure.equalize_hist``: for ``uint8`` / ``uint16`` images one bin per integer
    value from the image minimum to its maximum (``nbins`` is not used); for float images
    ``nbins`` equal bins spanning ``[min, max]``. The cumulative distribution
    ``cdf[k] = sum(hist[:k+1]) / N`` is then interpolated linearly at each value against the bin
    centres (``np.interp``: values below the first centre get ``cdf[0]``).

    Parameters
    ----------
    image : ndarray, any shape of 2 or 3 dimensions, uint8, uint16 or float (finite)
        All channels share one histogram, as in scikit-image.
    nbins : int, >= 1

    Returns
    -------
    ndarray, same shape, float32 in (0, 1]
    """
    from kernels.histogram import histogram_equal_bins

    nbins = check_int(nbins, "nbins", minimum=1)
    arr = check_array(image, "image", ndim=(2, 3), dtypes="uf")
    if arr.dtype.kind == "u":
        if arr.dtype not in _TYPE_MAX:
            raise TypeError(f"image has dtype {arr.dtype}; expected uint8, uint16 or float")
        lo = int(arr.min())
        hist = np.bincount((arr.ravel().astype(np.int64) - lo))
        centers = np.arange(lo, lo + hist.shape[0], dtype=np.float64)
    else:
        check_finite(arr, "image")
        values = np.ascontiguousarray(arr.ravel(), dtype=np.float64)
        first, last = float(values.min()), float(values.max())
        if first == last:           # np.histogram widens a zero range the same way
            first, last = first - 0.5, last + 0.5
        edges = np.linspace(first, last, nbins + 1)
        hist = np.zeros(nbins, dtype=np.int64)
        histogram_equal_bins(values, edges, hist)
        centers = (edges[:-1] + edges[1:]) / 2.0
    cdf = np.cumsum(hist) / float(hist.sum())
    out = np.interp(arr.ravel().astype(np.float64), centers, cdf)
    return out.reshape(arr.shape).astype(np.float32)


def equalize_adapthist(image, clip_limit: float = CLAHE_CLIP_LIMIT,
                       tile_grid=CLAHE_TILE_GRID) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (CLAHE), as OpenCV computes it.

    Stages (Zuiderveld, "Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV,
    1994; the details follow OpenCV's ``clahe.cpp``):

    1. The 8-bit image is cut into ``tile_grid`` = (rows, cols) tiles. When the size is not a
       multiple of the grid, the image is padded at the bottom and right, mirrored without
       repeating the edge (OpenCV's ``BORDER_REFLECT_101``), by ``rows - H % rows`` rows and
       ``cols - W % cols`` columns (a whole extra tile when that axis already divides: OpenCV's
       quirk, kept).
    2. Each tile's 256-bin histogram is clipped at ``int(clip_limit * tile_area / 256)`` (at least
       1); the clipped count is handed back evenly, the remainder one count per bin at a step of
       ``256 // remainder``. ``clip_limit`` 0 disables clipping (plain AHE).
    3. Each tile's table is ``rint(cdf(v) * 255 / tile_area)``.
    4. Each pixel is mapped through the tables of the four tiles whose centres surround it,
       weighted bilinearly by its distance to those centres (clamped at the borders).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        ``uint8`` is used as it is; float (0..1), ``uint16`` and ``bool`` images are first
        reduced to 8 bits with :func:`cvcore.to_uint8`. Channels are equalised independently
        (OpenCV takes one channel; scikit-image equalises colour through the Lab lightness).
    clip_limit : float, >= 0
        OpenCV's ``clipLimit``: a multiple of the mean bin count ``tile_area / 256``. (Not
        scikit-image's ``clip_limit``, which is a fraction in 0..1.)
    tile_grid : int or (int, int)
        Number of tiles along the rows and the columns (OpenCV's ``tileGridSize`` is (cols, rows)).

    Returns
    -------
    ndarray, same shape, float32: the 8-bit result divided by 255, so
    ``to_uint8(equalize_adapthist(x)) == cv2.createCLAHE(c, (cols, rows)).apply(x)``.
    """
    from kernels.histogram import clahe_interpolate, clahe_luts

    clip_limit = check_nonnegative(clip_limit, "clip_limit")
    tiles_y, tiles_x = check_pair(tile_grid, "tile_grid", minimum=1)
    arr = check_array(image, "image", ndim=(2, 3), dtypes="buf")
    if arr.dtype != np.uint8:
        arr = to_uint8(arr)
    planes = arr[:, :, None] if arr.ndim == 2 else arr
    H, W, C = planes.shape
    if H % tiles_y == 0 and W % tiles_x == 0:
        pad_y = pad_x = 0
    else:
        pad_y, pad_x = tiles_y - H % tiles_y, tiles_x - W % tiles_x
    tile_h, tile_w = (H + pad_y) // tiles_y, (W + pad_x) // tiles_x
    tile_area = tile_h * tile_w
    limit = max(int(clip_limit * tile_area / CLAHE_BINS), 1) if clip_limit > 0 else 0
    lut_scale = np.float32(CLAHE_BINS - 1) / np.float32(tile_area)
    out = np.empty((H, W, C), dtype=np.uint8)
    for c in range(C):
        plane = np.ascontiguousarray(planes[:, :, c])
        padded = np.ascontiguousarray(_pad_reflect101(plane, pad_y, pad_x))
        luts = np.empty((tiles_y, tiles_x, CLAHE_BINS), dtype=np.uint8)
        clahe_luts(padded, tile_h, tile_w, limit, lut_scale, luts)
        result = np.empty((H, W), dtype=np.uint8)
        clahe_interpolate(plane, luts, tile_h, tile_w, result)
        out[:, :, c] = result
    out = to_float(out)
    return out[:, :, 0] if arr.ndim == 2 else out


def _pad_reflect101(plane, pad_y, pad_x):
    """Pad at the bottom and right, mirrored about the edge pixel (``d c b | a b c d | c b a``),
    repeating the reflection when the pad is longer than the image (OpenCV's borderInterpolate)."""
    if pad_y == 0 and pad_x == 0:
        return plane
    rows = _mirror_indices(plane.shape[0], pad_y)
    cols = _mirror_indices(plane.shape[1], pad_x)
    return plane[rows[:, None], cols[None, :]]


def _mirror_indices(n, pad):
    idx = np.arange(n + pad)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * n - 2
    idx = idx % period
    return np.where(idx >= n, period - idx, idx)


def standardize(image, per_channel: bool = False) -> np.ndarray:
    """Shift and scale to zero mean and unit standard deviation: ``(x - mean) / std``.

    The mean and the (population, ``ddof=0``) standard deviation are taken over the whole image,
    or over each channel of an ``(H, W, C)`` image with ``per_channel=True``, computed in float64
    on the values as given (integers are not rescaled first; the result does not depend on the
    scale anyway). Where the standard deviation is 0 (a constant image or channel) the result is
    all zeros rather than NaN.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), bool, integer or float (finite)
    per_channel : bool

    Returns
    -------
    ndarray, same shape, float32
    """
    arr = check_array(image, "image", ndim=(2, 3), dtypes="buif")
    check_finite(arr, "image")
    if per_channel and arr.ndim != 3:
        raise ValueError(f"per_channel=True needs an (H, W, C) image, got shape {arr.shape}")
    values = arr.astype(np.float64)
    axes = (0, 1) if per_channel else None
    # Divide by the largest magnitude first, so that tiny (1e-200, subnormal) or huge (1e200)
    # values neither underflow nor overflow in the mean and the squares; then centre. A constant
    # group can still get deviations of ~1e-17 from rounding in the mean: it is recognised by its
    # range, not its deviation.
    constant = values.max(axis=axes, keepdims=True) == values.min(axis=axes, keepdims=True)
    scale = np.abs(values).max(axis=axes, keepdims=True)
    scaled = values / np.where(constant, 1.0, scale)
    centred = scaled - scaled.mean(axis=axes, keepdims=True)
    std = centred.std(axis=axes, keepdims=True)
    out = np.where(constant, 0.0, centred / np.where(constant, 1.0, std))
    return out.astype(np.float32)
