"""Datasets in their real on-disk formats, and the in-memory device loader."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from torchsmith.data import (
    DATASETS,
    DataSplits,
    DeviceLoader,
    ImageDataset,
    load_dataset,
    read_idx,
    stratified_split,
)
from torchsmith.errors import DataError, UnknownNameError


# --------------------------------------------------------------------------- digits
def test_digits_split_is_fixed_stratified_and_fitted():
    a = load_dataset("digits")
    assert a.input_size == (1, 8, 8) and len(a.train) == 1347 and len(a.test) == 450
    assert a.augment == "crop"
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 47  # every class in proportion
    b = load_dataset("digits", input_size=(3, 32, 32))
    assert b.train.images.shape == (1347, 3, 32, 32) and b.train.images.dtype == torch.uint8
    assert torch.equal(b.train.labels, a.train.labels)
    assert torch.equal(b.train.images[:, 0], b.train.images[:, 2])  # grey copied to each channel
    assert b.notes and "1x8x8 to 3x32x32" in b.notes[0]
    assert len(b.mean) == 3 and 0 < b.mean[0] < 1 and 0 < b.std[0] < 1
    again = load_dataset("digits", input_size=(3, 32, 32))
    assert torch.equal(again.test.images, b.test.images)  # same everywhere, every time


def test_digits_load_without_scikit_learn():
    """The digits ship inside torchsmith: a fresh interpreter where scikit-learn cannot be imported loads them."""
    import subprocess

    guard = ("import sys; sys.modules['sklearn'] = None; sys.modules['sklearn.datasets'] = None\n"
             "from torchsmith.data import load_dataset\n"
             "s = load_dataset('digits')\n"
             "assert 'sklearn' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
             "print(len(s.train), len(s.test), s.input_size, int(s.train.images.sum()))\n")
    proc = subprocess.run([sys.executable, "-c", guard], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    here = load_dataset("digits")
    assert proc.stdout.split() == ["1347", "450", "(1,", "8,", "8)", str(int(here.train.images.sum()))]


def test_packaged_digits_equal_scikit_learns_copy():
    sk = pytest.importorskip("sklearn.datasets")
    from torchsmith.data.digits import digits_arrays

    images, labels = digits_arrays()
    bunch = sk.load_digits()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert np.array_equal(images.astype(np.float64), bunch.images)
    assert np.array_equal(labels, bunch.target)


def test_unknown_dataset_suggests_a_name():
    with pytest.raises(UnknownNameError, match="did you mean 'digits'"):
        load_dataset("digit")
    assert "cifar10" in DATASETS


def test_input_size_as_text_or_sequence_and_bad_ones_refused():
    assert load_dataset("digits", input_size="1x16x16").input_size == (1, 16, 16)
    assert load_dataset("digits", input_size=[1, 16, 16]).input_size == (1, 16, 16)
    for bad in ((3, "a", 4), (3, 16), 5, "3x0x8"):
        with pytest.raises(DataError, match=r"an image input size is \(C, H, W\)"):
            load_dataset("digits", input_size=bad)
    with pytest.raises(DataError, match="named by a string"):
        load_dataset(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CIFAR-10 binary
def _write_cifar(root: Path, per_file: int = 6) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    all_images, all_labels = [], []
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, per_file, dtype=np.uint8)
        images = rng.integers(0, 256, (per_file, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([labels[:, None], images.reshape(per_file, -1)], axis=1)
        records.tofile(folder / name)
        all_images.append(images)
        all_labels.append(labels)
    return np.concatenate(all_images), np.concatenate(all_labels)


def test_cifar10_binary_round_trip(tmp_path):
    images, labels = _write_cifar(tmp_path)
    splits = load_dataset("cifar10", data_dir=tmp_path)
    assert len(splits.train) == 30 and len(splits.test) == 6
    assert torch.equal(splits.train.images, torch.from_numpy(images[:30]))
    assert torch.equal(splits.test.labels, torch.from_numpy(labels[30:].astype(np.int64)))
    assert splits.classes[0] == "airplane" and splits.augment == "crop+flip"


def test_cifar10_missing_and_malformed_files(tmp_path):
    with pytest.raises(DataError, match="give --data-dir"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match=r"missing data_batch_1.bin.*cifar-10-binary.tar.gz"):
        load_dataset("cifar10", data_dir=tmp_path)
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="not a whole number of 3073-byte records"):
        load_dataset("cifar10", data_dir=tmp_path)


# --------------------------------------------------------------------------- IDX
def _idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        data = _idx_bytes(array)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_round_trip(tmp_path, gz):
    arrays = _write_mnist(tmp_path / "mnist" / "raw", gz)
    splits = load_dataset("mnist", data_dir=tmp_path)
    assert splits.input_size == (1, 28, 28) and len(splits.train) == 12 and len(splits.test) == 5
    assert torch.equal(splits.train.images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert splits.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    padded = load_dataset("mnist", data_dir=tmp_path, input_size=(3, 32, 32))
    assert padded.train.images.shape == (12, 3, 32, 32)


def test_fashion_mnist_reads_the_same_format(tmp_path):
    _write_mnist(tmp_path, gz=True)
    splits = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert splits.classes[-1] == "Ankle boot" and splits.augment == "crop+flip"


def test_idx_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match=r"missing train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(bad)
    cut = tmp_path / "cut"
    cut.write_bytes(_idx_bytes(np.zeros((4, 3, 3), dtype=np.uint8))[:-5])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(cut)


# --------------------------------------------------------------------------- synthetic and image folders
def test_synthetic_is_deterministic_and_shaped():
    a = load_dataset("synthetic", input_size=(1, 20, 24), num_classes=7, num_samples=50)
    b = load_dataset("synthetic", input_size=(1, 20, 24), num_classes=7, num_samples=50)
    assert a.train.images.shape == (50, 1, 20, 24) and len(a.test) == 5 and a.num_classes == 7
    assert torch.equal(a.train.images, b.train.images)
    with pytest.raises(DataError, match="num_classes"):
        load_dataset("synthetic", num_classes=0)


def _write_folder(root: Path, per_class: int = 5) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_reads_class_folders(tmp_path):
    pytest.importorskip("PIL")
    _write_folder(tmp_path / "pets")
    splits = load_dataset(str(tmp_path / "pets"))
    assert splits.classes == ("cat", "dog") and splits.input_size == (3, 12, 10)
    assert len(splits.train) == 8 and len(splits.test) == 2  # 20% of each class, fixed
    small = load_dataset(str(tmp_path / "pets"), input_size=(1, 8, 8))
    assert small.train.images.shape == (8, 1, 8, 8)


def test_image_folder_with_train_and_test(tmp_path):
    pytest.importorskip("PIL")
    _write_folder(tmp_path / "d" / "train", per_class=3)
    _write_folder(tmp_path / "d" / "test", per_class=2)
    splits = load_dataset(str(tmp_path / "d"))
    assert len(splits.train) == 6 and len(splits.test) == 4


def test_image_folder_errors(tmp_path):
    pytest.importorskip("PIL")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(str(tmp_path / "empty"))
    _write_folder(tmp_path / "broken")
    (tmp_path / "broken" / "cat" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*x.png"):
        load_dataset(str(tmp_path / "broken"))


def test_dataset_validation():
    with pytest.raises(DataError, match="uint8 tensor"):
        ImageDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), ("a",))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\)"):
        ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 5]), ("a", "b"))
    train, test = stratified_split(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), 0.25)
    assert len(test) == 2 and set(train.tolist()).isdisjoint(test.tolist())


# --------------------------------------------------------------------------- the device loader
def _tiny(n: int = 40, c: int = 3, h: int = 8, w: int = 8) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.arange(n) % 4, classes=("a", "b", "c", "d"), name="tiny")


def test_loader_normalises_and_covers_every_sample():
    data = _tiny(10, c=1)
    loader = DeviceLoader(data, batch_size=4, mean=(0.5,), std=(0.25,))
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    x = torch.cat([b[0] for b in batches])
    expected = (data.images.float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-5)
    assert torch.equal(torch.cat([b[1] for b in batches]), data.labels)


def test_shuffle_is_seeded_and_replayable():
    data = _tiny()
    a = DeviceLoader(data, batch_size=8, mean=(0.5,) * 3, std=(0.2,) * 3, shuffle=True, drop_last=True,
                     augment="crop+flip", seed=3)
    first = [y for _, y in a.epoch()]
    state = a.get_rng_state()  # where epoch 2 starts
    second = [(x, y) for x, y in a.epoch()]
    assert not all(torch.equal(p, q[1]) for p, q in zip(first, second))  # a new order every epoch
    b = DeviceLoader(data, batch_size=8, mean=(0.5,) * 3, std=(0.2,) * 3, shuffle=True, drop_last=True,
                     augment="crop+flip", seed=3)
    b.set_rng_state(state)
    replay = list(b.epoch(start_step=2))  # resume epoch 2 at its third batch
    for (x1, y1), (x2, y2) in zip(second[2:], replay):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len(replay) == len(second) - 2


def _reference_augment(img: torch.Tensor, dy: int, dx: int, flip: bool, pad: int) -> torch.Tensor:
    """One image at a time, the way torchvision's RandomCrop(padding) + RandomHorizontalFlip do it."""
    c, h, w = img.shape
    padded = torch.zeros((c, h + 2 * pad, w + 2 * pad), dtype=img.dtype)
    padded[:, pad:pad + h, pad:pad + w] = img
    out = padded[:, dy:dy + h, dx:dx + w]
    return out.flip(2) if flip else out


def test_batched_crop_and_flip_match_the_per_image_reference():
    data = _tiny(16, c=3, h=6, w=7)
    loader = DeviceLoader(data, batch_size=16, mean=(0.0,) * 3, std=(1 / 255,) * 3, shuffle=True,
                          augment="crop+flip", padding=2, seed=5)
    (x, y), = list(loader.epoch())
    # Draw the same plan again from the same state and apply it one image at a time.
    g = torch.Generator().manual_seed(5)
    order = torch.randperm(16, generator=g)
    offsets = torch.randint(0, 5, (16, 2), generator=g)
    flips = torch.randint(0, 2, (16,), generator=g).bool()
    assert flips.any() and not flips.all()
    for k in range(16):
        ref = _reference_augment(data.images[order[k]], int(offsets[k, 0]), int(offsets[k, 1]), bool(flips[k]), 2)
        assert torch.equal(x[k].round().to(torch.uint8), ref), k
        assert y[k] == data.labels[order[k]]


def test_ranks_split_each_global_batch():
    data = _tiny(40)
    kw = dict(mean=(0.5,) * 3, std=(0.2,) * 3, shuffle=True, drop_last=True, augment="crop+flip", seed=1)
    whole = list(DeviceLoader(data, batch_size=8, **kw))
    parts = [list(DeviceLoader(data, batch_size=8, rank=r, world_size=2, **kw)) for r in (0, 1)]
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    unique = ImageDataset(data.images, torch.arange(40), classes=[str(i) for i in range(40)], name="u")
    shards = [DeviceLoader(unique, batch_size=16, rank=r, world_size=2, mean=kw["mean"], std=kw["std"])
              for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 3
    seen = sorted(int(v) for s in shards for _, y in s for v in y)
    assert seen == list(range(40))  # evaluation shards cover every sample exactly once between them
    with pytest.raises(DataError, match="multiple of 3"):
        DeviceLoader(data, batch_size=8, rank=0, world_size=3, mean=kw["mean"], std=kw["std"])


def test_loader_errors():
    data = _tiny(10)
    with pytest.raises(DataError, match="fewer than one batch"):
        DeviceLoader(data, batch_size=16, mean=(0.5,) * 3, std=(0.2,) * 3, drop_last=True)
    with pytest.raises(DataError, match="one value per channel"):
        DeviceLoader(data, batch_size=4, mean=(0.5,), std=(0.2,))
    with pytest.raises(DataError, match="unknown augmentation"):
        DeviceLoader(data, batch_size=4, mean=(0.5,) * 3, std=(0.2,) * 3, augment="rotate")


def test_splits_check_their_parts():
    a, b = _tiny(8), _tiny(8, c=1)
    with pytest.raises(DataError, match="train images are"):
        DataSplits(train=a, test=b, name="x")
