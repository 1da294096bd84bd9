"""``torchsmith.check``: the doctor for classic model-building mistakes.

``check(model, input_size)`` runs the model (a deep copy of it) and reports
what it finds as a :class:`CheckReport` of :class:`Finding` objects, each with
a stable id (see ``ts.list_findings()``), a severity, the module path it concerns,
what was observed and the fix. Every check is verified by running the model,
never by reading its source. The user's model is only read: the copy is what
runs, and the global random state is restored afterwards.

Each check is one function decorated with ``@register_check`` (:mod:`.registry`), which
declares its name, description, finding ids and place in the run order. One module per
group of checks; importing them here registers them:

* :mod:`.runtime` -- input mutation, determinism, NaN/Inf, devices/dtypes, unused parameters, hooks
* :mod:`.input_sizes` -- hard-coded sizes (other batch and spatial sizes, samples mixing)
* :mod:`.compile` -- torch.jit.script, torch.export, torch.compile graph breaks
* :mod:`.ownership` -- unregistered modules/tensors, state_dict round trip
* :mod:`.signal` -- symmetric init, activation/gradient scale, dead/saturated units
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

# The check modules register their checks on import (the order of the run is each check's ``order``).
from torchsmith._check import compile, input_sizes, ownership, runtime, signal  # noqa: F401
from torchsmith._check._context import BATCH, QUOTE_LIMIT, Context, SkipCheck, make_finding
from torchsmith._check.batch_written import batch_written_in
from torchsmith._check.ownership import scan_unregistered
from torchsmith._check.registry import (
    CheckInfo,
    FindingInfo,
    default_checks,
    list_checks,
    list_findings,
    register_check,
)
from torchsmith._check.report import CheckReport, Finding, LayerStat
from torchsmith._check.runtime import collect_hooks, hook_counts, strip_hooks
from torchsmith.contract import copy_model, device_dtype, input_spec, materialise_lazy, model_inputs
from torchsmith.errors import ConfigError, TorchsmithError, UnknownNameError, describe_error, format_size

__all__ = ["check", "CheckReport", "Finding", "LayerStat", "CheckInfo", "FindingInfo", "list_checks",
           "list_findings", "register_check", "resolve_checks"]


def resolve_checks(checks: str | Iterable[str] | None) -> list[str]:
    """Check names from ``None`` (the default set), ``"all"``, names or finding ids, or ``"a,b"``."""
    if checks is None:
        return default_checks()
    if isinstance(checks, str):
        items = [c.strip() for c in checks.split(",")]
    elif isinstance(checks, Iterable):
        items = [str(c).strip() for c in checks]
    else:
        raise ConfigError(f"checks must be names such as 'input-mutated,signal', a list of names or 'all', "
                          f"not {checks!r}")
    items = [c for c in items if c]
    if not items:
        raise ConfigError("no checks named; give check names such as 'input-mutated,signal' or 'all'")
    known = [c.name for c in list_checks()]
    by_finding = {f.id: f.check for f in list_findings() if f.check}
    chosen: list[str] = []
    for item in items:
        if item == "all":
            names = known
        elif item in known:
            names = [item]
        elif item in by_finding:
            names = [by_finding[item]]
        else:
            raise UnknownNameError("check", item, known + ["all"],
                                   hint="see torchsmith.list_checks() or `torchsmith check --help`")
        chosen += [n for n in names if n not in chosen]
    return chosen


def _declared_size_hint(model: nn.Module, size: tuple[int, ...], given: object) -> str:
    """When the size was given and the model itself declares another, name the declared one."""
    if given is None:
        return ""
    try:
        declared = input_spec(model)
    except TorchsmithError:
        return ""
    if tuple(declared.size) == tuple(size):
        return ""
    return f" (the model declares {format_size(declared.size)}, from {declared.source})"


def _validate(model: nn.Module, seed: object) -> None:
    """The arguments ``check`` refuses before any work: not a module, a bad seed, a model all on meta."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"check needs an nn.Module, not {type(model).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**62) < seed < 2**62:
        raise ConfigError(f"seed must be an integer such as 0 (below 2**62 in size), not {seed!r}")
    if any(True for _ in model.parameters()) and all(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ConfigError(f"{type(model).__name__}'s parameters are all on the meta device (no values); "
                          "materialise it first, e.g. model.to_empty(device='cpu') and initialise it")


def _working_copy(model: nn.Module) -> nn.Module:
    """The deep copy every check runs, without the user's hooks."""
    try:
        work = copy_model(model)
    except Exception as e:
        raise ConfigError(f"check runs on a copy of the model, but copy.deepcopy({type(model).__name__}) failed: "
                          f"{describe_error(e, QUOTE_LIMIT)}; keep objects that cannot be copied (open files, "
                          "locks, generators) out of the model's attributes") from e
    strip_hooks(work)
    return work


def _context(model: nn.Module, work: nn.Module, input_size: Any, input_dtype: Any, names: list[str],
             seed: int) -> tuple[Context, list[str]]:
    """The context the checks share (the copy, its input, what it held before any run), and the notes
    for the report (several inputs, lazy layers sized)."""
    device, dtype = device_dtype(model)
    hooks = collect_hooks(model) if "hooks" in names else []
    lazy_modules = {n for n, m in work.named_modules() if isinstance(m, LazyModuleMixin)}
    # Asked of the copy: finding the size or the Embedding that takes the input may run a meta forward,
    # and the user's hooks must not see it.
    inputs = model_inputs(work, input_size, input_dtype=input_dtype)
    lazy_note = materialise_lazy(work, inputs.primary.size if inputs.single else None) if lazy_modules else None
    spec = inputs.primary
    unregistered = scan_unregistered(work)
    held = {id(obj): path for path, _, obj in unregistered if isinstance(obj, nn.Module)}
    ctx = Context(model=work, original=model, input_size=spec.size, device=device, dtype=dtype, seed=seed,
                  hooks=hooks, held=held, token_range=spec.vocab_size if spec.kind == "tokens" else None,
                  spec=spec, inputs=inputs, lazy_modules=lazy_modules, hook_counts=hook_counts(work),
                  unregistered_at_start=unregistered)
    try:  # made here, not inside a check, so that an input too large to allocate is one clear error
        _ = ctx.x
    except RuntimeError as e:
        raise ConfigError(f"cannot make a probe batch of shape {(BATCH, *spec.size)}: "
                          f"{describe_error(e, QUOTE_LIMIT)}; check the input size (without the batch "
                          "dimension)") from e
    notes = [] if inputs.single else [f"inputs: {inputs.describe()}"]
    if lazy_note:
        notes.append(f"{lazy_note} (on a copy; the model itself is not changed)")
    return ctx, notes


def _run_checks(ctx: Context, names: list[str], report: CheckReport) -> None:
    """Each named check in the registered order (whatever order they were named in), on a fork of the RNG."""
    fork_devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), torch.enable_grad():
        torch.manual_seed(ctx.seed)
        for info in list_checks():
            name = info.name
            if name not in names:
                continue
            start = time.perf_counter()
            try:
                report.findings += info.run(ctx)
            except SkipCheck as e:
                report.skipped[name] = str(e)
            except Exception as e:  # a model odd enough to break a check must not hide the other checks
                report.skipped[name] = f"the check itself failed on this model: {describe_error(e, QUOTE_LIMIT)}"
            report.seconds[name] = time.perf_counter() - start


def _forward_failed(ctx: Context, given: object) -> Finding | None:
    """The ``forward-failed`` finding when the train-mode forward (if a check asked for it) raised."""
    failure = ctx.forward_error() if ctx.train_ran else None
    if failure is None:
        return None
    error, path = failure
    written_in = batch_written_in(ctx)  # x.view(64, -1): the model runs at the batch its code names
    if written_in is not None:
        return written_in
    shape = tuple(ctx.x.shape)
    return make_finding(
        "forward-failed", path,
        f"forward fails on a batch of shape {shape} in {path or '(model)'}: {describe_error(error, QUOTE_LIMIT)}",
        "pass the input size the model takes (input_size=... / --input CxHxW)"
        + _declared_size_hint(ctx.model, ctx.input_size, given) + " or fix the failing module",
        error=describe_error(error, QUOTE_LIMIT), input_shape=shape)


def check(model: nn.Module, input_size: Any = None, *,
          checks: str | Iterable[str] | None = None, seed: int = 0, input_dtype: Any = None) -> CheckReport:
    """Run the model-building checks on a copy of ``model``; return a :class:`CheckReport`.

    Each check is verified by running a deep copy of the model (never by reading its source); the user's model
    keeps its parameters, buffers, hooks, training mode and the global RNG state. The same ``seed`` gives the
    same probe inputs and the same report.

    Args:
        model: The module to check (any ``nn.Module``; it is not changed).
        input_size: One sample's shape without the batch dimension, e.g. ``(3, 32, 32)``. Defaults to what the
            model contract reads from the model (:func:`torchsmith.contract.input_spec`: ``default_input_size``,
            a transformers config, timm's ``pretrained_cfg`` or the first layer). Several inputs are a list of
            sizes (positional) or a dict of sizes (keyword) (:func:`torchsmith.contract.model_inputs`); the
            probes vary the first input's batch and the others follow its batch size.
        checks: Which checks to run, by check name or finding id: ``"input-mutated,signal"``, a list, or
            ``"all"``. The default runs every check except the opt-in ``scriptable`` (TorchScript is
            deprecated) and the slow ``graph-breaks``.
        seed: Seed of the probe inputs.
        input_dtype: The input's dtype (``torch.long`` for token ids); one dtype, a list or a dict by name
            for several inputs. Default: the contract's (token ids where the input goes into an
            ``nn.Embedding``, else float32).

    Returns:
        The report: ``findings`` (each a :class:`Finding` with its stable ``id``, severity, module path,
        message, fix and observed numbers), ``ok`` (no error finding), the checks that ran, and per-layer
        statistics (``report.plot("stats.png")``).

    Raises:
        UnknownNameError: A name in ``checks`` is neither a check nor a finding id (with close matches).
        ConfigError: ``model`` is not a module, or an argument is malformed.
        ShapeError: ``input_size`` cannot be used with the model.
    """
    _validate(model, seed)
    names = resolve_checks(checks)
    work = _working_copy(model)
    ctx, notes = _context(model, work, input_size, input_dtype, names, seed)
    report = CheckReport(model=type(model).__name__, input_size=ctx.input_size, checks=names, notes=notes)
    _run_checks(ctx, names, report)
    failed = _forward_failed(ctx, input_size)
    if failed is not None:
        report.findings.insert(0, failed)
    report.layer_stats = list(ctx.layer_stats)
    report.seconds["total"] = sum(report.seconds.values())
    return report
