"""What a model's input means for its data: the size the dataset is fitted to, and errors that say how to give it.

The model contract (:func:`torchsmith.contract.input_spec`) answers what one sample looks like; this module
turns that into the ``(C, H, W)`` an image dataset is resized and converted to, and into the error a user
sees when a model's input is unknown or does not fit: worded for Python (``input_size=(3, 32, 32)``) in
``str(error)`` and for the command line (``--input 3x32x32``) in ``error.cli_message``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchsmith._format import parse_dtype
from torchsmith.contract import (
    InputSpec,
    ModelInputs,
    device_dtype,
    input_spec,
    is_several,
    is_token_dtype,
    model_inputs,
    primary_output,
)
from torchsmith.data import DataSplits, load_dataset
from torchsmith.errors import ConfigError, DataError, describe_error

__all__ = ["ModelInput", "InputSizeError", "model_input", "fitted_splits", "parse_input_dtype", "output_width"]

_EXAMPLE = (3, 32, 32)


class InputSizeError(DataError):
    """The model's input size is unknown, or the data cannot be fitted to it.

    ``str()`` gives Python advice (``input_size=(3, 32, 32)``); ``cli_message`` the same advice in
    command-line words (``--input 3x32x32``), which the CLI prints instead.
    """

    def __init__(self, problem: str, example: Sequence[int] = _EXAMPLE) -> None:
        size = tuple(int(s) for s in example)
        super().__init__(f"{problem}; give the input size without the batch dimension, e.g. input_size={size!r}")
        self.problem = problem
        self.cli_message = (f"{problem}; give the input size without the batch dimension, e.g. "
                            f"--input {'x'.join(map(str, size))}")


@dataclass(frozen=True)
class ModelInput:
    """The model's input as far as it is known (``spec`` None: not known and not given), and notes for the log."""

    spec: InputSpec | None
    notes: list[str] = field(default_factory=list)
    inputs: ModelInputs | None = None  # every input, when forward takes several; ``spec`` is the first

    @property
    def image_size(self) -> tuple[int, int, int] | None:
        """``(C, H, W)`` to fit image data to, or None (keep the data's own size)."""
        spec = self.spec
        if spec is None or spec.kind == "tokens" or len(spec.size) != 3:
            return None
        return spec.size  # type: ignore[return-value]

    @property
    def float_dtype(self) -> torch.dtype | None:
        """The float dtype the model's images are given in, when one was asked for."""
        spec = self.spec
        return spec.dtype if spec is not None and spec.dtype.is_floating_point else None


def parse_input_dtype(value: Any) -> Any:
    """``"long"``, ``"bf16"``, ``torch.float16`` -> a dtype, ``{"lengths": "long"}`` -> one by name; None stays
    None (unknown names get close matches)."""
    if isinstance(value, dict):
        return {k: parse_dtype(v) for k, v in value.items()}
    if value is None or isinstance(value, torch.dtype):
        return value
    return parse_dtype(value)


def model_input(model: nn.Module, input_size: Any = None, input_dtype: torch.dtype | str | None = None) -> ModelInput:
    """The contract's answer for ``model``, with ``input_size`` (without the batch) when the caller gave one.

    A model that does not tell its input size gives ``ModelInput(None)``: the data keeps its own size and
    the first forward decides (see :func:`misfit`).
    """
    dtype = parse_input_dtype(input_dtype)
    if input_size is not None and is_several(input_size):
        inputs = model_inputs(model, input_size, input_dtype=dtype)
        return ModelInput(inputs.primary, [f"inputs: {inputs.describe()}"], inputs)
    if isinstance(dtype, dict):
        raise ConfigError(f"input dtypes by name ({', '.join(dtype)}) are for several inputs; give one size per "
                          "input (--input NAME=SIZE) or one dtype")
    if input_size is not None:
        return ModelInput(input_spec(model, input_size, input_dtype=dtype))
    try:
        spec = input_spec(model, input_dtype=dtype)
    except ConfigError:
        return ModelInput(None)
    notes = []
    if spec.source.startswith("first layer") and spec.kind != "tokens":
        notes.append(f"input {'x'.join(map(str, spec.size))}: {type(model).__name__} declares no input size; this is "
                     f"the first size its forward accepts ({spec.source})")
    return ModelInput(spec, notes)


def misfit(model: nn.Module, data_name: str, size: Sequence[int], given: ModelInput, error: Exception) -> DataError:
    """The error for a model whose forward failed on ``data_name``'s images of ``size``."""
    shown = "x".join(map(str, size))
    cause = describe_error(error)
    name = type(model).__name__
    if given.spec is None:
        return InputSizeError(f"{name} cannot take {data_name} images of size {shown} ({cause}) and does not say "
                              f"what input it was built for", _EXAMPLE if len(size) == 3 else size)
    source = given.spec.source or "given"
    if source == "given":
        own = model_input(model).spec  # what the model says of itself, if anything
        if own is not None and own.size != tuple(size):
            return InputSizeError(f"{name} cannot take input of size {shown} ({cause}); it takes "
                                  f"{'x'.join(map(str, own.size))} ({own.source})", own.size)
        return InputSizeError(f"{name} cannot take input of size {shown} ({cause}); that is not the size it was "
                              f"built for", _EXAMPLE)
    if given.image_size is None:
        wanted = "x".join(map(str, given.spec.size))
        return InputSizeError(f"{name} takes input of size {wanted} ({source}), not {data_name} images of size "
                              f"{shown} ({cause})", _EXAMPLE)
    return InputSizeError(f"{name} cannot take {data_name} images fitted to {shown} (its input size from {source}): "
                          f"{cause}", size)


def token_data_error(model: nn.Module, spec: InputSpec, data_name: str) -> DataError:
    return DataError(f"{type(model).__name__} takes token ids ({spec.describe()}) but {data_name} holds images; "
                     f"a model of token ids trains here on synthetic data only (data 'synthetic')")


def output_width(model: nn.Module, spec: InputSpec | None) -> int | None:
    """The number of classes a model predicts: its ``num_classes``/``num_labels``, else the width of its output
    on a batch of two examples (None where neither answers)."""
    for owner in (model, getattr(model, "config", None)):
        for attr in ("num_classes", "num_labels"):
            value = getattr(owner, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    if spec is None:
        return None
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = primary_output(model(spec.example(2, device=device_dtype(model)[0])))
    except Exception:
        return None
    finally:
        model.train(was)
    return int(out.shape[-1]) if out.dim() == 2 and out.is_floating_point() else None


def is_tokens(spec: InputSpec | None) -> bool:
    return spec is not None and spec.kind == "tokens" and is_token_dtype(spec.dtype)


def fitted_splits(model: nn.Module, given: ModelInput, data: str | DataSplits, *, data_dir: Any = None,
                  num_samples: int = 10_000, seed: int = 0) -> DataSplits:
    """``data`` (a name or loaded splits) fitted to the model's input: images resized and converted to
    ``given.image_size``; synthetic data made in the model's own shape (token ids for a model of tokens,
    as many classes as it predicts)."""
    name = data if isinstance(data, str) else data.name
    spec = given.spec
    synthetic = isinstance(data, str) and data.lower() == "synthetic"
    if is_tokens(spec):
        assert spec is not None
        if isinstance(data, DataSplits) and data.train.is_tokens:
            return data
        if not synthetic:
            raise token_data_error(model, spec, name)
        return load_dataset("synthetic", input_size=spec.size, vocab_size=spec.vocab_size or 1,
                            num_classes=output_width(model, spec) or 10, num_samples=num_samples, seed=seed)
    size = given.image_size
    if spec is not None and spec.source == "given" and size is None:
        raise InputSizeError(f"input size {'x'.join(map(str, spec.size))} is not an image size (C, H, W); "
                             f"{name} holds images")
    if isinstance(data, DataSplits):
        return data.fitted_to(size)
    classes = (output_width(model, spec) or 10) if synthetic else 10
    return load_dataset(data, data_dir=data_dir, input_size=size, num_classes=classes, num_samples=num_samples,
                        seed=seed)
