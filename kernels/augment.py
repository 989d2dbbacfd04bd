"""Numba kernels of the data augmentations in :mod:`cvcore.augment`.

Every kernel works on a batch ``x`` of shape ``(N, C, H, W)``, float32, C-contiguous, and writes
into a caller-allocated ``out``; image ``n`` uses the ``n``-th entry of each parameter array, so the
random draws happen outside (in NumPy, seeded) and the kernels are deterministic. The loop over
images is a ``prange``, except in :func:`pad_crop` and :func:`hflip`: those two are copies that
run on every training batch of a CNN (the standard crop-and-flip recipe), a fraction of a
millisecond for a batch of 128 CIFAR-sized images on one thread, where a ``prange`` would add
about 1.5 s of compilation to a cold start (each ``prange`` is a module of its own to compile:
``benchmarks/README.md``, "First run"). ``out`` may be ``x`` itself for the point-wise kernels
(flip, brightness, contrast, saturation, hue) but not for :func:`pad_crop` or
:func:`affine_bilinear`.
"""
import numpy as np
from numba import njit, prange

# ITU-R BT.601 luma weights, the grey level Pillow's convert("L") and torchvision's colour jitter
# (up to rounding) blend with.
LUMA_R = 0.299
LUMA_G = 0.587
LUMA_B = 0.114


@njit(cache=True, nogil=True)
def pad_crop(x, top, left, pad_top, pad_left, fill, out):
    """``out[n, c, i, j] = x[n, c, i + top[n] - pad_top, j + left[n] - pad_left]``, or ``fill``
    where that falls outside ``x``: a crop at ``(top[n], left[n])`` of ``x`` padded by
    ``pad_top`` rows and ``pad_left`` columns of ``fill``. ``top``, ``left``: int64 ``(N,)``."""
    N, C, H, W = x.shape
    Ho, Wo = out.shape[2], out.shape[3]
    for n in range(N):
        dy = top[n] - pad_top
        dx = left[n] - pad_left
        for c in range(C):
            for i in range(Ho):
                si = i + dy
                inside_row = si >= 0 and si < H
                for j in range(Wo):
                    sj = j + dx
                    if inside_row and sj >= 0 and sj < W:
                        out[n, c, i, j] = x[n, c, si, sj]
                    else:
                        out[n, c, i, j] = fill


@njit(cache=True, nogil=True)
def hflip(x, flags, out):
    """Mirror image ``n`` left-right where ``flags[n]`` is non-zero, else copy it. ``out`` may be
    ``x``. ``flags``: uint8 ``(N,)``."""
    N, C, H, W = x.shape
    for n in range(N):
        if flags[n] != 0:
            for c in range(C):
                for i in range(H):
                    for j in range(W // 2):  # swap pairs, so that in-place works
                        a = x[n, c, i, j]
                        b = x[n, c, i, W - 1 - j]
                        out[n, c, i, j] = b
                        out[n, c, i, W - 1 - j] = a
                    if W % 2 == 1:
                        out[n, c, i, W // 2] = x[n, c, i, W // 2]
        else:
            for c in range(C):
                for i in range(H):
                    for j in range(W):
                        out[n, c, i, j] = x[n, c, i, j]


@njit(cache=True, nogil=True)
def _clip01(v):
    if v < 0.0:
        return 0.0
    if v > 1.0:
        return 1.0
    return v


@njit(cache=True, parallel=True, nogil=True)
def brightness(x, factor, out):
    """``out = clip(factor[n] * x, 0, 1)``: a blend with black. ``factor``: float32 ``(N,)``."""
    N, C, H, W = x.shape
    for n in prange(N):
        f = np.float64(factor[n])
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    out[n, c, i, j] = _clip01(f * x[n, c, i, j])


@njit(cache=True, parallel=True, nogil=True)
def contrast(x, factor, out):
    """``out = clip(f x + (1 - f) m, 0, 1)`` with ``m`` the mean grey level of image ``n``
    (BT.601 luma for ``C == 3``, the channel itself for ``C == 1``): a blend with a flat image of
    the mean. ``factor``: float32 ``(N,)``. ``C`` must be 1 or 3."""
    N, C, H, W = x.shape
    for n in prange(N):
        total = 0.0
        for i in range(H):
            for j in range(W):
                if C == 3:
                    total += LUMA_R * x[n, 0, i, j] + LUMA_G * x[n, 1, i, j] + LUMA_B * x[n, 2, i, j]
                else:
                    total += x[n, 0, i, j]
        mean = total / (H * W)
        f = np.float64(factor[n])
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    out[n, c, i, j] = _clip01(f * x[n, c, i, j] + (1.0 - f) * mean)


@njit(cache=True, parallel=True, nogil=True)
def saturation(x, factor, out):
    """``out = clip(f x + (1 - f) g, 0, 1)`` with ``g`` the BT.601 grey level of each pixel: a
    blend with the grey image. ``x`` is RGB (``C == 3``). ``factor``: float32 ``(N,)``."""
    N, C, H, W = x.shape
    for n in prange(N):
        f = np.float64(factor[n])
        for i in range(H):
            for j in range(W):
                r = x[n, 0, i, j]
                g = x[n, 1, i, j]
                b = x[n, 2, i, j]
                grey = (1.0 - f) * (LUMA_R * r + LUMA_G * g + LUMA_B * b)
                out[n, 0, i, j] = _clip01(f * r + grey)
                out[n, 1, i, j] = _clip01(f * g + grey)
                out[n, 2, i, j] = _clip01(f * b + grey)


@njit(cache=True, parallel=True, nogil=True)
def hue(x, shift, out):
    """Rotate the hue of each RGB pixel by ``shift[n]`` turns (HSV hexcone model, Smith 1978):
    RGB -> (h, s, v), ``h = (h + shift) mod 1``, back to RGB. ``x`` is RGB in 0..1 (``C == 3``).
    ``shift``: float32 ``(N,)``, in -0.5..0.5."""
    N, C, H, W = x.shape
    for n in prange(N):
        sh = np.float64(shift[n])
        for i in range(H):
            for j in range(W):
                r = np.float64(x[n, 0, i, j])
                g = np.float64(x[n, 1, i, j])
                b = np.float64(x[n, 2, i, j])
                v = max(r, g, b)
                d = v - min(r, g, b)
                if d <= 0.0:  # grey: hue undefined, unchanged by a rotation
                    out[n, 0, i, j] = r
                    out[n, 1, i, j] = g
                    out[n, 2, i, j] = b
                    continue
                s = d / v
                if v == r:
                    h = (g - b) / d
                    if h < 0.0:
                        h += 6.0
                elif v == g:
                    h = (b - r) / d + 2.0
                else:
                    h = (r - g) / d + 4.0
                h = h / 6.0 + sh
                h = h - np.floor(h)  # mod 1, also for negative shifts
                h6 = h * 6.0
                sector = int(np.floor(h6))
                fr = h6 - sector
                sector = sector % 6
                p = v * (1.0 - s)
                q = v * (1.0 - s * fr)
                t = v * (1.0 - s * (1.0 - fr))
                if sector == 0:
                    r, g, b = v, t, p
                elif sector == 1:
                    r, g, b = q, v, p
                elif sector == 2:
                    r, g, b = p, v, t
                elif sector == 3:
                    r, g, b = p, q, v
                elif sector == 4:
                    r, g, b = t, p, v
                else:
                    r, g, b = v, p, q
                out[n, 0, i, j] = r
                out[n, 1, i, j] = g
                out[n, 2, i, j] = b


@njit(cache=True, parallel=True, nogil=True)
def affine_bilinear(x, mats, fill, out):
    """Warp each image by an affine map given as its inverse (output pixel -> input point).

    For output pixel (row ``i``, column ``j``) of image ``n`` the input point is
    ``sx = m[0] j + m[1] i + m[2]``, ``sy = m[3] j + m[4] i + m[5]`` with ``m = mats[n]``
    (float64 ``(N, 6)``), pixel centres at integer coordinates. The value is bilinear in the four
    neighbours of ``(sy, sx)``; neighbours outside the image count as ``fill`` (SciPy's
    ``mode="grid-constant"``). ``out`` has shape ``(N, C, Ho, Wo)``.
    """
    N, C, H, W = x.shape
    Ho, Wo = out.shape[2], out.shape[3]
    for n in prange(N):
        m0, m1, m2 = mats[n, 0], mats[n, 1], mats[n, 2]
        m3, m4, m5 = mats[n, 3], mats[n, 4], mats[n, 5]
        for i in range(Ho):
            for j in range(Wo):
                sx = m0 * j + m1 * i + m2
                sy = m3 * j + m4 * i + m5
                x0f = np.floor(sx)
                y0f = np.floor(sy)
                if x0f < -1.0 or y0f < -1.0 or x0f > W or y0f > H:  # all four neighbours outside
                    for c in range(C):
                        out[n, c, i, j] = fill
                    continue
                x0 = int(x0f)
                y0 = int(y0f)
                fx = sx - x0f
                fy = sy - y0f
                in_x0 = x0 >= 0 and x0 < W
                in_x1 = x0 + 1 >= 0 and x0 + 1 < W
                in_y0 = y0 >= 0 and y0 < H
                in_y1 = y0 + 1 >= 0 and y0 + 1 < H
                for c in range(C):
                    v00 = x[n, c, y0, x0] if (in_y0 and in_x0) else fill
                    v01 = x[n, c, y0, x0 + 1] if (in_y0 and in_x1) else fill
                    v10 = x[n, c, y0 + 1, x0] if (in_y1 and in_x0) else fill
                    v11 = x[n, c, y0 + 1, x0 + 1] if (in_y1 and in_x1) else fill
                    top = v00 + fx * (v01 - v00)
                    bottom = v10 + fx * (v11 - v10)
                    out[n, c, i, j] = top + fy * (bottom - top)
