"""How weights were set, as HTML: an :class:`~torchsmith.init.InitReport` and a checkpoint's ``LoadReport``."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from torchsmith.errors import format_size
from torchsmith.html._page import badge, esc, fragment, table

if TYPE_CHECKING:
    from torchsmith.checkpoint import LoadReport
    from torchsmith.init import InitReport

__all__ = ["init_html", "init_body", "load_html", "load_body"]


def init_body(report: InitReport) -> str:
    """Every tensor, the initialiser that set it and the rule that chose it; then what no rule covered."""
    rows = []
    for r in report.records:
        args = ", ".join(f"{k}={v}" for k, v in r.args.items())
        rows.append([r.name, format_size(r.shape), f"{r.scheme}({args})" if args else r.scheme,
                     r.rule])
    state = badge("every parameter covered", "ok") if report.complete else badge("parameters left uncovered", "error")
    parts = [f'<div class="title">Initialisation: {len(report.records)} tensors {state}</div>',
             table(["tensor", "shape", "initialiser", "rule"], rows)]
    if report.uncovered:
        parts.append("<h3>Not covered by any rule (left as they were)</h3>")
        parts.append(table(["tensor", "why"], [[n, w] for n, w in report.uncovered]))
    return "".join(parts)


def init_html(report: InitReport) -> str:
    return fragment(init_body(report))


def load_body(report: LoadReport) -> str:
    """The same lines as ``str(report)``: counts, notes, prefixes, remaps, missing/unexpected keys, mismatches."""
    state = badge("loaded", "ok") if report.loaded else badge("not loaded", "muted")
    check = {True: "sha256 verified", None: "no hash recorded", False: "hash not checked"}[report.verified]
    fit = badge("everything matched", "ok") if report.ok else badge("does not match", "warning")
    parts = [f'<div class="title">{esc(report.source)} &rarr; {esc(report.model)} {state} {fit}</div>',
             f"<p>{esc(report.summary())} ({esc(check)})</p>"]
    rows: list[list[str]] = [["note", n, ""] for n in report.notes]
    rows += [["prefix", what, cause] for what, cause in report.prefixes]
    for cause in Counter(r.cause for r in report.remapped):
        if not cause.startswith("stripped") and not cause.startswith("added"):
            rows += [["remapped", f"{r.source} -> {r.target}", cause] for r in report.remapped if r.cause == cause]
    for label, items in (("missing", report.missing), ("unexpected", report.unexpected)):
        rows += [[label, k, f"closest: {report.suggestions[k]}" if k in report.suggestions else ""] for k in items]
    rows += [["shape mismatch", m.name, f"source {list(m.source_shape)} vs model {list(m.model_shape)}"]
             for m in report.shape_mismatched]
    rows += [["tied", n, "filled through a tied (shared) tensor"] for n in report.tied]
    rows += [["cast", n, f"{a} -> {b}"] for n, a, b in report.cast]
    rows += [["skipped", n, "kept the model's values"] for n in report.skipped]
    rows += [["re-initialised", n, f"with {report.init_policy}"] for n in report.reinitialised]
    if rows:
        parts.append(table(["what", "tensor", "detail"], rows,
                           row_classes=["failed" if r[0] in ("missing", "unexpected", "shape mismatch") else ""
                                        for r in rows]))
    return "".join(parts)


def load_html(report: LoadReport) -> str:
    return fragment(load_body(report))
