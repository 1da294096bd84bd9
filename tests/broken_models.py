"""A corpus of small models with deliberate model-building mistakes, and healthy controls.

Each broken model has one or two defects and lists what ``torchsmith.check``
must find as ``EXPECT = [(finding id, module path), ...]``; healthy controls
have ``EXPECT = []`` and must produce no error. ``INPUT`` is the input size
(without the batch dimension) each model is checked at.
"""

from __future__ import annotations

import itertools
import random
import types

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- healthy controls


class HealthyMLP(nn.Module):
    INPUT = (16,)
    EXPECT: list = []

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class HealthyCNN(nn.Module):
    """Conv-BN-ReLU, global pooling: any input size works."""

    INPUT = (3, 16, 16)
    EXPECT: list = []

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))  # (B, 8, H, W)
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


class HealthyContainers(nn.Module):
    """ModuleList, ModuleDict, ParameterList and a buffer: everything registered."""

    INPUT = (8,)
    EXPECT: list = []

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(8, 8) for _ in range(2)])
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 3), "b": nn.Linear(8, 3)})
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(8))])
        self.register_buffer("mask", torch.tril(torch.ones(8, 8)))
        self.views = [self.layers[0]]  # a plain list of *registered* modules is fine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x)) * self.scales[0]
        x = x @ self.mask
        return self.heads["a"](x) + self.heads["b"](x)


class HealthyZeroHead(nn.Module):
    """A zero-initialised classifier head is a known, safe choice (info only)."""

    INPUT = (16,)
    EXPECT = [("zero-init", "head")]

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(16, 32)
        self.head = nn.Linear(32, 4)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.body(x)))


class HealthyGatedBranch(nn.Module):
    """A residual branch closed by a norm whose scale starts at 0 (LeViT's attention, ResNets' zero-gamma):
    inside it a zero-initialised bias table gets no gradient at step 0, identical rows included, but the
    first step opens the gate and each head's row then learns its own way. Not a symmetry."""

    INPUT = (8,)
    EXPECT: list[tuple[str, str]] = []

    def __init__(self, heads: int = 4, n: int = 8) -> None:
        super().__init__()
        self.heads, self.n = heads, n
        self.attention_biases = nn.Parameter(torch.zeros(heads, n))
        self.q = nn.Linear(n, n * heads)
        self.proj = nn.Linear(n * heads, n)
        self.norm = nn.BatchNorm1d(n)
        nn.init.zeros_(self.norm.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.q(x).view(x.shape[0], self.heads, self.n) + self.attention_biases
        return x + self.norm(self.proj(logits.softmax(-1).flatten(1)))


class HealthyWeightNorm(nn.Module):
    """weight_norm installs a forward pre-hook: torch machinery, not a leftover."""

    INPUT = (16,)
    EXPECT: list = []

    def __init__(self) -> None:
        super().__init__()
        wn = getattr(getattr(nn.utils, "parametrizations", None), "weight_norm", None) or nn.utils.weight_norm
        self.fc = wn(nn.Linear(16, 8))
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.fc(x)))


class HealthyTokens(nn.Module):
    """Token ids in, an Embedding first: the check probes it with integer ids."""

    INPUT = (12,)
    EXPECT: list = []

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.rnn = nn.GRU(16, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.embed(tokens))  # (B, L, 16)
        return self.head(out.mean(dim=1))


class LayerScaleBlock(nn.Module):
    """A ConvNeXt block: depthwise conv, norm, MLP, then a per-channel scale that starts at one constant."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.GroupNorm(1, dim)
        self.pw1 = nn.Conv2d(dim, 2 * dim, 1)
        self.pw2 = nn.Conv2d(2 * dim, dim, 1)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))  # torchvision's shape: (C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layer_scale * self.pw2(F.gelu(self.pw1(self.norm(self.dwconv(x)))))


class HealthyLayerScale(nn.Module):
    """Layer scales set to one constant (1e-6) are not symmetric units: each channel's scale multiplies a
    different input, so their gradients differ. With 256 channels a few of those gradients agree to 1e-3 by
    chance, which an older rule took for symmetry; the small gradient inside the scaled branch is not a
    vanishing gradient either (the skip path carries it to the stem)."""

    INPUT = (3, 16, 16)
    EXPECT: list = []

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 256, 4, stride=4)
        self.blocks = nn.Sequential(LayerScaleBlock(256), LayerScaleBlock(256))
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class _Rotate(nn.Module):
    """A function in module clothing (like transformers' kernel ``Func`` wrappers): no state at all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([-x[..., x.shape[-1] // 2:], x[..., : x.shape[-1] // 2]], dim=-1)


class HealthyFunctionTable(nn.Module):
    """Stateless modules in a plain dict are not unregistered submodules worth a finding: registration
    would change nothing about them (no parameters, buffers, tensors, or train/eval behaviour)."""

    INPUT = (16,)
    EXPECT: list = []

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.kernels = {"rotate": _Rotate()}
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.kernels["rotate"](self.fc(x)))


class _KVCache:
    """A cache object that is not a pytree type (like transformers' DynamicCache)."""

    def __init__(self, key: torch.Tensor) -> None:
        self.key = key


class HealthyCacheOutput(nn.Module):
    """Returns its cache beside the output while ``config.use_cache`` is on, like a transformers decoder:
    torch.export cannot return the cache, but that is a setting (verified to export with it off)."""

    INPUT = (16,)
    EXPECT = [("export-needs-config", "")]

    def __init__(self) -> None:
        super().__init__()
        self.config = types.SimpleNamespace(use_cache=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, _KVCache]:
        y = self.fc(x)
        return (y, _KVCache(y)) if self.config.use_cache else y


class HealthyAssertedSize(nn.Module):
    """Learned position embeddings for one size, checked with ``torch._assert`` like torchvision's ViT: the
    model states the one size it supports, so another size is a note, not a hard-coded size."""

    INPUT = (3, 32, 32)
    EXPECT = [("fixed-input-size", "")]

    def __init__(self) -> None:
        super().__init__()
        self.image_size = 32
        self.conv_proj = nn.Conv2d(3, 16, 8, stride=8)
        self.pos_embedding = nn.Parameter(torch.randn(1, 16, 16) * 0.02)
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[-1] == self.image_size, f"Wrong image width! Expected {self.image_size}")
        h = self.conv_proj(x).flatten(2).transpose(1, 2) + self.pos_embedding  # (B, 16 patches, 16)
        return self.head(h.mean(1))


class UnknownInput(nn.Module):
    """Its first layer (a GRU) does not say what one sample looks like: check must be told the input size."""

    INPUT = (5, 8)
    EXPECT: list = []

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


HEALTHY = [HealthyMLP, HealthyCNN, HealthyContainers, HealthyZeroHead, HealthyWeightNorm, HealthyTokens,
           HealthyLayerScale, HealthyFunctionTable, HealthyCacheOutput, HealthyAssertedSize, HealthyGatedBranch]

# --------------------------------------------------------------------------- input mutated


class InplaceInput(nn.Module):
    """``x += 1`` writes into the caller's tensor."""

    INPUT = (16,)
    EXPECT = [("input-mutated", "")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x += 1
        return self.fc(x)


class InplaceReLUFirst(nn.Module):
    """An in-place ReLU as the first layer clobbers the input."""

    INPUT = (16,)
    EXPECT = [("input-mutated", "act")]

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(x))


# --------------------------------------------------------------------------- hard-coded sizes


class TutorialNet(nn.Module):
    """The classic tutorial CNN: fc1's 16*5*5 is only right for 32x32 input."""

    INPUT = (3, 32, 32)
    EXPECT = [("hard-coded-size", "fc1")]

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


class DeclaredButBare(TutorialNet):
    """Declaring a size is not enough: the failure must be a clear error, not a bare matmul error."""

    EXPECT = [("hard-coded-size", "fc1")]

    def __init__(self) -> None:
        super().__init__()
        self.default_input_size = (3, 32, 32)


class ViewFixedFeatures(nn.Module):
    """``x.view(-1, 8 * 4 * 4)`` works at 16x16 only, and silently folds positions into the batch."""

    INPUT = (3, 16, 16)
    EXPECT = [("hard-coded-size", "")]

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv(x)))  # (B, 8, H/4, W/4)
        return self.fc(x.view(-1, 8 * 4 * 4))


class FixedBatch(nn.Module):
    """A reshape with the batch size written in."""

    INPUT = (4, 4)
    EXPECT = [("hard-coded-size", "")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(2, 16))


class Center(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=0, keepdim=True)  # statistics over the batch, also in eval


class BatchMixing(nn.Module):
    INPUT = (16,)
    EXPECT = [("batch-mixing", "center")]

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 16)
        self.center = Center()
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.center(self.fc1(x)))


# --------------------------------------------------------------------------- compilation


class DataDependentBranch(nn.Module):
    """Python control flow on a tensor value: not exportable; one branch's layer gets no gradient."""

    INPUT = (16,)
    EXPECT = [("not-exportable", ""), ("unused-parameter", "neg")]

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Linear(16, 4)
        self.neg = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e9:  # always true on the probe, but a value torch.export cannot know
            return self.pos(x)
        return self.neg(x)


class KwargsSwish(nn.Module):
    def forward(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return x * torch.sigmoid(x)


class NotScriptable(nn.Module):
    """A submodule whose forward takes ``**kwargs``: TorchScript cannot compile it (an opt-in check)."""

    INPUT = (16,)
    EXPECT = [("not-scriptable", "act")]
    CHECKS = "scriptable"

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.act = KwargsSwish()
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.fc(x)))


class ItemGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.abs().max().item()  # a Python float: torch.compile must break the graph here
        return x / (scale + 1.0)


class GraphBreak(nn.Module):
    INPUT = (16,)
    EXPECT = [("graph-break", "gate")]
    CHECKS = "graph-breaks"

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.gate = ItemGate()
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.gate(self.fc(x)))


# --------------------------------------------------------------------------- registration


class PlainList(nn.Module):
    """Layers in a Python list: invisible to .parameters(), .to() and state_dict."""
    # torch 2.4's export also fails on the unregistered state (KeyError on its name): a true consequence.
    ALSO = [("not-exportable", "")]

    INPUT = (16,)
    EXPECT = [("unregistered-submodule", "layers.0"), ("unregistered-submodule", "layers.1"),
              ("state-dict-roundtrip", "layers.0")]

    def __init__(self) -> None:
        super().__init__()
        self.layers = [nn.Linear(16, 16), nn.Linear(16, 4)]
        self.norm = nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](F.relu(self.layers[0](self.norm(x))))


class Scaler(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = torch.rand(n) + 0.5  # should be a buffer (or a Parameter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class PlainTensor(nn.Module):
    INPUT = (16,)
    EXPECT = [("unregistered-tensor", "scaler.scale"), ("state-dict-roundtrip", "scaler")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.scaler = Scaler(8)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.scaler(self.fc(x)))


class ParamInList(nn.Module):
    """nn.Parameter objects in a plain list are never trained."""
    # torch 2.4's export also fails on the unregistered state (KeyError on its name): a true consequence.
    ALSO = [("not-exportable", "")]

    INPUT = (16,)
    EXPECT = [("unregistered-tensor", "weights.0"), ("state-dict-roundtrip", "")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.weights = [nn.Parameter(torch.randn(8, 2) * 0.3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(x)) @ self.weights[0]


class LayerInForward(nn.Module):
    """A layer built inside forward: new random weights on every call."""
    # torch 2.4's export also fails on the unregistered state (KeyError on its name): a true consequence.
    ALSO = [("not-exportable", "")]

    INPUT = (16,)
    EXPECT = [("unregistered-submodule", ""), ("nondeterministic-eval", "<unregistered Linear>")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.Linear(8, 2)(F.relu(self.fc(x)))


# --------------------------------------------------------------------------- initialisation


class ZeroInit(nn.Module):
    """Every weight zero: hidden units are identical forever."""

    INPUT = (16,)
    EXPECT = [("symmetric-init", "fc1"), ("symmetric-init", "fc2")]

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)
        for p in self.parameters():
            nn.init.zeros_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class ConstantMLP(nn.Module):
    """Every weight one constant: the hidden units start identical and, with identical outgoing weights,
    get identical gradients, so they stay copies. The output units start identical too, but each gets its
    own gradient (the loss treats them differently), so fc2 learns."""

    INPUT = (16,)
    EXPECT = [("symmetric-init", "fc1")]

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 4)
        for layer in (self.fc1, self.fc2):
            nn.init.constant_(layer.weight, 0.1)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class CopiedFilters(nn.Module):
    """All conv filters copied from one: the channels stay identical."""

    INPUT = (3, 8, 8)
    EXPECT = [("symmetric-init", "conv")]

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(self.conv.weight[:1].expand_as(self.conv.weight))
            self.conv.bias.fill_(0.1)
        self.fc = nn.Linear(8, 1)
        nn.init.constant_(self.fc.weight, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean(dim=(2, 3)))


class TinyInitTanh(nn.Module):
    """Eight tanh layers initialised with std 0.01: the signal dies out."""

    INPUT = (64,)
    EXPECT = [("vanishing-activations", "layers.2")]

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(64, 64) for _ in range(8)])
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


class HugeInitReLU(nn.Module):
    """Eight ReLU layers with N(0, 0.8^2) weights: each multiplies the scale by ~0.8 * sqrt(fan_in / 2) = 6.4.

    The scale passes the 1e3 bound between layers.2 (~370x) and layers.3 (~2400x), far from either side, and the
    weights come from a fixed generator, so the finding's place does not depend on which tests ran before.
    """

    INPUT = (128,)
    EXPECT = [("exploding-activations", "layers.3"), ("exploding-gradients", "layers.0")]

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(128, 128) for _ in range(8)])
        gen = torch.Generator().manual_seed(0)
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=0.8, generator=gen)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.relu(layer(x))
        return x


class DeadReLU(nn.Module):
    """A bias of -10 after a small layer: the ReLU is zero everywhere."""

    INPUT = (16,)
    EXPECT = [("dead-relu", "act")]

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 64)
        nn.init.constant_(self.fc1.bias, -10.0)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SaturatedTanh(nn.Module):
    INPUT = (64,)
    EXPECT = [("saturated-activations", "")]

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        nn.init.normal_(self.fc1.weight, std=2.0)
        self.fc2 = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class DeepSigmoid(nn.Module):
    """Twelve sigmoid layers with small weights: the gradient shrinks ~4x or more per layer."""

    INPUT = (32,)
    EXPECT = [("vanishing-gradients", "layers.0")]

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(32, 32) for _ in range(12)])
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.sigmoid(layer(x))
        return x


# --------------------------------------------------------------------------- gradients, hooks, state


class UnusedLayer(nn.Module):
    INPUT = (16,)
    EXPECT = [("unused-parameter", "extra")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)
        self.extra = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _capture(module: nn.Module, args: object, output: torch.Tensor) -> None:
    pass


def hook_left() -> nn.Module:
    """A model with a forward hook left on fc1 (as after a feature capture that was not removed)."""
    model = HealthyMLP()
    model.fc1.register_forward_hook(_capture)
    return model


hook_left.INPUT = (16,)  # type: ignore[attr-defined]
hook_left.EXPECT = [("hook-left", "fc1")]  # type: ignore[attr-defined]


class Temperature(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.t = random.uniform(0.5, 2.0)  # state outside parameters and buffers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.t


class PlainFloatState(nn.Module):
    INPUT = (16,)
    EXPECT = [("state-dict-roundtrip", "temp")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)
        self.temp = Temperature()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temp(self.fc(x))


_counter = itertools.count()


class CountedNames(nn.Module):
    """Submodule names from a global counter: a second instance has other state_dict keys."""

    INPUT = (16,)
    EXPECT = [("state-dict-roundtrip", "")]

    def __init__(self) -> None:
        super().__init__()
        self.name = f"fc{next(_counter)}"
        setattr(self, self.name, nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.name)(x)


class AlwaysDropout(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, 0.5, training=True)  # ignores self.training


class DropoutInEval(nn.Module):
    INPUT = (16,)
    EXPECT = [("nondeterministic-eval", "drop")]

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.drop = AlwaysDropout()
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class LogOfNegative(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class NaNOutput(nn.Module):
    INPUT = (16,)
    EXPECT = [("non-finite-output", "log")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.log = LogOfNegative()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log(self.fc(x))


class NaNWeight(nn.Module):
    INPUT = (16,)
    EXPECT = [("non-finite-parameter", "fc"), ("non-finite-output", "fc")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)
        with torch.no_grad():
            self.fc.weight[0, 0] = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class MaskedSqrt(nn.Module):
    """sqrt(h * mask) is finite, but where the mask is 0 its gradient is inf * 0 = NaN."""

    INPUT = (16,)
    EXPECT = [("non-finite-gradient", "fc")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.register_buffer("mask", (torch.arange(8) % 2).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(F.softplus(self.fc(x)) * self.mask)


class MixedDtypes(nn.Module):
    INPUT = (16,)
    EXPECT = [("mixed-dtypes", "fc2")]

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 4).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)).double()).float()


class MetaBuffer(nn.Module):
    """A buffer left on the meta device (no values): .to() was never applied to the whole model."""

    INPUT = (16,)
    EXPECT = [("mixed-devices", "")]

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)
        self.register_buffer("table", torch.empty(4, device="meta"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


BROKEN = [
    InplaceInput, InplaceReLUFirst, TutorialNet, DeclaredButBare, ViewFixedFeatures, FixedBatch, BatchMixing,
    DataDependentBranch, NotScriptable, GraphBreak, PlainList, PlainTensor, ParamInList, LayerInForward,
    ZeroInit, ConstantMLP, CopiedFilters, TinyInitTanh, HugeInitReLU, DeadReLU, SaturatedTanh, DeepSigmoid,
    UnusedLayer,
    hook_left, PlainFloatState, CountedNames, DropoutInEval, NaNOutput, NaNWeight, MaskedSqrt, MixedDtypes,
    MetaBuffer,
]
