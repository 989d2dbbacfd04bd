"""Calibration (ECE, temperature scaling), the reject option and test-time augmentation."""
import json

import numpy as np
import pytest

from cvcore.classify.calibration import (LOG_T_BOUNDS, fit_temperature, nll, succession_targets,
                                         temperature_scale)
from cvcore.train import metrics as M


# -- ECE against its definition ----------------------------------------------------------------

def ece_by_definition(y, proba, n_bins=15):
    """Guo et al. 2017, eq. 3, written as it reads: a loop over the bins ((m-1)/M, m/M]."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for m in range(n_bins):
        lo, hi = edges[m], edges[m + 1]
        in_bin = [i for i in range(len(y)) if lo < conf[i] <= hi]
        if in_bin:
            acc = np.mean([correct[i] for i in in_bin])
            avg = np.mean([conf[i] for i in in_bin])
            total += len(in_bin) / len(y) * abs(acc - avg)
    return total


def adaptive_ece_by_definition(y, proba, n_bins=15):
    """Equal-mass bins: sorted confidences cut into n_bins runs of sizes differing by one."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    order = sorted(range(len(y)), key=lambda i: conf[i])
    n = len(y)
    base, extra = divmod(n, n_bins)
    total, start = 0.0, 0
    for m in range(n_bins):
        size = base + (1 if m < extra else 0)
        chunk = order[start:start + size]
        start += size
        if chunk:
            total += len(chunk) / n * abs(np.mean([correct[i] for i in chunk])
                                          - np.mean([conf[i] for i in chunk]))
    return total


def random_proba(rng, n, k, sharp=3.0):
    z = rng.normal(size=(n, k)) * sharp
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_equals_the_definition(rng, n_bins):
    proba = random_proba(rng, 700, 4)
    y = rng.integers(0, 4, 700)
    assert M.expected_calibration_error(y, proba, n_bins) == pytest.approx(
        ece_by_definition(y, proba, n_bins), abs=1e-12)
    assert M.adaptive_calibration_error(y, proba, n_bins) == pytest.approx(
        adaptive_ece_by_definition(y, proba, n_bins), abs=1e-12)


def test_ece_bins_confidences_on_the_edges_as_the_definition():
    """A confidence exactly on an edge m/M belongs to the bin below ((m-1)/M, m/M]: 0.2 * 15
    is 3.0000000000000004 in floating point, so ceil(c * M) would put it one bin too high."""
    conf = np.array([0.2, 1 / 3, 0.6, 0.8, 1.0, 0.4, 2 / 15])
    proba = np.hstack([conf[:, None], np.repeat((1 - conf[:, None]) / 9, 9, axis=1)])
    assert (proba.argmax(1) == 0).all()              # the top-1 confidence is conf
    y = np.array([0, 1, 0, 1, 0, 0, 1])
    assert M.expected_calibration_error(y, proba) == pytest.approx(
        ece_by_definition(y, proba), abs=1e-15)
    bins = M.reliability_bins(y, proba)
    assert bins["count"].sum() == 7 and bins["count"][2] == 1   # 0.2 in (2/15, 3/15]


def test_ece_hand_worked():
    # two bins used: 0.9 (2 right of 2: gap 0.1) and 0.6 (1 right of 2: gap 0.1) -> ECE 0.1
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 0, 0, 0])
    assert M.expected_calibration_error(y, proba) == pytest.approx(0.1)
    assert M.evaluate(y, proba)["ece"] == pytest.approx(0.1)
    assert "ece" not in M.evaluate(y, proba * 3)     # scores that are not probabilities


def test_calibration_input_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.expected_calibration_error([0], np.array([[1.5, -0.5]]))
    with pytest.raises(ValueError, match="y_true has 1 entries but proba has 2"):
        M.expected_calibration_error([0], np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="n_bins"):
        M.expected_calibration_error([0], np.full((1, 2), 0.5), n_bins=0)


# -- temperature scaling -----------------------------------------------------------------------

def test_fit_temperature_recovers_a_known_temperature(rng):
    z = rng.normal(size=(6000, 5)) * 2
    y = np.array([rng.choice(5, p=row) for row in temperature_scale(z, 1.0)])
    for true_t in (0.5, 3.0):
        assert fit_temperature(z * true_t, y) == pytest.approx(true_t, rel=0.08)


def test_temperature_minimises_nll_and_keeps_the_top_class(rng):
    z = rng.normal(size=(2000, 6)) * 2
    y = np.array([rng.choice(6, p=row) for row in temperature_scale(z, 1.0)])
    over = 4 * z                                      # an over-confident model
    t = fit_temperature(over, y)
    for other in (t * 0.9, t * 1.1):
        assert nll(over, y, t) < nll(over, y, other)
    before, after = temperature_scale(over, 1.0), temperature_scale(over, t)
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
    assert M.expected_calibration_error(y, after) < 0.5 * M.expected_calibration_error(y, before)


def test_temperature_stays_finite_when_every_held_out_sample_is_right(rng):
    # Hard-target NLL has no minimum here (it falls as T -> 0): the smoothed targets give a
    # finite T whose mean confidence is close to the rule of succession's (N + 1) / (N + 2).
    for n in (20, 100, 1000):
        y = rng.integers(0, 4, n)
        z = rng.normal(size=(n, 4))
        z[np.arange(n), y] = z.max(1) + rng.uniform(1, 6, n)
        assert (z.argmax(1) == y).all()
        t = fit_temperature(z, y)
        assert np.exp(LOG_T_BOUNDS[0]) * 10 < t < np.exp(LOG_T_BOUNDS[1]) / 10
        top = temperature_scale(z, t).max(1)
        assert abs(top.mean() - (n + 1) / (n + 2)) < 0.05
        # the plain NLL (Guo et al.) sharpens toward hard votes: T far below the smoothed one
        assert fit_temperature(z, y, targets="onehot") < 0.5 * t


def test_succession_targets_rows_are_distributions():
    t = succession_targets(np.array([2, 0, 1, 2]), 3)
    np.testing.assert_allclose(t.sum(1), 1.0)
    np.testing.assert_allclose(t[[0, 1, 2, 3], [2, 0, 1, 2]], 5 / 6)
    np.testing.assert_allclose(t[0, :2], 1 / 12)
    with pytest.raises(ValueError, match="class indices"):
        succession_targets(np.array([0, -1]), 3)
    with pytest.raises(ValueError, match="n_classes"):
        succession_targets(np.array([0]), 0)
    with pytest.raises((TypeError, ValueError), match="labels"):
        succession_targets(np.array([0.5]), 2)


def test_temperature_errors():
    with pytest.raises(ValueError, match="labels must be class indices"):
        fit_temperature(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="temperature must be positive"):
        temperature_scale(np.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ValueError, match="targets must be"):
        fit_temperature(np.zeros((2, 3)), [0, 1], targets="soft")


@pytest.fixture(scope="module")
def tiny_cnn():
    """A ResNet-20 with random weights on 12x12 grey images (no training needed to test the
    plumbing), calibrated on random labels."""
    from cvcore import nn
    from cvcore.train.pipeline import TrainedModel
    rng = np.random.default_rng(3)
    net = nn.resnet20(num_classes=3, in_channels=1, rng=rng)
    model = TrainedModel("resnet20", ["a", "b", "c"], (12, 12), "gray", {},
                         {"mean": np.array([0.4], np.float32), "std": np.array([0.3], np.float32),
                          "state_dict": dict(net.state_dict())})
    x = rng.integers(0, 256, (40, 12, 12), dtype=np.uint8)
    y = rng.integers(0, 3, 40)
    return model, x, y


def test_cnn_calibration_is_stored_applied_and_keeps_top1(tiny_cnn, tmp_path):
    from cvcore.train.pipeline import load_model
    model, x, y = tiny_cnn
    raw = model.predict_proba(x)
    info = model.calibrate(x, y)
    assert info["temperature"] == model.temperature != 1.0
    assert info["nll_after"] <= info["nll_before"] + 1e-12
    cal = model.predict_proba(x)
    np.testing.assert_array_equal(cal.argmax(1), raw.argmax(1))
    np.testing.assert_allclose(model.predict_proba(x, calibrated=False), raw, rtol=1e-12)
    np.testing.assert_allclose(cal, temperature_scale(model.scores(x), model.temperature))
    model.save(tmp_path / "model.npz")
    again = load_model(tmp_path / "model.npz")
    assert again.temperature == model.temperature
    np.testing.assert_allclose(again.predict_proba(x), cal, rtol=1e-6)
    metrics, proba, uncal = again.assess(x, y, min_confidence=0.5)
    assert metrics["calibration"]["temperature"] == model.temperature
    assert metrics["selective"]["coverage"] == pytest.approx(np.mean(cal.max(1) >= 0.5))
    np.testing.assert_allclose(uncal, raw, rtol=1e-6)


@pytest.fixture(scope="module")
def hog_linear():
    """HOG + softmax regression on 400 embedded images, calibrated on a held-out quarter."""
    from cvcore.io.datasets import load_embedded
    from cvcore.train.pipeline import train_hog_model
    data = load_embedded()
    model = train_hog_model("hog-linear", data.x_train[:400], data.y_train[:400],
                            data.class_names, log=lambda m: None, calibration_fraction=0.25)
    return model, data


def test_hog_linear_calibration_refit_keeps_the_temperature(hog_linear):
    model, data = hog_linear
    cal = model.params["calibration"]
    assert cal["refit"] and cal["temperature"] == model.temperature != 1.0
    assert cal["nll_after"] < cal["nll_before"]     # what the temperature minimises
    p = model.predict_proba(data.x_test[:100])
    np.testing.assert_array_equal(p.argmax(1),
                                  model.predict_proba(data.x_test[:100], calibrated=False).argmax(1))
    with pytest.raises(ValueError, match="trained on unaugmented images"):
        model.predict_proba(data.x_test[:2], tta=True)


# -- test-time augmentation -------------------------------------------------------------------

def test_tta_views_are_the_training_flips_and_crops():
    from cvcore.train.tta import tta_views
    x = np.random.default_rng(0).random((2, 1, 6, 6)).astype(np.float32)
    views = list(tta_views(x, padding=4, shift=2))
    assert len(views) == 10
    np.testing.assert_array_equal(views[0], x)
    np.testing.assert_array_equal(views[1], x[..., ::-1])
    # offset (-2, -2): the window starts 2 pixels above and left of the image
    np.testing.assert_array_equal(views[2][..., 2:, 2:], x[..., :4, :4])
    assert (views[2][..., :2, :] == 0).all() and (views[2][..., :, :2] == 0).all()
    np.testing.assert_array_equal(views[9][..., :4, 2:], x[..., 2:, 2:][..., ::-1])
    assert len(list(tta_views(x, padding=0, flip=True))) == 2


def test_tta_is_the_mean_over_views(tiny_cnn):
    from cvcore.train.tta import tta_views
    model, x, _ = tiny_cnn
    tta = model.predict_proba(x[:5], tta=True)
    np.testing.assert_allclose(tta.sum(1), 1.0, rtol=1e-12)
    mean, std = model.arrays["mean"], model.arrays["std"]
    x01 = model.network_input(x[:5]) * std + mean
    expected = np.mean([temperature_scale(model._network()(((v - mean) / std)
                                                           .astype(np.float32)),
                                          model.temperature)
                        for v in tta_views(x01, padding=4)], axis=0)
    np.testing.assert_allclose(tta, expected, rtol=1e-5, atol=1e-7)
    model.params["augment"] = {"padding": 0, "flip": False}
    try:
        with pytest.raises(ValueError, match="--no-augment"):
            model.predict_proba(x[:2], tta=True)
    finally:
        del model.params["augment"]


# -- the reject option ---------------------------------------------------------------------

def test_reject_and_selective_accuracy_by_hand():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    assert M.reject(proba, 0.6).tolist() == [0, 0, 1, M.UNKNOWN]
    sel = M.selective_accuracy(y, proba, 0.6)
    assert sel == {"min_confidence": 0.6, "coverage": 0.75, "accuracy": pytest.approx(2 / 3),
                   "rejected": 1}
    assert M.selective_accuracy(y, proba, 0.0)["coverage"] == 1.0
    assert np.isnan(M.selective_accuracy(y, proba, 1.0)["accuracy"])


def test_accuracy_coverage_curve_against_brute_force(rng):
    proba = random_proba(rng, 300, 3, sharp=1.0)
    proba[:20] = proba[0]                     # a tie group
    y = rng.integers(0, 3, 300)
    curve = M.accuracy_coverage_curve(y, proba)
    assert curve["coverage"][-1] == 1.0 and np.all(np.diff(curve["coverage"]) > 0)
    for cov, acc, t in zip(curve["coverage"], curve["accuracy"], curve["threshold"]):
        sel = M.selective_accuracy(y, proba, t)
        assert sel["coverage"] == pytest.approx(cov) and sel["accuracy"] == pytest.approx(acc)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_threshold_outside_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match=r"min_confidence must be in \[0, 1\]"):
        M.reject(np.full((1, 2), 0.5), bad)
    with pytest.raises(TypeError):
        M.check_min_confidence("0.5")


def run_cli(capsys, *args):
    """The command in this process (a subprocess per call would pay the imports each time)."""
    from cvcore.cli import main
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_reject_option_and_errors(tmp_path, capsys, hog_linear):
    """predict/eval with --min-confidence; a bad threshold or --tta on a HOG model is one line."""
    from cvcore.io.images import imwrite
    model, data = hog_linear
    model.save(tmp_path / "model.npz")
    image = tmp_path / "one.png"
    imwrite(image, data.x_test[0])
    weights = tmp_path / "model.npz"
    code, out, err = run_cli(capsys, "predict", image, "--weights", weights,
                             "--min-confidence", 1.0, "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["label"] == "unknown" and answer["confidence"] < 1.0
    code, out, err = run_cli(capsys, "predict", image, "--weights", weights,
                             "--min-confidence", 0)
    assert code == 0 and "unknown" not in out
    for args, text in ((["--min-confidence", 1.5], "min_confidence must be in [0, 1], got 1.5"),
                       (["--tta"], "trained on unaugmented images")):
        code, out, err = run_cli(capsys, "eval", weights, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert err.startswith("cvcore: error:") and text in err
    code, out, err = run_cli(capsys, "eval", weights, "--min-confidence", 0.8, "--json",
                             "--out", tmp_path / "report")
    assert code == 0, err
    line = json.loads(out.strip().splitlines()[-1])
    assert 0 < line["selective"]["coverage"] < 1 and line["ece"] < 0.5
    assert line["calibration"]["temperature"] == model.temperature
    for name in ("reliability.png", "coverage.png"):
        assert (tmp_path / "report" / name).stat().st_size > 5000
    assert "reject below confidence 0.800" in (tmp_path / "report" / "report.txt").read_text()
