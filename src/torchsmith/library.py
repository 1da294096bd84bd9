"""Library models by name, with random weights and no download: ``hf:``, ``timm:`` and ``torchvision:``.

* ``hf:NAME`` -- a Hugging Face transformers model type (``hf:bert``, ``hf:llama``, ``hf:vit``), built with
  ``AutoConfig.for_model(NAME, **options)`` + ``AutoModel.from_config``; options are config fields
  (``num_hidden_layers=2``). ``hf:NAME:HEAD`` picks a model with a head: ``HEAD`` is an auto-class suffix
  (``hf:bert:ForSequenceClassification`` -> ``AutoModelForSequenceClassification``) or a transformers class
  name (``hf:bert:BertForMaskedLM``).
* ``hf:PATH/config.json`` (or a folder holding one) -- the config a checkpoint ships with, read locally; the
  options override its fields. Built under ``torch.device("meta")`` (as ``summary`` does), a 70B model's
  summary takes seconds and no weight memory.
* ``timm:NAME`` -- ``timm.create_model(NAME, pretrained=False, **options)``.
* ``torchvision:NAME`` -- ``torchvision.models.get_model(NAME, weights=None, **options)``.

Each builder is registered as a source of :mod:`torchsmith.registry`, so ``create_model("hf:bert")`` and
``resolve_model("hf:bert")`` build them and record ``{"name": ..., "kwargs": ...}`` on the model, which is
what :func:`torchsmith.save` stores and :func:`torchsmith.load` and :func:`torchsmith.contract.rebuild` rebuild
from. The libraries are imported only when a model of theirs is asked for; a missing one is a
:class:`ModelLoadError` naming the pip command.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith.errors import ConfigError, ModelLoadError, TorchsmithError, UnknownNameError, describe_error, first_line
from torchsmith.registry import ARCH_ATTR, register_source

__all__ = ["build_hf", "build_timm", "build_torchvision", "LIBRARY_PREFIXES", "HF_INSTALL"]

HF_INSTALL = "pip install 'torchsmith[hf]'"
LIBRARY_PREFIXES = ("hf", "timm", "torchvision")

#: A model built for real (not on meta) above this share of the machine's memory is refused with advice:
#: ``check hf:llama`` with the default (7B) config would otherwise swap the machine to a halt.
_MEMORY_SHARE = 0.5
#: Config fields that describe the file, not the architecture.
_FILE_FIELDS = ("transformers_version", "_name_or_path", "model_type", "auto_map", "_commit_hash")


def _import(module: str, ref: str, install: str) -> Any:
    package = module.partition(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ModelLoadError(f"{ref} needs {package}, which is not installed ({e}); install it: {install}") from None
    except Exception as e:  # a broken install (a torchvision built for another torch) fails with other errors
        raise ModelLoadError(f"{ref} needs {package}, which fails to import ({describe_error(e)}); "
                             f"reinstall it: {install}") from None


# ---- transformers ------------------------------------------------------------------------------------------


def split_head(ref: str) -> tuple[str, str | None]:
    """``"bert:ForMaskedLM"`` -> ``("bert", "ForMaskedLM")``; a path keeps its drive colon (``C:/x``)."""
    body, sep, head = ref.rpartition(":")
    if sep and body and head and head.isidentifier():
        return body, head
    return ref, None


@register_source("hf")
def build_hf(ref: str, **options: Any) -> nn.Module:
    """A transformers model with random weights from a model type or a local config.json (see module docstring)."""
    body, head = split_head(ref)
    name = f"hf:{ref}"
    if not body:
        raise ConfigError("hf: needs a model type or a config file, e.g. hf:bert, hf:llama or hf:path/config.json")
    transformers = _import("transformers", name, HF_INSTALL)
    config, record = _hf_config(transformers, body, head, options, name)
    auto = _model_class(transformers, head, name)
    meta = torch.get_default_device().type == "meta"
    try:
        if not meta:
            _refuse_if_too_big(auto, config, name)
        model = auto.from_config(config) if hasattr(auto, "from_config") and auto.__name__.startswith("Auto") \
            else auto(config)
    except TorchsmithError:
        raise
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise ConfigError(f"{name}: transformers has no {head} model for {type(config).__name__}; choose "
                              f"another head, or none (hf:{body})") from None
        raise ConfigError(f"building {name} failed: {first_line(e, 300)}; check the options") from e
    except Exception as e:
        raise ConfigError(f"building {name} failed: {type(e).__name__}: {first_line(e, 300)}; check the options") from e
    if record is not None:
        object.__setattr__(model, ARCH_ATTR, record)
    return model


def _hf_config(transformers: Any, body: str, head: str | None, options: dict[str, Any],
               name: str) -> tuple[Any, dict[str, Any] | None]:
    """The config object, and the architecture record when it came from a file (the file may move)."""
    path = Path(body)
    is_file = body.endswith(".json") or "/" in body or os.sep in body or path.is_dir()
    mapping = transformers.CONFIG_MAPPING
    if is_file:
        fields = _read_config(path, name)
        model_type = fields.get("model_type")
        if not isinstance(model_type, str) or model_type not in mapping:
            raise ConfigError(f"{name}: the config has model_type {model_type!r}, which transformers "
                              f"{transformers.__version__} does not know; give a config.json with a known "
                              "model_type such as 'llama' or 'bert'")
        fields = {k: v for k, v in fields.items() if k not in _FILE_FIELDS}
        fields.update(options)
    else:
        model_type, fields = body, dict(options)
        if model_type not in mapping:
            raise UnknownNameError("transformers model type", model_type, list(mapping.keys()),
                                   hint="see transformers.CONFIG_MAPPING; e.g. hf:bert, hf:llama, hf:vit")
    try:
        config = transformers.AutoConfig.for_model(model_type, **fields)
    except Exception as e:
        given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "its defaults"
        raise ConfigError(f"the {model_type} config with {given} is invalid: {type(e).__name__}: "
                          f"{first_line(e, 300)}") from e
    record = None
    if is_file:
        kwargs = {k: v for k, v in config.to_diff_dict().items() if k not in _FILE_FIELDS}
        record = {"name": f"hf:{model_type}" + (f":{head}" if head else ""), "kwargs": kwargs}
    return config, record


def _read_config(path: Path, name: str) -> dict[str, Any]:
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ModelLoadError(f"{name}: {file} does not exist; give the path of a transformers config.json")
    try:
        fields = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelLoadError(f"{name}: {file} is not a readable JSON file ({type(e).__name__}: {e})") from None
    if not isinstance(fields, dict):
        raise ModelLoadError(f"{name}: {file} holds a {type(fields).__name__}, not a config object")
    return fields


def _model_class(transformers: Any, head: str | None, name: str) -> Any:
    if head is None:
        return transformers.AutoModel
    candidates = [f"AutoModel{head}", head] if head.startswith("For") else [head]
    for attr in candidates:
        cls = getattr(transformers, attr, None)
        if isinstance(cls, type):
            return cls
    heads = [a.removeprefix("AutoModel") for a in dir(transformers) if a.startswith("AutoModelFor")]
    raise UnknownNameError("transformers head", head, heads,
                           hint=f"write {name.rpartition(':')[0]}:ForSequenceClassification, or a class name "
                                "such as BertForMaskedLM")


def _refuse_if_too_big(auto: Any, config: Any, name: str) -> None:
    """Count the parameters on meta first; refuse with advice a model that would not fit in memory."""
    with torch.device("meta"):
        probe = auto.from_config(config) if auto.__name__.startswith("Auto") else auto(config)
    dtype = getattr(config, "dtype", None)
    size = torch.empty((), dtype=dtype if isinstance(dtype, torch.dtype) else torch.float32).element_size()
    need = sum(p.numel() for p in probe.parameters()) * size
    limit = _memory_bytes() * _MEMORY_SHARE
    if limit and need > limit:
        raise ConfigError(
            f"{name} has {sum(p.numel() for p in probe.parameters()) / 1e9:.1f}B parameters ({need / 2**30:.0f} GiB), "
            f"more than half this machine's memory; `torchsmith show` summarises it on meta, or build a smaller "
            "one with options such as --opt num_hidden_layers=2 --opt hidden_size=256")


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


# ---- timm and torchvision ----------------------------------------------------------------------------------


@register_source("timm")
def build_timm(ref: str, **options: Any) -> nn.Module:
    """``timm.create_model(ref, pretrained=False, **options)``."""
    timm = _import("timm", f"timm:{ref}", "pip install timm")
    known = timm.list_models()
    if ref not in known:
        raise UnknownNameError("timm model", ref, known, hint="see timm.list_models()")
    if options.pop("pretrained", False):
        raise ConfigError(f"timm:{ref} is built with random weights; torchsmith downloads nothing "
                          "(load weights with torchsmith.load_into)")
    try:
        return timm.create_model(ref, pretrained=False, **options)
    except Exception as e:
        raise ConfigError(f"building timm:{ref} failed: {type(e).__name__}: {first_line(e, 300)}") from e


@register_source("torchvision")
def build_torchvision(ref: str, **options: Any) -> nn.Module:
    """``torchvision.models.get_model(ref, weights=None, **options)``."""
    models = _import("torchvision.models", f"torchvision:{ref}", "pip install torchvision")
    known = models.list_models()
    if ref not in known:
        raise UnknownNameError("torchvision model", ref, known, hint="see torchvision.models.list_models()")
    if options.pop("weights", None) is not None:
        raise ConfigError(f"torchvision:{ref} is built with random weights; torchsmith downloads nothing "
                          "(load weights with torchsmith.load_into)")
    try:
        return models.get_model(ref, weights=None, **options)
    except Exception as e:
        raise ConfigError(f"building torchvision:{ref} failed: {type(e).__name__}: {first_line(e, 300)}") from e
