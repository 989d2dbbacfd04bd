"""Classical classifiers on feature vectors: linear SVM, softmax regression, k-NN.

All share the scikit-learn-like interface ``fit(X, y) -> self``, ``predict(X)``,
``predict_proba(X)``, ``score(X, y)``, plus ``state()`` / ``from_state()`` for saving as npz.
"""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "linear": ["LinearSVM", "SoftmaxRegression"],
        "knn": ["KNeighborsClassifier"],
        "base": ["load_classifier"],
        "calibration": ["fit_temperature", "temperature_scale"],
    },
)
