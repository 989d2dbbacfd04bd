"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data goes to a temporary file in the destination's folder (same file system), is flushed and
fsync'd, and then renamed over the destination with :func:`os.replace`, which is atomic on POSIX
and Windows. If anything fails before the rename the temporary file is removed and the
destination is untouched.
"""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "remove_stale_temporaries"]


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Context manager yielding a file object whose contents replace ``path`` on success.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_write(os.path.join(d, "x.txt"), "w") as f:
    ...     _ = f.write("hello")
    >>> open(os.path.join(d, "x.txt")).read()
    'hello'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        # mkstemp creates the file as 0600; give it the mode a plain open() would (0666 less
        # the umask), or the mode of the file it replaces.
        os.chmod(tmp, _mode_for(path))
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(path) -> list:
    """Delete temporary files a killed :func:`atomic_write` of ``path`` left behind.

    A write killed before its rename (SIGKILL, power loss) leaves ``.<name>.<pid>.<random>.tmp``
    beside the destination. The next write of the same file removes those whose writing process
    no longer exists (a live one may still be writing: it is left alone). Returns the removed
    paths.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid_text = tmp.name[len(path.name) + 2:].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError, PermissionError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # exists, owned by someone else
        return True
    return True


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
