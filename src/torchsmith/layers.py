"""Small reusable pieces: norm layers by name, and the init preset that suits an activation."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from torchsmith.errors import UnknownNameError

__all__ = ["norm_layer_factory", "init_gain_for"]

_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batchnorm": nn.BatchNorm2d,
    "groupnorm": lambda c: nn.GroupNorm(min(32, c), c),
    "instancenorm": lambda c: nn.InstanceNorm2d(c, affine=True),
    "identity": lambda c: nn.Identity(),
}


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
