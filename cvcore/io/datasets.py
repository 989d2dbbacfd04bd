"""Labelled image data sets: IDX files (MNIST, Fashion-MNIST), image folders, the embedded subset.

Everything here returns images as ``uint8`` arrays, one of

* ``(N, H, W)`` for grey images (IDX files and the embedded subset as stored, anything loaded
  with ``mode="gray"``),
* ``(N, H, W, 3)`` for RGB images (image folders by default, anything loaded with ``mode="rgb"``),

and labels as ``int64`` arrays of shape ``(N,)`` indexing ``class_names``. :func:`to_nchw` turns
such a batch into the ``(N, C, H, W)`` float32 array in 0..1 that :mod:`cvcore.augment` and the CNN
take.

The entry point for the command line and the training loop is :func:`load_dataset`; it returns a
:class:`Dataset` (``x_train, y_train, x_test, y_test, class_names``). :func:`check` reports class
balance, duplicates (also across train and test), corrupt files and odd sizes.

Sources of the conventions
--------------------------
* IDX format: LeCun, Cortes & Burges, "The MNIST database", section "The IDX file format": a magic
  number of two zero bytes, a type code and the number of dimensions, then each dimension as a
  big-endian 32-bit integer, then the data in C order, big-endian.
* Published checksums: the MD5 sums of the *uncompressed* IDX files as listed with the data sets
  (the Fashion-MNIST repository and the MNIST mirrors; cross-checked against several independent
  loaders and against the copies in the shared data folder). The gzip files themselves are not
  checked, because recompressing a file changes its bytes but not its content.
* Image folder layout ``root/<class>/<image>``, class indices in sorted order of the folder names,
  as torchvision's ``ImageFolder`` does.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvcore._validate import (check_array, check_choice, check_int, check_pair,
                              check_regular_file)
from cvcore.io.images import EXTENSION_FORMATS, NotAnImageError, imdecode, imread, to_uint8

__all__ = [
    "Dataset",
    "load_idx",
    "load_mnist",
    "load_embedded",
    "load_dataset",
    "ImageFolder",
    "load_image_folder",
    "check",
    "CheckReport",
    "to_nchw",
    "decode_image",
    "DATASET_NAMES",
    "EMBEDDED_NAME",
]

# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------

#: IDX type code (third byte of the magic number) -> big-endian dtype. LeCun et al., "The IDX file
#: format": 0x08 unsigned byte, 0x09 signed byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952, sec. 2.3.1 (ID1, ID2)

#: Standard file stems of an MNIST-style folder: (kind, role) -> stem. Each may end in ``.gz``.
IDX_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

#: Published MD5 sums of the uncompressed IDX files (see the module docstring for the sources).
PUBLISHED_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

#: Class names, in label order. Fashion-MNIST: Xiao, Rasul & Vollgraf 2017, table 1.
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}

#: The data set shipped inside the package (built by ``python -m cvcore.io.make_subset``).
EMBEDDED_NAME = "fashion-mnist-small"
EMBEDDED_FILE = "fashion_mnist_small.npz"

#: Names :func:`load_dataset` understands besides paths.
DATASET_NAMES = (EMBEDDED_NAME, "fashion-mnist", "mnist")


def _read_maybe_gzip(path: Path) -> bytes:
    """The bytes of ``path``, gunzipped if the file starts with the gzip magic number."""
    try:
        check_regular_file(path, "IDX file")         # a FIFO or device would block the read
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory, not an IDX file") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise ValueError(f"{path}: truncated gzip file (the compressed stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise ValueError(f"{path}: corrupt gzip file ({exc})") from None


def _parse_idx(data: bytes, source: str) -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file; ``source`` names it in error messages."""
    if len(data) < 4:
        raise ValueError(f"{source}: {len(data)} bytes is too short to be an IDX file "
                         f"(the header alone is at least 4 bytes)")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0:
        raise ValueError(f"{source}: not an IDX file (magic number {data[:4].hex()}; the first two "
                         f"bytes of an IDX file are zero)")
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{source}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise ValueError(f"{source}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header ({len(data)} bytes, {header} needed for "
                         f"{ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise ValueError(f"{source}: truncated IDX file: dimensions {dims} need {expected} bytes "
                         f"of data, the file has {actual}")
    if actual > expected:
        raise ValueError(f"{source}: {actual - expected} unexpected bytes after the data of an IDX "
                         f"file with dimensions {dims}; the file is not what its header says")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))  # native byte order, writable copy


def load_idx(path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a NumPy array.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip compression is recognised by content (the bytes ``1f 8b``), not by name.

    Returns
    -------
    ndarray
        Shape as declared in the header (``(N, 28, 28)`` for MNIST images, ``(N,)`` for labels),
        dtype from the header's type code in native byte order (``uint8`` for MNIST).

    Raises
    ------
    ValueError
        If the file is not an IDX file (non-zero magic bytes, unknown type code), is truncated or
        has trailing bytes, or is a corrupt gzip stream. The message names the file.

    Examples
    --------
    >>> import gzip, tempfile, os
    >>> raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    >>> fd, name = tempfile.mkstemp(suffix=".gz"); os.close(fd)
    >>> with open(name, "wb") as f:
    ...     _ = f.write(gzip.compress(raw))
    >>> load_idx(name)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    >>> os.remove(name)
    """
    path = Path(path)
    return _parse_idx(_read_maybe_gzip(path), str(path))


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root}: no {stem} or {stem}.gz (an MNIST-style folder holds "
                            f"{', '.join(s + '[.gz]' for s in IDX_FILES.values())})")


def _is_idx_folder(root: Path) -> bool:
    try:
        _find_idx(root, IDX_FILES[("train", "images")])
        return True
    except FileNotFoundError:
        return False


def _identify(stem: str, md5: str) -> str | None:
    """The data set whose published file ``stem`` has this MD5, or None."""
    for name, table in PUBLISHED_MD5.items():
        if table.get(stem) == md5:
            return name
    return None


def _load_idx_verified(path: Path, stem: str, verify) -> tuple[np.ndarray, str | None]:
    """Load one IDX file of an MNIST-style folder; return it and the data set it is (or None)."""
    data = _read_maybe_gzip(path)
    md5 = hashlib.md5(data).hexdigest()
    found = _identify(stem, md5)
    if verify is True and found is None:
        raise ValueError(f"{path}: MD5 {md5} of the uncompressed file matches no published "
                         f"{stem} ({', '.join(PUBLISHED_MD5)}); the file is corrupt or not the "
                         f"original. For your own IDX files pass verify=False")
    if isinstance(verify, str) and found != verify:
        want = PUBLISHED_MD5[verify][stem]
        raise ValueError(f"{path}: MD5 {md5} of the uncompressed file is not the published "
                         f"{verify} {stem} MD5 {want}; the file is corrupt, truncated or from "
                         f"another data set")
    return _parse_idx(data, str(path)), found


def load_mnist(root, kind: str = "train", verify=True) -> tuple[np.ndarray, np.ndarray]:
    """Load the images and labels of one split of an MNIST-style folder of IDX files.

    Parameters
    ----------
    root : str or path-like
        A folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally ``.gz``
        (MNIST, Fashion-MNIST, or your own files in the same format).
    kind : {"train", "test"}
        Which split.
    verify : bool or {"mnist", "fashion-mnist"}
        ``True``: the MD5 of each uncompressed file must be a published MNIST or Fashion-MNIST
        one. A data-set name: it must be that data set's. ``False``: no checksum (for your own
        IDX files); the format is still validated.

    Returns
    -------
    images : ndarray of uint8, shape (N, H, W)
    labels : ndarray of int64, shape (N,)
    """
    images, labels, _ = _load_mnist_split(root, kind, verify)
    return images, labels


def _load_mnist_split(root, kind, verify):
    check_choice(kind, ("train", "test"), "kind")
    if not (verify is True or verify is False or verify in PUBLISHED_MD5):
        raise ValueError(f"verify must be True, False or one of {sorted(PUBLISHED_MD5)}, "
                         f"got {verify!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    img_stem, lab_stem = IDX_FILES[(kind, "images")], IDX_FILES[(kind, "labels")]
    images, found_i = _load_idx_verified(_find_idx(root, img_stem), img_stem, verify)
    labels, found_l = _load_idx_verified(_find_idx(root, lab_stem), lab_stem, verify)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{root}: {img_stem} must hold uint8 images (N, H, W), got "
                         f"{images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise ValueError(f"{root}: {lab_stem} must hold integer labels (N,), got "
                         f"{labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{root}: {len(images)} {kind} images but {len(labels)} labels")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{root}: {lab_stem} holds negative labels")
    found = found_i if found_i == found_l else None
    return images, labels.astype(np.int64), found


# --------------------------------------------------------------------------------------------
# The data set container and the embedded subset
# --------------------------------------------------------------------------------------------

@dataclass(repr=False)
class Dataset:
    """A labelled data set split into train and test.

    Attributes
    ----------
    x_train, x_test : ndarray of uint8, shape (N, H, W) (grey) or (N, H, W, 3) (RGB)
    y_train, y_test : ndarray of int64, shape (N,)
        Indices into ``class_names``.
    class_names : list of str
    name : str
        Where it came from (a data-set name or a path).
    problems : list of (str, str)
        Files that could not be read, as ``(path, reason)``; they are left out of the arrays.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    name: str = ""
    problems: list = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        """Shape of one image: ``(H, W)`` or ``(H, W, 3)``."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset({self.name!r}: train {self.x_train.shape} {self.x_train.dtype}, "
                f"test {self.x_test.shape}, {self.num_classes} classes, "
                f"{len(self.problems)} problems)")


def _embedded_path() -> Path:
    return Path(str(importlib.resources.files("cvcore") / "data" / EMBEDDED_FILE))


def _load_npz(path) -> Dataset:
    path = Path(path)
    keys = ("x_train", "y_train", "x_test", "y_test", "class_names")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in keys if k in z.files}
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        # np.load's errors on a damaged zip or .npy member, or on pickled objects
        raise ValueError(f"{path}: cannot read data set file ({exc})") from None
    missing = sorted(set(keys) - set(arrays))
    if missing:
        raise ValueError(f"{path}: not a cvcore data set file (missing arrays {missing})")
    for k in ("y_train", "y_test"):
        if arrays[k].dtype.kind not in "ui":
            raise ValueError(f"{path}: {k} must hold integer labels, got {arrays[k].dtype}")
    ds = Dataset(arrays["x_train"], arrays["y_train"].astype(np.int64), arrays["x_test"],
                 arrays["y_test"].astype(np.int64), [str(c) for c in arrays["class_names"]],
                 name=str(path))
    _check_dataset(ds)
    return ds


def _check_dataset(ds: Dataset) -> None:
    for split in ("train", "test"):
        x, y = getattr(ds, "x_" + split), getattr(ds, "y_" + split)
        if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] != 3):
            raise ValueError(f"{ds.name}: x_{split} must be uint8 (N, H, W) or (N, H, W, 3), got "
                             f"{x.dtype} {x.shape}")
        if y.shape != (len(x),):
            raise ValueError(f"{ds.name}: y_{split} has shape {y.shape}, expected ({len(x)},)")
        if y.size and (y.min() < 0 or y.max() >= len(ds.class_names)):
            raise ValueError(f"{ds.name}: y_{split} holds labels outside 0..{len(ds.class_names) - 1}")


def load_embedded() -> Dataset:
    """The Fashion-MNIST subset shipped inside the package (no data needed besides the package).

    4000 training images (400 per class) drawn from the Fashion-MNIST training set and 1000 test
    images (100 per class) from its test set, seeded, 28x28 grey ``uint8``. See
    :mod:`cvcore.io.make_subset` for how it was built.

    Examples
    --------
    >>> ds = load_embedded()
    >>> ds.x_train.shape, ds.x_test.shape, ds.class_names[0]
    ((4000, 28, 28), (1000, 28, 28), 'T-shirt/top')
    """
    path = _embedded_path()
    if not path.is_file():
        raise FileNotFoundError(f"the embedded data set {path} is missing from the installed "
                                f"package; rebuild it with `python -m cvcore.io.make_subset`")
    ds = _load_npz(path)
    ds.name = EMBEDDED_NAME
    return ds


def _datasets_root() -> Path | None:
    env = os.environ.get("CVCORE_DATASETS")
    return Path(env) if env else None


def load_dataset(name_or_path, *, root=None, verify=None, size=None, mode=None,
                 test_fraction: float = 0.2, seed: int = 0, crop_fraction=None) -> Dataset:
    """Load a data set by name or path: the one entry point of the command line.

    Parameters
    ----------
    name_or_path : str or path-like
        * ``"fashion-mnist-small"``: the subset embedded in the package (:func:`load_embedded`).
        * ``"fashion-mnist"`` or ``"mnist"``: the full data set from a folder of the four IDX
          files: ``root`` if given, else ``$CVCORE_DATASETS/<name>``. Checksums are verified
          against the named data set.
        * a folder of IDX files (MNIST-style names): checksums are used to recognise MNIST and
          Fashion-MNIST (and name their classes); other IDX files load unverified with classes
          ``"0", "1", ...``, unless ``verify=True``.
        * an image folder: ``root/train/<class>/*`` with ``root/test/<class>/*`` (or ``val/``),
          or a single ``root/<class>/*`` split into train and test by ``test_fraction`` and
          ``seed`` (see :func:`load_image_folder`).
        * a ``.npz`` file with arrays ``x_train, y_train, x_test, y_test, class_names`` (the
          format of the embedded subset).
    root : path-like, optional
        Folder of the IDX files for the named data sets.
    verify : bool or str, optional
        Checksum policy for IDX folders (see :func:`load_mnist`). Default: the data set's own
        checksums for named data sets, recognition only for paths.
    size : int or (int, int), optional
        Resize every image to ``(height, width)`` (see :class:`ImageFolder`); default: as stored.
    mode : {"gray", "rgb"}, optional
        Colour of the returned images. Default: as stored for IDX and ``.npz`` data (grey for
        MNIST), ``"rgb"`` for image folders.
    test_fraction, seed : float, int
        Image folders without ``train/`` and ``test/`` subfolders: the held-out fraction per
        class and the seed of the split.
    crop_fraction : float, optional
        Image folders with ``size``: resize keeping the aspect ratio and cut out the centre (see
        :class:`ImageFolder`); the pretrained ImageNet models' view.

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        Unknown name or a path that does not exist (the message lists the known names).
    ValueError
        A corrupt, truncated or unverified file, an empty folder, inconsistent splits.
    """
    if size is not None:
        size = check_pair(size, "size")
    if mode is not None:
        check_choice(mode, MODES, "mode")
    key = str(name_or_path)
    path = Path(key)
    if path.is_dir() and not _is_idx_folder(path):
        return load_image_folder(path, size=size, mode=mode or "rgb",
                                 test_fraction=test_fraction, seed=seed,
                                 crop_fraction=crop_fraction)
    return _conform(_load_arrays(key, root, verify), size, mode)


def _load_arrays(key: str, root, verify) -> Dataset:
    """The IDX, .npz and embedded sources of :func:`load_dataset`."""
    if key == EMBEDDED_NAME:
        return load_embedded()
    if key in PUBLISHED_MD5 and not Path(key).exists():
        base = Path(root) if root is not None else None
        if base is None:
            env = _datasets_root()
            if env is None:
                raise FileNotFoundError(
                    f"data set {key!r}: pass root=<folder of its IDX files> or set "
                    f"CVCORE_DATASETS to a folder holding {key}/ (or use {EMBEDDED_NAME!r}, "
                    f"which ships with the package)")
            base = env / key
        if not base.is_dir():
            raise FileNotFoundError(f"data set {key!r}: folder {base} does not exist")
        return _load_idx_dataset(base, key if verify is None else verify, name=key)
    path = Path(key)
    if not path.exists():
        raise FileNotFoundError(f"{key!r} is neither a known data set ({', '.join(DATASET_NAMES)}) "
                                f"nor an existing path")
    if path.is_file():
        if path.suffix == ".npz":
            return _load_npz(path)
        raise ValueError(f"{path}: expected a folder (IDX files or images) or a .npz data set")
    return _load_idx_dataset(path, False if verify is None else verify, name=str(path))


# Pillow's RGB -> L conversion in 16-bit fixed point: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16,
# i.e. ITU-R BT.601 (0.299, 0.587, 0.114) scaled by 2^16, rounded; the same grey as imread's.
_L16 = np.array([19595, 38470, 7471], dtype=np.uint32)


def _conform(ds: Dataset, size, mode) -> Dataset:
    """Bring a loaded data set to ``size`` and ``mode`` (None: leave as is)."""
    for split in ("train", "test"):
        x = getattr(ds, "x_" + split)
        if mode == "rgb" and x.ndim == 3:
            x = np.repeat(x[..., None], 3, axis=3)
        elif mode == "gray" and x.ndim == 4:
            x = ((x.astype(np.uint32) @ _L16 + (1 << 15)) >> 16).astype(np.uint8)
        if size is not None and x.shape[1:3] != tuple(size):
            x = _resize_batch(x, size)
        setattr(ds, "x_" + split, x)
    return ds


RESIZE_CHUNK = 4096  # images per resize call in _resize_batch (bounds the float32 temporaries)


def _resize_batch(x: np.ndarray, size) -> np.ndarray:
    """Resize a uint8 batch ``(N, H, W[, 3])`` of equal-sized images to ``size``. The images are
    stacked as channels of one ``(H, W, N[*3])`` image, since :func:`_resize` treats channels
    independently: one call per chunk instead of one per image."""
    out = np.empty((len(x),) + tuple(size) + x.shape[3:], dtype=np.uint8)
    for start in range(0, len(x), RESIZE_CHUNK):
        part = x[start:start + RESIZE_CHUNK]
        planes = np.moveaxis(part, 0, 2).reshape(part.shape[1], part.shape[2], -1)
        small = _resize(planes, size).reshape(tuple(size) + (len(part),) + x.shape[3:])
        out[start:start + len(part)] = np.moveaxis(small, 2, 0)
    return out


def _load_idx_dataset(root: Path, verify, name: str) -> Dataset:
    x_train, y_train, found_tr = _load_mnist_split(root, "train", verify)
    x_test, y_test, found_te = _load_mnist_split(root, "test", verify)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{root}: train images are {x_train.shape[1:]}, test images "
                         f"{x_test.shape[1:]}")
    found = found_tr if found_tr == found_te else None
    if found is not None:
        names = list(CLASS_NAMES[found])
    else:
        top = max(int(y_train.max(initial=-1)), int(y_test.max(initial=-1)))
        names = [str(i) for i in range(top + 1)]
    ds = Dataset(x_train, y_train, x_test, y_test, names, name=name)
    _check_dataset(ds)
    return ds


def to_nchw(x) -> np.ndarray:
    """A ``uint8`` image batch ``(N, H, W)`` or ``(N, H, W, C)`` as float32 ``(N, C, H, W)`` in 0..1.

    Examples
    --------
    >>> to_nchw(np.full((2, 3, 4), 255, np.uint8)).shape
    (2, 1, 3, 4)
    """
    x = check_array(x, "x", ndim=(3, 4))
    if x.ndim == 3:
        x = x[:, None, :, :]
    else:
        x = x.transpose(0, 3, 1, 2)
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    return np.ascontiguousarray(x, dtype=np.float32) * np.float32(scale)


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------

#: File name endings taken as images (case-insensitive); other files in a class folder are
#: ignored. :func:`cvcore.io.imread` reads the formats of ``EXTENSION_FORMATS``; files with the
#: other endings (GIF, WebP) are listed as unreadable rather than silently skipped.
IMAGE_EXTENSIONS = tuple(EXTENSION_FORMATS) + (".gif", ".webp")
MODES = ("gray", "rgb")
#: Folder names recognised as the held-out split, in order of preference.
TEST_SPLIT_NAMES = ("test", "val")


def _list_classes(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


def decode_image(path, mode: str, size=None, max_pixels: int | None = None,
                 crop_fraction=None) -> np.ndarray:
    """Decode one image file to uint8 ``(H, W)`` (gray) or ``(H, W, 3)`` (rgb), resized to
    ``size = (H, W)`` if given (with ``crop_fraction``: the aspect ratio kept and the centre cut
    out, :func:`cvcore.preprocess.resize_center_crop`). Raises ``ValueError`` naming the file if
    it cannot be decoded.

    This is how every image file reaches a model: training on an image folder, ``cvcore
    predict`` on one file, the batch jobs of :mod:`cvcore.batch` on folders of millions, and
    ``cvcore serve`` on an upload. Reading is :func:`cvcore.io.imread` (EXIF orientation
    applied, content checked against the extension, BT.601 grey); 16-bit and float files are
    brought to 8 bits by :func:`cvcore.io.to_uint8`.

    ``path`` may also be the bytes of an image file (an upload), decoded by
    :func:`cvcore.io.imdecode` with ``max_pixels`` as a bound on the decoded size; the data is
    then called "upload" in messages. Data that is not an image in a supported format raises
    :class:`cvcore.io.NotAnImageError` (a ``ValueError``), so a server can answer 415 to it and
    400 to a truncated or corrupt image."""
    is_data = isinstance(path, (bytes, bytearray, memoryview))
    name = "upload" if is_data else path
    try:
        image = imdecode(path, mode=mode, max_pixels=max_pixels, name="upload") if is_data \
            else imread(path, mode=mode)
        image = to_uint8(image)
    except (OSError, ValueError, TypeError) as exc:
        reason = str(exc)
        prefix = f"{name}: "
        reason = reason[len(prefix):] if reason.startswith(prefix) else reason
        kind = NotAnImageError if isinstance(exc, NotAnImageError) else ValueError
        raise kind(f"{name}: cannot decode image ({reason})") from None
    if size is not None and crop_fraction is not None:
        from cvcore.preprocess.geometry import resize_center_crop
        image = resize_center_crop(image, size, crop_fraction)
        return np.clip(np.round(image), 0, 255).astype(np.uint8) if image.dtype != np.uint8 \
            else image
    if size is not None and image.shape[:2] != tuple(size):
        image = _resize(image, size)
    return image


def _resize(image: np.ndarray, size) -> np.ndarray:
    """uint8 ``(H, W[, C])`` -> ``size = (h, w)`` by :func:`cvcore.preprocess.resize`: area
    averaging (``cv2.INTER_AREA``, antialiased) when neither side grows, else bilinear
    (``cv2.INTER_LINEAR``)."""
    from cvcore.preprocess.geometry import resize
    shrinking = size[0] <= image.shape[0] and size[1] <= image.shape[1]
    return resize(image, size, interpolation="area" if shrinking else "bilinear")


class ImageFolder:
    """Labelled images stored one class per folder: ``root/<class>/<image file>``.

    Classes are the sub-folder names in sorted order (label ``i`` is ``classes[i]``); images are
    the files whose names end in one of :data:`IMAGE_EXTENSIONS`, sorted by name. Hidden files
    and other files are ignored.

    Decoding is lazy: creating the object only lists the files. ``folder[i]`` decodes image ``i``;
    :meth:`load` decodes all of them into one array. With ``cache=True`` (default) decoded images
    are kept in memory, so a second ``load`` or ``folder[i]`` does not decode again; nothing is
    written to disk.

    Parameters
    ----------
    root : path-like
        The folder of class folders.
    size : int or (int, int), optional
        Resize every image to ``(height, width)`` with :func:`cvcore.preprocess.resize`: area
        averaging when shrinking (antialiased, ``cv2.INTER_AREA``), bilinear when enlarging.
        Without it, :meth:`load` requires all images to have the same size.
    mode : {"rgb", "gray"}
        Colour conversion by :func:`cvcore.io.imread`: ``"rgb"`` gives ``(H, W, 3)``, ``"gray"``
        gives ``(H, W)`` (ITU-R BT.601 luma, as Pillow's ``convert("L")``).
    cache : bool
        Keep decoded images in memory.
    classes : list of str, optional
        Use these classes (in this order) instead of the sub-folders found; a listed class with
        no folder has no images. Used to give a test split the label order of its train split.
    crop_fraction : float, optional
        With ``size``: keep the aspect ratio, scale so that ``size`` is this share of the image,
        and cut out the centre (ImageNet's evaluation view: 0.875 = resize 256, crop 224).

    Examples
    --------
    >>> folder = ImageFolder("photos", size=64)            # doctest: +SKIP
    >>> x, y, problems = folder.load()                     # doctest: +SKIP
    """

    def __init__(self, root, size=None, mode: str = "rgb", cache: bool = True, classes=None,
                 crop_fraction=None):
        self.root = Path(root)
        self.crop_fraction = None if crop_fraction is None else float(crop_fraction)
        if not self.root.is_dir():
            raise FileNotFoundError(f"no such folder: {self.root}")
        self.mode = check_choice(mode, MODES, "mode")
        self.size = None if size is None else check_pair(size, "size")
        self.cache = bool(cache)
        self.classes = list(classes) if classes is not None else _list_classes(self.root)
        if not self.classes:
            raise ValueError(f"{self.root}: no class folders (expected {self.root}/<class>/<images>)")
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            folder = self.root / name
            if folder.is_dir():
                self.samples += [(p, label) for p in _list_images(folder)]
        if not self.samples:
            raise ValueError(f"{self.root}: no image files in its class folders "
                             f"({', '.join(self.classes[:5])}{'...' if len(self.classes) > 5 else ''})")
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> np.ndarray:
        """Labels of all files, int64 ``(N,)``."""
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def read(self, i: int) -> np.ndarray:
        """Decode image ``i`` (from the cache if there). Raises ``ValueError`` if it is corrupt."""
        i = check_int(i, "i")
        if not -len(self) <= i < len(self):
            raise IndexError(f"image index {i} out of range for {len(self)} images")
        i %= len(self)
        if i in self._cache:
            return self._cache[i]
        image = decode_image(self.samples[i][0], self.mode, self.size, self.crop_fraction)
        if self.cache:
            self._cache[i] = image
        return image

    def __getitem__(self, i):
        return self.read(i), self.samples[i][1]

    def load(self, indices=None):
        """Decode images (all, or ``indices``) into one array, skipping unreadable files.

        Returns
        -------
        x : ndarray of uint8, shape (M, H, W) or (M, H, W, 3)
            The images that decoded, in file order.
        y : ndarray of int64, shape (M,)
        problems : list of (str, str)
            ``(path, reason)`` for each file that could not be decoded.

        Raises
        ------
        ValueError
            If no image decodes, or (without ``size``) the images differ in size.
        """
        idx = range(len(self)) if indices is None else [int(i) for i in indices]
        out, labels, problems, shapes = None, [], [], set()
        for i in idx:
            try:
                image = self.read(i)
            except ValueError as exc:
                problems.append((str(self.samples[i][0]), str(exc).split(": ", 1)[-1]))
                continue
            shapes.add(image.shape)
            if out is None:  # decode straight into the result: no list of images, no np.stack
                out = np.empty((len(idx),) + image.shape, dtype=np.uint8)
            if len(shapes) == 1:
                out[len(labels)] = image
            labels.append(self.samples[i][1])
        if out is None:
            raise ValueError(f"{self.root}: none of the {len(idx)} image files could be decoded "
                             f"(first problem: {problems[0][1] if problems else 'no files'})")
        if len(shapes) > 1:
            some = ", ".join(str(s) for s in sorted(shapes)[:4])
            raise ValueError(f"{self.root}: images have {len(shapes)} different sizes ({some}...); "
                             f"pass size=(height, width) to resize them")
        return out[:len(labels)], np.array(labels, dtype=np.int64), problems


def _find_split_dirs(root: Path):
    train = root / "train"
    if not train.is_dir():
        return None
    for name in TEST_SPLIT_NAMES:
        if (root / name).is_dir():
            return train, root / name
    return None


def load_image_folder(root, size=None, mode: str = "rgb", test_fraction: float = 0.2,
                      seed: int = 0, crop_fraction=None) -> Dataset:
    """Load an image-folder data set, split into train and test.

    Two layouts are recognised:

    * ``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``root/val/<class>/*``): the
      splits as given. Labels follow the sorted class folders of ``train``; a test class that is
      not a train class is an error.
    * ``root/<class>/*``: a stratified split, ``round(test_fraction * n)`` images of each class
      (at least one if the class has two or more) go to test, chosen by a NumPy generator seeded
      with ``seed``.

    Every image is decoded once, into the returned arrays (no per-image cache is kept). Unreadable
    files are left out and listed in ``Dataset.problems`` as ``(path, reason)``. See
    :class:`ImageFolder` for ``size`` and ``mode``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    dirs = _find_split_dirs(root)
    if dirs is not None:
        train = ImageFolder(dirs[0], size=size, mode=mode, cache=False,
                            crop_fraction=crop_fraction)
        extra = sorted(set(_list_classes(dirs[1])) - set(train.classes))
        if extra:
            raise ValueError(f"{dirs[1]}: classes {extra} have no folder in {dirs[0]}")
        test = ImageFolder(dirs[1], size=size, mode=mode, cache=False, classes=train.classes,
                           crop_fraction=crop_fraction)
        x_train, y_train, p_train = train.load()
        x_test, y_test, p_test = test.load()
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(f"{root}: train images are {x_train.shape[1:]} but test images "
                             f"{x_test.shape[1:]}; pass size=(height, width)")
        ds = Dataset(x_train, y_train, x_test, y_test, train.classes, name=str(root),
                     problems=p_train + p_test)
        return ds
    if isinstance(test_fraction, bool) or not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    seed = check_int(seed, "seed", minimum=0)
    folder = ImageFolder(root, size=size, mode=mode, cache=False, crop_fraction=crop_fraction)
    train_idx, test_idx = _stratified_split(folder.targets, float(test_fraction), seed)
    x_train, y_train, p_train = folder.load(train_idx)
    if len(test_idx) == 0:
        raise ValueError(f"{root}: test_fraction={test_fraction} leaves no test images")
    x_test, y_test, p_test = folder.load(test_idx)
    return Dataset(x_train, y_train, x_test, y_test, folder.classes, name=str(root),
                   problems=p_train + p_test)


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Indices (train, test), each sorted, with ``round(test_fraction * n_c)`` test images per
    class (at least 1 when the class has at least 2 images, never all of them)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        else:
            n_test = 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# --------------------------------------------------------------------------------------------
# Checking a data set
# --------------------------------------------------------------------------------------------

#: An image is of odd size when one side is shorter than this many pixels ...
CHECK_MIN_SIDE = 8
#: ... or its longer side is more than this many times its shorter side ...
CHECK_MAX_ASPECT = 4.0
#: ... or at least this fraction of the images share one size and it does not have that size.
CHECK_MAJORITY = 0.9
SPLITS = ("train", "test")


@dataclass(repr=False)
class CheckReport:
    """What :func:`check` found. Image ids are ``"train[12]"`` for arrays and file paths (relative
    to the data set's folder) for image folders.

    Attributes
    ----------
    name : str
    class_names : list of str
    counts : dict
        Split -> list of counts per class (in ``class_names`` order) of the images that decode.
    duplicates : dict
        Split -> list of groups (lists of ids) of images with identical pixels within the split.
    cross_duplicates : list of (str, str)
        ``(train id, test id)`` pairs with identical pixels: test images the model has seen.
    corrupt : list of (str, str)
        ``(path, reason)`` of files that could not be decoded.
    sizes : dict
        ``(height, width)`` -> number of images of that size, both splits together.
    odd_sizes : list of (str, (int, int))
        Images whose size stands out (see :data:`CHECK_MIN_SIDE`, :data:`CHECK_MAX_ASPECT`,
        :data:`CHECK_MAJORITY`).
    """

    name: str
    class_names: list
    counts: dict
    duplicates: dict
    cross_duplicates: list
    corrupt: list
    sizes: dict
    odd_sizes: list

    def imbalance(self, split: str = "train") -> float:
        """Largest class count over smallest (``inf`` if a class is empty; 1.0 is balanced)."""
        counts = [c for c in self.counts.get(split, [])]
        if not counts:
            return float("nan")
        return float("inf") if min(counts) == 0 else max(counts) / min(counts)

    @property
    def ok(self) -> bool:
        """True when there is nothing to warn about."""
        return not self.issues()

    def issues(self) -> list[str]:
        """One line per problem found."""
        out = []
        for split in SPLITS:
            if split in self.counts:
                empty = [self.class_names[i] for i, c in enumerate(self.counts[split]) if c == 0]
                if empty:
                    out.append(f"{split}: classes with no images: {', '.join(empty)}")
                ratio = self.imbalance(split)
                if np.isfinite(ratio) and ratio > 1.5:
                    out.append(f"{split}: class imbalance, largest/smallest class = {ratio:.2f}")
            groups = self.duplicates.get(split, [])
            if groups:
                extra = sum(len(g) - 1 for g in groups)
                out.append(f"{split}: {extra} duplicate images in {len(groups)} groups")
        if self.cross_duplicates:
            out.append(f"{len(self.cross_duplicates)} test images also appear in train")
        if self.corrupt:
            out.append(f"{len(self.corrupt)} corrupt or unreadable files")
        if self.odd_sizes:
            out.append(f"{len(self.odd_sizes)} images of odd size")
        return out

    def summary(self, examples: int = 3) -> str:
        """A printable multi-line report."""
        lines = [f"data set: {self.name}"]
        width = max(len("total"), *(len(c) for c in self.class_names))
        header = f"  {'class':<{width}}" + "".join(f" {s:>7}" for s in SPLITS if s in self.counts)
        lines.append(header)
        for i, cname in enumerate(self.class_names):
            lines.append(f"  {cname:<{width}}" + "".join(
                f" {self.counts[s][i]:>7}" for s in SPLITS if s in self.counts))
        lines.append(f"  {'total':<{width}}" + "".join(
            f" {sum(self.counts[s]):>7}" for s in SPLITS if s in self.counts))
        common = sorted(self.sizes.items(), key=lambda kv: -kv[1])
        sizes = ", ".join(f"{h}x{w} ({n})" for (h, w), n in common[:3])
        more = f" and {len(common) - 3} more" if len(common) > 3 else ""
        lines.append(f"image sizes (HxW): {sizes}{more}")
        issues = self.issues()
        lines.append("problems: none" if not issues else "problems:")
        for text in issues:
            lines.append(f"  - {text}")
        for split in SPLITS:
            for group in self.duplicates.get(split, [])[:examples]:
                lines.append(f"    duplicate in {split}: {', '.join(group[:4])}")
        for a, b in self.cross_duplicates[:examples]:
            lines.append(f"    in train and test: {a} = {b}")
        for path, reason in self.corrupt[:examples]:
            lines.append(f"    corrupt: {path}: {reason}")
        for ident, (h, w) in self.odd_sizes[:examples]:
            lines.append(f"    odd size: {ident}: {h}x{w}")
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self):
        return f"CheckReport({self.name!r}, ok={self.ok})"

    def to_dict(self) -> dict:
        """Plain types only, for ``json.dumps``."""
        return {
            "name": self.name, "class_names": list(self.class_names),
            "counts": {k: list(map(int, v)) for k, v in self.counts.items()},
            "duplicates": self.duplicates, "cross_duplicates": [list(p) for p in self.cross_duplicates],
            "corrupt": [list(p) for p in self.corrupt],
            "sizes": {f"{h}x{w}": n for (h, w), n in self.sizes.items()},
            "odd_sizes": [[i, list(s)] for i, s in self.odd_sizes],
            "issues": self.issues(),
        }


def _pixel_hash(image: np.ndarray) -> bytes:
    """Content hash of decoded pixels (shape and dtype included, so a 2x8 and a 4x4 differ)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((image.shape, image.dtype.str)).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.digest()


def _duplicate_groups(hashes: list, ids: list) -> list[list[str]]:
    seen: dict[bytes, list[str]] = {}
    for h, i in zip(hashes, ids):
        seen.setdefault(h, []).append(i)
    return [g for g in seen.values() if len(g) > 1]


def _odd_sizes(shapes: dict) -> list:
    """``shapes``: id -> (H, W). The ids whose size stands out."""
    counts: dict[tuple, int] = {}
    for s in shapes.values():
        counts[s] = counts.get(s, 0) + 1
    common, n_common = max(counts.items(), key=lambda kv: kv[1]) if counts else (None, 0)
    majority = n_common >= CHECK_MAJORITY * len(shapes)
    odd = []
    for ident, (h, w) in shapes.items():
        if (min(h, w) < CHECK_MIN_SIDE or max(h, w) > CHECK_MAX_ASPECT * min(h, w)
                or (majority and (h, w) != common)):
            odd.append((ident, (h, w)))
    return odd


def _scan_split(split: str, items, counts_len: int):
    """``items``: iterable of (id, label, image or exception). Returns the pieces of a report."""
    counts = [0] * counts_len
    hashes, ids, shapes, corrupt = [], [], {}, []
    for ident, label, image in items:
        if isinstance(image, Exception):
            corrupt.append((ident, str(image).split(": ", 1)[-1]))
            continue
        counts[label] += 1
        hashes.append(_pixel_hash(image))
        ids.append(ident)
        shapes[ident] = tuple(image.shape[:2])
    return counts, hashes, ids, shapes, corrupt


def check(data, *, mode: str = "rgb", **load_kwargs) -> CheckReport:
    """Check a data set: class balance, duplicates (also across train and test), corrupt files and
    odd image sizes.

    Parameters
    ----------
    data : Dataset, str or path-like
        A loaded :class:`Dataset`, or anything :func:`load_dataset` takes. Image folders are
        scanned file by file at their stored size (every file is fully decoded, so this takes a
        while on a large folder: about 10 s per 50 000 small JPEGs), so that corrupt files and odd
        sizes are seen rather than resized away.
    mode : {"rgb", "gray"}
        Colour conversion for image folders before hashing.
    **load_kwargs
        Passed to :func:`load_dataset` for names and IDX folders.

    Returns
    -------
    CheckReport
        ``print(report)`` gives a summary; ``report.issues()`` a list of problems.

    Notes
    -----
    Duplicates are images with identical decoded pixels (a BLAKE2b hash of the pixel bytes and
    shape), so the same picture saved twice under different names or file formats is found;
    near-duplicates (re-encoded JPEGs, resized copies) are not.
    """
    check_choice(mode, MODES, "mode")
    if isinstance(data, Dataset):
        return _check_arrays(data)
    path = Path(str(data))
    if path.is_dir() and not _is_idx_folder(path):
        return _check_folder(path, mode)
    return _check_arrays(load_dataset(data, **load_kwargs))


def _check_arrays(ds: Dataset) -> CheckReport:
    k = len(ds.class_names)
    parts = {}
    for split in SPLITS:
        x, y = getattr(ds, "x_" + split), getattr(ds, "y_" + split)
        items = ((f"{split}[{i}]", int(y[i]), x[i]) for i in range(len(x)))
        parts[split] = _scan_split(split, items, k)
    return _assemble(ds.name, ds.class_names, parts, list(ds.problems))


def _check_folder(root: Path, mode: str) -> CheckReport:
    dirs = _find_split_dirs(root)
    if dirs is None:
        folders = {"train": ImageFolder(root, mode=mode, cache=False)}
    else:
        train = ImageFolder(dirs[0], mode=mode, cache=False)
        extra = sorted(set(_list_classes(dirs[1])) - set(train.classes))
        classes = train.classes + extra  # report them instead of refusing
        folders = {"train": ImageFolder(dirs[0], mode=mode, cache=False, classes=classes),
                   "test": ImageFolder(dirs[1], mode=mode, cache=False, classes=classes)}
    classes = folders["train"].classes

    def items(folder: ImageFolder):
        for i, (path, label) in enumerate(folder.samples):
            ident = str(path.relative_to(root))
            try:
                yield ident, label, folder.read(i)
            except ValueError as exc:
                yield ident, label, exc

    parts = {split: _scan_split(split, items(f), len(classes)) for split, f in folders.items()}
    return _assemble(str(root), classes, parts, [])


def _assemble(name, class_names, parts, problems) -> CheckReport:
    counts, duplicates, sizes, shapes, corrupt = {}, {}, {}, {}, list(problems)
    for split, (c, hashes, ids, shp, bad) in parts.items():
        counts[split] = c
        duplicates[split] = _duplicate_groups(hashes, ids)
        shapes.update(shp)
        corrupt += bad
    for s in shapes.values():
        sizes[s] = sizes.get(s, 0) + 1
    cross = []
    if "test" in parts:
        first_train = {}
        for h, i in zip(parts["train"][1], parts["train"][2]):
            first_train.setdefault(h, i)
        cross = [(first_train[h], i) for h, i in zip(parts["test"][1], parts["test"][2])
                 if h in first_train]
    return CheckReport(name, list(class_names), counts, duplicates, cross, corrupt, sizes,
                       _odd_sizes(shapes))
