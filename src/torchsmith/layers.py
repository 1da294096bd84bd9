"""Small reusable pieces: activations and norm layers by name."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from torchsmith.errors import UnknownNameError

__all__ = ["ACTIVATIONS", "activation_fn", "norm_layer_factory", "init_gain_for"]

#: Functional activations by name (modules with parameters are modules;
#: activations have none, so they are functional calls in ``forward``).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
}

_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "groupnorm": lambda c: nn.GroupNorm(min(32, c), c),
    "instancenorm": lambda c: nn.InstanceNorm2d(c, affine=True),
    "identity": lambda c: nn.Identity(),
}


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The functional activation called ``name``."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise UnknownNameError("activation", name, ACTIVATIONS) from None


def norm_layer_factory(norm: str | Callable[[int], nn.Module] | None) -> Callable[[int], nn.Module]:
    """A ``channels -> nn.Module`` factory from a name, a callable (e.g. ``nn.BatchNorm2d``) or None."""
    if norm is None:
        return nn.BatchNorm2d
    if callable(norm):
        return norm
    try:
        return _NORMS[norm]
    except KeyError:
        raise UnknownNameError("norm layer", norm, _NORMS) from None


def init_gain_for(activation: str) -> str:
    """The init preset that suits an activation: Kaiming for ReLU-like, Xavier for saturating ones."""
    return "xavier" if activation in ("sigmoid", "tanh") else "kaiming"
