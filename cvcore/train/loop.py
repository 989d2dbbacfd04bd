"""The training loop for :mod:`cvcore.nn` models: epochs, batches, validation, checkpoints, resume.

One epoch::

    order = permutation of the training set drawn from (seed, epoch)
    for each batch b:   x = augment(x[order[b]], seed=(seed, epoch, b))
                        loss = criterion(model(x), y); model.backward(criterion.backward())
                        optimizer.step(); scheduler.step()
    validate (eval mode), log the metrics, write the checkpoint atomically, keep the best weights

Everything random in a batch is a function of ``(seed, epoch, batch)`` alone, so a run stopped at
any point and resumed from its last checkpoint (the end of the last finished epoch) replays the
interrupted epoch exactly and ends with the same weights as a run never stopped.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cvcore._validate import check_array, check_choice, check_finite, check_int, check_positive
from cvcore.io.atomic import atomic_write
from cvcore.nn.module import no_grad, takes_input_grad
from cvcore.train.checkpoint import load_state, save_state

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "predict_batches"]

SCHEDULES = {"onecycle", "cosine", "step", "constant"}
ADVERSARIAL = ("none", "fgsm", "pgd")
#: Fast FGSM's step, ``1.25 * eps`` (Wong, Rice & Kolter 2020, sec. 4, "alpha = 1.25 eps").
FAST_FGSM_STEP = 1.25


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (saved in the checkpoint; a resume must use the same ones).

    ``lr`` is the peak learning rate of the one-cycle schedule (Smith & Topin 2019), the initial
    rate of the cosine and step schedules.
    """
    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    seed: int = 0
    eval_batch_size: int = 500
    #: Adversarial training: "none"; "fgsm", fast FGSM with a random start (Wong, Rice & Kolter
    #: 2020: a uniform start in the eps-ball, one step of ``adv_step_size``, default 1.25 eps);
    #: "pgd", PGD training (Madry et al. 2018: a random start, ``adv_steps`` steps of
    #: ``adv_step_size``, default 2.5 eps / steps). ``adv_eps`` is the L-inf budget in pixels
    #: in [0, 1]. Each batch is replaced by its adversarial version (crafted in training mode,
    #: as those papers' code does), seeded by (seed, epoch, batch).
    adversarial: str = "none"
    adv_eps: float = 0.0
    adv_steps: int = 7
    adv_step_size: float | None = None

    def check(self) -> "TrainConfig":
        check_choice(self.adversarial, ADVERSARIAL, "adversarial")
        if self.adversarial != "none":
            check_positive(self.adv_eps, "adv_eps")
            check_int(self.adv_steps, "adv_steps", minimum=1)
            if self.adv_step_size is not None:
                check_positive(self.adv_step_size, "adv_step_size")
        check_int(self.epochs, "epochs", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.eval_batch_size, "eval_batch_size", minimum=1)
        check_positive(self.lr, "lr")
        check_choice(self.schedule, SCHEDULES, "schedule")
        check_int(self.seed, "seed", minimum=0)
        return self


@dataclass
class _Progress:
    """A one-line progress bar: samples/s, running loss and accuracy, ETA."""
    total: int
    epoch: int
    epochs: int
    stream: object = field(default_factory=lambda: sys.stderr)
    start: float = field(default_factory=time.perf_counter)
    last: float = 0.0

    def update(self, done: int, loss: float, acc: float, final: bool = False) -> None:
        now = time.perf_counter()
        tty = getattr(self.stream, "isatty", lambda: False)()
        if not final and now - self.last < (0.2 if tty else 10.0):
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(width * done / self.total)
        bar = "#" * filled + "." * (width - filled)
        text = (f"epoch {self.epoch}/{self.epochs} [{bar}] {done}/{self.total} "
                f"{rate:7.1f} samples/s  loss {loss:.4f}  acc {acc:.4f}  "
                + (f"{elapsed:5.0f}s" if final else f"ETA {eta:5.0f}s"))
        end = "\n" if final or not tty else ""
        self.stream.write(("\r" if tty else "") + text + end)
        self.stream.flush()


def predict_batches(model, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits of ``model`` in eval mode for ``x`` (N, C, H, W), batch by batch.

    Runs under :func:`cvcore.nn.no_grad`: no layer keeps activations for a backward pass, so
    memory is that of one batch's forward pass, not of every layer's cache.
    """
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            return np.concatenate([model(x[i:i + batch_size])
                                   for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


class Trainer:
    """Train a :class:`cvcore.nn.Module` classifier with SGD and a learning-rate schedule.

    Parameters
    ----------
    model : Module
        Maps (N, C, H, W) float32 to logits (N, n_classes); ``backward(dlogits)`` fills grads.
    config : TrainConfig
    out_dir : path, optional
        Where ``checkpoint.npz`` (each epoch), ``best.npz`` (best validation accuracy),
        ``metrics.jsonl`` and ``curves.png`` go. Without it nothing is written and resume is off.
    augment : callable, optional
        ``augment(x, seed) -> x`` applied to each training batch; ``seed`` is a tuple of ints.
    progress : bool
        Show the progress bar on stderr.
    param_groups : list of (named parameters, learning-rate factor), optional
        Parameter groups of the optimiser, each learning at ``factor * lr`` under every
        schedule (fine-tuning: the pretrained backbone at 0.1 x the new head's rate). Default:
        all of ``model.named_parameters()`` at ``lr``.
    """

    def __init__(self, model, config: TrainConfig | None = None, out_dir=None,
                 augment: Callable | None = None, progress: bool = True, input_stats=None,
                 param_groups=None):
        from cvcore import nn
        self.model = model
        self.config = (config or TrainConfig()).check()
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.augment = augment
        # (mean, std) such that the network's input is (pixels - mean) / std: adversarial
        # training perturbs the pixels, in [0, 1]
        self.input_stats = input_stats
        self.progress = progress
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)
        if param_groups is None:
            groups = [{"params": list(model.named_parameters()), "lr": self.config.lr}]
        else:
            groups = [{"params": list(named), "lr": self.config.lr * float(factor)}
                      for named, factor in param_groups if len(named)]
        self.optimizer = nn.SGD(groups, lr=self.config.lr,
                                momentum=self.config.momentum, nesterov=self.config.nesterov,
                                weight_decay=self.config.weight_decay)
        self.history: list[dict] = []
        self.best: dict = {"val_acc": -1.0, "epoch": 0}
        self.epoch = 0

    def _backward(self, dlogits):
        """The model's backward pass; the images need no gradient, so the first layer skips
        its input gradient where the model can (:func:`cvcore.nn.module.takes_input_grad`)."""
        if takes_input_grad(self.model):
            self.model.backward(dlogits, input_grad=False)
        else:
            self.model.backward(dlogits)

    # -- schedule ---------------------------------------------------------------------------------
    def _make_scheduler(self, steps_per_epoch: int):
        from cvcore import nn
        c = self.config
        total = c.epochs * steps_per_epoch
        if c.schedule == "onecycle":
            return nn.OneCycleLR(self.optimizer, max_lr=[g["lr"] for g in
                                                         self.optimizer.param_groups],
                                 total_steps=total)
        if c.schedule == "cosine":
            return nn.CosineAnnealingLR(self.optimizer, T_max=total)
        if c.schedule == "step":
            return nn.StepLR(self.optimizer, step_size=max(1, total // 3), gamma=0.1)
        return None

    # -- checkpoints ------------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.npz"

    def _save_checkpoint(self, scheduler) -> None:
        save_state(self._checkpoint_path(), {
            "format": "cvcore-checkpoint-1",
            "epoch": self.epoch,
            "config": asdict(self.config),
            "model": dict(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "history": self.history,
            "best": self.best,
        })

    def _resume(self, scheduler) -> None:
        path = self._checkpoint_path()
        if not path.exists():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {path}")
        state = load_state(path)
        if state.get("format") != "cvcore-checkpoint-1":
            raise ValueError(f"{path} is not a cvcore training checkpoint")
        saved = state["config"]
        mine = asdict(self.config)
        defaults = asdict(TrainConfig())     # settings added later: a checkpoint without them
        differ = {k: (saved.get(k, defaults[k]), v) for k, v in mine.items()
                  if saved.get(k, defaults[k]) != v}
        if differ:
            raise ValueError(f"cannot resume {path} with different settings "
                             f"(saved, now): {differ}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            self.history = state["history"]
            self.best = state["best"]
            self.epoch = int(state["epoch"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            # another model (--model resnet32 over a resnet20 run), other classes or channels
            raise ValueError(f"cannot resume {path}: it holds a different model or a damaged "
                             f"state ({type(exc).__name__}: {exc})") from None

    def _write_log(self) -> None:
        with atomic_write(self.out_dir / "metrics.jsonl", "w") as f:
            for row in self.history:
                f.write(json.dumps(row) + "\n")
        from cvcore.train.report import plot_curves
        plot_curves(self.history, self.out_dir / "curves.png")

    # -- adversarial training ---------------------------------------------------------------------
    def _adversarial_batch(self, xb, yb, seed):
        """The batch replaced by adversarial examples of the current model (see TrainConfig)."""
        from cvcore.adversarial import NetworkModel, pgd
        c = self.config
        mean, std = self.input_stats if self.input_stats is not None else (0.0, 1.0)
        mean = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
        pixels = np.clip(xb * std + mean, 0.0, 1.0)
        target = NetworkModel(self.model, mean, std, train_mode=True)
        if c.adversarial == "fgsm":
            steps = 1
            alpha = c.adv_step_size or FAST_FGSM_STEP * c.adv_eps
        else:
            steps, alpha = c.adv_steps, c.adv_step_size
        batch_seed = int(np.random.SeedSequence(list(seed)).generate_state(1)[0])
        adv = pgd(target, pixels, yb, c.adv_eps, steps=steps, step_size=alpha,
                  random_start=True, seed=batch_seed, batch_size=len(xb))
        return ((adv - mean) / std).astype(np.float32)

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, x_train, y_train, x_val=None, y_val=None, resume: bool = False) -> list[dict]:
        """Train for ``config.epochs`` epochs (from the checkpoint when ``resume``).

        Returns the metric history: one dict per epoch with ``epoch``, ``lr``, ``train_loss``,
        ``train_acc``, ``seconds`` and, with validation data, ``val_loss`` and ``val_acc``.
        """
        x_train, y_train = _check_xy(x_train, y_train, "x_train", "y_train")
        if (x_val is None) != (y_val is None):
            raise ValueError("give both x_val and y_val, or neither")
        if x_val is not None:
            x_val, y_val = _check_xy(x_val, y_val, "x_val", "y_val")
        if resume and self.out_dir is None:
            raise ValueError("resume needs out_dir, where the checkpoint is")
        c = self.config
        n = len(x_train)
        steps = math.ceil(n / c.batch_size)
        scheduler = self._make_scheduler(steps)
        if resume:
            self._resume(scheduler)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        while self.epoch < c.epochs:
            epoch = self.epoch + 1
            t0 = time.perf_counter()
            order = np.random.default_rng([c.seed, epoch]).permutation(n)
            bar = _Progress(n, epoch, c.epochs) if self.progress else None
            loss_sum, correct, seen = 0.0, 0, 0
            lr = self.optimizer.param_groups[0]["lr"]
            for b in range(steps):
                idx = order[b * c.batch_size:(b + 1) * c.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if self.augment is not None:
                    xb = self.augment(xb, (c.seed, epoch, b))
                if c.adversarial != "none":
                    xb = self._adversarial_batch(xb, yb, (c.seed, epoch, b))
                logits = self.model(xb)
                # Divergence shows first as non-finite logits (the loss would refuse them).
                loss = float(self.criterion(logits, yb)) if np.isfinite(logits).all() else np.nan
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss is {loss} at epoch {epoch}, batch {b + 1} (learning rate "
                        f"{lr:.3g}): training diverged; lower the learning rate or check the "
                        f"data for NaN" + (f"; the last good checkpoint is {self._checkpoint_path()}"
                                           if self.out_dir and self.epoch else ""))
                self._backward(self.criterion.backward())
                self.optimizer.step()
                lr = self.optimizer.param_groups[0]["lr"]
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss * len(idx)
                correct += int(np.sum(np.argmax(logits, axis=1) == yb))
                seen += len(idx)
                if bar:
                    bar.update(seen, loss_sum / seen, correct / seen, final=seen == n)
            row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / n, "train_acc": correct / n}
            if x_val is not None:
                logits = predict_batches(self.model, x_val, c.eval_batch_size)
                row["val_loss"] = float(self.criterion(logits, y_val))
                row["val_acc"] = float(np.mean(np.argmax(logits, axis=1) == y_val))
            row["seconds"] = time.perf_counter() - t0
            self.history.append(row)
            self.epoch = epoch
            if self.out_dir is not None:
                score = row.get("val_acc", row["train_acc"])
                if score > self.best["val_acc"]:
                    self.best = {"val_acc": score, "epoch": epoch}
                    save_state(self.out_dir / "best.npz", {"model": dict(self.model.state_dict()),
                                                           "epoch": epoch})
                self._save_checkpoint(scheduler)
                self._write_log()
        return self.history


def _check_xy(x, y, xname, yname):
    x = check_array(x, xname, ndim=4, dtypes="f")
    check_finite(x, xname)
    y = check_array(y, yname, ndim=1, dtypes="iu").astype(np.int64)
    if len(x) != len(y):
        raise ValueError(f"{xname} has {len(x)} samples but {yname} has {len(y)}")
    return np.ascontiguousarray(x, dtype=np.float32), y
