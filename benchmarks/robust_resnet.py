"""Fashion-MNIST robustness table: ResNet-20 trained normally, ResNet-20 trained with fast FGSM
(cvcore, and the same recipe in PyTorch), and HOG + SVM, under PGD at several budgets.

    python -m benchmarks.robust_resnet train --out DIR --epochs 3 [--adversarial fgsm --eps 0.1]
                                             [--engine cvcore|torch] [--subset N]
                                             [--limit-batches K]
    python -m benchmarks.robust_resnet hog --out DIR
    python -m benchmarks.robust_resnet eval --out DIR [--n 10000] [--curve-n 1000] [--transfer]
                                            [--transfer-only]
                                            [--models NAME ...] [--tag T]
    python -m benchmarks.robust_resnet plot --out DIR

``train`` runs the recipe of ``benchmarks.train_resnet`` (batch 128, SGD Nesterov 0.9, weight
decay 5e-4, one-cycle to lr 0.2, flips and 4-pixel padded crops, per-channel standardisation) on
the full training set, optionally with fast FGSM adversarial training (Wong, Rice & Kolter 2020:
a uniform start in the eps-ball, one signed step of 1.25 eps, projection, clipping to [0, 1],
crafted in training mode; ``cvcore.train.loop.Trainer``'s ``adversarial="fgsm"``). With
``--engine torch`` the PyTorch twin trains instead, from cvcore's initialisation (same seed), on
the same batches in the same order, the same augmentation and the same random starts (drawn by
cvcore's per-image generators and handed to PyTorch), so that only the arithmetic differs. The
weights are saved (atomically) as ``DIR/<name>.npz``; PyTorch's are saved under cvcore's names,
so every model is evaluated by the same code. Run the two engines as two processes with one
thread each side by side (``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1``): their times compare.

Wong & Kolter's published Fashion-MNIST network (``../shared/models``) is attacked beside them.
``hog`` trains the ``hog-svm`` model (default HOG parameters, linear SVM C = 0.003) on the full
training set. ``eval`` attacks every model found in DIR with ``cvcore.adversarial.pgd`` (L-inf,
PGD-20, random start, step 2.5 eps / 20): clean and eps 0.1 accuracy on the first ``--n`` test
images, the curve over ``EPS_CURVE`` on the first ``--curve-n``, the gradient-masking checks
(accuracy falls with eps and with steps, reaches 0 at eps 0.5 and 1.0, white-box <= transfer from
another model) and the figure ``DIR/robustness_curves.png`` (``plot_robustness_curves``).
Results go to ``DIR/eval.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: Budgets of the robustness curve (pixels in [0, 1]).
EPS_CURVE = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)
#: The budget of the table (Wong & Kolter's Fashion-MNIST budget).
EPS_TABLE = 0.1
#: Large budgets at which every model must fall to 0 (at 0.5 a mid-grey image is in the ball
#: of every image; at 1.0 every image is).
EPS_LARGE = (0.5, 1.0)
PGD_STEPS = 20
STEPS_CHECK = (1, 5, 20, 50)
#: Legend names of the figure.
LABELS = {"cvcore-none": "ResNet-20, normal", "cvcore-fgsm": "ResNet-20, fast FGSM",
          "torch-fgsm": "ResNet-20, fast FGSM, PyTorch twin", "hog-svm": "HOG + SVM",
          "wong-kolter": "Wong & Kolter (published)"}


def _load(datasets, subset):
    from cvcore.io.datasets import load_dataset
    data = load_dataset("fashion-mnist", root=Path(datasets) / "fashion-mnist")
    if subset:
        data.x_train, data.y_train = data.x_train[:subset], data.y_train[:subset]
    return data


def _stats(xt):
    mean = xt.mean(axis=(0, 2, 3)).astype(np.float32)
    std = (xt.std(axis=(0, 2, 3)) + 1e-6).astype(np.float32)
    return mean, std


def _save(path, state, mean, std, meta):
    from cvcore.io.atomic import atomic_write
    arrays = {f"state/{k}": np.asarray(v) for k, v in state.items()}
    with atomic_write(path, "wb") as f:
        np.savez(f, mean=mean, std=std, meta=np.array(json.dumps(meta)), **arrays)


def _load_net(path):
    from cvcore import nn
    z = np.load(path)
    net = nn.resnet20(num_classes=10, in_channels=1, rng=np.random.default_rng(0))
    own = net.state_dict()
    net.load_state_dict({k: z[f"state/{k}"] for k in own})
    net.eval()
    return net, z["mean"], z["std"], json.loads(str(z["meta"]))


def train(args):
    from cvcore import nn
    from cvcore.io.datasets import to_nchw
    from cvcore.train.loop import TrainConfig, Trainer
    from cvcore.train.pipeline import _standard_augment
    data = _load(args.datasets, args.subset)
    xt = to_nchw(data.x_train)
    mean, std = _stats(xt)
    xt = ((xt - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)).astype(np.float32)
    augment = _standard_augment(data.x_train.shape[1:3], mean, std)
    config = TrainConfig(epochs=args.epochs, batch_size=128, lr=0.2, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, schedule="onecycle", seed=args.seed,
                         adversarial=args.adversarial,
                         adv_eps=args.eps if args.adversarial != "none" else 0.0)
    net = nn.resnet20(num_classes=10, in_channels=1, rng=np.random.default_rng(args.seed))
    init = net.state_dict()
    y = data.y_train.astype(np.int64)
    if args.limit_batches:       # a timing probe: the first K batches of epoch 1
        keep = np.random.default_rng([args.seed, 1]).permutation(len(xt))[
            :args.limit_batches * config.batch_size]
        order_note = f"timing probe: {args.limit_batches} batches"
    else:
        keep, order_note = None, "all"
    name = args.name or f"{args.engine}-{args.adversarial}"
    print(machine_line(), flush=True)
    print(f"{name}: {len(xt)} training images ({order_note}), {config}", flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if args.engine == "cvcore":
        trainer = Trainer(net, config, augment=augment, progress=False, input_stats=(mean, std))
        if keep is None:
            history = trainer.fit(xt, y)
        else:       # one epoch of the K batches' images (the PyTorch twin does the same)
            cfg = TrainConfig(**{**config.__dict__, "epochs": 1})
            Trainer(net, cfg, augment=augment, progress=False,
                    input_stats=(mean, std)).fit(xt[keep], y[keep])
            history = []
        state = net.state_dict()
    else:
        history, state = _torch_train(config, init, xt, y, augment, mean, std, keep)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{name}: {wall:.0f} s wall, {cpu:.0f} s CPU; history {history}", flush=True)
    if not args.limit_batches:
        _save(Path(args.out) / f"{name}.npz", state, mean, std,
              {"name": name, "engine": args.engine, "adversarial": args.adversarial,
               "eps": args.eps, "epochs": args.epochs, "seconds": wall, "cpu_seconds": cpu,
               "n_train": len(xt), "history": history})
    else:
        steps = math.ceil(len(keep) / config.batch_size)
        epoch = math.ceil(len(xt) / config.batch_size)
        print(f"{name}: {wall / steps:.3f} s per batch wall, {cpu / steps:.3f} s CPU -> an "
              f"epoch of {epoch} batches ~ {wall / steps * epoch / 60:.1f} min", flush=True)


def torch_fast_fgsm(torch, tnet, xb, yb, mean, std, eps, alpha, seed):
    """PyTorch's version of ``Trainer._adversarial_batch`` for fast FGSM: the normalised batch
    ``xb`` back to pixels, the random start cvcore draws for batch ``seed`` = (seed, epoch,
    batch), one signed step of ``alpha`` of the training-mode loss gradient, projection on the
    eps-ball, clipping to [0, 1], normalised again. Returns a float32 tensor."""
    from cvcore.adversarial.attacks import _random_start
    f = torch.nn.functional
    m = torch.from_numpy(mean.reshape(1, -1, 1, 1))
    s = torch.from_numpy(std.reshape(1, -1, 1, 1))
    eps, alpha = np.float32(eps), np.float32(alpha)
    pixels = np.clip(xb * std.reshape(1, -1, 1, 1) + mean.reshape(1, -1, 1, 1), 0, 1)
    batch_seed = int(np.random.SeedSequence(list(seed)).generate_state(1)[0])
    delta0 = _random_start(pixels.shape, float(eps), "linf", batch_seed, 0, np.arange(len(xb)))
    x0 = torch.from_numpy(pixels.astype(np.float32))
    adv = torch.clamp(x0 + torch.from_numpy(delta0), 0, 1).requires_grad_(True)
    flags = [p.requires_grad for p in tnet.parameters()]
    for p in tnet.parameters():
        p.requires_grad_(False)
    loss = f.cross_entropy(tnet((adv - m) / s), torch.from_numpy(yb), reduction="sum")
    g = torch.autograd.grad(loss, adv)[0]
    for p, flag in zip(tnet.parameters(), flags):
        p.requires_grad_(flag)
    with torch.no_grad():
        adv = adv + alpha * g.sign()
        adv = torch.clamp(x0 + torch.clamp(adv - x0, -eps, eps), 0, 1)
        return ((adv - m) / s).float()


def _torch_train(config, init, xt, y, augment, mean, std, keep=None):
    """The PyTorch twin of ``Trainer.fit`` (see the module notes)."""
    import torch
    from benchmarks.torch_models import torch_resnet
    from cvcore.train.loop import FAST_FGSM_STEP
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    tnet = torch_resnet("resnet20", 10, 1)
    tnet.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in init.items()})
    f = torch.nn.functional
    opt = torch.optim.SGD(tnet.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    x_all, y_all = (xt, y) if keep is None else (xt[keep], y[keep])
    epochs = config.epochs if keep is None else 1
    n = len(x_all)
    steps = math.ceil(n / config.batch_size)
    if config.schedule not in ("onecycle", "constant"):
        raise ValueError(f"the PyTorch twin has the onecycle and constant schedules only, "
                         f"not {config.schedule!r}")
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=epochs * steps)
             if config.schedule == "onecycle" else None)
    eps = np.float32(config.adv_eps)
    alpha = np.float32(FAST_FGSM_STEP * config.adv_eps)
    history = []
    tnet.train()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = np.random.default_rng([config.seed, epoch]).permutation(n)
        loss_sum = correct = 0.0
        for b in range(steps):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            xb, yb = augment(x_all[idx], (config.seed, epoch, b)), torch.from_numpy(y_all[idx])
            if config.adversarial == "fgsm":
                inp = torch_fast_fgsm(torch, tnet, xb, y_all[idx], mean, std, eps, alpha,
                                      (config.seed, epoch, b))
            else:
                inp = torch.from_numpy(xb)
            opt.zero_grad()
            logits = tnet(inp)
            loss = f.cross_entropy(logits, yb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        history.append({"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n,
                        "seconds": time.perf_counter() - t0})
        print(f"torch epoch {epoch}: {history[-1]}", flush=True)
    state = {k: v.detach().numpy().copy() for k, v in tnet.state_dict().items()
             if k in init}
    return history, state


def hog(args):
    from cvcore.train.pipeline import train_hog_model
    data = _load(args.datasets, args.subset)
    t0 = time.perf_counter()
    model = train_hog_model("hog-svm", data.x_train, data.y_train, data.class_names)
    model.save(Path(args.out) / "hog-svm.npz")
    print(f"hog-svm trained on {len(data.x_train)} images in {time.perf_counter() - t0:.0f} s",
          flush=True)


def _targets(out):
    """name -> (attack model, meta) of every model in ``out``."""
    from cvcore.adversarial import NetworkModel
    from cvcore.train.pipeline import load_model
    from cvcore.train.robustness import attack_model
    models = {}
    for path in sorted(Path(out).glob("*.npz")):
        if path.stem == "hog-svm":
            models["hog-svm"] = (attack_model(load_model(path)), {"engine": "cvcore"})
        else:
            net, mean, std, meta = _load_net(path)
            models[path.stem] = (NetworkModel(net, mean, std, num_classes=10), meta)
    from cvcore.adversarial import load_published
    published = SHARED / "models" / "wongkolter_fashion_mnist.pth"
    if published.exists():      # the published robust network, attacked the same way
        net, _ = load_published(published)
        models["wong-kolter"] = (NetworkModel(net, num_classes=10), {"engine": "published"})
    return models


def evaluate(args):
    """See the module notes. Results go to ``DIR/eval-<tag>.json`` (several ``eval`` processes
    may share the models: each its own tag); the figure merges every ``eval-*.json``."""
    from cvcore.adversarial import pgd
    from cvcore.io.datasets import to_nchw
    data = _load(args.datasets, 0)
    x = to_nchw(data.x_test)[:args.n]     # float32 in [0, 1]
    y = data.y_test[:args.n].astype(np.int64)
    models = _targets(args.out)
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models}
    print(machine_line(), flush=True)
    out_path = Path(args.out) / f"eval-{args.tag}.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    xc, yc = x[:args.curve_n], y[:args.curve_n]

    def acc(model, xs, ys):
        return float(np.mean(model.predict(xs, 500) == ys))

    def attack(model, xs, ys, eps, steps=PGD_STEPS):
        return pgd(model, xs, ys, eps, steps=steps, random_start=True, seed=0, batch_size=500)

    def save():
        from cvcore.io.atomic import atomic_write
        with atomic_write(out_path, "w") as f:
            json.dump(results, f, indent=1)

    # 1. the table: clean and PGD-20 at EPS_TABLE on the first n test images, every model
    for name, (model, meta) in ({} if args.transfer_only else models).items():
        r = results.setdefault(name, {})
        if "clean" not in r:
            t0, c0 = time.perf_counter(), time.process_time()
            r.update(clean=acc(model, x, y), n=len(x), train=meta)
            r[f"pgd{PGD_STEPS}_eps{EPS_TABLE}"] = acc(model, attack(model, x, y, EPS_TABLE), y)
            r["table_seconds"] = time.perf_counter() - t0
            r["table_cpu_seconds"] = time.process_time() - c0
            save()
        print(f"{name}: {json.dumps({k: v for k, v in r.items() if k != 'train'})}", flush=True)
    if not args.curve_n:
        return
    # 2. the curve and the gradient-masking checks on the first curve_n
    for name, (model, meta) in ({} if args.transfer_only else models).items():
        r = results[name]
        if "curve" not in r:
            t0 = time.perf_counter()
            r["curve_n"] = len(xc)
            r["curve"] = [acc(model, xc, yc) if e == 0 else acc(model, attack(model, xc, yc, e),
                                                                  yc) for e in EPS_CURVE]
            r["large_eps"] = {}
            for e in EPS_LARGE:     # 1.0 only if 0.5 left anything standing
                r["large_eps"][e] = acc(model, attack(model, xc, yc, e), yc)
                if r["large_eps"][e] == 0:
                    break
            r["steps"] = {s: (r["curve"][EPS_CURVE.index(EPS_TABLE)] if s == PGD_STEPS else
                              acc(model, attack(model, xc, yc, EPS_TABLE, s), yc))
                          for s in STEPS_CHECK}
            r["curve_seconds"] = time.perf_counter() - t0
            save()
        print(f"{name}: curve {r['curve']} large {r['large_eps']} steps {r['steps']}",
              flush=True)
    # 3. transfer: each model's PGD-20 examples at EPS_TABLE against every other model; the
    #    white-box figure to compare with is the target's own curve at EPS_TABLE (same images)
    if args.transfer or args.transfer_only:
        tr = results.setdefault("_transfer", {})
        for src, (smodel, _) in models.items():
            todo = [dst for dst in models if dst != src and f"{src}->{dst}" not in tr]
            if todo:
                adv = attack(smodel, xc, yc, EPS_TABLE)
                for dst in todo:
                    tr[f"{src}->{dst}"] = acc(models[dst][0], adv, yc)
                save()
        print(f"transfer (source->target, eps {EPS_TABLE}, first {len(xc)}): {json.dumps(tr)}",
              flush=True)
    plot(args)


def plot(args):
    """``DIR/robustness_curves.png`` from every ``DIR/eval-*.json``."""
    from cvcore.train.robustness import plot_robustness_curves
    curves, n = [], set()
    for path in sorted(Path(args.out).glob("eval-*.json")):
        for k, v in json.loads(path.read_text()).items():
            if not k.startswith("_") and "curve" in v:
                curves.append({"name": LABELS.get(k, k), "eps": list(EPS_CURVE), "robust_accuracy": v["curve"],
                               "attack": "pgd", "steps": PGD_STEPS})
                n.add(v["curve_n"])
    if curves:
        path = Path(args.out) / "robustness_curves.png"
        plot_robustness_curves(curves, path, f"Fashion-MNIST, PGD-{PGD_STEPS} (first "
                                             f"{'/'.join(map(str, sorted(n)))} test images)")
        print(f"figure: {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in ("train", "hog", "eval", "plot"):
        p = sub.add_parser(cmd)
        p.add_argument("--out", required=True)
        p.add_argument("--datasets", default=os.environ.get("CVCORE_DATASETS",
                                                            str(SHARED / "datasets")))
        p.add_argument("--subset", type=int, default=0, help="the first N training images")
        if cmd == "train":
            p.add_argument("--epochs", type=int, default=3)
            p.add_argument("--adversarial", choices=("none", "fgsm"), default="none")
            p.add_argument("--eps", type=float, default=EPS_TABLE)
            p.add_argument("--engine", choices=("cvcore", "torch"), default="cvcore")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--name", default=None)
            p.add_argument("--limit-batches", type=int, default=0)
        if cmd == "eval":
            p.add_argument("--n", type=int, default=10000)
            p.add_argument("--curve-n", type=int, default=1000)
            p.add_argument("--models", nargs="*", default=None)
            p.add_argument("--tag", default="all")
            p.add_argument("--transfer", action="store_true")
            p.add_argument("--transfer-only", action="store_true")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    {"train": train, "hog": hog, "eval": evaluate, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
