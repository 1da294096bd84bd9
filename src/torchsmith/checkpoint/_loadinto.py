"""``load_into``: load a state dict into a model and say exactly what happened (:class:`LoadReport`).

Key mismatches are the everyday pain of checkpoints: ``module.`` from
DistributedDataParallel, ``_orig_mod.`` from ``torch.compile``, renamed layers,
a new head. Here wrapper prefixes are detected and stripped with their cause
named, every unmatched key gets its closest candidate, and nothing is loaded
unless the whole load can succeed (``strict=True`` never loads partially).
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from torchsmith.checkpoint import _versions
from torchsmith.checkpoint._core import refuse_training_state, tie_groups
from torchsmith.checkpoint._sources import read_state_dict
from torchsmith.errors import CheckpointError, ConfigError, UnknownNameError, shorten
from torchsmith.html.weights import load_html
from torchsmith.init import init_weights

__all__ = ["LoadReport", "ShapeMismatch", "Remapped", "load_into", "KNOWN_PREFIXES"]

Remap = Mapping[str, str] | Callable[[str], str | None]

#: Prefixes that wrappers add to every key, and the wrapper that adds them.
KNOWN_PREFIXES: dict[str, str] = {
    "module.": "DistributedDataParallel/DataParallel wrapper",
    "_orig_mod.": "torch.compile wrapper",
}
ON_MISMATCH = ("raise", "skip", "reinit")


@dataclass(frozen=True)
class ShapeMismatch:
    name: str
    source_shape: tuple[int, ...]
    model_shape: tuple[int, ...]


@dataclass(frozen=True)
class Remapped:
    source: str  # the key as the source has it
    target: str  # the model's name it was loaded into
    cause: str   # e.g. "stripped 'module.' (DistributedDataParallel/DataParallel wrapper)" or "remap"


@dataclass
class LoadReport:
    """What ``load_into`` matched, loaded, skipped and re-initialised, and why the rest did not fit."""

    source: str
    model: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)        # in the model, not in the source
    unexpected: list[str] = field(default_factory=list)     # in the source, not in the model
    shape_mismatched: list[ShapeMismatch] = field(default_factory=list)
    remapped: list[Remapped] = field(default_factory=list)
    prefixes: list[tuple[str, str]] = field(default_factory=list)  # (what was done, cause)
    suggestions: dict[str, str] = field(default_factory=dict)      # unmatched key -> closest candidate
    tied: list[str] = field(default_factory=list)           # filled through a tied (shared) tensor
    cast: list[tuple[str, str, str]] = field(default_factory=list)  # (name, source dtype, model dtype)
    skipped: list[str] = field(default_factory=list)        # shape-mismatched, left as they were
    reinitialised: list[str] = field(default_factory=list)
    init_policy: str | None = None                          # which policy re-initialised them
    notes: list[str] = field(default_factory=list)
    verified: bool | None = None                            # sha256 checked (None: the source records none)
    loaded: bool = False                                    # False for a dry run or a refused load

    @property
    def ok(self) -> bool:
        """True when every model tensor was found with the right shape and nothing was left over."""
        return not (self.missing or self.unexpected or self.shape_mismatched)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out

    def summary(self) -> str:
        """One line: the counts, for errors and logs."""
        parts = [f"{len(self.matched)} matched"]
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("shape-mismatched", self.shape_mismatched), ("remapped", self.remapped),
                             ("re-initialised", self.reinitialised), ("skipped", self.skipped)):
            if items:
                parts.append(f"{len(items)} {label}")
        return ", ".join(parts)

    def __str__(self) -> str:
        state = "loaded" if self.loaded else "not loaded"
        check = {True: "sha256 verified", None: "no hash recorded", False: "hash not checked"}[self.verified]
        lines = [f"{self.source} -> {self.model}: {state}; {self.summary()} ({check})"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  prefix: {what} ({cause})" for what, cause in self.prefixes]
        for cause in Counter(r.cause for r in self.remapped):
            if not cause.startswith("stripped") and not cause.startswith("added"):
                lines.append(f"  remapped ({cause}): " + ", ".join(
                    f"{r.source} -> {r.target}" for r in self.remapped if r.cause == cause))
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            for k in items:
                hint = f"  (closest: {self.suggestions[k]})" if k in self.suggestions else ""
                lines.append(f"  {label}: {k}{hint}")
        for m in self.shape_mismatched:
            lines.append(f"  shape mismatch: {m.name}: source {list(m.source_shape)} vs model {list(m.model_shape)}")
        if self.tied:
            lines.append(f"  filled through tied weights: {', '.join(self.tied)}")
        if self.cast:
            lines.append("  cast: " + ", ".join(f"{n} {a}->{b}" for n, a, b in self.cast[:8])
                         + (" ..." if len(self.cast) > 8 else ""))
        if self.skipped:
            lines.append(f"  skipped (kept the model's values): {', '.join(self.skipped)}")
        if self.reinitialised:
            lines.append(f"  re-initialised with {self.init_policy}: {', '.join(self.reinitialised)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return load_html(self)


def _apply_remap(keys: list[str], remap: Remap) -> dict[str, tuple[str, str]]:
    """source key -> (new key, cause) for the keys ``remap`` renames; a callable may return None to drop."""
    out: dict[str, tuple[str, str]] = {}
    for key in keys:
        if callable(remap):
            try:
                new = remap(key)
            except Exception as e:  # the user's function: say which key it failed on
                raise ConfigError(f"remap raised {type(e).__name__} for {key!r}: {e}") from e
            if new is not None and not isinstance(new, str):
                raise ConfigError(f"remap returned {new!r} for {key!r}; return a name or None")
            out[key] = (new if new is not None else "", "remap")
            continue
        for old, new in remap.items():
            if key == old or (old.endswith(".") and key.startswith(old)) or (old == "" and new):
                out[key] = (new + key[len(old):] if key != old else new, f"remap {old!r} -> {new!r}")
                break
    return out


def _detect_prefixes(source: list[str], target: set[str]) -> list[tuple[str, str, str]]:
    """[(kind, prefix, cause)]: wrapper prefixes to strip from (or add to) every source key."""
    steps: list[tuple[str, str, str]] = []
    keys = list(source)
    for _ in range(4):  # e.g. module._orig_mod.
        if not keys or any(k in target for k in keys):
            break
        for prefix, cause in KNOWN_PREFIXES.items():
            if all(k.startswith(prefix) for k in keys):
                steps.append(("strip", prefix, cause))
                keys = [k[len(prefix):] for k in keys]
                break
            if target and all(t.startswith(prefix) for t in target) and \
                    any(prefix + k in target for k in keys):
                steps.append(("add", prefix, cause))
                keys = [prefix + k for k in keys]
                break
        else:
            break
    return steps


def _closest(name: str, candidates: list[str]) -> str | None:
    if not candidates:
        return None
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    if match:
        return match[0]
    leaf = name.rsplit(".", 1)[-1]  # same tensor kind (weight, bias, running_mean) as a weaker hint
    same_leaf = [c for c in candidates if c.rsplit(".", 1)[-1] == leaf]
    match = difflib.get_close_matches(name, same_leaf, n=1, cutoff=0.0)
    return match[0] if match else None


def _prefix_hint(unexpected: list[str], missing: list[str]) -> str | None:
    """Unexpected keys that all share a first component which, stripped, would match: suggest a remap."""
    if not unexpected or not missing:
        return None
    counts = Counter(k.split(".", 1)[0] + "." for k in unexpected if "." in k)
    missing_set = set(missing)
    for prefix, _ in counts.most_common(3):
        hits = sum(1 for k in unexpected if k.startswith(prefix) and k[len(prefix):] in missing_set)
        if hits >= max(1, len(missing) // 2):
            return f"source keys carry the prefix {prefix!r}; pass remap={{{prefix!r}: ''}} to strip it"
    return None


def load_into(model: nn.Module, source: Any, *, strict: bool = True, on_mismatch: str = "raise",
              remap: Remap | None = None, verify: bool = True, dry_run: bool = False) -> LoadReport:
    """Load ``source`` into ``model`` in place and return a :class:`LoadReport`.

    ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes are stripped (or added) and named in the
    report. A ``.pt`` that ``weights_only=True`` refuses is refused with the unsafe globals it names; there is
    no unsafe fallback.

    Args:
        model: The module to fill (in place).
        source: A path (``.safetensors``; ``.pt``/``.pth``/``.bin`` through ``torch.load(weights_only=True)``
            only) or a state dict.
        strict: A missing or unexpected key raises and nothing is loaded.
        on_mismatch: What to do with shape-mismatched tensors: ``"raise"`` (nothing is loaded), ``"skip"``
            (keep the model's values) or ``"reinit"`` (re-initialise them, and with ``strict=False`` the missing
            ones too, with ``model.init_policy``; the ``kaiming`` preset, named in the report, when the model has
            none).
        remap: Renames source keys after the prefixes: ``{"old.name": "new.name", "backbone.": ""}`` (a key
            ending in ``.`` is a prefix) or a function ``key -> new key | None`` (None drops it).
        verify: Check a torchsmith checkpoint's sha256 first.
        dry_run: Only report; the model is not changed.

    Returns:
        The :class:`LoadReport`: matched, missing, unexpected, shape-mismatched and remapped keys, with the
        closest candidates for each miss.

    Raises:
        CheckpointError: A strict or shape mismatch, an unreadable or unsafe file; the error carries the
            report as ``error.report``.
        UnknownNameError: An unknown ``on_mismatch`` value.
    """
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"load_into needs an nn.Module, not {type(model).__name__}")
    if on_mismatch not in ON_MISMATCH:
        raise UnknownNameError("on_mismatch", str(on_mismatch), ON_MISMATCH)
    if remap is not None and not (callable(remap) or isinstance(remap, Mapping)):
        raise ConfigError(f"remap must be a dict of old -> new names or a function, not {type(remap).__name__}")
    src = read_state_dict(source, verify=verify)
    refuse_training_state(src.metadata, src.label)
    target = model.state_dict()
    report = LoadReport(source=src.label, model=type(model).__name__, notes=list(src.notes), verified=src.verified)
    mapped, versions = _map_keys(src.tensors, src.module_meta, target, remap, report)
    load_meta = _match(model, target, mapped, versions, report)
    problems = _decide(report, strict, on_mismatch)
    if dry_run:
        return report
    if problems:
        raise _refusal(report, problems)
    _apply(model, src.label, target, mapped, load_meta, on_mismatch, report)
    return report


def _map_keys(tensors: Mapping[str, torch.Tensor], versions: _versions.ModuleMeta | None,
              target: Mapping[str, torch.Tensor], remap: Remap | None,
              report: LoadReport) -> tuple[dict[str, torch.Tensor], _versions.ModuleMeta | None]:
    """Phase 1: wrapper prefixes, then the user's remap: model key -> source tensor. The module versions follow."""
    names = {k: k for k in tensors}
    causes = []
    for kind, prefix, cause in _detect_prefixes(list(names), set(target)):
        verb = "stripped" if kind == "strip" else "added"
        report.prefixes.append((f"{verb} {prefix!r} {'from' if kind == 'strip' else 'to'} every key", cause))
        causes.append(f"{verb} {prefix!r} ({cause})")
        names = {orig: (cur[len(prefix):] if kind == "strip" else prefix + cur) for orig, cur in names.items()}
        if versions is not None:
            versions = _versions.rename(versions, _prefix_step(kind, prefix))
    if causes:
        report.remapped = [Remapped(orig, cur, "; ".join(causes)) for orig, cur in names.items()]
    if remap is not None:
        before = dict(names)
        renamed = _apply_remap(list(names.values()), remap)
        by_current = {cur: orig for orig, cur in names.items()}
        for cur, (new, cause) in renamed.items():
            orig = by_current[cur]
            if new == "":
                report.notes.append(f"remap dropped {orig!r}")
                del names[orig]
                continue
            names[orig] = new
            report.remapped = [r for r in report.remapped if r.source != orig] + [Remapped(orig, new, cause)]
        if versions is not None:
            versions = _remap_versions(versions, remap, before, names)
    mapped: dict[str, torch.Tensor] = {}
    for orig, new in names.items():
        if new in mapped:
            raise CheckpointError(f"two source keys map to {new!r} (one is {orig!r}); fix remap so names stay unique")
        mapped[new] = tensors[orig]
    return mapped, versions


def _match(model: nn.Module, target: Mapping[str, torch.Tensor], mapped: Mapping[str, torch.Tensor],
           versions: _versions.ModuleMeta | None, report: LoadReport) -> _versions.ModuleMeta:
    """Phase 2: match by name, then by shape; ties, module versions and close-name hints. The metadata to load."""
    groups = tie_groups(model)
    lazy: list[str] = []
    for key, value in target.items():
        if key not in mapped:
            report.missing.append(key)
        elif is_lazy(value):
            # An nn.Lazy* tensor has no shape yet: load_state_dict materialises it with the source's shape.
            report.matched.append(key)
            lazy.append(key)
        elif tuple(mapped[key].shape) != tuple(value.shape):
            report.shape_mismatched.append(ShapeMismatch(key, tuple(mapped[key].shape), tuple(value.shape)))
        else:
            report.matched.append(key)
            if mapped[key].dtype != value.dtype:
                report.cast.append((key, str(mapped[key].dtype).replace("torch.", ""),
                                    str(value.dtype).replace("torch.", "")))
    matched = set(report.matched)
    for names_group in groups:  # tied in the model but different in the source: only one set of values survives
        given = [n for n in report.matched if n in names_group]
        if len(given) > 1 and not all(_same(mapped[given[0]], mapped[n]) for n in given[1:]):
            report.notes.append(f"{', '.join(given)} are tied (one tensor) in the model but differ in the source; "
                                f"the model keeps the values of {given[-1]} (loaded last)")
    for names_group in groups:  # a tied tensor is filled when any of its names is
        if any(n in matched for n in names_group):
            for n in names_group:
                if n in report.missing:
                    report.missing.remove(n)
                    report.tied.append(n)
    report.unexpected = [k for k in mapped if k not in target]
    modules = dict(model.named_modules(remove_duplicate=False))
    load_meta = _apply_versions(report, modules, getattr(target, "_metadata", None) or {}, versions, set(mapped))
    if lazy:
        report.notes.append(f"{len(lazy)} uninitialised lazy tensor(s) take their shapes from the source: "
                            f"{', '.join(lazy[:4])}{' ...' if len(lazy) > 4 else ''}")
    for k in report.missing:
        hint = _closest(k, report.unexpected)
        if hint:
            report.suggestions[k] = hint
    for k in report.unexpected:
        hint = _closest(k, report.missing)
        if hint:
            report.suggestions[k] = hint
    prefix_hint = _prefix_hint(report.unexpected, report.missing)
    if prefix_hint:
        report.notes.append(prefix_hint)
    return load_meta


def _decide(report: LoadReport, strict: bool, on_mismatch: str) -> list[str]:
    """Phase 3: all or nothing. Why the load must be refused (empty: it goes ahead)."""
    problems = []
    if strict and (report.missing or report.unexpected):
        problems.append("strict=True and keys differ")
    if report.shape_mismatched and on_mismatch == "raise":
        problems.append("shapes differ and on_mismatch='raise'")
    return problems


def _apply(model: nn.Module, label: str, target: Mapping[str, torch.Tensor], mapped: Mapping[str, torch.Tensor],
           load_meta: _versions.ModuleMeta, on_mismatch: str, report: LoadReport) -> None:
    """Phase 4: load what matched (load_state_dict runs the modules' own load hooks), then re-initialise."""
    to_reinit = []
    if on_mismatch in ("skip", "reinit"):
        report.skipped = [m.name for m in report.shape_mismatched] if on_mismatch == "skip" else []
        if on_mismatch == "reinit":
            to_reinit = [m.name for m in report.shape_mismatched] + list(report.missing)
            # Missing nn.Lazy* tensors have no shape to initialise yet; their module does it on the first forward.
            lazy_missing = [k for k in to_reinit if is_lazy(target[k])]
            if lazy_missing:
                to_reinit = [k for k in to_reinit if k not in lazy_missing]
                report.notes.append(f"left {len(lazy_missing)} uninitialised lazy tensor(s) to their module's "
                                    f"first forward: {', '.join(lazy_missing[:4])}")
    state = _versions.with_metadata({k: mapped[k] for k in report.matched}, load_meta)
    on_meta = any(t.is_meta for t in target.values())
    try:
        result = model.load_state_dict(state, strict=False, assign=on_meta)
    except RuntimeError as e:
        detail = " ".join(str(e).split())  # torch's message spans lines and tabs; ours is one line
        raise CheckpointError(f"loading {label} into {report.model} failed: {detail}") from e
    except Exception as e:  # a module's own _load_from_state_dict refused, e.g. a version it does not know
        detail = " ".join(str(e).split())
        raise CheckpointError(f"loading {label} into {report.model} failed in a module's load hook "
                              f"({type(e).__name__}: {detail}); the model may be partly loaded") from e
    if result.unexpected_keys:
        raise CheckpointError(f"internal error: the model refused keys it listed: {result.unexpected_keys[:3]}")
    if to_reinit:
        policy = getattr(model, "init_policy", None)
        if policy is None:
            policy = "kaiming"
            report.init_policy = "the 'kaiming' preset (the model has no init_policy)"
        else:
            report.init_policy = "the model's init_policy"
        init_weights(model, policy, only=to_reinit)
        report.reinitialised = to_reinit
    report.loaded = True


def _prefix_step(kind: str, prefix: str) -> Callable[[str], str | None]:
    """A wrapper-prefix step as a rename of module key prefixes (``"layer1."``; ``""`` for the root)."""
    if kind == "strip":  # the wrapper itself ("") has no counterpart in the model
        return lambda p: p[len(prefix):] if p.startswith(prefix) else None
    return lambda p: prefix + p


def _remap_versions(versions: _versions.ModuleMeta, remap: Remap, before: Mapping[str, str],
                    after: Mapping[str, str]) -> _versions.ModuleMeta:
    """Module versions renamed as ``remap`` renamed the keys (``before``/``after``: source key -> name)."""
    if isinstance(remap, Mapping):  # its prefix rules rename modules exactly ("backbone." -> "")
        rules = remap
        return _versions.rename(versions, lambda p: _apply_remap([p], rules).get(p, (p, ""))[0])
    # A function is known only key by key: follow the tensor renames it made.
    return _versions.rename_by_keys(versions, ((before[o], after[o]) for o in before if o in after))


def _apply_versions(report: LoadReport, modules: Mapping[str, nn.Module], model_meta: Mapping[str, Any],
                    versions: _versions.ModuleMeta | None, source_keys: set[str]) -> _versions.ModuleMeta:
    """The module versions to load with (the source's, else the model's), noted in ``report``; BatchNorm
    counters that BatchNorm's version-1 migration fills are taken off ``report.missing``."""
    meta, given = _versions.complete(modules, model_meta, versions, source_keys)
    # Worth a note: the modules that load from the source and may read their version (BatchNorm, library
    # modules); a Linear never looks at it.
    covered = _versions.covered_by(source_keys)
    given = [n for n in given if n in covered and n in modules and _versions.reads_version(modules[n])]
    if given:
        shown = ", ".join(f"{n or '(the model itself)'} ({type(modules[n]).__name__}, version "
                          f"{meta[n].get('version')})" for n in given[:3])
        why = ("the source records no module versions (the state dict's _metadata: a file written before torchsmith "
               "kept them, or by another tool)" if versions is None else
               f"{len(given)} module(s) have no version in the source")
        report.notes.append(f"{why}; the {len(given)} module(s) that read theirs on load were given the version of "
                            f"the model they are loaded into: {shown}{' ...' if len(given) > 3 else ''}")
    owners = _versions.owners_of(source_keys)
    migrated = [k for k in report.missing if _versions.needs_counter_migration(modules, k, meta, owners)]
    if migrated:
        report.missing = [k for k in report.missing if k not in set(migrated)]
        report.notes.append(f"{len(migrated)} BatchNorm num_batches_tracked counter(s) absent from the source are "
                            f"filled by BatchNorm's own migration (the source has the version-1 layout): "
                            f"{', '.join(migrated[:4])}{' ...' if len(migrated) > 4 else ''}")
    return meta


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b)))


def _refusal(report: LoadReport, problems: list[str]) -> CheckpointError:
    def show(items: list[str]) -> str:
        return shorten([f"{k} (closest: {report.suggestions[k]})" if k in report.suggestions else k for k in items])

    details = []
    if report.missing:
        details.append(f"missing {show(report.missing)}")
    if report.unexpected:
        details.append(f"unexpected {show(report.unexpected)}")
    if report.shape_mismatched:
        m = report.shape_mismatched[0]
        shown = shorten([f"{m.name}: source {list(m.source_shape)} vs model {list(m.model_shape)}",
                         *report.shape_mismatched[1:]], 1)
        details.append(f"shape of {shown}")
    fixes = []
    if report.missing or report.unexpected:
        fixes.append("strict=False to load what matches" + (" or remap={old: new} to rename keys"))
    if report.shape_mismatched:
        fixes.append("on_mismatch='reinit' (or 'skip') for a new head")
    hint = next((n for n in report.notes if n.startswith("source keys carry")), None)
    msg = (f"{report.source} does not fit {report.model} ({report.summary()}): {'; '.join(details)}; "
           f"nothing was loaded. {('Hint: ' + hint + '. ') if hint else ''}Pass {', or '.join(fixes)}")
    err = CheckpointError(msg)
    err.report = report  # type: ignore[attr-defined]
    return err
