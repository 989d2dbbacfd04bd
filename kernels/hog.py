"""Histogram of Oriented Gradients kernels, in the two variants people compare.

Both follow Dalal & Triggs 2005 (gradient -> orientation histograms per cell -> normalisation
over overlapping blocks), but differ in every detail, so each has its own kernels here. The API,
validation and defaults are in :mod:`cvcore.features._hog`; the readable NumPy twins are in
:mod:`kernels.reference.hog`.

scikit-image variant (``skimage.feature.hog``, version 0.26 ``_hog.py`` + ``_hoghistogram.pyx``)
---------------------------------------------------------------------------------------------
1. Gradient: centred differences ``g_row[r, c] = I[r+1, c] - I[r-1, c]`` and
   ``g_col[r, c] = I[r, c+1] - I[r, c-1]`` in the image's float precision; zero on the outer
   border rows / columns. Colour: per pixel, the channel whose ``hypot(g_row, g_col)`` is largest
   (first channel on ties).
2. Orientation: ``theta = rad2deg(arctan2(g_row, g_col)) mod 180`` in [0, 180) degrees, float64
   ("unsigned" gradients; 0 deg points along +column, 90 deg along +row, i.e. downwards).
   Only the bin matters, so most pixels are binned from a cheap polynomial estimate; those
   within ``ANGLE_MARGIN`` of a bin edge are settled exactly, the last few by the caller with
   NumPy's own ``arctan2`` (see :func:`skimage_cell_sums`).
3. Cell histograms: hard binning, no interpolation. Bin ``b`` holds ``e_b <= theta < e_{b+1}``
   with ``e_b = float32(float32(180 / B) * b)`` (scikit-image computes its edges in C
   ``float``). A cell is ``cell_rows x cell_cols`` pixels starting at ``(i * cell_rows,
   j * cell_cols)``; pixels beyond the last full cell are ignored. Value = (sum of the
   magnitudes in the bin, accumulated in float32) / (number of pixels in a cell).
4. Blocks: every ``block_rows x block_cols`` group of cells at a cell stride of one, normalised with
   L1, L1-sqrt, L2 or L2-Hys (eps = 1e-5), in float64. Layout ``(block_row, block_col, cell_row,
   cell_col, bin)``.

OpenCV variant (``cv::HOGDescriptor``, ``modules/objdetect/src/hog.cpp``)
-----------------------------------------------------------------------
1. Gradient on the padded image, borders by reflection (BORDER_REFLECT_101): ``dx = I[y, x+1] -
   I[y, x-1]``, ``dy = I[y+1, x] - I[y-1, x]`` in float32, after the optional gamma look-up
   ``sqrt(I)``. Colour: the channel with the largest ``dx^2 + dy^2`` (ties: see opencv_gradients).
2. Orientation: OpenCV's polynomial ``fastAtan2`` (degrees, |error| < 0.01 deg) converted to
   radians, then ``a = angle * nbins / pi - 0.5``; the magnitude ``sqrt(dx^2 + dy^2)`` is split
   linearly between bins ``floor(a)`` and ``floor(a) + 1`` (mod nbins): bin centres are at
   ``(b + 0.5) * 180 / nbins`` degrees.
3. Block histograms: each pixel of a block votes into the (up to 4) cells whose centres surround
   it with bilinear weights, times a Gaussian window ``exp(-(dx^2 + dy^2) / (2 sigma^2))`` centred
   on the block (``sigma = (block_w + block_h) / 8`` by default): trilinear interpolation. Both
   weights are separable, which the kernel uses (rows first, shared between blocks).
   Layout inside a block: ``(cell_x, cell_y, bin)`` (x-major, as OpenCV).
4. Normalisation: L2-Hys: ``h / (||h|| + 0.1 * len(h))``, clip at 0.2, ``h / (||h|| + 1e-3)``.

Nothing here validates its input; :mod:`cvcore.features._hog` does.
"""
import math

import numpy as np
from numba import njit, prange

# --- scikit-image variant -------------------------------------------------------------------

RAD2DEG = 180.0 / math.pi           # np.rad2deg multiplies by exactly this constant
SKIMAGE_EPS = 1e-5                  # skimage.feature._hog._hog_normalize_block, eps
L2HYS_CLIP = 0.2                    # Dalal & Triggs 2005 sec. 6.4 / Lowe 2004 sec. 6.1

NORM_L1, NORM_L1_SQRT, NORM_L2, NORM_L2_HYS = 0, 1, 2, 3

# Parallel loops over many small tasks (rows of cells, rows of blocks) hand each thread a
# contiguous group of them, so that scratch buffers are allocated per group, not per task.
TASK_GROUPS = 256

# OpenCV's fastAtan2 polynomial in radians (core/src/mathfuncs_core.simd.hpp, atan2_p1..p7),
# |error| < 0.0096 degree on [0, 1]: a cheap first estimate of the orientation.
ATAN_P1_64, ATAN_P3_64 = 0.9997878412794807 * RAD2DEG, -0.3258083974640975 * RAD2DEG
ATAN_P5_64, ATAN_P7_64 = 0.1555786518463281 * RAD2DEG, -0.04432655554792128 * RAD2DEG
# Estimates closer than this to a bin edge (degrees) are decided by the exact atan2.
ANGLE_MARGIN = 0.05


@njit(cache=True, error_model="numpy", nogil=True)
def _bin_of(theta, edges):
    """Bin ``b`` with ``edges[b] <= theta < edges[b + 1]``, or -1 when ``theta >= edges[-1]``.
    Called, not inlined: its callers use it outside their pixel loops, and each inlined copy
    of its two search loops was compiled again."""
    B = edges.shape[0] - 1
    if theta >= edges[B]:
        return -1
    b = min(int(theta * (B / 180.0)), B - 1)
    while theta < edges[b]:
        b -= 1
    while theta >= edges[b + 1]:
        b += 1
    return b


@njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _row_gradients(image, n, r, ch, width, g_row, g_col):
    """Centred differences of row ``r``, channel ``ch``, columns ``[0, width)``; 0 on borders."""
    H, W = image.shape[1], image.shape[2]
    if 0 < r < H - 1:
        up = image[n, r - 1]
        down = image[n, r + 1]
        for c in range(width):
            g_row[c] = down[c, ch] - up[c, ch]
    else:
        for c in range(width):
            g_row[c] = 0
    row = image[n, r]
    for c in range(1, min(width, W - 1)):
        g_col[c] = row[c + 1, ch] - row[c - 1, ch]
    g_col[0] = 0
    if width == W:
        g_col[W - 1] = 0


@njit(cache=True, error_model="numpy", nogil=True)
def skimage_cell_sums(image, cell_rows, cell_cols, edges, sums,
                      defer_gr, defer_gc, defer_cell, defer_count, t0, t1):
    """Gradients and hard-binned orientation sums of the cells of tasks ``t0 .. t1 - 1``, as
    scikit-image; task ``t`` is the row of cells ``t % n_cells_row`` of image
    ``t // n_cells_row``.

    One thread, ``nogil``: the caller runs bands of tasks on several threads
    (:func:`cvcore._bands.run_bands`). A ``prange`` here doubled the kernel's compile
    time (a parallel region is a module of its own, compiled and optimised again).

    Parameters
    ----------
    image : (N, H, W, C) float32 or float64
        The differences are taken in this precision (scikit-image's ``float_dtype``, or float32
        for grey 8-bit integer images, whose differences are exact there); colour: the channel
        with the largest ``hypot`` in that precision, first on ties.
    cell_rows, cell_cols : int
        Cell size in pixels.
    edges : (B + 1,) float64
        Bin edges in degrees, ``float32(float32(180 / B) * b)``.
    sums : (N, n_cells_row, n_cells_col, B) float32
        Receives, per cell and bin, the sum of the gradient magnitudes (scikit-image sums into a
        C float: each addition is done in double and rounded to float32).
    defer_gr, defer_gc : (N * n_cells_row, cell_rows * n_cells_col * cell_cols) float64
    defer_cell : same shape, int32
    defer_count : (N * n_cells_row,) int64
        Receive the pixels left for the caller to bin (see Notes): for cell row ``t``, the first
        ``defer_count[t]`` entries hold their gradients and cell column.
    t0, t1 : int
        The tasks to compute (``0, N * n_cells_row`` for all).

    Notes
    -----
    Binning ``theta = rad2deg(arctan2(g_row, g_col)) mod 180`` needs ``theta`` only to decide
    between two edges. Most pixels are decided here from a cheap estimate (OpenCV's arc-tangent
    polynomial, |error| < 0.0096 degree) that lies farther than ``ANGLE_MARGIN`` from every edge.
    Gradients exactly along 0, 90, 45 or 135 degrees (``g_row = 0``, ``g_col = 0``,
    ``|g_row| = |g_col|``) get the angle NumPy's ``arctan2`` gives them, exactly. The remaining
    few (a few per thousand) are deferred: the caller bins them with NumPy's own ``arctan2``,
    since near an edge the last bit of the arc-tangent decides and NumPy's vectorised
    ``arctan2`` can differ from the C library's in that bit. The magnitude is
    ``sqrt(g_col^2 + g_row^2)``; ``np.hypot`` can differ in the last bit, far below the float32
    sum that follows.
    """
    N, H, W, C = image.shape
    ncr, ncc, B = sums.shape[1:]
    per_degree = B / 180.0
    span = ncc * cell_cols
    margin_bins = ANGLE_MARGIN * per_degree
    b45 = _bin_of(45.0, edges)
    b90 = _bin_of(90.0, edges)
    b135 = _bin_of(135.0, edges)
    # scratch rows, allocated once per call
    row_gr = np.empty(W, image.dtype)
    row_gc = np.empty(W, image.dtype)
    best_gr = np.empty(span)
    best_gc = np.empty(span)
    best_m = np.empty(span, image.dtype)
    mags = np.empty(span)
    bins = np.empty(span, np.intp)
    for t in range(t0, t1):
        n = t // ncr
        i = t - n * ncr
        acc = sums[n, i]
        for j in range(ncc):
            for b in range(B):
                acc[j, b] = 0
        deferred = 0
        for r in range(i * cell_rows, (i + 1) * cell_rows):
            # 1. gradient of the dominant channel (one call site: the inlined helper is
            # compiled once)
            for ch in range(C):
                _row_gradients(image, n, r, ch, span, row_gr, row_gc)
                if C == 1:
                    for c in range(span):
                        best_gr[c] = row_gr[c]
                        best_gc[c] = row_gc[c]
                    continue
                if ch == 0:
                    for c in range(span):
                        best_m[c] = -1
                for c in range(span):
                    m = math.hypot(row_gr[c], row_gc[c])
                    if m > best_m[c]:
                        best_m[c] = m
                        best_gr[c] = row_gr[c]
                        best_gc[c] = row_gc[c]
            # 2. magnitude and a bin estimate (branch-free: vectorises); -1 marks "not sure"
            for c in range(span):
                gr = best_gr[c]
                gc = best_gc[c]
                mags[c] = math.sqrt(gc * gc + gr * gr)
                ax = abs(gc)
                ay = abs(gr)
                steep = ax < ay
                z = (ax if steep else ay) / ((ay if steep else ax) + 1e-300)
                z2 = z * z
                a = (((ATAN_P7_64 * z2 + ATAN_P5_64) * z2 + ATAN_P3_64) * z2 + ATAN_P1_64) * z
                a = 90.0 - a if steep else a
                a = 180.0 - a if (gc < 0.0) != (gr < 0.0) else a     # fold into [0, 180]
                # distance to the nearest edge of the uniform grid k * 180 / B, in bins (the
                # float32 edges lie within 1e-5 degree of it, far inside the margin)
                u = a * per_degree
                b = int(u)
                frac = u - b
                near = (frac < margin_bins) or (frac > 1.0 - margin_bins)
                bins[c] = -1 if near else b
            # 3. settle the uncertain ones and sum into the cells, in scikit-image's order
            for j in range(ncc):
                cell_acc = acc[j]
                for c in range(j * cell_cols, (j + 1) * cell_cols):
                    m = mags[c]
                    if m == 0.0:
                        continue
                    b = bins[c]
                    if b < 0:
                        gr = best_gr[c]
                        gc = best_gc[c]
                        if gr == 0.0:
                            b = 0                   # theta = 0 (or 180 - 180)
                        elif gc == 0.0:
                            b = b90
                        elif gr == gc:
                            b = b45
                        elif gr == -gc:
                            b = b135
                        else:
                            defer_gr[t, deferred] = gr
                            defer_gc[t, deferred] = gc
                            defer_cell[t, deferred] = j
                            deferred += 1
                            continue
                        if b < 0:
                            continue
                    cell_acc[b] = np.float32(np.float64(cell_acc[b]) + m)
        defer_count[t] = deferred


@njit(cache=True, error_model="numpy", nogil=True)
def add_deferred(sums, row, cell, bins, g_row, g_col):
    """Add the magnitudes of the deferred pixels to ``sums`` (bins < 0: in no bin)."""
    ncr = sums.shape[1]
    for k in range(row.shape[0]):
        b = bins[k]
        if b < 0:
            continue
        n = row[k] // ncr
        i = row[k] - n * ncr
        m = math.sqrt(g_col[k] * g_col[k] + g_row[k] * g_row[k])
        sums[n, i, cell[k], b] = np.float32(np.float64(sums[n, i, cell[k], b]) + m)


@njit(cache=True, error_model="numpy", nogil=True)
def _sum_of(v, square):
    """Sum of ``v ** 2`` (``square``) or of ``|v|``, with four running partial sums
    (independent chains run in parallel). One function for both, called (not inlined) from
    the three places that need it: compiled once (0.3 s less of the first call's compile)."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = v.size - v.size % 4
    for k in range(0, n4, 4):
        a0, a1, a2, a3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        s0 += a0 * a0 if square else abs(a0)
        s1 += a1 * a1 if square else abs(a1)
        s2 += a2 * a2 if square else abs(a2)
        s3 += a3 * a3 if square else abs(a3)
    for k in range(n4, v.size):
        a0 = v[k]
        s0 += a0 * a0 if square else abs(a0)
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _normalize_block(block, norm, eps):
    """Normalise one flattened block in place with the scikit-image formulas (float64).

    The sums are not added in NumPy's order (pairwise); they differ in the last bits only.
    """
    if norm == NORM_L1 or norm == NORM_L1_SQRT:
        s = _sum_of(block, False) + eps
        for k in range(block.size):
            block[k] = block[k] / s
        if norm == NORM_L1_SQRT:
            for k in range(block.size):
                block[k] = math.sqrt(block[k])
    else:
        s = math.sqrt(_sum_of(block, True) + eps * eps)
        for k in range(block.size):
            block[k] = block[k] / s
        if norm == NORM_L2_HYS:
            for k in range(block.size):
                block[k] = L2HYS_CLIP if block[k] > L2HYS_CLIP else block[k]
            s = math.sqrt(_sum_of(block, True) + eps * eps)
            for k in range(block.size):
                block[k] = block[k] / s


@njit(cache=True, error_model="numpy", nogil=True)
def skimage_normalize_blocks(hist, block_rows, block_cols, norm, out, t0, t1):
    """Normalise the blocks of tasks ``t0 .. t1 - 1`` (``block_rows x block_cols`` cells, cell
    stride 1); task ``t`` is the row of blocks ``t % n_blocks_row`` of image
    ``t // n_blocks_row``. One thread, ``nogil``, like :func:`skimage_cell_sums`.

    Parameters
    ----------
    hist : (N, n_cells_row, n_cells_col, B) float64
    block_rows, block_cols : int
    norm : int
        One of ``NORM_L1, NORM_L1_SQRT, NORM_L2, NORM_L2_HYS`` (one formula per block; the
        choice is a parameter so that the four norms share one compiled kernel).
    out : (N, n_blocks_row, n_blocks_col, block_rows * block_cols * B) float64
        The blocks, each flattened in the order ``(cell_row, cell_col, bin)``: a reshape of
        scikit-image's ``(N, n_blocks_row, n_blocks_col, block_rows, block_cols, B)``.
        Computed and stored in float64 (the caller rounds to scikit-image's ``float_dtype``:
        one specialisation of this kernel instead of two); each block is gathered into its
        place in ``out`` and normalised there.
    t0, t1 : int
        The tasks to compute (``0, N * n_blocks_row`` for all).
    """
    N, nbr, nbc = out.shape[:3]
    B = hist.shape[3]
    for t in range(t0, t1):
        n = t // nbr
        i = t - n * nbr
        for j in range(nbc):
            block = out[n, i, j]
            k = 0
            for u in range(block_rows):
                for v in range(block_cols):
                    for b in range(B):
                        block[k] = hist[n, i + u, j + v, b]
                        k += 1
            _normalize_block(block, norm, SKIMAGE_EPS)


# --- scikit-image variant: backward (the gradient of the features with respect to the image) -----

@njit(cache=True, error_model="numpy", nogil=True)
def _block_backward(v, dout, norm, eps, dv):
    """``dv = (d out / d v)^T dout`` for one flattened block ``v`` (float64, all entries >= 0).

    With ``S = sum v + eps`` (L1; the entries are sums of magnitudes, so ``|v| = v``) or
    ``S = sqrt(sum v^2 + eps^2)`` (L2), ``out = v / S`` has
    ``dv = dout / S - (dout . v) / S^2`` (L1) or ``dv = dout / S - v (dout . v) / S^3`` (L2).
    L1-sqrt: ``out = sqrt(u)``, ``du = dout / (2 sqrt(u))`` (0 where ``u = 0``, the one-sided
    derivative there being infinite). L2-Hys: ``a = v / S1``, ``c = min(a, 0.2)``,
    ``out = c / S2``; ``da = dc`` where ``a <= 0.2`` (the forward keeps ``a`` there), else 0.
    """
    K = v.size
    if norm == NORM_L1 or norm == NORM_L1_SQRT:
        s = 0.0
        for k in range(K):
            s += abs(v[k])
        s += eps
        if norm == NORM_L1_SQRT:
            for k in range(K):
                u = v[k] / s
                dv[k] = dout[k] * 0.5 / math.sqrt(u) if u > 0.0 else 0.0
        else:
            for k in range(K):
                dv[k] = dout[k]
        dot = 0.0
        for k in range(K):
            dot += dv[k] * v[k]
        for k in range(K):
            dv[k] = dv[k] / s - dot / (s * s)
        return
    s1 = math.sqrt(_sum_of(v, True) + eps * eps)
    if norm == NORM_L2_HYS:
        # dv first holds c = min(v / S1, clip), then the gradient through the second norm
        for k in range(K):
            a = v[k] / s1
            dv[k] = L2HYS_CLIP if a > L2HYS_CLIP else a
        s2 = math.sqrt(_sum_of(dv, True) + eps * eps)
        dot = 0.0
        for k in range(K):
            dot += dout[k] * dv[k]
        for k in range(K):
            da = dout[k] / s2 - dv[k] * dot / (s2 * s2 * s2)
            dv[k] = da if v[k] / s1 <= L2HYS_CLIP else 0.0
    else:
        for k in range(K):
            dv[k] = dout[k]
    dot = 0.0
    for k in range(K):
        dot += dv[k] * v[k]
    for k in range(K):
        dv[k] = dv[k] / s1 - v[k] * dot / (s1 * s1 * s1)


@njit(cache=True, parallel=True, error_model="numpy", nogil=True)
def skimage_normalize_blocks_backward(hist, block_rows, block_cols, norm, dout, dhist):
    """Backward of :func:`skimage_normalize_blocks`: accumulate into ``dhist``.

    Parameters
    ----------
    hist : (N, n_cells_row, n_cells_col, B) float64, the cell histograms of the forward pass
    block_rows, block_cols, norm : as the forward
    dout : (N, n_blocks_row, n_blocks_col, block_rows, block_cols, B) float64
    dhist : (N, n_cells_row, n_cells_col, B) float64, zeroed by the caller; every cell receives
        the sum over the (overlapping) blocks that contain it.

    Parallel over images only: the blocks of one image overlap, so they add into shared cells.
    """
    N, nbr, nbc = dout.shape[:3]
    B = hist.shape[3]
    K = block_rows * block_cols * B
    for n in prange(N):
        v = np.empty(K)
        dv = np.empty(K)
        d = np.empty(K)
        for i in range(nbr):
            for j in range(nbc):
                k = 0
                for u in range(block_rows):
                    for w in range(block_cols):
                        for b in range(B):
                            v[k] = hist[n, i + u, j + w, b]
                            d[k] = dout[n, i, j, u, w, b]
                            k += 1
                _block_backward(v, d, norm, SKIMAGE_EPS, dv)
                k = 0
                for u in range(block_rows):
                    for w in range(block_cols):
                        for b in range(B):
                            dhist[n, i + u, j + w, b] += dv[k]
                            k += 1


@njit(cache=True, parallel=True, error_model="numpy", nogil=True)
def skimage_cell_sums_backward(image, cell_rows, cell_cols, edges, dhist, dimage):
    """Backward of the gradient, magnitude and hard binning of :func:`skimage_cell_sums`.

    Parameters
    ----------
    image : (N, H, W, C) float64, the image the histograms were computed from (after the
        optional square root)
    cell_rows, cell_cols : int
    edges : (B + 1,) float64, the forward's bin edges
    dhist : (N, n_cells_row, n_cells_col, B) float64, gradient with respect to the cell *sums*
        (the caller folds in the division by the number of pixels per cell)
    dimage : (N, H, W, C) float64, zeroed by the caller; receives the gradient

    Notes
    -----
    Per pixel of a full cell, with ``(g_r, g_c)`` the dominant channel's centred differences,
    ``m = sqrt(g_r^2 + g_c^2)`` and bin ``b(theta)``: the bin is piecewise constant in the
    image (hard binning has no interpolation to differentiate), so
    ``d sum_b / d g = g / m`` for the pixel's bin only (0 where ``m = 0``), and each difference
    ``g_r = I[r + 1] - I[r - 1]`` sends ``+dg_r`` to row ``r + 1`` and ``-dg_r`` to row
    ``r - 1`` (nothing on the border, where the forward set it to 0); likewise for columns.
    The dominant channel is a piecewise choice too: only it receives gradient. The bin is taken
    from the exact ``atan2``; it can differ from the forward's only for a pixel within rounding
    of a bin edge, where the function has no derivative anyway.
    """
    N, H, W, C = image.shape
    ncr, ncc, B = dhist.shape[1:]
    for n in prange(N):
        for r in range(ncr * cell_rows):
            i = r // cell_rows
            for c in range(ncc * cell_cols):
                best_m = -1.0
                gr = 0.0
                gc = 0.0
                ch = 0
                for q in range(C):
                    a = image[n, r + 1, c, q] - image[n, r - 1, c, q] if 0 < r < H - 1 else 0.0
                    e = image[n, r, c + 1, q] - image[n, r, c - 1, q] if 0 < c < W - 1 else 0.0
                    m = math.hypot(a, e) if C > 1 else 0.0
                    if C == 1 or m > best_m:
                        best_m = m
                        gr = a
                        gc = e
                        ch = q
                m = math.sqrt(gc * gc + gr * gr)
                if m == 0.0:
                    continue
                theta = math.atan2(gr, gc) * RAD2DEG
                theta = theta % 180.0
                b = _bin_of(theta, edges)
                if b < 0:
                    continue
                dm = dhist[n, i, c // cell_cols, b]
                dgr = dm * gr / m
                dgc = dm * gc / m
                if 0 < r < H - 1:
                    dimage[n, r + 1, c, ch] += dgr
                    dimage[n, r - 1, c, ch] -= dgr
                if 0 < c < W - 1:
                    dimage[n, r, c + 1, ch] += dgc
                    dimage[n, r, c - 1, ch] -= dgc


# --- OpenCV variant -------------------------------------------------------------------------

# Coefficients of OpenCV's fastAtan2 (core/src/mathfuncs_core.simd.hpp: atan2_p1..p7), already
# multiplied by 180/pi there, so the polynomial gives degrees.
_DEG = np.float32(180.0 / math.pi)
ATAN_P1 = np.float32(0.9997878412794807) * _DEG
ATAN_P3 = np.float32(-0.3258083974640975) * _DEG
ATAN_P5 = np.float32(0.1555786518463281) * _DEG
ATAN_P7 = np.float32(-0.04432655554792128) * _DEG
ATAN_EPS = np.float32(np.finfo(np.float64).eps)        # (float)DBL_EPSILON in the denominator
DEG2RAD_F32 = np.float32(math.pi / 180.0)              # cartToPolar(..., angleInDegrees=false)
F0, F1, F90, F180, F360, FHALF = (np.float32(v) for v in (0, 1, 90, 180, 360, 0.5))
OPENCV_HIST_EPS = np.float32(0.1)                       # hog.cpp: 1/(sqrt(sum) + 0.1 * size)
OPENCV_RENORM_EPS = np.float32(1e-3)                    # hog.cpp: 1/(sqrt(sum) + 1e-3)


@njit(cache=True, error_model="numpy", nogil=True)
def _gather_row(row, table, xmap, out):
    """``out[x, ch] = row[xmap[x], ch]``, through ``table`` when it is not None.

    ``table`` (256,) float32 is the gamma look-up of a uint8 ``row``; None leaves the float32
    values as they are (Numba compiles the two cases separately, without the branch).
    """
    C = out.shape[1]
    for x in range(out.shape[0]):
        src = row[xmap[x]]
        for ch in range(C):
            if table is None:
                out[x, ch] = src[ch]
            else:
                out[x, ch] = table[src[ch]]


@njit(cache=True, error_model="numpy", nogil=True)
def _row_slot(key, need0, need1, need2, keys, rows, image, table, xmap):
    """Slot of ``rows`` holding gathered source row ``key``, gathering it into a slot that
    none of the rows ``need0..2`` uses when it is not there yet (a ring of three rows: each
    source row is gathered once per group of consecutive output rows, not three times)."""
    for s in range(3):
        if keys[s] == key:
            return s
    for s in range(3):
        k = keys[s]
        if k != need0 and k != need1 and k != need2:
            _gather_row(image[key], table, xmap, rows[s])
            keys[s] = key
            return s
    return -1                                   # unreachable: three slots, three rows


@njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _colour_derivatives(cur, prev, nxt, x):
    """``dx, dy, dx^2 + dy^2`` of the three channels at column ``x`` of the gathered rows."""
    dx0 = cur[x + 2, 0] - cur[x, 0]
    dy0 = nxt[x + 1, 0] - prev[x + 1, 0]
    dx1 = cur[x + 2, 1] - cur[x, 1]
    dy1 = nxt[x + 1, 1] - prev[x + 1, 1]
    dx2 = cur[x + 2, 2] - cur[x, 2]
    dy2 = nxt[x + 1, 2] - prev[x + 1, 2]
    return (dx0, dy0, dx0 * dx0 + dy0 * dy0, dx1, dy1, dx1 * dx1 + dy1 * dy1,
            dx2, dy2, dx2 * dx2 + dy2 * dy2)


@njit(cache=True, error_model="numpy", nogil=True)
def _gradient_row(y, image, table, ymap, xmap, simd_cols, angle_scale, nbins, ring, keys, ddx,
                  ddy, g0, g1, q0, q1):
    """Padded row ``y`` of :func:`opencv_gradients`: its two votes ``g0, g1`` (Wp,) float32 and
    bins ``q0, q1`` (Wp,) int32.

    ``ring`` (3, Wp + 2, C) float32 and ``keys`` (3,) int64 hold the gathered source rows between
    calls (start with ``keys = -1``); ``ddx, ddy`` (Wp,) float32 are scratch.
    """
    Wp = xmap.shape[0] - 2
    C = image.shape[2]
    # 1. derivatives of the row, on the gathered rows y - 1, y, y + 1
    k0, k1, k2 = ymap[y], ymap[y + 1], ymap[y + 2]
    prev = ring[_row_slot(k0, k0, k1, k2, keys, ring, image, table, xmap)]
    cur = ring[_row_slot(k1, k0, k1, k2, keys, ring, image, table, xmap)]
    nxt = ring[_row_slot(k2, k0, k1, k2, keys, ring, image, table, xmap)]
    if C == 1:
        for x in range(Wp):
            ddx[x] = cur[x + 2, 0] - cur[x, 0]
            ddy[x] = nxt[x + 1, 0] - prev[x + 1, 0]
    else:
        for x in range(simd_cols):
            # vector code: 2 if m2 > m1 else 1; then that one if max(m1, m2) > m0 else 0
            dx0, dy0, m0, dx1, dy1, m1, dx2, dy2, m2 = _colour_derivatives(cur, prev, nxt, x)
            two = m2 > m1
            dx = dx2 if two else dx1
            dy = dy2 if two else dy1
            m = m2 if two else m1                 # max(m1, m2)
            zero = not (m > m0)
            ddx[x] = dx0 if zero else dx
            ddy[x] = dy0 if zero else dy
        for x in range(simd_cols, Wp):
            # scalar code: start from channel 2, replace only on a strictly larger one
            dx0, dy0, m0, dx1, dy1, m1, dx2, dy2, m2 = _colour_derivatives(cur, prev, nxt, x)
            dx, dy, m = dx2, dy2, m2
            if m < m1:
                dx, dy, m = dx1, dy1, m1
            if m < m0:
                dx, dy = dx0, dy0
            ddx[x] = dx
            ddy[x] = dy
    # 2. magnitude, angle (OpenCV's fastAtan2, written with selects so that it vectorises)
    #    and the linear split between the two nearest bin centres
    for x in range(Wp):
        dx = ddx[x]
        dy = ddy[x]
        mag = np.float32(math.sqrt(dx * dx + dy * dy))
        ax = abs(dx)
        ay = abs(dy)
        steep = ax < ay
        c = (ax if steep else ay) / ((ay if steep else ax) + ATAN_EPS)
        c2 = c * c
        a = (((ATAN_P7 * c2 + ATAN_P5) * c2 + ATAN_P3) * c2 + ATAN_P1) * c
        a = F90 - a if steep else a
        a = F180 - a if dx < F0 else a
        a = F360 - a if dy < F0 else a
        a = a * DEG2RAD_F32 * angle_scale - FHALF
        hidx = np.int32(a)                                  # truncation ...
        hidx = hidx - np.int32(1) if a < np.float32(hidx) else hidx   # ... to floor
        frac = a - np.float32(hidx)
        g0[x] = mag * (F1 - frac)
        g1[x] = mag * frac
        hidx = hidx + nbins if hidx < 0 else hidx
        hidx = hidx - nbins if hidx >= nbins else hidx
        q0[x] = hidx
        hidx = hidx + np.int32(1)
        q1[x] = hidx if hidx < nbins else np.int32(0)


@njit(cache=True, parallel=True, error_model="numpy", nogil=True)
def opencv_gradients(image, table, ymap, xmap, simd_cols, angle_scale, nbins):
    """OpenCV's ``computeGradient``: magnitude split between two orientation bins per pixel.

    Parameters
    ----------
    image : (H, W, C) uint8 or float32
        C is 1 or 3. uint8 values go through ``table``; float32 ones are used as they are
        (after the caller's gamma correction).
    table : (256,) float32 or None
        OpenCV's gamma look-up (``sqrt`` of 0..255, or the values) for a uint8 image; None for
        a float32 one.
    ymap, xmap : (Hp + 2,), (Wp + 2,) int64
        Source row / column of padded row ``y - 1`` / column ``x - 1`` (reflect-101 borders).
    simd_cols : int
        Columns ``x < simd_cols`` follow OpenCV's vector code, the rest its scalar tail; they break
        ties between colour channels differently (vector: lowest channel; scalar: highest).
    angle_scale : float32
        ``nbins / pi`` (unsigned) or ``nbins / (2 pi)`` (signed).
    nbins : int32

    Returns
    -------
    votes : (2, Hp, Wp) float32
        ``mag * (1 - frac)`` and ``mag * frac`` (OpenCV's two-channel ``grad``), with
        ``Hp, Wp = len(ymap) - 2, len(xmap) - 2``.
    bins : (2, Hp, Wp) int32
        The two bins ``floor(a)`` and ``floor(a) + 1`` mod nbins (OpenCV's ``qangle``).

    Notes
    -----
    Each source row is gathered once (through the border maps and the look-up) into a ring of
    three contiguous float32 scratch rows, so that the derivative, channel-selection and angle
    loops run on contiguous memory without branches (selects only) and vectorise. Rows are
    handed to the threads in contiguous groups, so the scratch rows are allocated per group.
    One row is :func:`_gradient_row`.
    """
    Hp = ymap.shape[0] - 2
    Wp = xmap.shape[0] - 2
    C = image.shape[2]
    votes = np.empty((2, Hp, Wp), np.float32)
    bins = np.empty((2, Hp, Wp), np.int32)
    G = min(Hp, TASK_GROUPS)
    for g in prange(G):
        ring = np.empty((3, Wp + 2, C), np.float32)   # padded columns -1 .. Wp of 3 rows
        keys = np.full(3, -1, np.int64)                # source row held by each slot
        ddx = np.empty(Wp, np.float32)
        ddy = np.empty(Wp, np.float32)
        for y in range(g * Hp // G, (g + 1) * Hp // G):
            _gradient_row(y, image, table, ymap, xmap, simd_cols, angle_scale, nbins, ring,
                          keys, ddx, ddy, votes[0, y], votes[1, y], bins[0, y], bins[1, y])
    return votes, bins


@njit(cache=True, error_model="numpy", nogil=True)
def _row_votes(g0, g1, q0, q1, col_step, weight_x, acc):
    """Step 1 of :func:`opencv_block_histograms` for one row: ``acc[q, cx * nb + b] = sum_j
    weight_x[cx, j] * vote_b(q * col_step + j)``, every block column ``q`` of ``acc`` (Q,
    cells_x * nbins) float32 (overwritten)."""
    Q = acc.shape[0]
    ncx, bw = weight_x.shape
    nb = acc.shape[1] // ncx
    acc[:] = 0
    for q in range(Q):
        a = acc[q]
        x0 = q * col_step
        for j in range(bw):
            a0 = g0[x0 + j]
            a1 = g1[x0 + j]
            b0 = q0[x0 + j]
            b1 = q1[x0 + j]
            for cx in range(ncx):
                w = weight_x[cx, j]
                if w != F0:
                    a[cx * nb + b0] += a0 * w
                    a[cx * nb + b1] += a1 * w


@njit(cache=True, error_model="numpy", nogil=True)
def _l2_hys(h, clip):
    """OpenCV's L2-Hys of one block histogram ``h`` (L,) float32, in place (hog.cpp,
    ``normalizeBlockHistogram``): ``h / (||h|| + 0.1 L)``, clipped at ``clip``, then
    ``h / (||h|| + 1e-3)``; one reciprocal per pass."""
    L = h.shape[0]
    s2 = F0
    for k in range(L):
        s2 += h[k] * h[k]
    scale = F1 / (np.float32(math.sqrt(s2)) + OPENCV_HIST_EPS * np.float32(L))
    s2 = F0
    for k in range(L):
        v = h[k] * scale
        v = clip if v > clip else v
        h[k] = v
        s2 += v * v
    scale = F1 / (np.float32(math.sqrt(s2)) + OPENCV_RENORM_EPS)
    for k in range(L):
        h[k] *= scale


@njit(cache=True, error_model="numpy", nogil=True)
def _normalised_block(rows, top, q, weight_y, ncx, clip, h):
    """Step 2 of :func:`opencv_block_histograms` for block column ``q`` whose first pixel row is
    ``top``: ``h[(cx, cy, b)] = sum_i weight_y[cy, i] * rows[top + i, q, cx * nb + b]``, then
    L2-Hys into ``h`` (L,) float32 (``ncx`` cells across). Row ``r`` of the block is read from ``rows[r % len(rows)]``
    (a ring of the last rows, or the whole table)."""
    R = rows.shape[0]
    ncy, bh = weight_y.shape
    L = h.shape[0]
    nb = L // (ncx * ncy)
    h[:] = 0
    for i in range(bh):
        src = rows[(top + i) % R, q]
        for cy in range(ncy):
            w = weight_y[cy, i]
            if w != F0:
                for cx in range(ncx):
                    hb = (cx * ncy + cy) * nb
                    sb = cx * nb
                    for b in range(nb):
                        h[hb + b] += w * src[sb + b]
    _l2_hys(h, clip)


@njit(cache=True, parallel=True, error_model="numpy", nogil=True)
def opencv_block_histograms(votes, bins, row_step, col_step, weight_y, weight_x, clip, out):
    """Trilinear block histograms with OpenCV's L2-Hys, at a grid of block positions.

    A pixel at ``(i, j)`` of a block adds ``mag * G(i, j) * wy(cy, i) * wx(cx, j)`` to cell
    ``(cx, cy)``, with ``G`` the Gaussian window and ``wy, wx`` the bilinear weights towards the
    cell centres. Both factors are separable, so the sum over the block is done as a sum along
    each row (shared by the vertically overlapping blocks), then a sum over the rows:

    ``row[y, q, cx, b] = sum_j gx(j) wx(cx, j) * vote_b(y, q * col_step + j)``
    ``hist[p, q, cx, cy, b] = sum_i gy(i) wy(cy, i) * row[p * row_step + i, q, cx, b]``

    (OpenCV computes ``G`` as one ``exp`` per pixel; ``gy(i) gx(j)`` differs by float32 rounding.)
    The two steps are :func:`_row_votes` and :func:`_normalised_block`.

    Parameters
    ----------
    votes, bins : (2, Hp, Wp) from :func:`opencv_gradients`.
    row_step, col_step : int
        Block ``(p, q)`` of the grid has its top-left pixel at ``(p * row_step, q * col_step)``
        of the padded gradient image.
    weight_y : (cells_y, block_h) float32
        ``gy(i) * wy(cy, i)``: Gaussian times bilinear weight of block row ``i`` for cell row
        ``cy`` (0 where the cell is not one of the two nearest).
    weight_x : (cells_x, block_w) float32
        The same along the columns.
    clip : float32
        L2-Hys clipping threshold (0.2).
    out : (P, Q, L) float32
        Receives the normalised block histograms, ``L = cells_x * cells_y * nbins``, in OpenCV's
        order ``(cx, cy, bin)``.
    """
    P, Q, L = out.shape
    ncy, bh = weight_y.shape
    ncx = weight_x.shape[0]
    nb = L // (ncx * ncy)
    R = (P - 1) * row_step + bh
    rows = np.empty((R, Q, ncx * nb), np.float32)
    # 1. along each row: every pixel's two votes into the cells of its column
    for y in prange(R):
        _row_votes(votes[0, y], votes[1, y], bins[0, y], bins[1, y], col_step, weight_x,
                   rows[y])
    # 2. over the rows of each block, then L2-Hys (hog.cpp, normalizeBlockHistogram)
    for t in prange(P * Q):
        p = t // Q
        q = t - p * Q
        _normalised_block(rows, p * row_step, q, weight_y, ncx, clip, out[p, q])


@njit(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc", "contract"})
def _dot(w, v, n):
    """``sum_j w[j] v[j]`` over ``j < n``, float32, summed in any order (vectorised)."""
    t = F0
    for j in range(n):
        t += w[j] * v[j]
    return t


@njit(cache=True, error_model="numpy", nogil=True)
def opencv_block_grid(image, table, ymap, xmap, simd_cols, angle_scale, nbins, row_step,
                      col_step, weight_y, weight_x, clip, out):
    """:func:`opencv_gradients` then :func:`opencv_block_histograms`, on one thread, streaming.

    For one window and for callers that run many images (pyramid levels) side by side, one per
    thread. The padded rows are taken top to bottom; each row's two votes per pixel
    (:func:`_gradient_row`), times ``weight_y[cy, i]``, go into the column sums of every block
    row holding the row, kept as one plane per orientation bin (``col[p, cy, b, x]``: the votes
    of one row land at distinct addresses, so the adds do not wait on each other; the sum down
    the rows comes first here):

    ``col[p, cy, b, x] = sum_i weight_y[cy, i] * vote_b(p * row_step + i, x)``

    When a block row's last pixel row is in, each block's histogram is one dot product per
    (cell, bin) along the columns, ``hist[p, q, cx, cy, b] = sum_j weight_x[cx, j] *
    col[p, cy, b, q * col_step + j]`` (:func:`_dot`), then L2-Hys. Nothing of the size of the
    image is allocated. The numbers are those of the two parallel kernels up to float32
    summation order (the order differs from OpenCV's in both).

    Parameters
    ----------
    image, table, ymap, xmap, simd_cols, angle_scale, nbins
        As :func:`opencv_gradients`.
    row_step, col_step, weight_y, weight_x, clip, out
        As :func:`opencv_block_histograms`.
    """
    P, Q, L = out.shape
    ncy, bh = weight_y.shape
    ncx, bw = weight_x.shape
    nb = L // (ncx * ncy)
    Wp = xmap.shape[0] - 2
    C = image.shape[2]
    ring = np.empty((3, Wp + 2, C), np.float32)
    keys = np.full(3, -1, np.int64)
    ddx = np.empty(Wp, np.float32)
    ddy = np.empty(Wp, np.float32)
    g0 = np.empty(Wp, np.float32)
    g1 = np.empty(Wp, np.float32)
    q0 = np.empty(Wp, np.int32)
    q1 = np.empty(Wp, np.int32)
    S = (bh + row_step - 1) // row_step         # block rows one pixel row can belong to
    cols = (Q - 1) * col_step + bw              # padded columns some block covers
    n = cols * nb
    acc = np.zeros((S, ncy, n), np.float32)     # column sums of block row p in acc[p % S]
    for y in range((P - 1) * row_step + bh):
        _gradient_row(y, image, table, ymap, xmap, simd_cols, angle_scale, nbins, ring, keys,
                      ddx, ddy, g0, g1, q0, q1)
        # 1. down the columns: the row's votes, weighted, into every block row that holds it
        p_lo = max(0, (y - bh + row_step) // row_step)
        p_hi = min(P - 1, y // row_step)
        for p in range(p_lo, p_hi + 1):
            i = y - p * row_step
            for cy in range(ncy):
                w = weight_y[cy, i]
                if w != F0:
                    a = acc[p % S, cy]
                    for x in range(cols):
                        a[q0[x] * cols + x] += w * g0[x]
                        a[q1[x] * cols + x] += w * g1[x]
        # 2. a block row is complete: along each block's columns, then L2-Hys
        top = y + 1 - bh
        if top >= 0 and top % row_step == 0:
            p = top // row_step
            s = p % S
            for q in range(Q):
                h = out[p, q]
                x0 = q * col_step
                for cx in range(ncx):
                    for cy in range(ncy):
                        hb = (cx * ncy + cy) * nb
                        for b in range(nb):
                            h[hb + b] = _dot(weight_x[cx], acc[s, cy, b * cols + x0:], bw)
                _l2_hys(h, clip)
            for cy in range(ncy):
                a = acc[s, cy]
                for k in range(n):
                    a[k] = F0
