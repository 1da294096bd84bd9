"""The ``torchsmith`` command: a thin click adapter over the library.

Each command lives in its own module and is added to the group below. A
:class:`~torchsmith.errors.TorchsmithError` becomes one line on stderr and exit
code 1 here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from torchsmith import __version__
from torchsmith.cli import (
    check_cmd,
    ckpt_cmd,
    demo_cmd,
    eval_cmd,
    export_cmd,
    features_cmd,
    models_cmd,
    report_cmd,
    show_cmd,
    spec_cmd,
    train_cmd,
)
from torchsmith.errors import TorchsmithError

__all__ = ["main"]


class TorchsmithGroup(click.Group):
    """A click group that turns library errors into a one-line message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TorchsmithError as e:
            _fail(f"error: {e.cli_message or e}", 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as e:  # a bug in torchsmith, or an error it does not know yet
            if os.environ.get("TORCHSMITH_DEBUG"):
                raise
            _fail(f"internal error: {type(e).__name__}: {e} (set TORCHSMITH_DEBUG=1 for the traceback)", 2)


def _fail(message: str, code: int) -> None:
    # Under torchrun every rank reports its own failure: say whose line each one is.
    if os.environ.get("WORLD_SIZE", "1") not in ("", "0", "1"):
        message = f"[rank {os.environ.get('RANK', '?')}] {message}"
    click.echo(message, err=True)
    sys.exit(code)


@click.group(cls=TorchsmithGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="torchsmith")
def main() -> None:
    """Build, initialise, inspect, check, train, save and export PyTorch models.

    \b
    Examples:
      torchsmith models 'resnet*'
      torchsmith show lenet
    """


for _module in (models_cmd, show_cmd, features_cmd, ckpt_cmd, spec_cmd, export_cmd, train_cmd, eval_cmd, demo_cmd,
                check_cmd, report_cmd):
    main.add_command(_module.command)
