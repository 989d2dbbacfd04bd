"""Training a HOG detector on the dlib-faces photos, and the `cvcore` commands around it."""
import json

import numpy as np
import pytest

from cvcore.cli import main
from tests.conftest import dataset_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`cvcore train --model hog-detector` on the 4 training photos (18 faces), defaults."""
    train = dataset_path("dlib-faces", "training.xml")
    out = tmp_path_factory.mktemp("detector")
    assert main(["train", "--model", "hog-detector", "--data", str(train), "--out", str(out),
                 "--json"]) == 0
    return out / "model.npz"


def test_train_writes_a_detector_model(trained):
    from cvcore.train.pipeline import load_model
    model = load_model(trained)
    assert model.kind == "hog-detector"
    det = model.detector()
    assert det.window_size == (48, 48)                   # faces are square: 6x6 cells + margin
    with pytest.raises(ValueError, match="finds boxes"):
        model.predict_proba([np.zeros((48, 48), np.uint8)])


def test_eval_reaches_ap50_on_test_photos(trained, capsys, tmp_path):
    test = dataset_path("dlib-faces", "testing.xml")
    assert main(["eval", str(trained), "--data", str(test), "--json",
                 "--out", str(tmp_path)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["n_ground_truth"] == 25 and line["n_images"] == 5
    assert line["ap50"] >= 0.95                           # the bar (dlib: 1.0)
    assert 0 < line["ap"] <= line["ap50"]
    assert (tmp_path / "pr_curve.png").stat().st_size > 0


def test_detect_command(trained, capsys, tmp_path):
    photo = dataset_path("dlib-faces", "2008_002470.jpg")
    flat = tmp_path / "flat.png"
    from cvcore.io.images import imwrite
    imwrite(flat, np.full((120, 160), 90, np.uint8))
    assert main(["detect", str(photo), str(flat), "--weights", str(trained),
                 "--out", str(tmp_path / "pics"), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(rows[0]["boxes"]) >= 4 and all(len(b) == 5 for b in rows[0]["boxes"])
    assert rows[1]["boxes"] == []                         # nothing found: empty, not an error
    assert (tmp_path / "pics" / "2008_002470-detections.png").exists()


def test_detector_commands_errors(trained, tmp_path, capsys):
    empty = tmp_path / "empty.xml"
    empty.write_text("")
    assert main(["train", "--model", "hog-detector", "--data", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["eval", str(trained)]) == 2
    assert "annotated photos" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "none.jpg"), "--weights", str(trained)]) == 2
    assert "none.jpg" in capsys.readouterr().err
