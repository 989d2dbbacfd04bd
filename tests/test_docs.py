"""The documentation site (docs/): the API reference covers every public name, and the built site
has no broken image or link and loads nothing from the network.

*Public* means: listed in the ``__all__`` of ``cvcore`` or of one of its modules and subpackages
whose name does not start with an underscore (``cvcore.io``, ``cvcore.augment``, ``cvcore.nn``,
...). The reference lists names in ``docs/api/*.rst`` under ``.. currentmodule::`` in
``.. autosummary::`` blocks; the first test reads those sources (no Sphinx needed), so a name added
to an ``__all__`` without its entry fails here before the site is even built.

The site tests read the built HTML in ``docs/_build/html`` (or ``$CVCORE_DOCS_HTML``), which CI
builds with ``python -m sphinx -W -b html docs docs/_build/html`` before the tests (``.ci/run``);
building it takes minutes (it runs the gallery and the tutorial), too long for a test. Where it has
not been built they skip, saying so.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import cvcore

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HTML = Path(os.environ.get("CVCORE_DOCS_HTML", DOCS / "_build" / "html"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


# ------------------------------------------------------------------------------------------------
# Every public name has its entry in the API reference
# ------------------------------------------------------------------------------------------------

def public_modules() -> list[str]:
    """``cvcore`` and each of its modules / subpackages whose name has no leading underscore."""
    return ["cvcore"] + [f"cvcore.{m.name}" for m in pkgutil.iter_modules(cvcore.__path__)
                         if not m.name.startswith("_")]


def public_names() -> set[str]:
    """Fully qualified public names: ``<module>.<name>`` for each name of each ``__all__``."""
    names = set()
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{module_name} has no __all__: its public names are unknown"
        for name in exported:
            if module_name == "cvcore":
                # the subpackages (cvcore.nn) have their own pages; a re-export (cvcore.imread)
                # has its entry where it is defined (cvcore.io.imread): see top_level_aliases
                continue
            names.add(f"{module_name}.{name}")
    return names


def top_level_aliases() -> dict[str, str]:
    """``cvcore.<name>`` re-exported from a subpackage -> the subpackage's name for it."""
    aliases = {}
    for name in cvcore.__all__:
        if f"cvcore.{name}" in public_modules():
            continue
        obj = getattr(cvcore, name)
        homes = [f"{module}.{name}" for module in public_modules()[1:]
                 if getattr(importlib.import_module(module), name, None) is obj]
        assert homes, f"cvcore.{name} is not exported by any subpackage: give it an entry"
        aliases[f"cvcore.{name}"] = homes[0]
    return aliases


DIRECTIVE = re.compile(r"^\.\. (\S+)::\s*(.*)$")


def reference_entries(folder: Path = DOCS / "api") -> dict[str, Path]:
    """Fully qualified names listed in the autosummary blocks of the API pages -> their page."""
    entries = {}
    for page in sorted(folder.glob("*.rst")):
        module = None
        in_summary = False
        for line in page.read_text(encoding="utf-8").splitlines():
            directive = DIRECTIVE.match(line)
            if directive:
                kind, argument = directive.groups()
                if kind in ("currentmodule", "module"):
                    module = argument.strip()
                in_summary = kind == "autosummary"
                continue
            if not in_summary:
                continue
            stripped = line.strip()
            if not stripped or stripped.startswith(":"):       # options and the blank line
                continue
            if not line.startswith("   "):                      # the block ended
                in_summary = False
                continue
            assert module is not None, f"{page.name}: autosummary before any currentmodule"
            entries[f"{module}.{stripped}"] = page
    return entries


def test_reference_parser_reads_a_toy_page(tmp_path):
    (tmp_path / "toy.rst").write_text(
        ".. currentmodule:: cvcore.toy\n\nHeading\n-------\n\n.. autosummary::\n"
        "   :toctree: generated/\n\n   alpha\n   Beta\n\nText after the block.\n\n"
        ".. currentmodule:: cvcore.other\n\n.. autosummary::\n\n   gamma\n")
    assert set(reference_entries(tmp_path)) == {"cvcore.toy.alpha", "cvcore.toy.Beta",
                                                "cvcore.other.gamma"}


def test_every_public_name_is_in_the_api_reference():
    names = public_names()
    assert len(names) > 200            # the packages export this many; a broken walk finds few
    entries = reference_entries()
    missing = sorted(names - set(entries))
    assert not missing, ("public names without an entry in docs/api/*.rst (add each to the "
                         "autosummary block of its package's page): " + ", ".join(missing))


def test_top_level_re_exports_are_listed_with_their_entry():
    top = (DOCS / "api" / "top.rst").read_text(encoding="utf-8")
    aliases = top_level_aliases()
    assert aliases                                       # cvcore.imread and its kin
    for alias, home in aliases.items():
        assert home in public_names()                    # so it has an entry (test above)
        assert re.search(rf"``{re.escape(alias)}``\s+:func:`{re.escape(home)}`", top) or \
            re.search(rf"``{re.escape(alias)}``\s+:class:`{re.escape(home)}`", top), \
            f"docs/api/top.rst does not list {alias} as {home}"


def test_the_api_reference_lists_only_public_names():
    stale = sorted(set(reference_entries()) - public_names())
    assert not stale, "docs/api lists names that are not public (renamed or removed?): " + \
        ", ".join(stale)


def test_every_api_page_is_in_the_table_of_contents():
    index = (DOCS / "api" / "index.rst").read_text(encoding="utf-8")
    listed = set(re.findall(r"^   (\w+)$", index, flags=re.M))
    pages = {p.stem for p in (DOCS / "api").glob("*.rst")} - {"index"}
    assert pages == listed


# ------------------------------------------------------------------------------------------------
# The built site
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site() -> Path:
    if not (HTML / "index.html").is_file():
        pytest.skip(f"the documentation is not built at {HTML}: run `python -m sphinx -W -b html "
                    "docs docs/_build/html` first (CI does, in .ci/run; needs the docs extra)")
    return HTML


class _Links(HTMLParser):
    """The ids of a page and the URLs it refers to (href / src of every element)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str, str]] = []      # (tag, attribute, url)

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)
            if key in ("href", "src") and value is not None:
                self.refs.append((tag, key, value))


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    return parser


# a resource the browser fetches by itself when the page is shown (a CDN would be one of these)
LOADED = {("img", "src"), ("script", "src"), ("link", "href"), ("source", "src"),
          ("iframe", "src"), ("video", "src"), ("audio", "src"), ("embed", "src")}


def site_problems(site_dir: Path) -> list[str]:
    """Broken internal links, missing anchors and remote resources of every page of a site."""
    # the pages (_static/ holds the theme's files, among them a Jinja template named .html)
    pages = sorted(p for p in site_dir.rglob("*.html") if "_static" not in p.parts)
    parsed = {page: _parse(page) for page in pages}
    problems = []
    for page, links in parsed.items():
        where = page.relative_to(site_dir)
        for tag, attribute, url in links.refs:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                if (tag, attribute) in LOADED:
                    problems.append(f"{where}: <{tag} {attribute}> loads {url} from the network")
                continue
            if parts.scheme in ("mailto", "data", "javascript"):
                continue
            if parts.scheme:
                problems.append(f"{where}: unexpected URL scheme in {url}")
                continue
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if parts.path.endswith("/"):
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{where}: {url} -> {target} does not exist")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if fragment not in ids:
                    problems.append(f"{where}: {url}: no id {fragment!r} in {target.name}")
    for sheet in site_dir.rglob("*.css"):
        for url in re.findall(r"""(?:url\(\s*['"]?|@import\s+['"])(https?:)?//""",
                              sheet.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{sheet.relative_to(site_dir)}: a style sheet loads from the network")
    return problems


def test_link_check_finds_what_is_broken(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "index.html").write_text(
        '<a href="sub/b.html#here">ok</a><a href="sub/b.html#gone">anchor</a>'
        '<a href="nothere.html">file</a><img src="a.png"><img src="missing.png">'
        '<script src="https://cdn.example.org/x.js"></script>'
        '<a href="https://example.org/">an external link is not fetched</a><a href="#top">top</a>'
        '<p id="top"></p>')
    (tmp_path / "sub" / "b.html").write_text('<h1 id="here">b</h1><a href="../index.html">up</a>')
    problems = site_problems(tmp_path)
    assert len(problems) == 4, problems
    assert any("#gone" in p for p in problems)
    assert any("nothere.html" in p for p in problems)
    assert any("missing.png" in p for p in problems)
    assert any("cdn.example.org" in p for p in problems)


def test_every_internal_link_of_the_site_resolves(site):
    problems = site_problems(site)
    assert not problems, f"{len(problems)} broken links:\n" + "\n".join(problems[:50])


def test_the_site_documents_every_public_name(site):
    pages = {p.stem for p in (site / "api" / "generated").glob("*.html")}
    missing = sorted(name for name in public_names() if name not in pages)
    assert not missing, "no page in the built API reference for: " + ", ".join(missing)


BROWSER_PAGES = ["index.html", "auto_examples/index.html", "auto_tutorial/index.html",
                 "auto_tutorial/six_steps.html"]


def test_pages_render_their_figures_in_chromium(site):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the browser test drives Chromium with playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium)")
    remote = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: remote.append(request.url)
                    if urlsplit(request.url).scheme not in ("file", "data", "blob") else None)
            for name in BROWSER_PAGES:
                path = site / name
                assert path.is_file(), f"{name} is missing from the built site"
                page.goto(path.as_uri(), wait_until="load")
                # lazy images load only when scrolled to: ask for all of them, wait for each
                images = page.evaluate(
                    """async () => {
                        const all = Array.from(document.images);
                        all.forEach(im => { im.loading = "eager"; });
                        await Promise.all(all.map(im => im.complete ? null : new Promise(
                            done => { im.onload = done; im.onerror = done; })));
                        return all.map(im => ({src: im.currentSrc || im.src,
                                               complete: im.complete, width: im.naturalWidth}));
                    }""")
                broken = [im["src"] for im in images if not im["complete"] or im["width"] == 0]
                assert not broken, f"{name}: images that did not load: {broken}"
                if name != "index.html":
                    assert images, f"{name} shows no figure"
            # the formulas are typeset by the site's own MathJax (no CDN)
            page.goto((site / "api" / "generated" / "cvcore.nn.SGD.html").as_uri(),
                      wait_until="load")
            page.wait_for_function(
                "document.querySelectorAll('.MathJax_CHTML, .mjx-chtml').length > 0",
                timeout=30_000)
        finally:
            browser.close()
    assert not remote, f"pages asked the network for: {sorted(set(remote))}"


# ------------------------------------------------------------------------------------------------
# The tutorial: its commands run at build time (abort_on_example_error: a failing command fails
# the build); here, the page shows what they printed, and a quick run of the script itself
# ------------------------------------------------------------------------------------------------

def test_the_tutorial_page_shows_every_step_and_its_output(site):
    text = re.sub(r"<[^>]+>", " ", (site / "auto_tutorial" / "six_steps.html").read_text(
        encoding="utf-8"))
    for step in range(1, 7):
        assert f"Step {step}:" in text
    for command in ("$ cvcore check", "$ cvcore train", "$ cvcore eval", "$ cvcore predict",
                    "$ cvcore serve"):
        assert command in text, f"the tutorial page does not show {command!r}"
    assert "test accuracy" in text and "photos/s" in text and "chosen" in text


@pytest.mark.slow
def test_the_tutorial_runs_on_a_few_photos(tmp_path):
    # The same script as the page, every step, on a few photos per class (minutes: compiles and
    # runs EfficientNet-Lite0 and starts a server). `python -m pytest -m slow tests/test_docs.py`
    import subprocess
    import sys
    pytest.importorskip("httpx", reason="the tutorial's last step is a client of cvcore serve")
    pytest.importorskip("fastapi", reason="the tutorial serves a model (the serve extra)")
    env = dict(os.environ, CVCORE_TUTORIAL_QUICK="1", CVCORE_TUTORIAL_DIR=str(tmp_path),
               MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(DOCS / "tutorial" / "six_steps.py")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "photos/s" in done.stdout
    assert (tmp_path / "runs" / "final" / "confusion.png").is_file()


# ------------------------------------------------------------------------------------------------
# The README's links to the site and its pictures made by the build
# ------------------------------------------------------------------------------------------------

def readme_site_links() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"\]\((docs/_build/html/[^)#\s]+)", readme)


def test_readme_links_the_site_and_shows_its_pictures():
    links = readme_site_links()
    assert any(link.endswith(".png") for link in links)
    assert any(link.endswith(".html") for link in links)


def test_readme_links_and_pictures_exist_in_the_built_site(site):
    if site.resolve() != (DOCS / "_build" / "html").resolve():
        pytest.skip(f"the README points into docs/_build/html; the site checked is {site}")
    missing = [link for link in readme_site_links() if not (ROOT / link).is_file()]
    assert not missing, "README points to what the docs build did not make: " + ", ".join(missing)
