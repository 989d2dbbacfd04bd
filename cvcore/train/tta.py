"""Test-time augmentation: the mean of a model's probabilities over augmented views of each image.

A network trained on random horizontal flips and padded random crops (He et al. 2016, sec. 4.2)
has learnt to classify every such view; averaging its probabilities over a fixed set of them
(Krizhevsky et al. 2012, sec. 4.1: the centre and corner crops and their mirror images) smooths
out the quirks of any one view. The views here are those augmentations, made deterministic:

* flips: the image and its mirror image (only if the model was trained with flips);
* crops: after the training padding (zeros in the 0..1 image, as in training), the centre
  window and the four windows shifted by :data:`TTA_SHIFT` pixels diagonally (only if the model
  was trained with padded crops).

Flips x crops: 10 views for the standard recipe, so a prediction costs 10 forward passes.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from cvcore._validate import check_array, check_int

__all__ = ["TTA_SHIFT", "tta_offsets", "tta_views"]

#: Shift of the corner crops, in pixels: half the training padding of 4 (He et al. 2016), so the
#: views stay well inside the range of crops the network saw while adding real variety.
TTA_SHIFT = 2


def tta_offsets(padding: int, shift: int = TTA_SHIFT) -> list[tuple[int, int]]:
    """Crop offsets ``(dy, dx)`` from the centre: the centre and four diagonal shifts, each
    clipped to ``padding`` (with no padding, the centre only)."""
    padding = check_int(padding, "padding", minimum=0)
    shift = min(check_int(shift, "shift", minimum=0), padding)
    if shift == 0:
        return [(0, 0)]
    return [(0, 0), (-shift, -shift), (-shift, shift), (shift, -shift), (shift, shift)]


def tta_views(x, padding: int = 0, flip: bool = True, shift: int = TTA_SHIFT
              ) -> Iterator[np.ndarray]:
    """Yield the augmented views of a batch, in a fixed order: for each crop offset, the batch
    and (with ``flip``) its mirror image.

    Parameters
    ----------
    x : array of float32, shape (N, C, H, W)
        Images in the domain the training augmentation worked in (0..1 for cvcore's CNNs).
    padding : int
        The padding of the training crops (0: the model saw no crops; no crop views).
    flip : bool
        Whether the model was trained with horizontal flips.
    shift : int
        Offset of the four corner crops (clipped to ``padding``).

    Yields
    ------
    array of float32, shape (N, C, H, W)
        The first view is ``x`` itself.

    Examples
    --------
    >>> x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    >>> views = list(tta_views(x, padding=1, shift=1))
    >>> len(views), float(views[1][0, 0, 0, 0]), float(views[2][0, 0, 0, 0])
    (10, 2.0, 0.0)
    """
    from cvcore.augment import CropParams, FlipParams, RandomCrop, RandomHorizontalFlip
    x = check_array(x, "x", ndim=4, dtypes="f")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, _, h, w = x.shape
    padding = check_int(padding, "padding", minimum=0)
    crop = RandomCrop((h, w), padding=padding)
    mirror = RandomHorizontalFlip()
    for dy, dx in tta_offsets(padding, shift):
        if (dy, dx) == (0, 0):
            view = x
        else:
            view = crop.apply(x, CropParams(np.full(n, padding + dy, dtype=np.int64),
                                            np.full(n, padding + dx, dtype=np.int64)))
        yield view
        if flip:
            yield mirror.apply(view, FlipParams(np.ones(n, dtype=np.uint8)))
