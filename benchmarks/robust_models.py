"""The published robust networks under FGSM and PGD: cvcore beside PyTorch, in one run.

    python -m benchmarks.robust_models [--n 10000] [--models trades wk-mnist wk-fashion]
                                       [--skip-torch] [--threads T] [--sanity N]

For each network of ``../shared/models`` (TRADES' MNIST SmallCNN, Wong & Kolter's MNIST and
Fashion-MNIST networks), loaded by cvcore without torch and by torch itself, on the first ``n``
test images: clean accuracy, FGSM (one step of eps) and PGD with the settings of
``../shared/models/README.md`` -- TRADES: eps 0.3, 40 steps of 0.01 from a uniform random start;
Wong & Kolter: eps 0.1, 100 steps of 0.01, no random start. Prints accuracies, the README's
figures, and the time of each engine with the ratio.

The random start (``--noise``) is, by default, the README's own draw: ``torch.manual_seed(0)``
and then torchattacks' ``PGD`` (``torch.empty_like(x).uniform_(-eps, eps)``, then clipped to
[0, 1]) over the test set in order, nothing else drawing in between. PyTorch's CPU generator
fills tensors serially, so that draw is the same whatever the batch size; it is reproduced
bit for bit without torch by :func:`cvcore.adversarial.torch_uniform_start` (seed 0, skip 0)
and handed to both engines' PGD. With it TRADES gives 96.80, the README's figure (PyTorch's own
``torch.manual_seed(0)`` draw, and cvcore from the replayed noise). ``--noise cvcore`` uses
cvcore's per-image generators ``(seed 0, restart 0, index)`` instead (96.67: another draw).

``--threads``: Numba's and PyTorch's thread count. On a busy machine use 1: a parallel region
waits at its barrier for a thread the scheduler has parked, and the waiting threads spin
(``GOMP_SPINCOUNT``), so two threads under load cost several times the CPU of one (measured:
Wong & Kolter's network, batch 500, one gradient 0.86 s wall / 0.18 s CPU on 2 threads,
0.14 s / 0.035 s on 1, load average 7).

``--sanity N``: the gradient-masking checks of Carlini et al. 2019 on the first N test images of
each network instead (PGD-20, random start, step 2.5 eps / 20): accuracy against eps (up to 1.0,
where every image is reachable), against the number of steps at the model's eps, and white-box
against the same attack transferred from the other network of the same data set.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: name -> (file, data set, eps, PGD steps, step size, random start, README clean/FGSM/PGD %)
SETTINGS = {
    "trades": ("trades_model_mnist_smallcnn.pt", "mnist", 0.3, 40, 0.01, True,
               (99.48, 97.86, 96.80)),
    "wk-fashion": ("wongkolter_fashion_mnist.pth", "fashion-mnist", 0.1, 100, 0.01, False,
                   (78.27, 68.80, 68.42)),
    "wk-mnist": ("wongkolter_mnist.pth", "mnist", 0.1, 100, 0.01, False, (98.20, 96.10, 95.94)),
}


#: ``torch.manual_seed`` value and earlier 32-bit draws of the README's random start (see the
#: module notes): found by replaying candidate conventions; seed 0, nothing drawn before.
README_TORCH_SEED, README_TORCH_SKIP = 0, 0


def random_start(x, eps, noise="torch"):
    """The PGD random start of the whole test set: the README's (torch) draw, or cvcore's."""
    from cvcore.adversarial import torch_uniform_start
    from cvcore.adversarial.attacks import _random_start
    if noise == "torch":
        return torch_uniform_start(x.shape, eps, README_TORCH_SEED, README_TORCH_SKIP)
    return _random_start(x.shape, eps, "linf", 0, 0, np.arange(len(x)))


def torch_net(torch, builder, state):
    """The same architecture in PyTorch, with the same parameter names."""
    t = torch.nn
    if builder == "trades_smallcnn":
        from collections import OrderedDict
        net = t.Sequential(OrderedDict([
            ("feature_extractor", t.Sequential(OrderedDict([
                ("conv1", t.Conv2d(1, 32, 3)), ("relu1", t.ReLU()),
                ("conv2", t.Conv2d(32, 32, 3)), ("relu2", t.ReLU()),
                ("maxpool1", t.MaxPool2d(2, 2)),
                ("conv3", t.Conv2d(32, 64, 3)), ("relu3", t.ReLU()),
                ("conv4", t.Conv2d(64, 64, 3)), ("relu4", t.ReLU()),
                ("maxpool2", t.MaxPool2d(2, 2))]))),
            ("classifier", t.Sequential(OrderedDict([
                ("flatten", t.Flatten()), ("fc1", t.Linear(1024, 200)), ("relu1", t.ReLU()),
                ("drop", t.Dropout(0.5)), ("fc2", t.Linear(200, 200)), ("relu2", t.ReLU()),
                ("fc3", t.Linear(200, 10))])))]))
    else:
        net = t.Sequential(t.Conv2d(1, 16, 4, stride=2, padding=1), t.ReLU(),
                           t.Conv2d(16, 32, 4, stride=2, padding=1), t.ReLU(), t.Flatten(),
                           t.Linear(1568, 100), t.ReLU(), t.Linear(100, 10))
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return net.eval()


def torch_attacks(torch, net, x, y, eps, steps, alpha, start, batch=500):
    """Clean, FGSM and PGD accuracy (%) in PyTorch; the same operations as torchattacks."""
    f = torch.nn.functional
    counts = np.zeros(3)
    for i in range(0, len(x), batch):
        xb, yb = torch.from_numpy(x[i:i + batch]), torch.from_numpy(y[i:i + batch])

        def grad(a):
            a = a.clone().requires_grad_(True)
            return torch.autograd.grad(f.cross_entropy(net(a), yb), a)[0]
        with torch.no_grad():
            counts[0] += (net(xb).argmax(1) == yb).sum().item()
        adv = torch.clamp(xb + eps * grad(xb).sign(), 0, 1)
        with torch.no_grad():
            counts[1] += (net(adv).argmax(1) == yb).sum().item()
        adv = xb if start is None else torch.clamp(xb + torch.from_numpy(start[i:i + batch]),
                                                   0, 1)
        for _ in range(steps):
            adv = adv + alpha * grad(adv).sign()
            adv = torch.clamp(xb + torch.clamp(adv - xb, -eps, eps), 0, 1)
        with torch.no_grad():
            counts[2] += (net(adv).argmax(1) == yb).sum().item()
    return 100 * counts / len(x)


def cvcore_attacks(model, x, y, eps, steps, alpha, start, batch=500):
    from cvcore.adversarial import fgsm, pgd
    clean = np.mean(model.predict(x) == y)
    adv = fgsm(model, x, y, eps, batch_size=batch)
    f_acc = np.mean(model.predict(adv) == y)
    adv = pgd(model, x, y, eps, steps=steps, step_size=alpha, random_start=False, start=start,
              batch_size=batch)
    p_acc = np.mean(model.predict(adv) == y)
    return 100 * np.array([clean, f_acc, p_acc])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="test images (default: all)")
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-cvcore", action="store_true",
                        help="PyTorch only (its half of an earlier --skip-torch run)")
    parser.add_argument("--threads", type=int, default=0, help="threads (default: all)")
    parser.add_argument("--noise", choices=("torch", "cvcore"), default="torch",
                        help="random start: the README's torch.manual_seed(0) draw (default) "
                             "or cvcore's per-image generators")
    parser.add_argument("--sanity", type=int, default=0, metavar="N",
                        help="run the gradient-masking checks on N test images instead")
    parser.add_argument("--datasets", default=os.environ.get("CVCORE_DATASETS",
                                                             str(SHARED / "datasets")))
    args = parser.parse_args(argv)
    from cvcore.adversarial import NetworkModel, load_published
    from cvcore.io.datasets import load_mnist
    print(machine_line())
    if args.threads:
        import numba
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if args.sanity:
        return sanity(args)
    torch = None
    if not args.skip_torch:
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
    for name in args.models:
        file, data, eps, steps, alpha, random, readme = SETTINGS[name]
        x, y = load_mnist(Path(args.datasets) / data, "test")
        x = (x[:args.n, None].astype(np.float32) / 255)
        y = y[:args.n].astype(np.int64)
        start = random_start(x, eps, args.noise) if random else None
        net, info = load_published(SHARED / "models" / file)
        t0 = time.perf_counter()
        if args.skip_cvcore:
            t_ours, line = None, f"{name:11s} n={len(x)} eps={eps}:"
        else:
            ours = cvcore_attacks(NetworkModel(net), x, y, eps, steps, alpha, start)
            t_ours = time.perf_counter() - t0
            line = (f"{name:11s} n={len(x)} eps={eps}: cvcore clean {ours[0]:.2f} "
                    f"FGSM {ours[1]:.2f} PGD-{steps} {ours[2]:.2f} ({t_ours:.0f} s)")
        if torch is not None:
            t0 = time.perf_counter()
            ref = torch_attacks(torch, torch_net(torch, info["builder"], net.state_dict()), x, y,
                                eps, steps, alpha, start)
            t_ref = time.perf_counter() - t0
            line += (f" | PyTorch clean {ref[0]:.2f} FGSM {ref[1]:.2f} PGD {ref[2]:.2f} "
                     f"({t_ref:.0f} s" + ("" if t_ours is None else
                                          f"; cvcore/PyTorch time {t_ours / t_ref:.2f}") + ")")
        if len(x) == 10000:
            line += f" | README {readme[0]:.2f} {readme[1]:.2f} {readme[2]:.2f}"
        print(line, flush=True)


#: Budgets of the sanity sweep, and the step counts of the step sweep.
SANITY_EPS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
SANITY_STEPS = (1, 5, 20, 100)
SANITY_PGD_STEPS = 20


def sanity(args):
    """The gradient-masking checks (see the module notes); prints one JSON line per network."""
    import json
    from cvcore.adversarial import NetworkModel, load_published, pgd
    from cvcore.io.datasets import load_mnist
    nets, data = {}, {}
    for name in args.models:
        file, dataset, eps, *_ = SETTINGS[name]
        net, _ = load_published(SHARED / "models" / file)
        nets[name] = (NetworkModel(net), dataset, eps)
        if dataset not in data:
            x, y = load_mnist(Path(args.datasets) / dataset, "test")
            data[dataset] = (x[:args.sanity, None].astype(np.float32) / 255,
                             y[:args.sanity].astype(np.int64))

    def attack(model, x, y, eps, steps=SANITY_PGD_STEPS):
        return pgd(model, x, y, eps, steps=steps, random_start=True, seed=0, batch_size=500)

    def acc(model, x, y):
        return round(100 * float(np.mean(model.predict(x) == y)), 2)

    for name, (model, dataset, eps) in nets.items():
        t0 = time.perf_counter()
        x, y = data[dataset]
        r = {"n": len(x), "eps": eps,
             "by_eps": {e: acc(model, attack(model, x, y, e), y) if e else acc(model, x, y)
                        for e in SANITY_EPS}}
        r["white_box"] = r["by_eps"][eps]           # PGD-20 at the model's eps
        r["by_steps"] = {s: r["white_box"] if s == SANITY_PGD_STEPS else
                         acc(model, attack(model, x, y, eps, s), y) for s in SANITY_STEPS}
        for other, (omodel, odata, _) in nets.items():
            if other != name and odata == dataset:
                r[f"transfer_from_{other}"] = acc(model, attack(omodel, x, y, eps), y)
        r["seconds"] = round(time.perf_counter() - t0)
        print(f"{name}: {json.dumps(r)}", flush=True)


if __name__ == "__main__":
    main()
