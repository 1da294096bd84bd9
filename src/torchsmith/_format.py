"""Small formatting helpers shared by the text and the HTML renderings: numbers, shapes, tables, dtypes.

Pure functions of plain values, so that every renderer (``_summary.render``, ``html``, ``views``)
can import them from below: the summary table's rows and totals are worked out here once, so a
terminal and a notebook never disagree. Nothing of torchsmith is imported but its errors; the
summary's types are named for annotations only.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from torchsmith.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from torchsmith._summary.result import LayerRow, ModelSummary, Num

__all__ = ["human_count", "human_bytes", "format_bytes", "commas", "format_shape", "format_shapes", "render_table",
           "TABLE_FORMATS", "SUMMARY_COLUMNS", "summary_rows", "summary_cells", "summary_footer", "parse_dtype"]

#: The formats a table is rendered in (json callers build their own dicts).
TABLE_FORMATS = ("text", "table", "markdown", "csv", "json")


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


def format_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable; keeps type checkers content


def commas(n: Num) -> str:
    """1317600 -> "1,317,600"; a formula stays as it is."""
    return n if isinstance(n, str) else f"{n:,}"


def format_shape(shape: Any) -> str:
    """The batch dim dropped, dims joined by x: (1, 6, 28, 28) -> "6x28x28"; (1, 400) -> "400"."""
    dims = [str(d) for d in tuple(shape)[1:]]
    if not dims:
        return "scalar" if not shape else str(shape[0])
    return "x".join(d if d.replace("_", "").isalnum() else f"({d})" for d in dims)


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


# --------------------------------------------------------------------------- tables
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
        raise ConfigError(f"unknown format {format!r}; use one of {', '.join(TABLE_FORMATS)}")
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(columns).rstrip(), rule] + [line(r).rstrip() for r in rows] + [rule])


# --------------------------------------------------------------------------- the summary's table
SUMMARY_COLUMNS = ["Layer (type)", "Input shape", "Output shape", "Params", "MACs", "FLOPs", "Output bytes", "Notes"]


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


def summary_cells(r: LayerRow, repeat: int, label: str, indent: str) -> list[str]:
    """One shown row of the summary's table as text cells, one per :data:`SUMMARY_COLUMNS`."""
    notes = [n for n in (f"x{repeat}" if repeat > 1 else "", r.note, "FAILED" if r.failed else "") if n]
    return [indent * r.depth + label, format_shapes(r.input_shapes), format_shapes(r.output_shapes),
            commas(r.params), human_count(r.macs), human_count(r.flops),
            "" if r.output_shapes is None else human_bytes(r.output_bytes),
            "; ".join(notes)]


def summary_footer(s: ModelSummary) -> list[str]:
    """The summary's totals, memory estimate, notes and error, one line each."""
    m = s.memory
    lines = [
        f"Total parameters: {s.total_params:,}",
        f"Trainable parameters: {s.trainable_params:,}",
        f"Non-trainable parameters: {s.non_trainable_params:,}",
        f"Buffers: {s.buffer_elements:,} elements",
        f"Forward FLOPs: {commas(s.forward_flops)} ({human_count(s.forward_flops)}; "
        f"MACs {human_count(s.forward_macs)})",
        f"Training FLOPs (forward + backward): {commas(s.training_flops)} ({human_count(s.training_flops)})",
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


# --------------------------------------------------------------------------- dtypes
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
    "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
    "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}


def parse_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """``"bf16"`` -> ``torch.bfloat16``; a dtype passes through; unknown names get close matches."""
    if value is None or isinstance(value, torch.dtype):
        return value
    key = str(value).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise UnknownNameError("dtype", str(value), _DTYPES)
    return _DTYPES[key]
