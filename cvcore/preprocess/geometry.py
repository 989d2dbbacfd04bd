"""Geometric transforms: resize, affine and perspective warps.

Conventions
-----------
* Pixel centres sit at integer coordinates; ``x`` is the column, ``y`` the row (OpenCV's
  convention, also scikit-image's ``transform`` module).
* Sizes are ``(rows, cols)`` = ``(H, W)`` (NumPy order). OpenCV's ``dsize`` is ``(W, H)``.
* Matrices map input coordinates to output coordinates, ``(x', y', 1) ~ M @ (x, y, 1)``, exactly
  as ``cv2.warpAffine`` / ``cv2.warpPerspective`` without ``WARP_INVERSE_MAP``; the kernels invert
  them and sample the input at ``M^-1 @ (x', y', 1)`` for every output pixel.
* Output type: ``uint8`` and ``uint16`` images come back in their own type (rounded to the nearest
  level, clipped); everything else comes back as ``float32``. Grey ``(H, W)`` and multi-channel
  ``(H, W, C)`` images are both accepted.

Agreement (tested): ``resize`` equals ``cv2.resize`` with ``INTER_NEAREST``, ``INTER_LINEAR`` and
``INTER_AREA`` on float32 images (to float rounding). ``warp_affine`` / ``warp_perspective`` equal
``skimage.transform.warp`` (exact positions) and agree with ``cv2.warpAffine`` /
``cv2.warpPerspective`` up to OpenCV's position rounding: OpenCV quantises source positions to
1/32 pixel (``INTER_BITS = 5``), cvcore does not.
"""
from __future__ import annotations

import functools
import importlib
import math
import sys

import numpy as np

from cvcore._team import run_team
from cvcore._validate import check_array, check_choice, check_finite, check_pair, _check_real

__all__ = ["resize", "resize_center_crop", "warp_affine", "warp_perspective", "INTERPOLATIONS", "BORDER_MODES"]

INTERPOLATIONS = ("nearest", "bilinear", "area")
WARP_INTERPOLATIONS = ("nearest", "bilinear")
BORDER_MODES = ("constant", "nearest", "reflect", "mirror", "wrap")   # SciPy ndimage names
MAX_OUTPUT_PIXELS = 1 << 31   # refuse outputs that cannot be addressed or allocated sanely
MAX_CONDITION = 1e12          # a matrix worse conditioned than this counts as singular
EXPONENT_ALL_ONES = 0x7F800000   # float32 bits & 0x7fffffff at or above this: NaN or infinity
_FLOAT32 = np.dtype(np.float32)   # NumPy's one native float32 dtype object


def _prepare(image, check_input=True):
    """Validate an image; return (float32 channel planes (C, H, W) C-contiguous, was 2-D, output
    dtype). The kernels work plane by plane so that their inner loops run along a row.

    ``check_input=False`` leaves the finiteness of float32 input to the caller: the resize
    kernels check it as they read the rows (:mod:`kernels.resize`), the block mean on its
    output (its every output is a positive-weight sum of its inputs, each input pixel counted,
    so a NaN or infinity in the input cannot vanish from the output)."""
    if (type(image) is np.ndarray and image.dtype is _FLOAT32 and image.ndim == 2
            and image.size and image.flags.c_contiguous and not check_input):
        return image[None], True, _FLOAT32    # the common case, as check_array would pass it
    arr = check_array(image, "image", ndim=(2, 3), dtypes="buif")
    if arr.dtype != np.float32:
        check_finite(arr, "image")
    if arr.ndim == 3 and arr.shape[2] == 0:
        raise ValueError(f"image has no channels (shape {arr.shape})")
    out_dtype = arr.dtype if arr.dtype in (np.uint8, np.uint16) else np.dtype(np.float32)
    planes = arr[None] if arr.ndim == 2 else np.moveaxis(arr, 2, 0)
    planes = np.ascontiguousarray(planes, dtype=np.float32)
    if check_input and arr.dtype == np.float32:
        from kernels.finite import all_finite_bits

        if not all_finite_bits(planes.reshape(-1).view(np.uint32)):
            check_finite(planes, "image")       # raises, naming NaN or infinity
    return planes, arr.ndim == 2, out_dtype


def _finish(out, was_2d, dtype):
    """Channel planes (C, h, w) back to an image (h, w) or (h, w, C) of the output dtype."""
    if dtype.kind == "u":
        top = np.iinfo(dtype).max
        out = np.rint(np.clip(out, 0, top)).astype(dtype)
    return out[0] if was_2d else np.ascontiguousarray(np.moveaxis(out, 0, 2))


def _output_shape(output_shape, default, channels):
    if output_shape is None:
        return default
    if (type(output_shape) is tuple and len(output_shape) == 2 and type(output_shape[0]) is int
            and type(output_shape[1]) is int and output_shape[0] >= 1 and output_shape[1] >= 1):
        rows, cols = output_shape              # the usual case, without check_pair's 2 us
    else:
        rows, cols = check_pair(output_shape, "output_shape", minimum=1)
    if rows * cols * channels > MAX_OUTPUT_PIXELS:
        raise ValueError(f"output_shape {(rows, cols)} is too large")
    return rows, cols


@functools.lru_cache(maxsize=64)      # a pipeline resizes to the same few sizes again and again
def _nearest_table(n_in, n_out):
    """Nearest table of one axis: ``idx[d] = min(floor(d * scale), n_in - 1)``, int32 (n_out,)
    (OpenCV's ``INTER_NEAREST``, ``scale = 1 / (n_out / n_in)``)."""
    scale = 1.0 / (n_out / n_in)      # OpenCV: scale_x = 1. / inv_scale_x
    idx = np.floor(np.arange(n_out) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1).astype(np.int32)


def _two_tap_table(n_in, s, f):
    """Two-tap table, tap-major (2, n_out): ``(1 - f)`` at ``s`` and ``f`` at ``s + 1``; a tap
    outside the image moves onto the edge pixel with ``f = 0`` (OpenCV's clamping). ``s`` int64,
    ``f`` float32 (OpenCV computes the fractions in float)."""
    f = np.where((s < 0) | (s >= n_in - 1), np.float32(0.0), f).astype(np.float32)
    s = np.clip(s, 0, n_in - 1)
    idx = np.stack([s, np.minimum(s + 1, n_in - 1)]).astype(np.int32)
    return idx, np.stack([np.float32(1.0) - f, f])


def _linear_table(n_in, n_out):
    """``INTER_LINEAR``: source coordinate ``(d + 0.5) * scale - 0.5`` rounded to float32, taps
    at its floor and the next pixel."""
    scale = 1.0 / (n_out / n_in)
    f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f)
    return _two_tap_table(n_in, s.astype(np.int64), f - s)


def _area_linear_table(n_in, n_out):
    """``INTER_AREA`` when an axis grows: ``s = floor(d * scale)``, ``f = (d + 1) - (s + 1) /
    scale`` in float32, wrapped to [0, 1) (0 where not positive)."""
    scale = 1.0 / (n_out / n_in)
    d = np.arange(n_out)
    s = np.floor(d * scale).astype(np.int64)
    f = ((d + 1) - (s + 1) * (1.0 / scale)).astype(np.float32)
    f = np.where(f <= 0, np.float32(0.0), f - np.floor(f)).astype(np.float32)
    return _two_tap_table(n_in, s, f)


@functools.lru_cache(maxsize=64)
def _axis_table(n_in, n_out, interpolation, area_mode_linear):
    """Sampling table of one axis, tap-major: (indices int32, weights float32), each (taps,
    n_out); see :mod:`kernels.resize` and the twin :mod:`kernels.reference.resize`. Cached
    (the tables depend on the sizes only; the kernels never write them)."""
    if interpolation == "bilinear":
        return _linear_table(n_in, n_out)
    if area_mode_linear:
        return _area_linear_table(n_in, n_out)
    from kernels.resize import area_table

    scale = 1.0 / (n_out / n_in)
    taps = int(math.ceil(scale)) + 1
    idx = np.zeros((n_out, taps), dtype=np.int32)
    w = np.zeros((n_out, taps), dtype=np.float32)
    area_table(n_in, n_out, scale, idx, w)
    return np.ascontiguousarray(idx.T), np.ascontiguousarray(w.T)


@functools.lru_cache(maxsize=64)
def _row_table(n_in, n_out, interpolation, area_mode_linear):
    """The table of :func:`_axis_table` output-major, (n_out, taps) C-contiguous each, as
    :func:`kernels.resize.resize_separable` reads its row table (cached: the two copies cost
    6-12 us a call at 700-1536 rows)."""
    idx, w = _axis_table(n_in, n_out, interpolation, area_mode_linear)
    return np.ascontiguousarray(idx.T), np.ascontiguousarray(w.T)


@functools.lru_cache(maxsize=64)
def _column_blocks(n_in, n_out, interpolation, area_mode_linear):
    """The column table of :func:`_axis_table` for the vector horizontal pass of
    :func:`kernels.resize.resize_separable`: per block of ``LANES`` outputs the start ``base``
    of a window of ``2 * LANES`` input columns holding all the block's taps, and each tap's
    index relative to it, ``rel`` (taps, blocks * LANES) int32. Empty (no blocks) where the
    input row is shorter than a window or a block's taps spread wider (shrinking by more than
    about 1.9): the kernel then gathers one value at a time."""
    from kernels.resize import LANES

    idx, _ = _axis_table(n_in, n_out, interpolation, area_mode_linear)
    taps = idx.shape[0]
    blocks = n_out // LANES if n_in >= 2 * LANES else 0
    grouped = idx[:, :blocks * LANES].reshape(taps, blocks, LANES).astype(np.int64)
    base = np.minimum(grouped.min(axis=(0, 2)), n_in - 2 * LANES)
    rel = grouped - base[None, :, None]
    if blocks and rel.max() >= 2 * LANES:
        blocks, base, rel = 0, base[:0], rel[:, :0]
    return (base.astype(np.int32),
            np.ascontiguousarray(rel.reshape(taps, blocks * LANES), dtype=np.int32))


def _scan_found_bad(top, bands):
    """Whether the finiteness scans the bands stored in ``top`` (at their first rows, each the
    largest ``bits & 0x7fffffff``) met a NaN or an infinity: only ``top[0]`` for one band, else
    :func:`kernels.finite.all_finite_bits` over ``top`` (0.2 us where ``top.max()`` cost 1.1
    of a 50 us resize)."""
    if bands == 1:
        return top[0] >= EXPONENT_ALL_ONES
    finite = sys.modules.get("kernels.finite") or importlib.import_module("kernels.finite")
    return not finite.all_finite_bits(top)


def resize(image, output_shape, interpolation: str = "bilinear") -> np.ndarray:
    """Resize an image to ``output_shape = (rows, cols)``, as ``cv2.resize`` does.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        bool, integer or float (finite). ``uint8`` / ``uint16`` results are rounded back to the
        input type; others are float32.
    output_shape : int or (int, int)
        ``(rows, cols)`` of the result, each >= 1.
    interpolation : {"nearest", "bilinear", "area"}
        * ``"nearest"``: ``out[y, x] = in[floor(y * H / h), floor(x * W / w)]`` (clamped), which
          is ``cv2.INTER_NEAREST`` (not pixel-centre aligned; a shift of up to half a pixel).
        * ``"bilinear"``: two-tap linear interpolation at source position
          ``(x + 0.5) * W / w - 0.5`` (pixel centres aligned, borders clamped) in each axis:
          ``cv2.INTER_LINEAR``, also PyTorch's ``interpolate(size=..., mode="bilinear",
          align_corners=False)`` (without antialias). It does not antialias: when shrinking by
          more than 2 it skips pixels; use ``"area"``.
        * ``"area"``: when neither axis grows, every output pixel is the mean of the input area it
          covers, partially covered pixels weighted by the overlap (``cv2.INTER_AREA``; a box
          antialiasing filter; for integer factors a plain block mean). When an axis grows,
          OpenCV's INTER_AREA two-tap rule, which is close to nearest with linear blending at the
          cell boundaries.

    Returns
    -------
    ndarray, shape (rows, cols) or (rows, cols, C)
    """
    k = sys.modules.get("kernels.resize") or importlib.import_module("kernels.resize")
    check_choice(interpolation, INTERPOLATIONS, "interpolation")
    if output_shape is None:
        raise TypeError("output_shape is required: (rows, cols)")
    planes, was_2d, dtype = _prepare(image, check_input=False)
    C, H, W = planes.shape
    rows, cols = _output_shape(output_shape, None, C)
    out = np.empty((C, rows, cols), dtype=np.float32)
    integer_shrink = H % rows == 0 and W % cols == 0
    if integer_shrink and (interpolation == "area" or (
            interpolation == "bilinear" and H == 2 * rows and W == 2 * cols)):
        # block means; halving with bilinear samples half-way between pixel pairs, which is the
        # 2x2 block mean (OpenCV switches INTER_LINEAR to INTER_AREA there too); no tables
        # every input pixel is in one block, weight 1 / (ky kx): the kernel scans the output
        top = np.zeros(rows, dtype=np.uint32)      # each band's scan, at its first row
        bands = run_team(k.block_mean_rows, rows, rows * cols * C, planes, out, top)
        if _scan_found_bad(top, bands):
            check_finite(planes, "image")   # a finite input may still overflow to infinity
        return _finish(out, was_2d, dtype)
    # the other kernels scan the input rows they own for NaN and infinity as they read them
    bits = planes.view(np.uint32)
    top = np.zeros(rows, dtype=np.uint32)          # each band's scan, at its first row
    if interpolation == "nearest":
        # uint64 pairs of values for the 2x shrink (little-endian: the low half is the first)
        paired = W % 2 == 0 and sys.byteorder == "little"
        pairs = bits.view(np.uint64) if paired else np.empty((C, H, 0), np.uint64)
        bands = run_team(k.nearest_rows, rows, rows * cols * C, bits, pairs,
                         _nearest_table(H, rows), _nearest_table(W, cols), out.view(np.uint32),
                         top)
    else:
        # OpenCV averages areas only when no axis grows (scale_x >= 1 and scale_y >= 1)
        growing = rows > H or cols > W
        row_idx, row_w = _row_table(H, rows, interpolation, growing)
        col_idx, col_w = _axis_table(W, cols, interpolation, growing)
        col_base, col_rel = _column_blocks(W, cols, interpolation, growing)
        # the column pass gathers: run it on the smaller of the input rows and output rows
        bands = run_team(k.resize_separable, rows, rows * cols * C * row_idx.shape[1], planes,
                         bits, row_idx, row_w, col_idx, col_w, col_base, col_rel, rows < H, out,
                         top)
    if _scan_found_bad(top, bands):
        check_finite(planes, "image")
    return _finish(out, was_2d, dtype)


def _check_matrix(M, name, shape):
    arr = check_array(M, name, ndim=2, dtypes="iuf")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    check_finite(arr, name)
    full = np.eye(3)
    full[:shape[0]] = arr
    if not np.linalg.cond(full) < MAX_CONDITION:
        raise ValueError(f"{name} is singular (not invertible): {arr.tolist()}")
    return np.ascontiguousarray(np.linalg.inv(full), dtype=np.float64)


def _warp(image, Minv, output_shape, interpolation, mode, cval, affine=False):
    from kernels import warp as warp_kernels

    check_choice(interpolation, WARP_INTERPOLATIONS, "interpolation")
    check_choice(mode, BORDER_MODES, "mode")
    cval = _check_real(cval, "cval")
    planes, was_2d, dtype = _prepare(image)
    C, H, W = planes.shape
    rows, cols = _output_shape(output_shape, (H, W), C)
    out = np.empty((C, rows, cols), dtype=np.float32)
    if affine:      # Minv[2] == (0, 0, 1): row-wise positions and runs (kernels.warp)
        kernel = (warp_kernels.warp_affine_nearest if interpolation == "nearest" else
                  warp_kernels.warp_affine_bilinear)
    else:
        kernel = (warp_kernels.warp_nearest if interpolation == "nearest" else
                  warp_kernels.warp_bilinear)
    mode_code = getattr(warp_kernels, f"MODE_{mode.upper()}")
    run_team(kernel, rows, rows * cols * C * (4 if interpolation == "bilinear" else 1), planes,
             Minv, mode_code, np.float32(cval), out)
    return _finish(out, was_2d, dtype)


def warp_affine(image, M, output_shape=None, interpolation: str = "bilinear",
                mode: str = "constant", cval: float = 0.0) -> np.ndarray:
    """Apply an affine map, the way ``cv2.warpAffine(image, M, (cols, rows))`` does.

    .. math:: \\begin{pmatrix} x' \\\\ y' \\end{pmatrix} = M \\begin{pmatrix} x \\\\ y \\\\ 1
              \\end{pmatrix}

    maps an input pixel ``(x, y)`` (column, row) to its output position; the result at each
    output pixel is the input sampled at the inverse image of that pixel.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), bool, integer or float (finite)
    M : array_like, shape (2, 3)
        Forward matrix, input -> output (not the inverse map scikit-image's ``warp`` takes).
        Must be invertible.
    output_shape : (int, int), optional
        ``(rows, cols)`` of the result; default the input's.
    interpolation : {"bilinear", "nearest"}
        Nearest rounds the source position half up, ``floor(p + 0.5)``, as OpenCV does.
    mode : {"constant", "nearest", "reflect", "mirror", "wrap"}
        How samples outside the input are filled, SciPy ``ndimage`` names: ``constant`` =
        ``cval`` (``cv2.BORDER_CONSTANT``), ``nearest`` = edge repeated (``BORDER_REPLICATE``),
        ``reflect`` = ``b a | a b`` (``BORDER_REFLECT``), ``mirror`` = ``c b | a b c``
        (``BORDER_REFLECT_101``), ``wrap`` = periodic (``BORDER_WRAP``).
    cval : float
        Fill value for ``mode="constant"``, on the image's own scale.

    Returns
    -------
    ndarray, shape ``output_shape`` (+ channels); uint8/uint16 stay so, others float32
    """
    Minv = _check_matrix(M, "M", (2, 3))
    Minv[2] = (0.0, 0.0, 1.0)     # the inverse of an affine map is affine: s = 1 exactly
    return _warp(image, Minv, output_shape, interpolation, mode, cval, affine=True)


def warp_perspective(image, H, output_shape=None, interpolation: str = "bilinear",
                     mode: str = "constant", cval: float = 0.0) -> np.ndarray:
    """Apply a homography, the way ``cv2.warpPerspective(image, H, (cols, rows))`` does.

    .. math:: (x', y') = \\left(\\frac{h_0 \\cdot p}{h_2 \\cdot p},
              \\frac{h_1 \\cdot p}{h_2 \\cdot p}\\right), \\quad p = (x, y, 1)

    with ``h_i`` the rows of ``H``: an input pixel ``(x, y)`` lands at ``(x', y')``. Output pixels
    whose inverse image is at infinity (``h_2`` term 0) get ``cval`` in every mode.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C), bool, integer or float (finite)
    H : array_like, shape (3, 3)
        Forward homography, input -> output, invertible (the Oxford ``H1to2p`` files are of this
        kind: they map image 1 onto image 2).
    output_shape, interpolation, mode, cval
        As in :func:`warp_affine`.

    Returns
    -------
    ndarray, shape ``output_shape`` (+ channels); uint8/uint16 stay so, others float32
    """
    Minv = _check_matrix(H, "H", (3, 3))
    return _warp(image, Minv, output_shape, interpolation, mode, cval)


def resize_center_crop(image, output_shape, crop_fraction: float = 0.875) -> np.ndarray:
    """The usual ImageNet evaluation view: scale the image, keeping its aspect ratio, so that
    ``output_shape`` is ``crop_fraction`` of it, then cut out the centre ``output_shape``.

    For ``(224, 224)`` and 0.875 this is torchvision's ``Resize(256)`` + ``CenterCrop(224)``
    (the shorter side to ``round(224 / 0.875) = 256``; timm calls the fraction ``crop_pct``).
    Shrinking uses area interpolation (antialiased), enlarging bilinear (:func:`resize`).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    output_shape : int or (int, int)
        ``(rows, cols)`` of the crop.
    crop_fraction : float in (0, 1]
        Share of the scaled image's shorter side (for a square crop) that the crop keeps.

    Returns
    -------
    ndarray, shape (rows, cols[, C]), the dtype of :func:`resize`

    Examples
    --------
    >>> resize_center_crop(np.zeros((300, 400), np.uint8), (224, 224)).shape
    (224, 224)
    """
    rows, cols = check_pair(output_shape, "output_shape", 1)
    crop_fraction = float(crop_fraction)
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    H, W = image.shape[:2]
    # scale so that the crop's larger extent relative to the image is crop_fraction of it
    scale = max(rows / H, cols / W) / crop_fraction
    h, w = max(rows, int(round(H * scale))), max(cols, int(round(W * scale)))
    shrink = h <= H and w <= W
    scaled = resize(image, (h, w), interpolation="area" if shrink else "bilinear")
    top, left = (h - rows) // 2, (w - cols) // 2
    return np.ascontiguousarray(scaled[top:top + rows, left:left + cols])
