"""Linear SVM, softmax regression and k-NN: toy cases, the readable twin, scikit-learn, errors."""
import numpy as np
import pytest

from cvcore.classify import (KNeighborsClassifier, LinearSVM, SoftmaxRegression,
                             load_classifier)


def svm_dual_cd_binary(X, y, C, bias=1.0, epochs=200, rng=None):
    """A second, independent solver of the same SVM problem, written to be read: dual coordinate
    descent for the L2-loss linear SVM (Hsieh et al. 2008, algorithm 1). Returns w of length
    D + 1 (last entry: the bias weight)."""
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


def _blobs(rng, n=600, d=12, k=4, noise=2.0):
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(k, d))
    y = np.argmax(X @ w.T + rng.normal(scale=noise, size=(n, k)), axis=1)
    return X, y


def test_separable_toy_problem_is_solved():
    X = np.array([[0, 0], [0, 1], [3, 3], [3, 4]], dtype=np.float32)
    y = np.array([7, 7, 9, 9])
    for clf in (LinearSVM(C=10), SoftmaxRegression(alpha=1e-3), KNeighborsClassifier(k=1)):
        clf.fit(X, y)
        assert clf.predict(np.array([[0, 0.5], [3, 3.5]])).tolist() == [7, 9], clf
        assert clf.score(X, y) == 1.0
        p = clf.predict_proba(X)
        assert p.shape == (4, 2) and np.allclose(p.sum(axis=1), 1)


def test_svm_newton_matches_dual_coordinate_descent(rng):
    X, y = _blobs(rng, n=80, d=4, k=2)
    svm = LinearSVM(C=0.3, tol=1e-7).fit(X, y)
    w = svm_dual_cd_binary(X, np.where(y == 1, 1.0, -1.0), C=0.3, epochs=1500)
    np.testing.assert_allclose(svm.coef_[0], w[:-1], atol=1e-4)
    np.testing.assert_allclose(svm.intercept_[0], w[-1], atol=1e-4)


def test_svm_equals_sklearn_linearsvc(rng):
    sklearn_svm = pytest.importorskip("sklearn.svm")
    X, y = _blobs(rng)
    ours = LinearSVM(C=0.5, tol=1e-6).fit(X, y)
    ref = sklearn_svm.LinearSVC(C=0.5, tol=1e-8, max_iter=200000).fit(X, y)
    # Same optimum; ours computes scores in float32 (the working precision), liblinear in float64.
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=5e-4)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=5e-4)
    assert np.mean(ours.predict(X) == ref.predict(X)) > 0.995


def test_softmax_equals_sklearn_logistic_regression(rng):
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y = _blobs(rng)
    alpha = 1e-2
    ours = SoftmaxRegression(alpha=alpha, tol=1e-12, max_iter=2000).fit(X, y)
    # scikit-learn minimises 0.5 |W|^2 + C sum_i CE_i: the same optimum when C = 1 / (alpha N).
    ref = linear_model.LogisticRegression(C=1 / (alpha * len(X)), tol=1e-10,
                                          max_iter=10000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-3)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=2e-3)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_equals_sklearn(rng, weights):
    neighbors = pytest.importorskip("sklearn.neighbors")
    X, y = _blobs(rng)
    q = np.vstack([X[:50], rng.normal(size=(50, X.shape[1])).astype(np.float32)])
    ours = KNeighborsClassifier(k=7, weights=weights, chunk=16).fit(X, y)
    ref = neighbors.KNeighborsClassifier(7, weights=weights).fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(q), ref.predict_proba(q), atol=1e-5)


def test_binary_svm_scores_are_symmetric(rng):
    X, y = _blobs(rng, k=2)
    s = LinearSVM().fit(X, y).decision_function(X)
    np.testing.assert_array_equal(s[:, 0], -s[:, 1])


def test_fit_is_deterministic_and_state_round_trips(rng):
    X, y = _blobs(rng)
    for clf in (LinearSVM(C=0.2), SoftmaxRegression(), KNeighborsClassifier(k=3)):
        a = clf.fit(X, y)
        state = dict(a.state())
        b = load_classifier(state)
        np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    a = LinearSVM().fit(X, y).coef_
    np.testing.assert_array_equal(a, LinearSVM().fit(X, y).coef_)


@pytest.mark.parametrize("make", [LinearSVM, SoftmaxRegression, KNeighborsClassifier])
def test_bad_input_is_named(make):
    X = np.zeros((4, 3), np.float32)
    X[:, 0] = [0, 1, 2, 3]
    y = np.array([0, 0, 1, 1])
    clf = make()
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(X)
    with pytest.raises(ValueError, match="X contains NaN"):
        clf.fit(np.full((4, 3), np.nan), y)
    with pytest.raises(ValueError, match="3 labels for 4 samples"):
        clf.fit(X, y[:3])
    with pytest.raises(ValueError, match="single class"):
        clf.fit(X, np.zeros(4, int))
    with pytest.raises(TypeError, match="y has dtype float"):
        clf.fit(X, y.astype(float))
    with pytest.raises(ValueError, match="X is empty"):
        clf.fit(np.zeros((0, 3)), np.zeros(0, int))
    fitted = make(**({"k": 1} if make is KNeighborsClassifier else {})).fit(X, y)
    with pytest.raises(ValueError, match="fitted on 3"):
        fitted.predict(np.zeros((2, 5)))


def test_parameter_errors():
    with pytest.raises(ValueError, match="C must be positive"):
        LinearSVM(C=0)
    with pytest.raises(ValueError, match="weights must be one of"):
        KNeighborsClassifier(weights="cosine")
    with pytest.raises(ValueError, match="k=9 is larger"):
        KNeighborsClassifier(k=9).fit(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="unknown classifier kind"):
        load_classifier({"kind": np.array("tree")})
