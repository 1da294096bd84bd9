"""torchsmith.capture and `torchsmith features`: real forwards, real hooks, real files."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import torchsmith as ts
from conftest import hook_count
from torchsmith import capture, create_model
from torchsmith._capture import feature_stats, match_layers, plot_features
from torchsmith.cli import main
from torchsmith.errors import ConfigError, ShapeError, UnknownNameError


@pytest.fixture
def lenet():
    torch.manual_seed(0)
    return create_model("lenet").eval()


def test_outputs_equal_eager_and_are_detached_copies(lenet):
    x = torch.randn(2, 3, 32, 32)
    with capture(lenet, ["conv1", "fc*"]) as feats:
        y = lenet(x)
    assert list(feats) == ["conv1", "fc1", "fc2", "fc3"]
    assert torch.equal(feats["conv1"], lenet.conv1(x)) and torch.equal(feats["fc3"], y)
    assert not feats["conv1"].requires_grad
    assert hook_count(lenet) == 0


def test_copies_survive_inplace_ops():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    x = torch.randn(8, 4)
    with capture(net, "0") as feats:
        net(x)
    assert (feats["0"] < 0).any()  # the in-place ReLU after it did not change the captured copy


def test_inputs_and_grads(lenet):
    x = torch.randn(2, 3, 32, 32)
    with capture(lenet, "fc1", what="input") as inputs:
        lenet(x)
    assert inputs["fc1"].shape == (2, 400)
    with capture(lenet, "fc2", what="grad") as grads:
        out = lenet(x)
        out.sum().backward()
    # d(sum(fc3(relu(h))))/dh for h = fc2's output, by hand.
    h = lenet.fc2(F.relu(lenet.fc1(torch.flatten(F.max_pool2d(F.relu(lenet.conv2(
        F.max_pool2d(F.relu(lenet.conv1(x)), 2))), 2), 1))))
    expected = (h > 0).float() * lenet.fc3.weight.sum(0)
    assert torch.allclose(grads["fc2"], expected, atol=1e-6)
    assert hook_count(lenet) == 0
    # The gradient hook sits on fc2's output tensor, not on a module: a backward after the block must not
    # reach it (it was removed with the module hooks), so nothing is recorded.
    with capture(lenet, "fc2", what="grad") as late:
        out = lenet(x)
    out.sum().backward()
    assert "fc2" not in late and dict(late) == {}


def test_reused_module_captured_per_call():
    lin = nn.Linear(3, 3)
    net = nn.Sequential(lin, nn.Tanh(), lin)
    x = torch.randn(1, 3)
    with capture(net, "0") as feats:
        net(x)
    calls = feats.calls("0")
    assert len(calls) == 2 and torch.equal(feats["0"], calls[1])  # two calls; [] gives the last


def test_hooks_removed_when_forward_raises(lenet):
    with pytest.raises(ShapeError, match="fc1 expects 400"):
        with capture(lenet, "**") as feats:
            lenet(torch.randn(1, 3, 64, 64)[:, :, :, :30])
    assert hook_count(lenet) == 0
    assert "conv1" in feats  # what ran before the failure is kept


def test_globs():
    m = create_model("resnet20")
    assert match_layers(m, "layer*") == ["layer1", "layer2", "layer3", "layer4"]
    assert match_layers(m, "layer1.**")[:2] == ["layer1.0", "layer1.0.conv1"]
    assert match_layers(m, "layer?.0.conv1") == ["layer1.0.conv1", "layer2.0.conv1", "layer3.0.conv1"]
    assert match_layers(m, "") == [""]
    with pytest.raises(UnknownNameError, match="did you mean 'layer1'"):
        match_layers(m, "layr1")
    with pytest.raises(UnknownNameError, match="capture target"):
        with capture(m, "fc", what="outputs"):
            pass


def test_stats_and_plot(lenet, tmp_path):
    with capture(lenet, ["conv1", "fc1"]) as feats:
        lenet(torch.randn(1, 3, 32, 32))
    stats = {s.layer: s for s in feature_stats(feats)}
    t = feats["conv1"].double()
    assert stats["conv1"].shape == (1, 6, 28, 28) and abs(stats["conv1"].mean - float(t.mean())) < 1e-12
    assert stats["conv1"].min == float(t.min())
    path = plot_features(feats, tmp_path / "maps.png", image=torch.rand(3, 32, 32), max_maps=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="ending in .png"):
        plot_features(feats, tmp_path / "maps.txt")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_features_stats_and_plot(tmp_path):
    result = invoke("features", "resnet20", "--layers", "layer*", "--plot", str(tmp_path / "f.png"))
    assert result.exit_code == 0
    assert "layer1" in result.stdout and "[1, 16, 32, 32]" in result.stdout and "zeros" in result.stdout
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_cli_features_from_image_and_dataset(tmp_path):
    import matplotlib.image

    img = torch.rand(20, 24, 3).numpy()
    matplotlib.image.imsave(tmp_path / "in.png", img)
    result = invoke("features", "lenet", "--layers", "conv1", "--image", str(tmp_path / "in.png"))
    assert result.exit_code == 0 and "[1, 6, 28, 28]" in result.stdout
    result = invoke("features", "lenet", "--opt", "in_channels=1", "--opt", "input_size=16",
                    "--layers", "conv*", "--dataset", "digits", "--format", "csv")
    assert result.exit_code == 0 and result.stdout.splitlines()[0].startswith("layer,call,shape")


@pytest.mark.parametrize("args,match", [
    (("features", "lenet", "--layers", "cnv1"), "did you mean 'conv1'"),
    (("features", "lenet", "--layers", "conv1", "--input", "3x8x8"), "LeNet cannot take input"),
    (("features", "lenet", "--layers", "conv1", "--plot", "out.txt"), "should end in .png"),
    (("features", "lenet", "--layers", "conv1", "--image", "nope.png"), "does not exist"),
    (("features", "lenet", "--layers", "conv1", "--plot", "adir.png"), "is a folder"),
    (("features", "lenet", "--layers", "conv1", "--plot", "afile/maps.png"), "for the plot does not exist"),
    (("features", "two.py:Two", "--layers", "fc"), "Two.forward requires 2 inputs (x, y)"),
    (("features", "two.py:Two", "--layers", "fc", "--input", "4", "--input", "3"), "Two cannot take input x: 4"),
    (("features", "two.py:Two", "--layers", "fc", "--input", "4", "--input", "2", "--image", "in.png"),
     "--image and --dataset need one image input"),
    (("features", "two.py:Bad", "--layers", "fc"), "Bad.default_input_size is 4; it should be a non-empty tuple"),
])
def test_cli_features_errors(args, match, tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir.png").mkdir()
    (tmp_path / "two.py").write_text(
        "import torch.nn as nn\n"
        "class Two(nn.Module):\n"
        "    default_input_size = (4,)\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, 2)\n"
        "    def forward(self, x, y):\n"
        "        return self.fc(x) + y\n"
        "class Bad(Two):\n"
        "    default_input_size = 4\n")
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_cli_feature_gradients_of_a_model_without_parameters(tmp_path):
    (tmp_path / "free.py").write_text(
        "import torch.nn as nn\n"
        "class Free(nn.Sequential):\n"
        "    default_input_size = (4,)\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Tanh(), nn.ReLU())\n")
    result = invoke("features", "free.py:Free", "--layers", "0", "--what", "grad", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].startswith('0,1,"[1, 4]",float32,')


def test_bad_layers_argument_and_unwritable_plot(lenet, tmp_path):
    for bad in (None, 0, ["conv1", 2]):
        with pytest.raises(ConfigError, match="layers must be a name or glob"):
            with capture(lenet, bad):  # type: ignore[arg-type]
                pass
    with capture(lenet, "conv1") as feats:
        lenet(torch.randn(1, 3, 32, 32))
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="for the plot does not exist"):
        plot_features(feats, tmp_path / "afile" / "maps.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        plot_features(feats, tmp_path / "dir.png")


def test_cli_feature_gradients_of_a_dict_output(tmp_path):
    (tmp_path / "dictout.py").write_text(
        "import torch.nn as nn\n"
        "class D(nn.Module):\n"
        "    default_input_size = (4,)\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, 2)\n"
        "    def forward(self, x):\n"
        "        return {'logits': self.fc(x), 'n': 3}\n")
    result = invoke("features", "dictout.py:D", "--layers", "fc", "--what", "grad", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == 'fc,1,"[1, 2]",float32,1.0,0.0,1.0,1.0,0.0'  # d sum(logits) / d logits


class KeywordBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"h": self.fc(hidden) * (1 if mask is None else mask)}


class KeywordCaller(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = KeywordBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(hidden=x, mask=torch.ones(4))["h"]


def test_keyword_inputs_and_dict_output_gradients_are_captured():
    net, x = KeywordCaller(), torch.randn(2, 4)
    with capture(net, "block", what="input") as feats:
        net(x)
    assert set(feats["block"]) == {"hidden", "mask"} and torch.equal(feats["block"]["hidden"], x)
    assert feature_stats(feats)[0].shape == (2, 4)
    with capture(net, "block", what="grad") as grads:
        net(x).sum().backward()
    assert torch.equal(grads["block"], torch.ones(2, 4))  # d sum(h) / d h



def test_plots_leave_the_matplotlib_backend_and_pyplot_alone(tmp_path, lenet):
    """A notebook's inline backend (here: svg, standing in for it) survives every plot torchsmith draws."""
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from torchsmith import check
    from torchsmith._check.plot import plot_layer_stats
    from torchsmith.train.metrics import plot_metrics

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        figures = plt.get_fignums()
        with capture(lenet, "conv1") as feats:
            lenet(torch.randn(1, 3, 32, 32))
        row = {"epoch": 1, "train_loss": 1.0, "test_loss": 1.1, "train_acc": 0.5, "test_acc": 0.4}
        pngs = [plot_features(feats, tmp_path / "maps.png"), plot_metrics(tmp_path, [row]),
                plot_layer_stats(check(create_model("lenet"), checks="signal"), tmp_path / "signal.png")]
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == figures
        assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "maps.png", "signal.png"]
    finally:
        matplotlib.use(before)


def test_features_of_a_model_with_several_inputs(tmp_path):
    """Two positional inputs, or keyword inputs with their own dtype: the one input contract of every command."""
    (tmp_path / "two.py").write_text(
        "import torch, torch.nn as nn\n"
        "class Siamese(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten())\n"
        "    def forward(self, a, b):\n"
        "        return (self.encoder(a) - self.encoder(b)).norm(dim=1)\n"
        "class Tagged(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.emb = nn.Embedding(10, 3)\n"
        "        self.fc = nn.Linear(8 + 3, 2)\n"
        "    def forward(self, x, tag):\n"
        "        return self.fc(torch.cat([x, self.emb(tag)], dim=1))\n")
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        from two import Siamese, Tagged
    finally:
        sys.path.remove(str(tmp_path))
    model = Siamese().train()
    run = ts.features(model, "encoder.0", [(1, 8, 8), (1, 8, 8)])
    assert [list(t.shape) for t in run.captured.calls("encoder.0")] == [[1, 4, 6, 6], [1, 4, 6, 6]]
    assert run.describe_input() == "a: [1, 1, 8, 8], b: [1, 1, 8, 8]"
    grads = ts.features(model, "encoder.0", [(1, 8, 8), (1, 8, 8)], what="grad")
    assert grads.captured["encoder.0"].shape == (1, 4, 6, 6)
    run = ts.features(Tagged(), ["emb", "fc"], {"x": (8,), "tag": ()}, input_dtype={"tag": torch.long})
    assert run.captured["emb"].shape == (1, 3) and run.captured["fc"].shape == (1, 2)
    assert model.training  # run in eval mode, given back in its own
    result = CliRunner().invoke(main, ["features", f"{tmp_path / 'two.py'}:Tagged", "--layers", "fc",
                                       "--input", "x=8", "--input", "tag=()", "--input-dtype", "tag=long"])
    assert result.exit_code == 0, result.output
    assert "x: [1, 8], tag: [1]" in result.stdout and "[1, 2]" in result.stdout
    result = CliRunner().invoke(main, ["features", f"{tmp_path / 'two.py'}:Siamese", "--layers", "encoder.0",
                                       "--input", "1x8x8", "--input", "1x8x8", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("encoder.0,") for line in result.stdout.splitlines()) == 2  # one row per call
