"""Per-epoch metrics on disk: ``metrics.jsonl``, ``metrics.csv`` and a PNG of the curves.

The files are rewritten whole from the run's history after every epoch, so a
resumed run's files hold every epoch exactly once, in order.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torchsmith._plotting import have_matplotlib, save_figure
from torchsmith.html.plots import curves_figure

__all__ = ["write_metrics", "plot_metrics", "METRIC_COLUMNS"]

METRIC_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s",
                  "seconds", "train_ppl", "test_ppl", "tokens_per_s")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics(out_dir: Path, history: Sequence[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``metrics.jsonl`` and ``metrics.csv`` for ``history`` (one dict per epoch)."""
    jsonl = out_dir / "metrics.jsonl"
    table = out_dir / "metrics.csv"
    _atomic_write(jsonl, "".join(json.dumps(row, sort_keys=False) + "\n" for row in history))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(METRIC_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    _atomic_write(table, buf.getvalue())
    return jsonl, table


def plot_metrics(out_dir: Path, history: Sequence[dict[str, Any]], title: str = "") -> Path | None:
    """``curves.png``: loss and accuracy per epoch, train and test. None when matplotlib is missing."""
    if not history or not have_matplotlib():
        return None
    nan = float("nan")  # a regression run has no accuracy: its panel stays empty
    history = [{**r, "train_acc": nan if r.get("train_acc") is None else r["train_acc"],
                "test_acc": nan if r.get("test_acc") is None else r["test_acc"]} for r in history]
    return save_figure(curves_figure(history, title), out_dir / "curves.png", dpi=100)
