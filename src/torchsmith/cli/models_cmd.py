"""``torchsmith models [PATTERN]``: list the zoo."""

from __future__ import annotations

import click

from torchsmith.registry import get_builder, list_models


@click.command("models")
@click.argument("pattern", required=False)
def command(pattern: str | None) -> None:
    """List registered models, optionally filtered by a glob PATTERN.

    \b
    Example:
      torchsmith models 'resnet*'
    """
    names = list_models(pattern)
    if not names:
        click.echo(f"no model matches {pattern!r}; try `torchsmith models` for the full list", err=True)
        raise SystemExit(1)
    width = max(len(n) for n in names)
    for name in names:
        doc = (get_builder(name).__doc__ or "").strip().splitlines()
        click.echo(f"{name.ljust(width)}  {doc[0] if doc else ''}".rstrip())
