"""A training run's live progress bar in a Jupyter cell.

One output, updated in place through an IPython display handle (no widget library, no
new dependency): the bar with epoch, step, loss, accuracy, images/s and ETA, and under
it one table row per finished epoch. ``make_reporter()`` picks this reporter when it
runs inside a Jupyter kernel (``fit(model, "digits", reporter=make_reporter())``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from torchsmith.html._page import esc, fragment, notes_list
from torchsmith.html.train import history_table
from torchsmith.train.progress import Reporter

__all__ = ["NotebookReporter", "progress_html", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel. IPython is never imported to find out: a kernel has imported it already."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


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


class NotebookReporter(Reporter):
    """Draws the run in the cell that called ``fit``; redraws at most every ``min_interval`` seconds."""

    def __init__(self, min_interval: float = 0.25) -> None:
        self.min_interval = min_interval
        self.handle: Any = None
        self.epochs = self.steps = 0
        self.epoch = self.step = 0
        self.loss: float | None = None
        self.acc: float | None = None
        self.rate: float | None = None
        self.history: list[dict[str, Any]] = []
        self.messages: list[str] = []
        self.done_at_start = 0
        self.t0 = self.last_draw = 0.0
        self.finished = False

    # ---------------------------------------------------------------- drawing
    def _done(self) -> int:
        return max(self.epoch - 1, 0) * self.steps + self.step

    def _eta(self) -> str:
        done = self._done() - self.done_at_start
        left = self.epochs * self.steps - self._done()
        if done <= 0:
            return "?"
        seconds = (time.perf_counter() - self.t0) / done * left
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    def html(self) -> str:
        return progress_html(done=self._done(), total=self.epochs * self.steps, epoch=self.epoch, epochs=self.epochs,
                             step=self.step, steps=self.steps, loss=self.loss, acc=self.acc, rate=self.rate,
                             eta=self._eta(), history=self.history, messages=self.messages, finished=self.finished)

    def _draw(self, force: bool = False) -> None:
        from IPython.display import HTML, display

        now = time.perf_counter()
        if not force and now - self.last_draw < self.min_interval:
            return
        self.last_draw = now
        if self.handle is None:
            self.handle = display(HTML(self.html()), display_id=True)
        else:
            self.handle.update(HTML(self.html()))

    # ---------------------------------------------------------------- Reporter
    def start(self, *, epochs: int, steps_per_epoch: int, start_epoch: int, start_step: int,
              notes: list[str]) -> None:
        self.epochs, self.steps = epochs, steps_per_epoch
        self.epoch, self.step = start_epoch + 1, start_step
        self.done_at_start = start_epoch * steps_per_epoch + start_step
        self.t0 = time.perf_counter()
        self.messages += notes
        if self.done_at_start:
            self.messages.append(f"resuming at epoch {start_epoch + 1}, step {start_step}")
        self._draw(force=True)

    def update(self, *, epoch: int, step: int, loss: float, acc: float, images_per_s: float) -> None:
        self.epoch, self.step, self.loss, self.acc, self.rate = epoch, step, loss, acc, images_per_s
        self._draw(force=step == self.steps)

    def epoch_end(self, row: dict[str, Any]) -> None:
        self.history.append(dict(row))
        self._draw(force=True)

    def message(self, text: str) -> None:
        self.messages.append(text)
        self._draw(force=True)

    def close(self) -> None:
        if self.handle is None and not self.messages:
            return
        self.finished = self._done() >= self.epochs * self.steps > 0
        self._draw(force=True)
