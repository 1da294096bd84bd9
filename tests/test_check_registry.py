"""The doctor's registry: one ``@register_check`` per check, listed by ``ts.list_checks()``/``ts.list_findings()``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from torch import nn

import broken_models as bm
import torchsmith as ts
from torchsmith._check import registry
from torchsmith._check._context import Context, make_finding
from torchsmith._check.registry import get_check, get_finding, register_check, unregister_check
from torchsmith._check.report import Finding
from torchsmith.errors import ConfigError, UnknownNameError

README = Path(__file__).resolve().parent.parent / "README.md"

# The order the checks ran in before the registry (reports depend on it: findings are listed as found).
EXECUTION_ORDER = [
    "devices-dtypes", "hooks", "registration", "non-finite", "input-mutated", "unused-parameters",
    "init-symmetry", "signal", "determinism", "state-dict", "input-sizes", "scriptable", "exportable",
    "graph-breaks",
]


@pytest.fixture
def scratch() -> Iterator[list[str]]:
    """Names of the checks a test registers; they are removed afterwards, whatever happens."""
    names: list[str] = []
    yield names
    for name in names:
        if name in {c.name for c in ts.list_checks()}:
            unregister_check(name)


def _noop(ctx: Context) -> list[Finding]:
    return []


def test_list_checks_is_the_execution_order() -> None:
    checks = ts.list_checks()
    assert [c.name for c in checks] == EXECUTION_ORDER
    assert [c.order for c in checks] == sorted(c.order for c in checks)
    assert len({c.order for c in checks}) == len(checks)
    assert [c.name for c in checks if not c.default] == ["scriptable", "graph-breaks"]
    assert all(isinstance(c, ts.CheckInfo) and c.description for c in checks)


def test_every_check_declares_findings_and_every_finding_has_its_check() -> None:
    names = {c.name for c in ts.list_checks()}
    for c in ts.list_checks():
        assert c.findings, f"{c.name} declares no finding id"
        assert all(f.check == c.name for f in c.findings)
    findings = ts.list_findings()
    assert findings[0].id == "forward-failed" and findings[0].check == "" and findings[0].severity == "error"
    assert all(isinstance(f, ts.FindingInfo) for f in findings)
    assert all(f.check in names for f in findings[1:])
    assert all(f.severity in ("error", "warning", "info") and f.meaning for f in findings)
    ids = [f.id for f in findings]
    assert len(ids) == len(set(ids))
    assert set(ids) == {"forward-failed"} | {f.id for c in ts.list_checks() for f in c.findings}


def test_lookups() -> None:
    assert get_finding("hard-coded-size").check == "input-sizes"
    assert get_check("signal").run.__name__ == "check_signal"
    with pytest.raises(UnknownNameError, match="did you mean 'hard-coded-size'"):
        get_finding("hard-coded-sise")
    with pytest.raises(UnknownNameError, match=r"torchsmith\.list_checks\(\)"):
        get_check("signl")
    with pytest.raises(UnknownNameError, match=r"torchsmith\.list_checks\(\) or `torchsmith check --help`"):
        ts.check(bm.HealthyMLP(), (16,), checks="no-such-check")


def test_duplicate_name_or_finding_id_fails_clearly(scratch: list[str]) -> None:
    with pytest.raises(ConfigError, match="check 'signal' is already registered"):
        register_check("signal", "again", {"signal-again": ("warning", "twice")}, order=9001)(_noop)
    with pytest.raises(ConfigError, match=r"finding id 'dead-relu' is already registered \(by 'signal'\)"):
        register_check("scratch-a", "a check", {"dead-relu": ("warning", "again")}, order=9001)(_noop)
    with pytest.raises(ConfigError, match="finding id 'forward-failed' is already registered"):
        register_check("scratch-a", "a check", {"forward-failed": ("error", "again")}, order=9001)(_noop)
    with pytest.raises(ConfigError, match="order 10, which check 'devices-dtypes' holds"):
        register_check("scratch-a", "a check", {"scratch-a": ("info", "a note")}, order=10)(_noop)
    with pytest.raises(ConfigError, match="must declare the finding ids"):
        register_check("scratch-a", "a check", {}, order=9001)(_noop)
    with pytest.raises(ConfigError, match="severity 'fatal'"):
        register_check("scratch-a", "a check", {"scratch-a": ("fatal", "x")}, order=9001)  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="'all' names every check"):
        register_check("all", "a check", {"scratch-a": ("info", "x")}, order=9001)
    # None of the failures above left anything behind.
    assert "scratch-a" not in {c.name for c in ts.list_checks()}
    assert "scratch-a" not in {f.id for f in ts.list_findings()}
    assert get_finding("dead-relu").check == "signal"

    scratch.append("scratch-b")
    register_check("scratch-b", "a check", {"scratch-b-note": ("info", "a note")}, order=9001)(_noop)
    with pytest.raises(ConfigError, match="check 'scratch-b' is already registered"):
        register_check("scratch-b", "a check", {"scratch-b-other": ("info", "a note")}, order=9002)(_noop)


def test_a_registered_check_runs_through_ts_check(scratch: list[str]) -> None:
    scratch.append("linear-count")

    @register_check("linear-count", "counts the Linear layers (a test check)",
                    {"has-linear": ("info", "the model has a Linear layer")})
    def check_linear_count(ctx: Context) -> list[Finding]:
        return [make_finding("has-linear", path, f"{path} is a Linear", "nothing to fix")
                for path, m in ctx.model.named_modules() if isinstance(m, nn.Linear)]

    info = get_check("linear-count")
    assert info.run is check_linear_count and ts.list_checks()[-1] is info  # no order given: runs last
    assert info.default and "linear-count" in registry.default_checks()
    report = ts.check(bm.HealthyMLP(), (16,), checks="linear-count")
    assert report.checks == ["linear-count"]
    assert {(f.id, f.severity, f.module) for f in report.findings} == {
        ("has-linear", "info", "fc1"), ("has-linear", "info", "fc2")}
    # By finding id too, and among the others in its order.
    assert ts.check(bm.HealthyMLP(), (16,), checks="has-linear,hooks").checks == ["linear-count", "hooks"]
    assert "linear-count" in ts.check(bm.HealthyMLP(), (16,), checks="all").checks

    unregister_check("linear-count")
    assert "linear-count" not in {c.name for c in ts.list_checks()}
    assert "has-linear" not in {f.id for f in ts.list_findings()}
    with pytest.raises(UnknownNameError):
        ts.check(bm.HealthyMLP(), (16,), checks="linear-count")


def test_readme_documents_every_check_and_finding_id() -> None:
    text = README.read_text()
    missing = [f.id for f in ts.list_findings() if f"`{f.id}`" not in text]
    assert not missing, f"README lacks finding ids {missing}"
    assert "ts.list_checks()" in text and "ts.list_findings()" in text
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "`" in line]
    assert {c.name for c in ts.list_checks()} <= set(rows)
