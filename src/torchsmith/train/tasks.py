"""What a run learns: classification, regression or causal language modelling, each one small object.

A :class:`Task` owns the loss, what counts as a correct prediction, how many targets a batch holds and the
check that the model's output fits the data; the loop calls it and never branches on the task itself.
:func:`forward` calls a model on any batch the loaders yield (a tensor, a tuple of positional inputs or a
dict of keyword inputs).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchsmith.contract import InputSpec, primary_output
from torchsmith.errors import DataError, TorchsmithError, describe_error

__all__ = ["Task", "TASKS", "forward", "takes_targets", "detect_causal_lm", "run_eval_task"]

#: ``--task`` values; ``auto`` decides from the model's output and the data.
TASKS = ("auto", "classification", "regression", "causal-lm")


def forward(net: nn.Module, x: Any, targets: torch.Tensor | None = None) -> Any:
    """``net(**x)`` for a dict of keyword inputs, ``net(*x)`` for a tuple, else ``net(x)``; ``targets=`` too when
    given (a nanoGPT-style language model, see :func:`takes_targets`)."""
    extra = {} if targets is None else {"targets": targets}
    if isinstance(x, dict):
        return net(**x, **extra)
    if isinstance(x, tuple):
        return net(*x, **extra)
    return net(x, **extra)


def takes_targets(model: nn.Module) -> bool:
    """Whether ``model.forward`` has a ``targets`` parameter, as nanoGPT's ``GPT.forward(idx, targets=None)``:
    given the targets it returns every position's logits (and its own loss), without them the last position's
    only, so a language model of this kind is trained with its targets passed in."""
    try:
        return "targets" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def batch_size_of(x: Any) -> int:
    first = next(iter(x.values())) if isinstance(x, dict) else x[0] if isinstance(x, tuple) else x
    return int(first.shape[0])


def chunk(x: Any, parts: int) -> list[Any]:
    """Split a batch (tensor, tuple or dict) into ``parts`` microbatches along the batch dimension."""
    if isinstance(x, dict):
        pieces = {k: v.chunk(parts) for k, v in x.items()}
        return [{k: v[i] for k, v in pieces.items()} for i in range(len(next(iter(pieces.values()))))]
    if isinstance(x, tuple):
        cols = [t.chunk(parts) for t in x]
        return [tuple(c[i] for c in cols) for i in range(len(cols[0]))]
    return list(x.chunk(parts))


@dataclass(frozen=True)
class Task:
    """``name`` is ``classification``, ``regression`` or ``causal-lm``; ``reason`` says why it was chosen."""

    name: str
    reason: str = "given"
    label_smoothing: float = 0.0
    targets: bool = False  # causal-lm: the model's forward takes the targets (nanoGPT); see takes_targets

    def forward(self, net: nn.Module, x: Any, y: torch.Tensor) -> Any:
        """The model's output on batch ``x``; its targets ``y`` passed in where the model takes them."""
        # Contiguous: the windows' targets are a view one token along (nanoGPT's loss calls .view on them).
        return forward(net, x, y.contiguous() if self.targets else None)

    @property
    def has_accuracy(self) -> bool:
        return self.name != "regression"

    @property
    def lower_loss_is_best(self) -> bool:
        """Regression and language models keep the checkpoint of lowest test loss; classifiers of best accuracy."""
        return self.name != "classification"

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch: cross-entropy over classes or over every next token, or mean squared error."""
        if self.name == "causal-lm":  # (B, T, V) logits of the next token at each position; y (B, T) is x shifted
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                   label_smoothing=self.label_smoothing)
        if self.name == "regression":
            return F.mse_loss(out.reshape(y.shape).to(y.dtype) if out.numel() == y.numel() else out, y)
        return F.cross_entropy(out, y, label_smoothing=self.label_smoothing)

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.name == "regression":
            return torch.zeros((), device=out.device)
        return (out.argmax(-1) == y).sum()

    def count(self, y: torch.Tensor) -> int:
        """Targets in a batch: samples, or tokens for a language model (the unit its loss is a mean over)."""
        return int(y.numel()) if self.name == "causal-lm" else int(y.shape[0])

    def check_output(self, out: Any, y: torch.Tensor, num_classes: int, data_name: str) -> None:
        """Raise :class:`DataError` when the model's output cannot be trained against ``y``."""
        b = int(y.shape[0])
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            kind = out.dtype if isinstance(out, torch.Tensor) else type(out).__name__
            loss = "mean squared error" if self.name == "regression" else "cross-entropy loss"
            raise DataError(f"the model's outputs are {kind} but the {loss} needs floating-point outputs; do not "
                            f"round or cast them to an integer type in forward")
        shape = tuple(out.shape)
        if self.name == "causal-lm":
            t = int(y.shape[1])
            if out.dim() != 3 or shape[:2] != (b, t) or shape[2] < num_classes:
                raise DataError(f"a causal language model gives (B, T, vocab) logits, but this one gives {shape} for "
                                f"a batch of {b} windows of {t} tokens; return the logits of every position")
        elif self.name == "regression":
            if out.numel() != y.numel():
                want = (b, *y.shape[1:]) if y.dim() > 1 else (b,)
                raise DataError(f"the model gives {shape} for a batch of {b} but {data_name}'s regression targets "
                                f"are {tuple(y.shape)}; give it {want} outputs (or (B, 1) for one value)")
        elif out.dim() != 2 or shape[1] != num_classes:
            raise DataError(f"the model gives {shape} for a batch of {b} but {data_name} needs ({b}, {num_classes}) "
                            f"logits; build it with num_classes={num_classes}")


def detect_causal_lm(model: nn.Module, spec: InputSpec | None, device: torch.device) -> str | None:
    """Why ``model`` is a causal language model (its output is per-token logits over its own vocabulary), or None.

    Asked of the model's output on a batch of 2 x 8 ids, not of its name: ``(B, T, V)`` logits where ``V`` is the
    vocabulary its input ids come from (a transformers ``*ForCausalLM``: ``config.vocab_size``; a hand-written
    GPT: its input Embedding's ``num_embeddings``).
    """
    if spec is None or spec.kind != "tokens" or not spec.vocab_size:
        return None
    t = max(1, min(8, spec.size[0] if spec.size else 8))
    x = torch.randint(0, spec.vocab_size, (2, t), generator=torch.Generator().manual_seed(0)).to(device)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = primary_output(model(x, targets=x) if takes_targets(model) else model(x))
    except Exception:
        return None
    finally:
        model.train(was)
    if out.dim() == 3 and tuple(out.shape[:2]) == (2, t) and out.shape[2] == spec.vocab_size:
        config = getattr(model, "config", None)
        hf = config is not None and type(config).__module__.startswith("transformers")
        what = f"{type(model).__name__} (transformers config)" if hf else type(model).__name__
        if takes_targets(model):
            what += " (given its targets, as nanoGPT's GPT takes them)"
        return f"{what} returns (B, T, {spec.vocab_size}) logits over its {spec.vocab_size}-id vocabulary"
    return None


def run_eval_task(model: nn.Module, loader: Any, task: Task, num_classes: int, *, autocast: Any = None,
                  dist: Any = None) -> tuple[float, float, int]:
    """(loss sum, correct, count) of ``model`` over ``loader`` for any task, summed over ranks (one sync)."""
    device = loader.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), (autocast if autocast is not None else contextlib.nullcontext()):
            for x, y in loader.epoch():
                try:
                    out = primary_output(task.forward(model, x, y)).float()
                except TorchsmithError:
                    raise
                except Exception as e:
                    raise DataError(f"the model failed on {getattr(loader.data, 'name', 'the data')}'s test data: "
                                    f"{describe_error(e)}") from e
                task.check_output(out, y, num_classes, getattr(loader.data, "name", "the data"))
                n = task.count(y)
                sums[0] += task.loss(out, y).double() * n
                sums[1] += task.correct(out, y)
                sums[2] += n
    finally:
        model.train(was)
    if dist is not None and dist.enabled:
        torch.distributed.all_reduce(sums)
    loss_sum, correct, count = sums.tolist()
    return loss_sum, correct, int(count)


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean next-token cross-entropy (inf past what a float holds)."""
    return math.exp(loss) if loss < 700 else math.inf
