"""The pictures in the HTML renderings, as PNG bytes: curves, confusion matrix, per-layer statistics.

The curves are :func:`curves_figure`, which the trainer also writes as ``curves.png``; the
statistics come from the renderer of ``check --plot``. Both are drawn into a temporary folder and
read back, so the notebook, the report and the files show the same figure. Should a renderer
select matplotlib's Agg backend, a notebook would silently stop drawing ``plt.show()`` inline, so
the backend in use is put back afterwards. Each function returns None when matplotlib is not installed.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchsmith._plotting import new_figure, save_figure
from torchsmith.errors import ConfigError
from torchsmith.html._page import figure_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from torchsmith._check.report import CheckReport

__all__ = ["curves_figure", "curves_png", "layer_stats_png", "confusion_png", "have_matplotlib"]


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def _keep_backend() -> Iterator[None]:
    import matplotlib

    before = matplotlib.get_backend()
    try:
        yield
    finally:
        if matplotlib.get_backend() != before:
            matplotlib.use(before)


def curves_figure(history: Sequence[dict[str, Any]], title: str = "") -> Figure:
    """Loss and accuracy per epoch, train and test: the figure of a run's ``curves.png``."""
    epochs = [row["epoch"] for row in history]
    fig = new_figure(figsize=(10, 4))  # its own Agg canvas: a notebook's backend is left alone
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], marker="o", label="test")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], marker="o", label="train")
    ax_acc.plot(epochs, [100 * r["test_acc"] for r in history], marker="o", label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves_png(history: Sequence[dict[str, Any]], title: str = "") -> bytes | None:
    """Loss and accuracy per epoch, train and test: the run's ``curves.png``."""
    if not history or not have_matplotlib():
        return None
    with tempfile.TemporaryDirectory(prefix="torchsmith-html-") as tmp, _keep_backend():
        return save_figure(curves_figure(history, title), Path(tmp) / "curves.png", dpi=100).read_bytes()


def layer_stats_png(report: CheckReport) -> bytes | None:
    """Activation std, gradient std and zero fraction per layer: the ``check --plot`` figure."""
    if not report.layer_stats or not have_matplotlib():
        return None
    with tempfile.TemporaryDirectory(prefix="torchsmith-html-") as tmp, _keep_backend():
        try:
            return report.plot(Path(tmp) / "stats.png").read_bytes()
        except ConfigError:
            return None


def confusion_png(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> bytes | None:
    """The confusion matrix as a heat map, each cell with its count (rows: true class, columns: predicted)."""
    if not confusion or not have_matplotlib():
        return None
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    k = len(classes)
    side = min(9.0, max(3.6, 0.45 * k + 1.8))
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    ax = fig.subplots()
    counts = [[int(v) for v in row] for row in confusion]
    # Each row as a fraction of its class, so a small class is as readable as a big one.
    shade = [[v / max(sum(row), 1) for v in row] for row in counts]
    im = ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    labels = [str(c) for c in classes]
    if k <= 30:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(labels, rotation=90 if max(map(len, labels), default=0) > 3 else 0, fontsize=8)
        ax.set_yticklabels(labels, fontsize=8)
    if k <= 20:
        for i, row in enumerate(counts):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7 if k > 12 else 8,
                            color="white" if shade[i][j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=10)
    return figure_png(fig)
