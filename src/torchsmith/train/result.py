"""``TrainResult``: what a training run did, as data; ``str()`` renders it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchsmith.html.train import train_html
from torchsmith.train.config import TrainConfig

__all__ = ["TrainResult"]


@dataclass
class TrainResult:
    """The history (one dict per epoch, the columns of ``metrics.csv``) and where things were written."""

    config: TrainConfig
    history: list[dict[str, Any]]
    global_step: int
    epochs_done: int
    device: str
    world_size: int = 1
    out_dir: Path | None = None
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    best_epoch: int | None = None
    best_test_acc: float | None = None
    stopped_early: bool = False  # max_steps reached before the last epoch ended
    resumed_from: dict[str, int] | None = None  # {"epoch": ..., "step": ...} when --resume continued a run
    train_seconds: float = 0.0  # time in training steps only (no evaluation, no checkpointing)
    train_images: int = 0
    data_mean: tuple[float, ...] = ()
    data_std: tuple[float, ...] = ()
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    task: str = "classification"  # or "regression", "causal-lm"
    seq_len: int | None = None  # causal-lm: tokens a window

    @property
    def images_per_s(self) -> float:
        """Training throughput over this process's run (all ranks together under torchrun)."""
        return self.train_images / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    @property
    def test_acc(self) -> float | None:
        return self.final.get("test_acc")

    @property
    def test_loss(self) -> float | None:
        return self.final.get("test_loss")

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(), "history": self.history, "global_step": self.global_step,
            "epochs_done": self.epochs_done, "device": self.device, "world_size": self.world_size,
            "out_dir": str(self.out_dir) if self.out_dir else None,
            "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "best_epoch": self.best_epoch, "best_test_acc": self.best_test_acc, "stopped_early": self.stopped_early,
            "resumed_from": self.resumed_from, "images_per_s": self.images_per_s,
            "files": {k: str(v) for k, v in self.files.items()}, "notes": self.notes, "task": self.task,
            "seq_len": self.seq_len,
        }

    def __str__(self) -> str:
        lines = []
        if self.history:
            f = self.final
            if self.task == "causal-lm":
                score = (f"test loss {f['test_loss']:.4f}, perplexity {f.get('test_ppl', float('nan')):.2f}, "
                         f"next-token accuracy {100 * f['test_acc']:.2f}%")
            elif f.get("test_acc") is None:
                score = f"test loss (MSE) {f['test_loss']:.4f}"
            else:
                score = f"test accuracy {100 * f['test_acc']:.2f}%, test loss {f['test_loss']:.4f}"
            lines.append(f"trained {self.epochs_done}/{self.config.epochs} epochs ({self.global_step} steps, "
                         f"{self.task}) on {self.device}"
                         + (f" x{self.world_size} ranks" if self.world_size > 1 else "") + f": {score}")
        else:
            lines.append(f"stopped after {self.global_step} steps, before the first epoch ended")
        if self.stopped_early:
            lines.append(f"stopped at max_steps={self.config.max_steps}; continue with --resume {self.out_dir}")
        if self.best_epoch is not None and self.task == "causal-lm" and len(self.history) >= self.best_epoch:
            best = self.history[self.best_epoch - 1]
            lines.append(f"best epoch {self.best_epoch} (lowest test loss): test loss {best['test_loss']:.4f}, "
                         f"perplexity {best.get('test_ppl', math.exp(min(best['test_loss'], 700))):.2f}")
        elif self.best_epoch is not None and self.best_test_acc is not None:
            lines.append(f"best epoch {self.best_epoch}: test accuracy {100 * self.best_test_acc:.2f}%")
        if self.train_seconds > 0 and self.task == "causal-lm" and self.seq_len:
            lines.append(f"throughput {self.images_per_s * self.seq_len:,.0f} tokens/s ({self.train_seconds:.1f}s in "
                         f"training steps)")
        elif self.train_seconds > 0:
            lines.append(f"throughput {self.images_per_s:,.0f} samples/s ({self.train_seconds:.1f}s in training "
                         f"steps)")
        for name, path in self.files.items():
            lines.append(f"{name}: {path}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return train_html(self)
