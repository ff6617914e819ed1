"""The documentation site, read as it is built and as a reader sees it (docs/, issue 20).

The site is built by the README's docs command, which ``.ci/run`` runs with warnings as
errors before the tests (that build also executes every notebook). These tests read the
built HTML in ``docs/_build/html``: every public name has an entry in the API reference,
every notebook has its tutorial page, and in headless Chromium the landing page and the
tutorials show their figures. Where the site or Chromium is absent they skip, saying so;
in CI (``CI=true``), where ``.ci/run`` provides both, they fail instead.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

import overparam_jax

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = Path("/usr/bin/chromium")  # Debian package `chromium`; Playwright downloads no browser
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_COMMAND = "pip install -e '.[docs]' && sphinx-build -W --keep-going -b html docs docs/_build/html"


def _absent(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (.ci/run provides it in CI)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        _absent(f"the docs site is not built at {SITE}; build it with: {DOCS_COMMAND}")
    return SITE


# ---------------------------------------------------------------- the API reference


def public_exports() -> dict[str, object]:
    """Every public module (the package, and each submodule with ``__all__`` and no
    ``_``-prefixed part) by name."""
    modules = {overparam_jax.__name__: overparam_jax}
    for info in pkgutil.walk_packages(overparam_jax.__path__, overparam_jax.__name__ + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            module = importlib.import_module(info.name)
            if hasattr(module, "__all__"):
                modules[info.name] = module
    return modules


class _Ids(HTMLParser):
    """The ids of a page's elements."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for key, value in attrs if key == "id" and value)


def reference_ids(folder: Path) -> set[str]:
    ids = set()
    for page in folder.glob("*.html"):
        parser = _Ids()
        parser.feed(page.read_text())
        ids |= parser.ids
    return ids


def missing_from_reference(modules: dict[str, object], ids: set[str]) -> list[str]:
    """Public modules and names without an entry in the reference, whose element ids are
    ``ids``. A module needs its ``module-<name>`` anchor; a name needs an entry
    ``<module path>.<name>`` (the module it is documented in, which may be another one
    that exports it) whose path leads to the very same object."""
    documented = set()
    for anchor in ids:
        path, _, name = anchor.rpartition(".")
        try:
            obj = getattr(importlib.import_module(path), name)
        except (ImportError, ValueError, AttributeError):
            continue  # not a module-level entry (a class member, a section)
        documented.add((name, id(obj)))
    missing = [f"module {m}" for m in modules if f"module-{m}" not in ids]
    missing += [f"{m}.{name}" for m, module in modules.items() for name in module.__all__
                if (name, id(getattr(module, name))) not in documented]
    return missing


def test_a_missing_name_or_module_is_detected():
    modules = public_exports()
    complete = {f"module-{m}" for m in modules} | {f"{m}.{n}" for m, mod in modules.items() for n in mod.__all__}
    assert missing_from_reference(modules, complete) == []
    # sweep is exported by overparam_jax and overparam_jax.sweeps: both lose their entry
    planted = complete - {"overparam_jax.sweep", "overparam_jax.sweeps.sweep", "module-overparam_jax.theory"}
    assert missing_from_reference(modules, planted) == [
        "module overparam_jax.theory", "overparam_jax.sweep", "overparam_jax.sweeps.sweep"]
    # an entry of that name for another object does not count
    impostor = planted | {"overparam_jax.dynamics.sweep_like", "overparam_jax.analysis.sweep"}
    assert "overparam_jax.sweeps.sweep" in missing_from_reference(modules, impostor)


def test_every_public_name_is_in_the_api_reference(site):
    modules = public_exports()
    assert len(modules) > 10 and len(overparam_jax.__all__) > 40  # the walk found the package
    missing = missing_from_reference(modules, reference_ids(site / "api"))
    assert not missing, f"not in the built API reference: {missing}"


def test_every_notebook_has_its_tutorial_page(site):
    missing = [p.name for p in NOTEBOOKS if not (site / "tutorials" / f"{p.stem}.html").is_file()]
    assert NOTEBOOKS and not missing, f"notebooks without a built tutorial page: {missing}"


# ---------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser(site):
    if not CHROMIUM.is_file():
        _absent(f"{CHROMIUM} not found (Debian: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the `docs` extra")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _images(browser, page: Path) -> list[dict]:
    """Every <img> of ``page`` after it has loaded: its src and natural width (0: broken)."""
    tab = browser.new_page()
    try:
        tab.goto(page.as_uri(), wait_until="load")
        return tab.eval_on_selector_all("img", "els => els.map(e => ({src: e.src, width: e.naturalWidth}))")
    finally:
        tab.close()


def test_the_landing_page_shows_its_figures(site, browser):
    images = _images(browser, site / "index.html")
    broken = [img["src"] for img in images if img["width"] == 0]
    assert images and not broken, f"landing page: {len(images)} images, broken: {broken}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_tutorial_shows_its_figures(site, browser, notebook):
    images = _images(browser, site / "tutorials" / f"{notebook.stem}.html")
    broken = [img["src"] for img in images if img["width"] == 0]
    assert not broken, f"{notebook.stem}: broken images {broken}"
    if "plt." in notebook.read_text():  # a notebook that plots shows its plots
        assert images, f"{notebook.stem} plots, but its page has no image"


def test_a_broken_image_is_detected(browser, tmp_path):
    page = tmp_path / "page.html"
    (tmp_path / "ok.png").write_bytes((SITE / "_images" / "acceleration_depths.png").read_bytes())
    page.write_text('<html><body><img src="ok.png"><img src="missing.png"></body></html>')
    widths = [img["width"] for img in _images(browser, page)]
    assert widths[0] > 0 and widths[1] == 0


def _unrendered_maths(browser, page: Path) -> tuple[int, int]:
    """(typeset formulas, raw ``\\(``/``\\[`` delimiters left in the visible text) of ``page``
    once MathJax has run (served from the site itself: no network)."""
    tab = browser.new_page()
    try:
        tab.goto(page.as_uri(), wait_until="load")
        tab.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=10_000)
        tab.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
        typeset = tab.eval_on_selector_all("mjx-container", "els => els.length")
        text = tab.inner_text("article")
        return typeset, text.count("\\(") + text.count("\\[")
    finally:
        tab.close()


@pytest.mark.parametrize("page", ["theory.html", "tutorials/06_deep_matrix_factorization.html"])
def test_the_maths_is_typeset_offline(site, browser, page):
    typeset, raw = _unrendered_maths(browser, site / page)
    assert typeset > 10 and raw == 0, f"{page}: {typeset} formulas typeset, {raw} left as raw LaTeX"


def test_raw_maths_is_detected(browser, tmp_path):
    """A page without MathJax shows its delimiters: the check above would catch a CDN-only site."""
    page = tmp_path / "raw.html"
    page.write_text("<html><body><article><p>\\(x^2\\) and \\[y\\]</p></article></body></html>")
    assert _unrendered_maths(browser, page) == (0, 2)
