"""Rendering a ModelSummary: plain text, rich, markdown, csv, json.

Plain text is the golden-tested form and what a pipe gets; rich is for terminals.
Repeated identical sibling blocks (a transformer's 24 layers) collapse into one
row marked "xN" in the table forms; csv and json always hold every row. The rows, cells and
totals come from ``torchsmith._format``, which the HTML rendering shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchsmith._format import (
    SUMMARY_COLUMNS,
    TABLE_FORMATS,
    format_shapes,
    human_bytes,
    human_count,
    render_table,
    summary_cells,
    summary_footer,
    summary_rows,
)
from torchsmith.errors import ConfigError

if TYPE_CHECKING:
    from torchsmith._summary.result import ModelSummary

__all__ = ["render_summary", "rich_summary", "render_table", "summary_rows", "FORMATS",
           "human_count", "human_bytes", "format_shapes"]

FORMATS = TABLE_FORMATS


# --------------------------------------------------------------------------- formats
def render_summary(s: ModelSummary, format: str = "text", depth: int | None = 3, collapse: bool = True) -> str:
    if format == "json":
        return s.to_json()
    if format == "csv":
        cols = ["name", "type", "depth", "call", "input_shapes", "output_shapes", "params", "trainable", "buffers",
                "macs", "flops", "self_flops", "output_bytes", "note", "failed"]
        rows = [[r.name, r.type, str(r.depth), str(r.call), format_shapes(r.input_shapes),
                 format_shapes(r.output_shapes), str(r.params), str(r.trainable), str(r.buffers), str(r.macs),
                 str(r.flops), str(r.self_flops), str(r.output_bytes), r.note, str(r.failed)] for r in s.rows]
        return render_table(cols, rows, "csv")
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    indent = "\u00a0\u00a0" if format == "markdown" else "  "
    cells = [summary_cells(r, n, label, indent) for r, n, label in summary_rows(s, depth, collapse)]
    cols = SUMMARY_COLUMNS if any(c[-1] for c in cells) else SUMMARY_COLUMNS[:-1]
    cells = [c[:len(cols)] for c in cells]
    table = render_table(cols, cells, format, right=(3, 4, 5, 6))
    foot = summary_footer(s)
    head = f"{s.model}, input {s.input}"
    if format == "markdown":
        return "\n".join([f"**{head}**", "", table, ""] + [f"- {line}" for line in foot])
    return "\n".join([head, table] + foot)


def rich_summary(s: ModelSummary, depth: int | None = 3, collapse: bool = True) -> Any:
    """A rich renderable (a Group of the table and the totals) for terminals."""
    # rich costs ~0.1 s to import: only a terminal's table pays for it, never summary() or str().
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{s.model}, input {s.input}", title_justify="left", show_lines=False)
    cells = [summary_cells(r, n, label, "  ") for r, n, label in summary_rows(s, depth, collapse)]
    cols = SUMMARY_COLUMNS if any(c[-1] for c in cells) else SUMMARY_COLUMNS[:-1]
    for i, col in enumerate(cols):
        table.add_column(col, justify="right" if i in (3, 4, 5, 6) else "left", no_wrap=i == 0)
    for (r, _n, _label), row in zip(summary_rows(s, depth, collapse), cells):
        table.add_row(*row[:len(cols)], style="red" if r.failed else None)
    return Group(table, Text("\n".join(summary_footer(s))))
