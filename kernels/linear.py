"""Kernels for the linear classifiers: dual coordinate descent for the L2-loss linear SVM.

The readable twin is ``kernels/reference/linear.py``; the API (validation, label encoding,
one-vs-rest bookkeeping) is :mod:`cvcore.classify.linear`.
"""
import numpy as np
from numba import njit, prange


@njit(cache=True)
def _xorshift(state):
    """One step of xorshift64 (Marsaglia 2003); returns (new_state, value)."""
    state ^= (state << np.uint64(13)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    state ^= state >> np.uint64(7)
    state ^= (state << np.uint64(17)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    return state, state


@njit(cache=True, parallel=True)
def svm_dual_cd(X, Y, C, bias, tol, max_epochs, seed, W, epochs_run):
    """L2-regularised squared-hinge linear SVMs, one per row of ``Y``, by dual coordinate descent.

    Hsieh, Chang, Lin, Keerthi & Sundararajan 2008, "A dual coordinate descent method for
    large-scale linear SVM", algorithm 1 with the L2-loss diagonal :math:`D_{ii} = 1/(2C)`:

    .. math::
        \\min_{\\alpha \\ge 0} \\tfrac12 \\alpha^T (Q + D) \\alpha - e^T\\alpha,
        \\quad Q_{ij} = y_i y_j \\hat x_i^T \\hat x_j, \\quad w = \\sum_i \\alpha_i y_i \\hat x_i

    where :math:`\\hat x_i = [x_i, b]` carries the (regularised) bias feature ``bias`` as liblinear
    does. Problems (classes) run in parallel; each visits the samples in a fresh random order per
    epoch and stops when the range of projected gradients over an epoch falls below ``tol``.

    Parameters
    ----------
    X : (N, D) float32
    Y : (K, N) float32, entries +1 / -1
    C, bias, tol : float
    max_epochs : int
    seed : int, seeds one xorshift stream per problem
    W : (K, D + 1) float64, output; last column is the bias weight
    epochs_run : (K,) int64, output
    """
    n, d = X.shape
    k_problems = Y.shape[0]
    diag = 0.5 / C
    sq_norm = np.empty(n)
    for i in range(n):
        s = bias * bias + diag
        for j in range(d):
            s += X[i, j] * X[i, j]
        sq_norm[i] = s
    for k in prange(k_problems):
        alpha = np.zeros(n)
        w = np.zeros(d + 1)
        order = np.arange(n)
        state = np.uint64(seed * 1000003 + k + 1)
        epoch = 0
        while epoch < max_epochs:
            for i in range(n - 1, 0, -1):          # Fisher-Yates shuffle
                state, r = _xorshift(state)
                j = np.int64(r % np.uint64(i + 1))
                order[i], order[j] = order[j], order[i]
            pg_max = -np.inf
            pg_min = np.inf
            for t in range(n):
                i = order[t]
                yi = Y[k, i]
                dot = w[d] * bias
                for j in range(d):
                    dot += w[j] * X[i, j]
                g = yi * dot - 1.0 + diag * alpha[i]
                pg = g
                if alpha[i] == 0.0 and g > 0.0:
                    pg = 0.0
                pg_max = max(pg_max, pg)
                pg_min = min(pg_min, pg)
                if pg != 0.0:
                    old = alpha[i]
                    alpha[i] = max(old - g / sq_norm[i], 0.0)
                    step = (alpha[i] - old) * yi
                    for j in range(d):
                        w[j] += step * X[i, j]
                    w[d] += step * bias
            epoch += 1
            if pg_max - pg_min < tol:
                break
        for j in range(d + 1):
            W[k, j] = w[j]
        epochs_run[k] = epoch
