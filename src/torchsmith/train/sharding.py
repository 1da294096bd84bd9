"""How the model is spread over ranks: DDP replicas or FSDP2 shards, activation checkpointing, gradient sync.

``--strategy fsdp`` applies ``torch.distributed.fsdp.fully_shard`` to each repeated block (the children of a
``ModuleList`` that are all of one type: a GPT's ``h``, a transformers decoder's ``layers``) and then to the
root, so each rank holds ``1 / world_size`` of every parameter as a ``DTensor`` shard and gathers one block at
a time. ``--amp bf16`` becomes FSDP's ``MixedPrecisionPolicy`` (bf16 compute, fp32 gradient reduction and
master weights). ``auto`` picks DDP when the weights, gradients and AdamW state fit one device with room for
activations, else FSDP, and says which and why.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from torchsmith._format import format_bytes
from torchsmith.errors import ConfigError

__all__ = ["repeated_blocks", "choose_strategy", "shard", "enable_checkpointing", "grad_sync", "meta_template",
           "is_sharded",
           "shard_optimizer_state"]


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks: children of every ``ModuleList``/``Sequential`` of 2+ modules all of one type."""
    found: list[nn.Module] = []
    seen: set[int] = set()
    for m in model.modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) >= 2:
            kids = list(m.children())
            if len({type(k) for k in kids}) == 1 and any(True for _ in kids[0].parameters()):
                if not any(id(k) in seen for k in kids):
                    found.extend(kids)
                    seen.update(id(k) for k in kids)
    return found


def _state_bytes(model: nn.Module, optimizer: str) -> int:
    """Weights + gradients + optimizer state (AdamW: two fp32 moments; SGD: one momentum buffer)."""
    total = 0
    for p in model.parameters():
        n = p.numel() * p.element_size()
        total += 2 * n + (p.numel() * 4 * (2 if optimizer == "adamw" else 1) if p.requires_grad else 0)
    return total


def _device_bytes(device: torch.device, local_world: int) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[1]), f"{torch.cuda.get_device_name(device)}"
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62, "host memory (unknown size)"
    return int(avail) // max(local_world, 1), f"available host memory / {local_world} ranks"


def choose_strategy(model: nn.Module, asked: str, world_size: int, device: torch.device, optimizer: str) -> tuple[str,
                                                                                                              str]:
    """(``ddp`` | ``fsdp`` | ``single``, why) for this run."""
    if world_size <= 1:
        why = "one process" + (f" (--strategy {asked} needs torchrun --nproc-per-node N)" if asked != "auto" else "")
        return "single", why
    if asked != "auto":
        return asked, f"--strategy {asked}"
    need = _state_bytes(model, optimizer)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size)) if device.type == "cpu" else 1
    have, what = _device_bytes(device, local)
    # torchsmith's memory plan (its own issue) would also count activations; until it exists, the state alone.
    source = "weights + gradients + optimizer state"
    fits = need * 1.5 <= have  # a third more for activations and the allocator
    choice = "ddp" if fits else "fsdp"
    return choice, (f"--strategy auto: {source} {format_bytes(need)} {'fits' if fits else 'does not fit'} "
                    f"{format_bytes(have)} ({what}) with room for activations")


def enable_checkpointing(model: nn.Module) -> list[nn.Module]:
    """Recompute each repeated block's activations in backward instead of keeping them; the blocks wrapped."""
    blocks = repeated_blocks(model)
    if not blocks:
        raise ConfigError(f"--checkpointing recomputes repeated blocks, but {type(model).__name__} has none (no "
                          f"ModuleList of identical blocks); train without --checkpointing")
    for block in blocks:
        inner = block.forward

        def run(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = run  # type: ignore[method-assign]  # an instance attribute; removed by disable
    return blocks


def disable_checkpointing(blocks: list[nn.Module]) -> None:
    for block in blocks:
        block.__dict__.pop("forward", None)


def meta_template(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every tensor on the meta device (no memory): the layout to consolidate into."""
    memo: dict[int, Any] = {}
    for t in (*model.parameters(), *model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def shard(model: nn.Module, *, bf16: bool) -> int:
    """FSDP2 ``fully_shard`` on each repeated block and on the root (in place); the number of blocks sharded."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else \
        MixedPrecisionPolicy()
    blocks = repeated_blocks(model)
    for block in blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return len(blocks)


def shard_optimizer_state(optimizer: torch.optim.Optimizer) -> int:
    """Split a whole optimizer state (restored from a one-process checkpoint) like its sharded parameters.

    ``optimizer.load_state_dict`` keeps each saved moment a plain full tensor beside a ``DTensor`` parameter;
    every rank read the same file, so each keeps its own part (``distribute_tensor`` with no source rank: no
    communication). Returns the number of tensors split.
    """
    from torch.distributed.tensor import DTensor, distribute_tensor

    split = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not isinstance(p, DTensor) or not state:
                continue
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and not isinstance(value, DTensor) and value.shape == p.shape:
                    state[key] = distribute_tensor(value.to(p.device), p.device_mesh, p.placements,
                                                   src_data_rank=None)
                    split += 1
    return split


def is_sharded(model: nn.Module) -> bool:
    return any(type(p).__name__ == "DTensor" for p in model.parameters())


@contextlib.contextmanager
def grad_sync(net: nn.Module, sync: bool) -> Iterator[None]:
    """Gradients are reduced over ranks only when ``sync`` (the last microbatch of an accumulated step)."""
    if sync:
        yield
    elif callable(set_sync := getattr(net, "set_requires_gradient_sync", None)):  # FSDP2: no reduce-scatter
        set_sync(False)  # the unsharded gradients are kept until the last microbatch
        try:
            yield
        finally:
            set_sync(True)
    elif isinstance(net, nn.parallel.DistributedDataParallel):
        with net.no_sync():
            yield
    else:
        yield
