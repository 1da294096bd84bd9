"""``torchsmith export MODEL --out FILE``: write torch.export / ONNX / TorchScript and prove it matches eager."""

from __future__ import annotations

import json

import click

from torchsmith._export import FORMAT_NAMES, ExportReport, ExportVerificationError, export
from torchsmith.cli._common import input_dtypes_option, input_option, load_model, model_options, parse_inputs_and_dtypes


@click.command("export")
@click.argument("model")
@model_options
@click.option("-o", "--out", "--output", "out", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="File to write (.pt2, .onnx, .ts); it appears only once it has been verified.")
@click.option("--format", "fmt", type=click.Choice(FORMAT_NAMES), default=None,
              help="exported (torch.export .pt2), onnx or torchscript. Default: from the --out suffix, "
                   "else exported.")
@input_option()
@input_dtypes_option
@click.option("--batch-size", type=click.IntRange(min=1), default=2, show_default=True,
              help="Batch of the example input the export is traced with.")
@click.option("--static-batch", is_flag=True, help="Fix the batch dimension instead of making it dynamic.")
@click.option("--opset", type=click.IntRange(min=1), default=None, help="ONNX opset version (ONNX only).")
@click.option("--trace", is_flag=True, help="TorchScript by torch.jit.trace instead of torch.jit.script.")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-5, show_default=True,
              help="Absolute tolerance of the check against eager.")
@click.option("--rtol", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Tolerance relative to the largest eager output magnitude.")
@click.option("--keep-failed", is_flag=True, help="Keep a file that fails verification as FILE.failed.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random check inputs.")
@click.option("--format-report", "report_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="How to print the report.")
def command(model: str, opts: tuple[str, ...], out: str, fmt: str | None, input_size: tuple[str, ...],
            input_dtype: tuple[str, ...], batch_size: int,
            static_batch: bool, opset: int | None, trace: bool, atol: float, rtol: float, keep_failed: bool,
            seed: int, report_format: str) -> None:
    """Export MODEL to FILE and verify it against the eager model.

    MODEL is a zoo name, a library model (hf:bert, timm:NAME, torchvision:NAME;
    random weights), path/to/file.py:Class, package.module:attr, a spec
    (.yaml/.json) or a checkpoint (.safetensors). Token models (an Embedding
    first: BERT, GPT-2) get token ids, e.g. --input 16. The written file is loaded
    back (torch.export.load, onnxruntime, torch.jit.load) and run on fresh
    random inputs at the export batch and, with a dynamic batch, at 1 and 5;
    the report gives the error against eager, file size and latency. A file
    over tolerance is not written (exit 1); --keep-failed keeps it as FILE.failed.

    \b
    Examples:
      torchsmith export resnet20 --out resnet20.pt2
      torchsmith export lenet --format onnx --out lenet.onnx --opset 18
      torchsmith export resnet18 --opt num_classes=10 --input 3x64x64 --out r18.ts --format-report json
      torchsmith export net.py:Net --input 3x32x32 --format torchscript --trace --out net.ts
      torchsmith export hf:bert --opt num_hidden_layers=2 --opt hidden_size=128 --input 16 --out bert.pt2
      torchsmith export net.py:Net --input image=3x64x64 --input meta=10 --out net.onnx
    """
    size, dtype = parse_inputs_and_dtypes(input_size, input_dtype)
    net = load_model(model, opts)
    try:
        report = export(net, out, format=fmt, input_size=size, input_dtype=dtype, batch_size=batch_size,
                        dynamic_batch=not static_batch, opset=opset, atol=atol, rtol=rtol, trace=trace,
                        keep_failed=keep_failed, seed=seed)
    except ExportVerificationError as e:
        _print(e.report, report_format)  # the numbers on stdout; the group prints the error line and exits 1
        raise
    _print(report, report_format)


def _print(report: ExportReport, report_format: str) -> None:
    if report_format == "json":
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(str(report))
