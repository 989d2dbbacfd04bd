"""
HOG: histograms of oriented gradients, drawn as glyphs
======================================================

The HOG descriptor (Dalal & Triggs 2005) describes a window by how the edges in each small cell
are oriented. This script computes it with :func:`cvcore.features.hog` on a photo and on a
Fashion-MNIST image, draws each cell's histogram as a star of lines (the "HOG picture"), and
checks the numbers against ``skimage.feature.hog`` on the same input.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cvcore
from cvcore.features import hog
from cvcore.io import load_embedded

# %%
# The stages
# ----------
# 1. Gradients by centred differences, ``g_x = I(x+1) - I(x-1)``; magnitude
#    ``|g|`` and unsigned orientation ``theta`` in [0, 180) degrees (Dalal & Triggs 2005,
#    sec. 6.2: the simple [-1, 0, 1] mask works best).
# 2. Each cell (8 x 8 pixels) sums ``|g|`` into ``B = 9`` orientation bins of 20 degrees.
# 3. Overlapping blocks of 3 x 3 cells are normalised together (L2-Hys: L2, clip at 0.2, L2
#    again, sec. 6.4), which makes the descriptor robust to lighting and contrast.
#
# ``visualize=True`` also returns the picture: each cell shows one line per bin through its
# centre, along the *edge* direction of the bin's centre angle (perpendicular to the gradient),
# as bright as the bin's value. A horizontal edge has a vertical gradient (90 degrees) and
# shows up as a horizontal line.
photo = cvcore.to_float(
    cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg", mode="gray"))
features, picture = hog(photo, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3),
                        visualize=True)
print(f"photo {photo.shape}: {features.size} HOG features "
      f"({photo.shape[0] // 8 - 2} x {photo.shape[1] // 8 - 2} blocks of 3 x 3 cells x 9 bins)")

shirt = load_embedded().x_test[1]                            # a 28 x 28 uint8 image
small_features, small_picture = hog(shirt, orientations=9, pixels_per_cell=(4, 4),
                                    cells_per_block=(2, 2), visualize=True)


def stretch(p):
    """Cell averages are small: let the strongest 0.5 % of pixels saturate."""
    top = np.percentile(p[p > 0], 99.5) if p.any() else 1.0
    return np.clip(p / top, 0, 1)


fig, axes = plt.subplots(1, 4, figsize=(13, 3.4), gridspec_kw={"width_ratios": [4, 4, 1.3, 1.3]})
axes[0].imshow(photo, cmap="gray")
axes[0].set_title("roofs1.jpg")
axes[1].imshow(stretch(picture), cmap="gray")
axes[1].set_title("HOG picture, 8 x 8 cells, 9 bins")
axes[2].imshow(shirt, cmap="gray")
axes[2].set_title("Fashion-MNIST")
axes[3].imshow(stretch(small_picture), cmap="gray")
axes[3].set_title("4 x 4 cells")
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()

# %%
# cvcore and scikit-image, same input
# -----------------------------------
# cvcore's HOG follows scikit-image's conventions exactly (bin edges, the order of the vector,
# the block normalisation), so both give the same vector up to float rounding.
try:
    from skimage.feature import hog as sk_hog
except ImportError:
    print("scikit-image is not installed: cvcore alone")
else:
    reference, reference_picture = sk_hog(photo, orientations=9, pixels_per_cell=(8, 8),
                                          cells_per_block=(3, 3), block_norm="L2-Hys",
                                          visualize=True)
    print(f"{features.size} features: max |cvcore - skimage| = "
          f"{np.abs(features - reference).max():.2e}")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, img, title in zip(axes, [stretch(picture), stretch(reference_picture)],
                              ["cvcore", "skimage.feature.hog"]):
        ax.imshow(img, cmap="gray")
        ax.set_title(title)
        ax.set_axis_off()
    axes[2].plot(features[:400], lw=0.8, label="cvcore")
    axes[2].plot(reference[:400], "--", lw=0.8, label="skimage")
    axes[2].set_title("the first 400 features")
    axes[2].legend(fontsize=8)
    fig.tight_layout()

plt.show()
