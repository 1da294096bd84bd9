"""``TrainConfig``: every training option in one dataclass, validated before anything runs."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from torchsmith._format import parse_dtype
from torchsmith.contract import is_several
from torchsmith.data.base import AUGMENTS
from torchsmith.errors import ConfigError, UnknownNameError
from torchsmith.sizes import int_dims, parse_input_size

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "AMP_MODES", "DEVICES", "STRATEGIES", "TASK_NAMES",
           "TRAJECTORY_FIELDS"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")
AMP_MODES = ("off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
STRATEGIES = ("auto", "ddp", "fsdp")
TASK_NAMES = ("auto", "classification", "regression", "causal-lm")

#: Options that change what the weights become. ``--resume`` refuses to continue a run
#: with any of them changed, because the result would then match neither run.
TRAJECTORY_FIELDS = (
    "data", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
    "warmup_epochs", "label_smoothing", "seed", "augment", "crop_padding", "amp", "channels_last", "init",
    "num_samples", "sync_batchnorm", "grad_clip", "input_size", "input_dtype", "task", "seq_len", "grad_accum",
    "target", "tokenizer",
)


@dataclass
class TrainConfig:
    """Options for :func:`torchsmith.fit`. Defaults train LeNet on digits to about 99% in seconds.

    ``batch_size`` is the global batch (split evenly among ranks under torchrun).
    ``lr`` is the peak learning rate; the schedule warms up to it over
    ``warmup_epochs`` and then follows ``schedule``. ``augment="auto"`` takes the
    dataset's own default (crop for digits, crop+flip for CIFAR-10).
    ``input_size`` is one sample without the batch, ``(3, 32, 32)``: the data is fitted to it (resized,
    grey <-> RGB). ``None`` asks the model (:func:`torchsmith.contract.input_spec`); a model that does not
    tell gets the data at its own size. ``tensorboard`` also writes TensorBoard event files to ``out_dir``.
    """

    data: str = "digits"
    data_dir: str | None = None
    epochs: int = 15
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_epochs: float | None = None  # None: 30% of training for onecycle, else 0
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    init: Any = None  # an init policy (preset name or dict) applied before training; None keeps the weights
    augment: str = "auto"
    crop_padding: int | None = None  # None: height / 8 (4 pixels at 32x32)
    out_dir: str | os.PathLike[str] | None = None  # a Path is kept as its text
    resume: str | None = None
    max_steps: int | None = None  # stop (and checkpoint) after this many steps in all
    save_every_steps: int | None = None  # also checkpoint every N steps, for crash-safe long epochs
    log_every: int = 50  # steps between progress reads (each read is one device sync)
    eval_batch_size: int = 1024
    num_samples: int = 10_000  # synthetic data only
    sync_batchnorm: bool = False
    grad_clip: float | None = None
    plot: bool = True
    input_size: Any = None  # one sample without the batch (or a list / dict of them); None: the model's own
    input_dtype: Any = None  # "float32", "bf16", "long" (token ids), or {"lengths": "long"}; None: the model's
    tensorboard: bool = False  # event files in out_dir, for `tensorboard --logdir runs`
    task: str = "auto"  # classification | regression | causal-lm; auto: from the model's output and the data
    seq_len: int | None = None  # causal-lm: tokens per training window; None: the model contract's sequence
    target: str | None = None  # csv data: the target column (default: the last)
    tokenizer: str | None = None  # text data: a transformers tokenizer already on this machine; None: bytes
    strategy: str = "auto"  # under torchrun: ddp (replicas) | fsdp (sharded, FSDP2) | auto (ddp when it fits)
    checkpointing: bool = False  # activation checkpointing of the repeated blocks
    grad_accum: int = 1  # microbatches a step (the batch is split; gradients sync on the last only)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the run

    def __post_init__(self) -> None:
        if isinstance(self.out_dir, os.PathLike):  # a pathlib.Path: kept as text, as the run's config.json holds it
            self.out_dir = os.fspath(self.out_dir)
        if self.input_size is not None:
            self.input_size = _input_size(self.input_size)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first option that cannot work."""
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("amp", AMP_MODES),
                              ("device", DEVICES), ("augment", ("auto", *AUGMENTS)), ("strategy", STRATEGIES),
                              ("task", TASK_NAMES)):
            value = getattr(self, name)
            if value not in choices:
                raise UnknownNameError(name, str(value), choices)
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "log_every": self.log_every,
                    "eval_batch_size": self.eval_batch_size, "num_samples": self.num_samples,
                    "grad_accum": self.grad_accum}
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_steps", "save_every_steps", "seq_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs is not None and not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"warmup_epochs must be between 0 and epochs ({self.epochs}), got {self.warmup_epochs}")
        if self.crop_padding is not None and self.crop_padding < 0:
            raise ConfigError(f"crop_padding must be >= 0, got {self.crop_padding}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be positive, got {self.grad_clip}")
        if isinstance(self.input_dtype, dict):
            for value in self.input_dtype.values():
                parse_dtype(value)
        elif self.input_dtype is not None:
            parse_dtype(self.input_dtype)  # unknown names get close matches

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.input_size is not None:  # as JSON has it, so a saved config compares equal
            size = self.input_size
            out["input_size"] = ({k: list(v) for k, v in size.items()} if isinstance(size, dict)
                                 else [list(s) for s in size] if is_several(size) else list(size))
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (e.g. a saved ``config.json``); unknown keys are an error, not ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise UnknownNameError("training option", key, known)
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        for key in changes:
            if key not in {f.name for f in dataclasses.fields(self)}:
                raise UnknownNameError("training option", key, [f.name for f in dataclasses.fields(self)])
        return dataclasses.replace(self, **changes)


def _input_size(value: Any) -> Any:
    """``(3, 32, 32)``, ``[3, 32, 32]`` or ``"3x32x32"`` -> ``(3, 32, 32)``; several inputs (a list or dict of
    sizes, ``()`` for one number per sample) keep their form, each size a tuple."""
    if isinstance(value, str):
        return parse_input_size(value)
    if isinstance(value, dict):
        return {str(k): _one_size(v) for k, v in value.items()}
    if is_several(value):
        return [_one_size(v) for v in value]
    return _one_size(value)


def _one_size(value: Any) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)) and len(value) == 0:
        return ()  # one number per sample (sequence lengths)
    if isinstance(value, str):
        return parse_input_size(value)
    dims = int_dims(value) if isinstance(value, (tuple, list)) else None
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"input_size must be one sample's dims without the batch, like (3, 32, 32), not {value!r}")
    return dims
