"""Models as data: declarative specs with shape inference.

A spec names what each layer does; torchsmith infers every size by
propagating the input shape, the way Keras does and PyTorch does not::

    input: [3, 32, 32]
    layers:
      - conv: {out: 6, kernel: 5}      # in_channels 3, from the input
      - relu
      - maxpool: 2
      - conv: {out: 16, kernel: 5}
      - relu
      - maxpool: 2
      - flatten                        # 16 * 5 * 5 = 400, never written down
      - linear: 120
      - relu
      - linear: 10

Nesting and reuse: ``sequential``, ``repeat: {times: N, body: [...]}``,
``residual: {body: [...], shortcut: auto, act: relu}`` and named ``blocks``
with arguments (``$out`` in a block body is replaced by the value given at each
use). ``init`` takes the policy format of :func:`torchsmith.init_weights`.

Layer types come only from the registry (:func:`register_layer`); a spec never
imports or calls anything by a dotted path, and YAML is read with a safe
loader. Errors name the entry's path, its line, the shape that arrived, what
the layer needs and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith.spec import layers as _layers  # noqa: F401  (registers the built-in layer types)
from torchsmith.spec.builder import _CONTAINER_ARGS, build_model
from torchsmith.spec.loader import dump_spec, load_spec
from torchsmith.spec.modules import Residual, SpecModel, SpecSequential
from torchsmith.spec.registry import REQUIRED, LayerType, get_layer_type, layer_types, register_layer
from torchsmith.spec.report import SpecReport, SpecRow
from torchsmith.spec.writer import copy_weights, register_spec_writer, to_spec

__all__ = [
    "build",
    "build_file",
    "load_spec",
    "check_spec",
    "register_layer",
    "to_spec",
    "register_spec_writer",
    "dump_spec",
    "copy_weights",
    "layer_types",
    "describe_layer_types",
    "get_layer_type",
    "LayerType",
    "SpecReport",
    "SpecRow",
    "SpecModel",
    "SpecSequential",
    "Residual",
]


def build(spec: Mapping[str, Any], *, generator: torch.Generator | None = None) -> nn.Module:
    """Build the model a spec describes, initialised by its ``init`` policy (or Kaiming/Xavier by activation).

    The model carries ``torchsmith_arch = {"spec": <the spec as plain JSON data>}``
    (so a checkpoint can rebuild it), ``default_input_size`` (the spec's
    ``input``) and ``init_policy``. Same ``generator`` seed, same weights.

    Args:
        spec: The spec as data: ``input``, ``layers`` and optionally ``init`` and ``blocks`` (the format is in
            the spec format page, ``docs/spec.md``).
        generator: The random generator of the initialisation.

    Returns:
        A plain ``nn.Module`` with every size inferred from the input shape.

    Raises:
        SpecError: The spec is malformed or a layer does not fit its input; the message points at the place
            (``layers[6] linear: input is [N, 16, 5, 5]; add `flatten` before it``).
        UnknownNameError: An unknown layer type or argument (with close matches).
    """
    model, _ = build_model(spec, generator=generator, meta=False)
    return model


def build_file(path: str | Path, *, generator: torch.Generator | None = None) -> nn.Module:
    """:func:`build` the spec in a ``.yaml``/``.yml``/``.json`` file; errors name the file and line.

    Args:
        path: The spec file, read with a safe loader (:func:`load_spec`).
        generator: The random generator of the initialisation.

    Returns:
        The built model, as :func:`build` returns it.

    Raises:
        SpecError: The file is missing, not valid YAML/JSON, or its spec does not build (with file and line).
        UnknownNameError: An unknown layer type or argument (with close matches).
    """
    return build(load_spec(path), generator=generator)


def check_spec(spec: Mapping[str, Any] | str | Path) -> SpecReport:
    """Validate a spec (a dict or a file) and trace its shapes without allocating any weights.

    The model is built on the meta device, so checking a spec of any size is
    instant; every error :func:`build` would raise is raised here too.
    """
    source = None
    if isinstance(spec, (str, Path)):
        source = str(spec)
        spec = load_spec(spec)
    model, builder = build_model(spec, generator=None, meta=True)
    return SpecReport(
        name=spec.get("name"), source=source or getattr(spec, "source", None), input=builder.input,
        output=builder.output,
        params=sum(p.numel() for p in model.parameters()), init_policy=builder.init_policy,
        rows=builder.rows,
    )


_CONTAINER_DOCS = {
    "sequential": "Its layers in order, as one named module (`sequential: [...]` is short for `{layers: [...]}`).",
    "repeat": "The body `times` times; inlined into the enclosing list unless given a `name`.",
    "residual": "act(body(x) + shortcut(x)); shortcut auto (identity or 1x1 conv + batchnorm), identity, pad "
                "or a list of layers.",
}


def describe_layer_types() -> list[tuple[str, str, str]]:
    """``(type, arguments, summary)`` for every layer type a spec may name; ``*`` marks a required argument."""
    def signature(args: Mapping[str, Any], shorthand: str | None) -> str:
        # default=repr: a user type's default may be no JSON value at all (torch.relu, a dtype)
        parts = [f"{k}*" if v is REQUIRED else f"{k}={json.dumps(v, default=repr)}" for k, v in args.items()]
        return ", ".join(parts) + (f"  (a single value is `{shorthand}`)" if shorthand else "")

    rows = []
    for name in layer_types():
        if name in _CONTAINER_ARGS:
            rows.append((name, signature(_CONTAINER_ARGS[name], None), _CONTAINER_DOCS[name]))
        else:
            lt = get_layer_type(name)
            assert lt is not None
            rows.append((name, signature(lt.args, lt.shorthand), lt.doc))
    return rows
