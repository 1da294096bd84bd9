"""``torchsmith eval CHECKPOINT --data NAME``: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import json

import click

from torchsmith.data import DATASETS


@click.command("eval")
@click.argument("checkpoint", type=click.Path())
@click.option("--data", default="digits", show_default=True,
              help=f"Dataset: {', '.join(DATASETS)}, or a folder of class sub-folders.")
@click.option("--data-dir", type=click.Path(), default=None, help="Where cifar10/mnist/fashion-mnist files lie.")
@click.option("--split", type=click.Choice(("test", "train")), default="test", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--device", type=click.Choice(("auto", "cpu", "cuda")), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def command(checkpoint: str, data: str, data_dir: str | None, split: str, batch_size: int, device: str,
            as_json: bool) -> None:
    """Evaluate a saved model on a dataset's test (or train) split.

    CHECKPOINT is a .safetensors file written by torchsmith, or a `torchsmith
    train` run directory (its best.safetensors). The normalisation saved with
    the checkpoint is used, so the model sees what it saw in training.

    \b
    Examples:
      torchsmith eval runs/lenet-digits/best.safetensors --data digits
      torchsmith eval runs/lenet-digits --json
    """
    from torchsmith.train.eval import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, data, data_dir=data_dir, split=split, batch_size=batch_size,
                                 device=device)
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else str(result))
