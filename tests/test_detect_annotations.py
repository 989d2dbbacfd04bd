"""Annotation readers: VOC XML, COCO JSON, dlib imglab XML, CSV; and their errors."""
import json

import numpy as np
import pytest
from PIL import Image

from cvcore.detect import read_annotations, read_coco, read_csv, read_imglab, read_voc
from tests.conftest import dataset_path


@pytest.fixture
def photo(tmp_path):
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "a.jpg")
    return tmp_path / "a.jpg"


def test_imglab_dlib_faces():
    train = read_annotations(dataset_path("dlib-faces", "training.xml"))
    test = read_annotations(dataset_path("dlib-faces", "testing.xml"))
    assert len(train) == 4 and sum(len(a.boxes) for a in train) == 18
    assert len(test) == 5 and sum(len(a.boxes) for a in test) == 25
    first = train[0]
    assert first.path.name == "2007_007763.jpg" and first.size == (375, 500)
    # <box top='90' left='194' width='37' height='37'/>
    np.testing.assert_array_equal(first.boxes[0], [194, 90, 231, 127])
    assert first.labels[0] == "object" and not first.ignore.any()


def test_voc(tmp_path, photo):
    (tmp_path / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>60</width><height>40</height>"
        "</size><object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin>"
        "<ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object></annotation>")
    (ann,) = read_voc(tmp_path / "a.xml")
    np.testing.assert_array_equal(ann.boxes, [[0, 1, 10, 20]])     # 1-based inclusive
    assert ann.labels == ["cat"] and ann.ignore.tolist() == [True] and ann.size == (40, 60)
    assert read_annotations(tmp_path)[0].path == photo                # a folder of VOC files


def test_coco(tmp_path, photo):
    data = {"images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [5, 6, 10, 4],
                             "iscrowd": 0}],
            "categories": [{"id": 3, "name": "dog"}]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    (ann,) = read_annotations(tmp_path / "c.json")
    np.testing.assert_array_equal(ann.boxes, [[5, 6, 15, 10]])
    assert ann.labels == ["dog"]


def test_csv(tmp_path, photo):
    (tmp_path / "b.csv").write_text("path,xmin,ymin,xmax,ymax,label\n"
                                    "a.jpg,1,2,30,20,face\na.jpg,5,5,9,9,face\n")
    (ann,) = read_csv(tmp_path / "b.csv")
    np.testing.assert_array_equal(ann.boxes, [[1, 2, 30, 20], [5, 5, 9, 9]])
    assert ann.labels == ["face", "face"] and ann.size == (40, 60)


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("path,xmin,ymin,xmax,ymax,label\n", "no annotated images"),
    ("a.jpg,10,2,5,20,face\n", "empty or inverted"),
    ("a.jpg,1,2,70,20,face\n", "outside the 60x40"),
    ("b.jpg,1,2,7,20,face\n", "b.jpg does not exist"),
    ("a.jpg,1,2,x,20,face\n", "not numbers"),
])
def test_csv_errors(tmp_path, photo, content, message):
    (tmp_path / "b.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_csv(tmp_path / "b.csv")


def test_reader_errors(tmp_path, photo):
    with pytest.raises(ValueError, match="does not exist"):
        read_annotations(tmp_path / "none.xml")
    (tmp_path / "bad.xml").write_text("<dataset><images><image file='a.jpg'>")
    with pytest.raises(ValueError, match="not valid XML"):
        read_imglab(tmp_path / "bad.xml")
    (tmp_path / "e.xml").write_text("<dataset><images></images></dataset>")
    with pytest.raises(ValueError, match="no annotated images"):
        read_annotations(tmp_path / "e.xml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ValueError, match="needs 'images' and 'annotations'"):
        read_coco(tmp_path / "c.json")
    with pytest.raises(ValueError, match="format"):
        read_annotations(photo)
