"""Viola-Jones cascades read from OpenCV's XML files, against cv2.CascadeClassifier."""
import numpy as np
import pytest

from cvcore.detect.cascade import HaarCascade, rgb_to_gray_opencv
from tests.conftest import dataset_path

FACES = ["2008_002470.jpg", "2009_004587.jpg"]


@pytest.fixture(scope="module")
def cv2():
    return pytest.importorskip("cv2")


@pytest.mark.parametrize("name", ["haarcascade_frontalface_alt2.xml",
                                  "haarcascade_frontalface_default.xml"])
def test_cascade_equals_opencv_on_face_photos(cv2, name):
    mine = HaarCascade(name)
    ref = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    for photo in FACES:
        bgr = cv2.imread(str(dataset_path("dlib-faces", photo)))
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for scale, neighbours in [(1.1, 3), (1.2, 0), (1.05, 2)]:
            want = np.asarray(ref.detectMultiScale(grey, scale, neighbours)).reshape(-1, 4)
            got = mine.detect_multiscale(grey, scale, neighbours)
            assert sorted(got.tolist()) == sorted(want.tolist()), (photo, scale, neighbours)
        # colour input is converted to grey as cv2.cvtColor does
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        np.testing.assert_array_equal(rgb_to_gray_opencv(rgb), grey)


def reference_cascade_window(cascade, image, x, y):
    """One window through the cascade, written out (the readable twin of
    kernels.detect.cascade_row): returns 1 (object), 0 (rejected by the first stage), -1
    (rejected later, or skipped as flat)."""
    W, H = cascade.window
    win = image[y:y + H, x:x + W].astype(np.float64)
    inner = win[1:-1, 1:-1]
    area = inner.size
    nf = area * (inner ** 2).sum() - inner.sum() ** 2
    if nf <= 0 or area * np.float32(1 / np.sqrt(nf)) >= 0.1:
        return -1
    vnf = np.float32(1 / np.sqrt(nf))
    left, right, feature, threshold = cascade._nodes
    tree_nodes, tree_leaves = cascade._trees
    first, count, stage_threshold = cascade._stages
    for st in range(len(first)):
        total = 0.0
        for t in range(first[st], first[st] + count[st]):
            idx = 0
            while True:
                n = tree_nodes[t] + idx
                value = np.float32(0)
                for (rx, ry, rw, rh), w in zip(cascade._rects[feature[n]],
                                               cascade._weights[feature[n]]):
                    value = np.float32(value + w * np.float32(win[ry:ry + rh, rx:rx + rw].sum()))
                idx = left[n] if np.float32(value * vnf) < threshold[n] else right[n]
                if idx <= 0:
                    break
            total += float(cascade._leaves[tree_leaves[t] - idx])
        if total < stage_threshold[st]:
            return 0 if st == 0 else -1
    return 1


def test_cascade_kernel_equals_twin(cv2):
    cascade = HaarCascade("haarcascade_frontalface_alt2.xml")
    grey = cv2.imread(str(dataset_path("dlib-faces", FACES[0])), cv2.IMREAD_GRAYSCALE)
    crop = np.ascontiguousarray(grey[60:140, 160:240])        # a face and its surroundings
    got = cascade.candidates(crop, scale_factor=100.0)        # scale 1 only: window step 2
    want = []
    for y in range(0, crop.shape[0] - 20 + 1, 2):
        x = 0
        while x <= crop.shape[1] - 20:
            r = reference_cascade_window(cascade, crop, x, y)
            if r == 1:
                want.append([x, y, 20, 20])
            x += 4 if r == 0 else 2                          # OpenCV skips after a stage-0 reject
    assert len(want) > 0
    assert sorted(got.tolist()) == sorted(want)


def test_cascade_min_max_size(cv2):
    name = "haarcascade_frontalface_alt2.xml"
    mine = HaarCascade(name)
    ref = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    grey = cv2.imread(str(dataset_path("dlib-faces", FACES[0])), cv2.IMREAD_GRAYSCALE)
    want = ref.detectMultiScale(grey, 1.1, 3, minSize=(40, 40), maxSize=(80, 80))
    got = mine.detect_multiscale(grey, 1.1, 3, min_size=(40, 40), max_size=(80, 80))
    assert sorted(got.tolist()) == sorted(np.asarray(want).reshape(-1, 4).tolist())


def test_cascade_no_detection_and_errors(cv2, tmp_path):
    cascade = HaarCascade("haarcascade_frontalface_alt2.xml")
    assert cascade.window == (20, 20) and cascade.n_stages == 20
    found = cascade.detect_multiscale(np.full((100, 120), 77, np.uint8))
    assert found.shape == (0, 4)
    with pytest.raises(ValueError, match="larger than the 10x30 image"):
        cascade.detect_multiscale(np.zeros((30, 10), np.uint8))
    with pytest.raises(ValueError, match="greater than 1"):
        cascade.detect_multiscale(np.zeros((30, 30), np.uint8), scale_factor=1.0)
    with pytest.raises(TypeError, match="uint8"):
        cascade.detect_multiscale(np.zeros((30, 30), np.float32))
    with pytest.raises(ValueError, match="does not exist"):
        HaarCascade(tmp_path / "none.xml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage><cascade><stageType>BOOST</stageType>"
                   "<featureType>LBP</featureType></cascade></opencv_storage>")
    with pytest.raises(ValueError, match="only HAAR"):
        HaarCascade(bad)
    with pytest.raises(ValueError, match="tilted"):
        HaarCascade("haarcascade_smile.xml")
