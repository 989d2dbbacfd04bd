"""ResNet-20 trained by cvcore and by PyTorch with the same recipe, in one run.

    python -m benchmarks.train_resnet [--data fashion-mnist] [--epochs 4] [--subset N]

The recipe (issue 6): batch 128, SGD with Nesterov momentum 0.9, weight decay 5e-4, a one-cycle
schedule peaking at lr 0.2 (PyTorch's ``OneCycleLR`` defaults otherwise), random horizontal flips
and 4-pixel padded crops, per-channel standardisation, all of the training set, then the test set.
Both networks start from the same weights (cvcore's initialisation copied into the PyTorch twin)
and see the same batches in the same order with the same augmentation, so what differs is only
the arithmetic of the two engines. Prints the test accuracy and time of each.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--datasets", default=os.environ.get(
        "CVCORE_DATASETS", str(Path(__file__).resolve().parents[2] / "shared" / "datasets")))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--subset", type=int, default=0, help="train on the first N images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args(argv)

    from cvcore import nn
    from cvcore.io.datasets import load_dataset, to_nchw
    from cvcore.train.loop import TrainConfig, Trainer, predict_batches
    from cvcore.train.pipeline import _standard_augment

    print(machine_line())
    root = Path(args.datasets) / args.data if args.data in ("fashion-mnist", "mnist") else None
    data = load_dataset(args.data, root=root)
    if args.subset:
        data.x_train, data.y_train = data.x_train[:args.subset], data.y_train[:args.subset]
    xt, xs = to_nchw(data.x_train), to_nchw(data.x_test)
    mean = xt.mean(axis=(0, 2, 3)).astype(np.float32)
    std = (xt.std(axis=(0, 2, 3)) + 1e-6).astype(np.float32)
    xt = (xt - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
    xs = (xs - mean.reshape(1, -1, 1, 1)) / std.reshape(1, -1, 1, 1)
    augment = _standard_augment(data.x_train.shape[1:3], mean, std)
    config = TrainConfig(epochs=args.epochs, batch_size=128, lr=0.2, momentum=0.9, nesterov=True,
                         weight_decay=5e-4, schedule="onecycle", seed=args.seed)
    net = nn.resnet20(num_classes=data.num_classes, in_channels=xt.shape[1],
                      rng=np.random.default_rng(args.seed))
    init = net.state_dict()
    print(f"{data!r}; {config}")

    t0 = time.perf_counter()
    Trainer(net, config, augment=augment, progress=False).fit(xt, data.y_train)
    cv_seconds = time.perf_counter() - t0
    cv_acc = float(np.mean(predict_batches(net, xs).argmax(1) == data.y_test))
    print(f"cvcore  resnet20: test accuracy {cv_acc:.4f}, {cv_seconds:.0f} s "
          f"({len(xt) * args.epochs / cv_seconds:.0f} images/s)", flush=True)
    if args.skip_torch:
        return

    import torch
    from benchmarks.torch_models import torch_resnet
    torch.set_num_threads(os.cpu_count() or 1)
    tnet = torch_resnet("resnet20", data.num_classes, xt.shape[1])
    tnet.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in init.items()})
    opt = torch.optim.SGD(tnet.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    steps = math.ceil(len(xt) / config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr,
                                                total_steps=config.epochs * steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    tnet.train()
    for epoch in range(1, config.epochs + 1):
        order = np.random.default_rng([config.seed, epoch]).permutation(len(xt))
        for b in range(steps):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            xb = augment(xt[idx], (config.seed, epoch, b))
            opt.zero_grad()
            loss = loss_fn(tnet(torch.from_numpy(xb)), torch.from_numpy(data.y_train[idx]))
            loss.backward()
            opt.step()
            sched.step()
    torch_seconds = time.perf_counter() - t0
    tnet.eval()
    with torch.no_grad():
        logits = torch.cat([tnet(torch.from_numpy(xs[i:i + 500])) for i in range(0, len(xs), 500)])
    torch_acc = float((logits.argmax(1).numpy() == data.y_test).mean())
    print(f"PyTorch resnet20: test accuracy {torch_acc:.4f}, {torch_seconds:.0f} s "
          f"({len(xt) * args.epochs / torch_seconds:.0f} images/s)")
    print(f"difference (cvcore - PyTorch): {100 * (cv_acc - torch_acc):+.2f} points; "
          f"time ratio PyTorch/cvcore {torch_seconds / cv_seconds:.2f}")


if __name__ == "__main__":
    main()
