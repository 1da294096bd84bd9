"""Hook-based feature capture as a context manager, with statistics and a feature-map plot.

>>> with torchsmith.capture(model, "layer*") as feats:
...     model(x)
>>> feats["layer1"].shape

Captured tensors are detached copies (an in-place ReLU later in the forward cannot
change them), and every hook is removed on exit, also when the forward raises.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith._plotting import check_plot_path, new_figure, save_figure
from torchsmith.contract import output_tensors
from torchsmith.errors import ConfigError, UnknownNameError

__all__ = ["capture", "Captured", "FeatureStats", "feature_stats", "plot_features", "match_layers", "WHAT",
           "PLOT_SUFFIXES"]

#: The files plot_features writes, by suffix (the first is the usual one).
PLOT_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")

WHAT = ("output", "input", "grad")


def match_layers(model: nn.Module, layers: str | Sequence[str]) -> list[str]:
    """Module names matching the globs ``layers`` (``"layer*"``, ``"features.0"``), in model order.

    ``*`` stays within one dotted component (``"layer*"`` is layer1 ... layer4, not their
    insides), ``**`` crosses dots (``"layer1.**"`` is everything inside layer1), ``?`` is one
    character; ``""`` names the model itself. A pattern that matches nothing is an error with
    close matches.
    """
    if not isinstance(layers, str) and not (isinstance(layers, Sequence)
                                            and all(isinstance(p, str) for p in layers)):
        raise ConfigError(f"layers must be a name or glob such as 'layer1' or 'layer*', or a list of them, "
                          f"not {layers!r}")
    patterns = [layers] if isinstance(layers, str) else list(layers)
    if not patterns:
        raise ConfigError("no layers given; name at least one, e.g. 'layer1' or 'layer*'")
    names = [n for n, _ in model.named_modules()]
    chosen: list[str] = []
    for pat in patterns:
        rx = _glob(pat)
        hits = [n for n in names if (n == pat if pat == "" else rx.fullmatch(n) is not None and n != "")]
        if not hits:
            raise UnknownNameError("layer", pat, [n for n in names if n],
                                   hint="see `torchsmith show MODEL --modules` for the names")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _glob(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        c = pattern[i]
        out.append("[^.]*" if c == "*" else "[^.]" if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out))


class Captured(Mapping[str, Any]):
    """Layer name -> what it produced on its last call; :meth:`calls` gives every call."""

    def __init__(self, names: Sequence[str], what: str) -> None:
        self.names = list(names)
        self.what = what
        self._calls: dict[str, list[Any]] = {n: [] for n in names}

    def __getitem__(self, name: str) -> Any:
        calls = self._calls[name]
        if not calls:
            raise KeyError(f"layer {name!r} has not run (yet) with {self.what} captured")
        return calls[-1]

    def __iter__(self) -> Iterator[str]:
        return (n for n in self.names if self._calls[n])

    def __len__(self) -> int:
        return sum(1 for n in self.names if self._calls[n])

    def calls(self, name: str) -> list[Any]:
        """Everything captured for ``name``, one entry per call (a reused module runs several times)."""
        return list(self._calls[name])

    def clear(self) -> None:
        for v in self._calls.values():
            v.clear()


def _detach(obj: Any) -> Any:
    # A copy, not a view: in-place ops later in the forward (ReLU(inplace=True)) must not change it.
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach(o) for o in obj) if type(obj) in (list, tuple) else [_detach(o) for o in obj]
    if isinstance(obj, Mapping):  # a dict or a transformers ModelOutput: kept as a plain dict
        return {k: _detach(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _detach(getattr(obj, f.name, None)) for f in dataclasses.fields(obj)}
    return obj


def _single(obj: Any) -> Any:
    """A lone tensor in a 1-tuple of positional inputs is stored as the tensor itself."""
    return obj[0] if isinstance(obj, tuple) and len(obj) == 1 else obj


@contextmanager
def capture(model: nn.Module, layers: str | Sequence[str], *, what: str = "output") -> Iterator[Captured]:
    """Record the outputs, inputs or output gradients of the layers matching ``layers`` while the block runs.

    A context manager: every hook is removed on exit, even when the block raises. Gradients arrive when
    ``backward()`` runs inside the block.

    Args:
        model: The module whose submodules are captured.
        layers: Module paths or glob patterns: ``"layer*"`` matches ``layer1`` .. ``layer4``,
            ``"layer1.**"`` everything inside ``layer1``; or a sequence of them.
        what: ``"output"``, ``"input"`` or ``"grad"`` (the gradient with respect to the output).

    Yields:
        A :class:`Captured` mapping, layer name -> detached copy of what it produced on its last call
        (``calls(name)`` gives every call).

    Raises:
        UnknownNameError: A pattern matches no module (with close matches), or ``what`` is unknown.
        ConfigError: ``layers`` is empty or not a name, a glob or a list of them.
    """
    if what not in WHAT:
        raise UnknownNameError("capture target", what, WHAT)
    names = match_layers(model, layers)
    result = Captured(names, what)
    modules = dict(model.named_modules())
    handles: list[Any] = []

    def make_hook(name: str) -> Any:
        store = result._calls[name]
        if what == "input":
            def on_input(m: nn.Module, args: Any, kwargs: Any) -> None:
                # Inputs passed by keyword (self.attn(hidden_states=x)) count too: without them a
                # keyword-only call would be captured as an empty tuple, with no tensor to show.
                if not kwargs:
                    store.append(_detach(_single(args)))
                else:
                    store.append(_detach((*args, kwargs) if args else kwargs))
            return on_input
        if what == "output":
            return lambda m, args, out: store.append(_detach(out))

        def on_output(m: nn.Module, args: Any, out: Any) -> None:
            # A hook on the output tensor itself: unlike a full backward hook it tolerates in-place ops.
            t = _first_tensor(out)  # a tuple's or dict's first tensor
            if t is not None and t.requires_grad:
                handles.append(t.register_hook(lambda g: store.append(g.detach().clone())))
        return on_output

    try:
        for name in names:
            m = modules[name]
            if what == "input":
                handles.append(m.register_forward_pre_hook(make_hook(name), with_kwargs=True))
            else:
                handles.append(m.register_forward_hook(make_hook(name)))
        yield result
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- statistics
@dataclass
class FeatureStats:
    layer: str
    call: int
    shape: tuple[int, ...]
    dtype: str
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    zeros: float | None  # fraction of exact zeros (dead ReLUs)


def _first_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor of any output structure (tuple, dict, ``ModelOutput``, dataclass), or None."""
    tensors = output_tensors(obj)
    return tensors[0] if tensors else None


def feature_stats(captured: Captured) -> list[FeatureStats]:
    """Shape and statistics of every captured tensor (the first tensor of a tuple/dict output)."""
    out: list[FeatureStats] = []
    for name in captured.names:
        for i, obj in enumerate(captured.calls(name), start=1):
            t = _first_tensor(obj)
            if t is None:
                continue
            if t.numel() and not t.is_complex() and not t.is_meta:
                x = t.double()
                out.append(FeatureStats(name, i, tuple(t.shape), str(t.dtype).removeprefix("torch."),
                                        float(x.mean()), float(x.std()) if t.numel() > 1 else 0.0,
                                        float(x.min()), float(x.max()), float((x == 0).double().mean())))
            else:
                out.append(FeatureStats(name, i, tuple(t.shape), str(t.dtype).removeprefix("torch."),
                                        None, None, None, None, None))
    return out


# --------------------------------------------------------------------------- plotting
def _maps(t: torch.Tensor, max_maps: int) -> list[torch.Tensor]:
    """2-D images to draw from one captured tensor of the first sample."""
    t = t.detach().float().cpu()
    if t.dim() >= 2:
        t = t[0]  # first sample of the batch
    if t.dim() == 3:  # (C, H, W): one map per channel
        return [t[c] for c in range(min(t.shape[0], max_maps))]
    if t.dim() == 2:  # (T, C) tokens, or (H, W)
        return [t]
    if t.dim() == 1:  # a feature vector: as a near-square image
        n = t.numel()
        side = math.ceil(math.sqrt(n))
        padded = torch.full((side * side,), float("nan"))
        padded[:n] = t
        return [padded.view(side, side)]
    return [t.reshape(1, -1)]


def plot_features(captured: Captured, path: str | Path, *, image: torch.Tensor | None = None,
                  max_maps: int = 8, title: str | None = None) -> Path:
    """Draw the captured feature maps as an image grid (one row per layer) into ``path`` (PNG).

    ``image`` (C, H, W), when given, is drawn first so the maps can be compared with it.
    """
    path = check_plot_path(path, PLOT_SUFFIXES)
    rows: list[tuple[str, list[torch.Tensor]]] = []
    if image is not None:
        img = image.detach().float().cpu()
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) / (hi - lo) if hi > lo else img * 0
        rows.append(("input", [img.permute(1, 2, 0) if img.shape[0] == 3 else img[0]]))
    for name in captured.names:
        for i, obj in enumerate(captured.calls(name), start=1):
            t = _first_tensor(obj)
            if t is not None and t.numel():
                label = name if len(captured.calls(name)) == 1 else f"{name} (call {i})"
                rows.append((f"{label} {list(t.shape)}", _maps(t, max_maps)))
    if not rows:
        raise ConfigError("nothing was captured to plot; did the forward run?")
    ncols = max(len(m) for _, m in rows)
    # Its own Agg canvas, no matplotlib.use() or pyplot: a notebook's inline backend is left alone.
    fig = new_figure(figsize=(1.6 * ncols + 1, 1.7 * len(rows) + 0.5))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (label, maps) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(maps):
                m = maps[c]
                ax.imshow(m.numpy(), cmap=None if m.dim() == 3 else "viridis", aspect="auto")
        axes[r][0].set_title(label, fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
