"""Read a state dict from a path or a mapping, safely.

``.safetensors`` files go through torchsmith's validating reader. ``.pt``,
``.pth``, ``.bin`` and other pickle-based files go through
``torch.load(weights_only=True)`` only: a file that needs anything beyond
tensors and plain containers is refused with the globals it names and the way
to convert it if the user trusts it. There is no unsafe fallback.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torchsmith.checkpoint import _format
from torchsmith.errors import CheckpointError

__all__ = ["SourceState", "read_state_dict", "safe_torch_load", "find_pickle_globals", "UNSAFE_PICKLE_HELP"]

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
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {_first_line(e)}") from None
    except Exception as e:  # zip, struct, EOF, Index, Memory, Runtime ...: all mean a malformed file
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _is_state(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def to_state_dict(obj: Any, label: str, notes: list[str]) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from what a file or the caller gave; wrappers are unwrapped and named."""
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
    return tensors


def _sniff_pickle(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"


def _sniff_safetensors(path: Path) -> bool:
    """8 bytes of a header length that fits the file, then the JSON header's ``{``."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8


def read_state_dict(source: Any, *, verify: bool = True) -> SourceState:
    """Read ``source`` (a path or a mapping of tensors) into a :class:`SourceState`."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} does not exist")
        if path.is_dir():
            raise CheckpointError(f"{path} is a directory, not a checkpoint file")
        notes: list[str] = []
        # The content decides, the suffix only when the content says nothing: files get renamed.
        pickled = _sniff_pickle(path)
        if pickled or (path.suffix.lower() in PICKLE_SUFFIXES and not _sniff_safetensors(path)):
            if path.suffix.lower() == ".safetensors":
                notes.append(f"{path.name} is a PyTorch (torch.save) file despite its name; read it with "
                             "torch.load(weights_only=True)")
            tensors = to_state_dict(safe_torch_load(path), str(path), notes)
            return SourceState(tensors, str(path), notes, verified=None)
        header = _format.read_header(path)
        tensors, verified = _format.open_tensors(header, verify_hash=verify)
        return SourceState(tensors, str(path), notes, verified=verified, metadata=header.metadata)
    notes = []
    return SourceState(to_state_dict(source, "the state dict", notes), "state dict", notes, verified=None)
