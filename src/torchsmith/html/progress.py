"""A training run's live progress bar in a Jupyter cell, as HTML.

The bar with epoch, step, loss, accuracy, images/s and ETA, and under it one table row per
finished epoch: what ``torchsmith.train.progress.NotebookReporter`` draws (and redraws in place)
in the cell that called ``fit``.
"""

from __future__ import annotations

from typing import Any

from torchsmith.html._page import esc, fragment, notes_list
from torchsmith.html.train import history_table

__all__ = ["progress_html"]


def _rate(rate: float) -> str:
    return f"{rate / 1000:.1f}k img/s" if rate >= 1000 else f"{rate:.0f} img/s"


def progress_html(*, done: int, total: int, epoch: int, epochs: int, step: int, steps: int, loss: float | None,
                  acc: float | None, rate: float | None, eta: str, history: list[dict[str, Any]],
                  messages: list[str], finished: bool) -> str:
    """The progress cell: a bar, the numbers, the finished epochs, the run's messages."""
    pct = 100.0 * done / total if total else 0.0
    numbers = [f"epoch {epoch}/{epochs}", f"step {step}/{steps}"]
    if loss is not None and acc is not None:
        numbers += [f"loss {loss:.4f}", f"acc {100 * acc:.2f}%"]
    if rate:
        numbers.append(_rate(rate))
    numbers.append("done" if finished else f"eta {eta}")
    state = "done" if finished else ""
    parts = [f'<div class="title">training: {pct:.0f}% ({done}/{total} steps)</div>',
             f'<div class="bar {state}" role="progressbar" aria-valuenow="{pct:.0f}" aria-valuemin="0" '
             f'aria-valuemax="100"><div style="width:{pct:.1f}%"></div></div>',
             f'<div class="mono">{esc("  ".join(numbers))}</div>']
    if history:
        parts.append(history_table(history))
    parts.append(notes_list(messages))
    return fragment("".join(parts))
