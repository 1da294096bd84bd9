"""Training results as HTML: a run's history and curves (:class:`TrainResult`), and an evaluation's
per-class accuracy and confusion matrix (:class:`EvalResult`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torchsmith.html._page import Raw, esc, fragment, img, kv_table, notes_list, table
from torchsmith.html.plots import confusion_png, curves_png

if TYPE_CHECKING:
    from torchsmith.train.eval import EvalResult
    from torchsmith.train.result import TrainResult

__all__ = ["train_html", "train_body", "eval_html", "eval_body", "history_table", "confusion_table"]


def _pct(x: Any) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def history_table(history: Sequence[dict[str, Any]], best_epoch: int | None = None) -> str:
    """One row per epoch, the columns of ``metrics.csv``; the best epoch is marked."""
    rows, classes = [], []
    for r in history:
        rows.append([str(r.get("epoch", "")), f"{r.get('step', '')}", f"{r.get('lr', 0):.3g}",
                     f"{r.get('train_loss', float('nan')):.4f}", _pct(r.get("train_acc")),
                     f"{r.get('test_loss', float('nan')):.4f}", _pct(r.get("test_acc")),
                     f"{r.get('images_per_s', 0):,.0f}", f"{r.get('seconds', 0):.1f}"])
        classes.append("best" if best_epoch is not None and r.get("epoch") == best_epoch else "")
    return table(["epoch", "step", "lr", "train loss", "train acc", "test loss", "test acc", "images/s", "seconds"],
                 rows, right=range(9), row_classes=classes)


def curves_html(history: Sequence[dict[str, Any]], title: str = "") -> str:
    png = curves_png(history, title)
    return img(png, "loss and accuracy per epoch", width=1000) if png is not None else ""


def train_body(result: TrainResult, *, curves: bool = True) -> str:
    """The lines of ``str(result)`` as a table of facts, then the epochs and the curves."""
    pairs: list[tuple[str, Any]] = []
    if result.history:
        f = result.final
        ranks = f" x{result.world_size} ranks" if result.world_size > 1 else ""
        head = (f"trained {result.epochs_done}/{result.config.epochs} epochs ({result.global_step} steps) on "
                f"{result.device}{ranks}: test accuracy {_pct(f['test_acc'])}, test loss {f['test_loss']:.4f}")
    else:
        head = f"stopped after {result.global_step} steps, before the first epoch ended"
    if result.stopped_early:
        pairs.append(("stopped", f"at max_steps={result.config.max_steps}; continue with --resume {result.out_dir}"))
    if result.best_epoch is not None and result.best_test_acc is not None:
        pairs.append(("best epoch", f"{result.best_epoch}: test accuracy {_pct(result.best_test_acc)}"))
    if result.train_seconds > 0:
        pairs.append(("throughput", f"{result.images_per_s:,.0f} images/s ({result.train_seconds:.1f}s in "
                                    "training steps)"))
    pairs += [(name, str(path)) for name, path in result.files.items()]
    parts = [f'<div class="title">{esc(head)}</div>', kv_table(pairs)]
    if result.history:
        parts.append(history_table(result.history, result.best_epoch))
        if curves:
            parts.append(curves_html(result.history, f"{result.config.data}"))
    parts.append(notes_list(result.notes))
    return "".join(parts)


def train_html(result: TrainResult) -> str:
    return fragment(train_body(result))


def confusion_table(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """The matrix as numbers, each cell shaded by its share of the true class (rows: true, columns: predicted)."""
    head = "".join(f'<th class="num">{esc(c)}</th>' for c in classes)
    body = []
    for name, row in zip(classes, confusion):
        total = max(sum(row), 1)
        cells = "".join(
            f'<td class="num" style="background:rgba(37,99,235,{0.75 * v / total:.2f})">{v}</td>' for v in row)
        body.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    return (f'<div class="scroll"><table class="confusion"><thead><tr><th>true \\ predicted</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def eval_body(result: EvalResult, *, picture: bool = True) -> str:
    head = f"{result.dataset} {result.split}" + (f" ({result.source})" if result.source else "")
    parts = [f'<div class="title">{esc(head)}: {result.num_samples} samples, loss {result.loss:.4f}, '
             f"accuracy {_pct(result.accuracy)}</div>", "<h3>Per-class accuracy</h3>"]
    rows = []
    for i, (name, acc, row) in enumerate(zip(result.classes, result.per_class_accuracy, result.confusion)):
        bar = Raw(f'<span class="hbar" style="width:{120 * acc:.0f}px"></span>') if math.isfinite(acc) else ""
        rows.append([name, _pct(acc), f"{row[i]}/{sum(row)}", bar])
    parts.append(table(["class", "accuracy", "correct", ""], rows, right=(1, 2)))
    parts.append("<h3>Confusion matrix (rows: true class, columns: predicted)</h3>")
    png = confusion_png(result.confusion, result.classes) if picture else None
    if png is not None:
        parts.append(img(png, "confusion matrix", width=520))
    if len(result.classes) <= 30:
        parts.append(confusion_table(result.confusion, result.classes))
    elif png is None:
        parts.append(f"<p>({len(result.classes)} classes: too many to show; see to_dict()['confusion'])</p>")
    parts.append(notes_list(result.notes))
    return "".join(parts)


def eval_html(result: EvalResult) -> str:
    return fragment(eval_body(result))
