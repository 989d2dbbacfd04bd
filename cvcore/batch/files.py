"""Finding the image files of a job: folders walked recursively, image files told by content.

Order
-----
Folders are walked depth-first with the entries of each folder sorted by name (as bytes of the
file system encoding, so the order does not depend on the locale), the inputs in the order given.
The same tree always gives the same list, which is what makes partitions, and so resuming and
comparing two runs, well defined.

Which files
-----------
A file is a candidate when its first bytes are those of an image format (PNG, JPEG, TIFF, BMP,
Netpbm, GIF, WebP; see :data:`IMAGE_SIGNATURES`), whatever its name, or when its extension names
an image format, whatever its content. So a JPEG saved as ``IMG_0001`` is found, and a text file
named ``photo.jpg``, an empty ``x.png`` or a truncated download are found too and get an error
row naming the problem, instead of vanishing. Every other file (sidecars such as ``.xmp``,
``.json`` or ``.txt``) is counted as skipped. Hidden files and folders (name starting with ``.``)
are left out, as :class:`cvcore.io.ImageFolder` does. A file named directly on the command line
is always a candidate.

Symbolic links to files are followed; links to folders are not (a link cycle would never end).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from cvcore.io.datasets import IMAGE_EXTENSIONS

__all__ = ["IMAGE_SIGNATURES", "sniff_image", "walk_images", "WalkStats"]

#: Leading bytes of each image format a file may hold: (format, offset, bytes). Sources: the PNG
#: specification sec. 5.2; JPEG (ITU T.81) SOI marker followed by a marker's 0xFF; TIFF 6.0
#: sec. 2 byte-order header; BMP's "BM"; Netpbm's "P1".."P7"; GIF87a/89a; RIFF....WEBP.
IMAGE_SIGNATURES = (
    ("PNG", 0, b"\x89PNG\r\n\x1a\n"),
    ("JPEG", 0, b"\xff\xd8\xff"),
    ("TIFF", 0, b"II*\x00"),
    ("TIFF", 0, b"MM\x00*"),
    ("BMP", 0, b"BM"),
    ("GIF", 0, b"GIF87a"),
    ("GIF", 0, b"GIF89a"),
    ("WEBP", 8, b"WEBP"),
) + tuple(("PNM", 0, b"P" + bytes([d])) for d in b"1234567")
SNIFF_BYTES = 16


def sniff_image(path) -> str | None:
    """The image format named by the first bytes of ``path``, or None.

    Only the signature is read; whether the rest of the file decodes is for the decoder to say.
    A Netpbm signature must be followed by white space and then a number or a ``#`` comment
    (``P5\\n640 480``, not ``P5 is``), a WebP one preceded by ``RIFF``.

    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "no_extension")
    >>> _ = open(f, "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
    >>> sniff_image(f)
    'PNG'
    """
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return None
    for fmt, offset, magic in IMAGE_SIGNATURES:
        if head[offset:offset + len(magic)] != magic:
            continue
        if fmt == "PNM" and not _netpbm_header(head):
            continue
        if fmt == "WEBP" and head[:4] != b"RIFF":
            continue
        return fmt
    return None


def _netpbm_header(head: bytes) -> bool:
    rest = head[2:]
    body = rest.lstrip(b" \t\r\n")
    return len(body) < len(rest) and (not body or body[:1] in b"0123456789#")


@dataclass
class WalkStats:
    """What a walk saw besides the candidates: skipped non-image files, unreadable folders."""
    skipped: int = 0
    unreadable: list = field(default_factory=list)


def _is_candidate(path: str, name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS or sniff_image(path) is not None


def _walk(folder: str, stats: WalkStats):
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
    except OSError as exc:
        stats.unreadable.append(f"{folder}: {exc.strerror or exc}")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = os.path.join(folder, entry.name)
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(path, stats)
            elif entry.is_file():
                if _is_candidate(path, entry.name):
                    yield path
                else:
                    stats.skipped += 1
        except OSError as exc:            # vanished or unreadable between listing and stat
            stats.unreadable.append(f"{path}: {exc.strerror or exc}")


def walk_images(inputs, stats: WalkStats | None = None):
    """Yield the candidate image files of ``inputs`` (folders and files), in a fixed order.

    Parameters
    ----------
    inputs : sequence of str or os.PathLike
        Folders (walked recursively) and files (yielded as given).
    stats : WalkStats, optional
        Filled with the number of non-image files skipped and the folders that could not be read.

    Yields
    ------
    path : str
        Each path as the input spelled it joined with the names below it (relative inputs give
        relative paths), so a row of the output names the file the way the user named the folder.

    Raises
    ------
    FileNotFoundError
        An input does not exist.
    """
    stats = stats if stats is not None else WalkStats()
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            yield from _walk(item, stats)
        elif os.path.exists(item):
            yield item
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
