"""k-nearest-neighbour classification by brute force through matrix products."""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_choice, check_int
from cvcore.classify.base import Classifier, check_features, check_labels

__all__ = ["KNeighborsClassifier"]


class KNeighborsClassifier(Classifier):
    """Vote among the ``k`` training samples nearest in Euclidean distance.

    Squared distances come from one matrix product per chunk of queries,
    :math:`\\|a - b\\|^2 = \\|a\\|^2 - 2 a^T b + \\|b\\|^2`, so memory stays at
    ``chunk x N_train`` floats; the ``k`` chosen distances are then recomputed directly for
    distance weighting.

    Parameters
    ----------
    k : int
        Number of neighbours.
    weights : {"uniform", "distance"}
        Each neighbour's vote: 1, or the inverse of its distance (an exact match wins outright).
    chunk : int
        Queries per matrix product.
    """

    kind = "knn"
    _arrays = ("X_", "y_")
    _params = ("k", "weights", "chunk")

    def __init__(self, k=5, weights="uniform", chunk=1024):
        self.k = check_int(k, "k", minimum=1)
        self.weights = check_choice(weights, {"uniform", "distance"}, "weights")
        self.chunk = check_int(chunk, "chunk", minimum=1)

    def fit(self, X, y) -> "KNeighborsClassifier":
        X = check_features(X)
        codes = self._encode(check_labels(y, len(X)))
        if self.k > len(X):
            raise ValueError(f"k={self.k} is larger than the {len(X)} training samples")
        self.X_, self.y_ = X, codes
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Share of (weighted) neighbour votes per class, (N, n_classes)."""
        self._check_fitted()
        X = check_features(X, n_features=self.X_.shape[1])
        n_classes = len(self.classes_)
        train_sq = np.einsum("ij,ij->i", self.X_, self.X_)
        out = np.zeros((len(X), n_classes))
        for start in range(0, len(X), self.chunk):
            q = X[start:start + self.chunk]
            d2 = train_sq[None, :] - 2.0 * (q @ self.X_.T)
            d2 += np.einsum("ij,ij->i", q, q)[:, None]
            np.maximum(d2, 0, out=d2)
            nearest = np.argpartition(d2, self.k - 1, axis=1)[:, :self.k]
            rows = np.arange(len(q))[:, None]
            if self.weights == "uniform":
                votes = np.ones(nearest.shape)
            else:
                # The expansion above loses precision for near-identical vectors; recompute the
                # k chosen distances directly so that an exact match is exactly 0.
                dist = np.linalg.norm(self.X_[nearest] - q[:, None, :], axis=2)
                exact = dist == 0
                votes = np.where(exact.any(axis=1, keepdims=True), exact.astype(float),
                                 1.0 / np.where(exact, 1.0, dist))
            np.add.at(out[start:start + len(q)], (rows, self.y_[nearest]), votes)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def decision_function(self, X) -> np.ndarray:
        return self.predict_proba(X)
