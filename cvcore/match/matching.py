"""Brute-force descriptor matching with Lowe's ratio test and a mutual (cross) check.

Squared Euclidean distances come from one matrix product per block of rows,
``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``, so the whole (N1, N2) matrix is never held at once
(``max_block_bytes``) and the heavy work is BLAS.
"""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array, check_finite, check_int, check_positive

RATIO = 0.8            # Lowe 2004, sec. 7.1: reject matches whose distance ratio exceeds 0.8
MAX_BLOCK_BYTES = 64 << 20


def match_descriptors(d1, d2, ratio: float | None = RATIO, cross_check: bool = True,
                      return_distance: bool = False, max_block_bytes: int = MAX_BLOCK_BYTES,
                      groups=None):
    """Match each row of ``d1`` to its nearest row of ``d2`` (Euclidean distance).

    A match ``(i, j)`` is kept when

    - ratio test (Lowe 2004, sec. 7.1): ``dist(i, j) <= ratio * dist(i, j2)``, ``j2`` the second
      nearest row of ``d2`` (always passes when ``d2`` has one row); ``ratio=None`` skips it;
    - cross check: ``i`` is also the nearest row of ``d1`` to ``d2[j]`` (mutual nearest
      neighbours).

    With ``groups=(g1, g2)`` only rows of the same label are compared, as if the distance between
    rows of different labels were infinite: nearest, second nearest and the cross check all stay
    inside the label. SURF's sign of the Laplacian is such a label (Bay et al. 2008, sec. 4.3:
    a bright blob on a dark background never matches the reverse), ``groups=(kp1.laplacian,
    kp2.laplacian)``; it halves the distances computed and removes the cross-sign mistakes.

    Parameters
    ----------
    d1 : array_like (N1, D)
    d2 : array_like (N2, D)
        Descriptors (float; computed in float32).
    ratio : float in (0, 1] or None
    cross_check : bool
    return_distance : bool
        Also return the distances of the kept matches.
    max_block_bytes : int
        Memory for one block of the distance matrix.
    groups : (array_like (N1,), array_like (N2,)) of integers or bools, optional
        A label per row of ``d1`` and of ``d2``; rows are compared only with rows of equal label.

    Returns
    -------
    matches : ndarray (M, 2) int64
        ``[i, j]`` pairs, sorted by ``i``.
    distance : ndarray (M,) float32, only if ``return_distance``.

    Examples
    --------
    >>> a = np.array([[0., 0.], [1., 0.], [0., 1.]]); b = a[[2, 0, 1]] + 0.01
    >>> match_descriptors(a, b).tolist()
    [[0, 1], [1, 2], [2, 0]]
    >>> g1, g2 = [1, 1, -1], [1, 1, -1]      # a[1] may not take b[2] now, a[2] only b[2]
    >>> match_descriptors(a, b, groups=(g1, g2)).tolist()
    [[0, 1], [2, 2]]
    """
    d1 = check_array(d1, "d1", ndim=2, dtypes="buif", allow_empty=True)
    d2 = check_array(d2, "d2", ndim=2, dtypes="buif", allow_empty=True)
    if d1.shape[1] != d2.shape[1]:
        raise ValueError(f"d1 and d2 must have the same descriptor length, got {d1.shape[1]} "
                         f"and {d2.shape[1]}")
    check_finite(d1, "d1")
    check_finite(d2, "d2")
    if ratio is not None:
        ratio = check_positive(ratio, "ratio")
        if ratio > 1:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    max_block_bytes = check_int(max_block_bytes, "max_block_bytes", minimum=1)
    if groups is not None:
        g1, g2 = _check_groups(groups, d1.shape[0], d2.shape[0])
        parts = []
        for label in np.intersect1d(g1, g2):
            rows1 = np.flatnonzero(g1 == label)
            rows2 = np.flatnonzero(g2 == label)
            m, dist = match_descriptors(d1[rows1], d2[rows2], ratio, cross_check, True,
                                        max_block_bytes)
            parts.append((rows1[m[:, 0]], rows2[m[:, 1]], dist))
        i = np.concatenate([p[0] for p in parts] + [np.zeros(0, np.int64)])
        j = np.concatenate([p[1] for p in parts] + [np.zeros(0, np.int64)])
        dist = np.concatenate([p[2] for p in parts] + [np.zeros(0, np.float32)])
        order = np.argsort(i, kind="stable")
        matches = np.stack([i[order], j[order]], axis=1).astype(np.int64)
        return (matches, dist[order]) if return_distance else matches
    N1, N2 = d1.shape[0], d2.shape[0]
    if N1 == 0 or N2 == 0:
        empty = np.zeros((0, 2), np.int64)
        return (empty, np.zeros(0, np.float32)) if return_distance else empty
    from kernels.match import row_two_smallest
    a = np.ascontiguousarray(d1, np.float32)
    b = np.ascontiguousarray(d2, np.float32)
    sq_a = np.einsum("ij,ij->i", a, a)
    sq_b = np.einsum("ij,ij->i", b, b)
    best_j = np.empty(N1, np.int64)
    best = np.empty(N1, np.float32)
    second = np.empty(N1, np.float32)
    col_best = np.full(N2, np.inf, np.float32)     # nearest row of d1 for each row of d2
    col_best_i = np.zeros(N2, np.int64)
    rows = max(1, max_block_bytes // (4 * N2))
    for i0 in range(0, N1, rows):
        i1 = min(N1, i0 + rows)
        dist = a[i0:i1] @ b.T
        dist *= -2.0
        dist += sq_a[i0:i1, None]
        dist += sq_b[None, :]
        np.maximum(dist, 0.0, out=dist)                # rounding can make |a-b|^2 slightly < 0
        row_two_smallest(dist, best_j[i0:i1], best[i0:i1], second[i0:i1])
        if cross_check:
            arg = np.argmin(dist, axis=0)
            val = dist[arg, np.arange(N2)]
            better = val < col_best                     # strict: the earliest row wins ties
            col_best[better] = val[better]
            col_best_i[better] = arg[better] + i0
    keep = np.ones(N1, bool)
    if ratio is not None:
        keep &= best <= (ratio * ratio) * second       # squared distances: ratio squared
    if cross_check:
        keep &= col_best_i[best_j] == np.arange(N1)
    idx = np.flatnonzero(keep)
    matches = np.stack([idx, best_j[idx]], axis=1).astype(np.int64)
    if return_distance:
        return matches, np.sqrt(best[idx]).astype(np.float32)
    return matches


def _check_groups(groups, n1, n2):
    """``groups`` as two 1-D integer arrays of lengths ``n1`` and ``n2``."""
    if not isinstance(groups, (tuple, list)) or len(groups) != 2:
        raise TypeError("groups must be a pair (labels of d1's rows, labels of d2's rows), got "
                        f"{type(groups).__name__}")
    out = []
    for g, n, name in ((groups[0], n1, "groups[0]"), (groups[1], n2, "groups[1]")):
        if isinstance(g, (list, tuple)) and len(g) == 0:
            g = np.zeros(0, np.int64)                  # np.asarray([]) would be float
        g = check_array(g, name, ndim=1, dtypes="bui", allow_empty=True)
        if g.shape[0] != n:
            raise ValueError(f"{name} must have one label per descriptor row ({n}), "
                             f"got {g.shape[0]}")
        out.append(g.astype(np.int64))
    return out
