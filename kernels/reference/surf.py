"""Readable twin of :mod:`kernels.surf`: SURF's responses written from their definitions.

Nothing here uses the integral image. The box filters are built as dense ``L x L`` weight arrays
and laid over the zero-padded image; a Haar wavelet at a real position is the exact integral of
the piecewise-constant image over its two halves, pixel by pixel overlap; the orientation window
is tested against every response; the descriptor reads each wavelet at its turned sample
(Bay et al. 2008, sec. 3-4). Slow, and meant to be read first.
"""
import math

import numpy as np

MIXED_WEIGHT = 0.9     # Bay et al. 2008, eq. 4


def box_filters(L):
    """The three box filters of side ``L = 3 l`` as dense (L, L) arrays ``(Dxx, Dyy, Dxy)``."""
    l = L // 3
    b = (L - 1) // 2
    dyy = np.zeros((L, L))
    cols = slice(b - l + 1, b + l)                # 2l - 1 columns around the centre
    dyy[0:l, cols] = 1.0                          # top lobe
    dyy[l:2 * l, cols] = -2.0                     # middle lobe
    dyy[2 * l:3 * l, cols] = 1.0                  # bottom lobe
    dxx = dyy.T.copy()
    dxy = np.zeros((L, L))
    dxy[b - l:b, b - l:b] = 1.0                   # top-left
    dxy[b - l:b, b + 1:b + l + 1] = -1.0          # top-right
    dxy[b + 1:b + l + 1, b - l:b] = -1.0          # bottom-left
    dxy[b + 1:b + l + 1, b + 1:b + l + 1] = 1.0   # bottom-right
    return dxx, dyy, dxy


def hessian_response(image, r, c, L):
    """``(det, sign of the Laplacian)`` of the filters of side ``L`` at pixel ``(r, c)``; pixels
    outside the image count as zero. ``D = sum(filter * patch) / L^2`` (sec. 3.3)."""
    b = (L - 1) // 2
    padded = np.pad(np.asarray(image, np.float64), b)
    patch = padded[r:r + L, c:c + L]              # centred on (r, c) of the image
    dxx, dyy, dxy = (float(np.sum(f * patch)) / (L * L) for f in box_filters(L))
    det = dxx * dyy - (MIXED_WEIGHT * dxy) ** 2
    return det, int(np.sign(dxx + dyy))


def box_integral(image, x0, x1, y0, y1):
    """Exact integral of the image over ``[x0, x1] x [y0, y1]`` (real bounds), pixel ``(r, c)``
    covering ``[c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]``, zero outside the image."""
    H, W = image.shape
    total = 0.0
    for r in range(max(0, math.floor(y0 + 0.5)), min(H, math.ceil(y1 + 0.5))):
        oy = min(y1, r + 0.5) - max(y0, r - 0.5)
        for c in range(max(0, math.floor(x0 + 0.5)), min(W, math.ceil(x1 + 0.5))):
            ox = min(x1, c + 0.5) - max(x0, c - 0.5)
            if ox > 0 and oy > 0:
                total += float(image[r, c]) * ox * oy
    return total


def haar(image, x, y, h):
    """Haar responses of side ``2h`` at ``(x, y)``: (right - left, bottom - top)."""
    dx = box_integral(image, x, x + h, y - h, y + h) - box_integral(image, x - h, x, y - h, y + h)
    dy = box_integral(image, x - h, x + h, y, y + h) - box_integral(image, x - h, x + h, y - h, y)
    return dx, dy


def orientation(image, x, y, s):
    """Angle in degrees (sec. 4.1): responses of side 4s on the disc of radius 6s (step s),
    Gaussian weights of sigma 2s; every 5 degrees a 60-degree window sums the responses whose
    angle falls inside; the longest sum wins."""
    responses = []
    for i in range(-6, 7):
        for j in range(-6, 7):
            if i * i + j * j <= 36:
                dx, dy = haar(image, x + j * s, y + i * s, 2 * s)
                w = math.exp(-(i * i + j * j) / (2 * 2.0 ** 2))
                if dx != 0 or dy != 0:
                    responses.append((math.degrees(math.atan2(dy, dx)) % 360, w * dx, w * dy))
    best, best_vec = -1.0, (0.0, 0.0)
    for start in range(0, 360, 5):
        sx = sum(rx for a, rx, ry in responses if (a - start) % 360 < 60)
        sy = sum(ry for a, rx, ry in responses if (a - start) % 360 < 60)
        if sx * sx + sy * sy > best:
            best, best_vec = sx * sx + sy * sy, (sx, sy)
    return math.degrees(math.atan2(best_vec[1], best_vec[0])) % 360


def _accumulate(responses, co, si, extended):
    """Sum the turned, weighted responses per sub-region; unit length. ``responses[m, k]`` is the
    ``(dx, dy)`` of the sample on row ``m``, column ``k`` of the 20 x 20 window."""
    per_cell = 8 if extended else 4
    out = np.zeros((4, 4, per_cell))
    for m in range(20):
        for k in range(20):
            u, v = k - 9.5, m - 9.5
            dx, dy = responses[m, k]
            w = math.exp(-(u * u + v * v) / (2 * 3.3 ** 2))
            du = w * (dx * co + dy * si)
            dv = w * (-dx * si + dy * co)
            cell = out[m // 5, k // 5]
            if not extended:
                cell += (du, dv, abs(du), abs(dv))
            else:
                cell[0:2] += (du, abs(du)) if dv >= 0 else (0, 0)
                cell[2:4] += (du, abs(du)) if dv < 0 else (0, 0)
                cell[4:6] += (dv, abs(dv)) if du >= 0 else (0, 0)
                cell[6:8] += (dv, abs(dv)) if du < 0 else (0, 0)
    out = out.ravel()
    norm = np.linalg.norm(out)
    return out / norm if norm > 0 else out


def descriptor_direct(image, x, y, s, angle, extended=False):
    """The 64 (or 128) values of sec. 4.2, each wavelet read at its own turned sample."""
    t = math.radians(angle)
    co, si = math.cos(t), math.sin(t)
    responses = np.zeros((20, 20, 2))
    for m in range(20):
        for k in range(20):
            u, v = k - 9.5, m - 9.5                    # along and across the angle, units of s
            responses[m, k] = haar(image, x + s * (u * co - v * si), y + s * (u * si + v * co), s)
    return _accumulate(responses, co, si, extended)


def descriptor(image, x, y, s, angle, extended=False):
    """What :mod:`kernels.surf` computes: the wavelets read on an upright 28 x 28 grid of
    half-integer multiples of s around the keypoint, and interpolated bilinearly at the turned
    samples (at angle 0, 90, 180, 270 they fall on the grid: :func:`descriptor_direct` exactly).
    The kernel trims the grid to the points the turned samples reach (same values)."""
    t = math.radians(angle)
    co, si = math.cos(t), math.sin(t)
    n = 20 if angle == 0 else 28
    c = (n - 1) / 2
    grid = np.zeros((n, n, 2))
    for a in range(n):
        for b in range(n):
            grid[a, b] = haar(image, x + (b - c) * s, y + (a - c) * s, s)
    if angle == 0:
        return _accumulate(grid, 1.0, 0.0, extended)
    responses = np.zeros((20, 20, 2))
    for m in range(20):
        for k in range(20):
            u, v = k - 9.5, m - 9.5
            gx, gy = (u * co - v * si) + c, (u * si + v * co) + c    # grid coordinates
            k0, m0 = min(int(gx), n - 2), min(int(gy), n - 2)
            fx, fy = gx - k0, gy - m0
            responses[m, k] = ((1 - fy) * ((1 - fx) * grid[m0, k0] + fx * grid[m0, k0 + 1])
                               + fy * ((1 - fx) * grid[m0 + 1, k0] + fx * grid[m0 + 1, k0 + 1]))
    return _accumulate(responses, co, si, extended)
