"""
SIFT, stage by stage: extrema, orientation, descriptor
======================================================

:func:`cvcore.features.sift` runs Lowe's (2004) stages in one call. This script runs them one at
a time on the package's photo, with the functions :mod:`cvcore.features` exposes for each: the
extrema of the differences of Gaussians, their sub-pixel refinement and the rejection of weak
and edge-like ones, the orientation histogram of one keypoint, and its 128-number descriptor.
Then it checks the keypoints against OpenCV's SIFT on the same image.
"""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Polygon

import cvcore
from cvcore.features import (Keypoints, describe_keypoints, detect_keypoints, dog_scale_space,
                             gaussian_scale_space, localize_keypoints, orientation_histogram,
                             scale_space_extrema, sift)

photo = cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg", mode="gray")
image = cvcore.to_float(photo)[100:340, 150:470]            # a 240 x 320 crop: quick to draw

# %%
# Stage 1-2: scale space and DoG extrema
# --------------------------------------
# (See the scale-space example.) With the default ``double_image=True`` the input is first
# upsampled 2x, so octave 0 of the list has half-pixel samples and octave 1 is the input's own
# resolution. A sample is a candidate when it is larger or smaller than all 26 neighbours: 8 in
# its level, 9 above and 9 below (Lowe 2004, sec. 3.1). A cheap pre-filter drops samples with
# ``|D| <= 0.5 * 0.04 / S`` first (half the final contrast threshold, as Lowe and OpenCV do).
space = gaussian_scale_space(image)
dogs = dog_scale_space(space)
o = 1                                                        # the input's own resolution
candidates = scale_space_extrema(dogs[o], threshold=0.5 * 0.04 / space.n_scales)

# %%
# Stage 3-4: refine, reject, orient
# ---------------------------------
# Each candidate is refined by fitting a 3-D quadratic to ``D`` around it (a Newton step,
# ``x^ = -H^-1 grad D``, Brown & Lowe 2002) and dropped when ``|D(x^)| < 0.04 / S`` (low
# contrast) or when the ratio of the principal curvatures of ``D`` exceeds ``r = 10`` (an edge,
# where the position along the edge is poorly defined: ``tr(H)^2 / det(H) >= (r + 1)^2 / r``,
# sec. 4.1).
kept = localize_keypoints(dogs[o], space.gauss[o], candidates, n_scales=space.n_scales,
                          sigma=space.sigma)
print(f"octave {o}: {len(candidates)} DoG extrema, {len(kept.x)} keypoints after the contrast "
      "and edge tests (one per dominant orientation)")

# %%
# The orientation of one keypoint: gradient directions around it, weighted by their magnitude
# and a Gaussian of ``1.5 sigma``, vote into 36 bins of 10 degrees; the histogram is smoothed,
# its highest peak gives the angle (refined by a parabola through three bins), and every other
# peak above 80 % of it gives another keypoint (sec. 5). Here: the strongest keypoint of octave 1.
best = int(np.argmax(kept.response))
x0, y0, level = int(round(kept.x[best])), int(round(kept.y[best])), int(kept.level[best])
hist = orientation_histogram(space.gauss[o][level], x0, y0, scale=float(kept.scale[best]))

# %%
# Stage 5: the descriptor
# -----------------------
# Around the keypoint, on its Gaussian level, a 4 x 4 grid of cells (each 3 sigma wide),
# rotated to the keypoint's angle, collects gradient magnitudes into 8 orientation bins relative
# to that angle, by trilinear interpolation: 4 x 4 x 8 = 128 numbers, normalised to unit length,
# clipped at 0.2 (so that a few large gradients, e.g. from non-linear lighting, do not dominate)
# and normalised again (sec. 6.1).
keypoints = detect_keypoints(space, dogs)
descriptors = describe_keypoints(space, keypoints)
big = int(np.flatnonzero(keypoints.size >= 12)[0])          # a large one, to see its window
kp = keypoints[big]
d = descriptors[big].reshape(4, 4, 8)
print(f"{len(keypoints)} keypoints in every octave; the strongest of size >= 12 at "
      f"({kp.xy[0, 0]:.1f}, {kp.xy[0, 1]:.1f}), size {kp.size[0]:.1f}, angle {kp.angle[0]:.1f}")

fig = plt.figure(figsize=(13, 7.5))
ax = fig.add_subplot(2, 3, 1)
lim = np.percentile(np.abs(dogs[o][2]), 99.5)
ax.imshow(dogs[o][2], cmap="coolwarm", vmin=-lim, vmax=lim)
on_level = candidates[:, 0] == 2
ax.plot(candidates[on_level, 2], candidates[on_level, 1], ".", ms=3, color="k")
ax.set_title(f"DoG octave {o}, level 2: {int(on_level.sum())} extrema", fontsize=9)
ax.set_axis_off()
ax = fig.add_subplot(2, 3, 2)
ax.imshow(space.gauss[o][1], cmap="gray")
ax.plot(candidates[:, 2], candidates[:, 1], ".", ms=2, color="red", label="rejected")
ax.plot(kept.x, kept.y, ".", ms=4, color="lime", label="kept")
ax.legend(fontsize=7, loc="lower right")
ax.set_title(f"{len(candidates)} candidates -> {len(kept.x)} keypoints", fontsize=9)
ax.set_axis_off()
ax = fig.add_subplot(2, 3, 3, projection="polar")
angles = np.deg2rad(np.arange(36) * 10)
ax.bar(angles, hist, width=np.deg2rad(10), color="tab:blue", alpha=0.8)
ax.plot(np.linspace(0, 2 * np.pi, 100), np.full(100, 0.8 * hist.max()), "r--", lw=0.8)
ax.set_theta_direction(-1)                                   # angles run clockwise on screen
ax.set_yticklabels([])
ax.set_title(f"orientation histogram at ({x0}, {y0}), 36 bins;\nred: 80 % of the peak",
             fontsize=9)
ax = fig.add_subplot(2, 3, 4)
ax.imshow(image, cmap="gray")
x, y = kp.xy[0]
half = 0.5 * 4 * 3 * kp.size[0] / 2                         # 4 cells of 3 sigma, sigma = size / 2
t = np.deg2rad(kp.angle[0])
rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]]) @ rot.T
ax.add_patch(Polygon(square + [x, y], fill=False, color="yellow"))
ax.set_xlim(x - 3 * half, x + 3 * half)
ax.set_ylim(y + 3 * half, y - 3 * half)
ax.set_title("a keypoint's descriptor window (4 x 4 cells)", fontsize=9)
ax.set_axis_off()
ax = fig.add_subplot(2, 3, 5)
for r in range(4):                                           # each cell: 8 arrows, a star
    for c in range(4):
        for b in range(8):
            a = np.deg2rad(45 * b)
            ax.plot([c, c + 0.45 * d[r, c, b] / d.max() * np.cos(a)],
                    [r, r + 0.45 * d[r, c, b] / d.max() * np.sin(a)], color="k", lw=1.5)
ax.set_xlim(-0.6, 3.6)
ax.set_ylim(3.6, -0.6)
ax.set_aspect("equal")
ax.set_title("its 4 x 4 x 8 descriptor, as stars", fontsize=9)
ax.set_xticks([])
ax.set_yticks([])
ax = fig.add_subplot(2, 3, 6)
ax.bar(np.arange(128), descriptors[big], width=1.0, color="tab:gray")
ax.axhline(0.2, color="r", lw=0.8, ls="--")
ax.set_title("the 128 numbers (clipped at 0.2, then normalised)",
             fontsize=9)
fig.tight_layout()

# %%
# cvcore and OpenCV, same input
# -----------------------------
# OpenCV's SIFT implements the same paper with the same constants. For each of cvcore's 50
# strongest keypoints, the distance to the nearest of OpenCV's keypoints (in pixels), and the
# share of cvcore's keypoints that OpenCV also finds within 0.5 px:
try:
    import cv2
except ImportError:
    print("OpenCV is not installed: cvcore alone")
else:
    u8 = np.asarray(photo[100:340, 150:470])
    ref = Keypoints.from_cv2(cv2.SIFT_create().detect(u8, None))
    mine, _ = sift(u8)
    dist = np.sqrt(((mine.xy[:, None, :] - ref.xy[None, :, :]) ** 2).sum(-1)).min(axis=1)
    print(f"keypoints: cvcore {len(mine)}, OpenCV {len(ref)}; "
          f"{np.mean(dist <= 0.5):.1%} of cvcore's within 0.5 px of one of OpenCV's")
    print(f"50 strongest keypoints' positions: max |cvcore - OpenCV| = {dist[:50].max():.2e} px")

plt.show()
