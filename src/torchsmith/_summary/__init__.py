"""Meta-device model summary: :func:`summary` returns a :class:`ModelSummary`.

The forward runs on the meta device (shapes and dtypes, no storage), on a meta
copy of the caller's model, so the model is never moved, modified or kept alive
and peak memory does not grow with the parameter count. Ops that meta cannot
run (``.item()``, ``nonzero``) fall back to fake tensors, then to real tensors
at batch 1; the summary says which ran. Named input dims (``("B", 3, 32, 32)``)
trace symbolically with torch's ShapeEnv, so shapes and FLOPs are formulas.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from torchsmith._format import format_shapes, parse_dtype
from torchsmith._meta import build_on_meta
from torchsmith._summary._inputs import Namer, TracedInputs, parse_dim
from torchsmith._summary._saved import training_activations
from torchsmith._summary._stand_in import run_stand_in
from torchsmith._summary._trace import Trace, _tensors, meta_copy, module_modes, restore_modes, run_trace
from torchsmith._summary.diagram import Diagram
from torchsmith._summary.explain import Explanation
from torchsmith._summary.render import render_summary, rich_summary
from torchsmith._summary.result import FlowEvent, LayerRow, MemoryEstimate, ModelSummary
from torchsmith.contract import (
    REAL_FALLBACK_BYTES,
    cheap_to_run,
    input_spec,
    is_several,
    lazy_tensors,
    materialise_lazy,
    unregistered_layers,
)
from torchsmith.errors import ConfigError, ShapeError, SummaryError, TorchsmithError, describe_error
from torchsmith.resolve import resolve_model

__all__ = ["summary", "ModelSummary", "LayerRow", "MemoryEstimate", "FlowEvent", "render_summary",
           "rich_summary", "parse_dtype", "Diagram", "Explanation", "REAL_FALLBACK_BYTES"]

RUN_META, RUN_FAKE, RUN_REAL = "meta", "fake tensors", "real tensors (batch 1)"


def summary(
    model_or_name: nn.Module | str,
    input_size: Any = None,
    *,
    batch_size: int | str = 1,
    input_data: Any = None,
    input_dtype: torch.dtype | str | list[torch.dtype | str] | tuple[torch.dtype | str, ...] | None = None,
    depth: int | None = 3,
    device: str = "meta",
    dtype: torch.dtype | str | None = None,
    mode: str = "eval",
    replay: bool = True,
    **model_options: Any,
) -> ModelSummary:
    """Summarise a model layer by layer without allocating its weights.

    The forward runs on the meta device: the caller's model is never moved, changed or kept. One row per
    module call (a reused module gets two rows, tied weights are counted once); FLOPs come from torch's own
    operator formulas. Dims given as names stay symbolic, so shapes and FLOPs come out as formulas.

    Args:
        model_or_name: An ``nn.Module``, or any reference :func:`torchsmith.resolve_model` takes (zoo name,
            ``file.py:Class``, ``module:attr``, ``hf:NAME``), built directly on meta with ``model_options``.
        input_size: One sample's shape without the batch dimension, as in every torchsmith function
            (``(3, 32, 32)``; a list of such tuples for several inputs). Dims may be names (``"T=128"``).
            Default: what the model contract reads from the model (``default_input_size``, a transformers or
            timm config, the first layer).
        batch_size: The batch, an int or a name (``"B"``) to keep it symbolic.
        input_data: A tensor, a tuple of arguments or a dict of keyword arguments, used for its shapes and
            dtypes instead of ``input_size``.
        input_dtype: One dtype, or one per input (``torch.long`` for token ids).
        depth: How deep ``str()`` renders the table (every row is kept).
        device: ``"meta"`` tries meta, then fake tensors, then real ones at batch 1; any other device runs the
            model itself there (under ``no_grad``, at the given size).
        dtype: The dtype of the memory estimate (default: the parameters').
        mode: ``"eval"`` or ``"train"``.
        replay: Run each distinct block once and replay identical repeats (a transformer's layers), which is
            what makes a 65B model take a second.
        **model_options: Options for building ``model_or_name`` when it is a name.

    Returns:
        A :class:`ModelSummary`: rows, totals (``total_params``, ``forward_flops``, ``training_flops``), the
        memory estimate, ``flow()``, ``render(...)``, ``diagram()`` and ``explain()``.

    Raises:
        ShapeError: The input does not fit the model; names the first module that failed, what it expected
            and the shape flow up to it. The rows that ran are on the error's ``partial`` attribute.
        ConfigError: A bad argument (an input size with the batch in front, an unknown mode or dtype).
        UnknownNameError: ``model_or_name`` names no model (with close matches).
    """
    _check_arguments(mode, depth, device)
    mem_dtype = parse_dtype(dtype)
    in_dtype = _input_dtypes(input_dtype)
    notes: list[str] = []
    model, ref, label = _model_of(model_or_name, model_options, notes)
    model, spec = _prepared(model, input_size, input_data, in_dtype, batch_size, notes)
    if device == "meta":
        attempts = [RUN_FAKE, RUN_REAL] if spec.symbolic else [RUN_META, RUN_FAKE, RUN_REAL]
    else:
        attempts = [device]
    trace: Trace | None = None
    # (trace, how, notes) of the attempt that failed without saying meta or fake tensors were the cause: when
    # the real run that follows fails too, the input really is wrong, and that first error is the one to give.
    unexplained: tuple[Trace, str, int] | None = None
    for i, how in enumerate(attempts):
        with torch.random.fork_rng(devices=[]):  # a forward that samples or builds a layer must not move the RNG
            trace = _attempt(how, model, ref, model_options, spec, mode, replay)
        if trace.error is None:
            break
        limited = _device_limited(trace.error)
        # A small real model runs on real tensors whatever the error said: an op without a meta kernel (a packed
        # sequence's CPU batch_sizes, .item()) fails in ways no message test can list; a wrong input fails there too.
        if i + 1 < len(attempts) and (limited or cheap_to_run(model)):
            if not limited and unexplained is None:
                unexplained = (trace, how, len(notes))
            notes.append(f"{how} could not run the forward ({describe_error(trace.error)}); tried {attempts[i + 1]}")
            continue
        if unexplained is not None:
            trace, how, kept = unexplained
            del notes[kept:]
        result = _build(trace, model, label, spec, how, mem_dtype, notes, depth)
        hint = ""
        if spec.symbolic and how == RUN_FAKE:
            # A named dim is traced at a stand-in value (8 unless given); a model that needs more (LeNet's
            # 5x5 convs after pooling) fails there, which reads like a broken model unless this is said.
            named = dict.fromkeys(d for size in spec.sizes for d in size if not isinstance(d, int))
            values = ", ".join(f"{n}={v}" for n, v in named)
            example = next(iter(named))[0]
            hint = (f" (symbolic dims traced at {values}; write NAME=<size>, e.g. {example}=64, "
                    "to trace one at another size)")
        elif how == RUN_REAL and spec.data is None and any(_hint_of(size[0]) > 1 for size in spec.sizes):
            # The input in the message is batch 1, not the size given: say why (BatchNorm in train mode
            # refuses a batch of 1), and how to run it at the size given.
            hint = (" (meta and fake tensors could not run the model, so it ran on real tensors at batch 1; "
                    "device='cpu' runs it at the size given)")
        if spec.data is None and input_size is not None:
            hint += _batch_hint(model, input_size)
        raise _failure(trace, result, hint) from trace.error
    assert trace is not None
    if attempts[-1] == RUN_REAL and how == RUN_REAL and spec.symbolic:
        notes.append("symbolic dims were traced at their values: real tensors cannot keep them symbolic")
    result = _build(trace, model, label, spec, how, mem_dtype, notes, depth)
    if how == RUN_FAKE and spec.symbolic and result.symbols and isinstance(result.forward_flops, int):
        # The model's forward fixed the symbols (a guard on a slice, a size check): say so, never pass
        # concrete figures off as formulas.
        values = ", ".join(f"{k}={v}" for k, v in result.symbols.items())
        result.notes.append(f"torch {torch.__version__} specialised the symbolic dims to {values} while tracing "
                            "(its shape environment could not keep them symbolic here): figures are for those sizes")
    return result


def _check_arguments(mode: str, depth: int | None, device: str) -> None:
    """The arguments that need no model: the mode, the depth and the device."""
    if mode not in ("eval", "train"):
        raise ConfigError(f"mode must be 'eval' or 'train', not {mode!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ConfigError(f"depth must be an int, 0 or more (or None for every level), not {depth!r}")
    if device != "meta":
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ConfigError(f"device {device!r} is not a device; use 'meta' (the default), 'cpu' or 'cuda'") from e


def _input_dtypes(input_dtype: Any) -> Any:
    """One dtype for every input, or one per input (token ids and a float mask), parsed."""
    if isinstance(input_dtype, (list, tuple)):
        return [parse_dtype(d) for d in input_dtype]
    if isinstance(input_dtype, Mapping):
        return {k: parse_dtype(d) for k, d in input_dtype.items()}
    return parse_dtype(input_dtype)


def _model_of(model_or_name: Any, model_options: dict[str, Any],
              notes: list[str]) -> tuple[nn.Module, str | None, str]:
    """The model to summarise, the reference it was built from (None for a module) and its label."""
    if isinstance(model_or_name, str):
        model, built_on = _build_on_meta(model_or_name, model_options)
        if built_on != "meta":
            notes.append(f"built on {built_on}: {model_or_name} could not be built on the meta device")
        return model, model_or_name, f"{type(model).__name__} ({model_or_name})"
    if isinstance(model_or_name, nn.Module):
        if model_options:
            raise ConfigError(f"options {sorted(model_options)} apply only when the model is given by name")
        return model_or_name, None, type(model_or_name).__name__
    raise ConfigError(f"summary() takes an nn.Module or a model name, not {type(model_or_name).__name__}")


def _prepared(model: nn.Module, input_size: Any, input_data: Any, in_dtype: Any, batch_size: Any,
              notes: list[str]) -> tuple[nn.Module, TracedInputs]:
    """Refuse TorchScript, size lazy layers on a meta copy, read the inputs, note unregistered layers."""
    script_type = getattr(torch.jit, "ScriptModule", ())  # () if a future torch drops TorchScript
    scripted = next((name for name, m in model.named_modules() if isinstance(m, script_type)), None)
    if scripted is not None:  # TorchScript takes no module hooks, and its code cannot run on a meta copy
        where = f"{type(model).__name__}.{scripted}" if scripted else type(model).__name__
        raise SummaryError(f"{where} is TorchScript (torch.jit.script or trace), which summary cannot trace; "
                           "summarise the nn.Module it was made from")
    if lazy_tensors(model):  # nn.Lazy* layers: sized by a dry run of a meta copy, so the model is not changed
        model = meta_copy(model)
        notes.append(f"{materialise_lazy(model, _lazy_size(input_size), input_dtype=_one_dtype(in_dtype))} "
                     "(a dry run on the meta device; the model itself is not changed)")
    spec = TracedInputs.build(model, input_size, input_data, in_dtype, batch_size)
    held = unregistered_layers(model)
    if held:  # their parameters are not the model's: every figure below leaves them out
        shown = ", ".join(f"{path} ({type(m).__name__}, {sum(p.numel() for p in m.parameters()):,} parameters)"
                          for path, m in held[:3])
        notes.append(f"not registered, so not counted: {shown}{' and more' if len(held) > 3 else ''}; they sit in a "
                     "plain list, dict or attribute the model does not register: use nn.ModuleList / nn.ModuleDict")
    return model, spec

def _lazy_size(input_size: Any) -> Any:
    """The one input's size for a lazy model's dry run (symbolic dims at their tracing values)."""
    if input_size is None or isinstance(input_size, str):
        return input_size
    if is_several(input_size):
        return None  # several inputs: the dry run takes the contract's own
    try:
        return tuple(d if isinstance(d, int) else parse_dim(d)[1] for d in input_size)  # type: ignore[index]
    except (TypeError, ConfigError):
        return input_size


def _one_dtype(dtype: Any) -> torch.dtype | None:
    return dtype if isinstance(dtype, torch.dtype) else None


def _batch_hint(model: nn.Module, input_size: Any) -> str:
    """When the size given has one dim more than the model takes, it most likely holds a batch: say so."""
    if not isinstance(input_size, (tuple, list, torch.Size)) or any(isinstance(d, (tuple, list)) for d in input_size):
        return ""
    try:
        takes = input_spec(model).size
    except TorchsmithError:
        return ""
    if len(input_size) != len(takes) + 1:
        return ""
    return (f" (input_size is one sample's shape without the batch dimension: input_size={tuple(input_size[1:])!r}, "
            f"batch_size={input_size[0]!r})")


# --------------------------------------------------------------------------- building and running
def _build_on_meta(ref: str, options: dict[str, Any]) -> tuple[nn.Module, str]:
    """The named model on meta (no weight memory); on CPU if its constructor cannot run on meta."""
    model, on_meta = build_on_meta(lambda: resolve_model(ref, **options))
    return model, "meta" if on_meta else "cpu"


def _attempt(how: str, model: nn.Module, ref: str | None, options: dict[str, Any], spec: TracedInputs,
             mode: str, replay: bool) -> Trace:
    if how == RUN_META and (quick := run_stand_in(model, spec, mode, replay)) is not None:
        return quick  # a small model: the meta pass on zero-valued CPU stand-ins, the same figures (_stand_in.py)
    if how in (RUN_META, RUN_FAKE):
        try:
            copy = meta_copy(model).train(mode == "train")
        except Exception as e:  # an attribute deepcopy cannot copy (a lock, a file): run the real model instead
            return Trace(namer=Namer(), error=NotImplementedError(
                f"cannot make a meta copy of {type(model).__name__}: {type(e).__name__}: {e}"))
    if how == RUN_META:
        args, kwargs = spec.meta_args()
        return run_trace(copy, args, kwargs, Namer(), replay=replay)
    if how == RUN_FAKE:
        # Heavy (sympy and torch's symbolic shapes, ~0.5 s): imported only when the fake-tensor pass runs.
        from torch.fx.experimental.symbolic_shapes import ShapeEnv

        try:
            env = ShapeEnv(duck_shape=False, allow_scalar_outputs=True, allow_dynamic_output_shape_ops=True)
        except TypeError:  # older/newer torch without these switches
            env = ShapeEnv()
        fake_mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
        args, kwargs, namer = spec.fake_args(fake_mode, env)
        # FakeTensorMode logs a full traceback when an op fails (a shape that does not fit) before raising
        # it; the failure reaches the user as one ShapeError, so that log would only spill onto stderr.
        log = logging.getLogger("torch._subclasses.fake_tensor")
        was_disabled = log.disabled
        log.disabled = True
        try:
            return run_trace(copy, args, kwargs, namer, context=fake_mode, replay=replay)
        finally:
            log.disabled = was_disabled
    # Real tensors: the caller's own model, under no_grad, its modes restored afterwards.
    target = model
    if _on_meta(model):
        if ref is None:
            raise SummaryError(
                f"{type(model).__name__} needs real tensors for its forward (meta and fake tensors could not run "
                "it) but its weights are on the meta device; pass a model with real weights")
        target = resolve_model(ref, **options)
    device = torch.device("cpu") if how == RUN_REAL else torch.device(how)
    if how != RUN_REAL and _device_of(target) != device:
        raise ConfigError(f"device={how!r} runs the model where it is, but its weights are on "
                          f"{_device_of(target)}; move it first or use device='meta'")
    args, kwargs = spec.real_args(device) if how == RUN_REAL else _full_size_args(spec, device)
    modes = module_modes(target)
    # A forward in train mode updates BatchNorm's running statistics and draws dropout masks from the
    # global generator: both are put back, so a summary changes neither the model nor a seeded run.
    saved = [(b, b.detach().clone()) for b in target.buffers()]
    rng_devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices):
            target.train(mode == "train")
            return run_trace(target, args, kwargs, Namer())
    finally:
        restore_modes(modes)
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def _full_size_args(spec: TracedInputs, device: torch.device) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args, kwargs = spec.meta_args()
    conv = [torch.zeros(a.shape, dtype=a.dtype, device=device) if isinstance(a, torch.Tensor) else a for a in args]
    return tuple(conv), {k: torch.zeros(v.shape, dtype=v.dtype, device=device) if isinstance(v, torch.Tensor) else v
                         for k, v in kwargs.items()}


def _hint_of(d: Any) -> int:
    return d if isinstance(d, int) else int(d[1])


def _on_meta(model: nn.Module) -> bool:
    return any(t.is_meta for t in model.parameters()) or any(t.is_meta for t in model.buffers())


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


_LIMIT_NAMES = {
    "DataDependentOutputException", "DynamicOutputShapeException", "UnsupportedOperatorException",
    "GuardOnDataDependentSymNode", "UnsupportedFakeTensorException", "PendingUnbackedSymbolNotFound",
    "DataDependentOutputError",
}


def _device_limited(e: BaseException) -> bool:
    """True when the error says meta/fake tensors cannot run an op (not that the input is wrong)."""
    seen = 0
    while e is not None and seen < 5:
        if isinstance(e, NotImplementedError) or any(c.__name__ in _LIMIT_NAMES for c in type(e).__mro__):
            return True
        msg = str(e).lower()
        if ("meta" in msg and ("meta tensor" in msg or "meta device" in msg or "device meta" in msg
                               or "'meta'" in msg)) or "data-dependent" in msg or "data dependent" in msg \
                or "fake tensor" in msg or "faketensor" in msg or "symbolic" in msg:
            return True
        e = e.__cause__ or e.__context__  # type: ignore[assignment]
        seen += 1
    return False


def _build(trace: Trace, model: nn.Module, label: str, spec: TracedInputs, how: str, mem_dtype: torch.dtype | None,
           notes: list[str], depth: int | None) -> ModelSummary:
    params = list(model.parameters())  # unique: a tied tensor is one entry
    buffers = [b for b in model.buffers() if b is not None]
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    float_params = [p for p in params if p.is_floating_point()]
    dt = mem_dtype or (float_params[0].dtype if float_params else torch.get_default_dtype())
    size = torch.empty((), dtype=dt).element_size()

    def nbytes(ts: Sequence[torch.Tensor]) -> int:
        return sum(t.numel() * (size if t.is_floating_point() else t.element_size()) for t in ts)

    namer = trace.namer
    ffl = trace.forward_flops
    training = ffl + trace.backward_flops
    if trace.replayed:
        notes = notes + [f"{trace.replayed} repeated module calls were replayed from their first run"]
    symbols = {}
    if spec.sizes:
        symbols = {d[0]: d[1] for s in spec.sizes for d in s if not isinstance(d, int)}
    activations = namer.value(trace.activation_elements * size)
    if trace.error is None:
        try:  # exact: what a training step saves for backward, as ts.memory counts it
            activations = training_activations(model, spec, dt, cpu=trace.stand_in)
        except Exception as e:  # a model that runs only in eval mode or on real tensors (BatchNorm at batch 1)
            notes = notes + [f"activations: every forward op's output, an upper bound (a train-mode forward on "
                             f"fake tensors failed: {describe_error(e)})"]
    memory = MemoryEstimate(
        dtype=str(dt).removeprefix("torch."), parameters=nbytes(params), buffers=nbytes(buffers),
        gradients=trainable * size, sgd_momentum=trainable * size, adam_state=2 * trainable * size,
        activations=activations, inputs=_input_bytes(spec))
    ran = how if how in (RUN_META, RUN_FAKE, RUN_REAL) else f"real tensors on {how}"
    return ModelSummary(
        model=label, input=spec.describe() + (" at batch 1" if how == RUN_REAL and spec.data is None else ""),
        rows=trace.rows, total_params=total, trainable_params=trainable,
        buffer_elements=sum(b.numel() for b in buffers), forward_flops=namer.value(ffl),
        forward_macs=namer.value(ffl // 2), training_flops=namer.value(training),
        uncounted_ops=dict(trace.uncounted), memory=memory, ran_on=ran, symbols=symbols,
        notes=notes, output_shapes=trace.output, events=trace.events, graph=trace.graph, depth=depth)


def _input_bytes(spec: TracedInputs) -> int | str:
    if spec.data is not None:
        return sum(t.numel() * t.element_size() for t in _tensors(spec.data))
    total = 0
    text = []
    for s, dt in zip(spec.sizes, spec.dtypes):
        n = 1
        names = []
        for d in s:
            if isinstance(d, int):
                n *= d
            else:
                names.append(d[0])
        n *= torch.empty((), dtype=dt).element_size()
        if names:
            text.append("*".join([str(n)] + names))
        else:
            total += n
    if text:
        return " + ".join(text + ([str(total)] if total else []))
    return total


def _failure(trace: Trace, partial: ModelSummary, hint: str = "") -> TorchsmithError:
    """One error naming the first module that failed, what it expected, what it got, and the flow so far."""
    e = trace.error
    assert e is not None
    innermost = trace.rows[trace.failed_rows[-1]] if trace.failed_rows else None
    where = "the model" if innermost is None else (
        f"{innermost.name} ({innermost.type})" if innermost.name else innermost.type)
    got = "" if innermost is None else f" on input {format_shapes(innermost.input_shapes)}"
    expected = f"; it expects {trace.expected}" if trace.expected else ""
    flow = partial.flow()
    msg = (f"{where} failed{got}{expected}: {describe_error(e) if not isinstance(e, TorchsmithError) else str(e)}{hint}"
           + (f"; shape flow up to it: {flow}" if flow else ""))
    partial.error = msg
    partial.failed_module = None if innermost is None else innermost.name
    err: TorchsmithError
    if isinstance(e, (RuntimeError, ValueError, IndexError)) and not isinstance(e, NotImplementedError):
        err = ShapeError(msg)
    else:
        err = SummaryError(msg)
    err.partial = partial  # type: ignore[union-attr]
    return err
