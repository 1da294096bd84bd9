"""Model -> spec: write a model family that registered its writer, a spec-built model or an ``nn.Sequential``.

Every spec written here is checked by building it on the meta device and
comparing its ``state_dict`` names and shapes with the model's, so a spec is
only returned when it builds exactly that model. A model family says how it is
written with :func:`register_spec_writer` (the zoo's LeNet and ResNet do, in
their own modules), using its own module names (``conv1``, ``layer1.0``,
``fc``), so the model's weights load into the spec-built one with ``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from torchsmith._meta import build_on_meta
from torchsmith.errors import ConfigError, SpecError
from torchsmith.registry import ARCH_ATTR, create_model, import_registrations
from torchsmith.sizes import int_dims, parse_input_size
from torchsmith.spec.builder import build_model
from torchsmith.spec.loader import plain

__all__ = ["to_spec", "copy_weights", "register_spec_writer", "SpecWriter"]

#: ``writer(model) -> layers``: the spec's ``layers`` list for one model of a family (raise SpecError if it has none).
SpecWriter = Callable[[Any], list[Any]]
W = TypeVar("W", bound=SpecWriter)

_FAMILIES: dict[type, SpecWriter] = {}


def register_spec_writer(cls: type[nn.Module], writer: W | None = None) -> Any:
    """Say how models of class ``cls`` (and its subclasses) are written as a spec.

    ``writer(model)`` returns the spec's ``layers``; :func:`to_spec` adds ``name``, ``input`` and ``init`` and
    checks that the spec builds exactly the model. Usable as ``register_spec_writer(Net, fn)`` or as the
    decorator ``@register_spec_writer(Net)``. A class registers once.
    """

    def decorator(fn: W) -> W:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ConfigError(f"register_spec_writer takes an nn.Module subclass, not {cls!r}")
        if cls in _FAMILIES:
            raise ConfigError(f"{cls.__name__} already has a spec writer (from {_FAMILIES[cls].__module__})")
        _FAMILIES[cls] = fn
        return fn

    if writer is not None:
        return decorator(writer)
    return decorator


def _family_writer(model: nn.Module) -> SpecWriter | None:
    import_registrations()  # the zoo registers its families' writers when first imported
    for cls in type(model).__mro__:
        if cls in _FAMILIES:
            return _FAMILIES[cls]
    return None


def _expressible() -> str:
    families = "".join(f"{cls.__name__}, " for cls in _FAMILIES)
    return f"torchsmith writes {families}spec-built models and nn.Sequential models of standard layers"


def to_spec(model_or_name: nn.Module | str, *, input_shape: tuple[int, ...] | None = None,
            **options: Any) -> dict[str, Any]:
    """The spec of a model: a zoo name (with its ``options``) or a model instance.

    Args:
        model_or_name: A zoo name or an ``nn.Module`` (built by torchsmith or made of layer types specs know).
        input_shape: One sample's (C, H, W), needed only for a model without ``default_input_size`` (named so
            as not to clash with zoo options such as LeNet's ``input_size``).
        **options: Options of the zoo model when ``model_or_name`` is a name.

    Returns:
        The spec as plain data (``input``, ``layers``, ``init``) with the model's exact ``state_dict`` names;
        :func:`build` rebuilds the same architecture from it.

    Raises:
        SpecError: The model cannot be expressed as a spec (the module that cannot is named).
    """
    if isinstance(model_or_name, str):
        # structure only: no memory, no init work, any size (for real if the constructor needs real tensors)
        model = build_on_meta(lambda: create_model(model_or_name, **options))[0]
    elif options:
        raise SpecError(f"options {sorted(options)} apply to a zoo name, not to a model instance")
    else:
        model = model_or_name
    if not isinstance(model, nn.Module):
        raise SpecError(f"to_spec needs an nn.Module or a zoo name, not {type(model).__name__}")
    arch = getattr(model, ARCH_ATTR, None)
    if isinstance(arch, dict) and isinstance(arch.get("spec"), dict):
        return plain(arch["spec"])
    name = arch.get("name") if isinstance(arch, dict) else None
    size = input_shape or getattr(model, "default_input_size", None)
    if size is None:
        raise SpecError(f"{type(model).__name__} has no default_input_size; give input_shape=(C, H, W) "
                        f"(--input CxHxW at the command line)")
    size = _input_dims(size)
    family = _family_writer(model)
    if family is not None:
        layers = family(model)
    elif type(model) in (nn.Sequential,):
        layers = _sequential(model)  # type: ignore[arg-type]
    else:
        raise SpecError(f"{type(model).__name__} cannot be written as a spec: {_expressible()}")
    spec: dict[str, Any] = {"name": name or type(model).__name__.lower(), "input": size}
    policy = getattr(model, "init_policy", None)
    if isinstance(policy, dict):
        spec["init"] = policy
    spec["layers"] = layers
    _verify(model, spec)
    return spec


def _input_dims(size: Any) -> list[int]:
    """``(3, 32, 32)`` or ``"3x32x32"`` as a list of positive ints; a SpecError for anything else."""
    if isinstance(size, str):
        return list(parse_input_size(size))
    dims = int_dims(size)
    if not dims or any(d < 1 for d in dims):
        raise SpecError(f"input_shape must be positive integers without the batch dimension, like (3, 32, 32), "
                        f"not {size!r}")
    return list(dims)


def _verify(model: nn.Module, spec: dict[str, Any]) -> None:
    """Build ``spec`` on the meta device and insist on the model's exact state_dict names and shapes."""
    built, _ = build_model(spec, generator=None, meta=True)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    if want != got:
        if len(list(model.named_modules(remove_duplicate=False))) != len(list(model.named_modules())):
            raise SpecError(f"{type(model).__name__} uses one module in two places (shared weights), which a spec "
                            f"cannot express: every spec entry is a module of its own")
        if want.keys() == got.keys():  # same layers, other sizes: the input shape is not the model's
            key = next(k for k in want if want[k] != got[k])
            raise SpecError(f"for input {spec['input']} the spec gives {key} the shape {list(got[key])}, but the "
                            f"model's is {list(want[key])}; give the input shape the model takes "
                            f"(input_shape=... / --input)")
        diff = sorted(set(want.items()) ^ set(got.items()))[:3]
        raise SpecError(f"{type(model).__name__} cannot be written as a spec exactly (first differences: {diff}); "
                        f"{_expressible()}")


# --------------------------------------------------------------------------- plain nn.Sequential
def _pick(mod: nn.Module, **defaults: Any) -> dict[str, Any]:
    """The arguments of ``mod`` that differ from their defaults (short, readable specs)."""
    out = {}
    for arg, (attr, default) in defaults.items():
        value = getattr(mod, attr)
        if isinstance(value, tuple) and len(set(value)) == 1:
            value = value[0]
        value = list(value) if isinstance(value, tuple) else value
        if value != default:
            out[arg] = value
    return out


def _conv(m: Any) -> dict[str, Any]:
    if m.padding_mode != "zeros" or getattr(m, "transposed", False):
        raise SpecError(f"{type(m).__name__} with padding_mode={m.padding_mode!r} has no spec layer type")
    args = {"out": m.out_channels, "kernel": _pick(m, k=("kernel_size", None))["k"]}
    args.update(_pick(m, stride=("stride", 1), padding=("padding", 0), dilation=("dilation", 1),
                      groups=("groups", 1)))
    if m.bias is None:
        args["bias"] = False
    return {"conv": args}


def _pool(kind: str) -> Callable[[Any], dict[str, Any]]:
    def write(m: Any) -> dict[str, Any]:
        if getattr(m, "dilation", 1) not in (1, (1, 1)) or getattr(m, "return_indices", False) \
                or getattr(m, "count_include_pad", True) is not True or getattr(m, "divisor_override", None):
            raise SpecError(f"{type(m).__name__} with these options has no spec layer type")
        args = _pick(m, kernel=("kernel_size", None))
        if m.stride != m.kernel_size:
            args.update(_pick(m, stride=("stride", None)))
        args.update(_pick(m, padding=("padding", 0), ceil_mode=("ceil_mode", False)))
        return {kind: args}

    return write


def _bn(m: Any) -> dict[str, Any]:
    if m.momentum is None or not m.track_running_stats:
        raise SpecError("BatchNorm with momentum=None or without running stats has no spec layer type")
    return {"batchnorm": _pick(m, eps=("eps", 1e-5), momentum=("momentum", 0.1), affine=("affine", True))}


_WRITERS: dict[type, Callable[[Any], Any]] = {
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
    nn.Linear: lambda m: {"linear": {"out": m.out_features, **({} if m.bias is not None else {"bias": False})}},
    nn.BatchNorm1d: _bn, nn.BatchNorm2d: _bn, nn.BatchNorm3d: _bn,
    nn.LayerNorm: lambda m: {"layernorm": {"dims": len(m.normalized_shape),
                                           **_pick(m, eps=("eps", 1e-5), affine=("elementwise_affine", True))}},
    nn.GroupNorm: lambda m: {"groupnorm": {"groups": m.num_groups,
                                           **_pick(m, eps=("eps", 1e-5), affine=("affine", True))}},
    nn.ReLU: lambda m: "relu", nn.SiLU: lambda m: "silu", nn.Sigmoid: lambda m: "sigmoid", nn.Tanh: lambda m: "tanh",
    nn.Identity: lambda m: "identity",
    nn.GELU: lambda m: {"gelu": _pick(m, approximate=("approximate", "none"))},
    nn.ELU: lambda m: {"elu": _pick(m, alpha=("alpha", 1.0))},
    nn.LeakyReLU: lambda m: {"leaky_relu": _pick(m, slope=("negative_slope", 0.01))},
    nn.Softmax: lambda m: {"softmax": {"dim": _softmax_dim(m)}},
    nn.Dropout: lambda m: {"dropout": _pick(m, p=("p", 0.5))},
    nn.MaxPool1d: _pool("maxpool"), nn.MaxPool2d: _pool("maxpool"), nn.MaxPool3d: _pool("maxpool"),
    nn.AvgPool1d: _pool("avgpool"), nn.AvgPool2d: _pool("avgpool"), nn.AvgPool3d: _pool("avgpool"),
    nn.AdaptiveAvgPool1d: lambda m: {"adaptive_avgpool": {"size": m.output_size}},
    nn.AdaptiveAvgPool2d: lambda m: {"adaptive_avgpool": {"size": _size(m.output_size)}},
    nn.AdaptiveMaxPool2d: lambda m: {"adaptive_maxpool": {"size": _size(m.output_size)}},
}


def _softmax_dim(m: nn.Softmax) -> int:
    if m.dim is None:  # torch picks it by the input's rank (dim 1 for 4-d input, not the last), so no one dim fits
        raise SpecError("nn.Softmax() without dim picks its dimension from the input's rank (deprecated in torch); "
                        "give it one, e.g. nn.Softmax(dim=1)")
    return int(m.dim)


def _size(size: Any) -> Any:
    if isinstance(size, tuple):
        if None in size:
            raise SpecError("adaptive pooling with a None size has no spec layer type")
        return size[0] if len(set(size)) == 1 else list(size)
    return size


def _sequential(seq: nn.Sequential) -> list[Any]:
    layers: list[Any] = []
    for name, mod in seq.named_children():
        if type(mod) is nn.Sequential:
            entry: Any = {"sequential": {"layers": _sequential(mod)}}
        elif type(mod) is nn.Flatten:
            if mod.end_dim != -1:
                raise SpecError("nn.Flatten with end_dim other than -1 has no spec layer type")
            entry = {"flatten": {"start": mod.start_dim}} if mod.start_dim != 1 else "flatten"
        elif type(mod) in _WRITERS:
            entry = _WRITERS[type(mod)](mod)
        else:
            raise SpecError(f"{name}: {type(mod).__name__} has no spec layer type; register one with "
                            f"@torchsmith.register_layer and write the spec by hand")
        if isinstance(entry, str):
            entry = {entry: {}}
        kind = next(iter(entry))
        entry[kind]["name"] = int(name) if name.isdigit() else name
        layers.append(entry)
    return layers


# --------------------------------------------------------------------------- weights
def copy_weights(src: nn.Module, dst: nn.Module) -> list[tuple[str, str]]:
    """Copy ``src``'s state_dict into ``dst`` by position, every shape checked; return the (src, dst) name pairs.

    For two models with the same layers in the same order but different names,
    e.g. a zoo model and the spec that reproduces it.
    """
    for model in (src, dst):
        if not isinstance(model, nn.Module):
            raise SpecError(f"copy_weights copies between two nn.Modules, not a {type(model).__name__}")
    a, b = src.state_dict(), dst.state_dict()
    if len(a) != len(b):
        raise SpecError(f"the models have {len(a)} and {len(b)} tensors in their state_dict; copying by position "
                        f"needs the same layers in the same order")
    pairs: OrderedDict[str, torch.Tensor] = OrderedDict()
    names: list[tuple[str, str]] = []
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        if va.shape != vb.shape:
            raise SpecError(f"tensor {len(names)}: {ka} has shape {list(va.shape)} but {kb} has "
                            f"{list(vb.shape)}; the layers differ at this point")
        pairs[kb] = va
        names.append((ka, kb))
    dst.load_state_dict(pairs, strict=True)
    return names
