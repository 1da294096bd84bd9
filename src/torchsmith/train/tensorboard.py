"""TensorBoard event files for a run: ``fit(..., tensorboard=True)`` / ``torchsmith train --tensorboard``.

The events go into the run directory itself, so the usual layout works as it is::

    runs/lenet-digits/events.out.tfevents...   <- one run
    runs/resnet18-cifar10/events.out.tfevents...
    tensorboard --logdir runs                  <- every run, each under its own name

Scalars, all against the global step (the ``step`` column of ``metrics.jsonl``):

* per epoch: ``loss/train``, ``loss/test``, ``accuracy/train``, ``accuracy/test``, ``lr``, ``images_per_s``:
  the values of ``metrics.jsonl``'s row for that epoch;
* per log interval (``log_every`` steps): ``loss/train_step``, the mean training loss over the interval.
  It costs nothing extra: the trainer reads its device counters at those steps anyway.

A resumed run purges the events after the step it resumes from, so a curve never holds an epoch twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchsmith.errors import ConfigError

__all__ = ["TensorBoardLog", "EPOCH_SCALARS", "LM_SCALARS", "require_tensorboard"]

#: TensorBoard tag -> metrics.jsonl column, written once per epoch.
EPOCH_SCALARS = {
    "loss/train": "train_loss", "loss/test": "test_loss", "accuracy/train": "train_acc", "accuracy/test": "test_acc",
    "lr": "lr", "images_per_s": "images_per_s",
}
#: Written too for a language model.
LM_SCALARS = {"perplexity/train": "train_ppl", "perplexity/test": "test_ppl", "tokens_per_s": "tokens_per_s"}
_MISSING = "TensorBoard logging needs the tensorboard package; install it with `pip install tensorboard`"


def require_tensorboard() -> Any:
    """torch's ``SummaryWriter`` class, or a one-line error naming the pip command when tensorboard is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch raises ImportError when tensorboard is absent or too old
        raise ConfigError(_MISSING) from e
    return SummaryWriter


class TensorBoardLog:
    """A ``SummaryWriter`` on ``log_dir``; ``purge_step`` drops events from a crashed run's tail on resume."""

    def __init__(self, log_dir: Path, *, purge_step: int | None = None) -> None:
        writer = require_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer = writer(log_dir=str(self.log_dir), purge_step=purge_step)
        self._loss = self._seen = 0.0

    def start_epoch(self, loss_sum: float = 0.0, seen: float = 0.0) -> None:
        """An epoch begins with these sums already counted (non-zero when a run resumes mid-epoch)."""
        self._loss, self._seen = loss_sum, seen

    def interval(self, step: int, loss_sum: float, seen: float) -> None:
        """Log the mean loss of the samples seen since the previous call (sums are the epoch's so far)."""
        count = seen - self._seen
        if count > 0:
            self.writer.add_scalar("loss/train_step", (loss_sum - self._loss) / count, step)
        self._loss, self._seen = loss_sum, seen

    def epoch(self, row: dict[str, Any]) -> None:
        for tag, column in {**EPOCH_SCALARS, **LM_SCALARS}.items():
            if row.get(column) is not None:
                self.writer.add_scalar(tag, float(row[column]), int(row["step"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
