"""Metrics by hand and against scikit-learn; report figures are written and readable."""
import numpy as np
import pytest

from cvcore.io.atomic import atomic_write
from cvcore.train import metrics as M
from cvcore.train import report as R


def test_hand_worked_confusion_and_scores():
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0]
    cm = M.confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    precision, recall, f1, support = M.precision_recall_f1(cm)
    np.testing.assert_allclose(precision, [0.5, 2 / 3, 0.0])   # class 2 never predicted -> 0
    np.testing.assert_allclose(recall, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(f1, [0.5, 0.8, 0.0])
    assert support.tolist() == [2, 2, 1]
    assert M.accuracy(y_true, y_pred) == 0.6


def test_top_k_by_hand():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    assert M.top_k_accuracy([2, 2], scores, k=1) == 0.0
    assert M.top_k_accuracy([2, 2], scores, k=2) == 0.5
    assert M.top_k_accuracy([2, 2], scores, k=99) == 1.0   # capped at the class count


def test_against_sklearn(rng):
    skm = pytest.importorskip("sklearn.metrics")
    y = rng.integers(0, 6, 500)
    s = rng.random((500, 6))
    s[np.arange(500), y] += 0.4
    m = M.evaluate(y, s, k=3)
    p, r, f, sup = skm.precision_recall_fscore_support(y, s.argmax(1), zero_division=0)
    np.testing.assert_allclose([c["precision"] for c in m["per_class"].values()], p)
    np.testing.assert_allclose([c["recall"] for c in m["per_class"].values()], r)
    np.testing.assert_allclose([c["f1"] for c in m["per_class"].values()], f)
    assert m["top3"] == pytest.approx(skm.top_k_accuracy_score(y, s, k=3))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, s.argmax(1)).tolist()
    assert "accuracy" in M.format_report(m)


def test_metric_errors():
    with pytest.raises(ValueError, match="y_true has 2 entries but y_pred has 3"):
        M.accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="outside"):
        M.top_k_accuracy([5], np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        M.top_k_accuracy([0], np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="2 class names for 3"):
        M.evaluate([0], np.zeros((1, 3)), ["a", "b"])


def test_figures_are_written(tmp_path, rng):
    from PIL import Image
    R.plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["cat", "dog"], tmp_path / "cm.png")
    R.plot_curves([{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5},
                   {"epoch": 2, "train_loss": 0.5, "val_acc": 0.7}], tmp_path / "curves.png")
    images = rng.random((6, 8, 8))
    proba = np.tile([[0.9, 0.1]], (6, 1))
    drawn = R.plot_confident_mistakes(images, np.array([1, 1, 0, 0, 1, 0]), proba,
                                      ["cat", "dog"], tmp_path / "wrong.png", n=2)
    assert drawn == 2
    for name in ("cm.png", "curves.png", "wrong.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "curves.png", "wrong.png"]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target], "temporary file left behind"


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"x")
        assert (tmp_path / "new.bin").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "new.bin", 0o600)
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"y")
        assert (tmp_path / "new.bin").stat().st_mode & 0o777 == 0o600   # kept on replace
    finally:
        os.umask(umask)
