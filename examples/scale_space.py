"""Show SIFT's Gaussian scale space and its differences of Gaussians for a photo.

    python examples/scale_space.py [--image roofs1.jpg] [--octaves 3] [--out scale_space.png]

Rows: octaves (each half the previous one's resolution); left columns the Gaussian levels
``L(x, y, sigma_0 2^(i/S))``, right columns the DoG levels ``L_{i+1} - L_i`` (blue negative, red
positive), on which SIFT looks for extrema. Needs the shared test images.
"""
import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cvcore.features import dog_scale_space, gaussian_scale_space  # noqa: E402
from cvcore.io import imread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="roofs1.jpg")
    parser.add_argument("--octaves", type=int, default=3)
    parser.add_argument("--out", default="scale_space.png")
    args = parser.parse_args()
    image = imread(DATA / "test-images" / args.image, mode="gray")
    space = gaussian_scale_space(image, n_scales=3, double_image=False)
    dogs = dog_scale_space(space)
    n_oct = min(args.octaves, len(space.gauss))
    n_g, n_d = space.gauss[0].shape[0], dogs[0].shape[0]
    fig, axes = plt.subplots(n_oct, n_g + n_d, figsize=(2.0 * (n_g + n_d), 1.7 * n_oct),
                             squeeze=False)
    k = 2 ** (1 / space.n_scales)
    for o in range(n_oct):
        f = 2 ** (o + space.first_octave)
        for i in range(n_g):
            ax = axes[o, i]
            ax.imshow(space.gauss[o][i], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"L o{o} i{i}  s={space.sigma * k ** i * f:.2f}", fontsize=7)
            ax.set_axis_off()
        for i in range(n_d):
            ax = axes[o, n_g + i]
            d = dogs[o][i]
            lim = np.percentile(np.abs(d), 99.5) + 1e-12
            ax.imshow(d, cmap="coolwarm", vmin=-lim, vmax=lim)
            ax.set_title(f"DoG o{o} i{i}", fontsize=7)
            ax.set_axis_off()
    fig.suptitle(f"{args.image}: Gaussian scale space (S=3, sigma=1.6) and DoG, "
                 f"{n_oct} octaves (sizes in input pixels)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
