"""Plain-text rendering of a :class:`~torchsmith.CheckReport`."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from torchsmith.errors import format_size

if TYPE_CHECKING:
    from torchsmith._check.report import CheckReport

__all__ = ["format_report"]

_MARK = {"error": "ERROR", "warning": "WARN ", "info": "INFO "}


def format_report(report: CheckReport, width: int = 100) -> str:
    """One block per finding (severity, id, module, what was seen, the fix), then a summary line."""
    size = format_size(report.input_size)
    lines = [f"check {report.model} at input {size}: {len(report.checks)} checks"]
    for f in report.sorted_findings():
        lines.append(f"{_MARK[f.severity]} {f.id} [{f.where}]")
        lines += textwrap.wrap(f.message, width=width, initial_indent="      ", subsequent_indent="      ")
        lines += textwrap.wrap("fix: " + f.fix, width=width, initial_indent="      ", subsequent_indent="           ")
    for name, why in report.skipped.items():
        lines.append(f"SKIP  {name}: {why}")
    for note in report.notes:
        lines.append(f"NOTE  {note}")
    n_e, n_w, n_i = len(report.errors), len(report.warnings), len(report.infos)
    verdict = "ok" if report.ok else "FAILED"
    total = report.seconds.get("total")
    timing = f" in {total:.1f} s" if total is not None else ""
    lines.append(f"{verdict}: {n_e} error(s), {n_w} warning(s), {n_i} note(s){timing}")
    return "\n".join(lines)
