"""The model's repeated blocks: what activation checkpointing wraps, FSDP shards one by one, and what is scaled.

A block is a module that sits in a ``ModuleList`` or ``nn.Sequential`` next to other modules of its own
type and parameter shapes: a transformer's layers, a ResNet stage's blocks. Those are the units
``torch.utils.checkpoint`` and FSDP2's ``fully_shard`` are applied to in practice. When several types
qualify (a ResNet's ``BasicBlock`` and its stages), the type whose instances hold the most parameters wins.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn

__all__ = ["Blocks", "repeated_blocks", "block_signature", "truncated", "worth_scaling", "SCALE_PARAMS",
           "SCALE_BLOCKS"]

#: A model is measured with two and three of its blocks and scaled (not run whole) above this many
#: parameters ...
SCALE_PARAMS = 1_000_000_000
#: ... when its longest run of identical blocks is at least this long.
SCALE_BLOCKS = 8


@dataclass(frozen=True)
class Blocks:
    """The repeated blocks of a model, and the longest run of identical ones in one container."""

    names: tuple[str, ...]  # every block, in module order
    type: str
    stack: str | None = None  # dotted name of the container holding the longest identical run
    stack_length: int = 0


def block_signature(m: nn.Module) -> tuple[object, ...]:
    """Type and parameter/buffer shapes of every submodule: equal signatures mean interchangeable blocks."""
    return tuple((name, type(sub).__name__,
                  tuple((k, tuple(p.shape), p.dtype) for k, p in sub._parameters.items() if p is not None),
                  tuple((k, tuple(b.shape)) for k, b in sub._buffers.items() if b is not None))
                 for name, sub in m.named_modules())


def repeated_blocks(model: nn.Module) -> Blocks | None:
    """The model's repeated blocks (None when nothing repeats)."""
    by_type: dict[str, list[tuple[str, nn.Module]]] = {}
    containers = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)):
            continue
        containers.append((name, m))
        for child_name, child in m.named_children():
            if next(child.children(), None) is None:
                continue  # a leaf layer (Conv2d, ReLU) is not a block
            full = f"{name}.{child_name}" if name else child_name
            by_type.setdefault(type(child).__name__, []).append((full, child))
    candidates = {t: items for t, items in by_type.items() if len(items) >= 2}
    if not candidates:
        return None

    def weight(items: list[tuple[str, nn.Module]]) -> int:
        return sum(p.numel() for _, m in items for p in m.parameters())

    kind = max(candidates, key=lambda t: (weight(candidates[t]), len(candidates[t])))
    names = tuple(n for n, _ in candidates[kind])
    # Nested blocks of one type (a block inside a block) would be counted twice: keep the outermost.
    names = tuple(n for n in names if not any(n.startswith(o + ".") for o in names if o != n))
    stack, length = None, 0
    for cname, c in containers:
        children = list(c.children())
        if len(children) >= 2 and all(type(x).__name__ == kind for x in children):
            sig = block_signature(children[0])
            if all(block_signature(x) == sig for x in children[1:]) and len(children) > length:
                stack, length = cname, len(children)
    return Blocks(names=names, type=kind, stack=stack, stack_length=length)


def worth_scaling(model: nn.Module, blocks: Blocks | None) -> bool:
    """True for a large model with a long run of identical blocks (a 405B decoder's 126 layers)."""
    if blocks is None or blocks.stack is None or blocks.stack_length < SCALE_BLOCKS:
        return False
    return sum(p.numel() for p in model.parameters()) > SCALE_PARAMS


@contextmanager
def truncated(model: nn.Module, blocks: Blocks | None, keep: int | None) -> Iterator[None]:
    """The stack of identical blocks cut to its first ``keep`` entries inside the block (put back after).

    Figures with all ``n`` blocks follow from runs with 2 and 3 of them: each further block adds what the
    third added (``v2 + (n - 2) * (v3 - v2)``), which holds for blocks of one signature.
    """
    if blocks is None or keep is None or blocks.stack is None:
        yield
        return
    container = model.get_submodule(blocks.stack)
    saved = dict(container._modules)
    container._modules = dict(itertools.islice(saved.items(), keep))  # type: ignore[assignment]
    try:
        yield
    finally:
        container._modules = saved  # type: ignore[assignment]
