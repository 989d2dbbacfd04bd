"""Object-detection kernels: non-maximum suppression, rectangle grouping, OpenCV's bit-exact
bilinear resize of the image pyramid, window scoring over a block-feature map, and the
Viola-Jones cascade on integral images.

The API, validation and defaults are in :mod:`cvcore.detect`; the readable NumPy twins of these
kernels are in ``tests/test_detect.py`` (``reference_*``). Nothing here validates its input.

Conventions
-----------
* Boxes are ``(x1, y1, x2, y2)`` float64 in continuous pixel coordinates (the box of pixel
  ``(r, c)`` is ``(c, r, c + 1, r + 1)``), as torchvision; areas are ``(x2 - x1) * (y2 - y1)``.
* OpenCV rectangles are ``(x, y, width, height)`` int64.
"""
import math

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from kernels.hog import opencv_block_grid
from kernels.integral import integral_image


# --- boxes ----------------------------------------------------------------------------------

@njit(cache=True)
def nms_sorted(boxes, order, iou_threshold, keep):
    """Greedy non-maximum suppression, torchvision's rule (``ops.nms``, ``nms_kernel.cpp``).

    Visiting the boxes in ``order`` (scores descending), a box is kept unless its IoU with an
    already kept box is strictly greater than ``iou_threshold``.

    Parameters
    ----------
    boxes : (N, 4) float64, ``(x1, y1, x2, y2)``
    order : (N,) int64, the visiting order (a stable descending sort of the scores)
    iou_threshold : float
    keep : (N,) int64, receives the kept indices in visiting order

    Returns
    -------
    int, the number of kept boxes (the first entries of ``keep``).
    """
    n = order.shape[0]
    suppressed = np.zeros(boxes.shape[0], np.bool_)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    count = 0
    for a in range(n):
        i = order[a]
        if suppressed[i]:
            continue
        keep[count] = i
        count += 1
        x1, y1, x2, y2 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        for b in range(a + 1, n):
            j = order[b]
            if suppressed[j]:
                continue
            w = min(x2, boxes[j, 2]) - max(x1, boxes[j, 0])
            h = min(y2, boxes[j, 3]) - max(y1, boxes[j, 1])
            inter = max(w, 0.0) * max(h, 0.0)
            iou = inter / (areas[i] + areas[j] - inter)
            if iou > iou_threshold:
                suppressed[j] = True
    return count


@njit(cache=True)
def _similar(r, a, b, eps):
    """OpenCV's ``SimilarRects``: every side within ``eps * mean(min w, min h)`` (as double)."""
    delta = eps * (min(r[a, 2], r[b, 2]) + min(r[a, 3], r[b, 3])) * 0.5
    return (abs(r[a, 0] - r[b, 0]) <= delta and abs(r[a, 1] - r[b, 1]) <= delta
            and abs(r[a, 0] + r[a, 2] - r[b, 0] - r[b, 2]) <= delta
            and abs(r[a, 1] + r[a, 3] - r[b, 1] - r[b, 3]) <= delta)


@njit(cache=True)
def _find(parent, i):
    root = i
    while parent[root] >= 0:
        root = parent[root]
    while parent[i] >= 0:           # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(cache=True)
def partition_rects(rects, eps, labels):
    """OpenCV's ``cv::partition`` with ``SimilarRects(eps)``: connected components of the
    "similar" relation, labelled in the order of their first member.

    Parameters
    ----------
    rects : (N, 4) int64 ``(x, y, w, h)``
    eps : float
    labels : (N,) int64, receives each rectangle's class

    Returns
    -------
    int, the number of classes.
    """
    n = rects.shape[0]
    parent = -np.ones(n, np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            if _similar(rects, i, j, eps):
                ri = _find(parent, i)
                rj = _find(parent, j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    # classes numbered by the first index that belongs to each (cv::partition's final pass)
    cls = -np.ones(n, np.int64)
    count = 0
    for i in range(n):
        root = _find(parent, i)
        if cls[root] < 0:
            cls[root] = count
            count += 1
        labels[i] = cls[root]
    return count


# --- image pyramid: OpenCV's bit-exact bilinear resize (INTER_LINEAR_EXACT) of uint8 images ---

# imgproc/src/fixedpoint.inl.hpp: ufixedpoint16 carries 8 fraction bits; the product of two
# carries 16, rounded back to an integer by adding half and shifting.
FIXED_ONE = 256
FIXED_SHIFT2 = 16
FIXED_HALF2 = 1 << 15


#: Rows of the output handed to each parallel task as one contiguous group (so that the scratch
#: rows are allocated once per group and consecutive output rows can share source rows).
RESIZE_ROW_GROUPS = 64


@njit(cache=True, nogil=True)
def _resize_row(row, tap0, tap1, coef1, out):
    """Horizontal pass of one source row: ``out[k] = (256 - coef1[k]) row[tap0[k]] + coef1[k]
    row[tap1[k]]`` (exact integers, at most 256 * 255)."""
    for k in range(out.shape[0]):
        w1 = coef1[k]
        out[k] = (np.int32(FIXED_ONE) - w1) * np.int32(row[tap0[k]]) + w1 * np.int32(row[tap1[k]])


@njit(cache=True, nogil=True)
def _resize_taps(xofs, xcoef, W, C):
    """Per output value of a flattened ``(W_out * C)`` row: its two source values in a
    flattened ``(W * C)`` row and the second one's 8-bit weight."""
    Wo = xofs.shape[0]
    n = Wo * C
    tap0 = np.empty(n, np.int64)
    tap1 = np.empty(n, np.int64)
    coef1 = np.empty(n, np.int32)
    for x in range(Wo):
        c0 = xofs[x]
        c1 = min(c0 + 1, W - 1)
        for ch in range(C):
            tap0[x * C + ch] = c0 * C + ch
            tap1[x * C + ch] = c1 * C + ch
            coef1[x * C + ch] = xcoef[x]
    return tap0, tap1, coef1


@njit(cache=True, nogil=True)
def _resize_rows(flat, tap0, tap1, coef1, yofs, ycoef, y0, y1, out):
    """Output rows ``y0 .. y1 - 1`` of :func:`resize_linear_exact` into ``out`` (H_out, W_out *
    C) uint8, from the flattened source ``flat`` (H, W * C) uint8."""
    H = flat.shape[0]
    n = out.shape[1]
    top = np.empty(n, np.int32)
    bottom = np.empty(n, np.int32)
    have0 = -1                      # source rows currently held in top / bottom
    have1 = -1
    for y in range(y0, y1):
        r0 = yofs[y]
        r1 = min(r0 + 1, H - 1)
        if r0 != have0:
            if r0 == have1:         # slide down by one source row
                top, bottom = bottom, top
                have0, have1 = have1, have0
            else:
                _resize_row(flat[r0], tap0, tap1, coef1, top)
                have0 = r0
        if r1 != have1:
            _resize_row(flat[r1], tap0, tap1, coef1, bottom)
            have1 = r1
        cy1 = np.int32(ycoef[y])
        cy0 = np.int32(FIXED_ONE) - cy1
        dst_row = out[y]
        for k in range(n):
            dst_row[k] = (cy0 * top[k] + cy1 * bottom[k] + FIXED_HALF2) >> FIXED_SHIFT2


@njit(cache=True, parallel=True, nogil=True)
def resize_linear_exact(src, xofs, xcoef, yofs, ycoef, dst):
    """Bilinear resize in 8.8 fixed point, as ``cv2.resize(..., INTER_LINEAR_EXACT)`` on uint8.

    Output pixel ``(y, x)`` blends source columns ``xofs[x], xofs[x] + 1`` with integer weights
    ``256 - xcoef[x], xcoef[x]`` along each of the rows ``yofs[y], yofs[y] + 1`` (exact, 8
    fraction bits), then blends the two rows with ``256 - ycoef[y], ycoef[y]`` and rounds:
    ``(sum + 2^15) >> 16``. Where the sample point falls outside the source, the caller passes
    a weight of 0 for the second tap and an in-range offset (edge replication).

    As OpenCV, the horizontal pass is done once per source row (into int32 rows, reused by the
    next output row when it samples the same source rows), on rows flattened to ``W * C``
    values, then the vertical blend runs over contiguous int32 rows. Every intermediate is an
    exact integer (< 2^24), so the order of the two passes does not change the result.

    Parameters
    ----------
    src : (H, W, C) uint8, C-contiguous
    xofs, xcoef : (W_out,) int64
    yofs, ycoef : (H_out,) int64
    dst : (H_out, W_out, C) uint8, C-contiguous, receives the result
    """
    H, W, C = src.shape
    Ho, Wo = dst.shape[0], dst.shape[1]
    tap0, tap1, coef1 = _resize_taps(xofs, xcoef, W, C)
    flat = src.reshape(H, W * C)
    out = dst.reshape(Ho, Wo * C)
    G = min(Ho, RESIZE_ROW_GROUPS)
    for g in prange(G):
        _resize_rows(flat, tap0, tap1, coef1, yofs, ycoef, g * Ho // G, (g + 1) * Ho // G, out)


# --- sliding windows: scores as a correlation of the block map with the weight template -----

@njit(cache=True, fastmath=True, nogil=True)
def _score_row(grid, weights, bias, wy, win_step_y, win_step_x, block_step_y, block_step_x,
               out):
    """Row ``wy`` of :func:`score_windows` into ``out`` (n_windows_x,) float64."""
    nbx, nby, L = weights.shape
    for wx in range(out.shape[0]):
        s = np.float64(bias)
        for bx in range(nbx):
            q = np.uint64(wx * win_step_x + bx * block_step_x)
            for by in range(nby):
                p = np.uint64(wy * win_step_y + by * block_step_y)
                v = grid[p, q]
                w = weights[bx, by]
                acc = np.float32(0.0)
                for k in range(L):
                    acc += v[k] * w[k]
                s += np.float64(acc)
        out[wx] = s


@njit(cache=True, parallel=True, nogil=True)
def score_windows(grid, weights, bias, win_step_y, win_step_x, block_step_y, block_step_x,
                  scores):
    """Linear scores of every window: the block-feature map correlated with the template.

    ``scores[wy, wx] = bias + sum_{bx, by} <grid[wy * win_step_y + by * block_step_y,
    wx * win_step_x + bx * block_step_x], weights[bx, by]>``

    Blocks are added in OpenCV's order (``bx`` outer, ``by`` inner, as
    ``HOGDescriptor::detect``), each block's dot product in float32 and the total in float64.
    ``fastmath`` (on the row kernel :func:`_score_row`) lets LLVM reorder the float32 dot
    product into SIMD lanes (OpenCV too sums it in four float32 lanes); the scores differ from
    OpenCV's by about 1e-6, as the HOG values themselves do.

    Parameters
    ----------
    grid : (P, Q, L) float32, block histograms on a grid (see HOGDescriptor.compute_block_grid)
    weights : (n_blocks_x, n_blocks_y, L) float32
    bias : float
    win_step_y, win_step_x : int, window step in grid cells
    block_step_y, block_step_x : int, step between a window's blocks in grid cells
    scores : (n_windows_y, n_windows_x) float64, receives the scores
    """
    for wy in prange(scores.shape[0]):
        _score_row(grid, weights, bias, wy, win_step_y, win_step_x, block_step_y, block_step_x,
                   scores[wy])


# --- Viola-Jones cascade on integral images ---------------------------------------------------

#: OpenCV's HaarEvaluator::setWindow skips windows whose 1/std is at least this (flat windows).
FLAT_WINDOW = 0.1


@njit(cache=True, nogil=True)
def cascade_row(j, ii, sq, step, win_w, win_h, corners, rect_weights, node_left, node_right,
                node_threshold, leaves, tree_nodes, tree_leaves, stage_first, stage_count,
                stage_threshold, hits):
    """Run a boosted cascade of Haar-feature trees on one row of windows of a pyramid level.

    Follows OpenCV's ``CascadeClassifierImpl::runAt`` / ``predictOrdered`` with
    ``HaarEvaluator`` (objdetect/src/cascadedetect.cpp) so that the same windows pass:

    1. window normalisation (``setWindow``) over the window shrunk by one pixel on every side,
       area ``A``: ``nf = A * sum(I^2) - sum(I)^2``; if ``nf <= 0`` or ``A / sqrt(nf) >= 0.1``
       the window is skipped (not a detection, not a stage-0 rejection); else
       ``vnf = float32(1 / sqrt(nf))``;
    2. a feature is ``sum_k weight_k * boxsum_k`` in float32 (two or three rectangles; a box sum
       is four reads of the summed-area table at precomputed offsets from the window's corner,
       as OpenCV's ``OptFeature``), times ``vnf`` in float32;
    3. each tree is walked from its root (``value < threshold`` -> left) to a leaf; leaves add
       up in float64 per stage; a stage below its threshold rejects the window;
    4. windows are visited every ``step`` pixels; a window rejected by the first stage also
       skips the next column (OpenCV's ``if (result == 0) x += yStep``).

    Computed indices are cast to unsigned integers: Numba then skips its negative-index
    wrap-around test on each access (a quarter of the scan's time); they are never negative.

    Parameters
    ----------
    j : int, the row: windows whose top is ``y = j * step``
    ii, sq : (H + 1, W + 1) float64, C-contiguous summed-area tables of the level and of its
        squares
    step : int
    win_w, win_h : int, the cascade's window
    corners : (N, 3, 4) int64
        Per tree node, the flat offsets in the table, from a window's top-left corner, of its
        feature's rectangles' top-left, top-right, bottom-left and bottom-right corners
        (``row * (W + 1) + col``); stored per node rather than per feature, so that a node's
        numbers are one read away (not two: node -> feature -> offsets).
    rect_weights : (N, 3) float32, per node, its feature's rectangle weights (0: no third
        rectangle)
    node_left, node_right : (N,) int64, child index in the tree (> 0) or minus a leaf index
    node_threshold : (N,) float32
    leaves : (L,) float32
    tree_nodes, tree_leaves : (T,) int64, offset of each tree's first node and first leaf
    stage_first, stage_count : (S,) int64, each stage's trees
    stage_threshold : (S,) float32, already lowered by OpenCV's 1e-5
    hits : (nx,) bool, receives the windows of the row that pass every stage, at ``x // step``
    """
    nx = hits.shape[0]
    stride = ii.shape[1]
    flat = ii.ravel()
    flat_sq = sq.ravel()
    area = np.float64((win_w - 2) * (win_h - 2))
    # the normalisation rectangle: the window less one pixel on each side
    n_tl = stride + 1
    n_tr = stride + win_w - 1
    n_bl = (win_h - 1) * stride + 1
    n_br = (win_h - 1) * stride + win_w - 1
    n_stages = stage_threshold.shape[0]
    y = j * step
    i = 0
    while i < nx:
        base = y * stride + i * step
        hits[i] = False
        s = (flat[np.uint64(base + n_br)] - flat[np.uint64(base + n_tr)]
             - flat[np.uint64(base + n_bl)] + flat[np.uint64(base + n_tl)])
        s2 = (flat_sq[np.uint64(base + n_br)] - flat_sq[np.uint64(base + n_tr)]
              - flat_sq[np.uint64(base + n_bl)] + flat_sq[np.uint64(base + n_tl)])
        nf = area * s2 - s * s
        if nf <= 0.0:
            i += 1
            continue
        vnf = np.float32(1.0 / math.sqrt(nf))
        if area * np.float64(vnf) >= FLAT_WINDOW:
            i += 1
            continue
        passed = True
        first_rejected = False
        for st in range(n_stages):
            total = 0.0
            for t in range(stage_first[st], stage_first[st] + stage_count[st]):
                root = tree_nodes[t]
                idx = 0
                while True:
                    n = np.uint64(root + idx)
                    b0 = np.float32(flat[np.uint64(base + corners[n, 0, 3])]
                                    - flat[np.uint64(base + corners[n, 0, 1])]
                                    - flat[np.uint64(base + corners[n, 0, 2])]
                                    + flat[np.uint64(base + corners[n, 0, 0])])
                    b1 = np.float32(flat[np.uint64(base + corners[n, 1, 3])]
                                    - flat[np.uint64(base + corners[n, 1, 1])]
                                    - flat[np.uint64(base + corners[n, 1, 2])]
                                    + flat[np.uint64(base + corners[n, 1, 0])])
                    value = np.float32(rect_weights[n, 0] * b0) + np.float32(
                        rect_weights[n, 1] * b1)
                    w2 = rect_weights[n, 2]
                    if w2 != 0.0:
                        b2 = np.float32(flat[np.uint64(base + corners[n, 2, 3])]
                                        - flat[np.uint64(base + corners[n, 2, 1])]
                                        - flat[np.uint64(base + corners[n, 2, 2])]
                                        + flat[np.uint64(base + corners[n, 2, 0])])
                        value = np.float32(value + np.float32(w2 * b2))
                    value = np.float32(value * vnf)
                    idx = node_left[n] if value < node_threshold[n] else node_right[n]
                    if idx <= 0:
                        break
                total += np.float64(leaves[np.uint64(tree_leaves[t] - idx)])
            if total < np.float64(stage_threshold[st]):
                passed = False
                first_rejected = st == 0
                break
        hits[i] = passed
        if first_rejected and i + 1 < nx:
            hits[i + 1] = False
            i += 2
        else:
            i += 1



# --- whole pyramids in one parallel region ----------------------------------------------------
#
# A pyramid's levels are independent (each is resized from the image itself, as OpenCV does),
# so they are the units of work: each thread takes the next level not yet taken, largest first,
# and runs it start to finish on its own (resize, features, scores), as OpenCV's parallel_for_
# over the scales does. One parallel region per image instead of several per level; small
# levels no longer run serially between them; and a thread the machine slows down simply takes
# fewer levels (the levels are handed out as threads ask, not split up front: Numba's prange
# splits its range into equal contiguous parts).

@intrinsic
def _take_next(typingctx, counter):
    """``counter[0] += 1`` as one atomic step; returns the value before (a ticket: every caller
    gets a different one). ``counter``: (1,) int64."""
    sig = types.int64(counter)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        one = context.get_constant(types.int64, 1)
        # "monotonic": only the counter itself must be consistent between threads; the levels'
        # results are read after the parallel region, whose end orders all the writes
        return builder.atomic_rmw("add", array.data, one, "monotonic")
    return sig, codegen


#: Columns of the level table of :func:`hog_pyramid_scores`.
HOG_LEVEL_COLUMNS = ("height", "width", "rows", "cols", "ymap", "xmap", "grid_rows",
                     "grid_cols", "windows_y", "windows_x", "scores")
(LV_H, LV_W, LV_ROWS, LV_COLS, LV_YMAP, LV_XMAP, LV_P, LV_Q, LV_NWY, LV_NWX,
 LV_SCORES) = range(len(HOG_LEVEL_COLUMNS))


@njit(cache=True, nogil=True)
def _level_image(image, Ho, Wo, yofs, ycoef, xofs, xcoef):
    """``image`` (H, W, C) uint8 resized to (Ho, Wo, C) on this thread, or itself when the size
    is the same."""
    H, W, C = image.shape
    if Ho == H and Wo == W:
        return image
    level = np.empty((Ho, Wo, C), np.uint8)
    tap0, tap1, coef1 = _resize_taps(xofs, xcoef, W, C)
    # np.int64(0), not 0: the int64 compile resize_linear_exact uses, not a Literal[int](0) one
    _resize_rows(image.reshape(H, W * C), tap0, tap1, coef1, yofs, ycoef, np.int64(0), Ho,
                 level.reshape(Ho, Wo * C))
    return level


@njit(cache=True, parallel=True, nogil=True)
def hog_pyramid_scores(image, table, levels, order, yofs, ycoef, xofs, xcoef, ymaps, xmaps,
                       pad_y, pad_x, angle_scale, nbins, grid_step_y, grid_step_x, weight_y, weight_x, clip,
                       weights, bias, win_step_y, win_step_x, block_step_y, block_step_x,
                       n_threads, scores):
    """Window scores at every level of a pyramid: resize, HOG block grid, scores, per level.

    Level ``i`` (a row of ``levels``, columns :data:`HOG_LEVEL_COLUMNS`) is ``image`` resized
    to ``height x width`` (:func:`resize_linear_exact`, with the coefficients
    ``yofs/ycoef[rows : rows + height]`` and ``xofs/xcoef[cols : cols + width]``), its block
    grid (``grid_rows x grid_cols`` blocks, :func:`kernels.hog.opencv_block_grid` on the level
    padded by ``pad_y, pad_x`` on each side, with the border maps starting at ``ymaps[ymap]``
    and ``xmaps[xmap]``), then
    ``windows_y x windows_x`` window scores (:func:`score_windows`) stored row-major from
    ``scores[scores]``. Levels are taken by ``n_threads`` threads in the order ``order``
    (largest first), each level by one thread (see the section's note).

    Parameters
    ----------
    image : (H, W, C) uint8, C-contiguous
    table : (256,) float32, the HOG gamma look-up
    levels : (n_levels, 11) int64
    order : (n_levels,) int64
    yofs, ycoef, xofs, xcoef : int64, every level's resize coefficients, concatenated
    ymaps, xmaps : int64, every level's reflect-101 border maps, concatenated
    pad_y, pad_x : int, padding of every level
    angle_scale, nbins : as :func:`kernels.hog.opencv_gradients`
    grid_step_y, grid_step_x, weight_y, weight_x, clip : as
        :func:`kernels.hog.opencv_block_histograms`
    weights, bias, win_step_y, win_step_x, block_step_y, block_step_x : as
        :func:`score_windows`
    n_threads : int
    scores : (total windows,) float64, receives the scores
    """
    L = weights.shape[2]
    counter = np.empty(1, np.int64)    # not np.zeros: in a parallel kernel that is a parallel
    counter[0] = 0                     # loop of its own (one more gufunc to compile)
    for _ in prange(n_threads):
        while True:
            k = _take_next(counter)
            if k >= order.shape[0]:
                break
            lv = levels[order[k]]
            Ho, Wo = lv[LV_H], lv[LV_W]
            level = _level_image(image, Ho, Wo, yofs[lv[LV_ROWS]:lv[LV_ROWS] + Ho],
                                 ycoef[lv[LV_ROWS]:lv[LV_ROWS] + Ho],
                                 xofs[lv[LV_COLS]:lv[LV_COLS] + Wo],
                                 xcoef[lv[LV_COLS]:lv[LV_COLS] + Wo])
            P, Q = lv[LV_P], lv[LV_Q]
            nwy, nwx = lv[LV_NWY], lv[LV_NWX]
            Hp, Wp = Ho + 2 * pad_y, Wo + 2 * pad_x
            ymap = ymaps[lv[LV_YMAP]:lv[LV_YMAP] + Hp + 2]
            xmap = xmaps[lv[LV_XMAP]:lv[LV_XMAP] + Wp + 2]
            grid = np.empty((P, Q, L), np.float32)
            # OpenCV's colour code runs 4 columns at a time, then a scalar tail
            opencv_block_grid(level, table, ymap, xmap, Wp - Wp % 4, angle_scale, nbins,
                              grid_step_y, grid_step_x, weight_y, weight_x, clip, grid)
            out = scores[lv[LV_SCORES]:lv[LV_SCORES] + nwy * nwx]
            for wy in range(nwy):
                _score_row(grid, weights, bias, wy, win_step_y, win_step_x, block_step_y,
                           block_step_x, out[wy * nwx:(wy + 1) * nwx])


#: Columns of the level table of :func:`cascade_pyramid`.
CASCADE_LEVEL_COLUMNS = ("height", "width", "rows", "cols", "step", "windows_y", "windows_x",
                         "hits")
(CL_H, CL_W, CL_ROWS, CL_COLS, CL_STEP, CL_NY, CL_NX, CL_HITS) = range(len(CASCADE_LEVEL_COLUMNS))


@njit(cache=True, nogil=True)
def _cascade_corners(rects, stride):
    """Flat offsets (N, 3, 4) of each rectangle's TL, TR, BL, BR corners from a window's
    top-left corner in a summed-area table ``stride`` columns wide; ``rects`` (N, 3, 4) int64
    holds ``(x, y, w, h)``."""
    F = rects.shape[0]
    corners = np.empty((F, 3, 4), np.int64)
    for f in range(F):
        for k in range(3):
            x, y, w, h = rects[f, k, 0], rects[f, k, 1], rects[f, k, 2], rects[f, k, 3]
            corners[f, k, 0] = y * stride + x
            corners[f, k, 1] = y * stride + x + w
            corners[f, k, 2] = (y + h) * stride + x
            corners[f, k, 3] = (y + h) * stride + x + w
    return corners


@njit(cache=True, parallel=True, nogil=True)
def cascade_pyramid(grey, levels, order, yofs, ycoef, xofs, xcoef, win_w, win_h, rects,
                    rect_weights, node_left, node_right, node_threshold, leaves, tree_nodes,
                    tree_leaves, stage_first, stage_count, stage_threshold, n_threads, hits):
    """The cascade on every level of a pyramid: resize, summed-area tables, scan, per level.

    Level ``i`` (a row of ``levels``, columns :data:`CASCADE_LEVEL_COLUMNS`) is ``grey``
    resized to ``height x width`` (:func:`resize_linear_exact`, coefficients
    ``yofs/ycoef[rows : rows + height]``, ``xofs/xcoef[cols : cols + width]``), its tables of
    the pixels and of their squares (:func:`kernels.integral.integral_image`, float64), then
    :func:`cascade_row` with window step ``step`` over ``windows_y x windows_x`` windows into
    ``hits[hits : hits + windows_y * windows_x]`` (row-major). Levels are taken by
    ``n_threads`` threads in the order ``order`` (most windows first), each by one thread.

    Parameters
    ----------
    grey : (H, W, 1) uint8, C-contiguous
    levels : (n_levels, 8) int64
    order : (n_levels,) int64
    yofs, ycoef, xofs, xcoef : int64, every level's resize coefficients, concatenated
    win_w, win_h : int, the cascade's window
    rects : (N, 3, 4) int64, per tree node, its feature's rectangles ``(x, y, w, h)`` in the
        window
    rect_weights ... stage_threshold : as :func:`cascade_row`
    n_threads : int
    hits : (total windows,) bool, receives the windows that pass every stage
    """
    counter = np.empty(1, np.int64)    # not np.zeros: in a parallel kernel that is a parallel
    counter[0] = 0                     # loop of its own (one more gufunc to compile)
    for _ in prange(n_threads):
        while True:
            k = _take_next(counter)
            if k >= order.shape[0]:
                break
            lv = levels[order[k]]
            Ho, Wo = lv[CL_H], lv[CL_W]
            level = _level_image(grey, Ho, Wo, yofs[lv[CL_ROWS]:lv[CL_ROWS] + Ho],
                                 ycoef[lv[CL_ROWS]:lv[CL_ROWS] + Ho],
                                 xofs[lv[CL_COLS]:lv[CL_COLS] + Wo],
                                 xcoef[lv[CL_COLS]:lv[CL_COLS] + Wo])
            values = np.empty((Ho, Wo))
            for r in range(Ho):
                for c in range(Wo):
                    values[r, c] = level[r, c, 0]
            ii = np.empty((Ho + 1, Wo + 1))
            sq = np.empty((Ho + 1, Wo + 1))
            integral_image(values, ii)
            for r in range(Ho):
                for c in range(Wo):
                    values[r, c] *= values[r, c]
            integral_image(values, sq)
            corners = _cascade_corners(rects, Wo + 1)
            ny, nx = lv[CL_NY], lv[CL_NX]
            out = hits[lv[CL_HITS]:lv[CL_HITS] + ny * nx]
            for j in range(ny):
                cascade_row(j, ii, sq, lv[CL_STEP], win_w, win_h, corners, rect_weights,
                            node_left, node_right, node_threshold, leaves, tree_nodes,
                            tree_leaves, stage_first, stage_count, stage_threshold,
                            out[j * nx:(j + 1) * nx])
