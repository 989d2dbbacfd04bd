"""Drawing keypoints, matches and projected outlines with matplotlib.

Each function draws into a matplotlib ``Axes`` (a new figure's when ``ax`` is None) and returns
the axes, so figures can be composed and saved by the caller. Coordinates follow the keypoint
convention (pixel centres at integers); matplotlib's ``imshow`` uses the same one.
"""
from __future__ import annotations

import numpy as np

from cvcore._validate import check_array


def _axes(ax, figsize=(8, 6)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    _, ax = plt.subplots(figsize=figsize)
    return ax


def _show(ax, image):
    image = check_array(image, "image", ndim=(2, 3), dtypes="buif")
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    ax.set_axis_off()


def draw_keypoints(image, keypoints, ax=None, color="yellow", max_keypoints: int | None = 300,
                   linewidth: float = 0.8):
    """Draw keypoints as circles of their size (diameter) with a radius along their angle.

    Parameters
    ----------
    image : ndarray (H, W) or (H, W, 3)
    keypoints : Keypoints
        From :func:`cvcore.features.sift` (uses ``xy``, ``size``, ``angle``).
    max_keypoints : int or None
        Draw only the first ones (sift orders them by response).
    """
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle

    ax = _axes(ax)
    _show(ax, image)
    kp = keypoints if max_keypoints is None else keypoints[:max_keypoints]
    xy = np.asarray(kp.xy, np.float64)
    r = 0.5 * np.asarray(kp.size, np.float64)
    a = np.radians(np.asarray(kp.angle, np.float64))      # clockwise on screen: y points down
    for (x, y), rad in zip(xy, r):
        ax.add_patch(Circle((x, y), rad, fill=False, color=color, linewidth=linewidth))
    tips = xy + r[:, None] * np.stack([np.cos(a), np.sin(a)], axis=1)
    ax.add_collection(LineCollection(np.stack([xy, tips], axis=1), colors=color,
                                     linewidths=linewidth))
    return ax


def draw_matches(image1, image2, xy1, xy2, matches, inliers=None, ax=None,
                 max_matches: int | None = 200, linewidth: float = 0.6):
    """Two images side by side with a line per match.

    Parameters
    ----------
    xy1, xy2 : ndarray (K1, 2), (K2, 2)
        Keypoint positions (``keypoints.xy``).
    matches : ndarray (M, 2) int
        ``[i, j]`` pairs from :func:`cvcore.match.match_descriptors`.
    inliers : ndarray (M,) bool, optional
        Inliers drawn green, outliers red; all cyan when None.
    """
    from matplotlib.collections import LineCollection

    image1 = check_array(image1, "image1", ndim=(2, 3), dtypes="buif")
    image2 = check_array(image2, "image2", ndim=(2, 3), dtypes="buif")
    if image1.ndim != image2.ndim:
        image1 = np.repeat(image1[..., None], 3, axis=2) if image1.ndim == 2 else image1
        image2 = np.repeat(image2[..., None], 3, axis=2) if image2.ndim == 2 else image2
    h = max(image1.shape[0], image2.shape[0])
    w1 = image1.shape[1]
    canvas = np.zeros((h, w1 + image2.shape[1]) + image1.shape[2:], np.float64)
    scale1 = 255.0 if image1.dtype == np.uint8 else 1.0
    scale2 = 255.0 if image2.dtype == np.uint8 else 1.0
    canvas[: image1.shape[0], :w1] = image1 / scale1
    canvas[: image2.shape[0], w1:] = image2 / scale2
    ax = _axes(ax, figsize=(12, 5))
    _show(ax, np.clip(canvas, 0, 1))
    matches = np.asarray(matches, np.int64).reshape(-1, 2)
    keep = np.arange(len(matches)) if max_matches is None else np.arange(min(len(matches),
                                                                             max_matches))
    a = np.asarray(xy1, np.float64)[matches[keep, 0]]
    b = np.asarray(xy2, np.float64)[matches[keep, 1]] + [w1, 0]
    if inliers is None:
        colors = "cyan"
    else:
        inl = np.asarray(inliers, bool)[keep]
        colors = np.where(inl[:, None], [[0.1, 0.9, 0.1, 0.9]], [[0.9, 0.1, 0.1, 0.6]])
    ax.add_collection(LineCollection(np.stack([a, b], axis=1), colors=colors,
                                     linewidths=linewidth))
    return ax


def draw_outline(H, shape, ax, offset=(0.0, 0.0), color="lime", linewidth: float = 2.0):
    """Draw the outline of an image of ``shape`` (H, W) mapped by the homography ``H`` (3, 3):
    where a found object lies in the scene. ``offset`` shifts it (e.g. the scene's x offset in
    :func:`draw_matches`' canvas)."""
    from cvcore.match import apply_homography
    h, w = shape[:2]
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1], [0, 0]], np.float64)
    p = apply_homography(H, corners) + np.asarray(offset, np.float64)
    ax.plot(p[:, 0], p[:, 1], color=color, linewidth=linewidth)
    return ax
