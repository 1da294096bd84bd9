"""Users' own images: one sub-folder per class, PNG or JPEG files inside.

Either ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (``val`` is taken
for ``test``), or just ``ROOT/<class>/*``, which is split 80/20 per class with
a fixed seed. Every image is decoded once (Pillow), converted to the model's
channels and resized to its input size, and kept in memory as bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from torchsmith.data.base import DataSplits, ImageDataset, stratified_split
from torchsmith.errors import DataError

__all__ = ["load_image_folder", "IMAGE_SUFFIXES", "FOLDER_TEST_FRACTION"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_TEST_FRACTION = 0.2


def _classes_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_image_folder(root: str | Path, input_size: Sequence[int] | None = None) -> DataSplits:
    """Read an image-folder dataset; ``input_size`` (C, H, W) defaults to the first image's size."""
    try:
        from PIL import Image  # noqa: F401
    except ImportError as e:
        raise DataError("reading an image folder needs Pillow; install it with "
                        "`pip install 'torchsmith[data]'` (or `pip install pillow`)") from e
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} is not a directory")
    name = root.name or "images"
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes = _classes_in(root / "train")
        test_classes = _classes_in(test_dir)
        if not classes:
            raise DataError(f"{root / 'train'} has no class sub-folders; put each class's images in "
                            f"{root / 'train'}/<class>/")
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise DataError(f"{test_dir} has classes {extra} that {root / 'train'} lacks")
        size = _resolve_size(root / "train", classes, input_size)
        train = _read_split(root / "train", classes, size, name)
        test = _read_split(test_dir, classes, size, name)
    else:
        classes = _classes_in(root)
        if not classes:
            raise DataError(f"{root} has no class sub-folders; arrange images as {root}/<class>/<image>.png "
                            f"(or {root}/train/<class>/ and {root}/test/<class>/)")
        size = _resolve_size(root, classes, input_size)
        full = _read_split(root, classes, size, name)
        train_idx, test_idx = stratified_split(full.labels, FOLDER_TEST_FRACTION, seed=0)
        train, test = full.subset(train_idx), full.subset(test_idx)
    if len(test) == 0:
        raise DataError(f"{root}: the test split is empty; put at least two images in each class")
    return DataSplits(train=train, test=test, name=name, augment="crop+flip")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _resolve_size(folder: Path, classes: list[str], input_size: Sequence[int] | None) -> tuple[int, int, int]:
    if input_size is not None:
        c, h, w = (int(s) for s in input_size)
        if c not in (1, 3):
            raise DataError(f"images are read as grey (1 channel) or RGB (3 channels), not {c} channels")
        return c, h, w
    from PIL import Image

    for cls in classes:
        for path in _files(folder / cls):
            with Image.open(path) as im:
                return (1 if im.mode in ("L", "1", "I", "I;16") else 3), im.height, im.width
    raise DataError(f"{folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")


def _read_split(folder: Path, classes: list[str], size: tuple[int, int, int], name: str) -> ImageDataset:
    from PIL import Image, UnidentifiedImageError

    c, h, w = size
    images: list[np.ndarray] = []
    labels: list[int] = []
    for index, cls in enumerate(classes):
        if not (folder / cls).is_dir():
            continue
        for path in _files(folder / cls):
            try:
                with Image.open(path) as im:
                    im = im.convert("L" if c == 1 else "RGB")
                    if im.size != (w, h):
                        im = im.resize((w, h), Image.Resampling.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"cannot read image {path}: {e}; remove or replace the file") from e
            images.append(arr[None] if c == 1 else arr.transpose(2, 0, 1))  # (C, H, W)
            labels.append(index)
    if not images:
        return ImageDataset(torch.zeros((0, c, h, w), dtype=torch.uint8), torch.zeros(0, dtype=torch.long),
                            tuple(classes), name=name)
    return ImageDataset(torch.from_numpy(np.stack(images)), torch.tensor(labels), tuple(classes), name=name)
