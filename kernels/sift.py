"""Numba kernels for SIFT (Lowe 2004): scale space, extrema, refinement, orientation, descriptor.

Every function here works on float32 C-contiguous arrays that :mod:`cvcore.features._sift` has
validated and allocated; nothing here checks shapes. The stages, in the order the pipeline calls
them:

1. :func:`upsample2x_linear`          double the input image (linear interpolation)
2. :func:`blur_rows_horizontal`, :func:`blur_rows_vertical`   separable Gaussian blur, for
                                      every scale-space level
3. :func:`difference_of_gaussians`    ``D_i = L_{i+1} - L_i`` for one octave
4. :func:`dog_extrema_mask` + :func:`gather_extrema`   26-neighbour extrema of one octave
5. :func:`refine_and_orient`          sub-pixel / sub-scale fit, contrast and edge tests,
                                      orientation histogram and its peaks, per candidate
6. :func:`sift_descriptors`           the 4x4x8 descriptor, per keypoint

Conventions (shared with :mod:`cvcore.features._sift`): arrays are indexed ``[row, col]``; a pixel's
centre is at integer coordinates (OpenCV's convention); angles are in degrees in ``[0, 360)``,
measured from the +x axis towards +y in image coordinates (y down), i.e. clockwise on screen, as
OpenCV's ``KeyPoint.angle``. Gradients are taken with central differences
``dx = L[r, c+1] - L[r, c-1]``, ``dy = L[r+1, c] - L[r-1, c]`` (the descriptor counts its
orientation bins with y up, ``-dy``, to lay them out as OpenCV does).

Why a separable blur of our own here rather than :mod:`kernels.conv`: SIFT blurs six levels per
octave with kernels up to 25 taps, which dominates the run time. This kernel exploits the
kernel's symmetry (``k[r+t] (x[i-t] + x[i+t])``, half the multiplies) and uses OpenCV's border
(reflect-101) and kernel-size rule so that the scale space is the one OpenCV's SIFT builds.

Threads: every kernel worth splitting is a one-thread ``nogil`` function over a range of jobs
``[r0, r1)`` (rows, candidates, keypoints: its last two arguments), which
:mod:`cvcore.features._sift` runs in bands on several threads
(:func:`cvcore._bands.run_bands`). Each job writes only its own outputs, so the
results do not depend on the split. No ``prange``: each parallel loop is a module of its own
that Numba compiles and optimises again, which roughly doubled these kernels' compile time.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

ORI_HIST_BINS = 36            # Lowe 2004, sec. 5
ORI_SMOOTH = (1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0)   # [1 4 6 4 1]/16 circular smoothing (OpenCV)
MAX_PEAKS = 18                # a 36-bin circular histogram has at most 18 strict local maxima
MAX_INTERP_STEPS = 5          # OpenCV SIFT_MAX_INTERP_STEPS: re-centre the fit (Lowe 2004,
                              # sec. 4) at most 5 times
DESC_WIDTH = 4                # Lowe 2004, sec. 6.1: 4x4 spatial bins
DESC_BINS = 8                 # Lowe 2004, sec. 6.1: 8 orientation bins
DESC_LENGTH = DESC_WIDTH * DESC_WIDTH * DESC_BINS
SPREAD = 16                   # refine_and_orient: stretches of the candidate list each thread
                              # takes a share of (balances the levels' unequal costs)
GRID_EDGE = 1e-4              # samples this close to the descriptor grid's outer edge are skipped


@njit(cache=True, inline="always")
def _reflect101(p, n):
    """Index ``p`` folded into ``[0, n)`` by mirror reflection without repeating the edge
    (``dcb|abcd|cba``, OpenCV's BORDER_REFLECT_101), repeated for kernels wider than the image."""
    if n == 1:
        return 0
    while p < 0 or p >= n:
        if p < 0:
            p = -p
        else:
            p = 2 * n - 2 - p
    return p


@njit(cache=True, nogil=True)
def blur_rows_horizontal(src, kernel, tmp, y0, y1):
    """Horizontal pass of the separable blur by the symmetric 1-D ``kernel`` (2r+1,), rows
    ``y0 .. y1-1``: ``src`` (H, W) -> ``tmp`` (H, W). Border: reflect-101. Both passes compute
    ``out[i] = k[r] x[i] + sum_{t=1..r} k[r+t] (x[i-t] + x[i+t])``; the vertical pass
    (:func:`blur_rows_vertical`) needs every row of ``tmp`` within ``r`` of its own."""
    W = src.shape[1]
    r = (kernel.shape[0] - 1) // 2
    k0 = kernel[r]
    pad = np.empty(W + 2 * r, np.float32)
    for y in range(y0, y1):
        row = src[y]
        for x in range(W):
            pad[x + r] = row[x]
        for t in range(1, r + 1):
            pad[r - t] = row[_reflect101(-t, W)]
            pad[r + W - 1 + t] = row[_reflect101(W - 1 + t, W)]
        out = tmp[y]
        centre = pad[r:]
        for x in range(W):
            out[x] = k0 * centre[x]
        # taps in groups of four per pass over the row: each output is still summed tap by
        # tap in order (the same float32 result), with a quarter of the loads and stores of
        # ``out``. Slice views indexed by the loop counter: Numba then needs no negative-index
        # wrap-around test and LLVM vectorises the loop.
        t = 1
        while t + 3 <= r:
            k1, k2, k3, k4 = kernel[r + t], kernel[r + t + 1], kernel[r + t + 2], kernel[r + t + 3]
            l1, l2, l3, l4 = pad[r - t:], pad[r - t - 1:], pad[r - t - 2:], pad[r - t - 3:]
            r1, r2, r3, r4 = pad[r + t:], pad[r + t + 1:], pad[r + t + 2:], pad[r + t + 3:]
            for x in range(W):
                out[x] = (((out[x] + k1 * (l1[x] + r1[x])) + k2 * (l2[x] + r2[x]))
                          + k3 * (l3[x] + r3[x])) + k4 * (l4[x] + r4[x])
            t += 4
        while t <= r:
            kt = kernel[r + t]
            left = pad[r - t:]
            right = pad[r + t:]
            for x in range(W):
                out[x] += kt * (left[x] + right[x])
            t += 1


@njit(cache=True, nogil=True)
def blur_rows_vertical(tmp, kernel, dst, y0, y1):
    """Vertical pass of the blur (see :func:`blur_rows_horizontal`) for rows ``y0 .. y1-1``:
    ``tmp`` -> ``dst``."""
    H, W = tmp.shape
    r = (kernel.shape[0] - 1) // 2
    k0 = kernel[r]
    for y in range(y0, y1):
        out = dst[y]
        mid = tmp[y]
        for x in range(W):
            out[x] = k0 * mid[x]
        # four taps per pass, summed in order (as the horizontal pass)
        t = 1
        while t + 3 <= r:
            k1, k2, k3, k4 = kernel[r + t], kernel[r + t + 1], kernel[r + t + 2], kernel[r + t + 3]
            a1, b1 = tmp[_reflect101(y - t, H)], tmp[_reflect101(y + t, H)]
            a2, b2 = tmp[_reflect101(y - t - 1, H)], tmp[_reflect101(y + t + 1, H)]
            a3, b3 = tmp[_reflect101(y - t - 2, H)], tmp[_reflect101(y + t + 2, H)]
            a4, b4 = tmp[_reflect101(y - t - 3, H)], tmp[_reflect101(y + t + 3, H)]
            for x in range(W):
                out[x] = (((out[x] + k1 * (a1[x] + b1[x])) + k2 * (a2[x] + b2[x]))
                          + k3 * (a3[x] + b3[x])) + k4 * (a4[x] + b4[x])
            t += 4
        while t <= r:
            kt = kernel[r + t]
            above = tmp[_reflect101(y - t, H)]
            below = tmp[_reflect101(y + t, H)]
            for x in range(W):
                out[x] += kt * (above[x] + below[x])
            t += 1


@njit(cache=True, nogil=True)
def upsample2x_linear(src, dst, r0, r1):
    """``dst`` (2H, 2W) from ``src`` (H, W) by bilinear interpolation with half-pixel centres.

    Output pixel ``X`` samples the input at ``x = (X + 0.5) / 2 - 0.5``: even outputs are
    ``(s[i-1] + 3 s[i]) / 4``, odd ones ``(3 s[i] + s[i+1]) / 4``, the edge pixel repeated beyond
    the border. This is OpenCV's ``resize(..., INTER_LINEAR)``, which ``SIFT_create()`` uses by
    default; a position ``X`` in the doubled image is ``X / 2 - 0.25`` in the input. Output
    rows ``r0 .. r1-1``.
    """
    H, W = src.shape
    for Y in range(r0, r1):
        i = Y // 2
        if Y % 2 == 0:
            ya, yb, wa = max(i - 1, 0), i, 0.25
        else:
            ya, yb, wa = i, min(i + 1, H - 1), 0.75
        for X in range(2 * W):
            j = X // 2
            if X % 2 == 0:
                xa, xb, va = max(j - 1, 0), j, 0.25
            else:
                xa, xb, va = j, min(j + 1, W - 1), 0.75
            top = va * src[ya, xa] + (1.0 - va) * src[ya, xb]
            bottom = va * src[yb, xa] + (1.0 - va) * src[yb, xb]
            dst[Y, X] = wa * top + (1.0 - wa) * bottom


@njit(cache=True, nogil=True)
def difference_of_gaussians(gauss, dog, r0, r1):
    """``dog[i] = gauss[i+1] - gauss[i]`` for one octave; gauss (L+1, H, W), dog (L, H, W).
    Jobs ``r0 .. r1-1`` of ``L * H``, job = row ``job % H`` of level ``job // H``."""
    L, H, W = dog.shape
    for job in range(r0, r1):
        i = job // H
        y = job % H
        for x in range(W):
            dog[i, y, x] = gauss[i + 1, y, x] - gauss[i, y, x]


@njit(cache=True, inline="always")
def _is_extremum(dog, i, y, x, v):
    """True when ``v = dog[i, y, x]`` is >= (v > 0) or <= (v < 0) all 26 neighbours in space and
    scale (Lowe 2004, sec. 3.1; ties count as extrema, as in OpenCV)."""
    if v > 0:
        for di in range(-1, 2):
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if dog[i + di, y + dy, x + dx] > v:
                        return False
    else:
        for di in range(-1, 2):
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if dog[i + di, y + dy, x + dx] < v:
                        return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _extrema_row(dog, i, y, threshold, border, flags, mask):
    """Mark the extrema of row ``y`` of level ``i`` in ``mask[i, y]`` (1, the rest of the row
    0); returns how many.

    A first, vectorised loop keeps the samples above ``threshold`` that are also extrema of their
    four nearest neighbours in the level (x-1, x+1, y-1, y+1); only those get the full
    26-neighbour test.
    """
    W = dog.shape[2]
    cur = dog[i, y]
    n = W - 2 * border
    marks = mask[i, y]
    for x in range(W):
        marks[x] = 0
    mid = cur[border:]
    left = cur[border - 1:]
    right = cur[border + 1:]
    above = dog[i, y - 1, border:]
    below = dog[i, y + 1, border:]
    for t in range(n):
        v = mid[t]
        up = ((v > threshold) & (v >= left[t]) & (v >= right[t]) & (v >= above[t])
              & (v >= below[t]))
        down = ((v < -threshold) & (v <= left[t]) & (v <= right[t]) & (v <= above[t])
                & (v <= below[t]))
        flags[t] = up | down
    count = 0
    for t in range(n):
        if flags[t]:
            x = border + t
            if _is_extremum(dog, i, y, x, cur[x]):
                marks[x] = 1
                count += 1
    return count


@njit(cache=True, nogil=True)
def dog_extrema_mask(dog, threshold, border, mask, row_counts, r0, r1):
    """Mark scale-space extrema of one octave with ``|D| > threshold``.

    dog (L, H, W) float32; the middle levels ``1 .. L-2`` are searched, at least ``border`` pixels
    from the edge. ``mask`` (L, H, W) uint8: each searched row is written whole, 1 at each
    extremum and 0 elsewhere (the other rows are left as they are); ``row_counts`` (L, H) int64
    (zeroed by the caller) gets the number found in each searched row. Jobs ``r0 .. r1-1`` of
    ``(L - 2) * (H - 2 border)``: job = searched row ``job % (H - 2 border)`` of level
    ``1 + job // (H - 2 border)``.
    """
    L, H, W = dog.shape
    n_rows = H - 2 * border
    flags = np.empty(W, np.bool_)
    for job in range(r0, r1):
        i = 1 + job // n_rows
        y = border + job % n_rows
        row_counts[i, y] = _extrema_row(dog, i, y, threshold, border, flags, mask)


@njit(cache=True, nogil=True)
def gather_extrema(mask, row_counts, offsets, level, row, col):
    """Write the (level, row, col) of every marked pixel, in row-major order, at ``offsets``
    (the exclusive prefix sum of ``row_counts``, flattened)."""
    L, H, W = mask.shape
    for job in range(L * H):
        i = job // H
        y = job % H
        if row_counts[i, y] == 0:
            continue
        k = offsets[job]
        for x in range(W):
            if mask[i, y, x]:
                level[k] = i
                row[k] = y
                col[k] = x
                k += 1


@njit(cache=True, inline="always")
def _solve3(a, b):
    """Solve the 3x3 system ``a x = b`` by Gaussian elimination with partial pivoting.

    Returns ``(ok, x)``; ``ok`` is False when ``a`` is singular. ``a`` and ``b`` are overwritten.
    """
    x = np.zeros(3, np.float64)
    for k in range(3):
        p = k
        for i in range(k + 1, 3):
            if abs(a[i, k]) > abs(a[p, k]):
                p = i
        if abs(a[p, k]) < 1e-12:
            return False, x
        if p != k:
            for j in range(3):
                a[k, j], a[p, j] = a[p, j], a[k, j]
            b[k], b[p] = b[p], b[k]
        for i in range(k + 1, 3):
            f = a[i, k] / a[k, k]
            for j in range(k, 3):
                a[i, j] -= f * a[k, j]
            b[i] -= f * b[k]
    for k in range(2, -1, -1):
        s = b[k]
        for j in range(k + 1, 3):
            s -= a[k, j] * x[j]
        x[k] = s / a[k, k]
    return True, x


@njit(cache=True, inline="always")
def _derivatives(dog, i, y, x, grad, hess):
    """Central-difference gradient (dx, dy, ds) and Hessian of D at integer (i, y, x)."""
    v2 = 2.0 * dog[i, y, x]
    grad[0] = 0.5 * (dog[i, y, x + 1] - dog[i, y, x - 1])
    grad[1] = 0.5 * (dog[i, y + 1, x] - dog[i, y - 1, x])
    grad[2] = 0.5 * (dog[i + 1, y, x] - dog[i - 1, y, x])
    dxx = dog[i, y, x + 1] + dog[i, y, x - 1] - v2
    dyy = dog[i, y + 1, x] + dog[i, y - 1, x] - v2
    dss = dog[i + 1, y, x] + dog[i - 1, y, x] - v2
    dxy = 0.25 * (dog[i, y + 1, x + 1] - dog[i, y + 1, x - 1]
                  - dog[i, y - 1, x + 1] + dog[i, y - 1, x - 1])
    dxs = 0.25 * (dog[i + 1, y, x + 1] - dog[i + 1, y, x - 1]
                  - dog[i - 1, y, x + 1] + dog[i - 1, y, x - 1])
    dys = 0.25 * (dog[i + 1, y + 1, x] - dog[i + 1, y - 1, x]
                  - dog[i - 1, y + 1, x] + dog[i - 1, y - 1, x])
    hess[0, 0] = dxx
    hess[0, 1] = dxy
    hess[0, 2] = dxs
    hess[1, 0] = dxy
    hess[1, 1] = dyy
    hess[1, 2] = dys
    hess[2, 0] = dxs
    hess[2, 1] = dys
    hess[2, 2] = dss


# Polynomial for atan(t), 0 <= t <= 1: a least-squares/minimax fit in odd
# powers (max error about 0.01 degree; Rajan et al. 2006, "Efficient approximations for the arctangent function", and the
# degree-7 variant used in many SIMD libraries). Scaled to degrees.
_ATAN_P1 = 0.9997878412794807 * 180.0 / math.pi
_ATAN_P3 = -0.3258083974640975 * 180.0 / math.pi
_ATAN_P5 = 0.1555786518463281 * 180.0 / math.pi
_ATAN_P7 = -0.04432655554792128 * 180.0 / math.pi


@njit(cache=True, inline="always")
def fast_atan2_degrees(y, x):
    """``atan2(y, x)`` in degrees in [0, 360), accurate to about 0.01 degree (polynomial)."""
    ax = abs(x)
    ay = abs(y)
    if ax >= ay:
        t = ay / (ax + 1e-30)
        t2 = t * t
        a = (((_ATAN_P7 * t2 + _ATAN_P5) * t2 + _ATAN_P3) * t2 + _ATAN_P1) * t
    else:
        t = ax / ay
        t2 = t * t
        a = 90.0 - (((_ATAN_P7 * t2 + _ATAN_P5) * t2 + _ATAN_P3) * t2 + _ATAN_P1) * t
    if x < 0:
        a = 180.0 - a
    if y < 0:
        a = 360.0 - a
    if a >= 360.0:
        a -= 360.0
    return a


@njit(cache=True, fastmath=False, error_model="numpy")
def exact_quotient(a, b):
    """``a / b`` rounded as IEEE division, also when inlined into fast-math code.

    Numba's default error model tests every divisor for zero and raises, a branch that keeps the
    loops calling :func:`fast_atan2_degrees_f32` from vectorising; inside ``fastmath=True`` code,
    a vectorised division may instead become a reciprocal estimate (``vrcpps`` and a Newton step)
    that differs from ``a / b`` in the last bits. ``fastmath=False`` must be explicit: a callee
    without it inherits its caller's fast-math flags.
    """
    return a / b


@njit(cache=True, inline="always")
def fast_atan2_degrees_f32(y, x):
    """:func:`fast_atan2_degrees` for float32, without branches (so loops over it vectorise)."""
    ax = abs(x)
    ay = abs(y)
    t = exact_quotient(min(ax, ay), max(ax, ay) + np.float32(1e-30))
    t2 = t * t
    a = (((np.float32(_ATAN_P7) * t2 + np.float32(_ATAN_P5)) * t2 + np.float32(_ATAN_P3)) * t2
         + np.float32(_ATAN_P1)) * t
    a = np.float32(90.0) - a if ay > ax else a
    a = np.float32(180.0) - a if x < 0 else a
    a = np.float32(360.0) - a if y < 0 else a
    return a


@njit(cache=True)
def orientation_histogram(image, y, x, radius, sigma, hist):
    """36-bin histogram of gradient directions around integer (y, x) of ``image`` (H, W).

    Each pixel of the square window of half-width ``radius`` votes its gradient magnitude times
    ``exp(-(i^2 + j^2) / (2 sigma^2))`` ((i, j) its offset) into the nearest bin; the histogram is
    then smoothed circularly with [1 4 6 4 1]/16 (Lowe 2004, sec. 5; OpenCV's smoothing). Writes
    ``hist`` (36,) and returns its maximum. Directions are atan2(dy, dx) with y down.
    """
    H, W = image.shape
    n = hist.shape[0]
    raw = np.zeros(n, np.float32)
    wtab = np.empty(2 * radius + 1, np.float32)   # exp(-(i^2+j^2)/2s^2) = wtab[i+R] wtab[j+R]
    for t in range(2 * radius + 1):
        wtab[t] = math.exp(-(t - radius) * (t - radius) / (2.0 * sigma * sigma))
    bins_per_degree = np.float32(n / 360.0)
    half = np.float32(0.5)
    j0 = max(-radius, 1 - x)                       # columns 1 .. W-2 only
    j1 = min(radius, W - 2 - x)
    count = j1 - j0 + 1
    if count <= 0:
        return 0.0
    votes = np.empty(count, np.float32)
    bins = np.empty(count, np.int32)
    for i in range(-radius, radius + 1):
        yy = y + i
        if yy <= 0 or yy >= H - 1:
            continue
        wi = wtab[i + radius]
        c0 = x + j0
        left = image[yy, c0 - 1:]
        right = image[yy, c0 + 1:]
        up = image[yy - 1, c0:]
        down = image[yy + 1, c0:]
        wrow = wtab[j0 + radius:]
        for t in range(count):                     # branch-free: vectorised
            dx = right[t] - left[t]
            dy = down[t] - up[t]                   # y down
            votes[t] = wi * wrow[t] * math.sqrt(dx * dx + dy * dy)
            b = np.int32(fast_atan2_degrees_f32(dy, dx) * bins_per_degree + half)
            bins[t] = b - n if b >= n else b
        for t in range(count):
            raw[bins[t]] += votes[t]
    best = 0.0
    for b in range(n):
        h = (ORI_SMOOTH[0] * (raw[(b - 2) % n] + raw[(b + 2) % n])
             + ORI_SMOOTH[1] * (raw[(b - 1) % n] + raw[(b + 1) % n])
             + ORI_SMOOTH[2] * raw[b])
        hist[b] = h
        if h > best:
            best = h
    return best


@njit(cache=True)
def _refine_one(dog, gauss, i, y, x, params, out, angles):
    """:func:`refine_and_orient` for the candidate at (level i, row y, col x), writing its row of
    ``out`` and ``angles`` (a function of its own, compiled apart from the loop over the jobs, and few
    arguments: both keep compilation quick)."""
    L, H, W = dog.shape
    n_scales = int(params[0])
    sigma = params[1]
    contrast_threshold = params[2]
    edge_threshold = params[3]
    border = int(params[4])
    ori_radius_factor = params[5]
    ori_sigma_factor = params[6]
    peak_ratio = params[7]
    upright = params[8] != 0.0
    for k in range(out.shape[0]):
        out[k] = 0.0
    grad = np.empty(3, np.float64)
    b = np.empty(3, np.float64)
    hess = np.empty((3, 3), np.float64)
    off = np.zeros(3, np.float64)
    converged = False
    inside = True
    for _ in range(MAX_INTERP_STEPS):
        _derivatives(dog, i, y, x, grad, hess)
        for k in range(3):
            b[k] = -grad[k]
        ok, sol = _solve3(hess, b)
        for k in range(3):
            off[k] = sol[k] if ok else 0.0
        if abs(off[0]) < 0.5 and abs(off[1]) < 0.5 and abs(off[2]) < 0.5:
            converged = True
            break
        if abs(off[0]) > 1e6 or abs(off[1]) > 1e6 or abs(off[2]) > 1e6:
            inside = False
            break
        x += int(round(off[0]))
        y += int(round(off[1]))
        i += int(round(off[2]))
        if i < 1 or i > n_scales or x < border or x >= W - border or y < border \
                or y >= H - border:
            inside = False
            break
    if not converged or not inside:
        return
    _derivatives(dog, i, y, x, grad, hess)
    contrast = dog[i, y, x] + 0.5 * (grad[0] * off[0] + grad[1] * off[1] + grad[2] * off[2])
    if abs(contrast) * n_scales < contrast_threshold:
        return
    tr = hess[0, 0] + hess[1, 1]
    det = hess[0, 0] * hess[1, 1] - hess[0, 1] * hess[0, 1]
    if det <= 0 or tr * tr * edge_threshold >= (edge_threshold + 1) ** 2 * det:
        return
    scale = sigma * 2.0 ** ((i + off[2]) / n_scales)
    out[0] = 1.0
    out[1] = x + off[0]
    out[2] = y + off[1]
    out[3] = i
    out[4] = off[2]
    out[5] = scale
    out[6] = abs(contrast)
    if upright:
        out[7] = 1.0
        angles[0] = 0.0
        return
    hist = np.empty(ORI_HIST_BINS, np.float64)
    radius = int(round(ori_radius_factor * scale))
    best = orientation_histogram(gauss[i], y, x, radius, ori_sigma_factor * scale, hist)
    n = ORI_HIST_BINS
    count = 0
    for j in range(n):
        left = hist[(j - 1) % n]
        right = hist[(j + 1) % n]
        if hist[j] > left and hist[j] > right and hist[j] >= peak_ratio * best:
            peak = j + 0.5 * (left - right) / (left - 2.0 * hist[j] + right)
            if peak < 0:
                peak += n
            elif peak >= n:
                peak -= n
            angle = 360.0 / n * peak
            if angle >= 360.0:
                angle -= 360.0
            angles[count] = angle
            count += 1
    out[7] = count


@njit(cache=True, nogil=True)
def refine_and_orient(dog, gauss, candidates, params, out, angles, r0, r1):
    """Refine each candidate extremum of one octave and assign its orientations.

    For candidate k at ``candidates[k] = (level, row, col)`` of ``dog`` (L, H, W):

    1. Fit the quadratic ``D(x) = D + g.x + x.H.x / 2`` (Lowe 2004, eq. 2) and step to
       ``x^ = -H^-1 g`` (eq. 3); while an offset exceeds 0.5 move to the neighbouring sample, at most
       ``MAX_INTERP_STEPS`` times, staying ``border`` pixels inside and on levels 1..n_scales.
    2. Contrast: reject when ``|D(x^)| = |D + g.x^ / 2| < contrast_threshold / n_scales``.
    3. Edges: reject when ``det <= 0`` or ``tr^2 / det >= (e + 1)^2 / e`` for the 2x2 spatial
       Hessian, ``e = edge_threshold`` (Lowe 2004, sec. 4.1).
    4. Orientation (Lowe 2004, sec. 5): a 36-bin histogram on ``gauss[level]`` with Gaussian window
       ``ori_sigma_factor * s`` and radius ``round(ori_radius_factor * s)``, ``s`` the keypoint's
       scale in octave pixels; one angle per local peak >= ``peak_ratio`` times the highest,
       refined by a parabola through the peak and its neighbours. ``upright``: one angle, 0.

    ``params`` (9,) float64: n_scales, sigma, contrast_threshold, edge_threshold, border,
    ori_radius_factor, ori_sigma_factor, peak_ratio, upright (0 or 1). ``out`` (K, 8) float64 per
    candidate: kept (0/1), x, y (octave pixels), level, sub-level offset, scale (sigma in octave
    pixels), response ``|D(x^)|``, number of angles; ``angles`` (K, MAX_PEAKS) float64 degrees.
    Jobs ``r0 .. r1-1`` of ``refine_jobs(K)``, in the order below.
    """
    # Candidates come level by level, and the higher levels' orientation windows are wider
    # (radius ~ scale), so the second half of the list costs ~1.7x the first: split in two
    # contiguous halves, one thread waited for the other. Job t visits candidate
    # (t % SPREAD) * cols + t // SPREAD: any contiguous run of jobs (a band) takes an equal part
    # of each of SPREAD stretches of the list. Each candidate's result is its own, so the order
    # changes nothing but the balance.
    K = candidates.shape[0]
    cols = (K + SPREAD - 1) // SPREAD
    for t in range(r0, r1):
        k = (t % SPREAD) * cols + t // SPREAD
        if k < K:
            _refine_one(dog, gauss, candidates[k, 0], candidates[k, 1], candidates[k, 2],
                        params, out[k], angles[k])


@njit(cache=True, fastmath=True)
def _descriptor_one(image, px, py, angle, scale, scale_factor, clip, root, scratch, hist, out):
    """The 4x4x8 descriptor of one keypoint into ``out`` (128,); see :func:`sift_descriptors`.

    Three passes, as OpenCV does: collect the samples inside the rotated grid, then their
    magnitudes and directions (a loop the compiler vectorises: see :func:`exact_quotient`), then
    the histogram votes.
    """
    H, W = image.shape
    d = DESC_WIDTH
    n = DESC_BINS
    cx = int(round(px))
    cy = int(round(py))
    # Orientation bins are counted anticlockwise with y up, as in OpenCV, so that descriptors
    # agree bin for bin with OpenCV's: angle_up = 360 - angle, gradient angle atan2(-dy, dx).
    angle_up = 360.0 - angle
    if angle_up >= 360.0:
        angle_up -= 360.0
    cos_t = math.cos(math.radians(angle))
    sin_t = math.sin(math.radians(angle))
    hist_width = scale_factor * scale
    radius = int(round(hist_width * math.sqrt(2.0) * (d + 1) * 0.5))
    radius = min(radius, int(math.sqrt(float(H) * H + float(W) * W)))
    cos_t /= hist_width
    sin_t /= hist_width
    # Gaussian weight exp(-(u^2 + v^2) / (2 (d/2)^2)) in cell units; the rotation keeps u^2 + v^2 =
    # (i^2 + j^2) / hist_width^2, so the weight factors into one table over offsets.
    wscale = -1.0 / (0.5 * d * d * hist_width * hist_width)
    side = 2 * radius + 1
    wtab = np.empty(side, np.float32)                 # wtab[j + radius] = exp(j^2 wscale)
    for t in range(side):
        wtab[t] = math.exp((t - radius) * (t - radius) * wscale)
    rb = scratch[0]                             # (7, >= side^2) buffers shared by a block
    cb = scratch[1]
    gx = scratch[2]
    gy = scratch[3]
    wt = scratch[4]
    m = 0
    half = 0.5 * d - 0.5
    lo = -1.0 + GRID_EDGE
    hi = d - GRID_EDGE
    for i in range(-radius, radius + 1):
        r = cy + i
        if r <= 0 or r >= H - 1:
            continue
        # Sample (i, j) sits at cbin = j cos_t + i sin_t + half, rbin = -j sin_t + i cos_t + half
        # (cells; 0..d-1 at cell centres). The samples of row i inside the grid,
        # -1 < cbin, rbin < d, are one interval of j: solve the four inequalities (kept
        # GRID_EDGE inside, where a sample's vote into the grid is at most GRID_EDGE of it).
        jlo = float(-radius)
        jhi = float(radius)
        for a_, b_ in ((cos_t, i * sin_t + half), (-sin_t, i * cos_t + half)):
            if a_ > 1e-12:
                jlo = max(jlo, (lo - b_) / a_)
                jhi = min(jhi, (hi - b_) / a_)
            elif a_ < -1e-12:
                jlo = max(jlo, (hi - b_) / a_)
                jhi = min(jhi, (lo - b_) / a_)
            elif b_ < lo or b_ > hi:
                jhi = jlo - 1.0
        j0 = max(int(math.ceil(jlo)), 1 - cx)          # and 1 <= column <= W - 2
        j1 = min(int(math.floor(jhi)), W - 2 - cx)
        if j1 < j0:
            continue
        count = j1 - j0 + 1
        c0 = cx + j0
        left = image[r, c0 - 1:]
        right = image[r, c0 + 1:]
        up = image[r - 1, c0:]
        down = image[r + 1, c0:]
        wrow = wtab[j0 + radius:]
        wi = wtab[i + radius]
        rb_m = rb[m:]
        cb_m = cb[m:]
        gx_m = gx[m:]
        gy_m = gy[m:]
        wt_m = wt[m:]
        r_start = np.float32(-j0 * sin_t + i * cos_t + half)
        c_start = np.float32(j0 * cos_t + i * sin_t + half)
        r_step = np.float32(-sin_t)
        c_step = np.float32(cos_t)
        for t in range(count):                          # branch-free: vectorised
            rb_m[t] = r_start + t * r_step
            cb_m[t] = c_start + t * c_step
            gx_m[t] = right[t] - left[t]
            gy_m[t] = up[t] - down[t]                   # y up
            wt_m[t] = wi * wrow[t]
        m += count
    # pass 2, vectorised: magnitudes and directions
    mag = scratch[5]
    ori = scratch[6]
    for k in range(m):
        mag[k] = math.sqrt(gx[k] * gx[k] + gy[k] * gy[k]) * wt[k]
        ori[k] = fast_atan2_degrees_f32(gy[k], gx[k])
    # pass 3: trilinear votes into the (d+2) x (d+2) x (n+2) padded histogram
    nb = n + 2
    cell = (d + 2) * nb
    for k in range(hist.shape[0]):
        hist[k] = 0.0
    bins_per_degree = np.float32(n / 360.0)
    shift = np.float32(360.0 - angle_up)       # makes (direction - angle_up) non-negative
    one = np.float32(1.0)
    for k in range(m):
        # rbin, cbin > -1 and the shifted obin >= 0: truncation is floor after adding 1
        rbin = rb[k] + one
        cbin = cb[k] + one
        obin = (ori[k] + shift) * bins_per_degree
        r0 = int(rbin)
        c0 = int(cbin)
        o0 = int(obin)
        fr = rbin - np.float32(r0)
        fc = cbin - np.float32(c0)
        fo = obin - np.float32(o0)
        if o0 >= n:                             # 0 <= o0 <= n; bin n folds onto 0 below
            o0 -= n
        v_r1 = mag[k] * fr
        v_r0 = mag[k] - v_r1
        v_rc11 = v_r1 * fc
        v_rc10 = v_r1 - v_rc11
        v_rc01 = v_r0 * fc
        v_rc00 = v_r0 - v_rc01
        f0 = one - fo
        idx = r0 * cell + c0 * nb + o0          # r0, c0 already offset by the padding
        hist[idx] += v_rc00 * f0
        hist[idx + 1] += v_rc00 * fo
        hist[idx + nb] += v_rc01 * f0
        hist[idx + nb + 1] += v_rc01 * fo
        hist[idx + cell] += v_rc10 * f0
        hist[idx + cell + 1] += v_rc10 * fo
        hist[idx + cell + nb] += v_rc11 * f0
        hist[idx + cell + nb + 1] += v_rc11 * fo
    k = 0
    for a in range(d):
        for b in range(d):
            base = (a + 1) * cell + (b + 1) * nb
            hist[base] += hist[base + n]
            hist[base + 1] += hist[base + n + 1]
            for o in range(n):
                out[k] = hist[base + o]
                k += 1
    # normalise, clip large gradients, normalise again (Lowe 2004, sec. 6.1)
    nrm = 0.0
    for k in range(DESC_LENGTH):
        nrm += out[k] * out[k]
    thr = clip * math.sqrt(nrm)
    nrm = 0.0
    for k in range(DESC_LENGTH):
        if out[k] > thr:
            out[k] = thr
        nrm += out[k] * out[k]
    nrm = math.sqrt(nrm)
    if nrm <= 0.0:
        for k in range(DESC_LENGTH):
            out[k] = 0.0
        return
    if root:
        # RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, then square root -> unit L2
        s = 0.0
        for k in range(DESC_LENGTH):
            s += out[k]
        for k in range(DESC_LENGTH):
            out[k] = math.sqrt(out[k] / s)
    else:
        for k in range(DESC_LENGTH):
            out[k] /= nrm


def refine_jobs(K):
    """Number of jobs of :func:`refine_and_orient` for ``K`` candidates."""
    return SPREAD * ((K + SPREAD - 1) // SPREAD)


@njit(cache=True, nogil=True)
def sift_descriptors(gauss, px, py, level, angle, scale, scale_factor, clip, root, out, r0, r1):
    """Descriptors of the keypoints ``r0 .. r1-1`` of one octave.

    gauss (L, H, W) float32, the octave's Gaussian levels; for keypoint k: position
    ``(px[k], py[k])`` in octave pixels, ``level[k]`` the Gaussian level to sample, ``angle[k]`` in
    degrees (OpenCV convention), ``scale[k]`` its sigma in octave pixels. Each of the 4x4 cells is
    ``scale_factor * scale`` pixels wide (3 sigma, Lowe 2004, sec. 6.1). Gradient magnitudes are
    weighted by a Gaussian of sigma = half the descriptor width and spread over the
    4 x 4 x 8 bins by trilinear interpolation; the vector is normalised, clipped at ``clip`` and
    normalised again (or RootSIFT when ``root``). ``out`` (K, 128) float32, order
    ``[row bin, col bin, orientation bin]``.
    """
    H, W = gauss.shape[1:]
    largest = 0.0
    for k in range(r0, r1):
        largest = max(largest, scale[k])
    radius = int(round(scale_factor * largest * math.sqrt(2.0) * (DESC_WIDTH + 1) * 0.5))
    radius = min(radius, int(math.sqrt(float(H) * H + float(W) * W)))
    side = 2 * radius + 1
    scratch = np.empty((7, side * side), np.float32)     # shared by the keypoints of the band
    hist = np.empty((DESC_WIDTH + 2) * (DESC_WIDTH + 2) * (DESC_BINS + 2), np.float32)
    for k in range(r0, r1):
        _descriptor_one(gauss[level[k]], px[k], py[k], angle[k], scale[k], scale_factor,
                        clip, root, scratch, hist, out[k])
