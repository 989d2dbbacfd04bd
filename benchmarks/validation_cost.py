"""What the argument checks of issue 11 cost: the same workloads timed in this tree and in an
older tree without the checks (``--base``, e.g. a ``git archive`` of the commit before them),
each in its own process, interleaved, so that a shared machine's load hits both alike.

    git archive 59ee0b7 | tar -x -C /tmp/base
    python -m benchmarks.validation_cost --base /tmp/base --rounds 3

or a worktree of today's tree with the checking commit reverted in the files it touched
(``git show a6e158e -- cvcore/nn | git apply -R --3way``), so that only the checks differ;
``--cpu`` times one thread by its CPU clock.

Workloads (the figures of ``benchmarks.cnn --models-only``, ``benchmarks.hog`` and
``benchmarks.keypoints`` at a smaller size): ResNet-20 inference (eval, no_grad, batch 128,
1x28x28), a ResNet-20 training step (batch 64), ``hog_batch`` of 2000 28x28 images, ``sift`` of
a 480x640 photo, and the per-call overhead of a functional layer pair on a tiny input (where the
checks are all there is).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, os, time, numpy as np
from cvcore import nn
from cvcore.features import hog_batch, sift
clock = time.process_time if os.environ.get("VALIDATION_COST_CPU") else time.perf_counter
def best(fn, n):
    fn(); ts = []
    for _ in range(n):
        t = clock(); fn(); ts.append(clock() - t)
    return min(ts)
rng = np.random.default_rng(0)
out = {}
net = nn.resnet20(num_classes=10, in_channels=1, rng=np.random.default_rng(0))
x = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
net.eval()
def infer():
    with nn.no_grad():
        net(x)
out["resnet20 inference b128 (ms)"] = 1e3 * best(infer, 5)
net.train()
crit = nn.CrossEntropyLoss()
opt = nn.SGD(net.named_parameters(), lr=0.01, momentum=0.9)
xb, yb = x[:64], rng.integers(0, 10, 64)
def step():
    crit(net(xb), yb); net.backward(crit.backward()); opt.step()
out["resnet20 train step b64 (ms)"] = 1e3 * best(step, 5)
imgs = rng.integers(0, 256, (2000, 28, 28)).astype(np.float32) / 255
out["hog_batch 2000x28x28 (ms)"] = 1e3 * best(lambda: hog_batch(imgs, pixels_per_cell=(4, 4), cells_per_block=(2, 2)), 5)
from cvcore.io import imread
photo = imread("cvcore/data/roofs1.jpg", mode="gray")
out["sift roofs1 (ms)"] = 1e3 * best(lambda: sift(photo), 3)
t = np.ones((1, 2, 4, 4), np.float32)
def pair():
    y, c = nn.relu_forward(t); nn.relu_backward(y, c)
    y, c = nn.maxpool2d_forward(t, 2); nn.maxpool2d_backward(y, c)
    y, c = nn.linear_forward(t.reshape(2, 16), np.ones((3, 16), np.float32)); nn.linear_backward(y, c)
out["3 tiny forward/backward pairs (us)"] = 1e6 * best(pair, 200)
print(json.dumps(out))
'''


def run(tree, cpu=False):
    env = dict(os.environ, PYTHONPATH=tree)
    if cpu:     # one thread, timed by the process's CPU clock: robust to a shared machine's load
        env.update(VALIDATION_COST_CPU="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=tree, env=env, capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="tree without the checks")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cpu", action="store_true",
                   help="one thread, CPU time (time.process_time) instead of wall time")
    args = p.parse_args(argv)
    here = os.getcwd()
    results = {"checks": [], "base": []}
    run(args.base, args.cpu), run(here, args.cpu)   # warm the Numba caches of both trees
    for _ in range(args.rounds):
        results["base"].append(run(args.base, args.cpu))
        results["checks"].append(run(here, args.cpu))
    print(f"{'workload':38s} {'without':>10s} {'with checks':>12s} {'ratio':>7s}")
    for key in results["base"][0]:
        a = statistics.median(r[key] for r in results["base"])
        b = statistics.median(r[key] for r in results["checks"])
        print(f"{key:38s} {a:10.2f} {b:12.2f} {b / a:7.3f}")
    print(f"(medians of {args.rounds} interleaved runs, each the best of its repeats, "
          f"{'one-thread CPU time' if args.cpu else 'wall time'}; "
          f"load: {os.getloadavg()[0]:.1f})")
    if args.cpu:
        entry_checks()


def entry_checks():
    """The checks at the entry of a whole workload, timed alone beside the workload in this
    process (one thread, CPU time): what ``sift`` spends on its input check (finite, at most
    MAX_INTENSITY: one pass over the image) and ``hog_batch`` on its checks of a batch."""
    import time

    import numpy as np
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    from cvcore.features import hog_batch, sift
    from cvcore.features._sift import _check_magnitude
    from cvcore.io import imread

    def best(fn, n):
        fn()
        ts = []
        for _ in range(n):
            t = time.process_time()
            fn()
            ts.append(time.process_time() - t)
        return min(ts)
    photo = imread("cvcore/data/roofs1.jpg", mode="gray").astype(np.float32) / 255
    whole = best(lambda: sift(photo), 3)
    check = best(lambda: _check_magnitude(photo, "image"), 50)
    print(f"sift {photo.shape}: {1e3 * whole:.1f} ms, its input check {1e6 * check:.1f} us "
          f"({100 * check / whole:.3f} %)")
    imgs = np.random.default_rng(0).random((2000, 28, 28), dtype=np.float32)
    from cvcore._validate import check_array, check_finite
    whole = best(lambda: hog_batch(imgs, pixels_per_cell=(4, 4), cells_per_block=(2, 2)), 3)
    check = best(lambda: check_finite(check_array(imgs, "images", ndim=3, dtypes="f"),
                                      "images"), 50)
    print(f"hog_batch {imgs.shape}: {1e3 * whole:.1f} ms, a finiteness check of the batch "
          f"{1e6 * check:.1f} us ({100 * check / whole:.3f} %)")


if __name__ == "__main__":
    main()
