"""Read a state dict from a path or a mapping, safely.

What a file is comes from its content, never its name (:func:`identify`, by
the rules of :mod:`torchsmith.checkpoint._sniff`): safetensors files go
through torchsmith's validating reader; ``torch.save`` files (zip or pickle)
go through ``torch.load(weights_only=True)`` only: a file that needs anything
beyond tensors and plain containers is refused with the globals it names and
the way to convert it if the user trusts it. There is no unsafe fallback.
Either way the state dict's module versions (``_metadata``) come along.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchsmith.checkpoint import _format, _sniff, _versions
from torchsmith.errors import CheckpointError, describe_error, first_line

__all__ = ["SourceState", "read_state_dict", "state_from_object", "identify", "safe_torch_load", "find_pickle_globals",
           "UNSAFE_PICKLE_HELP"]

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".pkl")
#: Entries under which training scripts commonly nest the model's state dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params")

UNSAFE_PICKLE_HELP = (
    "unpickling it could run arbitrary code, so torchsmith refuses it and never falls back to unsafe loading. "
    "If you trust the file, convert it once with `torchsmith ckpt convert {path} OUT.safetensors --trust-pickle` "
    "(or, in Python, allow the named classes with torch.serialization.add_safe_globals([...])), then load the "
    ".safetensors file"
)


@dataclass
class SourceState:
    """A state dict read from somewhere, and what was noticed while reading it."""

    tensors: dict[str, torch.Tensor]
    label: str
    notes: list[str] = field(default_factory=list)
    verified: bool | None = None  # True: hash checked; None: no hash recorded; False: not checked
    metadata: dict[str, str] = field(default_factory=dict)
    kind: str = "state dict"  # "safetensors", "zip" or "pickle" (torch.save), or "state dict" (in memory)
    header: _format.Header | None = None  # the validated header of a safetensors file
    module_meta: _versions.ModuleMeta | None = None  # the state dict's _metadata; None: not recorded


def _allowed_globals() -> set[str]:
    allowed = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"}
    try:  # torch's own allowlist (private, so guarded); plus what the user allowed explicitly
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed |= set(_get_allowed_globals())
    except (ImportError, AttributeError, TypeError):
        pass
    getter = getattr(torch.serialization, "get_safe_globals", None)
    if getter is not None:
        for g in getter():
            obj = g[0] if isinstance(g, tuple) else g
            allowed.add(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    return allowed


def _pickle_streams(data: bytes) -> list[bytes]:
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return [zf.read(n) for n in zf.namelist() if n.endswith(".pkl")][:16]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
            return []
    return [data]


def _canonical(name: str) -> str:
    # Protocol-2 pickles name Python 2's module; the unpickler maps it to builtins.
    return "builtins." + name[len("__builtin__."):] if name.startswith("__builtin__.") else name


def find_pickle_globals(path: Path, limit: int = 200_000) -> list[str]:
    """The ``module.name`` globals a pickle (or the pickles in a torch zip) would import, read without running it."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    found: list[str] = []
    for stream in _pickle_streams(data):
        strings: list[str] = []
        try:
            for i, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(stream))):
                if i > limit:
                    break
                if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    found.append(_canonical(arg.replace(" ", ".")))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(_canonical(f"{strings[-2]}.{strings[-1]}"))
                elif isinstance(arg, str) and "UNICODE" in op.name:
                    strings.append(arg)
        except Exception:  # a malformed stream: keep what was read before the damage
            pass
    return list(dict.fromkeys(found))


def unsafe_globals(path: Path) -> list[str]:
    allowed = _allowed_globals()
    return [g for g in find_pickle_globals(path)
            if g not in allowed and not g.startswith(("torch._utils._rebuild_", "torch.serialization._get_layout"))]


def safe_torch_load(path: Path) -> Any:
    """``torch.load(path, weights_only=True, map_location="cpu")``; every failure is one CheckpointError."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols in damaged files; we raise instead
            warnings.simplefilter("ignore")
            if Path(path).suffix.lower() == ".safetensors":
                # Newer torch.load hands a path named *.safetensors to safetensors; this one holds a pickle.
                with open(path, "rb") as f:
                    return torch.load(f, map_location="cpu", weights_only=True)
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except pickle.UnpicklingError as e:
        unsafe = unsafe_globals(path)
        if unsafe:
            shown = ", ".join(unsafe[:5]) + (" ..." if len(unsafe) > 5 else "")
            whole = any(g.startswith(("torch.nn.modules.", "__main__.")) for g in unsafe)
            why = (" (it pickles whole objects, e.g. from torch.save(model); save model.state_dict() instead)"
                   if whole else "")
            raise CheckpointError(f"refused {path}: it names unsafe globals ({shown}){why}; "
                                  + UNSAFE_PICKLE_HELP.format(path=path)) from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_unpickler_reason(e)}") from None
    except Exception as e:  # zip, struct, EOF, Index, Memory, Runtime ...: all mean a malformed file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({describe_error(e, 240)})") from None


def _unpickler_reason(e: BaseException) -> str:
    """What torch's weights-only unpickler objected to, without its advice to load with weights_only=False
    (the wrong advice for a damaged file, and unsafe for any file)."""
    text = str(e)
    match = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:Check the documentation|$)", text, re.DOTALL)
    if match is None:
        return first_line(e, 200) or type(e).__name__
    reason = " ".join(match.group(1).split())
    return f"the safe (weights_only) unpickler stopped at: {reason[:200]}; the file is damaged or is not a state dict"


def _is_state(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def to_state_dict(obj: Any, label: str, notes: list[str]) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from what a file or the caller gave; wrappers are unwrapped and named."""
    return _unwrap_state(obj, label, notes)[0]


def _unwrap_state(obj: Any, label: str, notes: list[str]) -> tuple[dict[str, torch.Tensor], Any]:
    """:func:`to_state_dict`, and the dict the tensors were taken from (which may carry ``_metadata``)."""
    if isinstance(obj, torch.nn.Module):
        raise CheckpointError(f"{label} is an nn.Module; pass its state_dict() instead")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{label} holds a {type(obj).__name__}, not a state dict of tensors")
    if not _is_state(obj):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if _is_state(inner):
                others = [str(k) for k in obj if k != key]
                notes.append(f"took the {key!r} entry of {label}"
                             + (f" (it also holds {', '.join(others[:6])})" if others else ""))
                obj = inner
                break
    bad_keys = [k for k in obj if not isinstance(k, str)]
    if bad_keys:
        raise CheckpointError(f"{label} has non-string keys such as {bad_keys[0]!r}; "
                              "a state dict maps names to tensors")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    dropped = [k for k in obj if k not in tensors]
    if not tensors and obj:
        raise CheckpointError(f"{label} holds no tensors (entries: {', '.join(list(map(str, obj))[:6])}); "
                              "it is not a state dict")
    if dropped:
        notes.append(f"ignored {len(dropped)} entries that are not tensors: {', '.join(dropped[:6])}")
    return tensors, obj


def identify(path: Path) -> tuple[str, _format.Header | None]:
    """What the file at ``path`` is, by its structure: ``("safetensors", header)``, ``("zip", None)`` or
    ``("pickle", None)``; any other file is one CheckpointError saying what it holds.

    Safetensors is asked first and in full (a length that fits, a header that parses as the tensor table),
    so a safetensors file whose length starts with 0x80 (pickle's PROTO opcode) is never taken for a pickle.
    A file whose first bytes have the safetensors shape but whose header is damaged, and that is no
    ``torch.save`` file either, gets the safetensors reader's account of the damage.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_sniff.HEAD_BYTES)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    damage: CheckpointError | None = None
    if _sniff.safetensors_shaped(head, size, _format.MAX_HEADER):
        try:
            return "safetensors", _format.read_header(path)
        except CheckpointError as e:
            damage = e
    kind = _sniff.torch_kind(head)
    if kind is not None:
        return kind, None
    if damage is not None:
        raise damage
    raise CheckpointError(f"{path} is neither a safetensors file nor a PyTorch (torch.save) checkpoint: "
                          f"{_sniff.describe(head, size)}")


def _file_versions(header: _format.Header) -> _versions.ModuleMeta | None:
    raw = header.metadata.get(_versions.KEY)
    return None if raw is None else _versions.decode(raw, str(header.path))


def read_state_dict(source: Any, *, verify: bool = True) -> SourceState:
    """Read ``source`` (a path or a mapping of tensors) into a :class:`SourceState`."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} does not exist")
        if path.is_dir():
            raise CheckpointError(f"{path} is a directory, not a checkpoint file")
        notes: list[str] = []
        kind, header = identify(path)  # the content decides, never the suffix: files get renamed
        if header is None:
            if path.suffix.lower() == ".safetensors":
                notes.append(f"{path.name} is a PyTorch (torch.save) file despite its name; read it with "
                             "torch.load(weights_only=True)")
            return state_from_object(safe_torch_load(path), str(path), kind, notes)
        tensors, verified = _format.open_tensors(header, verify_hash=verify)  # verified first: a tampered
        meta = _file_versions(header)  # entry is reported as tampering, not as malformed JSON
        return SourceState(tensors, str(path), notes, verified=verified, metadata=header.metadata, kind=kind,
                           header=header, module_meta=meta)
    return state_from_object(source, "state dict")


def state_from_object(obj: Any, label: str, kind: str = "state dict", notes: list[str] | None = None) -> SourceState:
    """A :class:`SourceState` of what ``torch.load`` or the caller gave: its tensors and module versions."""
    notes = [] if notes is None else notes
    tensors, taken = _unwrap_state(obj, "the state dict" if label == "state dict" else label, notes)
    return SourceState(tensors, label, notes, verified=None, kind=kind, module_meta=_versions.of(taken))
