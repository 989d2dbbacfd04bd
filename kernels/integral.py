"""Integral images (summed-area tables) and box sums read from them.

Convention
----------
The table of an ``(H, W)`` image is ``(H + 1, W + 1)`` float64 with a zero first row and column::

    ii[r, c] = sum(image[:r, :c])          (Crow 1984; Viola & Jones 2001, sec. 2.1)

so the sum over the half-open box ``image[r0:r1, c0:c1]`` is four reads, with no special case at
the border::

    box = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]

The table is built in the order ``np.cumsum(np.cumsum(image, axis=1), axis=0)`` evaluates it (row
prefix sums, then running sums down the columns), so it is bit-identical to that expression.

Precision
---------
float64 holds every integer up to 2**53 exactly. An integer-valued image (uint8, uint16, int32,
float32 holding integers) therefore gets an exact table, and exact box sums, while its total stays
below 2**53 (a uint8 image of 3.5e13 pixels; a uint16 image of 1.3e11). Non-integer values (a
float32 image in 0..1) are each exact in float64; their running sums round, with an error of at most about
``(H + W) * 2**-53 * ii[H, W]`` in a table entry, so a box sum read from a 4096 x 4096 table of
values in 0..1 is off by less than 1e-8: well below what float32 (cvcore's working precision) can
represent in the box sum itself. A float32 table would lose exactness after 2**24 = 16.7 M, i.e. a
uint8 image of 66 000 pixels (256 x 256): that is why the table is float64.

Readable twin: :mod:`kernels.reference.integral`.
"""
from numba import njit


@njit(cache=True, nogil=True)
def integral_image(image, out):
    """Fill ``out`` with the summed-area table of ``image``.

    Parameters
    ----------
    image : (H, W) float64
        C-contiguous.
    out : (H + 1, W + 1) float64
        Receives ``out[r, c] = sum(image[:r, :c])``; row 0 and column 0 are set to zero.

    Serial: one pass, memory-bound (about 1 ms for 1920 x 1080); a server thread may call it
    (nogil).
    """
    H, W = image.shape
    for c in range(W + 1):
        out[0, c] = 0.0
    for r in range(H):
        out[r + 1, 0] = 0.0
        row_sum = 0.0
        for c in range(W):
            row_sum += image[r, c]
            out[r + 1, c + 1] = out[r, c + 1] + row_sum


@njit(cache=True, nogil=True)
def box_sum(ii, r0, c0, r1, c1):
    """Sum of ``image[r0:r1, c0:c1]`` from its table ``ii`` (four reads).

    No checks: needs ``0 <= r0 <= r1 <= H`` and ``0 <= c0 <= c1 <= W``. Small enough that LLVM
    inlines it into the calling kernel.
    """
    return ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]


@njit(cache=True, nogil=True)
def box_sum_clamped(ii, r0, c0, r1, c1):
    """Sum of the image over the half-open box ``[r0, r1) x [c0, c1)`` with the pixels outside the
    image taken as zero: any bounds (negative, past the end, empty) are clipped to the table first.

    The border convention of SURF's box filters (Bay et al. 2008 evaluate them on the integral
    image as it is; OpenSURF's ``BoxIntegral`` clips the same way).
    """
    H = ii.shape[0] - 1
    W = ii.shape[1] - 1
    r0 = min(max(r0, 0), H)
    r1 = min(max(r1, 0), H)
    c0 = min(max(c0, 0), W)
    c1 = min(max(c1, 0), W)
    if r1 <= r0 or c1 <= c0:
        return 0.0
    return ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
