"""Where Numba keeps the compiled kernels, when cvcore is installed where it cannot write.

Numba's on-disk cache (``@njit(cache=True)``) picks the first of these that it can write to
(``numba.core.caching._CacheImpl._locator_classes``, Numba 0.68):

1. ``$NUMBA_CACHE_DIR`` when set;
2. ``__pycache__`` beside the source file (here ``kernels/__pycache__``): the usual case for a
   checkout, an editable install, or a virtual environment the user owns;
3. the user-wide cache ``~/.cache/numba/kernels_<SHA-1 of the package folder>``
   (``$XDG_CACHE_HOME/numba`` when that is set): a read-only, non-editable install (a system
   ``site-packages``, a container image, a package installed by root and run by a user);
4. none: Numba raises ``RuntimeError: cannot cache function ...: no locator available`` when the
   kernel module is *imported*, so nothing of cvcore that needs a kernel would run.

Case 4 happens to a service account without a writable home (``nobody``, a container started
with a read-only file system, ``HOME=/nonexistent``). :func:`ensure_cache_dir` covers it: when
neither 2 nor 3 is writable and ``NUMBA_CACHE_DIR`` is not set, it points Numba at a private
folder in the temporary directory (``$TMPDIR/cvcore-numba-<uid>``, created mode 0700 and used
only if this user owns it and nobody else can write to it: the cache holds pickles, which must
not come from another user), or, failing that, at a fresh temporary folder for this process
(kernels are then compiled again by every process, and a warning says how to avoid it).
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))


def _writable(path: str) -> bool:
    """Whether Numba could use ``path`` as a cache folder: the test it makes itself
    (``_CacheLocator.ensure_cache_path``: create the folder, then a temporary file in it)."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def user_wide_cache_dir() -> str:
    """Numba's user-wide cache folder on this platform (``numba.misc.appdirs``)."""
    from numba.misc.appdirs import AppDirs   # a small module: does not import Numba's compiler
    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def _private_dir(path: str) -> bool:
    """Create ``path`` (mode 0700) if needed; True if it is ours alone and writable."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    import stat
    if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022:
        return False
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    return _writable(path)


def ensure_cache_dir() -> str | None:
    """Make sure Numba has somewhere to write the kernels' cache; returns the folder chosen here
    (None when Numba's own choice, 1-3 above, works).

    Must run before the first ``@njit(cache=True)`` is decorated (the locator is chosen then).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    if _writable(os.path.join(HERE, "__pycache__")) or _writable(user_wide_cache_dir()):
        return None
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    path = os.path.join(tempfile.gettempdir(), f"cvcore-numba-{uid}")
    if not _private_dir(path):
        path = tempfile.mkdtemp(prefix="cvcore-numba-")
        warnings.warn(f"cvcore: no writable folder for Numba's cache (the package folder, "
                      f"{user_wide_cache_dir()} and {tempfile.gettempdir()} are not), so the "
                      f"kernels are compiled again in every process; set NUMBA_CACHE_DIR to a "
                      f"writable folder to keep them", RuntimeWarning, stacklevel=2)
    os.environ["NUMBA_CACHE_DIR"] = path
    config = sys.modules.get("numba.core.config")
    if config is not None:             # Numba already imported: it read the variable then
        config.CACHE_DIR = path
    return path
