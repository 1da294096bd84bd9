"""``torchsmith eval CHECKPOINT --data NAME``: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import json

import click

from torchsmith.cli._common import input_dtype_option, input_option, parse_input
from torchsmith.data import DATASETS
from torchsmith.train.eval import evaluate_checkpoint


@click.command("eval")
@click.argument("checkpoint", type=click.Path())
@click.option("--data", default="digits", show_default=True,
              help=f"Dataset: {', '.join(DATASETS)}, or a folder of class sub-folders.")
@click.option("--data-dir", type=click.Path(), default=None, help="Where cifar10/mnist/fashion-mnist files lie.")
@click.option("--split", type=click.Choice(("test", "train")), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="cpu", show_default=True)
@input_option(help="Input size without the batch dimension, e.g. 3x32x32 (default: the size the run trained at).")
@input_dtype_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(checkpoint: str, data: str, data_dir: str | None, split: str, batch_size: int, device: str,
            input_size: str | None, input_dtype: str | None, as_json: bool) -> None:
    """Evaluate a saved model on a dataset's test (or train) split.

    CHECKPOINT is a .safetensors file written by torchsmith, or a `torchsmith
    train` run directory (its best.safetensors). The normalisation and input
    size saved with the checkpoint are used, so the model sees what it saw in
    training.

    \b
    Examples:
      torchsmith eval runs/lenet-digits/best.safetensors --data digits
      torchsmith eval runs/lenet-digits --json
      torchsmith eval runs/LeNet-digits/best.safetensors --input 3x32x32
    """
    result = evaluate_checkpoint(checkpoint, data, data_dir=data_dir, split=split, batch_size=batch_size,
                                 device=device, input_size=parse_input(input_size), input_dtype=input_dtype)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else str(result))
