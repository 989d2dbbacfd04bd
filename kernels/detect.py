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
from numba import njit, prange


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
    flat = src.reshape(H, W * C)
    out = dst.reshape(Ho, n)
    G = min(Ho, RESIZE_ROW_GROUPS)
    for g in prange(G):
        top = np.empty(n, np.int32)
        bottom = np.empty(n, np.int32)
        have0 = -1                      # source rows currently held in top / bottom
        have1 = -1
        for y in range(g * Ho // G, (g + 1) * Ho // G):
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


# --- sliding windows: scores as a correlation of the block map with the weight template -----

@njit(cache=True, parallel=True, fastmath=True)
def score_windows(grid, weights, bias, win_step_y, win_step_x, block_step_y, block_step_x,
                  scores):
    """Linear scores of every window: the block-feature map correlated with the template.

    ``scores[wy, wx] = bias + sum_{bx, by} <grid[wy * win_step_y + by * block_step_y,
    wx * win_step_x + bx * block_step_x], weights[bx, by]>``

    Blocks are added in OpenCV's order (``bx`` outer, ``by`` inner, as
    ``HOGDescriptor::detect``), each block's dot product in float32 and the total in float64.
    ``fastmath`` lets LLVM reorder the float32 dot product into SIMD lanes (OpenCV too sums it
    in four float32 lanes); the scores differ from OpenCV's by about 1e-6, as the HOG values
    themselves do.

    Parameters
    ----------
    grid : (P, Q, L) float32, block histograms on a grid (see HOGDescriptor.compute_block_grid)
    weights : (n_blocks_x, n_blocks_y, L) float32
    bias : float
    win_step_y, win_step_x : int, window step in grid cells
    block_step_y, block_step_x : int, step between a window's blocks in grid cells
    scores : (n_windows_y, n_windows_x) float64, receives the scores
    """
    nwy, nwx = scores.shape
    nbx, nby, L = weights.shape
    for wy in prange(nwy):
        for wx in range(nwx):
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
            scores[wy, wx] = s


# --- Viola-Jones cascade on integral images ---------------------------------------------------

#: OpenCV's HaarEvaluator::setWindow skips windows whose 1/std is at least this (flat windows).
FLAT_WINDOW = 0.1


@njit(cache=True, parallel=True)
def cascade_scan(ii, sq, step, win_w, win_h, corners, rect_weights, node_left, node_right,
                 node_feature, node_threshold, leaves, tree_nodes, tree_leaves, stage_first,
                 stage_count, stage_threshold, hits):
    """Run a boosted cascade of Haar-feature trees on every window of one pyramid level.

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
    ii, sq : (H + 1, W + 1) float64, C-contiguous summed-area tables of the level and of its
        squares
    step : int
    win_w, win_h : int, the cascade's window
    corners : (F, 3, 4) int64
        Flat offsets in the table, from a window's top-left corner, of each rectangle's
        top-left, top-right, bottom-left and bottom-right corners (``row * (W + 1) + col``).
    rect_weights : (F, 3) float32 (0: no third rectangle)
    node_left, node_right : (N,) int64, child index in the tree (> 0) or minus a leaf index
    node_feature : (N,) int64
    node_threshold : (N,) float32
    leaves : (L,) float32
    tree_nodes, tree_leaves : (T,) int64, offset of each tree's first node and first leaf
    stage_first, stage_count : (S,) int64, each stage's trees
    stage_threshold : (S,) float32, already lowered by OpenCV's 1e-5
    hits : (ny, nx) bool, receives the windows that pass every stage, at ``(y // step, x //
        step)``
    """
    ny, nx = hits.shape
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
    for j in prange(ny):
        y = j * step
        i = 0
        while i < nx:
            base = y * stride + i * step
            hits[j, i] = False
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
                        f = np.uint64(node_feature[n])
                        b0 = np.float32(flat[np.uint64(base + corners[f, 0, 3])]
                                        - flat[np.uint64(base + corners[f, 0, 1])]
                                        - flat[np.uint64(base + corners[f, 0, 2])]
                                        + flat[np.uint64(base + corners[f, 0, 0])])
                        b1 = np.float32(flat[np.uint64(base + corners[f, 1, 3])]
                                        - flat[np.uint64(base + corners[f, 1, 1])]
                                        - flat[np.uint64(base + corners[f, 1, 2])]
                                        + flat[np.uint64(base + corners[f, 1, 0])])
                        value = np.float32(rect_weights[f, 0] * b0) + np.float32(
                            rect_weights[f, 1] * b1)
                        w2 = rect_weights[f, 2]
                        if w2 != 0.0:
                            b2 = np.float32(flat[np.uint64(base + corners[f, 2, 3])]
                                            - flat[np.uint64(base + corners[f, 2, 1])]
                                            - flat[np.uint64(base + corners[f, 2, 2])]
                                            + flat[np.uint64(base + corners[f, 2, 0])])
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
            hits[j, i] = passed
            if first_rejected and i + 1 < nx:
                hits[j, i + 1] = False
                i += 2
            else:
                i += 1
