"""The non-convolution layers of a ResNet step, cvcore against PyTorch (CPU), on the same input.

Shapes are those of a ResNet-20 training step at batch 128 (3x32x32 images: 16x32x32, 32x16x16
and 64x8x8 activations) and of the ResNet-50 stem at batch 1 (64x112x112 into the max pool).
Each row is forward + backward (training mode) unless it says "eval" (a forward under
``no_grad`` on both sides); PyTorch runs through autograd with the same thread count. The
point: batch norm, ReLU, pooling, the residual sum and the loss must not be what makes a cvcore
training step slower than PyTorch's (the convolutions are measured in ``benchmarks/cnn.py``).

Run: ``OMP_WAIT_POLICY=PASSIVE python -m benchmarks.nn_layers [--threads 2]``
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # see benchmarks/README.md (oversubscription)

import numpy as np  # noqa: E402

from benchmarks.common import Row, machine_line, optional, print_table, run_rows  # noqa: E402


def _pair(module, x, dy):
    def run():
        module(x)
        module.backward(dy)
    return run


def rows(threads: int):
    from cvcore import nn
    torch = optional("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out = []

    def torch_fb(tmod, x, dy):
        if torch is None:
            return None
        xt = torch.from_numpy(x).requires_grad_(True)
        dyt = torch.from_numpy(dy)

        def run():
            xt.grad = None
            tmod(xt).backward(dyt)
        return run

    def torch_eval(tmod, x):
        if torch is None:
            return None
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                tmod(xt)
        return run

    def cv_eval(mod, x):
        def run():
            with nn.no_grad():          # inference, as torch.no_grad: no cache for backward
                mod(x)
        return run

    for C, S in ((16, 32), (32, 16), (64, 8)):
        x = rng.standard_normal((128, C, S, S)).astype(np.float32)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        out.append(Row(f"BatchNorm2d 128x{C}x{S}x{S}", _pair(nn.BatchNorm2d(C), x, dy),
                       {"torch": torch_fb(torch.nn.BatchNorm2d(C) if torch else None, x, dy)}))
    x = rng.standard_normal((128, 16, 32, 32)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    out.append(Row("ReLU 128x16x32x32", _pair(nn.ReLU(), x, dy),
                   {"torch": torch_fb(torch.nn.ReLU() if torch else None, x, dy)}))
    bn_eval = nn.BatchNorm2d(16).eval()
    out.append(Row("BatchNorm2d eval 128x16x32x32", cv_eval(bn_eval, x),
                   {"torch": torch_eval(torch.nn.BatchNorm2d(16).eval() if torch else None, x)}))
    xs = rng.standard_normal((1, 64, 112, 112)).astype(np.float32)
    pool = nn.MaxPool2d(3, 2, 1).eval()
    out.append(Row("MaxPool2d 3/2/1 eval 1x64x112x112", cv_eval(pool, xs),
                   {"torch": torch_eval(torch.nn.MaxPool2d(3, 2, 1) if torch else None, xs)}))
    xp = rng.standard_normal((128, 16, 32, 32)).astype(np.float32)
    dyp = rng.standard_normal((128, 16, 16, 16)).astype(np.float32)
    out.append(Row("MaxPool2d 3/2/1 128x16x32x32", _pair(nn.MaxPool2d(3, 2, 1), xp, dyp),
                   {"torch": torch_fb(torch.nn.MaxPool2d(3, 2, 1) if torch else None, xp, dyp)}))
    xg = rng.standard_normal((128, 64, 8, 8)).astype(np.float32)
    dyg = rng.standard_normal((128, 64, 1, 1)).astype(np.float32)
    out.append(Row("AdaptiveAvgPool2d(1) 128x64x8x8", _pair(nn.AdaptiveAvgPool2d(1), xg, dyg),
                   {"torch": torch_fb(torch.nn.AdaptiveAvgPool2d(1) if torch else None, xg,
                                      dyg)}))
    logits = rng.standard_normal((128, 10)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)

    def cv_ce():
        crit(logits, y)
        crit.backward()

    tce = None
    if torch is not None:
        lt = torch.from_numpy(logits).requires_grad_(True)
        yt = torch.from_numpy(y)
        tcrit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

        def tce():
            lt.grad = None
            tcrit(lt, yt).backward()
    out.append(Row("CrossEntropyLoss 128x10", cv_ce, {"torch": tce}, min_time=0.01))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(machine_line(), f"; threads {args.threads}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print_table(run_rows(rows(args.threads)))


if __name__ == "__main__":
    main()
