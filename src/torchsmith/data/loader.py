"""The in-memory device loader: batches by indexing, augmentation batched on the device.

The whole dataset is one uint8 tensor on the training device. An epoch draws,
up front and from the loader's own seeded ``torch.Generator``, a permutation
and every sample's crop offset and flip; a batch is then a slice of that plan
and one gather. There is no per-sample Python work, no worker processes and
no host-to-device copy per step, which is where the usual
``DataLoader(TensorDataset(...))`` loop spends its time on small models.

Because every random draw of an epoch comes from the generator's state at the
start of that epoch, saving that state plus the step reached is enough to
replay the epoch exactly after a crash (see :meth:`DeviceLoader.epoch`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torchsmith.data.base import AUGMENTS, ImageDataset
from torchsmith.errors import DataError

__all__ = ["DeviceLoader", "default_padding"]


def default_padding(height: int) -> int:
    """Crop padding for an image height: 4 pixels at 32, as in the usual CIFAR recipe."""
    return max(1, round(height / 8))


@dataclass
class _Plan:
    order: torch.Tensor            # (N,) sample indices in drawing order, on the device
    offsets: torch.Tensor | None   # (N, 2) crop offsets (dy, dx) in [0, 2 * padding], per drawing position
    flips: torch.Tensor | None     # (N,) bool, per drawing position


class ResumableOrder:
    """The data order's generator state, for an exact resume: what every loader here saves and restores.

    A subclass sets ``generator`` (a seeded ``torch.Generator``) and ``epoch_start_state`` (its state when the
    current epoch began).
    """

    generator: torch.Generator
    epoch_start_state: torch.Tensor

    def get_rng_state(self) -> list[int]:
        """The generator state (a list of ints, JSON-safe) the next epoch will start from."""
        return [int(b) for b in self.generator.get_state().tolist()]

    def epoch_rng_state(self) -> list[int]:
        """The generator state the current epoch started from (for a checkpoint taken mid-epoch)."""
        return [int(b) for b in self.epoch_start_state.tolist()]

    def set_rng_state(self, state: Sequence[int]) -> None:
        """Restore a state from :meth:`get_rng_state` or :meth:`epoch_rng_state`."""
        try:
            self.generator.set_state(torch.tensor(list(state), dtype=torch.uint8))
        except (RuntimeError, TypeError, ValueError, OverflowError) as e:
            raise DataError(f"the saved data-order state does not fit this loader's generator: {e}") from e


class DeviceLoader(ResumableOrder):
    """Batches ``(x, y)`` of float images (normalised) and int64 labels from an in-memory dataset.

    ``batch_size`` is the global batch: with ``world_size`` ranks, each rank
    takes its ``batch_size // world_size`` slice of every global batch, drawn
    from the same permutation on every rank (same seed), so the ranks together
    see exactly the batches a single process would.
    """

    def __init__(self, data: ImageDataset, *, batch_size: int, mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = "cpu", shuffle: bool = False, drop_last: bool = False,
                 augment: str = "none", padding: int | None = None, seed: int = 0, rank: int = 0,
                 world_size: int = 1, channels_last: bool = False, dtype: torch.dtype = torch.float32) -> None:
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if augment not in AUGMENTS:
            raise DataError(f"unknown augmentation {augment!r}; one of {', '.join(AUGMENTS)}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in a world of {world_size}")
        if batch_size % world_size:
            raise DataError(f"the global batch size {batch_size} must divide evenly among {world_size} ranks; "
                            f"use a multiple of {world_size}")
        self.tokens = data.is_tokens
        c = 1 if self.tokens else data.input_size[0]
        if self.tokens:
            mean, std, augment = (0.0,), (1.0,), "none"  # token ids are not normalised or augmented
        if len(mean) != c or len(std) != c:
            raise DataError(f"mean and std need one value per channel ({c}), got {len(mean)} and {len(std)}")
        self.device = torch.device(device)
        self.data = data.to(self.device)
        self.batch_size = batch_size
        self.local_batch = batch_size // world_size
        self.shuffle, self.drop_last, self.augment = shuffle, drop_last, augment
        self.padding = (0 if self.tokens else default_padding(data.input_size[1])) if padding is None else int(padding)
        self.rank, self.world_size = rank, world_size
        self.channels_last, self.dtype = channels_last, dtype
        # x_norm = (x / 255 - mean) / std = (x - 255 * mean) * (1 / (255 * std)), one fused pass per batch.
        self._shift = torch.tensor([255.0 * m for m in mean], device=self.device, dtype=dtype).view(1, c, 1, 1)
        self._scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=self.device, dtype=dtype).view(1, c, 1, 1)
        # The loader's own generator, on the CPU whatever the device: its state is small, portable and
        # bit-identical across runs, and it is used once per epoch, never per step.
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start_state: torch.Tensor = self.generator.get_state()
        if drop_last and len(self.data) < batch_size:
            raise DataError(f"{data.name} has {len(self.data)} training samples, fewer than one batch of "
                            f"{batch_size}; use a smaller batch size")

    def __len__(self) -> int:
        """Steps per epoch."""
        n = len(self.data)
        if self.world_size > 1 and not self.drop_last:
            # Evaluation shards: rank r takes samples r, r + world, ...; every rank runs the same step count.
            n = -(-n // self.world_size) * self.world_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.data)

    # ------------------------------------------------------------------ iteration
    def epoch(self, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Draw this epoch's plan now and return an iterator over its batches from ``start_step``.

        The plan is drawn eagerly (not when iteration starts), so ``epoch_start_state``
        is the state this epoch came from as soon as this returns.
        """
        self.epoch_start_state = self.generator.get_state()
        plan = self._plan()
        return self._iterate(plan, start_step)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch()

    def _plan(self) -> _Plan:
        n, g = len(self.data), self.generator
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        offsets = flips = None
        if "crop" in self.augment and self.padding > 0:
            offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=g)
        if "flip" in self.augment:
            flips = torch.randint(0, 2, (n,), generator=g).bool()
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(self.device, non_blocking=True)

        return _Plan(order=order.to(self.device, non_blocking=True), offsets=move(offsets), flips=move(flips))

    def _positions(self, step: int) -> torch.Tensor | slice:
        """Drawing positions of this rank's part of global batch ``step``."""
        start = step * self.batch_size
        if self.world_size == 1:
            return slice(start, min(start + self.batch_size, len(self.data)))
        if self.drop_last:  # training: a contiguous slice of each global batch per rank
            lo = start + self.rank * self.local_batch
            return slice(lo, lo + self.local_batch)
        # evaluation: a strided shard, so the ranks' parts are disjoint and cover every sample once
        return torch.arange(start + self.rank, min(start + self.batch_size, len(self.data)), self.world_size,
                            device=self.device)

    def _iterate(self, plan: _Plan, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for step in range(start_step, len(self)):
            pos = self._positions(step)
            idx = plan.order[pos]
            # index_select copies whole rows: ~10x faster than advanced indexing for a uint8 batch on a CPU
            x = self.data.images.index_select(0, idx)  # (B, C, H, W) uint8
            if plan.offsets is not None or plan.flips is not None:
                x = self._augment(x, None if plan.offsets is None else plan.offsets[pos],
                                  None if plan.flips is None else plan.flips[pos])
            yield self._normalise(x), self.data.labels.index_select(0, idx)

    def _augment(self, x: torch.Tensor, offsets: torch.Tensor | None, flips: torch.Tensor | None) -> torch.Tensor:
        """Random crop with zero padding and horizontal flip, as one gather over the batch."""
        b, _, h, w = x.shape
        p = self.padding if offsets is not None else 0
        rows = torch.arange(h, device=x.device).expand(b, h)  # (B, H) row index into the padded image
        cols = torch.arange(w, device=x.device).expand(b, w)  # (B, W)
        if offsets is not None:
            rows = rows + offsets[:, :1]
            cols = cols + offsets[:, 1:]
            x = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p), black border like torchvision's RandomCrop
        if flips is not None:
            # Reading columns right to left mirrors the crop window in place.
            cols = torch.where(flips[:, None], cols.flip(1), cols)
        batch = torch.arange(b, device=x.device)[:, None, None]
        out = x[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C): advanced indices first
        return out.permute(0, 3, 1, 2)  # (B, C, H, W), physically channels-last

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            return x  # (B, T) int64 token ids
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        x = x.to(dtype=self.dtype, memory_format=fmt)  # one pass: convert and lay out
        return x.sub_(self._shift).mul_(self._scale)
