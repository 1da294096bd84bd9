"""The ``torchsmith`` command: a thin click adapter over the library.

Each command lives in its own module (``command`` in ``torchsmith.cli.<name>_cmd``) and is named in
:data:`COMMANDS`, one line each: the group imports a command's module only when that command runs (or its
own ``--help`` is asked for), so ``torchsmith models`` never loads the trainer and ``torchsmith --help``
loads no command at all. A :class:`~torchsmith.errors.TorchsmithError` becomes one line on stderr and exit
code 1 here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import click

from torchsmith import __version__
from torchsmith.errors import TorchsmithError
from torchsmith.registry import import_registrations

__all__ = ["main", "COMMANDS"]

#: command -> (its module in torchsmith.cli, the first paragraph of its help, which `torchsmith --help` lists).
#: tests/test_imports.py checks each line against the command it names.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("models_cmd", "List registered models, optionally filtered by a glob PATTERN."),
    "show": ("show_cmd", "Show MODEL layer by layer: shapes, parameters, MACs/FLOPs, memory, on the meta device."),
    "features": ("features_cmd", "Run MODEL once and show the shape and statistics of the LAYERS' features."),
    "ckpt": ("ckpt_cmd", "Inspect, compare, convert and test-load checkpoints (safetensors, or .pt read safely)."),
    "spec": ("spec_cmd", "Write MODEL as a spec (YAML or JSON), or --check a spec file."),
    "export": ("export_cmd", "Export MODEL to FILE and verify it against the eager model."),
    "train": ("train_cmd", "Train MODEL on a dataset; checkpoints, metrics and curves go to --out."),
    "eval": ("eval_cmd", "Evaluate a saved model on a dataset's test (or train) split."),
    "demo": ("demo_cmd", "Build LeNet, initialise it, summarise it, train it on digits, save it, load it back, "
                         "compare."),
    "plan": ("plan_cmd", "Plan how to train MODEL: per-device peak, fit and largest batch for each way to train it."),
    "check": ("check_cmd", "Check MODEL for classic model-building mistakes by running a copy of it."),
    "report": ("report_cmd", "Write one self-contained HTML report about a model or a training run."),
}


class LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands: a :data:`COMMANDS` entry is imported the first time it is looked up."""

    def __init__(self, table: dict[str, tuple[str, str]]) -> None:
        self.table = table
        self.loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self.loaded:
            if name not in self.table:
                raise KeyError(name)
            self.loaded[name] = importlib.import_module(f"torchsmith.cli.{self.table[name][0]}").command
        return self.loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self.loaded and name not in self.table:
            raise KeyError(name)
        self.loaded.pop(name, None)
        self.table = {k: v for k, v in self.table.items() if k != name}

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.table, *self.loaded]))

    def __len__(self) -> int:
        return len(set(self.table) | set(self.loaded))

    def listed(self, name: str) -> click.Command:
        """The command if it is loaded, else a stand-in carrying its help line (for the group's --help)."""
        return self.loaded.get(name) or click.Command(name, help=self.table[name][1])


class TorchsmithGroup(click.Group):
    """A click group that turns library errors into a one-line message and an exit code.

    Its commands are a :class:`LazyCommands`: ``torchsmith --help`` lists them from :data:`COMMANDS` without
    importing one.
    """

    commands: LazyCommands

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.commands.listed(name)) for name in self.list_commands(ctx)]
        rows = [(name, cmd) for name, cmd in rows if not cmd.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)  # as click.Group lays it out
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])

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


@click.group(cls=TorchsmithGroup, commands=LazyCommands(COMMANDS),
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="torchsmith")
def main() -> None:
    """Build, initialise, inspect, check, train, save and export PyTorch models.

    \b
    Examples:
      torchsmith models 'resnet*'
      torchsmith show lenet
    """
    import_registrations()  # any command may name a zoo model, or a spec layer type the zoo registers

