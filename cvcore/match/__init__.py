"""Matching: descriptor matching (brute force, ratio test, cross check) and RANSAC model fitting."""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "matching": ["match_descriptors"],
        "ransac": ["ransac_homography", "ransac_affine", "fit_homography", "fit_affine",
                   "apply_homography", "refine_homography", "RansacResult"],
    },
)
