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

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from torch import nn

from torchsmith.checkpoint import load
from torchsmith.errors import ConfigError, ModelLoadError, UnknownNameError
from torchsmith.registry import create_model, import_registrations, list_models, source_of
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
        obj = _load_attr(target, attr)
        return _instantiate(obj, ref, kwargs)
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


def _load_attr(target: str, attr: str) -> Any:
    if not attr:
        raise ModelLoadError(f"model reference {target}: names no attribute; write it as {target}:ClassName")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise ModelLoadError(f"model file {target!r} does not exist")
        name = f"_torchsmith_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {target!r} as Python source")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        # The file's folder is importable while it runs, as under `python file.py`: a model file
        # commonly imports its sibling modules (from blocks import Block).
        folder = str(path.resolve().parent)
        added = folder not in sys.path
        if added:
            sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        except SystemExit as e:  # a script run on import: its sys.exit() would end the caller silently
            sys.modules.pop(name, None)
            raise ModelLoadError(
                f"importing {target!r} called sys.exit({e.code!r}); put its script code under "
                "`if __name__ == '__main__':`") from None
        except Exception as e:
            sys.modules.pop(name, None)
            raise ModelLoadError(f"importing {target!r} failed: {type(e).__name__}: {e}") from e
        finally:
            if added and folder in sys.path:
                sys.path.remove(folder)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ModelLoadError(f"cannot import module {target!r}: {e}") from e
        except SystemExit as e:
            raise ModelLoadError(
                f"importing {target!r} called sys.exit({e.code!r}); put its script code under "
                "`if __name__ == '__main__':`") from None
        except Exception as e:
            raise ModelLoadError(f"importing {target!r} failed: {type(e).__name__}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        public = [n for n in dir(module) if not n.startswith("_")]
        raise UnknownNameError(f"attribute of {target}", attr, public) from None


def _instantiate(obj: Any, ref: str, kwargs: dict[str, Any]) -> nn.Module:
    if isinstance(obj, nn.Module):
        if kwargs:
            raise ConfigError(f"{ref} is a model instance; options {sorted(kwargs)} cannot be applied to it")
        return obj
    if not callable(obj):
        raise ModelLoadError(f"{ref} is a {type(obj).__name__}, not an nn.Module, class or factory")
    try:
        model = obj(**kwargs)
    except TypeError as e:
        raise ModelLoadError(f"calling {ref} failed: {e}") from e
    except Exception as e:
        raise ModelLoadError(f"building {ref} failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{ref} returned a {type(model).__name__}, not an nn.Module")
    return model
