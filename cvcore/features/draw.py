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


def _rgb(image, name):
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) as (H, W, 3) (grey repeated, alpha dropped)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must be grey, RGB or RGBA, got shape {image.shape}")
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]


def _points(xy, name):
    """Finite ``(K, 2)`` float64 points."""
    xy = check_array(xy, name, dtypes="uif", allow_empty=True)
    if xy.size == 0:
        return np.zeros((0, 2))
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"{name} must have shape (K, 2), got {xy.shape}")
    if not np.isfinite(xy).all():
        raise ValueError(f"{name} holds NaN or infinity")
    return np.asarray(xy, np.float64)


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
    if image1.shape[2:] != image2.shape[2:]:
        # one grey and one colour image, or RGB beside RGBA: both as RGB
        image1, image2 = _rgb(image1, "image1"), _rgb(image2, "image2")
    h = max(image1.shape[0], image2.shape[0])
    w1 = image1.shape[1]
    canvas = np.zeros((h, w1 + image2.shape[1]) + image1.shape[2:], np.float64)
    scale1 = 255.0 if image1.dtype == np.uint8 else 1.0
    scale2 = 255.0 if image2.dtype == np.uint8 else 1.0
    canvas[: image1.shape[0], :w1] = image1 / scale1
    canvas[: image2.shape[0], w1:] = image2 / scale2
    xy1 = _points(xy1, "xy1")
    xy2 = _points(xy2, "xy2")
    matches = check_array(matches, "matches", dtypes="ui", allow_empty=True).reshape(-1, 2)
    if matches.size and (matches.min() < 0 or matches[:, 0].max() >= len(xy1)
                         or matches[:, 1].max() >= len(xy2)):
        raise ValueError(f"matches must index xy1 ({len(xy1)} points) and xy2 ({len(xy2)} "
                         f"points)")
    if inliers is not None and np.shape(inliers) != (len(matches),):
        raise ValueError(f"inliers must have one flag per match ({len(matches)}), got shape "
                         f"{np.shape(inliers)}")
    ax = _axes(ax, figsize=(12, 5))
    _show(ax, np.clip(canvas, 0, 1))
    keep = np.arange(len(matches)) if max_matches is None else np.arange(min(len(matches),
                                                                             max_matches))
    a = xy1[matches[keep, 0]]
    b = xy2[matches[keep, 1]] + [w1, 0]
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
