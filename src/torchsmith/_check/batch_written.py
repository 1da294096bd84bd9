"""A forward that fails because a reshape writes the batch size in: ``x.view(64, -1)``, ``x.reshape(4, 128)``.

The doctor's probe batch is 2, so such a model fails before any check runs. Rather than report that the forward
fails (and advise another input size, which would not help), the failing run is repeated with every reshape
recorded: a ``view``/``reshape`` whose input carries the batch in its first dimension and whose requested first
dimension is another constant is a candidate, and the model is run once more at that constant batch. Only when
it runs there is the finding ``hard-coded-size``: the batch is written into the code, and the finding names the
line. Nothing is guessed from an error's text.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from torchsmith._check._context import Context, make_finding
from torchsmith._check.report import Finding
from torchsmith._check.runtime import user_caller

__all__ = ["batch_written_in"]

_RESHAPES = {torch.Tensor.view, torch.Tensor.reshape, torch.reshape}
#: Batches a confirming run may take, and the parameters of a model it may run on (a forward at batch 256).
_MAX_BATCH, _MAX_PARAMS = 256, 50_000_000


class _Reshapes(TorchFunctionMode):
    """Records each reshape whose input's first dimension is the batch but whose target's first is a constant."""

    def __init__(self, batch: int, paths: dict[int, str]) -> None:
        super().__init__()
        self.batch, self.paths = batch, paths
        self.found: list[tuple[int, tuple[Any, ...], str, str, str]] = []  # (constant, shape, function, where, module)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in _RESHAPES and args and isinstance(args[0], torch.Tensor):
            shape = _requested(args[1:], kwargs or {})
            x = args[0]
            if (shape and x.dim() >= 1 and x.shape[0] == self.batch and isinstance(shape[0], int)
                    and shape[0] > 1 and shape[0] != self.batch):
                self.found.append((shape[0], shape, *user_caller(self.paths)))
        return func(*args, **(kwargs or {}))


def _requested(rest: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    shape = kwargs.get("shape", rest[0] if len(rest) == 1 else rest)
    if isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(d, int) for d in shape):
        return tuple(shape)
    if isinstance(shape, int):
        return (shape,)
    return ()


def batch_written_in(ctx: Context) -> Finding | None:
    """``hard-coded-size`` when the probe batch fails and the model runs at a batch written into a reshape."""
    model = ctx.model
    if sum(p.numel() for p in model.parameters()) > _MAX_PARAMS:
        return None
    batch = ctx.x.shape[0]
    mode = _Reshapes(batch, {id(m): n for n, m in model.named_modules()})
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            try:
                with mode:
                    ctx.call(model, ctx.x.clone())
                return None  # it runs in eval mode: the failure is not this one
            except Exception:
                pass
            for constant, shape, function, where, module in mode.found[:2]:
                if constant > _MAX_BATCH:
                    continue
                try:
                    ctx.call(model, ctx.make_input(batch=constant))
                except Exception:
                    continue
                text = ", ".join(str(d) for d in shape)
                return make_finding(
                    "hard-coded-size", module,
                    f"the forward fails on a batch of {batch} but runs on a batch of {constant}: "
                    f"{function} ({where}) reshapes to ({text}), writing the batch size {constant} into the "
                    "code, so any other batch (the last, smaller one of an epoch included) fails",
                    "take the batch from the input: x.view(x.size(0), -1) or x.flatten(1)",
                    batch=batch, runs_at=constant, shape=list(shape), function=function, where=where)
    finally:
        model.train(was)
    return None
