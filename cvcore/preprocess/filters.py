"""Linear and rank filters: correlation, convolution, Gaussian, derivative filters, median.

Stages and conventions
----------------------
* Every filter works on a grey ``(H, W)`` or multi-channel ``(H, W, C)`` image of any real
  dtype (bool, integers, floats); it is converted to float32 (values kept: uint8 200 -> 200.0)
  and the result is float32. A multi-channel image is filtered channel by channel with the same
  2-D kernel (channels are never mixed).
* Coordinates are (row, column). ``correlate`` computes
  ``out[i, j] = sum_{u, v} k[u, v] * in[i + u - u0, j + v - v0]`` with the kernel centre
  ``(u0, v0) = (kh // 2, kw // 2)``, SciPy ``ndimage``'s ``origin=0``. ``convolve`` is
  correlation with the kernel flipped on both axes and the centre at ``((kh - 1) // 2,
  (kw - 1) // 2)`` -- SciPy's shift for even sizes -- so that for every size
  ``out[i, j] = sum k[u, v] * in[i - u + kh // 2, j - v + kw // 2]``.
* Border modes are SciPy ``ndimage``'s (``reflect``, ``mirror``, ``nearest``, ``constant``
  with ``cval``, ``wrap``); see :mod:`kernels.conv` for the index mapping. They hold for any
  kernel larger than the image (a 15 x 15 kernel on a 1 x 1 image).
* A 2-D kernel of rank 1 (``k = outer(ky, kx)`` within float tolerance, found by SVD) is applied
  as two 1-D passes; any other kernel by the general 2-D loop over a padded copy.
* Built on the 1-D passes, exactly as ``scipy.ndimage`` builds them: ``gaussian`` (one pass per
  axis, axis 0 first), ``sobel`` / ``prewitt`` / ``scharr`` (derivative along ``axis``, then
  smoothing along the other axis). ``laplace`` is the 2-D correlation with the 5-point
  kernel, equal to SciPy's sum of two second-difference passes.
"""
from __future__ import annotations

import numbers

import numpy as np

from cvcore._validate import (as_float_image, check_array, check_choice, check_finite,
                              check_float32_scalar, check_limit, check_pair, check_positive)
from cvcore._bands import run_bands

__all__ = ["correlate", "convolve", "gaussian", "sobel", "scharr", "prewitt", "laplace",
           "median"]

MODES = {"reflect": 0, "mirror": 1, "nearest": 2, "constant": 3, "wrap": 4}

# A 2-D kernel counts as rank 1 when the rank-1 part of its SVD leaves a residual whose
# absolute sum is below this fraction of sum|k|: the separable result then differs from the
# exact one by at most RANK1_TOL * sum|k| * max|image|, far inside the 1e-5 promise.
RANK1_TOL = 1e-7

# scipy.ndimage.correlate / convolve drop the taps with |w| <= DBL_EPSILON from the footprint
# (NI_Correlate in scipy/ndimage/src/ni_filters.c); we do the same so the results agree exactly.
SCIPY_ZERO_TAP = np.finfo(np.float64).eps

# Gaussian: radius = int(truncate * sigma + 0.5) taps each side (scipy.ndimage.gaussian_filter).
DEFAULT_TRUNCATE = 4.0
# Longest Gaussian radius built (taps each side; sigma up to ~8000 at truncate 4): a wider blur
# than any image that fits in memory, whose kernel would only cost time and memory.
MAX_GAUSSIAN_RADIUS = 32768

# Largest median window (values): the selection network costs about n log2(n)^2 / 4
# compare-exchanges per pixel (~6900 at 21x21 = 441, ~25 000 at 33x33), and building it is
# Python work that grows alike, so a 2000x2000 window never returned. Wider medians: shrink
# the image first, or use scipy.ndimage.median_filter.
MAX_MEDIAN_WINDOW = 1089

# 1-D derivative and smoothing taps of the gradient filters (correlation order):
DERIVATIVE = (-1.0, 0.0, 1.0)        # central difference, scipy.ndimage.sobel / prewitt
SOBEL_SMOOTH = (1.0, 2.0, 1.0)       # Sobel & Feldman 1968; scipy.ndimage.sobel
PREWITT_SMOOTH = (1.0, 1.0, 1.0)     # Prewitt 1970; scipy.ndimage.prewitt
SCHARR_SMOOTH = (3.0, 10.0, 3.0)     # Scharr 2000; OpenCV cv::Scharr (unnormalised, like Sobel)
LAPLACE_KERNEL = ((0.0, 1.0, 0.0),   # sum of [1, -2, 1] along each axis (scipy.ndimage.laplace)
                  (1.0, -4.0, 1.0),
                  (0.0, 1.0, 0.0))


# --------------------------------------------------------------------------- validation


def _image(image, name="image", check_float32=True):
    """Image as C-contiguous float32 (H, W) or (H, W, C), finite, non-empty.

    ``check_float32=False`` skips the NaN/infinity pass over a float32 input: for callers
    whose kernel tests the values as it reads them and then calls :func:`check_finite`."""
    if isinstance(image, np.ndarray) and image.dtype == np.float32 and not check_float32:
        return as_float_image(image, name, finite=False)
    if isinstance(image, np.ndarray) and image.dtype == np.float32:
        # The common case, checked in one vectorised pass instead of NumPy's two (isfinite
        # writes a bool image, all() reads it): 0.09 -> 0.04 ms at 1024 x 1024. The same
        # kernel as the geometry functions' check: compiled once for both.
        from kernels.finite import all_finite_bits
        arr = as_float_image(image, name, finite=False)
        if not all_finite_bits(arr.reshape(-1).view(np.uint32)):
            check_finite(arr, name)       # raises, naming NaN or infinity
        return arr
    arr = as_float_image(image, name)   # finite, and float64 within float32's range
    wider = not isinstance(image, np.ndarray) or image.dtype.itemsize > 8
    if wider and not np.isfinite(arr).all():   # long double beyond float32's range -> inf
        raise ValueError(f"{name} has values beyond the float32 range (|x| > 3.4e38)")
    return arr


def _mode(mode):
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a string, got {type(mode).__name__}")
    check_choice(mode, MODES, "mode")
    return MODES[mode]


def _cval(cval):
    return check_float32_scalar(cval, "cval")   # 1e300 would become inf in the float32 kernels


def _kernel(kernel):
    k = check_array(kernel, "kernel", ndim=2, dtypes="buif")
    check_finite(k, "kernel")
    k = np.array(k, dtype=np.float64)
    k[np.abs(k) <= SCIPY_ZERO_TAP] = 0.0
    return k


def _per_channel(image, fn):
    """Apply ``fn`` (2-D float32 -> 2-D float32) to a grey image or to each channel.

    The kernels run in bands of rows on up to Numba's thread count
    (:func:`cvcore._bands.run_bands`: bands are taken dynamically, so on a busy
    machine a thread that gets no core takes no band and nobody waits for it)."""
    if image.ndim == 2:
        return fn(image)
    out = np.empty(image.shape, np.float32)
    for c in range(image.shape[2]):
        out[:, :, c] = fn(np.ascontiguousarray(image[:, :, c]))
    return out


# --------------------------------------------------------------------------- 2-D planes


def _taps(kernel):
    """Non-zero taps of a kernel: (row offsets, column offsets, float32 weights), or for a 1-D
    kernel (offsets, weights)."""
    k = np.asarray(kernel, dtype=np.float32)
    idx = np.nonzero(k)
    weights = np.ascontiguousarray(k[idx])
    return tuple(np.ascontiguousarray(i, dtype=np.int64) for i in idx) + (weights,)


def _correlate_general(plane, kernel, centre, mode, cval):
    from kernels.conv import border_map, correlate2d
    kh, kw = kernel.shape
    cy, cx = centre
    tu, tv, tw = _taps(kernel)
    rows = border_map(plane.shape[0], cy, kh - 1 - cy, mode)
    cols = border_map(plane.shape[1], cx, kw - 1 - cx, mode)
    out = np.empty(plane.shape, np.float32)
    run_bands(correlate2d, out.shape[0], out.shape[1] * tw.size,
              plane, tu, tv, tw, kh, kw, rows, cols, int(cx), float(cval), out)
    return out


_ONE = np.ones(1, np.float32)


def _separable(plane, ky, kx, cy, cx, mode, cval, cval_second):
    """Axis-0 pass with ``ky`` then axis-1 pass with ``kx`` (one fused kernel call); the second
    pass sees ``cval_second`` beyond the border (SciPy's chained filters use ``cval``; the exact
    2-D correlation with ``outer(ky, kx)`` needs ``cval * sum(ky)``)."""
    from kernels.conv import border_map, correlate_separable
    yu, yw = _taps(ky)
    xv, xw = _taps(kx)
    H, W = plane.shape
    rows = border_map(H, cy, len(ky) - 1 - cy, mode)
    cols = border_map(W, cx, len(kx) - 1 - cx, mode)
    out = np.empty(plane.shape, np.float32)
    run_bands(correlate_separable, H, W * (yw.size + xw.size),
              plane, yu, yw, xv, xw, len(kx), rows, cols, int(cx), float(cval),
              float(cval_second), out)
    return out


def _pass(plane, k1d, axis, centre, mode, cval):
    """One 1-D correlation along ``axis`` (``scipy.ndimage.correlate1d`` with origin 0 when
    ``centre == len(k1d) // 2``)."""
    if axis == 0:
        return _separable(plane, k1d, _ONE, centre, 0, mode, cval, cval)
    return _separable(plane, _ONE, k1d, 0, centre, mode, cval, cval)


def _rank1_factors(k):
    """``(ky, kx)`` with ``outer(ky, kx) == k`` within RANK1_TOL, or None when k is not rank 1.

    A kernel far from rank 1 is told without the SVD (~40 us, 5% of a 1024 x 1024 5 x 5
    correlation) by its 2 x 2 minors: if ``k = outer(a, b) + E`` passes the test below
    (``sum|E| <= t = RANK1_TOL * sum|k|``, so every ``|E_ij| <= t``), each minor
    ``k_pr k_qs - k_ps k_qr`` is at most ``4 (max|k| + t) t + 2 t^2`` in size (the minors of
    ``outer(a, b)`` are 0); a minor twice that size means not rank 1."""
    if min(k.shape) == 1:
        return None                      # a single row/column: the general loop is one pass
    size = np.abs(k)
    t = RANK1_TOL * size.sum()
    minors = k[:-1, :-1] * k[1:, 1:] - k[:-1, 1:] * k[1:, :-1]
    if np.abs(minors).max() > 2.0 * (4.0 * (size.max() + t) * t + 2.0 * t * t):
        return None
    u, s, vt = np.linalg.svd(k)
    scale = np.sqrt(s[0])
    ky = u[:, 0] * scale
    kx = vt[0] * scale
    if np.abs(k - np.outer(ky, kx)).sum() <= RANK1_TOL * np.abs(k).sum():
        return ky, kx
    return None


def _correlate_plane_fn(k, centre, mode, cval):
    factors = _rank1_factors(k)
    if factors is not None:
        ky, kx = factors
        cval2 = cval * float(ky.sum())
        return lambda p: _separable(p, ky, kx, centre[0], centre[1], mode, cval, cval2)
    k32 = np.ascontiguousarray(k, dtype=np.float32)
    return lambda p: _correlate_general(p, k32, centre, mode, cval)


# --------------------------------------------------------------------------- public API


def correlate(image, kernel, mode="reflect", cval=0.0):
    """2-D correlation of an image with a kernel, as ``scipy.ndimage.correlate``.

    .. math:: out[i, j] = \\sum_{u, v} k[u, v] \\, in[i + u - \\lfloor kh/2 \\rfloor,
              j + v - \\lfloor kw/2 \\rfloor]

    Parameters
    ----------
    image : (H, W) or (H, W, C) array of bool, int or float
        Converted to float32; each channel is filtered with the same kernel.
    kernel : (kh, kw) array
        Any size, odd or even (larger than the image too). Rank-1 kernels take the separable
        path automatically.
    mode : {'reflect', 'mirror', 'nearest', 'constant', 'wrap'}
        Border handling, as in SciPy ``ndimage``.
    cval : float
        The value beyond the border for ``mode='constant'``.

    Returns
    -------
    out : float32 array, the shape of ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> correlate(np.array([[0, 1, 2]]), np.array([[1, 0, -1]]), mode="nearest")
    array([[-1., -2., -1.]], dtype=float32)
    """
    img = _image(image)
    k = _kernel(kernel)
    m, cval = _mode(mode), _cval(cval)
    centre = (k.shape[0] // 2, k.shape[1] // 2)
    return _per_channel(img, _correlate_plane_fn(k, centre, m, cval))


def convolve(image, kernel, mode="reflect", cval=0.0):
    """2-D convolution, as ``scipy.ndimage.convolve``: correlation with the flipped kernel.

    .. math:: out[i, j] = \\sum_{u, v} k[u, v] \\, in[i - u + \\lfloor kh/2 \\rfloor,
              j - v + \\lfloor kw/2 \\rfloor]

    For even kernel sizes this is SciPy's convention (the flipped kernel's centre moves one
    cell up/left). Parameters and result as :func:`correlate`.

    Examples
    --------
    >>> import numpy as np
    >>> convolve(np.array([[0, 1, 2]]), np.array([[1, 0, -1]]), mode="nearest")
    array([[1., 2., 1.]], dtype=float32)
    """
    img = _image(image)
    k = _kernel(kernel)[::-1, ::-1]
    m, cval = _mode(mode), _cval(cval)
    centre = ((k.shape[0] - 1) // 2, (k.shape[1] - 1) // 2)
    return _per_channel(img, _correlate_plane_fn(np.ascontiguousarray(k), centre, m, cval))


def _sigma_pair(sigma):
    if isinstance(sigma, (numbers.Real, np.floating, np.integer)) and not isinstance(sigma, bool):
        s = check_positive(sigma, "sigma")
        return s, s
    try:
        a, b = sigma
    except (TypeError, ValueError):
        raise TypeError(f"sigma must be a positive number or a pair (sigma_rows, sigma_cols), "
                        f"got {sigma!r}") from None
    return check_positive(a, "sigma[0]"), check_positive(b, "sigma[1]")


def gaussian_kernel1d(sigma, truncate=DEFAULT_TRUNCATE):
    """The normalised 1-D Gaussian taps of ``scipy.ndimage.gaussian_filter`` (float64).

    .. math:: g[x] = e^{-x^2 / (2 \\sigma^2)} / \\sum_x e^{-x^2 / (2 \\sigma^2)},
              \\quad x = -r..r, \\; r = \\lfloor truncate \\cdot \\sigma + 0.5 \\rfloor
    """
    radius = int(truncate * sigma + 0.5)
    check_limit(radius, MAX_GAUSSIAN_RADIUS,
                f"the Gaussian radius int(truncate * sigma + 0.5) for sigma={sigma:.4g}",
                "such a blur is wider than any image that fits in memory")
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    # (x / sigma)^2, not x^2 / sigma^2: a tiny positive sigma squares to 0 (1e-200^2), and the
    # centre tap became 0 / 0 = NaN, making the whole image NaN; this way it is exp(0) = 1.
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def gaussian(image, sigma, truncate=DEFAULT_TRUNCATE, mode="reflect", cval=0.0):
    """Gaussian blur, equal to ``scipy.ndimage.gaussian_filter`` on each channel.

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
    sigma : float or (float, float)
        Standard deviation in pixels, one for both axes or ``(rows, cols)``; must be > 0.
    truncate : float
        The kernel radius is ``int(truncate * sigma + 0.5)`` on each axis (SciPy's rule).
    mode, cval
        Border handling as in :func:`correlate`.

    Returns
    -------
    out : float32 array, the shape of ``image``.
    """
    img = _image(image)
    sy, sx = _sigma_pair(sigma)
    truncate = check_positive(truncate, "truncate")
    m, cval = _mode(mode), _cval(cval)
    return _per_channel(img, lambda p: gaussian_plane(p, sy, sx, truncate, m, cval))


def gaussian_plane(plane, sy, sx, truncate, mode_code, cval):
    """:func:`gaussian` of a validated (H, W) float32 C-contiguous plane (no checks; for
    callers inside cvcore that have validated already). ``mode_code`` is ``MODES[mode]``."""
    gy = gaussian_kernel1d(sy, truncate)
    gx = gaussian_kernel1d(sx, truncate)
    return _separable(plane, gy, gx, gy.size // 2, gx.size // 2, mode_code, cval, cval)


_NO_PLANE = np.empty((0, 0), np.float32)     # an output the gradient kernel does not write
_NO_FLAGS = np.zeros(0, np.uint8)            # no NaN/infinity flags wanted from the kernel


def _per_channel_flagged(img, fn, flagged):
    """:func:`_per_channel` for kernels that test the rows they read for NaN or infinity:
    ``fn(plane, bad)`` gets ``bad``, one uint8 flag per row (an empty array, "no flags wanted",
    when ``flagged`` is False), and the error naming NaN or infinity is raised once every plane
    is done, so the image needs no separate pass before the kernel."""
    met = []

    def plane(p):
        bad = np.zeros(p.shape[0], np.uint8) if flagged else _NO_FLAGS
        out = fn(p, bad)
        if bad.any():
            met.append(True)
        return out

    out = _per_channel(img, plane)
    if met:
        check_finite(img, "image")       # raises, naming NaN or infinity
    return out


def _gradient_maps(plane, mode_code):
    """Row and column border maps of a 3 x 3 gradient filter (centre (1, 1))."""
    from kernels.conv import border_map
    return (border_map(plane.shape[0], 1, 1, mode_code),
            border_map(plane.shape[1], 1, 1, mode_code))


def gradient_plane(plane, axis, mode_code, cval, smooth=SOBEL_SMOOTH, bad=_NO_FLAGS,
                   one_kernel=False):
    """Derivative of a validated (H, W) float32 plane along ``axis`` with the given smoothing
    taps (no checks; for callers inside cvcore). As ``scipy.ndimage.sobel``: the derivative
    along ``axis`` first, then the smoothing along the other axis.

    One pass of :func:`kernels.filters.gradient3x3`, except for ``constant`` mode with a
    non-zero ``cval``: there SciPy's pass order changes the result (the second pass sees
    ``cval``, not the first pass's border), so the two 1-D passes run in SciPy's order.

    ``bad``: (H,) uint8 zeros, set where the kernel met NaN or infinity in the plane (only
    for ``axis=1`` on the one-pass path: see :func:`_gradient`), or empty.

    ``axis=1`` runs :func:`kernels.filters.gradient_columns3x3` (one loop per row, ~20%
    faster), or with ``one_kernel`` the same numbers from :func:`kernels.filters.gradient3x3`,
    for a caller that also takes ``axis=0`` and would rather compile one kernel (0.3 s less
    on a first call: Harris)."""
    if mode_code == MODES["constant"] and cval != 0.0:
        d = np.asarray(DERIVATIVE, np.float32)
        s = np.asarray(smooth, np.float32)
        if axis == 0:
            return _separable(plane, d, s, 1, 1, mode_code, cval, cval)
        return _pass(_pass(plane, d, 1, 1, mode_code, cval), s, 0, 1, mode_code, cval)
    from kernels.filters import GRADIENT_COLUMNS, GRADIENT_ROWS, gradient3x3, gradient_columns3x3
    rows, cols = _gradient_maps(plane, mode_code)
    out = np.empty(plane.shape, np.float32)
    s0, s1, s2 = (float(t) for t in smooth)
    if axis == 0 or one_kernel:
        which = GRADIENT_ROWS if axis == 0 else GRADIENT_COLUMNS
        run_bands(gradient3x3, out.shape[0], out.shape[1], plane, plane.view(np.uint32),
                  rows, cols, s0, s1, s2, which, out, out, _NO_PLANE, bad)
    else:
        run_bands(gradient_columns3x3, out.shape[0], out.shape[1], plane, plane.view(np.uint32),
                  rows, cols, s0, s1, s2, out, bad)
    return out


def gradient_magnitude_plane(plane, mode_code, cval, smooth=SOBEL_SMOOTH, bad=_NO_FLAGS):
    """``(gr, gc, magnitude)`` of a validated (H, W) float32 plane: the derivatives along rows
    and columns (:func:`gradient_plane`) and ``hypot(gr, gc)``, all float32, in one pass of
    :func:`kernels.filters.gradient3x3` (no checks; for callers inside cvcore). ``bad`` as
    in :func:`gradient_plane` (set on the one-pass path)."""
    if mode_code == MODES["constant"] and cval != 0.0:
        gr = gradient_plane(plane, 0, mode_code, cval, smooth)
        gc = gradient_plane(plane, 1, mode_code, cval, smooth)
        return gr, gc, np.hypot(gr, gc)
    from kernels.filters import GRADIENT_BOTH, gradient3x3
    rows, cols = _gradient_maps(plane, mode_code)
    gr = np.empty(plane.shape, np.float32)
    gc = np.empty(plane.shape, np.float32)
    mag = np.empty(plane.shape, np.float32)
    s0, s1, s2 = (float(t) for t in smooth)
    run_bands(gradient3x3, mag.shape[0], 4 * mag.shape[1],
              plane, plane.view(np.uint32), rows, cols, s0, s1, s2, GRADIENT_BOTH, gr, gc, mag,
              bad)
    return gr, gc, mag


def gradient_magnitude_only(plane, mode_code, cval, smooth=SOBEL_SMOOTH, bad=_NO_FLAGS):
    """``hypot(gr, gc)`` of a validated (H, W) float32 plane, as the third result of
    :func:`gradient_magnitude_plane` bit for bit, without writing the two derivative images
    (two thirds of the output traffic of a memory-bound pass). No checks; ``bad`` as in
    :func:`gradient_plane`."""
    if mode_code == MODES["constant"] and cval != 0.0:
        return gradient_magnitude_plane(plane, mode_code, cval, smooth, bad)[2]
    from kernels.filters import GRADIENT_BOTH, gradient3x3
    rows, cols = _gradient_maps(plane, mode_code)
    mag = np.empty(plane.shape, np.float32)
    s0, s1, s2 = (float(t) for t in smooth)
    run_bands(gradient3x3, mag.shape[0], 4 * mag.shape[1],
              plane, plane.view(np.uint32), rows, cols, s0, s1, s2, GRADIENT_BOTH,
              _NO_PLANE, _NO_PLANE, mag, bad)
    return mag


def _gradient(image, axis, mode, cval, smooth):
    m, cval = _mode(mode), _cval(cval)
    if axis is not None and (isinstance(axis, bool) or axis not in (0, 1)):
        raise ValueError(f"axis must be 0 (rows), 1 (columns) or None (magnitude), got {axis!r}")
    # For the derivative along columns and the magnitude, the one-pass kernel tests every
    # image row for NaN/infinity as it reads it: no separate pass over a float32 image then
    # (about a fifth of a 1024 x 1024 Sobel); the error is raised after the kernel.
    in_kernel = axis != 0 and not (m == MODES["constant"] and cval != 0.0)
    img = _image(image, check_float32=not in_kernel)

    def plane(p, bad):
        if axis is None:
            return gradient_magnitude_only(p, m, cval, smooth, bad)
        return gradient_plane(p, axis, m, cval, smooth, bad)

    return _per_channel_flagged(img, plane, in_kernel)


def sobel(image, axis=None, mode="reflect", cval=0.0):
    """Sobel derivative along ``axis`` (0: rows, 1: columns) or, for ``axis=None``, the
    gradient magnitude ``hypot(sobel(axis=0), sobel(axis=1))``.

    Equal to ``scipy.ndimage.sobel(image, axis)``: the derivative taps ``[-1, 0, 1]`` along
    ``axis`` then the smoothing taps ``[1, 2, 1]`` along the other axis (unnormalised, so a
    unit ramp gives 8). Returns float32 of the image's shape.
    """
    return _gradient(image, axis, mode, cval, SOBEL_SMOOTH)


def prewitt(image, axis=None, mode="reflect", cval=0.0):
    """Prewitt derivative (taps ``[-1, 0, 1]`` x ``[1, 1, 1]``), as ``scipy.ndimage.prewitt``;
    ``axis=None`` gives the magnitude. See :func:`sobel`."""
    return _gradient(image, axis, mode, cval, PREWITT_SMOOTH)


def scharr(image, axis=None, mode="reflect", cval=0.0):
    """Scharr derivative (taps ``[-1, 0, 1]`` x ``[3, 10, 3]``), unnormalised like OpenCV's
    ``cv2.Scharr`` (SciPy has no ``scharr``; scikit-image's divides by 32). With
    ``mode='mirror'`` it equals ``cv2.Scharr(image, cv2.CV_32F, dx, dy)`` (OpenCV's default
    border is ``mirror``). ``axis=None`` gives the magnitude. See :func:`sobel`."""
    return _gradient(image, axis, mode, cval, SCHARR_SMOOTH)


def laplace(image, mode="reflect", cval=0.0):
    """Discrete Laplacian, as ``scipy.ndimage.laplace``: the 5-point stencil
    ``in[i-1, j] + in[i+1, j] + in[i, j-1] + in[i, j+1] - 4 in[i, j]``."""
    img = _image(image)
    m, cval = _mode(mode), _cval(cval)
    k32 = np.asarray(LAPLACE_KERNEL, dtype=np.float32)
    return _per_channel(img, lambda p: _correlate_general(p, k32, (1, 1), m, cval))


# --------------------------------------------------------------------------- median


def batcher_pairs(n):
    """Compare-exchange pairs of Batcher's odd-even merge sort for ``n`` slots.

    Built for the next power of two ``N >= n``; pairs touching slots ``>= n`` are dropped:
    if those slots start at +inf they never move (a pair ``(a, b)`` with ``b >= n`` keeps the
    finite value in ``a``), so the remaining pairs sort the first ``n`` slots.
    Batcher 1968, "Sorting networks and their applications".
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return pairs


def selection_network(n, rank):
    """The comparators of :func:`batcher_pairs` that can change slot ``rank``, as (P, 2) int64.

    Found backwards: a comparator matters if it touches a slot that later matters.
    """
    needed = {rank}
    kept = []
    for a, b in reversed(batcher_pairs(n)):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    kept.reverse()
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def presorted_median_network(k):
    """The median of a ``k`` x ``k`` window whose columns are already sorted, as a straight-line
    list of min/max steps: ``[(a, b, keep_min, keep_max), ...]`` on slots ``v * 8 + t``
    (column ``v``, rank ``t`` within the column), and the slot that ends with the median.

    Built from Batcher's network on 64 slots (``k <= 8`` columns of up to 8; unused slots
    act as +inf), pruned twice. Forwards, with the order known so far (a partial order on the
    slots, starting from the sorted columns): a comparator whose outcome is known is dropped,
    or, if it would surely swap, replaced by renaming the two slots. Backwards, from the
    median's slot: only the comparators (and of those, only the min or max halves) that can
    still reach it are kept. For 5 x 5 this leaves 82 comparators, 140 min/max, against 113
    comparators (226 min/max) of the pruned network on unsorted values
    (:func:`selection_network`); sorting the columns costs 9 more comparators per pixel,
    shared by the five windows that contain a column. Used to write
    :func:`kernels.filters.median5x5` (the test checks the kernel's lines against it).
    """
    size, block, rank = 64, 8, k * k // 2
    real = [v * block + t for v in range(k) for t in range(k)]
    le = np.eye(size, dtype=bool)                 # le[a, b]: slot a <= slot b is known
    for v in range(k):
        for t in range(k - 1):
            le[v * block + t, v * block + t + 1] = True
    pads = np.setdiff1d(np.arange(size), real)
    le[np.ix_(real, pads)] = True                 # unused slots hold +inf
    for m in range(size):                         # transitive closure
        le |= le[:, m:m + 1] & le[m:m + 1, :]
    name = list(range(size))                      # physical slot of each network position
    kept = []
    for a, b in batcher_pairs(size):
        pa, pb = name[a], name[b]
        if le[pa, pb]:
            continue                              # already in order
        if le[pb, pa]:
            name[a], name[b] = pb, pa             # surely swaps: rename instead
            continue
        kept.append((pa, pb))
        below_a, below_b = le[:, pa].copy(), le[:, pb].copy()
        above_a, above_b = le[pa, :].copy(), le[pb, :].copy()
        le[:, pa], le[pa, :] = below_a & below_b, above_a | above_b     # pa := min
        le[:, pb], le[pb, :] = below_a | below_b, above_a & above_b     # pb := max
        le[pa, pa] = le[pb, pb] = le[pa, pb] = True
        le[pb, pa] = False
    result = name[rank]
    live, steps = {result}, []
    for a, b in reversed(kept):
        need_min, need_max = a in live, b in live
        if need_min or need_max:
            steps.append((a, b, need_min, need_max))
            live.update((a, b))
    return steps[::-1], result


_NETWORKS: dict = {}


def median(image, size=3, mode="reflect", cval=0.0):
    """Median over a ``size`` window, equal to ``scipy.ndimage.median_filter(image, size)``
    on each channel.

    The window value kept is the sorted element ``kh * kw // 2`` (for an even window, the
    upper of the two middle values, as SciPy).

    Parameters
    ----------
    image : (H, W) or (H, W, C) array
    size : int or (int, int)
        Window height and width (>= 1).
    mode, cval
        Border handling as in :func:`correlate`.
    """
    from kernels.conv import border_map
    from kernels.filters import median3x3, median5x5, rank_network
    kh, kw = check_pair(size, "size", minimum=1)
    # The 3 x 3 kernel tests every image row for NaN/infinity as it reads it: no separate
    # pass over a float32 image then; the error is raised after the kernel. (In the 5 x 5
    # kernel the test saved 2% of the time and cost 0.16 s of its first compile.)
    in_kernel = (kh, kw) == (3, 3)
    img = _image(image, check_float32=not in_kernel)
    check_limit(kh * kw, MAX_MEDIAN_WINDOW, f"the median window {kh}x{kw} (values)",
                "the sorting network per pixel grows as n log^2 n (use a smaller window, a "
                "smaller image or scipy.ndimage.median_filter)")
    m, cval = _mode(mode), _cval(cval)
    n = kh * kw
    rank = n // 2
    cy, cx = kh // 2, kw // 2

    def plane(p, bad):
        rows = border_map(p.shape[0], cy, kh - 1 - cy, m)
        cols = border_map(p.shape[1], cx, kw - 1 - cx, m)
        out = np.empty(p.shape, np.float32)
        H, W = p.shape
        if (kh, kw) == (3, 3):     # sorted-columns identity, fewer ops
            run_bands(median3x3, H, 2 * W, p, p.view(np.uint32), rows, cols, float(cval), out, bad)
        elif (kh, kw) == (5, 5):   # sorted columns, network in registers
            run_bands(median5x5, H, 16 * W, p, rows, cols, float(cval), out)
        else:
            if (n, rank) not in _NETWORKS:
                _NETWORKS[(n, rank)] = selection_network(n, rank)
            pairs = _NETWORKS[(n, rank)]
            run_bands(rank_network, H, W * len(pairs),
                      p, kh, kw, rows, cols, cx, float(cval), pairs, rank, out)
        return out

    return _per_channel_flagged(img, plane, in_kernel)
