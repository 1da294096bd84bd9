"""An :class:`~torchsmith.ExportReport` as HTML: the file, the exporter and the parity table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torchsmith._format import format_bytes
from torchsmith.errors import format_size
from torchsmith.html._page import badge, esc, fragment, kv_table, notes_list, table

if TYPE_CHECKING:
    from torchsmith._export.report import ExportReport

__all__ = ["export_html", "export_body"]


def export_body(report: ExportReport) -> str:
    status = badge("PASSED", "ok") if report.passed else badge("FAILED", "error")
    shape = format_size(report.input_shape)
    size = format_bytes(report.file_size) + (f" in {len(report.files)} files" if len(report.files) > 1 else "")
    parts = [f'<div class="title">export {esc(report.format)} &rarr; <code>{esc(report.path)}</code> {status}</div>',
             kv_table([
                 ("exporter", report.exporter + (f", opset {report.opset}" if report.opset is not None else "")),
                 ("input", f"{shape} ({'dynamic' if report.dynamic_batch else 'static'} batch), seed {report.seed}"),
                 ("file size", size),
                 ("export time", f"{report.export_seconds:.2f} s"),
                 ("tolerance", f"atol {report.atol:g}, rtol {report.rtol:g} "
                               "(max|exported - eager| <= atol + rtol*max|eager|)"),
             ])]
    rows = []
    for c in report.checks:
        result = "ok" if c.passed else "FAIL" + (f" ({c.problem})" if c.problem else "")
        rows.append([str(c.batch_size), f"{c.max_abs_error:.3g}", f"{c.max_rel_error:.3g}", f"{c.eager_ms:.2f}",
                     f"{c.exported_ms:.2f}", f"{c.speedup:.2f}x", result])
    parts.append(table(["batch", "max abs err", "max rel err", "eager ms", "export ms", "speedup", "result"], rows,
                       right=range(6), row_classes=["" if c.passed else "failed" for c in report.checks]))
    parts.append(notes_list(report.notes))
    parts.append(notes_list(report.warnings, "exporter warning"))
    return "".join(parts)


def export_html(report: ExportReport) -> str:
    return fragment(export_body(report))
