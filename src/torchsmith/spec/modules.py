"""The containers a spec builds: a named sequence and a residual connection.

Both have a forward without Python control flow that depends on data: the
sequence runs its children in order (unrolled by ``torch.jit.script`` and
traced straight through by ``torch.export`` and ``torch.compile``), the residual
adds a body and a shortcut. Every size was fixed when the spec was built.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["SpecSequential", "SpecModel", "Residual", "SpecPadShortcut"]


class SpecSequential(nn.Sequential):
    """``nn.Sequential`` with readable child names (``conv1``, ``relu1``, ``fc1``) chosen by the spec."""

    def __init__(self, children: OrderedDict[str, nn.Module]) -> None:
        super().__init__(children)


class SpecModel(SpecSequential):
    """The root of a spec-built model.

    ``torchsmith_arch = {"spec": ...}`` (set by :func:`torchsmith.spec.build`)
    holds the spec, so a checkpoint can rebuild the model; ``default_input_size``
    is the spec's ``input`` and ``init_policy`` its ``init`` section.
    """

    def __init__(self, children: OrderedDict[str, nn.Module], *, name: str | None = None) -> None:
        super().__init__(children)
        self.spec_name = name

    def extra_repr(self) -> str:
        return f"name={self.spec_name!r}" if self.spec_name else ""


class Residual(nn.Module):
    """``act(body(x) + shortcut(x))``: He et al. (2015)'s residual connection.

    ``shortcut`` is ``nn.Identity`` when the body keeps the shape, else a
    projection (1x1 conv + norm for feature maps) or the layers the spec gave;
    ``act`` is ``nn.Identity`` unless the spec asks for an activation after the sum.
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module, act: nn.Module | None = None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # body(x) is a fresh tensor, so the sum never writes into the block's input.
        return self.act(self.body(x) + self.shortcut(x))


class SpecPadShortcut(nn.Module):
    """He et al.'s option A shortcut: subsample by ``stride``, zero-pad the new channels; no parameters.

    The paper's CIFAR ResNets use it, which is why their parameter counts have no
    projection weights. Channels are padded half before, half after, as the zoo does.
    """

    def __init__(self, stride: int, extra: int) -> None:
        super().__init__()
        self.stride = stride
        self.before = extra // 2
        self.after = extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C, ceil(H/s), ceil(W/s))
        return nn.functional.pad(x, (0, 0, 0, 0, self.before, self.after))  # (B, C + extra, H', W')

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels=({self.before}, {self.after})"
