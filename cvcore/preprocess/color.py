"""Colour conversions between RGB and grey.

Which grey? Two sets of luma weights are in common use:

* ITU-R BT.601 (``0.299 R + 0.587 G + 0.114 B``): Pillow's ``convert("L")``, OpenCV's
  ``COLOR_RGB2GRAY``, MATLAB's ``rgb2gray``, and :func:`cvcore.imread` with ``mode="gray"``.
* ITU-R BT.709-1 (1993) (``0.2125 R + 0.7154 G + 0.0721 B``): scikit-image's
  ``skimage.color.rgb2gray`` (its docstring calls them "calibrated for contemporary CRT
  phosphors"; the later BT.709-6 rounds them to 0.2126 / 0.7152 / 0.0722).

:func:`rgb2gray` follows scikit-image exactly (the weights of ``skimage/color/colorconv.py``,
checked against the installed scikit-image in the tests), so it uses the BT.709-1 weights, not
BT.601 as the issue text said.
"""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array
from cvcore.io.images import to_float

__all__ = ["rgb2gray", "gray2rgb", "RGB2GRAY_WEIGHTS"]

# ITU-R BT.709-1 luma weights as used by skimage.color.rgb2gray (skimage/color/colorconv.py)
RGB2GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)


def rgb2gray(image) -> np.ndarray:
    """Luminance of an RGB image, as ``skimage.color.rgb2gray`` computes it.

    .. math:: Y = 0.2125 R + 0.7154 G + 0.0721 B

    (ITU-R BT.709-1 weights; see the module notes for why not BT.601.)

    Parameters
    ----------
    image : ndarray, shape (H, W, 3) or (H, W, 4)
        ``uint8``, ``uint16``, ``bool`` or float. Integer images are first mapped to ``0..1``
        with :func:`cvcore.to_float` (as scikit-image's ``img_as_float`` does); float values are
        used as they are. A fourth (alpha) channel is ignored.

    Returns
    -------
    gray : ndarray, shape (H, W), float32
    """
    arr = check_array(image, "image", ndim=3, dtypes="buf")
    if arr.shape[2] not in (3, 4):
        raise ValueError(f"image must have 3 (RGB) or 4 (RGBA) channels, got shape {arr.shape}")
    rgb = to_float(arr[:, :, :3])
    return np.ascontiguousarray(rgb @ RGB2GRAY_WEIGHTS, dtype=np.float32)


def gray2rgb(image) -> np.ndarray:
    """Repeat a grey image into three identical RGB channels.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, 1), any numeric dtype

    Returns
    -------
    rgb : ndarray, shape (H, W, 3), same dtype as ``image``
    """
    arr = check_array(image, "image", ndim=(2, 3))
    if arr.ndim == 3:
        if arr.shape[2] != 1:
            raise ValueError(f"image must be grey, shape (H, W) or (H, W, 1), got {arr.shape}")
        arr = arr[:, :, 0]
    return np.repeat(arr[:, :, None], 3, axis=2)
