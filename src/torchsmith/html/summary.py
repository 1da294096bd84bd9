"""A :class:`~torchsmith.ModelSummary` as HTML: the layer table, the shape flow and the totals.

The same rows, cells and totals as the terminal table (``summary.render``), so a notebook and
a terminal never disagree; the picture and the arithmetic have renderers of their own
(:func:`diagram_html`, :func:`explanation_html`), used by the report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchsmith._format import (
    SUMMARY_COLUMNS,
    format_shapes,
    human_bytes,
    human_count,
    summary_footer,
    summary_rows,
)
from torchsmith.html._page import Raw, badge, esc, fragment, kv_table, table

if TYPE_CHECKING:
    from torchsmith._summary.result import LayerRow, ModelSummary

__all__ = ["summary_html", "summary_body", "diagram_html", "explanation_html"]


def _label(r: LayerRow, label: str) -> Raw:
    """``conv1 (Conv2d)`` indented by depth, the type muted; the model itself in bold."""
    if r.name:
        suffix = f" ({r.type})"
        name = label[:-len(suffix)] if label.endswith(suffix) else label
        text = f'{esc(name)} <span class="muted">({esc(r.type)})</span>'
    else:
        text = f"<b>{esc(r.type)}</b>"
    return Raw(f'<span style="padding-left:{1.2 * r.depth:.1f}em">{text}</span>')


def _notes(r: LayerRow, repeat: int) -> Raw:
    parts = [badge(f"x{repeat}", "info")] if repeat > 1 else []
    if r.note:
        parts.append(Raw(esc(r.note)))
    if r.failed:
        parts.append(badge("FAILED", "error"))
    return Raw(" ".join(parts))


def summary_body(s: ModelSummary, depth: int | None = 3, collapse: bool = True) -> str:
    """The summary's HTML without the notebook wrapper (the report puts it in its own page)."""
    shown = summary_rows(s, depth, collapse)
    rows, classes = [], []
    for r, n, label in shown:
        rows.append([_label(r, label), format_shapes(r.input_shapes), format_shapes(r.output_shapes),
                     r.params if isinstance(r.params, str) else f"{r.params:,}", human_count(r.macs),
                     human_count(r.flops), "" if r.output_shapes is None else human_bytes(r.output_bytes),
                     _notes(r, n)])
        classes.append("failed" if r.failed else "")
    cols = SUMMARY_COLUMNS if any(row[-1] for row in rows) else SUMMARY_COLUMNS[:-1]
    rows = [row[:len(cols)] for row in rows]
    parts = [f'<div class="title">{esc(s.model)}, input {esc(s.input)}</div>']
    flow = s.flow(depth)
    if flow:
        parts.append(f'<div class="flow" title="shape flow">{esc(flow)}</div>')
    parts.append(table(cols, rows, right=(3, 4, 5, 6), row_classes=classes))
    pairs = []
    for line in summary_footer(s):
        key, sep, value = line.partition(": ")
        pairs.append((key, value) if sep else ("", line))
    parts.append(kv_table(pairs))
    return "".join(parts)


def summary_html(s: ModelSummary) -> str:
    """What ``ModelSummary._repr_html_`` shows in a notebook."""
    return fragment(summary_body(s, s.depth))


def _markup(obj: Any, *methods: str) -> str | None:
    """The first HTML/SVG an object offers through ``methods`` (``_repr_svg_``, ``to_svg`` ...), or None."""
    for name in methods:
        fn = getattr(obj, name, None)
        if callable(fn):
            out = fn()
            if isinstance(out, bytes):
                out = out.decode("utf-8")
            if isinstance(out, str) and out.strip():
                return out
    return None


def diagram_html(diagram: Any) -> str:
    """A network diagram (what ``ModelSummary.diagram()`` returns) as inline SVG, or its own HTML."""
    markup = _markup(diagram, "_repr_html_")  # the SVG inline, with the diagram's notes
    if markup is not None:
        return f'<div class="diagram">{markup}</div>'
    svg = _markup(diagram, "svg", "_repr_svg_")
    if svg is not None:
        start = svg.find("<svg")  # drop an XML prolog or doctype: inline SVG in HTML takes neither
        return f'<div class="diagram">{svg[start:] if start >= 0 else svg}</div>'
    return f'<pre class="mono">{esc(str(diagram))}</pre>'


def explanation_html(explanation: Any) -> str:
    """A layer-by-layer explanation (what ``ModelSummary.explain()`` returns) as HTML."""
    markup = _markup(explanation, "to_html", "_repr_html_")
    if markup is not None:
        return f'<div class="explain">{markup}</div>'
    return f'<div class="explain"><pre>{esc(str(explanation))}</pre></div>'
