"""Sphinx configuration of cvcore's documentation site.

Build it from the root of the repository (``pip install -e ".[docs]"`` first)::

    python -m sphinx -W -b html docs docs/_build/html

Everything on the site is made by this build from the sources: the API reference from the
docstrings (autosummary + numpydoc), the gallery by running ``examples/*.py`` (sphinx-gallery),
the tutorial by running ``docs/tutorial/six_steps.py``. Nothing is fetched from the network, at
build time or when a page is viewed: no intersphinx, and MathJax is copied from a local install
(Debian's ``libjs-mathjax``) into the site (see ``_mathjax`` below).
"""
import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # `import cvcore` finds this tree, installed or not
sys.path.insert(0, str(DOCS))  # docs/_ext

import cvcore  # noqa: E402

# the tutorial's working folder (its photos, runs and weights) stays inside the build folder
os.environ.setdefault("CVCORE_TUTORIAL_DIR", str(DOCS / "_build" / "tutorial-run"))

project = "cvcore"
author = "the cvcore authors"
copyright = "the cvcore authors"
version = release = cvcore.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/GALLERY_HEADER.rst"]
default_role = "py:obj"  # `name` in a docstring links to the API entry
nitpicky = False

# -- API reference ---------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"       # the numpydoc "Parameters" sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

# -- Gallery ---------------------------------------------------------------------------------------
# Every examples/*.py is run at build time; a helper module whose name starts with "_" is not an
# example (it is imported by the examples), so it is ignored.
sphinx_gallery_conf = {
    "examples_dirs": ["../examples", "tutorial"],
    "gallery_dirs": ["auto_examples", "auto_tutorial"],
    "filename_pattern": r"\.py$",
    "ignore_pattern": r"(^|[/\\])_[^/\\]*\.py$",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "min_reported_time": 1,
    "plot_gallery": "True",
    "reset_modules": ("matplotlib",),
    "show_memory": False,
    "capture_repr": (),          # a cell shows what it prints, not the value of its last line
    # its page of run times loads jQuery and DataTables from CDNs; the build log prints the times
    "write_computation_times": False,
}

# -- HTML ------------------------------------------------------------------------------------------
# The PyData theme: the one NumPy, SciPy, pandas, scikit-image and Matplotlib use, so readers of
# this field already know where the search box, the section navigation and the "on this page"
# list are. Its fonts and icons ship inside the theme (no CDN).
html_theme = "pydata_sphinx_theme"
html_title = f"cvcore {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_show_sourcelink = True
html_last_updated_fmt = None

# -- Mathematics, rendered in the browser from a local MathJax -------------------------------------
MATHJAX_DIRS = [Path(os.environ["CVCORE_MATHJAX"])] if os.environ.get("CVCORE_MATHJAX") else []
MATHJAX_DIRS += [Path("/usr/share/javascript/mathjax"), Path("/usr/share/nodejs/mathjax")]
# the parts of MathJax 2.7 the TeX-AMS_CHTML configuration loads (the whole install is 50 MB)
MATHJAX_PARTS = ["MathJax.js", "config/TeX-AMS_CHTML.js", "extensions", "jax/input/TeX",
                 "jax/output/CommonHTML", "jax/element", "localization/en",
                 "fonts/HTML-CSS/TeX/woff"]
_mathjax = next((d for d in MATHJAX_DIRS if (d / "MathJax.js").is_file()), None)
if _mathjax is None:
    raise RuntimeError(
        "MathJax 2.7 not found (looked in " + ", ".join(map(str, MATHJAX_DIRS)) + "): install "
        "Debian's libjs-mathjax (apt-get install libjs-mathjax) or set CVCORE_MATHJAX to its "
        "folder. The site serves its own copy so that no page loads anything from the network.")
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        source = (_mathjax / part).resolve()
        if source.is_dir():
            shutil.copytree(source, target / part, dirs_exist_ok=True)
        elif source.is_file():
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / part)


def setup(app):
    app.connect("build-finished", _copy_mathjax)
