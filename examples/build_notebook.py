"""Write examples/model_building.ipynb from the cells below and execute it in place.

The notebook is the classic model-building lesson (layers, LeNet, initialisation,
nn.Module, ResNet, dynamic shapes, functional ops, the doctor, training, state_dict)
with plain PyTorch and torchsmith side by side. Its source lives here so a change
to it reads as a diff of Python strings; the committed .ipynb carries its outputs
so it reads on GitHub.

    .venv/bin/python examples/build_notebook.py            # build and execute (about a minute)
    .venv/bin/python examples/build_notebook.py --no-execute

Execution runs on a Jupyter kernel of this interpreter (a kernelspec written to a
temporary JUPYTER_PATH, so nothing is registered globally), in a temporary working
directory (checkpoints and run folders never land in the repository), with one
intra-op thread (a LeNet trains ~40x faster that way on a loaded 2-core machine).
Volatile metadata (execution timings, the interpreter's exact version) is stripped
so that re-executing changes only what the product prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "model_building.ipynb"
KERNEL_NAME = "torchsmith-lesson"


def md(text: str) -> tuple[str, str]:
    return ("markdown", text.strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip("\n"))


CELLS: list[tuple[str, str]] = [
    md("""
# Building models with PyTorch, and with torchsmith beside it

This notebook walks the classic model-building lesson: layers, LeNet and its shape
flow, weight initialisation, `nn.Module`, a residual network, dynamic shapes,
modules versus `torch.nn.functional`, the mistakes a model doctor looks for,
training, and saving. Each section explains the idea, does it in **plain PyTorch**,
then shows what **torchsmith** adds. The `assert` lines check the real outputs, so
this notebook is also a test: it runs top to bottom in `make test`.

Everything runs on a CPU in well under a minute; the only data is the small
`digits` set that ships with torchsmith (1,797 greyscale 8x8 images), so nothing
is downloaded. In Jupyter every torchsmith result draws itself as HTML (a table, the
findings with their fixes, pictures); `print(result)` gives the same content as text.
"""),
    code("""
import torch
import torch.nn as nn
import torch.nn.functional as F
import matplotlib.pyplot as plt
from IPython.display import display

import shutil
import tempfile
from pathlib import Path

import torchsmith as ts

# What the lesson writes (a training run, checkpoints, reports) goes here, emptied at the start, so the
# notebook runs any number of times and leaves nothing beside itself.
OUT = Path(tempfile.gettempdir()) / "torchsmith-lesson"
shutil.rmtree(OUT, ignore_errors=True)
OUT.mkdir(parents=True)
torch.manual_seed(0)
print("torch", torch.__version__, "| torchsmith", ts.__version__, "| files go to", OUT)
"""),
    # ------------------------------------------------------------------ 1. layers
    md("""
## 1. Layers and the shapes they produce

A layer is a function with (maybe) learned parameters. For images the workhorses are:

* `nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0)`: slides
  `out_channels` filters of size `in_channels x k x k` over the image. Each spatial size
  becomes `floor((H + 2*padding - dilation*(k-1) - 1) / stride) + 1`, so a 5x5 kernel
  without padding takes 32 to 28. Parameters: `in*out*k*k + out` (the bias).
* `nn.MaxPool2d(2)`: the largest value of each 2x2 window; halves H and W, no parameters.
* `nn.Linear(in_features, out_features)`: `y = x W^T + b` on the last dimension;
  `in*out + out` parameters. Feature maps are flattened to vectors before it.
* activations (`ReLU`, `Sigmoid`, `Tanh`): element-wise, shape unchanged, no parameters.

Shapes are `(batch, channels, height, width)`; every layer works on a whole batch.
"""),
    code("""
x = torch.randn(4, 3, 32, 32)                 # a batch of 4 RGB images, 32x32

conv = nn.Conv2d(3, 6, kernel_size=5)
pool = nn.MaxPool2d(2)
fc = nn.Linear(6 * 14 * 14, 10)

h1 = conv(x)
h2 = pool(F.relu(h1))
h3 = fc(h2.flatten(1))
for name, t in [("input", x), ("conv", h1), ("relu + pool", h2), ("flatten + linear", h3)]:
    print(f"{name:18s} {tuple(t.shape)}")

assert h1.shape == (4, 6, 28, 28)             # (32 + 2*0 - 1*(5-1) - 1) / 1 + 1 = 28
assert h2.shape == (4, 6, 14, 14)
assert h3.shape == (4, 10)
assert sum(p.numel() for p in conv.parameters()) == 3 * 6 * 5 * 5 + 6 == 456

for act in (nn.ReLU(), nn.Sigmoid(), nn.Tanh()):
    y = act(torch.linspace(-3, 3, 7))
    print(f"{type(act).__name__:8s}", [round(v, 2) for v in y.tolist()])
"""),
    md("""
**torchsmith**: `ts.summary` runs the model once on the *meta* device (shapes only, no
numbers computed, no memory for weights) and lists every layer's input and output
shape, parameters and FLOPs. `input_size` is one sample's shape (no batch), as everywhere in torchsmith; `batch_size` is its own argument. `.explain()`
shows the arithmetic behind each number, with the layer's own values, checked against
the shapes the run produced.
"""),
    code("""
layers = nn.Sequential(conv, nn.ReLU(), pool, nn.Flatten(), fc)
s = ts.summary(layers, (3, 32, 32), batch_size=4)
display(s)
assert [r.output_shapes for r in s.rows[1:]] == [(4, 6, 28, 28), (4, 6, 28, 28), (4, 6, 14, 14), (4, 1176), (4, 10)]
assert s.total_params == 456 + 1176 * 10 + 10

conv_explained = s.explain().layer("0")
print("\\n".join([conv_explained.what, *conv_explained.shape_formulas, *conv_explained.param_formulas]))
assert "H_out = (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28" in conv_explained.shape_formulas
assert conv_explained.computed_params == 456 and conv_explained.ok
"""),
    # ------------------------------------------------------------------ 2. LeNet
    md("""
## 2. LeNet, built by hand

LeNet (LeCun et al., 1998) is two convolution + pooling stages and three fully
connected layers. Written as most courses write it, with the flattened size
`16*5*5` worked out by hand for a 32x32 input:

    32x32x3 -> conv1 -> 28x28x6 -> pool -> 14x14x6 -> conv2 -> 10x10x16 -> pool -> 5x5x16 -> 400 -> 120 -> 84 -> 10
"""),
    code("""
class LeNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))   # (B, 6, 14, 14)
        x = self.pool(F.relu(self.conv2(x)))   # (B, 16, 5, 5)
        x = x.view(-1, 16 * 5 * 5)             # (B, 400): the size written in by hand
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


net = LeNet()
print(net)
out = net(torch.randn(2, 3, 32, 32))
n_params = sum(p.numel() for p in net.parameters())
print("output", tuple(out.shape), "| parameters", f"{n_params:,}")
assert out.shape == (2, 10)
assert n_params == 62_006
"""),
    md("""
**torchsmith**: the same model, its table and its one-line shape flow, with the classic
HxWxC notation. The flow is read off the run, so it is right even when the code is
not what you think it is. `.diagram()` draws it: modules as boxes, the functional ops of
`forward` (`F.relu`, the `view`) as circles, each edge labelled with the tensor's shape.
"""),
    code("""
s = ts.summary(net, (3, 32, 32))
display(s)
print(s.flow())
assert s.total_params == 62_006
assert s.flow() == ("32x32x3 -> conv1 -> 28x28x6 -> pool -> 14x14x6 -> conv2 -> 10x10x16 -> pool -> 5x5x16"
                    " -> flatten 400 -> 120 -> 84 -> 10")
assert [r.params for r in s.rows if r.depth == 1] == [456, 0, 2416, 0, 48120, 10164, 850]
"""),
    code("""
lenet_diagram = s.diagram()
assert {"6x28x28", "6x14x14", "16x10x10", "16x5x5", "400", "120", "84", "10"} <= {e.label for e in lenet_diagram.edges}
assert lenet_diagram.node("flatten").kind == "op"               # x.view(-1, 16*5*5) is in the picture too
lenet_diagram
"""),
    md("""
And the arithmetic of every layer, with the receptive field (how many input pixels one
output position sees) along the way. Note the `view(-1, 400)`: torchsmith points out that
a hard-coded 400 fits this input size only; section 6 comes back to it.
"""),
    code("""
explanation = s.explain()
assert not explanation.mismatches                               # every formula agrees with the run
assert explanation.layer("conv2").computed_params == 6 * 16 * 5 * 5 + 16 == 2416
assert explanation.layer("fc1").computed_params == 400 * 120 + 120 == 48120
assert explanation.receptive_fields[-1].receptive_field.size == (16, 16)   # after the second pool
explanation
"""),
    # ------------------------------------------------------------------ 3. init
    md("""
## 3. Initialisation: what the starting weights do to the signal

Each layer multiplies its input by a weight matrix. If the weights are too small the
signal shrinks layer after layer and vanishes; too large and it explodes (or, through
`tanh`/`sigmoid`, saturates, where gradients are zero). The remedy is to choose the
weights' variance from the layer's fan-in and fan-out:

* **Xavier/Glorot** (2010): `Var(W) = 2 / (fan_in + fan_out)`, for `tanh`/`sigmoid`
  (`nn.init.xavier_uniform_`, `xavier_normal_`, with the activation's gain).
* **Kaiming/He** (2015): `Var(W) = 2 / fan_in`, for ReLU, which zeroes half its input
  (`nn.init.kaiming_normal_(w, nonlinearity="relu")`).
* plain **uniform** / **normal** with a fixed range ignore the layer's size:
  `normal(0, 0.01)` makes a 256-wide layer scale the signal by 0.01 * sqrt(256) = 0.16.

Below: 30 layers of 256 units; the standard deviation of the activations after each.
"""),
    code("""
INITS = {
    "normal(0, 0.01)": lambda w: nn.init.normal_(w, 0.0, 0.01),
    "uniform(-1, 1)": lambda w: nn.init.uniform_(w, -1.0, 1.0),
    "xavier_normal": lambda w: nn.init.xavier_normal_(w),
    "kaiming_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
}


def activation_stds(init, act, depth=30, width=256):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(512, width, generator=g)
    stds = []
    with torch.no_grad():
        for _ in range(depth):
            layer = nn.Linear(width, width, bias=False)
            init(layer.weight)
            h = act(layer(h))
            stds.append(h.std().item())
    return stds, h


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
final = {}
for ax, (act_name, act) in zip(axes, [("tanh", torch.tanh), ("ReLU", F.relu)]):
    for name, init in INITS.items():
        stds, h = activation_stds(init, act)
        final[act_name, name] = (stds[-1], h)
        ax.semilogy(range(1, len(stds) + 1), [max(v, 1e-30) for v in stds], marker=".", label=name)
    ax.set(title=f"{act_name}: activation std by layer", xlabel="layer", ylabel="std (log)")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

for (act_name, name), (std, h) in final.items():
    print(f"{act_name:5s} {name:16s} std after 30 layers: {std:.3g}")

assert final["tanh", "normal(0, 0.01)"][0] < 1e-10        # vanished
assert final["ReLU", "normal(0, 0.01)"][0] < 1e-10
assert final["ReLU", "uniform(-1, 1)"][0] > 1e10          # exploded
tanh_uniform = final["tanh", "uniform(-1, 1)"][1]
assert (tanh_uniform.abs() > 0.99).float().mean() > 0.5   # saturated: most units stuck at +-1
assert final["tanh", "xavier_normal"][0] > 0.05           # Xavier keeps tanh alive
assert 0.1 < final["ReLU", "kaiming_normal"][0] < 10      # Kaiming keeps ReLU steady...
assert final["ReLU", "xavier_normal"][0] < 1e-3           # ...where Xavier halves the variance per layer
"""),
    md("""
**torchsmith**: an initialisation *policy* is plain data (a preset, rules by layer type,
rules by parameter name), `ts.init_weights` applies it with a seeded generator and returns
an `InitReport` saying which rule set each tensor. The doctor's `signal` check measures the
same activation and gradient scales on your model, at initialisation.
"""),
    code("""
report = ts.init_weights(net, {
    "preset": "kaiming",                                                  # Kaiming for convs (ReLU follows)
    "types": {"Linear": {"scheme": "xavier_uniform", "gain": "relu"}},
    "names": {"fc3.weight": {"scheme": "normal", "std": 0.01}},           # a small output layer
}, generator=torch.Generator().manual_seed(0))
assert report.uncovered == []
assert abs(net.fc3.weight.std().item() - 0.01) < 0.002
assert net.fc1.bias.abs().sum().item() == 0                               # biases zeroed by the type rule
report
"""),
    code("""
deep = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(256, 256), nn.Tanh())])
for m in deep:
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.01)
        nn.init.zeros_(m.bias)
signal = ts.check(deep, (256,), checks="signal")
display(signal)
assert {f.id for f in signal.findings} >= {"vanishing-activations", "vanishing-gradients"}

ts.init_weights(deep, {"preset": "xavier", "types": {"Linear": {"scheme": "xavier_normal", "gain": "tanh"}}},
                generator=torch.Generator().manual_seed(0))
assert not ts.check(deep, (256,), checks="signal").findings      # fixed by a matched initialisation
"""),
    # ------------------------------------------------------------------ 4. nn.Module
    md("""
## 4. `nn.Module`: `__init__`, `forward` and its four views

A model is a class derived from `nn.Module`:

* `__init__` creates the layers and assigns them as attributes. Assignment *registers*
  them: `nn.Module.__setattr__` records every `nn.Module`, `nn.Parameter` and buffer,
  which is how `parameters()`, `state_dict()`, `.to(device)` and `.train()/.eval()` find them.
* `forward(x)` says how data flows. Call the model (`net(x)`), not `net.forward(x)`:
  `__call__` runs the registered hooks around `forward`.

Four views of what a module holds: **parameters** (learned tensors), **modules** (the
tree of submodules), **buffers** (tensors saved with the model but not learned, such as
BatchNorm's running mean) and **hooks** (functions called around forward/backward,
used to look inside the model).
"""),
    code("""
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


cnn = SmallCNN()
for name, p in cnn.named_parameters():
    print(f"parameter {name:20s} {tuple(p.shape)}")
for name, m in cnn.named_modules():
    print(f"module    {name or '(root)':20s} {type(m).__name__}")
for name, b in cnn.named_buffers():
    print(f"buffer    {name:28s} {tuple(b.shape)}")

shapes = {}
handle = cnn.features[0].register_forward_hook(lambda mod, inp, out: shapes.update(conv=tuple(out.shape)))
cnn(torch.randn(2, 3, 16, 16))
print("the hook saw", shapes)
handle.remove()                                    # always remove a hook when done with it
assert shapes == {"conv": (2, 8, 16, 16)}
assert len(cnn.features[0]._forward_hooks) == 0
assert [n for n, _ in cnn.named_buffers()] == ["features.1.running_mean", "features.1.running_var",
                                               "features.1.num_batches_tracked"]
"""),
    md("""
**torchsmith**: the four views as tables (`ts.param_view`, `ts.module_tree`, `ts.buffer_view`,
`ts.hook_view`), and `ts.capture`, a context manager that hooks the modules you name and
always removes its hooks, even when the forward fails.
"""),
    code("""
display(ts.param_view(cnn), ts.module_tree(cnn), ts.buffer_view(cnn))

handle = cnn.head.register_forward_hook(lambda mod, inp, out: None)
hooks = ts.hook_view(cnn)
display(hooks)
handle.remove()
display(ts.hook_view(cnn))
assert len(hooks.records) == 1 and hooks.records[0].module == "head"
assert ts.hook_view(cnn).empty
assert ts.count_parameters(cnn) == sum(p.numel() for p in cnn.parameters()) == 330

with ts.capture(cnn, "features.*") as feats:
    cnn(torch.randn(2, 3, 16, 16))
print({name: tuple(t.shape) for name, t in feats.items()})
assert feats["features.0"].shape == (2, 8, 16, 16) and feats["features.3"].shape == (2, 8, 1, 1)
assert ts.hook_view(cnn).empty                     # capture left no hook behind
"""),
    # ------------------------------------------------------------------ 5. ResNet
    md("""
## 5. A residual block and a small ResNet

Deep plain stacks are hard to train; He et al. (2016) add each block's input back to its
output, `out = F(x) + x`, so a block only has to learn a correction and gradients have a
direct path back. The addition needs both paths to have the same shape: when a block
changes the number of channels or downsamples (`stride=2`), the shortcut becomes a
**1x1 convolution** (with the same stride) that projects `x` to the new shape.
"""),
    code("""
class ResidualBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()                      # identity
        if stride != 1 or in_channels != out_channels:       # shapes differ: project x with a 1x1 conv
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class SmallResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = nn.Sequential(ResidualBlock(16, 16), ResidualBlock(16, 16))       # (B, 16, 32, 32)
        self.layer2 = nn.Sequential(ResidualBlock(16, 32, 2), ResidualBlock(32, 32))    # (B, 32, 16, 16)
        self.layer3 = nn.Sequential(ResidualBlock(32, 64, 2), ResidualBlock(64, 64))    # (B, 64, 8, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


resnet = SmallResNet()
print("block with projection:", resnet.layer2[0].shortcut)
out = resnet(torch.randn(2, 3, 32, 32))
n_params = sum(p.numel() for p in resnet.parameters())
print("output", tuple(out.shape), "| parameters", f"{n_params:,}")
assert out.shape == (2, 10) and n_params == 175_258
assert len(resnet.layer1[0].shortcut) == 0 and len(resnet.layer2[0].shortcut) == 2
"""),
    md("""
**torchsmith**: the summary to depth 2 collapses the two identical blocks of `layer1`
into one row (`x2`); the doctor runs its checks on a copy and finds nothing wrong. The
diagram at depth 3 opens the blocks: each `add` joins the two paths, and where the shape
changes (`layer2.0`, `layer3.0`) the shortcut is the 1x1 projection.
"""),
    code("""
s = ts.summary(resnet, (3, 32, 32), depth=2)
display(s)
print(s.flow(depth=2))
assert s.total_params == 175_258
assert s.output_shapes == (1, 10)
resnet_report = ts.check(resnet, (3, 32, 32))
display(resnet_report)
assert resnet_report.ok and not resnet_report.findings
"""),
    code("""
resnet_diagram = ts.summary(resnet, (3, 32, 32)).diagram(depth=3)
adds = [n for n in resnet_diagram.nodes if n.kind == "op" and n.name == "add"]
by_id = {n.id: n for n in resnet_diagram.nodes}
joined = {by_id[e.src].name for a in adds for e in resnet_diagram.inputs_of(a.id)}
assert adds and all(len(resnet_diagram.inputs_of(a.id)) == 2 for a in adds)   # every add joins two paths
assert {"layer2.0.shortcut", "layer3.0.shortcut"} <= joined                  # the projections feed an add
resnet_diagram
"""),
    md("""
`.explain()` says, for each residual add, what each path does to the shape and why the
shortcut is an identity or a projection:
"""),
    code("""
resnet_explained = ts.summary(resnet, (3, 32, 32)).explain()
joins = {e.name: e for e in resnet_explained.layers if e.kind == "join"}
for name in ("layer1.0: in-place add", "layer2.0: in-place add"):
    print(name, *joins[name].shape_formulas, *joins[name].notes, sep="\\n    ")
assert len(joins) == 6 and not resnet_explained.mismatches
assert "identity" in joins["layer1.0: in-place add"].notes[0]
assert "1x1" in joins["layer2.0: in-place add"].notes[0] and "(576 params)" in joins["layer2.0: in-place add"].notes[0]
"""),
    # ------------------------------------------------------------------ 6. dynamic shapes
    md("""
## 6. Dynamic shapes: the hand-written `16*5*5`

`x.view(-1, 16 * 5 * 5)` is right only for 32x32 input. At other sizes it fails, or,
worse, *succeeds* by folding samples into the batch: at 52x52 each image leaves
16x10x10 = 1,600 features, four rows of 400, so a batch of 2 gives 8 outputs.
"""),
    code("""
net = LeNet()
print("32x32 batch of 2 ->", tuple(net(torch.randn(2, 3, 32, 32)).shape))
print("52x52 batch of 2 ->", tuple(net(torch.randn(2, 3, 52, 52)).shape), " <- 8 outputs for 2 images")
try:
    net(torch.randn(2, 3, 64, 64))
except RuntimeError as e:
    print("64x64 batch of 2 ->", e)
assert net(torch.randn(2, 3, 52, 52)).shape == (8, 10)
"""),
    md("""
**torchsmith**: the doctor runs the model at other batch and spatial sizes and reports the
hard-coded size as an error (`hard-coded-size`), with the fix. The first half of the fix:
take the batch from the tensor, `torch.flatten(x, 1)` (or `nn.Flatten()`), so that samples
can never fold into the batch; a wrong size then fails loudly at `fc1`.
"""),
    code("""
report = ts.check(net, (3, 32, 32))
display(report)
assert not report.ok
assert [f.id for f in report.errors] == ["hard-coded-size"]


class FlatLeNet(LeNet):
    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)                    # (B, 16*h*w): the batch stays the batch
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


try:
    FlatLeNet()(torch.randn(2, 3, 52, 52))
    raise AssertionError("52x52 should not fit fc1")
except RuntimeError as e:
    print("52x52 now fails loudly:", e)
"""),
    md("""
The second half: decide which sizes the model takes.

* **Any size**: make the classifier's input independent of the image, here with
  `nn.AdaptiveAvgPool2d((5, 5))` before the flatten, as torchvision's AlexNet and VGG do
  (at 32x32 it changes nothing; the weights and the 62,006 parameters are the same). The
  doctor passes.
* **One size**: say so. Declare `default_input_size` and raise an error that names the
  size; the doctor then reports a note, `fixed-input-size`, not an error.

(Computing `16*5*5` from a dummy forward in `__init__`, or `nn.LazyLinear`, which infers
`in_features` at the first call, saves the arithmetic but still fixes the size.)
"""),
    code("""
class FixedLeNet(LeNet):
    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.adapt = nn.AdaptiveAvgPool2d((5, 5))  # any image size -> 5x5 (at 32x32 it changes nothing)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(self.adapt(x), 1)        # (B, 400), the batch taken from x
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


fixed = FixedLeNet()
for size in (32, 52, 64):
    assert fixed(torch.randn(2, 3, size, size)).shape == (2, 10)
fixed_report = ts.check(fixed, (3, 32, 32))
display(fixed_report)
assert fixed_report.ok and not fixed_report.by_id("hard-coded-size")
assert ts.count_parameters(fixed) == 62_006


class OneSizeLeNet(FlatLeNet):
    default_input_size = (3, 32, 32)

    def forward(self, x):
        if tuple(x.shape[1:]) != self.default_input_size:
            raise ts.ShapeError(f"OneSizeLeNet takes 3x32x32 images, not {'x'.join(map(str, x.shape[1:]))}; "
                                "resize them to 32x32 first")
        return super().forward(x)


one_size_report = ts.check(OneSizeLeNet())                # the input size now comes from the model
display(one_size_report)
assert one_size_report.ok and [f.id for f in one_size_report.findings] == ["fixed-input-size"]
"""),
    # ------------------------------------------------------------------ 7. functional
    md("""
## 7. Modules or `torch.nn.functional`?

`F.relu(x)`, `F.max_pool2d(x, 2)` and `torch.flatten(x, 1)` are plain functions: no state,
so calling them in `forward` is fine (LeNet above does). Anything with **parameters or
buffers** (`Conv2d`, `Linear`, `BatchNorm2d`) must be a registered module, created in
`__init__` and assigned to `self` (or held in `nn.ModuleList`/`nn.ModuleDict`/`nn.Sequential`).
A layer kept in a plain Python list, or created inside `forward`, is invisible: it is not in
`parameters()` (the optimiser never trains it), not in `state_dict()` (never saved), not
moved by `.to(device)`, and a layer built in `forward` gets fresh random weights every call.
One more trap: `F.dropout(x, 0.5)` is *always* on; the module `nn.Dropout` follows
`.train()`/`.eval()` (with F, pass `training=self.training`).
"""),
    code("""
class HiddenLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = [nn.Linear(16, 32), nn.Linear(32, 4)]          # a plain list: not registered

    def forward(self, x):
        return self.layers[1](F.relu(self.layers[0](x)))


class Registered(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(16, 32), nn.Linear(32, 4)])

    def forward(self, x):
        return self.layers[1](F.relu(self.layers[0](x)))


hidden, registered = HiddenLayers(), Registered()
print("plain list : parameters", sum(p.numel() for p in hidden.parameters()), "| state_dict", list(hidden.state_dict()))
print("ModuleList : parameters", sum(p.numel() for p in registered.parameters()),
      "| state_dict", list(registered.state_dict()))
assert list(hidden.parameters()) == [] and len(registered.state_dict()) == 4

hidden.to(torch.float64)                                             # .to() does not reach the list
print("after .to(float64):", hidden.layers[0].weight.dtype)
assert hidden.layers[0].weight.dtype == torch.float32

drop = nn.Dropout(0.5).eval()
x = torch.ones(1000)
assert torch.equal(drop(x), x)                                       # the module is off in eval mode
assert (F.dropout(x, 0.5) == 0).any()                                # the function is not
"""),
    md("""
**torchsmith**: the doctor finds the unregistered layers (and the broken `state_dict`
round trip that follows from them); with `nn.ModuleList` it passes.
"""),
    code("""
hidden = HiddenLayers()
report = ts.check(hidden, (16,))
display(report)
assert {"unregistered-submodule", "state-dict-roundtrip"} <= {f.id for f in report.errors}
assert ts.check(Registered(), (16,)).ok
"""),
    # ------------------------------------------------------------------ 8. the doctor's rules
    md("""
## 8. The rules the doctor checks

Each check runs the model (a deep copy of it; yours is left as it was) and reports
findings with a stable id, a severity, the module concerned, what was observed and the
fix. `ts.check(model, input_size, checks=...)` picks checks by name or finding id; the
default runs all but the opt-in ones (below: the slow `graph-breaks`, and `scriptable`, as
TorchScript is deprecated); `checks="all"` runs every one. One more classic mistake, an
in-place operation on the input:
"""),
    code("""
from IPython.display import Markdown

checks = ts.list_checks()            # every check, in the order they run
findings = ts.list_findings()        # every finding id, with its severity and check
by_check = {}
for f in findings:
    by_check.setdefault(f.check or "(any run)", []).append(f"`{f.id}` ({f.severity})")
rows = ["| (any run) | the forward itself | " + ", ".join(by_check["(any run)"]) + " |"]
rows += [f"| `{c.name}` | {c.description} | {', '.join(by_check[c.name])} |" for c in checks]
display(Markdown("| check | what it verifies | finding ids |\\n|---|---|---|\\n" + "\\n".join(rows)))

print("opt-in:", [c.name for c in checks if not c.default])
names = {c.name for c in checks}
assert "graph-breaks" in names and not next(c for c in checks if c.name == "graph-breaks").default
assert {"hard-coded-size", "unregistered-submodule", "input-mutated", "vanishing-activations"} <= {
    f.id for f in findings}
assert all(f.check in names or f.check == "" for f in findings)


class Normalise(nn.Module):
    def forward(self, x):
        x -= x.mean()                      # in place: the caller's tensor changes
        return x


x = torch.randn(2, 8)
before = x.clone()
Normalise()(x)
assert not torch.equal(x, before)
report = ts.check(Normalise(), (8,), checks="input-mutated")
assert [f.id for f in report.findings] == ["input-mutated"]
report
"""),
    # ------------------------------------------------------------------ 9. training
    md("""
## 9. Training on the digits

The `digits` images are 1x8x8; LeNet takes 3x32x32. `ts.load_dataset("digits",
input_size=(3, 32, 32))` fits the data to the model (resize, grey to RGB) and keeps it as
one uint8 tensor. First the loop every course writes, then `ts.fit`, which fits the data to
`input_size` itself and adds the schedule, augmentation, evaluation, checkpoints, metrics
files and curves; `make_reporter()` draws a live progress bar in the cell.
"""),
    code("""
splits = ts.load_dataset("digits", input_size=(3, 32, 32))
print(splits.notes, "| train", tuple(splits.train.images.shape), "| test", tuple(splits.test.images.shape))
mean = torch.tensor(splits.mean).view(1, 3, 1, 1)
std = torch.tensor(splits.std).view(1, 3, 1, 1)


def prepare(images):
    return (images.float() / 255 - mean) / std


torch.manual_seed(0)
model = FixedLeNet()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
train_x, train_y = prepare(splits.train.images), splits.train.labels
for epoch in range(3):
    model.train()
    order = torch.randperm(len(train_y))
    for i in range(0, len(order), 64):
        batch = order[i:i + 64]
        loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(prepare(splits.test.images)).argmax(1) == splits.test.labels).float().mean().item()
    print(f"epoch {epoch + 1}: last batch loss {loss.item():.3f}, test accuracy {accuracy:.1%}")
assert accuracy > 0.85
"""),
    code("""
from torchsmith.train import make_reporter

model = FixedLeNet()
config = ts.TrainConfig(input_size=(3, 32, 32), epochs=4, batch_size=64, lr=3e-3, seed=0, device="cpu",
                        out_dir=OUT / "runs" / "lenet-digits")
result = ts.fit(model, "digits", config, reporter=make_reporter())
assert result.history[-1]["test_acc"] > 0.9
assert result.best_checkpoint is not None and result.best_checkpoint.exists()
result
"""),
    # ------------------------------------------------------------------ 10. state_dict
    md("""
## 10. Saving and loading: `state_dict`

A model's `state_dict()` maps each parameter and buffer name to its tensor. Save *that*,
not the model object (pickling a whole model ties the file to your code's exact classes
and lets loading run arbitrary code); to load, build the same architecture and
`load_state_dict`. Load with `torch.load(..., weights_only=True)`.
"""),
    code("""
torch.save(model.state_dict(), OUT / "lenet.pt")
fresh = FixedLeNet()
missing_unexpected = fresh.load_state_dict(torch.load(OUT / "lenet.pt", weights_only=True))
print(missing_unexpected)
model.eval()
fresh.eval()
probe = prepare(splits.test.images[:16])
assert torch.equal(fresh(probe), model(probe))
"""),
    md("""
**torchsmith**: `ts.save` writes safetensors (no pickle) atomically, with sha256 hashes;
`ts.load_into` loads a checkpoint into a model you built and returns a `LoadReport`
(matched, missing, unexpected and shape-mismatched keys). Loading the digits weights into a
LeNet with a 5-class head: the mismatched head is named, and `on_mismatch="reinit"`
re-initialises it while every other tensor loads.
"""),
    code("""
path = ts.save(model, OUT / "lenet.safetensors")
fresh = FixedLeNet()
load_report = ts.load_into(fresh, path)
display(load_report)
fresh.eval()
assert torch.equal(fresh(probe), model(probe))

five = FixedLeNet(num_classes=5)
head_report = ts.load_into(five, path, on_mismatch="reinit")
display(head_report)
assert torch.equal(five.conv1.weight, model.conv1.weight)
assert five.fc3.weight.shape == (5, 84)
"""),
    md("""
## A report to share

Everything above about one model, in one self-contained HTML file (inline pictures, no
script, nothing fetched when it is opened): the summary, the diagram, the arithmetic, the
doctor's findings. The same from the command line: `torchsmith report net.py:LeNet --input
3x32x32 -o lenet.html`, and `torchsmith report runs/lenet-digits -o run.html` for a run.
"""),
    code("""
from pathlib import Path

from torchsmith.report import model_report, run_report, write_report

page = write_report(model_report(FixedLeNet(), (3, 32, 32)), OUT / "lenet-report.html")
run_page = write_report(run_report(OUT / "runs" / "lenet-digits", evaluate=False), OUT / "run-report.html")
for p in (page, run_page):
    html = Path(p).read_text()
    print(f"{p}: {len(html) / 1024:.0f} KiB")
    assert html.lstrip().lower().startswith("<!doctype html") and 'src="http' not in html
assert "<svg" in Path(page).read_text()                          # the diagram is inline
"""),
    md("""
## Where next

* the same steps from the command line, on your own file: `torchsmith show net.py:LeNet --input
  3x32x32 --flow` (or `--explain`, `--diagram net.svg`), `torchsmith check net.py:LeNet --input 3x32x32`,
  `torchsmith train net.py:LeNet --input 3x32x32 --data digits --out runs/mine`, `torchsmith eval runs/mine`;
* models as data (`examples/lenet.yaml`, `examples/resnet20.yaml`), where no size is written by hand;
* `ts.export` to torch.export, ONNX or TorchScript, verified against the eager model.
"""),
]


def build() -> nbformat.NotebookNode:
    """The notebook, unexecuted."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    }
    for kind, source in CELLS:
        nb.cells.append(nbformat.v4.new_markdown_cell(source) if kind == "markdown"
                        else nbformat.v4.new_code_cell(source))
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: a rebuild does not churn every cell
    return nb


def kernelspec_dir(root: Path) -> Path:
    """A JUPYTER_PATH entry holding a kernel that runs this interpreter (nothing registered globally)."""
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "torchsmith lesson", "language": "python",
    }))
    return root


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 120) -> nbformat.NotebookNode:
    """Run every cell on a fresh kernel of this interpreter, in ``cwd``; raise on the first cell error."""
    from nbclient import NotebookClient

    env_keys = ("JUPYTER_PATH", "OMP_NUM_THREADS", "MPLBACKEND")
    saved = {k: os.environ.get(k) for k in env_keys}
    with tempfile.TemporaryDirectory(prefix="ts-kernel-") as tmp:
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(kernelspec_dir(Path(tmp))),
                                                                    saved["JUPYTER_PATH"]]))
        os.environ["OMP_NUM_THREADS"] = "1"   # small models: one thread is fastest on a shared CPU
        os.environ.pop("MPLBACKEND", None)    # the inline backend, so figures become outputs
        try:
            client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME, allow_errors=False,
                                    resources={"metadata": {"path": str(cwd)}})
            client.execute()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return nb


def strip_volatile(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes on every run without saying anything: timings and the interpreter's details."""
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    }
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            output.get("metadata", {}).pop("execution", None)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    parser.add_argument("--out", type=Path, default=NOTEBOOK, help=f"where to write (default {NOTEBOOK})")
    args = parser.parse_args(argv)
    nb = build()
    if not args.no_execute:
        with tempfile.TemporaryDirectory(prefix="ts-lesson-") as cwd:
            execute(nb, Path(cwd))
    nbformat.validate(nb)
    args.out.write_text(nbformat.writes(strip_volatile(nb)) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
