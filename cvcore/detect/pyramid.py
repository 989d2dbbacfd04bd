"""Image pyramids for sliding-window detection.

A detector trained on one window size finds larger objects by shrinking the image: level ``i``
is the image resized by ``1 / scale**i`` (Dalal & Triggs 2005, sec. 5; Viola & Jones 2004, sec.
5.1 scale the features instead, OpenCV's cascade resizes the image as here). A window found at
``(x, y)`` of level ``i`` is the box ``(x, y, x + w, y + h) * scale**i`` of the image.

The resize is OpenCV's bit-exact bilinear interpolation (``INTER_LINEAR_EXACT``) of uint8
images, the one both of its detectors use for their pyramids, so that every level equals
OpenCV's pixel for pixel (:func:`resize_exact`).
"""
from __future__ import annotations

import math

import numpy as np

from cvcore._validate import check_array, check_int, check_pair

__all__ = ["resize_exact", "pyramid_scales", "image_pyramid", "check_scale_factor"]

#: OpenCV's ``HOGDescriptor::nlevels`` default: at most this many pyramid levels.
MAX_LEVELS = 64


def _kernels():
    from kernels import detect as k
    return k


def check_scale_factor(scale) -> float:
    """A pyramid's scale step must be a finite number > 1 (else the pyramid never ends)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"scale factor must be a number > 1, got {scale!r}")
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 1.0):
        raise ValueError(f"scale factor must be greater than 1, got {scale}")
    return scale


def check_uint8_image(image, name="image") -> np.ndarray:
    """A uint8 ``(H, W)`` or ``(H, W, C)`` image as a C-contiguous ``(H, W, C)`` array."""
    arr = check_array(image, name, ndim=(2, 3))
    if arr.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 (the detectors work on 8-bit images, as "
                        f"OpenCV's), got {arr.dtype}; convert with np.round(x * 255)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def axis_coefficients(n_in, n_out):
    """Source offsets and 8-bit weights of OpenCV's ``interpolationLinear::getCoeffs``.

    ``f = (1 / (n_out / n_in)) * (i + 0.5) - 0.5`` (in double, as OpenCV's softdouble),
    offset ``floor(f)``, second weight ``round((f - floor f) * 256)`` (half to even); where
    ``f < 0`` or ``floor(f) >= n_in - 1`` the edge pixel is taken alone.
    """
    scale = 1.0 / (n_out / n_in)
    f = scale * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5
    ofs = np.floor(f)
    coef = np.rint((f - ofs) * 256).astype(np.int64)
    ofs = ofs.astype(np.int64)
    left = ofs < 0
    right = ofs >= n_in - 1
    ofs[left], coef[left] = 0, 0
    ofs[right], coef[right] = n_in - 1, 0
    if n_in == 1:
        ofs[:], coef[:] = 0, 0
    return ofs, coef


def resize_exact(image, output_shape) -> np.ndarray:
    """Resize a uint8 image as ``cv2.resize(image, (W, H), interpolation=INTER_LINEAR_EXACT)``.

    Parameters
    ----------
    image : (H, W) or (H, W, C) uint8
    output_shape : (int, int)
        ``(H_out, W_out)``, each >= 1.

    Returns
    -------
    (H_out, W_out) or (H_out, W_out, C) uint8, equal to OpenCV's bit for bit.

    Examples
    --------
    >>> import numpy as np
    >>> resize_exact(np.array([[0, 255], [255, 0]], np.uint8), (1, 1))
    array([[128]], dtype=uint8)
    """
    arr = check_uint8_image(image)
    if not isinstance(output_shape, (tuple, list)) or len(output_shape) != 2:
        raise TypeError(f"output_shape must be (H, W), got {output_shape!r}")
    Ho = check_int(output_shape[0], "output height", minimum=1)
    Wo = check_int(output_shape[1], "output width", minimum=1)
    H, W, C = arr.shape
    out = np.empty((Ho, Wo, C), np.uint8)
    if (Ho, Wo) == (H, W):
        out[...] = arr
    else:
        xofs, xcoef = axis_coefficients(W, Wo)
        yofs, ycoef = axis_coefficients(H, Ho)
        _kernels().resize_linear_exact(np.ascontiguousarray(arr), xofs, xcoef, yofs, ycoef, out)
    return out[:, :, 0] if np.ndim(image) == 2 else out


def pyramid_scales(image_size, window_size, scale_factor, max_levels: int = MAX_LEVELS):
    """Scales ``1, s, s^2, ...`` at which the window still fits the shrunk image.

    OpenCV's ``HOGDescriptor::detectMultiScale`` rule: level ``i`` exists while
    ``round(W / s^i) >= window_w`` and ``round(H / s^i) >= window_h`` (at most ``max_levels``).

    Parameters
    ----------
    image_size, window_size : (width, height)
    scale_factor : float > 1

    Raises
    ------
    ValueError
        The window is larger than the image (no level at all), or ``scale_factor <= 1``.
    """
    scale_factor = check_scale_factor(scale_factor)
    max_levels = check_int(max_levels, "max_levels", minimum=1)
    W, H = check_pair(image_size, "image_size")
    ww, wh = check_pair(window_size, "window_size")
    if W < ww or H < wh:
        raise ValueError(f"the {ww}x{wh} detection window (width x height) is larger than the "
                         f"{W}x{H} image")
    scales = []
    scale = 1.0
    for _ in range(max_levels):
        if round(W / scale) < ww or round(H / scale) < wh:
            break
        scales.append(scale)
        scale *= scale_factor
    return scales


def image_pyramid(image, window_size, scale_factor, max_levels: int = MAX_LEVELS):
    """Yield ``(scale, level_image)`` for every level of :func:`pyramid_scales`.

    Level sizes are ``round(W / scale) x round(H / scale)`` (half to even, as cvRound); the
    first level is the image itself.
    """
    arr = check_uint8_image(image)
    H, W = arr.shape[:2]
    for scale in pyramid_scales((W, H), window_size, scale_factor, max_levels):
        size = (round(H / scale), round(W / scale))
        level = arr if size == (H, W) else resize_exact(arr, size)
        yield scale, (level[:, :, 0] if np.ndim(image) == 2 else level)
