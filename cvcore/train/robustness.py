"""Robustness of trained models: attacks on a ``model.npz``, robust accuracy, report figures,
and the ``cvcore attack`` command.

A :class:`cvcore.train.pipeline.TrainedModel` becomes an attack target
(:func:`attack_model`) in pixel space, images ``(N, C, H, W)`` float32 in ``[0, 1]``:

* ``resnet*``: :class:`cvcore.adversarial.NetworkModel` with the model's normalisation inside;
* ``hog-svm``, ``hog-linear``: :class:`cvcore.adversarial.HOGLinearModel` (the HOG backward,
  the standardisation and the linear scores; an SVM's logits are its calibrated scores);
* ``hog-knn`` has no gradient (a nearest-neighbour vote is piecewise constant): refused.

Figures: :func:`plot_robustness_curves` (accuracy against eps, several models on one plot) and
:func:`plot_adversarial_examples` (clean image, amplified perturbation, adversarial image, both
predictions), written into the evaluation report by :func:`write_robustness`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from cvcore.io.atomic import atomic_write

__all__ = ["attack_model", "attack_inputs", "evaluate_robustness", "plot_robustness_curves",
           "plot_adversarial_examples", "write_robustness", "add_eval_arguments",
           "add_train_arguments", "adversarial_config", "add_parser", "run"]

ATTACKS = ("pgd", "fgsm")
#: PGD steps of ``cvcore eval --attack pgd`` unless ``--steps`` says otherwise (PGD-20: the
#: evaluation of Rice, Wong & Kolter 2020 and of most robust-training papers).
DEFAULT_STEPS = 20
EXAMPLES_SHOWN = 6


def attack_model(model):
    """The attack interface of a trained model (see the module notes)."""
    from cvcore.adversarial import HOGLinearModel, NetworkModel
    from cvcore.train.pipeline import CNN_MODELS, HOG_MODELS
    if model.kind in CNN_MODELS:
        return NetworkModel(model._network(), mean=model.arrays["mean"],
                            std=model.arrays["std"], num_classes=len(model.class_names))
    if model.kind in ("hog-svm", "hog-linear"):
        clf = model._classifier()
        coef, intercept = np.asarray(clf.coef_), np.asarray(clf.intercept_)
        if model.kind == "hog-svm" and len(model.class_names) == 2:
            coef, intercept = np.vstack([-coef, coef]), np.concatenate([-intercept, intercept])
        temperature = float(getattr(clf, "temperature_", 1.0))
        return HOGLinearModel(coef, intercept, model.arrays["feature_mean"],
                              model.arrays["feature_std"], model.params["hog"], temperature)
    if model.kind in HOG_MODELS:
        raise TypeError(f"a {model.kind} model has no input gradient (a nearest-neighbour vote "
                        f"is piecewise constant), so gradient attacks do not apply to it")
    raise TypeError(f"gradient attacks apply to classifiers; {model.kind} is not one")


def attack_inputs(model, images) -> np.ndarray:
    """Raw images (uint8, any size) as the attack's input: ``(N, C, H, W)`` float32 in [0, 1]."""
    from cvcore.io.datasets import to_nchw
    from cvcore.train.pipeline import prepare_images
    return to_nchw(prepare_images(images, model.size, model.mode))


def evaluate_robustness(model, images, labels, eps_list, attack="pgd", *, steps=DEFAULT_STEPS,
                        step_size=None, norm="linf", restarts=1, seed=0, limit=None,
                        batch_size=256):
    """Clean and robust accuracy of a trained model on (the first ``limit`` of) a test set.

    Returns
    -------
    dict
        ``attack``, ``norm``, ``steps``, ``eps`` (list), ``accuracy`` (clean, on the same
        images), ``robust_accuracy`` (one per eps), ``n``, ``seconds``; and, for the figures,
        ``x``, ``y`` and ``x_adv`` (the adversarial images at the largest eps; not JSON).
    """
    from cvcore.adversarial import robust_accuracy
    t0 = time.perf_counter()
    labels = np.asarray(labels)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    target = attack_model(model)
    x = attack_inputs(model, images)
    kwargs = {"batch_size": batch_size}
    if attack == "pgd":
        kwargs.update(steps=steps, step_size=step_size, norm=norm, restarts=restarts, seed=seed)
    result = robust_accuracy(target, x, labels, eps_list, attack=attack, return_examples=True,
                             **kwargs)
    examples = result.pop("examples")
    result.update(norm=norm if attack == "pgd" else "linf",
                  steps=steps if attack == "pgd" else 1, n=len(x),
                  seconds=time.perf_counter() - t0, x=x, y=labels,
                  x_adv=examples[max(examples)], eps_shown=max(examples))
    return result


def _figure(*args, **kwargs):
    from matplotlib.figure import Figure
    return Figure(*args, **kwargs)


def plot_robustness_curves(curves, path, title="Accuracy under attack") -> None:
    """Accuracy against eps for several models on one plot.

    ``curves``: a list of dicts with ``name``, ``eps`` and ``robust_accuracy`` (and optionally
    ``attack`` and ``steps`` for the legend), e.g. the results of :func:`evaluate_robustness`.
    """
    from cvcore.train.report import save_figure
    if not curves:
        raise ValueError("plot_robustness_curves needs at least one curve")
    fig = _figure(figsize=(5.2, 3.8))
    ax = fig.add_subplot()
    for c in curves:
        order = np.argsort(c["eps"])
        label = c["name"] + (f" ({c['attack'].upper()}"
                             + (f"-{c['steps']}" if c.get("attack") == "pgd" else "") + ")"
                             if "attack" in c else "")
        ax.plot(np.asarray(c["eps"])[order], np.asarray(c["robust_accuracy"])[order],
                marker="o", label=label)
    ax.set_xlabel("eps (L-inf, pixels in [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    save_figure(fig, path)


def plot_adversarial_examples(x, x_adv, y, pred, pred_adv, class_names, path, eps=None,
                              n=EXAMPLES_SHOWN) -> int:
    """Rows of clean image, perturbation (amplified to the full grey range) and adversarial
    image, with the true class and both predictions. Images whose prediction the attack changed
    come first. Returns the number of rows drawn."""
    from cvcore.train.report import save_figure
    changed = np.flatnonzero(pred != pred_adv)
    order = np.concatenate([changed, np.flatnonzero(pred == pred_adv)])[:n]
    fig = _figure(figsize=(5.4, 1.9 * max(1, len(order))))
    for row, i in enumerate(order):
        clean, adv = np.moveaxis(x[i], 0, -1), np.moveaxis(x_adv[i], 0, -1)
        delta = adv - clean
        scale = float(np.abs(delta).max()) or 1.0
        panels = [(clean, f"clean: {class_names[pred[i]]}\n(true {class_names[y[i]]})"),
                  (0.5 + 0.5 * delta / scale, f"perturbation\nx{0.5 / scale:.0f}, max "
                                              f"{scale:.3f}"),
                  (adv, f"adversarial: {class_names[pred_adv[i]]}")]
        for col, (img, title) in enumerate(panels):
            ax = fig.add_subplot(len(order), 3, 3 * row + col + 1)
            img = np.clip(img, 0, 1)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.suptitle("Adversarial examples" + (f" (eps {eps:g})" if eps is not None else ""),
                 fontsize=9)
    save_figure(fig, path)
    return len(order)


def write_robustness(out_dir, result, class_names, name) -> list[str]:
    """``robustness.json``, ``robustness.png`` (the curve) and ``adversarial.png`` in ``out_dir``,
    and the robust accuracies appended to its ``report.txt``; returns the file names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public = {k: v for k, v in result.items() if k not in ("x", "y", "x_adv", "pred",
                                                           "pred_adv")}
    with atomic_write(out / "robustness.json", "w") as f:
        json.dump(public, f, indent=1)
    plot_robustness_curves([dict(public, name=name)], out / "robustness.png",
                           f"{name}: accuracy under attack")
    plot_adversarial_examples(result["x"], result["x_adv"], result["y"], result["pred"],
                              result["pred_adv"], class_names, out / "adversarial.png",
                              result["eps_shown"])
    lines = format_robustness(public)
    report = out / "report.txt"
    text = report.read_text() if report.exists() else ""
    with atomic_write(report, "w") as f:
        f.write(text + ("\n" if text else "") + lines + "\n")
    return ["robustness.json", "robustness.png", "adversarial.png"]


def format_robustness(result) -> str:
    attack = result["attack"].upper() + (f"-{result['steps']} ({result['norm']})"
                                         if result["attack"] == "pgd" else "")
    rows = [f"robustness under {attack} on {result['n']} test images "
            f"({result['seconds']:.1f} s)", f"  clean accuracy  {result['accuracy']:.4f}"]
    rows += [f"  eps {e:<8g}    {a:.4f}" for e, a in zip(result["eps"],
                                                       result["robust_accuracy"])]
    return "\n".join(rows)


# -- command line ---------------------------------------------------------------------------------
def add_eval_arguments(p) -> None:
    """``cvcore eval``'s attack options."""
    p.add_argument("--attack", choices=ATTACKS, default=None,
                   help="also measure accuracy under this attack (pgd: L-inf PGD with a random "
                        "start; fgsm) at every --eps")
    p.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1],
                   help="attack budgets, pixels in [0, 1] (default 0.05 0.1)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"PGD steps (default {DEFAULT_STEPS})")
    p.add_argument("--step-size", type=float, default=None,
                   help="PGD step size (default 2.5 * eps / steps)")
    p.add_argument("--restarts", type=int, default=1, help="PGD random restarts (default 1)")
    p.add_argument("--attack-limit", type=int, default=None, metavar="N",
                   help="attack only the first N test images (default: all)")


def run_eval_attack(args, model, data, out=None) -> dict:
    """The ``--attack`` part of ``cvcore eval``: returns the JSON fields it adds."""
    for e in args.eps:
        if not math.isfinite(e) or e < 0:
            raise ValueError(f"--eps must be finite and >= 0, got {e}")
    if args.attack_limit is not None and args.attack_limit < 1:
        raise ValueError(f"--attack-limit must be >= 1, got {args.attack_limit}")
    try:
        target = attack_model(model)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    result = evaluate_robustness(model, data.x_test, data.y_test, args.eps, args.attack,
                                 steps=args.steps, step_size=args.step_size,
                                 restarts=args.restarts, seed=args.seed,
                                 limit=args.attack_limit)
    result["pred"] = target.predict(result["x"])
    result["pred_adv"] = target.predict(result["x_adv"])
    if out:
        write_robustness(out, result, model.class_names, model.kind)
    if not args.json:
        print(format_robustness(result))
    return {"attack": result["attack"], "eps": result["eps"], "steps": result["steps"],
            "attack_n": result["n"], "clean_accuracy_attacked": result["accuracy"],
            "robust_accuracy": result["robust_accuracy"]}


def add_train_arguments(p) -> None:
    """``cvcore train``'s adversarial-training options (CNN models)."""
    p.add_argument("--adversarial", choices=("pgd", "fgsm"), default=None,
                   help="CNN: adversarial training: fgsm = fast FGSM with a random start (Wong, "
                        "Rice & Kolter 2020), pgd = PGD training (Madry et al. 2018)")
    p.add_argument("--eps", type=float, default=None,
                   help="adversarial training budget, L-inf, pixels in [0, 1] (e.g. 0.1)")
    p.add_argument("--adv-steps", type=int, default=7, help="PGD training steps (default 7)")
    p.add_argument("--adv-step-size", type=float, default=None,
                   help="adversarial step size (default: fgsm 1.25 eps, pgd 2.5 eps / steps)")


def adversarial_config(args) -> dict:
    """The :class:`cvcore.train.loop.TrainConfig` fields of ``cvcore train``'s options."""
    if args.adversarial is None:
        if args.eps is not None:
            raise ValueError("--eps needs --adversarial pgd or fgsm")
        return {}
    if args.eps is None:
        raise ValueError(f"--adversarial {args.adversarial} needs --eps (e.g. 0.1)")
    if not math.isfinite(args.eps) or args.eps <= 0:
        raise ValueError(f"--eps must be a positive number, got {args.eps}")
    return {"adversarial": args.adversarial, "adv_eps": args.eps, "adv_steps": args.adv_steps,
            "adv_step_size": args.adv_step_size}


def add_parser(sub) -> None:
    """``cvcore attack IMAGE --weights M``."""
    p = sub.add_parser("attack", help="perturb an image to change a model's prediction",
                       description="Run FGSM or PGD on one image against saved weights, write "
                                   "the adversarial image and print the change of prediction.")
    p.add_argument("image", help="an image file")
    p.add_argument("--weights", required=True, help="a model.npz written by `cvcore train`")
    p.add_argument("--attack", choices=ATTACKS, default="pgd")
    p.add_argument("--eps", type=float, default=0.05,
                   help="L-inf budget, pixels in [0, 1] (default 0.05)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    p.add_argument("--target", default=None,
                   help="a class name: make the model predict it (targeted attack)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="where to write the adversarial image (default: IMAGE-adv.png)")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    p.set_defaults(func=run)


def run(args) -> None:
    from cvcore.adversarial import fgsm, pgd
    from cvcore.io.datasets import decode_image
    from cvcore.io.images import imwrite
    from cvcore.train.pipeline import load_model
    model = load_model(args.weights)
    try:
        target = attack_model(model)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if not math.isfinite(args.eps) or args.eps < 0:
        raise ValueError(f"--eps must be finite and >= 0, got {args.eps}")
    x = attack_inputs(model, [decode_image(args.image, model.mode)])
    before = _softmax(target.logits(x))[0]
    if args.target is not None:
        if args.target not in model.class_names:
            raise ValueError(f"--target {args.target!r} is not a class of the model: "
                             f"{', '.join(model.class_names)}")
        label, targeted = model.class_names.index(args.target), True
    else:
        label, targeted = int(np.argmax(before)), False
    y = np.array([label])
    if args.attack == "fgsm":
        adv = fgsm(target, x, y, args.eps, targeted=targeted)
    else:
        adv = pgd(target, x, y, args.eps, steps=args.steps, targeted=targeted, seed=args.seed)
    # What is written is 8-bit: each pixel is rounded to the nearest grey level within the
    # budget (the clean pixels are whole levels), and the prediction reported is that of the
    # written image.
    clean = np.moveaxis(x[0], 0, -1) * 255
    budget = args.eps * 255
    levels = np.clip(np.round(np.moveaxis(adv[0], 0, -1) * 255),
                     np.ceil(clean - budget - 1e-4), np.floor(clean + budget + 1e-4))
    pixels = np.clip(levels, 0, 255).astype(np.uint8)
    pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    out = Path(args.out) if args.out else Path(args.image).with_name(
        Path(args.image).stem + "-adv.png")
    imwrite(out, pixels)
    after = _softmax(target.logits(attack_inputs(model, pixels[None])))[0]
    names = model.class_names
    b, a = int(np.argmax(before)), int(np.argmax(after))
    linf = float(np.abs(pixels.astype(np.float32) - clean.reshape(pixels.shape)).max() / 255)
    if args.json:
        print(json.dumps({"image": args.image, "adversarial": str(out), "attack": args.attack,
                          "eps": args.eps, "before": {"class": names[b],
                                                      "probability": float(before[b])},
                          "after": {"class": names[a], "probability": float(after[a])},
                          "changed": a != b, "linf": linf}))
    else:
        print(f"{args.image}: {names[b]} ({before[b]:.3f}) -> {names[a]} ({after[a]:.3f}) "
              f"{'changed' if a != b else 'unchanged'}; {args.attack} eps {args.eps:g}, "
              f"max change {linf:.4f}; wrote {out}")


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
