"""The bytes autograd saves for backward, counted once per storage: the exact activation memory.

A forward in train mode with grad enabled, under ``torch.autograd.graph.saved_tensors_hooks``: every tensor
an op saves for its backward passes through the pack hook. Counted once per storage (a view saves
nothing new), this is what a training step holds at the end of its forward, on real tensors and the same
on meta or fake ones, whose storages have the real byte size. The summary's ``memory.activations`` and the
memory plan (:mod:`torchsmith._memory`) both count with :class:`SavedStorages`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.module_tracker import ModuleTracker

__all__ = ["SavedStorages", "storage_of", "innermost_module", "saved_bytes"]


def storage_of(t: torch.Tensor) -> Any:
    """The untyped storage behind ``t``, or None for a tensor without one (sparse, nested)."""
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None


class SavedStorages:
    """Every tensor autograd saves for backward while active, counted once per storage.

    ``total`` is the bytes of the unique storages saved; ``parameter_bytes`` the part of it that is
    the storage of a parameter or buffer (a Linear saves its weight); ``by_module`` the bytes first
    saved while each module ran. Only weak references are kept, so counting frees nothing later than
    PyTorch would.
    """

    def __init__(self, owned: set[int] | None = None, modules: ModuleTracker | None = None,
                 on_pack: Any = None) -> None:
        self.owned = owned or set()  # id() of parameter and buffer storages
        self.modules = modules
        self.on_pack = on_pack
        self.total = 0
        self.parameter_bytes = 0
        self.by_module: dict[str, int] = {}
        self._seen: dict[int, Any] = {}  # id(storage) -> weakref to it
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        st = storage_of(t)
        if st is not None:
            ref = self._seen.get(id(st))
            if ref is None or ref() is not st:  # new, or a freed storage's id reused
                self._seen[id(st)] = weakref.ref(st)
                n = st.nbytes()
                self.total += n
                if id(st) in self.owned:
                    self.parameter_bytes += n
                else:
                    where = innermost_module(self.modules)
                    self.by_module[where] = self.by_module.get(where, 0) + n
        if self.on_pack is not None:
            self.on_pack(t)
        return t

    def __enter__(self) -> SavedStorages:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


def innermost_module(modules: ModuleTracker | None) -> str:
    """The dotted name (from the root's class) of the innermost module running, "" outside any."""
    if modules is None:
        return ""
    parents = [p for p in modules.parents if p != "Global"]
    return max(parents, key=len) if parents else ""


def saved_bytes(model: nn.Module, run: Callable[[], Any]) -> Any:
    """Bytes saved for backward by ``run()`` (a forward of ``model``), in train mode; the modes are put back.

    ``model`` is a copy the caller owns (meta, fake or real); the count is an int, or a SymInt when the
    input had symbolic dims.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        with torch.enable_grad(), SavedStorages() as saved:
            out = run()
        del out
        return saved.total
    finally:
        for m, training in modes:
            m.training = training
