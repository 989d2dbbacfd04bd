"""Transfer learning: the ImageNet view (resize + centre crop), pretrained networks with a new
head, the frozen-backbone and fine-tuning runs (cached features, resume, saved model applying
its preprocessing), the command's options and errors, and (slow) the hymenoptera accuracies."""
import json
import subprocess
import sys

import numpy as np
import pytest

from cvcore.nn.efficientnet import lite0_imagenet_weights
from cvcore.preprocess.geometry import resize, resize_center_crop
from cvcore.train.loop import TrainConfig
from cvcore.train.pipeline import load_model, prepare_images
from cvcore.train.transfer import TransferConfig, build_network, train_transfer_model
from tests.conftest import dataset_path


def weights():
    try:
        return lite0_imagenet_weights()
    except FileNotFoundError as exc:
        pytest.skip(f"{exc} (the `bench` extra installs it)")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cvcore.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=900)


def toy_images(n, size=48, seed=0):
    """Two classes a pretrained network separates at once: reddish and bluish noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 120, (n, size, size, 3))
    x[y == 0, :, :, 0] += 120
    x[y == 1, :, :, 2] += 120
    return x.astype(np.uint8), y


def test_resize_center_crop_is_resize_then_centre_cut():
    img = np.random.default_rng(0).integers(0, 255, (300, 400, 3)).astype(np.uint8)
    out = resize_center_crop(img, (224, 224), 0.875)
    # shorter side 300 -> 256 (= 224 / 0.875), longer 400 -> 341; centre (16, 58)
    full = resize(img, (256, 341), interpolation="area")
    np.testing.assert_array_equal(out, full[16:240, 58:282])
    assert resize_center_crop(img, (224, 224), 1.0).shape == (224, 224, 3)
    with pytest.raises(ValueError, match="crop_fraction"):
        resize_center_crop(img, (224, 224), 0.0)


def test_prepare_images_applies_the_crop_to_raw_images():
    img = np.random.default_rng(1).integers(0, 255, (90, 120, 3)).astype(np.uint8)
    out = prepare_images([img], (56, 56), "rgb", crop_fraction=0.875)
    np.testing.assert_array_equal(out[0], resize_center_crop(img, (56, 56), 0.875))


def test_build_network_keeps_backbone_and_makes_a_new_head():
    path = weights()
    from cvcore.io import load_torch
    state = load_torch(path)
    net = build_network("efficientnet-lite0", 3, "imagenet", rng=0)
    np.testing.assert_array_equal(net._conv_stem.weight.data, state["_conv_stem.weight"])
    assert net._fc.weight.shape == (3, 1280)
    with pytest.raises(ValueError, match="no ImageNet weights ship for resnet18"):
        build_network("resnet18", 3, "imagenet")


def test_frozen_backbone_run_caches_features_resumes_and_saves(tmp_path):
    weights()
    x, y = toy_images(16)
    xv, yv = toy_images(6, seed=1)
    config = TrainConfig(epochs=1, batch_size=8, seed=0)
    tconf = TransferConfig(pretrained="imagenet", freeze="backbone", head_epochs=4, head_lr=0.05)
    logs = []
    model, history = train_transfer_model("efficientnet-lite0", x, y, xv, yv, ["red", "blue"],
                                          config, tconf, out_dir=tmp_path, log=logs.append)
    assert len(history) == 4 and history[-1]["val_acc"] == 1.0
    assert (tmp_path / "features.npz").exists() and (tmp_path / "checkpoint.npz").exists()
    # the head is the only thing that learned: the backbone is the ImageNet one
    from cvcore.io import load_torch
    stem = load_torch(weights())["_conv_stem.weight"]
    np.testing.assert_array_equal(model.arrays["state_dict"]["_conv_stem.weight"], stem)
    model.save(tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    assert loaded.crop_fraction == 0.875
    p = loaded.predict_proba(x[:4])
    np.testing.assert_allclose(p, model.predict_proba(x[:4]), rtol=1e-5, atol=1e-6)
    assert (p.argmax(1) == y[:4]).all()
    # a second run (a resume of the finished one) reuses the cached features
    logs.clear()
    again, _ = train_transfer_model("efficientnet-lite0", x, y, xv, yv, ["red", "blue"], config,
                                    tconf, out_dir=tmp_path, resume=True, log=logs.append)
    assert any("reusing" in line for line in logs)
    np.testing.assert_array_equal(again.arrays["state_dict"]["_fc.weight"],
                                  model.arrays["state_dict"]["_fc.weight"])


def test_fine_tuning_run_trains_the_backbone_slower_with_frozen_bn(tmp_path):
    path = weights()
    x, y = toy_images(8, size=32)
    config = TrainConfig(epochs=1, batch_size=4, lr=0.01, schedule="constant", seed=0)
    tconf = TransferConfig(pretrained=str(path), freeze="none", head_epochs=2,
                           backbone_lr_scale=0.1)
    model, history = train_transfer_model("efficientnet-lite0", x, y, None, None, ["r", "b"],
                                          config, tconf, out_dir=tmp_path, augment=False,
                                          progress=False, log=lambda *_: None)
    sd = model.arrays["state_dict"]
    from cvcore.io import load_torch
    ref = load_torch(path)
    assert not np.array_equal(sd["_blocks.3._depthwise_conv.weight"],
                              ref["_blocks.3._depthwise_conv.weight"])      # it learned
    np.testing.assert_array_equal(sd["_bn0.running_mean"], ref["_bn0.running_mean"])  # frozen BN
    assert len(history) == 1 and (tmp_path / "head" / "checkpoint.npz").exists()


def test_command_trains_predicts_and_refuses_bad_settings(tmp_path):
    weights()
    from PIL import Image
    x, y = toy_images(12, size=40)
    for split, (xs, ys) in {"train": (x, y), "val": toy_images(4, size=40, seed=2)}.items():
        for i, (img, label) in enumerate(zip(xs, ys)):
            folder = tmp_path / "data" / split / ("red", "blue")[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{i}.png")
    out = tmp_path / "run"
    result = run_cli("train", "--model", "efficientnet-lite0", "--pretrained", "imagenet",
                     "--data", tmp_path / "data", "--size", 32, 32, "--freeze", "backbone",
                     "--head-epochs", 10, "--batch-size", 8, "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] == 1.0
    big = np.zeros((70, 50, 3), np.uint8)
    big[..., 2] = 200
    Image.fromarray(big).save(tmp_path / "blue.png")
    result = run_cli("predict", tmp_path / "blue.png", "--weights", out / "model.npz", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top"][0]["class"] == "blue"


@pytest.mark.parametrize("args, text", [
    (["--freeze", "backbone"], "needs pretrained weights"),
    (["--pretrained", "/no/such/none.pth"], "no weights file"),
    (["--pretrained", "imagenet", "--backbone-lr-scale", "0"], "backbone_lr_scale"),
])
def test_command_refuses_bad_transfer_settings(args, text, capsys):
    from cvcore.cli import main
    assert main(["train", "--model", "efficientnet-lite0", "--out", "/tmp/never", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cvcore: error:") and text in err, err


@pytest.mark.slow
@pytest.mark.parametrize("freeze, least", [("backbone", 0.94), ("none", 0.95)])
def test_hymenoptera_accuracy_from_the_command(tmp_path, freeze, least):
    """The issue's bar on the 153 validation photos (benchmarks/README.md has the times)."""
    weights()
    data = dataset_path("hymenoptera")
    result = run_cli("train", "--model", "efficientnet-lite0", "--pretrained", "imagenet",
                     "--data", data, "--size", 224, 224, "--freeze", freeze,
                     "--out", tmp_path / "run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["accuracy"] >= least
