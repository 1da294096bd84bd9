"""Datasets read from their official files in ``--data-dir``: CIFAR-10 binary, MNIST and Fashion-MNIST IDX.

Nothing is downloaded: these machines may have no internet, and a training
tool that fetches data behind the user's back is a surprise. A missing file
gives an error that names the files expected, where they were looked for and
where to get them.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchsmith.data.base import DataSplits, ImageDataset
from torchsmith.errors import DataError

__all__ = ["load_cifar10", "load_mnist", "load_fashion_mnist", "read_idx", "CIFAR10_CLASSES", "FASHION_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then 1024 red, 1024 green, 1024 blue bytes


def _need_dir(data_dir: str | Path | None, name: str, how: str) -> Path:
    if data_dir is None:
        raise DataError(f"{name} is read from files on disk: give --data-dir (data_dir=) pointing at them; {how}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"--data-dir {str(data_dir)!r} is not a directory; {how}")
    return path


# --------------------------------------------------------------------------- CIFAR-10
def load_cifar10(data_dir: str | Path | None) -> DataSplits:
    """CIFAR-10 from ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`` (or those files directly)."""
    how = (f"it needs cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin and test_batch.bin, "
           f"from {_CIFAR_URL} (unpack it with `tar xzf`)")
    root = _need_dir(data_dir, "cifar10", how)
    base = root / "cifar-10-batches-bin" if (root / "cifar-10-batches-bin").is_dir() else root
    train_files = [base / f"data_batch_{i}.bin" for i in range(1, 6)]
    test_file = base / "test_batch.bin"
    missing = [p.name for p in [*train_files, test_file] if not p.is_file()]
    if missing:
        raise DataError(f"cifar10: missing {', '.join(missing)} in {base}; {how}")
    classes: tuple[str, ...] = CIFAR10_CLASSES
    meta = base / "batches.meta.txt"
    if meta.is_file():
        names = tuple(line.strip() for line in meta.read_text().splitlines() if line.strip())
        if len(names) == 10:
            classes = names
    train = _read_cifar_files(train_files, classes)
    test = _read_cifar_files([test_file], classes)
    return DataSplits(train=train, test=test, name="cifar10", augment="crop+flip")


def _read_cifar_files(files: list[Path], classes: tuple[str, ...]) -> ImageDataset:
    images, labels = [], []
    for path in files:
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % _CIFAR_RECORD:
            raise DataError(f"cifar10: {path} is {raw.size} bytes, not a whole number of {_CIFAR_RECORD}-byte "
                            f"records; is it the binary version (cifar-10-binary.tar.gz), not the Python one?")
        records = raw.reshape(-1, _CIFAR_RECORD)
        if int(records[:, 0].max()) >= len(classes):
            raise DataError(f"cifar10: {path} has label {int(records[:, 0].max())}; CIFAR-10 labels are 0..9")
        labels.append(torch.from_numpy(records[:, 0].astype(np.int64)))
        images.append(torch.from_numpy(records[:, 1:].reshape(-1, 3, 32, 32).copy()))
    return ImageDataset(torch.cat(images), torch.cat(labels), classes, name="cifar10")


# --------------------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)
_IDX_TYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
              "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (LeCun's format: magic 0x0000TTDD, DD big-endian dimension sizes, data), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: IDX header is cut short")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes) but the file holds "
                        f"{len(data) - header} bytes of data; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find_idx(root: Path, stem: str, subdir: str) -> Path | None:
    for folder in (root, root / subdir, root / subdir / "raw", root / subdir.upper() / "raw"):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (folder / name).is_file():
                return folder / name
    return None


def _load_idx_dataset(data_dir: str | Path | None, name: str, subdir: str, url: str,
                      classes: tuple[str, ...]) -> DataSplits:
    how = (f"it needs {', '.join(_IDX_FILES.values())} (each may be .gz) in --data-dir or its {subdir}/ "
           f"folder, from {url}")
    root = _need_dir(data_dir, name, how)
    found = {key: _find_idx(root, stem, subdir) for key, stem in _IDX_FILES.items()}
    missing = [_IDX_FILES[k] for k, p in found.items() if p is None]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)} in {root}; {how}")

    def split(images_key: str, labels_key: str, part: str) -> ImageDataset:
        x, y = read_idx(found[images_key]), read_idx(found[labels_key])  # type: ignore[arg-type]
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(f"{name}: {found[images_key]} holds {x.dtype} of shape {x.shape}, expected uint8 "
                            f"images (N, H, W)")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(f"{name}: {found[labels_key]} holds {len(y)} labels for {len(x)} {part} images")
        return ImageDataset(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)),
                            classes, name=name)

    # Small shifts help; flips are wrong for digits, harmless for clothes.
    augment = "crop+flip" if name == "fashion-mnist" else "crop"
    return DataSplits(train=split("train_images", "train_labels", "train"),
                      test=split("test_images", "test_labels", "test"), name=name, augment=augment)


def load_mnist(data_dir: str | Path | None) -> DataSplits:
    """MNIST (60,000 + 10,000 1x28x28 digits) from its four IDX files."""
    return _load_idx_dataset(data_dir, "mnist", "mnist", "http://yann.lecun.com/exdb/mnist/ (or a mirror)",
                             tuple(str(i) for i in range(10)))


def load_fashion_mnist(data_dir: str | Path | None) -> DataSplits:
    """Fashion-MNIST (Zalando; same format and sizes as MNIST) from its four IDX files."""
    return _load_idx_dataset(data_dir, "fashion-mnist", "fashion-mnist",
                             "https://github.com/zalandoresearch/fashion-mnist", FASHION_CLASSES)
