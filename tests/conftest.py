"""Shared fixtures: the real data sets and optional reference libraries.

Tests that need ``../shared/datasets`` (or ``$CVCORE_DATASETS``) or an optional reference package
(OpenCV, scikit-image, scikit-learn, PyTorch) skip with a reason when it is absent; CI has both.
"""
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("CVCORE_DATASETS", ROOT.parent / "shared" / "datasets"))
MODELS = Path(os.environ.get("CVCORE_MODELS", ROOT.parent / "shared" / "models"))


def dataset_path(*parts) -> Path:
    """Path inside the shared data sets, or skip the test (with the reason) if it is absent."""
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data set not found: {path} (set CVCORE_DATASETS)")
    return path


def shared_model_path(name: str) -> Path:
    """Path of a published model in ``../shared/models`` (or ``$CVCORE_MODELS``), or skip."""
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"shared model not found: {path} (set CVCORE_MODELS)")
    return path


@pytest.fixture
def datasets_dir():
    return dataset_path()


@pytest.fixture
def input_grads_seen(monkeypatch):
    """The input shape of every Conv2d input gradient computed while the test runs (a spy on
    ``cvcore.nn.conv._input_grad``): a list, filled as they happen."""
    from cvcore.nn import conv
    seen = []
    real = conv._input_grad

    def spy(dy, cache, keep=None):
        seen.append(cache.x.shape)
        return real(dy, cache, keep)
    monkeypatch.setattr(conv, "_input_grad", spy)
    return seen


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


TEST_IMAGES = ["box.pgm", "scene.pgm", "book.pgm", "roofs1.jpg", "roofs2.jpg", "river1.jpg",
               "spots.jpg"]


def load_test_image(name: str, mode: str = "gray") -> np.ndarray:
    """A shared test image as float32 in 0..1, via Pillow (not cvcore, so tests of imread and of
    the filters do not depend on each other)."""
    from PIL import Image
    with Image.open(dataset_path("test-images", name)) as im:
        im = im.convert("L" if mode == "gray" else "RGB")
        return np.asarray(im, dtype=np.float32) / 255.0
