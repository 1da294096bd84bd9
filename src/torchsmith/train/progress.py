"""How a training run shows itself: a rich progress bar on a terminal, plain log lines elsewhere,
a live bar in a Jupyter cell.

The trainer calls a :class:`Reporter`; the library's default reports nothing
(library functions never print). The CLI picks :class:`RichReporter` when
stderr is a terminal and :class:`PlainReporter` when it is not (CI logs,
files, pipes), where a redrawn bar would be noise. Inside a Jupyter kernel
``make_reporter()`` picks :class:`NotebookReporter`: one output, updated in place
through an IPython display handle (no widget library, no new dependency).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from torchsmith.html.progress import progress_html

__all__ = ["Reporter", "NullReporter", "PlainReporter", "RichReporter", "NotebookReporter", "make_reporter",
           "in_notebook"]


class Reporter:
    """Receives the run's events. Every method is optional; the base class ignores them all."""

    def start(self, *, epochs: int, steps_per_epoch: int, start_epoch: int, start_step: int,
              notes: list[str], unit: str = "img") -> None:
        pass

    def update(self, *, epoch: int, step: int, loss: float, acc: float, images_per_s: float) -> None:
        """``epoch`` is 1-based; ``step`` counts steps done in this epoch."""

    def epoch_end(self, row: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


NullReporter = Reporter


def _fmt_rate(rate: float, unit: str = "img") -> str:
    return f"{rate / 1000:.1f}k {unit}/s" if rate >= 1000 else f"{rate:.0f} {unit}/s"


def _pct(acc: float | None) -> str:
    """An accuracy as a percentage; ``-`` for a task without one (regression)."""
    return "-" if acc is None or acc != acc else f"{100 * acc:.2f}%"


def _row_text(row: dict[str, Any]) -> tuple[str, str]:
    """(train, test) parts of an epoch line: loss, accuracy, and perplexity for a language model."""
    def part(split: str) -> str:
        text = f"{split} loss {row[split + '_loss']:.4f} acc {_pct(row.get(split + '_acc'))}"
        return text + (f" ppl {row[split + '_ppl']:.2f}" if split + "_ppl" in row else "")
    return part("train"), part("test")


class PlainReporter(Reporter):
    """One line per log interval and per epoch, for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.epochs = self.steps = 0
        self.unit = "img"
        self.t0 = time.perf_counter()
        self.done_at_start = 0

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, *, epochs: int, steps_per_epoch: int, start_epoch: int, start_step: int,
              notes: list[str], unit: str = "img") -> None:
        self.epochs, self.steps, self.unit = epochs, steps_per_epoch, unit
        self.t0 = time.perf_counter()
        self.done_at_start = start_epoch * steps_per_epoch + start_step
        for note in notes:
            self._write(note)
        if self.done_at_start:
            self._write(f"resuming at epoch {start_epoch + 1}, step {start_step}")

    def _eta(self, epoch: int, step: int) -> str:
        done = (epoch - 1) * self.steps + step - self.done_at_start
        left = self.epochs * self.steps - (epoch - 1) * self.steps - step
        if done <= 0:
            return "?"
        seconds = (time.perf_counter() - self.t0) / done * left
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    def update(self, *, epoch: int, step: int, loss: float, acc: float, images_per_s: float) -> None:
        self._write(f"epoch {epoch}/{self.epochs} step {step}/{self.steps} loss {loss:.4f} "
                    f"acc {_pct(acc)} {_fmt_rate(images_per_s, self.unit)} eta {self._eta(epoch, step)}")

    def epoch_end(self, row: dict[str, Any]) -> None:
        train, test = _row_text(row)
        rate = row.get("tokens_per_s", row["images_per_s"])
        self._write(f"epoch {row['epoch']}/{self.epochs} done: {train} | {test} | {_fmt_rate(rate, self.unit)} | "
                    f"{row['seconds']:.1f}s")

    def message(self, text: str) -> None:
        self._write(text)


class RichReporter(Reporter):
    """A live progress bar: epoch, step, loss, accuracy, images/s and ETA, with a line per epoch above it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stderr)
        self.progress: Any = None
        self.task: Any = None
        self.epochs = self.steps = 0
        self.unit = "img"

    def start(self, *, epochs: int, steps_per_epoch: int, start_epoch: int, start_step: int,
              notes: list[str], unit: str = "img") -> None:
        self.epochs, self.steps, self.unit = epochs, steps_per_epoch, unit
        for note in notes:
            self.console.print(note, markup=False, highlight=False)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  {task.fields[rate]}"),
            TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=False,
        )
        self.progress.start()
        done = start_epoch * steps_per_epoch + start_step
        self.task = self.progress.add_task("train", total=epochs * steps_per_epoch, completed=done,
                                           epoch=start_epoch + 1, loss="-", acc="-", rate="-")

    def update(self, *, epoch: int, step: int, loss: float, acc: float, images_per_s: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=(epoch - 1) * self.steps + step, epoch=epoch,
                                 loss=f"{loss:.4f}", acc=_pct(acc), rate=_fmt_rate(images_per_s, self.unit))

    def epoch_end(self, row: dict[str, Any]) -> None:
        train, test = _row_text(row)
        rate = row.get("tokens_per_s", row["images_per_s"])
        text = (f"epoch {row['epoch']:>3}/{self.epochs}  {train}  {test}  {_fmt_rate(rate, self.unit)}  "
                f"{row['seconds']:.1f}s")
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)

    def message(self, text: str) -> None:
        (self.progress.console if self.progress is not None else self.console).print(text, markup=False,
                                                                                      highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def in_notebook() -> bool:
    """True inside a Jupyter kernel. IPython is never imported to find out: a kernel has imported it already."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


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
              notes: list[str], unit: str = "img") -> None:
        self.epochs, self.steps = epochs, steps_per_epoch
        self.epoch, self.step = start_epoch + 1, start_step
        self.unit = unit
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


def make_reporter(mode: str = "auto", stream: TextIO | None = None) -> Reporter:
    """``auto`` (a live bar in a Jupyter cell, rich on a terminal, plain otherwise), ``notebook``, ``rich``,
    ``plain`` or ``none``."""
    stream = stream or sys.stderr
    if mode == "none":
        return NullReporter()
    if mode == "notebook" or (mode == "auto" and "IPython" in sys.modules):
        if mode == "notebook" or in_notebook():
            return NotebookReporter()
    if mode == "rich" or (mode == "auto" and hasattr(stream, "isatty") and stream.isatty()):
        return RichReporter(stream)
    return PlainReporter(stream)
