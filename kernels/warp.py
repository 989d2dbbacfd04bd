"""Warp kernels: inverse mapping through a 3x3 projective matrix with nearest or bilinear sampling.

For every output pixel centre ``(x, y)`` (column, row) the source position is
``(u, v, s) = Minv @ (x, y, 1)``, ``(x_src, y_src) = (u / s, v / s)``; an affine matrix is the
case ``Minv[2] = (0, 0, 1)``. Samples that fall outside the image are taken through a border mode
(the codes and :func:`border_index` of :mod:`kernels.conv`, SciPy ``ndimage`` names; OpenCV
equivalents in brackets):

* ``MODE_CONSTANT``: ``cval`` (``BORDER_CONSTANT``)
* ``MODE_NEAREST``: the edge pixel repeated, ``a a | a b c d | d d`` (``BORDER_REPLICATE``)
* ``MODE_REFLECT``: ``b a | a b c d | d c`` (``BORDER_REFLECT``)
* ``MODE_MIRROR``: ``c b | a b c d | c b`` (``BORDER_REFLECT_101``)
* ``MODE_WRAP``: ``c d | a b c d | a b`` (``BORDER_WRAP``)

A point whose ``s`` is 0 or whose position is not finite gets ``cval`` in every mode.

How the kernels are fast (the arithmetic is the twin's, operation for operation).

Affine maps (:func:`warp_affine_nearest`, :func:`warp_affine_bilinear`): along output row ``y``
the source position is ``(ax * x + bx, ay * x + by)`` with ``bx = Minv[0, 1] * y + Minv[0, 2]``
(``by`` likewise) computed once per row, in float64 as everywhere here (float32 positions would
be off by up to ~6e-5 pixel at x = 1000, 60x the tested agreement with scikit-image). Each
coordinate is a non-decreasing (or non-increasing) function of ``x`` *as rounded*, so the pixels
whose taps are all inside the image are one run ``[lo, hi)`` found from the four thresholds
(:func:`_span`: an estimate by division, corrected by stepping with the same expression the row
loop evaluates, so the run is exact, not approximate). The run is done in chunks of
:data:`AFFINE_CHUNK` pixels: a vectorised pass computes the chunk's flat indices and fractions,
a scalar pass loads the four taps of each pixel into two small buffers (each pair of taps along
a row in one 8-byte load, :func:`_load_pair`: 1.6-1.8 against 2.1-2.5 ms for four 4-byte
loads, one thread, the 1024^2 rotation of ``benchmarks.preprocess``), and a vectorised pass
blends them (OpenCV's float warps gather into a pixel buffer the same way); the chunk's
buffers (1.5 KB) stay in L1 next to the source lines. (The same pair loads in the homography
kernel were 4 % slower there: its per-pixel positions, not its loads, bound it.)
In constant mode the pixels whose taps are all outside (a second run) are filled with ``cval``
without computing them; only the one or two pixels per row end where some taps are inside take
the per-pixel border rules.

Homographies (:func:`warp_nearest`, :func:`warp_bilinear`, also any matrix): each output row
is done in two passes. The first computes every pixel's source position and its integer tap and
fraction (float64 position, float32 fractions), a branch-free loop LLVM vectorises, division
included. The second reads the pixels: where all taps are inside the image (almost every pixel of
most warps) four plain loads and the blend, else the border rules. The positions are shared by
the channels. Each kernel does a band of output rows; the caller runs one band per thread of
Numba's OpenMP team, calling the kernel through its address (:mod:`kernels.team`: plain
``nogil`` kernels, not compiled again inside a ``parallel=True`` one, which costs seconds).
Readable twin: :mod:`kernels.reference.warp`.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# one border rule for the whole toolkit, shared with the filters (-1 means cval)
from kernels.conv import (MODE_CONSTANT, MODE_MIRROR, MODE_NEAREST, MODE_REFLECT,  # noqa: F401
                          MODE_WRAP, border_index)

COORD_LIMIT = 1e9    # positions are clamped to +-this before the integer conversion
UNDEFINED = -(1 << 30)   # tap index marking an undefined source position (beyond -COORD_LIMIT)
TILE_COLS = 1024     # output columns per tile (measured: narrower tiles, 128-512, were slower:
                     # the hardware prefetcher follows long runs along a source row)


@njit(cache=True, nogil=True, error_model="numpy")   # s = 0 divides to inf/NaN, no exception
def _source(Minv, x, y, affine):
    """Source position ``(u / s, v / s)`` of output pixel (x, y), clamped to +-COORD_LIMIT, and
    whether it is defined (``s != 0`` and finite; else the position returned is (0, 0)).

    ``u = Minv[0, 0] * x + Minv[0, 1] * y + Minv[0, 2]`` evaluated left to right as written
    (``v``, ``s`` likewise). ``affine`` (``Minv[2] == (0, 0, 1)``, so ``s == 1`` exactly and
    ``u / s == u``) skips the divisions: the same numbers, and the row loops that call this
    (no other branch) vectorise with or without them.
    """
    u = Minv[0, 0] * x + Minv[0, 1] * y + Minv[0, 2]
    v = Minv[1, 0] * x + Minv[1, 1] * y + Minv[1, 2]
    if affine:
        xs = u
        ys = v
    else:
        s = Minv[2, 0] * x + Minv[2, 1] * y + Minv[2, 2]
        xs = u / s              # s = 0 gives an infinity or a NaN: not finite
        ys = v / s
    ok = math.isfinite(xs) and math.isfinite(ys)
    xs = min(max(xs, -COORD_LIMIT), COORD_LIMIT) if ok else 0.0
    ys = min(max(ys, -COORD_LIMIT), COORD_LIMIT) if ok else 0.0
    return xs, ys, ok


@njit(cache=True, nogil=True)
def _is_affine(Minv):
    """Whether the last row of the 3x3 matrix is exactly (0, 0, 1)."""
    return Minv[2, 0] == 0.0 and Minv[2, 1] == 0.0 and Minv[2, 2] == 1.0


@njit(cache=True, nogil=True)
def _nearest_taps(Minv, y, x0, n, H, W, rows, cols, inside, index):
    """Source pixel ``floor(p + 0.5)`` (rounded half up) of output pixels ``(x0 + i, y)``,
    ``i < n``: ``rows[i], cols[i]`` (UNDEFINED where the position is), ``inside[i]`` whether it
    is in the H x W image and then ``index[i] = rows[i] * W + cols[i]`` (else 0)."""
    affine = _is_affine(Minv)
    for i in range(n):
        xs, ys, ok = _source(Minv, x0 + i, y, affine)
        r = np.int32(np.floor(ys + 0.5)) if ok else np.int32(UNDEFINED)
        q = np.int32(np.floor(xs + 0.5)) if ok else np.int32(UNDEFINED)
        rows[i] = r
        cols[i] = q
        ins = np.uint32(r) < np.uint32(H) and np.uint32(q) < np.uint32(W)
        inside[i] = ins
        index[i] = np.int64(r) * W + q if ins else 0


@njit(cache=True, nogil=True)
def _nearest_border(flat, r, q, H, W, mode, cval):
    """The pixel at (r, q) of a plane stored row after row in ``flat``, through the border
    mode; cval for an undefined position or (constant mode) outside the plane."""
    if np.uint32(r) < np.uint32(H) and np.uint32(q) < np.uint32(W):
        return flat[r * W + q]      # inside (a pixel of a row whose inside pixels are not a run)
    if r == UNDEFINED or mode == MODE_CONSTANT:
        return cval
    r = border_index(r, H, mode)
    q = border_index(q, W, mode)
    if r < 0 or q < 0:
        return cval
    return flat[r * W + q]


@njit(cache=True, nogil=True)
def _bilinear_taps(Minv, y, x0, n, H, W, rows, cols, fx, fy, inside, index):
    """Top-left tap ``(floor(y_s), floor(x_s))`` of output pixels ``(x0 + i, y)``, ``i < n``, in
    ``rows[i], cols[i]`` (UNDEFINED where the position is), the fractions ``p - floor(p)`` in
    ``fx[i], fy[i]`` (float32: the weights of the second column and row) and ``inside[i]``,
    whether all four taps are in the H x W image, and then ``index[i] = rows[i] * W + cols[i]``
    (else 0)."""
    affine = _is_affine(Minv)
    for i in range(n):
        xs, ys, ok = _source(Minv, x0 + i, y, affine)
        c0 = np.floor(xs)       # a float: no round trip through an integer
        r0 = np.floor(ys)
        fx[i] = np.float32(xs - c0)
        fy[i] = np.float32(ys - r0)
        r = np.int32(r0) if ok else np.int32(UNDEFINED)
        q = np.int32(c0) if ok else np.int32(UNDEFINED)
        rows[i] = r
        cols[i] = q
        ins = np.uint32(r) < np.uint32(H - 1) and np.uint32(q) < np.uint32(W - 1)
        inside[i] = ins
        index[i] = np.int64(r) * W + q if ins else 0


@intrinsic
def _load_pair(typingctx, flat, k):
    """The 8 bytes of ``flat[k], flat[k + 1]`` (a C-contiguous float32 array) as one uint64,
    loaded at 4-byte alignment: a bilinear sample's two taps along a row in one load. Stored
    into a uint64 buffer, they sit in memory as they did in ``flat`` (whatever the byte
    order), so the buffer viewed as float32 holds ``flat[k]`` at ``2 i`` and ``flat[k + 1]``
    at ``2 i + 1``. Twin: ``flat[k : k + 2].view(np.uint64)[0]``."""
    if not (isinstance(flat, types.Array) and flat.dtype == types.float32
            and flat.layout == "C" and isinstance(k, types.Integer)):
        return None
    sig = types.uint64(flat, k)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        address = builder.gep(array.data, [args[1]])
        return builder.load(builder.bitcast(address, ir.IntType(64).as_pointer()), align=4)
    return sig, codegen


@njit(cache=True, nogil=True)
def _blend(p00, p01, p10, p11, fx, fy):
    """Bilinear blend in float32: along the row by ``fx``, then between the rows by ``fy``."""
    top = p00 + (p01 - p00) * fx
    bottom = p10 + (p11 - p10) * fx
    return top + (bottom - top) * fy


@njit(cache=True, nogil=True)
def _bilinear_border(flat, r0, c0, fx, fy, H, W, mode, cval):
    """The bilinear sample at top-left tap (r0, c0) when a tap is outside the plane: each tap
    through the border mode (constant mode: cval); cval for an undefined position."""
    if r0 == UNDEFINED:
        return cval
    if mode == MODE_CONSTANT and (r0 < -1 or r0 >= H or c0 < -1 or c0 >= W):
        return cval             # all four taps outside (most border pixels of a rotation)
    r1 = border_index(r0 + 1, H, mode)
    c1 = border_index(c0 + 1, W, mode)
    r0 = border_index(r0, H, mode)
    c0 = border_index(c0, W, mode)
    p00 = flat[r0 * W + c0] if (r0 >= 0 and c0 >= 0) else cval
    p01 = flat[r0 * W + c1] if (r0 >= 0 and c1 >= 0) else cval
    p10 = flat[r1 * W + c0] if (r1 >= 0 and c0 >= 0) else cval
    p11 = flat[r1 * W + c1] if (r1 >= 0 and c1 >= 0) else cval
    return _blend(p00, p01, p10, p11, fx, fy)


@njit(cache=True, nogil=True)
def _inside_run(inside, n):
    """``(lo, hi, True)`` such that ``inside[:n]`` is True exactly on ``[lo, hi)``; ``(0, 0,
    False)`` when its True values are not one run (possible for a homography through
    infinity: the caller then tests each pixel). Along an output row the source position moves
    on a line and the image is convex, so for an affine map they are always one run."""
    lo = 0
    while lo < n and not inside[lo]:
        lo += 1
    hi = n
    while hi > lo and not inside[hi - 1]:
        hi -= 1
    count = 0
    for i in range(lo, hi):     # an integer sum: vectorised
        count += inside[i]
    return (lo, hi, True) if count == hi - lo else (0, 0, False)


@njit(cache=True, nogil=True)
def _tap_buffers():
    """Per-piece buffers of the row functions: tap rows, tap columns (int32), whether the taps
    are inside, flat index of the (top-left) tap (int64); TILE_COLS each."""
    return (np.empty(TILE_COLS, dtype=np.int32), np.empty(TILE_COLS, dtype=np.int32),
            np.empty(TILE_COLS, dtype=np.bool_), np.empty(TILE_COLS, dtype=np.int64))


@njit(cache=True, nogil=True)
def warp_nearest(image, Minv, mode, cval, out, y0, y1):
    """Nearest-neighbour warp of output rows ``y0:y1`` of channel planes by the inverse map
    ``Minv``: image (C, H, W) float32 C-contiguous; Minv (3, 3) float64; out (C, h, w) float32;
    ``mode`` a border code, ``cval`` float32. The source position is rounded half up,
    ``floor(p + 0.5)``. Each row is done in pieces of at most TILE_COLS columns (so the buffers
    stay small); in each piece, the run of pixels whose source is inside the image is a plain
    gather, the pixels before and after it go through the border rules.
    """
    C, H, W = image.shape
    w = out.shape[2]
    rows, cols, inside, index = _tap_buffers()
    for x0 in range(0, w, TILE_COLS):
        n = min(TILE_COLS, w - x0)
        for y in range(y0, y1):
            _nearest_taps(Minv, y, x0, n, H, W, rows, cols, inside, index)
            lo, hi, run = _inside_run(inside, n)
            for c in range(C):
                flat = image[c].reshape(H * W)
                dst = out[c, y]
                for x in range(lo, hi):     # unsigned indices: no negative-wrap tests
                    u = np.uint64(x)
                    dst[np.uint64(x0) + u] = flat[np.uint64(index[u])]
                if run and mode == MODE_CONSTANT:   # every pixel off the run is outside
                    dst[x0:x0 + lo] = cval
                    dst[x0 + hi:x0 + n] = cval
                    continue
                for x in range(lo):                 # the rest: before and after the run
                    dst[x0 + x] = _nearest_border(flat, rows[x], cols[x], H, W, mode, cval)
                for x in range(hi, n):
                    dst[x0 + x] = _nearest_border(flat, rows[x], cols[x], H, W, mode, cval)


@njit(cache=True, nogil=True)
def warp_bilinear(image, Minv, mode, cval, out, y0, y1):
    """Bilinear warp of output rows ``y0:y1`` (arguments as :func:`warp_nearest`): the four
    pixels around the source position, each
    fetched through the border mode (a tap outside the image in constant mode contributes
    ``cval``), weighted by the fractional distances. Pieces and runs as in
    :func:`warp_nearest` (here the run is of the pixels whose four taps are all inside).
    """
    C, H, W = image.shape
    w = out.shape[2]
    rows, cols, inside, index = _tap_buffers()
    fx = np.empty(TILE_COLS, dtype=np.float32)
    fy = np.empty(TILE_COLS, dtype=np.float32)
    one, down, diag = np.uint64(1), np.uint64(W), np.uint64(W + 1)   # the other three taps
    for x0 in range(0, w, TILE_COLS):
        n = min(TILE_COLS, w - x0)
        for y in range(y0, y1):
            _bilinear_taps(Minv, y, x0, n, H, W, rows, cols, fx, fy, inside, index)
            lo, hi, _ = _inside_run(inside, n)
            for c in range(C):
                flat = image[c].reshape(H * W)
                dst = out[c, y]
                for x in range(lo, hi):     # unsigned indices: no negative-wrap tests
                    u = np.uint64(x)
                    k = np.uint64(index[u])
                    dst[np.uint64(x0) + u] = _blend(flat[k], flat[k + one], flat[k + down],
                                                    flat[k + diag], fx[u], fy[u])
                for x in range(lo):                 # the rest: before and after the run
                    dst[x0 + x] = _bilinear_border(flat, rows[x], cols[x], fx[x], fy[x],
                                                   H, W, mode, cval)
                for x in range(hi, n):
                    dst[x0 + x] = _bilinear_border(flat, rows[x], cols[x], fx[x], fy[x],
                                                   H, W, mode, cval)


# ----------------------------------------------------------------------------- affine maps
AFFINE_CHUNK = 64    # output pixels per position chunk (measured on the 1024^2 rotation of
                     # benchmarks.preprocess, one thread: 16 and 32 slower by the loop
                     # overhead, 256-1024 slower by the L1 the position buffers take)


@njit(cache=True, nogil=True)
def _span(a, b, n, lower, upper):
    """``(lo, hi)``: the ``x`` in ``[0, n)`` with ``lower <= a * x + b < upper`` (float64, as
    the row loops compute it) are exactly ``lo <= x < hi`` (``lo >= hi``: none). ``a``, ``b``
    finite.

    Rounding is monotone, so ``p(x) = a * x + b`` is monotone in ``x`` as computed: for ``a >
    0`` the run starts where ``p >= lower`` first holds and ends where ``p >= upper`` first
    holds; for ``a < 0`` where ``p < upper`` and ``p < lower`` first hold. Each threshold: the
    real solution ``(t - b) / a`` as a first guess, then steps with the test itself, which make
    it exact (usually 0-1 steps; at worst ``n``).
    """
    if a == 0.0:
        return (0, n) if lower <= b < upper else (0, 0)     # a * x + b == b exactly
    rising = a > 0.0
    first = last = 0
    for k in range(2):
        t = lower if (k == 0) == rising else upper
        x = int(min(max((t - b) / a, 0.0), float(n)))
        # the test (p(x) >= t) == rising is false, then true along the row
        if x < n and (a * float(x) + b >= t) == rising:
            while x > 0 and (a * float(x - 1) + b >= t) == rising:
                x -= 1
        else:
            while x < n and (a * float(x) + b >= t) != rising:
                x += 1
        if k == 0:
            first = x
        else:
            last = x
    return first, last


@njit(cache=True, nogil=True)
def _affine_run(ax, bx, ay, by, n, lower, width, height):
    """``(lo, hi)``: the output pixels ``x`` in ``[0, n)`` of a row whose source position
    ``(ax * x + bx, ay * x + by)`` satisfies ``lower <= x_s < width`` and ``lower <= y_s <
    height`` are exactly ``[lo, hi)``; ``(0, 0)`` if none (or if a coefficient is not finite:
    the caller then treats every pixel by the per-pixel rules)."""
    if not (math.isfinite(ax) and math.isfinite(bx) and math.isfinite(ay) and math.isfinite(by)):
        return 0, 0
    lx, hx = _span(ax, bx, n, lower, width)
    ly, hy = _span(ay, by, n, lower, height)
    lo = max(lx, ly)
    hi = min(hx, hy)
    return (lo, hi) if lo < hi else (0, 0)


@njit(cache=True, nogil=True, inline="always")
def _affine_point(ax, bx, ay, by, x):
    """Source position of output pixel ``x`` of an affine row, clamped to +-COORD_LIMIT, and
    whether it is finite (else ``(0, 0, False)``), as :func:`_source`."""
    xs = ax * x + bx
    ys = ay * x + by
    ok = math.isfinite(xs) and math.isfinite(ys)
    xs = min(max(xs, -COORD_LIMIT), COORD_LIMIT) if ok else 0.0
    ys = min(max(ys, -COORD_LIMIT), COORD_LIMIT) if ok else 0.0
    return xs, ys, ok


@njit(cache=True, nogil=True)
def _affine_bilinear_edge(flat, ax, bx, ay, by, x, H, W, mode, cval):
    """Bilinear sample of output pixel ``x`` of an affine row through the border rules."""
    xs, ys, ok = _affine_point(ax, bx, ay, by, float(x))
    if not ok:
        return cval
    c0 = np.floor(xs)
    r0 = np.floor(ys)
    return _bilinear_border(flat, np.int32(r0), np.int32(c0), np.float32(xs - c0),
                            np.float32(ys - r0), H, W, mode, cval)


@njit(cache=True, nogil=True)
def _affine_nearest_edge(flat, ax, bx, ay, by, x, H, W, mode, cval):
    """Nearest sample of output pixel ``x`` of an affine row (``bx``, ``by`` include the
    rounding's + 0.5) through the border rules."""
    xs, ys, ok = _affine_point(ax, bx, ay, by, float(x))
    r = np.int32(np.floor(ys)) if ok else np.int32(UNDEFINED)
    q = np.int32(np.floor(xs)) if ok else np.int32(UNDEFINED)
    return _nearest_border(flat, r, q, H, W, mode, cval)


@njit(cache=True, nogil=True)
def warp_affine_nearest(image, Minv, mode, cval, out, y0, y1):
    """Nearest-neighbour warp of output rows ``y0:y1`` by an affine inverse map (``Minv[2] ==
    (0, 0, 1)``; arguments as :func:`warp_nearest`). Source pixel ``floor(p + 0.5)``, with the
    0.5 added to the row's constant: ``floor(ax * x + (bx + 0.5))``.
    """
    C, H, W = image.shape
    w = out.shape[2]
    planes = image.reshape(C, H * W)
    index = np.empty(AFFINE_CHUNK, np.int64)
    ax, ay = Minv[0, 0], Minv[1, 0]
    for y in range(y0, y1):
        bx = Minv[0, 1] * y + Minv[0, 2] + 0.5
        by = Minv[1, 1] * y + Minv[1, 2] + 0.5
        # inside: 0 <= floor(p) < W  <=>  0 <= p < W
        lo, hi = _affine_run(ax, bx, ay, by, w, 0.0, float(W), float(H))
        for x0 in range(lo, hi, AFFINE_CHUNK):
            m = min(AFFINE_CHUNK, hi - x0)
            for i in range(m):                  # vectorised
                xf = float(x0 + i)
                index[i] = (np.int64(np.floor(ay * xf + by)) * W
                            + np.int64(np.floor(ax * xf + bx)))
            for c in range(C):
                for i in range(m):              # unsigned indices: no negative-wrap tests
                    out[c, y, np.uint64(x0 + i)] = planes[c, np.uint64(index[i])]
        if lo == 0 and hi == w:
            continue
        for c in range(C):
            flat = planes[c]
            dst = out[c, y]
            if mode == MODE_CONSTANT:           # every pixel off the run is outside
                dst[:lo] = cval
                dst[hi:] = cval
                continue
            for x in range(lo):
                dst[x] = _affine_nearest_edge(flat, ax, bx, ay, by, x, H, W, mode, cval)
            for x in range(hi, w):
                dst[x] = _affine_nearest_edge(flat, ax, bx, ay, by, x, H, W, mode, cval)


@njit(cache=True, nogil=True)
def warp_affine_bilinear(image, Minv, mode, cval, out, y0, y1):
    """Bilinear warp of output rows ``y0:y1`` by an affine inverse map (``Minv[2] == (0, 0,
    1)``; arguments as :func:`warp_nearest`): the blend of :func:`_blend` at the position
    ``(ax * x + bx, ay * x + by)`` of the module docstring.
    """
    C, H, W = image.shape
    w = out.shape[2]
    planes = image.reshape(C, H * W)
    index = np.empty(AFFINE_CHUNK, np.int64)
    fx = np.empty(AFFINE_CHUNK, np.float32)
    fy = np.empty(AFFINE_CHUNK, np.float32)
    top = np.empty(AFFINE_CHUNK, np.uint64)      # taps (k, k + 1) per pixel: _load_pair
    bottom = np.empty(AFFINE_CHUNK, np.uint64)   # taps (k + W, k + W + 1)
    top2, bottom2 = top.view(np.float32), bottom.view(np.float32)
    ax, ay = Minv[0, 0], Minv[1, 0]
    Wf = float(W)
    down = np.uint64(W)                          # the row below
    for y in range(y0, y1):
        bx = Minv[0, 1] * y + Minv[0, 2]
        by = Minv[1, 1] * y + Minv[1, 2]
        # all four taps inside: 0 <= floor(p) <= W - 2  <=>  0 <= p < W - 1
        lo, hi = _affine_run(ax, bx, ay, by, w, 0.0, W - 1.0, H - 1.0)
        # constant mode: outside [tlo, thi) all four taps are outside (floor(p) < -1 or >= W)
        tlo, thi = 0, w
        if mode == MODE_CONSTANT and math.isfinite(ax) and math.isfinite(ay) and \
                math.isfinite(bx) and math.isfinite(by):
            tlo, thi = _affine_run(ax, bx, ay, by, w, -1.0, float(W), float(H))
        if lo >= hi:
            lo = hi = tlo
        for x0 in range(lo, hi, AFFINE_CHUNK):
            m = min(AFFINE_CHUNK, hi - x0)
            for i in range(m):                  # vectorised
                xf = float(x0 + i)
                xs = ax * xf + bx
                ys = ay * xf + by
                c0 = np.floor(xs)               # a float: no round trip through an integer
                r0 = np.floor(ys)
                fx[i] = np.float32(xs - c0)
                fy[i] = np.float32(ys - r0)
                index[i] = np.int64(r0 * Wf + c0)      # exact: below 2**53
            for c in range(C):
                plane = planes[c]
                for i in range(m):              # unsigned indices: no negative-wrap tests
                    k = np.uint64(index[i])
                    top[i] = _load_pair(plane, k)               # two taps per load
                    bottom[i] = _load_pair(plane, k + down)
                for i in range(m):              # vectorised
                    out[c, y, np.uint64(x0 + i)] = _blend(top2[2 * i], top2[2 * i + 1],
                                                          bottom2[2 * i], bottom2[2 * i + 1],
                                                          fx[i], fy[i])
        if lo == 0 and hi == w:             # (then tlo == 0 and thi == w too)
            continue
        for c in range(C):
            flat = planes[c]
            dst = out[c, y]
            dst[:tlo] = cval
            dst[thi:] = cval
            for x in range(tlo, lo):
                dst[x] = _affine_bilinear_edge(flat, ax, bx, ay, by, x, H, W, mode, cval)
            for x in range(hi, thi):
                dst[x] = _affine_bilinear_edge(flat, ax, bx, ay, by, x, H, W, mode, cval)
