"""The training loop: learning, checkpoints, resume to identical weights, the NaN guard."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cvcore import nn
from cvcore.train.checkpoint import load_state, save_state
from cvcore.train.loop import TrainConfig, Trainer, TrainingDiverged


def tiny_net(seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=rng), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3, rng=rng))


def toy_data(n=96, seed=1):
    """Three classes: horizontal stripes, vertical stripes, flat noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    stripes = np.float32(2.0) * (np.arange(8) % 2)
    for i, c in enumerate(y):
        if c == 0:
            x[i, 0] += stripes[:, None]
        elif c == 1:
            x[i, 0] += stripes[None, :]
    return x, y


def flip_augment(x, seed):
    rng = np.random.default_rng(list(seed))
    flip = rng.random(len(x)) < 0.5
    x = x.copy()
    x[flip] = x[flip][..., ::-1]
    return x


CONFIG = dict(epochs=3, batch_size=16, lr=0.1, seed=5)


def test_it_learns_and_writes_its_files(tmp_path):
    x, y = toy_data()
    trainer = Trainer(tiny_net(), TrainConfig(**CONFIG), out_dir=tmp_path, progress=False)
    history = trainer.fit(x, y, x, y)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc"] > 0.6          # chance is 1/3
    for name in ("checkpoint.npz", "best.npz", "metrics.jsonl", "curves.png"):
        assert (tmp_path / name).is_file(), name
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert load_state(tmp_path / "checkpoint.npz")["epoch"] == 3


def _final_weights(out_dir, interrupt_at=None):
    """Train CONFIG; optionally stop with KeyboardInterrupt at (epoch, batch), then resume."""
    x, y = toy_data()

    def augment(xb, seed):
        if interrupt_at is not None and tuple(seed[1:]) == interrupt_at:
            raise KeyboardInterrupt
        return flip_augment(xb, seed)

    trainer = Trainer(tiny_net(), TrainConfig(**CONFIG), out_dir=out_dir, augment=augment,
                      progress=False)
    try:
        trainer.fit(x, y, x, y)
    except KeyboardInterrupt:
        interrupt_at = None
        trainer = Trainer(tiny_net(seed=99), TrainConfig(**CONFIG), out_dir=out_dir,
                          augment=augment, progress=False)
        trainer.fit(x, y, x, y, resume=True)
    return trainer.model.state_dict(), trainer.history


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    straight, hist_a = _final_weights(tmp_path / "a")
    resumed, hist_b = _final_weights(tmp_path / "b", interrupt_at=(2, 3))
    assert list(straight) == list(resumed)
    for key in straight:
        np.testing.assert_array_equal(straight[key], resumed[key], err_msg=key)
    assert [r["train_loss"] for r in hist_a] == [r["train_loss"] for r in hist_b]


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_train_loop import tiny_net, toy_data, flip_augment, CONFIG
    from cvcore.train.loop import Trainer, TrainConfig
    x, y = toy_data()
    def slow(xb, seed):
        if seed[1] == 2:
            time.sleep(0.5)   # epoch 2 is slow, so that the kill lands inside it
        return flip_augment(xb, seed)
    Trainer(tiny_net(), TrainConfig(**CONFIG), out_dir={out!r}, augment=slow,
            progress=False).fit(x, y, x, y)
""")


def test_resume_after_sigkill_mid_epoch(tmp_path):
    """A process killed by SIGKILL inside epoch 2 resumes to the uninterrupted weights."""
    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=os.path.dirname(__file__), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.npz").exists():
        assert proc.poll() is None, "training process ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_state(out / "checkpoint.npz")["epoch"] == 1
    x, y = toy_data()
    trainer = Trainer(tiny_net(seed=7), TrainConfig(**CONFIG), out_dir=out,
                      augment=flip_augment, progress=False)
    trainer.fit(x, y, x, y, resume=True)
    straight, _ = _final_weights(tmp_path / "straight")
    for key, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, straight[key], err_msg=key)


def test_nan_loss_stops_with_a_clear_message(tmp_path):
    x, y = toy_data()
    net = tiny_net()

    def poison(xb, seed):
        if seed[1:] == (2, 1):   # a diverged update: the classifier's weights become NaN
            net[5].weight.data[:] = np.nan
        return xb

    trainer = Trainer(net, TrainConfig(**CONFIG), out_dir=tmp_path, augment=poison,
                      progress=False)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2, batch 2 .*lower the "
                                               r"learning rate.*checkpoint"):
        trainer.fit(x, y)
    assert load_state(tmp_path / "checkpoint.npz")["epoch"] == 1


def test_resume_refuses_other_settings_and_missing_checkpoint(tmp_path):
    x, y = toy_data()
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(tiny_net(), TrainConfig(**CONFIG), out_dir=tmp_path, progress=False).fit(
            x, y, resume=True)
    Trainer(tiny_net(), TrainConfig(**dict(CONFIG, epochs=1)), out_dir=tmp_path,
            progress=False).fit(x, y)
    with pytest.raises(ValueError, match="different settings.*'lr': \\(0.1, 0.5\\)"):
        Trainer(tiny_net(), TrainConfig(**dict(CONFIG, epochs=1, lr=0.5)), out_dir=tmp_path,
                progress=False).fit(x, y, resume=True)


def test_bad_inputs():
    x, y = toy_data()
    t = Trainer(tiny_net(), TrainConfig(**CONFIG), progress=False)
    with pytest.raises(ValueError, match="x_train has 96 samples but y_train has 95"):
        t.fit(x, y[:-1])
    with pytest.raises(ValueError, match="x_train must have 4 dimensions"):
        t.fit(x[:, 0], y)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="x_train contains NaN"):
        t.fit(bad, y)
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="linear").check()


def test_checkpoint_tree_round_trip_and_errors(tmp_path):
    state = {"a": np.arange(3), "b": [1, 2.5, "x", None, {"c": np.ones((2, 2), np.float32)}],
             "d": (0.9, 0.99)}
    save_state(tmp_path / "s.npz", state)
    back = load_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(back["a"], state["a"])
    assert back["b"][:4] == [1, 2.5, "x", None] and back["d"] == [0.9, 0.99]
    assert back["b"][4]["c"].dtype == np.float32
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a cvcore checkpoint"):
        load_state(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "missing.npz")
    with pytest.raises(TypeError, match="cannot store object"):
        save_state(tmp_path / "o.npz", {"x": object()})
    assert not (tmp_path / "o.npz").exists()


def test_a_training_step_computes_no_gradient_of_the_images(input_grads_seen):
    """The trainer passes ``input_grad=False``: the first convolution's input gradient, which
    nothing reads, is never computed (PyTorch computes none for an input that needs none)."""
    computed = input_grads_seen
    x, y = toy_data(n=32)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1, rng=1), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 3, rng=2))
    Trainer(net, TrainConfig(epochs=1, batch_size=16, lr=0.1, seed=5), progress=False).fit(x, y)
    assert len(computed) == 2                     # the second convolution's, once a step
    assert all(shape[1] == 4 for shape in computed)
