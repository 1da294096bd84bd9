"""Training: the config dataclass, the loop (``fit``), evaluation, metrics, progress and distributed helpers."""

from __future__ import annotations

from torchsmith.train.config import TrainConfig
from torchsmith.train.eval import EvalResult, evaluate, evaluate_checkpoint
from torchsmith.train.loop import fit, resolve_device
from torchsmith.train.progress import NullReporter, PlainReporter, Reporter, RichReporter, make_reporter
from torchsmith.train.result import TrainResult
from torchsmith.train.resume import resume

__all__ = ["TrainConfig", "TrainResult", "fit", "resume", "evaluate", "evaluate_checkpoint", "EvalResult",
           "Reporter", "NullReporter", "PlainReporter", "RichReporter", "make_reporter", "resolve_device"]
