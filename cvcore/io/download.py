"""Download a file once, check it, keep it: for users who are online.

:func:`download` fetches ``url`` into a cache folder and returns the path of a file whose SHA-256
is the one given, or raises. On the way:

1. If the cached file is already there with the right hash, nothing is fetched.
2. Bytes go to ``<name>.part`` next to the destination. If a ``.part`` is left from an
   interrupted run, the request asks only for the rest (HTTP ``Range: bytes=<size>-``, RFC 9110
   sec. 14.2) and appends when the server answers ``206 Partial Content`` with a matching
   ``Content-Range``; a server that answers ``200`` sends the whole file and the ``.part`` starts
   over.
3. When the transfer ends, the ``.part`` is flushed, fsync'd and its SHA-256 compared with the
   expected one; only then is it renamed over the destination (``os.replace``, atomic), so the
   cache never holds a partial or wrong file under the real name. A wrong hash deletes the
   ``.part``.
4. While a download runs, its ``.part`` is locked (``fcntl.flock`` where available), so a second
   process downloading the same file stops with a clear error instead of interleaving bytes.

Only the Python standard library is used (``urllib``); ``file://`` URLs work too (without resume).
Nothing in cvcore downloads at import or test time.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

try:  # POSIX advisory locks; on other systems downloads are simply not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["download", "default_cache_dir", "sha256_file", "DownloadError"]

CHUNK_SIZE = 1 << 16  # bytes read per loop iteration
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_CONTENT_RANGE_RE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class DownloadError(OSError):
    """A download failed (network, HTTP status, incomplete transfer or wrong checksum)."""


def default_cache_dir() -> Path:
    """``$CVCORE_CACHE`` if set, else ``$XDG_CACHE_HOME/cvcore``, else ``~/.cache/cvcore``."""
    if os.environ.get("CVCORE_CACHE"):
        return Path(os.environ["CVCORE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cvcore"


def sha256_file(path, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, sha256: str, *, cache_dir=None, filename: str | None = None,
             resume: bool = True, timeout: float = 30.0, progress=None) -> Path:
    """Fetch ``url`` into the cache (once), verify its SHA-256 and return its path.

    Parameters
    ----------
    url : str
        ``http://``, ``https://`` or ``file://`` URL.
    sha256 : str
        Expected SHA-256 of the file, 64 hex digits.
    cache_dir : path-like, optional
        Folder of the cached file (created if needed); default :func:`default_cache_dir`.
    filename : str, optional
        Name of the cached file; default the last part of the URL's path.
    resume : bool
        Continue from a ``.part`` left by an interrupted download (if the server supports ranges).
        ``False`` starts over.
    timeout : float
        Seconds to wait for the server on each blocking operation.
    progress : callable, optional
        Called as ``progress(bytes_done, bytes_total_or_None)`` after each chunk.

    Returns
    -------
    pathlib.Path
        The verified file.

    Raises
    ------
    ValueError
        Malformed ``sha256``, ``url`` or ``filename``.
    DownloadError
        The server cannot be reached or answers with an error, the transfer stops early (the
        ``.part`` is kept: call again to resume), or the hash does not match (the ``.part`` is
        deleted). The message names the URL.
    """
    if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    sha256 = sha256.lower()
    parsed = urllib.parse.urlparse(str(url))
    if parsed.scheme not in ("http", "https", "file"):
        raise ValueError(f"url must be http://, https:// or file://, got {url!r}")
    name = filename if filename is not None else os.path.basename(urllib.parse.unquote(parsed.path))
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"cannot take a file name from {url!r}; pass filename=")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    part = folder / (name + ".part")
    with open(part, "ab") as f:  # created if absent; the lock lives as long as this handle
        _lock(f, part)
        if not resume:
            f.truncate(0)
        digest = _fetch(str(url), f, part, timeout, progress)
        f.flush()
        os.fsync(f.fileno())
    if digest != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: SHA-256 of the downloaded file is {digest}, expected "
                            f"{sha256}; the partial file was deleted")
    os.replace(part, dest)
    return dest


def _lock(f, part: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise DownloadError(f"{part} is being written by another download; wait for it") from None


def _hash_existing(f):
    """SHA-256 object over the bytes already in ``f`` and their count."""
    h = hashlib.sha256()
    size = 0
    with open(f.name, "rb") as r:
        for chunk in iter(lambda: r.read(CHUNK_SIZE), b""):
            h.update(chunk)
            size += len(chunk)
    return h, size


def _fetch(url, f, part, timeout, progress) -> str:
    """Download into the open append-mode file ``f`` (resuming from its size); return the hex
    SHA-256 of its whole content."""
    h, offset = _hash_existing(f)
    headers = {"User-Agent": "cvcore", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part may be complete
            return h.hexdigest()
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, socket.timeout, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot download {url}: {reason}") from None
    with response:
        status = getattr(response, "status", None)
        total = None
        if offset and status == 206:
            m = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise DownloadError(f"{url}: server answered range {offset}- with "
                                    f"Content-Range {response.headers.get('Content-Range')!r}")
            total = None if m.group(3) == "*" else int(m.group(3))
        else:  # a full answer (200, or a file:// URL): start the .part over
            if offset:
                f.truncate(0)
                f.seek(0)
                h, offset = hashlib.sha256(), 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        done = offset
        try:
            for chunk in iter(lambda: response.read(CHUNK_SIZE), b""):
                f.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
            f.flush()
            raise DownloadError(f"{url}: transfer stopped after {done} bytes ({exc}); call again "
                                f"to resume from {part}") from None
    if total is not None and done != total:
        f.flush()
        raise DownloadError(f"{url}: transfer stopped after {done} of {total} bytes; call again "
                            f"to resume from {part}")
    return h.hexdigest()
