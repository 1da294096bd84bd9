"""torchsmith: build, initialise, inspect, check, train, save and export PyTorch models.

This package is the public API. Every name a user needs is imported here; the implementation modules whose
names would clash with a public function (``check``, ``summary``, ``capture``, ``export``) are private
(``torchsmith._check`` ...), so ``torchsmith.check`` is always the function. The other subpackages
(``torchsmith.checkpoint``, ``torchsmith.train``, ``torchsmith.spec``, ``torchsmith.data``, ...) never share a name
with a function and may be imported as documented.
"""

from __future__ import annotations

from torchsmith import library, models  # noqa: F401  (importing them registers the zoo and the library sources)
from torchsmith._capture import Captured, capture
from torchsmith._check import CheckInfo, CheckReport, Finding, FindingInfo, check, list_checks, list_findings
from torchsmith._export import ExportReport, ExportVerificationError, export
from torchsmith._summary import ModelSummary, summary
from torchsmith._version import __version__
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
    "capture",
    "Captured",
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
