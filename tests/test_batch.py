"""Batch jobs over folders (cvcore.batch) in one process: discovery by content, error rows for bad
files, the output formats, rows equal to `cvcore predict`, and resuming after a stop or a SIGKILL.
The same jobs on a real Dask cluster are in test_batch_dask.py."""
import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvcore.batch import extract_features, load_features, predict_folder, sniff_image, walk_images
from cvcore.batch.job import FolderJob, parse_scheduler
from cvcore.batch.predict import parts_dir_for
from cvcore.cli import main

ROOT = Path(__file__).resolve().parents[1]
# A small HOG: 28x28 images, 7x7 cells, 2x2 blocks (3x3 blocks x 4 cells x 9 bins = 324 values).
SMALL_HOG = {"cell_sizes": ((7, 7),), "orientations": 9, "cells_per_block": (2, 2),
             "block_norm": "L2-Hys", "transform_sqrt": True}


def train_small_model(path):
    """A HOG + linear SVM on 300 images of the embedded Fashion-MNIST subset (a few seconds)."""
    from cvcore.io.datasets import load_embedded
    from cvcore.train.pipeline import HOGParams, train_hog_model
    data = load_embedded()
    model = train_hog_model("hog-svm", data.x_train[:300], data.y_train[:300], data.class_names,
                            hog=HOGParams(**SMALL_HOG), log=lambda *a: None)
    model.save(path)
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    data = train_small_model(path)
    return path, data


def png_bytes(width, height, payload=b"\x00"):
    """A PNG whose header claims width x height grey pixels (the data need not match)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + \
            struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(payload)) + chunk(b"IEND", b""))


def make_folder(root: Path, images, n_good: int):
    """``n_good`` test images in nested folders (PNG, JPEG, and a JPEG without an extension)."""
    for i in range(n_good):
        sub = root / ("a" if i % 3 else "a/b") / ("c" if i % 5 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        fmt, ext = [("PNG", ".png"), ("JPEG", ".jpg"), ("PNG", ".PNG")][i % 3]
        Image.fromarray(images[i]).save(sub / f"img{i:04d}{ext}", format=fmt)
    return root


BAD_FILES = {   # name -> words the error row must contain
    "empty.png": "empty file",
    "text.jpg": "not a PNG, JPEG",
    "truncated.jpg": "truncated",
    "corrupt.png": "corrupt",
    "huge.png": "decompression bomb",
}


@pytest.fixture
def bad_folder(tmp_path, trained):
    _, data = trained
    root = make_folder(tmp_path / "photos", data.x_test, 30)
    (root / "a" / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("not a photo")
    jpeg = root / "a" / "img0001.jpg"
    (root / "truncated.jpg").write_bytes(jpeg.read_bytes()[:len(jpeg.read_bytes()) // 2])
    broken = bytearray(png_bytes(28, 28, bytes(28 * 29)))
    at = broken.index(b"IDAT") + 4
    broken[at:at + 2] = b"\x00\x00"                    # the zlib stream's header, broken
    (root / "a" / "b" / "corrupt.png").write_bytes(bytes(broken))
    # 100 000 x 100 000 pixels claimed in a 70-byte file: refused from the header alone
    (root / "huge.png").write_bytes(png_bytes(100_000, 100_000))
    (root / "notes.txt").write_text("a sidecar file: not an image by name or content")
    (root / ".hidden.png").write_bytes(b"")
    return root


def stop_after(n):
    """An ``on_partition`` hook that stops the job (as Ctrl-C does) after ``n`` pieces."""
    seen = []

    def hook(i):
        seen.append(i)
        if len(seen) == n:
            raise KeyboardInterrupt
    return hook


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


# -- discovery --------------------------------------------------------------------------------

def test_sniff_tells_formats_by_content(tmp_path):
    cases = {"png": png_bytes(2, 2), "jpeg": b"\xff\xd8\xff\xe0" + bytes(12),
             "tiff": b"II*\x00" + bytes(12), "pgm": b"P5\n2 2\n255\n\x00\x00\x00\x00",
             "text": b"P5 is a good grade", "empty": b""}
    found = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        found[name] = sniff_image(tmp_path / name)
    assert found == {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "pgm": "PNM",
                     "text": None, "empty": None}


def test_walk_is_sorted_recursive_and_finds_images_by_content(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "z").mkdir(parents=True)
    (tmp_path / "b" / "1.png").write_bytes(png_bytes(2, 2))
    (tmp_path / "a" / "z" / "photo").write_bytes(png_bytes(2, 2))      # no extension
    (tmp_path / "a" / "2.jpg").write_text("claims to be a JPEG")      # by name: an error row
    (tmp_path / "a" / "readme.md").write_text("# not an image")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\x00")
    from cvcore.batch.files import WalkStats
    stats = WalkStats()
    found = list(walk_images([tmp_path], stats))
    rel = [os.path.relpath(p, tmp_path) for p in found]
    assert rel == ["a/2.jpg", "a/z/photo", "b/1.png"]
    assert stats.skipped == 1
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(walk_images([tmp_path / "nowhere"]))


def test_scheduler_forms():
    assert parse_scheduler("local") == ("local", None)
    assert parse_scheduler("processes:3") == ("processes", 3)
    assert parse_scheduler("tcp://127.0.0.1:8786") == ("address", "tcp://127.0.0.1:8786")
    for bad in ("processes:0", "processes:x", "threads"):
        with pytest.raises(ValueError, match="scheduler"):
            parse_scheduler(bad)


# -- predict ----------------------------------------------------------------------------------

def test_bad_files_get_one_error_row_each_and_good_ones_are_all_predicted(bad_folder, trained,
                                                                          tmp_path):
    weights, _ = trained
    out = tmp_path / "pred.jsonl"
    report = predict_folder(bad_folder, weights, out, top=2, partition_size=7, progress=False)
    rows = read_jsonl(out)
    errors = {Path(r["image"]).name: r["error"] for r in rows if "error" in r}
    assert set(errors) == set(BAD_FILES)
    for name, words in BAD_FILES.items():
        assert words in errors[name], (name, errors[name])
    good = [r for r in rows if "top" in r]
    assert len(good) == 30 and len(rows) == 35
    assert all(len(r["top"]) == 2 and r["top"][0]["probability"] >= r["top"][1]["probability"]
               for r in good)
    assert report.errors == 5 and report.skipped == 1 and report.files == 35
    assert report.model_loads <= 1        # loaded once (or kept from an earlier test's job)
    assert not parts_dir_for(out).exists()         # the pieces are gone once assembled
    # the order is the walk's: sorted path components, depth first
    names = [r["image"] for r in rows]
    assert names == list(walk_images([bad_folder]))


def test_rows_equal_cvcore_predict_on_the_same_files(bad_folder, trained, tmp_path, capsys):
    weights, _ = trained
    big = bad_folder / "a" / "big colour.png"              # resized and made grey on the way
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 70, 3), np.uint8)).save(big)
    out = tmp_path / "pred.jsonl"
    predict_folder([bad_folder], weights, out, top=3, partition_size=4, progress=False)
    rows = {r["image"]: r for r in read_jsonl(out)}
    files = [p for p in rows if "top" in rows[p]][:6] + [str(big)]
    assert main(["predict", *files, "--weights", str(weights), "--json"]) == 0
    single = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["image"] for s in single] == files
    for s in single:
        row = rows[s["image"]]
        assert list(row) == list(s) == ["image", "label", "confidence", "top"]
        assert row["label"] == s["label"]
        assert [t["class"] for t in row["top"]] == [t["class"] for t in s["top"]]
        # one batch of 6 here, partitions of 4 there: BLAS may round the last bit differently
        np.testing.assert_allclose([row["confidence"]] + [t["probability"] for t in row["top"]],
                                   [s["confidence"]] + [t["probability"] for t in s["top"]],
                                   rtol=1e-9, atol=1e-15)


def test_min_confidence_labels_unsure_images_unknown(bad_folder, trained, tmp_path, capsys):
    weights, _ = trained
    out = tmp_path / "p.jsonl"
    assert main(["predict", str(bad_folder), "--weights", str(weights), "--out", str(out),
                 "--min-confidence", "0.99", "--quiet"]) == 0
    rows = [r for r in read_jsonl(out) if "top" in r]
    unsure = [r for r in rows if r["confidence"] < 0.99]
    assert unsure and len(unsure) < len(rows)
    for r in rows:
        assert r["confidence"] == r["top"][0]["probability"]
        assert r["label"] == ("unknown" if r["confidence"] < 0.99 else r["top"][0]["class"])
    assert main(["predict", str(bad_folder), "--weights", str(weights), "--out", str(out),
                 "--tta"]) == 2
    assert "--tta needs a CNN" in capsys.readouterr().err


def test_csv_and_parquet_hold_the_jsonl_rows(bad_folder, trained, tmp_path):
    weights, _ = trained
    predict_folder(bad_folder, weights, tmp_path / "p.jsonl", top=2, progress=False)
    predict_folder(bad_folder, weights, tmp_path / "p.csv", top=2, progress=False)
    rows = read_jsonl(tmp_path / "p.jsonl")
    with open(tmp_path / "p.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    for r, c in zip(rows, table):
        assert c["image"] == r["image"]
        if "error" in r:
            assert c["error"] == r["error"] and c["class_1"] == "" and c["probability_2"] == ""
        else:
            assert c["error"] == "" and c["label"] == r["label"]
            assert float(c["confidence"]) == r["confidence"]
            assert [c["class_1"], c["class_2"]] == [t["class"] for t in r["top"]]
            assert [float(c["probability_1"]), float(c["probability_2"])] == \
                [t["probability"] for t in r["top"]]
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet output needs pyarrow")
    predict_folder(bad_folder, weights, tmp_path / "p.parquet", top=2, partition_size=8,
                   progress=False)
    table = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert [t["image"] for t in table] == [r["image"] for r in rows]
    for r, t in zip(rows, table):
        if "error" in r:
            assert t["error"] == r["error"] and t["probability_1"] is None
        else:
            assert t["error"] is None and t["probability_1"] == r["top"][0]["probability"]


def test_a_stopped_run_resumes_to_the_same_output(bad_folder, trained, tmp_path):
    weights, _ = trained
    predict_folder(bad_folder, weights, tmp_path / "whole.jsonl", partition_size=4,
                   progress=False)
    out = tmp_path / "stopped.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_folder(bad_folder, weights, out, partition_size=4, progress=False,
                       on_partition=stop_after(3))
    parts = parts_dir_for(out)
    assert not out.exists() and len(list(parts.glob("part-*.jsonl"))) == 3
    # a write that a kill interrupted leaves a temporary file; the resume removes it
    (parts / ".part-0000005.jsonl.x1y2.tmp").write_text('{"image": "half')
    # new files in the folder after the start do not change a resumed job's partitions
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(bad_folder / "a" / "late.png")
    report = predict_folder(bad_folder, weights, out, partition_size=4, progress=False)
    assert report.resumed == 3
    assert out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert not parts.exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_resume_refuses_other_settings(bad_folder, trained, tmp_path):
    weights, _ = trained
    out = tmp_path / "p.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_folder(bad_folder, weights, out, partition_size=4, progress=False,
                       on_partition=stop_after(1))
    with pytest.raises(ValueError, match="other settings.*settings.top"):
        predict_folder(bad_folder, weights, out, top=1, partition_size=4, progress=False)
    with pytest.raises(ValueError, match="partition_size"):
        predict_folder(bad_folder, weights, out, partition_size=5, progress=False)


def test_sigkilled_run_resumes_with_identical_output_and_no_half_file(trained, tmp_path):
    """SIGKILL the command mid-run (no handler runs, nothing is flushed), start it again."""
    weights, data = trained
    folder = make_folder(tmp_path / "many", data.x_test, 240)
    expected = tmp_path / "expected.jsonl"
    predict_folder(folder, weights, expected, partition_size=2, progress=False)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "cvcore.cli", "predict", str(folder), "--weights", str(weights),
           "--out", str(out), "--partition-size", "2", "--threads", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = parts_dir_for(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(parts.glob("part-*.jsonl"))) >= 4:
            break
        time.sleep(0.002)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    done = sorted(parts.glob("part-*.jsonl"))
    assert not out.exists() and 4 <= len(done) < 120
    for piece in done:                                  # every piece on disk is whole
        assert len(read_jsonl(piece)) == 2
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == expected.read_bytes()
    assert not parts.exists() and not list(tmp_path.rglob("*.tmp"))


def test_command_line_errors_are_one_line(bad_folder, trained, tmp_path, capsys):
    weights, _ = trained
    assert main(["predict", str(bad_folder), "--weights", str(weights)]) == 2
    assert "is a folder: give --out" in capsys.readouterr().err
    assert main(["predict", str(bad_folder), "--weights", str(weights),
                 "--out", str(tmp_path / "x.txt")]) == 2
    assert "use .jsonl, .csv or .parquet" in capsys.readouterr().err
    one = next(p for p in walk_images([bad_folder]) if p.endswith(".png"))
    assert main(["predict", one, "--weights", str(weights), "--scheduler", "processes:2"]) == 2
    assert "--scheduler applies to a batch job" in capsys.readouterr().err
    assert main(["predict", str(bad_folder), "--weights", str(weights), "--out",
                 str(tmp_path / "x.jsonl"), "--scheduler", "threads:4"]) == 2
    assert "unknown scheduler" in capsys.readouterr().err


def test_command_writes_csv_with_progress_and_summary(bad_folder, trained, tmp_path, capsys):
    weights, _ = trained
    out = tmp_path / "p.csv"
    assert main(["predict", str(bad_folder), "--weights", str(weights), "--out", str(out),
                 "--top", "1"]) == 0
    err = capsys.readouterr().err
    assert "predict 35/35 images 100%" in err and "images/s" in err and "ETA" in err
    assert "30 images done, 5 error rows, 1 non-image files skipped" in err
    assert out.read_text().splitlines()[0] == \
        "image,error,label,confidence,class_1,probability_1"


# -- features ---------------------------------------------------------------------------------

def test_hog_features_equal_hog_of_each_file_and_resume(bad_folder, tmp_path):
    from cvcore.features import hog
    from cvcore.io.datasets import decode_image
    out = tmp_path / "feats"
    kwargs = dict(size=(28, 28), partition_size=6, progress=False, pixels_per_cell=(7, 7),
                  cells_per_block=(2, 2))
    with pytest.raises(KeyboardInterrupt):
        extract_features(bad_folder, out, "hog", on_partition=stop_after(2), **kwargs)
    report = extract_features(bad_folder, out, "hog", **kwargs)
    assert report.resumed == 2 and report.errors == 5
    paths, X = load_features(out)
    assert len(paths) == 30 and X.shape == (30, 324) and X.dtype == np.float32
    for p in paths[::7]:
        image = decode_image(p, "gray", (28, 28)).astype(np.float32) / 255
        want = hog(image, pixels_per_cell=(7, 7), cells_per_block=(2, 2))
        np.testing.assert_allclose(X[paths.index(p)], want, rtol=1e-6, atol=1e-7)
    index = read_jsonl(out / "index.jsonl")
    assert [r["image"] for r in index] == list(walk_images([bad_folder]))[:35]
    assert {Path(r["image"]).name for r in index if "error" in r} == set(BAD_FILES)
    meta = json.loads((out / "features.json").read_text())
    assert meta["dim"] == 324 and meta["images"] == 30 and meta["errors"] == 5
    assert not (out / "parts").exists()


def test_sift_features_as_keypoint_shards(tmp_path):
    from cvcore.features import sift
    from tests.conftest import dataset_path
    src = dataset_path("test-images")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("box.pgm", "roofs1.jpg"):
        image = Image.open(src / name).convert("L")
        image.thumbnail((160, 160))
        image.save(folder / (Path(name).stem + ".png"))
    out = tmp_path / "sift"
    extract_features([folder], out, "sift", max_keypoints=50, progress=False)
    index = read_jsonl(out / "index.jsonl")
    assert [Path(r["image"]).name for r in index] == ["box.png", "roofs1.png"]
    with np.load(out / index[0]["shard"]) as z:
        offsets, desc, xy = z["offsets"], z["descriptors"], z["xy"]
    from cvcore.io.datasets import decode_image
    for r, row in enumerate(index):
        kp, d = sift(decode_image(row["image"], "gray"), n_features=50)
        assert row["keypoints"] == len(kp) == offsets[r + 1] - offsets[r] > 10
        np.testing.assert_array_equal(desc[offsets[r]:offsets[r + 1]], d)
        np.testing.assert_array_equal(xy[offsets[r]:offsets[r + 1]], kp.xy)


def test_cnn_features_are_the_penultimate_layer(trained, tmp_path):
    from cvcore import nn
    from cvcore.io.datasets import to_nchw
    from cvcore.train.pipeline import TrainedModel
    _, data = trained
    net = nn.resnet20(num_classes=10, in_channels=1, rng=0)
    model = TrainedModel("resnet20", list(data.class_names), (28, 28), "gray", {},
                         {"mean": np.array([0.3], np.float32), "std": np.array([0.3], np.float32),
                          "state_dict": dict(net.state_dict())})
    model.save(tmp_path / "cnn.npz")
    folder = make_folder(tmp_path / "imgs", data.x_test, 7)
    out = tmp_path / "emb"
    extract_features(folder, out, "cnn", weights=tmp_path / "cnn.npz", partition_size=4,
                     progress=False)
    paths, X = load_features(out)
    assert X.shape == (7, 64)
    # the same network by hand: its forward up to the global average pool
    from cvcore.io.datasets import decode_image
    x = to_nchw(np.stack([decode_image(p, "gray") for p in paths]))
    x = (x - 0.3) / 0.3
    net.eval()
    with nn.no_grad():
        np.testing.assert_allclose(X, net.embed(x.astype(np.float32)), rtol=1e-5, atol=1e-6)
        logits = net(x.astype(np.float32))
    np.testing.assert_allclose(X @ net.fc.weight.data.T + net.fc.bias.data, logits,
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="needs --weights"):
        extract_features(folder, tmp_path / "e2", "cnn")


def test_features_command_errors(bad_folder, tmp_path, capsys):
    assert main(["features", str(bad_folder), "--kind", "hog", "--out", str(tmp_path / "f")]) == 2
    assert "needs --size" in capsys.readouterr().err
    assert main(["features", str(bad_folder), "--kind", "sift", "--orientations", "8",
                 "--out", str(tmp_path / "f")]) == 2
    assert "--orientations does not apply to --kind sift" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["features", str(bad_folder), "--kind", "hog", "--size", "28", "28",
                 "--out", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_job_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="partition_size"):
        FolderJob(tmp_path / "p", {}, [tmp_path], 0)
    with pytest.raises(ValueError, match="no input"):
        FolderJob(tmp_path / "p", {}, [], 4)
