"""``torchsmith demo``: the whole workflow on the embedded digits data, in under a minute on a laptop CPU."""

from __future__ import annotations

import json
import sys

import click

from torchsmith.demo import run_demo, run_lm_demo
from torchsmith.train.progress import make_reporter


@click.command("demo")
@click.option("-o", "--out", "--output", "out", type=click.Path(file_okay=False), default=None,
              help="Where the run's files go (default: a new temporary directory).")
@click.option("--task", type=click.Choice(("digits", "lm")), default="digits", show_default=True,
              help="digits: LeNet on the shipped digits; lm: a tiny GPT on the shipped text, then a sample.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (default: 15 digits, 20 lm).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="torch threads while training (0: torch's default).")
@click.option("--no-subprocess", is_flag=True, help="Skip the check in a fresh Python process.")
@click.option("--progress", type=click.Choice(("auto", "rich", "plain", "none")), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print only the result, as JSON.")
def command(out: str | None, task: str, epochs: int | None, seed: int, threads: int, no_subprocess: bool,
            progress: str, as_json: bool) -> None:
    """Build LeNet, initialise it, summarise it, train it on digits, save it, load it back, compare.

    Everything is local: the digits (1,797 real 8x8 images) ship inside torchsmith.

    \b
    Examples:
      torchsmith demo
      torchsmith demo --out runs/demo --epochs 20
      torchsmith demo --task lm
    """
    # The demo's stages and progress are its output: stdout, unless JSON was asked for.
    reporter = make_reporter("none" if as_json else progress, sys.stdout)
    if task == "lm":
        lm = run_lm_demo(out, epochs=epochs or 20, seed=seed, reporter=reporter, threads=threads or None)
        reporter.close()
        click.echo(json.dumps(lm.to_dict(), indent=2, default=str) if as_json else str(lm))
        if not lm.loss_fell:
            click.echo("error: the training loss did not fall", err=True)
            sys.exit(1)
        return
    epochs = epochs or 15
    result = run_demo(out, epochs=epochs, seed=seed, fresh_process=not no_subprocess, reporter=reporter,
                      threads=threads or None)
    reporter.close()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(str(result))
    if not result.consistent:
        click.echo("error: the reloaded model does not score what the trained one did", err=True)
        sys.exit(1)
