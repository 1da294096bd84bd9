"""Checkpoints that cannot hurt you: safe (no pickle), atomic, self-describing, with a load report.

* :func:`save` / :func:`load`: safetensors weights whose metadata rebuilds the
  model; optional training state in a companion file (:func:`load_training_state`).
* :func:`load_into`: load any state dict (safetensors, or ``.pt`` through
  ``torch.load(weights_only=True)`` only) into a model and get a
  :class:`LoadReport` of what matched, what did not and why.
* :func:`checkpoint_info`, :func:`diff_checkpoints`, :func:`convert_checkpoint`:
  what ``torchsmith ckpt info|diff|convert`` print and do.
"""

from __future__ import annotations

from torchsmith.checkpoint._core import load, load_training_state, save, training_state_path
from torchsmith.checkpoint._loadinto import LoadReport, Remapped, ShapeMismatch, load_into
from torchsmith.checkpoint._tools import (
    CheckpointDiff,
    CheckpointInfo,
    TensorInfo,
    checkpoint_info,
    convert_checkpoint,
    diff_checkpoints,
)

__all__ = ["save", "load", "load_training_state", "training_state_path", "load_into", "LoadReport",
           "ShapeMismatch", "Remapped", "checkpoint_info", "diff_checkpoints", "convert_checkpoint",
           "CheckpointInfo", "CheckpointDiff", "TensorInfo"]
