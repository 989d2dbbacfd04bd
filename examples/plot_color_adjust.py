"""
Colour and intensity adjustment
===============================

Before any feature is computed, an image is brought to one grey scale and one range of
intensities. This script converts a colour photo to grey with :func:`cvcore.preprocess.rgb2gray`,
changes its brightness, contrast and gamma, and spreads its histogram with global and adaptive
equalisation, each beside the grey-level histogram it produces, and compares every step with
scikit-image or OpenCV on the same input.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cvcore
from cvcore.preprocess import (adjust_brightness, adjust_contrast, adjust_gamma,
                               equalize_adapthist, equalize_hist, rgb2gray)

rgb = cvcore.to_float(cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg",
                                    mode="rgb"))              # (478, 640, 3) float32 in [0, 1]

# %%
# Grey
# ----
# Luminance as a weighted sum of the linear-looking channel values,
# ``Y = 0.2125 R + 0.7154 G + 0.0721 B`` (the ITU-R BT.709 weights scikit-image uses; OpenCV
# and Pillow use BT.601's ``0.299, 0.587, 0.114``, which :func:`cvcore.imread` applies when it
# reads a file with ``mode="gray"``). Green counts most because the eye is most sensitive to it.
grey = rgb2gray(rgb)

# %%
# Point operations
# ----------------
# Each output pixel depends on its input pixel only:
#
# * brightness ``out = clip(f x)`` (a blend with black; torchvision's definition),
# * contrast ``out = clip(m + f (x - m))`` about the mean grey ``m``,
# * gamma ``out = x^gamma`` on the [0, 1] scale: ``gamma < 1`` lifts the shadows (the power
#   law of Poynton 2003, ch. 23), as ``skimage.exposure.adjust_gamma``.
#
# Histogram equalisation maps each value through the image's own cumulative histogram, so the
# output's histogram is as flat as the levels allow (Gonzalez & Woods 2018, sec. 3.3).
# CLAHE (Zuiderveld 1994) equalises 8 x 8 tiles separately, clips each tile's histogram at
# ``clip_limit`` times the mean count first (so noise in flat regions is not blown up), and
# blends the tiles' mappings bilinearly; cvcore follows OpenCV's ``createCLAHE`` and returns
# its 8-bit result divided by 255.
grey_u8 = cvcore.to_uint8(grey)
steps = [
    ("rgb2gray", grey),
    ("adjust_brightness(1.4)", adjust_brightness(grey, 1.4)),
    ("adjust_contrast(0.5)", adjust_contrast(grey, 0.5)),
    ("adjust_gamma(0.5)", adjust_gamma(grey, 0.5)),
    ("equalize_hist", equalize_hist(grey)),
    ("equalize_adapthist (CLAHE)", equalize_adapthist(grey_u8, clip_limit=2.0)),
]
fig, axes = plt.subplots(2, len(steps) + 1, figsize=(2.3 * (len(steps) + 1), 4.2),
                         gridspec_kw={"height_ratios": [2.2, 1]})
axes[0, 0].imshow(rgb)
axes[0, 0].set_title("RGB", fontsize=8)
axes[1, 0].set_axis_off()
for c, (name, img) in enumerate(steps, start=1):
    axes[0, c].imshow(img, cmap="gray", vmin=0, vmax=1)
    axes[0, c].set_title(name, fontsize=8)
    axes[1, c].hist(np.ravel(img), bins=64, range=(0, 1), color="0.3")
    axes[1, c].set_yticks([])
for ax in axes[0]:
    ax.set_axis_off()
fig.tight_layout()

# %%
# cvcore, scikit-image and OpenCV, same input
# -------------------------------------------
# The grey conversion, gamma and global equalisation follow scikit-image to float rounding;
# CLAHE on uint8 follows OpenCV level for level.
try:
    from skimage import color, exposure
except ImportError:
    print("scikit-image is not installed: no comparison with it")
else:
    for name, mine, theirs in [
            ("rgb2gray", grey, color.rgb2gray(rgb)),
            ("adjust_gamma(0.5)", adjust_gamma(grey, 0.5), exposure.adjust_gamma(grey, 0.5)),
            ("equalize_hist", equalize_hist(grey), exposure.equalize_hist(grey))]:
        print(f"{name:18s} max |cvcore - skimage| = {np.abs(mine - theirs).max():.2e}")
try:
    import cv2
except ImportError:
    print("OpenCV is not installed: no comparison with it")
else:
    theirs = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(grey_u8)
    mine = cvcore.to_uint8(equalize_adapthist(grey_u8, clip_limit=2.0))   # float32 = 8 bits / 255
    diff = np.abs(mine.astype(int) - theirs.astype(int))
    print(f"{'CLAHE (uint8)':18s} max |cvcore - OpenCV| = {diff.max():.2e} grey levels "
          f"({np.count_nonzero(diff)} of {diff.size} pixels differ)")

plt.show()
