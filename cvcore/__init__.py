"""cvcore: classical computer vision and image recognition on a bare CPU.

The pipeline, in the order data flows through it::

    io -> preprocess -> features / nn -> classify / match -> train

Everything a user touches lives in this package; the Numba kernels it calls live in the sibling
package :mod:`kernels`. Submodules are imported on first use, so ``import cvcore`` is quick.
"""
from cvcore._lazy import attach

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = attach(
    __name__,
    {"io.images": ["imread", "imwrite", "to_float", "to_uint8"]},
    submodules=("io", "preprocess", "augment", "features", "match", "classify", "nn", "train"),
)
