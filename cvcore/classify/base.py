"""What the classifiers share: input checks, label encoding, scoring and saving."""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array, check_finite

__all__ = ["Classifier", "check_features", "check_labels", "load_classifier"]


def check_features(X, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Return features as a C-contiguous (N, D) float32 array, rejecting NaN, inf and empties."""
    X = check_array(X, name, ndim=2, dtypes="buif")
    check_finite(X, name)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features per sample; the classifier was "
                         f"fitted on {n_features}")
    return np.ascontiguousarray(X, dtype=np.float32)


def check_labels(y, n_samples: int, name: str = "y") -> np.ndarray:
    """Return labels as an (N,) int64 array, checking they are integers and match N."""
    y = check_array(y, name, ndim=1, dtypes="biu")
    if len(y) != n_samples:
        raise ValueError(f"{name} has {len(y)} labels for {n_samples} samples")
    return y.astype(np.int64)


class Classifier:
    """Base class: label encoding, ``score`` and ``state`` bookkeeping.

    Subclasses set ``classes_`` (sorted unique labels) in ``fit`` and implement
    ``predict_proba``; ``predict`` returns the most probable class label.
    """

    kind = ""           # name in saved states
    _arrays: tuple = ()  # fitted array attributes saved by state()
    _params: tuple = ()  # constructor parameters saved by state()

    def _encode(self, y):
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has a single class ({self.classes_[0]}); need at least two")
        return encoded.astype(np.int64)

    def _check_fitted(self):
        if not hasattr(self, "classes_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(X, y) first")

    def predict(self, X) -> np.ndarray:
        """Class labels, (N,), of the highest-scoring class."""
        self._check_fitted()
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def score(self, X, y) -> float:
        """Mean accuracy on ``(X, y)``."""
        X = check_features(X)
        y = check_labels(y, len(X))
        return float(np.mean(self.predict(X) == y))

    def state(self) -> dict:
        """Everything needed to rebuild the fitted classifier, as numpy arrays (npz-safe)."""
        self._check_fitted()
        out = {"kind": np.array(self.kind), "classes_": self.classes_}
        for name in self._arrays:
            out[name] = getattr(self, name)
        for name in self._params:
            out[f"param.{name}"] = np.array(getattr(self, name))
        return out

    @classmethod
    def from_state(cls, state):
        params = {k[len("param."):]: state[k].item() for k in state if k.startswith("param.")}
        obj = cls(**params)
        obj.classes_ = np.asarray(state["classes_"])
        for name in cls._arrays:
            setattr(obj, name, np.asarray(state[name]))
        return obj


def load_classifier(state) -> Classifier:
    """Rebuild a classifier from :meth:`Classifier.state` (e.g. a loaded npz)."""
    from cvcore.classify.knn import KNeighborsClassifier
    from cvcore.classify.linear import LinearSVM, SoftmaxRegression
    kinds = {c.kind: c for c in (LinearSVM, SoftmaxRegression, KNeighborsClassifier)}
    kind = str(np.asarray(state["kind"]))
    if kind not in kinds:
        raise ValueError(f"unknown classifier kind {kind!r}; expected one of {sorted(kinds)}")
    return kinds[kind].from_state(state)
