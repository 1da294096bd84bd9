"""Models from the user's own code: ``path/to/net.py:Net`` or ``package.module:make_net``.

:func:`load_attr` imports the file or module and returns the attribute, :func:`instantiate` calls a class or a
factory with the options. :func:`code_record` is what a checkpoint keeps of such a model (the reference, the
options, the file's sha256), and :func:`rebuild_from_code` builds it again from that record: only a class
(an ``nn.Module`` subclass) from a file whose bytes are the ones the checkpoint was written with, unless the
caller trusts the code (``trust_code=True``: a changed file, a module, a factory).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from torchsmith.errors import CheckpointError, ConfigError, ModelLoadError, TorchsmithError, UnknownNameError

__all__ = ["load_attr", "instantiate", "code_record", "rebuild_from_code", "CODE_ATTR", "is_file_target"]

#: The attribute a model built from user code carries: {"ref", "kwargs", "sha256"} (see :func:`code_record`).
CODE_ATTR = "torchsmith_code"


def is_file_target(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def code_record(target: str, attr: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint records of a model built from ``target:attr``: an absolute file path and its sha256."""
    if is_file_target(target):
        path = Path(target).resolve()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return {"ref": f"{path}:{attr}", "kwargs": dict(kwargs), "sha256": digest}
    return {"ref": f"{target}:{attr}", "kwargs": dict(kwargs), "sha256": None}


def rebuild_from_code(record: Mapping[str, Any], *, trust_code: bool, source: Any) -> nn.Module:
    """The model ``record`` (:func:`code_record`) describes, built again from its code; see the module's rules."""
    ref, kwargs, digest = record.get("ref"), record.get("kwargs") or {}, record.get("sha256")
    if not isinstance(ref, str) or ":" not in ref or not isinstance(kwargs, Mapping):
        raise CheckpointError(f"{source}: metadata 'code' must hold a reference 'file.py:Class', not {record!r:.80}")
    target, _, attr = ref.rpartition(":")
    how = (f"build the model yourself and use torchsmith.load_into(model, {str(source)!r}), or pass "
           "trust_code=True to run the code it names")
    if not is_file_target(target) and not trust_code:
        raise CheckpointError(f"{source} was written from a model built by {ref}, code of an importable module that "
                              f"torchsmith does not run unasked; {how}")
    if is_file_target(target):
        path = Path(target)
        if not path.is_file():
            raise CheckpointError(f"{source} was written from a model in {path}, which does not exist here; {how}")
        if digest is not None and hashlib.sha256(path.read_bytes()).hexdigest() != digest and not trust_code:
            raise CheckpointError(f"{source} was written from a model in {path}, and that file has changed since; "
                                  f"{how}")
    try:
        obj = load_attr(target, attr)
        if not trust_code and not (isinstance(obj, type) and issubclass(obj, nn.Module)):
            raise CheckpointError(f"{source} names {ref}, which is not an nn.Module class; {how}")
        return instantiate(obj, ref, dict(kwargs))
    except CheckpointError:
        raise
    except TorchsmithError as e:
        raise CheckpointError(f"{source} cannot be rebuilt from {ref}: {e}") from e


def load_attr(target: str, attr: str) -> Any:
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


def instantiate(obj: Any, ref: str, kwargs: dict[str, Any]) -> nn.Module:
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
