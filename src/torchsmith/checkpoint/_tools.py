"""What ``torchsmith ckpt info|diff|convert`` do: inspect, compare and convert checkpoints.

Each returns an object; ``str()`` renders it. Nothing here prints.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith.checkpoint import _format, _versions
from torchsmith.checkpoint._atomic import atomic_fd
from torchsmith.checkpoint._core import (
    FORMAT,
    FORMAT_VERSION,
    TRAIN_FORMAT,
    _dedupe,
    _target,
    _version,
    as_path,
    read_arch,
    refuse_training_state,
    save,
    training_state_path,
)
from torchsmith.checkpoint._loadinto import load_into
from torchsmith.checkpoint._sources import read_state_dict, state_from_object
from torchsmith.errors import CheckpointError, ConfigError, format_size

__all__ = ["TensorInfo", "CheckpointInfo", "CheckpointDiff", "checkpoint_info", "diff_checkpoints",
           "convert_checkpoint"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    numel: int
    nbytes: int
    alias_of: str | None = None  # tied: stored once, under this name


@dataclass
class CheckpointInfo:
    """A checkpoint's description: format, metadata, hash status and its tensors."""

    path: str
    format: str
    file_size: int
    verified: bool | None
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    training_state: str | None = None  # the companion file, when there is one

    @property
    def num_parameters(self) -> int:
        """Elements stored (tied tensors counted once)."""
        return sum(t.numel for t in self.tensors if t.alias_of is None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        check = {True: "sha256 verified", None: "no hash recorded", False: "hash not checked"}[self.verified]
        lines = [f"{self.path}: {self.format}, {self.file_size:,} bytes, {len(self.tensors)} tensors, "
                 f"{self.num_parameters:,} elements ({check})"]
        for key, value in self.metadata.items():
            if key == _versions.KEY and isinstance(value, dict):
                lines.append(f"  {key}: {_versions_summary(value)}")
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            lines.append(f"  {key}: {text if len(text) <= 200 else text[:197] + '...'}")
        if self.training_state:
            lines.append(f"  training state: {self.training_state}")
        lines += [f"  note: {n}" for n in self.notes]
        rows = [("tensor", "dtype", "shape", "elements")]
        for t in self.tensors:
            shape = format_size(t.shape)
            rows.append((t.name, t.dtype, shape + (f" (tied to {t.alias_of})" if t.alias_of else ""), f"{t.numel:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines.append("")
        for r in rows:
            lines.append("  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                                    r[3].rjust(widths[3])]).rstrip())
        return "\n".join(lines)


def _versions_summary(meta: dict[str, Any]) -> str:
    """``{"": {"version": 1}, "bn": {"version": 2}}`` -> "2 modules (version 1: 1, version 2: 1)"."""
    counts: dict[str, int] = {}
    for entry in meta.values():
        version = entry.get("version") if isinstance(entry, dict) else None
        label = "no version" if version is None else f"version {version}"
        counts[label] = counts.get(label, 0) + 1
    parts = ", ".join(f"{label}: {n}" for label, n in sorted(counts.items()))
    return f"{len(meta)} module{'s' if len(meta) != 1 else ''}" + (f" ({parts})" if parts else "")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def checkpoint_info(path: PathLike, *, verify: bool = True) -> CheckpointInfo:
    """Describe the checkpoint at ``path`` (safetensors, or a ``.pt`` read with ``weights_only=True``)."""
    path = as_path(path)
    src = read_state_dict(path, verify=verify)
    size = path.stat().st_size
    meta: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    if src.header is not None:
        header = src.header
        for key, value in header.metadata.items():
            if key in ("arch", "input_size", "init_policy", "aliases"):
                try:
                    meta[key] = read_arch(header) if key == "arch" else json.loads(value)
                except (ValueError, RecursionError, CheckpointError):
                    meta[key] = value
            elif key == _versions.KEY and src.module_meta is not None:
                meta[key] = src.module_meta
            else:
                meta[key] = value
        aliases = meta.pop("aliases", {}) if isinstance(meta.get("aliases", {}), dict) else {}
        kind = {FORMAT: "torchsmith format", TRAIN_FORMAT: "torchsmith training state, format"}.get(
            header.metadata.get("format", ""))
        fmt = f"safetensors ({kind} {header.metadata.get('format_version', '?')})" if kind else "safetensors"
    else:
        fmt = "PyTorch pickle (read with weights_only=True)"
        if src.module_meta is not None:
            meta[_versions.KEY] = src.module_meta
    tensors = [TensorInfo(name, _dtype_name(t.dtype), tuple(t.shape), t.numel(), t.numel() * t.element_size(),
                          aliases.get(name)) for name, t in src.tensors.items()]
    if src.header is None:  # a pickle stores tied tensors once too: show it
        first: dict[tuple[Any, ...], str] = {}
        for i, (name, t) in enumerate(src.tensors.items()):
            ident = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
            if t.numel() and ident in first:
                tensors[i] = TensorInfo(**{**tensors[i].__dict__, "alias_of": first[ident]})
            first.setdefault(ident, name)
    companion = training_state_path(path)
    return CheckpointInfo(str(path), fmt, size, src.verified, meta, tensors, list(src.notes),
                          str(companion) if companion != path and companion.exists() else None)


@dataclass
class CheckpointDiff:
    """Keys, shapes, dtypes and values of two checkpoints compared."""

    a: str
    b: str
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dtype: list[tuple[str, str, str]] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # common keys of equal shape

    @property
    def identical(self) -> bool:
        return not (self.only_a or self.only_b or self.shape or self.dtype
                    or any(v != 0 for v in self.max_abs_diff.values()))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["identical"] = self.identical
        # JSON has no infinity (json.dumps would write the invalid token Infinity): null stands for it
        out["max_abs_diff"] = {k: v if math.isfinite(v) else None for k, v in self.max_abs_diff.items()}
        return out

    def __str__(self) -> str:
        differing = {k: v for k, v in self.max_abs_diff.items() if v != 0}
        lines = [f"{self.a} vs {self.b}: " + ("identical" if self.identical else
                 f"{len(self.only_a)} only in A, {len(self.only_b)} only in B, {len(self.shape)} shapes differ, "
                 f"{len(differing)} of {len(self.max_abs_diff)} common tensors differ in value")]
        lines += [f"  only in A: {k}" for k in self.only_a]
        lines += [f"  only in B: {k}" for k in self.only_b]
        lines += [f"  shape: {k}: {list(sa)} vs {list(sb)}" for k, sa, sb in self.shape]
        lines += [f"  dtype: {k}: {da} vs {db}" for k, da, db in self.dtype]
        for k, v in sorted(differing.items(), key=lambda kv: -kv[1] if kv[1] == kv[1] else float("-inf")):
            lines.append(f"  max |A-B| {v:.6g}  {k}")
        return "\n".join(lines)


def diff_checkpoints(a: PathLike, b: PathLike, *, verify: bool = True) -> CheckpointDiff:
    """Compare two checkpoints tensor by tensor (``max |A - B|`` in float64 for tensors of equal shape)."""
    sa, sb = read_state_dict(as_path(a), verify=verify), read_state_dict(as_path(b), verify=verify)
    out = CheckpointDiff(str(a), str(b))
    out.only_a = [k for k in sa.tensors if k not in sb.tensors]
    out.only_b = [k for k in sb.tensors if k not in sa.tensors]
    for key, ta in sa.tensors.items():
        tb = sb.tensors.get(key)
        if tb is None:
            continue
        if tuple(ta.shape) != tuple(tb.shape):
            out.shape.append((key, tuple(ta.shape), tuple(tb.shape)))
            continue
        if ta.dtype != tb.dtype:
            out.dtype.append((key, _dtype_name(ta.dtype), _dtype_name(tb.dtype)))
        if ta.numel() == 0:
            out.max_abs_diff[key] = 0.0
            continue
        # complex128 for complex tensors: float64 would drop the imaginary parts, and their differences
        wide = torch.complex128 if ta.is_complex() or tb.is_complex() else torch.float64
        with torch.no_grad():
            wa, wb = ta.to(wide), tb.to(wide)
            # NaN where both hold NaN, and equal infinities, are equal values: a file is identical to itself
            same = (wa == wb) | (torch.isnan(wa) & torch.isnan(wb))
            # NaN on one side only: as different as values get, and inf sorts and prints where NaN would not
            delta = torch.nan_to_num((wa - wb).abs(), nan=math.inf, posinf=math.inf)
            d = torch.where(same, torch.zeros((), dtype=torch.float64), delta).max()
        out.max_abs_diff[key] = float(d)
    return out


def convert_checkpoint(src: PathLike, dst: PathLike, *, model: nn.Module | None = None,
                       trust_pickle: bool = False) -> Path:
    """Convert a checkpoint to a torchsmith ``.safetensors`` file, or a safetensors file to a ``.pt``; return ``dst``.

    ``dst`` ending in ``.safetensors``: a ``.pt``/``.pth``/``.bin`` state dict (or
    another safetensors file) becomes a torchsmith checkpoint. With ``model``
    (e.g. ``create_model("resnet18")``) the weights are first loaded into it
    strictly, and the file records its architecture, so ``torchsmith.load(dst)``
    rebuilds it. ``trust_pickle=True`` reads a file that ``weights_only=True``
    refuses with a full unpickler, which runs whatever code the file contains:
    only for files you trust; it is never automatic.

    ``dst`` ending in ``.pt``/``.pth``/``.bin``: the state dict is written with
    ``torch.save`` (tensors and plain containers only, so ``torch.load(dst,
    weights_only=True)`` reads it), for tools that take nothing else.

    Either way the module versions (the state dict's ``_metadata``) go along.
    """
    src, dst = as_path(src, "the source"), _target(dst)
    to_pickle = dst.suffix.lower() in _PT_OUT
    if dst.suffix.lower() != ".safetensors" and not to_pickle:
        raise ConfigError(f"the output {dst} must end in .safetensors (or {', '.join(_PT_OUT)} for a torch.save "
                          "state dict)")
    if dst.resolve() == src.resolve():
        raise ConfigError(f"the output {dst} is the input; give another path")
    if not src.exists():
        raise CheckpointError(f"checkpoint {src} does not exist")
    if trust_pickle:
        try:
            obj = torch.load(src, map_location="cpu", weights_only=False)  # the user vouched for this file
        except Exception as e:
            raise CheckpointError(f"{src} cannot be read even with the full unpickler ({type(e).__name__}: {e})") from e
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
        read = state_from_object(obj, str(src))
    else:
        read = read_state_dict(src)
        refuse_training_state(read.metadata, src)
    state, versions = read.tensors, read.module_meta
    if model is not None:
        load_into(model, _versions.with_metadata(state, versions) if versions is not None else state, strict=True)
        if not to_pickle:
            return save(model, dst)
        state = model.state_dict()
        versions = _versions.of(state)
    if to_pickle:
        _write_torch(dst, state, versions)
        return dst
    unique, aliases = _dedupe(state)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "torch_version": torch.__version__,
            "torchsmith_version": _version(), "converted_from": src.name}
    if aliases:
        meta["aliases"] = json.dumps(aliases, sort_keys=True)
    if versions is not None:
        meta[_versions.KEY] = _versions.encode(versions)
    tensors = {k: _format.prepare_tensor(k, t) for k, t in unique.items()}
    _format.write_safetensors(dst, tensors, meta)
    return dst


_PT_OUT = (".pt", ".pth", ".bin")


def _write_torch(dst: Path, state: Mapping[str, torch.Tensor], versions: _versions.ModuleMeta | None) -> None:
    """``torch.save`` of ``state`` (with its module versions) to ``dst``, atomically like every save."""
    tensors = {k: _format.prepare_tensor(k, t) for k, t in state.items()}  # dense CPU tensors, as safetensors
    out = OrderedDict(tensors) if versions is None else _versions.with_metadata(tensors, versions)
    with atomic_fd(dst) as fd, os.fdopen(fd, "wb", closefd=False) as f:
        torch.save(out, f)
