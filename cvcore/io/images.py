"""Reading and writing image files (Pillow) and converting between integer and float images.

Conventions
-----------
* Arrays are ``(H, W)`` for grey images and ``(H, W, C)`` for colour, rows first, channels last,
  RGB order (not OpenCV's BGR).
* ``imread`` returns the file's own sample type: ``uint8`` for 8-bit files, ``uint16`` for 16-bit
  grey PNG, TIFF and PGM files, ``float32`` for 32-bit float TIFF files.
* Float images hold intensities in ``0..1``. :func:`to_float` maps ``uint8`` 0..255 and ``uint16``
  0..65535 onto that range; :func:`to_uint8` maps it back, rounding to the nearest level.

Supported formats: PNG, JPEG, PGM/PPM/PBM/PNM (Netpbm), TIFF, BMP. Anything else, a file that is
not what its extension claims, a truncated or corrupt file and a decompression bomb (an image whose
header claims more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS``, 89,478,485 by default) raise a
``ValueError`` that names the file.
"""
from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np

from cvcore._validate import check_array, check_choice, check_finite, check_regular_file
from cvcore.io.atomic import atomic_write

__all__ = ["imread", "imdecode", "imwrite", "to_float", "to_uint8", "NotAnImageError"]

# File extension -> the Pillow format that must be inside. Pillow calls every Netpbm flavour
# "PPM"; "MPO" is the multi-picture JPEG some cameras write, readable as its first (JPEG) frame.
EXTENSION_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG",
    ".pgm": "PPM", ".ppm": "PPM", ".pbm": "PPM", ".pnm": "PPM",
    ".tif": "TIFF", ".tiff": "TIFF",
    ".bmp": "BMP",
}
READ_FORMATS = ("PNG", "JPEG", "MPO", "PPM", "TIFF", "BMP")
_SAME_FORMAT = {"MPO": "JPEG"}

# What each format can store, as written by Pillow: (dtype, channels) pairs, channels 1 = 2-D.
# Pillow writes 16-bit samples only for single-channel images; it has no 16-bit RGB writer.
WRITE_SUPPORT = {
    "PNG": {("uint8", 1), ("uint8", 2), ("uint8", 3), ("uint8", 4), ("uint16", 1)},
    "TIFF": {("uint8", 1), ("uint8", 2), ("uint8", 3), ("uint8", 4), ("uint16", 1)},
    "PPM": {("uint8", 1), ("uint8", 3), ("uint16", 1)},
    "JPEG": {("uint8", 1), ("uint8", 3)},
    "BMP": {("uint8", 1), ("uint8", 3)},   # Pillow reads a 32-bit BMP back without its alpha
}
UINT8_MAX = 255
UINT16_MAX = 65535


class NotAnImageError(ValueError):
    """The data is not an image in a supported format (a ``ValueError``; a server answers 415)."""


def _format_for(path: str, purpose: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    fmt = EXTENSION_FORMATS.get(ext)
    if fmt is None and purpose == "write":
        raise ValueError(f"{path}: cannot tell the image format from the extension {ext!r}; "
                         f"use one of {sorted(EXTENSION_FORMATS)}")
    return fmt


def _to_array(im, path: str) -> np.ndarray:
    """Pixel data of a loaded Pillow image in the file's own sample type (see module notes)."""
    mode = im.mode
    if mode == "1":
        im = im.convert("L")            # bilevel -> 0 / 255
    elif mode == "P" or mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    arr = np.asarray(im)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit files (Pillow opens 16-bit PGM as 32-bit "I")
        if arr.size and (arr.min() < 0 or arr.max() > UINT16_MAX):
            raise ValueError(f"{path}: 32-bit integer samples outside 0..65535 are not supported")
        arr = arr.astype(np.uint16)
    elif im.mode == "F":
        arr = arr.astype(np.float32)
    elif arr.dtype != np.uint8:
        raise ValueError(f"{path}: unsupported pixel mode {mode!r}")
    return np.array(arr, order="C")     # own the memory; Pillow's buffer is read-only


def _gray(arr: np.ndarray) -> np.ndarray:
    """Grey version of an array from :func:`_to_array` for ``imread(mode="gray")``."""
    if arr.ndim == 2:
        return arr
    if arr.shape[2] == 2:               # grey + alpha
        return np.ascontiguousarray(arr[:, :, 0])
    from PIL import Image
    # ITU-R BT.601 luma, L = (299 R + 587 G + 114 B) / 1000, as Pillow and OpenCV compute it
    return np.asarray(Image.fromarray(np.ascontiguousarray(arr[:, :, :3])).convert("L")).copy()


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 2:
        return np.repeat(arr[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


def imread(path, mode: str | None = None) -> np.ndarray:
    """Read an image file into an array, with its EXIF orientation applied.

    Parameters
    ----------
    path : str or os.PathLike
        A PNG, JPEG, PGM/PPM/PBM/PNM, TIFF or BMP file. The content decides the format; when the
        extension names a format, the content must be that format.
    mode : {None, "gray", "rgb"}
        ``None`` keeps the file's channels: ``(H, W)`` grey, ``(H, W, 2)`` grey + alpha,
        ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (palette images become RGB or RGBA, CMYK and YCbCr
        become RGB, bilevel images become ``uint8`` 0 / 255). ``"gray"`` returns ``(H, W)``: colour
        is converted with the ITU-R BT.601 luma weights ``(299 R + 587 G + 114 B) / 1000`` that
        Pillow and OpenCV's ``IMREAD_GRAYSCALE`` use, rounded, and alpha is dropped. (This is not
        :func:`cvcore.preprocess.rgb2gray`, which follows scikit-image's float weights.)
        ``"rgb"`` returns ``(H, W, 3)``: grey is repeated, alpha is dropped.

    Returns
    -------
    image : ndarray
        ``uint8`` for 8-bit files; ``uint16`` for 16-bit grey PNG, TIFF and PGM; ``float32`` for
        32-bit float TIFF. 16-bit RGB PNG files come back as 8-bit RGB (Pillow reduces them).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    IsADirectoryError
        ``path`` is a directory.
    ValueError
        The file is not a supported image, is not what its extension claims, is truncated or
        corrupt, or is a decompression bomb (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``).
        Truncation is detected only while Pillow's global ``ImageFile.LOAD_TRUNCATED_IMAGES``
        keeps its default ``False``.
    """
    if mode is not None:
        check_choice(mode, ("gray", "rgb"), "mode")
    path = check_regular_file(path, "image file")    # a FIFO or device would block the read
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not an image")
    return _decode(path, path, _format_for(path, "read"), mode, None)


def imdecode(data, mode: str | None = None, max_pixels: int | None = None,
             name: str = "image data") -> np.ndarray:
    """Decode an image held in memory (the bytes of a file) exactly as :func:`imread` reads it.

    Parameters
    ----------
    data : bytes, bytearray or memoryview
        The content of a PNG, JPEG, PGM/PPM/PBM/PNM, TIFF or BMP file.
    mode : {None, "gray", "rgb"}
        As in :func:`imread`.
    max_pixels : int, optional
        Refuse an image whose header claims more pixels than this (checked before the pixels are
        decoded), on top of Pillow's ``MAX_IMAGE_PIXELS``: a server's memory bound.
    name : str
        What error messages call the data (e.g. an upload's file name).

    Returns
    -------
    image : ndarray
        As :func:`imread`.

    Raises
    ------
    NotAnImageError
        The data is not a supported image format (a subclass of ``ValueError``).
    ValueError
        Truncated or corrupt data, a decompression bomb, more than ``max_pixels`` pixels, or no
        data at all.

    Notes
    -----
    A plain JPEG (see :func:`_plain_jpeg`) skips ``Image.open``'s header parsing and goes straight
    to Pillow's JPEG decoder, with the same pixels; everything else is opened as :func:`imread`
    opens a file.
    """
    import io

    if mode is not None:
        check_choice(mode, ("gray", "rgb"), "mode")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{name}: empty; no image data")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    frame = _plain_jpeg(data, max_pixels)
    if frame is not None:
        return _in_mode(_decode_plain_jpeg(data, frame, name), mode)
    return _decode(io.BytesIO(data), name, None, mode, max_pixels)


#: JPEG markers (ITU-T T.81, table B.1) that :func:`_plain_jpeg` lets pass before the scan:
#: APP0 (JFIF), DQT, DHT, DRI, COM, and the frames Pillow reads as plain 8-bit images: SOF0
#: (baseline), SOF1 (extended sequential), SOF2 (progressive). Any other marker (APP1 Exif, which
#: may rotate the image; APP2 ICC or MPF, the multi-picture format; APP14 Adobe; lossless or
#: arithmetic-coded frames ...) sends the data down Pillow's full path.
_JPEG_PLAIN_SEGMENTS = frozenset((0xE0, 0xDB, 0xC4, 0xDD, 0xFE))
_JPEG_PLAIN_FRAMES = frozenset((0xC0, 0xC1, 0xC2))
_JPEG_SOS = 0xDA
#: Pillow's image mode of a JPEG frame by its number of components (JpegImagePlugin's SOF).
_JPEG_MODES = {1: "L", 3: "RGB"}


def _plain_jpeg(data, max_pixels: int | None):
    """``(mode, width, height)`` of a JPEG that Pillow would open as a plain 8-bit grey or RGB
    image with nothing to apply after decoding (no EXIF orientation, not a multi-picture file),
    read by walking its marker segments (T.81, sec. B.1.1.4 and B.2.2: after SOI, each segment
    is FF, a marker byte and a big-endian length that counts itself); ``None`` for anything else
    (another format, other markers, a frame of another precision or component count, more
    pixels than either bomb limit, a header cut short), which then takes Pillow's full path.

    Why: for a small image Pillow's header parsing in Python (``Image.open``: the plugin probe,
    a read and a dict entry per segment) costs more than the decoding itself (~50 of ~90 us
    for a 32x32 CIFAR-10 JPEG here). The pixels are the same either way: Pillow's JPEG tile
    starts at byte 0, so its decoder (libjpeg) reads the whole file itself, with the same mode
    and raw mode (``"L"``/``"RGB"``) that :func:`_decode_plain_jpeg` gives it."""
    from PIL import Image
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8 or data[2] != 0xFF:
        return None
    i, frame = 2, None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or i + 2 + length > n:
            return None
        if marker in _JPEG_PLAIN_FRAMES:
            if frame is not None or length < 8:
                return None
            precision = data[i + 4]
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            mode = _JPEG_MODES.get(data[i + 9])
            if precision != 8 or mode is None or width == 0 or height == 0:
                return None
            frame = (mode, width, height)
        elif marker == _JPEG_SOS:
            break
        elif marker not in _JPEG_PLAIN_SEGMENTS:
            return None
        i += 2 + length
    else:
        return None                                     # no scan: cut short
    if frame is None:
        return None
    pixels = frame[1] * frame[2]
    bomb = Image.MAX_IMAGE_PIXELS
    if (bomb is not None and pixels > bomb) or (max_pixels is not None and pixels > max_pixels):
        return None                                     # the full path names the problem
    return frame


def _decode_plain_jpeg(data, frame, name: str):
    """Pixels of a JPEG that :func:`_plain_jpeg` accepted, decoded by Pillow's JPEG decoder
    (``Image.frombytes`` with the ``"jpeg"`` decoder and the arguments Pillow's JPEG plugin
    gives it); ValueError for a truncated or corrupt scan, as :func:`_decode` words it."""
    from PIL import Image
    mode, width, height = frame
    try:
        im = Image.frombytes(mode, (width, height), bytes(data), "jpeg", mode, "")
    except (OSError, ValueError) as exc:
        # Pillow: "not enough image data" (cut short), "cannot decode image data" (broken)
        raise ValueError(f"{name}: truncated or corrupt JPEG image: {exc}") from exc
    return _to_array(im, name)


def _decode(source, name: str, expected: str | None, mode: str | None,
            max_pixels: int | None) -> np.ndarray:
    """Open ``source`` (a path or a binary file object) with Pillow and return its pixels."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        # Pillow warns between MAX_IMAGE_PIXELS and twice that and raises above; both are refused
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            Image.init()                 # register every plugin (MPO is not preloaded)
            im = Image.open(source, formats=[f for f in READ_FORMATS if f in Image.OPEN])
        except UnidentifiedImageError:
            raise NotAnImageError(f"{name}: not a PNG, JPEG, PGM/PPM, TIFF or BMP image (unknown "
                                  f"or unsupported format, or a corrupt header)") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ValueError(f"{name}: refused as a possible decompression bomb: {exc}") from None
        except PermissionError:
            raise
        except (OSError, SyntaxError, EOFError, ValueError, IndexError, KeyError, TypeError,
                struct.error, zlib.error) as exc:
            # the header itself is cut short or broken (Pillow: "Truncated File Read", ...)
            raise ValueError(f"{name}: truncated or corrupt image header: {exc}") from exc
        with im:
            found = _SAME_FORMAT.get(im.format, im.format)
            if expected is not None and found != expected:
                raise ValueError(f"{name}: the extension says {expected} but the file is {found}")
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise ValueError(f"{name}: refused as a possible decompression bomb: "
                                 f"{width}x{height} = {width * height} pixels is more than the "
                                 f"limit of {max_pixels}")
            try:
                im.load()
                im = ImageOps.exif_transpose(im)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
                raise ValueError(f"{name}: refused as a possible decompression bomb: {exc}") \
                    from None
            except (OSError, SyntaxError, EOFError, ValueError, IndexError, KeyError,
                    TypeError, struct.error, zlib.error) as exc:
                # Pillow reports truncation as OSError("image file is truncated") and broken
                # chunks or headers as SyntaxError, OSError, ValueError or struct errors
                raise ValueError(f"{name}: truncated or corrupt {found} image: {exc}") from exc
            arr = _to_array(im, name)
    if arr.size == 0:
        raise ValueError(f"{name}: the image has no pixels (shape {arr.shape})")
    return _in_mode(arr, mode)


def _in_mode(arr: np.ndarray, mode: str | None) -> np.ndarray:
    """The pixels of :func:`_to_array` in ``mode`` (None, "gray" or "rgb", see :func:`imread`)."""
    if mode == "gray":
        return _gray(arr)
    if mode == "rgb":
        return _rgb(arr)
    return arr


def imwrite(path, image) -> None:
    """Write an image file atomically; the format comes from the extension.

    Parameters
    ----------
    path : str or os.PathLike
        Ends in ``.png``, ``.jpg``/``.jpeg``, ``.pgm``/``.ppm``/``.pnm``, ``.tif``/``.tiff`` or
        ``.bmp``. Missing parent directories are created.
    image : ndarray, shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4)
        ``uint8``; ``uint16`` (grey only, PNG, TIFF and PGM); ``bool`` (written as 0 / 255); or
        float with every value in ``0..1``, written as 8-bit through :func:`to_uint8` (rounded to
        the nearest of the 256 levels). What each format holds: PNG and TIFF any of the channel
        counts; PGM grey, PPM RGB, PNM either; JPEG and BMP grey or RGB.

    Notes
    -----
    The data goes to a temporary file in the same directory, which is flushed, fsynced and then
    renamed over ``path`` (``os.replace``, via :func:`cvcore.io.atomic.atomic_write`), so
    ``path`` is never left half-written. JPEG is written
    at Pillow's default quality (75).
    """
    from PIL import Image

    path = os.fspath(path)
    fmt = _format_for(path, "write")
    arr = check_array(image, "image", ndim=(2, 3), dtypes="buf")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim == 3 and channels not in (2, 3, 4):
        raise ValueError(f"image must have 1, 2, 3 or 4 channels, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        check_finite(arr, "image")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"a float image must lie in 0..1 to be written, got values in "
                             f"{lo:g}..{hi:g}; rescale or np.clip it first")
        arr = to_uint8(arr)
    elif arr.dtype == np.bool_:
        arr = to_uint8(arr)
    elif arr.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"image must be uint8, uint16, bool or float in 0..1, got dtype "
                        f"{arr.dtype}; convert it first (e.g. cvcore.to_uint8)")
    ext = os.path.splitext(path)[1].lower()
    if (arr.dtype.name, channels) not in WRITE_SUPPORT[fmt] or \
            (ext == ".pgm" and channels != 1) or (ext == ".ppm" and channels != 3):
        raise ValueError(f"{ext} files cannot hold a {arr.dtype} image with {channels} "
                         f"channel(s) (shape {arr.shape})")

    pil = Image.fromarray(np.ascontiguousarray(arr))
    with atomic_write(path, "wb") as f:
        pil.save(f, format=fmt)


def to_float(image) -> np.ndarray:
    """Return an image as ``float32`` intensities in ``0..1``.

    ``uint8`` is divided by 255, ``uint16`` by 65535, ``bool`` becomes 0.0 / 1.0; a float image is
    returned as ``float32`` with its values unchanged (not rescaled, not clipped). Other integer
    types are refused: their range is ambiguous (convert them to ``uint8`` or ``uint16`` first).

    Parameters
    ----------
    image : ndarray, any shape, not empty

    Raises
    ------
    TypeError
        Signed or wider integer dtypes.
    ValueError
        Empty input, or a float image holding NaN or infinity.

    Examples
    --------
    >>> to_float(np.array([0, 51, 255], dtype=np.uint8))
    array([0. , 0.2, 1. ], dtype=float32)
    """
    arr = check_array(image, "image", dtypes="buf")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(UINT8_MAX)
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / np.float32(UINT16_MAX)
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype.kind == "f":
        check_finite(arr, "image")
        return arr.astype(np.float32)
    raise TypeError(f"image has dtype {arr.dtype}; to_float takes uint8, uint16, bool or float "
                    f"(the range of other integer types is ambiguous)")


def to_uint8(image) -> np.ndarray:
    """Return an image as ``uint8`` levels 0..255.

    A float image (intensities in ``0..1``) is clipped to ``0..1``, multiplied by 255 and rounded
    to the nearest integer (ties to even, ``np.rint``). ``uint16`` is scaled by 255 / 65535 = 1/257
    and rounded the same way; ``bool`` becomes 0 / 255; ``uint8`` is returned as it is (no copy).

    Raises
    ------
    TypeError
        Signed or wider integer dtypes.
    ValueError
        Empty input, or a float image holding NaN or infinity.

    Examples
    --------
    >>> to_uint8(np.array([-0.5, 0.2, 0.5, 1.7]))
    array([  0,  51, 128, 255], dtype=uint8)
    """
    arr = check_array(image, "image", dtypes="buf")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(UINT8_MAX)
    if arr.dtype == np.uint16:
        return np.rint(arr.astype(np.float64) / (UINT16_MAX / UINT8_MAX)).astype(np.uint8)
    if arr.dtype.kind == "f":
        check_finite(arr, "image")
        return np.rint(np.clip(arr, 0.0, 1.0) * np.float32(UINT8_MAX)).astype(np.uint8)
    raise TypeError(f"image has dtype {arr.dtype}; to_uint8 takes float, uint16, bool or uint8")
