"""The documentation site: ``mkdocs build --strict`` passes (no broken link, no page left out of the nav, no name
the API reference cannot resolve), the reference documents every name on the facade, the lesson notebook is
rendered with its committed outputs, and the README's links point at files that exist."""

from __future__ import annotations

import html
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import torchsmith as ts

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "model_building.ipynb"
_SITE_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter")


def _missing_site_packages() -> list[str]:
    missing = []
    for name in _SITE_PACKAGES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing_site_packages()
    if missing:
        pytest.skip(f"the docs extra is not installed ({', '.join(missing)} missing): pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        capture_output=True, text=True, timeout=180, cwd=out, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    warnings = [line for line in proc.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert proc.returncode == 0 and not warnings, "mkdocs build --strict failed:\n" + "\n".join(
        warnings or proc.stderr.splitlines()[-20:])
    return out


def test_site_builds_strict_with_every_page(site: Path) -> None:
    for page in ("index.html", "getting-started/index.html", "check/index.html", "architecture/index.html",
                 "benchmarks/index.html", "corpus/index.html", "reference/index.html"):
        assert (site / page).is_file(), page
    # Every page in docs/ is on the site (strict also fails on a page left out of the nav).
    for md in sorted((ROOT / "docs").glob("*.md")):
        built = site / ("index.html" if md.stem == "index" else f"{md.stem}/index.html")
        assert built.is_file(), f"docs/{md.name} is not on the site"


def test_reference_documents_every_facade_name(site: Path) -> None:
    ids: dict[str, str] = {}
    for page in sorted((site / "reference").rglob("index.html")):
        for name in re.findall(r'id="torchsmith\.([A-Za-z_]\w*)"', page.read_text()):
            ids.setdefault(name, page.parent.name)
    missing = sorted(set(ts.__all__) - set(ids))
    assert not missing, f"the API reference lacks {missing} (docs/_site_hooks.py GROUPS places each facade name)"
    # Each name is rendered from its docstring: the first line of the docstring is on its page.
    for name in ("check", "summary", "save", "fit", "TorchsmithError"):
        first = inspect.getdoc(getattr(ts, name)).splitlines()[0]
        page = (site / "reference" / ids[name] / "index.html").read_text()
        assert html.escape(first.split("``")[0][:40], quote=False) in page, (name, first)


def test_lesson_notebook_is_rendered_with_its_committed_outputs(site: Path) -> None:
    page = (site / "examples" / "model_building" / "index.html").read_text()
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    streams = [line for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
               if o.get("output_type") == "stream" for line in "".join(o["text"]).splitlines()[:1] if line.strip()]
    assert len(streams) >= 10
    absent = [line for line in streams if html.escape(line.strip(), quote=False) not in page]
    assert not absent, f"notebook outputs missing from the page: {absent[:3]}"
    assert page.count("data:image/png") >= 1


def test_pages_link_repository_files_that_the_site_carries(site: Path) -> None:
    """A link that leaves docs/ (``../examples/lenet.yaml``) is rewritten to a copy inside the site."""
    spec_page = (site / "spec" / "index.html").read_text()
    assert 'href="../examples/lenet.yaml"' in spec_page
    assert (site / "examples" / "lenet.yaml").read_bytes() == (ROOT / "examples" / "lenet.yaml").read_bytes()


def test_nothing_on_the_site_is_fetched_from_a_font_service(site: Path) -> None:
    offenders = [p.relative_to(site).as_posix() for p in site.rglob("*.html") if "fonts.googleapis" in p.read_text()]
    assert not offenders, offenders


def test_readme_links_point_at_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    links = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)
             if not re.match(r"[a-z]+:", target)]
    assert len(links) >= 15
    missing = [link for link in links if link and not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
    assert text.index("docs/architecture.md") < len(text) // 10, "README.md links docs/architecture.md early"


def _documented_args(doc: str) -> list[str]:
    """The parameter names of a Google-style ``Args:`` section."""
    lines = doc.splitlines()
    if "Args:" not in lines:
        return []
    names = []
    for line in lines[lines.index("Args:") + 1:]:
        if line and not line.startswith(" "):
            break
        m = re.match(r"^    (\**\w+)( \(.*\))?:", line)
        if m:
            names.append(m.group(1).lstrip("*"))
    return names


def _facade_functions() -> list[str]:
    return [n for n in ts.__all__ if inspect.isfunction(inspect.unwrap(getattr(ts, n)))]


@pytest.mark.parametrize("name", _facade_functions())
def test_every_facade_function_documents_its_arguments_and_result(name: str) -> None:
    """The reference is generated from docstrings, so each function's says what every argument is and what
    comes back (Google style, as the API pages render it)."""
    fn = inspect.unwrap(getattr(ts, name))
    doc = inspect.getdoc(fn) or ""
    params = [p for p in inspect.signature(fn).parameters if p != "self"]
    undocumented = sorted(set(params) - set(_documented_args(doc)))
    assert not undocumented, f"ts.{name}'s docstring has no Args entry for {undocumented}"
    assert re.search(r"^(Returns|Yields):$", doc, re.M), f"ts.{name}'s docstring has no Returns: section"
