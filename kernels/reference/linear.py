"""Readable twin of :func:`kernels.linear.svm_dual_cd` for one binary problem."""
import numpy as np


def svm_dual_cd_binary(X, y, C, bias=1.0, epochs=200, rng=None):
    """Dual coordinate descent for an L2-loss linear SVM (Hsieh et al. 2008, algorithm 1).

    ``X`` (N, D), ``y`` (N,) in {-1, +1}. Returns ``w`` of length D + 1 (last entry: bias weight).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    Xb = np.hstack([X.astype(np.float64), np.full((len(X), 1), bias)])
    diag = 0.5 / C                                    # D_ii for the squared hinge loss
    Qii = (Xb * Xb).sum(axis=1) + diag
    alpha = np.zeros(len(X))
    w = np.zeros(Xb.shape[1])
    for _ in range(epochs):
        for i in rng.permutation(len(X)):
            g = y[i] * (w @ Xb[i]) - 1.0 + diag * alpha[i]   # gradient of the dual in alpha_i
            new = max(alpha[i] - g / Qii[i], 0.0)             # Newton step, projected on >= 0
            w += (new - alpha[i]) * y[i] * Xb[i]
            alpha[i] = new
    return w
