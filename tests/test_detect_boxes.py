"""Boxes: IoU, NMS (torchvision's rule), OpenCV's groupRectangles."""
import numpy as np
import pytest

from cvcore.detect import box_iou, group_rectangles, nms, rects_to_boxes, boxes_to_rects


def reference_iou(a, b):
    """IoU of two boxes, written out."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_nms(boxes, scores, threshold):
    """torchvision.ops.nms's rule (torchvision/csrc/ops/cpu/nms_kernel.cpp), written out:
    visit by decreasing score (a stable sort); keep a box unless a kept one overlaps it with
    IoU strictly greater than the threshold."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])       # sorted() is stable
    keep = []
    for i in order:
        if all(reference_iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


def random_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, size / 3, (n, 2))
    return np.hstack([xy, xy + wh])


def test_iou_hand_worked():
    # a 2x2 square and its shift by one column: intersection 2, union 6
    iou = box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [0, 0, 2, 2], [2, 0, 4, 2]])
    np.testing.assert_allclose(iou, [[1 / 3, 1.0, 0.0]])


def test_iou_equals_reference_and_is_symmetric(rng):
    a, b = random_boxes(rng, 30), random_boxes(rng, 20)
    iou = box_iou(a, b)
    ref = np.array([[reference_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(iou, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(box_iou(b, a), iou.T)
    assert ((iou >= 0) & (iou <= 1)).all()


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_equals_torchvision_rule(rng, threshold):
    for trial in range(20):
        n = int(rng.integers(1, 60))
        boxes = random_boxes(rng, n, size=60.0)
        scores = rng.random(n)
        if trial % 2:
            scores = np.round(scores * 4) / 4          # many ties: the stable order decides
        keep = nms(boxes, scores, threshold)
        assert keep.tolist() == reference_nms(boxes, scores, threshold)


def test_nms_strict_threshold_and_empty():
    a = [0.0, 0.0, 3.0, 1.0]
    b = [1.0, 0.0, 4.0, 1.0]                     # intersection 2, union 4: IoU exactly 0.5
    assert nms([a, b], [1.0, 0.9], 0.5).tolist() == [0, 1]      # not strictly above: kept
    assert nms([a, b], [1.0, 0.9], 0.49).tolist() == [0]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_nms_errors():
    with pytest.raises(ValueError, match="scores has 1 entries for 2 boxes"):
        nms([[0, 0, 1, 1], [0, 0, 2, 2]], [1.0], 0.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        nms([[0, 0, 1, 1]], [1.0], 1.5)
    with pytest.raises(ValueError, match="inverted"):
        nms([[2, 0, 1, 1]], [1.0], 0.5)
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        nms([[0, 0, 1]], [1.0], 0.5)


def test_rects_boxes_round_trip():
    r = np.array([[3, 4, 10, 20], [0, 0, 1, 1]])
    np.testing.assert_array_equal(rects_to_boxes(r), [[3, 4, 13, 24], [0, 0, 1, 1]])
    np.testing.assert_array_equal(boxes_to_rects(rects_to_boxes(r)), r)


def test_group_rectangles_hand_worked():
    # two similar rectangles (each side within 0.2 * 20 = 4) and a lone one
    r, n = group_rectangles([[10, 10, 20, 20], [12, 10, 20, 22], [50, 50, 5, 5]], 1)
    assert r.tolist() == [[11, 10, 20, 21]] and n.tolist() == [2]
    # group_threshold 0 returns the input unchanged
    r, n = group_rectangles([[10, 10, 20, 20], [12, 10, 20, 22]], 0)
    assert r.tolist() == [[10, 10, 20, 20], [12, 10, 20, 22]] and n.tolist() == [1, 1]
    r, n = group_rectangles(np.zeros((0, 4), int), 2)
    assert r.shape == (0, 4) and n.shape == (0,)


def test_group_rectangles_equals_opencv(rng):
    cv2 = pytest.importorskip("cv2")
    for trial in range(40):
        # clusters of jittered rectangles, some nested, as a detector produces them
        centres = rng.integers(0, 200, (int(rng.integers(1, 6)), 2))
        rects = []
        for cx, cy in centres:
            size = int(rng.integers(10, 60))
            for _ in range(int(rng.integers(1, 8))):
                s = size + int(rng.integers(-3, 4))
                rects.append([cx + int(rng.integers(-3, 4)), cy + int(rng.integers(-3, 4)), s, s])
        rects = np.array(rects, np.int64)
        for threshold in (1, 2, 3):
            for eps in (0.2, 0.5):
                ref, ref_w = cv2.groupRectangles(rects.astype(np.int32).tolist(), threshold, eps)
                got, got_w = group_rectangles(rects, threshold, eps)
                ref = np.asarray(ref).reshape(-1, 4)
                assert got.tolist() == ref.tolist()
                assert got_w.tolist() == np.asarray(ref_w).reshape(-1).tolist()


def test_group_rectangles_with_scores_keeps_best():
    r, w = group_rectangles([[10, 10, 20, 20], [11, 10, 20, 20], [10, 11, 20, 20]], 1,
                            scores=[0.5, 2.0, 1.0])
    assert r.tolist() == [[10, 10, 20, 20]] and w.tolist() == [2.0]
    with pytest.raises(ValueError, match="scores has 1 entries"):
        group_rectangles([[0, 0, 1, 1], [0, 0, 1, 1]], 1, scores=[1.0])
    with pytest.raises(TypeError, match="dtype"):
        group_rectangles([[0.5, 0, 1, 1]], 1)
