"""A run's resumable state and its checkpoints on disk.

A run directory holds ``last.safetensors`` (every epoch, and every
``save_every_steps`` steps), ``best.safetensors`` (the best test accuracy so
far), their training-state companions, ``config.json`` and the metrics files.
Everything the loop needs to continue exactly is in the checkpoint's ``extra``:
epoch and step reached, the data generator's state, the history, the best
epoch and the GradScaler's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith.checkpoint import load_into, load_training_state, save
from torchsmith.checkpoint._sharded import SHARDS, latest_sharded
from torchsmith.data import DataSplits
from torchsmith.errors import CheckpointError, ConfigError
from torchsmith.train.config import TRAJECTORY_FIELDS, TrainConfig

__all__ = ["RunState", "LAST", "BEST", "resume_checkpoint", "check_fresh_out_dir", "load_weights", "restore",
           "extra_for", "save_checkpoint", "files_in", "saved_config"]

LAST = "last.safetensors"
BEST = "best.safetensors"
MODEL = "model.safetensors"  # a sharded run's consolidated weights, written at its end
_STATE_VERSION = 1


@dataclass
class RunState:
    """Where the loop is. ``epoch`` counts finished epochs; ``step_in_epoch`` steps done in the next one."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    data_rng: list[int] | None = None
    partial: list[float] | None = None  # this epoch's (loss sum, correct, seen) so far, mid-epoch only
    history: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float | None = None
    best_epoch: int | None = None
    saved_world_size: int | None = None  # the ranks that wrote the checkpoint resumed from (None: not recorded)


def resume_checkpoint(run_dir: str | Path) -> Path:
    """``DIR/last.safetensors``, or a clear error saying what ``--resume`` expects."""
    path = Path(run_dir)
    if path.is_file() and path.suffix == ".safetensors":
        return path
    sharded = latest_sharded(path)
    if sharded is not None and (not (path / LAST).is_file() or
                                (path / SHARDS / "LATEST").stat().st_mtime >= (path / LAST).stat().st_mtime):
        return sharded  # an FSDP run's newest save: a directory of shards
    if not path.is_dir():
        raise CheckpointError(f"--resume {str(run_dir)!r}: no such run directory; give the --out directory of an "
                              f"earlier `torchsmith train`")
    if not (path / LAST).is_file():
        raise CheckpointError(f"--resume {str(run_dir)!r}: the directory holds no {LAST}; the run saved nothing yet "
                              f"(it stopped before its first checkpoint): start it again without --resume")
    return path / LAST


def check_fresh_out_dir(out_dir: Path) -> None:
    """Refuse to train over an earlier run's checkpoints (nothing on disk is lost by accident)."""
    if (out_dir / LAST).exists() or (out_dir / BEST).exists() or (out_dir / SHARDS).exists():
        raise ConfigError(f"{out_dir} already holds a training run; continue it with --resume {out_dir}, "
                          f"or choose another --out directory")


def load_weights(model: nn.Module, path: Path) -> None:
    """Load the checkpoint's tensors into ``model`` (strict: every name and shape must match)."""
    load_into(model, path, strict=True)


def saved_config(extra: dict[str, Any], where: Path) -> dict[str, Any]:
    saved = extra.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where} was not written by torchsmith's trainer (its extra holds no 'config'); "
                              f"it can be evaluated or loaded, but not resumed")
    return saved


def restore(path: Path, cfg: TrainConfig, splits: DataSplits, optimizer: torch.optim.Optimizer, scheduler: Any,
            scaler: Any, loader: Any) -> RunState:
    """Restore optimizer, scheduler, RNGs and the loader's generator; return where to continue."""
    extra = load_training_state(path, optimizer=optimizer, scheduler=scheduler, restore_rng=True)
    st = state_from_extra(extra, path, cfg, splits, loader)
    tr = extra["trainer"]
    if scaler is not None and tr.get("scaler"):
        scaler.load_state_dict(tr["scaler"])
    return st


def state_from_extra(extra: dict[str, Any], path: Path, cfg: TrainConfig, splits: DataSplits, loader: Any) -> RunState:
    """The saved trainer state, after checking the run's options are the saved ones; the loader's generator set."""
    saved = saved_config(extra, path)
    current = cfg.to_dict()
    changed = [f"{k} (saved {saved.get(k)!r}, now {current.get(k)!r})" for k in TRAJECTORY_FIELDS
               if k != "data" and saved.get(k) != current.get(k)]
    data_name = (extra.get("data") or {}).get("name")
    if data_name is not None and data_name != splits.name:
        changed.append(f"data (saved {data_name!r}, now {splits.name!r})")
    if changed:
        raise ConfigError(f"--resume would continue {path.parent} with different options: {'; '.join(changed)}. "
                          f"Resume with the run's own options (an exact resume replays its schedule), or train on "
                          f"from its weights in a new run: torchsmith train {path} --out NEW_DIR ...")
    tr = extra.get("trainer")
    if not isinstance(tr, dict) or tr.get("version") != _STATE_VERSION:
        raise CheckpointError(f"{path}: its trainer state is missing or from another torchsmith version")
    st = RunState(epoch=int(tr["epoch"]), step_in_epoch=int(tr["step_in_epoch"]), global_step=int(tr["global_step"]),
                  data_rng=list(tr["data_rng"]), partial=tr.get("partial"), history=list(tr.get("history") or []),
                  best_acc=tr.get("best_acc"), best_epoch=tr.get("best_epoch"),
                  saved_world_size=int(extra["world_size"]) if isinstance(extra.get("world_size"), int) else None)
    if st.step_in_epoch >= len(loader) > 0:
        raise CheckpointError(f"{path}: saved at step {st.step_in_epoch} of an epoch of {len(loader)} steps; the "
                              f"data changed since")
    loader.set_rng_state(st.data_rng or [])
    return st


def extra_for(st: RunState, cfg: TrainConfig, splits: DataSplits, scaler: Any, world_size: int) -> dict[str, Any]:
    """The checkpoint's ``extra``: plain JSON data (the generator state as a list of byte values)."""
    return {
        "world_size": world_size,  # a resume on another number of ranks continues, but not bit-identically
        "trainer": {"version": _STATE_VERSION, "epoch": st.epoch, "step_in_epoch": st.step_in_epoch,
                    "global_step": st.global_step, "data_rng": st.data_rng, "partial": st.partial,
                    "history": st.history, "best_acc": st.best_acc, "best_epoch": st.best_epoch,
                    "scaler": scaler.state_dict() if scaler is not None else None},
        "config": cfg.to_dict(),
        "data": {"name": splits.name, "mean": list(splits.mean), "std": list(splits.std),
                 "input_size": list(splits.input_size), "classes": list(splits.classes), "kind": splits.kind},
    }


def save_checkpoint(model: nn.Module, path: Path, optimizer: torch.optim.Optimizer, scheduler: Any,
                    extra: dict[str, Any]) -> Path:
    return save(model, path, optimizer=optimizer, scheduler=scheduler, extra=extra)


def files_in(out_dir: Path) -> dict[str, Path]:
    """The run's files that exist, by role."""
    names = {"last": LAST, "best": BEST, "model": MODEL, "metrics_jsonl": "metrics.jsonl", "metrics_csv": "metrics.csv",
             "config": "config.json"}
    found = {role: out_dir / name for role, name in names.items() if (out_dir / name).is_file()}
    if any(out_dir.glob("events.out.tfevents.*")):
        found["tensorboard"] = out_dir  # view with: tensorboard --logdir <the folder above>
    return found
