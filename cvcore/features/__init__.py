"""Features: edges, corners, HOG, SIFT- and SURF-style keypoints and descriptors."""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "edges": ["canny"],
        "corners": ["harris", "shi_tomasi", "corner_peaks"],
        "_hog": ["hog", "hog_batch", "hog_backward", "HOGDescriptor"],
        "_sift": ["sift", "Keypoints", "ScaleSpace", "gaussian_scale_space", "dog_scale_space",
                  "scale_space_extrema", "localize_keypoints", "orientation_histogram",
                  "detect_keypoints", "describe_keypoints"],
        "_surf": ["surf", "SurfKeypoints", "HessianPyramid", "integral_gray", "fast_hessian",
                  "hessian_maxima", "interpolate_maxima", "detect_surf", "orientation_angles",
                  "assign_orientations", "describe_surf"],
        "draw": ["draw_keypoints", "draw_matches", "draw_outline"],
    },
)
