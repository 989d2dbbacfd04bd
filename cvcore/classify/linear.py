"""Linear classifiers: a one-vs-rest linear SVM and multinomial softmax regression.

Both score a sample :math:`x \\in R^D` by :math:`s = W x + b`, one row of ``W`` per class, and
predict the class with the largest score. They differ in the loss that fits ``W``:

- :class:`LinearSVM`: the squared hinge :math:`\\max(0, 1 - y s)^2` per class against the rest,
  with L2 regularisation weighted by ``C`` (the problem scikit-learn's ``LinearSVC`` solves through
  liblinear), solved in the primal by a truncated Newton method;
- :class:`SoftmaxRegression`: the cross-entropy of :math:`\\mathrm{softmax}(s)` with L2 weight
  ``alpha``, minimised by L-BFGS (SciPy's optimiser on our loss and gradient).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from cvcore._validate import check_int, check_positive
from cvcore.classify.base import Classifier, check_features, check_labels
from cvcore.classify.calibration import fit_temperature

__all__ = ["LinearSVM", "SoftmaxRegression", "softmax", "squared_hinge_newton"]


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that exp cannot overflow."""
    z = scores - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class LinearSVM(Classifier):
    """One-vs-rest linear SVM with the squared hinge loss and L2 regularisation.

    For each class ``k`` (labels :math:`y_i = \\pm 1`, class against the rest) it minimises

    .. math:: f(w_k) = \\tfrac12 \\|w_k\\|^2 + C \\sum_i \\max(0, 1 - y_i w_k^T \\hat x_i)^2,
        \\qquad \\hat x_i = [x_i, \\text{bias}]

    (the bias weight is regularised, as in liblinear and scikit-learn's ``LinearSVC``, which solve
    the same problem). The loss is once differentiable with a piecewise-constant generalised
    Hessian, so a truncated Newton method converges in a few tens of steps (Keerthi & DeCoste
    2005; Lin, Weng & Keerthi 2008): see :func:`squared_hinge_newton`. All classes are solved
    together, so every step is a few large matrix products.

    Parameters
    ----------
    C : float
        Inverse regularisation strength (larger fits the training data more closely).
    tol : float
        Stop a class when its gradient norm falls below ``tol`` times its initial norm.
    max_iter : int
        Newton steps at most.
    bias : float
        Value of the constant feature appended to every sample (liblinear's intercept scaling).

    Notes
    -----
    ``predict_proba`` is a softmax of the decision scores divided by a temperature fitted on the
    training data by maximum likelihood (temperature scaling, Guo et al. 2017): an SVM's scores are
    not probabilities, and this gives calibrated-looking numbers without changing the ranking.
    It is the plain maximum likelihood (``targets="onehot"``): on a training set the SVM separates,
    the temperature runs to its lower bound and the probabilities become hard 0/1 votes, which is
    what out-of-fold label checks (:mod:`cvcore.train.labels`) want from a separable fold. For
    probabilities that mean what they say, fit the temperature on held-out data
    (:meth:`cvcore.train.pipeline.TrainedModel.calibrate`, which ``cvcore train`` runs on its
    validation split).
    """

    kind = "linear-svm"
    _arrays = ("coef_", "intercept_", "temperature_", "n_iter_")
    _params = ("C", "tol", "max_iter", "bias")

    def __init__(self, C=1.0, tol=1e-4, max_iter=100, bias=1.0):
        self.C = check_positive(C, "C")
        self.tol = check_positive(tol, "tol")
        self.max_iter = check_int(max_iter, "max_iter", minimum=1)
        self.bias = float(bias)

    def fit(self, X, y) -> "LinearSVM":
        """Fit on features ``X`` (N, D) and integer labels ``y`` (N,)."""
        X = check_features(X)
        codes = self._encode(check_labels(y, len(X)))
        n_classes = len(self.classes_)
        problems = 1 if n_classes == 2 else n_classes
        Y = np.where(codes[:, None] == np.arange(problems)[None, :] + (n_classes == 2),
                     np.float32(1), np.float32(-1))
        W, wb, n_iter = squared_hinge_newton(X, Y, self.C, self.bias, self.tol, self.max_iter)
        self.coef_ = np.ascontiguousarray(W.T, dtype=np.float32)
        self.intercept_ = (wb * self.bias).astype(np.float32)
        self.n_iter_ = np.array(n_iter)
        self.temperature_ = np.array(1.0)
        self.temperature_ = np.array(fit_temperature(self.decision_function(X), codes,
                                                      targets="onehot"))
        return self

    def decision_function(self, X) -> np.ndarray:
        """Scores (N, n_classes); for two classes, ``[-s, s]`` of the single binary problem."""
        self._check_fitted()
        X = check_features(X, n_features=self.coef_.shape[1])
        s = X @ self.coef_.T + self.intercept_
        return np.hstack([-s, s]) if len(self.classes_) == 2 else s

    def predict_proba(self, X) -> np.ndarray:
        """Temperature-scaled softmax of the decision scores, (N, n_classes)."""
        return softmax(self.decision_function(X) / float(self.temperature_))


#: Inexact Newton: stop conjugate gradients when the residual is this share of the gradient
#: (Lin, Weng & Keerthi 2008, sec. 2.1, use 0.1).
CG_RELATIVE_TOL = 0.1
CG_MAX_STEPS = 50
#: Armijo's sufficient-decrease constant for the backtracking line search.
ARMIJO = 1e-2


def squared_hinge_newton(X, Y, C, bias, tol, max_iter):
    """Minimise the one-vs-rest squared-hinge SVM objective of every column of ``Y`` at once.

    With scores :math:`s = X w + b\\,w_b` and active set :math:`I = \\{i: y_i s_i < 1\\}`:

    .. math::
        \\nabla f = w + 2C\\, X_I^T (s_I - y_I), \\qquad
        H v = v + 2C\\, X_I^T X_I v

    (using :math:`y_i^2 = 1`; the bias coordinate likewise with the constant feature). Each step
    solves :math:`H d = -\\nabla f` approximately by conjugate gradients, then backtracks
    :math:`w \\leftarrow w + t d`, :math:`t = 1, \\tfrac12, \\dots` until Armijo's condition holds.

    Parameters
    ----------
    X : (N, D) float32
    Y : (N, K) float32 of +1 / -1, one binary problem per column
    C, bias, tol : float
    max_iter : int

    Returns
    -------
    W : (D, K) float64, wb : (K,) float64, n_iter : (K,) int64 Newton steps per problem
    """
    n, d = X.shape
    k = Y.shape[1]
    W = np.zeros((d, k))
    wb = np.zeros(k)
    n_iter = np.zeros(k, dtype=np.int64)
    two_c = 2.0 * C

    def scores(V, vb):
        return X @ V.astype(np.float32) + np.float32(bias) * vb.astype(np.float32)

    def objective(s, V, vb):
        slack = np.maximum(1.0 - Y * s, 0.0)
        return 0.5 * (np.einsum("ij,ij->j", V, V) + vb * vb) + C * np.einsum("ij,ij->j",
                                                                            slack, slack)

    X2 = X * X
    s = scores(W, wb)
    f = objective(s, W, wb)
    g0 = None
    active = np.ones(k, dtype=bool)
    for it in range(max_iter):
        A = (Y * s < 1.0).astype(np.float32)
        r = A * (s - Y)
        g = W + two_c * (X.T @ r)
        gb = wb + two_c * bias * r.sum(axis=0)
        gnorm = np.sqrt(np.einsum("ij,ij->j", g, g) + gb * gb)
        if g0 is None:
            g0 = gnorm
        active &= gnorm > tol * g0
        if not active.any():
            break
        n_iter[active] += 1
        D, Db = _newton_direction(X, X2, A, g, gb, two_c, bias, active)
        XD = scores(D, Db)
        slope = np.einsum("ij,ij->j", g, D) + gb * Db
        t = np.ones(k)
        pending = active.copy()
        while pending.any():
            trial_s = s + t.astype(np.float32) * XD
            f_trial = objective(trial_s, W + t * D, wb + t * Db)
            ok = f_trial <= f + ARMIJO * t * slope
            pending &= ~ok & (t > 1e-10)
            t = np.where(pending, t * 0.5, t)
        t = np.where(active, t, 0.0)
        W += t * D
        wb += t * Db
        s = s + t.astype(np.float32) * XD
        f = objective(s, W, wb)
    return W, wb, n_iter


def _newton_direction(X, X2, A, g, gb, two_c, bias, active):
    """Preconditioned conjugate gradients on :math:`H d = -g`, column by column.

    The preconditioner is the diagonal of the generalised Hessian,
    :math:`M = 1 + 2C \\sum_{i \\in I} x_{ij}^2` (Hsia, Chiang & Lin 2018, sec. 3), computed
    from ``X2 = X * X``. Problems that have converged (``~active``) get d = 0.
    """
    M = 1.0 + two_c * (X2.T @ A)
    Mb = 1.0 + two_c * bias * bias * A.sum(axis=0)
    D = np.zeros_like(g)
    Db = np.zeros_like(gb)
    R = np.where(active, -g, 0.0)
    Rb = np.where(active, -gb, 0.0)
    Z, Zb = R / M, Rb / Mb
    P, Pb = Z.copy(), Zb.copy()
    rz = np.einsum("ij,ij->j", R, Z) + Rb * Zb
    rr0 = np.einsum("ij,ij->j", R, R) + Rb * Rb
    stop = (CG_RELATIVE_TOL ** 2) * rr0
    running = active & (rr0 > 0)
    for _ in range(CG_MAX_STEPS):
        if not running.any():
            break
        XP = A * (X @ P.astype(np.float32) + np.float32(bias) * Pb.astype(np.float32))
        HP = P + two_c * (X.T @ XP)
        HPb = Pb + two_c * bias * XP.sum(axis=0)
        pHp = np.einsum("ij,ij->j", P, HP) + Pb * HPb
        alpha = np.where(running, rz / np.where(pHp > 0, pHp, 1.0), 0.0)
        D += alpha * P
        Db += alpha * Pb
        R -= alpha * HP
        Rb -= alpha * HPb
        running &= (np.einsum("ij,ij->j", R, R) + Rb * Rb) > stop
        Z, Zb = R / M, Rb / Mb
        rz_new = np.einsum("ij,ij->j", R, Z) + Rb * Zb
        beta = np.where(running, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
        P = Z + beta * P
        Pb = Zb + beta * Pb
        rz = rz_new
    return D, Db


class SoftmaxRegression(Classifier):
    """Multinomial logistic regression with L2 regularisation.

    Minimises the mean cross-entropy plus an L2 penalty on the weights (not the intercepts):

    .. math:: L(W, b) = -\\frac1N \\sum_i \\log \\mathrm{softmax}(W x_i + b)_{y_i}
        + \\frac{\\alpha}{2} \\|W\\|_F^2

    with gradient :math:`\\partial L / \\partial W = \\frac1N (P - Y)^T X + \\alpha W` (``P`` the
    probabilities, ``Y`` the one-hot labels), by L-BFGS.

    Parameters
    ----------
    alpha : float
        L2 weight.
    max_iter : int
        L-BFGS iterations at most.
    tol : float
        L-BFGS's relative tolerance on the loss.
    """

    kind = "softmax"
    _arrays = ("coef_", "intercept_")
    _params = ("alpha", "max_iter", "tol")

    def __init__(self, alpha=1e-4, max_iter=300, tol=1e-7):
        self.alpha = check_positive(alpha, "alpha")
        self.max_iter = check_int(max_iter, "max_iter", minimum=1)
        self.tol = check_positive(tol, "tol")

    def fit(self, X, y) -> "SoftmaxRegression":
        X = check_features(X)
        codes = self._encode(check_labels(y, len(X)))
        n, d = X.shape
        k = len(self.classes_)
        onehot = np.zeros((n, k), dtype=np.float32)
        onehot[np.arange(n), codes] = 1

        def loss_and_grad(theta):
            W = theta[: k * d].reshape(k, d).astype(np.float32)
            b = theta[k * d:].astype(np.float32)
            s = X @ W.T + b
            s -= s.max(axis=1, keepdims=True)
            log_z = np.log(np.exp(s).sum(axis=1, keepdims=True))
            log_p = s - log_z
            loss = -np.mean(log_p[np.arange(n), codes], dtype=np.float64)
            loss += 0.5 * self.alpha * float(np.sum(W.astype(np.float64) ** 2))
            diff = (np.exp(log_p) - onehot) / n
            dW = diff.T @ X + self.alpha * W
            db = diff.sum(axis=0)
            return loss, np.concatenate([dW.ravel(), db]).astype(np.float64)

        theta0 = np.zeros(k * d + k)
        res = minimize(loss_and_grad, theta0, jac=True, method="L-BFGS-B",
                       options={"maxiter": self.max_iter, "ftol": self.tol})
        self.coef_ = res.x[: k * d].reshape(k, d).astype(np.float32)
        self.intercept_ = res.x[k * d:].astype(np.float32)
        self.n_iter_ = int(res.nit)
        return self

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        X = check_features(X, n_features=self.coef_.shape[1])
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.decision_function(X))
