"""
Finding an object: SIFT matching and RANSAC
===========================================

Lowe's recipe for recognising an object in a cluttered scene (Lowe 2004, sec. 7): detect SIFT
keypoints in both images, match each descriptor to its nearest neighbour in the other image, keep
the distinctive matches, and find the one geometric transformation that most of them agree with.
This script does it with :func:`cvcore.features.sift`, :func:`cvcore.match.match_descriptors` and
:func:`cvcore.match.ransac_homography`, then runs OpenCV's SIFT and ``findHomography`` on the same
pair.
"""
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import cvcore
from cvcore.features import draw_keypoints, draw_matches, draw_outline, sift
from cvcore.match import apply_homography, match_descriptors, ransac_homography
from cvcore.preprocess import warp_perspective

# %%
# The pair
# --------
# ``box.pgm`` and ``scene.pgm`` from Lowe's SIFT demo, in the shared data sets. Without them the
# script makes its own pair: the package's photo and a copy seen through a known homography, so
# that the answer can be checked.
SHARED = Path(os.environ.get("CVCORE_DATASETS",
                             Path(cvcore.__file__).resolve().parents[1].parent / "shared"
                             / "datasets"))
true_H = None
if (SHARED / "test-images" / "box.pgm").is_file():
    obj = cvcore.to_float(cvcore.imread(SHARED / "test-images" / "box.pgm", mode="gray"))
    scene = cvcore.to_float(cvcore.imread(SHARED / "test-images" / "scene.pgm", mode="gray"))
    names = ("box.pgm", "scene.pgm")
else:
    print("shared test images absent: matching the package's photo with a warped copy")
    photo = cvcore.to_float(
        cvcore.imread(Path(cvcore.__file__).parent / "data" / "roofs1.jpg", mode="gray"))
    obj = photo[100:340, 150:470]
    true_H = np.array([[0.8, 0.15, 60.0], [-0.12, 0.85, 50.0], [2e-4, -1e-4, 1.0]])
    scene = warp_perspective(obj, true_H, output_shape=(360, 460))
    names = ("roofs1.jpg (crop)", "warped copy")

# %%
# Keypoints and matches
# ---------------------
# Each keypoint carries a 128-number descriptor: gradient histograms over a 4 x 4 grid around
# it, rotated to its orientation and scaled to its size. A match is kept when the nearest
# descriptor is clearly nearer than the second nearest, ``d1 <= 0.8 d2`` (Lowe's ratio test,
# sec. 7.1: it removes 90 % of the false matches and 5 % of the correct ones), and when the two
# keypoints choose each other (cross check).
kp_obj, d_obj = sift(obj)
kp_scene, d_scene = sift(scene)
matches = match_descriptors(d_obj, d_scene, ratio=0.8, cross_check=True)
print(f"keypoints: {names[0]} {len(kp_obj)}, {names[1]} {len(kp_scene)}; "
      f"matches {len(matches)}")

# %%
# RANSAC
# ------
# A plane seen from two viewpoints maps by a homography ``x' ~ H x`` (8 degrees of freedom, 4
# point pairs). RANSAC (Fischler & Bolles 1981) draws 4 matches at random, fits ``H`` by the
# normalised DLT (Hartley & Zisserman 2004, alg. 4.2), counts the matches it maps to within
# 3 pixels, and keeps the best; the number of draws adapts to the inlier share found so far so
# that a better model would have been found with probability 0.995. The inliers then refine H.
result = ransac_homography(kp_obj.xy[matches[:, 0]], kp_scene.xy[matches[:, 1]],
                           threshold=3.0, seed=0)
fig, axes = plt.subplots(2, 1, figsize=(10, 9.5), gridspec_kw={"height_ratios": [1, 1.6]})
draw_keypoints(obj, kp_obj, ax=axes[0], max_keypoints=150)
axes[0].set_title(f"{names[0]}: the 150 strongest of {len(kp_obj)} keypoints (size, angle)")
draw_matches(obj, scene, kp_obj.xy, kp_scene.xy, matches,
             inliers=None if result is None else result.inliers, ax=axes[1], max_matches=None)
corners = np.array([[0, 0], [obj.shape[1] - 1, 0], [obj.shape[1] - 1, obj.shape[0] - 1],
                    [0, obj.shape[0] - 1]], np.float64)
if result is None:
    axes[1].set_title("no homography found")
    print("no homography found")
else:
    draw_outline(result.model, obj.shape, axes[1], offset=(obj.shape[1], 0))
    n_in = int(result.inliers.sum())
    axes[1].set_title(f"{n_in} of {len(matches)} matches agree with one homography (green); "
                      "the object's outline in the scene")
    print(f"homography inliers: {n_in} of {len(matches)}")
    if true_H is not None:
        err = np.abs(apply_homography(result.model, corners) - apply_homography(true_H, corners))
        print(f"corner error against the true homography: {err.max():.2f} px")
fig.tight_layout()

# %%
# cvcore and OpenCV, same input
# -----------------------------
# OpenCV's SIFT follows the same paper with the same defaults; cvcore's keypoints are tested to
# agree with it. The comparison that matters is the task's: where each pipeline puts the
# object's corners in the scene.
try:
    import cv2
except ImportError:
    print("OpenCV is not installed: cvcore alone")
else:
    cv_sift = cv2.SIFT_create()
    u8 = [(im * 255).round().astype(np.uint8) for im in (obj, scene)]
    k1, e1 = cv_sift.detectAndCompute(u8[0], None)
    k2, e2 = cv_sift.detectAndCompute(u8[1], None)
    pairs = [p for p in cv2.BFMatcher().knnMatch(e1, e2, k=2)
             if len(p) == 2 and p[0].distance <= 0.8 * p[1].distance]
    src = np.float32([k1[p[0].queryIdx].pt for p in pairs])
    dst = np.float32([k2[p[0].trainIdx].pt for p in pairs])
    H_cv, mask = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    print(f"OpenCV: keypoints {len(k1)}, {len(k2)}; matches {len(pairs)}; "
          f"inliers {int(mask.sum())}")
    if result is not None and H_cv is not None:
        gap = np.abs(apply_homography(result.model, corners) - apply_homography(H_cv, corners))
        print(f"object corners: max |cvcore - OpenCV| = {gap.max():.2e} px")

plt.show()
