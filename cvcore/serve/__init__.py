"""Serving models over HTTP: ``cvcore serve``.

* :mod:`cvcore.serve.app` -- the FastAPI application: routes, limits, errors (its docstring lists
  the routes);
* :mod:`cvcore.serve.batching` -- dynamic batching of concurrent requests;
* :mod:`cvcore.serve.explain` -- Grad-CAM for CNNs, per-cell contributions for HOG models;
* :mod:`cvcore.serve.models` -- model files, versions, warm-up, hot reload;
* :mod:`cvcore.serve.metrics` -- Prometheus text format;
* ``static/`` -- the web page (plain HTML, CSS and JavaScript).

The web stack (FastAPI, uvicorn, python-multipart) is the ``serve`` extra and is imported only
here, so ``import cvcore`` stays light.
"""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "app": ["create_app", "ServeConfig"],
        "batching": ["Batcher", "Overloaded", "Timeout"],
        "explain": ["grad_cam", "grad_cam_network", "hog_contributions"],
    },
)
