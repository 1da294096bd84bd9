"""Options and helpers shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import yaml
from torch import nn

from torchsmith.contract import parse_inputs
from torchsmith.errors import ConfigError
from torchsmith.resolve import resolve_model

F = Callable[..., Any]


def model_options(fn: F) -> F:
    """``--opt key=value`` (repeatable): keyword options for the model's builder."""
    return click.option(
        "--opt", "opts", multiple=True, metavar="KEY=VALUE",
        help="Model option, repeatable (e.g. --opt num_classes=100 --opt stem=cifar).",
    )(fn)


#: The one wording of ``--input`` for every command that runs a model.
INPUT_HELP = ("Input size without the batch dimension, e.g. 3x32x32; repeat it for several inputs "
              "(--input 3x32x32 --input 3x32x32) or name them (--input image=3x224x224 --input meta=10; "
              "lengths=() for one number per sample). Default: what the model declares.")
INPUT_DTYPE_HELP = ("Input dtype, e.g. long for token ids or bf16 (default: what the model takes); "
                    "NAME=DTYPE for one input (--input-dtype lengths=long).")


def input_option(required: bool = False, default: str | None = None, help: str = INPUT_HELP) -> Callable[[F], F]:
    """``--input CxHxW`` (repeatable, or ``NAME=CxHxW``) into ``input_size``; parse with :func:`parse_input`."""
    return click.option("--input", "input_size", default=(default,) if default else (), required=required,
                        multiple=True, metavar="CxHxW", help=help)


def input_dtype_option(fn: F) -> F:
    """``--input-dtype DTYPE`` into the ``input_dtype`` parameter (text; the library parses it)."""
    return click.option("--input-dtype", "input_dtype", default=None, metavar="DTYPE", help=INPUT_DTYPE_HELP)(fn)


def input_dtypes_option(fn: F) -> F:
    """``--input-dtype DTYPE`` (repeatable, or ``NAME=DTYPE``) into ``input_dtype``; parse with
    :func:`parse_inputs_and_dtypes`."""
    return click.option("--input-dtype", "input_dtype", multiple=True, metavar="DTYPE", help=INPUT_DTYPE_HELP)(fn)


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


def parse_input(text: str | tuple[str, ...] | None) -> Any:
    """One ``--input`` (text) or the repeated option's values as the library's ``input_size``."""
    if not text:
        return None
    return parse_inputs((text,) if isinstance(text, str) else tuple(text))[0]


def dtype_texts(values: tuple[str, ...]) -> str | dict[str, str] | None:
    """Repeated ``--input-dtype`` values as a training config holds them: one name, or names by input."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    if not all("=" in v for v in values):
        raise ConfigError(f"--input-dtype {list(values)}: give one dtype, or NAME=DTYPE for each input")
    return {k.strip(): v.strip() for k, _, v in (v.partition("=") for v in values)}


def parse_inputs_and_dtypes(sizes: tuple[str, ...], dtypes: tuple[str, ...]) -> tuple[Any, Any]:
    """``--input`` and ``--input-dtype`` values as ``(input_size, input_dtype)`` (see contract.parse_inputs)."""
    return parse_inputs(tuple(sizes or ()), tuple(dtypes or ()))
