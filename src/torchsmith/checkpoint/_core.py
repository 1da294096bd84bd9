"""``save`` / ``load`` / ``load_training_state``: self-describing, atomic, pickle-free checkpoints.

A checkpoint is one safetensors file whose metadata describes it (format
version, torchsmith and torch versions, the architecture, input size, sha256 of
the tensor data and of the tensor table, tied-weight aliases). Training state
(optimizer, scheduler, RNG states, ``extra``) goes to a companion safetensors
file, ``<stem>.train<suffix>`` next to it, whose metadata records the hash of
the weights it belongs to, so a stale or mismatched pair is refused.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parameter import is_lazy

from torchsmith._code import CODE_ATTR, rebuild_from_code
from torchsmith._meta import build_on_meta
from torchsmith._version import __version__
from torchsmith.checkpoint import _format, _versions
from torchsmith.checkpoint._atomic import commit_deferred, discard_deferred, fsync_dir, temp_files_for, writer_alive
from torchsmith.checkpoint._codec import decode, encode
from torchsmith.contract import input_spec, lazy_tensors, materialise_lazy
from torchsmith.errors import CheckpointError, ConfigError, TorchsmithError
from torchsmith.registry import ARCH_ATTR, create_model
from torchsmith.spec import build as build_spec

__all__ = ["save", "load", "load_training_state", "training_state_path", "FORMAT", "FORMAT_VERSION",
           "build_from_arch", "read_arch", "tie_groups", "set_tensor", "refuse_training_state", "as_path"]

FORMAT = "torchsmith.checkpoint"
TRAIN_FORMAT = "torchsmith.training_state"
FORMAT_VERSION = "1"
PathLike = str | os.PathLike[str]


def training_state_path(path: PathLike) -> Path:
    """``run/model.safetensors`` -> ``run/model.train.safetensors`` (the companion file)."""
    path = Path(path)
    if path.name.endswith(".train" + path.suffix):
        return path
    return path.with_name(f"{path.stem}.train{path.suffix}")


def as_path(path: Any, what: str = "path") -> Path:
    """``path`` as a Path; anything else (None, a number) is a CheckpointError rather than a TypeError."""
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"{what} must be a file path (str or pathlib.Path), not {type(path).__name__}")
    return Path(path)


def _target(path: PathLike) -> Path:
    path = as_path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give a file path like {path / 'model.safetensors'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CheckpointError(f"cannot save {path}: directory {parent} does not exist (create it first)")
    return path


# --------------------------------------------------------------------------- save
def tie_groups(model: nn.Module) -> list[list[str]]:
    """Names that refer to the same parameter or buffer object, e.g. [['emb.weight', 'head.weight']]."""
    by_id: dict[int, list[str]] = {}
    for name, t in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(t), []).append(name)
    for name, b in model.named_buffers(remove_duplicate=False):
        if b is not None:
            by_id.setdefault(id(b), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def _dedupe(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store each shared tensor once: identical views of the same memory become aliases of the first name."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.numel() > 0 and not t.is_meta and t.layout == torch.strided:
            key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
            if key in seen:
                aliases[name] = seen[key]
                continue
            seen[key] = name
        unique[name] = t
    return unique, aliases


def _arch_metadata(model: nn.Module) -> dict[str, str]:
    meta: dict[str, str] = {}
    arch = getattr(model, ARCH_ATTR, None)
    if arch is not None:
        if not isinstance(arch, Mapping) or not ({"name"} <= set(arch) or "spec" in arch):
            raise CheckpointError(f"model.{ARCH_ATTR} must be {{'name': ..., 'kwargs': {{...}}}} or "
                                  f"{{'spec': {{...}}}}, not {arch!r:.80}")
        where = f"model option of {arch.get('name', 'spec')!r}"
        meta["arch"] = json.dumps(encode(dict(arch), None, where), allow_nan=False)
    code = getattr(model, CODE_ATTR, None)
    if arch is None and isinstance(code, Mapping):  # built from the user's file: load() builds it from there
        try:
            meta["code"] = json.dumps(encode(dict(code), None, f"option of {code.get('ref')}"), allow_nan=False)
        except CheckpointError:
            pass  # options that cannot be stored: the file loads with load_into, as any state dict
    try:  # informational: default_input_size, a library config or the first layer (the model contract)
        meta["input_size"] = json.dumps(list(input_spec(model).size))
    except ConfigError:
        pass
    policy = getattr(model, "init_policy", None)
    if policy is not None:
        try:  # informational: only stored when it is plain data
            meta["init_policy"] = json.dumps(encode(policy, None, "init_policy"), allow_nan=False)
        except (CheckpointError, ValueError):
            pass
    meta["class"] = f"{type(model).__module__}.{type(model).__qualname__}"
    return meta


def _rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()  # ('MT19937', keys, pos, has_gauss, cached_gaussian)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": np_state[0], "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save(model: nn.Module, path: PathLike, *, optimizer: torch.optim.Optimizer | None = None,
         scheduler: Any = None, extra: Mapping[str, Any] | None = None, input_size: Any = None) -> Path:
    """Save ``model``'s weights to ``path`` (safetensors) atomically; return the path.

    The file's metadata describes the model (format version, torchsmith and torch versions, the architecture,
    input size, the modules' versions, sha256 hashes), so :func:`load` rebuilds it; tied weights are stored
    once. The write goes to a temporary file in the same directory, is fsynced and renamed: a crash leaves the
    old or the new checkpoint, never a broken one. Everything that could fail on the model's contents
    (unstorable options or dtypes) fails before any file is touched. A ``torch.compile`` or
    ``(Distributed)DataParallel`` wrapper is unwrapped: the model inside is saved. A model with ``nn.Lazy*``
    layers that never ran is sized first by one dry run at ``input_size`` (or the size its contract knows), as
    ``net(X)`` would: the model itself gets those shapes and fresh weights, and what is saved is what it then
    holds.

    Args:
        model: The module to save.
        path: The ``.safetensors`` file to write; its directory must exist.
        optimizer: An optimizer whose state goes to the training-state companion.
        scheduler: A learning-rate scheduler whose state goes to the companion.
        extra: Your own JSON-ready values for the companion, e.g. ``{"epoch": 3, "step": 120}``.
        input_size: One sample's size without the batch, recorded in the metadata (and used to size lazy
            layers); default: what the model contract knows.

    Returns:
        The path written. With ``optimizer``, ``scheduler`` or ``extra`` the training state (their state
        dicts, the torch/CUDA/numpy/python RNG states and ``extra``) goes to
        :func:`torchsmith.checkpoint.training_state_path` ``(path)``; without them a companion left from an
        earlier save is removed, so the pair on disk always belongs together.

    Raises:
        CheckpointError: A bad path (a directory, a missing parent, a companion's name), an argument of the
            wrong type, or model contents that cannot be stored; nothing is written then.
    """
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"save needs an nn.Module, not {type(model).__name__}")
    model = _unwrap(model)
    path = _target(path)
    state = _sized_state(model, input_size)
    for obj, key in ((optimizer, "optimizer"), (scheduler, "scheduler")):
        if obj is not None and not callable(getattr(obj, "state_dict", None)):
            raise CheckpointError(f"{key} must be a torch.optim {'Optimizer' if key == 'optimizer' else 'LRScheduler'}"
                                  f" (an object with state_dict()), not {type(obj).__name__}")
    tensors, meta = _weights_file(model, state)
    training = None
    if optimizer is not None or scheduler is not None or extra is not None:
        training = _training_state(optimizer, scheduler, extra)
    _write(path, tensors, meta, training)
    return path


def _sized_state(model: nn.Module, input_size: Any) -> dict[str, torch.Tensor]:
    """The state dict to save, after sizing lazy layers by one dry run; refused while a tensor has no shape."""
    if lazy_tensors(model):
        materialise_lazy(model, input_size)
    state = model.state_dict()
    lazy = [name for name, t in state.items() if is_lazy(t)]
    if lazy:  # nn.Lazy* modules before their first forward: the tensors have no shape or data yet
        raise CheckpointError(f"{type(model).__name__} has uninitialised lazy tensors ({', '.join(lazy[:4])}"
                              f"{' ...' if len(lazy) > 4 else ''}); run one forward pass on a sample batch so "
                              "its nn.Lazy* modules get their shapes, then save")
    return state


def _weights_file(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                                 dict[str, str]]:
    """The weights file's tensors (tied ones once) and metadata (versions, architecture, aliases)."""
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "torch_version": torch.__version__,
            "torchsmith_version": _version()}
    meta.update(_arch_metadata(model))
    versions = _versions.of(state)
    if versions is not None:  # the modules' versions, which their _load_from_state_dict reads
        meta[_versions.KEY] = _versions.encode(versions)
    unique, aliases = _dedupe(state)
    tensors = {name: _format.prepare_tensor(name, t) for name, t in unique.items()}
    if aliases:
        meta["aliases"] = json.dumps(aliases, sort_keys=True)
    return tensors, meta


def _training_state(optimizer: torch.optim.Optimizer | None, scheduler: Any,
                    extra: Mapping[str, Any] | None) -> tuple[dict[str, torch.Tensor], str]:
    """The training-state companion's tensors and its JSON document (optimizer, scheduler, RNG, extra)."""
    train_tensors: dict[str, torch.Tensor] = {}
    if extra is not None and not isinstance(extra, Mapping):
        raise CheckpointError(f"extra must be a dict such as {{'epoch': 3}}, not {type(extra).__name__}")
    doc = {
        "optimizer": None if optimizer is None else encode(optimizer.state_dict(), train_tensors, "optimizer"),
        "optimizer_class": None if optimizer is None else type(optimizer).__name__,
        "scheduler": None if scheduler is None else encode(scheduler.state_dict(), train_tensors, "scheduler"),
        "scheduler_class": None if scheduler is None else type(scheduler).__name__,
        "rng": encode(_rng_state(), train_tensors, "rng"),
        "extra": encode(dict(extra or {}), train_tensors, "extra"),
    }
    train_doc = json.dumps(doc, allow_nan=False)
    return {k: _format.prepare_tensor(k, t) for k, t in train_tensors.items()}, train_doc


def _write(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str],
           training: tuple[dict[str, torch.Tensor], str] | None) -> None:
    """Write the weights, and the training-state companion when there is one, atomically as a pair."""
    companion = training_state_path(path)
    if training is not None and companion == path:  # both files would get the same name: weights lost
        raise CheckpointError(f"{path.name} is the name of a training-state companion; save the weights under "
                              f"another name, e.g. {path.name.replace('.train', '', 1)} (the training state then "
                              f"goes to {path.name})")
    if training is None:
        _format.write_safetensors(path, tensors, meta)
        if companion != path and companion.exists():
            companion.unlink()  # it described the weights this save replaced
        return
    train_tensors, train_doc = training
    # Both files are written and fsynced under temp names first, then renamed back to back:
    # a crash while writing leaves the previous pair whole, never new weights beside old state.
    deferred: list[tuple[Path, Path]] = []
    try:
        digest = _format.write_safetensors(path, tensors, meta, deferred=deferred)
        train_meta = {"format": TRAIN_FORMAT, "format_version": FORMAT_VERSION, "torch_version": torch.__version__,
                      "torchsmith_version": _version(), "model_sha256": digest, "model_file": path.name,
                      "state": train_doc}
        _format.write_safetensors(companion, train_tensors, train_meta, deferred=deferred)
        commit_deferred(deferred)
    finally:
        discard_deferred(deferred)


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside torch.compile and (Distributed)DataParallel wrappers.

    The wrappers prefix every key (``_orig_mod.``, ``module.``) and are not what the architecture metadata
    describes, so a checkpoint of the wrapper could not be rebuilt by :func:`load`; the model itself is saved.
    """
    for _ in range(4):  # e.g. DDP(torch.compile(model))
        if type(model).__name__ == "OptimizedModule" and isinstance(model._modules.get("_orig_mod"), nn.Module):
            model = model._modules["_orig_mod"]  # type: ignore[assignment]
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            break
    return model


def _version() -> str:
    return __version__


# --------------------------------------------------------------------------- load
def refuse_training_state(metadata: Mapping[str, str], path: Path | str) -> None:
    """A training-state companion given where weights are expected: say which file holds the weights."""
    if metadata.get("format") == TRAIN_FORMAT:
        weights = metadata.get("model_file") or "the checkpoint beside it"
        raise CheckpointError(f"{path} is the training state (optimizer, RNG, extra) of {weights}, not model "
                              f"weights; the weights are in {weights}, and torchsmith.load_training_state("
                              f"{weights!r}, optimizer=...) restores this state")


def read_arch(header: _format.Header) -> dict[str, Any] | None:
    """The architecture recorded in a checkpoint's metadata, decoded; None if there is none."""
    raw = header.metadata.get("arch")
    if raw is None:
        return None
    try:
        arch = decode(json.loads(raw), None, f"{header.path} arch")
    except (ValueError, RecursionError):
        raise CheckpointError(f"{header.path}: metadata 'arch' is not valid JSON") from None
    if not isinstance(arch, dict) or not (isinstance(arch.get("name"), str) or isinstance(arch.get("spec"), dict)):
        raise CheckpointError(f"{header.path}: metadata 'arch' must hold a model name or a spec, not {arch!r:.80}")
    if "name" in arch and not isinstance(arch.get("kwargs", {}), dict):
        raise CheckpointError(f"{header.path}: metadata 'arch' kwargs must be a dict")
    return arch


def _read_code(header: _format.Header) -> dict[str, Any] | None:
    """The user-code reference recorded in a checkpoint's metadata (see :mod:`torchsmith._code`), or None."""
    raw = header.metadata.get("code")
    if raw is None:
        return None
    try:
        code = decode(json.loads(raw), None, f"{header.path} code")
    except (ValueError, RecursionError):
        raise CheckpointError(f"{header.path}: metadata 'code' is not valid JSON") from None
    if not isinstance(code, dict):
        raise CheckpointError(f"{header.path}: metadata 'code' must be a mapping, not {code!r:.80}")
    return code


def build_from_arch(arch: Mapping[str, Any], *, meta: bool, source: Any = "checkpoint") -> nn.Module:
    """Build the model ``arch`` describes; on the meta device (no memory, no init) when ``meta``."""
    def build() -> nn.Module:
        if "spec" in arch:
            model = build_spec(arch["spec"])
        else:
            model = create_model(arch["name"], **dict(arch.get("kwargs") or {}))
        object.__setattr__(model, ARCH_ATTR, dict(arch))
        return model

    what = f"model {arch['name']!r}" if "name" in arch else "its spec"
    try:
        # On meta when asked, unless the builder needs real data (calls .item()): then for real.
        return build_on_meta(build)[0] if meta else build()
    except TorchsmithError as e:
        raise CheckpointError(f"{source} cannot be rebuilt from {what}: {e}") from e
    except Exception as e:
        raise CheckpointError(f"{source} cannot be rebuilt from {what}: {type(e).__name__}: {e}") from e


def set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Point parameter or buffer ``name`` of ``model`` at ``value`` (used to re-tie shared weights)."""
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    if leaf in owner._parameters:
        owner._parameters[leaf] = value  # type: ignore[assignment]
    else:
        owner._buffers[leaf] = value


def _fill(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path, aliases: Mapping[str, str],
          versions: _versions.ModuleMeta | None) -> nn.Module:
    groups = tie_groups(model)
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [f"{k} {list(tensors[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
              if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        found = (("missing", missing), ("unexpected", unexpected), ("shape (file vs model)", shapes))
        parts = [f"{label}: {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
                 for label, items in found if items]
        raise CheckpointError(f"{path} does not fit the model its metadata names ({'; '.join(parts)}); the "
                              "architecture changed since it was saved: build the model and use "
                              "torchsmith.load_into(model, path, strict=False) to see and load what fits")
    on_meta = any(t.is_meta for t in expected.values())
    # The file's module versions; a file written before torchsmith kept them: the model's own.
    modules = dict(model.named_modules(remove_duplicate=False))
    load_meta, _ = _versions.complete(modules, getattr(expected, "_metadata", None) or {}, versions, set(tensors))
    try:
        model.load_state_dict(_versions.with_metadata(tensors, load_meta), strict=True, assign=on_meta)
    except Exception as e:  # a module's own _load_from_state_dict refused (e.g. a version it does not know)
        detail = " ".join(str(e).split())
        raise CheckpointError(f"{path} cannot be loaded into the model its metadata names: {type(e).__name__}: "
                              f"{detail}") from e
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        return _fill(build_from_arch(getattr(model, ARCH_ATTR), meta=False, source=path), tensors, path, aliases,
                     versions)
    # Tie again what the builder tied (assign replaced each name separately) and what the file says was tied.
    by_name: dict[str, torch.Tensor] = dict(model.named_buffers(remove_duplicate=False))
    by_name.update(model.named_parameters(remove_duplicate=False))
    for names in groups:
        for other in names[1:]:
            set_tensor(model, other, by_name[names[0]])
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    for alias, target in aliases.items():
        source = params.get(target, buffers.get(target))
        if source is not None and alias in (params.keys() | buffers.keys()):
            set_tensor(model, alias, source)
    return model


def load(path: PathLike, *, map_location: str | torch.device = "cpu", verify: bool = True,
         trust_code: bool = False) -> nn.Module:
    """Rebuild the model saved at ``path``: its architecture from the metadata, its weights from the file.

    No class is unpickled: the model is built by ``create_model`` (or the spec builder) on the meta device and
    its tensors are memory-mapped views of the file, so loading costs neither an initialisation nor a copy.

    Args:
        path: A checkpoint written by :func:`save`.
        map_location: The device the weights go to (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        verify: Check the sha256 of the data first; ``False`` skips it, for trusted files.
        trust_code: A model saved from the user's own code (``torchsmith train net.py:Net``) is rebuilt from that
            file when it is an ``nn.Module`` class and the file's bytes are the ones it was saved with; ``True``
            also runs a changed file, a module's code or a factory.

    Returns:
        The rebuilt model, with the saved weights.

    Raises:
        CheckpointError: The file is missing or damaged, its hash does not match, it holds no architecture
            (use :func:`load_into` for a plain state dict), or it is a training-state companion.
    """
    path = as_path(path)
    device = _device(map_location)
    header = _format.read_header(path)
    refuse_training_state(header.metadata, path)
    arch = read_arch(header)
    code = _read_code(header) if arch is None else None
    if arch is None and code is None:
        raise CheckpointError(f"{path} holds weights but no architecture (it was not written by torchsmith.save "
                              "from a zoo, spec, library or file model); build the model and use "
                              "torchsmith.load_into(model, path)")
    tensors, _ = _format.open_tensors(header, verify_hash=verify)
    raw_versions = header.metadata.get(_versions.KEY)
    versions = None if raw_versions is None else _versions.decode(raw_versions, str(path))
    if arch is not None:
        model = build_from_arch(arch, meta=True, source=path)
    else:
        assert code is not None
        model = build_on_meta(lambda: rebuild_from_code(code, trust_code=trust_code, source=path))[0]
    model = _fill(model, tensors, path, _format._aliases(header), versions)
    object.__setattr__(model, ARCH_ATTR if arch is not None else CODE_ATTR, arch if arch is not None else code)
    if device.type != "cpu":
        model = model.to(device)
    return model


def _device(map_location: str | torch.device) -> torch.device:
    """``map_location`` as a device this torch can use, checked before any file is read."""
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError, ValueError):
        raise CheckpointError(f"map_location {map_location!r} is not a device; use 'cpu', 'cuda', 'cuda:1', "
                              "'mps' or a torch.device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"map_location {str(map_location)!r} needs CUDA, which this torch cannot use here; "
                              "load with map_location='cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CheckpointError(f"map_location {str(map_location)!r} names a GPU that does not exist (this machine "
                              f"has {torch.cuda.device_count()}); use 'cuda:0' or 'cpu'")
    return device


# --------------------------------------------------------------------------- training state
def _restore_rng(rng: Mapping[str, Any], where: str) -> None:
    try:
        torch.set_rng_state(rng["torch"].clone())
        np_state = rng["numpy"]
        np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                             np_state["has_gauss"], np_state["cached_gaussian"]))
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in rng and torch.cuda.is_available():
            states = rng["cuda"][: torch.cuda.device_count()]
            torch.cuda.set_rng_state_all([s.clone() for s in states])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{where}: the RNG states cannot be restored ({type(e).__name__}: {e})") from e


def _finish_interrupted_save(companion: Path, weights_hash: str | None) -> _format.Header | None:
    """Complete a :func:`save` that died between its two renames; the finished companion's header, or None.

    The weights are renamed first, so such a crash leaves the new weights beside the old training state, with
    the new state complete and fsynced under its temp name. That state (the one recording these weights' hash,
    written by a process that is gone) is renamed into place: the pair is the new one, whole.
    """
    for tmp in temp_files_for(companion):
        if weights_hash is None or writer_alive(tmp, companion):
            continue  # a live writer renames its own file
        try:
            header = _format.read_header(tmp)
            if header.metadata.get("format") != TRAIN_FORMAT or header.metadata.get("model_sha256") != weights_hash:
                continue
            _format.open_tensors(header, verify_hash=True)  # whole: every byte as its hash says
        except CheckpointError:
            continue  # a temp cut short while it was written: not the finished state
        else:
            os.replace(tmp, companion)
            fsync_dir(companion.parent)
            return _format.read_header(companion)
    return None


def load_training_state(path: PathLike, *, optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                        restore_rng: bool = True) -> dict[str, Any]:
    """Load the training state saved with ``path`` into ``optimizer``/``scheduler`` (in place); return ``extra``.

    The companion must belong to the weights at ``path`` (their hashes are compared), so resuming never mixes
    two saves.

    Args:
        path: The checkpoint (``model.safetensors``) or its companion (``model.train.safetensors``).
        optimizer: The optimizer to restore, built over the same parameters as the saved one.
        scheduler: The scheduler to restore.
        restore_rng: Put the torch, CUDA, numpy and python RNGs where the saved run was, making a resumed run
            bit-identical.

    Returns:
        The ``extra`` dict given to :func:`save`.

    Raises:
        CheckpointError: No companion, a companion of other weights, or a state that does not fit the
            optimizer or scheduler.
    """
    path = as_path(path)
    companion = training_state_path(path)
    if not companion.exists() and path.exists():
        raise CheckpointError(f"{path} has no training state ({companion.name} does not exist); save it with "
                              "torchsmith.save(model, path, optimizer=..., scheduler=..., extra=...)")
    header = _format.read_header(companion)
    if header.metadata.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"{companion} is not a torchsmith training state file")
    # The pair is checked by the names it has now, not the name it was saved under: a copied or renamed
    # pair (best.safetensors + best.train.safetensors) still matches, and new weights beside old state do not.
    if path != companion:
        weights = path
    else:
        weights = companion.with_name(companion.name[: -len(".train" + companion.suffix)] + companion.suffix)
    if weights != companion and weights.exists():
        recorded = _format.read_header(weights).metadata.get(_format.HASH_KEY)
        if recorded != header.metadata.get("model_sha256"):
            finished = _finish_interrupted_save(companion, recorded)
            if finished is None:
                raise CheckpointError(f"{companion} belongs to a different save of {weights.name} (the weights were "
                                      "replaced or overwritten after it was written); resume from a checkpoint "
                                      "whose files match")
            header = finished
    tensors, _ = _format.open_tensors(header, verify_hash=True)
    try:
        state = decode(json.loads(header.metadata.get("state", "")), tensors, str(companion))
    except (ValueError, RecursionError):
        raise CheckpointError(f"{companion}: metadata 'state' is not valid JSON") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{companion}: metadata 'state' must be an object")
    for obj, key in ((optimizer, "optimizer"), (scheduler, "scheduler")):
        if obj is None:
            continue
        saved = state.get(key)
        if saved is None:
            raise CheckpointError(f"{companion} holds no {key} state; it was saved without {key}=")
        saved_class = state.get(f"{key}_class")
        if saved_class and saved_class != type(obj).__name__:
            raise CheckpointError(f"{companion} holds a {saved_class} {key} state, which cannot be loaded into a "
                                  f"{type(obj).__name__}; build the same {key} as the saved run")
        try:
            obj.load_state_dict(saved)
        except Exception as e:  # whatever the optimizer or scheduler makes of a state that does not fit it
            raise CheckpointError(f"the {key} state in {companion} does not fit the given {key}: {e}") from e
    if restore_rng:
        if not isinstance(state.get("rng"), dict):
            raise CheckpointError(f"{companion} holds no RNG states")
        _restore_rng(state["rng"], str(companion))
    extra = state.get("extra") or {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{companion}: 'extra' must be a dict")
    return extra
