"""Module versions: a state dict's ``_metadata``, kept in the checkpoint and given back on load.

``model.state_dict()`` is an OrderedDict with an attribute ``_metadata``: for each
module, by its name (``""`` for the root), a dict such as ``{"version": 2}``
(``type(module)._version``). ``load_state_dict`` hands each module its entry, and
``_load_from_state_dict`` reads the version to migrate older layouts: BatchNorm,
at version 2, added ``num_batches_tracked`` and fills it in for a version-1 state
dict; library modules refuse a state dict without a version. A pickle keeps the
attribute; a safetensors file has no place for it, so torchsmith stores it as JSON
under the metadata key :data:`KEY`.

A source without versions (an older torchsmith file, another tool's file) gets,
module by module, the version of the model it is loaded into, and the
``LoadReport`` says so. The one exception is the layout the file visibly has: a
BatchNorm whose ``num_batches_tracked`` the source lacks is given version 1, so
BatchNorm's own migration fills the counter, as ``load_state_dict`` does for it.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from torchsmith.errors import CheckpointError

__all__ = ["KEY", "ModuleMeta", "of", "encode", "decode", "rename", "rename_by_keys", "module_pairs",
           "with_metadata", "reads_version", "covered_by", "owners_of", "complete", "needs_counter_migration"]

#: The safetensors metadata key under which the module versions are stored (a JSON object).
KEY = "state_dict_metadata"
#: module name ("" for the root) -> its local metadata, e.g. {"version": 2}
ModuleMeta = dict[str, dict[str, Any]]
_COUNTER = "num_batches_tracked"


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, int, bool))


def _version_ok(entry: Mapping[str, Any]) -> bool:
    version = entry.get("version")
    return version is None or (isinstance(version, int) and not isinstance(version, bool))


def of(state: Any) -> ModuleMeta | None:
    """The module metadata a state dict object carries (``state._metadata``), or None.

    Lenient, for pickles and in-memory dicts: entries that are not ``{str: plain value}`` are left out
    (torch would only pass them on to the modules' own hooks).
    """
    raw = getattr(state, "_metadata", None)
    if not isinstance(raw, Mapping):
        return None
    out: ModuleMeta = {}
    for name, entry in raw.items():
        if isinstance(name, str) and isinstance(entry, Mapping):
            kept = {k: v for k, v in entry.items() if isinstance(k, str) and _scalar(v)}
            if not _version_ok(kept):
                kept.pop("version")
            out[name] = kept
    return out


def encode(meta: Mapping[str, Mapping[str, Any]]) -> str:
    """``meta`` as the compact JSON stored under :data:`KEY` (plain values only)."""
    clean = {name: {k: v for k, v in entry.items() if isinstance(k, str) and _scalar(v)}
             for name, entry in meta.items() if isinstance(name, str)}
    return json.dumps(clean, separators=(",", ":"), allow_nan=False)


def decode(raw: str, where: str) -> ModuleMeta:
    """The JSON stored under :data:`KEY`, checked: a malformed value is a CheckpointError naming ``where``."""
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{where}: metadata {KEY!r} is not valid JSON") from None
    if not isinstance(meta, dict) or not all(
            isinstance(entry, dict) and all(_scalar(v) for v in entry.values()) and _version_ok(entry)
            for entry in meta.values()):
        raise CheckpointError(f"{where}: metadata {KEY!r} must map module names to objects of plain values "
                              "with an integer 'version'")
    return meta


def _as_prefix(name: str) -> str:
    return name + "." if name else ""


def _as_name(prefix: str) -> str:
    return prefix[:-1] if prefix.endswith(".") else prefix


def rename(meta: ModuleMeta, key_map: Callable[[str], str | None]) -> ModuleMeta:
    """``meta`` with each module renamed as ``key_map`` renames the keys under it.

    ``key_map`` takes a key prefix (``"layer1.0."``; ``""`` for the root) and returns the new prefix, or
    None where the module has no counterpart (e.g. the DDP wrapper itself when ``module.`` is stripped).
    A renamed module wins over one that kept its name.
    """
    renamed: ModuleMeta = {}
    kept: ModuleMeta = {}
    for name, entry in meta.items():
        prefix = _as_prefix(name)
        new = key_map(prefix)
        if new is None:
            continue
        (kept if new == prefix else renamed)[_as_name(new)] = entry
    return {**kept, **renamed}


def module_pairs(old_key: str, new_key: str) -> list[tuple[str, str]]:
    """The modules a tensor rename ``old_key -> new_key`` implies: its owner and, aligned from the end,
    the owner's ancestors (``backbone.layer1.0.conv.weight -> layer1.0.conv.weight`` pairs
    ``backbone.layer1`` with ``layer1`` and ``backbone`` with the root)."""
    a, b = old_key.split(".")[:-1], new_key.split(".")[:-1]
    same = 0
    while same < min(len(a), len(b)) and a[len(a) - 1 - same] == b[len(b) - 1 - same]:
        same += 1
    return [(".".join(a[:len(a) - j]), ".".join(b[:len(b) - j])) for j in range(same + 1)]


def rename_by_keys(meta: ModuleMeta, renames: Iterable[tuple[str, str]]) -> ModuleMeta:
    """``meta`` with its modules renamed as the tensor renames ``(old key, new key)`` imply
    (:func:`module_pairs`; the first rename that names a module decides). For a ``remap`` function,
    whose rule is known only key by key; modules holding no tensor keep their names."""
    pairs: dict[str, str] = {}
    for old, new in renames:
        if old != new:
            for a, b in module_pairs(old, new):
                pairs.setdefault(a, b)
    return rename(meta, lambda prefix: _as_prefix(pairs[_as_name(prefix)]) if _as_name(prefix) in pairs else prefix)


def with_metadata(tensors: Mapping[str, torch.Tensor], meta: ModuleMeta) -> OrderedDict[str, torch.Tensor]:
    """An OrderedDict of ``tensors`` whose ``_metadata`` is a fresh copy of ``meta`` (torch writes into it)."""
    state: OrderedDict[str, torch.Tensor] = OrderedDict(tensors)
    state._metadata = OrderedDict((name, dict(entry)) for name, entry in meta.items())  # type: ignore[attr-defined]
    return state


def _counter_owner(modules: Mapping[str, nn.Module], name: str) -> bool:
    module = modules.get(name)
    return isinstance(module, _NormBase) and bool(module.track_running_stats)


def reads_version(module: nn.Module) -> bool:
    """Whether ``module`` may read its version on load: its class overrides ``_load_from_state_dict``
    (BatchNorm, library modules) or it has load-state-dict pre-hooks. Other modules never see it."""
    return (type(module)._load_from_state_dict is not nn.Module._load_from_state_dict
            or bool(module._load_state_dict_pre_hooks))


def covered_by(keys: Iterable[str]) -> set[str]:
    """The modules that load something from ``keys``: their owners and the owners' ancestors."""
    out = {""}
    for key in keys:
        parts = key.split(".")[:-1]
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


def owners_of(keys: Iterable[str]) -> set[str]:
    """The names of the modules that directly hold ``keys`` (``"bn.running_mean"`` -> ``"bn"``)."""
    return {k.rpartition(".")[0] for k in keys}


def needs_counter_migration(modules: Mapping[str, nn.Module], key: str, meta: ModuleMeta,
                            source_owners: set[str]) -> bool:
    """True when the model key ``key``, absent from the source, is a BatchNorm ``num_batches_tracked`` that
    the module's own migration fills in: its version in ``meta`` is below 2 and the source holds the rest
    of the module (``source_owners``: :func:`owners_of` the source keys; a BatchNorm missing altogether is
    missing, counter included)."""
    owner, _, leaf = key.rpartition(".")
    if leaf != _COUNTER or owner not in source_owners or not _counter_owner(modules, owner):
        return False
    version = meta.get(owner, {}).get("version")
    return version is None or version < 2


def complete(modules: Mapping[str, nn.Module], model_meta: Mapping[str, Mapping[str, Any]],
             source: ModuleMeta | None, source_keys: set[str]) -> tuple[ModuleMeta, list[str]]:
    """The metadata to load with: the source's entry for each module of the model, else the model's own.

    ``modules``: the model's ``named_modules(remove_duplicate=False)``; ``model_meta``: its
    ``state_dict()._metadata``; ``source_keys``: the source's keys, named as the model names them.
    Returns ``(meta, given)``, ``given`` naming the modules that got the model's version. A BatchNorm the
    source holds without its ``num_batches_tracked`` and without a version gets version 1 instead: the
    layout the source has (see the module docstring).
    """
    source = source or {}
    if not model_meta:  # a state_dict() that drops _metadata (overridden by a library): ask the modules
        model_meta = {name: {"version": module._version} for name, module in modules.items()}
    owners = owners_of(source_keys)
    meta: ModuleMeta = {}
    given: list[str] = []
    for name, own in model_meta.items():
        if name in source:
            meta[name] = dict(source[name])
            continue
        entry = dict(own)
        if name in owners and _as_prefix(name) + _COUNTER not in source_keys and _counter_owner(modules, name):
            entry["version"] = 1
        else:
            given.append(name)
        meta[name] = entry
    return meta, given
