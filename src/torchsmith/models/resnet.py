"""ResNets built from one reusable residual block.

He et al., "Deep Residual Learning for Image Recognition" (2015). The ImageNet
models (``resnet18`` ... ``resnet152``) have torchvision's module names, so
their ``state_dict`` keys and shapes are exactly torchvision's and its
checkpoints load with ``strict=True``. The CIFAR models (``resnet20`` ...
``resnet110``) follow the paper's section 4.2: a 3x3 stem, three stages of
16/32/64 channels and ``6n + 2`` layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchsmith.errors import ConfigError, SpecError, TorchsmithError, UnknownNameError
from torchsmith.init import init_weights
from torchsmith.layers import norm_layer_factory
from torchsmith.registry import register_model
from torchsmith.spec import register_layer, register_spec_writer
from torchsmith.spec.layers import int_arg
from torchsmith.spec.registry import Shape, fmt_shape

__all__ = ["BasicBlock", "Bottleneck", "PadShortcut", "ResNet"]

NormFactory = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class PadShortcut(nn.Module):
    """The paper's option A: subsample by ``stride`` and zero-pad the new channels; no parameters.

    He et al. use it for their CIFAR ResNets (section 4.2), which is why their
    table's parameter counts (0.27M for ResNet-20, ...) have no projection weights.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_planes - in_planes
        if self.extra < 0:
            raise ConfigError(f"a padding shortcut cannot reduce width ({in_planes} -> {out_planes})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C, H/s, W/s)
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))  # (B, C + extra, H/s, W/s)


SHORTCUTS = ("conv", "pad")


def _shortcut(in_planes: int, out_planes: int, stride: int, norm: NormFactory, kind: str = "conv") -> nn.Module | None:
    """Identity when shape is kept; else 1x1 conv + norm (option B, torchvision) or zero padding (option A)."""
    if stride == 1 and in_planes == out_planes:
        return None
    if kind == "pad":
        return PadShortcut(in_planes, out_planes, stride)
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), norm(out_planes))


class BasicBlock(nn.Module):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, norm_layer: NormFactory | None = None,
                 shortcut: str = "conv") -> None:
        super().__init__()
        norm = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm(planes)
        self.downsample = _shortcut(in_planes, planes * self.expansion, stride, norm, shortcut)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # out is a fresh tensor, so the in-place add and ReLU never touch the block's input.
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "ResNet v1.5"), 1x1 expand x4."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, norm_layer: NormFactory | None = None,
                 shortcut: str = "conv") -> None:
        super().__init__()
        norm = norm_layer or nn.BatchNorm2d
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = norm(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = norm(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_planes, planes * self.expansion, stride, norm, shortcut)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A ResNet: stem, up to four stages of residual blocks, global average pool, fc.

    Architecture is data: ``ResNet(BasicBlock, (2, 2, 2, 2))`` is ResNet-18.
    ``stem="imagenet"`` is the 7x7/2 conv and 3x3/2 max-pool; ``stem="cifar"`` a
    3x3/1 conv and no pool, for 32x32 input. Stages beyond ``len(layers)`` are
    ``nn.Identity`` so the names stay torchvision's (``layer1`` ... ``layer4``)
    and ``forward`` stays free of Python control flow.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck] | str,
        layers: Sequence[int],
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 1000,
        in_channels: int = 3,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
        norm_layer: str | NormFactory | None = None,
        shortcut: str = "conv",
    ) -> None:
        super().__init__()
        if isinstance(block, str):
            if block not in _BLOCKS:
                raise UnknownNameError("residual block", block, _BLOCKS)
        block_cls: type[BasicBlock] | type[Bottleneck] = _BLOCKS[block] if isinstance(block, str) else block  # type: ignore[assignment]
        if not 1 <= len(layers) <= 4 or len(layers) != len(widths):
            raise ConfigError(f"ResNet takes 1 to 4 stages with one width each, got layers={list(layers)}, "
                              f"widths={list(widths)}")
        if stem not in ("imagenet", "cifar"):
            raise UnknownNameError("ResNet stem", stem, ["imagenet", "cifar"])
        if shortcut not in SHORTCUTS:
            raise UnknownNameError("ResNet shortcut", shortcut, SHORTCUTS)
        self.shortcut = shortcut
        norm = norm_layer_factory(norm_layer)
        self.in_planes = widths[0]
        self.stem = stem
        # (C, H, W) this model is meant for; any size the strides allow also works.
        self.default_input_size = (in_channels, 224, 224) if stem == "imagenet" else (in_channels, 32, 32)
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = norm(widths[0])
        self.relu = nn.ReLU(inplace=True)
        stages: list[nn.Module] = []
        for i, (width, depth) in enumerate(zip(widths, layers)):
            stages.append(self._make_stage(block_cls, width, depth, stride=1 if i == 0 else 2, norm=norm))
        stages += [nn.Identity() for _ in range(4 - len(stages))]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))  # any input size the strides allow
        self.num_features = widths[-1] * block_cls.expansion
        self.num_classes = num_classes
        self.fc: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        # Kaiming (fan_out) for the ReLU convs, as torchvision; norms at weight 1, bias 0.
        self.init_policy: dict = {"preset": "kaiming"}
        if zero_init_residual:
            # Each block starts as the identity (Goyal et al., 2017): zero the last norm's weight.
            last_bn = "bn3" if block_cls is Bottleneck else "bn2"
            self.init_policy["names"] = {f"layer*.{last_bn}.weight": "zeros"}
        init_weights(self, self.init_policy)

    def _make_stage(self, block: type[nn.Module], planes: int, blocks: int, stride: int,
                    norm: NormFactory) -> nn.Sequential:
        layers = [block(self.in_planes, planes, stride, norm, self.shortcut)]
        self.in_planes = planes * block.expansion  # type: ignore[attr-defined]
        layers += [block(self.in_planes, planes, 1, norm, self.shortcut) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> last feature map (B, num_features, H/32, W/32) (H/4 for the CIFAR stem)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> pooled features (B, num_features) or logits (B, num_classes)."""
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            return x
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` with a fresh ``num_classes`` head (``0`` removes it), initialised by the model's policy."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            init_weights(self.fc, {"preset": "kaiming"})


# --------------------------------------------------------------------------- as a spec
# The blocks are spec layer types (`basic_block`, `bottleneck`), and a ResNet writes itself as a spec of them.
def _spec_norm(norm: object) -> NormFactory:
    if not isinstance(norm, str):
        raise SpecError(f"`norm` must be a norm name (batchnorm, groupnorm, instancenorm), got {norm!r}")
    try:
        return norm_layer_factory(norm)
    except Exception as e:
        raise SpecError(str(e)) from None


def _spec_block(cls: type[BasicBlock] | type[Bottleneck], in_shape: Shape, layer: str, planes: int, stride: int,
                norm: str, shortcut: str) -> tuple[nn.Module, Shape]:
    if len(in_shape) != 3:
        raise SpecError(f"input is {fmt_shape(in_shape)} but {layer} needs a feature map [N, C, H, W]")
    planes, stride = int_arg(planes, "out" if cls is BasicBlock else "planes"), int_arg(stride, "stride")
    if shortcut not in SHORTCUTS:  # the blocks themselves take any value other than "pad" as "conv"
        raise SpecError(f"`shortcut` must be 'conv' (1x1 conv + norm) or 'pad' (zero channels), got {shortcut!r}")
    try:
        block = cls(in_shape[0], planes, stride, _spec_norm(norm), shortcut)
    except TorchsmithError as e:
        raise SpecError(f"input is {fmt_shape(in_shape)}: {e}") from None
    return block, (planes * cls.expansion, *((s - 1) // stride + 1 for s in in_shape[1:]))


@register_layer(shorthand="out", activation="relu")
def basic_block(in_shape: Shape, *, out: int, stride: int = 1, norm: str = "batchnorm",
                shortcut: str = "conv") -> tuple[nn.Module, Shape]:
    """The zoo's ResNet BasicBlock: two 3x3 convs plus a shortcut (1x1 conv + norm, or "pad", on a shape change)."""
    return _spec_block(BasicBlock, in_shape, "basic_block", out, stride, norm, shortcut)


@register_layer(shorthand="planes", activation="relu")
def bottleneck(in_shape: Shape, *, planes: int, stride: int = 1, norm: str = "batchnorm",
               shortcut: str = "conv") -> tuple[nn.Module, Shape]:
    """The zoo's ResNet Bottleneck: 1x1 reduce to ``planes``, 3x3 (with the stride), 1x1 expand to 4 x planes."""
    return _spec_block(Bottleneck, in_shape, "bottleneck", planes, stride, norm, shortcut)


def _norm_name(norm: nn.Module) -> str:
    if type(norm) is nn.BatchNorm2d:
        return "batchnorm"
    if type(norm) is nn.GroupNorm and norm.num_groups == min(32, norm.num_channels):
        return "groupnorm"
    if type(norm) is nn.InstanceNorm2d and norm.affine:
        return "instancenorm"
    raise SpecError(f"{type(norm).__name__} is not a norm a spec can name (batchnorm, groupnorm, instancenorm)")


@register_spec_writer(ResNet)
def _resnet_layers(m: ResNet) -> list[object]:
    """A ResNet as the layers of a spec (stem, stages of blocks, head), with torchvision's module names."""
    c1 = m.conv1
    stem: dict[str, object] = {"out": c1.out_channels, "kernel": c1.kernel_size[0]}
    stem.update({k: v for k, v in (("stride", c1.stride[0]), ("padding", c1.padding[0])) if v != (k == "stride")})
    layers: list[object] = [{"conv": {**stem, "bias": False, "name": "conv1"}}]
    stem_norm = _norm_name(m.bn1)
    if stem_norm == "batchnorm":
        layers.append({"batchnorm": {"name": "bn1"}})
    elif stem_norm == "groupnorm":
        layers.append({"groupnorm": {"groups": m.bn1.num_groups, "name": "bn1"}})
    else:
        raise SpecError("a ResNet with an instancenorm stem cannot be written as a spec (no instancenorm layer type)")
    layers.append({"relu": {"name": "relu"}})
    if isinstance(m.maxpool, nn.MaxPool2d):
        layers.append({"maxpool": {"kernel": 3, "stride": 2, "padding": 1, "name": "maxpool"}})
    for i in range(1, 5):
        stage = getattr(m, f"layer{i}")
        if not isinstance(stage, nn.Sequential):
            continue  # an unused stage is an Identity without parameters
        blocks = []
        blk: Any
        for j, blk in enumerate(stage):
            kind, arg = ("bottleneck", "planes") if isinstance(blk, Bottleneck) else ("basic_block", "out")
            entry = {arg: blk.conv1.out_channels, "name": j}
            if blk.stride != 1:
                entry["stride"] = blk.stride
            if _norm_name(blk.bn1) != "batchnorm":
                entry["norm"] = _norm_name(blk.bn1)
            if isinstance(blk.downsample, PadShortcut):
                entry["shortcut"] = "pad"  # option A of the CIFAR zoo
            blocks.append({kind: entry})
        layers.append({"sequential": {"name": f"layer{i}", "layers": blocks}})
    layers += [{"adaptive_avgpool": {"size": 1, "name": "avgpool"}}, "flatten"]
    if isinstance(m.fc, nn.Linear):
        layers.append({"linear": {"out": m.fc.out_features, "name": "fc"}})
    return layers


def _options(num_classes: int, in_channels: int, stem: str, zero_init_residual: bool,
             norm_layer: str | NormFactory | None) -> dict[str, object]:
    return dict(num_classes=num_classes, in_channels=in_channels, stem=stem,
                zero_init_residual=zero_init_residual, norm_layer=norm_layer)


@register_model
def resnet18(*, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
             zero_init_residual: bool = False, norm_layer: str | NormFactory | None = None) -> ResNet:
    """ResNet-18: BasicBlock x (2, 2, 2, 2); 11,689,512 parameters at 1000 classes."""
    return ResNet(BasicBlock, (2, 2, 2, 2), **_options(num_classes, in_channels, stem, zero_init_residual, norm_layer))  # type: ignore[arg-type]


@register_model
def resnet34(*, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
             zero_init_residual: bool = False, norm_layer: str | NormFactory | None = None) -> ResNet:
    """ResNet-34: BasicBlock x (3, 4, 6, 3); 21,797,672 parameters at 1000 classes."""
    return ResNet(BasicBlock, (3, 4, 6, 3), **_options(num_classes, in_channels, stem, zero_init_residual, norm_layer))  # type: ignore[arg-type]


@register_model
def resnet50(*, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
             zero_init_residual: bool = False, norm_layer: str | NormFactory | None = None) -> ResNet:
    """ResNet-50: Bottleneck x (3, 4, 6, 3); 25,557,032 parameters at 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 6, 3), **_options(num_classes, in_channels, stem, zero_init_residual, norm_layer))  # type: ignore[arg-type]


@register_model
def resnet101(*, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
              zero_init_residual: bool = False, norm_layer: str | NormFactory | None = None) -> ResNet:
    """ResNet-101: Bottleneck x (3, 4, 23, 3); 44,549,160 parameters at 1000 classes."""
    return ResNet(Bottleneck, (3, 4, 23, 3), **_options(num_classes, in_channels, stem, zero_init_residual, norm_layer))  # type: ignore[arg-type]


@register_model
def resnet152(*, num_classes: int = 1000, in_channels: int = 3, stem: str = "imagenet",
              zero_init_residual: bool = False, norm_layer: str | NormFactory | None = None) -> ResNet:
    """ResNet-152: Bottleneck x (3, 8, 36, 3); 60,192,808 parameters at 1000 classes."""
    return ResNet(Bottleneck, (3, 8, 36, 3), **_options(num_classes, in_channels, stem, zero_init_residual, norm_layer))  # type: ignore[arg-type]


def _cifar(depth: int, num_classes: int, in_channels: int, zero_init_residual: bool,
           norm_layer: str | NormFactory | None, shortcut: str) -> ResNet:
    n = (depth - 2) // 6  # 6n + 2 layers: three stages of n BasicBlocks
    return ResNet(BasicBlock, (n, n, n), widths=(16, 32, 64), num_classes=num_classes, in_channels=in_channels,
                  stem="cifar", zero_init_residual=zero_init_residual, norm_layer=norm_layer, shortcut=shortcut)


@register_model
def resnet20(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
             norm_layer: str | NormFactory | None = None, shortcut: str = "pad") -> ResNet:
    """CIFAR ResNet-20 (He et al. 2015, table 6): 16/32/64 channels, 3 blocks a stage; 0.27M parameters.

    ``shortcut="pad"`` is the paper's parameter-free option A; ``"conv"`` uses 1x1 conv + BN projections.
    """
    return _cifar(20, num_classes, in_channels, zero_init_residual, norm_layer, shortcut)


@register_model
def resnet32(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
             norm_layer: str | NormFactory | None = None, shortcut: str = "pad") -> ResNet:
    """CIFAR ResNet-32: 5 blocks a stage; 0.46M parameters."""
    return _cifar(32, num_classes, in_channels, zero_init_residual, norm_layer, shortcut)


@register_model
def resnet44(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
             norm_layer: str | NormFactory | None = None, shortcut: str = "pad") -> ResNet:
    """CIFAR ResNet-44: 7 blocks a stage; 0.66M parameters."""
    return _cifar(44, num_classes, in_channels, zero_init_residual, norm_layer, shortcut)


@register_model
def resnet56(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
             norm_layer: str | NormFactory | None = None, shortcut: str = "pad") -> ResNet:
    """CIFAR ResNet-56: 9 blocks a stage; 0.85M parameters."""
    return _cifar(56, num_classes, in_channels, zero_init_residual, norm_layer, shortcut)


@register_model
def resnet110(*, num_classes: int = 10, in_channels: int = 3, zero_init_residual: bool = False,
             norm_layer: str | NormFactory | None = None, shortcut: str = "pad") -> ResNet:
    """CIFAR ResNet-110: 18 blocks a stage; 1.7M parameters."""
    return _cifar(110, num_classes, in_channels, zero_init_residual, norm_layer, shortcut)
