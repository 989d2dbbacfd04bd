"""Draw the HOG of a photo next to the photo.

Each cell of the picture shows its orientation histogram as a star of short lines: one line per
bin, drawn through the cell centre along the edge direction of the bin's *centre* angle, as
bright as the bin's value (``cvcore.features.hog(..., visualize=True)``). A horizontal edge, for
instance, votes for the bin around 90 degrees (its gradient points down) and shows up as a
horizontal line.

    python examples/hog_picture.py                       # roofs1.jpg from the shared test images
    python examples/hog_picture.py photo.jpg --cell 12 --out photo_hog.png
"""
import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from cvcore.features import hog
from cvcore.io.atomic import atomic_write

DEFAULT_IMAGE = (Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
                 / "test-images" / "roofs1.jpg")


def hog_figure(photo: Image.Image, cell: int, orientations: int) -> Image.Image:
    """The grey photo and its HOG picture side by side, as one RGB image."""
    grey = np.asarray(photo.convert("L"), dtype=np.float32) / 255
    _, picture = hog(grey, orientations=orientations, pixels_per_cell=(cell, cell),
                     cells_per_block=(2, 2), visualize=True)
    # cell averages are small numbers: stretch so that the strongest 0.5 % of pixels saturate
    top = np.percentile(picture[picture > 0], 99.5) if picture.any() else 1.0
    picture = np.clip(picture / top, 0, 1)
    left = (grey * 255).astype(np.uint8)
    right = (picture * 255).astype(np.uint8)
    gap = np.full((grey.shape[0], 8), 255, np.uint8)
    return Image.fromarray(np.hstack([left, gap, right])).convert("RGB")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a photo and its HOG picture side by side")
    parser.add_argument("image", nargs="?", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--cell", type=int, default=8, help="pixels per cell (default 8)")
    parser.add_argument("--orientations", type=int, default=9, help="bins (default 9)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output PNG (default: <image stem>_hog.png next to the image, "
                             "or in the current folder if that one is not writable)")
    args = parser.parse_args(argv)
    with Image.open(args.image) as photo:
        figure = hog_figure(photo, args.cell, args.orientations)
    out = args.out
    if out is None:
        out = args.image.with_name(args.image.stem + "_hog.png")
        if not os.access(out.parent, os.W_OK):
            out = Path.cwd() / out.name
    with atomic_write(out) as f:                  # temp file, fsync, os.replace
        figure.save(f, format="PNG")
    print(f"wrote {out} ({figure.width}x{figure.height}): photo | HOG, "
          f"{args.cell}x{args.cell} cells, {args.orientations} bins")


if __name__ == "__main__":
    main()
