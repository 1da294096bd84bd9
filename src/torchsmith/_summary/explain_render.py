"""Rendering an :class:`~torchsmith._summary.explain.Explanation`: plain text, markdown, HTML."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from torchsmith._format import format_shape
from torchsmith.errors import ConfigError

if TYPE_CHECKING:
    from torchsmith._summary.explain import Explanation, LayerExplanation

__all__ = ["render_explanation", "FORMATS"]

FORMATS = ("text", "markdown", "html")


def render_explanation(ex: Explanation, format: str = "text") -> str:
    if format == "text":
        return _text(ex)
    if format == "markdown":
        return _markdown(ex)
    if format == "html":
        return _html(ex)
    raise ConfigError(f"unknown explanation format {format!r}; use one of {', '.join(FORMATS)}")


def _shape(shape: object) -> str:
    return "?" if shape is None else format_shape(shape)


def _lines(e: LayerExplanation) -> list[str]:
    """The formulas, the counts, the notes and the receptive field of one layer, one per line."""
    out = list(e.shape_formulas) + list(e.param_formulas)
    if not e.shape_ok:
        out.append(f"!! the formula gives {_shape(e.computed_shape)} but the trace gives {_shape(e.output_shape)}")
    if not e.params_ok:
        out.append(f"!! the formula gives {e.computed_params} params but the layer has {e.params}")
    out += [f"why: {n}" if e.kind == "join" else f"note: {n}" for n in e.notes]
    if e.receptive_field is not None and e.main_path and e.receptive_field.formula != "unchanged":
        rf = e.receptive_field
        out.append(f"receptive field: {rf.text()} ({rf.formula})")
    return out


def _header(e: LayerExplanation) -> str:
    flow = f"{_shape(e.input_shape)} -> {_shape(e.output_shape)}"
    return f"{e.name} [{e.what}]: {flow}"


def _footer(ex: Explanation) -> list[str]:
    bad = ex.mismatches
    checked = sum(1 for e in ex.layers if e.computed_shape is not None)
    counted = sum(1 for e in ex.layers if e.computed_params is not None)
    if bad:
        return [ex.params_sum(), f"{len(bad)} layer(s) disagree with the trace: {', '.join(e.name for e in bad)}"]
    return [ex.params_sum(),
            f"checked: {checked} computed shapes equal the traced ones, {counted} parameter counts equal numel"]


def _text(ex: Explanation) -> str:
    out = [f"The arithmetic of {ex.model}, input {ex.input}", ""]
    for e in ex.layers:
        out.append(_header(e))
        out += [f"    {line}" for line in _lines(e)]
    rfs = ex.receptive_fields
    if rfs:
        out += ["", "Receptive field along the main path (input pixels one output position sees):"]
        width = max(len(e.name) for e in rfs)
        out += [f"    {e.name:<{width}}  {e.receptive_field.text()}" for e in rfs if e.receptive_field]
    out += [""] + _footer(ex) + [f"note: {n}" for n in ex.notes]
    return "\n".join(out)


def _markdown(ex: Explanation) -> str:
    out = [f"### The arithmetic of {ex.model}, input {ex.input}", ""]
    for e in ex.layers:
        out.append(f"**{e.name}** `{e.what}`: {_shape(e.input_shape)} → {_shape(e.output_shape)}")
        out.append("")
        out += [f"- `{line}`" for line in _lines(e)]
        out.append("")
    out += _footer(ex) + [f"note: {n}" for n in ex.notes]
    return "\n".join(out) + "\n"


_CSS = (".torchsmith-explain table{border-collapse:collapse;font-size:13px}"
        ".torchsmith-explain td,.torchsmith-explain th{border-bottom:1px solid #ddd;padding:4px 8px;"
        "text-align:left;vertical-align:top}.torchsmith-explain code{white-space:pre}"
        ".torchsmith-explain .bad{color:#b00020}.torchsmith-explain .muted{color:#666}")


def _html(ex: Explanation) -> str:
    esc = html.escape
    rows = []
    for e in ex.layers:
        lines = "<br>".join(f'<code{" class=bad" if line.startswith("!!") else ""}>{esc(line)}</code>'
                            for line in _lines(e))
        rows.append(f"<tr><td><b>{esc(e.name)}</b><br><span class=muted>{esc(e.what)}</span></td>"
                    f"<td>{esc(_shape(e.input_shape))} → {esc(_shape(e.output_shape))}</td><td>{lines}</td></tr>")
    footer = "".join(f"<p>{esc(line)}</p>" for line in _footer(ex) + [f"note: {n}" for n in ex.notes])
    return (f'<div class="torchsmith-explain"><style>{_CSS}</style>'
            f"<h3>The arithmetic of {esc(ex.model)}, input {esc(ex.input)}</h3>"
            "<table><tr><th>layer</th><th>shape</th><th>formulas</th></tr>" + "".join(rows) + "</table>"
            + footer + "</div>")
