"""
Data augmentation
=================

A network sees each training image many times; showing it a slightly different version each
time (shifted, mirrored, rotated, brighter) teaches it that these changes do not change the
class, and is the cheapest regulariser there is (Krizhevsky et al. 2012, sec. 4.1; He et al.
2016, sec. 4.2 for the crop-and-flip recipe cvcore's trainer uses). This script applies each of
:mod:`cvcore.augment`'s transforms to the same few images, one row per transform.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cvcore
from cvcore import augment as A
from cvcore.io import load_embedded, to_nchw
from cvcore.preprocess import resize

# %%
# Batches in, batches out, seeded
# -------------------------------
# Every transform takes a float batch ``(N, C, H, W)`` in [0, 1] and draws its random
# parameters per image from the ``seed`` it is given, so a run can be repeated exactly (and a
# resumed training run sees the same augmented batches as an uninterrupted one). Geometric
# transforms are one affine warp with bilinear interpolation; the pixels that come from
# outside the image are filled with ``fill`` (black here).
data = load_embedded()
grey = to_nchw(data.x_train[:: len(data.x_train) // 6][:6])  # (6, 1, 28, 28) float32
photo = cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg", mode="rgb")
photo = resize(cvcore.to_float(photo), (64, 96))           # (64, 96, 3)
rgb = np.repeat(to_nchw(photo[None]), 6, axis=0)             # (6, 3, 64, 96)

GREY_ROWS = [
    ("original", A.Compose([])),
    ("RandomCrop(28, padding=4)", A.RandomCrop(28, padding=4)),
    ("RandomHorizontalFlip()", A.RandomHorizontalFlip()),
    ("RandomRotation(20)", A.RandomRotation(20)),
    ("RandomScale((0.7, 1.2))", A.RandomScale((0.7, 1.2))),
    ("RandomTranslate((0.15, 0.15))", A.RandomTranslate((0.15, 0.15))),
    ("RandomAffine(shear=20)", A.RandomAffine(shear=20)),
    ("ColorJitter(0.5, 0.5)", A.ColorJitter(brightness=0.5, contrast=0.5)),
]

# %%
# Colour
# ------
# :class:`cvcore.augment.ColorJitter` scales brightness and contrast (a blend with black and
# with the mean grey), saturation (a blend with the grey image) and rotates the hue in HSV,
# with torchvision's definitions; the photo shows the last two, which a grey image does not have.
RGB_ROWS = [
    ("original (RGB)", A.Compose([])),
    ("ColorJitter(saturation=0.8)", A.ColorJitter(saturation=0.8)),
    ("ColorJitter(hue=0.5)", A.ColorJitter(hue=0.5)),
]

rows = [(t, grey, n) for n, t in GREY_ROWS] + [(t, rgb, n) for n, t in RGB_ROWS]
fig, axes = plt.subplots(len(rows), 6, figsize=(7.5, 1.3 * len(rows)))
for r, (transform, batch, name) in enumerate(rows):
    out = transform(batch, seed=(0, r))                      # same seed: same picture each run
    for c in range(6):
        img = out[c].transpose(1, 2, 0)
        axes[r, c].imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
        axes[r, c].set_xticks([])
        axes[r, c].set_yticks([])
    axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
fig.tight_layout()

# %%
# Composing, and what a training batch looks like
# -----------------------------------------------
# :class:`cvcore.augment.Compose` chains transforms; this is the recipe
# ``cvcore train`` uses for the CNNs (pad by 4 and crop back, mirror with probability 1/2).
# The same image drawn eight times under eight seeds:
recipe = A.Compose([A.RandomCrop(28, padding=4), A.RandomHorizontalFlip()])
one = np.repeat(grey[:1], 8, axis=0)
views = recipe(one, seed=(1,))
print(f"8 views of one image: mean |view - original| = {np.abs(views - one).mean():.3f}")
fig, axes = plt.subplots(1, 8, figsize=(8, 1.3))
for ax, v in zip(axes, views):
    ax.imshow(v[0], cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
fig.suptitle("Compose([RandomCrop(28, padding=4), RandomHorizontalFlip()])", fontsize=9)
fig.tight_layout()

plt.show()
