"""The layer types a spec may name, and ``@register_layer`` for your own.

A spec can only name a type registered here: a spec never imports anything or
calls anything by a dotted path, so reading one is as safe as reading JSON.

A layer type is a factory. A function takes the incoming shape (without the
batch dimension, e.g. ``(16, 5, 5)``) first and the spec's arguments as keywords::

    @register_layer("scale", shorthand="factor")
    def scale(in_shape, *, factor=1.0):
        return Scale(factor)                     # output shape: inferred on the meta device

    @register_layer("project")
    def project(in_shape, *, out):
        return nn.Linear(in_shape[-1], out), (*in_shape[:-1], out)   # or say it yourself

An ``nn.Module`` subclass may be registered directly; its ``__init__`` keywords
become the arguments. Arguments without a default are required; ``shorthand``
names the one a scalar fills (``scale: 2.0``).
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from torchsmith.errors import ConfigError, SpecError
from torchsmith.registry import import_registrations
from torchsmith.sizes import int_dims

__all__ = ["LayerType", "register_layer", "get_layer_type", "layer_types", "Shape", "fmt_shape", "REQUIRED",
           "CONTAINER_TYPES"]

Shape = tuple[int, ...]

#: Types the builder handles itself, because they hold other layers.
CONTAINER_TYPES = ("sequential", "repeat", "residual")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def fmt_shape(shape: Shape) -> str:
    """``(16, 5, 5)`` -> ``[N, 16, 5, 5]``: how a shape reads in a message, batch included."""
    return "[" + ", ".join(["N", *map(str, shape)]) + "]"


@dataclass(frozen=True)
class LayerType:
    """A registered layer type: its factory, its arguments and how its modules are named."""

    name: str
    factory: Callable[..., Any]
    args: dict[str, Any]  # argument -> default (REQUIRED when it has none)
    shorthand: str | None  # the argument a scalar value fills
    takes_shape: bool  # factory(in_shape, **args) rather than factory(**args)
    activation: str | None = None  # nonlinearity name, for choosing the default init
    doc: str = ""

    def required(self) -> list[str]:
        return [k for k, v in self.args.items() if v is REQUIRED]

    def make(self, in_shape: Shape, args: dict[str, Any]) -> tuple[nn.Module, Shape]:
        """Build the module for ``in_shape``; return it and its output shape."""
        result: Any = self.factory(in_shape, **args) if self.takes_shape else self.factory(**args)
        out: Shape | None = None
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
            result, out = result[0], _declared_shape(result[1])
        if not isinstance(result, nn.Module):
            raise SpecError(f"the factory returned a {type(result).__name__}, not an nn.Module")
        lazy = next((type(m).__name__ for m in result.modules() if isinstance(m, LazyModuleMixin)), None)
        if lazy is not None:
            # A lazy module has no weights until its first real forward: nothing to count, check or load.
            raise SpecError(f"the module it builds contains a {lazy}, whose size is only known after a forward; "
                            f"size it from in_shape instead (in_shape is {list(in_shape)}, without the batch)")
        if out is None:
            out = _meta_out_shape(result, in_shape)
        return result, out


def _declared_shape(value: Any) -> Shape:
    """The output shape a factory returned with its module: positive integers, without the batch."""
    dims = int_dims(value)
    if not dims or any(d < 1 for d in dims):
        raise SpecError(f"the factory returned the output shape {value!r}; return (module, shape) with the "
                        f"shape as positive integers without the batch dimension, e.g. (16, 5, 5)")
    return dims


def _meta_out_shape(module: nn.Module, in_shape: Shape) -> Shape:
    """Run a copy of ``module`` on the meta device to learn its output shape (no memory, no compute)."""
    probe = copy.deepcopy(module).to("meta").eval()
    try:
        with torch.no_grad():
            y = probe(torch.empty((2, *in_shape), device="meta"))
    except Exception as e:
        raise SpecError(f"input is {fmt_shape(in_shape)} and the layer fails on it: {type(e).__name__}: {e}") from e
    if not isinstance(y, torch.Tensor):
        raise SpecError(f"a spec layer must return one tensor, but it returned a {type(y).__name__}")
    return tuple(int(d) for d in y.shape[1:])


_LAYERS: dict[str, LayerType] = {}


def register_layer(target: Any = None, *, name: str | None = None, shorthand: str | None = None,
                   activation: str | None = None) -> Any:
    """Register a layer type for specs: ``@register_layer``, ``@register_layer("name")`` or with keywords.

    Layer types in a spec come from this registry only; a spec never names Python code.

    Args:
        target: A factory function ``(in_shape, *, **args) -> nn.Module`` (or ``(nn.Module, out_shape)``), or
            an ``nn.Module`` subclass; a string is taken as ``name``.
        name: The layer type's name in specs; default the function's or class's name.
        shorthand: The argument a bare value sets (``scale: 2.0`` means ``scale: {factor: 2.0}`` with
            ``shorthand="factor"``).
        activation: The nonlinearity it applies, so specs that use it get a matching default init.

    Returns:
        ``target`` itself, or a decorator that registers and returns it.

    Raises:
        ConfigError: The name is already registered.
    """
    if isinstance(target, str):
        return register_layer(name=target, shorthand=shorthand, activation=activation)

    def decorator(obj: Any) -> Any:
        key = str(name or getattr(obj, "__name__", ""))
        if not _NAME.match(key):
            raise ConfigError(f"layer type name {key!r} must be an identifier like 'my_layer'")
        if key in _LAYERS or key in CONTAINER_TYPES:
            raise ConfigError(f"layer type {key!r} is already registered; choose another name")
        _LAYERS[key] = _layer_type(key, obj, shorthand, activation)
        return obj

    if target is not None:
        return decorator(target)
    return decorator


def _layer_type(key: str, obj: Any, shorthand: str | None, activation: str | None) -> LayerType:
    is_class = isinstance(obj, type)
    if is_class and not issubclass(obj, nn.Module):
        raise ConfigError(f"layer type {key!r}: {obj.__name__} is a class but not an nn.Module")
    if not is_class and not callable(obj):
        raise ConfigError(f"layer type {key!r} must be a function or an nn.Module subclass, not {obj!r}")
    params = list(inspect.signature(obj).parameters.values())
    if not is_class:
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise ConfigError(f"layer factory {key!r} must take the input shape as its first argument")
        params = params[1:]
    args: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind is p.POSITIONAL_ONLY:
            raise ConfigError(f"layer type {key!r}: argument {p.name!r} must be passable by keyword")
        if p.name == "name":
            raise ConfigError(f"layer type {key!r}: 'name' is reserved for the module's name in the spec")
        args[p.name] = REQUIRED if p.default is inspect.Parameter.empty else p.default
    if shorthand is not None and shorthand not in args:
        raise ConfigError(f"layer type {key!r}: shorthand {shorthand!r} is not one of its arguments {list(args)}")
    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    return LayerType(name=key, factory=obj, args=args, shorthand=shorthand, takes_shape=not is_class,
                     activation=activation, doc=doc[0] if doc else "")


def get_layer_type(name: str) -> LayerType | None:
    import_registrations()  # the zoo registers its layer types (basic_block, bottleneck) when first imported
    return _LAYERS.get(name)


def layer_types() -> list[str]:
    """Every layer type a spec may name: the registered ones and the containers."""
    import_registrations()
    return sorted([*_LAYERS, *CONTAINER_TYPES])
