"""A :class:`~torchsmith.CheckReport` as HTML: each finding with its evidence and its fix.

The same blocks as the terminal report (``check.render``): severity, id, module, what was
seen, the fix; then the skipped checks and the verdict. With matplotlib, the per-layer
activation and gradient statistics come along as an embedded PNG (the ``--plot`` figure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchsmith.errors import format_size
from torchsmith.html._page import Raw, badge, esc, fragment, img, table
from torchsmith.html.plots import layer_stats_png

if TYPE_CHECKING:
    from torchsmith._check.report import CheckReport, Finding

__all__ = ["check_html", "check_body", "finding_html"]

_LABEL = {"error": "ERROR", "warning": "WARNING", "info": "NOTE"}


def finding_html(f: Finding) -> str:
    return (f'<div class="finding {esc(f.severity)}"><div class="head">{badge(_LABEL[f.severity], f.severity)} '
            f'<code>{esc(f.id)}</code> <span class="where">[{esc(f.where)}]</span></div>'
            f"<p>{esc(f.message)}</p><p class=\"fix\"><b>fix:</b> {esc(f.fix)}</p></div>")


def check_body(report: CheckReport, *, plot: bool = True) -> str:
    size = format_size(report.input_size)
    parts = [f'<div class="title">check {esc(report.model)} at input {esc(size)}: {len(report.checks)} checks</div>']
    findings = report.sorted_findings()
    parts += [finding_html(f) for f in findings]
    if report.skipped:
        parts.append(table(["skipped check", "why"], [[name, why] for name, why in report.skipped.items()]))
    n_e, n_w, n_i = len(report.errors), len(report.warnings), len(report.infos)
    total = report.seconds.get("total")
    timing = f" in {total:.1f} s" if total is not None else ""
    verdict = "ok" if report.ok else "FAILED"
    parts.append(f'<div class="verdict {"ok" if report.ok else "failed"}">{verdict}: {n_e} error(s), '
                 f"{n_w} warning(s), {n_i} note(s){esc(timing)}</div>")
    png = layer_stats_png(report) if plot else None
    if png is not None:
        parts.append(Raw(f"<h3>Activation and gradient statistics at initialisation</h3>"
                         f"{img(png, f'per-layer statistics of {report.model}')}"))
    return "".join(parts)


def check_html(report: CheckReport) -> str:
    """What ``CheckReport._repr_html_`` shows in a notebook."""
    return fragment(check_body(report))
