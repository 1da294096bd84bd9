"""Where a fake-tensor (or meta) step must answer as a real one would: two known gaps, one home.

Both the summary's activations (:mod:`torchsmith._summary._saved`) and the memory plan
(:mod:`torchsmith._memory`) run a train-mode forward on fake tensors and count what autograd saves; a
real CPU step differs from that forward in two places, and both passes close them the same way here:

* :func:`run_op`: two kernels whose meta version is not the CPU's. oneDNN's ``mkldnn_rnn_layer``
  (``nn.LSTM`` on the CPU) returns a workspace that autograd saves for backward; its meta kernel returns an
  empty one. Its real size is asked of oneDNN once per shape, and a fake workspace of that size replaces
  the empty one. The grouped matmul of transformers' MoE experts (``aten._grouped_mm``) runs in fp32 on the
  CPU, but its meta kernel copies the CUDA checks and wants bf16: the output's shape is asked of it in bf16
  and given in the inputs' dtype. :class:`CpuKernels` applies it to every op run under it.
* :func:`unpacked_sequences`: transformers' mask code reads the position ids' values to tell whether
  sequences are packed in a row; on fake or meta ids it cannot and builds an explicit mask (and repeats the
  key/value heads). The synthetic inputs never pack sequences, so the answer is the real one: None.

Imports only torch: it sits with the small shared building blocks, below every pass that runs a model.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

__all__ = ["run_op", "CpuKernels", "unpacked_sequences"]

_MKLDNN_RNN = torch.ops.aten.mkldnn_rnn_layer.default
_GROUPED_MM = torch.ops.aten._grouped_mm.default
_WORKSPACE_BYTES: dict[tuple[Any, ...], int] = {}  # shapes and options -> oneDNN's workspace bytes (a few entries)


def run_op(func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """``func(*args, **kwargs)``, as the CPU kernel would give it where fake tensors' meta kernel differs
    (see the module docstring); any other op, or real tensors, run as they are."""
    if func is _GROUPED_MM and isinstance(args[0], FakeTensor) and args[0].dtype != torch.bfloat16:
        return _grouped_mm(args, kwargs)
    out = func(*args, **kwargs)
    if func is _MKLDNN_RNN and isinstance(out[3], FakeTensor):
        return (*out[:3], _sized_workspace(args, kwargs, out[3]))
    return out


class CpuKernels(TorchDispatchMode):
    """:func:`run_op` for every op run under it (enter it inside the ``FakeTensorMode``)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # nothing is compiled here; avoids importing torch._dynamo on the first op

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return run_op(func, args, kwargs or {})


def _grouped_mm(args: Any, kwargs: dict[str, Any]) -> torch.Tensor:
    """``aten._grouped_mm`` of fp32 (or fp16) fake inputs: its meta kernel accepts bf16 only (and an
    ``out_dtype`` of bf16 only), so the output's shape and strides are asked of it in bf16 and an empty
    tensor of those in the CPU kernel's dtype (the inputs', or ``out_dtype``) is returned."""
    a, b, *rest = args
    out_dtype = kwargs.get("out_dtype", rest[2] if len(rest) > 2 else None) or a.dtype
    rest = rest[:2]  # offs, bias
    kw = {k: v for k, v in kwargs.items() if k != "out_dtype"}
    shaped = _GROUPED_MM(a.to(torch.bfloat16), b.to(torch.bfloat16), *rest, **kw)
    return torch.empty_strided(shaped.shape, shaped.stride(), dtype=out_dtype, device=shaped.device)


def _sized_workspace(args: Any, kwargs: dict[str, Any], fake: torch.Tensor) -> torch.Tensor:
    """An ``nn.LSTM`` on the CPU runs oneDNN's ``mkldnn_rnn_layer``, which returns a workspace that autograd
    saves for backward (204,800 bytes for 24 steps of 4 x 32 units). Its meta kernel returns an empty one,
    so on fake tensors the LSTM's activations would be short by it. Its size is oneDNN's own (page-aligned
    buffers for gates and states), so it is asked of oneDNN: the kernel runs once on real zeros of the same
    shapes (one layer's input and weights; remembered per shape), and a fake workspace of that size replaces
    the empty one."""
    key = tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else repr(a) for a in args) + tuple(
        (k, repr(v)) for k, v in sorted(kwargs.items()))
    if key not in _WORKSPACE_BYTES:
        with _disable_current_modes():
            real = [torch.zeros(a.shape, dtype=a.dtype) if isinstance(a, torch.Tensor) else a for a in args]
            workspace = _MKLDNN_RNN(*real, **kwargs)[3]  # None out of training: nothing to save
            _WORKSPACE_BYTES[key] = 0 if workspace is None else int(workspace.untyped_storage().nbytes())
    n = _WORKSPACE_BYTES[key]
    if n <= fake.untyped_storage().nbytes():
        return fake
    return torch.empty(n // fake.element_size(), dtype=fake.dtype, device=fake.device)


@contextmanager
def unpacked_sequences() -> Iterator[None]:
    """transformers' mask code as it runs on real token ids: one sequence per row, so no mask where none is needed.

    ``transformers.masking_utils.find_packed_sequence_indices`` reads the position ids' values to tell whether
    several sequences are packed in a row; on a fake or meta tensor it cannot, assumes they may be, and builds
    an explicit attention mask. A real run with the default positions finds none and passes ``is_causal`` to
    SDPA with the key/value heads unrepeated (``enable_gqa``); with the mask, each layer saves the mask and the
    repeated keys and values (+6.6% activations on a 4-layer Llama). The synthetic inputs of a plan or a
    summary never pack sequences, so on fake or meta position ids the answer is the real one: None. Real
    position ids are asked as before; the function is put back on exit. Nothing is imported: a model that is
    not transformers' is untouched.
    """
    masking = sys.modules.get("transformers.masking_utils")
    find = getattr(masking, "find_packed_sequence_indices", None)
    if find is None:
        yield
        return

    def find_on_real(position_ids: torch.Tensor) -> Any:
        return None if isinstance(position_ids, FakeTensor) or position_ids.is_meta else find(position_ids)

    masking.find_packed_sequence_indices = find_on_real  # type: ignore[union-attr]
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = find  # type: ignore[union-attr]
