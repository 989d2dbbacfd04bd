"""The gallery: every ``examples/plot_*.py`` script runs on its own and draws its figures.

Each script runs once per session in a fresh interpreter (as a learner runs it, ``python
examples/plot_x.py``, from another working directory, with the Agg backend), under a driver that
saves every figure the script left open (what sphinx-gallery collects at build time). Where the
script compares cvcore with a reference library (scikit-image, OpenCV, SciPy, scikit-learn,
PyTorch) it prints ``max |cvcore - REF| = VALUE``; with the reference installed that line must be
there and VALUE within the tolerance below. Without it the script shows cvcore alone, and only
the reference check skips.
"""
import ast
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GALLERY = sorted(EXAMPLES.glob("plot_*.py"))
#: scripts in examples/ that are not gallery examples (the docs build must not run them)
NOT_GALLERY = {"_make_serve_screenshot.py"}
TIMEOUT = 900           # seconds per script: generous for a cold Numba cache on a busy machine

#: script -> [(module that must be importable, REF as printed, tolerance of the printed value)]
REFERENCES = {
    "plot_color_adjust.py": [("skimage", "skimage", 1e-6), ("cv2", "OpenCV", 0.0)],
    "plot_convolution.py": [("scipy", "scipy", 1e-6), ("cv2", "OpenCV", 1e-6)],
    "plot_edges_corners.py": [("skimage", "skimage", 1e-5)],
    # keypoint positions of the 50 strongest, in pixels
    "plot_sift_stages.py": [("cv2", "OpenCV", 0.5)],
    "plot_scale_space.py": [("skimage", "skimage", 1e-4)],
    "plot_hog.py": [("skimage", "skimage", 1e-5)],
    # the task metric: where each pipeline puts the box's corners in the scene, in pixels
    "plot_sift_matching.py": [("cv2", "OpenCV", 3.0)],
    "plot_resnet_feature_maps.py": [("torch", "PyTorch", 1e-4)],
    "plot_training_curves.py": [("sklearn", "scikit-learn", 0.0)],
    # boxes (x, y, w, h) of OpenCV's own Haar cascade and people detector, in pixels
    "plot_detection.py": [("cv2", "OpenCV", 0.0)],
    # accuracy under FGSM of the same weights, attacked by cvcore and by torchattacks
    "plot_adversarial.py": [("torchattacks", "torchattacks", 0.02)],
}
REF_LINE = re.compile(r"max \|cvcore - ([\w.-]+)\| = ([0-9.eE+-]+)")

DRIVER = """
import os, runpy, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.show = lambda *args, **kwargs: None
script, out = sys.argv[1], sys.argv[2]
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
for n in plt.get_fignums():
    plt.figure(n).savefig(os.path.join(out, f"figure{n}.png"), dpi=50)
"""


def run_example(script: Path, out: Path, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    env.update(env_extra or {})
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(script), str(out)], cwd=out,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    proc.seconds = time.perf_counter() - t0
    return proc


_RUNS: dict = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run each script at most once per session; tests share the result."""
    def get(script: Path):
        if script.name not in _RUNS:
            out = tmp_path_factory.mktemp(script.stem)
            _RUNS[script.name] = (run_example(script, out), out)
        return _RUNS[script.name]
    return get


def test_gallery_is_there():
    assert len(GALLERY) >= 5, [p.name for p in GALLERY]
    for path in EXAMPLES.glob("*.py"):
        assert path.name.startswith("plot_") or path.name in NOT_GALLERY, (
            f"{path.name}: gallery scripts are named plot_*.py (the pattern the docs build runs); "
            f"anything else must be listed in NOT_GALLERY")
    assert (EXAMPLES / "GALLERY_HEADER.rst").is_file()
    assert not set(REFERENCES) - {p.name for p in GALLERY}, "REFERENCES names a missing script"


@pytest.mark.parametrize("script", GALLERY, ids=lambda p: p.name)
def test_example_is_a_gallery_page(script):
    """sphinx-gallery's format: a module docstring opening with an RST title and a paragraph,
    then code with ``# %%`` text cells."""
    source = script.read_text()
    doc = ast.get_docstring(ast.parse(source), clean=False)
    assert doc, f"{script.name} has no module docstring"
    lines = doc.strip("\n").splitlines()
    assert len(lines) >= 4, doc
    title, underline = lines[0], lines[1]
    assert set(underline) == {"="} and len(underline) >= len(title), (title, underline)
    assert lines[2] == "" and lines[3].strip(), "a paragraph must follow the title"
    assert "# %%" in source, f"{script.name} has no text cells"
    assert "plt.show()" in source


@pytest.mark.parametrize("script", GALLERY, ids=lambda p: p.name)
def test_example_runs_and_draws(script, runs):
    proc, out = runs(script)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    figures = sorted(out.glob("figure*.png"))
    assert figures, f"{script.name} drew no figure"
    from PIL import Image
    for fig in figures:
        with Image.open(fig) as im:
            pixels = np.asarray(im.convert("L"), dtype=np.float32)
        assert pixels.std() > 5, f"{fig.name} of {script.name} is blank"
    print(f"{script.name}: {len(figures)} figure(s) in {proc.seconds:.1f} s")


@pytest.mark.parametrize("script", [s for s in GALLERY if s.name in REFERENCES],
                         ids=lambda p: p.name)
def test_example_agrees_with_reference(script, runs):
    proc, _ = runs(script)
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = {}
    for ref, value in REF_LINE.findall(proc.stdout):
        printed.setdefault(ref, []).append(float(value))
    checked = 0
    for module, ref, tol in REFERENCES[script.name]:
        if importlib.util.find_spec(module) is None:
            continue
        assert ref in printed, (f"{script.name} printed no 'max |cvcore - {ref}|' line although "
                                f"{module} is installed:\n{proc.stdout}")
        assert max(printed[ref]) <= tol, (ref, printed[ref], tol, proc.stdout)
        checked += 1
    if not checked:
        pytest.skip(f"none of the references of {script.name} is installed: "
                    f"{[m for m, _, _ in REFERENCES[script.name]]}")


FALLBACKS = {
    # script -> (what it prints without the shared data, a check of its output)
    "plot_sift_matching.py": ("shared test images absent",
                              r"corner error against the true homography: ([0-9.]+) px", 1.0),
    "plot_detection.py": ("shared data set dlib-faces absent", None, None),
}


@pytest.mark.parametrize("name", sorted(FALLBACKS))
def test_example_falls_back_to_embedded_data(name, tmp_path):
    """Without the shared data sets the scripts still run on the package's own data (the
    object search makes its own pair, with a known answer)."""
    said, pattern, bound = FALLBACKS[name]
    proc = run_example(EXAMPLES / name, tmp_path,
                       {"CVCORE_DATASETS": str(tmp_path / "nothing-here")})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert said in proc.stdout
    if pattern:
        assert float(re.search(pattern, proc.stdout).group(1)) < bound, proc.stdout
    assert list(tmp_path.glob("figure*.png"))
