"""The fallback for a model fake tensors cannot run: the same steady-state step on real CPU tensors.

Fake tensors cannot run an op whose output depends on values (``.item()`` on a mask's length in Wav2Vec2
and DETR, ``nonzero`` in a Switch Transformer's router), an op whose meta kernel is narrower than its CPU one
(the grouped matmul of transformers' MoE experts wants bf16 on meta), or code that fake tensors refuse (a
``.to()`` swapping a fake weight). A small model with real weights (under
:data:`torchsmith._summary.REAL_FALLBACK_BYTES`, as the summary's own real fallback) is then measured on a
copy of it with real tensors, by the same :class:`~torchsmith._memory._tracker.LiveTracker`: every storage
counted as it is on fake tensors, so the plan's categories, ``by_module``, ``when`` and the peak's formula in
the batch come out the same way, and are exact for a real step. The user's model is not touched.

A real step runs on values: inputs are seeded (floats from ``randn``, token ids below the smallest
embedding's size), so what depends on them (an MoE router's choice of experts) is what those inputs give.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from torchsmith._summary import REAL_FALLBACK_BYTES
from torchsmith._summary._inputs import TracedInputs
from torchsmith._summary._saved import fake_inputs
from torchsmith._summary._stand_in import one_thread  # small kernels on one thread (see there)
from torchsmith.registry import ARCH_ATTR, create_model

__all__ = ["real_copy", "real_inputs", "too_big_to_run", "recorded_builder", "one_thread"]


def too_big_to_run(model: nn.Module) -> str | None:
    """Why ``model`` is not run on real CPU tensors (None: it may be)."""
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    if nbytes >= REAL_FALLBACK_BYTES:
        return f"its {nbytes / 2**30:.1f} GiB of weights are too many to run a real step on the CPU"
    if any(t.device.type not in ("cpu", "meta") for t in tensors):
        return "its weights are not on the CPU"
    return None


def recorded_builder(model: nn.Module) -> Callable[[], nn.Module] | None:
    """Builds ``model`` again with real weights from the record ``create_model`` put on it (a model built on
    meta by name, as ``torchsmith show NAME --memory`` builds it); None without one."""
    arch = getattr(model, ARCH_ATTR, None)
    if not (isinstance(arch, Mapping) and isinstance(arch.get("name"), str)):
        return None
    name, kwargs = arch["name"], dict(arch.get("kwargs") or {})
    return lambda: create_model(name, **kwargs)


def real_copy(model: nn.Module, rebuild: Callable[[], nn.Module] | None, dtype: torch.dtype | None) -> nn.Module | None:
    """A copy of ``model`` with real CPU weights (floating ones in ``dtype`` if given); None when there is none.

    A model on meta is rebuilt with real weights by ``rebuild`` (a model given by name); without it, None.
    """
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        if rebuild is None:
            return None
        target = rebuild()
    else:
        target = copy.deepcopy(model)
    if dtype is not None:
        target.to(dtype)  # floating parameters and buffers only, as the fake copy converts them
    return target


def real_inputs(spec: TracedInputs, batch: int | None, model: nn.Module,
                weights: torch.dtype) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The plan's inputs at ``batch`` as real, seeded CPU tensors (given data: a copy of it)."""
    def in_weights(t: torch.Tensor) -> torch.Tensor:
        return t.to(weights) if t.is_floating_point() and weights != torch.float32 else t

    if spec.data is not None and not any(isinstance(t, torch.Tensor) and t.is_meta
                                         for t in torch.utils._pytree.tree_leaves(spec.data)):
        args, kwargs = spec.real_args("cpu")
        return tree_map(_if_tensor(in_weights), args), tree_map(_if_tensor(in_weights), kwargs)
    layout = fake_inputs(spec, batch, nullcontext(), weights)  # type: ignore[arg-type]  # empty CPU tensors
    gen = torch.Generator().manual_seed(0)
    vocab = min((m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)), default=1)

    def fill(t: torch.Tensor) -> torch.Tensor:
        if t.is_floating_point():
            return torch.randn(t.shape, generator=gen).to(t.dtype)
        if t.dtype == torch.bool:
            return torch.ones(t.shape, dtype=torch.bool)
        return torch.randint(0, max(vocab, 1), t.shape, generator=gen).to(t.dtype)  # valid token ids

    return tree_map(_if_tensor(fill), layout[0]), tree_map(_if_tensor(fill), layout[1])


def _if_tensor(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[Any], Any]:
    return lambda x: fn(x) if isinstance(x, torch.Tensor) else x
