"""``torchsmith spec MODEL``: write a model as a declarative spec, or check a spec file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from torchsmith.cli._common import input_option, model_options, parse_input, parse_opts
from torchsmith.errors import ConfigError
from torchsmith.registry import list_models
from torchsmith.resolve import SPEC_SUFFIXES, resolve_model
from torchsmith.spec import check_spec, describe_layer_types, dump_spec, load_spec, to_spec


@click.command("spec")
@click.argument("model", required=False)
@model_options
@click.option("--check", "check", is_flag=True,
              help="Validate MODEL (a spec file) and print every layer's output shape instead of writing it.")
@click.option("-o", "--output", "--out", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the spec to this file (.yaml or .json) instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default=None,
              help="Output format (default: from the -o suffix, else yaml).")
@click.option("--force", is_flag=True, help="Overwrite the -o file if it exists.")
@click.option("--types", "types", is_flag=True, help="List the layer types a spec may name, with their arguments.")
@input_option()
def command(model: str | None, opts: tuple[str, ...], check: bool, output: Path | None, fmt: str | None,
            force: bool, types: bool, input_size: str | None) -> None:
    """Write MODEL as a spec (YAML or JSON), or --check a spec file.

    MODEL is a zoo name, a spec file, path/to/file.py:Class or a checkpoint; a
    model is written when it can be expressed as a spec (LeNet, the ResNets,
    spec-built models, nn.Sequential of standard layers).

    \b
    Examples:
      torchsmith spec resnet20 -o resnet20.yaml
      torchsmith spec lenet --opt in_channels=1 --opt input_size=28
      torchsmith spec net.py:make_net --input 1x28x28     # an nn.Sequential of standard layers
      torchsmith spec examples/resnet20.yaml --check
      torchsmith spec --types
    """
    if types:
        rows = describe_layer_types()
        width = max(len(r[0]) for r in rows)
        for name, args, doc in rows:
            click.echo(f"{name.ljust(width)}  {doc}")
            click.echo(f"{' ' * width}    {args or '(no arguments)'}")
        return
    if model is None:
        raise ConfigError("give a MODEL (a zoo name or a spec file), or --types to list the layer types")
    is_file = model.lower().endswith(SPEC_SUFFIXES)
    if check:
        if not is_file:
            raise ConfigError(f"--check validates a spec file (.yaml, .yml, .json), not {model!r}; "
                              f"write it first with `torchsmith spec {model} -o net.yaml`")
        if opts or output is not None or input_size:
            raise ConfigError("--check takes no --opt, --input or -o; it only reads the spec")
        click.echo(str(check_spec(model)))
        return
    if is_file:
        if opts or input_size:
            raise ConfigError(f"--opt and --input do not apply to a spec file; edit {model} instead")
        spec = load_spec(model)
        check_spec(spec)  # never re-write a spec that does not build
    elif model in list_models() and not input_size:
        spec = to_spec(model, **parse_opts(opts))  # built on the meta device: instant for any size
    else:
        spec = to_spec(resolve_model(model, **parse_opts(opts)), input_shape=parse_input(input_size))
    if fmt is None:
        fmt = "json" if output is not None and output.suffix.lower() == ".json" else "yaml"
    text = dump_spec(spec, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    _write(output, text, force)
    click.echo(f"wrote {output}", err=True)


def _write(path: Path, text: str, force: bool) -> None:
    """Write atomically: a temporary file in the same folder, then a rename; never a half-written spec."""
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise ConfigError(f"folder {str(path.parent)!r} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private; a spec is as readable as any new file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
