"""The built-in layer types of a spec, each with its own shape rule and the errors that teach.

Every factory gets the incoming shape without the batch dimension and returns
the module and its output shape, computed here (not probed) so that a bad
shape is explained in terms of the layer: what arrived, what it needs, the fix.
The dimensionality follows the input: ``conv`` on ``[N, C, L]`` is a Conv1d, on
``[N, C, H, W]`` a Conv2d, on ``[N, C, D, H, W]`` a Conv3d; likewise the pools
and ``batchnorm``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from torchsmith.errors import SpecError
from torchsmith.spec.registry import Shape, fmt_shape, register_layer

__all__ = ["int_arg"]


# --------------------------------------------------------------------------- argument checks
def int_arg(value: Any, arg: str, minimum: int = 1) -> int:
    """``value`` as an integer argument of at least ``minimum``; the SpecError names ``arg``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"`{arg}` must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"`{arg}` must be at least {minimum}, got {value}")
    return value


def _ints(value: Any, arg: str, n: int, minimum: int = 1) -> tuple[int, ...]:
    """An int (same for every spatial dim) or a list of exactly ``n`` ints."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise SpecError(f"`{arg}` has {len(value)} values but the input has {n} spatial dimensions; "
                            f"give {n} values or one")
        return tuple(int_arg(v, arg, minimum) for v in value)
    return (int_arg(value, arg, minimum),) * n


def _number(value: Any, arg: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"`{arg}` must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise SpecError(f"`{arg}` must be in [{low}, {high}], got {value}")
    return float(value)


def _bool(value: Any, arg: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"`{arg}` must be true or false, got {value!r}")
    return value


def _spatial(in_shape: Shape, layer: str) -> int:
    """Number of spatial dims of a channels-first input; the error says what to do otherwise."""
    if len(in_shape) in (2, 3, 4):
        return len(in_shape) - 1
    if len(in_shape) == 1:
        raise SpecError(f"input is {fmt_shape(in_shape)} but {layer} needs [N, C, L], [N, C, H, W] or "
                        f"[N, C, D, H, W]; it cannot come after `flatten` or `linear`: move it before them")
    raise SpecError(f"input is {fmt_shape(in_shape)} but {layer} takes at most 3 spatial dimensions")


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool = False) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:  # torch drops a window that starts in the padding
            out -= 1
        return out
    return span // stride + 1


def _window_out(in_shape: Shape, layer: str, kernel: tuple[int, ...], stride: tuple[int, ...],
                padding: tuple[int, ...], dilation: tuple[int, ...], ceil: bool = False) -> Shape:
    dims = []
    for size, k, s, p, d in zip(in_shape[1:], kernel, stride, padding, dilation):
        out = _out_size(size, k, s, p, d, ceil)
        if out < 1:
            need = d * (k - 1) + 1 - 2 * p
            raise SpecError(f"input is {fmt_shape(in_shape)} but {layer} (kernel {k}, padding {p}, dilation {d}) "
                            f"needs spatial sizes of at least {need}; use a smaller kernel, add padding, "
                            f"downsample less before it, or give a larger input")
        dims.append(out)
    return tuple(dims)


# --------------------------------------------------------------------------- conv / linear
_CONV: dict[int, Any] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


@register_layer(shorthand="out")
def conv(in_shape: Shape, *, out: int, kernel: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1,
         groups: int = 1, bias: bool = True) -> tuple[nn.Module, Shape]:
    """Convolution (1d/2d/3d by input rank); ``padding`` is an int, a list, "same" or "valid"."""
    n = _spatial(in_shape, "conv")
    c = in_shape[0]
    out = int_arg(out, "out")
    k, s, d = _ints(kernel, "kernel", n), _ints(stride, "stride", n), _ints(dilation, "dilation", n)
    groups = int_arg(groups, "groups")
    if c % groups or out % groups:
        raise SpecError(f"input is {fmt_shape(in_shape)}: `groups` {groups} must divide both the input channels "
                        f"({c}) and `out` ({out})")
    pad: Any
    if padding == "same":
        if any(x != 1 for x in s):
            raise SpecError("padding 'same' needs stride 1; give the padding as a number for a strided conv")
        pad, spatial = "same", in_shape[1:]
    elif padding == "valid":
        pad = 0
        spatial = _window_out(in_shape, "conv", k, s, (0,) * n, d)
    else:
        pad = _ints(padding, "padding", n, minimum=0)
        spatial = _window_out(in_shape, "conv", k, s, pad, d)
    module = _CONV[n](c, out, kernel_size=k, stride=s, padding=pad, dilation=d, groups=groups,
                      bias=_bool(bias, "bias"))
    return module, (out, *spatial)


@register_layer(shorthand="out")
def linear(in_shape: Shape, *, out: int, bias: bool = True) -> tuple[nn.Module, Shape]:
    """Fully connected layer over the last dimension; ``[N, F]`` (or ``[N, T, F]``) in."""
    if len(in_shape) >= 3:
        raise SpecError(f"input is {fmt_shape(in_shape)}; add `flatten` before it "
                        f"(or `adaptive_avgpool: 1` then `flatten` to pool the feature map first)")
    out = int_arg(out, "out")
    return nn.Linear(in_shape[-1], out, bias=_bool(bias, "bias")), (*in_shape[:-1], out)


# --------------------------------------------------------------------------- pooling
_POOL_WORD = {"maxpool": "Max", "avgpool": "Average", "adaptive_maxpool": "Max", "adaptive_avgpool": "Average"}

def _pool(kind: str, modules: dict[int, type[nn.Module]]) -> Callable[..., tuple[nn.Module, Shape]]:
    def factory(in_shape: Shape, *, kernel: Any, stride: Any = None, padding: Any = 0,
                ceil_mode: bool = False) -> tuple[nn.Module, Shape]:
        n = _spatial(in_shape, kind)
        k = _ints(kernel, "kernel", n)
        s = k if stride is None else _ints(stride, "stride", n)
        p = _ints(padding, "padding", n, minimum=0)
        if any(2 * pi > ki for pi, ki in zip(p, k)):
            raise SpecError(f"`padding` {padding} is more than half the kernel {kernel}; torch refuses that")
        ceil = _bool(ceil_mode, "ceil_mode")
        if kind == "avgpool" and n == 3 and any(size < ki for size, ki in zip(in_shape[1:], k)):
            # avg_pool3d refuses this at run time although the padded size fits (the meta kernel does not).
            raise SpecError(f"input is {fmt_shape(in_shape)} but 3-d avgpool needs every spatial size to be at "
                            f"least the kernel {list(k)}, padding not counted; use a smaller kernel or downsample "
                            f"less before it")
        spatial = _window_out(in_shape, kind, k, s, p, (1,) * n, ceil)
        one = len(set(k)) == 1 and len(set(s)) == 1 and len(set(p)) == 1  # keep repr short: kernel_size=2
        module = modules[n](k[0] if one else k, stride=s[0] if one else s, padding=p[0] if one else p,
                            ceil_mode=ceil)
        return module, (in_shape[0], *spatial)

    factory.__name__ = kind
    factory.__doc__ = f"{_POOL_WORD[kind]} pooling (1d/2d/3d by input rank); stride defaults to the kernel."
    return factory


register_layer(_pool("maxpool", {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}), shorthand="kernel")
register_layer(_pool("avgpool", {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}), shorthand="kernel")


def _adaptive(kind: str, modules: dict[int, type[nn.Module]]) -> Callable[..., tuple[nn.Module, Shape]]:
    def factory(in_shape: Shape, *, size: Any = 1) -> tuple[nn.Module, Shape]:
        n = _spatial(in_shape, kind)
        sizes = _ints(size, "size", n)
        module = modules[n](sizes[0] if n == 1 else sizes)
        return module, (in_shape[0], *sizes)

    factory.__name__ = kind
    factory.__doc__ = f"Adaptive {_POOL_WORD[kind].lower()} pooling to a fixed ``size`` (1 = global pooling)."
    return factory


register_layer(_adaptive("adaptive_avgpool", {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d,
                                              3: nn.AdaptiveAvgPool3d}), shorthand="size")
register_layer(_adaptive("adaptive_maxpool", {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d,
                                              3: nn.AdaptiveMaxPool3d}), shorthand="size")


# --------------------------------------------------------------------------- normalisation
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}


@register_layer
def batchnorm(in_shape: Shape, *, eps: float = 1e-5, momentum: float = 0.1,
              affine: bool = True) -> tuple[nn.Module, Shape]:
    """Batch norm over the channels (dim 1): BatchNorm1d/2d/3d by input rank."""
    if len(in_shape) not in _BN:
        raise SpecError(f"input is {fmt_shape(in_shape)}; batchnorm takes [N, F] to [N, C, D, H, W]")
    module = _BN[len(in_shape)](in_shape[0], eps=_number(eps, "eps", 0.0), momentum=_number(momentum, "momentum",
                                0.0, 1.0), affine=_bool(affine, "affine"))
    return module, in_shape


@register_layer
def layernorm(in_shape: Shape, *, dims: int = 1, eps: float = 1e-5, affine: bool = True) -> tuple[nn.Module, Shape]:
    """Layer norm over the last ``dims`` dimensions (1: the features; 3: a whole C x H x W map)."""
    dims = int_arg(dims, "dims")
    if dims > len(in_shape):
        raise SpecError(f"input is {fmt_shape(in_shape)} but `dims` is {dims}; it can normalise at most "
                        f"{len(in_shape)} dimensions")
    return nn.LayerNorm(list(in_shape[-dims:]), eps=_number(eps, "eps", 0.0),
                        elementwise_affine=_bool(affine, "affine")), in_shape


@register_layer(shorthand="groups")
def groupnorm(in_shape: Shape, *, groups: int, eps: float = 1e-5, affine: bool = True) -> tuple[nn.Module, Shape]:
    """Group norm: the channels (dim 1) in ``groups`` groups."""
    groups = int_arg(groups, "groups")
    if len(in_shape) < 1 or in_shape[0] % groups:
        raise SpecError(f"input is {fmt_shape(in_shape)}: `groups` {groups} must divide the {in_shape[0]} channels")
    return nn.GroupNorm(groups, in_shape[0], eps=_number(eps, "eps", 0.0), affine=_bool(affine, "affine")), in_shape


# --------------------------------------------------------------------------- activations, dropout, flatten
def _activation(name: str, make: Callable[..., Any], gain: str | None, doc: str,
                shorthand: str | None = None) -> None:
    make.__name__ = name
    make.__doc__ = doc
    register_layer(make, name=name, shorthand=shorthand, activation=gain)


_activation("relu", lambda in_shape: (nn.ReLU(), in_shape), "relu", "max(x, 0).")
_activation("leaky_relu", lambda in_shape, *, slope=0.01: (nn.LeakyReLU(_number(slope, "slope", 0.0)), in_shape),
            "leaky_relu", "Leaky ReLU with negative ``slope``.", shorthand="slope")


def _gelu(in_shape: Shape, *, approximate: str = "none") -> tuple[nn.Module, Shape]:
    if approximate not in ("none", "tanh"):
        raise SpecError(f"`approximate` must be 'none' or 'tanh', got {approximate!r}")
    return nn.GELU(approximate=approximate), in_shape


_activation("gelu", _gelu, "gelu", "Gaussian error linear unit (``approximate``: none or tanh).")
_activation("silu", lambda in_shape: (nn.SiLU(), in_shape), "silu", "x * sigmoid(x).")
_activation("elu", lambda in_shape, *, alpha=1.0: (nn.ELU(_number(alpha, "alpha", 0.0)), in_shape), "elu",
            "Exponential linear unit.", shorthand="alpha")
_activation("sigmoid", lambda in_shape: (nn.Sigmoid(), in_shape), "sigmoid", "1 / (1 + exp(-x)).")
_activation("tanh", lambda in_shape: (nn.Tanh(), in_shape), "tanh", "Hyperbolic tangent.")
_activation("identity", lambda in_shape: (nn.Identity(), in_shape), None, "Passes its input through.")


@register_layer(shorthand="dim")
def softmax(in_shape: Shape, *, dim: int = -1) -> tuple[nn.Module, Shape]:
    """Softmax over ``dim`` (of the whole tensor, so 1 is the first dim after the batch); -1 is the last."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim == 0 or not -len(in_shape) - 1 < dim <= len(in_shape):
        raise SpecError(f"input is {fmt_shape(in_shape)}: `dim` must index a non-batch dimension "
                        f"(1..{len(in_shape)} or -1..-{len(in_shape)}), got {dim!r}")
    return nn.Softmax(dim=dim), in_shape


@register_layer(shorthand="p")
def dropout(in_shape: Shape, *, p: float = 0.5) -> tuple[nn.Module, Shape]:
    """Zeroes each element with probability ``p`` while training."""
    return nn.Dropout(_number(p, "p", 0.0, 1.0)), in_shape


@register_layer(shorthand="start")
def flatten(in_shape: Shape, *, start: int = 1) -> tuple[nn.Module, Shape]:
    """Flattens every dimension from ``start`` (1: all but the batch) into one."""
    start = int_arg(start, "start")
    if start > len(in_shape):
        raise SpecError(f"input is {fmt_shape(in_shape)}: `start` {start} is past its last dimension")
    keep = in_shape[: start - 1]
    return nn.Flatten(start), (*keep, math.prod(in_shape[start - 1:]))
