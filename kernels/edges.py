"""Canny edge kernels: the scaling of a uint8 image and the bleed-over division (stage 1's
passes around the Gaussian), non-maximum suppression along the gradient, hysteresis by flood
fill.

Conventions: ``gr`` is the derivative along rows (axis 0), ``gc`` along columns (axis 1), both
float32 (H, W); ``magnitude = hypot(gr, gc)``. ``mask`` is uint8 (H, W) and is 0 on the outer
one-pixel frame (the caller erodes it). The two kernels share a uint8 (H, W) state map:
``NONE`` (not an edge), ``WEAK`` (a local maximum between the thresholds), ``STRONG`` (a local
maximum at or above the high threshold), ``EDGE`` (kept by the hysteresis). Only pixels inside
the frame are ever ``WEAK`` or ``STRONG``, so the hysteresis reads the 8 neighbours of any of
them without a bounds check.
"""
import numpy as np
from numba import njit

NONE = 0
WEAK = 1      # odd codes are the candidates the flood fill may still take
EDGE = 2
STRONG = 3
#: Pixels the hysteresis tests at once for a seed (an "any" over the chunk, which LLVM
#: vectorises; few chunks of a photograph hold one): 1.75 against 1.94 ms pixel by pixel.
SCAN_CHUNK = 64


@njit(cache=True, nogil=True, error_model="numpy")
def scale_rows(image, maximum, out, r0, r1):
    """``out[i, j] = float32(image[i, j]) / float32(maximum)`` for rows ``[r0, r1)``: an
    integer image scaled to 0..1 in float32, the numbers of ``image.astype(float32) /
    float32(maximum)`` bit for bit (the same cast and division per pixel) in one pass instead
    of numpy's two, in bands on several threads. (Tried: a 256-entry table, a gather per pixel
    that LLVM does not vectorise: 0.25 ms against numpy's 0.17 at 768 x 1024.)"""
    W = image.shape[1]
    m = np.float32(maximum)
    for i in range(r0, r1):
        src = image[i]
        dst = out[i]
        for j in range(W):
            dst[j] = np.float32(src[j]) / m


@njit(cache=True, nogil=True, error_model="numpy")
def divide_rows(image, divisors, row_of, r0, r1):
    """``image[i, j] /= divisors[row_of[i], j]`` in place for rows ``[r0, r1)`` (float32):
    Canny's bleed-over compensation, where the divisor image has few distinct rows (without a
    mask, every row farther than the Gaussian's radius from the top and bottom has the same
    weights), so ``divisors`` holds the distinct rows and ``row_of`` (H,) picks one per image
    row; with a mask ``divisors`` is the full (H, W) weight and ``row_of`` is ``arange(H)``.
    The same float32 division per pixel as ``image /= divisors[row_of]`` (``error_model="numpy"``:
    no zero test per division, so the loop vectorises)."""
    W = image.shape[1]
    for i in range(r0, r1):
        row = image[i]
        weight = divisors[row_of[i]]
        for j in range(W):
            row[j] = row[j] / weight[j]


@njit(cache=True, nogil=True, error_model="numpy")
def nonmax_suppression(gr, gc, magnitude, mask, low, high, state, r0, r1):
    """Mark the local maxima of ``magnitude`` along the gradient direction in ``state``.

    A pixel is a candidate when ``mask`` is set, ``magnitude >= low`` and the magnitude is
    ``>=`` the values interpolated at one pixel step forward and backward along the gradient;
    it is ``STRONG`` when also ``magnitude >= high``, else ``WEAK``; every other pixel is
    ``NONE``. The interpolation is between the axis neighbour and the diagonal neighbour on
    the side the gradient points to, weighted by ``w = min(|gr|, |gc|) / max(|gr|, |gc|)``
    (the tangent of the angle from the nearer axis): scikit-image's ``canny`` (bilinear
    variant of Canny 1986, sec. IV). A ``low`` of 0 is raised to 1e-14 so that flat pixels
    (magnitude 0) never survive.

    Written without branches on the direction: for each pixel the two neighbours forward
    and backward are *selected* among the nine loaded from three rows, so LLVM vectorises
    the loop over a row. Writes rows ``[r0, r1)`` of ``state`` (serial; the caller runs bands
    of rows on several threads). The diagonal neighbour forward is ``(+1, +1)`` when ``gr`` and
    ``gc`` have the same sign (both > 0 or both <= 0) and ``(-1, +1)`` otherwise; the axis
    neighbour is the row neighbour on that side when the gradient is nearer the row axis
    (``|gr| > |gc|``; ``>=`` for opposite signs), else the column neighbour ``(0, +1)``.
    """
    H, W = magnitude.shape
    if low == 0.0:
        low = 1e-14
    for i in range(r0, r1):
        if i == 0 or i == H - 1 or W < 3:           # the frame: never an edge
            for j in range(W):
                state[i, j] = NONE
            continue
        state[i, 0] = NONE
        state[i, W - 1] = NONE
        n = W - 2          # interior columns 1 .. W - 2; index k below is column k + 1
        up_l, up_c, up_r = magnitude[i - 1, 0:n], magnitude[i - 1, 1:n + 1], magnitude[i - 1, 2:n + 2]
        m_l, m_c, m_r = magnitude[i, 0:n], magnitude[i, 1:n + 1], magnitude[i, 2:n + 2]
        dn_l, dn_c, dn_r = magnitude[i + 1, 0:n], magnitude[i + 1, 1:n + 1], magnitude[i + 1, 2:n + 2]
        a_row = gr[i, 1:n + 1]
        b_row = gc[i, 1:n + 1]
        mask_row = mask[i, 1:n + 1]
        dst = state[i, 1:n + 1]
        for k in range(n):
            # All nine loads first, then only selects between registers: a load under a
            # condition would stop LLVM from if-converting (and vectorising) the loop.
            ul, uc, ur = up_l[k], up_c[k], up_r[k]
            ml, m, mr = m_l[k], m_c[k], m_r[k]
            dl, dc, dr = dn_l[k], dn_c[k], dn_r[k]
            a = a_row[k]
            b = b_row[k]
            inside = mask_row[k] != 0
            aa = abs(a)
            ab = abs(b)
            same = (a > 0.0) == (b > 0.0)
            near_row_axis = (aa > ab) if same else (aa >= ab)
            # min / max as selects (the builtins are one more specialisation each to compile)
            w = (aa if aa < ab else ab) / (ab if aa < ab else aa)   # 0 / 0 only where m = 0 < low
            diag_fwd = dr if same else ur
            diag_bwd = ul if same else dl
            row_fwd = dc if same else uc
            row_bwd = uc if same else dc
            axis_fwd = row_fwd if near_row_axis else mr
            axis_bwd = row_bwd if near_row_axis else ml
            fwd = diag_fwd * w + axis_fwd * (1.0 - w)
            bwd = diag_bwd * w + axis_bwd * (1.0 - w)
            keep = inside & (m >= low) & (fwd <= m) & (bwd <= m)
            dst[k] = (STRONG if m >= high else WEAK) if keep else NONE


@njit(cache=True, nogil=True)
def hysteresis(state, starts, r0, r1):
    """Hysteresis thresholding (Canny 1986, sec. V), in place on the state map of
    :func:`nonmax_suppression`: every 8-connected group of candidates (``WEAK``/``STRONG``)
    that holds a ``STRONG`` pixel becomes ``EDGE``; the rest stay as they were. Equal to
    labelling the candidates and keeping the labels that contain a strong pixel.

    Two passes, so that the first runs in bands of rows on several threads
    (:func:`cvcore._bands.run_bands`):

    * **band pass** (``r0 >= 0``): flood fill from each ``STRONG`` pixel of rows ``[r0, r1)``
      through candidates of those rows only (for a pixel in the band's first or last row the
      row beyond is replaced by its own row), so bands run side by side and never touch each
      other's rows. Sets ``starts[r0] = 1`` (``starts`` of size 0: nothing written) to tell
      the second pass where a band began.
    * **seam pass** (``r0 < 0``, once every band is done): for each ``r > 0`` with
      ``starts[r]`` set, flood fill through the whole map from each ``EDGE`` pixel of rows
      ``r - 1`` and ``r``. A path of candidates from a strong pixel first leaves its band
      from such a pixel, which the band pass made ``EDGE``, and every pixel a flood marks has
      all its neighbours looked at: so the result does not depend on the bands, it is the
      one-band result bit for bit (one band, ``hysteresis(state, empty, 0, H)``, is the whole
      map). Measured on a 768 x 1024 photograph (river1, 123 000 edge pixels, one thread,
      CPU): one band 1.85-1.9 ms against 1.72 for the one-pass kernel this replaced; bands on
      two threads about 1.0 ms.

    The flood keeps an explicit stack of flat indices. A neighbour is taken when its code is
    odd (a candidate not yet taken); it is pushed and marked ``EDGE`` without a branch (the
    stack top moves by 0 or 1), since whether a neighbour is a candidate is a coin toss the
    branch predictor loses. Each pixel is pushed at most once, so the stack never holds more
    entries than the allowed rows have pixels. (Tried: an int32 stack, 0.1 ms slower; each
    band flooded on a private copy between rows of ``NONE``, no faster and 0.3 s more compile.)
    """
    H, W = state.shape
    flat = state.reshape(H * W)       # a view: the caller passes a C-contiguous map
    if r0 < 0:                        # seam pass: seeds on the seams, floods anywhere
        first, last, seed, lo, hi = 1, H, EDGE, 0, H * W
    else:                             # band pass: seeds and floods in rows [r0, r1)
        first, last, seed, lo, hi = r0, r1, STRONG, r0 * W, r1 * W
        if starts.size > 0:
            starts[r0] = 1
    stack = np.empty(hi - lo, np.int64)
    for r in range(first, last):
        if seed == EDGE and starts[r] == 0:
            continue
        end = (r + 1) * W
        for c0 in range((r - 1) * W if seed == EDGE else r * W, end, SCAN_CHUNK):
            c1 = c0 + SCAN_CHUNK if c0 + SCAN_CHUNK < end else end
            found = 0
            for p0 in range(c0, c1):             # vectorised: most chunks hold no seed
                found |= flat[p0] == seed
            if found == 0:
                continue
            for p0 in range(c0, c1):
                if flat[p0] != seed:
                    continue
                flat[p0] = EDGE
                stack[0] = p0
                top = 1
                while top > 0:
                    top -= 1
                    p = stack[top]
                    # the rows above and below, or the pixel's own row where that row is
                    # not allowed (its neighbours there are then looked at twice: harmless)
                    up = p - W if p >= lo + W else p
                    down = p + W if p < hi - W else p
                    for q in (up - 1, up, up + 1, p - 1, p + 1, down - 1, down, down + 1):
                        code = flat[q]
                        take = code & 1
                        stack[top] = q
                        top += take
                        flat[q] = EDGE if take else code
