"""
Gaussian scale space and differences of Gaussians
=================================================

SIFT looks for blobs at every size at once. It blurs the image with Gaussians of growing
``sigma`` (a *scale space*), halves the resolution after each doubling of ``sigma`` (an
*octave*), and subtracts neighbouring levels (the *differences of Gaussians*, DoG); keypoints are
the extrema of the DoG in position and scale (Lowe 2004, sec. 3). This script draws the first
octaves of both for a photo, with :func:`cvcore.features.gaussian_scale_space` and
:func:`cvcore.features.dog_scale_space`, and compares one level with scikit-image's Gaussian.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cvcore
from cvcore.features import dog_scale_space, gaussian_scale_space

# %%
# The scale space
# ---------------
# Level ``i`` of an octave is ``L(x, y, sigma_i) = G(sigma_i) * I`` with
# ``sigma_i = sigma_0 2^(i/S)``: ``S = 3`` scales per octave and ``sigma_0 = 1.6`` (Lowe 2004,
# sec. 3.3, the values his experiments chose). Each octave has ``S + 3`` levels so that the DoG
# has ``S + 2`` and the extrema search (which needs a level above and below) covers ``S``
# whole scales. ``double_image=False`` starts at the photo's own resolution (SIFT's default
# doubles it first, to find the smallest blobs).
photo = cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg", mode="gray")
image = cvcore.to_float(photo)                               # (478, 640) float32 in [0, 1]
space = gaussian_scale_space(image, n_scales=3, double_image=False)
dogs = dog_scale_space(space)
print(f"{len(space.gauss)} octaves; octave 0 holds {space.gauss[0].shape[0]} Gaussian levels "
      f"of {space.gauss[0].shape[1:]} and {dogs[0].shape[0]} DoG levels")

# %%
# The differences of Gaussians
# ----------------------------
# ``D_i = L_{i+1} - L_i`` approximates the scale-normalised Laplacian
# ``(k - 1) sigma^2 nabla^2 L`` (Lowe 2004, eq. 1 and sec. 3.1; Lindeberg 1994): it is strongly
# negative in the middle of a bright blob of matching size and positive in a dark one. Blue is
# negative, red positive; each DoG level is scaled to its own 99.5th percentile.
n_oct = 3
n_g, n_d = space.gauss[0].shape[0], dogs[0].shape[0]
fig, axes = plt.subplots(n_oct, n_g + n_d, figsize=(2.0 * (n_g + n_d), 1.8 * n_oct),
                         squeeze=False)
k = 2 ** (1 / space.n_scales)
for o in range(n_oct):
    pixel = 2 ** (o + space.first_octave)                    # input pixels per sample
    for i in range(n_g):
        ax = axes[o, i]
        ax.imshow(space.gauss[o][i], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"L o{o} i{i}  sigma={space.sigma * k ** i * pixel:.2f}", fontsize=7)
        ax.set_axis_off()
    for i in range(n_d):
        ax = axes[o, n_g + i]
        d = dogs[o][i]
        lim = np.percentile(np.abs(d), 99.5) + 1e-12
        ax.imshow(d, cmap="coolwarm", vmin=-lim, vmax=lim)
        ax.set_title(f"DoG o{o} i{i}", fontsize=7)
        ax.set_axis_off()
fig.suptitle("roofs1.jpg: Gaussian scale space (S = 3, sigma_0 = 1.6) and DoG; "
             "sigma in input pixels", fontsize=9)
fig.tight_layout()

# %%
# cvcore and scikit-image, same input
# -----------------------------------
# Level 0 of octave 0 is the input (assumed blurred by ``sigma = 0.5``, the camera's own blur)
# blurred up to ``sigma_0``, i.e. by ``sqrt(1.6^2 - 0.5^2)`` (Lowe 2004, sec. 3.3). Each further
# level blurs the previous one incrementally; the whole octave should equal one direct Gaussian
# of the total blur up to the rounding of the kernels. OpenCV blurs the same way, with
# ``cv2.GaussianBlur`` and its own kernel size rule, so the difference is small but not zero.
try:
    from skimage.filters import gaussian as sk_gaussian
except ImportError:
    print("scikit-image is not installed: cvcore alone")
else:
    i = 3
    total = space.sigma * k ** i
    direct = sk_gaussian(image, sigma=np.sqrt(total ** 2 - 0.5 ** 2), mode="mirror",
                         truncate=4.0, preserve_range=True)
    diff = np.abs(space.gauss[0][i] - direct)
    print(f"level {i} (sigma {total:.3f}) against one skimage Gaussian: "
          f"max |cvcore - skimage| = {diff.max():.2e}, mean {diff.mean():.2e} "
          "(intensities in [0, 1])")

plt.show()
