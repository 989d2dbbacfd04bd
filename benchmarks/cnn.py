"""cvcore's convolution and ResNets against PyTorch on the CPU: same input, same threads, one run.

Run from the repository root::

    python -m benchmarks.cnn                 # everything (several minutes)
    python -m benchmarks.cnn --shapes-only   # only the per-convolution-shape table
    python -m benchmarks.cnn --compile       # also the cold-cache Numba compile time
    python -m benchmarks.cnn --serve-batches # ResNet-20 inference on ONE kernel thread at
                                             # batches 1/8/16/32, CPU per image (~1 minute)
    python -m benchmarks.cnn --inference-rows  # the ResNet-20 b128 and ResNet-50 b1 inference
                                               # rows alone, default threads (~2 minutes)
    python -m benchmarks.cnn --layers        # ResNet-20 inference b128 step by step (each
                                             # fused plan call beside torch's conv + bn + add
                                             # + relu), 1 and 2 threads (~1 minute)
    python -m benchmarks.cnn --busy          # the model rows idle and under background loads
                                             # (benchmarks/cnn_busy.py; ~4 minutes)
    python -m benchmarks.cnn --efficientnet --cpu   # EfficientNet-Lite0 and depthwise only
                                                    # (cvcore and torch take turns call by call),
                                                    # with one-thread CPU times

Tables:

1. Per convolution shape of ResNet-20 (batch 128, 3x32x32 input) and of ResNet-50 (batch 1,
   224x224): forward, and forward + backward (dx and dW), cvcore vs ``torch.nn.functional.conv2d``
   + autograd; the warm times, the ratio (torch time / cvcore time: above 1 means cvcore is
   faster) and the achieved GFLOP/s.
2. Whole models (``cvcore.nn.resnet20`` / ``resnet50`` against the same network built in
   PyTorch by ``benchmarks/torch_models.py``, with the same weights copied in through the state
   dict; there is no torchvision):
   ResNet-20 training step (forward, cross-entropy, backward, SGD with momentum and weight decay)
   at batch 128; ResNet-20 inference at batch 128; ResNet-50 inference at batch 1 on 224x224.
   Time (median of 5 rounds in which cvcore and torch take turns call by call), images/s,
   GFLOP/s, peak resident memory growth, first call.

FLOP counts are 2 x the multiply-adds of the convolutions and the fully connected layer (the
usual convention; batch norm, ReLU, pooling and the optimiser are not counted). A training step
is counted as 3 x the forward (forward, input gradient, weight gradient). The machine's float32
matrix-multiply peak is printed for reference (one large ``numpy.matmul``).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import (Row, machine_line, optional, print_table, run_interleaved, run_rows,
                               time_fn)

torch = optional("torch")
import kernels  # noqa: E402,F401  (cvcore's OpenMP spin default, printed below)

if torch is not None:
    from benchmarks.torch_models import copy_into_torch, torch_resnet
THREADS = os.cpu_count() or 1

# (label, N, C, K, H, kernel, stride, padding): every distinct convolution of ResNet-20 at
# batch 128 (He et al. 2016, sec. 4.2; projection shortcuts as torchvision's layout) ...
RESNET20_SHAPES = [
    ("r20 stem 3->16 32x32", 128, 3, 16, 32, 3, 1, 1),
    ("r20 3x3 16->16 32x32", 128, 16, 16, 32, 3, 1, 1),
    ("r20 3x3/2 16->32 32x32", 128, 16, 32, 32, 3, 2, 1),
    ("r20 1x1/2 16->32 32x32", 128, 16, 32, 32, 1, 2, 0),
    ("r20 3x3 32->32 16x16", 128, 32, 32, 16, 3, 1, 1),
    ("r20 3x3/2 32->64 16x16", 128, 32, 64, 16, 3, 2, 1),
    ("r20 3x3 64->64 8x8", 128, 64, 64, 8, 3, 1, 1),
]
# ... and a few of ResNet-50 at batch 1 (He et al. 2016, table 1; v1.5 strides)
RESNET50_SHAPES = [
    ("r50 stem 7x7/2 3->64 224", 1, 3, 64, 224, 7, 2, 3),
    ("r50 1x1 64->256 56x56", 1, 64, 256, 56, 1, 1, 0),
    ("r50 3x3 64->64 56x56", 1, 64, 64, 56, 3, 1, 1),
    ("r50 3x3/2 128->128 56x56", 1, 128, 128, 56, 3, 2, 1),
    ("r50 3x3 256->256 14x14", 1, 256, 256, 14, 3, 1, 1),
    ("r50 1x1 1024->256 14x14", 1, 1024, 256, 14, 1, 1, 0),
    ("r50 3x3 512->512 7x7", 1, 512, 512, 7, 3, 1, 1),
]


def conv_flops(N, C, K, H, k, s, p):
    Ho = (H + 2 * p - k) // s + 1
    return 2.0 * N * K * C * k * k * Ho * Ho


def matmul_peak():
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    t = time_fn(lambda: a @ a, repeats=5)
    return 2 * 2048 ** 3 / t.median / 1e9


# -- per-shape rows ----------------------------------------------------------------------------

def shape_rows(shapes, repeats):
    from cvcore.nn.conv import conv2d_backward, conv2d_forward
    rows, flops = [], {}
    rng = np.random.default_rng(0)
    for label, N, C, K, H, k, s, p in shapes:
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = (rng.standard_normal((K, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
        y, cache = conv2d_forward(x, w, None, s, p)
        dy = rng.standard_normal(y.shape).astype(np.float32)

        def cv_fwd(x=x, w=w, s=s, p=p):
            conv2d_forward(x, w, None, s, p)

        def cv_train(x=x, w=w, s=s, p=p, dy=dy):
            _, c = conv2d_forward(x, w, None, s, p)
            conv2d_backward(dy, c)

        refs_f, refs_t = {"torch": None}, {"torch": None}
        if torch is not None:
            xt, wt, dyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)
            xg, wg = xt.clone().requires_grad_(), wt.clone().requires_grad_()

            def t_fwd(xt=xt, wt=wt, s=s, p=p):
                with torch.no_grad():
                    torch.nn.functional.conv2d(xt, wt, None, s, p)

            def t_train(xg=xg, wg=wg, s=s, p=p, dyt=dyt):
                xg.grad = wg.grad = None
                torch.nn.functional.conv2d(xg, wg, None, s, p).backward(dyt)

            refs_f, refs_t = {"torch": t_fwd}, {"torch": t_train}
        f = conv_flops(N, C, K, H, k, s, p)
        rows.append(Row(f"{label} fwd", cv_fwd, refs_f, repeats=repeats))
        rows.append(Row(f"{label} f+b", cv_train, refs_t, repeats=repeats))
        flops[f"{label} fwd"] = f
        flops[f"{label} f+b"] = 3 * f
    return rows, flops


def print_gflops(results, flops):
    print(f"\n{'shape':<34} {'cvcore GF/s':>11} {'torch GF/s':>10}")
    for name, timings in results:
        cv, ref = timings["cvcore"], timings.get("torch")
        ref_s = f"{flops[name] / ref.median / 1e9:10.1f}" if ref is not None else "       n/a"
        print(f"{name:<34} {flops[name] / cv.median / 1e9:11.1f} {ref_s}")


# -- whole models ------------------------------------------------------------------------------

def model_forward_flops(model, shape):
    """2 x multiply-adds of every Conv2d and Linear in one forward of a batch of ``shape``."""
    from cvcore.nn.conv import Conv2d
    total = 0.0
    originals = {}

    def counting(self, x, *args, _orig=Conv2d._convolve):
        nonlocal total
        y = _orig(self, x, *args)
        # each output value: one multiply-add per weight of its group (C/groups * kh * kw)
        total += 2.0 * y.size * self.weight.data[0].size
        return y

    originals["conv"] = Conv2d._convolve
    Conv2d._convolve = counting
    try:
        was_training = model.training
        model.eval()
        model(np.zeros((1,) + tuple(shape[1:]), np.float32))
        model.train(was_training)
    finally:
        Conv2d._convolve = originals["conv"]
    fc = (model.fc if hasattr(model, "fc") else model._fc).weight.data
    return (total + 2.0 * fc.size) * shape[0]


# workload name -> batch size (ResNet-20 on 3x32x32 inputs, ResNet-50 on 3x224x224)
MODEL_WORKLOADS = {"resnet20 train step b128": 128, "resnet20 inference b128": 128,
                   "resnet50 inference b1 224": 1,
                   # EfficientNet-Lite0 (issue 13): inference, and a fine-tuning step as
                   # `cvcore train --freeze none` runs it (frozen BN statistics, SGD)
                   "effnet-lite0 inference b1 224": 1, "effnet-lite0 inference b32 224": 32,
                   "effnet-lite0 finetune b32 224": 32}


def model_rows(repeats, prefix=""):
    import cvcore.nn as cnn
    rows, info = [], {}
    for name, n in MODEL_WORKLOADS.items():
        if not name.startswith(prefix):
            continue
        r50 = name.startswith("resnet50")
        eff = name.startswith("effnet")
        size = 224 if (r50 or eff) else 32
        net = cnn.efficientnet_lite0() if eff else cnn.resnet50() if r50 else cnn.resnet20()
        flops = model_forward_flops(net, (n, 3, size, size))
        # a training step counts as 3 forwards (forward, input gradient, weight gradient)
        info[name] = (n, (3 if "train" in name else 1) * flops)
        refs = {"torch": _workload("torch", name, n) if torch is not None else None}
        rows.append(Row(name, _rule_counted(name, _workload("cvcore", name, n)), refs,
                        repeats=repeats))
    return rows, info


#: workload name -> [calls, calls whose forward ran on fewer threads than Numba's count]
RULE_COUNTS: dict = {}


def _rule_counted(name, fn):
    """``fn`` counting, per call, whether cvcore's free-core rule (:func:`cvcore._threads.
    usable_threads`, read by each forward pass and again between its steps) chose fewer threads
    than were set anywhere in the call: then the machine had a competitor (or a reading said
    so), and the row measured cvcore partly on fewer threads than torch had."""
    import cvcore._threads as rule
    counts = RULE_COUNTS.setdefault(name, [0, 0])

    def call():
        original = rule.usable_threads
        fewer = []

        def counting(cap):
            use = original(cap)
            fewer.append(use < cap)
            return use
        rule.usable_threads = counting
        try:
            return fn()
        finally:
            rule.usable_threads = original
            counts[0] += 1
            counts[1] += any(fewer)
    return call


def print_model_table(results, info, peak, memory):
    """``MiB``: resident-memory growth of the first full-size call in a fresh process after a
    small warm-up (:func:`memory_child`); the harness's in-process figure reads 0 once the
    allocator has kept the memory of earlier calls. ``1st ms``: the first full-size call in
    this process (kernels already compiled by the warm-up of the memory runs or the cache)."""
    print(f"\n{'model':<28} {'impl':<7} {'ms':>8} {'img/s':>8} {'GF/s':>6} {'%peak':>6} "
          f"{'MiB':>7} {'1st ms':>8}")
    for name, timings in results:
        n_img, flops = info[name]
        for label, t in timings.items():
            if t is None:
                print(f"{name:<28} {label:<7} {'n/a':>8}")
                continue
            gf = flops / t.median / 1e9
            mem = memory.get((name, label))
            mem_s = f"{mem / 2**20:7.1f}" if mem is not None else "    n/a"
            print(f"{name:<28} {label:<7} {t.median * 1e3:8.1f} {n_img / t.median:8.1f} "
                  f"{gf:6.1f} {100 * gf / peak:5.0f}% {mem_s} {t.first * 1e3:8.1f}")


def _torch_inference(t, tx):
    t.eval()

    def infer():
        with torch.no_grad():
            return t(tx)
    return infer


def _cvcore_inference(m, x):
    import cvcore.nn as cnn

    def infer():
        with cnn.no_grad():            # as torch.no_grad: keep no caches for a backward pass
            return m(x)
    return infer


def _workload(impl, name, n):
    """A zero-argument callable running workload ``name`` (a key of :data:`MODEL_WORKLOADS`) at
    batch ``n`` (and, for ResNet-50, input size 224 when n > 0, else 32: a small warm-up that
    compiles every kernel). Inference runs both under ``no_grad``; a training step is
    forward, cross-entropy, backward and SGD with momentum and weight decay."""
    import cvcore.nn as cnn
    rng = np.random.default_rng(0)
    if name.startswith("effnet"):
        return _effnet_workload(impl, name, n)
    if name == "resnet50 inference b1 224":
        size = 224 if n > 0 else 32
        x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
        m = cnn.resnet50(rng=2).eval()
        if impl == "cvcore":
            return _cvcore_inference(m, x)
        t = torch_resnet("resnet50", 1000)
        copy_into_torch(m, t)
        return _torch_inference(t, torch.from_numpy(x))
    x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, n)
    m = cnn.resnet20(rng=0)
    if name == "resnet20 inference b128":
        m.eval()
    if impl == "cvcore":
        if m.training:
            crit = cnn.CrossEntropyLoss()
            opt = cnn.SGD(m.named_parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

            def step():
                crit(m(x), y)
                m.backward(crit.backward(), input_grad=False)   # as the trainer's step
                opt.step()
            return step
        return _cvcore_inference(m, x)
    t = torch_resnet("resnet20", 10)
    copy_into_torch(m, t)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    if not m.training:
        return _torch_inference(t, tx)
    topt = torch.optim.SGD(t.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    tcrit = torch.nn.CrossEntropyLoss()

    def tstep():
        topt.zero_grad(set_to_none=True)
        tcrit(t(tx), ty).backward()
        topt.step()
    return tstep


def _effnet_workload(impl, name, n):
    """EfficientNet-Lite0 at 224x224 (random weights: the speed does not depend on them), the
    PyTorch twin of benchmarks/torch_efficientnet.py with the same state dict. ``n = 0``: a
    batch of 1 at 32x32 (the memory runs' warm-up)."""
    import cvcore.nn as cnn
    rng = np.random.default_rng(0)
    size = 224 if n > 0 else 32
    n = max(n, 1)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 2, n)
    m = cnn.efficientnet_lite0(num_classes=2, rng=0)
    train = "finetune" in name
    if train:
        m.freeze_bn = True
        m.train()
    else:
        m.eval()
    if impl == "cvcore":
        if not train:
            return _cvcore_inference(m, x)
        crit = cnn.CrossEntropyLoss()
        opt = cnn.SGD(m.named_parameters(), lr=0.001, momentum=0.9, nesterov=True,
                      weight_decay=5e-4)

        def step():
            crit(m(x), y)
            m.backward(crit.backward(), input_grad=False)
            opt.step()
        return step
    from benchmarks.torch_efficientnet import TorchEfficientNetLite0
    t = TorchEfficientNetLite0(num_classes=2)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    if not train:
        return _torch_inference(t, tx)
    t.train()
    for mod in t.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()
    topt = torch.optim.SGD(t.parameters(), lr=0.001, momentum=0.9, nesterov=True,
                           weight_decay=5e-4)
    tcrit = torch.nn.CrossEntropyLoss()

    def tstep():
        topt.zero_grad(set_to_none=True)
        tcrit(t(tx), ty).backward()
        topt.step()
    return tstep


# (label, N, C, H, kernel, stride): depthwise convolutions of EfficientNet-Lite0 at batch 32
DEPTHWISE_SHAPES = [
    ("dw 3x3 32ch 112", 32, 32, 112, 3, 1),
    ("dw 3x3/2 96ch 112", 32, 96, 112, 3, 2),
    ("dw 3x3 144ch 56", 32, 144, 56, 3, 1),
    ("dw 5x5/2 144ch 56", 32, 144, 56, 5, 2),
    ("dw 5x5 240ch 28", 32, 240, 28, 5, 1),
    ("dw 5x5 672ch 14", 32, 672, 14, 5, 1),
    ("dw 5x5 1152ch 7", 32, 1152, 7, 5, 1),
]


def depthwise_rows(repeats):
    """Forward of each depthwise shape, cvcore (:mod:`kernels.nn_dwconv`) vs torch; the bytes
    moved (input read once, output written once) per second are printed against a plain
    NumPy copy's, the memory bandwidth this process can reach."""
    from cvcore.nn.dwconv import grouped_conv2d_forward, same_padding
    rows, moved = [], {}
    rng = np.random.default_rng(0)
    for label, N, C, H, k, s in DEPTHWISE_SHAPES:
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = rng.standard_normal((C, 1, k, k)).astype(np.float32)
        pad = same_padding(H, k, s) + same_padding(H, k, s)
        Ho = -(-H // s)
        moved[label] = 4.0 * (x.size + N * C * Ho * Ho)

        def cv(x=x, w=w, s=s, pad=pad, C=C):
            return grouped_conv2d_forward(x, w, None, s, pad, 1, C, check_input=False)
        ref = None
        if torch is not None:
            tx = torch.from_numpy(x)
            tw = torch.from_numpy(w)
            F = torch.nn.functional

            def ref(tx=tx, tw=tw, s=s, pad=pad, C=C):
                with torch.no_grad():
                    return F.conv2d(F.pad(tx, [pad[2], pad[3], pad[0], pad[1]]), tw, None, s, 0,
                                    1, C)
        rows.append(Row(label, cv, {"torch": ref}, repeats=repeats))
    return rows, moved


@contextlib.contextmanager
def one_thread():
    """Numba, torch and every BLAS/OpenMP pool threadpoolctl knows held to one thread; back to
    :data:`THREADS` on exit."""
    import numba
    limiter = optional("threadpoolctl")
    ctx = limiter.threadpool_limits(1) if limiter is not None else None
    numba.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(THREADS)
        if torch is not None:
            torch.set_num_threads(THREADS)
        if ctx is not None:
            ctx.restore_original_limits()


def one_thread_efficientnet(repeats):
    """One-thread CPU time (``time.thread_time``, both libraries held to one thread) of the
    depthwise shapes and the EfficientNet workloads, cvcore and torch taking turns; medians.
    Robust to the machine's load in a way wall time on 2 shared cores is not."""
    with one_thread():
        rows, moved = depthwise_rows(repeats)
        copy_gbs = copy_bandwidth()          # np.copyto runs on one thread anyway
        names = [n for n in MODEL_WORKLOADS if n.startswith("effnet")]
        rows += [Row(n, _workload("cvcore", n, MODEL_WORKLOADS[n]),
                     {"torch": _workload("torch", n, MODEL_WORKLOADS[n])
                      if torch is not None else None}, repeats=repeats) for n in names]
        print(f"\n{'one thread, CPU time (median of ' + str(repeats) + ')':<40} "
              f"{'cvcore ms':>10} {'torch ms':>10} {'ratio':>7}   (depthwise: cvcore GB/s, % "
              f"of a one-thread numpy copy's {copy_gbs:.1f} GB/s)")
        for row in rows:
            fns = [row.cvcore] + [f for f in row.refs.values() if f is not None]
            for fn in fns:
                fn()
            times = [[] for _ in fns]
            for _ in range(repeats):
                for i, fn in enumerate(fns):
                    t0 = time.thread_time()
                    fn()
                    times[i].append(time.thread_time() - t0)
            cv = float(np.median(times[0]))
            ref_s = "       n/a"
            if len(fns) > 1:
                ref = float(np.median(times[1]))
                ref_s = f"{ref * 1e3:10.1f} {ref / cv:7.2f}"
            bw = ""
            if row.name in moved:
                gbs = moved[row.name] / cv / 1e9
                bw = f"   {gbs:5.1f} GB/s {100 * gbs / copy_gbs:4.0f} %"
            print(f"{row.name:<40} {cv * 1e3:10.1f} {ref_s}{bw}", flush=True)


def copy_bandwidth():
    """GB/s of ``np.copyto`` on 256 MiB (read + write): the reachable memory bandwidth."""
    a = np.ones(2**26, np.float32)
    b = np.empty_like(a)
    t = time_fn(lambda: np.copyto(b, a), repeats=5)
    return 2 * a.nbytes / t.median / 1e9


def print_depthwise_table(results, moved, bandwidth):
    print(f"\ndepthwise forward, batch 32 (memory bandwidth, numpy copy: {bandwidth:.1f} GB/s)")
    print(f"{'shape':<24} {'cvcore ms':>9} {'torch ms':>9} {'ratio':>6} {'cv GB/s':>8} "
          f"{'% bw':>5} {'torch GB/s':>10}")
    for name, timings in results:
        cv, ref = timings["cvcore"], timings.get("torch")
        gbs = moved[name] / cv.median / 1e9
        ref_s = (f"{ref.median * 1e3:9.2f} {ref.median / cv.median:6.2f}" if ref else
                 f"{'n/a':>9} {'':>6}")
        tgb = f"{moved[name] / ref.median / 1e9:10.1f}" if ref else f"{'n/a':>10}"
        print(f"{name:<24} {cv.median * 1e3:9.2f} {ref_s} {gbs:8.1f} "
              f"{100 * gbs / bandwidth:4.0f}% {tgb}")


def memory_child(impl, name):
    """Print the resident-memory growth of the first full-size call in this fresh process,
    after a small warm-up call (which compiles the kernels / creates oneDNN primitives)."""
    from benchmarks.common import peak_memory
    if torch is not None:
        torch.set_num_threads(THREADS)
    big = MODEL_WORKLOADS[name]
    _workload(impl, name, 0 if big == 1 else 2)()
    fn = _workload(impl, name, big)
    print(peak_memory(fn))


def peak_memories(names):
    """{(name, impl): bytes} measured each in a fresh process (see :func:`memory_child`)."""
    out = {}
    for name in names:
        for impl in ("cvcore", "torch") if torch is not None else ("cvcore",):
            res = subprocess.run([sys.executable, "-m", "benchmarks.cnn", "--memory-child",
                                  impl, name], capture_output=True, text=True)
            lines = res.stdout.strip().splitlines()
            out[(name, impl)] = int(lines[-1]) if res.returncode == 0 and lines else None
    return out


def _single_core_shapes(repeats):
    """One-thread GFLOP/s per convolution shape (forward; backward = dx + dW), thread CPU time.
    ResNet-20 shapes at batch 32 (the per-image cost is the same as at 128)."""
    from cvcore.nn.conv import conv2d_backward, conv2d_forward
    F = torch.nn.functional if torch is not None else None

    def best(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.thread_time()
            fn()
            times.append(time.thread_time() - t0)
        return min(times)

    lines = []
    rng = np.random.default_rng(0)
    for label, N, C, K, H, k, s, p in RESNET20_SHAPES + RESNET50_SHAPES:
        N = min(N, 32)
        x = rng.standard_normal((N, C, H, H)).astype(np.float32)
        w = rng.standard_normal((K, C, k, k)).astype(np.float32)
        y, cache = conv2d_forward(x, w, None, s, p)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        f = conv_flops(N, C, K, H, k, s, p)
        cv_f = best(lambda: conv2d_forward(x, w, None, s, p))
        cv_b = best(lambda: conv2d_backward(dy, cache))
        ref = "      n/a       n/a"
        if F is not None:
            xt, wt, dyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(dy)
            xg, wg = xt.clone().requires_grad_(), wt.clone().requires_grad_()

            def t_fwd():
                with torch.no_grad():
                    F.conv2d(xt, wt, None, s, p)

            def t_both():
                xg.grad = wg.grad = None
                F.conv2d(xg, wg, None, s, p).backward(dyt)

            t_f = best(t_fwd)
            t_b = max(best(t_both) - t_f, 1e-9)
            ref = f"{f / t_f / 1e9:9.0f} {2 * f / t_b / 1e9:17.0f}"
        name = label.replace("r20", f"r20 b{N}") if N > 1 else label
        lines.append(f"{name:<34} {f / cv_f / 1e9:7.0f} {ref[:9]} {2 * f / cv_b / 1e9:7.0f} "
                     f"{ref[9:].strip():>9}")
    return lines


def single_core_cpu(repeats):
    """Per workload, the CPU time of one call with ONE thread for both libraries, read from the
    calling thread's own clock (``time.thread_time``): what the work costs a core, independent of
    how many other processes share the machine (wall-clock ratios on a loaded machine swing
    by 3x between runs). With both libraries parallelising well, the 2-thread wall time on an
    idle machine is about half of it."""
    out = {}
    with one_thread():
        shape_lines = _single_core_shapes(repeats)
        for name, big in MODEL_WORKLOADS.items():
            for impl in ("cvcore", "torch") if torch is not None else ("cvcore",):
                fn = _workload(impl, name, big)
                fn()
                times = []
                for _ in range(repeats):
                    t0 = time.thread_time()
                    fn()
                    times.append(time.thread_time() - t0)
                out[(name, impl)] = min(times)
    print(f"\n{'one thread, GFLOP/s per core':<34} {'cv fwd':>7} {'torch fwd':>9} "
          f"{'cv bwd':>7} {'torch bwd':>9}")
    for line in shape_lines:
        print(line)
    print(f"\n{'one thread, CPU time (min of ' + str(repeats) + ')':<40} {'cvcore ms':>10} "
          f"{'torch ms':>10} {'ratio':>7}")
    for name in dict.fromkeys(k[0] for k in out):
        cv, ref = out[(name, "cvcore")], out.get((name, "torch"))
        ref_s = f"{ref * 1e3:10.1f} {ref / cv:7.2f}" if ref is not None else "       n/a"
        print(f"{name:<40} {cv * 1e3:10.1f} {ref_s}")
    return out


SERVE_BATCHES = (1, 8, 16, 32)


def serve_batches(repeats, batches=SERVE_BATCHES):
    """ResNet-20 inference (32x32) as ``cvcore serve``'s model threads run it: ONE kernel thread,
    whole batches of 1-32, the same weights (non-trivial batch-norm statistics) in cvcore and
    torch. CPU time per image from the thread's own clock (``time.thread_time``), cvcore and
    torch taking turns call by call (rotating who goes first), each measurement looping the
    call for >= 20 ms; medians of ``repeats``. Prints cvcore / torch: at or below 1.0 cvcore
    costs no more CPU per image."""
    import cvcore.nn as cnn
    rng = np.random.default_rng(0)
    m = cnn.resnet20(rng=0).eval()
    for mod in m.modules():
        if isinstance(mod, cnn.BatchNorm2d):
            C = mod.num_features
            mod.weight.data[...] = rng.uniform(0.5, 1.5, C)
            mod.bias.data[...] = rng.normal(0, 0.2, C)
            mod.running_mean[...] = rng.normal(0, 0.2, C)
            mod.running_var[...] = rng.uniform(0.5, 2.0, C)
    t = None
    if torch is not None:
        t = torch_resnet("resnet20", 10)
        copy_into_torch(m, t)
        t.eval()
    print(f"\nResNet-20 inference, one kernel thread, CPU ms per image (median of {repeats}; "
          f"load {os.getloadavg()[0]:.1f})")
    print(f"{'batch':>5} {'cvcore':>8} {'torch':>8} {'cv/torch':>9} {'max |diff|':>11}")
    with one_thread():
        for n in batches:
            x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
            calls = {"cvcore": _cvcore_inference(m, x)}
            if t is not None:
                calls["torch"] = _torch_inference(t, torch.from_numpy(x))
            outs = {k: np.asarray(f()) for k, f in calls.items()}      # warm-up
            inner = {}
            for k, f in calls.items():                                 # calls per >= 20 ms
                t0 = time.thread_time()
                f()
                inner[k] = max(1, int(0.02 / max(time.thread_time() - t0, 1e-6)))
            times = {k: [] for k in calls}
            order = list(calls.items())
            for r in range(repeats):
                for k, f in order[r % len(order):] + order[:r % len(order)]:
                    t0 = time.thread_time()
                    for _ in range(inner[k]):
                        f()
                    times[k].append((time.thread_time() - t0) / inner[k] / n)
            cv = float(np.median(times["cvcore"])) * 1e3
            if t is None:
                print(f"{n:5d} {cv:8.3f} {'n/a':>8}")
                continue
            tt = float(np.median(times["torch"])) * 1e3
            diff = float(np.abs(outs["cvcore"] - outs["torch"]).max())
            print(f"{n:5d} {cv:8.3f} {tt:8.3f} {cv / tt:9.2f} {diff:11.1e}", flush=True)


def inference_rows(repeats):
    """The two inference rows of the model table (ResNet-20 b128, ResNet-50 b1 224) on the
    default threads, cvcore and torch interleaved: wall ms and torch / cvcore, a few minutes
    at most (no memory children, no training row)."""
    names = ["resnet20 inference b128", "resnet50 inference b1 224"]
    rows = [Row(n, _workload("cvcore", n, MODEL_WORKLOADS[n]),
                {"torch": _workload("torch", n, MODEL_WORKLOADS[n]) if torch is not None
                 else None}, repeats=repeats) for n in names]
    print(f"\nload average at the start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    results = run_interleaved(rows, memory=False)
    print(f"{'model':<28} {'cvcore ms':>10} {'torch ms':>10} {'torch/cvcore':>13}")
    for name, timings in results:
        cv, ref = timings["cvcore"], timings.get("torch")
        ref_s = f"{ref.median * 1e3:10.1f} {ref.median / cv.median:13.2f}" if ref else "n/a"
        print(f"{name:<28} {cv.median * 1e3:10.1f} {ref_s}")
    print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


def _bn_name(path):
    """The batch norm beside the convolution at ``path`` (cvcore's and torch's names agree)."""
    if path.endswith("downsample"):
        return path + ".0", path + ".1"
    head, _, last = path.rpartition(".")
    return path, (head + "." if head else "") + last.replace("conv", "bn")


def _clocked(clock, f):
    """Seconds of ``clock`` that one call of ``f`` takes."""
    t0 = clock()
    f()
    return clock() - t0


def layer_rows(repeats, batch=128, thread_counts=(1, 2)):
    """Where ResNet-20 inference time goes, step by step: each kernel call of cvcore's fused
    plan (convolution + batch norm [+ residual] [+ ReLU], :meth:`cvcore.nn.inference.
    ResNetPlan.step_calls`) beside the same step in torch (``conv2d``, ``batch_norm``, add,
    ReLU under ``no_grad``, as ``benchmarks/torch_models.py``'s forward runs them), on random
    inputs of the step's shapes, the two interleaved call by call; min of ``repeats``. One
    thread: the calling thread's CPU time (robust to load); more threads: wall time. The last
    line is the whole forward of each (cvcore's includes the pool and fc; so does torch's)."""
    import numba

    import cvcore.nn as cnn
    if torch is None:
        print("torch is not installed: no --layers table")
        return
    rng = np.random.default_rng(0)
    m = cnn.resnet20(rng=0).eval()
    t = torch_resnet("resnet20", 10)
    copy_into_torch(m, t)
    t.eval()
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    shapes = {}

    def record(name):
        def hook(mod, inp, out):
            shapes[name] = (tuple(inp[0].shape), tuple(out.shape))
        return hook
    hooks = [mod.register_forward_hook(record(name)) for name, mod in t.named_modules()
             if isinstance(mod, torch.nn.Conv2d)]
    with torch.no_grad():
        t(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    F = torch.nn.functional
    for nt in thread_counts:
        numba.set_num_threads(min(nt, numba.config.NUMBA_NUM_THREADS))
        torch.set_num_threads(nt)
        clock = time.thread_time if nt == 1 else time.perf_counter
        with cnn.no_grad():
            steps = m._planned(x) is not None and m.__dict__["_plan"].step_calls(x)
        if not steps:
            print("the inference plan does not apply: no --layers table")
            return
        rows = []
        for path, relu, has_res, fn in steps:
            if path in ("to_pixel_major", "from_pixel_major"):
                # the layout changes of a pixel-major program (large batches): cvcore's cost
                # alone, counted in its sum of the steps
                rows.append((path, "", "", None, fn, None))
                continue
            conv_name, bn_name = _bn_name(path)
            conv, bn = t.get_submodule(conv_name), t.get_submodule(bn_name)
            src, out = shapes[conv_name]
            xin = torch.from_numpy(rng.standard_normal(src).astype(np.float32))
            res = torch.from_numpy(rng.standard_normal(out).astype(np.float32))

            def tstep(conv=conv, bn=bn, xin=xin, res=res, relu=relu, has_res=has_res):
                with torch.no_grad():
                    h = bn(conv(xin))
                    if has_res:
                        h = h + res
                    return F.relu(h) if relu else h
            k = conv.weight.shape
            flops = 2 * np.prod(out) * k[1] * k[2] * k[3]
            rows.append((path, src, out, flops, fn, tstep))

        def whole_cv():
            with cnn.no_grad():
                return m(x)
        tx = torch.from_numpy(x)

        def whole_torch():
            with torch.no_grad():
                return t(tx)
        rows.append(("whole forward", (batch, 3, 32, 32), (batch, 10), 0, whole_cv,
                     whole_torch))
        what = "CPU ms (thread clock)" if nt == 1 else "wall ms"
        print(f"\nResNet-20 inference b{batch} step by step, {nt} thread(s), {what}, min of "
              f"{repeats} (load {os.getloadavg()[0]:.1f})")
        print(f"{'step':<22} {'input':<17} {'output':<17} {'cvcore':>8} {'torch':>8} "
              f"{'torch/cv':>8} {'cv GF/s':>8} {'t GF/s':>7}")
        sums = [0.0, 0.0]
        for path, src, out, flops, fcv, ftorch in rows:
            if ftorch is None:                          # a layout change: cvcore only
                fcv()
                cv = min(_clocked(clock, fcv) for _ in range(repeats)) * 1e3
                sums[0] += cv
                print(f"{path:<22} {src:<17} {out:<17} {cv:8.2f} {'-':>8}", flush=True)
                continue
            fcv()
            ftorch()
            times = ([], [])
            for r in range(repeats):
                pair = ((0, fcv), (1, ftorch)) if r % 2 == 0 else ((1, ftorch), (0, fcv))
                for i, f in pair:
                    times[i].append(_clocked(clock, f))
            cv, tt = min(times[0]) * 1e3, min(times[1]) * 1e3
            if flops:
                sums[0] += cv
                sums[1] += tt
            else:
                print(f"{'sum of the steps':<58} {sums[0]:8.2f} {sums[1]:8.2f} "
                      f"{sums[1] / sums[0]:8.2f}")
            gf = (f"{flops / cv / 1e6:8.0f} {flops / tt / 1e6:7.0f}" if flops else "")
            print(f"{path:<22} {str(src):<17} {str(out):<17} {cv:8.2f} {tt:8.2f} "
                  f"{tt / cv:8.2f} {gf}", flush=True)
    numba.set_num_threads(THREADS)
    torch.set_num_threads(THREADS)


COLD_SNIPPET = """
import time, numpy as np
t0 = time.perf_counter()
import cvcore.nn as cnn
m = cnn.resnet20(rng=0)
x = np.zeros((2, 3, 32, 32), np.float32)
crit = cnn.CrossEntropyLoss()
loss = crit(m(x), np.zeros(2, np.int64))
m.backward(crit.backward(), input_grad=False)
m.eval(); m(x)
print(time.perf_counter() - t0)
"""


def compile_times():
    """First ResNet-20 train step + eval forward on a tiny batch in a fresh process: with an
    empty Numba cache directory (compilation) and with the normal on-disk cache."""
    import tempfile
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, env in (("cold (empty Numba cache)", {"NUMBA_CACHE_DIR": tmp}),
                           ("warm on-disk cache", {})):
            res = subprocess.run([sys.executable, "-c", COLD_SNIPPET], capture_output=True,
                                 text=True, env={**os.environ, **env}, check=True)
            out[label] = float(res.stdout.strip().splitlines()[-1])
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--busy" in argv:                  # the rest of the options are benchmarks.cnn_busy's
        from benchmarks import cnn_busy
        cnn_busy.main([a for a in argv if a != "--busy"])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes-only", action="store_true")
    parser.add_argument("--models-only", action="store_true")
    parser.add_argument("--efficientnet", action="store_true",
                        help="only the EfficientNet-Lite0 rows and the depthwise table")
    parser.add_argument("--compile", action="store_true", help="measure cold compile time")
    parser.add_argument("--cpu", action="store_true",
                        help="also the one-thread CPU-time comparison (robust to machine load)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--serve-batches", action="store_true",
                        help="only ResNet-20 inference on ONE kernel thread at batches "
                             "1/8/16/32, CPU ms per image, cvcore vs torch (about a minute)")
    parser.add_argument("--inference-rows", action="store_true",
                        help="only the two inference rows of the model table (ResNet-20 b128, "
                             "ResNet-50 b1 224) on the default threads, interleaved")
    parser.add_argument("--layers", action="store_true",
                        help="only ResNet-20 inference b128 step by step (each fused plan call "
                             "beside torch's conv + bn [+ add] [+ relu]), 1 and 2 threads")
    parser.add_argument("--busy", action="store_true",
                        help="the model rows idle and under background loads the benchmark "
                             "starts itself, cvcore and torch each in its own process "
                             "(benchmarks/cnn_busy.py; its options follow, e.g. --fixed)")
    parser.add_argument("--memory-child", nargs=2, metavar=("IMPL", "WORKLOAD"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    if torch is not None:
        torch.set_num_threads(THREADS)
    if args.serve_batches:
        print(machine_line())
        serve_batches(max(5, args.repeats + 2))
        return
    print(machine_line())
    print(f"threads: torch {torch.get_num_threads() if torch else 'n/a'}, "
          f"numba {__import__('numba').get_num_threads()}; the ratio is torch ms / cvcore ms; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')} (kernels/__init__.py sets a short "
          f"spin unless set; benchmarks.common imports it before torch, so torch's libgomp, "
          f"which Numba's OpenMP calls bind to as well, reads the same: both run with it)")
    if args.layers:
        layer_rows(max(5, args.repeats))
        return
    peak = matmul_peak()
    print(f"float32 matmul peak (numpy 2048^3): {peak:.0f} GFLOP/s")
    if args.inference_rows:
        inference_rows(max(5, args.repeats))
        return
    if args.efficientnet:
        print(f"load average at the start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        rows, moved = depthwise_rows(args.repeats)
        print_depthwise_table(run_interleaved(rows, memory=False), moved, copy_bandwidth())
        rows, info = model_rows(max(3, args.repeats // 2), prefix="effnet")
        results = run_interleaved(rows, memory=False)
        print_model_table(results, info, peak, {})
        if args.cpu:
            one_thread_efficientnet(max(3, args.repeats // 2))
        print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        return
    if not args.models_only:
        rows, flops = shape_rows(RESNET20_SHAPES + RESNET50_SHAPES, args.repeats)
        results = run_rows(rows)
        print_table(results)
        print_gflops(results, flops)
    if not args.shapes_only:
        # cvcore and torch take turns call by call (5 rounds, medians): a drift of the shared
        # host's speed during a row hits both alike, where 3 calls of one then 3 of the other
        # read the same training step 0.84-1.04 x torch's in session 13's three runs
        rows, info = model_rows(max(5, args.repeats // 2))
        results = run_interleaved(rows, memory=False)
        memory = peak_memories([name for name, _ in results])
        print_model_table(results, info, peak, memory)
        print("cvcore calls whose forward ran on fewer threads (free-core rule: another task "
              "seen on the machine), of all calls incl. warm-up and memory: " +
              ", ".join(f"{name} {fewer}/{calls}" for name, (calls, fewer) in RULE_COUNTS.items()))
        rows, moved = depthwise_rows(args.repeats)
        print_depthwise_table(run_rows(rows), moved, copy_bandwidth())
    if args.cpu:
        single_core_cpu(max(3, args.repeats // 2))
    if args.compile:
        for label, t in compile_times().items():
            print(f"first ResNet-20 train step + eval (batch 2) in a new process, {label}: "
                  f"{t:.1f} s")


if __name__ == "__main__":
    main()
