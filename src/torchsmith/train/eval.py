"""Evaluation: loss, accuracy, per-class accuracy and the confusion matrix.

Metrics accumulate on the device (a running loss sum, a confusion matrix by
``bincount``) and are read once at the end: one sync per evaluation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchsmith.checkpoint import load_training_state
from torchsmith.contract import device_dtype, primary_output
from torchsmith.data import DataSplits, DeviceLoader
from torchsmith.errors import CheckpointError, ConfigError, DataError, TorchsmithError
from torchsmith.html.train import eval_html
from torchsmith.train.distributed import DistInfo, all_reduce_sum
from torchsmith.train.inputs import ModelInput, fitted_splits, misfit, model_input
from torchsmith.train.run import load_run_model

__all__ = ["EvalResult", "evaluate", "evaluate_checkpoint", "run_eval"]


@dataclass
class EvalResult:
    """How a model did on one split. ``confusion[i][j]``: samples of class i predicted as j.

    Attributes:
        loss: The mean cross-entropy loss.
        accuracy: The fraction of samples predicted right.
        num_samples: Samples evaluated.
        classes: The class names, in label order.
        confusion: The confusion matrix, rows the true class, columns the prediction.
        dataset: The dataset's name.
        split: ``"test"`` or ``"train"``.
        source: The checkpoint evaluated, when there is one.
        notes: What was done to fit the data to the model.
    """

    loss: float
    accuracy: float
    num_samples: int
    classes: tuple[str, ...]
    confusion: list[list[int]]
    dataset: str = ""
    split: str = "test"
    source: str | None = None  # the checkpoint evaluated, when there is one
    notes: list[str] = field(default_factory=list)

    @property
    def per_class_accuracy(self) -> list[float]:
        """Recall per class (correct / samples of that class); NaN for a class with no samples."""
        out = []
        for i, row in enumerate(self.confusion):
            total = sum(row)
            out.append(row[i] / total if total else float("nan"))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "split": self.split, "source": self.source, "loss": self.loss,
                "accuracy": self.accuracy, "num_samples": self.num_samples, "classes": list(self.classes),
                "per_class_accuracy": self.per_class_accuracy, "confusion": self.confusion}

    def __str__(self) -> str:
        head = f"{self.dataset} {self.split}" + (f" ({self.source})" if self.source else "")
        lines = [f"{head}: {self.num_samples} samples, loss {self.loss:.4f}, accuracy {100 * self.accuracy:.2f}%",
                 "", "per-class accuracy:"]
        width = max(len(c) for c in self.classes)
        for name, acc, row in zip(self.classes, self.per_class_accuracy, self.confusion):
            lines.append(f"  {name.ljust(width)}  {100 * acc:6.2f}%  ({row[self.classes.index(name)]}/{sum(row)})")
        lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
        cell = max(4, max(len(str(v)) for row in self.confusion for v in row) + 1,
                   max(len(c) for c in self.classes[:30]) + 1)
        if len(self.classes) <= 30:
            lines.append(" " * (width + 2) + "".join(c[:cell - 1].rjust(cell) for c in self.classes))
            for name, row in zip(self.classes, self.confusion):
                lines.append(f"  {name.ljust(width)}" + "".join(str(v).rjust(cell) for v in row))
        else:
            lines.append(f"  ({len(self.classes)} classes: too many to print; see to_dict()['confusion'])")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return eval_html(self)


def run_eval(model: nn.Module, loader: DeviceLoader, num_classes: int, *, autocast: Any = None,
             dist: DistInfo | None = None, given: ModelInput | None = None,
             data_name: str = "dataset") -> tuple[float, int, int, torch.Tensor]:
    """(loss sum, correct, count, confusion (K, K) on the CPU) over ``loader``, summed over ranks.

    The model is put in eval mode and given back in the mode it was in.
    """
    device = loader.device
    k = num_classes
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(k * k, dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), (autocast if autocast is not None else contextlib.nullcontext()):
            for x, y in loader.epoch():
                try:
                    out = model(x)
                except TorchsmithError:
                    raise
                except Exception as e:
                    raise misfit(model, data_name, tuple(x.shape[1:]), given or ModelInput(None), e) from e
                logits = primary_output(out)  # a tensor, or the logits of a dict / ModelOutput / named tuple
                if logits.dim() != 2 or logits.shape[1] != k:
                    raise DataError(f"the model gives outputs of shape {tuple(logits.shape)} but the data has "
                                    f"{k} classes; build it with num_classes={k}")
                loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
                confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k)
    finally:
        model.train(was_training)
    if dist is not None and dist.enabled:
        all_reduce_sum(loss_sum, dist)
        all_reduce_sum(confusion, dist)
    matrix = confusion.view(k, k).cpu()
    count = int(matrix.sum())
    return float(loss_sum), int(matrix.diag().sum()), count, matrix


def evaluate(model: nn.Module, data: str | DataSplits, *, split: str = "test", batch_size: int = 1024,
             mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
             input_size: Any = None, input_dtype: torch.dtype | str | None = None,
             data_dir: str | Path | None = None) -> EvalResult:
    """Evaluate ``model`` on ``data``'s ``split`` on the device the model is on.

    The data is fitted to the model's input as training does: ``input_size`` when given, else what the model
    contract knows, else the data's own size.

    Args:
        model: The module to evaluate (its mode is restored after).
        data: A dataset name (``"digits"``, ...) or :class:`DataSplits`.
        split: ``"test"`` or ``"train"``.
        batch_size: Samples per forward.
        mean: Per-channel normalisation the model was trained with (the trainer stores it in its checkpoints);
            default, the data's own.
        std: Per-channel standard deviation, as ``mean``.
        input_size: One sample without the batch, ``(3, 32, 32)``.
        input_dtype: The input's dtype (``torch.long`` for token ids).
        data_dir: Where ``cifar10``/``mnist``/``fashion-mnist`` files lie.

    Returns:
        The :class:`EvalResult`: loss, accuracy, per-class accuracy and the confusion matrix.

    Raises:
        ConfigError: ``model`` is not a module, or a bad split, batch size or data argument.
        DataError: The data cannot be read, or the model's outputs do not match its classes.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"evaluate needs an nn.Module, not {type(model).__name__}")
    if not isinstance(data, (str, DataSplits)):
        raise ConfigError(f"evaluate needs a dataset name (e.g. 'digits') or DataSplits, not {type(data).__name__}")
    given = model_input(model, input_size, input_dtype)
    data = fitted_splits(model, given, data, data_dir=data_dir)
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', not {split!r}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    part = data.train if split == "train" else data.test
    device, dtype = device_dtype(model)
    loader = DeviceLoader(part, batch_size=batch_size, mean=mean or data.mean, std=std or data.std,
                          device=device, dtype=given.float_dtype or dtype)
    loss_sum, correct, count, matrix = run_eval(model, loader, data.num_classes, given=given, data_name=data.name)
    return EvalResult(loss=loss_sum / max(count, 1), accuracy=correct / max(count, 1), num_samples=count,
                      classes=data.classes, confusion=matrix.tolist(), dataset=data.name, split=split,
                      notes=[*given.notes, *data.notes])


def evaluate_checkpoint(path: str | Path, data: str | DataSplits = "digits", *, data_dir: str | None = None,
                        split: str = "test", batch_size: int = 1024, device: str = "cpu", input_size: Any = None,
                        input_dtype: torch.dtype | str | None = None) -> EvalResult:
    """Rebuild the model saved at ``path`` (or in run directory ``path``) and evaluate it on ``data``.

    The normalisation statistics and the input size the trainer saved with the checkpoint are used, so the
    evaluation sees exactly the inputs training did.

    Args:
        path: A checkpoint, or a run directory (its ``best.safetensors``, else ``last.safetensors``).
        data: A dataset name or :class:`DataSplits`.
        data_dir: Where ``cifar10``/``mnist``/``fashion-mnist`` files lie.
        split: ``"test"`` or ``"train"``.
        batch_size: Samples per forward.
        device: Where the model runs (``"cpu"``, ``"cuda"``).
        input_size: Overrides the saved input size.
        input_dtype: The input's dtype.

    Returns:
        The :class:`EvalResult`, with ``source`` naming the checkpoint.

    Raises:
        CheckpointError: No checkpoint at ``path``, or one that cannot be rebuilt.
        ConfigError: CUDA asked for where there is none, or a bad argument.
        DataError: The data cannot be read or does not fit the model.
    """
    ckpt = Path(path)
    if ckpt.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (ckpt / name).is_file():
                ckpt = ckpt / name
                break
        else:
            raise CheckpointError(f"{path} is a directory without best.safetensors or last.safetensors; "
                                  f"give the checkpoint file or a `torchsmith train --out` directory")
    model = load_run_model(ckpt)
    extra: dict[str, Any] = {}
    try:
        extra = load_training_state(ckpt, restore_rng=False) or {}
    except CheckpointError:
        extra = {}  # weights-only checkpoint: fall back to the data's own statistics
    saved = extra.get("data", {}) if isinstance(extra, dict) else {}
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but CUDA is not available; use --device cpu")
    model.to(device)
    if input_size is None and saved.get("input_size"):
        input_size = tuple(saved["input_size"])  # the size the model was trained at
    mean = tuple(saved["mean"]) if saved.get("mean") else None
    std = tuple(saved["std"]) if saved.get("std") else None
    result = evaluate(model, data, split=split, batch_size=batch_size, mean=mean, std=std, input_size=input_size,
                      input_dtype=input_dtype, data_dir=data_dir)
    result.source = str(ckpt)
    return result
