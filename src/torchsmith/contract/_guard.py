"""A model left as it was found: what a read-only call's own forward adds to a module is taken away again.

Running a model can change it: a library installs hooks lazily on the first forward and marks the model as
hooked (transformers' output capturing), a forward caches a tensor on ``self``. A read-only torchsmith call
promises the caller's model back unchanged, so :func:`as_found` removes the attributes and hooks that appeared
during the call. Taking the mark away with the hooks is what keeps the library working: its next forward
installs them again. :func:`hooks_set_aside` also sets the model's own forward hooks aside for a probe.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

__all__ = ["as_found", "hooks_set_aside", "HOOK_DICTS"]

#: The forward-hook dicts of an ``nn.Module``, which a probe sets aside.
HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
              "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")
_ALL_HOOK_DICTS = (*HOOK_DICTS, "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
                   "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


@contextmanager
def as_found(model: nn.Module) -> Iterator[None]:
    """Afterwards each module of ``model`` has the attributes and hooks it had before, no new ones."""
    saved = [(m, set(vars(m)), {a: set(d) for a in _ALL_HOOK_DICTS if isinstance(d := getattr(m, a, None), dict)})
             for m in model.modules()]
    try:
        yield
    finally:
        for m, attrs, hooks in saved:
            for a in set(vars(m)) - attrs:
                if not a.startswith("__"):
                    delattr(m, a)
            for a, keys in hooks.items():
                d = getattr(m, a, None)
                if isinstance(d, dict):
                    for k in set(d) - keys:
                        del d[k]


@contextmanager
def hooks_set_aside(model: nn.Module, keep: Callable[[nn.Module, str], bool] = lambda m, a: False) -> Iterator[None]:
    """Run ``model`` in eval mode with its forward hooks set aside; afterwards it is as it was (:func:`as_found`).

    A probe must not feed the user's recorders, so each module's forward hooks are set aside (except those
    ``keep`` names), and every mode flag and hook dict is put back afterwards.
    """
    saved = [(m, m.training, {a: getattr(m, a) for a in HOOK_DICTS if hasattr(m, a)}) for m in model.modules()]
    with as_found(model):
        try:
            for m, _, hooks in saved:
                m.training = False  # the flag itself: train() would run user overrides
                for a, d in hooks.items():
                    if not keep(m, a):
                        setattr(m, a, type(d)())
            yield
        finally:
            for m, training, hooks in saved:
                m.training = training
                for a, d in hooks.items():
                    if getattr(m, a, None) is not d:
                        setattr(m, a, d)


def leaves_model_as_found(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a function whose first argument is a model so that the model comes back :func:`as_found`."""

    @functools.wraps(fn)
    def wrapper(model: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(model, nn.Module):
            return fn(model, *args, **kwargs)
        with as_found(model):
            return fn(model, *args, **kwargs)

    return wrapper
