"""torchsmith: build, initialise, inspect, check, train, save and export PyTorch models.

This package is the public API. Every name a user needs is listed here; the implementation modules whose
names would clash with a public function (``check``, ``summary``, ``capture``, ``export``) are private
(``torchsmith._check`` ...), so ``torchsmith.check`` is always the function. The other subpackages
(``torchsmith.checkpoint``, ``torchsmith.train``, ``torchsmith.spec``, ``torchsmith.data``, ...) never share a name
with a function and may be imported as documented.

The names are imported on first use (PEP 562 ``__getattr__``): ``import torchsmith`` costs next to nothing
over ``import torch``, and ``ts.summary`` does not pay for the trainer, the doctor or the exporter. To add a
name, add it to ``_EXPORTS`` under the module that holds it, to the ``TYPE_CHECKING`` imports (for type
checkers and editors) and to ``__all__``; ``tests/test_imports.py`` checks that the three agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from torchsmith import registry as _registry
from torchsmith._version import __version__

#: The zoo and the library sources: they register when imported, which the registry does when first asked.
_REGISTERING = ("torchsmith.models", "torchsmith.library")
_registry.register_later(*_REGISTERING)

#: module -> the public names it holds; each is imported from there when first asked for.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "torchsmith._capture": ("Captured", "capture"),
    "torchsmith._check": ("CheckInfo", "CheckReport", "Finding", "FindingInfo", "check", "list_checks",
                          "list_findings"),
    "torchsmith._export": ("ExportReport", "ExportVerificationError", "export"),
    "torchsmith._features": ("FeatureRun", "features"),
    "torchsmith._memory": ("MemoryPlan", "TrainingPlan", "memory", "plan_training"),
    "torchsmith._summary": ("ModelSummary", "summary"),
    "torchsmith.checkpoint": ("LoadReport", "load", "load_into", "load_training_state", "save"),
    "torchsmith.data": ("DataSplits", "DeviceLoader", "ImageDataset", "load_dataset"),
    "torchsmith.demo": ("DemoResult", "run_demo"),
    "torchsmith.errors": ("CheckpointError", "ConfigError", "DataError", "ExportError", "InitError",
                          "ModelLoadError", "ShapeError", "SpecError", "SummaryError", "TorchsmithError",
                          "TrainingError", "UnknownNameError"),
    "torchsmith.init": ("InitRecord", "InitReport", "init_weights"),
    "torchsmith.registry": ("create_model", "list_models", "register_model"),
    "torchsmith.resolve": ("resolve_model",),
    "torchsmith.spec": ("build", "build_file", "load_spec", "register_layer", "to_spec"),
    "torchsmith.train": ("EvalResult", "TrainConfig", "TrainResult", "evaluate", "evaluate_checkpoint", "fit",
                         "resume"),
    "torchsmith.views": ("buffer_view", "count_parameters", "hook_view", "module_tree", "param_view"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

if TYPE_CHECKING:  # what the names are, for type checkers and editors; at run time __getattr__ imports them
    from torchsmith._capture import Captured, capture
    from torchsmith._check import CheckInfo, CheckReport, Finding, FindingInfo, check, list_checks, list_findings
    from torchsmith._export import ExportReport, ExportVerificationError, export
    from torchsmith._features import FeatureRun, features
    from torchsmith._memory import MemoryPlan, TrainingPlan, memory, plan_training
    from torchsmith._summary import ModelSummary, summary
    from torchsmith.checkpoint import LoadReport, load, load_into, load_training_state, save
    from torchsmith.data import DataSplits, DeviceLoader, ImageDataset, load_dataset
    from torchsmith.demo import DemoResult, run_demo
    from torchsmith.errors import (
        CheckpointError,
        ConfigError,
        DataError,
        ExportError,
        InitError,
        ModelLoadError,
        ShapeError,
        SpecError,
        SummaryError,
        TorchsmithError,
        TrainingError,
        UnknownNameError,
    )
    from torchsmith.init import InitRecord, InitReport, init_weights
    from torchsmith.registry import create_model, list_models, register_model
    from torchsmith.resolve import resolve_model
    from torchsmith.spec import build, build_file, load_spec, register_layer, to_spec
    from torchsmith.train import EvalResult, TrainConfig, TrainResult, evaluate, evaluate_checkpoint, fit, resume
    from torchsmith.views import buffer_view, count_parameters, hook_view, module_tree, param_view


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for, then kept here."""
    if f"torchsmith.{name}" in _REGISTERING:  # ts.models, ts.library: the subpackage itself
        return importlib.import_module(f"torchsmith.{name}")
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'torchsmith' has no attribute {name!r}")
    _registry.import_registrations()  # a name in use may meet a zoo model or layer type (ts.build of a spec)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__all__ = [
    "__version__",
    "check",
    "CheckReport",
    "Finding",
    "list_checks",
    "list_findings",
    "CheckInfo",
    "FindingInfo",
    "TorchsmithError",
    "ConfigError",
    "UnknownNameError",
    "ShapeError",
    "InitError",
    "ModelLoadError",
    "SummaryError",
    "CheckpointError",
    "SpecError",
    "ExportError",
    "ExportVerificationError",
    "export",
    "ExportReport",
    "DataError",
    "TrainingError",
    "create_model",
    "list_models",
    "register_model",
    "resolve_model",
    "init_weights",
    "InitReport",
    "InitRecord",
    "count_parameters",
    "module_tree",
    "param_view",
    "buffer_view",
    "hook_view",
    "summary",
    "ModelSummary",
    "memory",
    "MemoryPlan",
    "plan_training",
    "TrainingPlan",
    "capture",
    "Captured",
    "features",
    "FeatureRun",
    "build",
    "build_file",
    "load_spec",
    "register_layer",
    "to_spec",
    "save",
    "load",
    "load_into",
    "load_training_state",
    "LoadReport",
    "fit",
    "resume",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "evaluate_checkpoint",
    "EvalResult",
    "load_dataset",
    "DataSplits",
    "ImageDataset",
    "DeviceLoader",
    "run_demo",
    "DemoResult",
]
