"""Histogram of Oriented Gradients (Dalal & Triggs 2005), in scikit-image's and OpenCV's variants.

Stages (both variants)
    1. optional gamma compression (square root of the intensities);
    2. centred-difference gradient ``[-1, 0, 1]`` along rows and columns; for colour images, per
       pixel, the channel with the largest gradient magnitude;
    3. unsigned orientation in [0, 180) degrees, quantised into ``orientations`` bins; each cell
       accumulates the gradient magnitudes of its pixels per bin;
    4. overlapping blocks of cells are contrast-normalised and concatenated.

Conventions
    * Angles: ``arctan2(g_row, g_col)`` -- 0 deg along +column (rightwards), 90 deg along +row
      (downwards, image coordinates); gradients are unsigned (mod 180).
    * Bins: bin ``b`` covers ``[b, b + 1) * 180 / B`` degrees, centre ``(b + 0.5) * 180 / B``.
    * :func:`hog` (scikit-image): hard binning, cells start at pixel (0, 0), leftover pixels
      at the bottom/right are ignored, blocks at a stride of one cell. Output layout
      ``(block_row, block_col, cell_row, cell_col, bin)``, row-major.
    * :class:`HOGDescriptor` (OpenCV): sizes are ``(width, height)`` as in OpenCV; reflect-101
      borders; magnitude split linearly between the two nearest bin centres and bilinearly
      between the four nearest cell centres, weighted by a Gaussian over the block; OpenCV's
      L2-Hys. Layout: windows row-major, blocks x-major (column by column), cells x-major, bins.

The two variants give different numbers by design; each equals its reference (see
``tests/test_hog.py``). The fast kernels are in :mod:`kernels.hog`, their readable twins in
:mod:`kernels.reference.hog`.

References: Dalal & Triggs, "Histograms of Oriented Gradients for Human Detection", CVPR 2005;
scikit-image 0.26 ``skimage/feature/_hog.py``; OpenCV 4 ``modules/objdetect/src/hog.cpp``.
"""
from __future__ import annotations

import math

import numpy as np

from cvcore._threads import network_call, threads_for
from cvcore._validate import (check_array, check_choice, check_finite, check_int, check_limit,
                              check_pair)
from cvcore._bands import run_bands

__all__ = ["hog", "hog_batch", "hog_backward", "HOGDescriptor", "BLOCK_NORMS"]

#: Block normalisations of :func:`hog` (scikit-image's names) -> kernel code.
BLOCK_NORMS = {"L1": 0, "L1-sqrt": 1, "L2": 2, "L2-Hys": 3}

# hog_batch computes the cell histograms of about this many pixels per kernel call.
_BATCH_CHUNK_PIXELS = 1 << 21


# Below this many pixels a call runs its kernels on one thread: starting Numba's thread team
# costs more than it saves for a single 128x64 window, and much more on a loaded machine.
_PARALLEL_MIN_PIXELS = 1 << 17


def _kernels():
    from kernels import hog as k   # imported on first use: keeps `import cvcore` free of Numba
    return k


# --- scikit-image variant -------------------------------------------------------------------

def _compute_dtype(dtype) -> type:
    """scikit-image's ``_supported_float_type``: float16/float32 -> float32, all else float64."""
    return np.float32 if dtype in (np.float16, np.float32) else np.float64


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_hog_args(orientations, pixels_per_cell, cells_per_block, block_norm):
    orientations = check_int(orientations, "orientations", minimum=1)
    if orientations > 255:
        raise ValueError(f"orientations must be <= 255, got {orientations}")
    cell = check_pair(pixels_per_cell, "pixels_per_cell", minimum=1)
    block = check_pair(cells_per_block, "cells_per_block", minimum=1)
    if not isinstance(block_norm, str):
        raise TypeError(f"block_norm must be a string, got {block_norm!r}")
    check_choice(block_norm, BLOCK_NORMS, "block_norm")
    return orientations, cell, block


def _check_fits(shape, cell, block, name="image"):
    """Raise unless at least one block of cells fits in an image of ``shape = (H, W)``."""
    need = (cell[0] * block[0], cell[1] * block[1])
    if shape[0] < need[0] or shape[1] < need[1]:
        raise ValueError(
            f"{name} of {shape[0]}x{shape[1]} pixels is smaller than one block: "
            f"{block[0]}x{block[1]} cells of {cell[0]}x{cell[1]} pixels need at least "
            f"{need[0]} rows and {need[1]} columns")


def _as_channels_last(arr, channel_axis, spatial_ndim, name):
    """Move ``channel_axis`` last (or append a channel axis of 1); validate the dimensions."""
    if channel_axis is None:
        if arr.ndim != spatial_ndim:
            hint = "; pass channel_axis for a colour image" if arr.ndim == spatial_ndim + 1 else ""
            raise ValueError(f"{name} must have {spatial_ndim} dimensions, got shape "
                             f"{arr.shape}{hint}")
        return arr[..., None]
    axis = check_int(channel_axis, "channel_axis")
    if arr.ndim != spatial_ndim + 1:
        raise ValueError(f"{name} with channel_axis must have {spatial_ndim + 1} dimensions, "
                         f"got shape {arr.shape}")
    if not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for {name} of shape "
                         f"{arr.shape}")
    return np.moveaxis(arr, axis, -1)


def _validate_image(image, channel_axis, transform_sqrt, spatial_ndim, name):
    """Validate; return ``(array (..., H, W, C) as given, scikit-image's compute dtype)``."""
    arr = check_array(image, name, dtypes="buif")
    arr = _as_channels_last(arr, channel_axis, spatial_ndim, name)
    check_finite(arr, name)
    if transform_sqrt and arr.min() < 0:
        raise ValueError(f"transform_sqrt=True needs a non-negative {name}; its minimum is "
                         f"{arr.min()}")
    return arr, _compute_dtype(arr.dtype)


def _convert(arr, dtype, transform_sqrt):
    """C-contiguous in the compute dtype, square-rooted on request (``np.sqrt``, as skimage).

    One exception keeps the kernels to one specialisation on the common paths: a grey 8-bit
    integer (or boolean) image without the square root goes to the float32 kernel even where
    scikit-image computes in float64. Its differences are integers of at most 255 in magnitude,
    exact in float32, and the kernel takes magnitudes and angles in float64 from them, so every
    number is the same as in float64 (colour images are left out: choosing the channel compares
    ``hypot`` in the image's precision).
    """
    if (dtype == np.float64 and not transform_sqrt and arr.shape[-1] == 1
            and arr.dtype in (np.uint8, np.int8, np.bool_)):
        dtype = np.float32
    arr = np.ascontiguousarray(arr, dtype=dtype)
    return np.sqrt(arr) if transform_sqrt else arr


def _bin_edges(orientations):
    """Bin edges (degrees) as scikit-image computes them: C ``float`` step times the bin index."""
    step = np.float32(180.0 / orientations)
    return (step * np.arange(orientations + 1, dtype=np.float32)).astype(np.float64)


def _cell_histograms(images, orientations, cell):
    """(N, H, W, C) compute-dtype images -> (N, n_cells_row, n_cells_col, B) float64.

    The kernel bins almost every pixel itself; the few whose orientation lies within a hair of a
    bin edge are binned here with ``np.rad2deg(np.arctan2(...)) % 180``, the expression
    scikit-image evaluates, so that they land in the same bin (see ``skimage_cell_sums``).
    """
    k = _kernels()
    N, H, W, _ = images.shape
    ncr, ncc = H // cell[0], W // cell[1]
    edges = _bin_edges(orientations)
    sums = np.empty((N, ncr, ncc, orientations), np.float32)
    capacity = cell[0] * ncc * cell[1]
    # worst-case room for deferred pixels; np.empty only touches the pages that get written
    defer_gr = np.empty((N * ncr, capacity))
    defer_gc = np.empty((N * ncr, capacity))
    defer_cell = np.empty((N * ncr, capacity), np.int32)
    defer_count = np.empty(N * ncr, np.int64)
    # one-thread nogil kernel over a range of cell rows, run in bands on the threads (see
    # kernels.hog.skimage_cell_sums for why not prange)
    run_bands(k.skimage_cell_sums, N * ncr, cell[0] * W, images, cell[0], cell[1], edges, sums,
              defer_gr, defer_gc, defer_cell, defer_count)
    total = int(defer_count.sum())
    if total:
        # packed in order (cell row t, then entry d < defer_count[t]) by fancy indexing that
        # touches only the deferred entries (a kernel for this cost 0.16 s of first-call compile)
        row = np.repeat(np.arange(defer_count.size), defer_count)
        first = np.cumsum(defer_count) - defer_count
        entry = np.arange(total) - np.repeat(first, defer_count)
        g_row, g_col = defer_gr[row, entry], defer_gc[row, entry]
        col = defer_cell[row, entry].astype(np.int64)
        theta = np.rad2deg(np.arctan2(g_row, g_col)) % 180
        bins = np.searchsorted(edges, theta, side="right") - 1
        bins[theta >= edges[-1]] = -1                  # rounded up to 180: in no bin
        k.add_deferred(sums, row, col, bins, g_row, g_col)
    # scikit-image: (C float sum) / (cell_rows * cell_cols), in float, stored as double
    return (sums / np.float32(cell[0] * cell[1])).astype(np.float64)


def _normalize_blocks(hist, block, block_norm, dtype):
    """Normalised blocks in ``dtype``. The kernel computes and stores float64 (one
    specialisation); float32 is the rounding of those values, as scikit-image's cast."""
    k = _kernels()
    N, ncr, ncc, B = hist.shape
    out = np.empty((N, ncr - block[0] + 1, ncc - block[1] + 1, block[0], block[1], B))
    run_bands(k.skimage_normalize_blocks, N * out.shape[1], out[0, 0].size * out.shape[2], hist,
              block[0], block[1], BLOCK_NORMS[block_norm], out.reshape(out.shape[:3] + (-1,)))
    return out if dtype == np.float64 else out.astype(dtype)


def _glyph_pixels(orientations, cell):
    """Pixel offsets (row, col) from a cell's top-left corner of each bin's glyph.

    The glyph of bin ``b`` is a segment through the cell centre along the edge direction of the
    bin-centre gradient angle ``theta_b = (b + 0.5) * 180 / B`` degrees: the gradient points
    along ``(sin theta, cos theta)`` in (row, col), the edge along ``(cos theta, -sin theta)``.
    Returns a list of ``(rows, cols)`` int arrays, one per bin.
    """
    c_row, c_col = cell
    centre = ((c_row - 1) / 2.0, (c_col - 1) / 2.0)
    radius = (min(c_row, c_col) - 1) / 2.0
    s = np.linspace(-radius, radius, int(8 * radius) + 2)
    glyphs = []
    for b in range(orientations):
        theta = math.pi * (b + 0.5) / orientations
        rows = np.floor(centre[0] + s * math.cos(theta) + 0.5).astype(np.intp)
        cols = np.floor(centre[1] - s * math.sin(theta) + 0.5).astype(np.intp)
        rows = np.clip(rows, 0, c_row - 1)
        cols = np.clip(cols, 0, c_col - 1)
        pixels = np.unique(np.stack([rows, cols], axis=1), axis=0)
        glyphs.append((pixels[:, 0], pixels[:, 1]))
    return glyphs


#: Largest picture :func:`hog_picture` draws (pixels): 2^26, a 64-megapixel photograph.
MAX_PICTURE_PIXELS = 1 << 26
#: Most bins :func:`hog_picture` draws per cell (one glyph each; 360 is one per degree).
MAX_PICTURE_BINS = 360


def hog_picture(cell_histograms, pixels_per_cell, shape):
    """Draw cell histograms as glyphs: one line per bin, at the bin centre, brightness = value.

    Parameters
    ----------
    cell_histograms : (n_cells_row, n_cells_col, B) float
    pixels_per_cell : (int, int)
    shape : (int, int)
        Output image shape (H, W); cells start at pixel (0, 0).

    Returns
    -------
    (H, W) float64 image. Unlike scikit-image's older pictures (glyph drawn at the bin's lower
    edge), each glyph is perpendicular to the bin-centre gradient direction, i.e. along the
    edge direction that bin stands for.
    """
    hist = check_array(cell_histograms, "cell_histograms", ndim=3, dtypes="buif",
                       allow_empty=True)
    hist = check_finite(hist.astype(np.float64), "cell_histograms")
    ncr, ncc, B = hist.shape
    c_row, c_col = check_pair(pixels_per_cell, "pixels_per_cell")
    height, width = check_pair(shape, "shape", minimum=0)
    if height < ncr * c_row or width < ncc * c_col:
        raise ValueError(f"shape {(height, width)} is smaller than the {ncr}x{ncc} cells of "
                         f"{c_row}x{c_col} pixels")
    check_limit(height * width, MAX_PICTURE_PIXELS, "the picture's pixel count",
                "a picture larger than a big photograph is not a picture of HOG cells")
    check_limit(B, MAX_PICTURE_BINS, "the number of bins", "more glyphs than a cell has "
                "angles to draw")
    picture = np.zeros((height, width), dtype=np.float64)
    tiles = picture[:ncr * c_row, :ncc * c_col].reshape(ncr, c_row, ncc, c_col)
    for b, (rows, cols) in enumerate(_glyph_pixels(B, (c_row, c_col))):
        # every cell gets its value of bin b added on the glyph's pixels
        tiles[:, rows, :, cols] += hist[None, :, :, b]
    return picture


def hog(image, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3),
        block_norm="L2-Hys", visualize=False, transform_sqrt=False, feature_vector=True,
        channel_axis=None):
    """Histogram of Oriented Gradients exactly as ``skimage.feature.hog`` computes it.

    Parameters
    ----------
    image : (H, W) or, with ``channel_axis``, (H, W, C) array (any axis order), numeric
        Intensities; integer images keep their values (as scikit-image). Float32/float16 input
        is processed in float32, everything else in float64, as scikit-image does.
    orientations : int
        Number of orientation bins ``B`` over [0, 180) degrees.
    pixels_per_cell : int or (int, int)
        Cell size ``(rows, cols)`` in pixels.
    cells_per_block : int or (int, int)
        Block size ``(rows, cols)`` in cells; blocks overlap with a stride of one cell.
    block_norm : {"L1", "L1-sqrt", "L2", "L2-Hys"}
        With ``v`` a block's histograms and ``eps = 1e-5``: L1 ``v / (|v|_1 + eps)``; L1-sqrt
        ``sqrt(v / (|v|_1 + eps))``; L2 ``v / sqrt(|v|_2^2 + eps^2)``; L2-Hys: L2, clip at 0.2,
        L2 again (Dalal & Triggs 2005, sec. 6.4; Lowe 2004, sec. 6.1).
    visualize : bool
        Also return the HOG picture (see :func:`hog_picture`), shape (H, W).
    transform_sqrt : bool
        Take the square root of the image first (gamma compression); needs non-negative input.
    feature_vector : bool
        Return the flat vector instead of the 5-d block array.
    channel_axis : int or None
        Axis of the colour channels; None for a grey image.

    Returns
    -------
    features : (D,) or (n_blocks_row, n_blocks_col, b_rows, b_cols, B) float32 or float64
        ``D = n_blocks_row * n_blocks_col * b_rows * b_cols * B`` with
        ``n_blocks_row = H // cell_rows - b_rows + 1`` (likewise for columns).
    picture : (H, W) array, only with ``visualize=True``.

    Raises
    ------
    ValueError
        Image smaller than one block, unknown ``block_norm``, a wrong ``channel_axis`` or
        number of dimensions, NaN/infinity, negative values with ``transform_sqrt``.
    TypeError
        Non-numeric image or arguments of the wrong type.

    Notes
    -----
    Sliding windows: ``hog(image, ..., feature_vector=False)`` of the whole image already holds
    every window aligned to the cell grid -- the window of ``n_r x n_c`` cells starting at cell
    ``(r, c)`` is ``blocks[r:r + n_r - b_rows + 1, c:c + n_c - b_cols + 1]``. It differs from
    ``hog(window)`` only where the window's border pixels have neighbours outside it (their
    gradient is taken from the image instead of set to zero). :class:`HOGDescriptor` computes
    every window of an image this way.

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore.features import hog
    >>> img = np.zeros((32, 32), np.float32); img[:, 16:] = 1.0      # one vertical edge
    >>> f = hog(img, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))
    >>> f.shape, f.dtype
    ((324,), dtype('float32'))
    >>> h = hog(img, 9, (8, 8), (1, 1), feature_vector=False)
    >>> int(h[0, 1, 0, 0].argmax())       # gradient along +column: 0 deg, bin 0
    0
    """
    orientations, cell, block = _check_hog_args(orientations, pixels_per_cell, cells_per_block,
                                                block_norm)
    visualize = _check_bool(visualize, "visualize")
    transform_sqrt = _check_bool(transform_sqrt, "transform_sqrt")
    feature_vector = _check_bool(feature_vector, "feature_vector")
    arr, dtype = _validate_image(image, channel_axis, transform_sqrt, 2, "image")
    _check_fits(arr.shape[:2], cell, block)
    arr = _convert(arr, dtype, transform_sqrt)

    with threads_for(arr.shape[0] * arr.shape[1] >= _PARALLEL_MIN_PIXELS):
        hist = _cell_histograms(arr[None], orientations, cell)
        blocks = _normalize_blocks(hist, block, block_norm, dtype)[0]
    if feature_vector:
        blocks = blocks.ravel()
    if visualize:
        picture = hog_picture(hist[0], cell, arr.shape[:2]).astype(dtype, copy=False)
        return blocks, picture
    return blocks


def hog_batch(images, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3),
              block_norm="L2-Hys", transform_sqrt=False, channel_axis=None, dtype=None):
    """:func:`hog` of every image of a batch, in parallel over the images.

    Parameters
    ----------
    images : (N, H, W) or, with ``channel_axis``, (N, H, W, C) numeric array
        ``channel_axis`` counts the batch axis (e.g. -1 or 3 for channels-last).
    orientations, pixels_per_cell, cells_per_block, block_norm, transform_sqrt
        As in :func:`hog`.
    dtype : None, np.float32 or np.float64
        Precision of the result. None: as :func:`hog` (float32 for float32 images, float64 for
        the rest, e.g. uint8). The features are computed the same way either way; float32
        halves the memory of a large data set's features.

    Returns
    -------
    (N, D) float32 or float64
        Row ``n`` equals ``hog(images[n], ...)`` (feature vector), rounded to ``dtype``.

    Notes
    -----
    The kernels run in bands of cell rows on several threads (``run_bands``); the gradient is
    computed on the fly, so the only temporary array is the cell histograms of one chunk of
    about two million pixels. Images are processed in the precision :func:`hog` would use
    (uint8 -> float64, as scikit-image), so rows are identical to :func:`hog`.

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore.features import hog_batch
    >>> x = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    >>> hog_batch(x, 9, (4, 4), (2, 2)).shape
    (5, 1296)
    """
    orientations, cell, block = _check_hog_args(orientations, pixels_per_cell, cells_per_block,
                                                block_norm)
    transform_sqrt = _check_bool(transform_sqrt, "transform_sqrt")
    if channel_axis is not None:
        arr = check_array(images, "images", ndim=4, dtypes="buif")
        axis = check_int(channel_axis, "channel_axis")
        if axis in (0, -4):
            raise ValueError("channel_axis must not be the batch axis 0")
    arr, compute = _validate_image(images, channel_axis, transform_sqrt, 3, "images")
    if dtype is None:
        dtype = compute
    elif dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be None, np.float32 or np.float64, got {dtype!r}")
    N, H, W, _ = arr.shape
    _check_fits((H, W), cell, block, name="each image")
    ncr, ncc = H // cell[0], W // cell[1]
    D = (ncr - block[0] + 1) * (ncc - block[1] + 1) * block[0] * block[1] * orientations
    out = np.empty((N, D), dtype=dtype)
    chunk = max(1, _BATCH_CHUNK_PIXELS // (H * W))
    with threads_for(N * H * W >= _PARALLEL_MIN_PIXELS):
        for start in range(0, N, chunk):
            part = _convert(arr[start:start + chunk], compute, transform_sqrt)
            hist = _cell_histograms(part, orientations, cell)
            # float64 blocks, rounded to ``dtype`` by the assignment
            out[start:start + len(part)] = _normalize_blocks(hist, block, block_norm,
                                                             np.float64).reshape(len(part), D)
    return out


# --- scikit-image variant: the backward pass ------------------------------------------------

#: ``d sqrt(x) / dx = 1 / (2 sqrt(x))`` is infinite at ``x = 0`` (black pixels, common in
#: Fashion-MNIST); the backward evaluates it at ``max(x, SQRT_GRAD_FLOOR)``, half a grey level of
#: an 8-bit image squared, so that a black pixel's gradient is large but finite.
SQRT_GRAD_FLOOR = (0.5 / 255) ** 2


def hog_backward(images, dfeatures, orientations=9, pixels_per_cell=(8, 8),
                 cells_per_block=(3, 3), block_norm="L2-Hys", transform_sqrt=False,
                 channel_axis=None):
    """Gradient of :func:`hog` (:func:`hog_batch`) with respect to the image: the vector-Jacobian
    product ``d/dI sum_k dfeatures_k * hog(I)_k``.

    The stages of the forward pass, backwards (Dalal & Triggs 2005 for the forward):

    1. block normalisation: the derivative of L1, L1-sqrt, L2 or L2-Hys of each block (the
       L2-Hys clip passes gradient only where it did not clip); each cell collects the sum over
       the overlapping blocks that contain it;
    2. cell histograms: ``hist[cell, b] = sum of m over the cell's pixels in bin b / n_pixels``.
       scikit-image's binning is hard (no interpolation between bins or cells), so the bin of a
       pixel is piecewise constant in the image and only the magnitude
       ``m = sqrt(g_r^2 + g_c^2)`` carries gradient: ``dg = dm * g / m`` (0 where ``m = 0``);
    3. centred differences: ``g_r[r] = I[r + 1] - I[r - 1]`` gives ``+dg_r`` to row ``r + 1`` and
       ``-dg_r`` to row ``r - 1`` (nothing from the border rows, where ``g_r = 0``), likewise for
       columns; colour images: only the dominant channel of each pixel;
    4. ``transform_sqrt``: ``dI = dJ / (2 sqrt(I))``, with ``I`` floored at
       :data:`SQRT_GRAD_FLOOR`.

    The function is differentiable except on the measure-zero set where a pixel's orientation
    sits on a bin edge, its magnitude is 0, two colour channels tie, an L2-Hys entry equals the
    clip, or (with ``transform_sqrt``) a pixel is 0; there the one-sided choices above are used.
    Checked against central differences in float64 (``tests/test_hog_backward.py``), the readable
    twin being :func:`kernels.reference.hog.skimage_hog_backward`.

    Parameters
    ----------
    images : (H, W) or (N, H, W) array, or with ``channel_axis`` (..., H, W, C)
        As for :func:`hog` / :func:`hog_batch` (non-negative with ``transform_sqrt``).
    dfeatures : (D,) or (N, D) array
        The gradient of a scalar with respect to the feature vectors.
    orientations, pixels_per_cell, cells_per_block, block_norm, transform_sqrt, channel_axis
        As for :func:`hog`.

    Returns
    -------
    float64 array of ``images``' shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cvcore.features import hog, hog_backward
    >>> img = np.random.default_rng(0).random((16, 16))
    >>> d = np.random.default_rng(1).standard_normal(hog(img, 9, (4, 4), (2, 2)).shape)
    >>> hog_backward(img, d, 9, (4, 4), (2, 2)).shape
    (16, 16)
    """
    orientations, cell, block = _check_hog_args(orientations, pixels_per_cell, cells_per_block,
                                                block_norm)
    transform_sqrt = _check_bool(transform_sqrt, "transform_sqrt")
    raw = check_array(images, "images", dtypes="buif")
    single = raw.ndim == (2 if channel_axis is None else 3)
    spatial = 2 if single else 3
    arr, _ = _validate_image(raw, channel_axis, transform_sqrt, spatial, "images")
    if single:
        arr = arr[None]
    N, H, W, C = arr.shape
    _check_fits((H, W), cell, block, name="each image")
    ncr, ncc = H // cell[0], W // cell[1]
    nbr, nbc = ncr - block[0] + 1, ncc - block[1] + 1
    D = nbr * nbc * block[0] * block[1] * orientations
    d = check_array(dfeatures, "dfeatures", ndim=(1, 2), dtypes="buif")
    want = (D,) if single else (N, D)
    if d.shape != want:
        raise ValueError(f"dfeatures has shape {d.shape}; the features of "
                         f"{'one image' if single else f'{N} images'} of {H}x{W} pixels with "
                         f"these settings have shape {want}")
    check_finite(d, "dfeatures")
    k = _kernels()
    x = np.ascontiguousarray(arr, dtype=np.float64)
    s = np.sqrt(x) if transform_sqrt else x
    with threads_for(N * H * W >= _PARALLEL_MIN_PIXELS):
        hist = _cell_histograms(s, orientations, cell)
        dout = np.ascontiguousarray(d, dtype=np.float64).reshape(
            N, nbr, nbc, block[0], block[1], orientations)
        dhist = np.zeros_like(hist)
        k.skimage_normalize_blocks_backward(hist, block[0], block[1], BLOCK_NORMS[block_norm],
                                            dout, dhist)
        dhist /= cell[0] * cell[1]
        dx = np.zeros_like(s)
        k.skimage_cell_sums_backward(s, cell[0], cell[1], _bin_edges(orientations), dhist, dx)
    if transform_sqrt:
        dx *= 0.5 / np.sqrt(np.maximum(x, SQRT_GRAD_FLOOR))
    if single:
        dx = dx[0]
    return dx[..., 0] if channel_axis is None else np.moveaxis(dx, -1, channel_axis)


# --- OpenCV variant -------------------------------------------------------------------------

def _exact_ints(pair):
    """``pair`` as a hashable key if it is None or a tuple of Python ints, else TypeError."""
    if pair is None or (type(pair) is tuple and all(type(v) is int for v in pair)):
        return pair
    raise TypeError("not a plain key")


def _reflect101(index, n):
    """OpenCV's BORDER_REFLECT_101 for an int array of indices (``... 2 1 | 0 1 ... n-1 | n-2``)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


class HOGDescriptor:
    """OpenCV's HOG descriptor (``cv2.HOGDescriptor``), computed with Numba kernels.

    All sizes are ``(width, height)``, as in OpenCV. The defaults are those of
    ``cv2.HOGDescriptor()`` (the 64x128 people window of Dalal & Triggs).

    Parameters
    ----------
    win_size, block_size, block_stride, cell_size : (int, int)
        Detection window, block, block step and cell, in pixels. ``block_size`` must be a
        multiple of ``cell_size`` and ``win_size - block_size`` a multiple of ``block_stride``.
    nbins : int
        Orientation bins over [0, 180) degrees (over [0, 360) with ``signed_gradient``).
    win_sigma : float or None
        Standard deviation of the Gaussian block window; None (or <= 0) means OpenCV's default
        ``(block_w + block_h) / 8``.
    l2_hys_threshold : float
        Clipping value of L2-Hys (0.2, Dalal & Triggs 2005, sec. 6.4). OpenCV's SSE code keeps
        the threshold of the first descriptor a process uses in a static variable, so
        ``cv2.HOGDescriptor`` honours another value only when it is the first one used; this
        class always honours it.
    gamma_correction : bool
        Take the square root of the intensities first. True in ``cv2.HOGDescriptor()``; note that
        OpenCV's long constructor ``cv2.HOGDescriptor(win, block, ...)`` defaults it to False.
    signed_gradient : bool
        Orientations over 360 degrees instead of 180.

    Notes
    -----
    Input: OpenCV takes 8-bit images with 1 or 3 channels; here a uint8 image gives OpenCV's
    numbers, and other integer or float images are taken as intensities on the same 0..255 scale
    (the normalisation constants are not scale-free). Dense use: :meth:`compute` computes the
    gradient of the whole (padded) image once and every block histogram once, and reads all
    windows from that block grid (OpenCV's block cache does the same).
    """

    def __init__(self, win_size=(64, 128), block_size=(16, 16), block_stride=(8, 8),
                 cell_size=(8, 8), nbins=9, win_sigma=None, l2_hys_threshold=0.2,
                 gamma_correction=True, signed_gradient=False):
        self.win_size = check_pair(win_size, "win_size")
        self.block_size = check_pair(block_size, "block_size")
        self.block_stride = check_pair(block_stride, "block_stride")
        self.cell_size = check_pair(cell_size, "cell_size")
        self.nbins = check_int(nbins, "nbins", minimum=1)
        if self.nbins > 255:
            raise ValueError(f"nbins must be <= 255, got {self.nbins}")
        for a in range(2):
            axis = "width" if a == 0 else "height"
            if self.block_size[a] % self.cell_size[a]:
                raise ValueError(f"block_size {axis} {self.block_size[a]} is not a multiple of "
                                 f"cell_size {axis} {self.cell_size[a]}")
            if self.block_size[a] > self.win_size[a]:
                raise ValueError(f"block_size {axis} {self.block_size[a]} exceeds win_size "
                                 f"{axis} {self.win_size[a]}")
            if (self.win_size[a] - self.block_size[a]) % self.block_stride[a]:
                raise ValueError(f"win_size {axis} - block_size {axis} "
                                 f"({self.win_size[a] - self.block_size[a]}) is not a multiple "
                                 f"of block_stride {axis} {self.block_stride[a]}")
        if win_sigma is None or (isinstance(win_sigma, (int, float)) and win_sigma <= 0):
            win_sigma = None
        elif not isinstance(win_sigma, (int, float)) or not math.isfinite(win_sigma):
            raise TypeError(f"win_sigma must be a positive number or None, got {win_sigma!r}")
        self.win_sigma = win_sigma
        self.l2_hys_threshold = float(l2_hys_threshold)
        if not self.l2_hys_threshold > 0:
            raise ValueError(f"l2_hys_threshold must be positive, got {l2_hys_threshold!r}")
        self.gamma_correction = _check_bool(gamma_correction, "gamma_correction")
        self.signed_gradient = _check_bool(signed_gradient, "signed_gradient")
        self._votes = self._vote_tables()
        # OpenCV's gamma look-up table for 8-bit input: sqrt(i) or i, in float32
        self._lut = np.arange(256, dtype=np.float32)
        if self.gamma_correction:
            self._lut = np.sqrt(self._lut)
        self._maps = {}       # (H, W, pad) -> reflect-101 row / column maps, reused across calls
        self._plans = {}      # (shape, win_stride, padding) -> compute's checked geometry
        # kernel arguments that depend only on the parameters
        self._angle_scale = np.float32(self.nbins / ((2.0 if self.signed_gradient else 1.0)
                                                     * math.pi))
        self._nbins32 = np.int32(self.nbins)
        self._clip32 = np.float32(self.l2_hys_threshold)

    # geometry --------------------------------------------------------------------------------
    @property
    def cells_per_block(self):
        """(cells across, cells down) in a block."""
        return (self.block_size[0] // self.cell_size[0], self.block_size[1] // self.cell_size[1])

    @property
    def blocks_per_window(self):
        """(blocks across, blocks down) in a window."""
        return tuple((self.win_size[a] - self.block_size[a]) // self.block_stride[a] + 1
                     for a in range(2))

    @property
    def block_histogram_size(self):
        cx, cy = self.cells_per_block
        return cx * cy * self.nbins

    @property
    def descriptor_size(self):
        """Length of one window's descriptor (OpenCV's ``getDescriptorSize()``)."""
        bx, by = self.blocks_per_window
        return bx * by * self.block_histogram_size

    def get_win_sigma(self):
        """The Gaussian window's sigma: ``win_sigma`` or ``(block_w + block_h) / 8``."""
        return (self.win_sigma if self.win_sigma is not None
                else (self.block_size[0] + self.block_size[1]) / 8.0)

    def _vote_tables(self):
        """Separable voting weights ``(weight_y (cells_y, block_h), weight_x (cells_x, block_w))``.

        Along one axis of a block of ``n`` pixels and ``n / cell`` cells: pixel ``i`` has the
        Gaussian factor ``g(i) = exp(-(i - n/2)^2 / (2 sigma^2))`` and votes into the two cells
        whose centres ``(c + 0.5) * cell - 0.5`` surround it, with weights ``1 - f`` and ``f``;
        cells outside the block are dropped (hog.cpp, ``HOGCache::init``). All in float32.
        """
        f = np.float32
        sigma = f(self.get_win_sigma())
        scale = f(1) / (sigma * sigma * f(2))
        tables = []
        for size, cell in ((self.block_size[1], self.cell_size[1]),
                           (self.block_size[0], self.cell_size[0])):
            gauss = np.exp(-((np.arange(size, dtype=f) - f(size * 0.5)) ** 2) * scale).astype(f)
            n_cells = size // cell
            weight = np.zeros((n_cells, size), f)
            for i in range(size):
                centre = (f(i) + f(0.5)) / f(cell) - f(0.5)
                c0 = int(np.floor(centre))
                frac = centre - f(c0)
                if 0 <= c0 < n_cells:
                    weight[c0, i] = gauss[i] * (f(1) - frac)
                if 0 <= c0 + 1 < n_cells:
                    weight[c0 + 1, i] = gauss[i] * frac
            tables.append(weight)
        return tuple(tables)

    # computing -------------------------------------------------------------------------------
    def _prepare_image(self, image):
        arr = check_array(image, "image", ndim=(2, 3), dtypes="buif")
        if arr.ndim == 3 and arr.shape[2] not in (1, 3):
            raise ValueError(f"image must be grey (H, W) or colour (H, W, 3) like OpenCV's HOG, "
                             f"got shape {arr.shape}")
        check_finite(arr, "image")
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.dtype == np.uint8:
            # looked up row by row inside the gradient kernel
            return np.ascontiguousarray(arr), self._lut
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if self.gamma_correction:
            if arr.min() < 0:
                raise ValueError("gamma_correction needs a non-negative image; its minimum is "
                                 f"{arr.min()}")
            arr = np.sqrt(arr)
        return arr, None

    def compute_block_grid(self, image, padding=(0, 0), grid_stride=None):
        """Every normalised block histogram of the padded image, on a grid.

        Parameters
        ----------
        image : (H, W) or (H, W, 3) array, uint8 for OpenCV's numbers
        padding : (int, int)
            ``(pad_x, pad_y)`` added on each side by reflection (as OpenCV; already aligned).
        grid_stride : (int, int) or None
            Step ``(x, y)`` between block positions; default ``block_stride``.

        Returns
        -------
        (P, Q, L) float32
            Block ``(p, q)`` has its top-left pixel at ``(q * stride_x - pad_x,
            p * stride_y - pad_y)`` of the image; ``L = block_histogram_size``.
        """
        img, table = self._prepare_image(image)
        pad = check_pair(padding, "padding", minimum=0)
        stride = self.block_stride if grid_stride is None else check_pair(grid_stride,
                                                                            "grid_stride")
        H, W = img.shape[:2]
        Hp, Wp = H + 2 * pad[1], W + 2 * pad[0]
        bw, bh = self.block_size
        if Hp < bh or Wp < bw:
            raise ValueError(f"padded image of {Wp}x{Hp} (width x height) is smaller than one "
                             f"block of {bw}x{bh}")
        P = (Hp - bh) // stride[1] + 1
        Q = (Wp - bw) // stride[0] + 1
        return self._block_grid(img, table, pad, stride, P, Q)

    def _border_maps(self, H, W, pad):
        key = (H, W, pad)
        maps = self._maps.get(key)          # get, not "in" then []: another thread may clear
        if maps is None:
            if len(self._maps) > 64:
                self._maps.clear()
            Hp, Wp = H + 2 * pad[1], W + 2 * pad[0]
            maps = (_reflect101(np.arange(-1, Hp + 1) - pad[1], H),
                    _reflect101(np.arange(-1, Wp + 1) - pad[0], W))
            self._maps[key] = maps
        return maps

    def _block_grid(self, img, table, pad, stride, P, Q):
        k = _kernels()
        H, W = img.shape[:2]
        ymap, xmap = self._border_maps(H, W, pad)
        Wp = len(xmap) - 2
        # OpenCV's colour code runs 4 columns at a time, then a scalar tail (different tie rule)
        simd_cols = Wp - Wp % 4
        weight_y, weight_x = self._votes
        blocks = np.empty((P, Q, weight_y.shape[0] * weight_x.shape[0] * self.nbins), np.float32)
        if len(ymap) * Wp < _PARALLEL_MIN_PIXELS:
            # small (one window): the one-thread kernel that streams gradient rows into the
            # block sums, with no parallel region to start and no image-sized temporaries
            k.opencv_block_grid(img, table, ymap, xmap, simd_cols, self._angle_scale,
                                self._nbins32, stride[1], stride[0], weight_y, weight_x,
                                self._clip32, blocks)
            return blocks
        # parallel kernels: on no more threads than there are free cores (cvcore._threads; the
        # numbers do not depend on the thread count). Measured at load 9: 94 ms on two busy
        # threads against 37 ms on one for a 640x480 image.
        with network_call():
            votes, bins = k.opencv_gradients(img, table, ymap, xmap, simd_cols,
                                             self._angle_scale, self._nbins32)
            k.opencv_block_histograms(votes, bins, stride[1], stride[0], weight_y, weight_x,
                                      self._clip32, blocks)
        return blocks

    def compute(self, image, win_stride=None, padding=None):
        """Descriptors of every window of ``image``, as ``cv2.HOGDescriptor.compute``.

        Parameters
        ----------
        image : (H, W) or (H, W, 3) array
            uint8 gives OpenCV's numbers (see the class notes for other dtypes).
        win_stride : (int, int) or None
            Window step ``(x, y)``; None means ``cell_size`` (OpenCV's default).
        padding : (int, int) or None
            ``(pad_x, pad_y)`` added on every side by reflection, rounded up to a multiple of
            ``gcd(win_stride, block_stride)`` as OpenCV does; None means no padding.

        Returns
        -------
        (n_windows * descriptor_size,) float32
            Windows in row-major order (x fastest) starting at ``(-pad_x, -pad_y)``; reshape to
            ``(-1, descriptor_size)`` for one row per window.
        """
        img, table = self._prepare_image(image)
        try:
            key = (img.shape, _exact_ints(win_stride), _exact_ints(padding))
        except TypeError:                     # a list, an array, a float: checked, not cached
            key = None
        plan = self._plans.get(key) if key is not None else None
        if plan is None:
            plan = self._window_plan(img.shape, win_stride, padding)
            if key is not None:
                if len(self._plans) > 64:
                    self._plans.clear()
                self._plans[key] = plan
        pad, cache, P, Q, gather = plan
        blocks = self._block_grid(img, table, pad, cache, P, Q)
        # ndarray.take: the same copy as fancy indexing, at a third of its overhead
        return blocks.reshape(P * Q, -1).take(gather, axis=0).reshape(-1)

    def _window_plan(self, shape, win_stride, padding):
        """Checked geometry of :meth:`compute` on an image of ``shape``: ``(pad, cache stride,
        P, Q, gather)``, the block grid's size and the indices of each window's blocks in it."""
        stride = self.cell_size if win_stride is None else check_pair(win_stride, "win_stride")
        pad = (0, 0) if padding is None else check_pair(padding, "padding", minimum=0)
        cache = (math.gcd(stride[0], self.block_stride[0]),
                 math.gcd(stride[1], self.block_stride[1]))
        pad = tuple(-(-pad[a] // cache[a]) * cache[a] for a in range(2))
        H, W = shape[:2]
        Hp, Wp = H + 2 * pad[1], W + 2 * pad[0]
        ww, wh = self.win_size
        if Hp < wh or Wp < ww:
            raise ValueError(f"image of {W}x{H} (width x height) plus padding {pad} is smaller "
                             f"than the {ww}x{wh} window")
        nwx = (Wp - ww) // stride[0] + 1
        nwy = (Hp - wh) // stride[1] + 1
        bw, bh = self.block_size
        nbx, nby = self.blocks_per_window
        # block grid (cache stride) covering every block of every window
        P = ((nwy - 1) * stride[1] + wh - bh) // cache[1] + 1
        Q = ((nwx - 1) * stride[0] + ww - bw) // cache[0] + 1
        rows = (np.arange(nwy)[:, None] * stride[1]
                + np.arange(nby)[None, :] * self.block_stride[1]) // cache[1]
        cols = (np.arange(nwx)[:, None] * stride[0]
                + np.arange(nbx)[None, :] * self.block_stride[0]) // cache[0]
        # (window_y, window_x, block_x, block_y): OpenCV's order, as flat grid indices
        gather = (rows[:, None, None, :] * Q + cols[None, :, :, None]).ravel()
        return pad, cache, P, Q, gather

    def __repr__(self):
        return (f"HOGDescriptor(win_size={self.win_size}, block_size={self.block_size}, "
                f"block_stride={self.block_stride}, cell_size={self.cell_size}, "
                f"nbins={self.nbins}, win_sigma={self.win_sigma}, "
                f"l2_hys_threshold={self.l2_hys_threshold}, "
                f"gamma_correction={self.gamma_correction}, "
                f"signed_gradient={self.signed_gradient})")
