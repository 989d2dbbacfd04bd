"""Features: edges, corners, HOG, SIFT-style keypoints and descriptors."""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "edges": ["canny"],
        "corners": ["harris", "shi_tomasi", "corner_peaks"],
        "hog": ["hog", "hog_batch", "HOGDescriptor"],
        "sift": ["sift"],
    },
)
