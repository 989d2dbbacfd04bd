"""Preprocessing benchmark: resize (each mode), warps and equalisation on a 1024x1024 image.

Run from the repository root: ``python -m benchmarks.preprocess``. cvcore and every reference run
on the same float32 (or uint8 where the reference needs it) image in one process; the ratio is
reference time / cvcore time (above 1: cvcore is faster). Where a reference computes a different
variant of the operation (Pillow's BILINEAR antialiases when shrinking, scikit-image's resize
filters first), the label says so: those ratios compare cost, not identical work.
"""
from __future__ import annotations

import numpy as np

from benchmarks.common import Row, machine_line, optional, print_table, run_rows

SIZE = 1024


def _image():
    """A 1024x1024 float32 image in 0..1: a real photo (roofs1.jpg bundled with cvcore) tiled and
    cropped, so that the equalisers see a natural histogram."""
    from importlib.resources import files

    from cvcore import imread, to_float
    from cvcore.preprocess import rgb2gray
    photo = rgb2gray(to_float(imread(files("cvcore") / "data" / "roofs1.jpg")))
    reps = (SIZE // photo.shape[0] + 1, SIZE // photo.shape[1] + 1)
    return np.ascontiguousarray(np.tile(photo, reps)[:SIZE, :SIZE], dtype=np.float32)


def main():
    from cvcore.io.images import to_uint8
    from cvcore.preprocess import (equalize_adapthist, equalize_hist, resize, warp_affine,
                                   warp_perspective)

    cv2 = optional("cv2")
    transform = optional("skimage.transform")
    exposure = optional("skimage.exposure")
    PIL_Image = optional("PIL.Image")
    img = _image()
    img8 = to_uint8(img)
    pil = PIL_Image.fromarray(img) if PIL_Image else None

    def cv(fn):
        return fn if cv2 is not None else None

    def sk(fn):
        return fn if transform is not None else None

    def pl(fn):
        return fn if pil is not None else None

    rows = []
    for label, shape in (("shrink 1024->512", (512, 512)), ("shrink 1024->700", (700, 700)),
                         ("grow 1024->1536", (1536, 1536))):
        h, w = shape
        rows.append(Row(f"resize nearest {label}", lambda s=shape: resize(img, s, "nearest"), {
            "cv2 NEAREST": cv(lambda: cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST)),
            "Pillow NEAREST": pl(lambda: pil.resize((w, h), PIL_Image.Resampling.NEAREST)),
            "skimage ord0": sk(lambda: transform.resize(img, (h, w), order=0,
                                                        anti_aliasing=False)),
        }))
        rows.append(Row(f"resize bilinear {label}", lambda s=shape: resize(img, s, "bilinear"), {
            "cv2 LINEAR": cv(lambda: cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)),
            "Pillow BILIN*": pl(lambda: pil.resize((w, h), PIL_Image.Resampling.BILINEAR)),
            "skimage ord1": sk(lambda: transform.resize(img, (h, w), order=1,
                                                        anti_aliasing=False)),
        }))
        if h < SIZE:
            rows.append(Row(f"resize area {label}", lambda s=shape: resize(img, s, "area"), {
                "cv2 AREA": cv(lambda: cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)),
                "Pillow BOX": pl(lambda: pil.resize((w, h), PIL_Image.Resampling.BOX)),
                "skimage aa*": sk(lambda: transform.resize(img, (h, w), order=1,
                                                           anti_aliasing=True)),
            }))

    angle = np.deg2rad(17.0)
    c, s = np.cos(angle), np.sin(angle)
    centre = SIZE / 2
    M = np.array([[c * 1.1, -s * 1.1, 0.0], [s * 1.1, c * 1.1, 0.0]])
    M[:, 2] = centre - M[:, :2] @ [centre, centre]
    H = np.vstack([M, [2e-4, -1e-4, 1.0]])
    full = np.vstack([M, [0, 0, 1.0]])
    for interp, order, flag in (("bilinear", 1, "INTER_LINEAR"), ("nearest", 0, "INTER_NEAREST")):
        rows.append(Row(f"warp_affine {interp} rot17 x1.1",
                        lambda i=interp: warp_affine(img, M, interpolation=i), {
            "cv2 warpAffine": cv(lambda f=flag: cv2.warpAffine(img, M, (SIZE, SIZE),
                                                               flags=getattr(cv2, f))),
            "skimage warp": sk(lambda o=order: transform.warp(
                img, transform.AffineTransform(np.linalg.inv(full)), order=o)),
        }))
    rows.append(Row("warp_perspective bilinear", lambda: warp_perspective(img, H), {
        "cv2 warpPersp": cv(lambda: cv2.warpPerspective(img, H, (SIZE, SIZE))),
        "skimage warp": sk(lambda: transform.warp(
            img, transform.ProjectiveTransform(np.linalg.inv(H)), order=1)),
    }))
    rows.append(Row("equalize_adapthist uint8 8x8", lambda: equalize_adapthist(img8), {
        "cv2 CLAHE": cv(lambda: cv2.createCLAHE(40.0, (8, 8)).apply(img8)),
        "skimage CLAHE*": (lambda: exposure.equalize_adapthist(img8)) if exposure else None,
    }, repeats=3))
    rows.append(Row("equalize_hist float32", lambda: equalize_hist(img), {
        "skimage": (lambda: exposure.equalize_hist(img)) if exposure else None,
        "cv2 equalizeHist*": cv(lambda: cv2.equalizeHist(img8)),
    }))

    print(machine_line())
    print(f"input {SIZE}x{SIZE} float32 (uint8 for CLAHE and cv2.equalizeHist); "
          f"* = the reference computes a different variant (see the module docstring)")
    print_table(run_rows(rows))


if __name__ == "__main__":
    main()
