"""
Convolution, filters and border modes
=====================================

Blurring, sharpening and derivatives are all the same operation: every output pixel is a
weighted sum of the input pixels around it. This script filters a photo with
:func:`cvcore.preprocess.correlate` and the filters built on it (Gaussian, Sobel, Laplace, and
the non-linear median), shows what each *border mode* invents beyond the image's edge, and
compares the results with ``scipy.ndimage`` and OpenCV on the same input.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cvcore
from cvcore.preprocess import convolve, correlate, gaussian, laplace, median, sobel

photo = cvcore.to_float(cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg",
                                      mode="gray"))

# %%
# Correlation and convolution
# ---------------------------
# Correlation slides the kernel over the image,
# ``out[i, j] = sum_{u,v} k[u, v] in[i + u - u0, j + v - v0]`` with the centre
# ``(u0, v0) = (kh // 2, kw // 2)``. Convolution flips the kernel first (so that it is
# associative and commutative: ``(f * g) * h = f * (g * h)``). For a symmetric kernel they are
# the same; for the asymmetric one below they move the image in opposite directions.
shift = np.zeros((1, 9), np.float32)
shift[0, 0] = 1.0                                            # picks the pixel 4 to the left
crop = photo[150:260, 250:400]
moved = [correlate(crop, shift), convolve(crop, shift)]

# %%
# Border modes
# ------------
# Near the border the kernel reaches outside the image, and the filter has to invent those
# pixels. SciPy's names (cvcore uses them; OpenCV's in brackets), for a row ``a b c d``:
#
# * ``reflect``: ``c b a | a b c d | d c b`` (``BORDER_REFLECT``)
# * ``mirror``: ``d c b | a b c d | c b a`` (``BORDER_REFLECT_101``, OpenCV's default)
# * ``nearest``: ``a a a | a b c d | d d d`` (``BORDER_REPLICATE``)
# * ``constant``: ``0 0 0 | a b c d | 0 0 0`` (``BORDER_CONSTANT``)
# * ``wrap``: ``b c d | a b c d | a b c`` (``BORDER_WRAP``)
#
# A wide box blur of a small crop makes the difference visible: ``constant`` darkens the
# border, ``wrap`` brings the opposite edge in.
modes = ["reflect", "mirror", "nearest", "constant", "wrap"]
small = photo[200:248, 300:364]
box = np.full((15, 15), 1 / 225, np.float32)
blurred = {mode: correlate(small, box, mode=mode) for mode in modes}

# %%
# Filters built on it
# -------------------
# * Gaussian: ``G(x) = exp(-x^2 / 2 sigma^2)`` normalised, ``radius = int(4 sigma + 0.5)`` taps
#   each side; separable, so two 1-D passes (rows then columns) instead of a 2-D sum.
# * Sobel: a derivative ``[-1, 0, 1]`` along one axis and a smoothing ``[1, 2, 1]`` along the
#   other (Sobel & Feldman 1968); ``sobel(image)`` is the gradient magnitude.
# * Laplace: the 5-point second difference ``d2/dx2 + d2/dy2``, zero on linear ramps.
# * Median: not a weighted sum; each pixel becomes the median of its window, which removes
#   salt-and-pepper noise without blurring edges (Tukey 1977).
rng = np.random.default_rng(0)
noisy = crop.copy()
spots = rng.random(crop.shape)
noisy[spots < 0.05] = 0.0
noisy[spots > 0.95] = 1.0
filtered = [("gaussian(sigma=2)", gaussian(crop, 2.0)), ("sobel (magnitude)", sobel(crop)),
            ("laplace", laplace(gaussian(crop, 1.0))), ("salt and pepper", noisy),
            ("median(size=3)", median(noisy, 3))]

fig, axes = plt.subplots(3, 5, figsize=(12, 6.8))
axes[0, 0].imshow(crop, cmap="gray", vmin=0, vmax=1)
axes[0, 0].set_title("crop", fontsize=8)
for ax, img, name in zip(axes[0, 1:3], moved, ["correlate (shift kernel)",
                                                "convolve (same kernel)"]):
    ax.imshow(img, cmap="gray", vmin=0, vmax=1)
    ax.set_title(name, fontsize=8)
axes[0, 3].imshow(small, cmap="gray", vmin=0, vmax=1)
axes[0, 3].set_title("small crop (48 x 64)", fontsize=8)
axes[0, 4].imshow(np.abs(moved[0] - moved[1]), cmap="magma")
axes[0, 4].set_title("|correlate - convolve|", fontsize=8)
for ax, mode in zip(axes[1], modes):
    ax.imshow(blurred[mode], cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"15 x 15 box, mode={mode!r}", fontsize=8)
for ax, (name, img) in zip(axes[2], filtered):
    ax.imshow(img, cmap="gray")
    ax.set_title(name, fontsize=8)
for ax in axes.ravel():
    ax.set_axis_off()
fig.tight_layout()

# %%
# cvcore, SciPy and OpenCV, same input
# ------------------------------------
# cvcore's filters follow ``scipy.ndimage`` (same centre, same border modes, same Gaussian
# radius); OpenCV's ``filter2D`` is correlation too, with ``BORDER_REFLECT_101`` = ``mirror``.
try:
    from scipy import ndimage
except ImportError:
    print("SciPy is not installed: no comparison with it")
else:
    checks = [(f"correlate {mode}", blurred[mode], ndimage.correlate(small, box, mode=mode))
              for mode in modes]
    checks += [("convolve", moved[1], ndimage.convolve(crop, shift)),
               ("gaussian", filtered[0][1], ndimage.gaussian_filter(crop, 2.0)),
               ("median", filtered[4][1], ndimage.median_filter(noisy, 3))]
    for name, mine, theirs in checks:
        print(f"{name:18s} max |cvcore - scipy| = {np.abs(mine - theirs).max():.2e}")
try:
    import cv2
except ImportError:
    print("OpenCV is not installed: no comparison with it")
else:
    theirs = cv2.filter2D(small, -1, box, borderType=cv2.BORDER_REFLECT_101)
    print(f"{'filter2D mirror':18s} max |cvcore - OpenCV| = "
          f"{np.abs(blurred['mirror'] - theirs).max():.2e}")

plt.show()
