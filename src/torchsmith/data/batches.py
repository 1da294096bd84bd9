"""Seeded batch loaders for data that is not images: arrays of any shape, and windows of a token stream.

Both follow :class:`~torchsmith.data.DeviceLoader`'s contract, so the trainer treats them alike: ``len()``
is the steps of an epoch, ``epoch(start_step)`` draws the epoch's whole plan up front from the loader's own
CPU generator, and ``epoch_rng_state()`` / ``get_rng_state()`` / ``set_rng_state()`` make a resumed epoch
replay exactly. ``batch_size`` is the global batch; each of ``world_size`` ranks takes its contiguous
slice of every global batch in training and a strided share in evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from torchsmith.data.arrays import ArrayDataset
from torchsmith.data.loader import ResumableOrder
from torchsmith.data.tokens import TokenStream
from torchsmith.errors import DataError

__all__ = ["ArrayLoader", "WindowLoader", "Batch"]

#: What a loader yields as the model's input: one tensor, a tuple (positional inputs) or a dict (keywords).
Batch = Any


class _Seeded(ResumableOrder):
    """The generator, its per-epoch state and the rank geometry shared by both loaders."""

    def __init__(self, batch_size: int, seed: int, rank: int, world_size: int, device: torch.device | str) -> None:
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in a world of {world_size}")
        if batch_size % world_size:
            raise DataError(f"the global batch size {batch_size} must divide evenly among {world_size} ranks; "
                            f"use a multiple of {world_size}")
        self.batch_size, self.local_batch = batch_size, batch_size // world_size
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start_state: torch.Tensor = self.generator.get_state()



class ArrayLoader(_Seeded):
    """Batches ``(inputs, targets)`` of an :class:`ArrayDataset` held on the device; float inputs in ``dtype``.

    ``keywords`` passes several inputs by name (a dict), else positionally (a tuple); one input is a tensor.
    """

    def __init__(self, data: ArrayDataset, *, batch_size: int, device: torch.device | str = "cpu",
                 shuffle: bool = False, drop_last: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1,
                 dtype: torch.dtype = torch.float32, keywords: bool = False) -> None:
        super().__init__(batch_size, seed, rank, world_size, device)
        self.data = data.to(self.device)
        self.shuffle, self.drop_last, self.dtype, self.keywords = shuffle, drop_last, dtype, keywords
        if drop_last and len(self.data) < batch_size:
            raise DataError(f"{data.name} has {len(self.data)} training samples, fewer than one batch of "
                            f"{batch_size}; use a smaller --batch-size")

    @property
    def num_samples(self) -> int:
        return len(self.data)

    def __len__(self) -> int:
        n = len(self.data)
        if self.world_size > 1 and not self.drop_last:
            n = -(-n // self.world_size) * self.world_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, start_step: int = 0) -> Iterator[tuple[Batch, torch.Tensor]]:
        self.epoch_start_state = self.generator.get_state()
        n = len(self.data)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        return self._iterate(order.to(self.device), start_step)

    def __iter__(self) -> Iterator[tuple[Batch, torch.Tensor]]:
        return self.epoch()

    def _iterate(self, order: torch.Tensor, start_step: int) -> Iterator[tuple[Batch, torch.Tensor]]:
        n = len(self.data)
        for step in range(start_step, len(self)):
            start = step * self.batch_size
            if self.world_size == 1:
                idx = order[start:min(start + self.batch_size, n)]
            elif self.drop_last:
                lo = start + self.rank * self.local_batch
                idx = order[lo:lo + self.local_batch]
            else:
                idx = order[torch.arange(start + self.rank, min(start + self.batch_size, n), self.world_size,
                                         device=self.device)]
            xs = [t.index_select(0, idx) for t in self.data.inputs]
            xs = [x.to(self.dtype) if x.is_floating_point() else x for x in xs]
            yield self._pack(xs), self.data.targets.index_select(0, idx)

    def _pack(self, xs: list[torch.Tensor]) -> Batch:
        if len(xs) == 1:
            return xs[0]
        if self.keywords and self.data.names:
            return dict(zip(self.data.names, xs))
        return tuple(xs)


class WindowLoader(_Seeded):
    """Random windows of ``seq_len + 1`` tokens from a :class:`TokenStream`, nanoGPT-style: ``x`` is the first
    ``seq_len`` ids, ``y`` the same shifted by one (int64, ``(B, T)`` each).

    Training (``shuffle``): ``steps`` global batches of window starts drawn uniformly per epoch. Evaluation:
    consecutive non-overlapping windows from the start of the stream, at most ``max_windows``.
    """

    def __init__(self, data: TokenStream, *, batch_size: int, seq_len: int, device: torch.device | str = "cpu",
                 shuffle: bool = False, steps: int | None = None, max_windows: int | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        super().__init__(batch_size, seed, rank, world_size, device)
        if seq_len < 1:
            raise DataError(f"--seq-len must be at least 1, got {seq_len}")
        if len(data) < seq_len + 1:
            raise DataError(f"{data.name} holds {len(data)} tokens, fewer than one window of --seq-len {seq_len} "
                            f"plus the next token; use a shorter --seq-len or more text")
        self.data, self.seq_len, self.shuffle = data, seq_len, shuffle
        self.windows = (len(data) - 1) // seq_len  # non-overlapping windows (evaluation)
        if max_windows is not None:
            self.windows = max(1, min(self.windows, max_windows))
        self.steps = steps if steps is not None else max(1, (len(data) - 1) // (batch_size * seq_len))
        self._span = np.arange(seq_len + 1, dtype=np.int64)

    @property
    def num_samples(self) -> int:
        return len(self) * self.batch_size if self.shuffle else self.windows

    def __len__(self) -> int:
        return self.steps if self.shuffle else -(-self.windows // self.batch_size)

    def epoch(self, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.epoch_start_state = self.generator.get_state()
        if self.shuffle:
            high = len(self.data) - self.seq_len  # a start s needs ids s .. s + seq_len
            starts = torch.randint(0, high, (self.steps * self.batch_size,), generator=self.generator)
        else:
            starts = torch.arange(self.windows) * self.seq_len
        return self._iterate(starts.numpy(), start_step)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch()

    def _iterate(self, starts: np.ndarray, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step in range(start_step, len(self)):
            lo = step * self.batch_size
            if self.shuffle:
                mine = starts[lo + self.rank * self.local_batch: lo + (self.rank + 1) * self.local_batch]
            else:
                mine = starts[lo:lo + self.batch_size][self.rank::self.world_size]
            rows = self.data.ids[mine[:, None] + self._span]  # (b, T + 1), a gather from the memory map
            block = torch.from_numpy(rows.astype(np.int64)).to(self.device)
            yield block[:, :-1], block[:, 1:]
