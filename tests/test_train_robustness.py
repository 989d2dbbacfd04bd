"""Attacks on trained models: HOG + linear models through the HOG backward, ResNets through
their normalisation, `cvcore eval --attack`, `cvcore attack`, the report figures."""
import json

import numpy as np
import pytest

from cvcore.adversarial import fgsm, pgd
from cvcore.cli import main
from cvcore.io.datasets import load_embedded
from cvcore.train.pipeline import TrainedModel, train_hog_model
from cvcore.train.robustness import (attack_inputs, attack_model, evaluate_robustness,
                                     plot_robustness_curves)


@pytest.fixture(scope="module")
def data():
    return load_embedded()


@pytest.fixture(scope="module")
def hog_models(data):
    # a small training set: the models only need to be decent, and quick to fit
    idx = np.random.default_rng(0).permutation(len(data.y_train))[:800]
    return {kind: train_hog_model(kind, data.x_train[idx], data.y_train[idx], data.class_names,
                                  log=lambda *a: None)
            for kind in ("hog-svm", "hog-linear")}


@pytest.mark.parametrize("kind", ["hog-svm", "hog-linear"])
def test_hog_model_logits_are_its_predictions_and_the_gradient_is_right(data, hog_models, kind):
    model = hog_models[kind]
    target = attack_model(model)
    images = data.x_test[:20]
    x = attack_inputs(model, images)
    z = target.logits(x)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(axis=1, keepdims=True), model.predict_proba(images),
                               rtol=1e-4, atol=1e-6)
    y = data.y_test[:20].astype(np.int64)
    loss, g = target.loss_gradient(x, y)
    assert g.shape == x.shape and np.abs(g).max() > 0
    # single pixels by central differences, where no orientation bin switches within the step
    # (hard binning jumps there) and away from the square root's kink at 0; the cells are
    # summed in float32, so the step is large enough to keep that rounding small
    from kernels.reference.hog import _pixel_bins, centred_gradients
    rng = np.random.default_rng(1)
    h, checked = 1e-3, 0
    for n in range(5):
        for r, c in zip(rng.integers(1, 27, 30), rng.integers(1, 27, 30)):
            if x[n, 0, r, c] < 0.2:
                continue
            moved = []
            for sign in (1, -1):
                xs = x.copy()
                xs[n, 0, r, c] += sign * h
                moved.append(xs)
            bins = [_pixel_bins(*centred_gradients(np.sqrt(m[n, 0].astype(np.float64))), 9)
                    for m in moved]
            if not np.array_equal(*bins):
                continue
            num = (target.loss_gradient(moved[0][n:n + 1], y[n:n + 1])[0][0]
                   - target.loss_gradient(moved[1][n:n + 1], y[n:n + 1])[0][0]) / (2 * h)
            assert abs(num - g[n, 0, r, c]) <= 0.05 * abs(num) + 1e-3, (n, r, c, num,
                                                                       g[n, 0, r, c])
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize("kind", ["hog-svm", "hog-linear"])
def test_fgsm_and_pgd_break_hog_models_like_a_cnn(data, hog_models, kind):
    model = hog_models[kind]
    result = evaluate_robustness(model, data.x_test, data.y_test, [0.0, 0.01, 0.03], "pgd",
                                 steps=5, limit=60)
    acc = result["robust_accuracy"]
    assert acc[0] == result["accuracy"] > 0.6
    assert acc[0] > acc[1] >= acc[2] and acc[2] < 0.2
    target = attack_model(model)
    x, y = result["x"], result["y"].astype(np.int64)
    assert np.mean(target.predict(fgsm(target, x, y, 0.03)) == y) < result["accuracy"]
    # targeted: a PGD run can steer the HOG + linear model to another class
    goal = (y + 1) % 10
    steered = target.predict(pgd(target, x, goal, 0.1, steps=10, targeted=True))
    assert np.mean(steered == goal) > 0.5


def test_knn_and_cnn_models(data):
    knn = train_hog_model("hog-knn", data.x_train[:200], data.y_train[:200], data.class_names,
                          log=lambda *a: None)
    with pytest.raises(TypeError, match="no input gradient"):
        attack_model(knn)
    # a ResNet: the attack works on pixels in [0, 1], the normalisation is inside the target
    from cvcore import nn
    net = nn.resnet20(num_classes=10, in_channels=1, rng=np.random.default_rng(0))
    mean, std = np.array([0.3], np.float32), np.array([0.35], np.float32)
    cnn = TrainedModel("resnet20", data.class_names, (28, 28), "gray", {},
                       {"mean": mean, "std": std, "state_dict": dict(net.state_dict())})
    target = attack_model(cnn)
    images = data.x_test[:4]
    z = target.logits(attack_inputs(cnn, images))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p / p.sum(axis=1, keepdims=True), cnn.predict_proba(images),
                               rtol=1e-4, atol=1e-6)


def test_eval_attack_json_report_figures_and_attack_command(data, hog_models, tmp_path, capsys):
    weights = tmp_path / "model.npz"
    hog_models["hog-svm"].save(weights)
    out = tmp_path / "report"
    assert main(["eval", str(weights), "--attack", "pgd", "--eps", "0.01", "0.03", "--steps",
                 "3", "--attack-limit", "30", "--out", str(out), "--json"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) >= {"accuracy", "robust_accuracy", "eps"}
    assert last["eps"] == [0.01, 0.03] and len(last["robust_accuracy"]) == 2
    assert last["robust_accuracy"][1] <= last["robust_accuracy"][0] < last["accuracy"]
    for name in ("robustness.png", "adversarial.png", "robustness.json", "report.txt"):
        assert (out / name).stat().st_size > 0
    assert "robustness under PGD-3" in (out / "report.txt").read_text()
    # the attack command: writes the adversarial image, prints the change
    from cvcore.io.images import imwrite
    imwrite(tmp_path / "shoe.png", data.x_test[0])
    assert main(["attack", str(tmp_path / "shoe.png"), "--weights", str(weights), "--eps",
                 "0.1", "--steps", "10", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["changed"] and line["before"]["class"] != line["after"]["class"]
    assert 0.09 < line["linf"] <= 0.1              # rounded to grey levels inside the budget
    assert (tmp_path / "shoe-adv.png").exists()
    # bad arguments: one line, exit 2
    for args in (["eval", str(weights), "--attack", "fgsm", "--eps", "-0.1"],
                 ["eval", str(weights), "--attack", "fgsm", "--eps", "nan"],
                 ["attack", str(tmp_path / "shoe.png"), "--weights", str(weights), "--target",
                  "Spaceship"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("cvcore: error:") and len(err.strip().splitlines()) == 1


def test_robustness_curves_of_several_models_on_one_plot(tmp_path):
    curves = [{"name": "a", "eps": [0, 0.1], "robust_accuracy": [0.9, 0.2], "attack": "pgd",
               "steps": 20},
              {"name": "b", "eps": [0, 0.1], "robust_accuracy": [0.8, 0.6], "attack": "fgsm"}]
    plot_robustness_curves(curves, tmp_path / "curve.png")
    from PIL import Image
    with Image.open(tmp_path / "curve.png") as im:
        assert im.size[0] > 300
    with pytest.raises(ValueError, match="at least one"):
        plot_robustness_curves([], tmp_path / "none.png")


# -- adversarial training -----------------------------------------------------------------------
def _tiny_net(seed=0):
    from cvcore import nn
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10, rng=rng))


def test_adversarial_training_resists_the_attack_it_trained_on_and_resumes(data, tmp_path):
    from cvcore.adversarial import NetworkModel
    from cvcore.io.datasets import to_nchw
    from cvcore.train.loop import TrainConfig, Trainer
    x, y = to_nchw(data.x_train[:1000]), data.y_train[:1000].astype(np.int64)
    xs, ys = to_nchw(data.x_test[:300]), data.y_test[:300].astype(np.int64)
    base = dict(epochs=2, batch_size=50, lr=0.05, schedule="constant", seed=1)
    results = {}
    for kind in ("none", "fgsm"):
        cfg = TrainConfig(**base, adversarial=kind, adv_eps=0.1 if kind != "none" else 0.0)
        net = _tiny_net()
        Trainer(net, cfg, progress=False).fit(x, y)
        model = NetworkModel(net)
        results[kind] = (np.mean(model.predict(xs) == ys),
                         np.mean(model.predict(fgsm(model, xs, ys, 0.1)) == ys), net)
    clean_plain, robust_plain, _ = results["none"]
    clean_adv, robust_adv, net_adv = results["fgsm"]
    assert robust_adv > robust_plain + 0.04, results   # measured 0.35 vs 0.27
    assert clean_adv > 0.5
    # stopped inside epoch 2 and resumed: the same weights as the uninterrupted run
    cfg = TrainConfig(**base, adversarial="fgsm", adv_eps=0.1)

    def stop(xb, seed):
        if tuple(seed[1:]) == (2, 3):
            raise KeyboardInterrupt
        return xb
    with pytest.raises(KeyboardInterrupt):
        Trainer(_tiny_net(), cfg, out_dir=tmp_path, augment=stop, progress=False).fit(x, y)
    with pytest.raises(ValueError, match="different settings"):
        Trainer(_tiny_net(), TrainConfig(**base, adversarial="pgd", adv_eps=0.1),
                out_dir=tmp_path, progress=False).fit(x, y, resume=True)
    net = _tiny_net(seed=5)
    Trainer(net, cfg, out_dir=tmp_path, progress=False).fit(x, y, resume=True)
    for (k, a), b in zip(net.state_dict().items(), net_adv.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_pgd_training_config_and_bad_arguments():
    from cvcore.train.loop import TrainConfig
    with pytest.raises(ValueError, match="adversarial"):
        TrainConfig(adversarial="cw").check()
    with pytest.raises(ValueError, match="adv_eps"):
        TrainConfig(adversarial="pgd", adv_eps=-0.1).check()
    with pytest.raises(ValueError, match="adv_eps"):
        TrainConfig(adversarial="fgsm", adv_eps=float("nan")).check()
    assert main(["train", "--model", "resnet20", "--adversarial", "pgd"]) == 2
    assert main(["train", "--model", "hog-svm", "--adversarial", "fgsm", "--eps", "0.1"]) == 2


def test_fast_fgsm_training_batch_equals_its_pytorch_twin(data):
    """benchmarks/robust_resnet.py compares cvcore's adversarial training with "the same recipe
    in PyTorch" (same initialisation, batches, augmentation, random starts): on the same weights
    in training mode, the twin's fast-FGSM batch is cvcore's, except at pixels whose gradient is
    within float32 rounding of zero (their sign may differ). Those few pixels make the two
    trainings drift apart afterwards, so whole runs are compared by accuracy, not weights."""
    torch = pytest.importorskip("torch")
    from benchmarks.robust_resnet import _stats, torch_fast_fgsm
    from benchmarks.torch_models import copy_into_torch, torch_resnet
    from cvcore import nn
    from cvcore.io.datasets import to_nchw
    from cvcore.train.loop import FAST_FGSM_STEP, TrainConfig, Trainer
    from cvcore.train.pipeline import _standard_augment
    torch.set_num_threads(1)
    xt = to_nchw(data.x_train[:64])
    mean, std = _stats(xt)
    xt = ((xt - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)).astype(np.float32)
    y = data.y_train[:64].astype(np.int64)
    xb = _standard_augment(data.x_train.shape[1:3], mean, std)(xt, (3, 1, 0))
    config = TrainConfig(epochs=1, batch_size=64, seed=3, adversarial="fgsm", adv_eps=0.1)
    net = nn.resnet20(num_classes=10, in_channels=1, rng=np.random.default_rng(3))
    tnet = torch_resnet("resnet20", 10, 1)
    copy_into_torch(net, tnet)
    net.train()
    tnet.train()
    ours = Trainer(net, config, progress=False, input_stats=(mean, std))._adversarial_batch(
        xb, y, (3, 1, 0))
    theirs = torch_fast_fgsm(torch, tnet, xb, y, mean, std, 0.1, FAST_FGSM_STEP * 0.1,
                             (3, 1, 0)).numpy()
    pixels = ours * std.reshape(1, -1, 1, 1) + mean.reshape(1, -1, 1, 1)
    clean = np.clip(xb * std.reshape(1, -1, 1, 1) + mean.reshape(1, -1, 1, 1), 0, 1)
    assert np.abs(pixels - clean).max() <= 0.1 + 1e-5 and np.abs(pixels - clean).max() > 0.09
    differ = np.abs(ours - theirs) > 1e-5
    assert differ.mean() < 1e-3, differ.mean()
    # the BatchNorm running statistics moved the same way in both (one training-mode forward)
    ref = {k: v.numpy() for k, v in tnet.state_dict().items()}
    for k, v in net.state_dict().items():
        np.testing.assert_allclose(v, ref[k], rtol=1e-4, atol=1e-6, err_msg=k)
