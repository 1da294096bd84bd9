"""A small PNG of the per-layer statistics at initialisation (needs matplotlib: ``torchsmith[plot]``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torchsmith._files import write_atomically
from torchsmith._plotting import check_plot_path, new_figure
from torchsmith.errors import ConfigError, format_size

if TYPE_CHECKING:
    from torchsmith._check.report import CheckReport

__all__ = ["plot_layer_stats", "check_plot_path"]


def plot_layer_stats(report: CheckReport, path: str | Path) -> Path:
    """Activation std, gradient std (log scale) and zero fraction per layer, in forward order."""
    stats = report.layer_stats
    if not stats:
        raise ConfigError("the report has no per-layer statistics to plot; run check with the 'signal' check")
    out = check_plot_path(path)
    idx = list(range(len(stats)))
    # Its own Agg canvas, no matplotlib.use(): a notebook's inline backend is left alone.
    fig = new_figure(figsize=(max(6.0, min(16.0, 0.12 * len(stats) + 4)), 6.0), dpi=100)
    ax1, ax2, ax3 = fig.subplots(3, 1, sharex=True)
    floor = 1e-12  # log axes cannot show 0
    ax1.semilogy(idx, [max(s.act_std, floor) for s in stats], marker=".", lw=1)
    ax1.set_ylabel("activation std")
    grads = [(i, s.grad_std) for i, s in zip(idx, stats) if s.grad_std is not None]
    if grads:
        ax2.semilogy([i for i, _ in grads], [max(g, floor) for _, g in grads], marker=".", lw=1, color="tab:orange")
    ax2.set_ylabel("gradient std")
    ax3.bar(idx, [s.zero_frac for s in stats], color="tab:gray")
    ax3.set_ylim(0, 1)
    ax3.set_ylabel("zero fraction")
    if len(stats) <= 40:
        ax3.set_xticks(idx)
        ax3.set_xticklabels([s.module or "(model)" for s in stats], rotation=90, fontsize=6)
    else:
        ax3.set_xlabel("layer (forward order)")
    size = format_size(report.input_size)
    ax1.set_title(f"{report.model} at initialisation, input {size}")
    fig.tight_layout()
    return write_atomically(out, lambda f: fig.savefig(f, format="png"))
