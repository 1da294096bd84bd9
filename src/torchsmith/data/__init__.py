"""Datasets and the in-memory device loader.

``load_dataset(name, ...)`` returns :class:`DataSplits` (train and test
:class:`ImageDataset`, uint8 images in memory). Names: ``digits`` (embedded:
shipped in the package), ``cifar10``, ``mnist``, ``fashion-mnist`` (official files
from ``data_dir``), ``synthetic`` (random, for benchmarks) or a directory of
class sub-folders. Nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torchsmith.data.base import AUGMENTS, DataSplits, ImageDataset, channel_stats, check_input_size, stratified_split
from torchsmith.data.digits import load_digits
from torchsmith.data.files import load_cifar10, load_fashion_mnist, load_mnist, read_idx
from torchsmith.data.folder import load_image_folder
from torchsmith.data.loader import DeviceLoader, default_padding
from torchsmith.data.synthetic import load_synthetic, load_synthetic_tokens
from torchsmith.errors import DataError, UnknownNameError

__all__ = [
    "load_dataset", "DATASETS", "AUGMENTS", "DataSplits", "ImageDataset", "DeviceLoader", "default_padding",
    "load_digits", "load_cifar10", "load_mnist", "load_fashion_mnist", "load_synthetic", "load_synthetic_tokens",
    "load_image_folder",
    "read_idx", "stratified_split", "channel_stats",
]

#: Dataset names ``load_dataset`` knows; a directory path is read as an image folder.
DATASETS = ("digits", "cifar10", "mnist", "fashion-mnist", "synthetic")


def load_dataset(name: str, *, data_dir: str | Path | None = None, input_size: Sequence[int] | str | None = None,
                 num_classes: int = 10, num_samples: int = 10_000, seed: int = 0,
                 vocab_size: int | None = None) -> DataSplits:
    """Load dataset ``name``, fitted to ``input_size`` (C, H, W) when given.

    Data never comes from the network: ``digits`` ships inside torchsmith; ``cifar10`` reads the official binary
    batches and ``mnist``/``fashion-mnist`` the IDX files from ``data_dir``; ``synthetic`` makes random data; a
    folder of class sub-folders (PNG/JPEG) is your own data.

    Args:
        name: ``"digits"``, ``"cifar10"``, ``"mnist"``, ``"fashion-mnist"``, ``"synthetic"`` or a folder path.
        data_dir: Where the files of ``cifar10``/``mnist``/``fashion-mnist`` lie.
        input_size: The size to fit the images to (resized, grey <-> RGB), as a tuple or ``"3x32x32"``.
        num_classes: Classes of the ``synthetic`` data.
        num_samples: Samples of the ``synthetic`` data.
        seed: Seed of the ``synthetic`` data.
        vocab_size: Makes ``synthetic`` data token ids in ``[0, vocab_size)`` of ``input_size`` ``(T,)``
            (16 ids when not given), for a model of token ids.

    Returns:
        The train and test splits (:class:`DataSplits`), uint8 images with their labels and class names.

    Raises:
        UnknownNameError: An unknown dataset name (with close matches).
        DataError: Missing or damaged files (the message says where they were looked for),
            or a size the data cannot be fitted to.
    """
    key = name.lower().replace("_", "-") if isinstance(name, str) else ""
    if key == "synthetic" and vocab_size is not None:
        size = tuple(input_size) if input_size is not None and not isinstance(input_size, str) else (16,)
        if len(size) != 1:
            raise DataError(f"synthetic token data is (T,) ids a sample, not {size}")
        return load_synthetic_tokens(int(size[0]), vocab_size, num_classes, num_samples=num_samples, seed=seed)
    if not isinstance(name, str):
        raise DataError(f"a dataset is named by a string (e.g. 'digits') or a folder path, not {type(name).__name__}")
    if input_size is not None:
        input_size = check_input_size(input_size)
    key = name.lower().replace("_", "-")
    if key == "digits":
        splits = load_digits()
    elif key in ("cifar10", "cifar-10"):
        splits = load_cifar10(data_dir)
    elif key == "mnist":
        splits = load_mnist(data_dir)
    elif key in ("fashion-mnist", "fashionmnist"):
        splits = load_fashion_mnist(data_dir)
    elif key == "synthetic":
        return load_synthetic(tuple(input_size) if input_size else (3, 32, 32), num_classes,
                              num_samples=num_samples, seed=seed)
    elif Path(name).expanduser().is_dir():
        return load_image_folder(name, input_size)
    else:
        raise UnknownNameError("dataset", name, DATASETS, hint="or give a folder of class sub-folders")
    return splits.fitted_to(input_size)
