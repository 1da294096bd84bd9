"""The bytes autograd saves for backward, counted once per storage: the exact activation memory.

A forward in train mode with grad enabled, under ``torch.autograd.graph.saved_tensors_hooks``: every tensor
an op saves for its backward passes through the pack hook. Counted once per storage (a view saves
nothing new), this is what a training step holds at the end of its forward, on real tensors and the same
on meta or fake ones, whose storages have the real byte size (where a fake forward would differ from a real
one, :mod:`torchsmith._fake` closes the gap for both). The summary's ``memory.activations``
(:func:`training_activations`) and the memory plan (:mod:`torchsmith._memory`) both count with
:class:`SavedStorages`, on fake CPU tensors (meta kernels may pick another attention backend than CPU).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import weakref
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.overrides import TorchFunctionMode
from torch.utils.module_tracker import ModuleTracker

from torchsmith._fake import CpuKernels, unpacked_sequences
from torchsmith._summary._blocks import repeated_blocks, truncated, worth_scaling
from torchsmith._summary._inputs import TracedInputs
from torchsmith._summary._nodynamo import dynamo_free
from torchsmith._summary._stand_in import value_guard, zero_copy, zero_inputs

__all__ = ["SavedStorages", "storage_of", "innermost_module", "training_activations", "fake_copy", "fake_inputs",
           "affine_text"]


def storage_of(t: torch.Tensor) -> Any:
    """The untyped storage behind ``t``, or None for a tensor without one (sparse, nested)."""
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None


class SavedStorages:
    """Every tensor autograd saves for backward while active, counted once per storage.

    ``total`` is the bytes of the unique storages saved; ``parameter_bytes`` the part of it that is
    the storage of a parameter or buffer (a Linear saves its weight); ``by_module`` the bytes first
    saved while each module ran. Only weak references are kept, so counting frees nothing later than
    PyTorch would.
    """

    def __init__(self, owned: set[int] | None = None, modules: ModuleTracker | None = None,
                 on_pack: Any = None) -> None:
        self.owned = owned or set()  # id() of parameter and buffer storages
        self.modules = modules
        self.on_pack = on_pack
        self.total = 0
        self.parameter_bytes = 0
        self.by_module: dict[str, int] = {}
        self._seen: dict[int, Any] = {}  # id(storage) -> weakref to it
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        st = storage_of(t)
        if st is not None:
            ref = self._seen.get(id(st))
            if ref is None or ref() is not st:  # new, or a freed storage's id reused
                self._seen[id(st)] = weakref.ref(st)
                n = st.nbytes()
                self.total += n
                if id(st) in self.owned:
                    self.parameter_bytes += n
                else:
                    where = innermost_module(self.modules)
                    self.by_module[where] = self.by_module.get(where, 0) + n
        if self.on_pack is not None:
            self.on_pack(t)
        return t

    def __enter__(self) -> SavedStorages:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


def innermost_module(modules: ModuleTracker | None) -> str:
    """The dotted name (from the root's class) of the innermost module running, "" outside any."""
    if modules is None:
        return ""
    parents = [p for p in modules.parents if p != "Global"]
    return max(parents, key=len) if parents else ""


def training_activations(model: nn.Module, spec: TracedInputs, dtype: torch.dtype | None = None,
                         cpu: bool = False) -> int | str:
    """Bytes a train-mode forward of ``model`` saves for backward at ``spec``'s size, on fake tensors.

    ``dtype`` converts the floating-point weights and inputs (pure low-precision training). A named batch
    gives a formula ``"a*B + c"`` from two batch sizes; a large model with a long run of identical blocks
    is run with two and three of them and scaled (see :func:`truncated`). Raises what the forward raises.
    """
    blocks = repeated_blocks(model)
    scale = worth_scaling(model, blocks)

    def at(batch: int | None) -> int:
        if not scale:
            return _forward_saved(model, spec, batch, dtype, cpu)
        assert blocks is not None
        with truncated(model, blocks, 2):
            two = _forward_saved(model, spec, batch, dtype)
        with truncated(model, blocks, 3):
            three = _forward_saved(model, spec, batch, dtype)
        return two + (blocks.stack_length - 2) * (three - two)

    if spec.data is not None:
        return at(None)
    batch = spec.sizes[0][0]
    if isinstance(batch, int):
        return at(batch)
    name, hint = batch
    v1, v2 = at(hint), at(2 * hint)
    slope = (v2 - v1) / hint
    return affine_text(v1 - slope * hint, slope, name)


def _forward_saved(model: nn.Module, spec: TracedInputs, batch: int | None, dtype: torch.dtype | None,
                   cpu: bool = False) -> int:
    weights = dtype if dtype is not None and dtype.is_floating_point else torch.float32
    if cpu:  # a small model the summary ran on CPU stand-ins: the bytes fake CPU tensors give, without dynamo
        saved_bytes = _cpu_saved(model, spec, batch, weights)
        if saved_bytes is not None:
            return saved_bytes
    saved_bytes = _meta_saved(model, spec, batch, weights)
    if saved_bytes is not None:
        return saved_bytes
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake = fake_copy(model, fake_mode, dtype=weights if weights != torch.float32 else None)
    args, kwargs = fake_inputs(spec, batch, fake_mode, weights)
    fake.train()
    # As the memory plan's step runs (torchsmith._fake): oneDNN's LSTM workspace at its real size, the MoE
    # grouped matmul in fp32, and transformers' packed-sequence probe answered as on real token ids.
    with fake_mode, CpuKernels(), unpacked_sequences(), torch.enable_grad(), SavedStorages() as saved:
        out = fake(*args, **kwargs)
    del out
    return int(saved.total)


class _CpuParity(TorchFunctionMode):
    """Trips (and raises) on whatever could make a meta forward save other tensors than a fake CPU one.

    Below autograd, fake tensors run the very meta kernels a meta forward runs; the two part only where a
    composite op or the model's own code picks a path by device: attention (the CPU's flash kernel saves a
    log-sum-exp where meta's math path saves the weights), the recurrent layers (mkldnn on the CPU), and code
    that reads a tensor's device. Each is seen at the Python level, before it runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tripped: str | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _DEVICE_READS or any(word in getattr(func, "__name__", "") for word in _DEVICE_PATHS):
            self.tripped = self.tripped or getattr(func, "__name__", str(func))
            raise _NotOnMeta(self.tripped)
        return func(*args, **(kwargs or {}))


class _NotOnMeta(Exception):
    """The meta forward cannot stand in for the fake CPU one here."""


#: Tensor properties a forward reads to pick a path by device, and words in the names of functions that do so.
_DEVICE_READS = {getattr(torch.Tensor, name).__get__
                 for name in ("device", "is_cpu", "is_cuda", "is_meta", "is_xpu", "is_mps", "is_mkldnn")
                 if hasattr(torch.Tensor, name)}
_DEVICE_PATHS = ("attention", "lstm", "gru", "rnn", "multi_head", "transformer", "mkldnn", "cudnn", "miopen",
                 "_for_cpu", "get_device")


def _meta_saved(model: nn.Module, spec: TracedInputs, batch: int | None, weights: torch.dtype) -> int | None:
    """What a train-mode forward saves, on meta tensors without dynamo; None where fake CPU tensors must run.

    torch's fake tensors import ``torch._dynamo`` and sympy (seconds, the first time); a meta forward under
    :func:`dynamo_free` gives the same storages wherever :class:`_CpuParity` lets it finish.
    """
    convert = None if weights == torch.float32 else weights
    try:
        target = _empty_copy(model, nullcontext(), "meta", convert)
        args, kwargs = _empty_inputs(spec, batch, nullcontext(), "meta", weights)
    except Exception:  # an attribute deepcopy cannot copy: the fake pass says what is wrong
        return None
    target.train()
    guard = _CpuParity()
    try:
        with torch.random.fork_rng(devices=[]), dynamo_free(), guard, unpacked_sequences(), torch.enable_grad(), \
                SavedStorages() as saved:
            out = target(*args, **kwargs)
        del out
    except Exception:  # meta cannot run it (a value read) or must not (a device-picked path): fake tensors run
        return None
    return None if guard.tripped is not None else int(saved.total)


def _cpu_saved(model: nn.Module, spec: TracedInputs, batch: int | None, weights: torch.dtype) -> int | None:
    """What a train-mode forward saves, on zero-valued CPU stand-ins (_stand_in.py); None if it read a value."""
    target = zero_copy(model, None if weights == torch.float32 else weights)
    inputs = zero_inputs(spec, batch, None if weights == torch.float32 else weights)
    if target is None or inputs is None:
        return None
    target.train()
    try:
        with value_guard() as guard, torch.enable_grad(), SavedStorages() as saved:
            out = target(*inputs[0], **inputs[1])
        del out
    except Exception:  # the fake-tensor pass runs and reports it
        return None
    return None if guard.tripped is not None else int(saved.total)


def affine_text(const: float, slope: float, symbol: str) -> int | str:
    """``"57232*B + 247080"`` (the summary's way of writing a formula); an int when nothing grows with B."""
    c, s = int(round(const)), int(round(slope))
    if s == 0:
        return c
    term = f"{s}*{symbol}" if s != 1 else symbol
    return term if c == 0 else f"{term} + {c}" if c > 0 else f"{term} - {-c}"


def fake_copy(model: nn.Module, fake_mode: Any, dtype: torch.dtype | None = None) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are fake CPU tensors (ties kept).

    ``dtype`` converts the floating-point ones (pure bf16 training). The original, on meta or real,
    is not touched.
    """
    return _empty_copy(model, fake_mode, "cpu", dtype)


def _empty_copy(model: nn.Module, context: Any, device: str, dtype: torch.dtype | None) -> nn.Module:
    """A deep copy of ``model`` whose tensors are empty ones made on ``device`` under ``context`` (ties kept)."""
    memo: dict[int, Any] = {}
    with context:
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t is None or id(t) in memo:
                continue
            dt = dtype if dtype is not None and t.is_floating_point() else t.dtype
            f = torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=dt, device=device)
            memo[id(t)] = nn.Parameter(f, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else f
        for module in model.modules():
            for value in vars(module).values():
                if isinstance(value, torch.Tensor) and id(value) not in memo:
                    memo[id(value)] = torch.empty_strided(tuple(value.shape), tuple(value.stride()),
                                                          dtype=value.dtype, device=device)
    return copy.deepcopy(model, memo)


def fake_inputs(spec: TracedInputs, batch: int | None, fake_mode: FakeTensorMode,
                 weights: torch.dtype) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The inputs as fake CPU tensors at ``batch``; floating inputs in the weights' dtype (pure bf16)."""
    return _empty_inputs(spec, batch, fake_mode, "cpu", weights)


def _empty_inputs(spec: TracedInputs, batch: int | None, context: Any, device: str,
                  weights: torch.dtype) -> tuple[tuple[Any, ...], dict[str, Any]]:
    def empty(t: torch.Tensor) -> torch.Tensor:
        dt = weights if t.is_floating_point() and weights != torch.float32 else t.dtype
        with context:
            return torch.empty_strided(tuple(t.shape), tuple(t.stride()), dtype=dt, device=device)

    if spec.data is None:
        assert batch is not None
        sized = dataclasses.replace(spec, sizes=[(batch, *s[1:]) for s in spec.sizes])
        args, kwargs = sized.meta_args()
    else:
        args, kwargs = spec.meta_args()
    return _map(args, empty), _map(kwargs, empty)


def _map(obj: Any, fn: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(_map(o, fn) for o in obj)
    if isinstance(obj, list):
        return [_map(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: _map(v, fn) for k, v in obj.items()}
    return obj
