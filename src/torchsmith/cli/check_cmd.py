"""``torchsmith check MODEL``: the doctor for classic model-building mistakes."""

from __future__ import annotations

import json
import sys

import click

from torchsmith._check import check, list_checks
from torchsmith._check.plot import check_plot_path
from torchsmith.cli._common import input_dtypes_option, input_option, load_model, model_options, parse_inputs_and_dtypes
from torchsmith.errors import ConfigError


@click.command("check")
@click.argument("model")
@model_options
@input_option()
@input_dtypes_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Report as text for people or JSON for tools.")
@click.option("--checks", "checks", default=None, metavar="ID,ID",
              help="Only these checks (names or finding ids, comma-separated, or 'all'); default: all but "
                   + ", ".join(c.name for c in list_checks() if not c.default) + ". Names (in the order they run): "
                   + ", ".join(c.name for c in list_checks()) + ".")
@click.option("--plot", "plot", default=None, metavar="FILE.png",
              help="Also write a PNG of the per-layer activation/gradient statistics.")
def command(model: str, opts: tuple[str, ...], input_size: tuple[str, ...], input_dtype: tuple[str, ...], fmt: str,
            checks: str | None, plot: str | None) -> None:
    """Check MODEL for classic model-building mistakes by running a copy of it.

    MODEL is a zoo name, path/to/file.py:Class, package.module:attr or a
    checkpoint. Exit code 1 when there is an error; warnings and notes exit 0.

    \b
    Examples:
      torchsmith check resnet18 --opt stem=cifar --opt num_classes=10
      torchsmith check path/to/net.py:Net --input 3x32x32 --format json
      torchsmith check lenet --checks input-mutated,signal --plot stats.png
      torchsmith check siamese.py:Net --input 1x28x28 --input 1x28x28
      torchsmith check rnn.py:Net --input x=20x8 --input lengths=() --input-dtype lengths=long
      torchsmith check resnet20 --checks all          # adds the slow torch.compile graph-break check
    """
    if plot is not None and not plot.lower().endswith(".png"):
        raise ConfigError(f"--plot writes a PNG; give a file name ending in .png, not {plot!r}")
    if plot is not None:
        check_plot_path(plot)  # before the checks run: a bad path should not cost a whole check
    size, dtype = parse_inputs_and_dtypes(input_size, input_dtype)
    net = load_model(model, opts)
    report = check(net, size, checks=checks, input_dtype=dtype)
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
