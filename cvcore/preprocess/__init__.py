"""Preprocessing: colour, intensity adjustment, geometry (resize, warps) and linear/non-linear
filters (correlation, convolution, Gaussian, derivative filters, median), integral images."""
from cvcore._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "color": ["rgb2gray", "gray2rgb"],
        "adjust": ["adjust_brightness", "adjust_contrast", "adjust_gamma", "equalize_hist",
                   "equalize_adapthist", "standardize"],
        "geometry": ["resize", "warp_affine", "warp_perspective"],
        "filters": ["correlate", "convolve", "gaussian", "sobel", "scharr", "prewitt", "laplace",
                    "median"],
        "integral": ["integral_image", "squared_integral_image", "box_sum"],
    },
)
