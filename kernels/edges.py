"""Canny edge kernels: non-maximum suppression along the gradient, hysteresis by flood fill.

Conventions: ``gr`` is the derivative along rows (axis 0), ``gc`` along columns (axis 1), both
float32 (H, W); ``magnitude = hypot(gr, gc)``. ``mask`` is uint8 (H, W) and is 0 on the outer
one-pixel frame (the caller erodes it), so every kernel here may read the 8 neighbours of any
pixel whose mask is set without a bounds check.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _interp(mag, i, j, di1, dj1, di2, dj2, w):
    """Linear interpolation between neighbour 1 (weight 1 - w) and neighbour 2 (weight w)."""
    return mag[i + di2, j + dj2] * w + mag[i + di1, j + dj1] * (1.0 - w)


@njit(cache=True, parallel=True)
def nonmax_suppression(gr, gc, magnitude, mask, low, out):
    """Keep ``magnitude`` where it is a local maximum along the gradient direction, else 0.

    A pixel survives when ``mask`` is set, ``magnitude >= low`` and the magnitude is ``>=`` the
    values interpolated at one pixel step forward and backward along the gradient. The
    interpolation is between the axis neighbour and the diagonal neighbour on the side the
    gradient points to, weighted by ``min(|gr|, |gc|) / max(|gr|, |gc|)`` (the tangent of
    the angle from the nearer axis): scikit-image's ``canny`` (bilinear variant of Canny 1986,
    sec. IV).
    A ``low`` of 0 is raised to 1e-14 so that flat pixels (magnitude 0) never survive.
    """
    H, W = magnitude.shape
    if low == 0.0:
        low = 1e-14
    for i in prange(H):
        for j in range(W):
            out[i, j] = 0.0
            m = magnitude[i, j]
            if mask[i, j] == 0 or not (m >= low):
                continue
            a = gr[i, j]
            b = gc[i, j]
            aa = abs(a)
            ab = abs(b)
            # Same signs (both > 0, or both <= 0): the gradient runs along the main diagonal
            # (+1, +1); opposite signs: along the anti-diagonal (-1, +1).
            same = (a > 0.0) == (b > 0.0)
            if same:
                if aa > ab:          # nearer the row axis: neighbours (+1, 0) and (+1, +1)
                    w = ab / aa
                    fwd = _interp(magnitude, i, j, 1, 0, 1, 1, w)
                    bwd = _interp(magnitude, i, j, -1, 0, -1, -1, w)
                else:                # nearer the column axis: (0, +1) and (+1, +1)
                    w = aa / ab
                    fwd = _interp(magnitude, i, j, 0, 1, 1, 1, w)
                    bwd = _interp(magnitude, i, j, 0, -1, -1, -1, w)
            else:
                if aa < ab:          # nearer the column axis: (0, +1) and (-1, +1)
                    w = aa / ab
                    fwd = _interp(magnitude, i, j, 0, 1, -1, 1, w)
                    bwd = _interp(magnitude, i, j, 0, -1, 1, -1, w)
                else:                # nearer the row axis: (-1, 0) and (-1, +1)
                    w = ab / aa
                    fwd = _interp(magnitude, i, j, -1, 0, -1, 1, w)
                    bwd = _interp(magnitude, i, j, 1, 0, 1, -1, w)
            if fwd <= m and bwd <= m:
                out[i, j] = m


@njit(cache=True)
def hysteresis(candidates, high, out):
    """Hysteresis thresholding (Canny 1986, sec. V): keep every 8-connected group of
    candidate pixels (``candidates > 0``) that holds at least one pixel ``>= high``.

    Flood fill from each strong pixel with an explicit stack of (row, column) pairs;
    ``out`` (H, W) uint8 receives 1 for kept pixels. Equal to labelling the candidates and
    keeping the labels that contain a strong pixel. Each pixel is pushed at most once (it is
    marked when pushed), so the stacks never hold more than H * W entries.
    """
    H, W = candidates.shape
    out[:, :] = 0
    stack_r = np.empty(H * W, np.int32)
    stack_c = np.empty(H * W, np.int32)
    for i0 in range(H):
        for j0 in range(W):
            if out[i0, j0] or not (candidates[i0, j0] > 0.0 and candidates[i0, j0] >= high):
                continue
            out[i0, j0] = 1
            stack_r[0] = i0
            stack_c[0] = j0
            top = 1
            while top > 0:
                top -= 1
                i = stack_r[top]
                j = stack_c[top]
                for ii in range(max(i - 1, 0), min(i + 2, H)):
                    for jj in range(max(j - 1, 0), min(j + 2, W)):
                        if out[ii, jj] == 0 and candidates[ii, jj] > 0.0:
                            out[ii, jj] = 1
                            stack_r[top] = ii
                            stack_c[top] = jj
                            top += 1
