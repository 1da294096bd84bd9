"""``torchsmith show MODEL``: the layer-by-layer summary, the shape flow, and the four attribute views."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from torch import nn

import torchsmith
from torchsmith._meta import build_on_meta
from torchsmith._summary import REAL_FALLBACK_BYTES, rich_summary, summary
from torchsmith._summary.diagram_render import check_diagram_path, dot_available
from torchsmith.cli._common import INPUT_HELP, input_dtypes_option, input_option, model_options, parse_opts
from torchsmith.contract import ModelInputs, forward_inputs, model_inputs, parse_inputs
from torchsmith.errors import ConfigError, DeclaredSizeError, TorchsmithError
from torchsmith.resolve import resolve_model
from torchsmith.views import (
    buffer_view,
    count_parameters,
    format_tree,
    hook_view,
    module_tree,
    param_view,
    tree_to_dict,
)

FORMATS = ("table", "text", "json", "markdown", "csv", "mermaid")
REAL_WEIGHTS_LIMIT = 500_000_000  # --params builds real weights (for mean/std) up to 2 GB in fp32


def _build(ref: str, opts: tuple[str, ...], meta: bool) -> nn.Module:
    kwargs = parse_opts(opts)
    if not meta:
        return resolve_model(ref, **kwargs)
    return build_on_meta(lambda: resolve_model(ref, **kwargs))[0]


@click.command("show")
@click.argument("model")
@model_options
@input_option(help=INPUT_HELP + " Names keep a dim symbolic: 3xHxW, T=128.")
@click.option("--batch", default="1", show_default=True, metavar="N|NAME",
              help="Batch size; a name such as B keeps it symbolic in shapes and FLOPs.")
@input_dtypes_option
@click.option("--depth", type=click.IntRange(min=0), default=3, show_default=True,
              help="Deepest module level shown (the tree and the flow too).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table: rich in a terminal, plain text otherwise.")
@click.option("--flow", is_flag=True, help="Print only the one-line shape flow.")
@click.option("--diagram", "diagram_path", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Draw the network to FILE: .svg, .png, .html, .mmd (mermaid) or .dot; --depth sets how deep. "
                   "--format mermaid prints it as text instead.")
@click.option("--explain", is_flag=True,
              help="Explain each layer's output shape and parameter count with its own numbers, "
                   "and the receptive field of a CNN.")
@click.option("--dtype", default=None, metavar="DTYPE", help="Dtype of the memory estimate (e.g. bf16).")
@click.option("--expand", is_flag=True, help="Do not collapse repeated identical blocks into one 'xN' row.")
@click.option("--memory", "plan_memory", is_flag=True,
              help="Print the memory plan of one training step instead: the per-device peak, what holds it, and "
                   "the activations each module saves (computed on fake tensors).")
@click.option("--precision", default="fp32", show_default=True, metavar="NAME",
              help="With --memory: fp32, bf16-mixed, fp16-mixed (autocast, fp32 weights) or bf16.")
@click.option("--optimizer", default="adamw", show_default=True, metavar="NAME",
              help="With --memory: sgd, sgd-momentum, adam or adamw.")
@click.option("--checkpointing", default=None, is_flag=False, flag_value="blocks", metavar="[NAMES]",
              help="With --memory: activation checkpointing of the repeated blocks, or of the modules named "
                   "(comma-separated).")
@click.option("--world-size", type=int, default=1, show_default=True, metavar="N",
              help="With --memory: devices; the figures are per device.")
@click.option("--strategy", default=None, metavar="ddp|fsdp", help="With --memory and --world-size > 1 "
                                                                    "(default ddp).")
@click.option("--params", "views", flag_value="params", multiple=True,
              help="Named parameters: shape, dtype, requires_grad, numel, mean/std.")
@click.option("--modules", "views", flag_value="modules", multiple=True, help="The module tree.")
@click.option("--buffers", "views", flag_value="buffers", multiple=True, help="Buffers, persistent or not.")
@click.option("--hooks", "views", flag_value="hooks", multiple=True, help="Every registered hook, by module.")
def command(model: str, opts: tuple[str, ...], input_size: tuple[str, ...], batch: str, input_dtype: tuple[str, ...],
            depth: int, fmt: str, flow: bool, diagram_path: str | None, explain: bool, dtype: str | None, expand: bool,
            plan_memory: bool, precision: str, optimizer: str, checkpointing: str | None, world_size: int,
            strategy: str | None, views: tuple[str, ...]) -> None:
    """Show MODEL layer by layer: shapes, parameters, MACs/FLOPs, memory, on the meta device.

    MODEL is a zoo name, a library model (hf:NAME[:HEAD], hf:path/config.json, timm:NAME,
    torchvision:NAME), path/to/file.py:Class or package.module:attr. No weights are
    allocated for the summary, so billion-parameter models take a second.

    \b
    Examples:
      torchsmith show lenet
      torchsmith show lenet --flow
      torchsmith show resnet50 --input 3x224x224 --batch B --depth 2
      torchsmith show my_gpt.py:GPT --input T=128 --input-dtype long --dtype bf16
      torchsmith show lenet --params
      torchsmith show hf:llama --opt num_hidden_layers=2 --opt hidden_size=256
      torchsmith show hf:path/to/config.json:ForCausalLM --depth 1
      torchsmith show resnet20 --diagram net.svg --depth 2
      torchsmith show lenet --format mermaid
      torchsmith show net.py:LeNet --input 3x32x32 --explain
      torchsmith show resnet18 --opt stem=cifar --opt num_classes=10 --modules --depth 1
      torchsmith show resnet20 --memory --batch 128 --optimizer sgd-momentum
      torchsmith show hf:path/to/config.json --memory --precision bf16-mixed --checkpointing \\
          --world-size 8 --strategy fsdp
    """
    if views:
        _show_views(model, opts, views, fmt, depth)
        return
    if diagram_path:
        check_diagram_path(diagram_path)  # before the forward: a typo in the suffix fails at once
    net = _build(model, opts, meta=True)
    size, in_dtype = parse_inputs(input_size, input_dtype, symbolic=True,
                                  input_names=[n for n, _ in forward_inputs(net)])
    declared = _declared_input(net) if size is None else None  # (C, H, W), (T,) ... from the contract
    if size is not None:
        pass
    elif declared is not None:  # one input; or an encoder-decoder's input_ids and decoder_input_ids
        size = declared.sizes()
        in_dtype = in_dtype or (declared.primary.dtype if declared.single else
                                {n: s.dtype for n, s in zip(declared.names, declared.specs)})
    elif diagram_path or explain or fmt == "mermaid" or plan_memory:
        raise ConfigError(f"the input size of {type(net).__name__} is not known, and the diagram, the explanation "
                          "and the memory plan come from a forward pass; give --input (e.g. --input 3x32x32)")
    else:
        # Nothing to run: the structure and counts still help; say how to get the rest.
        if fmt == "json":  # still JSON: a pipe into a parser must not get a text tree
            click.echo(json.dumps(tree_to_dict(module_tree(net)), indent=2))
        else:
            click.echo(format_tree(module_tree(net), title=f"{type(net).__name__} ({model})", max_depth=depth))
        click.echo(f"note: the input size of {type(net).__name__} is not known (no default_input_size, config or "
                   "telling first layer); give --input (e.g. --input 3x32x32) for shapes, FLOPs and memory", err=True)
        return
    if plan_memory:
        # The facade imports the memory engine (torch.export, the distributed tools) on first use: --memory only.
        plan = torchsmith.memory(net, size, batch_size=batch, input_dtype=in_dtype, optimizer=optimizer,
                                 precision=precision, checkpointing=checkpointing or False, world_size=world_size,
                                 strategy=strategy)
        plan.model = f"{type(net).__name__} ({model})"
        _print_plan(plan, fmt, depth)
        return
    try:
        result = _summarise(net, model, opts, size, batch, in_dtype, dtype, depth)
    except TorchsmithError as e:
        partial = getattr(e, "partial", None)
        if partial is not None and partial.rows and not flow:
            click.echo(partial.render("text" if fmt in ("table", "mermaid") else fmt, depth=depth,
                                      collapse=not expand))
        raise
    result.model = f"{type(net).__name__} ({model})"
    if flow:
        click.echo(result.flow(depth=depth))
        return
    if diagram_path or explain or fmt == "mermaid":
        _picture_and_arithmetic(result, diagram_path, explain, fmt, depth, expand)
        return
    if fmt == "table" and sys.stdout.isatty():
        from rich.console import Console  # a terminal only: a pipe gets plain text

        Console().print(rich_summary(result, depth=depth, collapse=not expand))
        return
    click.echo(result.render("text" if fmt == "table" else fmt, depth=depth, collapse=not expand))


def _print_plan(plan: Any, fmt: str, depth: int) -> None:
    """--memory: rich in a terminal, else text, markdown or JSON."""
    if fmt == "table" and sys.stdout.isatty():
        from rich.console import Console

        Console().print(plan)
    elif fmt in ("json", "markdown"):
        click.echo(plan.render(fmt, depth=depth))
    elif fmt in ("table", "text"):
        click.echo(plan.render("text", depth=depth))
    else:
        raise ConfigError(f"--memory prints table, text, markdown or json, not --format {fmt}")


def _summarise(net: nn.Module, model: str, opts: tuple[str, ...], size: Any, batch: str, in_dtype: Any,
               dtype: str | None, depth: int) -> Any:
    """The summary of the model built on meta; of a real build where meta tensors cannot run it and its weights
    are small (a data-dependent ``if``, ``.item()``): the API falls back to real tensors the same way."""
    try:
        return summary(net, size, batch_size=batch, input_dtype=in_dtype, dtype=dtype, depth=depth)
    except TorchsmithError:
        if not any(p.is_meta for p in net.parameters()) or count_parameters(net) * 4 > REAL_FALLBACK_BYTES:
            raise
    real = _build(model, opts, meta=False)
    return summary(real, size, batch_size=batch, input_dtype=in_dtype, dtype=dtype, depth=depth)


def _declared_input(net: nn.Module) -> ModelInputs | None:
    """What the model says about its inputs (default_input_size, a library config, its first layer), or None."""
    try:
        return model_inputs(net)
    except DeclaredSizeError:
        raise  # a declared size that is wrong: the user must hear it
    except ConfigError:
        return None


def _picture_and_arithmetic(result: Any, diagram_path: str | None, explain: bool, fmt: str, depth: int,
                            expand: bool) -> None:
    """--diagram FILE, --format mermaid and --explain: the picture and the arithmetic instead of the table."""
    if diagram_path or fmt == "mermaid":
        picture = result.diagram(depth=depth, collapse=not expand)
        if fmt == "mermaid":
            click.echo(picture.mermaid(), nl=False)
        if diagram_path:
            path = picture.save(diagram_path)
            how = "" if path.suffix.lower() in (".mmd", ".dot") else \
                f", laid out by {'graphviz dot' if dot_available() else 'grandalf'}"
            click.echo(f"wrote {path} ({len(picture.nodes)} nodes, {len(picture.edges)} edges{how})", err=True)
    if explain:
        text = result.explain()
        if fmt == "json":
            click.echo(json.dumps(text.to_dict(), indent=2, default=str))
        else:
            click.echo(text.render("markdown" if fmt == "markdown" else "text"))


def _show_views(model: str, opts: tuple[str, ...], views: tuple[str, ...], fmt: str, depth: int) -> None:
    # Parameter statistics need real weights; the other views only need the structure, so the
    # model is built on meta first, and for real only when its weights fit comfortably in memory.
    net = _build(model, opts, meta=True)
    if "params" in views:
        n = count_parameters(net)
        if n <= REAL_WEIGHTS_LIMIT:
            net = _build(model, opts, meta=False)
        else:
            click.echo(f"note: {n:,} parameters: weights not allocated, so no mean/std", err=True)
    text_fmt = "text" if fmt == "table" else fmt
    out: list[str] = []
    docs: dict[str, Any] = {}
    for view in dict.fromkeys(views):  # in the order given, each once
        if view == "modules":
            tree = module_tree(net)
            if text_fmt == "json":
                docs[view] = tree_to_dict(tree)
            else:
                out.append(format_tree(tree, title=f"{type(net).__name__} ({model})", max_depth=depth))
        else:
            table = {"params": param_view, "buffers": buffer_view, "hooks": hook_view}[view](net)
            if text_fmt == "json":
                docs[view] = table.to_dict()
            else:
                out.append(table.render(text_fmt))
    if text_fmt == "json":
        # One view: its document as before; several: one object keyed by view, so the output stays one JSON value.
        click.echo(json.dumps(next(iter(docs.values())) if len(docs) == 1 else docs, indent=2, default=str))
        return
    click.echo("\n\n".join(out))
