"""The result of an export: what was written, how closely it matches eager, and how fast it runs.

:class:`ExportReport` is plain data; ``str(report)`` renders it as text and
:meth:`ExportReport.to_dict` as JSON-ready data. Nothing here prints.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from torchsmith._format import format_bytes
from torchsmith.errors import ExportError, format_size
from torchsmith.html.export import export_html

__all__ = ["BatchCheck", "ExportReport", "ExportVerificationError", "format_bytes"]


@dataclass(frozen=True)
class BatchCheck:
    """The exported model against eager at one batch size, on the same fresh random inputs.

    ``max_rel_error`` is the largest absolute difference divided by the largest
    eager magnitude of that output: elementwise ratios explode on outputs near
    zero and say nothing, while this one reads as "how big is the error next to
    the output". ``passed`` means ``max|exported - eager| <= atol + rtol * max|eager|``
    for every output tensor. The tolerance scales with the output, not with each
    element, because float32 rounding does: a randomly initialised ResNet-152 has
    logits near 1e4, and an element near zero carries the same absolute rounding
    error as its large neighbours.
    """

    batch_size: int
    max_abs_error: float
    max_rel_error: float
    passed: bool
    eager_ms: float  # median wall time of one eager forward, milliseconds
    exported_ms: float  # median wall time of one forward of the loaded export, same inputs
    problem: str = ""  # set when the outputs cannot be compared at all (shape, count, NaN)

    @property
    def speedup(self) -> float:
        """Eager time over exported time: above 1 means the export runs faster."""
        return self.eager_ms / self.exported_ms if self.exported_ms > 0 else float("nan")


@dataclass
class ExportReport:
    """Everything :func:`torchsmith.export` did and found."""

    format: str  # "exported", "onnx" or "torchscript"
    path: str  # where the verified file lies (or lay, before a failed check removed it)
    exporter: str  # the call that produced it, e.g. "torch.export.export (non-strict)"
    input_shape: tuple[int, ...]  # the example input, batch dimension first
    dynamic_batch: bool
    atol: float
    rtol: float
    checks: list[BatchCheck]
    files: list[str] = field(default_factory=list)  # every file written (ONNX may add a .data file)
    file_size: int = 0  # bytes, all files together
    export_seconds: float = 0.0  # export and save, without verification
    opset: int | None = None
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the exporter's own warnings, de-duplicated

    @property
    def passed(self) -> bool:
        """True when every batch size matched eager within tolerance."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def batch_sizes(self) -> list[int]:
        return [c.batch_size for c in self.checks]

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs_error for c in self.checks), default=float("nan"))

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.checks), default=float("nan"))

    @property
    def failures(self) -> list[BatchCheck]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``json.dumps(report.to_dict())``); a non-finite number is None."""
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["passed"] = self.passed
        out["max_abs_error"] = self.max_abs_error
        out["max_rel_error"] = self.max_rel_error
        for check, raw in zip(self.checks, out["checks"]):
            raw["speedup"] = check.speedup
        return _finite(out)

    def summary_line(self) -> str:
        """One line naming the worst error of every failing batch size, for an error message."""
        parts = []
        for c in self.failures:
            if c.problem:
                parts.append(f"batch {c.batch_size}: {c.problem}")
            else:
                parts.append(f"batch {c.batch_size}: max abs error {c.max_abs_error:.3g} (atol {self.atol:g}), "
                             f"max rel error {c.max_rel_error:.3g} (rtol {self.rtol:g})")
        return "; ".join(parts)

    def __str__(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        shape = format_size(self.input_shape)
        lines = [
            f"export {self.format} -> {self.path}: {status}",
            f"  exporter     {self.exporter}" + (f", opset {self.opset}" if self.opset is not None else ""),
            f"  input        {shape} ({'dynamic' if self.dynamic_batch else 'static'} batch), seed {self.seed}",
            f"  file size    {format_bytes(self.file_size)}"
            + (f" in {len(self.files)} files" if len(self.files) > 1 else ""),
            f"  export time  {self.export_seconds:.2f} s",
            f"  tolerance    atol {self.atol:g}, rtol {self.rtol:g} (max|exported - eager| <= atol + rtol*max|eager|)",
            "",
            f"  {'batch':>5}  {'max abs err':>11}  {'max rel err':>11}  {'eager ms':>9}  {'export ms':>9}"
            f"  {'speedup':>7}  result",
        ]
        for c in self.checks:
            result = "ok" if c.passed else "FAIL" + (f" ({c.problem})" if c.problem else "")
            lines.append(f"  {c.batch_size:>5}  {c.max_abs_error:>11.3g}  {c.max_rel_error:>11.3g}  "
                         f"{c.eager_ms:>9.2f}  {c.exported_ms:>9.2f}  {c.speedup:>6.2f}x  {result}")
        if self.notes:
            lines.append("")
            lines += [f"  note: {n}" for n in self.notes]
        if self.warnings:
            lines += [f"  exporter warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return export_html(self)


class ExportVerificationError(ExportError):
    """The export was written but does not compute what the eager model does.

    ``report`` holds the numbers; the file has been removed (or kept as
    ``<path>.failed`` when asked for).
    """

    def __init__(self, message: str, report: ExportReport) -> None:
        super().__init__(message)
        self.report = report


def _finite(value: Any) -> Any:
    """NaN and infinities become None: JSON has no spelling for them (``json.dumps`` would write invalid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
