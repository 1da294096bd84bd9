""":func:`memory`: the memory a training step needs, computed on fake tensors, per device.

The phases: check the knobs (``_knobs``), build the model on meta, run the real training step on fake
tensors at two batch sizes (``_step``; a third verifies a symbolic batch), read the peak as a function of
the batch from the two timelines, and apply the distributed strategy (``_distributed``). A model whose
repeated blocks are many and large (a 405B decoder's 126 layers) runs with two and with three of them and
is scaled to all of them: blocks of one signature add the same bytes each (``scale_blocks``; the rule is
checked against a full run in the tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from torchsmith._format import parse_dtype
from torchsmith._memory._distributed import apply_strategy
from torchsmith._memory._knobs import check_optimizer, check_positive, check_precision, check_strategy
from torchsmith._memory._real import one_thread, real_copy, real_inputs, recorded_builder, too_big_to_run
from torchsmith._memory._step import PRECISIONS, Knobs, StepFailed, StepRecord, run_inference, run_training_step
from torchsmith._memory._tracker import CATEGORIES, Peak
from torchsmith._memory.result import MemoryPlan, ModuleMemory, Num
from torchsmith._meta import build_on_meta
from torchsmith._summary._blocks import Blocks, repeated_blocks, truncated, worth_scaling
from torchsmith._summary._inputs import TracedInputs
from torchsmith._summary._saved import affine_text, fake_copy, fake_inputs
from torchsmith.errors import ConfigError, ShapeError, SummaryError, TorchsmithError, UnknownNameError, describe_error
from torchsmith.resolve import resolve_model

__all__ = ["memory", "memory_plans", "build_model", "real_builder", "check_knobs", "check_batch", "input_dtypes"]

def memory(
    model_or_name: nn.Module | str,
    input_size: Any = None,
    *,
    batch_size: int | str = 1,
    input_dtype: torch.dtype | str | Sequence[torch.dtype | str] | None = None,
    input_data: Any = None,
    optimizer: str = "adamw",
    precision: str = "fp32",
    foreach: bool | None = None,
    grad_accumulation: int = 1,
    checkpointing: bool | str | Sequence[str] = False,
    world_size: int = 1,
    strategy: str | None = None,
    kv_seq_len: int | None = None,
    scale_blocks: bool | None = None,
    **model_options: Any,
) -> MemoryPlan:
    """The memory one training step of a model needs, per device, without allocating a weight.

    The model's real forward, backward and optimizer step run on fake tensors (PyTorch's
    ``FakeTensorMode``: shapes, dtypes and storage sizes, no memory), and every storage PyTorch
    creates and frees is counted.

    Args:
        model_or_name: an ``nn.Module`` (on meta or real) or any name :func:`torchsmith.resolve_model`
            takes (zoo, ``file.py:Class``, spec, ``hf:``/``timm:``/``torchvision:``, ``hf:PATH/config.json``),
            built on meta with ``model_options``.
        input_size: one sample's shape without the batch (default: what the model declares).
        batch_size: per device and per micro-batch; a name (``"B"``, ``"B=16"``) makes the figures formulas.
        input_dtype: the input's dtype, one per input for several (as in :func:`torchsmith.summary`).
        input_data: real arguments to take shapes and dtypes from (as in :func:`torchsmith.summary`).
        optimizer: ``"sgd"``, ``"sgd-momentum"``, ``"adam"`` or ``"adamw"``.
        precision: ``"fp32"``, ``"bf16-mixed"`` / ``"fp16-mixed"`` (autocast, fp32 weights) or ``"bf16"``.
        foreach: the optimizer's ``foreach`` (None: torch's default for CPU tensors, one parameter at a time;
            torch picks ``foreach=True`` on CUDA, so pass True to plan a GPU run).
        grad_accumulation: micro-batches per optimizer step (gradients stay allocated between them).
        checkpointing: True checkpoints the repeated blocks (``torch.utils.checkpoint``), or a list of
            module names; as text, ``"blocks"`` or names separated by commas (``"features,classifier"``).
        world_size: the number of devices.
        strategy: ``"ddp"`` (default when ``world_size > 1``) or ``"fsdp"``.
        kv_seq_len: tokens of a decoder's KV cache in ``inference`` (default: the input's length).
        scale_blocks: run two and three of the repeated blocks and scale to all of them (None: for
            models over 1B parameters with 8 or more identical blocks).
        **model_options: options for building ``model_or_name`` when it is a name.

    Returns:
        A :class:`MemoryPlan`: ``activations``, ``peak``, ``by_category``, ``when``, ``by_module``,
        ``inference``, ``fits(...)`` and ``max_batch_size(...)``.

    Raises:
        ConfigError: a knob that cannot work (an unknown optimizer, a batch of 0, ``world_size=0``).
        ShapeError, SummaryError: the input does not fit the model, or fake tensors cannot run it.
    """
    knobs, strategy = check_knobs(optimizer, precision, foreach, grad_accumulation, world_size, strategy)
    check_batch(batch_size)
    model, label = build_model(model_or_name, model_options)
    spec = TracedInputs.build(model, input_size, input_data, input_dtypes(input_dtype), batch_size)
    return memory_plans(model, label, spec, knobs, checkpointing, [(world_size, strategy)], kv_seq_len,
                        scale_blocks, real_builder(model_or_name, model_options))[0]


def memory_plans(model: nn.Module, label: str, spec: TracedInputs, knobs: Knobs,
                 checkpointing: bool | str | Sequence[str],
                 layouts: Sequence[tuple[int, str | None]], kv_seq_len: int | None = None,
                 scale_blocks: bool | None = None, rebuild: Callable[[], nn.Module] | None = None) -> list[MemoryPlan]:
    """One plan per ``(world_size, strategy)`` layout from the same runs (the step is run once per batch size).

    ``rebuild`` builds the model with real weights when it is on meta (a name), for a model fake tensors cannot
    run (see ``_real``).
    """
    blocks = repeated_blocks(model)
    knobs = replace(knobs, checkpoint=_checkpoint_names(model, checkpointing, blocks))
    scale = _should_scale(model, blocks, scale_blocks)
    runner = _Runner(model, spec, knobs, blocks if scale else None, rebuild)
    batch = spec.sizes[0][0] if spec.data is None else None
    notes: list[str] = []
    first: _StepRun
    second: _StepRun | None
    if spec.data is not None:
        first, second = runner.run(None), None
        notes.append("input_data fixes the batch: the largest batch that fits is not worked out")
    elif isinstance(batch, int):
        first, second = runner.run(batch), runner.run(2 * batch)
    else:
        assert batch is not None
        first, second = runner.run(batch[1]), runner.run(2 * batch[1])
    third = runner.run(3 * batch[1]) if isinstance(batch, tuple) else None
    if runner.real_note is not None:
        notes.append(runner.real_note)
    kv = _kv_cache(model, spec, knobs.precision, kv_seq_len)
    plans = []
    for world_size, strategy in layouts:
        plan = _assemble(model, label, spec, knobs, world_size, strategy, first, second, batch,
                         blocks if scale else None, list(notes))
        if third is not None:
            _verify_symbolic(plan, third, batch)  # type: ignore[arg-type]
        plan.kv_cache, plan.kv_seq_len = kv
        plans.append(plan)
    return plans


# --------------------------------------------------------------------------- at the door
#: Why an FSDP plan takes fp32 or bf16 only: autocast keeps a bf16 copy of every weight it casts until the forward
#: ends, FSDP2's MixedPrecisionPolicy all-gathers bf16 shards instead, and that layout is not modelled.
FSDP_MIXED = ("an FSDP plan at a mixed precision is not made: FSDP trains in bf16 through its MixedPrecisionPolicy "
              "(bf16 all-gathers of fp32 shards), which the plan does not model, and autocast's figure would "
              "count a bf16 copy of every weight; plan FSDP with precision='fp32' or 'bf16' (pure), or DDP / one "
              "device at the mixed precision")


def check_knobs(optimizer: str, precision: str, foreach: bool | None, grad_accumulation: int, world_size: int,
                 strategy: str | None) -> tuple[Knobs, str | None]:
    check_optimizer(optimizer)
    check_precision(precision)
    check_positive("grad_accumulation", grad_accumulation)
    check_positive("world_size", world_size)
    if foreach not in (None, True, False):
        raise ConfigError(f"foreach must be True, False or None (torch's default), not {foreach!r}")
    if strategy is not None:
        check_strategy(strategy)
    elif world_size > 1:
        strategy = "ddp"
    if world_size == 1 and strategy is not None:
        strategy = None  # one device: nothing to divide or to copy
    if strategy == "fsdp" and precision.endswith("-mixed"):
        raise ConfigError(FSDP_MIXED)
    return Knobs(precision=precision, optimizer=optimizer, foreach=foreach,
                 grad_accumulation=grad_accumulation), strategy


def input_dtypes(input_dtype: Any) -> Any:
    """One dtype, one per input, or one per keyword input, as the summary takes them (names parsed)."""
    if isinstance(input_dtype, Mapping):
        return {k: parse_dtype(v) for k, v in input_dtype.items()}
    if isinstance(input_dtype, (list, tuple)):
        return [parse_dtype(d) for d in input_dtype]
    return parse_dtype(input_dtype)


def check_batch(batch_size: Any) -> None:
    """A positive int or a name ("B", "B=16"); "-1", 0 and 2.5 fail with the spelling that works."""
    text = str(batch_size).strip()
    if isinstance(batch_size, bool) or isinstance(batch_size, float) or (
            isinstance(batch_size, int) and batch_size < 1) or text.lstrip("-").isdigit() and int(text) < 1:
        raise ConfigError(f"batch_size must be a positive integer or a name like 'B', not {batch_size!r}")


def build_model(model_or_name: nn.Module | str, options: dict[str, Any]) -> tuple[nn.Module, str]:
    """The model (a name is built on meta, or on CPU when its constructor needs real tensors) and its label."""
    if isinstance(model_or_name, str):
        model = build_on_meta(lambda: resolve_model(model_or_name, **options))[0]
        return model, f"{type(model).__name__} ({model_or_name})"
    if isinstance(model_or_name, nn.Module):
        if options:
            raise ConfigError(f"options {sorted(options)} apply only when the model is given by name")
        return model_or_name, type(model_or_name).__name__
    raise ConfigError(f"memory() takes an nn.Module or a model name, not {type(model_or_name).__name__}")


def real_builder(model_or_name: nn.Module | str, options: dict[str, Any]) -> Callable[[], nn.Module] | None:
    """For a model given by name: builds it with real weights (the real-step fallback of ``_real``)."""
    if not isinstance(model_or_name, str):
        return None
    name = model_or_name
    return lambda: resolve_model(name, **options)


def _checkpoint_names(model: nn.Module, checkpointing: bool | str | Sequence[str],
                      blocks: Blocks | None) -> tuple[str, ...]:
    if checkpointing is False or checkpointing is None:
        return ()
    if isinstance(checkpointing, str):  # as a command line gives it: "blocks", or "features,encoder"
        text = checkpointing.strip()
        checkpointing = True if text.lower() in ("blocks", "true", "yes", "1") else [
            n.strip() for n in text.split(",") if n.strip()]
        if not checkpointing:
            raise ConfigError("checkpointing is empty; give 'blocks' (the repeated blocks) or module names, "
                              "e.g. 'features,classifier'")
    if checkpointing is True:
        if blocks is None:
            raise ConfigError(f"{type(model).__name__} has no repeated blocks to checkpoint; name the modules "
                              "instead, e.g. checkpointing=['features', 'encoder']")
        return blocks.names
    if not all(isinstance(n, str) for n in checkpointing):
        raise ConfigError(f"checkpointing must be True, False or a list of module names, not {checkpointing!r}")
    known = {n for n, _ in model.named_modules() if n}
    for n in checkpointing:
        if n not in known:
            raise UnknownNameError("module", n, known, hint="checkpointing takes names as model.named_modules() "
                                                            "gives them")
    return tuple(checkpointing)


def _should_scale(model: nn.Module, blocks: Blocks | None, scale: bool | None) -> bool:
    if blocks is None or blocks.stack is None or blocks.stack_length < 4:
        if scale:
            raise ConfigError(f"{type(model).__name__} has no run of 4 or more identical blocks to scale from; "
                              "use scale_blocks=None or False")
        return False
    if scale is not None:
        return bool(scale)
    return worth_scaling(model, blocks)


# --------------------------------------------------------------------------- running
@dataclass
class _StepRun:
    """One batch size: the training step and the eval forward (scaled to every block when asked)."""

    batch: int | None
    step: StepRecord
    inference: Peak


class _Runner:
    """Runs the step per batch size: on fake tensors, or on real CPU tensors where fake tensors cannot run it.

    ``real_note`` says when (and why) the real fallback ran (``_real``); ``rebuild`` builds a model given by
    name with real weights, for that fallback.
    """

    def __init__(self, model: nn.Module, spec: TracedInputs, knobs: Knobs, blocks: Blocks | None,
                 rebuild: Callable[[], nn.Module] | None = None) -> None:
        self.model, self.spec, self.knobs, self.blocks = model, spec, knobs, blocks
        self.rebuild = rebuild
        self.real_note: str | None = None
        self._rebuilt: nn.Module | None = None

    def run(self, batch: int | None) -> _StepRun:
        if self.blocks is None:
            return self._once(batch, None)
        assert self.blocks.stack is not None
        two, three = self._once(batch, 2), self._once(batch, 3)
        return _extrapolate(two, three, self.blocks.stack, self.blocks.stack_length)

    def _once(self, batch: int | None, keep: int | None) -> _StepRun:
        with truncated(self.model, self.blocks, keep):
            names = {n for n, _ in self.model.named_modules()}
            knobs = replace(self.knobs, checkpoint=tuple(n for n in self.knobs.checkpoint if n in names))
            weights = PRECISIONS[knobs.precision][0]
            convert = weights if weights != torch.float32 else None
            try:
                fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
                fake = fake_copy(self.model, fake_mode, dtype=convert)
                args, kwargs = fake_inputs(self.spec, batch, fake_mode, weights)
                with _quiet_fake_tensors():
                    step = run_training_step(fake, args, kwargs, knobs, fake_mode)
                    inference = run_inference(fake, args, kwargs, knobs.precision, fake_mode)
            except StepFailed as failed:
                real = self._real_copy(keep, convert)
                if real is None:
                    raise _step_error(self.model, failed, too_big_to_run(self.model) or _NO_WEIGHTS) from failed.cause
                args, kwargs = real_inputs(self.spec, batch, real, weights)
                try:
                    with torch.random.fork_rng(devices=[]), one_thread():  # the caller's RNG is not moved
                        step = run_training_step(real, args, kwargs, knobs, nullcontext())
                        inference = run_inference(real, args, kwargs, knobs.precision, nullcontext())
                except StepFailed as again:  # not fake tensors' limit: the model fails on real tensors too
                    raise _step_error(self.model, again, None) from again.cause
                self.real_note = (f"measured on a real CPU step: {_what_failed(failed)}; inputs are seeded, so "
                                  "what depends on their values (an MoE router's choice) is for those inputs")
        return _StepRun(batch, step, inference)

    def _real_copy(self, keep: int | None, dtype: torch.dtype | None) -> nn.Module | None:
        if too_big_to_run(self.model) is not None:
            return None
        on_meta = any(t.is_meta for t in self.model.parameters())
        if not on_meta:
            return real_copy(self.model, None, dtype)
        rebuild = self.rebuild or recorded_builder(self.model)
        if keep is not None or rebuild is None:
            return None  # a truncated model is not rebuilt as it is
        if self._rebuilt is None:
            self._rebuilt = rebuild()
        return real_copy(self._rebuilt, None, dtype)


_NO_WEIGHTS = ("its weights are on the meta device, so no real step can run instead; pass the model built with "
               "real weights (e.g. from_config on the CPU) to measure the step on real CPU tensors")


def _what_failed(failed: StepFailed) -> str:
    if failed.op is not None:
        return f"{failed.op} cannot run on fake tensors ({type(failed.cause).__name__})"
    return f"fake tensors cannot run it ({describe_error(failed.cause, 160)})"


def _step_error(model: nn.Module, failed: StepFailed, why_not_real: str | None) -> TorchsmithError:
    """One TorchsmithError for a failed step: fake tensors' limit (and why no real step ran), or the model's own."""
    e, name = failed.cause, type(model).__name__
    kind = type(e).__name__
    limit = (isinstance(e, NotImplementedError) or "fake" in kind.lower() or "DataDependent" in kind
             or "DynamicOutputShape" in kind)
    if why_not_real is not None and limit:
        return SummaryError(f"{name} cannot run on fake tensors ({failed.op or kind}: {describe_error(e, 200)}), "
                            f"and {why_not_real}; its memory cannot be planned without running it")
    if isinstance(e, (RuntimeError, ValueError, IndexError)) and not limit:
        return ShapeError(f"the training step of {name} failed: {describe_error(e, 300)}")
    return SummaryError(f"the training step of {name} failed ({failed.op or 'in Python code'}): "
                        f"{describe_error(e, 300)}" + (f"; {why_not_real}" if why_not_real else ""))


@contextmanager
def _quiet_fake_tensors() -> Iterator[None]:
    """FakeTensorMode logs a full traceback when an op fails before raising it; the failure reaches the user as
    one TorchsmithError (or the real step runs instead), so that log would only spill onto stderr."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


def _extrapolate(two: _StepRun, three: _StepRun, stack: str, length: int) -> _StepRun:
    """Figures with ``length`` blocks from runs with 2 and 3: each further block adds what the third added."""
    k = length - 2

    def ext(a: int, b: int) -> int:
        return a + k * (b - a)

    peaks = {}
    for phase, p3 in three.step.peaks.items():
        p2 = two.step.peaks.get(phase, p3)
        peaks[phase] = Peak(phase, ext(p2.bytes, p3.bytes),
                            {c: ext(p2.by_category.get(c, 0), p3.by_category.get(c, 0)) for c in CATEGORIES},
                            p3.module)
    by_module = dict(three.step.saved_by_module)
    prefix = f"{stack}.2"
    for name, v in three.step.saved_by_module.items():
        if name == prefix or name.startswith(prefix + "."):
            for i in range(3, length):
                by_module[f"{stack}.{i}" + name[len(prefix):]] = v
    step = StepRecord(activations=ext(two.step.activations, three.step.activations),
                      saved_parameters=ext(two.step.saved_parameters, three.step.saved_parameters),
                      saved_by_module=by_module, peaks=peaks)
    i2, i3 = two.inference, three.inference
    inference = Peak("inference", ext(i2.bytes, i3.bytes),
                     {c: ext(i2.by_category.get(c, 0), i3.by_category.get(c, 0)) for c in CATEGORIES}, i3.module)
    return _StepRun(three.batch, step, inference)


# --------------------------------------------------------------------------- the plan
def _lines(first: _StepRun, second: _StepRun | None) -> list[tuple[float, float]]:
    """The peak as ``max(a + b*B)``: one affine line per moment of the step (aligned timelines), else per phase."""
    if second is None or first.batch is None or second.batch is None:
        return [(float(first.step.peak.bytes), 0.0)]
    b1, b2 = first.batch, second.batch
    t1, t2 = first.step.timeline, second.step.timeline
    pairs: Iterable[tuple[int, int]]
    if t1 and len(t1) == len(t2) and first.step.phases == second.step.phases:
        pairs = zip(t1, t2)
    else:
        pairs = ((p.bytes, second.step.peaks[ph].bytes) for ph, p in first.step.peaks.items()
                 if ph in second.step.peaks)
    lines = {(y1 - (y2 - y1) / (b2 - b1) * b1, (y2 - y1) / (b2 - b1)) for y1, y2 in pairs}
    return _envelope(sorted(lines))


def _envelope(lines: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The lines that are the maximum somewhere at a batch of 1 or more (a few, out of thousands)."""
    grid = [1.0] + [2.0 ** i for i in range(1, 40)]
    keep = {max(lines, key=lambda ab: ab[0] + ab[1] * b) for b in grid}
    return sorted(keep)


def _assemble(model: nn.Module, label: str, spec: TracedInputs, knobs: Knobs, world_size: int, strategy: str | None,
              first: _StepRun, second: _StepRun | None, batch: Any, blocks: Blocks | None,
              notes: list[str]) -> MemoryPlan:
    weights = PRECISIONS[knobs.precision][0]
    params = [p for p in model.parameters()]
    param_bytes = sum(_nbytes(p, weights) for p in params)
    grad_bytes = sum(_nbytes(p, weights) for p in params if p.requires_grad)
    step = first.step
    opt_state = max((p.by_category.get("optimizer_state", 0) for p in step.peaks.values()), default=0)
    lines = _lines(first, second)
    all_blocks = blocks or repeated_blocks(model)
    dist = apply_strategy(step.peaks, lines, model, all_blocks, strategy, world_size, weights, param_bytes,
                          grad_bytes, opt_state)
    peak = dist.peak
    symbol = batch[0] if isinstance(batch, tuple) else None
    act = step.activations
    if second is not None and symbol is not None:
        b1, b2 = first.batch or 1, second.batch or 2
        plan_act: Num = _formula(act, second.step.activations, b1, b2, symbol)
        plan_peak: Num = _formula_from_lines(dist.lines, b1, symbol)
        other = apply_strategy(second.step.peaks, lines, model, all_blocks, strategy, world_size, weights,
                               param_bytes, grad_bytes, opt_state, phase=peak.phase).peak.by_category
        by_category: dict[str, Num] = {c: _formula(v, other.get(c, v), b1, b2, symbol)
                                       for c, v in peak.by_category.items()}
        inference: Num = _formula(first.inference.bytes, second.inference.bytes, b1, b2, symbol)
    else:
        plan_act, plan_peak, inference = act, peak.bytes, first.inference.bytes
        by_category = dict(peak.by_category)
    if blocks is not None and blocks.stack is not None:
        notes.append(f"computed with 2 and 3 of the {blocks.stack_length} identical blocks in {blocks.stack} and "
                     "scaled to all of them (each adds the same bytes)")
    if knobs.precision == "fp16-mixed":
        notes.append("fp16-mixed: GradScaler's scale and inf checks are a few bytes and not counted")
    sizes = spec.describe()
    return MemoryPlan(
        model=label, input=sizes, batch_size=symbol if symbol else (batch if isinstance(batch, int) else "given data"),
        precision=knobs.precision, optimizer=knobs.optimizer, foreach=knobs.foreach,
        grad_accumulation=knobs.grad_accumulation, checkpointing=list(knobs.checkpoint), world_size=world_size,
        strategy=strategy, parameters=dist.parameters, gradients=dist.gradients, optimizer_state=dist.optimizer_state,
        activations=plan_act, saved_parameters=step.saved_parameters, peak=plan_peak,
        by_category={k: v for k, v in by_category.items()}, when=_when(peak),
        by_module=_by_module(model, step.saved_by_module, weights, symbol, second, first),
        inference=inference, distributed=dist.description,
        symbols={symbol: first.batch or 0} if symbol else {}, notes=notes, lines=dist.lines)


def _nbytes(t: torch.Tensor, weights: torch.dtype) -> int:
    size = torch.empty((), dtype=weights).element_size() if t.is_floating_point() else t.element_size()
    return t.numel() * size


def _when(peak: Peak) -> str:
    phase = {"optimizer": "the optimizer's step"}.get(peak.phase, peak.phase)
    return f"{phase}, in {peak.module}" if peak.module else phase


def _formula(v1: int, v2: int, b1: int, b2: int, symbol: str) -> Num:
    slope = (v2 - v1) / (b2 - b1)
    const = v1 - slope * b1
    return affine_text(const, slope, symbol)


def _formula_from_lines(lines: list[tuple[float, float]], b: int, symbol: str) -> Num:
    a, s = max(lines, key=lambda ab: ab[0] + ab[1] * b)
    return affine_text(a, s, symbol)


def _verify_symbolic(plan: MemoryPlan, third: _StepRun, batch: tuple[str, int]) -> None:
    """A third batch size must agree with the formulas; where it does not, say so."""
    b3 = third.batch or 0
    want = {"activations": third.step.activations}
    for name, value in want.items():
        formula = getattr(plan, name)
        got = _evaluate(formula, batch[0], b3)
        if got != value:
            plan.notes.append(f"{name} is not affine in {batch[0]}: the formula gives {got:,} at {batch[0]}={b3} "
                              f"but the step holds {value:,}")
    if plan.peak_at(b3) != third.step.peak.bytes and not plan.distributed:
        plan.notes.append(f"the peak at {batch[0]}={b3} is {third.step.peak.bytes:,} bytes, the formula's envelope "
                          f"gives {plan.peak_at(b3):,}")


def _evaluate(formula: Num, symbol: str, value: int) -> int:
    if isinstance(formula, int):
        return formula
    return int(eval(formula, {"__builtins__": {}}, {symbol: value}))  # noqa: S307 (our own "a*B + c" text)


def _by_module(model: nn.Module, saved: dict[str, int], weights: torch.dtype, symbol: str | None,
               second: _StepRun | None, first: _StepRun) -> list[ModuleMemory]:
    rolled = _rollup(saved)
    rolled2 = _rollup(second.step.saved_by_module) if second is not None and symbol else {}
    out = []
    for name, m in model.named_modules():
        act: Num = rolled.get(name, 0)
        if symbol and second is not None:
            act = _formula(rolled.get(name, 0), rolled2.get(name, 0), first.batch or 1, second.batch or 2, symbol)
        out.append(ModuleMemory(name=name, type=type(m).__name__, depth=name.count(".") + 1 if name else 0,
                                parameters=sum(_nbytes(p, weights) for p in m.parameters()), activations=act))
    return out


def _rollup(saved: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, v in saved.items():
        parts = name.split(".") if name else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            out[key] = out.get(key, 0) + v
    return out


# --------------------------------------------------------------------------- a decoder's KV cache
_DECODERS = {"gpt2", "gpt_neo", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3", "phi", "phi3", "gemma",
             "gemma2", "opt", "falcon", "gpt_neox", "bloom", "olmo", "starcoder2"}


def _kv_cache(model: nn.Module, spec: TracedInputs, precision: str, seq: int | None) -> tuple[Num | None, int | None]:
    cfg = getattr(model, "config", None)
    if cfg is None or not (getattr(cfg, "model_type", "") in _DECODERS or "CausalLM" in type(model).__name__):
        return None, None
    layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head", "num_heads")
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    if not (layers and heads and hidden):
        return None, None
    kv_heads = _first(cfg, "num_key_value_heads") or heads
    head_dim = _first(cfg, "head_dim") or hidden // heads
    if seq is None:
        dims = spec.sizes[0][1:] if spec.data is None and spec.sizes else ()
        seq = next((d if isinstance(d, int) else d[1] for d in dims[:1]), None)
        if seq is None:
            return None, None
    check_positive("kv_seq_len", seq)
    size = 4 if precision == "fp32" else 2
    per_sample = 2 * layers * kv_heads * head_dim * seq * size
    batch = spec.sizes[0][0] if spec.data is None else 1
    if isinstance(batch, tuple):
        return affine_text(0, per_sample, batch[0]), seq
    return per_sample * batch, seq


def _first(cfg: Any, *names: str) -> int | None:
    for n in names:
        v = getattr(cfg, n, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None

