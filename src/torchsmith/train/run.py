"""A training run's directory: the options it was started with, its model's reference, its model rebuilt.

What resuming, evaluating and reporting on a run all need, below the training loop, so that none of
them imports another to get it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from torchsmith.checkpoint import load, load_into
from torchsmith.errors import CheckpointError, TorchsmithError
from torchsmith.resolve import resolve_model
from torchsmith.train.config import TrainConfig
from torchsmith.train.state import MODEL

__all__ = ["run_config", "load_run_model", "model_reference"]


def run_config(run_dir: str | Path) -> TrainConfig:
    """The options a run was started with, from its ``config.json``."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} holds no config.json; is it the --out directory of `torchsmith train`?")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not readable JSON: {e}") from e
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} must hold a JSON object of training options")
    return TrainConfig.from_dict(values)


def model_reference(ref: str, opts: dict[str, Any]) -> dict[str, Any]:
    """What a run records of a model given by reference (``config.extra["model"]``), so that its
    checkpoints can be rebuilt later even when the model comes from user code: a file path is made
    absolute, so the reference holds from any working directory."""
    path, sep, attr = ref.rpartition(":")
    if sep and path.endswith(".py"):
        ref = f"{Path(path).expanduser().resolve()}:{attr}"
    elif ref.endswith(".safetensors") and not opts:
        # Training on from a checkpoint: the model is the one its own run recorded, if it recorded one.
        recorded = _recorded_reference(Path(ref).expanduser().parent / "config.json")
        return recorded if recorded is not None else {"ref": str(Path(ref).expanduser().resolve()), "opts": {}}
    return {"ref": ref, "opts": dict(opts)}


def _recorded_reference(config: Path) -> dict[str, Any] | None:
    try:
        recorded = (json.loads(config.read_text()).get("extra") or {}).get("model")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) and isinstance(recorded.get("ref"), str) else None


def load_run_model(ckpt: str | Path, run_dir: str | Path | None = None) -> nn.Module:
    """The model of checkpoint ``ckpt``, rebuilt from its own metadata (zoo and spec models) or else
    from the model reference its run recorded (``torchsmith train path/to/file.py:Class``)."""
    ckpt = Path(ckpt)
    if ckpt.is_dir():  # a sharded checkpoint (FSDP): its weights load once the model is sharded
        return _sharded_run_model(ckpt, Path(run_dir) if run_dir is not None else ckpt.parent.parent)
    try:
        return load(ckpt)
    except CheckpointError as e:
        recorded = _recorded_reference(Path(run_dir if run_dir is not None else ckpt.parent) / "config.json")
        if recorded is None:
            raise
        try:
            model = resolve_model(recorded["ref"], **(recorded.get("opts") or {}))
        except TorchsmithError as rebuild:
            raise CheckpointError(f"{e}; rebuilding the run's model {recorded['ref']} failed too: {rebuild}") from e
        load_into(model, ckpt)
        return model


def _sharded_run_model(shard_dir: Path, run_dir: Path) -> nn.Module:
    """The architecture of a sharded checkpoint's model: from the model reference its run recorded, else from the
    run's consolidated file (written at the end of a run); the shards themselves hold weights only."""
    recorded = _recorded_reference(run_dir / "config.json")
    if recorded is not None:
        try:
            return resolve_model(recorded["ref"], **(recorded.get("opts") or {}))
        except TorchsmithError as e:
            raise CheckpointError(f"{shard_dir} holds a sharded checkpoint; rebuilding the run's model "
                                  f"{recorded['ref']} for it failed: {e}") from e
    consolidated = run_dir / MODEL
    if consolidated.is_file():
        return load(consolidated)
    raise CheckpointError(f"{shard_dir} holds a sharded checkpoint (weights only) and {run_dir} records no model to "
                          f"rebuild it from (no model reference in config.json, no {MODEL}); give the model")
