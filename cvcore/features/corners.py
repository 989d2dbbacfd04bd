"""Corner responses (Harris, Shi-Tomasi) and peak picking, with scikit-image's conventions.

Stages:

1. Scale the image to floats as scikit-image does (uint8 / 255, floats unchanged).
2. Derivatives by the Sobel operator in ``constant`` mode (zero outside):
   ``Ir = sobel(image, axis=0)``, ``Ic = sobel(image, axis=1)`` -- unnormalised, as
   ``skimage.feature.structure_tensor`` (which calls ``scipy.ndimage.sobel``).
3. Structure tensor: ``Arr = G * Ir^2``, ``Arc = G * Ir Ic``, ``Acc = G * Ic^2`` with a
   Gaussian ``G`` of ``sigma`` in ``constant`` mode (``skimage.feature.structure_tensor``).
4. Response per pixel: Harris ``det - k tr^2`` or ``2 det / (tr + eps)``; Shi-Tomasi the
   smaller eigenvalue.
5. :func:`corner_peaks`: local maxima over a ``(2 min_distance + 1)`` square above a threshold,
   away from the border, strongest first, then thinned so that no two are within
   ``min_distance`` (Chebyshev distance) -- ``skimage.feature.corner_peaks``.
"""
from __future__ import annotations

import numpy as np

from cvcore._bands import run_bands
from cvcore._threads import network_call
from cvcore._validate import (_check_real, check_array, check_choice, check_finite, check_int,
                              check_nonnegative, check_positive)

__all__ = ["harris", "shi_tomasi", "corner_peaks", "structure_tensor"]

HARRIS_K = 0.05   # Harris & Stephens 1988 use 0.04-0.06; scikit-image's default


def _scaled(image):
    from cvcore.features.edges import _scaled as scale
    return scale(image)[0]


def structure_tensor(image, sigma=1.0):
    """Smoothed structure tensor ``(Arr, Arc, Acc)``, each float32 (H, W), as
    ``skimage.feature.structure_tensor(image, sigma, order='rc')``."""
    from cvcore.preprocess.filters import DEFAULT_TRUNCATE, MODES, gaussian_plane, gradient_plane
    img = np.ascontiguousarray(_scaled(image))
    sigma = check_positive(sigma, "sigma")
    constant = MODES["constant"]
    ir = gradient_plane(img, 0, constant, 0.0)
    ic = gradient_plane(img, 1, constant, 0.0, one_kernel=True)    # one kernel to compile

    def smooth(a):
        return gaussian_plane(a, sigma, sigma, DEFAULT_TRUNCATE, constant, 0.0)

    rc = ir * ic
    # the derivatives are this function's own arrays: squared in place, two fresh 4 MB arrays
    # (1024^2) fewer to allocate and fault in (the same products, bit for bit)
    rr = np.multiply(ir, ir, out=ir)
    cc = np.multiply(ic, ic, out=ic)
    return smooth(rr), smooth(rc), smooth(cc)


def harris(image, method="k", k=HARRIS_K, eps=1e-6, sigma=1):
    """Harris corner response, as ``skimage.feature.corner_harris``.

    .. math:: R = \\det A - k \\, (\\operatorname{tr} A)^2 \\quad (method='k'), \\qquad
              R = 2 \\det A / (\\operatorname{tr} A + \\epsilon) \\quad (method='eps')

    with ``A`` the structure tensor of :func:`structure_tensor` (Harris & Stephens 1988;
    Noble 1989 for ``eps``).

    Parameters
    ----------
    image : (H, W) array, grey
    method : {'k', 'eps'}
    k : float
        Sensitivity, >= 0 (typically 0.04-0.06).
    eps : float
        Normalisation term of ``method='eps'``, > 0.
    sigma : float
        Gaussian integration scale, > 0.

    Returns
    -------
    response : (H, W) float32
    """
    from kernels.corners import harris_response
    check_choice(method, ("k", "eps"), "method")
    k = check_nonnegative(k, "k")
    eps = check_positive(eps, "eps")
    with network_call():            # no more threads than free cores (cvcore._threads)
        arr, arc, acc = structure_tensor(image, sigma)
        out = np.empty(arr.shape, np.float32)
        harris_response(arr, arc, acc, k, eps, method == "k", out)
    return out


def shi_tomasi(image, sigma=1):
    """Shi-Tomasi response (smaller eigenvalue of the structure tensor), as
    ``skimage.feature.corner_shi_tomasi``. Returns (H, W) float32."""
    from kernels.corners import shi_tomasi_response
    with network_call():
        arr, arc, acc = structure_tensor(image, sigma)
        out = np.empty(arr.shape, np.float32)
        shi_tomasi_response(arr, arc, acc, out)
    return out


def corner_peaks(response, min_distance=1, threshold_abs=None, threshold_rel=None,
                 exclude_border=True, num_peaks=None):
    """Coordinates of corner peaks, as ``skimage.feature.corner_peaks`` (with its
    ``p_norm=inf``, i.e. Chebyshev distance).

    Steps: a pixel is a candidate if it equals the maximum of its ``(2 min_distance + 1)``
    square (``nearest`` border) and exceeds ``max(threshold_abs, threshold_rel * max)``
    (``threshold_abs`` defaults to the response's minimum); none if the map is flat; the
    ``exclude_border`` frame (``min_distance`` when True) is dropped. Candidates are sorted by
    response, strongest first (ties in row-major order); then, as scikit-image does in two
    passes, points closer than ``min_distance`` (strictly, when ``min_distance > 1``) and then
    points within ``min_distance`` of a stronger kept point are removed.

    Parameters
    ----------
    response : (H, W) float array
    min_distance : int, >= 1
    threshold_abs, threshold_rel : float, optional
    exclude_border : bool or int
    num_peaks : int, optional
        Keep at most this many (the strongest).

    Returns
    -------
    coords : (K, 2) int64 array of (row, column), strongest first.

    Examples
    --------
    The four corners of a bright square (their responses are equal but for the last bits of
    float32 rounding, so their order is not part of the example):

    >>> import numpy as np
    >>> image = np.zeros((20, 20))
    >>> image[5:15, 5:15] = 1
    >>> sorted(corner_peaks(harris(image), min_distance=3).tolist())
    [[5, 5], [5, 14], [14, 5], [14, 14]]
    """
    from kernels.corners import greedy_spacing, max_cols_nearest, max_rows_nearest
    r = check_array(response, "response", ndim=2, dtypes="buif")
    check_finite(r, "response")
    r = np.ascontiguousarray(r, dtype=np.float32)
    if not np.isfinite(r).all():
        raise ValueError("response has values beyond the float32 range")
    d = check_int(min_distance, "min_distance", minimum=1)
    if isinstance(exclude_border, (bool, np.bool_)):
        border = d if exclude_border else 0
    else:
        border = check_int(exclude_border, "exclude_border", minimum=0)
    if threshold_abs is None:
        threshold = float(r.min())
    else:
        threshold = _check_real(threshold_abs, "threshold_abs")
    if threshold_rel is not None:
        rel = check_nonnegative(threshold_rel, "threshold_rel")
        threshold = max(threshold, rel * float(r.max()))
    if num_peaks is not None:
        num_peaks = check_int(num_peaks, "num_peaks", minimum=0)

    H, W = r.shape
    if r.size == 1:
        peak = r > threshold
    else:
        local_max = np.empty_like(r)
        rowmax = np.empty_like(r)        # separable: the row maximum, then the column maximum
        run_bands(max_rows_nearest, H, W * (2 * d + 1), r, d, rowmax)
        run_bands(max_cols_nearest, H, W * (2 * d + 1), rowmax, d, local_max)
        peak = r == local_max
        if peak.all():                   # a flat map has no peaks
            peak[:] = False
        peak &= r > threshold
    if border:
        peak[:border] = False
        peak[-border:] = False
        peak[:, :border] = False
        peak[:, -border:] = False

    coords = np.argwhere(peak).astype(np.int64)
    order = np.argsort(-r[peak], kind="stable")
    coords = np.ascontiguousarray(coords[order])
    keep = np.empty(len(coords), np.uint8)
    if d > 1:                             # skimage peak_local_max: spacing < min_distance
        greedy_spacing(coords, np.zeros((H, W), np.uint8), d - 1, keep)
        coords = coords[keep.astype(bool)]
    keep = np.empty(len(coords), np.uint8)
    greedy_spacing(np.ascontiguousarray(coords), np.zeros((H, W), np.uint8), d,   # corner_peaks:
                   keep)                                                          # <= min_distance
    coords = coords[keep.astype(bool)]
    if num_peaks is not None:
        coords = coords[:num_peaks]
    return coords

