"""``synthetic``: random images and labels of any shape, for benchmarks and tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torchsmith.data.base import DataSplits, ImageDataset
from torchsmith.errors import DataError

__all__ = ["load_synthetic", "load_synthetic_tokens"]


def load_synthetic(input_size: Sequence[int] = (3, 32, 32), num_classes: int = 10, *,
                   num_samples: int = 10_000, num_test: int | None = None, seed: int = 0) -> DataSplits:
    """Uniform random bytes and labels; there is nothing to learn, only throughput to measure.

    ``num_test`` defaults to a tenth of ``num_samples`` (at least one batch's worth of work).
    """
    if len(tuple(input_size)) != 3 or any(int(s) <= 0 for s in input_size):
        raise DataError(f"synthetic data needs an input size (C, H, W) like 3x32x32, got {tuple(input_size)}")
    if num_classes < 1:
        raise DataError(f"synthetic data needs at least one class, got num_classes={num_classes}")
    if num_samples < 1:
        raise DataError(f"synthetic data needs at least one sample, got num_samples={num_samples}")
    n_test = max(1, num_samples // 10) if num_test is None else num_test
    g = torch.Generator().manual_seed(seed)
    classes = tuple(str(i) for i in range(num_classes))

    def make(n: int, name: str) -> ImageDataset:
        images = torch.randint(0, 256, (n, *map(int, input_size)), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, num_classes, (n,), generator=g)
        return ImageDataset(images, labels, classes, name=name)

    return DataSplits(train=make(num_samples, "synthetic"), test=make(n_test, "synthetic"), name="synthetic",
                      augment="none", mean=(0.5,) * int(input_size[0]), std=(0.2887,) * int(input_size[0]))


def load_synthetic_tokens(seq_len: int, vocab_size: int, num_classes: int = 10, *, num_samples: int = 10_000,
                          num_test: int | None = None, seed: int = 0) -> DataSplits:
    """Random token ids ``(N, seq_len)`` in ``[0, vocab_size)`` and labels, for a model of token ids."""
    if seq_len < 1 or vocab_size < 1:
        raise DataError(f"synthetic token data needs a sequence length and a vocabulary of at least 1, got "
                        f"seq_len={seq_len}, vocab_size={vocab_size}")
    if num_classes < 1 or num_samples < 1:
        raise DataError(f"synthetic token data needs at least one class and one sample, got "
                        f"num_classes={num_classes}, num_samples={num_samples}")
    n_test = max(1, num_samples // 10) if num_test is None else num_test
    g = torch.Generator().manual_seed(seed)
    classes = tuple(str(i) for i in range(num_classes))

    def make(n: int) -> ImageDataset:
        ids = torch.randint(0, vocab_size, (n, seq_len), generator=g, dtype=torch.long)
        return ImageDataset(ids, torch.randint(0, num_classes, (n,), generator=g), classes, name="synthetic")

    return DataSplits(train=make(num_samples), test=make(n_test), name="synthetic")
