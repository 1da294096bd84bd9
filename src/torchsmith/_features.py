""":func:`features`: run a model once on real tensors and capture what its layers produce.

The input is the one contract of every command (:func:`torchsmith.contract.model_inputs`): one shape,
positional shapes or keyword shapes, each with its dtype, or real tensors the caller passes (an image, a
dataset sample). The model runs in eval mode (``no_grad`` unless gradients are asked for) and is given back in
its own mode, with its hooks and attributes as it had them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchsmith._capture import WHAT, Captured, FeatureStats, capture, feature_stats
from torchsmith.contract import ModelInputs, as_found, device_dtype, model_inputs, primary_output
from torchsmith.errors import ConfigError, ShapeError, UnknownNameError, first_line

__all__ = ["features", "FeatureRun"]


@dataclass
class FeatureRun:
    """What :func:`features` captured: ``captured`` (layer -> tensor), ``stats`` per layer and call, the inputs."""

    captured: Captured
    stats: list[FeatureStats]
    inputs: ModelInputs | None  # None: the caller passed the tensors
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def describe_input(self) -> str:
        """``[1, 3, 32, 32]``, or ``x: [1, 3, 32, 32], lengths: [1]`` for several inputs."""
        tensors = [("", a) for a in self.args] + list(self.kwargs.items())
        shapes = [(n, list(t.shape)) for n, t in tensors if isinstance(t, torch.Tensor)]
        if len(shapes) == 1 and not self.kwargs:
            return str(shapes[0][1])
        names = self.inputs.names if self.inputs is not None else [f"input {i}" for i in range(len(shapes))]
        return ", ".join(f"{n or names[i]}: {s}" for i, (n, s) in enumerate(shapes))


def features(model: nn.Module, layers: str | list[str], input_size: Any = None, *, input_dtype: Any = None,
             what: str = "output", inputs: torch.Tensor | tuple[Any, ...] | dict[str, Any] | None = None,
             seed: int = 0) -> FeatureRun:
    """Run ``model`` once and capture the outputs, inputs or output gradients of ``layers``.

    Args:
        model: The module (with real weights).
        layers: Module paths or globs, as :func:`torchsmith.capture` takes them.
        input_size: One sample without the batch, a list of sizes (positional inputs) or a dict (keyword
            inputs); default: what the model declares. Ignored when ``inputs`` is given.
        input_dtype: One dtype, a list or a dict by input name.
        what: ``"output"``, ``"input"`` or ``"grad"`` (the gradient of the primary output's sum).
        inputs: Real tensors to feed instead of a random batch of one: a tensor, a tuple of positional
            tensors or a dict of keyword tensors.
        seed: Seed of the random batch.

    Returns:
        The :class:`FeatureRun`.

    Raises:
        UnknownNameError: A layer pattern matches nothing, or ``what`` is unknown.
        ShapeError: The model does not take the input.
        ConfigError: Gradients asked for a model whose output does not depend on its input differentiably.
    """
    if what not in WHAT:
        raise UnknownNameError("capture target", what, WHAT)
    spec: ModelInputs | None = None
    if inputs is None:
        spec = model_inputs(model, input_size, input_dtype=input_dtype)
        args, kwargs = spec.example(1, seed=seed, device=device_dtype(model)[0])
    elif isinstance(inputs, dict):
        args, kwargs = (), dict(inputs)
    else:
        args, kwargs = (inputs if isinstance(inputs, tuple) else (inputs,)), {}
    if what == "grad":  # the input takes part in the graph, so a model with no parameters has gradients too
        for t in [*args, *kwargs.values()]:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                t.requires_grad_(True)
    was_training = model.training
    model.eval()
    try:
        with as_found(model), capture(model, layers, what=what) as captured:
            with torch.set_grad_enabled(what == "grad"):
                out = _forward(model, args, kwargs, spec)
                if what == "grad":
                    _backward(model, out)
    finally:
        model.train(was_training)
    return FeatureRun(captured, feature_stats(captured), spec, args, kwargs)


def _forward(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], spec: ModelInputs | None) -> Any:
    try:
        return model(*args, **kwargs)
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        given = spec.describe() if spec is not None else ", ".join(
            str(list(t.shape)) for t in [*args, *kwargs.values()] if isinstance(t, torch.Tensor))
        raise ShapeError(f"{type(model).__name__} cannot take input {given}: {first_line(e)}; give the input "
                         "size the model takes (--input, once per input, or input_size=)") from e


def _backward(model: nn.Module, out: Any) -> None:
    try:
        y = primary_output(out)  # logits, last_hidden_state, or the first tensor of any structure
    except ShapeError:
        y = None
    if not isinstance(y, torch.Tensor) or not y.requires_grad:
        raise ConfigError(f"{type(model).__name__}'s output does not depend on its input through differentiable "
                          "ops, so there are no gradients to capture; capture the outputs instead (what='output')")
    y.float().sum().backward()
