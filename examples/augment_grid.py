"""Show what the augmentations do: one row per transform, applied to the same few images of the
embedded Fashion-MNIST subset (and to an RGB photo for the colour jitter).

    python examples/augment_grid.py [--out augment_grid.png]

Needs only the package (the subset and the photo ship with it) and matplotlib.
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from cvcore import augment as A  # noqa: E402
from cvcore.io.datasets import load_embedded, to_nchw  # noqa: E402

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
RGB_ROWS = [
    ("original (RGB)", A.Compose([])),
    ("ColorJitter(saturation=0.8)", A.ColorJitter(saturation=0.8)),
    ("ColorJitter(hue=0.5)", A.ColorJitter(hue=0.5)),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="augment_grid.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ds = load_embedded()
    grey = to_nchw(ds.x_train[:: len(ds.x_train) // 6][:6])          # (6, 1, 28, 28)
    photo = Image.open(Path(A.__file__).parent / "data" / "roofs1.jpg").convert("RGB")
    photo = np.asarray(photo.resize((96, 64)))
    rgb = np.repeat(to_nchw(photo[None]), 6, axis=0)                   # (6, 3, 64, 96)

    rows = [(t, grey, n) for n, t in GREY_ROWS] + [(t, rgb, n) for n, t in RGB_ROWS]
    fig, axes = plt.subplots(len(rows), 6, figsize=(7.5, 1.3 * len(rows)))
    for r, (transform, batch, name) in enumerate(rows):
        out = transform(batch, seed=(args.seed, r))
        for c in range(6):
            ax = axes[r, c]
            img = out[c].transpose(1, 2, 0)
            ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
