"""The plot files torchsmith writes: where they may go, and a matplotlib figure that leaves the user's set-up alone.

A figure is a ``matplotlib.figure.Figure`` drawn by its own ``FigureCanvasAgg``, never through
``pyplot`` and never after ``matplotlib.use("Agg")``: selecting a backend is global, and would take a
notebook's inline backend (or a user's GUI one) away from them. No figure is registered with pyplot, so
there is nothing to close either. matplotlib is optional (``torchsmith[plot]``) and imported on use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchsmith._files import write_atomically
from torchsmith.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["INSTALL_HINT", "check_plot_path", "have_matplotlib", "new_figure", "save_figure"]

INSTALL_HINT = "plotting needs matplotlib: pip install 'torchsmith[plot]'"
_FORMAT_NAMES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".pdf": "PDF", ".svg": "SVG"}


def check_plot_path(path: str | os.PathLike[str], suffixes: Sequence[str] = (".png",)) -> Path:
    """The plot's path, if a file of one of ``suffixes`` can be written there; a ConfigError saying why not.

    Called before the work that makes the plot, so a bad path costs nothing.
    """
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        formats = ", ".join(dict.fromkeys(_FORMAT_NAMES.get(s, s) for s in suffixes))
        others = f" (or {', '.join(suffixes[1:])})" if len(suffixes) > 1 else ""
        raise ConfigError(f"the plot is written as {formats}; give a path ending in {suffixes[0]}{others}, "
                          f"not {str(path)!r}")
    if out.is_dir():
        raise ConfigError(f"cannot write {str(out)!r}: it is a folder; give a file name ending in {suffixes[0]}")
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {str(out)!r}: the folder {str(out.parent)!r} for the plot does not exist")
    return out


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def new_figure(**kwargs: Any) -> Figure:
    """A ``Figure(**kwargs)`` with its own Agg canvas; a ConfigError saying how to install matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ConfigError(INSTALL_HINT) from e
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # attaches itself to fig: savefig renders with Agg whatever the global backend is
    return fig


def save_figure(fig: Figure, path: Path, **savefig: Any) -> Path:
    """Write ``fig`` to ``path`` through a temporary file in the same folder, so a failed write never leaves
    half a file behind; the format follows the suffix. An OSError becomes a ConfigError naming the path."""
    fmt = path.suffix.lower().lstrip(".").replace("jpg", "jpeg")
    return write_atomically(path, lambda f: fig.savefig(f, format=fmt, **savefig))
