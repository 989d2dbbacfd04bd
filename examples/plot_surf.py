"""
SURF: fast-Hessian blobs, orientations and descriptors
======================================================

SURF (Bay et al. 2008) finds blobs like SIFT but replaces the Gaussian derivatives by box
filters, which an *integral image* evaluates in constant time at any size, so every scale is
computed from the original image with no pyramid of blurs. This script shows the stages of
:func:`cvcore.features.surf` on a photo: the integral image, the determinant-of-Hessian
responses of each filter size, their maxima, and the oriented keypoints.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cvcore
from cvcore.features import draw_keypoints, fast_hessian, hessian_maxima, integral_gray, surf

image = cvcore.to_float(
    cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg", mode="gray"))

# %%
# Stage 1 and 2: the integral image and the fast Hessian
# ------------------------------------------------------
# The integral image ``S(x, y) = sum_{x' <= x, y' <= y} I(x', y')`` gives the sum over any
# rectangle from four look-ups (Viola & Jones 2001). The second derivatives ``D_xx, D_yy,
# D_xy`` of a Gaussian are approximated by box filters of side ``L`` (9, 15, 21, 27 in the
# paper's first octave; cvcore adds a 3 x 3 filter there for the smallest blobs). The 9 x 9
# boxes stand for Gaussian derivatives of ``sigma = 1.2``, so a filter has scale
# ``s = 1.2 L / 9`` (sec. 3.2), and the blob response is
# ``det(H_approx) = D_xx D_yy - (0.9 D_xy)^2`` (Bay et al. 2008, eq. 4; 0.9
# balances the box approximation). Red: positive determinant (a blob), blue: a saddle.
ii = integral_gray(image)
pyramid = fast_hessian(ii)
print(f"integral image {ii.shape}; {len(pyramid.det)} octaves of filter sizes "
      + ", ".join(str([int(s) for s in sizes]) for sizes in pyramid.sizes[:2]) + ", ...")

# %%
# Stage 3 to 6: maxima, sub-pixel fit, orientation, descriptor
# ------------------------------------------------------------
# A blob is a maximum of ``det(H)`` among its 26 neighbours in position and filter size
# (:func:`cvcore.features.hessian_maxima`), refined to sub-pixel and sub-scale position by a
# quadratic fit. Its orientation is the dominant direction of Haar-wavelet responses in a
# sliding 60-degree window (sec. 4.1), and its 64-number descriptor sums ``dx, |dx|, dy, |dy|``
# over 4 x 4 sub-regions of the rotated square (sec. 4.2). The sign of the Laplacian
# (``D_xx + D_yy``) separates dark blobs on bright ground from bright ones on dark and is kept
# so that matching can skip pairs of different sign.
n_cols = max(d.shape[0] for d in pyramid.det[:2])
fig, axes = plt.subplots(3, n_cols, figsize=(2.4 * n_cols, 6.6), squeeze=False)
for o in range(2):
    det = pyramid.det[o]
    lim = np.percentile(np.abs(det), 99.5) + 1e-12
    for k in range(n_cols):
        ax = axes[o, k]
        ax.set_axis_off()
        if k >= det.shape[0]:
            continue
        ax.imshow(det[k], cmap="coolwarm", vmin=-lim, vmax=lim)
        L = int(pyramid.sizes[o][k])
        searched = 1 <= k <= det.shape[0] - 2              # maxima need a layer above and below
        ax.set_title(f"octave {o}, L={L}" + (" (searched)" if searched else ""), fontsize=7)
maxima = hessian_maxima(pyramid, 0)
ax = axes[2, 0]
ax.imshow(image, cmap="gray")
ax.plot(maxima[:, 2], maxima[:, 1], ",", color="yellow")
ax.set_title(f"octave 0 maxima: {len(maxima)}", fontsize=7)
ax.set_axis_off()
keypoints, descriptors = surf(image)
print(f"{len(keypoints)} keypoints, descriptors {descriptors.shape} {descriptors.dtype}")
gs = axes[2, 1].get_gridspec()
for a in axes[2, 1:]:
    a.remove()
big = fig.add_subplot(gs[2, 1:])
strongest = keypoints[:150]
draw_keypoints(image, strongest[strongest.laplacian > 0], ax=big, color="red",
               max_keypoints=None)
draw_keypoints(image, strongest[strongest.laplacian < 0], ax=big, color="cyan",
               max_keypoints=None)
big.set_title(f"the 150 strongest of {len(keypoints)} keypoints (red: dark blobs, "
              "cyan: bright blobs; radius along the orientation)", fontsize=7)
fig.suptitle("roofs1.jpg: SURF's fast-Hessian responses, maxima and keypoints", fontsize=9)
fig.tight_layout()

# %%
# A reference?
# ------------
# OpenCV's SURF lives in the ``xfeatures2d`` contrib module behind the ``OPENCV_ENABLE_NONFREE``
# build flag (SURF was patented), which the pip wheels do not set; scikit-image has no SURF.
# When a build with it is installed, the script counts its keypoints on the same image.
try:
    import cv2
    reference = cv2.xfeatures2d.SURF_create(hessianThreshold=100)
    ref_kp = reference.detect((image * 255).astype(np.uint8), None)
except (ImportError, AttributeError, Exception) as exc:  # noqa: BLE001 - cv2.error when non-free
    print(f"OpenCV's SURF is not available ({type(exc).__name__}): cvcore alone")
else:
    print(f"OpenCV SURF: {len(ref_kp)} keypoints; cvcore: {len(keypoints)}")

plt.show()
