"""The tensors of any model output (:func:`output_tensors`) and the one a loss is about (:func:`primary_output`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from torchsmith.errors import ShapeError

# ---- outputs -----------------------------------------------------------------------------------------------


def output_tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in a model output, in order: tensors, tuples and named tuples, lists, dicts (insertion order,
    which is a transformers ``ModelOutput``'s), dataclasses. None and non-tensors (a ``DynamicCache``) are skipped.
    """
    found: list[torch.Tensor] = []
    _collect(out, found, 0)
    return found


def _collect(obj: Any, found: list[torch.Tensor], depth: int) -> None:
    if depth > 32:
        return
    if isinstance(obj, torch.Tensor):
        found.append(obj)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            _collect(value, found, depth + 1)
    elif isinstance(obj, (tuple, list)):
        for value in obj:
            _collect(value, found, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _collect(getattr(obj, f.name, None), found, depth + 1)


_PRIMARY = ("logits", "last_hidden_state", "prediction_logits", "start_logits", "pooler_output", "image_embeds",
            "text_embeds")


def primary_output(out: Any) -> torch.Tensor:
    """The output a loss or a shape report is about: ``logits``, else ``last_hidden_state``, else the first tensor."""
    if isinstance(out, torch.Tensor):
        return out
    for key in _PRIMARY:
        value = out.get(key) if isinstance(out, Mapping) else (
            getattr(out, key, None) if dataclasses.is_dataclass(out) else None)
        if isinstance(value, torch.Tensor):
            return value
    tensors = output_tensors(out)
    if not tensors:
        raise ShapeError(f"the model's output ({type(out).__name__}) holds no tensor; return a tensor, or a tuple, "
                         "dict or dataclass holding one")
    return tensors[0]
