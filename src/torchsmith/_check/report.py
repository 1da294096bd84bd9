"""What ``check`` finds: :class:`Finding`, :class:`LayerStat` and :class:`CheckReport`.

Every finding id is stable and listed in :data:`FINDINGS` with its severity and
the check that produces it; the README repeats the table. Rendering lives in
:mod:`torchsmith._check.render`, so these stay plain data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Finding", "LayerStat", "CheckReport", "FINDINGS", "CHECKS", "DEFAULT_CHECKS", "OPT_IN_CHECKS", "Severity"]

Severity = Literal["error", "warning", "info"]

#: Every check that ``check(model, checks=[...])`` accepts, and what it verifies.
CHECKS: dict[str, str] = {
    "input-mutated": "forward must not modify its input in place (tensor version counters, train and eval)",
    "input-sizes": "other input sizes (2x the spatial size, batch of 1) work, and samples do not mix in eval",
    "scriptable": "torch.jit.script compiles the model (deprecated in torch; opt-in)",
    "exportable": "torch.export.export captures the model",
    "graph-breaks": "torch.compile captures forward in one graph (torch._dynamo.explain; slow, opt-in)",
    "registration": "every submodule and tensor the model holds is registered (modules, parameters, buffers)",
    "init-symmetry": "no layer starts with identical units (constant, zero or copied rows) that stay identical",
    "signal": "activation and gradient scale at initialisation: vanishing, exploding, dead or saturated units",
    "unused-parameters": "every trainable parameter receives a gradient",
    "hooks": "no forward/backward hooks are left registered on the model",
    "state-dict": "a fresh instance loaded with the state_dict computes the same outputs",
    "determinism": "eval-mode output is the same on every call",
    "non-finite": "no NaN/Inf in parameters, buffers, outputs or gradients",
    "devices-dtypes": "parameters and buffers share one device and one floating dtype",
}

#: The checks run when ``checks`` is not given: all but the slow torch.compile one and TorchScript, which torch
#: deprecates in favour of torch.export (the ``exportable`` check holds forward to the same no-data-dependent-
#: control-flow rule).
OPT_IN_CHECKS: tuple[str, ...] = ("scriptable", "graph-breaks")
DEFAULT_CHECKS: tuple[str, ...] = tuple(c for c in CHECKS if c not in OPT_IN_CHECKS)

#: Finding id -> (severity, check that produces it, what it means). Ids never change meaning.
FINDINGS: dict[str, tuple[Severity, str, str]] = {
    "forward-failed": ("error", "", "the model's forward raised on the input given; most checks could not run"),
    "input-mutated": ("error", "input-mutated", "forward modified its input tensor in place"),
    "hard-coded-size": ("error", "input-sizes", "the model breaks at an input size it should accept"),
    "fixed-input-size": ("info", "input-sizes", "the model declares one input size and rejects others clearly"),
    "batch-mixing": ("error", "input-sizes", "in eval mode one sample's output depends on the other samples"),
    "not-scriptable": ("warning", "scriptable", "torch.jit.script fails"),
    "not-exportable": ("error", "exportable", "torch.export.export fails"),
    "export-needs-config": ("info", "exportable",
                            "torch.export fails only with a config option on (use_cache); verified it exports off"),
    "graph-break": ("warning", "graph-breaks", "torch.compile splits forward into several graphs"),
    "unregistered-submodule": ("error", "registration",
                               "a module held in a plain list/dict/attribute container is invisible to the model"),
    "unregistered-tensor": ("error", "registration",
                            "a plain tensor attribute is neither a parameter nor a buffer"),
    "symmetric-init": ("error", "init-symmetry", "units start identical and get identical gradients"),
    "zero-init": ("info", "init-symmetry", "a weight starts all zero but its gradient breaks the symmetry"),
    "vanishing-activations": ("warning", "signal", "activations shrink towards zero through the layers"),
    "exploding-activations": ("warning", "signal", "activations grow without bound through the layers"),
    "vanishing-gradients": ("warning", "signal", "early layers get far smaller gradients than late ones"),
    "exploding-gradients": ("warning", "signal", "early layers get far larger gradients than late ones"),
    "dead-relu": ("warning", "signal", "a ReLU outputs zero almost everywhere at initialisation"),
    "saturated-activations": ("warning", "signal", "a sigmoid/tanh is saturated for most inputs at initialisation"),
    "unused-parameter": ("warning", "unused-parameters", "a trainable parameter got no gradient"),
    "hook-left": ("warning", "hooks", "a hook is still registered on the model"),
    "state-dict-roundtrip": ("error", "state-dict", "a fresh instance loaded with the state_dict differs"),
    "nondeterministic-eval": ("error", "determinism", "two eval-mode calls on the same input differ"),
    "non-finite-output": ("error", "non-finite", "NaN or Inf in a module's output"),
    "non-finite-parameter": ("error", "non-finite", "NaN or Inf in a parameter or buffer"),
    "non-finite-gradient": ("error", "non-finite", "NaN or Inf in a parameter's gradient"),
    "mixed-devices": ("error", "devices-dtypes", "parameters and buffers are on more than one device"),
    "mixed-dtypes": ("warning", "devices-dtypes", "floating parameters and buffers have more than one dtype"),
}


@dataclass
class Finding:
    """One problem (or note) about the model, with the evidence and the fix."""

    id: str  # a key of FINDINGS, e.g. "input-mutated"
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
    """Everything ``check`` found, which checks ran, and the per-layer statistics."""

    model: str  # class name of the model checked
    input_size: tuple[int, ...]  # without the batch dimension
    checks: list[str]  # checks that were asked for
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # check -> why it could not run
    layer_stats: list[LayerStat] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # check -> wall time

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
            "layer_stats": [asdict(s) for s in self.layer_stats],
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        })

    def plot(self, path: str | Path) -> Path:
        """Write a PNG of the per-layer activation/gradient statistics (needs matplotlib)."""
        from torchsmith._check.plot import plot_layer_stats

        return plot_layer_stats(self, path)

    def __str__(self) -> str:
        from torchsmith._check.render import format_report

        return format_report(self)

    def _repr_html_(self) -> str:
        from torchsmith.html.check import check_html

        return check_html(self)
