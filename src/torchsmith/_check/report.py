"""What ``check`` finds: :class:`Finding`, :class:`LayerStat` and :class:`CheckReport`.

Every finding id is stable and registered with its severity and the check that
produces it (:mod:`torchsmith._check.registry`, listed by ``ts.list_findings()``);
the README repeats the table. Rendering lives in :mod:`torchsmith._check.render`,
:mod:`torchsmith._check.plot` and :mod:`torchsmith.html.check`, which import these
types only for type checking, so these stay plain data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torchsmith._check.plot import plot_layer_stats
from torchsmith._check.registry import Severity
from torchsmith._check.render import format_report
from torchsmith.html.check import check_html

__all__ = ["Finding", "LayerStat", "CheckReport", "Severity"]


@dataclass
class Finding:
    """One problem (or note) about the model, with the evidence and the fix.

    Attributes:
        id: A registered finding id, e.g. ``"input-mutated"`` (:func:`torchsmith.list_findings`); stable.
        severity: ``"error"``, ``"warning"`` or ``"info"``; only errors make ``CheckReport.ok`` false.
        module: The dotted module path (``""`` is the model itself; ``where`` shows ``(model)``).
        message: What was observed, with numbers and shapes.
        fix: What to change.
        observed: The numbers, machine-readable.
    """

    id: str  # a registered finding id, e.g. "input-mutated" (ts.list_findings())
    severity: Severity
    module: str  # dotted module path ("" is the model itself)
    message: str  # what was observed, with numbers and shapes
    fix: str  # what to change
    observed: dict[str, Any] = field(default_factory=dict)  # the numbers, machine-readable

    @property
    def where(self) -> str:
        """The module path for humans: ``(model)`` for the root."""
        return self.module or "(model)"


@dataclass
class LayerStat:
    """Activation and gradient statistics of one module call at initialisation (train mode)."""

    module: str
    type: str
    shape: tuple[int, ...]
    act_mean: float
    act_std: float
    zero_frac: float  # fraction of exact zeros in the output
    grad_std: float | None = None  # std of d(loss)/d(output); None when no gradient reached it


def _json_safe(value: Any) -> Any:
    """NaN and Inf are not JSON: write them as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _finding_key(f: Finding) -> tuple[int, int]:
    return ({"error": 0, "warning": 1, "info": 2}[f.severity], 0)


@dataclass
class CheckReport:
    """Everything ``check`` found, which checks ran, and the per-layer statistics.

    ``ok`` is true when no finding is an error; ``errors`` lists the error findings; ``to_dict()`` is
    JSON-ready; ``plot(path)`` draws the per-layer activation and gradient statistics; ``str()`` renders it.

    Attributes:
        model: The class name of the model checked.
        input_size: The probe's input size, without the batch dimension.
        checks: The checks that were asked for, in running order.
        findings: Every :class:`Finding`.
        skipped: Check -> why it could not run.
        layer_stats: Per-layer activation and gradient statistics.
        seconds: Check -> wall time.
        notes: What ``check`` did to run the model (lazy layers sized, ...).
    """

    model: str  # class name of the model checked
    input_size: tuple[int, ...]  # without the batch dimension
    checks: list[str]  # checks that were asked for
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # check -> why it could not run
    layer_stats: list[LayerStat] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # check -> wall time
    notes: list[str] = field(default_factory=list)  # what check did to run the model (lazy layers sized ...)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def infos(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "info"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings and notes do not fail a check)."""
        return not self.errors

    def by_id(self, finding_id: str) -> list[Finding]:
        return [f for f in self.findings if f.id == finding_id]

    def sorted_findings(self) -> list[Finding]:
        """Errors first, then warnings, then notes; each group in the order found."""
        return sorted(self.findings, key=_finding_key)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (strict-JSON-ready: NaN/Inf become strings) with every finding, skip and layer statistic."""
        return _json_safe({
            "model": self.model,
            "input_size": list(self.input_size),
            "ok": self.ok,
            "counts": {"error": len(self.errors), "warning": len(self.warnings), "info": len(self.infos)},
            "checks": list(self.checks),
            "findings": [asdict(f) for f in self.sorted_findings()],
            "skipped": dict(self.skipped),
            "notes": list(self.notes),
            "layer_stats": [asdict(s) for s in self.layer_stats],
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        })

    def plot(self, path: str | Path) -> Path:
        """Write a PNG of the per-layer activation/gradient statistics (needs matplotlib)."""
        return plot_layer_stats(self, path)

    def __str__(self) -> str:
        return format_report(self)

    def _repr_html_(self) -> str:
        return check_html(self)
