"""``torchsmith report MODEL|RUN_DIR -o FILE.html``: one self-contained HTML page to share."""

from __future__ import annotations

from pathlib import Path

import click

from torchsmith.cli._common import model_options, parse_input, parse_opts
from torchsmith.errors import ConfigError
from torchsmith.report import check_report_path, model_report, run_report, write_report


@click.command("report")
@click.argument("target", metavar="MODEL|RUN_DIR")
@click.option("-o", "--output", "--out", "output", required=True, metavar="FILE.html", help="The HTML file to write.")
@model_options
@click.option("--input", "input_size", default=None, metavar="CxHxW",
              help="Input size without the batch dimension, e.g. 3x32x32 (default: the model's own).")
@click.option("--input-dtype", default=None, metavar="DTYPE", help="Input dtype, e.g. long for token ids.")
@click.option("--checks", default=None, metavar="ID,ID", help="The doctor's checks (as in `torchsmith check`).")
@click.option("--no-eval", "no_eval", is_flag=True,
              help="Run reports: skip evaluating the best checkpoint (no per-class accuracy or confusion matrix).")
def command(target: str, output: str, opts: tuple[str, ...], input_size: str | None, input_dtype: str | None,
            checks: str | None, no_eval: bool) -> None:
    """Write one self-contained HTML report about a model or a training run.

    For a MODEL (zoo name, path/to/file.py:Class, package.module:attr): the summary, the
    diagram, the arithmetic of every layer, the doctor's findings and the initialisation.
    For a RUN_DIR (the --out of `torchsmith train`): the epochs and curves, the best
    checkpoint's per-class accuracy and confusion matrix, the model and the options.
    Nothing in the file is fetched when it is opened.

    \b
    Examples:
      torchsmith report lenet -o lenet.html
      torchsmith report path/to/net.py:LeNet --input 3x32x32 -o net.html
      torchsmith report runs/lenet-digits -o run.html
    """
    out = check_report_path(output)  # before any work: a bad path should not cost a whole report
    if Path(target).is_dir():
        if opts or input_size or input_dtype or checks:
            raise ConfigError("--opt, --input, --input-dtype and --checks apply to a model, not to a run directory "
                              f"({target}); the run's own model and options are used")
        html = run_report(target, evaluate=not no_eval)
    else:
        html = model_report(target, parse_input(input_size), input_dtype=input_dtype, checks=checks,
                            **parse_opts(opts))
    write_report(html, out)
    click.echo(f"wrote {out}", err=True)
