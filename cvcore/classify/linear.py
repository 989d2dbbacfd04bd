"""Linear classifiers: a one-vs-rest linear SVM and multinomial softmax regression.

Both score a sample :math:`x \\in R^D` by :math:`s = W x + b`, one row of ``W`` per class, and
predict the class with the largest score. They differ in the loss that fits ``W``:

- :class:`LinearSVM`: the squared hinge :math:`\\max(0, 1 - y s)^2` per class against the rest,
  with L2 regularisation weighted by ``C`` (the problem scikit-learn's ``LinearSVC`` solves through
  liblinear), solved in the dual by coordinate descent (Hsieh et al. 2008);
- :class:`SoftmaxRegression`: the cross-entropy of :math:`\\mathrm{softmax}(s)` with L2 weight
  ``alpha``, minimised by L-BFGS (SciPy's optimiser on our loss and gradient).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from cvcore._validate import check_int, check_positive
from cvcore.classify.base import Classifier, check_features, check_labels
from kernels.linear import svm_dual_cd

__all__ = ["LinearSVM", "SoftmaxRegression", "softmax"]


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that exp cannot overflow."""
    z = scores - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class LinearSVM(Classifier):
    """One-vs-rest linear SVM with the squared hinge loss and L2 regularisation.

    For each class ``k`` (labels :math:`y_i = \\pm 1`, class against the rest) it minimises

    .. math:: \\tfrac12 \\|w_k\\|^2 + C \\sum_i \\max(0, 1 - y_i w_k^T \\hat x_i)^2,
        \\qquad \\hat x_i = [x_i, \\text{bias}]

    (the bias weight is regularised, as in liblinear and scikit-learn's ``LinearSVC``), by dual
    coordinate descent (Hsieh et al. 2008, algorithm 1), the classes in parallel.

    Parameters
    ----------
    C : float
        Inverse regularisation strength (larger fits the training data more closely).
    tol : float
        Stop when the projected dual gradients of an epoch span less than this.
    max_epochs : int
        Passes over the data at most, per class.
    bias : float
        Value of the constant feature appended to every sample (liblinear's intercept scaling).
    seed : int
        Seeds the order in which samples are visited; the fit is deterministic given it.

    Notes
    -----
    ``predict_proba`` is a softmax of the decision scores divided by a temperature fitted on the
    training data by maximum likelihood (temperature scaling, Guo et al. 2017): an SVM's scores are
    not probabilities, and this gives calibrated-looking numbers without changing the ranking.
    """

    kind = "linear-svm"
    _arrays = ("coef_", "intercept_", "temperature_", "epochs_")
    _params = ("C", "tol", "max_epochs", "bias", "seed")

    def __init__(self, C=1.0, tol=1e-3, max_epochs=300, bias=1.0, seed=0):
        self.C = check_positive(C, "C")
        self.tol = check_positive(tol, "tol")
        self.max_epochs = check_int(max_epochs, "max_epochs", minimum=1)
        self.bias = float(bias)
        self.seed = check_int(seed, "seed", minimum=0)

    def fit(self, X, y) -> "LinearSVM":
        """Fit on features ``X`` (N, D) and integer labels ``y`` (N,)."""
        X = check_features(X)
        codes = self._encode(check_labels(y, len(X)))
        n_classes = len(self.classes_)
        problems = 1 if n_classes == 2 else n_classes
        Y = np.where(codes[None, :] == np.arange(problems)[:, None] + (n_classes == 2),
                     np.float32(1), np.float32(-1))
        W = np.zeros((problems, X.shape[1] + 1))
        epochs = np.zeros(problems, dtype=np.int64)
        svm_dual_cd(X, np.ascontiguousarray(Y), self.C, self.bias, self.tol, self.max_epochs,
                    self.seed, W, epochs)
        self.coef_ = W[:, :-1].astype(np.float32)
        self.intercept_ = (W[:, -1] * self.bias).astype(np.float32)
        self.epochs_ = epochs
        self.temperature_ = np.array(1.0)
        self.temperature_ = np.array(_fit_temperature(self.decision_function(X), codes))
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


def _fit_temperature(scores: np.ndarray, codes: np.ndarray) -> float:
    """The T > 0 minimising the cross-entropy of softmax(scores / T) (Guo et al. 2017, sec. 4.2)."""
    rows = np.arange(len(codes))

    def nll(log_t):
        p = softmax(scores.astype(np.float64) / np.exp(log_t))
        return -np.mean(np.log(p[rows, codes] + 1e-12))

    res = minimize_scalar(nll, bounds=(-6.0, 6.0), method="bounded")
    return float(np.exp(res.x))


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
