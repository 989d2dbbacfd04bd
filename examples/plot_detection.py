"""
Detection: sliding windows, non-maximum suppression, three detectors
====================================================================

A detector is a classifier run on every window of an image, at every position and scale; a true
object lights up many overlapping windows, which have to be merged into one box. This script
runs three detectors of :mod:`cvcore.detect` on the same photos (from PASCAL VOC, as shipped with
dlib's face-detection example): OpenCV's HOG people detector and Haar face cascade, both
re-implemented in cvcore and reading OpenCV's trained coefficients, and a HOG face detector that
it trains itself in a few seconds; it shows the windows before and after merging, scores the
trained one with COCO's average precision, and checks the boxes against OpenCV's own.
"""
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import cvcore
from cvcore.detect import (HaarCascade, HOGDetector, coco_evaluate, nms, read_annotations,
                           rects_to_boxes, train_hog_detector)

SHARED = Path(os.environ.get("CVCORE_DATASETS",
                             Path(cvcore.__file__).resolve().parents[1].parent / "shared"
                             / "datasets"))
FACES = SHARED / "dlib-faces"
if FACES.is_dir():
    photo_path = FACES / "2008_002470.jpg"
else:
    print("shared data set dlib-faces absent: running on the package's photo (no people in it)")
    photo_path = Path(cvcore.__file__).parent / "data" / "roofs1.jpg"
rgb = cvcore.imread(photo_path, mode="rgb")
grey = cvcore.imread(photo_path, mode="gray")


def draw(ax, boxes, color, lw=1.5, alpha=1.0):
    """Boxes ``(x1, y1, x2, y2)`` as rectangles on ``ax``."""
    for x1, y1, x2, y2 in np.asarray(boxes, float).reshape(-1, 4):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=color, lw=lw,
                               alpha=alpha))


fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
for ax in axes:
    ax.set_axis_off()

# %%
# Haar cascade: many windows, grouped
# -----------------------------------
# Viola & Jones (2001): each window is tested by a cascade of stages, each a boosted sum of
# Haar-like features (differences of rectangle sums, a few look-ups in the integral image);
# most windows fail the first stages cheaply. A face passes at several nearby positions and
# scales; OpenCV merges the windows whose sizes and positions agree within ``eps = 0.2``
# and keeps the clusters of more than ``min_neighbors`` windows
# (:func:`cvcore.detect.group_rectangles`). The coefficients are OpenCV's trained cascade
# (``haarcascade_frontalface_default.xml``, read from the installed OpenCV).
try:
    haar = HaarCascade("haarcascade_frontalface_default.xml")
except ValueError as exc:                                    # OpenCV (and its XML) not installed
    haar = None
    print(f"no Haar cascade: {exc}")
else:
    windows = haar.candidates(grey)
    faces = haar.detect_multiscale(grey, min_neighbors=3)
    print(f"Haar: {len(windows)} windows pass the cascade, {len(faces)} faces after grouping")
    axes[0].imshow(rgb)
    draw(axes[0], rects_to_boxes(windows), "yellow", lw=0.5, alpha=0.6)
    draw(axes[0], rects_to_boxes(faces), "lime", lw=2)
    axes[0].set_title(f"Haar cascade: {len(windows)} windows (yellow) -> {len(faces)} faces",
                      fontsize=9)

# %%
# People detector: scores, then non-maximum suppression
# -----------------------------------------------------
# Dalal & Triggs (2005): a 64 x 128 window's HOG descriptor (3780 numbers) times a linear SVM's
# weights, plus a bias, is its score; the window slides in steps of 8 pixels over a pyramid of
# the image scaled by 1.05 per level. Greedy non-maximum suppression (:func:`cvcore.detect.nms`,
# torchvision's rule) visits the windows by decreasing score and drops each one that overlaps
# an already kept one by more than an IoU (intersection over union) of 0.3.
try:
    people = HOGDetector.opencv_people()
except ValueError as exc:
    people = None
    print(f"no people detector: {exc}")
else:
    rects, scores = people.candidates(rgb, hit_threshold=-0.3)
    boxes = rects_to_boxes(rects)
    keep = nms(boxes, scores, iou_threshold=0.3)
    print(f"people: {len(rects)} windows score above -0.3, {len(keep)} left after NMS")
    axes[1].imshow(rgb)
    draw(axes[1], boxes, "yellow", lw=0.6)
    draw(axes[1], boxes[keep], "red", lw=2)
    for (x1, y1, _, _), s in zip(boxes[keep], scores[keep]):
        axes[1].text(x1, y1 - 3, f"{s:.2f}", color="red", fontsize=7)
    axes[1].set_title(f"HOG people detector: {len(rects)} windows -> NMS -> {len(keep)}",
                      fontsize=9)

# %%
# A face detector trained here
# ----------------------------
# :func:`cvcore.detect.train_hog_detector` learns a HOG + linear SVM window classifier from 4
# annotated photos (18 faces): the faces and their mirror images, jittered copies, random
# background windows, then a round of *hard negatives* (the background windows the first model
# scores highest) and a refit (Dalal & Triggs 2005, sec. 4). Average precision on the 5 test
# photos (25 faces) is COCO's: precision averaged over recall and over IoU thresholds
# 0.5:0.95 (AP50 at IoU 0.5 only).
if FACES.is_dir():
    train = read_annotations(FACES / "training.xml")
    test = read_annotations(FACES / "testing.xml")
    detector = train_hog_detector(train, rounds=1, log=lambda line: None)
    found = [detector.detect(cvcore.imread(a.path, mode="gray")) for a in test]
    result = coco_evaluate([a.boxes for a in test], [b for b, _ in found], [s for _, s in found])
    print(f"trained HOG face detector on {len(test)} test photos: AP {result.ap:.3f}, "
          f"AP50 {result.ap50:.3f}")
    boxes, scores = found[0]
    axes[2].imshow(cvcore.imread(test[0].path, mode="rgb"))
    draw(axes[2], test[0].boxes, "cyan", lw=1)
    draw(axes[2], boxes[scores > 0], "lime", lw=2)
    axes[2].set_title(f"trained HOG face detector (green; cyan: annotation)\n"
                      f"test set AP50 {result.ap50:.2f}", fontsize=9)
fig.tight_layout()

# %%
# cvcore and OpenCV, same input
# -----------------------------
# The two OpenCV detectors, run by OpenCV itself on the same photo: the boxes (``x, y, w, h``)
# after OpenCV's own grouping should be the same.
try:
    import cv2
except ImportError:
    print("OpenCV is not installed: cvcore alone")
else:
    def gap(a, b):
        a, b = np.asarray(a).reshape(-1, 4), np.asarray(b).reshape(-1, 4)
        if len(a) != len(b):
            return float("inf")
        return float(np.abs(a[np.lexsort(a.T[::-1])] - b[np.lexsort(b.T[::-1])]).max()) \
            if len(a) else 0.0

    theirs = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    print(f"Haar faces: max |cvcore - OpenCV| = "
          f"{gap(faces, theirs.detectMultiScale(grey, minNeighbors=3)):.2e} px")
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    mine, _ = people.detect_multiscale(rgb)
    print(f"people (grouped): max |cvcore - OpenCV| = "
          f"{gap(mine, hog.detectMultiScale(rgb)[0]):.2e} px")

plt.show()
