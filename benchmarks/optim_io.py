"""Optimiser steps (cvcore.nn.optim) against torch.optim, and weight files (cvcore.io.weights)
against torch.save/torch.load and the safetensors package, in one run.

    python -m benchmarks.optim_io [--skip-resnet50] [--threads 1]

Inputs: the parameter shapes of a CIFAR ResNet-20 (0.27 M parameters) and of an ImageNet
ResNet-50 (25.6 M), random float32 values and gradients, identical for cvcore and PyTorch.
Optimiser rows time one ``step()`` (after the state is created); torch runs with its CPU default
(single-tensor loop) and with ``foreach=True``, on one thread by default, as cvcore's NumPy code.
Weight rows save or load the ResNet-50 state dict (~98 MiB) in a temporary folder: cvcore
``save_safetensors`` / ``load_safetensors`` / ``save_npz`` / ``load_npz`` / ``load_torch`` (no
torch) against ``torch.save`` / ``torch.load(weights_only=True)`` and ``safetensors.numpy``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import Row, machine_line, optional, print_table, run_rows
from cvcore.io import weights as W
from cvcore.nn.module import Parameter
from cvcore.nn.optim import SGD, Adam


def parameter_shapes(arch: str, num_classes: int):
    """``(name, shape)`` of every parameter of cvcore's ``arch`` (``"resnet20"``: CIFAR, projection
    shortcuts, He et al. 2016; ``"resnet50"``: torchvision's layout), in torchvision's order."""
    from cvcore import nn
    model = getattr(nn, arch)(num_classes=num_classes, rng=0)
    return [(name, p.data.shape) for name, p in model.named_parameters()]


def optimiser_rows(label, shapes, torch):
    rng = np.random.default_rng(0)
    values = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes}
    grads = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes}
    count = sum(v.size for v in values.values())
    rows = []
    for name, ours_cls, kwargs in (
            ("SGD nesterov+wd", SGD, dict(lr=0.1, momentum=0.9, nesterov=True,
                                         weight_decay=5e-4)),
            ("Adam", Adam, dict(lr=1e-3))):
        params = []
        for n in values:
            p = Parameter(values[n].copy())
            p.grad = grads[n]
            params.append((n, p))
        ours = ours_cls(params, **kwargs)
        refs = {"torch": None, "torch foreach": None}
        if torch is not None:
            for ref_label, foreach in (("torch", None), ("torch foreach", True)):
                tparams = []
                for n in values:
                    tp = torch.nn.Parameter(torch.from_numpy(values[n].copy()))
                    tp.grad = torch.from_numpy(grads[n])
                    tparams.append(tp)
                opt = getattr(torch.optim, ours_cls.__name__)(tparams, foreach=foreach, **kwargs)
                refs[ref_label] = opt.step
        rows.append(Row(f"{name} step {label} {count / 1e6:.2f}M", ours.step, refs, repeats=5))
    return rows


def weight_rows(shapes, folder: Path, torch, st):
    rng = np.random.default_rng(1)
    state = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes}
    mib = sum(v.nbytes for v in state.values()) / 2**20
    pth, sft, npz = folder / "w.pth", folder / "w.safetensors", folder / "w.npz"
    if torch is not None:
        torch.save({n: torch.from_numpy(v) for n, v in state.items()}, pth)
    W.save_safetensors(sft, state)
    W.save_npz(npz, state)
    t_state = None if torch is None else {n: torch.from_numpy(v) for n, v in state.items()}
    tag = f"{mib:.0f}MiB"
    return [
        Row(f"save safetensors {tag}", lambda: W.save_safetensors(folder / "a.safetensors", state),
            {"safetensors": None if st is None else
             (lambda: st.save_file(state, str(folder / "b.safetensors"))),
             "torch.save": None if torch is None else
             (lambda: torch.save(t_state, folder / "b.pth"))}, repeats=3),
        Row(f"load safetensors {tag}", lambda: W.load_safetensors(sft),
            {"safetensors": None if st is None else (lambda: st.load_file(str(sft)))}, repeats=3),
        Row(f"save npz {tag}", lambda: W.save_npz(folder / "a.npz", state),
            {"np.savez": lambda: np.savez(folder / "b.npz", **state)}, repeats=3),
        Row(f"load npz {tag}", lambda: W.load_npz(npz),
            {"np.load": lambda: dict(np.load(npz))}, repeats=3),
        Row(f"load .pth {tag} (no torch)",
            (lambda: W.load_torch(pth)) if torch is not None else (lambda: None),
            {"torch.load": None if torch is None else
             (lambda: torch.load(pth, weights_only=True))}, repeats=3),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-resnet50", action="store_true",
                        help="only the ResNet-20-sized optimiser rows")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, as cvcore's single-threaded NumPy)")
    args = parser.parse_args(argv)
    torch = optional("torch")
    st = optional("safetensors.numpy")
    if torch is not None:
        # cvcore's optimiser and file code is single-threaded NumPy: give torch the same count.
        torch.set_num_threads(args.threads)
    print(machine_line() + (f"; torch {torch.__version__}" if torch is not None else ""))
    rows = optimiser_rows("resnet20", parameter_shapes("resnet20", 10), torch)
    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_resnet50:
            r50 = parameter_shapes("resnet50", 1000)
            rows += optimiser_rows("resnet50", r50, torch)
            rows += weight_rows(r50, Path(folder), torch, st)
        print_table(run_rows(rows))


if __name__ == "__main__":
    main()
