"""Numba kernels for SURF (Bay, Ess, Tuytelaars & Van Gool 2008, CVIU 110(3), 346-359).

Every function reads the image only through its summed-area table ``ii`` ((H + 1, W + 1) float64,
zero first row and column, :mod:`kernels.integral`); :mod:`cvcore.features._surf` validates and
allocates everything, nothing here checks shapes. The stages, in the order the pipeline calls them:

1. :func:`hessian_octave`       box-filter ``Dxx, Dyy, Dxy`` at every sample of one octave's layers,
                                ``det = Dxx Dyy - (0.9 Dxy)^2`` and the sign of ``Dxx + Dyy``
                                (sec. 3.1-3.3)
2. :func:`extrema_mask`         samples above the threshold that are larger than their 26
                                neighbours in (layer, row, col) (sec. 3.4)
3. :func:`interpolate_extrema`  quadratic fit in (layer, row, col) (sec. 3.4, after Brown & Lowe
                                2002)
4. :func:`orientations`         Haar responses of size 4s on a disc of radius 6s, a sliding
                                60-degree window (sec. 4.1)
5. :func:`descriptors`          4 x 4 sub-regions of 5 x 5 Haar responses of size 2s, summed
                                ``dx, dy, |dx|, |dy|`` (64) or split by sign (128) (sec. 4.2)

Conventions (shared with :mod:`cvcore.features._sift`): ``[row, col]`` indexing, pixel centres at
integers, so pixel ``(r, c)`` covers ``[c - 0.5, c + 0.5) x [r - 0.5, r + 0.5)``; angles in degrees
in ``[0, 360)`` from +x towards +y with y down (clockwise on screen). ``dx`` of a Haar wavelet is
(right half - left half), ``dy`` (bottom half - top half).

Box filters (stage 1) sit on the pixel grid, as in the paper: a filter of side ``L = 3 l``
(``l`` odd) centred on pixel ``(r, c)``, with ``b = (L - 1) / 2``:

* ``Dyy``: rows ``[r - b, r + b]`` in three lobes of ``l`` rows weighted ``+1, -2, +1``, columns
  ``[c - l + 1, c + l - 1]`` (``2 l - 1`` wide); ``Dxx`` the same transposed;
* ``Dxy``: four ``l x l`` squares with a one-pixel gap on row ``r`` and column ``c``, ``+1``
  top-left and bottom-right, ``-1`` top-right and bottom-left.

Haar wavelets at the orientation and descriptor stages sit at sub-pixel positions. They are read
from the table with bilinear interpolation (:func:`integral_at`), which is *exact* for boxes with
real corners: the integral of the (piecewise-constant) image over ``[0, X] x [0, Y]`` is bilinear
in ``(X, Y)`` inside each pixel. So a Haar response is the exact box integral wherever the box lies
(OpenSURF and the original SURF round positions and sizes to whole pixels instead). Neighbouring
wavelets share corners, and the table is read once per corner: the orientation's wavelets (side
4s, step s) all have their corners on one grid of step s. The descriptor's 20 x 20 samples turned
to the keypoint's angle do not; their responses are computed on an upright grid of step s at the
half-integer offsets around the keypoint and interpolated bilinearly at the turned samples. The
grid is as wide as the turned window needs (:func:`turned_grid_size`: 20 x 20 at 0 degrees,
28 x 28 at 45, the twin's fixed 28 x 28 at every angle gives the same values): at 45 degrees 900
table reads for 784 responses, instead of 3200 for 400. At multiples of 90 degrees the samples
fall on the grid and the result is the paper's exactly; in between it differs by the
interpolation (on Oxford graf / boat the matching accuracy is the same as reading every turned
wavelet: 0.385 / 0.706 against 0.398 / 0.702), at about half the time.

Speed (one thread, a 640 x 480 photo): the loops over samples are written so that they vectorise
(SIMD): rows of a filter stage are read through views at fixed offsets, so that loop indices are
plain non-negative offsets (Numba tests every signed index for a negative, wrap-around value,
which stops the vectoriser), and gathered reads use unsigned indices for the same reason.

Readable twin: :mod:`kernels.reference.surf`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from kernels.sift import _ATAN_P1, _ATAN_P3, _ATAN_P5, _ATAN_P7

KEYPOINT_BLOCK = 16           # keypoints per parallel task (they share scratch arrays)
HESSIAN_ROWS = 8              # rows of samples per parallel task (they share scratch rows)
MIXED_WEIGHT = 0.9            # Bay et al. 2008, eq. 4: relative weight w of Dxy (0.912 rounded)
ORI_RADIUS = 6                # sec. 4.1: responses on a disc of radius 6s, sampled at step s
ORI_HAAR_SIDE = 4.0           # sec. 4.1: Haar wavelets of side 4s
ORI_SIGMA = 2.0               # sec. 4.1: Gaussian weight, sigma = 2s
ORI_WINDOW = 60.0             # sec. 4.1: sliding orientation window of pi / 3
ORI_STEP = 5.0                # window start every 5 degrees (OpenCV surf.cpp SURF_ORI_SEARCH_INC)
DESC_CELLS = 4                # sec. 4.2: 4 x 4 sub-regions
DESC_SAMPLES = 5              # sec. 4.2: 5 x 5 regularly spaced samples per sub-region
DESC_HAAR_SIDE = 2.0          # sec. 4.2: Haar wavelets of side 2s (= two sample spacings: the
                              # upright path below relies on it)
DESC_SIGMA = 3.3              # sec. 4.2: Gaussian weight, sigma = 3.3s
# The turned window's samples reach (side / 2 - 1/2) sqrt(2) s = 13.4 s from the keypoint: an
# upright grid of responses at the half-integers -13.5 .. 13.5 (28 points) covers every angle.
TURNED_GRID = 2 * int(math.ceil((0.5 * DESC_CELLS * DESC_SAMPLES - 0.5) * math.sqrt(2.0) - 0.5)) + 2
# integer points (i, j) with i^2 + j^2 <= ORI_RADIUS^2 (113 for radius 6)
ORI_GRID = ORI_RADIUS + int(ORI_HAAR_SIDE) // 2     # corners of all the wavelets: -8s .. 8s
N_ORI_SAMPLES = sum(1 for i in range(-ORI_RADIUS, ORI_RADIUS + 1)
                    for j in range(-ORI_RADIUS, ORI_RADIUS + 1)
                    if i * i + j * j <= ORI_RADIUS * ORI_RADIUS)


@njit(cache=True, nogil=True)
def _hessian_scratch_rows(ii, r, L, P, band, lobe, cross):
    """The three column profiles of row ``r`` from which every filter of side ``L`` centred on
    that row is a few differences (entry ``c + P`` holds table column ``c``):

    * ``band[c]``  = (rows ``[r - b, r + b]`` - 3 rows ``[r - m, r + m]``) summed over columns
      ``< c``: ``Dyy = band[c + l] - band[c - l + 1]``;
    * ``lobe[c]``  = rows ``[r - l + 1, r + l - 1]`` summed over columns ``< c``:
      ``Dxx = lobe[c + b + 1] - lobe[c - b] - 3 (lobe[c + m + 1] - lobe[c - m])``;
    * ``cross[c]`` = (rows ``[r - l, r - 1]`` - rows ``[r + 1, r + l]``) summed over columns
      ``< c``: ``Dxy = cross[c] - cross[c - l] - cross[c + l + 1] + cross[c + 1]``.

    Table rows and columns outside the image are clamped (rows to ``[0, H]``; the ``P`` pad
    entries either side repeat columns 0 and W), which is the same as counting the pixels
    outside the image as zero: every filter, border ones included, then takes the same reads."""
    H = ii.shape[0] - 1
    W = ii.shape[1] - 1
    l = L // 3
    b = (L - 1) // 2
    m = (l - 1) // 2
    yt = ii[min(max(r - b, 0), H)]
    yb = ii[min(max(r + b + 1, 0), H)]
    mt = ii[min(max(r - m, 0), H)]
    mb = ii[min(max(r + m + 1, 0), H)]
    xt = ii[min(max(r - l + 1, 0), H)]
    xb = ii[min(max(r + l, 0), H)]
    q0 = ii[min(max(r - l, 0), H)]
    q1 = ii[min(r, H)]
    q2 = ii[min(r + 1, H)]
    q3 = ii[min(r + l + 1, H)]
    # (views from P on: loop indices that cannot be negative let the loop vectorise)
    band_c, lobe_c, cross_c = band[P:], lobe[P:], cross[P:]
    for c in range(W + 1):
        band_c[c] = (yb[c] - yt[c]) - 3.0 * (mb[c] - mt[c])
        lobe_c[c] = xb[c] - xt[c]
        cross_c[c] = (q1[c] - q0[c]) - (q3[c] - q2[c])
    for c in range(P):                 # column 0 of the table is zero; beyond W, column W
        band[c] = 0.0
        lobe[c] = 0.0
        cross[c] = 0.0
        band[W + 1 + P + c] = band[W + P]
        lobe[W + 1 + P + c] = lobe[W + P]
        cross[W + 1 + P + c] = cross[W + P]


@njit(cache=True, nogil=True, inline="always")
def _hessian_samples(band, lobe, cross, P, L, step, w2, det_row, sign_row):
    """``det`` and the Laplacian's sign of the samples ``j`` (pixel column ``j step``) of one row
    from its column profiles (:func:`_hessian_scratch_rows`)."""
    l = L // 3
    b = (L - 1) // 2
    m = (l - 1) // 2
    inv_area = 1.0 / (L * L)
    # each profile read at a fixed offset from the sample's column, as a view: the loop index is
    # then a plain non-negative offset (no wrap-around test on negative indices), so it vectorises
    y_hi, y_lo = band[P + l:], band[P - l + 1:]
    x_out_hi, x_out_lo = lobe[P + b + 1:], lobe[P - b:]
    x_mid_hi, x_mid_lo = lobe[P + m + 1:], lobe[P - m:]
    q_c, q_left, q_right, q_next = cross[P:], cross[P - l:], cross[P + l + 1:], cross[P + 1:]
    for j in range(det_row.shape[0]):
        c = j * step
        dyy = y_hi[c] - y_lo[c]
        dxx = (x_out_hi[c] - x_out_lo[c]) - 3.0 * (x_mid_hi[c] - x_mid_lo[c])
        dxy = (q_c[c] - q_left[c]) - (q_right[c] - q_next[c])
        dxx *= inv_area
        dyy *= inv_area
        dxy *= inv_area
        det_row[j] = dxx * dyy - w2 * dxy * dxy
        trace = dxx + dyy
        sign_row[j] = np.int8(trace > 0.0) - np.int8(trace < 0.0)


@njit(cache=True, parallel=True, nogil=True)
def hessian_octave(ii, sizes, step, det, sign):
    """Fast-Hessian responses of one octave (Bay et al. 2008, sec. 3.2-3.3).

    Each row of samples first sums the table's rows into three column profiles
    (:func:`_hessian_scratch_rows`, contiguous reads), from which ``Dxx``, ``Dyy`` and ``Dxy``
    of every sample are 10 reads (32 box corners read one by one); pixels outside the image
    count as zero. Rows are the parallel tasks.

    Parameters
    ----------
    ii : (H + 1, W + 1) float64
    sizes : (n_layers,) int64
        Filter sides ``L`` (odd multiples of 3), one per layer.
    step : int
        Sampling step: sample ``(i, j)`` is pixel ``(i step, j step)``.
    det : (n_layers, Hs, Ws) float32
        Receives ``Dxx Dyy - (0.9 Dxy)^2`` (eq. 4), each ``D`` divided by ``L^2``,
        ``Hs = ceil(H / step)``.
    sign : (n_layers, Hs, Ws) int8
        Receives the sign of the Laplacian ``Dxx + Dyy``: +1 (a dark blob on a bright
        background), -1 (bright on dark), 0 (flat).
    """
    n_layers, Hs, Ws = det.shape
    W = ii.shape[1] - 1
    w2 = MIXED_WEIGHT * MIXED_WEIGHT
    n_blocks = (Hs + HESSIAN_ROWS - 1) // HESSIAN_ROWS
    for job in prange(n_layers * n_blocks):
        k = job // n_blocks
        blk = job - k * n_blocks
        L = sizes[k]
        P = (L - 1) // 2 + 1                    # pad: the filter's reach either side
        band = np.empty(W + 1 + 2 * P)          # scratch, shared by the block's rows
        lobe = np.empty(W + 1 + 2 * P)
        cross = np.empty(W + 1 + 2 * P)
        for i in range(blk * HESSIAN_ROWS, min(Hs, (blk + 1) * HESSIAN_ROWS)):
            _hessian_scratch_rows(ii, i * step, L, P, band, lobe, cross)
            if step == 1:                       # contiguous reads: the loop vectorises
                _hessian_samples(band, lobe, cross, P, L, 1, w2, det[k, i], sign[k, i])
            else:
                _hessian_samples(band, lobe, cross, P, L, step, w2, det[k, i], sign[k, i])


@njit(cache=True, nogil=True)
def _is_maximum(det, k, i, j, v):
    """Whether ``v = det[k, i, j]`` is larger than all 26 neighbours."""
    for dk in range(-1, 2):
        for di in range(-1, 2):
            for dj in range(-1, 2):
                if (dk != 0 or di != 0 or dj != 0) and det[k + dk, i + di, j + dj] >= v:
                    return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _max2(a, b):
    return a if a > b else b


@njit(cache=True, parallel=True, nogil=True)
def extrema_mask(det, threshold, lo, hi, mask, counts):
    """Mark samples of the middle layers that exceed ``threshold`` and all 26 neighbours (sec. 3.4).

    Row by row, a first pass without branches takes the largest of the 9 samples above and below
    each column (``col_max``) and flags the samples above ``threshold`` that are at least the
    largest of their 3 x 3 x 3 block; only those few are tested strictly (:func:`_is_maximum`).

    Parameters
    ----------
    det : (n_layers, Hs, Ws) float32
    threshold : float
    lo, hi : (n_layers, 2) int64
        Per layer, the first and last valid sample row (``[k, 0]``) and column (``[k, 1]``): where
        the filter of the layer above still fits in the image. Must leave one sample of margin.
    mask : (n_layers, Hs, Ws) uint8
        Receives 1 at the maxima (layers 1 .. n_layers - 2 only), left untouched elsewhere.
    counts : (n_layers, Hs) int64
        Receives the number of maxima per row (zero rows left untouched).
    """
    n_layers, Hs, Ws = det.shape
    thr = np.float32(threshold)
    n_blocks = (Hs + HESSIAN_ROWS - 1) // HESSIAN_ROWS
    for job in prange((n_layers - 2) * n_blocks):
        k = 1 + job // n_blocks
        blk = job - (k - 1) * n_blocks
        col_max = np.empty(Ws, np.float32)      # scratch, shared by the block's rows
        flag = np.empty(Ws, np.uint8)
        for i in range(max(blk * HESSIAN_ROWS, lo[k, 0]),
                       min((blk + 1) * HESSIAN_ROWS, hi[k, 0] + 1)):
            j0 = lo[k, 1]
            j1 = hi[k, 1] + 1
            if j1 <= j0:
                continue
            # rows as views from column j0 - 1 (non-negative loop indices: the loops vectorise)
            s = j0 - 1
            a0, a1, a2 = det[k - 1, i - 1, s:], det[k - 1, i, s:], det[k - 1, i + 1, s:]
            b0, b1, b2 = det[k, i - 1, s:], det[k, i, s:], det[k, i + 1, s:]
            c0, c1, c2 = det[k + 1, i - 1, s:], det[k + 1, i, s:], det[k + 1, i + 1, s:]
            for t in range(j1 - j0 + 2):
                col_max[t] = _max2(_max2(_max2(a0[t], a1[t]), _max2(a2[t], b0[t])),
                                   _max2(_max2(b1[t], b2[t]), _max2(_max2(c0[t], c1[t]), c2[t])))
            value = b1[1:]
            left, centre, right = col_max, col_max[1:], col_max[2:]
            for t in range(j1 - j0):
                v = value[t]
                flag[t] = (np.uint8(v > thr) & np.uint8(v >= left[t]) & np.uint8(v >= centre[t])
                           & np.uint8(v >= right[t]))
            n = 0
            for t in range(j1 - j0):
                if flag[t] and _is_maximum(det, k, i, j0 + t, value[t]):
                    mask[k, i, j0 + t] = 1
                    n += 1
            counts[k, i] = n


@njit(cache=True, parallel=True, nogil=True)
def gather_extrema(mask, counts, offsets, out):
    """Write the ``(layer, row, col)`` of the marked samples into ``out`` ((K, 3) int32), row by
    row from ``offsets`` (the running sum of ``counts``): layer-then-row-major order."""
    n_layers, Hs, Ws = mask.shape
    for job in prange(n_layers * Hs):
        k = job // Hs
        i = job - k * Hs
        if counts[k, i] == 0:
            continue
        p = offsets[k, i]
        for j in range(Ws):
            if mask[k, i, j]:
                out[p, 0] = k
                out[p, 1] = i
                out[p, 2] = j
                p += 1


@njit(cache=True, nogil=True)
def _det3(a00, a01, a02, a10, a11, a12, a20, a21, a22):
    return (a00 * (a11 * a22 - a12 * a21) - a01 * (a10 * a22 - a12 * a20)
            + a02 * (a10 * a21 - a11 * a20))


@njit(cache=True, parallel=True, nogil=True)
def interpolate_extrema(det, extrema, max_offset, out):
    """Sub-sample position and scale of each maximum by a quadratic fit (Bay et al. 2008, sec. 3.4;
    Brown & Lowe 2002): ``offset = -H^-1 g`` with the gradient ``g`` and Hessian ``H`` of ``det`` in
    (layer, row, col) from central differences, solved by Cramer's rule.

    Parameters
    ----------
    det : (n_layers, Hs, Ws) float32
    extrema : (K, 3) int32
        ``(layer, row, col)`` of maxima, at least one sample inside every edge.
    max_offset : float
        Reject a fit whose offset exceeds this along any axis (the maximum lies nearer another
        sample).
    out : (K, 5) float64
        Receives ``(ok, layer + d_layer, row + d_row, col + d_col, det at the fitted point)``;
        ``ok`` is 1 or 0.
    """
    for q in prange(extrema.shape[0]):
        k = extrema[q, 0]
        i = extrema[q, 1]
        j = extrema[q, 2]
        v = np.float64(det[k, i, j])
        gk = 0.5 * (det[k + 1, i, j] - det[k - 1, i, j])
        gi = 0.5 * (det[k, i + 1, j] - det[k, i - 1, j])
        gj = 0.5 * (det[k, i, j + 1] - det[k, i, j - 1])
        hkk = det[k + 1, i, j] + det[k - 1, i, j] - 2.0 * v
        hii = det[k, i + 1, j] + det[k, i - 1, j] - 2.0 * v
        hjj = det[k, i, j + 1] + det[k, i, j - 1] - 2.0 * v
        hki = 0.25 * (det[k + 1, i + 1, j] - det[k + 1, i - 1, j]
                      - det[k - 1, i + 1, j] + det[k - 1, i - 1, j])
        hkj = 0.25 * (det[k + 1, i, j + 1] - det[k + 1, i, j - 1]
                      - det[k - 1, i, j + 1] + det[k - 1, i, j - 1])
        hij = 0.25 * (det[k, i + 1, j + 1] - det[k, i + 1, j - 1]
                      - det[k, i - 1, j + 1] + det[k, i - 1, j - 1])
        d = _det3(hkk, hki, hkj, hki, hii, hij, hkj, hij, hjj)
        out[q, 0] = 0.0
        if d == 0.0 or not math.isfinite(d):
            continue
        # Cramer's rule for H x = -g: column c of H replaced by -g
        xk = _det3(-gk, hki, hkj, -gi, hii, hij, -gj, hij, hjj) / d
        xi = _det3(hkk, -gk, hkj, hki, -gi, hij, hkj, -gj, hjj) / d
        xj = _det3(hkk, hki, -gk, hki, hii, -gi, hkj, hij, -gj) / d
        if abs(xk) <= max_offset and abs(xi) <= max_offset and abs(xj) <= max_offset:
            out[q, 0] = 1.0
            out[q, 1] = k + xk
            out[q, 2] = i + xi
            out[q, 3] = j + xj
            out[q, 4] = v + 0.5 * (gk * xk + gi * xi + gj * xj)


@njit(cache=True, nogil=True)
def integral_at(ii, y, x):
    """The image's integral over ``[-0.5, x) x [-0.5, y)`` (pixel centres at integers), for real
    ``(x, y)``: the table read with bilinear interpolation, exact for a piecewise-constant image.
    Outside the image the pixels count as zero (coordinates clamped to the table)."""
    H = ii.shape[0] - 1
    W = ii.shape[1] - 1
    Y = min(max(y + 0.5, 0.0), float(H))
    X = min(max(x + 0.5, 0.0), float(W))
    r = min(int(Y), H - 1) if H > 0 else 0
    c = min(int(X), W - 1) if W > 0 else 0
    fy = Y - r
    fx = X - c
    top = ii[r, c] + fx * (ii[r, c + 1] - ii[r, c])
    bottom = ii[r + 1, c] + fx * (ii[r + 1, c + 1] - ii[r + 1, c])
    return top + fy * (bottom - top)


@njit(cache=True, nogil=True)
def _axis_taps(start, s, n, size, idx, frac):
    """Table index and fraction along one axis for the points ``start + g s``, g = 0 .. n - 1:
    :func:`integral_at`'s clamping and interpolation set up once per row or column."""
    for g in range(n):
        t = min(max(start + g * s + 0.5, 0.0), float(size))
        i = min(int(t), size - 1)
        idx[g] = i
        frac[g] = t - i


@njit(cache=True, nogil=True)
def fill_grid(ii, y0, x0, s, grid, idx, frac):
    """``grid[a, b] = integral_at(ii, y0 + a s, x0 + b s)`` for a square grid, with the clamping
    and the interpolation weights computed once per row and per column (the same values,
    about twice as fast as a call per point). ``idx`` (2, >= G) uint64 and ``frac`` (2, >= G)
    float64 are scratch."""
    G = grid.shape[0]
    rows = idx[0]
    fy = frac[0]
    cols = idx[1]
    fx = frac[1]
    _axis_taps(y0, s, G, ii.shape[0] - 1, rows, fy)
    _axis_taps(x0, s, G, ii.shape[1] - 1, cols, fx)
    one = np.uint64(1)          # unsigned indices: no test for negative (wrap-around) indices
    for a in range(G):
        top = ii[rows[a]]
        bottom = ii[rows[a] + one]
        wy = fy[a]
        out = grid[a]
        for b in range(G):
            c = cols[b]
            t = top[c] + fx[b] * (top[c + one] - top[c])
            u = bottom[c] + fx[b] * (bottom[c + one] - bottom[c])
            out[b] = t + wy * (u - t)


@njit(cache=True, nogil=True)
def haar_xy(ii, y, x, h):
    """Haar wavelet responses of side ``2h`` centred at real ``(x, y)``:
    ``dx`` = right half - left half, ``dy`` = bottom half - top half (box integrals)."""
    # the table at the 3 x 3 corners of the two halves (the centre is not needed)
    f00 = integral_at(ii, y - h, x - h)
    f01 = integral_at(ii, y - h, x)
    f02 = integral_at(ii, y - h, x + h)
    f10 = integral_at(ii, y, x - h)
    f12 = integral_at(ii, y, x + h)
    f20 = integral_at(ii, y + h, x - h)
    f21 = integral_at(ii, y + h, x)
    f22 = integral_at(ii, y + h, x + h)
    right = f22 - f02 - f21 + f01
    left = f21 - f01 - f20 + f00
    bottom = f22 - f12 - f20 + f10
    top = f12 - f02 - f10 + f00
    return right - left, bottom - top


@njit(cache=True, nogil=True, inline="always")
def _atan2_degrees(y, x):
    """:func:`kernels.sift.fast_atan2_degrees` (the same polynomial, the same value bit for bit)
    written with selects instead of branches, so that a loop over it vectorises."""
    ax = abs(x)
    ay = abs(y)
    steep = ay > ax
    t = (ax if steep else ay) / (ay if steep else ax + 1e-30)
    t2 = t * t
    a = (((_ATAN_P7 * t2 + _ATAN_P5) * t2 + _ATAN_P3) * t2 + _ATAN_P1) * t
    a = 90.0 - a if steep else a
    a = 180.0 - a if x < 0 else a
    a = 360.0 - a if y < 0 else a
    return a - 360.0 if a >= 360.0 else a


@njit(cache=True)
def orientation_rows():
    """Half-width ``w_i`` of each row ``i = -ORI_RADIUS .. ORI_RADIUS`` of the disc of samples:
    the largest ``w`` with ``i^2 + w^2 <= ORI_RADIUS^2`` (row ``i`` holds ``j = -w_i .. w_i``)."""
    out = np.empty(2 * ORI_RADIUS + 1, np.int64)
    for i in range(-ORI_RADIUS, ORI_RADIUS + 1):
        w = 0
        while i * i + (w + 1) * (w + 1) <= ORI_RADIUS * ORI_RADIUS:
            w += 1
        out[i + ORI_RADIUS] = w
    return out


@njit(cache=True, nogil=True)
def _orientation_one(ii, x, y, s, half_width, weights, grid, idx, frac, rdx, rdy, rbin, bx, by):
    """Dominant orientation in degrees of a keypoint at ``(x, y)`` of scale ``s`` (sec. 4.1).

    The wavelets (side 4s) of the samples (step s) have their corners on one grid of step s,
    ``(x + b s, y + a s)``, ``|a|, |b| <= 8``: the table is read there once (289 reads instead of
    8 per sample). The responses of each row of the disc (``half_width``, :func:`orientation_rows`)
    and their angle bins are computed in straight loops that vectorise, in the order of
    :func:`orientation_samples` (``weights``); ``rdx, rdy, rbin`` (N_ORI_SAMPLES,) are scratch.
    Windows start every ORI_STEP degrees and are ORI_WINDOW wide, so a response belongs to the
    windows of the ORI_STEP-degree bin its angle falls in: the responses are summed per bin
    first, and each window is the sum of ORI_WINDOW / ORI_STEP consecutive bins (the same sums as
    testing every response against every window)."""
    G = grid.shape[0]
    R = G // 2
    fill_grid(ii, y - R * s, x - R * s, s, grid, idx, frac)
    h = int(ORI_HAAR_SIDE) // 2
    q = 0
    for i in range(-ORI_RADIUS, ORI_RADIUS + 1):
        w = half_width[i + ORI_RADIUS]
        a = i + R
        b0 = R - w                             # grid column of the row's first sample
        # the wavelet's corner rows and columns as views from that sample on
        up_lo, up_c, up_hi = grid[a - h, b0 - h:], grid[a - h, b0:], grid[a - h, b0 + h:]
        md_lo, md_hi = grid[a, b0 - h:], grid[a, b0 + h:]
        dn_lo, dn_c, dn_hi = grid[a + h, b0 - h:], grid[a + h, b0:], grid[a + h, b0 + h:]
        out_x = rdx[q:]
        out_y = rdy[q:]
        for t in range(2 * w + 1):
            right = dn_hi[t] - up_hi[t] - dn_c[t] + up_c[t]
            left = dn_c[t] - up_c[t] - dn_lo[t] + up_lo[t]
            bottom = dn_hi[t] - md_hi[t] - dn_lo[t] + md_lo[t]
            top = md_hi[t] - up_hi[t] - md_lo[t] + up_lo[t]
            out_x[t] = right - left
            out_y[t] = bottom - top
        q += 2 * w + 1
    n_bins = bx.shape[0]
    inv_step = 1.0 / ORI_STEP
    for q in range(rdx.shape[0]):
        rbin[q] = min(int(_atan2_degrees(rdy[q], rdx[q]) * inv_step), n_bins - 1)
    for b in range(n_bins):
        bx[b] = 0.0
        by[b] = 0.0
    for q in range(rdx.shape[0]):
        dx = rdx[q]
        dy = rdy[q]
        if dx == 0.0 and dy == 0.0:
            continue
        k = rbin[q]
        bx[k] += weights[q] * dx
        by[k] += weights[q] * dy
    per_window = int(ORI_WINDOW / ORI_STEP)
    sx = 0.0
    sy = 0.0
    for b in range(per_window):               # the window starting at 0 degrees
        sx += bx[b]
        sy += by[b]
    best = sx * sx + sy * sy
    best_x = sx
    best_y = sy
    for start in range(1, n_bins):            # slide: add the bin entering, drop the one leaving
        enter = (start + per_window - 1) % n_bins
        sx += bx[enter] - bx[start - 1]
        sy += by[enter] - by[start - 1]
        norm = sx * sx + sy * sy
        if norm > best:
            best = norm
            best_x = sx
            best_y = sy
    a = math.degrees(math.atan2(best_y, best_x))
    if a < 0.0:
        a += 360.0
    if a >= 360.0:
        a -= 360.0
    return a


@njit(cache=True)
def orientation_samples():
    """Offsets ``(i, j)`` (row, col, in units of s) of the disc of radius ORI_RADIUS and their
    Gaussian weights ``exp(-(i^2 + j^2) / (2 ORI_SIGMA^2))``."""
    offsets = np.empty((N_ORI_SAMPLES, 2), np.int64)
    weights = np.empty(N_ORI_SAMPLES)
    n = 0
    for i in range(-ORI_RADIUS, ORI_RADIUS + 1):
        for j in range(-ORI_RADIUS, ORI_RADIUS + 1):
            if i * i + j * j <= ORI_RADIUS * ORI_RADIUS:
                offsets[n, 0] = i
                offsets[n, 1] = j
                weights[n] = math.exp(-(i * i + j * j) / (2.0 * ORI_SIGMA * ORI_SIGMA))
                n += 1
    return offsets, weights


@njit(cache=True, parallel=True, nogil=True)
def orientations(ii, x, y, scale, out):
    """Dominant orientation of each keypoint (Bay et al. 2008, sec. 4.1).

    Haar responses of side ``4s`` at the points ``(x + j s, y + i s)``, ``i^2 + j^2 <= 36``,
    weighted by a Gaussian of sigma ``2s``; a window of 60 degrees slides round the circle in steps
    of 5 degrees; the largest sum of the responses whose angle falls inside gives the orientation.

    Parameters
    ----------
    ii : (H + 1, W + 1) float64
    x, y, scale : (K,) float64
        Position (pixels) and scale ``s`` (pixels) of each keypoint.
    out : (K,) float64
        Receives the angle in degrees, [0, 360).
    """
    offsets, weights = orientation_samples()
    half_width = orientation_rows()
    n_bins = int(360.0 / ORI_STEP)
    G = 2 * ORI_GRID + 1
    K = x.shape[0]
    for blk in prange((K + KEYPOINT_BLOCK - 1) // KEYPOINT_BLOCK):
        bx = np.empty(n_bins)                 # scratch, shared by the block's keypoints
        by = np.empty(n_bins)
        grid = np.empty((G, G))
        idx = np.empty((2, G), np.uint64)
        frac = np.empty((2, G))
        rdx = np.empty(N_ORI_SAMPLES)
        rdy = np.empty(N_ORI_SAMPLES)
        rbin = np.empty(N_ORI_SAMPLES, np.int64)
        for q in range(blk * KEYPOINT_BLOCK, min(K, (blk + 1) * KEYPOINT_BLOCK)):
            out[q] = _orientation_one(ii, x[q], y[q], scale[q], half_width, weights, grid, idx,
                                      frac, rdx, rdy, rbin, bx, by)


@njit(cache=True)
def descriptor_samples():
    """The 20 x 20 sample offsets ``(u, v)`` (along, across the keypoint's angle, units of s),
    their Gaussian weights ``exp(-(u^2 + v^2) / (2 DESC_SIGMA^2))`` and their sub-region index
    (row-major over the 4 x 4 sub-regions)."""
    side = DESC_CELLS * DESC_SAMPLES
    n = side * side
    uv = np.empty((n, 2))
    weights = np.empty(n)
    cell = np.empty(n, np.int64)
    q = 0
    for m in range(side):                              # rows of the window (the v axis)
        for k in range(side):                          # columns (the u axis)
            u = k + 0.5 - 0.5 * side                   # -9.5 .. 9.5
            v = m + 0.5 - 0.5 * side
            uv[q, 0] = u
            uv[q, 1] = v
            weights[q] = math.exp(-(u * u + v * v) / (2.0 * DESC_SIGMA * DESC_SIGMA))
            cell[q] = (m // DESC_SAMPLES) * DESC_CELLS + k // DESC_SAMPLES
            q += 1
    return uv, weights, cell


@njit(cache=True, nogil=True)
def _responses_grid(ii, x, y, s, grid, idx, frac, dxs, dys):
    """Haar responses (side 2s) on an upright square grid of ``n x n`` points ``(x + t_b s,
    y + t_a s)``, ``t = g - (n - 1) / 2`` (half-integers for even ``n``), into ``dxs, dys``
    (``n * n``, row-major). Each wavelet reaches one ``s`` either side, so all corners lie on the
    ``(n + 2) x (n + 2)`` grid ``grid``: the table is read once per corner (for the 20 x 20
    samples of an upright window, 484 reads instead of 3200)."""
    G = grid.shape[0]
    c = 0.5 * (G - 1)
    fill_grid(ii, y - c * s, x - c * s, s, grid, idx, frac)
    n = G - 2
    # right - left = V[k + 2] - 2 V[k + 1] + V[k] with V[k] = grid[m + 2, k] - grid[m, k] (the
    # table's column k summed over the wavelet's rows); bottom - top likewise along the rows with
    # R[m] = grid[m, k + 2] - grid[m, k]. The same sums as four boxes each, in fewer operations.
    for m in range(n):
        g0 = grid[m]
        g1 = grid[m + 1]
        g2 = grid[m + 2]
        dx_row = dxs[m * n:(m + 1) * n]       # views: the loop over k vectorises
        dy_row = dys[m * n:(m + 1) * n]
        for k in range(n):
            dx_row[k] = ((g2[k + 2] - g0[k + 2]) - 2.0 * (g2[k + 1] - g0[k + 1])
                         + (g2[k] - g0[k]))
            dy_row[k] = ((g2[k + 2] - g2[k]) - 2.0 * (g1[k + 2] - g1[k])
                         + (g0[k + 2] - g0[k]))


@njit(cache=True, nogil=True)
def turned_grid_size(co, si):
    """Points per side of the upright response grid that a window turned by the angle (cosine
    ``co``, sine ``si``) needs: its samples reach ``R = (side / 2 - 1/2)(|co| + |si|)`` (units of
    s) along either image axis, and bilinear interpolation needs the grid points either side, so
    the smallest even ``n`` with ``(n - 1) / 2 >= R``: 20 at 0 degrees (the upright window's own
    grid), 28 at 45 (``TURNED_GRID``), about 25 on average."""
    reach = (0.5 * DESC_CELLS * DESC_SAMPLES - 0.5) * (abs(co) + abs(si))
    return min(2 * int(math.ceil(reach + 0.5)), TURNED_GRID)


@njit(cache=True, nogil=True, inline="always")
def _cell_add(sums, du, dv, extended):
    """Add one weighted, turned response to a sub-region's sums (sec. 4.2): ``(sum du, sum dv,
    sum |du|, sum |dv|)``, or for SURF-128 ``(sum du, sum |du|)`` split by the sign of ``dv``,
    then ``(sum dv, sum |dv|)`` split by the sign of ``du``."""
    a0, a1, a2, a3, a4, a5, a6, a7 = sums
    if not extended:
        return a0 + du, a1 + dv, a2 + abs(du), a3 + abs(dv), a4, a5, a6, a7
    # selects, not branches: the signs are random, and a mispredicted branch costs more than
    # adding zero to the other half (x + 0.0 == x: the same sums)
    du_up, du_down = (du, 0.0) if dv >= 0.0 else (0.0, du)
    dv_right, dv_left = (dv, 0.0) if du >= 0.0 else (0.0, dv)
    return (a0 + du_up, a1 + abs(du_up), a2 + du_down, a3 + abs(du_down),
            a4 + dv_right, a5 + abs(dv_right), a6 + dv_left, a7 + abs(dv_left))


@njit(cache=True, nogil=True, inline="always")
def _cell_store(sums, out, base, extended):
    per_cell = 8 if extended else 4
    for t in range(per_cell):
        out[base + t] = sums[t]


@njit(cache=True, nogil=True)
def _unit_length(out):
    norm = 0.0
    for t in range(out.shape[0]):
        norm += out[t] * out[t]
    if norm > 0.0:
        inv = 1.0 / math.sqrt(norm)
        for t in range(out.shape[0]):
            out[t] *= inv


@njit(cache=True, nogil=True)
def _accumulate(dxs, dys, co, si, weights, extended, out):
    """Turn the responses ``dxs, dys`` of the window's 20 x 20 samples (row-major) into the
    keypoint's frame, weight them and sum them per sub-region; then scale ``out`` to unit length.
    Sub-region by sub-region, so that the sums stay in registers (the same additions, in the
    same order, as adding every sample into ``out``)."""
    side = DESC_CELLS * DESC_SAMPLES
    per_cell = 8 if extended else 4
    for cm in range(DESC_CELLS):
        for ck in range(DESC_CELLS):
            sums = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            for mm in range(DESC_SAMPLES):
                row = (cm * DESC_SAMPLES + mm) * side + ck * DESC_SAMPLES
                for kk in range(DESC_SAMPLES):
                    q = row + kk
                    w = weights[q]
                    du = w * (dxs[q] * co + dys[q] * si)      # along the keypoint's angle
                    dv = w * (-dxs[q] * si + dys[q] * co)     # across it (90 degrees clockwise)
                    sums = _cell_add(sums, du, dv, extended)
            _cell_store(sums, out, (cm * DESC_CELLS + ck) * per_cell, extended)
    _unit_length(out)


@njit(cache=True, nogil=True)
def _responses_turned(gdx, gdy, n, co, si, u, v, taps, fx, fy, dxs, dys):
    """Responses at the window's samples turned by the angle (cosine ``co``, sine ``si``),
    interpolated bilinearly from the upright grid of :func:`_responses_grid` (``n x n`` points
    at half-integer multiples of s, wide enough for the turned window: :func:`turned_grid_size`).
    ``u, v`` (400,) are the samples' offsets along and across the angle; ``taps`` (400,) uint64,
    ``fx, fy`` (400,) are scratch for each sample's grid cell and its position inside it."""
    c = 0.5 * (n - 1)
    top = n - 2
    for q in range(u.shape[0]):                # where each turned sample falls on the grid
        gx = (u[q] * co - v[q] * si) + c
        gy = (u[q] * si + v[q] * co) + c
        k = min(int(gx), top)
        m = min(int(gy), top)
        fx[q] = gx - k
        fy[q] = gy - m
        taps[q] = m * n + k
    # unsigned offsets: reads at them need no test for negative (wrap-around) indices
    right = np.uint64(1)
    down = np.uint64(n)
    for q in range(u.shape[0]):
        p = taps[q]
        w00 = (1.0 - fy[q]) * (1.0 - fx[q])
        w01 = (1.0 - fy[q]) * fx[q]
        w10 = fy[q] * (1.0 - fx[q])
        w11 = fy[q] * fx[q]
        dxs[q] = (w00 * gdx[p] + w01 * gdx[p + right] + w10 * gdx[p + down]
                  + w11 * gdx[p + down + right])
        dys[q] = (w00 * gdy[p] + w01 * gdy[p + right] + w10 * gdy[p + down]
                  + w11 * gdy[p + down + right])


@njit(cache=True, parallel=True, nogil=True)
def descriptors(ii, x, y, scale, angle, extended, out):
    """SURF descriptors (Bay et al. 2008, sec. 4.2).

    A ``20s x 20s`` window centred on the keypoint, turned to its angle, is split into 4 x 4
    sub-regions of 5 x 5 samples at spacing ``s``. At each sample the Haar responses of side ``2s``
    (taken along the image axes, then turned into the keypoint's frame), weighted by a Gaussian of
    sigma ``3.3s``, add into their sub-region: ``(sum du, sum dv, sum |du|, sum |dv|)``, or for the
    extended descriptor ``(sum du, sum |du|)`` for ``dv >= 0`` and ``dv < 0`` then ``(sum dv,
    sum |dv|)`` for ``du >= 0`` and ``du < 0``. The vector is scaled to unit length.

    Parameters
    ----------
    ii : (H + 1, W + 1) float64
    x, y, scale, angle : (K,) float64
        Position, scale ``s`` (pixels) and angle (degrees) of each keypoint.
    extended : bool
    out : (K, 64) or (K, 128) float32
        Sub-regions in row-major order along the keypoint's (v, u) axes, 4 or 8 values each.
    """
    D = out.shape[1]
    uv, weights, cell = descriptor_samples()
    u = uv[:, 0].copy()
    v = uv[:, 1].copy()
    side = DESC_CELLS * DESC_SAMPLES
    N = TURNED_GRID
    K = x.shape[0]
    for blk in prange((K + KEYPOINT_BLOCK - 1) // KEYPOINT_BLOCK):
        vec = np.empty(D)                     # scratch, shared by the block's keypoints
        dxs = np.empty(side * side)
        dys = np.empty(side * side)
        gdx = np.empty(N * N)
        gdy = np.empty(N * N)
        grid_store = np.empty((N + 2) * (N + 2))
        idx = np.empty((2, N + 2), np.uint64)
        frac = np.empty((2, N + 2))
        taps = np.empty(side * side, np.uint64)
        fx = np.empty(side * side)
        fy = np.empty(side * side)
        for q in range(blk * KEYPOINT_BLOCK, min(K, (blk + 1) * KEYPOINT_BLOCK)):
            if angle[q] == 0.0:
                grid = grid_store[:(side + 2) * (side + 2)].reshape((side + 2, side + 2))
                _responses_grid(ii, x[q], y[q], scale[q], grid, idx, frac, dxs, dys)
                _accumulate(dxs, dys, 1.0, 0.0, weights, extended, vec)
            else:
                theta = math.radians(angle[q])
                co, si = math.cos(theta), math.sin(theta)
                n = turned_grid_size(co, si)
                grid = grid_store[:(n + 2) * (n + 2)].reshape((n + 2, n + 2))
                _responses_grid(ii, x[q], y[q], scale[q], grid, idx, frac, gdx, gdy)
                _responses_turned(gdx, gdy, n, co, si, u, v, taps, fx, fy, dxs, dys)
                _accumulate(dxs, dys, co, si, weights, extended, vec)
            for t in range(D):
                out[q, t] = vec[t]
