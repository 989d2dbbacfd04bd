"""Tests of cvcore.io.images: imread / imwrite / to_float / to_uint8."""
import os
import struct
import tempfile
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import cvcore
from cvcore.io.images import imread, imwrite, to_float, to_uint8
from tests.conftest import TEST_IMAGES, dataset_path

PIL = pytest.importorskip("PIL")  # a hard dependency; the import only documents it
from PIL import Image  # noqa: E402


# ----------------------------------------------------------------------------- to_float / to_uint8
def test_to_float_hand_values():
    np.testing.assert_array_equal(to_float(np.array([0, 51, 255], np.uint8)),
                                  np.array([0.0, 0.2, 1.0], np.float32))
    np.testing.assert_array_equal(to_float(np.array([0, 65535], np.uint16)), [0.0, 1.0])
    np.testing.assert_array_equal(to_float(np.array([True, False])), [1.0, 0.0])
    assert to_float(np.array([0.25, 2.0])).dtype == np.float32
    np.testing.assert_array_equal(to_float(np.array([0.25, 2.0])), [0.25, 2.0])  # not rescaled


def test_to_uint8_rounds_and_clips():
    x = np.array([-0.5, 0.0, 0.2, 0.5, 1 / 255 * 0.49, 1 / 255 * 0.51, 1.0, 1.7])
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 51, 128, 0, 1, 255, 255])
    # uint16 -> uint8 is v / 257 rounded: 128 / 257 = 0.498 -> 0, 129 / 257 = 0.502 -> 1
    np.testing.assert_array_equal(to_uint8(np.array([0, 128, 129, 257, 65535], np.uint16)),
                                  [0, 0, 1, 1, 255])
    np.testing.assert_array_equal(to_uint8(np.array([True, False])), [255, 0])


def test_uint8_float_roundtrip_every_level():
    levels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8(to_float(levels)), levels)
    levels16 = np.arange(0, 65536, 257, dtype=np.uint16)
    np.testing.assert_array_equal(to_uint8(levels16), np.arange(256))


def test_to_uint8_agrees_with_skimage_on_floats():
    skimage_util = pytest.importorskip("skimage.util")
    x = np.random.default_rng(0).random((40, 30))
    np.testing.assert_array_equal(to_uint8(x), skimage_util.img_as_ubyte(x))


@pytest.mark.parametrize("fn", [to_float, to_uint8])
def test_conversions_reject_bad_input(fn):
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="infinity"):
        fn(np.array([0.1, np.inf]))
    with pytest.raises(ValueError, match="empty"):
        fn(np.zeros((0, 3), np.uint8))
    with pytest.raises(TypeError, match="int32"):
        fn(np.zeros((2, 2), np.int32))
    with pytest.raises(TypeError):
        fn(np.array(["a"]))


# ----------------------------------------------------------------------------- imread / imwrite
def _pattern(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return rng.integers(0, top + 1, size=shape).astype(dtype)


@pytest.mark.parametrize("ext", ["png", "tif", "bmp", "pgm", "pnm"])
def test_roundtrip_uint8_gray_lossless(tmp_path, ext):
    x = _pattern((13, 17), np.uint8)
    imwrite(tmp_path / f"a.{ext}", x)
    y = imread(tmp_path / f"a.{ext}")
    assert y.dtype == np.uint8 and y.shape == x.shape
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("ext", ["png", "tif", "bmp", "ppm"])
def test_roundtrip_uint8_rgb_lossless(tmp_path, ext):
    x = _pattern((9, 11, 3), np.uint8, seed=1)
    imwrite(tmp_path / f"a.{ext}", x)
    np.testing.assert_array_equal(imread(tmp_path / f"a.{ext}"), x)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_roundtrip_alpha(tmp_path, ext):
    for channels in (2, 4):
        x = _pattern((5, 6, channels), np.uint8, seed=channels)
        imwrite(tmp_path / f"a.{ext}", x)
        np.testing.assert_array_equal(imread(tmp_path / f"a.{ext}"), x)


@pytest.mark.parametrize("ext", ["png", "tif", "pgm"])
def test_roundtrip_uint16_gray(tmp_path, ext):
    x = _pattern((21, 8), np.uint16, seed=2)
    x[0, 0], x[0, 1] = 0, 65535
    imwrite(tmp_path / f"a.{ext}", x)
    y = imread(tmp_path / f"a.{ext}")
    assert y.dtype == np.uint16
    np.testing.assert_array_equal(y, x)


def test_jpeg_roundtrip_is_close(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64]
    x = (128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 7.0)).astype(np.uint8)
    imwrite(tmp_path / "a.jpg", x)
    y = imread(tmp_path / "a.jpg")
    assert y.shape == x.shape and y.dtype == np.uint8
    assert np.abs(y.astype(int) - x).mean() < 2.0


def test_float_and_bool_are_written_as_8_bit(tmp_path):
    x = np.array([[0.0, 0.5, 1.0], [0.2, 0.4, 0.6]], np.float32)
    imwrite(tmp_path / "f.png", x)
    np.testing.assert_array_equal(imread(tmp_path / "f.png"), to_uint8(x))
    imwrite(tmp_path / "b.png", np.array([[True, False]]))
    np.testing.assert_array_equal(imread(tmp_path / "b.png"), [[255, 0]])
    imwrite(tmp_path / "c.png", x[:, :, None])  # (H, W, 1) is written as grey
    assert imread(tmp_path / "c.png").shape == (2, 3)


def test_modes_gray_and_rgb(tmp_path):
    rgb = _pattern((4, 5, 3), np.uint8, seed=3)
    imwrite(tmp_path / "c.png", rgb)
    gray = imread(tmp_path / "c.png", mode="gray")
    expected = np.asarray(Image.fromarray(rgb).convert("L"))     # BT.601 luma, Pillow's rounding
    np.testing.assert_array_equal(gray, expected)
    # hand check of one pixel: (299 R + 587 G + 114 B) / 1000
    r, g, b = rgb[0, 0].astype(float)
    assert abs(int(gray[0, 0]) - (0.299 * r + 0.587 * g + 0.114 * b)) <= 0.5 + 1e-9
    g2 = _pattern((4, 5), np.uint8, seed=4)
    imwrite(tmp_path / "g.png", g2)
    np.testing.assert_array_equal(imread(tmp_path / "g.png", mode="rgb"),
                                  np.stack([g2] * 3, axis=-1))
    rgba = _pattern((4, 5, 4), np.uint8, seed=5)
    imwrite(tmp_path / "a.png", rgba)
    np.testing.assert_array_equal(imread(tmp_path / "a.png", mode="rgb"), rgba[:, :, :3])
    g16 = _pattern((3, 3), np.uint16, seed=6)
    imwrite(tmp_path / "g16.png", g16)
    assert imread(tmp_path / "g16.png", mode="gray").dtype == np.uint16
    assert imread(tmp_path / "g16.png", mode="rgb").shape == (3, 3, 3)
    with pytest.raises(ValueError, match="mode"):
        imread(tmp_path / "g.png", mode="grey")


def test_palette_and_bilevel_images(tmp_path):
    im = Image.fromarray(_pattern((6, 7, 3), np.uint8, seed=7)).convert("P")
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(imread(tmp_path / "p.png"), np.asarray(im.convert("RGB")))
    bits = Image.fromarray(np.array([[1, 0, 1]], bool))
    bits.save(tmp_path / "b.pbm")
    np.testing.assert_array_equal(imread(tmp_path / "b.pbm"), [[255, 0, 255]])


# Orientation tag value -> what a viewer does to the stored pixels (EXIF 2.3, tag 0x0112)
EXIF_ORIENTATION = 0x0112


@pytest.mark.parametrize("orientation, expected", [
    (1, lambda a: a),
    (2, lambda a: a[:, ::-1]),                 # mirrored horizontally
    (3, lambda a: a[::-1, ::-1]),              # rotated 180
    (6, lambda a: np.rot90(a, k=-1)),          # rotate 90 clockwise to display
    (8, lambda a: np.rot90(a, k=1)),           # rotate 90 counter-clockwise to display
])
def test_exif_orientation_applied(tmp_path, orientation, expected):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(a).save(tmp_path / "o.png", exif=exif)
    np.testing.assert_array_equal(imread(tmp_path / "o.png"), expected(a))


def test_exif_orientation_jpeg_swaps_shape(tmp_path):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(np.zeros((10, 30, 3), np.uint8)).save(tmp_path / "o.jpg", exif=exif)
    assert imread(tmp_path / "o.jpg").shape == (30, 10, 3)


@pytest.mark.parametrize("name", TEST_IMAGES)
def test_shared_images_agree_with_pillow(name):
    path = dataset_path("test-images", name)
    with Image.open(path) as im:
        expected = np.asarray(im)
    got = imread(path)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(imread(str(path), mode="gray"), load_gray_u8(path))


def load_gray_u8(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


@pytest.mark.parametrize("name", ["box.pgm", "scene.pgm", "roofs1.jpg", "spots.jpg"])
def test_shared_images_agree_with_opencv(name):
    cv2 = pytest.importorskip("cv2")
    path = dataset_path("test-images", name)
    ref = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if ref.ndim == 3:
        ref = ref[:, :, ::-1]                   # OpenCV is BGR
    got = imread(path)
    # both decode with libjpeg(-turbo); allow rounding differences between IDCT builds
    assert got.shape == ref.shape
    assert np.abs(got.astype(int) - ref).max() <= 2


def test_uint16_png_written_by_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    x = _pattern((7, 9), np.uint16, seed=8)
    cv2.imwrite(str(tmp_path / "cv.png"), x)
    y = imread(tmp_path / "cv.png")
    assert y.dtype == np.uint16
    np.testing.assert_array_equal(y, x)
    imwrite(tmp_path / "ours.png", x)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "ours.png"), cv2.IMREAD_UNCHANGED), x)


# ----------------------------------------------------------------------------- bad files
def _png_bytes(width, height, idat=b""):
    """A PNG whose header claims width x height (8-bit grey) but holds little or no data."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        imread(tmp_path / "nope.png")
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        imread(tmp_path)


def test_truncated_files(tmp_path):
    x = _pattern((40, 50, 3), np.uint8, seed=9)
    for ext in ("png", "jpg", "tif", "ppm", "bmp"):
        imwrite(tmp_path / f"full.{ext}", x)
        data = (tmp_path / f"full.{ext}").read_bytes()
        cut = tmp_path / f"cut.{ext}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=f"cut.{ext}") as info:
            imread(cut)
        assert "truncated" in str(info.value) or "corrupt" in str(info.value)


def test_corrupt_and_empty_files(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(os.urandom(500))
    with pytest.raises(ValueError, match="junk.png"):
        imread(junk)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.jpg"):
        imread(empty)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    with pytest.raises(ValueError, match="notes.jpg"):
        imread(text)
    # a valid PNG signature and header followed by garbage compressed data
    bad = tmp_path / "bad.png"
    bad.write_bytes(_png_bytes(8, 8, idat=b"not zlib data at all"))
    with pytest.raises(ValueError, match="bad.png"):
        imread(bad)


def test_file_not_what_extension_claims(tmp_path):
    imwrite(tmp_path / "real.jpg", _pattern((8, 8, 3), np.uint8))
    fake = tmp_path / "fake.png"
    fake.write_bytes((tmp_path / "real.jpg").read_bytes())
    with pytest.raises(ValueError, match="extension says PNG but the file is JPEG"):
        imread(fake)
    # an unknown extension: the content decides
    odd = tmp_path / "picture.data"
    odd.write_bytes((tmp_path / "real.jpg").read_bytes())
    assert imread(odd).shape == (8, 8, 3)


def test_unsupported_format(tmp_path):
    Image.fromarray(_pattern((8, 8), np.uint8)).save(tmp_path / "a.gif")
    with pytest.raises(ValueError, match="a.gif"):
        imread(tmp_path / "a.gif")


def test_decompression_bomb(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    # above twice the limit Pillow raises DecompressionBombError at open
    side = int((2 * limit) ** 0.5) + 10
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_bytes(side, side))
    with pytest.raises(ValueError, match="bomb.png.*decompression bomb"):
        imread(bomb)
    # between the limit and twice it Pillow only warns; cvcore refuses it as well
    side = int((1.5 * limit) ** 0.5)
    warn = tmp_path / "warn.png"
    warn.write_bytes(_png_bytes(side, side))
    with pytest.raises(ValueError, match="decompression bomb"):
        imread(warn)


def test_imwrite_rejects_bad_input(tmp_path):
    g = _pattern((4, 4), np.uint8)
    with pytest.raises(ValueError, match="extension"):
        imwrite(tmp_path / "a.xyz", g)
    with pytest.raises(ValueError, match="extension"):
        imwrite(tmp_path / "noext", g)
    with pytest.raises(TypeError, match="int32"):
        imwrite(tmp_path / "a.png", g.astype(np.int32))
    with pytest.raises(ValueError, match="0..1"):
        imwrite(tmp_path / "a.png", np.full((2, 2), 1.5))
    with pytest.raises(ValueError, match="NaN"):
        imwrite(tmp_path / "a.png", np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="channels"):
        imwrite(tmp_path / "a.png", np.zeros((3, 3, 5), np.uint8))
    with pytest.raises(ValueError, match="dimensions"):
        imwrite(tmp_path / "a.png", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="empty"):
        imwrite(tmp_path / "a.png", np.zeros((0, 4), np.uint8))
    with pytest.raises(ValueError, match="cannot hold"):
        imwrite(tmp_path / "a.png", np.zeros((3, 3, 3), np.uint16))
    with pytest.raises(ValueError, match="cannot hold"):
        imwrite(tmp_path / "a.jpg", np.zeros((3, 3), np.uint16))
    with pytest.raises(ValueError, match="cannot hold"):
        imwrite(tmp_path / "a.jpg", np.zeros((3, 3, 4), np.uint8))
    with pytest.raises(ValueError, match="cannot hold"):
        imwrite(tmp_path / "a.pgm", np.zeros((3, 3, 3), np.uint8))
    imwrite(tmp_path / "new" / "a.png", g)                    # parent directories are created
    np.testing.assert_array_equal(imread(tmp_path / "new" / "a.png"), g)
    (tmp_path / "d.png").mkdir()
    with pytest.raises(IsADirectoryError):
        imwrite(tmp_path / "d.png", g)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_imwrite_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    old = _pattern((5, 5), np.uint8, seed=10)
    imwrite(target, old)

    def broken_save(self, fp, format=None, **kw):
        fp.write(b"\x89PNG half a file")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        imwrite(target, _pattern((5, 5), np.uint8, seed=11))
    monkeypatch.undo()
    np.testing.assert_array_equal(imread(target), old)          # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]   # no temp file left


def test_top_level_exports():
    assert cvcore.imread is imread and cvcore.imwrite is imwrite
    assert cvcore.io.to_float is to_float and cvcore.io.to_uint8 is to_uint8


# ----------------------------------------------------------------------------- properties
_shapes = st.one_of(
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([2, 3, 4])),
)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), shape=_shapes, ext=st.sampled_from(["png", "tif"]))
def test_property_lossless_roundtrip(data, shape, ext):
    dtype = np.uint16 if len(shape) == 2 and data.draw(st.booleans()) else np.uint8
    x = data.draw(hnp.arrays(dtype, shape))
    if data.draw(st.booleans()):                # a strided (non-contiguous) view
        x = np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)[::2, ::2]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"x.{ext}")
        imwrite(path, x)
        np.testing.assert_array_equal(imread(path), x)


@settings(max_examples=40, deadline=None)
@given(x=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
                    elements=st.floats(-2, 3, allow_nan=False)))
def test_property_to_uint8_is_nearest_level(x):
    y = to_uint8(x)
    assert y.dtype == np.uint8
    # the chosen level is the nearest of the 256 to the clipped value
    err = np.abs(y / 255.0 - np.clip(x, 0, 1))
    assert (err <= 0.5 / 255 + 1e-12).all()


def test_docstring_examples_run():
    import doctest

    import cvcore.io.images as module
    result = doctest.testmod(module)
    assert result.attempted >= 2 and result.failed == 0


def test_documented_defaults():
    # module notes: Pillow's decompression-bomb limit is 89,478,485 pixels by default
    assert Image.MAX_IMAGE_PIXELS == 89478485


def test_jpeg_written_at_pillow_default_quality(tmp_path):
    import io
    x = _pattern((16, 16, 3), np.uint8, seed=12)
    imwrite(tmp_path / "q.jpg", x)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="JPEG", quality=75)     # the documented quality
    np.testing.assert_array_equal(imread(tmp_path / "q.jpg"),
                                  np.asarray(Image.open(io.BytesIO(buf.getvalue()))))


def test_16_bit_rgb_png_comes_back_as_8_bit(tmp_path):
    """Documented limitation: Pillow reduces 16-bit RGB PNG files to 8 bits (the high byte)."""
    cv2 = pytest.importorskip("cv2")
    x = (np.arange(18).reshape(2, 3, 3) * 3000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), x[:, :, ::-1])          # OpenCV writes BGR
    y = imread(tmp_path / "rgb16.png")
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y, x >> 8)


# ----------------------------------------------------------------------------- imdecode
def test_imdecode_equals_imread(tmp_path):
    from cvcore.io.images import imdecode
    x = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    for ext in ("png", "jpg", "bmp"):
        imwrite(tmp_path / f"a.{ext}", x)
        data = (tmp_path / f"a.{ext}").read_bytes()
        for mode in (None, "gray", "rgb"):
            np.testing.assert_array_equal(imdecode(data, mode=mode),
                                          imread(tmp_path / f"a.{ext}", mode=mode))


def test_imdecode_refuses_what_is_not_a_good_image(tmp_path):
    from cvcore.io.images import NotAnImageError, imdecode
    imwrite(tmp_path / "a.jpg", np.zeros((64, 64), np.uint8))
    jpeg = (tmp_path / "a.jpg").read_bytes()
    with pytest.raises(NotAnImageError, match="not a PNG, JPEG"):
        imdecode(b"GIF89a not supported")
    with pytest.raises(ValueError, match="empty"):
        imdecode(b"")
    with pytest.raises(TypeError, match="bytes"):
        imdecode("a.jpg")
    # Regression: a JPEG cut inside its header made Pillow's parser raise a bare
    # OSError("Truncated File Read") from Image.open, which escaped as an OSError.
    with pytest.raises(ValueError, match="truncated or corrupt"):
        imdecode(jpeg[:200])
    with pytest.raises(ValueError, match="more than the limit of 100"):
        imdecode(jpeg, max_pixels=100)
    assert imdecode(jpeg, max_pixels=64 * 64).shape == (64, 64)


# ------------------------------------------------------------------ imdecode's plain-JPEG path
def _jpeg(array, **save):
    import io
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", **save)
    return buf.getvalue()


def _pillow_full_path(data, mode=None):
    """What imdecode gave before the plain-JPEG path: Pillow's Image.open on the data."""
    import io
    from cvcore.io.images import _decode
    return _decode(io.BytesIO(data), "image data", None, mode, None)


def _plain_jpegs():
    rng = np.random.default_rng(3)
    smooth = np.clip(np.cumsum(rng.integers(-20, 21, (37, 53, 3)), axis=1) + 128, 0,
                     255).astype(np.uint8)
    return {"baseline": _jpeg(smooth), "progressive": _jpeg(smooth, progressive=True),
            "grey": _jpeg(smooth[:, :, 0]), "subsampling 4:4:4": _jpeg(smooth, subsampling=0),
            "quality 30 (own tables)": _jpeg(smooth, quality=30),
            "restart intervals": _jpeg(smooth, restart_marker_blocks=1),
            "comment": _jpeg(smooth, comment=b"a comment segment"),
            "one pixel": _jpeg(smooth[:1, :1])}


@pytest.mark.parametrize("kind", sorted(_plain_jpegs()))
def test_imdecode_plain_jpeg_path_is_pixel_identical(kind):
    # the plain path (Image.frombytes with Pillow's JPEG decoder) against Image.open, in every
    # mode; and the path is really taken for these
    from cvcore.io.images import _plain_jpeg, imdecode
    data = _plain_jpegs()[kind]
    frame = _plain_jpeg(data, None)
    assert frame is not None and frame[1:] == Image.open(__import__("io").BytesIO(data)).size
    for mode in (None, "gray", "rgb"):
        got, want = imdecode(data, mode), _pillow_full_path(data, mode)
        assert got.dtype == want.dtype == np.uint8 and got.flags.writeable
        np.testing.assert_array_equal(got, want)


def _imdecode_matches_imread(files):
    # imdecode on the bytes and imread on the file (both take the plain path where it applies)
    # against Pillow's Image.open on the file
    from cvcore.io.images import _decode, imdecode
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        for mode in (None, "rgb"):
            want = _decode(str(f), str(f), None, mode, None)
            np.testing.assert_array_equal(imdecode(data, mode), want)
            np.testing.assert_array_equal(imread(f, mode), want)


def test_imdecode_matches_imread_on_the_demo_photo():
    _imdecode_matches_imread([cvcore.__path__[0] + "/data/roofs1.jpg"])


def test_imdecode_matches_imread_on_camera_jpegs():
    # real camera JPEGs, with and without EXIF (the plain path takes about half of them)
    from cvcore.io.images import _plain_jpeg
    files = sorted(dataset_path("hymenoptera").rglob("*.jpg"))[:16]
    assert any(_plain_jpeg(f.read_bytes(), None) for f in files)
    _imdecode_matches_imread(files)


def test_plain_jpeg_leaves_everything_else_to_pillow(tmp_path):
    from cvcore.io.images import _plain_jpeg
    a = np.zeros((10, 30, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6                                         # EXIF orientation: rotate
    cmyk = __import__("io").BytesIO()
    Image.new("CMYK", (8, 8)).save(cmyk, format="JPEG")
    png = __import__("io").BytesIO()
    Image.fromarray(a).save(png, format="PNG")
    data = _jpeg(a)
    assert _plain_jpeg(_jpeg(a, exif=exif), None) is None      # APP1: may rotate
    assert _plain_jpeg(_jpeg(a, icc_profile=b"\0" * 200), None) is None   # APP2
    assert _plain_jpeg(cmyk.getvalue(), None) is None          # 4 components (Adobe)
    assert _plain_jpeg(png.getvalue(), None) is None
    assert _plain_jpeg(data[:len(data) // 4], None) is None     # header cut short
    assert _plain_jpeg(data, 299) is None and _plain_jpeg(data, 300) == ("RGB", 30, 10)
    from PIL import ImageFile
    try:                          # the user asked Pillow to complete cut files: its own path
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        assert _plain_jpeg(data, None) is None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    # and through imdecode and imread the rotation is applied
    (tmp_path / "o.jpg").write_bytes(_jpeg(a, exif=exif))
    from cvcore.io.images import imdecode
    assert imdecode(_jpeg(a, exif=exif)).shape == (30, 10, 3)
    assert imread(tmp_path / "o.jpg").shape == (30, 10, 3)
    # a plain JPEG named .png is still refused by imread for its extension
    (tmp_path / "j.png").write_bytes(data)
    with pytest.raises(ValueError, match="extension says PNG"):
        imread(tmp_path / "j.png")


def test_imdecode_plain_path_fails_as_pillow_does_on_damaged_jpegs():
    # random byte changes and cuts: the plain path raises where Pillow's full path raises
    # (ValueError "truncated or corrupt ..."), and otherwise gives the same pixels
    from cvcore.io.images import imdecode
    rng = np.random.default_rng(0)
    datas = list(_plain_jpegs().values())
    outcomes = set()
    for k in range(150):
        d = bytearray(datas[k % len(datas)])
        for _ in range(int(rng.integers(1, 4))):
            d[int(rng.integers(2, len(d)))] = int(rng.integers(0, 256))
        if k % 3 == 0:
            d = d[:int(rng.integers(4, len(d)))]
        d = bytes(d)
        results = []
        for decode in (imdecode, _pillow_full_path):
            try:
                results.append(decode(d))
            except ValueError as exc:
                assert "truncated or corrupt" in str(exc) or "not a PNG" in str(exc), exc
                results.append(None)
        assert (results[0] is None) == (results[1] is None)
        if results[0] is not None:
            np.testing.assert_array_equal(results[0], results[1])
        outcomes.add(results[0] is None)
    assert outcomes == {True, False}              # both kinds of outcome were exercised
