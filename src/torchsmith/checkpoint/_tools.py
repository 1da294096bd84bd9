"""What ``torchsmith ckpt info|diff|convert`` do: inspect, compare and convert checkpoints.

Each returns an object; ``str()`` renders it. Nothing here prints.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith.checkpoint import _format
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
from torchsmith.checkpoint._sources import (
    PICKLE_SUFFIXES,
    _sniff_safetensors,
    read_state_dict,
    safe_torch_load,
    to_state_dict,
)
from torchsmith.errors import CheckpointError, ConfigError

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
        from dataclasses import asdict

        return asdict(self)

    def __str__(self) -> str:
        check = {True: "sha256 verified", None: "no hash recorded", False: "hash not checked"}[self.verified]
        lines = [f"{self.path}: {self.format}, {self.file_size:,} bytes, {len(self.tensors)} tensors, "
                 f"{self.num_parameters:,} elements ({check})"]
        for key, value in self.metadata.items():
            text = value if isinstance(value, str) else json.dumps(value)
            lines.append(f"  {key}: {text if len(text) <= 200 else text[:197] + '...'}")
        if self.training_state:
            lines.append(f"  training state: {self.training_state}")
        lines += [f"  note: {n}" for n in self.notes]
        rows = [("tensor", "dtype", "shape", "elements")]
        for t in self.tensors:
            shape = "x".join(map(str, t.shape)) or "scalar"
            rows.append((t.name, t.dtype, shape + (f" (tied to {t.alias_of})" if t.alias_of else ""), f"{t.numel:,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines.append("")
        for r in rows:
            lines.append("  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                                    r[3].rjust(widths[3])]).rstrip())
        return "\n".join(lines)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def checkpoint_info(path: PathLike, *, verify: bool = True) -> CheckpointInfo:
    """Describe the checkpoint at ``path`` (safetensors, or a ``.pt`` read with ``weights_only=True``)."""
    path = as_path(path)
    src = read_state_dict(path, verify=verify)
    size = path.stat().st_size
    meta: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    if src.metadata or path.suffix.lower() == ".safetensors" and not _is_pickle(path):
        header = _format.read_header(path)
        for key, value in header.metadata.items():
            if key in ("arch", "input_size", "init_policy", "aliases"):
                try:
                    meta[key] = read_arch(header) if key == "arch" else json.loads(value)
                except (ValueError, RecursionError, CheckpointError):
                    meta[key] = value
            else:
                meta[key] = value
        aliases = meta.pop("aliases", {}) if isinstance(meta.get("aliases", {}), dict) else {}
        kind = {FORMAT: "torchsmith format", TRAIN_FORMAT: "torchsmith training state, format"}.get(
            header.metadata.get("format", ""))
        fmt = f"safetensors ({kind} {header.metadata.get('format_version', '?')})" if kind else "safetensors"
    else:
        fmt = "PyTorch pickle (read with weights_only=True)"
    tensors = [TensorInfo(name, _dtype_name(t.dtype), tuple(t.shape), t.numel(), t.numel() * t.element_size(),
                          aliases.get(name)) for name, t in src.tensors.items()]
    if path.suffix.lower() != ".safetensors":  # a pickle stores tied tensors once too: show it
        first: dict[tuple[Any, ...], str] = {}
        for i, (name, t) in enumerate(src.tensors.items()):
            ident = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
            if t.numel() and ident in first:
                tensors[i] = TensorInfo(**{**tensors[i].__dict__, "alias_of": first[ident]})
            first.setdefault(ident, name)
    companion = training_state_path(path)
    return CheckpointInfo(str(path), fmt, size, src.verified, meta, tensors, list(src.notes),
                          str(companion) if companion != path and companion.exists() else None)


def _is_pickle(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"


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
        from dataclasses import asdict

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
    """Convert a ``.pt``/``.pth``/``.bin`` state dict to a torchsmith ``.safetensors`` file; return ``dst``.

    With ``model`` (e.g. ``create_model("resnet18")``) the weights are first
    loaded into it strictly, and the file records its architecture, so
    ``torchsmith.load(dst)`` rebuilds it. ``trust_pickle=True`` reads a file that
    ``weights_only=True`` refuses with a full unpickler, which runs whatever
    code the file contains: only for files you trust; it is never automatic.
    """
    src, dst = as_path(src, "the source"), _target(dst)
    if dst.suffix.lower() != ".safetensors":
        raise ConfigError(f"the output {dst} must end in .safetensors")
    if dst.resolve() == src.resolve():
        raise ConfigError(f"the output {dst} is the input; give another path")
    notes: list[str] = []
    if not src.exists():
        raise CheckpointError(f"checkpoint {src} does not exist")
    if trust_pickle:
        try:
            obj = torch.load(src, map_location="cpu", weights_only=False)  # the user vouched for this file
        except Exception as e:
            raise CheckpointError(f"{src} cannot be read even with the full unpickler ({type(e).__name__}: {e})") from e
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
        state = to_state_dict(obj, str(src), notes)
    elif _is_pickle(src) or (src.suffix.lower() in PICKLE_SUFFIXES and not _sniff_safetensors(src)):
        state = to_state_dict(safe_torch_load(src), str(src), notes)
    else:
        read = read_state_dict(src)
        refuse_training_state(read.metadata, src)
        state = read.tensors
    if model is not None:
        load_into(model, state, strict=True)
        return save(model, dst)
    unique, aliases = _dedupe(state)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "torch_version": torch.__version__,
            "torchsmith_version": _version(), "converted_from": src.name}
    if aliases:
        meta["aliases"] = json.dumps(aliases, sort_keys=True)
    tensors = {k: _format.prepare_tensor(k, t) for k, t in unique.items()}
    _format.write_safetensors(dst, tensors, meta)
    return dst
