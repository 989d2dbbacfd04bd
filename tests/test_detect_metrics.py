"""Average precision: COCO (= pycocotools' COCOeval) and PASCAL VOC (= their definitions)."""
import contextlib
import io

import numpy as np
import pytest

from cvcore.detect import coco_evaluate, voc_ap, voc_evaluate


def random_set(rng, n_images=6, n_classes=2, crowd=False):
    """Ground truth and noisy detections (jittered copies plus random boxes)."""
    gts, gl, gc, dets, ds, dl = [], [], [], [], [], []
    for _ in range(n_images):
        k = int(rng.integers(0, 6))
        xy = rng.uniform(0, 80, (k, 2))
        wh = rng.uniform(5, 40, (k, 2))
        g = np.hstack([xy, xy + wh])
        labels = rng.integers(0, n_classes, k)
        gts.append(g)
        gl.append(labels)
        gc.append(rng.random(k) < 0.15 if crowd else np.zeros(k, bool))
        hit = g[rng.random(k) < 0.8]
        jitter = hit + rng.normal(0, 3, hit.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        m = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, (m, 2))
        noise = np.hstack([xy, xy + rng.uniform(5, 40, (m, 2))])
        d = np.vstack([jitter, noise])
        dets.append(d)
        ds.append(rng.random(len(d)))
        dl.append(np.concatenate([labels[:len(hit)] if len(hit) == k else
                                  rng.integers(0, n_classes, len(hit)),
                                  rng.integers(0, n_classes, m)]))
    return gts, gl, gc, dets, ds, dl


def pycocotools_ap(gts, gl, gc, dets, ds, dl):
    """AP@[.5:.95], AP50, AP75 from pycocotools' COCOeval on the same boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    images, anns, results = [], [], []
    aid = 1
    for i in range(len(gts)):
        images.append({"id": i + 1, "width": 200, "height": 200})
        for b, c, crowd in zip(gts[i], gl[i], gc[i]):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": aid, "image_id": i + 1, "category_id": int(c) + 1,
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": int(crowd)})
            aid += 1
        for b, s, c in zip(dets[i], ds[i], dl[i]):
            results.append({"image_id": i + 1, "category_id": int(c) + 1,
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)})
    cats = sorted({int(c) + 1 for labels in gl for c in labels} | {1})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c, "name": str(c)} for c in cats]}
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0], ev.stats[1], ev.stats[2]


@pytest.mark.parametrize("seed", range(8))
def test_coco_equals_pycocotools(seed):
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(seed)
    data = random_set(rng, n_images=int(rng.integers(1, 10)), n_classes=int(rng.integers(1, 4)),
                      crowd=seed % 2 == 1)
    gts, gl, gc, dets, ds, dl = data
    if sum(len(d) for d in dets) == 0:
        dets[0] = gts[0][:1] if len(gts[0]) else np.array([[0., 0, 5, 5]])
        ds[0], dl[0] = np.array([0.5]), np.array([0])
    ref = pycocotools_ap(*data)
    got = coco_evaluate(gts, dets, ds, gl, dl, gt_crowd=gc)
    np.testing.assert_allclose([got.ap, got.ap50, got.ap75], ref, atol=1e-6)


def test_coco_hand_worked():
    # one object; a perfect box ranked below a false positive: precision at recall 1 is 1/2
    g = [np.array([[0.0, 0, 10, 10]])]
    d = [np.array([[50.0, 50, 60, 60], [0, 0, 10, 10]])]
    r = coco_evaluate(g, d, [np.array([0.9, 0.8])])
    assert r.ap50 == pytest.approx(0.5) and r.ap == pytest.approx(0.5)
    # no detections at all: AP 0; no ground truth at all: -1 (COCO's "absent")
    assert coco_evaluate(g, [np.zeros((0, 4))], [np.zeros(0)]).ap == 0.0
    assert coco_evaluate([np.zeros((0, 4))], d, [np.array([0.9, 0.8])]).ap == -1.0


def test_coco_errors():
    with pytest.raises(ValueError, match="det_boxes has 2 images, expected 1"):
        coco_evaluate([np.zeros((0, 4))], [np.zeros((0, 4))] * 2, [np.zeros(0)] * 2)
    with pytest.raises(ValueError, match="det_scores\\[0\\] has 1 scores for 2 boxes"):
        coco_evaluate([np.zeros((0, 4))], [np.ones((2, 4))], [np.ones(1)])


def reference_voc_ap(recall, precision, method):
    """VOC AP by its published definition (Everingham et al. 2010 sec. 4.2; VOC2012 devkit
    sec. 3.4.1): 11-point mean of the best precision at recall >= r; all-point: for each
    distinct recall level reached, its increase times the best precision at or beyond it."""
    recall, precision = list(recall), list(precision)
    if method == "11point":
        total = 0.0
        for r in [i / 10 for i in range(11)]:
            total += max([p for rc, p in zip(recall, precision) if rc >= r], default=0.0)
        return total / 11
    total, previous = 0.0, 0.0
    for r in sorted(set(recall)):
        best = max(p for rc, p in zip(recall, precision) if rc >= r)
        total += (r - previous) * best
        previous = r
    return total


@pytest.mark.parametrize("method", ["all", "11point"])
def test_voc_ap_equals_definition(rng, method):
    for _ in range(50):
        n = int(rng.integers(1, 30))
        hits = rng.random(n) < 0.6
        n_pos = int(hits.sum()) + int(rng.integers(0, 4))
        if n_pos == 0:
            continue
        tp = np.cumsum(hits)
        recall = tp / n_pos
        precision = tp / np.arange(1, n + 1)
        assert voc_ap(recall, precision, method) == pytest.approx(
            reference_voc_ap(recall, precision, method), abs=1e-12)


def reference_voc_match(gts, diff, dets, scores, threshold=0.5):
    """VOCevaldet.m's matching for one class, written out: (tp, fp) per detection in score
    order, and the number of positives."""
    from tests.test_detect_boxes import reference_iou
    entries = sorted([(-s, i, j) for i in range(len(dets)) for j, s in enumerate(scores[i])])
    taken = [[False] * len(g) for g in gts]
    tp, fp = [], []
    for _, i, j in entries:
        ious = [reference_iou(dets[i][j], g) for g in gts[i]]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= threshold:
            if diff[i][best]:
                continue
            if not taken[i][best]:
                taken[i][best] = True
                tp.append(1), fp.append(0)
            else:
                tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    return np.array(tp), np.array(fp), sum(int((~np.asarray(d, bool)).sum()) for d in diff)


@pytest.mark.parametrize("method", ["all", "11point"])
def test_voc_evaluate_equals_definition(method):
    rng = np.random.default_rng(7)
    for _ in range(10):
        gts, gl, gc, dets, ds, dl = random_set(rng, n_images=5, n_classes=1, crowd=True)
        tp, fp, n_pos = reference_voc_match(gts, gc, dets, ds)
        if n_pos == 0:
            continue
        recall = np.cumsum(tp) / n_pos
        precision = np.cumsum(tp) / np.maximum(np.cumsum(tp) + np.cumsum(fp), 1e-300)
        got = voc_evaluate(gts, dets, ds, gt_difficult=gc, method=method)
        assert got.ap == pytest.approx(reference_voc_ap(recall, precision, method), abs=1e-12)
