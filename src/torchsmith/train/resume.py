"""``resume(run_dir)``: continue a run from its directory alone (model, options and all)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from torchsmith.errors import CheckpointError, ConfigError, TorchsmithError
from torchsmith.train.config import TrainConfig
from torchsmith.train.loop import fit
from torchsmith.train.progress import Reporter
from torchsmith.train.result import TrainResult
from torchsmith.train.state import resume_checkpoint

__all__ = ["resume", "run_config", "load_run_model", "model_reference"]


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
    from torchsmith.checkpoint import load, load_into

    ckpt = Path(ckpt)
    try:
        return load(ckpt)
    except CheckpointError as e:
        recorded = _recorded_reference(Path(run_dir if run_dir is not None else ckpt.parent) / "config.json")
        if recorded is None:
            raise
        from torchsmith.resolve import resolve_model

        try:
            model = resolve_model(recorded["ref"], **(recorded.get("opts") or {}))
        except TorchsmithError as rebuild:
            raise CheckpointError(f"{e}; rebuilding the run's model {recorded['ref']} failed too: {rebuild}") from e
        load_into(model, ckpt)
        return model


def resume(run_dir: str | Path, model: nn.Module | None = None, *, reporter: Reporter | None = None,
           **overrides: Any) -> TrainResult:
    """Continue the run in ``run_dir`` exactly where its last checkpoint left it.

    Without ``model`` the model is rebuilt from the checkpoint's metadata (zoo
    and spec models) or from the reference the run recorded (a run started by
    ``torchsmith train file.py:Class``); another model from user code must be passed in. ``overrides``
    may change options that do not alter the result (``max_steps``,
    ``log_every``, ``device``, ...); the others are refused.
    """
    ckpt = resume_checkpoint(run_dir)
    cfg = run_config(run_dir)
    # max_steps stops one invocation; a resumed run goes on to the end unless it is given again.
    overrides.setdefault("max_steps", None)
    cfg = cfg.replace(**{**overrides, "resume": str(run_dir), "out_dir": str(run_dir)})
    if model is None:
        try:
            model = load_run_model(ckpt, run_dir)
        except CheckpointError as e:
            raise ConfigError(f"{e}; pass the model to resume(run_dir, model) or give MODEL on the command line") \
                from e
    return fit(model, None, cfg, reporter=reporter)
