"""Drawing detections: boxes (and their scores) on a copy of the image."""
from __future__ import annotations

import numpy as np

from cvcore.detect.boxes import check_boxes

__all__ = ["draw_boxes"]


def draw_boxes(image, boxes, scores=None, color=(0, 255, 0), width: int = 2,
               labels=None) -> np.ndarray:
    """A uint8 RGB copy of ``image`` with ``(x1, y1, x2, y2)`` boxes drawn (Pillow's ImageDraw).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8
    boxes : (K, 4) float
    scores : (K,) float or None
        Written above each box with two decimals.
    color : (r, g, b)
    width : int
        Line width in pixels.
    labels : list of str or None
        Written before the score.

    Returns
    -------
    (H, W, 3) uint8
    """
    from PIL import Image, ImageDraw
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise TypeError(f"image must be a uint8 (H, W) or (H, W, 3) array, got {img.dtype} "
                        f"{img.shape}")
    b = check_boxes(boxes)
    if scores is not None and len(scores) != len(b):
        raise ValueError(f"{len(scores)} scores for {len(b)} boxes")
    pic = Image.fromarray(img).convert("RGB")
    draw = ImageDraw.Draw(pic)
    for k, (x1, y1, x2, y2) in enumerate(b):
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], outline=tuple(color), width=int(width))
        text = " ".join(t for t in ((labels[k] if labels is not None else ""),
                                    (f"{scores[k]:.2f}" if scores is not None else "")) if t)
        if text:
            draw.text((x1 + 2, max(0, y1 - 12)), text, fill=tuple(color))
    return np.asarray(pic)
