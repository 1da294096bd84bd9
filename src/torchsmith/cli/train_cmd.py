"""``torchsmith train MODEL --data NAME``: train, checkpoint every epoch, resume exactly."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from torchsmith.cli._common import (
    dtype_texts,
    input_dtypes_option,
    input_option,
    load_model,
    model_options,
    parse_input,
    parse_opts,
)
from torchsmith.data import DATASETS
from torchsmith.errors import ConfigError
from torchsmith.train.config import AMP_MODES, DEVICES, OPTIMIZERS, SCHEDULES, STRATEGIES, TASK_NAMES, TrainConfig
from torchsmith.train.loop import fit, seed_everything
from torchsmith.train.progress import make_reporter
from torchsmith.train.run import load_run_model, model_reference, run_config
from torchsmith.train.state import resume_checkpoint

_DEFAULTS = TrainConfig()

# CLI option name -> TrainConfig field, for every option that maps onto the config.
_FIELDS = {
    "data": "data", "data_dir": "data_dir", "epochs": "epochs", "batch_size": "batch_size",
    "optimizer": "optimizer", "lr": "lr", "momentum": "momentum", "nesterov": "nesterov",
    "weight_decay": "weight_decay", "schedule": "schedule", "warmup": "warmup_epochs",
    "label_smoothing": "label_smoothing", "seed": "seed", "device": "device", "amp": "amp",
    "channels_last": "channels_last", "compile": "compile", "augment": "augment", "crop_padding": "crop_padding",
    "max_steps": "max_steps", "save_every_steps": "save_every_steps", "log_every": "log_every",
    "samples": "num_samples", "sync_batchnorm": "sync_batchnorm", "grad_clip": "grad_clip", "plot": "plot",
    "input_size": "input_size", "input_dtype": "input_dtype", "tensorboard": "tensorboard",
    "task": "task", "seq_len": "seq_len", "target": "target", "tokenizer": "tokenizer", "strategy": "strategy",
    "checkpointing": "checkpointing", "grad_accum": "grad_accum",
}


def parse_init(value: str | None) -> Any:
    """``--init kaiming`` (a preset) or ``--init policy.yaml`` (a policy file, YAML or JSON)."""
    if value is None:
        return None
    path = Path(value)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise ConfigError(f"--init {value!r}: no such policy file")
        try:
            return yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"--init {value!r} is not valid YAML/JSON: {e}") from e
    return value


def _default_out(model: str, data: str) -> str:
    """``runs/<model>-<data>``, numbered when taken (a single process only: ranks must agree)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(model.split(':')[-1]).stem}-{Path(data).name}").strip("_")
    base = Path("runs") / stem
    if os.environ.get("WORLD_SIZE", "1") != "1":
        return str(base)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = Path(f"{base}-{n}")
    return str(candidate)


@click.command("train")
@click.argument("model", required=False)
@model_options
@input_option(help="Input size without the batch dimension, e.g. 3x32x32; the data is resized and its channels "
                   "converted to fit (default: what the model declares).")
@input_dtypes_option
@click.option("--data", default=_DEFAULTS.data, show_default=True,
              help=f"Dataset: {', '.join(DATASETS)}, a folder of class sub-folders, arrays:PATH.npz (x/y or several "
                   f"named inputs), csv:PATH.csv, tokens:PATH.bin (uint16 ids), text:PATH.txt (text:corpus ships).")
@click.option("--task", type=click.Choice(TASK_NAMES), default=_DEFAULTS.task, show_default=True,
              help="What to learn; auto reads the model's output and the data (and says what it chose).")
@click.option("--seq-len", type=int, default=None, help="causal-lm: tokens per training window.")
@click.option("--target", default=None, metavar="COLUMN", help="CSV data: the target column (default: the last).")
@click.option("--tokenizer", default=None, metavar="NAME",
              help="text data: a transformers tokenizer already on this machine (default: bytes, vocab 256).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=_DEFAULTS.strategy, show_default=True,
              help="Under torchrun: ddp (replicas), fsdp (FSDP2 shards), auto (ddp when it fits one device).")
@click.option("--checkpointing", is_flag=True, default=False,
              help="Activation checkpointing: recompute each repeated block in backward.")
@click.option("--grad-accum", type=int, default=_DEFAULTS.grad_accum, show_default=True,
              help="Microbatches per step (gradients synced on the last).")
@click.option("--data-dir", type=click.Path(), default=None, help="Where cifar10/mnist/fashion-mnist files lie.")
@click.option("--epochs", type=int, default=_DEFAULTS.epochs, show_default=True)
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True,
              help="Global batch (split among ranks under torchrun).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_DEFAULTS.optimizer, show_default=True)
@click.option("--lr", type=float, default=_DEFAULTS.lr, show_default=True, help="Peak learning rate.")
@click.option("--momentum", type=float, default=_DEFAULTS.momentum, show_default=True, help="SGD momentum.")
@click.option("--nesterov/--no-nesterov", default=_DEFAULTS.nesterov, show_default=True, help="SGD Nesterov.")
@click.option("--weight-decay", type=float, default=_DEFAULTS.weight_decay, show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default=_DEFAULTS.schedule, show_default=True)
@click.option("--warmup", type=float, default=None, help="Warm-up epochs (default: 30% for onecycle, else 0).")
@click.option("--label-smoothing", type=float, default=_DEFAULTS.label_smoothing, show_default=True)
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default=_DEFAULTS.device, show_default=True)
@click.option("--amp", type=click.Choice(AMP_MODES), default=_DEFAULTS.amp, show_default=True,
              help="Autocast dtype (bf16/fp16 on CUDA; bf16 also on CPU).")
@click.option("--channels-last", is_flag=True, default=False, help="NHWC memory format (faster convs on GPUs).")
@click.option("--compile", "compile", is_flag=True, default=False, help="torch.compile the model.")
@click.option("--init", "init", default=None, metavar="PRESET|FILE",
              help="Re-initialise before training: a preset (kaiming, xavier, torch_default) or a policy file.")
@click.option("--augment", type=click.Choice(("auto", "none", "crop", "flip", "crop+flip")),
              default=_DEFAULTS.augment, show_default=True)
@click.option("--crop-padding", type=int, default=None, help="Pixels of padding for random crops (default H/8).")
@click.option("-o", "--out", "--output", "out", type=click.Path(file_okay=False), default=None,
              help="Run directory (default runs/<model>-<data>).")
@click.option("--resume", type=click.Path(), default=None, metavar="DIR",
              help="Continue the run in DIR exactly (MODEL and options default to the run's own).")
@click.option("--max-steps", type=int, default=None, help="Stop (with a checkpoint) after this many steps in all.")
@click.option("--save-every-steps", type=int, default=None, help="Also checkpoint every N steps.")
@click.option("--log-every", type=int, default=_DEFAULTS.log_every, show_default=True,
              help="Steps between progress updates (one device sync each).")
@click.option("--samples", type=int, default=_DEFAULTS.num_samples, show_default=True,
              help="Training samples of --data synthetic.")
@click.option("--sync-batchnorm", is_flag=True, default=False, help="SyncBatchNorm under torchrun.")
@click.option("--grad-clip", type=float, default=None, help="Clip the gradient norm to this value.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write curves.png at the end.")
@click.option("--tensorboard", is_flag=True, default=False,
              help="Also write TensorBoard event files to the run directory (view: tensorboard --logdir runs).")
@click.option("--progress", type=click.Choice(("auto", "rich", "plain", "none")), default="auto", show_default=True,
              help="Progress display on stderr: auto is a bar on a terminal, plain lines otherwise.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def command(ctx: click.Context, model: str | None, opts: tuple[str, ...], progress: str, as_json: bool,
            out: str | None, resume: str | None, init: str | None, **options: Any) -> None:
    """Train MODEL on a dataset; checkpoints, metrics and curves go to --out.

    MODEL is a zoo name, path/to/file.py:Class or package.module:attr. Under
    `torchrun --nproc-per-node N` the same command trains with
    DistributedDataParallel (gloo on CPU, nccl on CUDA).

    \b
    Examples:
      torchsmith train lenet --data digits --epochs 15
      torchsmith train net.py:LeNet --input 3x32x32 --data digits --tensorboard
      torchsmith train resnet18 --opt stem=cifar --opt num_classes=10 --data cifar10 --data-dir ~/data \\
          --optimizer sgd --lr 0.1 --batch-size 512 --amp bf16 --channels-last
      torchsmith train --resume runs/lenet-digits
      torchrun --nproc-per-node 2 -m torchsmith train lenet --data digits --out runs/ddp
      torchrun --nproc-per-node 2 -m torchsmith train torchsmith.demo:TinyGPT --data text:corpus \\
          --seq-len 64 --strategy fsdp --out runs/gpt
      torchsmith train net.py:AudioNet --input 1x16000 --data arrays:clips.npz --task regression
    """
    options["input_size"] = parse_input(options["input_size"])
    options["input_dtype"] = dtype_texts(options["input_dtype"])
    given = {k: v for k, v in options.items()
             if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    if resume is not None:
        resume_checkpoint(resume)  # "no such run directory" before "no config.json"
        base = run_config(resume)
        changes = {_FIELDS[k]: v for k, v in given.items()}
        if init is not None:
            changes["init"] = parse_init(init)
        changes.setdefault("max_steps", None)  # max_steps stops one invocation, not the resumed run
        cfg = base.replace(**changes, resume=resume, out_dir=out or resume)
    else:
        if model is None:
            raise click.UsageError("give a MODEL to train (e.g. `torchsmith train lenet`), or --resume DIR")
        values = {_FIELDS[k]: v for k, v in options.items()}
        cfg = TrainConfig(**values, init=parse_init(init), out_dir=out or _default_out(model, options["data"]),
                          extra={"model": model_reference(model, parse_opts(opts))})
    seed_everything(cfg.seed)  # the model's own initialisation is part of the run's reproducibility
    if model is not None and model.endswith(".safetensors") and not opts and Path(model).is_file():
        net = load_run_model(model)  # training on from a checkpoint, also one of a model from user code
    elif model is not None:
        net = load_model(model, opts)
    else:
        net = load_run_model(resume_checkpoint(resume), resume)  # type: ignore[arg-type]
    reporter = make_reporter(progress, sys.stderr)
    result = fit(net, None, cfg, reporter=reporter)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        click.echo(str(result))
