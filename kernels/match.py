"""Numba kernels for descriptor matching: the two nearest neighbours of each row of a distance
matrix, in one pass (cheaper than a partial sort per row)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def row_two_smallest(dist, best_index, best, second):
    """For each row i of ``dist`` (N, M) float32: the column of its smallest entry
    (``best_index[i]``, int64), that entry (``best[i]``) and the second smallest (``second[i]``,
    +inf when M == 1). Ties keep the lowest column index."""
    N, M = dist.shape
    for i in prange(N):
        row = dist[i]
        b = np.inf
        s = np.inf
        bj = -1
        for j in range(M):
            v = row[j]
            if v < b:
                s = b
                b = v
                bj = j
            elif v < s:
                s = v
        best_index[i] = bj
        best[i] = b
        second[i] = s
