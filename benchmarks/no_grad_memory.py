"""Memory of eval-mode inference with and without :func:`cvcore.nn.no_grad`.

Modules keep what backward needs in both modes (eval-mode backward is supported), so an
inference pass must run under ``no_grad`` to hold no activations. This prints the resident-memory
growth of one ResNet-20 eval forward on 3x32x32 images, each figure from a fresh process after a
2-image warm-up (the first full-size call; see :func:`benchmarks.common.peak_memory`)::

    python -m benchmarks.no_grad_memory
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from benchmarks.common import machine_line, peak_memory

BATCHES = (128, 500)          # the benchmark's batch and predict_batches' default


def child(mode: str, n: int) -> None:
    import cvcore.nn as cnn
    m = cnn.resnet20(rng=0).eval()
    x = np.random.default_rng(0).standard_normal((n, 3, 32, 32)).astype(np.float32)
    with cnn.no_grad():
        m(x[:2])                                    # compile / load the kernels

    def forward():
        if mode == "no_grad":
            with cnn.no_grad():
                return m(x)
        return m(x)
    print(peak_memory(forward))


def main() -> None:
    print(machine_line())
    print(f"{'ResNet-20 eval forward':<24} {'no_grad MiB':>12} {'caches MiB':>11} {'ratio':>6}")
    for n in BATCHES:
        mib = {}
        for mode in ("no_grad", "caches"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.no_grad_memory", mode, str(n)],
                                 check=True, capture_output=True, text=True).stdout
            mib[mode] = int(out.split()[-1]) / 2**20
        print(f"{'batch ' + str(n):<24} {mib['no_grad']:12.1f} {mib['caches']:11.1f} "
              f"{mib['caches'] / mib['no_grad']:6.1f}")


if __name__ == "__main__":
    if len(sys.argv) == 3:
        child(sys.argv[1], int(sys.argv[2]))
    else:
        main()
