"""HOG: cvcore vs scikit-image and OpenCV on the same inputs, in one run.

Rows
    * one 128x64 window (the people window): ``HOGDescriptor().compute`` vs
      ``cv2.HOGDescriptor().compute``;
    * a 640x480 grey photo, 8x8 cells, 3x3 blocks: ``hog`` vs ``skimage.feature.hog``, and the
      OpenCV variant over every window (stride 8) vs OpenCV;
    * Fashion-MNIST (28x28, 4x4 cells, 2x2 blocks): ``hog_batch`` vs a scikit-image loop on the
      same 2000 images, then ``hog_batch`` on all 70 000 images against the scikit-image loop
      time extrapolated from those 2000 (x35; said so in the output).

Run from the repository root: ``python -m benchmarks.hog`` (add ``--cold`` to also measure the
first-call times with an empty Numba cache, in a subprocess). The table is printed for Numba's
default thread count and for one thread: on a machine shared with other jobs, waiting for a
descheduled worker can cost the parallel kernels more than they gain. Each row times cvcore and
the reference call by call in turn (``benchmarks.common.run_interleaved``, medians), so a change
of the machine's load hits both alike.
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import Row, machine_line, optional, print_table, run_interleaved, time_fn

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))


def load_idx_images(path: Path) -> np.ndarray:
    """An IDX3 image file (gzip) as (N, rows, cols) uint8: a 16-byte header, then pixels."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[4 * k:4 * k + 4], "big") for k in (1, 2, 3))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)


def photo_640x480() -> np.ndarray:
    from PIL import Image
    with Image.open(DATA / "test-images" / "roofs1.jpg") as im:
        return np.asarray(im.convert("L").resize((640, 480)), dtype=np.uint8)


COLD_SCRIPT = r"""
import time, numpy as np
t0 = time.perf_counter()
from cvcore.features import hog, hog_batch, HOGDescriptor
img = np.random.default_rng(0).random((480, 640)).astype(np.float32)
t = time.perf_counter(); hog(img)
print(f"hog first call            {time.perf_counter() - t:7.2f} s")
t = time.perf_counter(); hog(img[..., None].repeat(3, 2), channel_axis=-1)
print(f"hog colour first call     {time.perf_counter() - t:7.2f} s")
x = (img[:28, :28] * 255).astype(np.uint8)[None].repeat(10, 0)
t = time.perf_counter(); hog_batch(x, 9, (4, 4), (2, 2))
print(f"hog_batch first call      {time.perf_counter() - t:7.2f} s")
t = time.perf_counter(); HOGDescriptor().compute((img[:128, :64] * 255).astype(np.uint8))
print(f"HOGDescriptor first call  {time.perf_counter() - t:7.2f} s")
"""


def cold_start() -> None:
    """First-call times in a fresh process with an empty Numba cache (compilation included)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        for label in ("cold cache (compiles)", "warm cache (loads)"):
            print(f"-- {label}", flush=True)
            subprocess.run([sys.executable, "-c", COLD_SCRIPT], env=env, check=True, cwd=ROOT)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="measure first calls, empty cache")
    parser.add_argument("--subset", type=int, default=2000,
                        help="Fashion-MNIST images for the scikit-image loop (default 2000)")
    args = parser.parse_args(argv)

    import numba

    from cvcore.features import HOGDescriptor, hog, hog_batch
    cv2 = optional("cv2")
    skf = optional("skimage.feature")
    print(machine_line(), f"; Numba threads {numba.get_num_threads()}")

    photo = photo_640x480()
    window = np.ascontiguousarray(photo[160:288, 300:364])
    grey = photo.astype(np.float32) / 255
    ours = HOGDescriptor()
    theirs = cv2.HOGDescriptor() if cv2 else None

    fashion = np.concatenate([load_idx_images(DATA / "fashion-mnist" / name) for name in
                              ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")])
    subset = fashion[:args.subset]

    def sk_loop(images):
        return np.stack([skf.hog(img, 9, (4, 4), (2, 2)) for img in images])

    def table(threads):
        numba.set_num_threads(threads)
        if cv2 is not None:
            cv2.setNumThreads(threads)
        print(f"\n== threads: {threads} (Numba and OpenCV); ratio = reference / cvcore")
        rows = [
            Row("128x64 window, OpenCV variant", lambda: ours.compute(window),
                {"cv2": theirs and (lambda: theirs.compute(window))}, repeats=301),
            Row("640x480 grey, 8x8 cells 3x3 blk", lambda: hog(grey),
                {"skimage": skf and (lambda: skf.hog(grey))}, repeats=5),
            Row("640x480 every window, stride 8", lambda: ours.compute(photo, (8, 8)),
                {"cv2": theirs and (lambda: theirs.compute(photo, winStride=(8, 8)))}, repeats=5),
            Row(f"F-MNIST {len(subset)} imgs, 4x4 c 2x2 b",
                lambda: hog_batch(subset, 9, (4, 4), (2, 2)),
                {"skimage loop": skf and (lambda: sk_loop(subset))}, repeats=3),
        ]
        # cvcore and the reference interleaved, call by call: a change of load hits both alike
        results = run_interleaved(rows)
        print_table(results)
        # all 70 000 images: hog_batch timed; the scikit-image loop extrapolated from the subset
        full = time_fn(lambda: hog_batch(fashion, 9, (4, 4), (2, 2), dtype=np.float32),
                       repeats=3)
        print(f"F-MNIST all {len(fashion)} images: hog_batch {full.median:.3f} s "
              f"(first call {full.first:.3f} s, peak +{full.peak_bytes / 2**20:.0f} MiB)")
        sk = results[-1][1].get("skimage loop")
        if sk is not None:
            scale = len(fashion) / len(subset)
            print(f"  scikit-image loop: {sk.median:.3f} s on {len(subset)} images, "
                  f"extrapolated x{scale:.0f} -> {sk.median * scale:.1f} s; "
                  f"ratio {sk.median * scale / full.median:.1f}")

    default_threads = numba.get_num_threads()
    for threads in sorted({default_threads, 1}, reverse=True):
        table(threads)
    numba.set_num_threads(default_threads)
    if args.cold:
        print()
        cold_start()


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"(benchmark ran {time.perf_counter() - t0:.0f} s)")
