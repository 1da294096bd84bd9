"""mkdocs hooks for torchsmith's documentation site (``hooks:`` in mkdocs.yml; not part of the package).

Three jobs, so that the pages read the same on GitHub and on the site:

- **The API reference is generated from the facade.** Every name in ``torchsmith.__all__`` gets a
  ``::: torchsmith.NAME`` block (mkdocstrings renders its docstring), on the page of the module it is imported
  from (``GROUPS``); a name from a module no group lists goes on "Other names", so a new facade name is in the
  reference the moment it is exported. ``src/torchsmith/__init__.py`` is read with ``ast``: nothing is imported.
- **Repository files linked from a page are part of the site.** A link that leaves ``docs/`` (``../examples/
  lenet.yaml``) works on GitHub; here the file is copied into the site under its repository path and the link
  rewritten to it. The lesson notebook (``examples/model_building.ipynb``) is one such file: mkdocs-jupyter renders
  it with the outputs it was committed with (nothing is executed). A link to a file that does not exist is left as
  written, so ``mkdocs build --strict`` fails on it.
- The reference's index lists those pages and their names where ``docs/reference/index.md`` says
  ``<!-- reference-pages: ... -->``.
- **Optional pages.** A nav entry in ``OPTIONAL_PAGES`` whose file does not exist yet is dropped, not an error.
"""

from __future__ import annotations

import ast
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
FACADE = ROOT / "src" / "torchsmith" / "__init__.py"
NOTEBOOK = "examples/model_building.ipynb"
OPTIONAL_PAGES = ("memory.md",)
REFERENCE_TITLE = "API reference"

#: (page, title, what the page holds, the modules whose names it documents), in nav order.
GROUPS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("models", "Models", "The zoo and its registry; any model by name, file, spec, checkpoint or `hf:`.",
     ("torchsmith.registry", "torchsmith.resolve")),
    ("init", "Initialisation", "Init policies and what they did.", ("torchsmith.init",)),
    ("views", "Views", "The four views of a module's state.", ("torchsmith.views",)),
    ("summary", "Summary and capture", "The meta-device summary; capturing features.",
     ("torchsmith._summary", "torchsmith._capture")),
    ("check", "The doctor", "`check`, its report, and the registry of checks and finding ids.",
     ("torchsmith._check",)),
    ("export", "Export", "Export and verify against eager.", ("torchsmith._export",)),
    ("memory", "Memory plan", "What one training step needs, per device, without allocating a weight.",
     ("torchsmith._memory",)),
    ("spec", "Specs", "Models as data: build, load, write, register layer types.", ("torchsmith.spec",)),
    ("checkpoint", "Checkpoints", "Safe checkpoints and state-dict loading.", ("torchsmith.checkpoint",)),
    ("train", "Training and evaluation", "fit, resume, evaluate.", ("torchsmith.train",)),
    ("data", "Data", "Datasets and the on-device loader.", ("torchsmith.data",)),
    ("demo", "Demo", "The end-to-end demo.", ("torchsmith.demo",)),
    ("errors", "Errors", "Every user-facing error is a `TorchsmithError`.", ("torchsmith.errors",)),
    ("version", "Version", "The installed version.", ("torchsmith._version",)),
)
OTHER = ("other", "Other names", "Facade names from modules no other page lists.")

_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def facade_names() -> dict[str, str]:
    """``torchsmith.__all__`` in its order, each name mapped to the module it is imported from."""
    tree = ast.parse(FACADE.read_text())
    homes: dict[str, str] = {}
    exported: list[str] = []
    for node in ast.walk(tree):  # imports under `if TYPE_CHECKING:` too (the facade imports lazily)
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                homes[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            exported = list(ast.literal_eval(node.value))
    return {name: homes.get(name, "torchsmith") for name in exported}


def reference_pages() -> dict[str, tuple[str, str, list[str]]]:
    """``reference/PAGE.md`` -> (title, what it holds, the facade names on it), pages without names left out."""
    page_of = {module: page for page, _, _, modules in GROUPS for module in modules}
    pages: dict[str, tuple[str, str, list[str]]] = {
        f"reference/{page}.md": (title, blurb, []) for page, title, blurb, _ in (*GROUPS, (*OTHER, ()))
    }
    for name, module in facade_names().items():
        pages[f"reference/{page_of.get(module, OTHER[0])}.md"][2].append(name)
    return {uri: entry for uri, entry in pages.items() if entry[2]}


def _page_text(title: str, blurb: str, names: list[str]) -> str:
    blocks = "\n\n".join(f"::: torchsmith.{name}" for name in names)
    return f"# {title}\n\n{blurb} Each name here is imported as `torchsmith.NAME` (`ts.NAME`).\n\n{blocks}\n"


def _drop_missing_optional(nav: list[Any], docs_dir: Path) -> list[Any]:
    out: list[Any] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            entry = {next(iter(entry)): _drop_missing_optional(value, docs_dir)}
        elif isinstance(value, str) and value in OPTIONAL_PAGES and not (docs_dir / value).exists():
            continue
        out.append(entry)
    return out


def on_config(config: Any) -> Any:
    docs_dir = Path(config.docs_dir)
    nav = _drop_missing_optional(config.nav or [], docs_dir)
    generated = [{title: uri} for uri, (title, _, _) in reference_pages().items()]
    for entry in nav:
        if isinstance(entry, dict) and REFERENCE_TITLE in entry:
            entry[REFERENCE_TITLE] = [*entry[REFERENCE_TITLE], *generated]
    config.nav = nav
    return config


def _outside_target(page_uri: str, link: str, docs_dir: Path) -> str | None:
    """The repository path a relative link from ``page_uri`` points to, where it leaves ``docs/``."""
    path = link.split("#", 1)[0]
    if not path or ":" in path or path.startswith("/"):
        return None
    target = (docs_dir / posixpath.dirname(page_uri) / path).resolve()
    if target.is_relative_to(docs_dir.resolve()) or not target.is_relative_to(ROOT):
        return None
    return target.relative_to(ROOT).as_posix()


@event_priority(100)  # before mkdocs-jupyter wraps the notebook as a page
def on_files(files: Files, config: Any) -> Files:
    docs_dir = Path(config.docs_dir)
    wanted = {NOTEBOOK}
    for file in list(files):
        if file.src_uri.endswith(".md") and file.abs_src_path:
            for m in _LINK.finditer(Path(file.abs_src_path).read_text()):
                target = _outside_target(file.src_uri, m.group(2), docs_dir)
                if target and not target.endswith(".md") and (ROOT / target).is_file():
                    wanted.add(target)
    for rel in sorted(wanted):
        files.append(File(rel, src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    for uri, (title, blurb, names) in reference_pages().items():
        files.append(File.generated(config, uri, content=_page_text(title, blurb, names)))
    return files


def _reference_list() -> str:
    return "\n".join(f"- [{title}]({posixpath.basename(uri)}): " + ", ".join(f"`{n}`" for n in names)
                     for uri, (title, _, names) in reference_pages().items())


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    docs_dir = Path(config.docs_dir)
    markdown = re.sub(r"<!-- reference-pages:.*?-->", lambda _: _reference_list(), markdown)

    def rewrite(m: re.Match[str]) -> str:
        target = _outside_target(page.file.src_uri, m.group(2), docs_dir)
        if target is None or files.get_file_from_path(target) is None:
            return m.group(0)
        anchor = m.group(2)[len(m.group(2).split("#", 1)[0]):]
        rel = posixpath.relpath(target, posixpath.dirname(page.file.src_uri) or ".")
        return f"{m.group(1)}{rel}{anchor}{m.group(3)}"

    return _LINK.sub(rewrite, markdown)
