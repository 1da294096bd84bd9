"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import yaml
from torch import nn

from torchsmith.errors import ConfigError
from torchsmith.resolve import resolve_model
from torchsmith.sizes import parse_input_size

F = Callable[..., Any]


def model_options(fn: F) -> F:
    """``--opt key=value`` (repeatable): keyword options for the model's builder."""
    return click.option(
        "--opt", "opts", multiple=True, metavar="KEY=VALUE",
        help="Model option, repeatable (e.g. --opt num_classes=100 --opt stem=cifar).",
    )(fn)


#: The one wording of ``--input`` for every command that runs a model.
INPUT_HELP = "Input size without the batch dimension, e.g. 3x32x32."
INPUT_DTYPE_HELP = "Input dtype, e.g. long for token ids or bf16 (default: what the model takes)."


def input_option(required: bool = False, default: str | None = None, help: str = INPUT_HELP) -> Callable[[F], F]:
    """``--input CxHxW`` into the ``input_size`` parameter (text; parse it with :func:`parse_input`)."""
    return click.option("--input", "input_size", default=default, required=required, metavar="CxHxW", help=help)


def input_dtype_option(fn: F) -> F:
    """``--input-dtype DTYPE`` into the ``input_dtype`` parameter (text; the library parses it)."""
    return click.option("--input-dtype", "input_dtype", default=None, metavar="DTYPE", help=INPUT_DTYPE_HELP)(fn)


def parse_opts(opts: tuple[str, ...]) -> dict[str, Any]:
    """``("num_classes=100", "stem=cifar")`` -> ``{"num_classes": 100, "stem": "cifar"}``."""
    out: dict[str, Any] = {}
    for item in opts:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--opt {item!r} is not KEY=VALUE, e.g. --opt num_classes=100")
        try:
            out[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def load_model(ref: str, opts: tuple[str, ...]) -> nn.Module:
    return resolve_model(ref, **parse_opts(opts))


def parse_input(text: str | None) -> tuple[int, ...] | None:
    return parse_input_size(text) if text else None
