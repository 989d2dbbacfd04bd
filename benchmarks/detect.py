"""Object detection: cvcore beside OpenCV and dlib, in one run.

1. Speed on 640x480 photos (the shared test and face photos resized to 640x480), same
   parameters on both sides, outputs checked equal before timing, at 2 threads and at 1 (Numba's
   and OpenCV's thread counts set alike), cvcore and OpenCV calls interleaved, medians:
   * OpenCV's default HOG people detector (``cv2.HOGDescriptor.detectMultiScale``, defaults)
     vs :meth:`cvcore.detect.HOGDetector.detect_multiscale`;
   * ``haarcascade_frontalface_alt2`` (``cv2.CascadeClassifier.detectMultiScale``, scale 1.1,
     3 neighbours) vs :class:`cvcore.detect.HaarCascade`.
2. Training a face detector on ``dlib-faces`` (4 photos, 18 faces) and testing it on the 5 test
   photos (25 faces): dlib's HOG detector (``dlib.train_simple_object_detector``, C = 5, mirror
   images, as dlib's ``train_object_detector.py``) vs ``cvcore train --model hog-detector``
   (training wall time, precision, recall, AP); OpenCV's ``haarcascade_frontalface_alt2`` on the
   same test photos as a reference without training.
3. ``--figure PATH`` writes a picture of the detections (default ``benchmarks/detect.png``).

Run from the project root: ``python -m benchmarks.detect`` (``--quick``: speed rows only).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line, optional

DATA = Path(os.environ.get("CVCORE_DATASETS", Path(__file__).resolve().parents[2] / "shared"
                           / "datasets"))
PHOTOS = [("test-images", "roofs1.jpg"), ("test-images", "scene.pgm"),
          ("dlib-faces", "2008_002470.jpg"), ("dlib-faces", "2008_007676.jpg")]


def _photos_640x480(cv2):
    out = []
    for folder, name in PHOTOS:
        bgr = cv2.imread(str(DATA / folder / name), cv2.IMREAD_COLOR)
        out.append((name, cv2.resize(bgr, (640, 480), interpolation=cv2.INTER_AREA)))
    return out


def _interleaved(fns, repeats):
    """Median wall time (s) of each function, the calls interleaved: every repeat calls each
    function once, in an order that rotates, so that both sides see the same machine load."""
    times = [[] for _ in fns]
    for r in range(repeats):
        for k in range(len(fns)):
            i = (k + r) % len(fns)
            t0 = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def speed_rows(cv2, threads=(2, 1), repeats=9):
    """Rows ``(threads, detector, photo, cvcore s, cv2 s)``: both libraries at the same number
    of threads (Numba's and OpenCV's), outputs checked equal first, repeats interleaved."""
    import numba

    from cvcore.detect import HaarCascade, HOGDetector
    people = HOGDetector.opencv_people()
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    name = "haarcascade_frontalface_alt2.xml"
    cascade = HaarCascade(name)
    ref_cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    cases = []
    for photo, bgr in _photos_640x480(cv2):
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        want = sorted(np.asarray(hog.detectMultiScale(bgr)[0]).reshape(-1, 4).tolist())
        got = sorted(people.detect_multiscale(bgr)[0].tolist())
        assert got == want, (photo, got, want)
        want = sorted(np.asarray(ref_cascade.detectMultiScale(grey, 1.1, 3)).reshape(-1, 4)
                      .tolist())
        got = sorted(cascade.detect_multiscale(grey, 1.1, 3).tolist())
        assert got == want, (photo, got, want)
        cases.append(("HOG people", photo, lambda im=bgr: people.detect_multiscale(im),
                      lambda im=bgr: hog.detectMultiScale(im)))
        cases.append(("Haar alt2 (1.1, 3)", photo,
                      lambda im=grey: cascade.detect_multiscale(im, 1.1, 3),
                      lambda im=grey: ref_cascade.detectMultiScale(im, 1.1, 3)))
    rows = []
    before = (numba.get_num_threads(), cv2.getNumThreads())
    try:
        for n in threads:
            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
            cv2.setNumThreads(n)
            for detector, photo, mine, theirs in cases:
                mine(), theirs()                                   # warm-up
                t_mine, t_theirs = _interleaved([mine, theirs], repeats)
                rows.append((n, detector, photo, t_mine, t_theirs))
                print(f"  timed {detector} {photo}, {n} thread(s)", flush=True)
    finally:
        numba.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
    return rows


def print_speed(rows):
    print(f"{'threads':>7}  {'detector':<20} {'640x480 photo':<18} {'cvcore ms':>9} "
          f"{'cv2 ms':>8} {'ratio':>6}")
    for n, detector, photo, mine, theirs in rows:
        print(f"{n:>7}  {detector:<20} {photo:<18} {mine * 1e3:9.1f} {theirs * 1e3:8.1f} "
              f"{theirs / mine:6.2f}")
    print("ratio = cv2 time / cvcore time (above 1: cvcore faster); medians of interleaved "
          "repeats, wall clock")


def _match(found, truth, iou=0.5):
    """Greedy matching at IoU >= 0.5: (true positives, false positives)."""
    from cvcore.detect import box_iou
    if len(found) == 0:
        return 0, 0
    if len(truth) == 0:
        return 0, len(found)
    overlap = box_iou(found, truth)
    taken = np.zeros(len(truth), bool)
    tp = 0
    for i in range(len(found)):
        j = int(np.argmax(np.where(taken, -1, overlap[i])))
        if overlap[i, j] >= iou and not taken[j]:
            taken[j] = True
            tp += 1
    return tp, len(found) - tp


def train_cvcore(out):
    from cvcore.cli import main
    t0 = time.perf_counter()
    code = main(["train", "--model", "hog-detector", "--data",
                 str(DATA / "dlib-faces" / "training.xml"), "--out", str(out)])
    seconds = time.perf_counter() - t0
    assert code == 0
    from cvcore.detect import read_annotations
    from cvcore.detect.metrics import coco_evaluate
    from cvcore.detect.training import load_annotated_images
    from cvcore.train.pipeline import load_model
    detector = load_model(out / "model.npz").detector()
    test = read_annotations(DATA / "dlib-faces" / "testing.xml")
    images = load_annotated_images(test)
    found = [detector.detect(im, threshold=detector.threshold - 1.0) for im in images]
    coco = coco_evaluate([a.boxes for a in test], [b for b, _ in found], [s for _, s in found])
    tp = fp = 0
    for (b, s), a in zip(found, test):
        t, f = _match(b[s >= detector.threshold], a.boxes)
        tp, fp = tp + t, fp + f
    n = sum(len(a.boxes) for a in test)
    return {"seconds": seconds, "precision": tp / max(tp + fp, 1), "recall": tp / n,
            "ap50": coco.ap50, "ap": coco.ap, "tp": tp, "fp": fp, "n": n}, detector, images, test


def train_dlib(out):
    dlib = optional("dlib")
    if dlib is None:
        return None
    options = dlib.simple_object_detector_training_options()
    options.add_left_right_image_flips = True
    options.C = 5
    options.num_threads = 2
    options.be_verbose = False
    path = str(out / "dlib-detector.svm")
    t0 = time.perf_counter()
    dlib.train_simple_object_detector(str(DATA / "dlib-faces" / "training.xml"), path, options)
    seconds = time.perf_counter() - t0
    r = dlib.test_simple_object_detector(str(DATA / "dlib-faces" / "testing.xml"), path)
    return {"seconds": seconds, "precision": r.precision, "recall": r.recall,
            "ap": r.average_precision}


def opencv_faces(cv2):
    from cvcore.detect import read_annotations, rects_to_boxes
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")
    tp = fp = n = 0
    for a in read_annotations(DATA / "dlib-faces" / "testing.xml"):
        grey = cv2.imread(str(a.path), cv2.IMREAD_GRAYSCALE)
        rects = np.asarray(cascade.detectMultiScale(grey, 1.1, 3)).reshape(-1, 4)
        t, f = _match(rects_to_boxes(rects), a.boxes)
        tp, fp, n = tp + t, fp + f, n + len(a.boxes)
    return {"tp": tp, "fp": fp, "n": n}


def figure(path, detector, images, test, cv2):
    """Left: the trained face detector on a test photo; right: the people detector."""
    from matplotlib.figure import Figure

    from cvcore.detect import HOGDetector, draw_boxes, rects_to_boxes
    from cvcore.io.images import imread
    k = 1
    boxes, scores = detector.detect(images[k])
    left = draw_boxes(imread(test[k].path, mode="rgb"), boxes, scores)
    left = draw_boxes(left, test[k].boxes, color=(255, 160, 0), width=1)
    photo = imread(DATA / "dlib-faces" / "2008_004176.jpg", mode="rgb")
    rects, weights = HOGDetector.opencv_people().detect_multiscale(photo[:, :, ::-1].copy())
    right = draw_boxes(photo, rects_to_boxes(rects), weights, color=(255, 0, 255))
    fig = Figure(figsize=(11, 4.2))
    for i, (img, title) in enumerate([
            (left, "cvcore hog-detector trained on 4 photos (green; orange: annotation)"),
            (right, "OpenCV's people detector run by cvcore (= cv2)")]):
        ax = fig.add_subplot(1, 2, i + 1)
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _load():
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="speed rows only")
    p.add_argument("--repeats", type=int, default=9, help="timed calls per case (default 9)")
    p.add_argument("--figure", default=str(Path(__file__).with_name("detect.png")))
    args = p.parse_args(argv)
    cv2 = optional("cv2")
    if cv2 is None or not DATA.exists():
        sys.exit("benchmarks.detect needs opencv-python and the shared data sets")
    print(machine_line())
    print(f"load average before: {_load()}")
    print_speed(speed_rows(cv2, repeats=args.repeats))
    print(f"load average after: {_load()}")
    if args.quick:
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mine, detector, images, test = train_cvcore(tmp / "cvcore")
        theirs = train_dlib(tmp)
    ocv = opencv_faces(cv2)
    print(f"\nface detector trained on dlib-faces (4 photos, 18 faces), tested on 5 photos "
          f"({mine['n']} faces); load average {os.getloadavg()[0]:.1f}")
    print(f"{'detector':<44} {'train s':>8} {'precision':>9} {'recall':>7} {'AP':>7}")
    print(f"{'cvcore train --model hog-detector':<44} {mine['seconds']:8.1f} "
          f"{mine['precision']:9.3f} {mine['recall']:7.3f} {mine['ap50']:7.3f}  (AP50; "
          f"AP@[.5:.95] {mine['ap']:.3f}; {mine['tp']} found, {mine['fp']} false at 0)")
    if theirs is None:
        print("dlib: not installed (pip install dlib-bin)")
    else:
        print(f"{'dlib.train_simple_object_detector':<44} {theirs['seconds']:8.1f} "
              f"{theirs['precision']:9.3f} {theirs['recall']:7.3f} {theirs['ap']:7.3f}  "
              f"(dlib's own test)")
        print(f"training time ratio dlib / cvcore: {theirs['seconds'] / mine['seconds']:.2f}")
    print(f"{'OpenCV haarcascade_frontalface_alt2':<44} {'-':>8} "
          f"{ocv['tp'] / max(ocv['tp'] + ocv['fp'], 1):9.3f} {ocv['tp'] / ocv['n']:7.3f}      "
          f"-  ({ocv['tp']} of {ocv['n']} found, {ocv['fp']} false)")
    figure(args.figure, detector, images, test, cv2)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
