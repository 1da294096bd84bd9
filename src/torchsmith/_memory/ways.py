"""The ways to train a model on given devices: :func:`plan_training` returns a :class:`TrainingPlan`.

Each way (one device, DDP, FSDP; with and without activation checkpointing; each precision asked for)
is one :class:`MemoryPlan`; the table keeps per way the per-device peak, whether it fits, the largest
batch that fits and the training FLOPs per sample (from :func:`torchsmith.summary`). The step is run
once per precision and checkpointing setting; the layouts are worked out from the same runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from torchsmith._memory._knobs import check_positive, check_precision, parse_memory
from torchsmith._memory.compute import FSDP_MIXED, build_model, check_knobs, input_dtypes, memory_plans, real_builder
from torchsmith._memory.render import render_ways, rich_ways, ways_html
from torchsmith._memory.result import FRAGMENTATION_MARGIN, Num
from torchsmith._summary import summary
from torchsmith._summary._blocks import repeated_blocks
from torchsmith._summary._inputs import TracedInputs
from torchsmith.errors import ConfigError, TorchsmithError

__all__ = ["plan_training", "TrainingPlan", "Way"]


@dataclass
class Way:
    """One way to train: the layout, precision and checkpointing, and what it needs per device."""

    way: str  # "1 device", "DDP x8", "FSDP x8"
    world_size: int
    strategy: str | None
    precision: str
    checkpointing: bool
    peak: Num
    fits: bool
    max_batch_size: int
    training_flops_per_sample: Num | None
    when: str


@dataclass
class TrainingPlan:
    """The table of :func:`plan_training`; ``str()``, ``rich``, ``to_json()`` and HTML in a notebook."""

    model: str
    input: str
    batch_size: int | str
    optimizer: str
    device_memory: int
    world_size: int
    margin: float
    rows: list[Way]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def render(self, format: str = "text") -> str:
        return self.to_json() if format == "json" else render_ways(self, format)

    def __str__(self) -> str:
        return self.render("text")

    def __rich__(self) -> Any:
        return rich_ways(self)

    def _repr_html_(self) -> str:
        return ways_html(self)


def plan_training(
    model_or_name: nn.Module | str,
    input_size: Any = None,
    *,
    device_memory: int | float | str,
    world_size: int = 1,
    precisions: Sequence[str] = ("fp32", "bf16-mixed"),
    batch_size: int = 1,
    optimizer: str = "adamw",
    foreach: bool | None = True,
    input_dtype: torch.dtype | str | Sequence[torch.dtype | str] | None = None,
    margin: float = FRAGMENTATION_MARGIN,
    **model_options: Any,
) -> TrainingPlan:
    """Every way to train a model on ``world_size`` devices of ``device_memory`` each.

    Args:
        model_or_name: a module or a name, as :func:`torchsmith.memory` takes.
        input_size: one sample's shape without the batch (default: what the model declares).
        device_memory: bytes or a size such as ``"80GB"`` per device.
        world_size: devices; above 1 the table adds DDP and FSDP.
        precisions: the precisions to compare (``fp32``, ``bf16-mixed``, ``fp16-mixed``, ``bf16``).
        batch_size: the per-device batch whose peak is shown (``max_batch_size`` is worked out).
        optimizer: ``"sgd"``, ``"sgd-momentum"``, ``"adam"`` or ``"adamw"``, as :func:`torchsmith.memory` takes.
        foreach: the optimizer's ``foreach``; True by default, as torch runs it on CUDA.
        input_dtype: the input's dtype, one per input for several (as in :func:`torchsmith.memory`).
        margin: fraction of the device left free for fragmentation and the CUDA context.
        **model_options: options for building ``model_or_name`` when it is a name.

    Returns:
        A :class:`TrainingPlan`, one :class:`Way` per row.

    Raises:
        ConfigError: a bad knob or device memory.
    """
    budget = parse_memory(device_memory)
    check_positive("world_size", world_size)
    check_positive("batch_size", batch_size)
    if not precisions:
        raise ConfigError("precisions is empty; ask for at least one, e.g. precisions=('bf16-mixed',)")
    for p in precisions:
        check_precision(p)
    model, label = build_model(model_or_name, model_options)
    spec = TracedInputs.build(model, input_size, None, input_dtypes(input_dtype), batch_size)
    layouts: list[tuple[int, str | None]] = [(1, None)]
    if world_size > 1:
        layouts += [(world_size, "ddp"), (world_size, "fsdp")]
    names = {1: "1 device"} if world_size == 1 else {}
    flops, notes = _flops_per_sample(model, spec)
    checkpointing = [False, True] if repeated_blocks(model) is not None else [False]
    if len(checkpointing) == 1:
        notes.append(f"{type(model).__name__} has no repeated blocks: no activation-checkpointing rows")
    rows = []
    for precision in dict.fromkeys(precisions):
        # FSDP at a mixed precision is FSDP2's MixedPrecisionPolicy, which the plan does not model: no row.
        here = [lay for lay in layouts if not (lay[1] == "fsdp" and precision.endswith("-mixed"))]
        if len(here) < len(layouts) and FSDP_MIXED not in notes:
            notes.append(FSDP_MIXED)
        for ckpt in checkpointing:
            knobs, _ = check_knobs(optimizer, precision, foreach, 1, 1, None)
            plans = memory_plans(model, label, spec, knobs, ckpt, here,
                                 rebuild=real_builder(model_or_name, model_options))
            for (ws, strategy), plan in zip(here, plans):
                way = names.get(ws, "") if strategy is None else f"{strategy.upper()} x{ws}"
                rows.append(Way(way=way or "1 device", world_size=ws, strategy=strategy, precision=precision,
                                checkpointing=ckpt, peak=plan.peak, fits=plan.fits(budget, margin),
                                max_batch_size=plan.max_batch_size(budget, margin), training_flops_per_sample=flops,
                                when=plan.when))
            notes.extend(n for n in plans[0].notes if n not in notes)
    return TrainingPlan(model=label, input=spec.describe(), batch_size=batch_size, optimizer=optimizer,
                        device_memory=budget, world_size=world_size, margin=margin, rows=rows, notes=notes)


def _flops_per_sample(model: nn.Module, spec: TracedInputs) -> tuple[Num | None, list[str]]:
    """Forward + backward FLOPs of one sample, from the summary (None, with a note, when it cannot run)."""
    sizes = [tuple(d if isinstance(d, int) else d[1] for d in s[1:]) for s in spec.sizes]
    try:
        s = summary(model, sizes[0] if len(sizes) == 1 else sizes, batch_size=1, input_dtype=list[Any](spec.dtypes))
    except TorchsmithError as e:
        return None, [f"training FLOPs unknown: the summary failed ({e})"]
    return s.training_flops, []
