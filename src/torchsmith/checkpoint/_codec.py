"""Nested Python data <-> JSON plus a flat dict of tensors, with no pickle.

Optimizer and scheduler state dicts are trees of dicts (some keyed by ints),
lists, tuples, floats, ints, strings, None and tensors. They are stored as a
JSON document in which every tensor is replaced by a reference into a
safetensors file. The encoding is exact: ints stay ints, floats round-trip
bit for bit (``repr``), tuples stay tuples, int keys stay ints.

Tagged forms (objects whose only key starts with ``$``):

* ``{"$t": "name"}``: the tensor stored under ``name``
* ``{"$tuple": [...]}``: a tuple
* ``{"$dict": [[key, value], ...]}``: a dict whose keys are not all plain strings
* ``{"$float": "nan" | "inf" | "-inf"}``: a non-finite float (not valid JSON otherwise)
* ``{"$torch.nn": "BatchNorm2d"}``: a class from ``torch.nn`` (model options such as
  ``norm_layer=nn.BatchNorm2d``); only ``nn.Module`` subclasses of ``torch.nn`` are
  ever looked up, so reading a file never imports or runs anything else.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from torchsmith.errors import CheckpointError

__all__ = ["encode", "decode"]


def encode(value: Any, tensors: dict[str, torch.Tensor] | None, where: str) -> Any:
    """``value`` as JSON data; its tensors go into ``tensors`` (None: tensors are an error)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isfinite(f):
            return f
        return {"$float": "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")}
    if isinstance(value, torch.Tensor):
        if tensors is None:
            raise CheckpointError(f"{where} is a tensor; it cannot be stored as an option")
        key = f"t{len(tensors)}"
        tensors[key] = value
        return {"$t": key}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: encode(v, tensors, f"{where}[{k!r}]") for k, v in value.items()}
        return {"$dict": [[encode(k, None, f"{where} key"), encode(v, tensors, f"{where}[{k!r}]")]
                          for k, v in value.items()]}
    class_name = getattr(value, "__name__", "")
    if isinstance(value, type) and issubclass(value, nn.Module) and getattr(nn, class_name, None) is value:
        return {"$torch.nn": class_name}
    raise CheckpointError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__} ({value!r:.60}), which a checkpoint "
        "cannot store without pickle; use plain data (numbers, strings, lists, dicts, tensors, or a torch.nn "
        "class such as nn.BatchNorm2d) or a name the builder understands (e.g. norm_layer='batchnorm')"
    )


def decode(value: Any, tensors: dict[str, torch.Tensor] | None, where: str) -> Any:
    """Invert :func:`encode`; a malformed document is a CheckpointError naming ``where``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [decode(v, tensors, where) for v in value]
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: unexpected JSON value {value!r:.60}")
    if len(value) == 1:
        (tag, inner), = value.items()
        if tag == "$t":
            if tensors is None or not isinstance(inner, str) or inner not in tensors:
                raise CheckpointError(f"{where}: reference to a tensor {inner!r:.40} that the file does not hold")
            return tensors[inner]
        if tag == "$tuple":
            if not isinstance(inner, list):
                raise CheckpointError(f"{where}: $tuple must hold a list")
            return tuple(decode(v, tensors, where) for v in inner)
        if tag == "$dict":
            if not isinstance(inner, list) or not all(isinstance(p, list) and len(p) == 2 for p in inner):
                raise CheckpointError(f"{where}: $dict must hold [key, value] pairs")
            out = {}
            for k, v in inner:
                key = decode(k, None, where)
                try:
                    out[key] = decode(v, tensors, where)
                except TypeError:  # an unhashable key (a list) from a corrupted file
                    raise CheckpointError(f"{where}: $dict key {key!r:.40} is not hashable") from None
            return out
        if tag == "$float":
            if inner not in ("nan", "inf", "-inf"):
                raise CheckpointError(f"{where}: $float must be nan, inf or -inf, not {inner!r:.20}")
            return float(inner)
        if tag == "$torch.nn":
            cls = getattr(nn, inner, None) if isinstance(inner, str) else None
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
                raise CheckpointError(f"{where}: torch.nn has no module class {inner!r:.40}")
            return cls
    return {k: decode(v, tensors, f"{where}[{k!r}]") for k, v in value.items()}
