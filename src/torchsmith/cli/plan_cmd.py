"""``torchsmith plan MODEL --device-memory 80GB``: every way to train MODEL on the devices given, in one table."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from torchsmith._memory import plan_training
from torchsmith.cli._common import input_dtypes_option, input_option, model_options, parse_inputs_and_dtypes, parse_opts


@click.command("plan")
@click.argument("model")
@model_options
@input_option()
@input_dtypes_option
@click.option("--device-memory", required=True, metavar="SIZE",
              help="Memory of one device: 80GB (10**9 bytes), 24GiB (2**30 bytes) or bytes.")
@click.option("--world-size", type=int, default=1, show_default=True, metavar="N",
              help="Devices; above 1 the table adds DDP and FSDP rows.")
@click.option("--precision", "precisions", multiple=True, metavar="NAME",
              help="A precision to compare, repeatable: fp32, bf16-mixed, fp16-mixed, bf16 "
                   "(default: fp32 and bf16-mixed).")
@click.option("--batch", type=int, default=1, show_default=True, metavar="N",
              help="Per-device batch whose peak is shown (the largest batch that fits is worked out).")
@click.option("--optimizer", default="adamw", show_default=True, metavar="NAME",
              help="sgd, sgd-momentum, adam or adamw.")
@click.option("--format", "fmt", type=click.Choice(["table", "text", "markdown", "json"]), default="table",
              show_default=True, help="table: rich in a terminal, plain text otherwise.")
def command(model: str, opts: tuple[str, ...], input_size: tuple[str, ...], input_dtype: tuple[str, ...],
            device_memory: str, world_size: int, precisions: tuple[str, ...], batch: int, optimizer: str,
            fmt: str) -> None:
    """Plan how to train MODEL: per-device peak, fit and largest batch for each way to train it.

    For one device, DDP and FSDP (with --world-size above 1), each with and without
    activation checkpointing and in each precision asked for: the peak per device of one
    training step, whether it fits in --device-memory (10% left free for the allocator),
    the largest batch that fits, and the training FLOPs per sample. Nothing is allocated:
    the step runs on fake tensors, so a 405B decoder's config.json plans in seconds.

    \b
    Examples:
      torchsmith plan resnet50 --device-memory 24GB
      torchsmith plan hf:path/to/config.json:ForCausalLM --input 4096 --device-memory 80GB --world-size 8
      torchsmith plan lenet --device-memory 4GiB --precision bf16-mixed --format json
    """
    size, dtype = parse_inputs_and_dtypes(input_size, input_dtype)
    result = plan_training(model, size, device_memory=device_memory, world_size=world_size, batch_size=batch,
                           optimizer=optimizer, input_dtype=dtype, precisions=precisions or ("fp32", "bf16-mixed"),
                           **parse_opts(opts))
    if fmt == "table" and sys.stdout.isatty():
        Console().print(result)
    else:
        click.echo(result.render("text" if fmt == "table" else fmt))
