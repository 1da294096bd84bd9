"""Every zoo model, parametrised over list_models(): shape, parameter count, gradients, purity, script/export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import torchsmith as ts
from torchsmith.models import BasicBlock, Bottleneck, ResNet
from torchsmith.models.resnet import PadShortcut

# Reference parameter counts: torchvision for the ImageNet ResNets, the classic LeNet, and
# He et al. 2015 table 6 for the CIFAR ResNets (the paper rounds to 0.27M, 0.46M, ...).
EXACT = {
    "lenet": 62_006,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
PAPER_MILLIONS = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7}
# With the paper's parameter-free option-A shortcuts (section 4.2), the exact counts are:
CIFAR_EXACT = {"resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
               "resnet110": 1_727_962}
BIG = {"resnet50", "resnet101", "resnet152"}
GOLDEN = Path(__file__).parent / "golden" / "torchvision_resnet_keys.json"


def small_input(name: str, batch: int = 2) -> torch.Tensor:
    model_size = {"lenet": 32}.get(name, 64 if not name.startswith("resnet") or name in EXACT else 32)
    return torch.randn(batch, 3, model_size, model_size)


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {"num_classes": 10} if name in EXACT and name != "lenet" else {}
    return ts.create_model(name, **kwargs)


def test_zoo_lists_every_family():
    names = ts.list_models()
    assert names == sorted(names)
    assert {"lenet", "resnet18", "resnet20", "resnet110", "resnet152"} <= set(names)
    assert ts.list_models("resnet1*") == ["resnet101", "resnet110", "resnet152", "resnet18"]


@pytest.mark.parametrize("name", ts.list_models())
def test_parameter_count_matches_reference(name):
    model = ts.create_model(name)
    n = ts.count_parameters(model)
    if name in EXACT:
        assert n == EXACT[name]
    else:
        assert n == CIFAR_EXACT[name]
        assert round(n / 1e6, 2 if n < 1e6 else 1) == PAPER_MILLIONS[name]


def test_cifar_stem_resnet18_count():
    model = ts.create_model("resnet18", stem="cifar", num_classes=10)
    assert ts.count_parameters(model) == 11_173_962
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ts.list_models())
def test_forward_shape_gradients_and_input_untouched(name):
    model = build(name).train()
    x = small_input(name)
    before = x.clone()
    version = x._version
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.equal(x, before) and x._version == version, "forward modified its input"
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", [n for n in ts.list_models() if n not in BIG])
def test_script_and_export_match_eager(name):
    model = build(name).eval()
    x = small_input(name)
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), expected)
        batch = torch.export.Dim("batch", min=1, max=64)
        exported = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        torch.testing.assert_close(exported.module()(x), expected)
        x3 = small_input(name, batch=3)
        torch.testing.assert_close(exported.module()(x3), model(x3))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BIG))
def test_script_and_export_big_resnets(name):
    model = build(name).eval()
    x = small_input(name)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        exported = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", max=64)},))
        torch.testing.assert_close(exported.module()(x), expected)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in ts.list_models()])
def test_compile_fullgraph(name):
    # fullgraph=True fails on any graph break; the eager backend checks dynamo's capture without
    # paying for inductor's code generation on CPU.
    model = build(name).eval()
    x = small_input(name)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    try:
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x))
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("name", ts.list_models())
def test_state_dict_round_trip(name):
    model = build(name).eval()
    torch.manual_seed(1)
    fresh = ts.create_model(name, **({"num_classes": 10} if name in EXACT and name != "lenet" else {})).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = small_input(name)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


@pytest.mark.parametrize("name", ts.list_models())
def test_uniform_interface(name):
    model = build(name).eval()
    x = small_input(name)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(feats), model(x))
        model.reset_classifier(7)
        assert model(x).shape == (2, 7)
    assert isinstance(model.init_policy, dict)
    assert len(model.default_input_size) == 3


def test_lenet_is_the_classic_architecture():
    model = ts.create_model("lenet")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert shapes == {
        "conv1.weight": (6, 3, 5, 5), "conv1.bias": (6,),
        "conv2.weight": (16, 6, 5, 5), "conv2.bias": (16,),
        "fc1.weight": (120, 400), "fc1.bias": (120,),
        "fc2.weight": (84, 120), "fc2.bias": (84,),
        "fc3.weight": (10, 84), "fc3.bias": (10,),
    }
    # Activations are functional calls, not modules: only layers with parameters are modules.
    assert [type(m).__name__ for m in model.children()] == ["Conv2d", "Conv2d", "Linear", "Linear", "Linear"]


def test_lenet_sizes_come_from_options():
    mnist = ts.create_model("lenet", in_channels=1, input_size=28)
    assert mnist.fc1.in_features == 16 * 4 * 4
    assert mnist(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    wide = ts.create_model("lenet", input_size=(32, 64), num_classes=5)
    assert wide(torch.randn(1, 3, 32, 64)).shape == (1, 5)


@pytest.mark.parametrize("act,preset", [("relu", "kaiming"), ("sigmoid", "xavier"), ("tanh", "xavier")])
def test_lenet_activation_and_matching_init(act, preset):
    model = ts.create_model("lenet", act=act)
    assert model.init_policy["preset"] == preset
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()


def test_lenet_wrong_input_size_names_fc1():
    model = ts.create_model("lenet")
    with pytest.raises(ts.ShapeError, match=r"fc1 expects 400 input features but got 2704.*input_size=64"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ts.ShapeError, match="conv1 expects 3 input channels but got 1"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ts.ShapeError, match="4-D batch"):
        model(torch.randn(3, 32, 32))


def test_lenet_bad_options():
    with pytest.raises(ts.UnknownNameError, match="did you mean 'tanh'"):
        ts.create_model("lenet", act="tahn")
    with pytest.raises(ts.ConfigError, match="at least 16x16"):
        ts.create_model("lenet", input_size=8)


@pytest.mark.parametrize("opts, message", [
    ({"num_classes": "abc"}, r"num_classes='abc' of model 'lenet' must be an integer, not str"),
    ({"num_classes": True}, r"must be an integer, not bool"),
    ({"input_size": [28]}, r"input_size=\[28\] .* must be an integer or a list \[int, int\]"),
    ({"act": 3}, r"act=3 .* must be a string, not int"),
])
def test_option_values_are_checked_against_the_builder(opts, message):
    with pytest.raises(ts.ConfigError, match=message):
        ts.create_model("lenet", **opts)
    # values of the annotated types still build, lists standing in for tuples (as YAML and --opt give them)
    assert ts.create_model("lenet", input_size=[28, 28], num_classes=5)(torch.randn(1, 3, 28, 28)).shape == (1, 5)


def test_cli_opt_of_the_wrong_type_is_one_line_not_a_crash():
    from click.testing import CliRunner

    from torchsmith.cli import main

    result = CliRunner().invoke(main, ["show", "lenet", "--opt", "num_classes=abc"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "num_classes='abc' of model 'lenet' must be an integer" in result.output


@pytest.mark.parametrize("size", [32, 64, 97])
def test_resnet_any_input_size(size):
    model = ts.create_model("resnet18", num_classes=3).eval()
    assert model(torch.randn(1, 3, size, size)).shape == (1, 3)


def test_resnet_blocks_and_shortcuts():
    # The first block of stages 2 and 3 changes width and stride. The CIFAR nets use the
    # paper's option A (subsample + zero channels), or 1x1 conv + BN projections on request.
    model = ts.create_model("resnet20")
    assert model.layer1[0].downsample is None
    assert isinstance(model.layer2[0].downsample, PadShortcut)
    x = torch.randn(2, 16, 32, 32)
    y = model.layer2[0].downsample(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and not y[:, :8].any() and not y[:, 24:].any()
    assert isinstance(model.layer4, torch.nn.Identity)
    projected = ts.create_model("resnet20", shortcut="conv")
    assert isinstance(projected.layer2[0].downsample[0], torch.nn.Conv2d)
    assert projected.layer2[0].downsample[0].stride == (2, 2)
    assert ts.count_parameters(projected) == 272_474
    assert isinstance(ts.create_model("resnet18").layer2[0].downsample[1], torch.nn.BatchNorm2d)
    assert isinstance(ts.create_model("resnet50").layer1[0], Bottleneck)
    assert isinstance(ts.create_model("resnet34").layer1[0], BasicBlock)


def test_zero_init_residual():
    model = ts.create_model("resnet18", zero_init_residual=True)
    for name, module in model.named_modules():
        if isinstance(module, BasicBlock):
            assert torch.count_nonzero(module.bn2.weight) == 0, name
    model50 = ts.create_model("resnet50", zero_init_residual=True)
    assert torch.count_nonzero(model50.layer3[2].bn3.weight) == 0
    assert torch.count_nonzero(model50.layer3[2].bn2.weight) > 0


def test_norm_layer_is_injectable():
    gn = ts.create_model("resnet20", norm_layer="groupnorm")
    assert isinstance(gn.bn1, torch.nn.GroupNorm)
    custom = ResNet(BasicBlock, (1, 1), widths=(8, 16), num_classes=4, stem="cifar",
                    norm_layer=lambda c: torch.nn.GroupNorm(2, c))
    assert custom(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(ts.UnknownNameError, match="did you mean 'batchnorm'"):
        ts.create_model("resnet20", norm_layer="batchnrom")


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_state_dict_matches_torchvision(name):
    golden = json.loads(GOLDEN.read_text())[name]
    model = ts.create_model(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(golden), "key names or order differ from torchvision"
    assert ours == golden


def test_torchvision_style_checkpoint_loads_strict():
    golden = json.loads(GOLDEN.read_text())["resnet18"]
    state = {k: torch.randn(shape) if shape else torch.tensor(7) for k, shape in golden.items()}
    model = ts.create_model("resnet18")
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.fc.weight, state["fc.weight"])


def test_unknown_model_suggests_close_match():
    with pytest.raises(ts.UnknownNameError, match=r"unknown model 'resnet81'; did you mean 'resnet18'"):
        ts.create_model("resnet81")
    with pytest.raises(ts.UnknownNameError, match="did you mean 'num_classes'"):
        ts.create_model("lenet", num_clases=3)


def test_register_model_and_duplicates():
    @ts.register_model(name="_test_tiny")
    def tiny(*, width: int = 4) -> torch.nn.Module:
        return torch.nn.Linear(width, 2)

    try:
        model = ts.create_model("_test_tiny", width=3)
        assert model.in_features == 3
        assert model.torchsmith_arch == {"name": "_test_tiny", "kwargs": {"width": 3}}
        with pytest.raises(ts.ConfigError, match="already registered"):
            ts.register_model(tiny, name="_test_tiny")
    finally:
        from torchsmith import registry

        registry._MODELS.pop("_test_tiny", None)
