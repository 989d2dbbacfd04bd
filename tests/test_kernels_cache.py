"""Where the kernels' Numba cache goes when cvcore cannot write beside its own files
(kernels/_cache.py): Numba's choice when it has one, a private temporary folder when it has none.

The end-to-end cases run a kernel as another user (``nobody``, through ``setpriv``) on this
tree, which that user cannot write to: what a read-only, non-editable install looks like. They
need root and skip otherwise.
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kernels import _cache

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def nothing_writable(monkeypatch, tmp_path):
    """Neither the package's ``__pycache__`` nor the user-wide cache is writable; the temporary
    directory is ``tmp_path``; ``NUMBA_CACHE_DIR`` unset; Numba's config restored afterwards."""
    from numba.core import config
    blocked = {os.path.join(_cache.HERE, "__pycache__"), _cache.user_wide_cache_dir()}
    real = _cache._writable
    monkeypatch.setattr(_cache, "_writable", lambda p: p not in blocked and real(p))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("NUMBA_CACHE_DIR", "")
    monkeypatch.setattr(config, "CACHE_DIR", config.CACHE_DIR)
    return tmp_path


def test_numba_cache_dir_set_by_the_user_is_left_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert _cache.ensure_cache_dir() is None
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path)


def test_writable_is_numbas_own_test(tmp_path):
    assert _cache._writable(str(tmp_path / "a" / "b"))          # created
    (tmp_path / "file").write_text("x")
    assert not _cache._writable(str(tmp_path / "file" / "sub"))  # a file in the way


def test_no_writable_cache_uses_a_private_temporary_folder(nothing_writable):
    from numba.core import config
    path = _cache.ensure_cache_dir()
    assert path == str(nothing_writable / f"cvcore-numba-{os.getuid()}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert os.environ["NUMBA_CACHE_DIR"] == path and config.CACHE_DIR == path
    assert _cache.ensure_cache_dir() is None       # now set: a second call changes nothing


def test_a_folder_others_can_write_is_not_trusted(nothing_writable):
    shared = nothing_writable / f"cvcore-numba-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o777)                             # someone could plant pickles in it
    with pytest.warns(RuntimeWarning, match="compiled again in every process"):
        path = _cache.ensure_cache_dir()
    assert path != str(shared) and Path(path).is_dir()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700     # mkdtemp's


RUN_AS_NOBODY = """
import numpy as np, numba
from kernels.integral import integral_image
out = np.empty((3, 4))
integral_image(np.ones((2, 3)), out)
assert out[2, 3] == 6.0, out
print(numba.config.CACHE_DIR or "-")
"""


def _run_as_nobody(home, tmpdir, **extra):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a kernel as another user")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.pop("XDG_CACHE_HOME", None)
    env.update(HOME=str(home), TMPDIR=str(tmpdir), PYTHONDONTWRITEBYTECODE="1", **extra)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           sys.executable, "-c", RUN_AS_NOBODY]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def open_dir():
    """A folder in /tmp that ``nobody`` can reach and write (removed afterwards)."""
    base = Path(tempfile.mkdtemp(prefix="cvcore-cache-test-", dir="/tmp"))
    base.chmod(0o755)
    (base / "home").mkdir()
    (base / "tmp").mkdir()
    for d in (base / "home", base / "tmp"):
        d.chmod(0o777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_read_only_install_with_a_home_uses_numbas_user_wide_cache(open_dir):
    """The package folder is not writable for this user: Numba itself falls back to
    ``~/.cache/numba/kernels_<hash>``; cvcore leaves it so."""
    done = _run_as_nobody(open_dir / "home", open_dir / "tmp")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "-"                       # NUMBA_CACHE_DIR not set
    found = list((open_dir / "home" / ".cache" / "numba").glob("kernels_*/integral.*.nbi"))
    assert found, list((open_dir / "home").rglob("*"))


def test_read_only_install_without_a_home_uses_a_private_temporary_folder(open_dir):
    """No writable home either (``HOME=/nonexistent``, as ``nobody`` has): without cvcore's
    fallback Numba raises ``RuntimeError: cannot cache function`` on import."""
    done = _run_as_nobody("/nonexistent", open_dir / "tmp")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(open_dir / "tmp" / "cvcore-numba-65534")
    assert list((open_dir / "tmp" / "cvcore-numba-65534").glob("kernels_*/integral.*.nbi"))
    again = _run_as_nobody("/nonexistent", open_dir / "tmp", NUMBA_DEBUG_CACHE="1")
    assert again.returncode == 0, again.stderr
    assert "data loaded from" in again.stdout and "data saved" not in again.stdout, again.stdout
