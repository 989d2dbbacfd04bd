"""Readable twins of :mod:`kernels.edges` and :mod:`kernels.corners` (peak spacing).

Non-maximum suppression: a pixel survives when its gradient magnitude is at least the values
one step forward and one step backward along the gradient direction. The step lands between
two neighbours (an axis neighbour and a diagonal one); the value there is interpolated
linearly with weight ``t = min(|gr|, |gc|) / max(|gr|, |gc|)`` on the diagonal one.

Hysteresis: starting from strong pixels, grow through 8-connected weak pixels until nothing
changes (a plain fixed-point iteration, slow but obviously right).
"""
from __future__ import annotations

import numpy as np


def scale_rows(image, maximum):
    """The integer image as float32, divided by ``maximum`` (0..1 for an unsigned image)."""
    return image.astype(np.float32) / np.float32(maximum)


def divide_rows(image, divisors, row_of):
    """``image`` divided by the divisor image whose row ``i`` is ``divisors[row_of[i]]``."""
    return image / divisors[row_of]


def nonmax_suppression(gr, gc, magnitude, mask, low):
    """Suppressed magnitude (float64), zero where not a maximum, masked out or below ``low``."""
    H, W = magnitude.shape
    low = 1e-14 if low == 0 else low
    out = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            m = magnitude[i, j]
            if not mask[i, j] or not m >= low:
                continue
            a, b = gr[i, j], gc[i, j]
            # Step direction along the gradient, as (row, column) signs: a and b of the same
            # sign (treating 0 as negative) point along (+1, +1), otherwise along (-1, +1).
            drow = 1 if (a > 0) == (b > 0) else -1
            if abs(a) > abs(b) or ((a > 0) != (b > 0) and abs(a) == abs(b)):
                t = abs(b) / abs(a)                   # nearer the row axis
                axis_nb, diag_nb = (drow, 0), (drow, 1)
            else:
                t = abs(a) / abs(b)                   # nearer the column axis
                axis_nb, diag_nb = (0, 1), (drow, 1)
            fwd = (1 - t) * magnitude[i + axis_nb[0], j + axis_nb[1]] + \
                t * magnitude[i + diag_nb[0], j + diag_nb[1]]
            bwd = (1 - t) * magnitude[i - axis_nb[0], j - axis_nb[1]] + \
                t * magnitude[i - diag_nb[0], j - diag_nb[1]]
            if fwd <= m and bwd <= m:
                out[i, j] = m
    return out


def hysteresis(candidates, high):
    """Boolean map: 8-connected groups of ``candidates > 0`` that hold a value ``>= high``."""
    weak = candidates > 0
    edges = weak & (candidates >= high)
    while True:
        grown = edges.copy()
        padded = np.pad(edges, 1)
        H, W = edges.shape
        for di in range(3):
            for dj in range(3):
                grown |= padded[di:di + H, dj:dj + W] & weak
        if (grown == edges).all():
            return edges
        edges = grown


def greedy_spacing(coords, reach):
    """Keep-flags for points visited in order: a point is dropped when a kept point lies
    within ``reach`` rows and ``reach`` columns of it (Chebyshev distance <= reach)."""
    kept = []
    flags = []
    for r, c in coords:
        ok = all(max(abs(r - kr), abs(c - kc)) > reach for kr, kc in kept)
        flags.append(ok)
        if ok:
            kept.append((r, c))
    return np.array(flags, dtype=bool)
