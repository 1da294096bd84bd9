"""The doctor's registry: every check ``torchsmith.check`` can run and every finding id it can report.

A check is one function decorated with :func:`register_check`, which declares the check's name, what it
verifies, the finding ids it reports (each with its severity and meaning), whether it runs by default
and where it runs in the order::

    @register_check("input-mutated", "forward must not modify its input in place",
                    {"input-mutated": ("error", "forward modified its input tensor in place")}, order=50)
    def check_input_mutated(ctx: Context) -> list[Finding]: ...

This module never imports the checks registered in it: ``torchsmith._check`` imports the check modules,
and each of them registers its checks on import, so every check is known once ``import torchsmith``
returns. :func:`list_checks` and :func:`list_findings` are the public listing (``ts.list_checks()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from torchsmith.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from torchsmith._check._context import Context
    from torchsmith._check.report import Finding

__all__ = ["Severity", "FindingInfo", "CheckInfo", "register_check", "unregister_check", "list_checks",
           "list_findings", "get_check", "get_finding", "default_checks"]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

Runner = Callable[["Context"], "list[Finding]"]
R = TypeVar("R", bound=Callable[..., object])


@dataclass(frozen=True)
class FindingInfo:
    """One finding id the doctor can report. Ids are stable: an id never changes its meaning.

    Attributes:
        id: The finding id, e.g. ``"input-mutated"``.
        severity: ``"error"`` fails the check; ``"warning"`` and ``"info"`` do not.
        check: The check that reports it; ``""`` for the run itself (``forward-failed``).
        meaning: What it means, in one line.
    """

    id: str  # e.g. "input-mutated"
    severity: Severity  # "error" fails the check; "warning" and "info" do not
    check: str  # the check that reports it; "" for the run itself (forward-failed)
    meaning: str  # what it means, in one line


@dataclass(frozen=True)
class CheckInfo:
    """One check: its name (what ``check(model, checks=...)`` takes), what it verifies and what it reports.

    Attributes:
        name: The check's name, e.g. ``"input-mutated"``.
        description: What the check verifies, in one line.
        findings: The finding ids it can report (each a :class:`FindingInfo`).
        default: Whether it runs when ``checks`` is not given; False for the slow or deprecated opt-in checks.
        order: Checks run in ascending order.
        run: The function: the shared check context in, the findings out.
    """

    name: str  # e.g. "input-mutated"
    description: str  # what the check verifies, in one line
    findings: tuple[FindingInfo, ...]  # the finding ids it can report
    default: bool  # runs when ``checks`` is not given; False for the slow or deprecated opt-in checks
    order: int  # checks run in ascending order
    run: Runner  # the function: the shared check context in, the findings out

    @property
    def finding_ids(self) -> tuple[str, ...]:
        return tuple(f.id for f in self.findings)


_CHECKS: dict[str, CheckInfo] = {}
_FINDINGS: dict[str, FindingInfo] = {}


def _finding_info(id: str, value: object, check: str) -> FindingInfo:
    if not isinstance(id, str) or not id or id.strip() != id or "," in id:
        raise ConfigError(f"a finding id must be a non-empty name without commas or spaces around it, not {id!r}")
    if id == "all":
        raise ConfigError("'all' names every check; it cannot be a finding id")
    if not (isinstance(value, tuple) and len(value) == 2):
        raise ConfigError(f"finding {id!r} must be declared as (severity, meaning), not {value!r}")
    severity, meaning = value
    if severity not in SEVERITIES:
        raise ConfigError(f"finding {id!r} has severity {severity!r}; it must be one of {', '.join(SEVERITIES)}")
    if not isinstance(meaning, str) or not meaning.strip():
        raise ConfigError(f"finding {id!r} needs its meaning: one line saying what it means")
    if id in _FINDINGS:
        owner = _FINDINGS[id].check or "the check run itself"
        raise ConfigError(f"finding id {id!r} is already registered (by {owner!r}); finding ids are unique "
                          "across all checks")
    return FindingInfo(id=id, severity=severity, check=check, meaning=meaning)


def register_check(name: str, description: str, findings: Mapping[str, tuple[Severity, str]], *,
                   default: bool = True, order: int | None = None) -> Callable[[R], R]:
    """Register the decorated function as the check ``name``; it returns the function unchanged.

    ``findings`` maps each finding id the check reports to ``(severity, meaning)``; a check reports at
    least one. ``default=False`` makes it opt-in (run only when named or with ``checks="all"``). Checks run
    in ascending ``order``; without one the check runs after every check registered so far. A name or
    finding id that is already registered, or an order another check holds, is a :class:`ConfigError`.
    """
    if not isinstance(name, str) or not name or name.strip() != name or "," in name:
        raise ConfigError(f"a check name must be a non-empty name without commas or spaces around it, "
                          f"not {name!r}")
    if name == "all":
        raise ConfigError("'all' names every check; it cannot be a check's name")
    if name in _CHECKS:
        raise ConfigError(f"check {name!r} is already registered (by {_CHECKS[name].run.__qualname__}); "
                          "check names are unique")
    if not isinstance(description, str) or not description.strip():
        raise ConfigError(f"check {name!r} needs a description: one line saying what it verifies")
    if not isinstance(findings, Mapping) or not findings:
        raise ConfigError(f"check {name!r} must declare the finding ids it reports, "
                          "e.g. {'my-finding': ('warning', 'what it means')}")
    infos: list[FindingInfo] = []
    for fid, value in findings.items():
        infos.append(_finding_info(fid, value, name))
    if order is None:
        order = max((c.order for c in _CHECKS.values()), default=0) + 10
    elif isinstance(order, bool) or not isinstance(order, int):
        raise ConfigError(f"order must be an integer, not {order!r}")
    taken = [c.name for c in _CHECKS.values() if c.order == order]
    if taken:
        raise ConfigError(f"check {name!r} asks for order {order}, which check {taken[0]!r} holds; "
                          "give each check its own order")

    def decorate(run: R) -> R:
        if not callable(run):
            raise ConfigError(f"register_check({name!r}) decorates a function that takes the check context")
        if name in _CHECKS:  # registered between the call and the decoration
            raise ConfigError(f"check {name!r} is already registered")
        clash = [i.id for i in infos if i.id in _FINDINGS]
        if clash:
            raise ConfigError(f"finding id {clash[0]!r} is already registered (by {_FINDINGS[clash[0]].check!r})")
        _CHECKS[name] = CheckInfo(name=name, description=description, findings=tuple(infos), default=bool(default),
                                  order=order, run=run)  # type: ignore[arg-type]
        _FINDINGS.update((i.id, i) for i in infos)
        return run

    return decorate


def unregister_check(name: str) -> CheckInfo:
    """Remove the check ``name`` and its finding ids (for tests and plugins that register a check for a while)."""
    info = get_check(name)
    del _CHECKS[name]
    for f in info.findings:
        _FINDINGS.pop(f.id, None)
    return info


def list_checks() -> list[CheckInfo]:
    """Every check ``torchsmith.check`` knows, in the order they run.

    Each :class:`CheckInfo` has the check's ``name`` (what ``check(model, checks=...)`` and
    ``torchsmith check --checks`` take), its ``description``, the ``findings`` it can report (each a
    :class:`FindingInfo`), whether it runs by ``default`` (``scriptable`` and ``graph-breaks`` are opt-in)
    and its ``order``::

        >>> [c.name for c in ts.list_checks() if not c.default]
        ['scriptable', 'graph-breaks']

    Returns:
        One :class:`CheckInfo` per registered check (``@register_check``), in running order.
    """
    return sorted(_CHECKS.values(), key=lambda c: c.order)


def list_findings() -> list[FindingInfo]:
    """Every finding id ``torchsmith.check`` can report, with its severity, its check and its meaning.

    Finding ids are stable: an id never changes its meaning, so a script may act on ``finding.id``. The
    list starts with ``forward-failed`` (reported by the run itself, ``check == ""``), then each check's
    findings in the order the checks run::

        >>> {f.id: f.severity for f in ts.list_findings()}["hard-coded-size"]
        'error'

    Any finding id also picks its check: ``ts.check(model, checks="hard-coded-size")`` runs ``input-sizes``.

    Returns:
        One :class:`FindingInfo` (``id``, ``severity``, ``check``, ``meaning``) per finding id.
    """
    run_level = [f for f in _FINDINGS.values() if not f.check]
    return run_level + [f for c in list_checks() for f in c.findings]


def get_check(name: str) -> CheckInfo:
    """The :class:`CheckInfo` of the check ``name``; an :class:`UnknownNameError` (with close matches) if none."""
    try:
        return _CHECKS[name]
    except KeyError:
        raise UnknownNameError("check", name, list(_CHECKS),
                               hint="see torchsmith.list_checks() or `torchsmith check --help`") from None


def get_finding(id: str) -> FindingInfo:
    """The :class:`FindingInfo` of finding ``id``; an :class:`UnknownNameError` (with close matches) if none."""
    try:
        return _FINDINGS[id]
    except KeyError:
        raise UnknownNameError("finding id", id, list(_FINDINGS),
                               hint="see torchsmith.list_findings()") from None


def default_checks() -> list[str]:
    """The names of the checks run when ``checks`` is not given, in the order they run."""
    return [c.name for c in list_checks() if c.default]


def _register_run_finding(id: str, severity: Severity, meaning: str) -> None:
    """A finding the check run itself reports, not any one check."""
    _FINDINGS[id] = _finding_info(id, (severity, meaning), "")


_register_run_finding("forward-failed", "error",
                      "the model's forward raised on the input given; most checks could not run")
