"""Regression tests for the unchecked paths into the kernels (issue 11).

Each test names the bug it pins down. Before the fix, the crashing cases killed the interpreter
(a segmentation fault in a Numba kernel, which does no bounds checks), so the ones that crashed
run in a child process here: a regression shows as a dead child, not as a dead test run.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repository root; return the finished process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def assert_refused_in_child(code: str, exc: str, fragment: str):
    """``code`` must end with ``exc`` (ValueError/TypeError) whose message holds ``fragment``:
    not a signal (negative return code), not a silent result."""
    r = run_child(code)
    assert r.returncode == 1, f"child exited {r.returncode} (negative: killed by a signal)\n" \
                              f"{r.stdout}\n{r.stderr}"
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(exc + ":") and fragment in last, last


# -- segmentation faults ----------------------------------------------------------------------

def test_nan_image_into_orientation_histogram_is_refused_not_a_segfault():
    # NaN gradients have no direction: atan2(NaN, NaN) cast to int is an arbitrary bin index,
    # and the vote was written far outside the 36-bin histogram.
    assert_refused_in_child("""
        import numpy as np
        from cvcore.features import orientation_histogram
        im = np.random.default_rng(0).random((40, 40)).astype(np.float32)
        im[20, 20] = np.nan
        orientation_histogram(im, 20, 20, 2.0)
    """, "ValueError", "NaN")


def test_gradient_longer_than_cached_forward_into_relu_backward_is_refused():
    # The kernel loops over dy and reads the cached output at the same index: a dy of 10^7
    # values against a cache of 10 read (and wrote dx) 10^7 elements past the end.
    assert_refused_in_child("""
        import numpy as np
        from cvcore.nn import relu_forward, relu_backward
        y, cache = relu_forward(np.ones(10, np.float32))
        relu_backward(np.ones(10_000_000, np.float32), cache)
    """, "ValueError", "forward output had (10,)")


def test_linear_weight_not_matching_input_is_refused():
    # The dot-product kernel takes the inner length from one operand and reads the other as
    # if it were as long: out-of-bounds reads, then a SystemError from the dispatcher.
    assert_refused_in_child("""
        import numpy as np
        from cvcore.nn import linear_forward
        linear_forward(np.ones((4, 100), np.float32), np.ones((10, 3000), np.float32))
    """, "ValueError", "w.shape[1] = 3000")


def test_maxpool_backward_with_a_foreign_gradient_is_refused():
    from cvcore.nn import maxpool2d_backward, maxpool2d_forward
    _, cache = maxpool2d_forward(np.ones((1, 1, 4, 4), np.float32), 2)
    with pytest.raises(ValueError, match="forward output had"):
        maxpool2d_backward(np.ones((1, 1, 40, 40), np.float32), cache)
    bad = cache._replace(argmax=np.full_like(cache.argmax, 10_000))
    with pytest.raises(ValueError, match="outside the 4x4 input plane"):
        maxpool2d_backward(np.ones((1, 1, 2, 2), np.float32), bad)


def test_backward_refuses_a_cache_of_another_layer():
    from cvcore.nn import linear_backward, relu_forward
    _, cache = relu_forward(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="LinearCache"):
        linear_backward(np.ones((2, 3), np.float32), cache)


def test_every_functional_backward_checks_dy_against_its_cache():
    from cvcore import nn
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    g, b = np.ones(3, np.float32), np.zeros(3, np.float32)
    pairs = [
        (nn.batchnorm2d_train_forward(x, g, b), nn.batchnorm2d_train_backward),
        (nn.batchnorm2d_eval_forward(x, g, b, np.zeros(3), np.ones(3)),
         nn.batchnorm2d_eval_backward),
        (nn.avgpool2d_forward(x, 2), nn.avgpool2d_backward),
        (nn.adaptive_avgpool2d_forward(x, 2), nn.adaptive_avgpool2d_backward),
        (nn.linear_forward(x, np.ones((4, 6), np.float32)), nn.linear_backward),
        (nn.dropout_forward(x, 0.5, np.random.default_rng(1)), nn.dropout_backward),
        (nn.flatten_forward(x), nn.flatten_backward),
        (nn.conv2d_forward(x, np.ones((4, 3, 3, 3), np.float32)), nn.conv2d_backward),
    ]
    for (y, cache), backward in pairs:
        wrong = np.ones((y.shape[0] + 1,) + y.shape[1:], np.float32)
        with pytest.raises(ValueError):
            backward(wrong, cache)
        out = backward(np.ones_like(y), cache)           # the right shape still works
        dx = out[0] if isinstance(out, tuple) else out
        assert dx.shape == x.shape and np.isfinite(dx).all()


# -- silent garbage ---------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [1e-200, 5e-324])
def test_tiny_positive_sigma_is_the_identity_not_all_nan(sigma):
    # exp(-x^2 / (2 sigma^2)) with sigma^2 underflowing to 0 gave 0/0 = NaN at the centre tap,
    # and the normalised kernel was NaN everywhere. The limit sigma -> 0 is the identity.
    from cvcore.features._sift import gaussian_blur
    from cvcore.preprocess import gaussian
    image = np.random.default_rng(0).random((8, 9)).astype(np.float32)
    np.testing.assert_array_equal(gaussian(image, sigma), image)
    np.testing.assert_array_equal(gaussian_blur(image, sigma), image)


def test_finite_float64_beyond_float32_is_refused_not_inf():
    # 1e300 is finite in float64 and becomes inf in float32, cvcore's working precision.
    from cvcore.preprocess import gaussian, sobel
    with pytest.raises(ValueError, match="float32's range"):
        sobel(np.full((8, 8), 1e300))
    with pytest.raises(ValueError, match="float32's range"):
        gaussian(np.zeros((8, 8), np.float32), 1.0, mode="constant", cval=1e300)


def test_median_window_that_never_returned_is_refused_with_a_limit():
    # A 2000x2000 window built a sorting network of ~4e6 slots in Python: it never returned.
    from cvcore.preprocess import median
    with pytest.raises(ValueError, match="above the limit"):
        median(np.zeros((8, 8), np.float32), size=2000)
    assert median(np.zeros((8, 8), np.float32), size=33).shape == (8, 8)   # at the limit


def test_huge_sigma_is_refused_with_a_limit_not_a_memory_error():
    from cvcore.features._sift import gaussian_kernel
    from cvcore.preprocess import gaussian
    with pytest.raises(ValueError, match="above the limit"):
        gaussian(np.zeros((4, 4), np.float32), 1e12)
    with pytest.raises(ValueError, match="above the limit"):
        gaussian_kernel(1e12)


def test_hand_built_scale_space_and_keypoints_are_checked():
    from cvcore.features import Keypoints, ScaleSpace, describe_keypoints, detect_keypoints
    from cvcore.features import gaussian_scale_space
    space = gaussian_scale_space(np.random.default_rng(0).random((32, 32)).astype(np.float32))
    broken = space._replace(gauss=[space.gauss[0][:2]])
    with pytest.raises(ValueError, match="n_scales"):
        detect_keypoints(broken)
    kp = Keypoints.from_xy([[5.0, 5.0]], size=[4.0])
    with pytest.raises(ValueError, match="entries for 1 keypoints"):
        describe_keypoints(space, dataclasses.replace(kp, size=np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="beyond"):
        describe_keypoints(space, dataclasses.replace(kp, xy=np.array([[1e30, 5.0]], np.float32)))
    assert describe_keypoints(space, kp).shape == (1, 128)


# -- model files, the command, temporary files ------------------------------------------------

def _tiny_hog_model(tmp_path):
    from cvcore.train.pipeline import train_hog_model
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    y = np.arange(30) % 3
    model = train_hog_model("hog-linear", x, y, ["a", "b", "c"], log=lambda *a: None)
    path = tmp_path / "model.npz"
    model.save(path)
    return path


def _tamper(path, key, value):
    """Rewrite one array of a model file (found by its dotted name in the state tree)."""
    from cvcore.train.checkpoint import load_state, save_state
    state = load_state(path)
    node = state
    *parents, last = key.split(".")
    for p in parents:
        node = node[p]
    node[last] = value
    save_state(path, state)


@pytest.mark.parametrize("key,value,fragment", [
    ("arrays.feature_std", np.ones(5, np.float32), "arrays.feature_std has shape (5,)"),
    ("arrays.feature_mean", None, "arrays.feature_mean must be an array"),
    ("arrays.classifier.coef_", np.ones((3, 7), np.float32), "arrays.classifier.coef_"),
    ("arrays.classifier.classes_", np.array([0, 2, 3]), "arrays.classifier.classes_"),
    ("class_names", ["a", "b"], "arrays.classifier.classes_"),
])
def test_tampered_model_file_is_refused_naming_the_array(tmp_path, key, value, fragment):
    # Before: a model.npz with a wrong-length array loaded, and predicted nonsense (or crashed
    # in the classifier); now load_model checks the file against its kind's schema.
    from cvcore.train.pipeline import load_model
    path = _tiny_hog_model(tmp_path)
    load_model(path)                                   # the untouched file loads
    _tamper(path, key, value)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_model(path)


def test_tampered_model_is_one_line_from_predict_and_eval(tmp_path, capsys):
    from cvcore.cli import main
    from cvcore.io import imwrite
    path = _tiny_hog_model(tmp_path)
    _tamper(path, "arrays.feature_std", np.ones(5, np.float32))
    img = tmp_path / "x.png"
    imwrite(img, np.zeros((28, 28), np.uint8))
    for argv in (["predict", str(img), "--weights", str(path)], ["eval", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("cvcore: error:") and \
            "arrays.feature_std" in err[0], err


def test_a_class_with_no_readable_image_is_an_error_before_training_and_no_model_is_written(
        tmp_path, capsys):
    # Before: a class folder whose images were all unreadable left a label with no training
    # image; the classifier had fewer outputs than class names, model.npz was written, and
    # only the evaluation failed (the saved model's class names were shifted).
    from cvcore.cli import main
    from cvcore.io import imwrite
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(6):
            imwrite(tmp_path / "data" / cls / f"{i}.png",
                    rng.integers(0, 256, (16, 16), dtype=np.uint8))
    (tmp_path / "data" / "c").mkdir()
    for i in range(3):
        (tmp_path / "data" / "c" / f"{i}.png").write_bytes(b"not an image")
    out = tmp_path / "run"
    assert main(["train", "--model", "hog-linear", "--data", str(tmp_path / "data"),
                 "--out", str(out), "--gray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cvcore: error:") and "'c'" in err[-1], err
    assert not (out / "model.npz").exists()


def test_a_fifo_is_refused_without_blocking(tmp_path, capsys):
    from cvcore.cli import main
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    weights = tmp_path / "w.npz"
    os.mkfifo(weights)
    assert main(["predict", str(fifo), "--weights", str(_tiny_hog_model(tmp_path))]) == 2
    assert "named pipe" in capsys.readouterr().err
    assert main(["eval", str(weights)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "named pipe" in err[0]


def test_temporaries_of_a_killed_atomic_write_are_removed_by_the_next_write(tmp_path):
    from cvcore.io.atomic import atomic_write
    # A write killed before its rename leaves .<name>.<pid>.<random>.tmp; pid 2^22+1 is above
    # Linux's default pid_max, so no live process owns it. A live writer's file stays.
    dead = tmp_path / f".model.npz.{2 ** 22 + 1}.abc.tmp"
    live = tmp_path / f".model.npz.{os.getppid()}.abc.tmp"
    dead.write_bytes(b"half")
    live.write_bytes(b"busy")
    with atomic_write(tmp_path / "model.npz") as f:
        f.write(b"ok")
    assert not dead.exists() and live.exists()
    assert (tmp_path / "model.npz").read_bytes() == b"ok"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "model.npz"])


def test_apply_homography_checks_its_matrix():
    # Found by the fuzzing harness: a singular H (all zeros) mapped every point to NaN, and a
    # 2x2 "H" raised IndexError.
    from cvcore.match import apply_homography
    pts = np.array([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="singular"):
        apply_homography(np.zeros((3, 3)), pts)
    with pytest.raises(ValueError, match="3x3"):
        apply_homography(np.eye(2), pts)
    np.testing.assert_allclose(apply_homography(np.eye(3), pts), pts)


def test_resuming_with_a_different_model_is_one_clear_error(tmp_path):
    # Before: a KeyError from load_state_dict, a traceback from the command.
    from cvcore import nn
    from cvcore.train.loop import TrainConfig, Trainer
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    y = np.arange(8) % 2
    config = TrainConfig(epochs=1, batch_size=4, lr=0.01, seed=0)
    Trainer(nn.resnet20(num_classes=2, in_channels=1), config, out_dir=tmp_path,
            progress=False).fit(x, y)
    other = Trainer(nn.resnet20(num_classes=3, in_channels=1), config, out_dir=tmp_path,
                    progress=False)
    with pytest.raises(ValueError, match="different model"):
        other.fit(x, y, resume=True)


def test_sift_refuses_finite_intensities_that_overflow_its_gradients():
    # Found by the fuzzing harness (features.describe_at): a float32 image holding 3.3e38 is
    # finite, but its gradients overflow to inf, the descriptor's directions become NaN, and
    # int(NaN) in the kernel gave a ZeroDivisionError/SystemError (an arbitrary bin index in
    # general: a write outside the histogram).
    from cvcore.features import Keypoints, orientation_histogram, sift
    img = np.random.default_rng(0).random((23, 27)).astype(np.float32)
    img[5, 5] = 3.3e38
    with pytest.raises(ValueError, match="intensities in 0..1"):
        sift(img, keypoints=Keypoints.from_xy([[10.0, 10.0]], [25.0]))
    with pytest.raises(ValueError, match="intensities in 0..1"):
        orientation_histogram(img, 5, 5, 2.0)


def test_predict_scales_16_bit_images_as_training_does(tmp_path, capsys):
    # Before: `cvcore predict` clipped a uint16 image to 0..255 (nearly all white) while
    # training scaled it by 255/65535; both now go through cvcore.io.datasets.decode_image.
    import json

    from cvcore.cli import main
    from cvcore.io import imwrite
    from cvcore.io.datasets import decode_image
    from cvcore.train.pipeline import load_model
    weights = _tiny_hog_model(tmp_path)
    img16 = (np.random.default_rng(1).random((28, 28)) * 65535).astype(np.uint16)
    imwrite(tmp_path / "x16.png", img16)
    assert main(["predict", str(tmp_path / "x16.png"), "--weights", str(weights), "--json",
                 "--top", "3"]) == 0
    top = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top"]
    as_trained = decode_image(tmp_path / "x16.png", "gray")
    np.testing.assert_array_equal(as_trained, np.rint(img16 / 257.0).astype(np.uint8))
    proba = load_model(weights).predict_proba([as_trained])[0]
    assert [t["class"] for t in top] == [["a", "b", "c"][i] for i in np.argsort(-proba,
                                                                                 kind="stable")]
    np.testing.assert_allclose([t["probability"] for t in top], np.sort(proba)[::-1], rtol=1e-6)


def test_sift_refuses_an_absurd_number_of_scales_instead_of_hanging():
    # Found by the fuzzing harness: n_scales = 2^62 built a list of 2^62 blur increments (a
    # hang, then the kernel's OOM killer).
    from cvcore.features import gaussian_scale_space, sift
    img = np.zeros((34, 30), np.float32)
    with pytest.raises(ValueError, match="above the limit"):
        sift(img, n_scales=2 ** 62)
    with pytest.raises(ValueError, match="above the limit"):
        gaussian_scale_space(img, n_scales=65)


def test_validation_split_never_holds_out_all_of_a_class(tmp_path, capsys):
    # Before: --val-fraction 0.6 put the only image of a class into the validation split
    # (round(0.6 * 1) = 1), and training stopped with "class 'c' has no readable training
    # image", which was readable. The split now keeps at least one image of every class.
    from cvcore.cli import _split_val
    from cvcore.io import imwrite
    y = np.array([0] * 6 + [1] * 6 + [2] + [3] * 2)
    data = type("D", (), {"x_train": np.arange(len(y)), "y_train": y})()
    xt, yt, xv, yv = _split_val(data, 0.9, seed=0)
    assert set(yt.tolist()) == {0, 1, 2, 3}
    assert np.bincount(yv, minlength=4).tolist() == [5, 5, 0, 1]
    assert sorted(np.concatenate([xt, xv]).tolist()) == list(range(len(y)))
    # through the command: a CNN run with a one-image class trains and writes its model
    from cvcore.cli import main
    rng = np.random.default_rng(0)
    for cls, n in (("a", 4), ("b", 4), ("c", 1)):
        for split, count in (("train", n), ("test", 1)):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(count):
                imwrite(tmp_path / "data" / split / cls / f"{i}.png",
                        rng.integers(0, 256, (8, 8), dtype=np.uint8))
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet20", "--data", str(tmp_path / "data"), "--gray",
                 "--size", "8", "8", "--epochs", "1", "--batch-size", "4",
                 "--val-fraction", "0.6", "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "model.npz").exists()


def _model_file(tmp_path, kind):
    """A small, untrained model of a newer kind, saved as ``cvcore train`` saves it."""
    from cvcore import nn
    from cvcore.detect.hog_detector import HOGDetector
    from cvcore.detect.training import ObjectDetector
    from cvcore.features import HOGDescriptor
    from cvcore.train.pipeline import TrainedModel
    if kind == "hog-detector":
        desc = HOGDescriptor(win_size=(48, 48), block_size=(16, 16), block_stride=(8, 8),
                             cell_size=(8, 8), nbins=9)
        det = ObjectDetector(HOGDetector(desc, np.zeros(desc.descriptor_size, np.float32), 0.1),
                             (8, 8, 40, 40))
        params, arrays = det.state()
        model = TrainedModel(kind, ["face"], (48, 48), "gray", {"detector": params},
                             {"detector": arrays})
    else:
        net = nn.efficientnet_lite0(num_classes=2, in_channels=3)
        model = TrainedModel(kind, ["a", "b"], (32, 32), "rgb",
                             {"preprocess": {"crop_fraction": 0.875}},
                             {"mean": np.full(3, 0.5, np.float32),
                              "std": np.full(3, 0.25, np.float32),
                              "state_dict": dict(net.state_dict())})
    path = tmp_path / "model.npz"
    model.save(path)
    return path


@pytest.mark.parametrize("kind,key,value,fragment", [
    ("hog-detector", "arrays.detector.weights", np.ones(5, np.float32), "arrays.detector.weights"),
    ("hog-detector", "arrays.detector.weights", np.full(900, np.nan, np.float32),
     "arrays.detector.weights holds NaN"),
    ("hog-detector", "params.detector.win_size", [48, 7], "window is 7 x 48"),
    ("hog-detector", "params.detector.scale", 0.5, "params.detector.scale"),
    ("hog-detector", "params.detector.object_box", [1, 2], "params.detector.object_box"),
    ("hog-detector", "size", [10, 10], "size is [10, 10]"),
    ("efficientnet-lite0", "arrays.mean", np.ones(1, np.float32), "arrays.mean"),
    ("efficientnet-lite0", "params.preprocess.crop_fraction", -1.0,
     "params.preprocess.crop_fraction"),
])
def test_tampered_files_of_the_newer_model_kinds_are_refused_in_one_line(
        tmp_path, capsys, kind, key, value, fragment):
    # Before: a hog-detector file had no schema (a NaN bias or a 2-value object box loaded and
    # failed later with a message naming neither file nor field; a wrong size loaded and ran),
    # and an EfficientNet file's crop fraction was not checked.
    from cvcore.cli import main
    from cvcore.io import imwrite
    from cvcore.train.pipeline import load_model
    path = _model_file(tmp_path, kind)
    load_model(path)
    _tamper(path, key, value)
    img = tmp_path / "x.png"
    imwrite(img, np.zeros((64, 64, 3), np.uint8))
    command = ["detect", str(img), "--weights", str(path), "--out", str(tmp_path / "p")] \
        if kind == "hog-detector" else ["predict", str(img), "--weights", str(path)]
    for argv in (command, ["eval", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("cvcore: error:") and fragment in err[0], err


# -- found by the fuzzing harness over the rooms added later ----------------------------------

def test_clip_rects_checks_scores_against_rects():
    # Before: 2 scores for 8 rects raised IndexError (a boolean mask of the wrong length).
    from cvcore.detect import clip_rects
    rects = np.array([[0, 0, 5, 5], [40, 40, 5, 5]])
    with pytest.raises(ValueError, match="one value per rect"):
        clip_rects(rects, np.ones(3), 20, 20)
    kept, scores = clip_rects(rects, np.array([0.5, 0.7]), 20, 20)
    assert kept.tolist() == [[0, 0, 5, 5]] and scores.tolist() == [0.5]


def test_draw_matches_checks_match_indices_and_mixes_rgb_with_rgba():
    # Before: a match index past the keypoints raised IndexError, and an RGB image beside an
    # RGBA one a NumPy broadcasting error.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cvcore.features import draw_matches
    xy = np.array([[1.0, 2.0], [3.0, 4.0]])
    rgb, rgba = np.zeros((8, 8, 3), np.float32), np.ones((6, 5, 4), np.float32)
    with pytest.raises(ValueError, match="matches must index"):
        draw_matches(rgb, rgb, xy, xy, np.array([[0, 2]]))
    with pytest.raises(ValueError, match="one flag per match"):
        draw_matches(rgb, rgb, xy, xy, np.array([[0, 1]]), inliers=np.ones(3, bool))
    ax = draw_matches(rgb, rgba, xy, xy, np.array([[0, 1], [1, 0]]))
    assert ax.images[0].get_array().shape == (8, 13, 3)
    plt.close("all")


def test_hog_picture_checks_its_arguments_and_refuses_a_huge_picture():
    # Before: no checks at all: a shape of 10^6 x 10^6 was a MemoryError, a shape smaller than
    # the cells a reshape error naming nothing.
    from cvcore.features._hog import hog_picture
    cells = np.ones((2, 3, 9))
    assert hog_picture(cells, (4, 4), (8, 12)).shape == (8, 12)
    with pytest.raises(ValueError, match="above the limit"):
        hog_picture(cells, (4, 4), (10 ** 6, 10 ** 6))
    with pytest.raises(ValueError, match="smaller than the 2x3 cells"):
        hog_picture(cells, (4, 4), (7, 12))
    with pytest.raises(ValueError, match="NaN"):
        hog_picture(np.full((1, 1, 9), np.nan), (4, 4), (4, 4))


def test_hog_linear_attack_model_checks_its_hog_settings():
    # Before: a hog_params without cell_sizes was accepted and the first attack step raised
    # KeyError: 'cell_sizes'.
    from cvcore.adversarial import HOGLinearModel
    with pytest.raises(ValueError, match="cell_sizes"):
        HOGLinearModel(np.ones((3, 4)), np.zeros(3), np.zeros(4), np.ones(4),
                       {"orientations": 9})
    with pytest.raises(ValueError, match="feature_std must be positive"):
        HOGLinearModel(np.ones((3, 4)), np.zeros(3), np.zeros(4), np.zeros(4),
                       {"orientations": 9})


def test_pyramid_scales_checks_its_sizes():
    # Before: an infinite image width raised OverflowError from round(inf).
    from cvcore.detect import pyramid_scales
    with pytest.raises(TypeError, match="image_size"):
        pyramid_scales((float("inf"), 100), (16, 16), 1.1)
    with pytest.raises(ValueError, match="window_size"):
        pyramid_scales((100, 100), (0, 16), 1.1)
    assert pyramid_scales((32, 32), (16, 16), 2.0) == [1.0, 2.0]


def test_l2_pgd_with_a_zero_budget_and_a_zero_gradient_returns_the_input_not_nan():
    # Before: at eps = 0 a step of zero length was projected with 0 / 0 = NaN.
    from cvcore import nn
    from cvcore.adversarial import pgd
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=np.random.default_rng(0)))
    net[1].weight.data[...] = 0                     # a zero input gradient everywhere
    x = np.full((2, 1, 2, 2), 0.5, np.float32)
    adv = pgd(net, x, np.array([0, 1]), 0.0, norm="l2", steps=2)
    np.testing.assert_array_equal(adv, x)


def test_one_cycle_schedule_with_an_empty_phase_steps_instead_of_dividing_by_zero():
    # Before: total_steps=2, pct_start=0.5, three phases made the warm-up phase zero steps long
    # and the first step raised ZeroDivisionError (as PyTorch's OneCycleLR does).
    from cvcore import nn
    opt = nn.SGD([nn.Parameter(np.zeros(2, np.float32))], lr=0.1, momentum=0.9)
    sched = nn.OneCycleLR(opt, max_lr=1.0, total_steps=2, pct_start=0.5, three_phase=True)
    lrs = [sched.get_last_lr()[0]]
    opt.step()
    sched.step()
    lrs.append(sched.get_last_lr()[0])
    assert np.isfinite(lrs).all()
    assert lrs[0] == pytest.approx(1.0 / 25)             # starts at max_lr / div_factor
    assert lrs[1] == pytest.approx(1.0 / 25 / 1e4)       # ends at the minimum
