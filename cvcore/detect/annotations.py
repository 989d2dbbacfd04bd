"""Box annotations: Pascal VOC XML, COCO JSON, dlib's imglab XML and a plain CSV.

Every reader returns a list of :class:`ImageAnnotation` (one per image: its path, its size when
known, and ``(x1, y1, x2, y2)`` boxes in continuous pixel coordinates, see
:mod:`cvcore.detect.boxes`) and checks what it reads: a missing or empty file, an image file
that does not exist, an empty or inverted box, or a box reaching outside its image is a
``ValueError`` naming the file, the image and the box.

Coordinate conventions of the formats, converted here
    * VOC: ``xmin..xmax`` are inclusive, 1-based pixel indices -> ``(xmin - 1, ymin - 1, xmax,
      ymax)`` (so a VOC box's width ``xmax - xmin + 1`` is kept; Everingham et al. 2010).
    * COCO: ``[x, y, width, height]``, continuous -> ``(x, y, x + width, y + height)``.
    * imglab (dlib): ``top left width height`` of inclusive pixels -> ``(left, top, left + width,
      top + height)``; boxes with ``ignore='1'`` are kept with ``ignore`` set.
    * CSV: ``path, xmin, ymin, xmax, ymax, label`` taken as continuous coordinates; an optional
      header line; relative paths are relative to the CSV file.
"""
from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["ImageAnnotation", "read_annotations", "read_voc", "read_coco", "read_imglab",
           "read_csv", "FORMATS"]

#: Tolerance (pixels) for a box edge beyond its image: annotation tools round to whole pixels.
OUTSIDE_TOLERANCE = 0.5


@dataclass
class ImageAnnotation:
    """The annotated boxes of one image.

    Attributes
    ----------
    path : Path
    boxes : (K, 4) float64, ``(x1, y1, x2, y2)``
    labels : list of str, one per box
    ignore : (K,) bool
        Boxes to be neither missed nor found (VOC *difficult*, COCO *iscrowd*, imglab *ignore*).
    size : (H, W) or None
    """
    path: Path
    boxes: np.ndarray
    labels: list
    ignore: np.ndarray = field(default=None)
    size: tuple | None = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if self.ignore is None:
            self.ignore = np.zeros(len(self.boxes), bool)
        self.ignore = np.asarray(self.ignore, dtype=bool).reshape(-1)


def _image_size(path: Path):
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except OSError as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from None


def _finish(source, items, check_files):
    """Check every image and box; return the annotations."""
    if not items:
        raise ValueError(f"{source}: no annotated images in the file")
    for ann in items:
        if check_files:
            if not ann.path.is_file():
                raise ValueError(f"{source}: image file {ann.path} does not exist")
            if ann.size is None:
                ann.size = _image_size(ann.path)
        for k, (box, label) in enumerate(zip(ann.boxes, ann.labels)):
            where = f"{source}: image {ann.path.name}, box {k} {box.tolist()} ({label})"
            if not np.isfinite(box).all():
                raise ValueError(f"{where} is not finite")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"{where} is empty or inverted (x2 <= x1 or y2 <= y1)")
            if ann.size is not None:
                H, W = ann.size
                tol = OUTSIDE_TOLERANCE
                if box[0] < -tol or box[1] < -tol or box[2] > W + tol or box[3] > H + tol:
                    raise ValueError(f"{where} lies outside the {W}x{H} (width x height) image")
    return items


def _open_text(path):
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"annotation file {path} does not exist")
    text = path.read_bytes()
    if not text.strip():
        raise ValueError(f"annotation file {path} is empty")
    return path, text


def _xml_root(path, text):
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not valid XML ({exc})") from None


def _number(node, tag, source):
    value = node.get(tag) if node.get(tag) is not None else node.findtext(tag)
    if value is None:
        raise ValueError(f"{source}: <{node.tag}> has no {tag}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{source}: {tag}={value!r} is not a number") from None


def read_imglab(path, check_files: bool = True, label: str = "object"):
    """dlib's imglab XML (``<images><image file=...><box top left width height/>``).

    Box labels come from a ``<label>`` child when present, else ``label``. ``width``/``height``
    attributes of ``<image>`` give its size; otherwise it is read from the image file.
    """
    path, text = _open_text(path)
    root = _xml_root(path, text)
    items = []
    for image in root.iter("image"):
        file = image.get("file")
        if not file:
            raise ValueError(f"{path}: an <image> has no file attribute")
        boxes, labels, ignore = [], [], []
        for box in image.findall("box"):
            top, left = _number(box, "top", path), _number(box, "left", path)
            w, h = _number(box, "width", path), _number(box, "height", path)
            boxes.append([left, top, left + w, top + h])
            labels.append((box.findtext("label") or label).strip())
            ignore.append(box.get("ignore", "0") not in ("0", "false", ""))
        size = None
        if image.get("width") and image.get("height"):
            size = (int(_number(image, "height", path)), int(_number(image, "width", path)))
        items.append(ImageAnnotation(path.parent / file, np.array(boxes).reshape(-1, 4),
                                     labels, np.array(ignore, bool), size))
    return _finish(path, items, check_files)


def read_voc(paths, image_dir=None, check_files: bool = True):
    """Pascal VOC XML files (one per image), or a folder of them.

    ``image_dir``: where the images are (default: beside the XML, or ``../JPEGImages`` as in
    the VOC layout).
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    files = []
    for p in paths:
        files.extend(sorted(p.glob("*.xml")) if p.is_dir() else [p])
    if not files:
        raise ValueError(f"no VOC XML files in {', '.join(map(str, paths))}")
    items = []
    for f in files:
        f, text = _open_text(f)
        root = _xml_root(f, text)
        if root.tag != "annotation":
            raise ValueError(f"{f}: not a VOC annotation (root <{root.tag}>)")
        name = root.findtext("filename")
        if not name:
            raise ValueError(f"{f}: no <filename>")
        size = root.find("size")
        hw = None
        if size is not None and size.findtext("width") and size.findtext("height"):
            hw = (int(_number(size, "height", f)), int(_number(size, "width", f)))
        folder = Path(image_dir) if image_dir else f.parent
        img = folder / name
        if image_dir is None and not img.exists() and (f.parent.parent / "JPEGImages").is_dir():
            img = f.parent.parent / "JPEGImages" / name
        boxes, labels, ignore = [], [], []
        for obj in root.findall("object"):
            bb = obj.find("bndbox")
            if bb is None:
                raise ValueError(f"{f}: an <object> has no <bndbox>")
            x1, y1 = _number(bb, "xmin", f), _number(bb, "ymin", f)
            x2, y2 = _number(bb, "xmax", f), _number(bb, "ymax", f)
            boxes.append([x1 - 1, y1 - 1, x2, y2])
            labels.append((obj.findtext("name") or "object").strip())
            ignore.append((obj.findtext("difficult") or "0").strip() == "1")
        items.append(ImageAnnotation(img, np.array(boxes).reshape(-1, 4), labels,
                                     np.array(ignore, bool), hw))
    return _finish(paths[0], items, check_files)


def read_coco(path, image_dir=None, check_files: bool = True):
    """A COCO JSON file (``images``, ``annotations`` with ``bbox = [x, y, w, h]``,
    ``categories``). Images without annotations are kept (they hold only negatives)."""
    path, text = _open_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"{path}: a COCO file needs 'images' and 'annotations'")
    names = {c["id"]: c.get("name", str(c["id"])) for c in data.get("categories", [])}
    folder = Path(image_dir) if image_dir else path.parent
    by_id = {}
    for im in data["images"]:
        if "id" not in im or "file_name" not in im:
            raise ValueError(f"{path}: an image entry needs 'id' and 'file_name'")
        hw = (int(im["height"]), int(im["width"])) if "height" in im and "width" in im else None
        by_id[im["id"]] = ([], [], [], folder / im["file_name"], hw)
    for a in data["annotations"]:
        if a.get("image_id") not in by_id:
            raise ValueError(f"{path}: annotation {a.get('id')} refers to unknown image "
                             f"{a.get('image_id')}")
        bbox = a.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(f"{path}: annotation {a.get('id')} has no [x, y, w, h] bbox")
        x, y, w, h = (float(v) for v in bbox)
        boxes, labels, ignore, _, _ = by_id[a["image_id"]]
        boxes.append([x, y, x + w, y + h])
        labels.append(str(names.get(a.get("category_id"), a.get("category_id", "object"))))
        ignore.append(bool(a.get("iscrowd", 0)))
    items = [ImageAnnotation(p, np.array(b).reshape(-1, 4), l, np.array(ig, bool), hw)
             for b, l, ig, p, hw in by_id.values()]
    return _finish(path, items, check_files)


def read_csv(path, check_files: bool = True):
    """A CSV of ``path, xmin, ymin, xmax, ymax, label`` rows (one box per row; a row with only
    a path and empty fields is an image without boxes). An optional first line of column names
    is skipped."""
    path, text = _open_text(path)
    rows = list(csv.reader(text.decode("utf-8").splitlines()))
    items = {}
    for n, row in enumerate(rows, start=1):
        row = [c.strip() for c in row]
        if not row or not any(row):
            continue
        if n == 1 and len(row) >= 5:
            try:
                float(row[1])
            except ValueError:
                continue                                # header line
        if len(row) not in (5, 6) and not (len(row) >= 1 and not any(row[1:])):
            raise ValueError(f"{path}, line {n}: expected path, xmin, ymin, xmax, ymax, label; "
                             f"got {len(row)} fields")
        img = Path(row[0]) if Path(row[0]).is_absolute() else path.parent / row[0]
        entry = items.setdefault(str(img), ImageAnnotation(img, np.zeros((0, 4)), []))
        if not any(row[1:]):
            continue
        try:
            box = [float(v) for v in row[1:5]]
        except ValueError:
            raise ValueError(f"{path}, line {n}: coordinates {row[1:5]} are not numbers") from None
        entry.boxes = np.vstack([entry.boxes, box])
        entry.labels.append(row[5] if len(row) > 5 and row[5] else "object")
        entry.ignore = np.zeros(len(entry.boxes), bool)
    return _finish(path, list(items.values()), check_files)


FORMATS = {"voc": read_voc, "coco": read_coco, "imglab": read_imglab, "csv": read_csv}


def read_annotations(path, format: str | None = None, check_files: bool = True):
    """Read annotations, guessing the format from the file when ``format`` is None.

    ``.json`` -> COCO; ``.csv`` -> CSV; a folder -> VOC XML files; ``.xml`` -> imglab when its
    root is ``<dataset>``, else VOC.
    """
    p = Path(path)
    if format is None:
        if p.is_dir():
            format = "voc"
        elif not p.exists():
            raise ValueError(f"annotation file {p} does not exist")
        elif p.suffix.lower() == ".json":
            format = "coco"
        elif p.suffix.lower() == ".csv":
            format = "csv"
        elif p.suffix.lower() == ".xml":
            _, text = _open_text(p)
            format = "imglab" if _xml_root(p, text).tag == "dataset" else "voc"
        else:
            raise ValueError(f"cannot tell the annotation format of {p}; pass format= one of "
                             f"{', '.join(FORMATS)}")
    if format not in FORMATS:
        raise ValueError(f"unknown annotation format {format!r}; choose one of "
                         f"{', '.join(FORMATS)}")
    return FORMATS[format](p, check_files=check_files)
