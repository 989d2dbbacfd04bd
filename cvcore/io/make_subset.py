"""Build the Fashion-MNIST subset that ships inside the package (``cvcore/data/``).

Run from the project root (needs the four Fashion-MNIST IDX files)::

    python -m cvcore.io.make_subset ../shared/datasets/fashion-mnist

The subset is class-balanced and seeded: ``n_train / 10`` images of each class drawn without
replacement from the training set and ``n_test / 10`` from the test set, kept in their original
order. The sources' published checksums are verified first, so the same command on any copy of
Fashion-MNIST writes the same arrays. The file also records the chosen indices, the seed and the
source MD5 sums, so that anyone can trace each image back to the original data set.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cvcore._validate import check_int
from cvcore.io.atomic import atomic_write
from cvcore.io.datasets import (CLASS_NAMES, EMBEDDED_FILE, IDX_FILES, PUBLISHED_MD5,
                                load_mnist)

DEFAULT_N_TRAIN = 4000
DEFAULT_N_TEST = 1000
DEFAULT_SEED = 0
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / EMBEDDED_FILE


def balanced_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n / K`` indices of each of the ``K`` classes in ``labels``, drawn without replacement by
    ``np.random.default_rng(seed)``, returned sorted."""
    classes = np.unique(labels)
    if n % len(classes):
        raise ValueError(f"n={n} is not a multiple of the {len(classes)} classes")
    per_class = n // len(classes)
    rng = np.random.default_rng(seed)
    picked = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than {per_class}")
        picked.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def build_subset(source, n_train: int = DEFAULT_N_TRAIN, n_test: int = DEFAULT_N_TEST,
                 seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """The arrays of the subset, from a folder of the original Fashion-MNIST IDX files."""
    n_train = check_int(n_train, "n_train", minimum=10)
    n_test = check_int(n_test, "n_test", minimum=10)
    seed = check_int(seed, "seed", minimum=0)
    x_train, y_train = load_mnist(source, "train", verify="fashion-mnist")
    x_test, y_test = load_mnist(source, "test", verify="fashion-mnist")
    # Different seeds for the two draws, derived from one, so that they are independent.
    train_seed, test_seed = np.random.SeedSequence(seed).generate_state(2)
    i_train = balanced_indices(y_train, n_train, int(train_seed))
    i_test = balanced_indices(y_test, n_test, int(test_seed))
    table = PUBLISHED_MD5["fashion-mnist"]
    return {
        "x_train": x_train[i_train], "y_train": y_train[i_train].astype(np.uint8),
        "x_test": x_test[i_test], "y_test": y_test[i_test].astype(np.uint8),
        "class_names": np.array(CLASS_NAMES["fashion-mnist"]),
        "train_index": i_train.astype(np.int32), "test_index": i_test.astype(np.int32),
        "seed": np.array(seed, dtype=np.int64),
        "source_md5": np.array([f"{stem} {table[stem]}" for stem in IDX_FILES.values()]),
    }


def save_subset(arrays: dict, out) -> Path:
    """Write ``arrays`` as a compressed ``.npz`` atomically (:func:`cvcore.io.atomic.atomic_write`)."""
    out = Path(out)
    with atomic_write(out, "wb") as f:
        np.savez_compressed(f, **arrays)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvcore.io.make_subset",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="folder of the Fashion-MNIST IDX files (.gz or not)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output .npz (default: %(default)s)")
    parser.add_argument("--train", type=int, default=DEFAULT_N_TRAIN, help="training images")
    parser.add_argument("--test", type=int, default=DEFAULT_N_TEST, help="test images")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    try:
        arrays = build_subset(args.source, args.train, args.test, args.seed)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = save_subset(arrays, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {len(arrays['x_train'])} train, "
          f"{len(arrays['x_test'])} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
