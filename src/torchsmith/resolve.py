"""Turn a model reference from the command line into an ``nn.Module``.

A reference is a zoo name (``lenet``), a library model (``hf:bert``,
``hf:path/config.json``, ``timm:convnext_atto``, ``torchvision:resnet50``; random
weights, see :mod:`torchsmith.library`), a file and attribute
(``path/to/net.py:Net``), an importable module and attribute
(``package.module:make_net``), a spec file (``net.yaml``, ``net.json``; built
by :func:`torchsmith.spec.build_file`) or a checkpoint (``model.safetensors``;
rebuilt by :func:`torchsmith.checkpoint.load`). The attribute may be an ``nn.Module`` instance,
a class or a factory; classes and factories are called with the options given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from torchsmith._code import CODE_ATTR, code_record, instantiate, load_attr
from torchsmith.checkpoint import load
from torchsmith.errors import ConfigError, ModelLoadError, UnknownNameError
from torchsmith.registry import ARCH_ATTR, create_model, import_registrations, list_models, source_of
from torchsmith.spec import build_file

__all__ = ["resolve_model"]


SPEC_SUFFIXES = (".yaml", ".yml", ".json")
CHECKPOINT_SUFFIXES = (".safetensors",)


def resolve_model(ref: str, **kwargs: Any) -> nn.Module:
    """Build the model that ``ref`` names.

    Args:
        ref: A zoo name (``lenet``), a library model (``hf:bert``, ``hf:path/config.json``,
            ``timm:convnext_atto``, ``torchvision:resnet50``; random weights), a file and attribute
            (``path/to/net.py:Net``), an importable module and attribute (``package.module:make_net``), a spec
            file (``net.yaml``, ``net.json``) or a checkpoint (``model.safetensors``). The attribute may be an
            ``nn.Module`` instance, a class or a factory.
        **kwargs: Options: passed to the zoo builder, the class or the factory (a config's fields for ``hf:``).

    Returns:
        The model.

    Raises:
        UnknownNameError: No model, attribute or file of that name (with close matches).
        ModelLoadError: The file or module cannot be imported, or the attribute is not a model.
        ConfigError: ``ref`` is not a string, or options are given where none can be taken.
    """
    if not isinstance(ref, str):
        raise ConfigError(f"a model reference is a string such as 'lenet' or 'hf:bert', not {type(ref).__name__}")
    import_registrations()  # a spec file may use the zoo's layer types
    if source_of(ref) is not None:
        return create_model(ref, **kwargs)
    lowered = ref.lower()
    if lowered.endswith(SPEC_SUFFIXES):
        if kwargs:
            raise ConfigError(f"options {sorted(kwargs)} do not apply to a spec file; edit {ref} instead")
        return build_file(ref)
    if lowered.endswith(CHECKPOINT_SUFFIXES):
        if kwargs:
            raise ConfigError(f"options {sorted(kwargs)} do not apply to a checkpoint ({ref})")
        return load(ref)
    if ":" in ref and not _looks_like_windows_path(ref):
        target, _, attr = ref.rpartition(":")
        obj = load_attr(target, attr)
        model = instantiate(obj, ref, kwargs)
        if not hasattr(model, CODE_ATTR) and getattr(model, ARCH_ATTR, None) is None:  # for save: how to rebuild it
            object.__setattr__(model, CODE_ATTR, code_record(target, attr, kwargs))
        return model
    if ref.endswith(".py"):
        raise ModelLoadError(f"{ref!r} names a file but no class or factory in it; write it as {ref}:ClassName")
    if Path(ref).is_file():
        raise ModelLoadError(
            f"{ref!r} is a file torchsmith cannot build a model from: give a spec (.yaml, .yml, .json), "
            f"a checkpoint (.safetensors) or Python code as path/to/file.py:ClassName")
    try:
        return create_model(ref, **kwargs)
    except UnknownNameError as e:
        if e.kind == "model":
            raise UnknownNameError(
                "model", ref, list_models(),
                hint="give a zoo name, hf:NAME, timm:NAME, torchvision:NAME, path/to/file.py:Class, "
                     "package.module:attr, a spec.yaml or a checkpoint.safetensors",
            ) from None
        raise


def _looks_like_windows_path(ref: str) -> bool:
    return len(ref) > 2 and ref[1] == ":" and ref[2] in "\\/"
