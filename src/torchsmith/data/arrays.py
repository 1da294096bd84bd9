"""Data of any shape: your own arrays (``.npz``), a CSV table, or synthetic tensors in the model's shape.

An :class:`ArrayDataset` holds one or several input tensors ``(N, ...)`` and a target tensor: int64 class
indices ``(N,)`` for classification, float32 values ``(N, ...)`` for regression. Several inputs are passed
to the model positionally (a tuple) or, when they are named after its forward's parameters, by keyword.
Nothing is normalised behind the user's back except a CSV table's feature columns (standardised with the
training split's statistics, and the run says so).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from torchsmith.errors import DataError

__all__ = ["ArrayDataset", "load_npz", "load_csv", "load_synthetic_arrays", "split_arrays", "TASKS"]

#: What a target means: class indices, or values to regress.
TASKS = ("classification", "regression")


@dataclass
class ArrayDataset:
    """Inputs ``(N, ...)`` each and targets ``(N,)`` int64 classes or ``(N, ...)`` float32 regression values."""

    inputs: tuple[torch.Tensor, ...]
    targets: torch.Tensor
    classes: tuple[str, ...] = ()  # () for regression
    names: tuple[str, ...] | None = None  # the inputs' names (npz keys, CSV "features"); None: positional
    name: str = "arrays"
    kind: str = field(default="arrays", init=False)

    def __post_init__(self) -> None:
        if not self.inputs or not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in self.inputs):
            raise DataError(f"{self.name}: inputs must be one or more tensors with a leading sample dimension")
        n = len(self.targets)
        for i, t in enumerate(self.inputs):
            if len(t) != n:
                label = self.names[i] if self.names else f"input {i}"
                raise DataError(f"{self.name}: {label} has {len(t)} samples but the targets have {n}")
        if self.names is not None and len(self.names) != len(self.inputs):
            raise DataError(f"{self.name}: {len(self.names)} names for {len(self.inputs)} inputs")
        if self.classes:
            self.targets = self.targets.long()
            if self.targets.dim() != 1:
                raise DataError(f"{self.name}: class targets must be one index per sample, got shape "
                                f"{tuple(self.targets.shape)}; for values to regress use --task regression")
            if n and (int(self.targets.min()) < 0 or int(self.targets.max()) >= len(self.classes)):
                raise DataError(f"{self.name}: class targets must lie in [0, {len(self.classes)}), found "
                                f"{int(self.targets.min())}..{int(self.targets.max())}")
        else:
            self.targets = self.targets.float()

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def is_tokens(self) -> bool:
        return False

    @property
    def task(self) -> str:
        return "classification" if self.classes else "regression"

    @property
    def input_size(self) -> tuple[int, ...]:
        """One sample of the first input, without the batch."""
        return tuple(int(s) for s in self.inputs[0].shape[1:])

    @property
    def input_sizes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(int(s) for s in t.shape[1:]) for t in self.inputs)

    @property
    def target_size(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.targets.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> ArrayDataset:
        return replace(self, inputs=tuple(t.to(device) for t in self.inputs), targets=self.targets.to(device))

    def subset(self, index: torch.Tensor) -> ArrayDataset:
        return replace(self, inputs=tuple(t[index] for t in self.inputs), targets=self.targets[index])

    def describe(self) -> str:
        sizes = ", ".join(f"{n}={'x'.join(map(str, s)) or 'scalar'}" if self.names else "x".join(map(str, s))
                          for n, s in zip(self.names or [""] * len(self.inputs), self.input_sizes))
        what = f"{len(self.classes)} classes" if self.classes else f"regression targets {self.target_size or '(N,)'}"
        return f"{len(self)} samples of {sizes}, {what}"


def _tensor(a: np.ndarray, what: str) -> torch.Tensor:
    if a.dtype == np.bool_:
        return torch.from_numpy(a.astype(np.float32))
    if np.issubdtype(a.dtype, np.integer):
        return torch.from_numpy(a.astype(np.int64))
    if np.issubdtype(a.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    raise DataError(f"{what} holds {a.dtype} values; give numbers (float or integer arrays)")


def _targets(y: np.ndarray, task: str | None, where: str) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Targets as a tensor, with class names for classification (integer targets unless told otherwise)."""
    if task not in (None, *TASKS):
        raise DataError(f"unknown task {task!r} for {where}; one of {', '.join(TASKS)}")
    integer = np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_
    if task == "classification" or (task is None and integer):
        if not integer:
            if not np.all(np.mod(y, 1) == 0):
                raise DataError(f"{where}: the target holds fractional values, which are not class indices; "
                                f"train with --task regression")
        y = y.astype(np.int64)
        if y.ndim != 1:
            raise DataError(f"{where}: class targets must be one index per sample, got shape {y.shape}")
        if len(y) and y.min() < 0:
            raise DataError(f"{where}: class targets must be >= 0, found {int(y.min())}")
        k = int(y.max()) + 1 if len(y) else 1
        return torch.from_numpy(y), tuple(str(i) for i in range(k))
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)), ()


def split_arrays(train: ArrayDataset, test_fraction: float = 0.1, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """A fixed random train/test split (the same everywhere for a seed); at least one sample in each."""
    n = len(train)
    if n < 2:
        raise DataError(f"{train.name}: {n} sample(s) cannot be split into training and test data; give more")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = min(n - 1, max(1, round(n * test_fraction)))
    return train.subset(order[k:].sort().values), train.subset(order[:k].sort().values)


def load_npz(path: str | Path, *, task: str | None = None, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """``x``/``y`` arrays from ``path`` (or several named inputs and ``y``); ``NAME_test`` keys are the test
    split, else a tenth is held out. Integer ``y`` is classification unless ``task='regression'``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"arrays:{path}: no such file; give a .npz written by numpy.savez(path, x=..., y=...)")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DataError(f"arrays:{path} is not a readable .npz file (numpy.savez): {e}") from e
    if "y" not in arrays:
        raise DataError(f"arrays:{path} holds {', '.join(arrays) or 'nothing'} but no 'y' (the targets); save it "
                        f"with numpy.savez(path, x=inputs, y=targets)")
    names = [k for k in arrays if k != "y" and not k.endswith("_test")]
    if not names:
        raise DataError(f"arrays:{path} holds targets 'y' but no inputs; save them as x=... (or several named)")
    y, classes = _targets(arrays["y"], task, f"arrays:{path}")
    keyed = None if names == ["x"] else tuple(names)

    def make(keys: Sequence[str], target: torch.Tensor, k: tuple[str, ...]) -> ArrayDataset:
        return ArrayDataset(tuple(_tensor(arrays[key], f"arrays:{path} '{key}'") for key in keys), target, k,
                            keyed, name=p.name)

    if "y_test" in arrays:
        missing = [f"{k}_test" for k in names if f"{k}_test" not in arrays]
        if missing:
            raise DataError(f"arrays:{path} has y_test but not {', '.join(missing)}")
        y_test, test_classes = _targets(arrays["y_test"], task, f"arrays:{path} y_test")
        both = classes if len(classes) >= len(test_classes) else test_classes
        return make(names, y, both), make([f"{k}_test" for k in names], y_test, both)
    return split_arrays(make(names, y, classes), seed=seed)


def load_csv(path: str | Path, target: str | None = None, *, task: str | None = None,
             seed: int = 0) -> tuple[ArrayDataset, ArrayDataset, str]:
    """A numeric CSV table with a header: every column but ``target`` (default: the last) is a feature.

    Features are standardised with the training split's mean and std. Returns (train, test, note).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"csv:{path}: no such file")
    try:
        with p.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"csv:{path} cannot be read as a CSV table: {e}") from e
    rows = [r for r in rows if r]
    if len(rows) < 3:
        raise DataError(f"csv:{path} needs a header row and at least two rows of data")
    header = [h.strip() for h in rows[0]]
    col = target if target is not None else header[-1]
    if col not in header:
        raise DataError(f"csv:{path} has no column {col!r}; its columns are {', '.join(header)} (--target NAME)")
    t = header.index(col)
    try:
        table = np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)
    except ValueError as e:
        raise DataError(f"csv:{path}: every value must be a number ({e}); encode text columns as numbers first") \
            from None
    if table.shape[1] != len(header):
        raise DataError(f"csv:{path}: rows have {table.shape[1]} values but the header names {len(header)}")
    x = np.delete(table, t, axis=1).astype(np.float32)
    y_raw = table[:, t]
    integral = np.all(np.mod(y_raw, 1) == 0)
    y, classes = _targets(y_raw.astype(np.int64) if integral and task != "regression" else y_raw, task,
                          f"csv:{path} column {col!r}")
    whole = ArrayDataset((torch.from_numpy(x),), y, classes, None, name=p.name)
    train, test = split_arrays(whole, seed=seed)
    mean, std = train.inputs[0].mean(0), train.inputs[0].std(0).clamp_min(1e-6)
    train = replace(train, inputs=((train.inputs[0] - mean) / std,))
    test = replace(test, inputs=((test.inputs[0] - mean) / std,))
    note = (f"csv:{p.name}: {x.shape[1]} feature columns standardised with the training split's mean and std; "
            f"target {col!r} ({'classes ' + str(len(classes)) if classes else 'regression'})")
    return train, test, note


def load_synthetic_arrays(input_sizes: Sequence[Sequence[int]], *, dtypes: Sequence[torch.dtype] | None = None,
                          vocab_sizes: Sequence[int | None] | None = None, names: Sequence[str] | None = None,
                          num_classes: int = 10, target_size: Sequence[int] | None = None,
                          num_samples: int = 10_000, num_test: int | None = None,
                          seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Random inputs of any shapes (standard normal floats, or ids below each ``vocab_sizes`` entry) and random
    targets: ``num_classes`` classes, or regression values of ``target_size`` when that is given."""
    if num_samples < 1:
        raise DataError(f"synthetic data needs at least one sample, got num_samples={num_samples}")
    sizes = [tuple(int(s) for s in size) for size in input_sizes]
    if not sizes or any(s <= 0 for size in sizes for s in size):
        raise DataError(f"synthetic data needs positive input sizes, got {input_sizes}")
    kinds = list(dtypes) if dtypes is not None else [torch.float32] * len(sizes)
    vocabs = list(vocab_sizes) if vocab_sizes is not None else [None] * len(sizes)
    n_test = max(1, num_samples // 10) if num_test is None else num_test
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> ArrayDataset:
        xs = []
        for size, dtype, vocab in zip(sizes, kinds, vocabs):
            if dtype.is_floating_point:
                xs.append(torch.randn((n, *size), generator=g).to(dtype))
            else:
                xs.append(torch.randint(0, max(int(vocab or 2), 1), (n, *size), generator=g, dtype=torch.long))
        if target_size is not None:
            return ArrayDataset(tuple(xs), torch.randn((n, *target_size), generator=g), (),
                                tuple(names) if names else None, name="synthetic")
        y = torch.randint(0, num_classes, (n,), generator=g)
        return ArrayDataset(tuple(xs), y, tuple(str(i) for i in range(num_classes)),
                            tuple(names) if names else None, name="synthetic")

    return make(num_samples), make(n_test)

