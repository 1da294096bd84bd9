"""``torchsmith check MODEL``: the doctor for classic model-building mistakes."""

from __future__ import annotations

import json
import sys

import click

from torchsmith._check import check, list_checks
from torchsmith._check.plot import check_plot_path
from torchsmith.cli._common import load_model, model_options, parse_input
from torchsmith.errors import ConfigError


@click.command("check")
@click.argument("model")
@model_options
@click.option("--input", "input_size", default=None, metavar="CxHxW",
              help="Input size without the batch dimension, e.g. 3x32x32 (default: the model's default_input_size).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Report as text for people or JSON for tools.")
@click.option("--checks", "checks", default=None, metavar="ID,ID",
              help="Only these checks (names or finding ids, comma-separated, or 'all'); default: all but "
                   + ", ".join(c.name for c in list_checks() if not c.default) + ". Names (in the order they run): "
                   + ", ".join(c.name for c in list_checks()) + ".")
@click.option("--plot", "plot", default=None, metavar="FILE.png",
              help="Also write a PNG of the per-layer activation/gradient statistics.")
def command(model: str, opts: tuple[str, ...], input_size: str | None, fmt: str, checks: str | None,
            plot: str | None) -> None:
    """Check MODEL for classic model-building mistakes by running a copy of it.

    MODEL is a zoo name, path/to/file.py:Class, package.module:attr or a
    checkpoint. Exit code 1 when there is an error; warnings and notes exit 0.

    \b
    Examples:
      torchsmith check resnet18 --opt stem=cifar --opt num_classes=10
      torchsmith check path/to/net.py:Net --input 3x32x32 --format json
      torchsmith check lenet --checks input-mutated,signal --plot stats.png
      torchsmith check resnet20 --checks all          # adds the slow torch.compile graph-break check
    """
    if plot is not None and not plot.lower().endswith(".png"):
        raise ConfigError(f"--plot writes a PNG; give a file name ending in .png, not {plot!r}")
    if plot is not None:
        check_plot_path(plot)  # before the checks run: a bad path should not cost a whole check
    net = load_model(model, opts)
    report = check(net, parse_input(input_size), checks=checks)
    if plot is not None:
        if not report.layer_stats:
            raise ConfigError("--plot needs the 'signal' check (its per-layer statistics); add it to --checks")
        report.plot(plot)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(str(report))
    if plot is not None:
        click.echo(f"wrote {plot}", err=True)
    if not report.ok:
        sys.exit(1)
