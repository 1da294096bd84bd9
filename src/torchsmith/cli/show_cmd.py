"""``torchsmith show MODEL``: the module tree with parameter counts."""

from __future__ import annotations

import click

from torchsmith.cli._common import load_model, model_options
from torchsmith.views import format_tree, module_tree


@click.command("show")
@click.argument("model")
@model_options
@click.option("--depth", type=click.IntRange(min=0), default=None, help="Deepest level of the tree to print.")
def command(model: str, opts: tuple[str, ...], depth: int | None) -> None:
    """Show MODEL's module tree with per-module parameter counts and the total.

    MODEL is a zoo name, path/to/file.py:Class or package.module:attr.

    \b
    Examples:
      torchsmith show lenet
      torchsmith show resnet18 --opt stem=cifar --opt num_classes=10 --depth 1
    """
    net = load_model(model, opts)
    title = f"{type(net).__name__} ({model})"
    click.echo(format_tree(module_tree(net), title=title, max_depth=depth))
