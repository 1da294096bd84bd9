"""``resume(run_dir)``: continue a run from its directory alone (model, options and all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from torchsmith.errors import CheckpointError, ConfigError
from torchsmith.train.loop import fit
from torchsmith.train.progress import Reporter
from torchsmith.train.result import TrainResult
from torchsmith.train.run import load_run_model, model_reference, run_config
from torchsmith.train.state import resume_checkpoint

__all__ = ["resume", "run_config", "load_run_model", "model_reference"]


def resume(run_dir: str | Path, model: nn.Module | None = None, *, reporter: Reporter | None = None,
           **overrides: Any) -> TrainResult:
    """Continue the run in ``run_dir`` exactly where its last checkpoint left it.

    On CPU the resumed run is bit-identical to one never stopped: weights, optimizer, scheduler, RNG states and
    the data order all continue.

    Args:
        run_dir: The run directory :func:`fit` wrote (``runs/lenet-digits``).
        model: The model to continue; without it the model is rebuilt from the checkpoint's metadata (zoo and
            spec models) or from the reference the run recorded (a run started by
            ``torchsmith train file.py:Class``). Another model from user code must be passed in.
        reporter: Receives progress, as in :func:`fit`.
        **overrides: Options that do not alter the result (``max_steps``, ``log_every``, ``device``, ...); the
            others are refused.

    Returns:
        The :class:`TrainResult` of the whole run.

    Raises:
        ConfigError: The model cannot be rebuilt without being passed in, or an override would change the
            result.
        CheckpointError: The run directory holds no usable checkpoint.
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
