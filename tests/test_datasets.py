"""Tests of cvcore.io.datasets: IDX files, checksums, the embedded subset, image folders, check."""
import gzip
import hashlib
import struct
from pathlib import Path

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
    with pytest.raises(FileNotFoundError, match="no such IDX file"):
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


# ------------------------------------------------------------------ image folders

def save_image(path, array):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_folder(root, sizes=((6, 8),) * 3, classes=("cat", "ant", "bee"), seed=0):
    """root/<class>/<i>.png with distinct random RGB images; returns {relative path: array}."""
    rng = np.random.default_rng(seed)
    made = {}
    for c in classes:
        for i, (h, w) in enumerate(sizes):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            save_image(root / c / f"{i}.png", arr)
            made[f"{c}/{i}.png"] = arr
    return made


def test_image_folder_classes_sorted_lazy_and_exact(tmp_path):
    made = make_folder(tmp_path)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")   # ignored: not an image name
    (tmp_path / ".hidden").mkdir()                                # ignored: hidden folder
    folder = D.ImageFolder(tmp_path)
    assert folder.classes == ["ant", "bee", "cat"]
    assert len(folder) == 9 and folder.targets.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert folder._cache == {}                     # nothing decoded yet
    image, label = folder[4]
    assert label == 1 and folder.samples[4][0].name == "1.png"
    np.testing.assert_array_equal(image, made["bee/1.png"])
    assert list(folder._cache) == [4]              # decoded once, cached
    gray = D.ImageFolder(tmp_path, mode="gray").read(0)
    from PIL import Image
    expected = np.asarray(Image.fromarray(made["ant/0.png"]).convert("L"))
    np.testing.assert_array_equal(gray, expected)


def test_image_folder_resize_and_corrupt_files_reported(tmp_path):
    make_folder(tmp_path, sizes=((6, 8), (10, 4)))
    (tmp_path / "bee" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    good = tmp_path / "ant" / "0.png"
    (tmp_path / "ant" / "cut.png").write_bytes(good.read_bytes()[:60])
    folder = D.ImageFolder(tmp_path, size=(5, 7), mode="gray")
    x, y, problems = folder.load()
    assert x.shape == (6, 5, 7) and x.dtype == np.uint8 and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert sorted(Path(p).name for p, _ in problems) == ["broken.jpg", "cut.png"]
    assert all(reason for _, reason in problems)
    with pytest.raises(ValueError, match="cannot decode"):
        folder.read([p for p, _ in folder.samples].index(tmp_path / "bee" / "broken.jpg"))
    with pytest.raises(ValueError, match="2 different sizes"):
        D.ImageFolder(tmp_path).load()


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        D.ImageFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        D.ImageFolder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        D.ImageFolder(tmp_path)
    (tmp_path / "a" / "x.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="none of the 1 image files"):
        D.ImageFolder(tmp_path).load()
    with pytest.raises(ValueError, match="mode"):
        D.ImageFolder(tmp_path, mode="cmyk")


def test_load_image_folder_train_test_layout(tmp_path):
    make_folder(tmp_path / "train")
    make_folder(tmp_path / "val", classes=("bee",), seed=1)
    ds = D.load_dataset(tmp_path)
    assert ds.class_names == ["ant", "bee", "cat"]
    assert ds.x_train.shape == (9, 6, 8, 3) and ds.x_test.shape == (3, 6, 8, 3)
    assert ds.y_test.tolist() == [1, 1, 1]  # labels follow the train classes
    make_folder(tmp_path / "test", classes=("dog",))
    with pytest.raises(ValueError, match=r"classes \['dog'\] have no folder"):
        D.load_dataset(tmp_path)


def test_load_image_folder_seeded_split(tmp_path):
    make_folder(tmp_path, sizes=((4, 4),) * 10, classes=("a", "b"))
    ds = D.load_dataset(tmp_path, test_fraction=0.3, seed=7, mode="gray", size=3)
    assert ds.x_train.shape == (14, 3, 3) and ds.x_test.shape == (6, 3, 3)
    assert np.bincount(ds.y_test).tolist() == [3, 3]
    again = D.load_image_folder(tmp_path, test_fraction=0.3, seed=7, mode="gray", size=3)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    other = D.load_image_folder(tmp_path, test_fraction=0.3, seed=8, mode="gray", size=3)
    assert not np.array_equal(other.x_test, ds.x_test)
    # no image is in both splits
    hashes = lambda x: {im.tobytes() for im in x}
    assert not hashes(ds.x_train) & hashes(ds.x_test)
    with pytest.raises(ValueError, match="test_fraction"):
        D.load_image_folder(tmp_path, test_fraction=1.0)


def test_real_image_folder_hymenoptera():
    """Real photos of various sizes, one of them a GIF placeholder ("image not found") that
    imread refuses: it is reported, the others are resized. (A sample: resizing all 398 photos
    one by one takes too long for the test suite.)"""
    folder = D.ImageFolder(dataset_path("hymenoptera", "train"), size=32)
    assert folder.classes == ["ants", "bees"] and len(folder) == 245
    names = [p.name for p, _ in folder.samples]
    idx = [names.index("imageNotFound.gif")] + list(range(0, 245, 25))
    x, y, problems = folder.load(idx)
    assert x.shape == (len(idx) - 1, 32, 32, 3) and x.dtype == np.uint8
    assert y.tolist() == [folder.samples[i][1] for i in idx[1:]]
    assert [Path(p).name for p, _ in problems] == ["imageNotFound.gif"]
    assert "not a PNG, JPEG" in problems[0][1]


def test_real_image_folder_cifar_one_class_folder():
    """CIFAR-10's JPEG folders through the folder loader: one class, not all 60 000 files."""
    root = dataset_path("cifar10", "test")
    folder = D.ImageFolder(root)
    assert folder.classes[:3] == ["airplane", "automobile", "bird"] and len(folder.classes) == 10
    idx = np.flatnonzero(folder.targets == 3)[:50]
    x, y, problems = folder.load(idx)
    assert x.shape == (50, 32, 32, 3) and set(y.tolist()) == {3} and problems == []


# ------------------------------------------------------------------ check

def test_check_folder_finds_duplicates_corrupt_and_odd_sizes(tmp_path):
    made = make_folder(tmp_path / "train", sizes=((12, 12),) * 12, classes=("a", "b"))
    make_folder(tmp_path / "test", sizes=((12, 12),) * 2, classes=("a", "b"), seed=5)
    # a duplicate within train (same pixels, other format and name) and one across the splits
    save_image(tmp_path / "train" / "b" / "copy.bmp", made["a/3.png"])
    save_image(tmp_path / "test" / "a" / "leak.png", made["b/0.png"])
    (tmp_path / "test" / "b" / "bad.jpg").write_bytes(b"nope")
    save_image(tmp_path / "train" / "a" / "tiny.png", np.zeros((3, 12, 3), np.uint8))
    report = D.check(tmp_path)
    assert report.class_names == ["a", "b"]
    assert report.counts == {"train": [13, 13], "test": [3, 2]}
    assert report.duplicates == {"train": [[str(Path("train/a/3.png")), str(Path("train/b/copy.bmp"))]],
                                 "test": []}
    assert report.cross_duplicates == [(str(Path("train/b/0.png")), str(Path("test/a/leak.png")))]
    assert [Path(p).name for p, _ in report.corrupt] == ["bad.jpg"]
    assert report.odd_sizes == [(str(Path("train/a/tiny.png")), (3, 12))]
    assert not report.ok
    text = report.summary()
    for needle in ("duplicate", "also appear in train", "corrupt", "odd size", "tiny.png"):
        assert needle in text
    import json
    assert json.loads(json.dumps(report.to_dict()))["counts"]["test"] == [3, 2]


def test_check_arrays_toy_and_imbalance():
    x = np.zeros((5, 2, 2), np.uint8)
    x[1, 0, 0] = 1
    x[2, 0, 0] = 2
    x[3, 0, 0] = 2                     # train[3] duplicates train[2]
    x[4, 1, 1] = 7
    xt = np.stack([x[1], x[4] + 9])    # test[0] duplicates train[1]
    ds = D.Dataset(x, np.array([0, 0, 0, 0, 1]), xt, np.array([0, 1]), ["p", "q"], name="toy")
    report = D.check(ds)
    assert report.counts == {"train": [4, 1], "test": [1, 1]}
    assert report.imbalance("train") == 4.0 and report.imbalance("test") == 1.0
    assert report.duplicates == {"train": [["train[2]", "train[3]"]], "test": []}
    assert report.cross_duplicates == [("train[1]", "test[0]")]
    assert report.sizes == {(2, 2): 7}
    assert report.odd_sizes == [(f"{s}[{i}]", (2, 2)) for s, n in (("train", 5), ("test", 2))
                                for i in range(n)]  # 2 px is below CHECK_MIN_SIDE
    assert any("imbalance" in line for line in report.issues())


def test_check_embedded_is_clean():
    report = D.check("fashion-mnist-small")
    assert report.ok, report.summary()
    assert report.counts["train"] == [400] * 10 and report.sizes == {(28, 28): 5000}


# ------------------------------------------------------------------ properties

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(code=st.sampled_from(sorted(D.IDX_DTYPES)),
       shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
       seed=st.integers(0, 2**32 - 1), gz=st.booleans())
def test_idx_round_trip(tmp_path_factory, code, shape, seed, gz):
    """Any array written in the IDX format comes back with the same shape, values and kind."""
    rng = np.random.default_rng(seed)
    dtype = D.IDX_DTYPES[code]
    if dtype.kind == "f":
        arr = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    raw = idx_bytes(arr, code)
    path = tmp_path_factory.mktemp("idx") / "f"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = D.load_idx(path)
    assert out.shape == tuple(shape) and out.dtype == dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, arr)
    if len(raw) > 4:  # any cut of the file is reported, never returned
        path.write_bytes(raw[: rng.integers(0, len(raw))])
        with pytest.raises(ValueError):
            D.load_idx(path)


def test_load_dataset_size_and_mode_apply_to_every_source(tmp_path, rng):
    ds = D.load_dataset("fashion-mnist-small", size=32, mode="rgb")
    assert ds.x_train.shape == (4000, 32, 32, 3) and ds.x_test.shape == (1000, 32, 32, 3)
    assert (ds.x_train[..., 0] == ds.x_train[..., 2]).all()       # grey repeated
    small = D.load_embedded()
    from cvcore.preprocess import resize
    for i in (0, 7, 3999):  # the batched resize equals the per-image one (bilinear: it grows)
        want = resize(small.x_train[i], (32, 32), interpolation="bilinear")
        np.testing.assert_array_equal(ds.x_train[i, :, :, 1], want)
    shrunk = D.load_dataset("fashion-mnist-small", size=(14, 7))
    want = resize(small.x_test[5], (14, 7), interpolation="area")
    np.testing.assert_array_equal(shrunk.x_test[5], want)
    from PIL import Image
    # RGB -> grey is Pillow's convert("L"), exactly, as imread(mode="gray") gives for files
    from cvcore.io.make_subset import save_subset
    rgb = rng.integers(0, 256, (6, 5, 4, 3), dtype=np.uint8)
    path = save_subset(dict(x_train=rgb, y_train=np.zeros(6, int), x_test=rgb[:2],
                            y_test=np.zeros(2, int), class_names=np.array(["a"])), tmp_path / "c.npz")
    grey = D.load_dataset(path, mode="gray")
    assert grey.x_train.shape == (6, 5, 4)
    for img, g in zip(rgb, grey.x_train):
        np.testing.assert_array_equal(g, np.asarray(Image.fromarray(img).convert("L")))
    with pytest.raises(ValueError, match="mode"):
        D.load_dataset("fashion-mnist-small", mode="bgr")
    with pytest.raises(ValueError, match="size"):
        D.load_dataset("fashion-mnist-small", size=0)
