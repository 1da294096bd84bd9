"""The four structural views as HTML: a :class:`~torchsmith.views.TableView` (parameters, buffers,
hooks) as a table, and a :class:`~torchsmith.views.ModuleNode` tree as nested lists."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from torchsmith.html._page import esc, fragment, table

if TYPE_CHECKING:
    from torchsmith.views import ModuleNode, TableView

__all__ = ["table_view_html", "table_view_body", "tree_html", "tree_body"]

_NUMERIC = {"numel", "mean", "std", "min", "max", "zeros"}


def _cell(v: Any) -> str:
    """The terminal's cell format (``views._cell``): 4 significant digits, thousands separators, [a, b]."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, tuple):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def table_view_body(view: TableView) -> str:
    title = f'<div class="title">{esc(view.title)}</div>'
    if not view.records:
        return title + f"<p>{esc(view.empty)}</p>"
    cols = [f.name for f in fields(view.records[0])]
    rows = [[_cell(getattr(r, c)) for c in cols] for r in view.records]
    return title + table(cols, rows, right=[i for i, c in enumerate(cols) if c in _NUMERIC])


def table_view_html(view: TableView) -> str:
    return fragment(table_view_body(view))


def tree_body(root: ModuleNode, max_depth: int | None = None) -> str:
    """Nested lists: each module's name, type and parameters (its own and everything below it)."""

    def item(node: ModuleNode, depth: int) -> str:
        name = esc(node.name) if depth else f"<b>{esc(node.type)}</b>"
        kind = f' <span class="type">{esc(node.type)}</span>' if depth else ""
        if node.shared_with is not None:
            return f'<li>{name}{kind} <span class="count">shared with {esc(node.shared_with or "(root)")}</span></li>'
        count = f' <span class="count">{node.total_params:,}</span>'
        kids = ""
        if node.children and (max_depth is None or depth < max_depth):
            kids = "<ul>" + "".join(item(c, depth + 1) for c in node.children) + "</ul>"
        return f"<li>{name}{kind}{count}{kids}</li>"

    return (f'<ul class="tree">{item(root, 0)}</ul>'
            f"<p>Total parameters: {root.total_params:,}</p>")


def tree_html(root: ModuleNode) -> str:
    return fragment(tree_body(root))
