"""The `cvcore` command: help, one-line errors, and train / eval / predict / check end to end."""
import json
import subprocess
import sys

import numpy as np
import pytest

from cvcore.cli import build_parser, main


def run_cli(*args, cwd=None):
    """Run the real command in a subprocess (so that a traceback would show)."""
    return subprocess.run([sys.executable, "-m", "cvcore.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize("command", ["train", "eval", "predict", "check", "demo"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: cvcore {command}" in out and len(out.splitlines()) > 3


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("args, text", [
    (["train", "--model", "alexnet"], "unknown model 'alexnet'"),
    (["train", "--data", "/no/such/folder"], "/no/such/folder"),
    (["eval", "/no/such/model.npz"], "/no/such/model.npz"),
    (["check", "/no/such/folder"], "/no/such/folder"),
])
def test_user_errors_are_one_line(args, text):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cvcore: error:") and text in last


def test_empty_folder_is_one_line(tmp_path):
    result = run_cli("train", "--data", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cvcore: error:")


@pytest.fixture
def image_folder(tmp_path):
    """A small image-folder data set: stripes of two orientations, 24 images per class."""
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path / "stripes"
    for split, n in (("train", 24), ("test", 8)):
        for cls in ("horizontal", "vertical"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                img = np.zeros((20, 20), np.uint8)
                offset = rng.integers(0, 4)
                if cls == "horizontal":
                    img[offset::4, :] = 255
                else:
                    img[:, offset::4] = 255
                noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
                Image.fromarray(noisy).save(folder / f"{i}.png")
    return root


def test_train_eval_predict_on_an_image_folder(image_folder, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--model", "hog-svm", "--data", image_folder, "--size", 16, 16,
                     "--gray", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] >= 0.9
    assert set(metrics) >= {"accuracy", "top5", "per_class", "seconds"}
    assert set(metrics["per_class"]) == {"horizontal", "vertical"}
    for name in ("model.npz", "metrics.json", "report.txt", "confusion.png", "mistakes.png"):
        assert (out / name).is_file(), name

    result = run_cli("eval", out / "model.npz", "--data", image_folder, "--size", 16, 16,
                     "--gray", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["accuracy"] == metrics["accuracy"]

    sample = image_folder / "test" / "vertical" / "0.png"
    result = run_cli("predict", sample, "--weights", out / "model.npz", "--top", 2, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["top"][0]["class"] == "vertical"
    assert sum(t["probability"] for t in answer["top"]) == pytest.approx(1.0, abs=1e-6)


def test_predict_rejects_a_file_that_is_not_an_image(tmp_path, image_folder):
    out = tmp_path / "run"
    assert run_cli("train", "--model", "hog-linear", "--data", image_folder, "--size", 16, 16,
                   "--gray", "--out", out).returncode == 0
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is text, not a JPEG")
    result = run_cli("predict", fake, "--weights", out / "model.npz")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "photo.jpg" in result.stderr


def test_check_reports_on_a_folder(image_folder):
    result = run_cli("check", image_folder, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict) and report


def test_parser_defaults_match_the_issue():
    from cvcore.cli import train_defaults
    args = train_defaults(build_parser().parse_args(["train"]), "scratch")
    assert (args.epochs, args.batch_size, args.lr, args.weight_decay, args.schedule) == \
        (4, 128, 0.2, 5e-4, "onecycle")
    args = train_defaults(build_parser().parse_args(["train", "--model", "efficientnet-lite0",
                                                     "--epochs", "2"]), "pretrained")
    assert (args.epochs, args.batch_size, args.lr) == (2, 32, 0.01)


def test_demo_quick_writes_its_report(tmp_path):
    """The README's main job, on a smaller slice of the embedded data (`--quick`)."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--out", out, "--quick")
    assert result.returncode == 0, result.stderr
    assert "report in" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"hog-svm", "hog-linear", "resnet20"}
    assert summary["models"]["hog-linear"]["accuracy"] > 0.5      # chance is 0.1
    for name in ("report.md", "pipeline.png", "hog-svm/model.npz", "resnet20/model.npz",
                 "resnet20/curves.png", "resnet20/mistakes.png"):
        assert (out / name).is_file(), name
    result = run_cli("eval", out / "resnet20" / "model.npz", "--json")
    assert result.returncode == 0, result.stderr
    assert 0.0 <= json.loads(result.stdout)["accuracy"] <= 1.0


@pytest.mark.parametrize("kind", ["hog-svm", "hog-linear", "hog-knn"])
def test_hog_models_round_trip_through_model_npz(kind, tmp_path):
    """Each HOG model predicts the same probabilities after save and load, on images of another
    size (resized by the model) as well as its own."""
    from cvcore.io.datasets import load_embedded
    from cvcore.train.pipeline import load_model, train_hog_model
    data = load_embedded()
    x, y = data.x_train[:400], data.y_train[:400]
    model = train_hog_model(kind, x, y, data.class_names, log=lambda m: None)
    model.save(tmp_path / "model.npz")
    again = load_model(tmp_path / "model.npz")
    test = data.x_test[:50]
    np.testing.assert_array_equal(model.predict_proba(test), again.predict_proba(test))
    assert np.mean(again.predict_proba(test).argmax(1) == data.y_test[:50]) > 0.4
    big = [np.kron(im, np.ones((2, 2), np.uint8)) for im in test[:3]]     # 56x56 images
    assert again.predict_proba(big).shape == (3, 10)
