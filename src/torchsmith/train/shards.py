"""A sharded run's checkpoints: save and restore every rank's shard, and consolidate them into one file.

The model and optimizer state go through ``torch.distributed.checkpoint.state_dict.get_state_dict`` /
``set_state_dict`` (the same code for FSDP2 shards and plain modules, so a sharded checkpoint also loads in one
process); the trainer's own state (epoch, step, data order, schedule, RNGs, history) is JSON written by rank 0
beside the shards. :func:`consolidate` writes one torchsmith safetensors file, with the usual metadata and
hashes, that :func:`torchsmith.load` opens on one device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith.checkpoint import save
from torchsmith.checkpoint._sharded import (
    latest_sharded,
    load_sharded,
    read_trainer_state,
    rng_from_json,
    rng_to_json,
    save_sharded,
)
from torchsmith.errors import CheckpointError, ConfigError
from torchsmith.train.run import load_run_model

__all__ = ["save_shards", "restore_shards", "full_state", "write_consolidated", "consolidate"]


def _options(full: bool = False) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=full)


def save_shards(run_dir: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                extra: dict[str, Any], *, rank: int, world_size: int) -> Path:
    """Every rank: write its shard of model and optimizer; rank 0: the trainer state (``extra``) with them."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(model, optimizer)
    trainer = {**extra, "scheduler": scheduler.state_dict(), "rng": rng_to_json(), "world_size": world_size}
    return save_sharded(run_dir, step, {"model": msd, "optim": osd}, trainer, rank=rank)


def restore_shards(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Load ``path`` into the (sharded or plain) model and optimizer, the schedule and the RNGs; the trainer state."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    doc = read_trainer_state(path)
    msd, osd = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": msd, "optim": osd}
    load_sharded(path, state)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    try:
        scheduler.load_state_dict(doc["scheduler"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its schedule state does not fit this run ({e})") from e
    rng_from_json(doc.get("rng") or {}, str(path))
    return doc


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU of rank 0 (every rank must call: it gathers the shards)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    # A full state dict holds plain CPU tensors only; torch types its values more widely.
    return get_model_state_dict(model, options=_options(full=True))  # type: ignore[return-value]


def write_consolidated(template: nn.Module, state: dict[str, torch.Tensor], path: Path) -> Path:
    """``state`` written as a torchsmith checkpoint of ``template``'s layout (its metadata rebuilds the model)."""
    tied: dict[int, list[str]] = {}
    for name, p in template.named_parameters(remove_duplicate=False):
        tied.setdefault(id(p), []).append(name)
    template.load_state_dict(state, assign=True, strict=True)  # assigns each name its own tensor: ties undone
    for names in tied.values():
        first = template.get_parameter(names[0])
        for name in names[1:]:  # tied again, as in the model trained (GPT-2's head is its embedding)
            owner, _, attr = name.rpartition(".")
            setattr(template.get_submodule(owner), attr, first)
    return save(template, path)


def consolidate(run_dir: str | Path, out: str | Path, model: nn.Module | None = None) -> Path:
    """Merge the newest sharded checkpoint of ``run_dir`` into one safetensors file ``out`` (one process).

    Without ``model`` the architecture is rebuilt as for resuming: from the run's consolidated
    ``model.safetensors`` or the model reference its ``config.json`` recorded.

    Raises:
        CheckpointError: ``run_dir`` holds no sharded checkpoint, or it does not fit the model.
    """
    shard_dir = latest_sharded(run_dir)
    if shard_dir is None:
        raise CheckpointError(f"{run_dir} holds no sharded checkpoint (no shards/LATEST); it is not the --out "
                              f"directory of a `torchsmith train --strategy fsdp` run")
    run = Path(run_dir) if not (Path(run_dir) / ".metadata").is_file() else shard_dir.parent.parent
    if model is None:
        model = _rebuild(run, shard_dir)
    state = {"model": model.state_dict()}
    load_sharded(shard_dir, state)
    model.load_state_dict(state["model"])
    return save(model, out)


def _rebuild(run: Path, shard_dir: Path) -> nn.Module:
    try:
        return load_run_model(shard_dir, run)
    except CheckpointError as e:
        raise ConfigError(f"{e}: consolidate(run_dir, out, model=...), or --model on the command line") from e
