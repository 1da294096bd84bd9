"""A small model's meta pass, run on zero-valued CPU stand-ins: the same figures, in milliseconds.

A meta-device forward runs many of torch's meta kernels in Python (``torch._refs``), whose helpers import
torch's symbolic-shapes machinery and sympy on first use: about half a second before a LeNet's first summary,
for a forward that takes milliseconds. A model that is cheap to run on the CPU skips that: its tensors are
copied as zeros on the CPU and the same traced forward runs there, where the kernels are C++. The pass never
reads a value, so it gives the meta pass's figures (``tests/test_summary_figures.py`` holds every zoo and
corpus model to them), and it stops and hands over to the meta pass as soon as anything could tell the two
apart:

* an op whose result depends on values (``.item()``, ``bool(t)``, ``nonzero``, ``unique``; ``tolist()`` and
  ``numpy()`` seen at the Python level), which meta cannot run either;
* an op that exists only on the CPU (a fused attention or mkldnn kernel): attention runs torch's math
  backend, which is what meta runs;
* more forward FLOPs than :data:`FLOPS` (a matmul or convolution is weighed before it runs), or more
  parameter or input elements than :data:`ELEMENTS`, so a large model never pays for real arithmetic;
* any error: the meta pass then runs and reports it as it always has.

The stand-ins are a copy: the caller's model, its weights, modes and hooks, and the global random
generator (dropout draws from it) are untouched.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

from torchsmith._summary._inputs import Namer, TracedInputs
from torchsmith._summary._inputs import _map_tensors as map_tensors
from torchsmith._summary._inputs import _split as split_data
from torchsmith._summary._trace import Trace, run_trace
from torchsmith._summary._trace import _tensors as tensors

__all__ = ["run_stand_in", "one_thread", "zero_copy", "zero_inputs", "value_guard", "ELEMENTS", "FLOPS"]

#: Parameters + buffers, and inputs (batch included), above which the meta pass runs instead (16 MB in fp32).
ELEMENTS = 4_000_000
#: Forward FLOPs past which the CPU pass stops (~0.1 s of arithmetic on two cores).
FLOPS = 500_000_000

#: Ops whose kernel is CPU-only: meta decomposes what they do into other ops, so the rows would differ.
_DEVICE_WORDS = ("_for_cpu", "mkldnn", "_native_multi_head_attention", "_transformer_encoder_layer_fwd")
_VALUE_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
#: Tensor methods that read values without dispatching an op.
_READS = {torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.item, torch.Tensor.__bool__,
          torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.__array__,
          torch.Tensor.data_ptr, torch.Tensor.untyped_storage}


class _Guard(TorchFunctionMode):
    """Trips (and raises) on anything that could make the CPU pass differ from the meta pass."""

    def __init__(self) -> None:
        super().__init__()
        self.tripped: str | None = None  # kept even if the model's code catches the exception

    def trip(self, why: str) -> None:
        self.tripped = self.tripped or why
        raise _Bail(why)

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in _READS:
            self.trip(f"reads values ({getattr(func, '__name__', func)})")
        return func(*args, **(kwargs or {}))

    def before_op(self, func: Any, args: Any, so_far: Any) -> None:
        """Called by the trace before each aten op runs."""
        name = func._overloadpacket.__name__
        if name == "_local_scalar_dense" or any(tag in func.tags for tag in _VALUE_TAGS):
            self.trip(f"aten.{name} depends on values")
        if any(word in name for word in _DEVICE_WORDS):
            self.trip(f"aten.{name} runs only on the CPU")
        try:
            weight = _weigh(name, args)
        except (TypeError, ValueError, IndexError):  # arguments laid out another way: do not guess
            self.trip(f"cannot weigh aten.{name}")
        if so_far + weight > FLOPS:
            self.trip(f"more than {FLOPS:,} forward FLOPs")


class _Bail(Exception):
    """The CPU pass cannot stand in for the meta pass here."""


def _weigh(name: str, args: Any) -> int:
    """FLOPs of the matmuls and convolutions (the only ops that can be large) from their input shapes."""
    shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in args]
    if name == "mm":
        (m, k), (_, n) = shapes[0], shapes[1]
        return 2 * m * k * n
    if name == "addmm":
        (m, k), (_, n) = shapes[1], shapes[2]
        return 2 * m * k * n
    if name in ("bmm", "baddbmm"):
        a, b = shapes[-2], shapes[-1]
        return 2 * a[0] * a[1] * a[2] * b[2]
    if name == "convolution":
        x, w, _bias, stride, padding, dilation, transposed = shapes[:7]
        spatial = x[2:] if transposed else [
            (i + 2 * p - d * (k - 1) - 1) // s + 1
            for i, k, s, p, d in zip(x[2:], w[2:], stride, padding, dilation)]
        return 2 * x[0] * math.prod(w) * math.prod(spatial)
    return 0


def zero_copy(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module | None:
    """A copy of ``model`` whose tensors are zeros on the CPU (floating ones in ``dtype`` if given); None when
    it is too big or not plainly copyable."""
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    if sum(t.numel() for t in tensors) > ELEMENTS:
        return None
    memo: dict[int, Any] = {}
    for module in model.modules():
        tensors += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        if id(t) in memo:
            continue
        if t.device.type not in ("cpu", "meta") or not t.is_contiguous() or t.is_sparse or t.is_quantized:
            return None
        z = torch.zeros(t.shape, dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype)
        memo[id(t)] = nn.Parameter(z, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else z
    try:
        return copy.deepcopy(model, memo)
    except Exception:  # an attribute deepcopy cannot copy (a lock): the meta pass says so
        return None


def zero_inputs(spec: TracedInputs, batch: int | None = None,
                dtype: torch.dtype | None = None) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """The inputs the meta pass would get (their shapes and dtypes, the given data's structure) as zeros, at
    ``batch`` if given, floating ones in ``dtype`` if given; None when symbolic or too big."""
    def zero(shape: Any, dt: torch.dtype) -> torch.Tensor:
        return torch.zeros(shape, dtype=dtype if dtype is not None and dt.is_floating_point else dt)

    if spec.symbolic and batch is None:
        return None
    if spec.data is not None:
        args, kwargs = split_data(map_tensors(spec.data, lambda t: zero(t.shape, t.dtype)))
    else:
        sizes = [s if batch is None else (batch, *s[1:]) for s in spec.sizes]
        if any(not isinstance(d, int) for s in sizes for d in s):
            return None
        args, kwargs = tuple(zero(s, dt) for s, dt in zip(sizes, spec.dtypes)), {}
    if sum(t.numel() for t in tensors((args, kwargs))) > ELEMENTS:
        return None
    return args, kwargs


def run_stand_in(model: nn.Module, spec: TracedInputs, mode: str, replay: bool) -> Trace | None:
    """The meta pass's trace, run on a zero-valued CPU copy; None when the meta pass must run instead."""
    inputs = zero_inputs(spec)
    if inputs is None:
        return None
    target = zero_copy(model)
    if target is None:
        return None
    target.train(mode == "train")
    guard = _Guard()
    with one_thread(), torch.random.fork_rng(devices=[]), sdpa_kernel(SDPBackend.MATH), guard:
        trace = run_trace(target, inputs[0], inputs[1], Namer(), replay=replay, before_op=guard.before_op)
    if guard.tripped is not None or trace.error is not None:
        return None
    trace.stand_in = True
    return trace


@contextmanager
def value_guard() -> Iterator[_Guard]:
    """For a forward on stand-ins outside the trace: ``tripped`` says when it read a value."""
    with one_thread(), torch.random.fork_rng(devices=[]), _Guard() as guard:
        yield guard


@contextmanager
def one_thread() -> Iterator[None]:
    """Small kernels on one thread: on a busy machine a second one spins at every barrier (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
