"""The model registry: ``@register_model``, ``create_model`` and ``list_models``.

A builder is a small function with keyword-only options that returns an
``nn.Module``. ``create_model`` records the name and options on the model
(``model.torchsmith_arch``) so a checkpoint can rebuild it later.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from torchsmith.errors import ConfigError, UnknownNameError

__all__ = ["register_model", "create_model", "list_models", "model_options", "ARCH_ATTR"]

#: Attribute set on every model built by ``create_model``: {"name": ..., "kwargs": {...}}.
ARCH_ATTR = "torchsmith_arch"

Builder = Callable[..., nn.Module]
F = TypeVar("F", bound=Builder)

_MODELS: dict[str, Builder] = {}


def register_model(fn: F | None = None, *, name: str | None = None) -> Any:
    """Register a model builder under ``name`` (default: the function's name).

    Usable as ``@register_model`` or ``@register_model(name="...")``.
    Registering a name twice raises :class:`ConfigError`.
    """

    def decorator(builder: F) -> F:
        key = name or builder.__name__
        if key in _MODELS:
            raise ConfigError(f"model {key!r} is already registered (by {_MODELS[key].__module__})")
        _MODELS[key] = builder
        return builder

    if fn is not None:
        return decorator(fn)
    return decorator


def _ensure_zoo_loaded() -> None:
    # Importing the zoo registers its builders; done lazily so that importing
    # the registry alone has no side effects beyond defining it.
    import torchsmith.models  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Names of registered models, sorted; ``pattern`` is a glob (``resnet*``)."""
    _ensure_zoo_loaded()
    names = sorted(_MODELS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def get_builder(name: str) -> Builder:
    _ensure_zoo_loaded()
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

    >>> model = create_model("lenet", in_channels=1, input_size=28)
    """
    builder = get_builder(name)
    sig = inspect.signature(builder)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_any:
        for key in kwargs:
            if key not in sig.parameters:
                raise UnknownNameError(
                    f"option for model {name!r}", key, sig.parameters,
                    hint="options: " + ", ".join(sig.parameters),
                )
    model = builder(**kwargs)
    object.__setattr__(model, ARCH_ATTR, {"name": name, "kwargs": dict(kwargs)})
    return model
