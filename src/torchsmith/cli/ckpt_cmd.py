"""``torchsmith ckpt info|diff|convert|load-report``: inspect, compare, convert and test-load checkpoints."""

from __future__ import annotations

import json

import click

from torchsmith.checkpoint import checkpoint_info, convert_checkpoint, diff_checkpoints, load_into
from torchsmith.cli._common import load_model, model_options
from torchsmith.errors import CheckpointError, ConfigError
from torchsmith.train.shards import consolidate as merge


@click.group("ckpt")
def command() -> None:
    """Inspect, compare, convert and test-load checkpoints (safetensors, or .pt read safely).

    \b
    Examples:
      torchsmith ckpt info model.safetensors
      torchsmith ckpt diff epoch1.safetensors epoch2.safetensors
      torchsmith ckpt convert resnet18.pth resnet18.safetensors --model resnet18
      torchsmith ckpt load-report resnet18 resnet18.pth --opt num_classes=10 --on-mismatch reinit
      torchsmith ckpt consolidate runs/gpt gpt.safetensors
    """


def _emit(obj: object, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(obj.to_dict(), indent=2, default=str))  # type: ignore[attr-defined]
    else:
        click.echo(str(obj))


@command.command("info")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--no-verify", is_flag=True, help="Skip the sha256 check of the tensor data.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def info(file: str, no_verify: bool, as_json: bool) -> None:
    """Show FILE's metadata (architecture, versions, hash) and its tensor table.

    \b
    Example:
      torchsmith ckpt info model.safetensors
    """
    _emit(checkpoint_info(file, verify=not no_verify), as_json)


@command.command("diff")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--exit-code", is_flag=True, help="Exit with status 1 when the checkpoints differ.")
def diff(a: str, b: str, as_json: bool, exit_code: bool) -> None:
    """Compare checkpoints A and B: keys, shapes, dtypes and the max absolute difference per tensor.

    \b
    Example:
      torchsmith ckpt diff epoch1.safetensors epoch2.safetensors
    """
    result = diff_checkpoints(a, b)
    _emit(result, as_json)
    if exit_code and not result.identical:
        raise SystemExit(1)


@command.command("convert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--model", "model_ref", default=None, metavar="MODEL",
              help="Check the weights load strictly into MODEL and record its architecture in DST.")
@model_options
@click.option("--trust-pickle", is_flag=True,
              help="Read SRC with the full unpickler, which runs any code in it. Only for files you trust.")
def convert(src: str, dst: str, model_ref: str | None, opts: tuple[str, ...], trust_pickle: bool) -> None:
    """Convert a .pt/.pth/.bin state dict SRC to a safe, self-describing DST.safetensors, or back.

    A DST ending in .pt/.pth/.bin gets a torch.save state dict that
    torch.load(DST, weights_only=True) reads. Either way the module versions
    (state_dict()._metadata) go along.

    \b
    Examples:
      torchsmith ckpt convert model.pt model.safetensors
      torchsmith ckpt convert model.safetensors model.pt
      torchsmith ckpt convert resnet18.pth resnet18.safetensors --model resnet18
    """
    if opts and model_ref is None:
        raise ConfigError("--opt applies to --model; give --model MODEL as well")
    model = load_model(model_ref, opts) if model_ref else None
    out = convert_checkpoint(src, dst, model=model, trust_pickle=trust_pickle)
    click.echo(f"wrote {out}" + (f" (architecture: {model_ref})" if model_ref else ""))


@command.command("load-report")
@click.argument("model")
@click.argument("file", type=click.Path(dir_okay=False))
@model_options
@click.option("--strict/--no-strict", default=True, show_default=True,
              help="Whether missing or unexpected keys make the load fail.")
@click.option("--on-mismatch", type=click.Choice(["raise", "skip", "reinit"]), default="raise", show_default=True,
              help="What to do with tensors whose shapes differ.")
@click.option("--remap", "remaps", multiple=True, metavar="OLD=NEW",
              help="Rename source keys (repeatable); OLD ending in '.' is a prefix, e.g. --remap backbone.=")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def load_report(model: str, file: str, opts: tuple[str, ...], strict: bool, on_mismatch: str,
                remaps: tuple[str, ...], as_json: bool) -> None:
    """Report how FILE would load into MODEL: matched, missing, unexpected, shape-mismatched, remapped keys.

    Exits with status 1 when the load would be refused under the options given.

    \b
    Examples:
      torchsmith ckpt load-report resnet18 resnet18.pth
      torchsmith ckpt load-report resnet18 ddp.pt --opt num_classes=10 --on-mismatch reinit
    """
    remap = {}
    for item in remaps:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ConfigError(f"--remap {item!r} is not OLD=NEW, e.g. --remap head.=fc.")
        remap[old] = new
    net = load_model(model, opts)
    try:
        report = load_into(net, file, strict=strict, on_mismatch=on_mismatch, remap=remap or None)
    except CheckpointError as e:
        refused = getattr(e, "report", None)
        if refused is None:
            raise
        _emit(refused, as_json)  # the full report on stdout; the one-line reason on stderr, exit 1
        raise
    _emit(report, as_json)


@command.command("consolidate")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--model", "model_ref", default=None, metavar="MODEL",
              help="The run's model, when the run directory cannot rebuild it (e.g. path/to/file.py:Class).")
@model_options
def consolidate(run_dir: str, out: str, model_ref: str | None, opts: tuple[str, ...]) -> None:
    """Merge the newest sharded (FSDP) checkpoint of RUN_DIR into one safetensors file OUT.

    OUT is a torchsmith checkpoint with the usual metadata and hashes, for
    torchsmith.load / load_into on one device; no process group is needed.

    \b
    Example:
      torchsmith ckpt consolidate runs/gpt gpt.safetensors
    """

    model = load_model(model_ref, opts) if model_ref else None
    click.echo(f"wrote {merge(run_dir, out, model=model)}")
