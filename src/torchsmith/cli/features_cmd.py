"""``torchsmith features MODEL --layers GLOB``: capture intermediate features, print their statistics, plot them."""

from __future__ import annotations

from pathlib import Path

import click
import torch
import torch.nn.functional as F

from torchsmith._capture import PLOT_SUFFIXES, WHAT, plot_features
from torchsmith._features import features
from torchsmith._plotting import check_plot_path
from torchsmith.cli._common import input_dtypes_option, input_option, load_model, model_options, parse_inputs_and_dtypes
from torchsmith.contract import device_dtype, model_inputs
from torchsmith.data import load_dataset
from torchsmith.errors import ConfigError, DataError
from torchsmith.views import TableView


def load_image(path: str, size: tuple[int, ...]) -> torch.Tensor:
    """An image file as a (C, H, W) float tensor in [0, 1], resized and converted to ``size``'s channels."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"image file {path!r} does not exist")
    try:
        import matplotlib.image as mpimg

        arr = mpimg.imread(str(p))
    except ImportError as e:
        raise ConfigError("reading images needs matplotlib: pip install 'torchsmith[plot]'") from e
    except Exception as e:
        raise DataError(f"cannot read {path!r} as an image ({type(e).__name__}: {e}); use a PNG") from e
    img = torch.as_tensor(arr.copy()).float()
    if img.max() > 1.0:  # 8-bit JPEG/PNG read as 0..255
        img = img / 255.0
    img = img.unsqueeze(-1) if img.dim() == 2 else img[..., :3]  # (H, W, C); alpha dropped
    img = img.permute(2, 0, 1)  # (C, H, W)
    c, h, w = size
    if img.shape[0] != c:  # RGB for a 1-channel model, or grey for an RGB one: go through grey
        img = img.mean(0, keepdim=True).expand(c, -1, -1)
    return F.interpolate(img.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False)[0].contiguous()


def dataset_sample(name: str, index: int, size: tuple[int, ...]) -> torch.Tensor:
    """Image ``index`` of dataset ``name``'s test split (no downloads), as (C, H, W) floats in [0, 1]."""
    data = load_dataset(name, input_size=size).test
    if not 0 <= index < len(data):
        raise ConfigError(f"--index {index} is outside {name}'s test split of {len(data)} images")
    return data.images[index].float() / 255.0


@click.command("features")
@click.argument("model")
@model_options
@click.option("--layers", "layers", multiple=True, required=True, metavar="GLOB",
              help="Layers to capture, repeatable; * stays within a name part (layer* = layer1..4), ** crosses.")
@input_option()
@input_dtypes_option
@click.option("--what", type=click.Choice(WHAT), default="output", show_default=True,
              help="Capture outputs, inputs, or the gradients of the outputs.")
@click.option("--image", type=str, default=None, help="Feed this image (PNG) instead of random input.")
@click.option("--dataset", type=str, default=None, help="Feed a sample of this dataset (e.g. digits).")
@click.option("--index", type=int, default=0, show_default=True, help="Which --dataset sample.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random input.")
@click.option("--plot", "plot_path", type=str, default=None, metavar="FILE.png",
              help="Draw the captured feature maps as an image grid.")
@click.option("--max-maps", type=click.IntRange(min=1), default=8, show_default=True,
              help="Feature maps drawn per layer.")
@click.option("--format", "fmt", type=click.Choice(("text", "json", "markdown", "csv")), default="text",
              show_default=True)
def command(model: str, opts: tuple[str, ...], layers: tuple[str, ...], input_size: tuple[str, ...],
            input_dtype: tuple[str, ...], what: str,
            image: str | None, dataset: str | None, index: int, seed: int, plot_path: str | None,
            max_maps: int, fmt: str) -> None:
    """Run MODEL once and show the shape and statistics of the LAYERS' features.

    The model is built with real weights (its own initialisation), put in eval mode, and
    fed random input, an --image or a --dataset sample. With --plot the feature maps are
    drawn as an image grid, input first.

    \b
    Examples:
      torchsmith features resnet20 --layers 'layer*'
      torchsmith features lenet --layers conv1 --layers conv2 --plot maps.png
      torchsmith features lenet --opt in_channels=1 --opt input_size=8 --layers 'conv*' --dataset digits
      torchsmith features resnet18 --input 3x64x64 --layers layer1 --image cat.png --plot maps.png
      torchsmith features hf:bert --opt num_hidden_layers=2 --layers 'encoder.layer.*' --input 16
      torchsmith features siamese.py:Siamese --layers 'encoder.*' --input 1x28x28 --input 1x28x28
    """
    if image and dataset:
        raise ConfigError("give --image or --dataset, not both")
    if plot_path is not None and Path(plot_path).suffix.lower() not in (".png", ".jpg", ".jpeg", ".pdf", ".svg"):
        raise ConfigError(f"--plot {plot_path!r} should end in .png")
    if plot_path is not None:
        check_plot_path(plot_path, PLOT_SUFFIXES)  # before the forward, so a bad path wastes no run
    net = load_model(model, opts)
    size, dtype = parse_inputs_and_dtypes(input_size, input_dtype)
    x = None
    if image is not None or dataset is not None:
        spec = model_inputs(net, size, input_dtype=dtype)
        shape = spec.primary.size
        if not spec.single or len(shape) != 3 or spec.primary.kind == "tokens":
            raise ConfigError(f"--image and --dataset need one image input CxHxW, but the input is {spec.describe()}")
        x = (load_image(image, shape) if image else dataset_sample(dataset or "", index, shape)).unsqueeze(0)
        x = x.to(device_dtype(net)[0])
    run = features(net, list(layers), size, input_dtype=dtype, what=what, inputs=x, seed=seed)
    feats = run.captured
    click.echo(TableView(f"{what} of {', '.join(feats.names)} for input {run.describe_input()}",
                         run.stats).render(fmt))
    if plot_path is not None:
        first = run.args[0] if run.args else None  # drawn first when it is an image
        picture = first[0] if isinstance(first, torch.Tensor) and first.dim() == 4 else None
        written = plot_features(feats, plot_path, image=picture, max_maps=max_maps,
                                title=f"{type(net).__name__} ({model}): {what}")
        click.echo(f"wrote {written}", err=True)
