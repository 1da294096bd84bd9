"""What a model holds outside registration (:func:`scan_unregistered`), and lazy layers sized by a dry run
(:func:`materialise_lazy`)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

from torchsmith.contract._guard import hooks_set_aside
from torchsmith.contract._input import HOW_TO_GIVE, input_spec
from torchsmith.errors import ConfigError, describe_error, format_size

# ---- modules and tensors held outside registration ------------------------------------------------------

MODULE_ATTRS = frozenset(nn.Module().__dict__)  # _parameters, _buffers, _modules, hook dicts, training


def walk_held(value: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Modules and tensors inside plain containers, with the dotted path they would have if registered."""
    if isinstance(value, (nn.Module, torch.Tensor)):
        yield path, value
    elif depth < 4 and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from walk_held(v, f"{path}.{i}", depth + 1)
    elif depth < 4 and isinstance(value, dict):
        for k, v in value.items():
            yield from walk_held(v, f"{path}.{k}", depth + 1)


def scan_unregistered(model: nn.Module) -> list[tuple[str, str, Any]]:
    """(would-be path, owner path, object) for every module/tensor held outside the registration dicts."""
    registered_modules = {id(m) for m in model.modules()}
    registered_tensors = {id(t) for t in model.parameters()} | {id(t) for t in model.buffers()}
    found: list[tuple[str, str, Any]] = []
    seen: set[int] = set()
    for owner, module in model.named_modules():
        managed = _hook_managed(module)
        for attr, value in vars(module).items():
            if attr in MODULE_ATTRS or attr in managed:
                continue
            base = f"{owner}.{attr}" if owner else attr
            for path, obj in walk_held(value, base):
                if id(obj) in seen:
                    continue
                if isinstance(obj, nn.Module) and id(obj) not in registered_modules:
                    seen.add(id(obj))
                    found.append((path, owner, obj))
                elif isinstance(obj, torch.Tensor) and id(obj) not in registered_tensors:
                    seen.add(id(obj))
                    found.append((path, owner, obj))
    return found


def _hook_managed(module: nn.Module) -> set[str]:
    """Attributes that torch's own hooks recompute before every forward from registered parameters:
    ``nn.utils.spectral_norm``'s and ``weight_norm``'s ``weight`` (from ``weight_orig``, or ``weight_g`` and
    ``weight_v``)."""
    names = set()
    for hook in getattr(module, "_forward_pre_hooks", {}).values():
        if type(hook).__module__.startswith("torch.nn.utils") and isinstance(getattr(hook, "name", None), str):
            names.add(hook.name)
    return names


def unregistered_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules with parameters held in plain lists, dicts or attributes the model does not register.

    Their parameters are not the model's (``parameters()``, ``state_dict``, ``.to()`` miss them).
    """
    return [(path, obj) for path, _, obj in scan_unregistered(model)
            if isinstance(obj, nn.Module) and any(True for _ in obj.parameters())]


# ---- lazy modules ------------------------------------------------------------------------------------------


def lazy_tensors(model: nn.Module) -> list[str]:
    """The names of ``model``'s parameters and buffers whose shape is not known yet (``nn.Lazy*`` modules)."""
    return [n for n, t in (*model.named_parameters(), *model.named_buffers()) if is_lazy(t)]


def copy_model(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)``, also for a model with uninitialised lazy tensors (plain deepcopy refuses them).

    Each lazy tensor becomes a fresh uninitialised one of the same kind, device and dtype in the copy; the
    copy's lazy modules are materialised by its own first forward (:func:`materialise_lazy`).
    """
    memo: dict[int, Any] = {}
    for t in (*model.parameters(), *model.buffers()):
        if is_lazy(t) and id(t) not in memo:
            memo[id(t)] = fresh_lazy(t)
    return copy.deepcopy(model, memo)


def fresh_lazy(t: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """A new uninitialised tensor of ``t``'s kind (parameter or buffer) and dtype, on ``device`` or ``t``'s."""
    kind = UninitializedParameter if isinstance(t, UninitializedParameter) else UninitializedBuffer
    # torch's stubs omit the device/dtype keywords its constructors take
    return kind(requires_grad=t.requires_grad, device=device or t.device, dtype=t.dtype)  # type: ignore[call-arg]


def materialise_lazy(model: nn.Module, input_size: Any = None, *,
                     input_dtype: torch.dtype | None = None) -> str | None:
    """Give ``model``'s ``nn.Lazy*`` modules their shapes with one dry forward at the contract's input.

    The dry run is what the d2l book does by hand (``net(X)`` on a sample batch): an eval-mode forward under
    ``no_grad`` on a batch of 2, on the model's own device (meta for a meta model: no memory). The user's
    hooks do not see it, every module's mode is put back, and the global RNG is left as it was (the new
    weights are drawn from a fork of it). Returns what was done, such as ``"materialised 10 lazy tensors at
    1x28x28"``, or None when the model has no lazy tensor. Raises :class:`ConfigError` when the input size is
    not known or the dry run fails.
    """
    lazy = lazy_tensors(model)
    if not lazy:
        return None
    try:
        spec = input_spec(model, input_size, input_dtype=input_dtype)
    except ConfigError as e:
        raise ConfigError(f"{type(model).__name__} has lazy (nn.Lazy*) layers whose sizes come from the first "
                          f"batch, and its input size is not known: give it ({HOW_TO_GIVE})") from e
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    x = spec.example(2, device=device) if device.type != "meta" else torch.empty(
        (2, *spec.size), dtype=spec.dtype, device="meta")
    error = _dry_run(model, x)
    left = lazy_tensors(model)
    if error is not None or left:
        why = f": {describe_error(error, 240)}" if error else (
            f"; {', '.join(left[:3])} stayed uninitialised (the forward does not use them)")
        raise ConfigError(f"the dry run that sizes {type(model).__name__}'s lazy layers failed at input "
                          f"{format_size(spec.size)}{why}; give the input size the model takes "
                          f"({HOW_TO_GIVE})") from error
    return f"materialised {len(lazy)} lazy tensors at {format_size(spec.size)}"


def _dry_run(model: nn.Module, x: torch.Tensor) -> BaseException | None:
    def keep(m: nn.Module, attr: str) -> bool:  # a lazy module sizes itself in a pre-hook of its own
        return isinstance(m, LazyModuleMixin) and attr.startswith("_forward_pre_hooks")

    try:
        with hooks_set_aside(model, keep), torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x)
        return None
    except Exception as e:
        return e
