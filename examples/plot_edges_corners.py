"""
Edges and corners
=================

Edges are where the intensity changes fast in one direction; corners are where it changes fast
in every direction. This script finds the edges of a photo with :func:`cvcore.features.canny`
at two scales and its corners with the Harris and Shi-Tomasi responses
(:func:`cvcore.features.harris`, :func:`cvcore.features.shi_tomasi`,
:func:`cvcore.features.corner_peaks`), and compares them with scikit-image on the same input.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cvcore
from cvcore.features import canny, corner_peaks, harris, shi_tomasi

image = cvcore.to_float(cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg",
                                      mode="gray"))

# %%
# Canny's detector
# ----------------
# Canny (1986) derived the stages from three goals (find every edge, place it exactly, mark it
# once):
#
# 1. smooth with a Gaussian of ``sigma`` (the scale of the edges sought),
# 2. gradient by Sobel filters: magnitude ``|g|`` and direction,
# 3. *non-maximum suppression*: keep a pixel only if ``|g|`` is a maximum across the edge,
#    along the gradient direction (thin, one-pixel edges),
# 4. *hysteresis*: pixels above the high threshold start edges, which grow through pixels above
#    the low one (default 0.1 and 0.2 of the 0..1 magnitude, scikit-image's defaults).
#
# A larger ``sigma`` keeps the long outlines and drops the texture of the tiles.
edges = {sigma: canny(image, sigma=sigma) for sigma in (1.0, 3.0)}
for sigma, e in edges.items():
    print(f"canny sigma={sigma}: {int(e.sum())} edge pixels")

# %%
# Harris and Shi-Tomasi corners
# -----------------------------
# The structure tensor averages the outer product of the gradient over a Gaussian window,
# ``A = G_sigma * [[Ix^2, Ix Iy], [Ix Iy, Iy^2]]``. Its eigenvalues ``l1 >= l2`` say how much
# the intensity changes along the two principal directions: both small on flat ground, one
# large on an edge, both large at a corner. Harris & Stephens (1988) avoid the eigenvalues with
# ``R = det A - k (tr A)^2`` (``k = 0.05`` here, scikit-image's default); Shi & Tomasi (1994)
# take ``R = l2`` itself. :func:`cvcore.features.corner_peaks` keeps the local maxima at least
# ``min_distance`` apart and above ``threshold_rel`` times the strongest response.
R_harris = harris(image, sigma=1)
R_shi = shi_tomasi(image, sigma=1)
peaks_harris = corner_peaks(R_harris, min_distance=7, threshold_rel=0.02)
peaks_shi = corner_peaks(R_shi, min_distance=7, threshold_rel=0.02)
print(f"corners: Harris {len(peaks_harris)}, Shi-Tomasi {len(peaks_shi)}")

fig, axes = plt.subplots(2, 3, figsize=(13, 6.6))
axes[0, 0].imshow(image, cmap="gray")
axes[0, 0].set_title("roofs1.jpg")
for ax, (sigma, e) in zip(axes[0, 1:], edges.items()):
    ax.imshow(e, cmap="gray")
    ax.set_title(f"canny(sigma={sigma}): {int(e.sum())} edge pixels")
lim = np.percentile(np.abs(R_harris), 99.5)
axes[1, 0].imshow(R_harris, cmap="coolwarm", vmin=-lim, vmax=lim)
axes[1, 0].set_title("Harris response R (red: corner, blue: edge)")
for ax, peaks, name in [(axes[1, 1], peaks_harris, "Harris"), (axes[1, 2], peaks_shi,
                                                               "Shi-Tomasi")]:
    ax.imshow(image, cmap="gray")
    ax.plot(peaks[:, 1], peaks[:, 0], "+", color="yellow", markersize=5)
    ax.set_title(f"{name}: {len(peaks)} corners (min_distance 7)")
for ax in axes.ravel():
    ax.set_axis_off()
fig.tight_layout()

# %%
# cvcore and scikit-image, same input
# -----------------------------------
# The same definitions as ``skimage.feature.canny``, ``corner_harris``, ``corner_shi_tomasi``
# and ``corner_peaks``: the edge maps and the corner lists are identical, the responses equal
# to float rounding (printed relative to the largest response).
try:
    from skimage import feature
except ImportError:
    print("scikit-image is not installed: cvcore alone")
else:
    for sigma, e in edges.items():
        diff = np.count_nonzero(e != feature.canny(image, sigma=sigma))
        print(f"canny sigma={sigma}: pixels that differ, max |cvcore - skimage| = {diff:.2e}")
    for name, mine, theirs in [
            ("harris", R_harris, feature.corner_harris(image, sigma=1)),
            ("shi_tomasi", R_shi, feature.corner_shi_tomasi(image, sigma=1))]:
        rel = np.abs(mine - theirs).max() / np.abs(theirs).max()
        print(f"{name} response (relative): max |cvcore - skimage| = {rel:.2e}")
    theirs = feature.corner_peaks(feature.corner_harris(image, sigma=1), min_distance=7,
                                  threshold_rel=0.02)
    same = len(theirs) == len(peaks_harris) and bool(np.all(theirs == peaks_harris))
    print(f"Harris corners: skimage finds {len(theirs)}, "
          f"{'the same list' if same else 'a different list'}")

plt.show()
