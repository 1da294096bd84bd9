"""Models whose tensors hold no values yet: built on the meta device on purpose (:func:`build_on_meta`), or
with ``nn.Lazy*`` layers that never ran (:func:`check_materialized`).

Both are asked by several layers (the summary, the memory plan, the spec writer, ``show``; the views and
``init_weights``), so they sit low, beside the other small shared blocks, and import only torch and the errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from torchsmith.errors import SummaryError, TorchsmithError, shorten

__all__ = ["build_on_meta", "check_materialized"]

_T = TypeVar("_T")


def build_on_meta(build: Callable[[], _T]) -> tuple[_T, bool]:
    """``build()`` on the meta device (no memory, no initialisation), or for real when the constructor needs
    real tensors (it calls ``.item()`` or ``.tolist()``, as torchvision's RegNet does); returns (the result,
    whether it is on meta).

    A :class:`TorchsmithError` of its own (an unknown name, a bad option) is raised at once: building for
    real would fail the same way. One that wraps another exception (a library's constructor that failed on
    meta) is retried for real.
    """
    try:
        with torch.device("meta"):
            return build(), True
    except TorchsmithError as e:
        if e.__cause__ is None or isinstance(e.__cause__, TorchsmithError):
            raise
    except Exception:
        pass
    return build(), False


def check_materialized(model: nn.Module, error: type[TorchsmithError] = SummaryError,
                       doing: str = "inspecting it", only: set[str] | None = None) -> None:
    """Refuse a model whose ``nn.Lazy*`` layers have not run yet: their tensors have no shape to count.

    Args:
        model: The module to look at.
        error: The error class to raise (the caller's: ``SummaryError``, ``InitError``).
        doing: What the caller was about to do, for the message ("initialising it").
        only: Just these tensor names matter (the others are left alone by the caller).

    Raises:
        TorchsmithError: ``error``, naming the lazy tensors and how to size them.
    """
    lazy = [n for n, p in model.named_parameters() if is_lazy(p)]
    lazy += [n for n, b in model.named_buffers() if is_lazy(b)]
    lazy = [n for n in lazy if only is None or n in only]
    if lazy:
        raise error(f"{type(model).__name__} has lazy (nn.Lazy*) tensors whose shapes are not known until its first "
                    f"forward ({shorten(lazy)}); run it once on a sample batch (model(x)) before {doing}, e.g. in "
                    "the factory that builds it")
