"""The model registry: ``@register_model``, ``create_model`` and ``list_models``.

A builder is a small function with keyword-only options that returns an
``nn.Module``. ``create_model`` records the name and options on the model
(``model.torchsmith_arch``) so a checkpoint can rebuild it later.

A *source* builds models another library names: ``create_model("hf:bert")``
calls the builder registered with ``@register_source("hf")`` with ``"bert"``
(see :mod:`torchsmith.library`).

The registry never imports what registers in it: ``torchsmith.models`` imports the zoo's families, each of
which calls ``@register_model``, and ``torchsmith.library`` registers its sources. The package
``torchsmith`` names both to :func:`register_later`, and the registry imports them the first time it is
asked anything (a lookup, a listing or a new registration), so ``import torchsmith`` does not pay for the zoo
and every name is registered before any is looked up.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from torchsmith.errors import ConfigError, TorchsmithError, UnknownNameError

__all__ = ["register_model", "register_source", "source_of", "create_model", "list_models", "model_options",
           "ARCH_ATTR", "register_later",
           "import_registrations"]

#: Attribute set on every model built by ``create_model``: {"name": ..., "kwargs": {...}}.
ARCH_ATTR = "torchsmith_arch"

Builder = Callable[..., nn.Module]
F = TypeVar("F", bound=Builder)

_MODELS: dict[str, Builder] = {}
_SOURCES: dict[str, Builder] = {}  # "hf" -> builder(ref, **options)
_LATER: list[str] = []  # modules that register here, imported when the registry is first asked (register_later)


def register_later(*modules: str) -> None:
    """Import ``modules`` (each registers models or sources when imported) the first time the registry is asked.

    The package ``torchsmith`` names the zoo and the library sources here, so ``import torchsmith`` stays cheap.
    """
    _LATER.extend(modules)


def import_registrations() -> None:
    """Import what :func:`register_later` named (once): after this every zoo model, zoo spec layer and library
    source is registered. The registry's own lookups call it; so does anything that reads a table the zoo
    fills elsewhere (the spec layer types) before asking the registry."""
    while _LATER:
        importlib.import_module(_LATER.pop(0))  # popped first: the module's own registrations come back here


def register_model(fn: F | None = None, *, name: str | None = None) -> Any:
    """Register a model builder under ``name`` (default: the function's name).

    Usable as ``@register_model`` or ``@register_model(name="...")``. The builder takes keyword-only
    options and returns an ``nn.Module``; :func:`create_model` then builds it by name.

    Args:
        fn: The builder, when used as a bare decorator.
        name: The name to register under; default ``fn.__name__``.

    Returns:
        The builder itself (or, with only ``name``, a decorator that registers and returns it).

    Raises:
        ConfigError: The name is already registered.
    """

    def decorator(builder: F) -> F:
        import_registrations()  # a name the zoo holds is refused now, not when the zoo is imported later
        key = name or builder.__name__
        if key in _MODELS:
            raise ConfigError(f"model {key!r} is already registered (by {_MODELS[key].__module__})")
        _MODELS[key] = builder
        return builder

    if fn is not None:
        return decorator(fn)
    return decorator


def register_source(prefix: str) -> Callable[[F], F]:
    """Register ``builder(ref, **options)`` for model names ``"<prefix>:<ref>"``; a prefix registers once."""

    def decorator(builder: F) -> F:
        import_registrations()
        if prefix in _SOURCES:
            raise ConfigError(f"model source {prefix!r} is already registered (by {_SOURCES[prefix].__module__})")
        _SOURCES[prefix] = builder
        return builder

    return decorator


def source_of(name: str) -> str | None:
    """The source prefix of ``name`` (``"hf"`` for ``"hf:bert"``), or None for a zoo name or anything else."""
    if not isinstance(name, str) or ":" not in name:
        return None
    import_registrations()
    prefix = name.partition(":")[0]
    return prefix if prefix in _SOURCES else None


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the registered zoo models, sorted.

    Args:
        pattern: A glob such as ``"resnet*"``; ``None`` lists every model.

    Returns:
        The matching names (library sources such as ``hf:`` are not listed; they take any model type).
    """
    import_registrations()
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def get_builder(name: str) -> Builder:
    if not isinstance(name, str):
        raise ConfigError(f"a model name is a string such as 'lenet', not {type(name).__name__}")
    import_registrations()
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownNameError("model", name, _MODELS, hint="see `torchsmith models`") from None


def model_options(name: str) -> dict[str, Any]:
    """The keyword options of a registered model and their defaults."""
    sig = inspect.signature(get_builder(name))
    return {
        p.name: (None if p.default is inspect.Parameter.empty else p.default)
        for p in sig.parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword options ``kwargs``.

    Option values are checked against the builder's annotations first, so ``num_classes="abc"`` is refused
    with the option's name, not a TypeError from deep inside the model. The model records its name and
    options, so :func:`torchsmith.save` / :func:`torchsmith.load` rebuild it.

    >>> model = create_model("lenet", in_channels=1, input_size=28)

    Args:
        name: A zoo name (``"lenet"``, ``"resnet18"``; see :func:`list_models`) or a library model:
            ``"hf:bert"``, ``"hf:path/config.json"``, ``"timm:convnext_atto"``, ``"torchvision:resnet50"``
            (random weights, nothing downloaded; see :mod:`torchsmith.library`).
        **kwargs: The builder's keyword options (``num_classes=10``, ``stem="cifar"``; for ``hf:`` models,
            config fields).

    Returns:
        The freshly built and initialised model.

    Raises:
        UnknownNameError: ``name`` or an option is unknown (with close matches).
        ConfigError: An option has the wrong type, or the builder fails with these options.
        ModelLoadError: A library model's package is missing (the message names the pip command).
    """
    prefix = source_of(name)
    if prefix is not None:
        model = _SOURCES[prefix](name.partition(":")[2], **kwargs)
        if getattr(model, ARCH_ATTR, None) is None:  # a source may record a self-contained form itself
            object.__setattr__(model, ARCH_ATTR, {"name": name, "kwargs": dict(kwargs)})
        return model
    builder = get_builder(name)
    sig = inspect.signature(builder)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_any:
        for key in kwargs:
            if key not in sig.parameters:
                shown = ", ".join(f"{k}={v!r}" for k, v in model_options(name).items())
                raise UnknownNameError("option", key, sig.parameters, hint=f"{name}'s defaults: {shown}")
    _check_option_types(name, builder, kwargs)
    try:
        model = builder(**kwargs)
    except TorchsmithError:
        raise
    except (TypeError, ValueError) as e:  # an option value the annotations could not vet
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) or "its defaults"
        raise ConfigError(f"building model {name!r} with {given} failed: {type(e).__name__}: {e}") from e
    object.__setattr__(model, ARCH_ATTR, {"name": name, "kwargs": dict(kwargs)})
    return model


def _check_option_types(name: str, builder: Builder, kwargs: dict[str, Any]) -> None:
    try:
        hints = typing.get_type_hints(builder)
    except Exception:  # annotations that do not resolve: nothing to check against
        return
    for key, value in kwargs.items():
        hint = hints.get(key)
        if hint is not None and not _fits(value, hint):
            raise ConfigError(f"option {key}={value!r} of model {name!r} must be {_describe(hint)}, "
                              f"not {type(value).__name__}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits annotation ``hint``; anything this cannot judge fits."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args))
    return True  # callables, classes, protocols: the builder judges those


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) is tuple:
        return "a list " + str(hint).replace("typing.", "").replace("tuple", "")
    if isinstance(hint, type):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}.get(
            hint.__name__, f"a {hint.__name__}")
    return str(hint).replace("typing.", "")
