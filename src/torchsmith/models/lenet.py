"""LeNet (LeCun et al., 1998) for 3x32x32 images, as the classic tutorial builds it.

conv1 (3->6, 5x5) -> max-pool 2/2 -> conv2 (6->16, 5x5) -> max-pool 2/2 ->
flatten (16*5*5 = 400) -> fc1 120 -> fc2 84 -> fc3 10 logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchsmith.errors import ConfigError, ShapeError, SpecError, UnknownNameError
from torchsmith.init import init_weights
from torchsmith.layers import init_gain_for
from torchsmith.registry import register_model
from torchsmith.spec import register_spec_writer

__all__ = ["LeNet", "lenet"]

_ACTS = ("relu", "sigmoid", "tanh")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return (int(size[0]), int(size[1]))
    raise ConfigError(f"input_size must be an int or (height, width), not {size!r}")


class LeNet(nn.Module):
    """The classic LeNet. The flatten size is computed from ``input_size``, never hard-coded."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10,
                 input_size: int | tuple[int, int] = 32, act: str = "relu") -> None:
        super().__init__()
        h, w = _pair(input_size)
        # Each 5x5 valid conv takes 4 off a side, each 2x2 pool halves it.
        fh, fw = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        if fh < 1 or fw < 1:
            raise ConfigError(f"LeNet needs input_size of at least 16x16, got {h}x{w}")
        if in_channels < 1 or num_classes < 1:
            raise ConfigError(f"in_channels and num_classes must be positive, got {in_channels}, {num_classes}")
        if act not in _ACTS:
            raise UnknownNameError("LeNet activation", act, _ACTS)
        self.act_name = act
        self.input_size = (h, w)
        self.default_input_size = (in_channels, h, w)  # (C, H, W) without the batch dimension
        self.num_classes = num_classes
        self.num_features = 84
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * fh * fw, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        # Kaiming for ReLU, Xavier (with the activation's gain) for sigmoid/tanh.
        self.init_policy = {"preset": init_gain_for(act), "nonlinearity": act}
        init_weights(self, self.init_policy)

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        # Functional activations: they have no parameters, so they are not modules.
        if self.act_name == "sigmoid":
            return torch.sigmoid(x)
        if self.act_name == "tanh":
            return torch.tanh(x)
        return F.relu(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) -> flattened conv features (B, 16*5*5 at 32x32)."""
        x = F.max_pool2d(self._activate(self.conv1(x)), 2)  # (B, 6, 14, 14)
        x = F.max_pool2d(self._activate(self.conv2(x)), 2)  # (B, 16, 5, 5)
        return torch.flatten(x, 1)                         # (B, 400)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Flattened features (B, 400) -> logits (B, num_classes), or the 84-d features."""
        if x.shape[1] != self.fc1.in_features:
            raise ShapeError(
                "fc1 expects " + str(self.fc1.in_features) + " input features but got " + str(x.shape[1])
                + ": LeNet was built for " + str(self.input_size[0]) + "x" + str(self.input_size[1])
                + " input; build it for the input you give, e.g. create_model('lenet', input_size=...)"
            )
        x = self._activate(self.fc1(x))  # (B, 120)
        x = self._activate(self.fc2(x))  # (B, 84)
        if pre_logits:
            return x
        return self.fc3(x)               # (B, num_classes) logits; softmax belongs to the loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ShapeError(
                "LeNet expects a 4-D batch (B, C, H, W) but got " + str(x.dim()) + "-D input of shape "
                + str(list(x.shape)) + "; add a batch dimension with x.unsqueeze(0)"
            )
        if x.shape[1] != self.conv1.in_channels:
            raise ShapeError(
                "conv1 expects " + str(self.conv1.in_channels) + " input channels but got " + str(x.shape[1])
                + "; build it with in_channels=" + str(x.shape[1])
            )
        feats = self.forward_features(x)
        if feats.shape[1] != self.fc1.in_features:
            raise ShapeError(
                "fc1 expects " + str(self.fc1.in_features) + " input features but got " + str(feats.shape[1])
                + ": LeNet was built for " + str(self.input_size[0]) + "x" + str(self.input_size[1])
                + " input but got " + str(x.shape[2]) + "x" + str(x.shape[3]) + "; build it with input_size="
                + _size_arg(x.shape[2], x.shape[3])
            )
        return self.forward_head(feats)

    @torch.jit.ignore
    def reset_classifier(self, num_classes: int) -> None:
        """Replace fc3 with a fresh ``num_classes`` head, initialised by the model's policy."""
        self.num_classes = num_classes
        self.fc3 = nn.Linear(84, num_classes) if num_classes > 0 else nn.Identity()  # type: ignore[assignment]
        if num_classes > 0:
            init_weights(self.fc3, self.init_policy)


@register_spec_writer(LeNet)
def _lenet_layers(m: LeNet) -> list[object]:
    """A LeNet as the layers of a spec, with its own module names."""
    act = m.act_name
    if not isinstance(m.fc3, nn.Linear):
        raise SpecError("this LeNet has no classifier (reset_classifier(0)); a spec needs a last layer")
    return [
        {"conv": {"out": 6, "kernel": 5, "name": "conv1"}}, act, {"maxpool": 2},
        {"conv": {"out": 16, "kernel": 5, "name": "conv2"}}, act, {"maxpool": 2},
        "flatten",
        {"linear": {"out": 120, "name": "fc1"}}, act,
        {"linear": {"out": 84, "name": "fc2"}}, act,
        {"linear": {"out": m.fc3.out_features, "name": "fc3"}},
    ]


def _size_arg(h: int, w: int) -> str:
    if h == w:
        return str(h)
    return "(" + str(h) + ", " + str(w) + ")"


@register_model
def lenet(*, in_channels: int = 3, num_classes: int = 10, input_size: int | tuple[int, int] = 32,
          act: str = "relu") -> LeNet:
    """LeNet for 3x32x32 input, 62,006 parameters at defaults; ``act`` is relu, sigmoid or tanh."""
    return LeNet(in_channels=in_channels, num_classes=num_classes, input_size=input_size, act=act)
