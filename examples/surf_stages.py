"""Show SURF's stages on a photo: the fast-Hessian responses, the maxima, the oriented keypoints.

    python examples/surf_stages.py [--image roofs1.jpg] [--out surf_stages.png]

Top rows: ``det(H_approx)`` of every filter of octaves 0 and 1 (filter side L and the blob sigma
it finds, ``L / 5.5``), the layers the maxima are searched on framed. Bottom: the maxima of octave
0 before the fit, and the final keypoints (circles of diameter ``size``, radius along ``angle``;
red: dark blobs, Laplacian +1; cyan: bright blobs). Needs the shared test images.
"""
import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cvcore.features import (draw_keypoints, fast_hessian, hessian_maxima,  # noqa: E402
                             integral_gray, surf)
from cvcore.features._surf import BLOB_SIDE_RATIO  # noqa: E402
from cvcore.io import imread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="roofs1.jpg")
    parser.add_argument("--out", default="surf_stages.png")
    args = parser.parse_args()
    image = imread(DATA / "test-images" / args.image, mode="gray")
    ii = integral_gray(image)                              # stage 1
    pyramid = fast_hessian(ii)                             # stage 2
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
            searched = 1 <= k <= det.shape[0] - 2
            ax.set_title(f"o{o} L={L} b={L / BLOB_SIDE_RATIO:.1f}" + (" *" if searched else ""),
                         fontsize=7)
    maxima = hessian_maxima(pyramid, 0)                    # stage 3
    ax = axes[2, 0]
    ax.imshow(image, cmap="gray")
    ax.plot(maxima[:, 2], maxima[:, 1], ",", color="yellow")
    ax.set_title(f"octave 0 maxima: {len(maxima)}", fontsize=7)
    ax.set_axis_off()
    kp, _ = surf(image)                                    # stages 4-6
    gs = axes[2, 1].get_gridspec()
    for a in axes[2, 1:]:
        a.remove()
    big = fig.add_subplot(gs[2, 1:])
    strongest = kp[:150]
    draw_keypoints(image, strongest[strongest.laplacian > 0], ax=big, color="red",
                   max_keypoints=None)
    draw_keypoints(image, strongest[strongest.laplacian < 0], ax=big, color="cyan",
                   max_keypoints=None)
    big.set_title(f"150 strongest of {len(kp)} keypoints", fontsize=7)
    fig.suptitle(f"{args.image}: SURF fast-Hessian responses (* = searched layers), maxima, "
                 "keypoints", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
