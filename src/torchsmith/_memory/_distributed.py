"""Per-device figures under DDP and FSDP2, worked out from the single-device step's phases.

DDP keeps a full replica and, with ``gradient_as_bucket_view=False`` (its default), gradient buckets
that hold one more copy of every gradient: + the gradients' bytes on every device, at every moment.

FSDP2 (``fully_shard`` on every repeated block and on the root) keeps 1/world_size of every parameter,
gradient and optimizer state. In flight, per phase: the root's own parameters unsharded (gathered at the
start of the forward, kept through the backward); in the forward two blocks' parameters unsharded (the one
running and the one prefetched); in the backward the running block's parameters and its unsharded
gradients. The optimizer's step works on shards only. These are counted analytically from the per-phase
breakdown, not run (a run needs a process group). Measured under torchrun with 2 gloo processes (each
rank's live storages at their current size: FSDP2 frees an unsharded parameter by resizing its storage to
0), hand-written GPTs of 2 to 6 blocks whose activations outweigh a block's weights plan within 1.3% of
each rank's peak (tests/test_memory_fsdp.py). A gap: where one block's weights outweigh the activations
(6 blocks of width 96 at batch 1), the backward's peak comes late, with the next block's all-gather and
the reduce-scatter buffers in flight, and the plan is 15% low. Not modelled: FSDP's
``MixedPrecisionPolicy`` (so an FSDP plan at a mixed precision is refused: autocast's figure would count a
bf16 copy of every weight, which FSDP2 does not hold), CPU offload, and the padding of shards to a multiple
of world_size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from torchsmith._format import human_bytes
from torchsmith._memory._tracker import Peak
from torchsmith._summary._blocks import Blocks

__all__ = ["Distributed", "apply_strategy"]


@dataclass
class Distributed:
    peak: Peak  # the per-device peak, its categories adjusted
    lines: list[tuple[float, float]]
    parameters: int
    gradients: int
    optimizer_state: int
    description: str = ""


def _bytes(m: nn.Module, weights: torch.dtype, grads: bool = False) -> int:
    size = torch.empty((), dtype=weights).element_size()
    return sum(p.numel() * (size if p.is_floating_point() else p.element_size()) for p in m.parameters()
               if p.requires_grad or not grads)


def apply_strategy(peaks: dict[str, Peak], lines: list[tuple[float, float]], model: nn.Module,
                   blocks: Blocks | None, strategy: str | None, world_size: int, weights: torch.dtype,
                   param_bytes: int, grad_bytes: int, opt_state: int, phase: str | None = None) -> Distributed:
    """The per-device peak (of ``phase``, or the highest) under ``strategy``; see the module docstring."""
    if strategy is None:
        best = peaks[phase] if phase else max(peaks.values(), key=lambda p: p.bytes)
        return Distributed(best, lines, param_bytes, grad_bytes, opt_state)
    if strategy == "ddp":
        adjusted = {k: Peak(p.phase, p.bytes + grad_bytes, {**p.by_category, "ddp_buckets": grad_bytes}, p.module)
                    for k, p in peaks.items()}
        best = adjusted[phase] if phase else max(adjusted.values(), key=lambda p: p.bytes)
        return Distributed(best, [(a + grad_bytes, b) for a, b in lines], param_bytes, grad_bytes, opt_state,
                           f"DDP on {world_size} devices: + {human_bytes(grad_bytes)} of gradient buckets (one more "
                           "copy of the gradients, gradient_as_bucket_view=False as by default); batch is per device")
    modules = dict(model.named_modules())
    block_params = [_bytes(modules[n], weights) for n in (blocks.names if blocks else ())]
    block_grads = [_bytes(modules[n], weights, grads=True) for n in (blocks.names if blocks else ())]
    largest = max(block_params, default=0)
    root = param_bytes - sum(block_params)
    keep = 1 / world_size
    adjusted = {}
    deltas = {}
    for k, p in peaks.items():
        cats = dict(p.by_category)
        sharded = 0
        for c in ("parameters", "gradients", "optimizer_state"):
            before = cats.get(c, 0)
            cats[c] = int(round(before * keep))
            sharded += before - cats[c]
        # forward: the block running and the one prefetched; backward: the block running and its unsharded
        # gradients (measured: the prefetch and the reduce-scatter overlap the freeing of the activations)
        in_flight = {"optimizer": 0, "backward": root + largest + max(block_grads, default=0)}.get(
            p.phase, root + 2 * largest)
        cats["fsdp_in_flight"] = in_flight
        deltas[k] = in_flight - sharded
        adjusted[k] = Peak(p.phase, p.bytes + deltas[k], cats, p.module)
    best = adjusted[phase] if phase else max(adjusted.values(), key=lambda p: p.bytes)
    delta = deltas[best.phase]
    return Distributed(
        best, [(a + delta, b) for a, b in lines], int(round(param_bytes * keep)), int(round(grad_bytes * keep)),
        int(round(opt_state * keep)),
        f"FSDP2 on {world_size} devices, fully_shard per block ({len(block_params)} blocks) and on the root: "
        f"parameters, gradients and optimizer state / {world_size}; in flight {human_bytes(root)} of the root's "
        f"parameters and 2 x {human_bytes(largest)} (the block running and the one prefetched), in backward also "
        f"{human_bytes(max(block_grads, default=0))} of one block's unsharded gradients (analytic); "
        "batch is per device")
