"""Counting bytes as PyTorch holds them: live storages over a step, and the storages saved for backward.

:class:`LiveTracker` is a ``TorchDispatchMode``: every aten op's output storage is registered once, with
the byte size of the storage (a view adds nothing), and a ``weakref.finalize`` on the storage takes it off
when PyTorch frees it. Storages are the unit because that is what an allocator holds: two views of one
buffer are one allocation. It works the same on real and on fake tensors (a ``FakeTensor`` has a meta
storage of the real byte size), which is what lets a plan be computed without allocating anything.

Each storage carries a category (parameters, buffers, gradients, optimizer state, activations,
temporaries); the running total per category is kept, so the breakdown at the peak costs a copy of six
numbers, not a walk over every live tensor. ``timeline`` is the live total after each allocation, with
its phase: two runs at two batch sizes give the live bytes at every moment as an affine function of the
batch, which is how the largest batch that fits is found exactly.

The tensors autograd saves for backward are counted by :class:`torchsmith._summary._saved.SavedStorages`,
which the summary uses for its activations figure too.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.module_tracker import ModuleTracker

from torchsmith._fake import run_op
from torchsmith._summary._saved import innermost_module, storage_of
from torchsmith.contract import output_tensors

__all__ = ["LiveTracker", "StepModules", "Peak", "CATEGORIES"]

#: The categories a byte belongs to, in the order a plan shows them.
CATEGORIES = ("parameters", "buffers", "gradients", "optimizer_state", "activations", "temporaries")


@dataclass
class Peak:
    """The highest live total of a phase: bytes, the breakdown by category, and the module running."""

    phase: str
    bytes: int = 0
    by_category: dict[str, int] = field(default_factory=dict)
    module: str = ""


class StepModules(ModuleTracker):
    """``torch.utils.module_tracker.ModuleTracker`` that leaves a checkpoint's recomputation alone.

    ModuleTracker registers a multi-grad hook on every module's inputs and outputs and keeps each handle
    until it exits; a handle holds the autograd nodes it hooks. Under ``torch.utils.checkpoint`` the
    forward runs again inside the backward, and those handles would keep every recomputed node, with the
    tensors it saved, alive to the end of the step: measured on a real 4-block GPT, the step's peak rose
    from 577 KB to 1,075 KB by observing it. In the backward, a module's forward (the recomputation) is
    named while it runs and hooks nothing; the forward's own handles are dropped after each backward.
    """

    def _in_backward(self) -> bool:
        return bool(torch._C._current_graph_task_id() != -1)

    def _fw_pre_hook(self, mod: nn.Module, input: Any) -> None:
        if self._in_backward():
            self._get_append_fn(self._get_mod_name(mod), False)()
            return
        try:
            super()._fw_pre_hook(mod, input)  # names the module, then hooks its inputs' autograd nodes
        except AssertionError:
            # register_multi_grad_hook: "Expected gradient function to be set", for a tensor that needs a
            # gradient yet has no autograd node (transformers' Mamba hands one to its conv kernel's layer).
            # The module is named by then; only its backward goes unnamed, and its bytes count the same.
            pass

    def _fw_post_hook(self, mod: nn.Module, input: Any, output: Any) -> None:
        if self._in_backward():
            self._get_pop_fn(self._get_mod_name(mod), False)()
            return
        try:
            super()._fw_post_hook(mod, input, output)
        except AssertionError:  # as in _fw_pre_hook
            pass

    def drop_hooks(self) -> None:
        """Remove the hooks of a finished backward (their nodes are no longer needed)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


class LiveTracker(TorchDispatchMode):
    """Tracks the bytes of every live storage that ops create; see the module docstring.

    ``phase`` is set by the caller ("forward", "backward", "optimizer"); ``modules`` (a
    ``torch.utils.module_tracker.ModuleTracker``) says which module runs, in forward and backward.
    """

    def __init__(self, modules: ModuleTracker | None = None, names: dict[int, str] | None = None) -> None:
        super().__init__()
        self._live: dict[int, list[Any]] = {}  # id(storage) -> [nbytes, category]
        self.totals = dict.fromkeys(CATEGORIES, 0)
        self.current = 0
        self.phase = "setup"
        self.recording = False  # peaks and the timeline are kept only while True (the steady-state step)
        self.peaks: dict[str, Peak] = {}
        self.timeline: list[int] = []
        self.phases: list[str] = []
        self.modules = modules
        self._finalizers: list[Any] = []
        self.failed_op: Any = None  # the last op that raised (the step may have caught it)

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # nothing is compiled here; avoids importing torch._dynamo on the first op

    # ------------------------------------------------------------------ registering storages
    def add(self, t: torch.Tensor | None, category: str) -> None:
        """Register ``t``'s storage under ``category``, or move it there if it is already live."""
        if t is None:
            return
        st = storage_of(t)
        if st is None:
            return
        entry = self._live.get(id(st))
        if entry is not None:
            if entry[1] != category:
                self.totals[entry[1]] -= entry[0]
                self.totals[category] += entry[0]
                entry[1] = category
            return
        self._register(st, category)

    def category_of(self, t: torch.Tensor) -> str | None:
        st = storage_of(t)
        entry = None if st is None else self._live.get(id(st))
        return None if entry is None else entry[1]

    def _register(self, st: Any, category: str) -> None:
        n = int(st.nbytes())
        key = id(st)
        self._live[key] = [n, category]
        self.totals[category] += n
        self.current += n
        self._finalizers.append(weakref.finalize(st, self._free, key))
        if self.recording:
            self.timeline.append(self.current)
            self.phases.append(self.phase)
            peak = self.peaks.get(self.phase)
            if peak is None or self.current > peak.bytes:
                self.peaks[self.phase] = Peak(self.phase, self.current, dict(self.totals), self._where())

    def _free(self, key: int) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            self.totals[entry[1]] -= entry[0]
            self.current -= entry[0]

    def _where(self) -> str:
        return innermost_module(self.modules)

    def close(self) -> None:
        """Detach every finalizer (a tracker must not outlive the step it measured)."""
        for f in self._finalizers:
            f.detach()
        self._finalizers.clear()
        self._live.clear()

    # ------------------------------------------------------------------ the mode
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        try:
            out = run_op(func, args, kwargs)  # as the CPU kernel gives it (torchsmith._fake)
        except Exception:
            self.failed_op = func  # the op a failed step stopped at, for its error
            raise
        for t in output_tensors(out):
            st = storage_of(t)
            if st is not None and id(st) not in self._live:
                self._register(st, "temporaries")
        return out
