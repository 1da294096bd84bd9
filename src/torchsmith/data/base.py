"""The in-memory image dataset every loader in :mod:`torchsmith.data` returns.

A dataset is one ``uint8`` tensor of images ``(N, C, H, W)`` and one ``int64``
tensor of labels ``(N,)``. Keeping images as bytes (not floats) is what lets a
whole dataset live on the training device: CIFAR-10's 50,000 training images
are 150 MB as bytes and 600 MB as float32. Conversion to float and
normalisation happen per batch, on the device, in :class:`DeviceLoader`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from torchsmith.errors import DataError
from torchsmith.sizes import int_dims

__all__ = ["ImageDataset", "DataSplits", "stratified_split", "AUGMENTS"]

#: Batched augmentations the device loader knows (see :mod:`torchsmith.data.loader`).
AUGMENTS = ("none", "crop", "flip", "crop+flip")


@dataclass
class ImageDataset:
    """Images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64, with class names.

    For a model of token ids (synthetic data only), ``images`` holds int64 ids ``(N, T)`` instead: the
    loader passes them through as they are (no normalisation, no augmentation).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str = "dataset"

    def __post_init__(self) -> None:
        tokens = isinstance(self.images, torch.Tensor) and self.images.dtype == torch.long and self.images.dim() == 2
        if not tokens and (not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8
                           or self.images.dim() != 4):
            got = (f"{self.images.dtype} tensor of shape {tuple(self.images.shape)}"
                   if isinstance(self.images, torch.Tensor) else type(self.images).__name__)
            raise DataError(f"{self.name}: images must be a uint8 tensor (N, C, H, W), got a {got}")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dim() != 1:
            raise DataError(f"{self.name}: labels must be a 1-D tensor of class indices")
        if len(self.labels) != len(self.images):
            raise DataError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if self.labels.is_floating_point():
            raise DataError(f"{self.name}: labels must be integer class indices, not {self.labels.dtype}")
        self.labels = self.labels.long()
        self.classes = tuple(str(c) for c in self.classes)
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise DataError(f"{self.name}: labels must lie in [0, {len(self.classes)}) for {len(self.classes)} "
                            f"classes, found {int(self.labels.min())}..{int(self.labels.max())}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_size(self) -> tuple[int, ...]:
        """(C, H, W) of one image; (T,) of one sequence of token ids."""
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def is_tokens(self) -> bool:
        return self.images.dim() == 2

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> ImageDataset:
        """The same dataset with both tensors on ``device`` (no copy if already there)."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def subset(self, index: torch.Tensor) -> ImageDataset:
        return replace(self, images=self.images[index], labels=self.labels[index])

    def fitted_to(self, input_size: Sequence[int]) -> ImageDataset:
        """Adapt channels (grey <-> RGB) and resize (bilinear, antialiased) to ``(C, H, W)``."""
        if self.is_tokens:
            raise DataError(f"{self.name} holds token ids, not images: it cannot be fitted to an image size")
        c, h, w = check_input_size(input_size)
        x = self.images
        if x.shape[1] != c:
            x = _convert_channels(x, c, self.name)
        if tuple(x.shape[2:]) != (h, w):
            x = _resize_uint8(x, h, w)
        return replace(self, images=x.contiguous())


def check_input_size(input_size: Sequence[int] | str) -> tuple[int, int, int]:
    """``(C, H, W)`` as ints, from a sequence or a string such as ``"3x32x32"``."""
    if isinstance(input_size, str):
        parts = input_size.replace(",", "x").split("x")
        size = tuple(int(p) for p in parts) if all(p.strip().isdigit() for p in parts) else None
    else:
        size = int_dims(input_size)
    if size is None or len(size) != 3 or any(s <= 0 for s in size):
        raise DataError(f"an image input size is (C, H, W), e.g. 3x32x32 or (3, 32, 32); got {input_size!r}")
    return size  # type: ignore[return-value]


def _convert_channels(x: torch.Tensor, c: int, name: str) -> torch.Tensor:
    have = x.shape[1]
    if have == 1:
        return x.expand(-1, c, -1, -1)  # grey to c identical channels
    if have == 3 and c == 1:
        # ITU-R BT.601 luma, the same weights PIL uses for convert("L").
        w = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
        return (x.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    raise DataError(f"{name} has {have} channels and the model takes {c}; only grey <-> RGB is converted. "
                    f"Build the model with in_channels={have}")


def _resize_uint8(x: torch.Tensor, h: int, w: int, chunk: int = 4096) -> torch.Tensor:
    """Resize (N, C, h0, w0) uint8 in chunks, so a large dataset never exists as float all at once."""
    out = torch.empty((x.shape[0], x.shape[1], h, w), dtype=torch.uint8, device=x.device)
    for i in range(0, x.shape[0], chunk):
        part = x[i:i + chunk].float()
        shrinking = h < part.shape[2] or w < part.shape[3]
        part = F.interpolate(part, size=(h, w), mode="bilinear", align_corners=False, antialias=shrinking)
        out[i:i + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed train/test indices with every class split in the same proportion.

    The split depends only on ``labels``, ``test_fraction`` and ``seed``, so it is
    the same on every machine and in every process (train, eval, demo).
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test fraction must be between 0 and 1, got {test_fraction}")
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = max(1, round(len(idx) * test_fraction)) if len(idx) > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


@dataclass
class DataSplits:
    """A training and a test split, with the normalisation and augmentation that suit them.

    ``mean`` and ``std`` are per channel in [0, 1] units, measured on the training
    split after any resizing. ``augment`` is the default batched augmentation for
    this kind of data (no flips for digits: a flipped 2 is not a 2).
    """

    train: ImageDataset | Any  # or an ArrayDataset, a TokenStream (torchsmith.data.arrays, .tokens)
    test: ImageDataset | Any
    name: str
    augment: str = "none"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.train.input_size != self.test.input_size:
            raise DataError(f"{self.name}: train images are {self.train.input_size} but test images are "
                            f"{self.test.input_size}")
        if self.train.classes != self.test.classes:
            raise DataError(f"{self.name}: train and test splits name different classes")
        if len(self.train) == 0:
            raise DataError(f"{self.name}: the training split is empty")
        if self.augment not in AUGMENTS:
            raise DataError(f"{self.name}: unknown augmentation {self.augment!r}; one of {', '.join(AUGMENTS)}")
        if self.train.is_tokens or self.kind != "images":
            self.mean, self.std, self.augment = (), (), "none"  # ids and arrays are passed through as they are
        elif not self.mean or not self.std:
            self.mean, self.std = channel_stats(self.train.images)

    @property
    def kind(self) -> str:
        """``images`` (an :class:`ImageDataset`, also of token ids), ``arrays`` or ``stream`` (of tokens)."""
        return str(getattr(self.train, "kind", "images"))

    @property
    def input_size(self) -> tuple[int, ...]:
        return self.train.input_size

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    def fitted_to(self, input_size: Sequence[int] | None) -> DataSplits:
        """Both splits adapted to the model's ``(C, H, W)``; statistics measured again."""
        if input_size is None or self.kind != "images":
            return self
        size = check_input_size(input_size)
        if size == self.input_size:
            return self
        (c0, h0, w0), (c, h, w) = self.input_size, size
        how = []
        if c0 != c:
            how.append(f"grey repeated to {c} channels" if c0 == 1 else f"{c0} channels to grey (BT.601 luma)")
        if (h0, w0) != (h, w):
            how.append(f"resized {h0}x{w0} -> {h}x{w} (bilinear{', antialiased' if h < h0 or w < w0 else ''})")
        note = (f"{self.name}: images converted from {'x'.join(map(str, self.input_size))} to "
                f"{'x'.join(map(str, size))} to fit the model: {'; '.join(how)}")
        return DataSplits(train=self.train.fitted_to(size), test=self.test.fitted_to(size), name=self.name,
                          augment=self.augment, notes=[*self.notes, note])


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of a uint8 (N, C, H, W) tensor, in float64."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    count = 0
    for i in range(0, images.shape[0], chunk):
        part = images[i:i + chunk].to("cpu", torch.float64) / 255.0
        total += part.sum((0, 2, 3))
        total_sq += (part * part).sum((0, 2, 3))
        count += part.shape[0] * part.shape[2] * part.shape[3]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)
