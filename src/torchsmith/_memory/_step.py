"""One training step on fake tensors, as PyTorch would run it, measured by :class:`LiveTracker`.

The model is a copy whose every parameter and buffer is a ``FakeTensor`` (shapes, dtypes and storage
sizes, no memory). Two steps run: the first allocates what a real run keeps between steps (the
optimizer's state), the second is the steady state that is measured: forward (``grad_accumulation``
micro-batches, at most two: the second is already the steady state of the gradients), backward, the
optimizer's step, and ``zero_grad(set_to_none=True)``. Precision, the optimizer and activation
checkpointing are applied the way a training loop applies them, so what is counted is what PyTorch's
own kernels allocate: autocast's weight copies, the foreach implementation's temporaries, the block
inputs that checkpointing keeps and the recomputation in backward.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from torchsmith._fake import unpacked_sequences
from torchsmith._memory._tracker import LiveTracker, Peak, StepModules
from torchsmith._summary._saved import SavedStorages, storage_of
from torchsmith.errors import ConfigError, TorchsmithError

__all__ = ["Knobs", "StepRecord", "StepFailed", "run_training_step", "run_inference", "make_optimizer",
           "PRECISIONS", "OPTIMIZERS"]

#: precision -> (dtype of the weights, autocast dtype or None)
PRECISIONS: dict[str, tuple[torch.dtype, torch.dtype | None]] = {
    "fp32": (torch.float32, None),
    "bf16-mixed": (torch.float32, torch.bfloat16),
    "fp16-mixed": (torch.float32, torch.float16),
    "bf16": (torch.bfloat16, None),
}
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw")


@dataclass(frozen=True)
class Knobs:
    """How one step is run (validated by the caller)."""

    precision: str = "fp32"
    optimizer: str = "adamw"
    foreach: bool | None = None  # None: torch's own default for CPU tensors (a loop over parameters)
    grad_accumulation: int = 1
    checkpoint: tuple[str, ...] = ()  # module names whose forward is recomputed in backward


@dataclass
class StepRecord:
    """What one measured training step held."""

    activations: int  # bytes of the storages saved for backward, once each (parameters included)
    saved_parameters: int  # the part of ``activations`` that is a parameter's or buffer's own storage
    saved_by_module: dict[str, int]
    peaks: dict[str, Peak]  # per phase: forward, backward, optimizer
    timeline: list[int] = field(default_factory=list)  # live bytes after each allocation
    phases: list[str] = field(default_factory=list)

    @property
    def peak(self) -> Peak:
        return max(self.peaks.values(), key=lambda p: p.bytes)


class StepFailed(Exception):
    """A step (training or inference) raised ``cause``, an exception that is not a TorchsmithError.

    ``op`` is the aten op it stopped at (``"aten._local_scalar_dense"``), None when it stopped in Python code
    (a hook, a ``.to()`` that fake tensors refuse).
    """

    def __init__(self, cause: BaseException, op: str | None) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause, self.op = cause, op


def _op_name(func: Any) -> str | None:
    if func is None:
        return None
    packet = getattr(func, "_overloadpacket", None)
    return f"aten.{packet.__name__}" if packet is not None else str(func)


@contextmanager
def _failures(tracker: LiveTracker) -> Iterator[None]:
    """Any exception of the model's step, other than our own, as one :class:`StepFailed` naming the op."""
    try:
        yield
    except TorchsmithError:
        raise
    except Exception as e:
        func = getattr(e, "func", None) or tracker.failed_op  # fake tensors' exceptions carry the op
        raise StepFailed(e, _op_name(func)) from e


def make_optimizer(name: str, params: list[nn.Parameter], foreach: bool | None) -> torch.optim.Optimizer:
    """The optimizer as a training loop makes it (the learning rate is irrelevant to memory)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, foreach=foreach)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=foreach)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3, foreach=foreach)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3, foreach=foreach)
    raise ConfigError(f"unknown optimizer {name!r}")  # validated before; kept for a direct caller


def loss_of(out: Any) -> torch.Tensor:
    """A scalar from every floating-point output that needs a gradient: the sum (no extra saved tensor)."""
    parts = [t.sum() for t in _outputs(out) if t.is_floating_point() and t.requires_grad]
    if not parts:
        raise ConfigError("no output of the model needs a gradient (every parameter frozen?), so there is no "
                          "training step to plan")
    return functools.reduce(torch.add, parts)


def _outputs(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _outputs(o)
    elif isinstance(obj, dict):  # transformers' ModelOutput is an OrderedDict
        for o in obj.values():
            yield from _outputs(o)


@contextmanager
def checkpointed(model: nn.Module, names: tuple[str, ...]) -> Iterator[None]:
    """Run each named module's forward under ``torch.utils.checkpoint`` (non-reentrant), as a user would."""
    modules = dict(model.named_modules())
    patched = []
    for name in names:
        m = modules[name]
        forward = m.forward

        def run(*args: Any, _forward: Callable[..., Any] = forward, **kwargs: Any) -> Any:
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        m.forward = run  # type: ignore[method-assign]
        patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            m.__dict__.pop("forward", None)


def _autocast(precision: str) -> AbstractContextManager[Any]:
    amp = PRECISIONS[precision][1]
    return torch.autocast("cpu", dtype=amp) if amp is not None else nullcontext()


# --------------------------------------------------------------------------- the steps
def run_training_step(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], knobs: Knobs,
                      fake_mode: Any) -> StepRecord:
    """Two training steps of ``model`` (in train mode) on the given inputs; the second is measured.

    ``fake_mode`` is the ``FakeTensorMode`` the model's tensors and the inputs belong to, or a null context for
    a model and inputs on real CPU tensors (the fallback for a model fake tensors cannot run). Raises
    :class:`StepFailed` for whatever the model's step raised.
    """
    model.train()
    modules = StepModules()
    tracker = LiveTracker(modules)
    params = [p for p in model.parameters() if p.requires_grad]
    owned = {id(st) for t in itertools.chain(model.parameters(), model.buffers()) if (st := storage_of(t)) is not None}
    handles = [p.register_post_accumulate_grad_hook(lambda p: tracker.add(p.grad, "gradients")) for p in params]
    saved: SavedStorages | None = None
    try:
        with _failures(tracker), fake_mode, modules, tracker, checkpointed(model, knobs.checkpoint), \
                unpacked_sequences():
            for p in model.parameters():
                tracker.add(p, "parameters")
            for b in model.buffers():
                tracker.add(b, "buffers")
            for t in _outputs((args, kwargs)):
                tracker.add(t, "activations")
            opt = make_optimizer(knobs.optimizer, params, knobs.foreach)
            for step in range(2):
                tracker.recording = step == 1
                for _ in range(min(knobs.grad_accumulation, 2)):
                    tracker.phase = "forward"

                    def to_activations(t: torch.Tensor) -> None:
                        if tracker.category_of(t) == "temporaries":
                            tracker.add(t, "activations")

                    saved = SavedStorages(owned, modules, on_pack=to_activations)
                    with saved, _autocast(knobs.precision):
                        out = model(*args, **kwargs)
                        loss = loss_of(out)
                    del out
                    tracker.phase = "backward"
                    loss.backward()
                    del loss
                    modules.drop_hooks()
                tracker.phase = "optimizer"
                opt.step()
                for state in opt.state.values():
                    for v in state.values():
                        if isinstance(v, torch.Tensor):
                            tracker.add(v, "optimizer_state")
                opt.zero_grad(set_to_none=True)
            assert saved is not None
            return StepRecord(activations=saved.total, saved_parameters=saved.parameter_bytes,
                              saved_by_module=_strip_root(saved.by_module), peaks=dict(tracker.peaks),
                              timeline=tracker.timeline, phases=tracker.phases)
    finally:
        for h in handles:
            h.remove()
        for peak in tracker.peaks.values():
            peak.module = _strip_root_name(peak.module)
        tracker.close()


def run_inference(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], precision: str,
                  fake_mode: Any) -> Peak:
    """The peak of one eval forward under ``no_grad`` (weights, buffers, the input and what the forward makes)."""
    model.eval()
    modules = StepModules()
    tracker = LiveTracker(modules)
    try:
        with _failures(tracker), fake_mode, modules, tracker, torch.no_grad(), unpacked_sequences():
            for p in model.parameters():
                tracker.add(p, "parameters")
            for b in model.buffers():
                tracker.add(b, "buffers")
            for t in _outputs((args, kwargs)):
                tracker.add(t, "activations")
            tracker.recording = True
            tracker.phase = "inference"
            tracker.peaks["inference"] = Peak("inference", tracker.current, dict(tracker.totals), "")
            with _autocast(precision):
                out = model(*args, **kwargs)
            del out
        peak = tracker.peaks["inference"]
        peak.module = _strip_root_name(peak.module)
        return peak
    finally:
        tracker.close()


def _strip_root_name(name: str) -> str:
    """ModuleTracker names modules from the root's class ("ResNet.layer1.0"); a plan names them as
    ``named_modules`` does ("layer1.0", "" for the model)."""
    return name.partition(".")[2]


def _strip_root(by_module: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, v in by_module.items():
        key = _strip_root_name(k)
        out[key] = out.get(key, 0) + v
    return out
