"""Rendering a ModelSummary (and any simple table): plain text, rich, markdown, csv, json.

Plain text is the golden-tested form and what a pipe gets; rich is for terminals.
Repeated identical sibling blocks (a transformer's 24 layers) collapse into one
row marked "xN" in the table forms; csv and json always hold every row.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

from torchsmith.errors import ConfigError
from torchsmith._summary.result import LayerRow, ModelSummary, Num

__all__ = ["render_summary", "rich_summary", "render_table", "summary_rows", "FORMATS",
           "human_count", "human_bytes", "format_shapes"]

FORMATS = ("text", "table", "markdown", "csv", "json")
COLUMNS = ["Layer (type)", "Input shape", "Output shape", "Params", "MACs", "FLOPs", "Output bytes", "Notes"]


# --------------------------------------------------------------------------- numbers and shapes
def human_count(n: Num) -> str:
    """1317600 -> "1.32M"; in a formula each long number is shortened: "8178368512*B" -> "8.18G*B"."""
    if isinstance(n, str):
        return re.sub(r"\d{5,}", lambda m: human_count(int(m.group())), n)
    for div, unit in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def human_bytes(n: Num) -> str:
    if isinstance(n, str):
        return f"{n} bytes"
    for div, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def _commas(n: Num) -> str:
    return n if isinstance(n, str) else f"{n:,}"


def format_shapes(shapes: Any) -> str:
    """(1, 6, 28, 28) -> "[1, 6, 28, 28]"; lists and dicts keep their structure."""
    if shapes is None:
        return ""
    if isinstance(shapes, tuple):
        return "[" + ", ".join(str(d) for d in shapes) + "]"
    if isinstance(shapes, list):
        if len(shapes) == 1:
            return format_shapes(shapes[0])
        return "(" + ", ".join(format_shapes(s) for s in shapes) + ")"
    if isinstance(shapes, dict):
        return "{" + ", ".join(f"{k}: {format_shapes(v)}" for k, v in shapes.items()) + "}"
    return str(shapes)


# --------------------------------------------------------------------------- rows
def _children(rows: Sequence[LayerRow]) -> dict[int | None, list[int]]:
    kids: dict[int | None, list[int]] = {}
    for i, r in enumerate(rows):
        kids.setdefault(r.parent, []).append(i)
    return kids


def _signature(i: int, rows: Sequence[LayerRow], kids: dict[int | None, list[int]]) -> tuple[Any, ...]:
    r = rows[i]
    own = (r.type, repr(r.input_shapes), repr(r.output_shapes), r.params, r.flops, r.call > 1, r.failed)
    return own + tuple(_signature(k, rows, kids) for k in kids.get(i, []))


def summary_rows(s: ModelSummary, depth: int | None = 3, collapse: bool = True) -> list[tuple[LayerRow, int, str]]:
    """Rows to show: (row, repeat count, label), down to ``depth``, identical sibling runs collapsed."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ConfigError(f"depth must be an int, 0 or more (or None for every level), not {depth!r}")
    rows = s.rows
    kids = _children(rows)
    out: list[tuple[LayerRow, int, str]] = []

    def label(r: LayerRow) -> str:
        return f"{r.name} ({r.type})" if r.name else r.type

    def walk(i: int) -> None:
        r = rows[i]
        if depth is not None and r.depth > depth:
            return
        out.append((r, 1, label(r)))
        children = kids.get(i, [])
        j = 0
        while j < len(children):
            run = 1
            if collapse:
                sig = _signature(children[j], rows, kids)
                while j + run < len(children) and _signature(children[j + run], rows, kids) == sig:
                    run += 1
            if run > 1 and (depth is None or rows[children[j]].depth <= depth):
                first, last = rows[children[j]], rows[children[j + run - 1]]
                tail = last.name.rsplit(".", 1)[-1]
                name = f"{first.name}-{tail}" if tail != last.name or "." not in first.name else first.name
                before = len(out)
                walk(children[j])
                out[before] = (first, run, f"{name} ({first.type})")
            else:
                for k in children[j:j + run]:
                    walk(k)
            j += run

    for root in kids.get(None, []):
        walk(root)
    return out


def _cells(r: LayerRow, repeat: int, label: str, indent: str) -> list[str]:
    notes = [n for n in (f"x{repeat}" if repeat > 1 else "", r.note, "FAILED" if r.failed else "") if n]
    return [indent * r.depth + label, format_shapes(r.input_shapes), format_shapes(r.output_shapes),
            _commas(r.params), human_count(r.macs), human_count(r.flops),
            "" if r.output_shapes is None else human_bytes(r.output_bytes),
            "; ".join(notes)]


def footer(s: ModelSummary) -> list[str]:
    m = s.memory
    lines = [
        f"Total parameters: {s.total_params:,}",
        f"Trainable parameters: {s.trainable_params:,}",
        f"Non-trainable parameters: {s.non_trainable_params:,}",
        f"Buffers: {s.buffer_elements:,} elements",
        f"Forward FLOPs: {_commas(s.forward_flops)} ({human_count(s.forward_flops)}; "
        f"MACs {human_count(s.forward_macs)})",
        f"Training FLOPs (forward + backward): {_commas(s.training_flops)} ({human_count(s.training_flops)})",
        f"Memory ({m.dtype}): parameters {human_bytes(m.parameters)}, buffers {human_bytes(m.buffers)}, "
        f"gradients {human_bytes(m.gradients)}, SGD momentum {human_bytes(m.sgd_momentum)}, "
        f"Adam state {human_bytes(m.adam_state)}, activations {human_bytes(m.activations)}",
    ]
    if s.uncounted_ops:
        ops = sorted(s.uncounted_ops.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("Not counted (no FLOP formula): " + ", ".join(f"{k} x{v}" for k, v in ops))
    lines.append(f"Ran on: {s.ran_on}" + ("; symbols traced at " + ", ".join(
        f"{k}={v}" for k, v in s.symbols.items()) if s.symbols else ""))
    lines += [f"Note: {n}" for n in s.notes]
    if s.error:
        lines.append(f"Stopped: {s.error}")
    return lines


# --------------------------------------------------------------------------- formats
def render_table(columns: Sequence[str], rows: Sequence[Sequence[str]], format: str = "text",
                 right: Sequence[int] = ()) -> str:
    """A simple table as aligned text, markdown or csv (json callers build their own dicts)."""
    if format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
        return buf.getvalue().rstrip("\n")
    if format == "markdown":
        esc = [[c.replace("|", "\\|") for c in row] for row in rows]
        head = "| " + " | ".join(columns) + " |"
        rule = "|" + "|".join("---:" if i in right else "---" for i in range(len(columns))) + "|"
        return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in esc])
    if format not in ("text", "table"):
        raise ConfigError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(columns).rstrip(), rule] + [line(r).rstrip() for r in rows] + [rule])


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
    cells = [_cells(r, n, label, indent) for r, n, label in summary_rows(s, depth, collapse)]
    cols = COLUMNS if any(c[-1] for c in cells) else COLUMNS[:-1]
    cells = [c[:len(cols)] for c in cells]
    table = render_table(cols, cells, format, right=(3, 4, 5, 6))
    foot = footer(s)
    head = f"{s.model}, input {s.input}"
    if format == "markdown":
        return "\n".join([f"**{head}**", "", table, ""] + [f"- {line}" for line in foot])
    return "\n".join([head, table] + foot)


def rich_summary(s: ModelSummary, depth: int | None = 3, collapse: bool = True) -> Any:
    """A rich renderable (a Group of the table and the totals) for terminals."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{s.model}, input {s.input}", title_justify="left", show_lines=False)
    cells = [_cells(r, n, label, "  ") for r, n, label in summary_rows(s, depth, collapse)]
    cols = COLUMNS if any(c[-1] for c in cells) else COLUMNS[:-1]
    for i, col in enumerate(cols):
        table.add_column(col, justify="right" if i in (3, 4, 5, 6) else "left", no_wrap=i == 0)
    for (r, _n, _label), row in zip(summary_rows(s, depth, collapse), cells):
        table.add_row(*row[:len(cols)], style="red" if r.failed else None)
    return Group(table, Text("\n".join(footer(s))))
