"""Tests of cvcore.io.datasets: IDX files, checksums, the embedded subset, image folders, check."""
import gzip
import hashlib
import struct

import numpy as np
import pytest

from cvcore.io import datasets as D
from tests.conftest import dataset_path


# ------------------------------------------------------------------ IDX: hand-made toy files

def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file written by hand from the format description (big-endian dims and data)."""
    big = arr.astype(D.IDX_DTYPES[code])
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + big.tobytes()


def test_load_idx_toy_uint8_plain_and_gzip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain, gz = tmp_path / "a-idx3-ubyte", tmp_path / "a-idx3-ubyte.gz"
    plain.write_bytes(idx_bytes(arr))
    gz.write_bytes(gzip.compress(idx_bytes(arr)))
    for path in (plain, gz):
        out = D.load_idx(path)
        assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
        np.testing.assert_array_equal(out, arr)


def test_load_idx_header_by_hand(tmp_path):
    # 2 x 3 unsigned bytes: magic 00 00 08 02, dims 2 and 3 as big-endian int32.
    raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 10, 20, 30, 40, 50, 60])
    (tmp_path / "f").write_bytes(raw)
    np.testing.assert_array_equal(D.load_idx(tmp_path / "f"), [[10, 20, 30], [40, 50, 60]])


@pytest.mark.parametrize("code", [0x09, 0x0B, 0x0C, 0x0D, 0x0E])
def test_load_idx_other_dtypes_big_endian(tmp_path, code):
    arr = np.array([[-3, 1], [2, 100]])
    (tmp_path / "f").write_bytes(idx_bytes(arr, code))
    out = D.load_idx(tmp_path / "f")
    assert out.dtype == D.IDX_DTYPES[code].newbyteorder("=")
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:2], "too short"),
    (lambda b: b"\x01" + b[1:], "not an IDX file"),
    (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX type code 0x07"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    (lambda b: b[:8], "truncated IDX header"),
    (lambda b: b[:-5], "truncated IDX file"),
    (lambda b: b + b"xx", "unexpected bytes"),
])
def test_load_idx_corrupt(tmp_path, mutate, message):
    good = idx_bytes(np.zeros((3, 2, 2), np.uint8))
    (tmp_path / "f").write_bytes(mutate(good))
    with pytest.raises(ValueError, match=message):
        D.load_idx(tmp_path / "f")


def test_load_idx_corrupt_gzip(tmp_path):
    gz = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8).reshape(10, 100)))
    (tmp_path / "cut.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ValueError, match="truncated gzip"):
        D.load_idx(tmp_path / "cut.gz")
    bad = bytearray(gz)
    bad[20:30] = b"\xff" * 10
    (tmp_path / "bad.gz").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="gzip"):
        D.load_idx(tmp_path / "bad.gz")


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        D.load_idx(tmp_path / "nope")


def write_mnist_folder(root, n_train=20, n_test=10, classes=3, seed=0, gz=True):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    data = {
        ("train", "images"): rng.integers(0, 256, (n_train, 5, 4), dtype=np.uint8),
        ("train", "labels"): np.arange(n_train, dtype=np.uint8) % classes,
        ("test", "images"): rng.integers(0, 256, (n_test, 5, 4), dtype=np.uint8),
        ("test", "labels"): np.arange(n_test, dtype=np.uint8) % classes,
    }
    for key, arr in data.items():
        raw = idx_bytes(arr)
        name = D.IDX_FILES[key] + (".gz" if gz else "")
        (root / name).write_bytes(gzip.compress(raw) if gz else raw)
    return data


def test_custom_idx_folder(tmp_path):
    data = write_mnist_folder(tmp_path / "custom", gz=False)
    with pytest.raises(ValueError, match="matches no published"):
        D.load_mnist(tmp_path / "custom", "train")
    x, y = D.load_mnist(tmp_path / "custom", "test", verify=False)
    np.testing.assert_array_equal(x, data[("test", "images")])
    assert y.dtype == np.int64
    ds = D.load_dataset(tmp_path / "custom")  # a path: checksums only recognise, never required
    assert ds.class_names == ["0", "1", "2"] and ds.x_train.shape == (20, 5, 4)
    with pytest.raises(ValueError, match="matches no published"):
        D.load_dataset(tmp_path / "custom", verify=True)


def test_idx_folder_label_count_mismatch(tmp_path):
    write_mnist_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(ValueError, match="10 test images but 7 labels"):
        D.load_mnist(tmp_path, "test", verify=False)


def test_load_mnist_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        D.load_mnist(tmp_path, "validation")
    with pytest.raises(ValueError, match="verify"):
        D.load_mnist(tmp_path, "train", verify="cifar")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.load_mnist(tmp_path, "train")


# ------------------------------------------------------------------ IDX: the real data sets

@pytest.mark.parametrize("name, first_labels", [
    ("mnist", [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]),          # the well-known first MNIST digits
    ("fashion-mnist", [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]),  # ankle boot, T-shirt, T-shirt, dress...
])
def test_real_idx_verified(name, first_labels):
    root = dataset_path(name)
    x, y = D.load_mnist(root, "train", verify=name)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and list(y[:10]) == first_labels
    assert np.bincount(y).tolist() == [6000] * 10 if name == "fashion-mnist" else True
    xt, yt = D.load_mnist(root, "test", verify=True)
    assert xt.shape == (10000, 28, 28) and yt.shape == (10000,)


def test_published_md5_agree_with_shared_copies():
    """Cross-check of the MD5 table against the shared copies (the table came from the data sets'
    pages and independent loaders)."""
    for name, table in D.PUBLISHED_MD5.items():
        root = dataset_path(name)
        for stem, md5 in table.items():
            raw = gzip.decompress((root / (stem + ".gz")).read_bytes())
            assert hashlib.md5(raw).hexdigest() == md5


def test_real_checksum_mismatch_is_reported(tmp_path):
    src = dataset_path("mnist")
    for stem in D.IDX_FILES.values():
        (tmp_path / (stem + ".gz")).write_bytes((src / (stem + ".gz")).read_bytes())
    # Swap in Fashion-MNIST's test labels: a valid IDX file, but not MNIST's.
    fm = dataset_path("fashion-mnist", "t10k-labels-idx1-ubyte.gz")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(fm.read_bytes())
    with pytest.raises(ValueError, match="not the published mnist t10k-labels"):
        D.load_mnist(tmp_path, "test", verify="mnist")
    with pytest.raises(ValueError, match="not the published mnist"):
        D.load_dataset("mnist", root=tmp_path)
    ds = D.load_dataset(tmp_path)  # as a path: loads, but is not recognised as MNIST
    assert ds.class_names == [str(i) for i in range(10)]


def test_named_dataset_via_env(monkeypatch):
    root = dataset_path()
    monkeypatch.setenv("CVCORE_DATASETS", str(root))
    ds = D.load_dataset("fashion-mnist")
    assert ds.class_names[9] == "Ankle boot" and len(ds.x_test) == 10000


def test_named_dataset_missing(monkeypatch, tmp_path):
    monkeypatch.delenv("CVCORE_DATASETS", raising=False)
    with pytest.raises(FileNotFoundError, match="CVCORE_DATASETS"):
        D.load_dataset("mnist")
    monkeypatch.setenv("CVCORE_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match="neither a known data set"):
        D.load_dataset("imagenet")


# ------------------------------------------------------------------ the embedded subset

def test_embedded_subset():
    ds = D.load_dataset("fashion-mnist-small")
    assert ds.x_train.shape == (4000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.class_names == D.CLASS_NAMES["fashion-mnist"]
    assert D._embedded_path().stat().st_size <= 3_000_000


def test_embedded_subset_is_the_published_images():
    """Each embedded image is the original at its recorded index, and the build is reproducible."""
    from cvcore.io.make_subset import build_subset
    root = dataset_path("fashion-mnist")
    rebuilt = build_subset(root)
    with np.load(D._embedded_path()) as z:
        for key in ("x_train", "y_train", "x_test", "y_test", "train_index", "test_index"):
            np.testing.assert_array_equal(z[key], rebuilt[key], err_msg=key)
        x, y = D.load_mnist(root, "train")
        np.testing.assert_array_equal(x[z["train_index"]], z["x_train"])
        np.testing.assert_array_equal(y[z["train_index"]], z["y_train"])


def test_npz_dataset_roundtrip_and_errors(tmp_path):
    from cvcore.io.make_subset import save_subset
    x = np.zeros((4, 3, 3), np.uint8)
    good = dict(x_train=x, y_train=np.array([0, 1, 0, 1]), x_test=x[:2], y_test=np.array([1, 0]),
                class_names=np.array(["a", "b"]))
    ds = D.load_dataset(save_subset(good, tmp_path / "d.npz"))
    assert ds.class_names == ["a", "b"] and ds.y_test.tolist() == [1, 0]
    bad = dict(good, y_test=np.array([1, 2]))
    with pytest.raises(ValueError, match="labels outside 0..1"):
        D.load_dataset(save_subset(bad, tmp_path / "bad.npz"))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="cannot read"):
        D.load_dataset(tmp_path / "junk.npz")


def test_to_nchw():
    x = np.array([[[0, 255]]], np.uint8)
    out = D.to_nchw(x)
    assert out.shape == (1, 1, 1, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0, 0], [0.0, 1.0])
    rgb = np.zeros((2, 4, 5, 3), np.uint8)
    rgb[..., 2] = 51
    out = D.to_nchw(rgb)
    assert out.shape == (2, 3, 4, 5) and np.allclose(out[:, 2], 0.2) and not out[:, :2].any()
