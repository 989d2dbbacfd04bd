"""Readable NumPy twins of :mod:`kernels.hog`: read these first.

Two HOG variants (see the notes at the top of :mod:`kernels.hog`):

* :func:`skimage_hog` follows ``skimage.feature.hog`` step by step: centred differences,
  ``arctan2`` mod 180, hard binning per cell, block normalisation.
* :func:`opencv_hog_window` follows ``cv::HOGDescriptor::compute`` for one window: reflect-101
  gradient, OpenCV's polynomial arc-tangent, linear split between two bins, Gaussian-weighted
  bilinear votes into the cells of each block, OpenCV's L2-Hys.

They loop over cells and blocks in plain Python and are slow on purpose: every line is one step
of the algorithm. The fast kernels are tested against them on small inputs.
"""
import math

import numpy as np

SKIMAGE_EPS = 1e-5
L2HYS_CLIP = 0.2


# --- scikit-image variant -------------------------------------------------------------------

def centred_gradients(channel):
    """``g_row = I[r+1] - I[r-1]``, ``g_col = I[:, c+1] - I[:, c-1]``, zero on the border."""
    g_row = np.zeros_like(channel)
    g_col = np.zeros_like(channel)
    g_row[1:-1, :] = channel[2:, :] - channel[:-2, :]
    g_col[:, 1:-1] = channel[:, 2:] - channel[:, :-2]
    return g_row, g_col


def dominant_gradients(image):
    """Gradients of a (H, W, C) image, taking per pixel the channel with the largest magnitude."""
    grads = [centred_gradients(image[:, :, k]) for k in range(image.shape[2])]
    g_row = np.stack([g[0] for g in grads], axis=2)
    g_col = np.stack([g[1] for g in grads], axis=2)
    best = np.hypot(g_row, g_col).argmax(axis=2)            # first channel on ties
    rows, cols = np.indices(best.shape)
    return g_row[rows, cols, best], g_col[rows, cols, best]


def bin_edges(orientations):
    """Bin edges in degrees as scikit-image computes them (C float arithmetic)."""
    step = np.float32(180.0 / orientations)
    return np.array([np.float32(step * np.float32(b)) for b in range(orientations + 1)],
                    dtype=np.float64)


def cell_histograms(g_row, g_col, orientations, cell_rows, cell_cols):
    """Average gradient magnitude per (cell, orientation bin), hard binning, float64."""
    g_row = g_row.astype(np.float64)
    g_col = g_col.astype(np.float64)
    magnitude = np.hypot(g_col, g_row)
    theta = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    edges = bin_edges(orientations)
    n_rows = g_row.shape[0] // cell_rows
    n_cols = g_row.shape[1] // cell_cols
    hist = np.zeros((n_rows, n_cols, orientations))
    for i in range(n_rows):
        for j in range(n_cols):
            cell = (slice(i * cell_rows, (i + 1) * cell_rows),
                    slice(j * cell_cols, (j + 1) * cell_cols))
            for b in range(orientations):
                in_bin = (theta[cell] >= edges[b]) & (theta[cell] < edges[b + 1])
                total = np.float32(0)
                for m in magnitude[cell][in_bin]:         # scikit-image sums in a C float
                    total = np.float32(np.float64(total) + m)
                hist[i, j, b] = np.float32(total / np.float32(cell_rows * cell_cols))
    return hist


def normalize_block(block, method, eps=SKIMAGE_EPS):
    """The four block norms of scikit-image."""
    if method == "L1":
        return block / (np.sum(np.abs(block)) + eps)
    if method == "L1-sqrt":
        return np.sqrt(block / (np.sum(np.abs(block)) + eps))
    if method == "L2":
        return block / np.sqrt(np.sum(block ** 2) + eps ** 2)
    if method == "L2-Hys":
        out = block / np.sqrt(np.sum(block ** 2) + eps ** 2)
        out = np.minimum(out, L2HYS_CLIP)
        return out / np.sqrt(np.sum(out ** 2) + eps ** 2)
    raise ValueError(f"unknown block norm {method!r}")


def skimage_hog(image, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3),
                block_norm="L2-Hys", transform_sqrt=False):
    """HOG as scikit-image defines it. ``image``: (H, W) or (H, W, C) float, channels last.

    Returns the (n_blocks_row, n_blocks_col, cells_row, cells_col, orientations) float64 array.
    """
    image = np.asarray(image)
    if transform_sqrt:
        image = np.sqrt(image)
    if image.ndim == 2:
        g_row, g_col = centred_gradients(image)
    else:
        g_row, g_col = dominant_gradients(image)
    hist = cell_histograms(g_row, g_col, orientations, *pixels_per_cell)
    b_rows, b_cols = cells_per_block
    n_blocks_row = hist.shape[0] - b_rows + 1
    n_blocks_col = hist.shape[1] - b_cols + 1
    out = np.zeros((n_blocks_row, n_blocks_col, b_rows, b_cols, orientations))
    for r in range(n_blocks_row):
        for c in range(n_blocks_col):
            out[r, c] = normalize_block(hist[r:r + b_rows, c:c + b_cols], block_norm)
    return out


# --- scikit-image variant, differentiated ---------------------------------------------------
# The same function in float64 throughout (scikit-image sums the cells in a C float; a gradient
# check by central differences needs the float64 sums), then its backward pass, stage by stage.

SQRT_GRAD_FLOOR = (0.5 / 255) ** 2


def skimage_hog_float64(image, orientations, pixels_per_cell, cells_per_block, block_norm,
                        transform_sqrt):
    """:func:`skimage_hog` of a grey (H, W) image with float64 cell sums (no float32 rounding)."""
    image = np.asarray(image, dtype=np.float64)
    if transform_sqrt:
        image = np.sqrt(image)
    g_row, g_col = centred_gradients(image)
    hist = _hard_binned_cells(g_row, g_col, orientations, *pixels_per_cell)
    return _blocks(hist, cells_per_block, block_norm)


def _hard_binned_cells(g_row, g_col, orientations, cell_rows, cell_cols):
    magnitude = np.hypot(g_col, g_row)
    bins = _pixel_bins(g_row, g_col, orientations)
    n_rows, n_cols = g_row.shape[0] // cell_rows, g_row.shape[1] // cell_cols
    hist = np.zeros((n_rows, n_cols, orientations))
    for r in range(n_rows * cell_rows):
        for c in range(n_cols * cell_cols):
            if bins[r, c] >= 0:
                hist[r // cell_rows, c // cell_cols, bins[r, c]] += magnitude[r, c]
    return hist / (cell_rows * cell_cols)


def _pixel_bins(g_row, g_col, orientations):
    theta = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    edges = bin_edges(orientations)
    bins = np.searchsorted(edges, theta, side="right") - 1
    bins[theta >= edges[-1]] = -1
    return bins


def _blocks(hist, cells_per_block, block_norm):
    b_rows, b_cols = cells_per_block
    out = np.zeros((hist.shape[0] - b_rows + 1, hist.shape[1] - b_cols + 1, b_rows, b_cols,
                    hist.shape[2]))
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[r, c] = normalize_block(hist[r:r + b_rows, c:c + b_cols], block_norm)
    return out


def normalize_block_backward(block, dout, method, eps=SKIMAGE_EPS):
    """Gradient of :func:`normalize_block` with respect to ``block`` (entries >= 0)."""
    v, d = block.ravel(), dout.ravel()

    def through_l1(v, d):
        s = np.sum(v) + eps
        return d / s - np.dot(d, v) / s ** 2

    def through_l2(v, d):
        s = np.sqrt(np.sum(v ** 2) + eps ** 2)
        return d / s - v * np.dot(d, v) / s ** 3

    if method == "L1":
        dv = through_l1(v, d)
    elif method == "L1-sqrt":
        u = v / (np.sum(v) + eps)
        du = np.where(u > 0, d * 0.5 / np.sqrt(np.where(u > 0, u, 1)), 0.0)
        dv = through_l1(v, du)
    elif method == "L2":
        dv = through_l2(v, d)
    else:                                                      # L2-Hys
        a = v / np.sqrt(np.sum(v ** 2) + eps ** 2)
        clipped = np.minimum(a, L2HYS_CLIP)
        da = through_l2(clipped, d) * (a <= L2HYS_CLIP)
        dv = through_l2(v, da)
    return dv.reshape(block.shape)


def skimage_hog_backward(image, dfeatures, orientations, pixels_per_cell, cells_per_block,
                         block_norm, transform_sqrt):
    """Gradient of ``sum(dfeatures * skimage_hog_float64(image, ...))`` w.r.t. the (H, W) image.

    Stages backwards: blocks -> cells (each cell collects from every block containing it) ->
    per-pixel magnitude in its (fixed) bin, ``dm = dcell / (cell_rows * cell_cols)`` -> centred
    differences ``dg = dm * g / m`` -> pixels ``I[r + 1] += dg_r, I[r - 1] -= dg_r`` (columns
    likewise) -> square root ``dI = dJ / (2 sqrt(I))`` (with ``I`` floored at
    ``SQRT_GRAD_FLOOR``).
    """
    image = np.asarray(image, dtype=np.float64)
    x = np.sqrt(image) if transform_sqrt else image
    g_row, g_col = centred_gradients(x)
    cell_rows, cell_cols = pixels_per_cell
    hist = _hard_binned_cells(g_row, g_col, orientations, cell_rows, cell_cols)
    b_rows, b_cols = cells_per_block
    dout = np.asarray(dfeatures, dtype=np.float64).reshape(
        hist.shape[0] - b_rows + 1, hist.shape[1] - b_cols + 1, b_rows, b_cols, orientations)
    dhist = np.zeros_like(hist)
    for r in range(dout.shape[0]):
        for c in range(dout.shape[1]):
            dhist[r:r + b_rows, c:c + b_cols] += normalize_block_backward(
                hist[r:r + b_rows, c:c + b_cols], dout[r, c], block_norm)
    magnitude = np.hypot(g_col, g_row)
    bins = _pixel_bins(g_row, g_col, orientations)
    dg_row, dg_col = np.zeros_like(x), np.zeros_like(x)
    for r in range(hist.shape[0] * cell_rows):
        for c in range(hist.shape[1] * cell_cols):
            if bins[r, c] < 0 or magnitude[r, c] == 0:
                continue
            dm = dhist[r // cell_rows, c // cell_cols, bins[r, c]] / (cell_rows * cell_cols)
            dg_row[r, c] = dm * g_row[r, c] / magnitude[r, c]
            dg_col[r, c] = dm * g_col[r, c] / magnitude[r, c]
    dx = np.zeros_like(x)
    dx[2:, :] += dg_row[1:-1, :]          # g_row[r] = x[r + 1] - x[r - 1], r = 1 .. H - 2
    dx[:-2, :] -= dg_row[1:-1, :]
    dx[:, 2:] += dg_col[:, 1:-1]
    dx[:, :-2] -= dg_col[:, 1:-1]
    if transform_sqrt:
        dx = dx * 0.5 / np.sqrt(np.maximum(image, SQRT_GRAD_FLOOR))
    return dx


# --- OpenCV variant -------------------------------------------------------------------------

def reflect101(i, n):
    """OpenCV's BORDER_REFLECT_101 index: ... 2 1 | 0 1 2 ... n-1 | n-2 ..."""
    if n == 1:
        return 0
    while i < 0 or i >= n:
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def fast_atan2_deg(y, x):
    """OpenCV's fastAtan2 polynomial in float32 (degrees in [0, 360))."""
    f = np.float32
    deg = f(180.0 / math.pi)
    p1, p3 = f(0.9997878412794807) * deg, f(-0.3258083974640975) * deg
    p5, p7 = f(0.1555786518463281) * deg, f(-0.04432655554792128) * deg
    ax, ay = abs(f(x)), abs(f(y))
    c = min(ax, ay) / (max(ax, ay) + f(np.finfo(np.float64).eps))
    c2 = c * c
    a = (((p7 * c2 + p5) * c2 + p3) * c2 + p1) * c
    if ax < ay:
        a = f(90) - a
    if x < 0:
        a = f(180) - a
    if y < 0:
        a = f(360) - a
    return a


def opencv_gradient(image, gamma_correction):
    """dx, dy (float32) of a grey (H, W) image with reflect-101 borders, after the gamma LUT."""
    f = image.astype(np.float32)
    if gamma_correction:
        f = np.sqrt(f)
    H, W = f.shape
    dx = np.zeros((H, W), np.float32)
    dy = np.zeros((H, W), np.float32)
    for y in range(H):
        for x in range(W):
            dx[y, x] = f[y, reflect101(x + 1, W)] - f[y, reflect101(x - 1, W)]
            dy[y, x] = f[reflect101(y + 1, H), x] - f[reflect101(y - 1, H), x]
    return dx, dy


def opencv_hog_window(image, win_size=(64, 128), block_size=(16, 16), block_stride=(8, 8),
                      cell_size=(8, 8), nbins=9, win_sigma=None, gamma_correction=True,
                      threshold=L2HYS_CLIP):
    """OpenCV's descriptor of one grey window the size of ``image`` (sizes are (width, height)).

    Returns the flat float32 descriptor in OpenCV's order: blocks x-major, then cells x-major,
    then bins.
    """
    f = np.float32
    dx, dy = opencv_gradient(image, gamma_correction)
    bw, bh = block_size
    cw, ch = cell_size
    ncx, ncy = bw // cw, bh // ch
    sigma = f(win_sigma if win_sigma else (bw + bh) / 8.0)

    # per-pixel magnitude split linearly between the two nearest bin centres
    mag = np.sqrt(dx * dx + dy * dy, dtype=np.float32)
    angle = np.array([[fast_atan2_deg(dy[y, x], dx[y, x]) for x in range(dx.shape[1])]
                      for y in range(dx.shape[0])], dtype=np.float32)
    a = angle * f(math.pi / 180) * f(nbins / math.pi) - f(0.5)
    lower = np.floor(a).astype(int)
    frac = a - lower
    bin0 = lower % nbins
    bin1 = (lower + 1) % nbins

    # Gaussian window over the block, centred at (bh/2, bw/2)
    ii = (np.arange(bh, dtype=f) - f(bh * 0.5)) ** 2
    jj = (np.arange(bw, dtype=f) - f(bw * 0.5)) ** 2
    gauss = np.exp(-(ii[:, None] + jj[None, :]) * (f(1) / (sigma * sigma * 2)))

    descriptor = []
    win_w, win_h = win_size
    for bx in range(0, win_w - bw + 1, block_stride[0]):          # x-major, as OpenCV
        for by in range(0, win_h - bh + 1, block_stride[1]):
            hist = np.zeros((ncx, ncy, nbins), np.float32)
            for i in range(bh):
                for j in range(bw):
                    y, x = by + i, bx + j
                    # bilinear weights towards the surrounding cell centres
                    cx = (f(j) + f(0.5)) / f(cw) - f(0.5)
                    cy = (f(i) + f(0.5)) / f(ch) - f(0.5)
                    x0, y0 = int(np.floor(cx)), int(np.floor(cy))
                    fx, fy = cx - x0, cy - y0
                    for gx, wx in ((x0, f(1) - fx), (x0 + 1, fx)):
                        for gy, wy in ((y0, f(1) - fy), (y0 + 1, fy)):
                            if 0 <= gx < ncx and 0 <= gy < ncy:
                                w = gauss[i, j] * (wx * wy)
                                hist[gx, gy, bin0[y, x]] += mag[y, x] * (f(1) - frac[y, x]) * w
                                hist[gx, gy, bin1[y, x]] += mag[y, x] * frac[y, x] * w
            h = hist.ravel()
            h = h / (np.sqrt(np.sum(h * h)) + f(0.1) * h.size)
            h = np.minimum(h, f(threshold))
            h = h / (np.sqrt(np.sum(h * h)) + f(1e-3))
            descriptor.append(h.astype(np.float32))
    return np.concatenate(descriptor)
