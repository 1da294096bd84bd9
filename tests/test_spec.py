"""Declarative specs: building with shape inference, the examples against the zoo, errors that point, the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

import torchsmith as ts
from torchsmith.cli import main
from torchsmith.errors import ConfigError, SpecError
from torchsmith.registry import model_options
from torchsmith.spec import check_spec, copy_weights, describe_layer_types, dump_spec, layer_types, register_spec_writer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LENET, RESNET20 = EXAMPLES / "lenet.yaml", EXAMPLES / "resnet20.yaml"

MLP = {"input": [8], "layers": [{"linear": 16}, "relu", {"linear": 4}]}


def write(tmp: Path, text: str, name: str = "net.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- the examples reproduce the zoo
def test_lenet_example_is_the_zoo_lenet():
    spec_model, zoo = ts.build_file(LENET), ts.create_model("lenet")
    assert ts.count_parameters(spec_model) == ts.count_parameters(zoo) == 62_006
    spec_model.load_state_dict(zoo.state_dict(), strict=True)  # names chosen to match: conv1 ... fc3
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(spec_model(x), zoo(x), rtol=0, atol=0)


def test_resnet20_example_is_the_zoo_resnet20():
    spec_model, zoo = ts.build_file(RESNET20), ts.create_model("resnet20")
    assert ts.count_parameters(spec_model) == ts.count_parameters(zoo)
    pairs = copy_weights(zoo, spec_model)  # same layers in the same order, readable names of its own
    assert ("layer2.0.conv1.weight", "stage2.basic1.body.conv1.weight") in pairs
    spec_model.eval(), zoo.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(spec_model(x), zoo(x))


@pytest.mark.skipif("shortcut" not in model_options("resnet20"), reason="zoo resnet20 has no shortcut option")
def test_resnet20_example_with_projection_shortcut_is_the_conv_variant():
    spec = ts.load_spec(RESNET20)
    spec["blocks"]["basic"]["args"]["shortcut"] = "auto"  # 1x1 conv + batchnorm where the shape changes
    spec_model, zoo = ts.build(spec), ts.create_model("resnet20", shortcut="conv")
    assert ts.count_parameters(spec_model) == ts.count_parameters(zoo) == 272_474
    copy_weights(zoo, spec_model)
    spec_model.eval(), zoo.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(spec_model(x), zoo(x))


SPEC_EXAMPLES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))


def test_the_examples_folder_holds_specs():
    assert {p.name for p in SPEC_EXAMPLES} >= {"lenet.yaml", "resnet20.yaml"}


@pytest.mark.parametrize("path", SPEC_EXAMPLES, ids=lambda p: p.name)
def test_every_example_builds_and_its_trace_is_what_runs(path):
    report, model = check_spec(path), ts.build_file(path).eval()
    with torch.no_grad():
        y = model(torch.randn(2, *report.input))
    assert tuple(y.shape[1:]) == report.output and report.params == ts.count_parameters(model)
    assert ts.load_spec(path)["name"] and "input" in model.torchsmith_arch["spec"]


def test_built_model_carries_spec_input_and_init_policy():
    model = ts.build_file(LENET)
    arch = model.torchsmith_arch
    assert json.loads(json.dumps(arch)) == arch  # plain JSON: a checkpoint stores it as is
    assert arch["spec"]["layers"][0] == {"conv": {"out": 6, "kernel": 5, "name": "conv1"}}
    assert model.default_input_size == (3, 32, 32)
    assert model.init_policy == {"preset": "kaiming", "nonlinearity": "relu"}
    assert [n for n, _ in model.named_parameters()] == [
        f"{layer}.{t}" for layer in ("conv1", "conv2", "fc1", "fc2", "fc3") for t in ("weight", "bias")]
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    assert ts.build(arch["spec"]).state_dict().keys() == model.state_dict().keys()


@pytest.mark.parametrize("name", ts.list_models())
def test_every_zoo_model_writes_a_spec_with_its_exact_names(name, tmp_path):
    spec = ts.to_spec(name)  # verified inside: the spec builds the model's state_dict names and shapes
    with torch.device("meta"):
        zoo = ts.create_model(name)
    assert check_spec(spec).params == ts.count_parameters(zoo)
    assert json.loads(dump_spec(spec, "json")) == spec
    # The written spec reads back through the same loader, as YAML and as JSON, unchanged.
    for fmt, suffix in (("yaml", ".yaml"), ("json", ".json")):
        assert ts.load_spec(write(tmp_path, dump_spec(spec, fmt), name + suffix)) == spec, fmt


def test_zoo_spec_round_trips_through_yaml_and_loads_zoo_weights_strictly(tmp_path):
    path = write(tmp_path, dump_spec(ts.to_spec("resnet20", num_classes=5)), "r20.yaml")
    model, zoo = ts.build_file(path), ts.create_model("resnet20", num_classes=5)
    model.load_state_dict(zoo.state_dict(), strict=True)
    model.eval(), zoo.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), zoo(x))


def test_to_spec_of_plain_sequential_and_of_spec_model():
    seq = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * 4 * 4, 3))
    spec = ts.to_spec(seq, input_shape=(1, 8, 8))
    model = ts.build(spec)
    model.load_state_dict(seq.state_dict(), strict=True)  # names "0", "1", ... kept
    seq.eval(), model.eval()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model(x), seq(x))
    assert ts.to_spec(model) == spec
    with pytest.raises(SpecError, match="give input_shape"):
        ts.to_spec(seq)
    with pytest.raises(SpecError, match="LSTM has no spec layer type"):
        ts.to_spec(nn.Sequential(nn.LSTM(4, 4)), input_shape=(3, 4))


def test_a_user_family_that_registers_its_writer_is_written_by_to_spec():
    class _TwoLayerNet(nn.Module):
        """A family of the user's own: the spec writer knows nothing of it until it registers its writer."""

        def __init__(self, hidden: int = 5) -> None:
            super().__init__()
            self.default_input_size = (4,)
            self.body = nn.Linear(4, hidden)
            self.act = nn.ReLU()
            self.head = nn.Linear(hidden, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.act(self.body(x)))

    with pytest.raises(SpecError, match="_TwoLayerNet cannot be written as a spec"):
        ts.to_spec(_TwoLayerNet())

    @register_spec_writer(_TwoLayerNet)
    def write(m: _TwoLayerNet) -> list:
        return [{"linear": {"out": m.body.out_features, "name": "body"}}, {"relu": {"name": "act"}},
                {"linear": {"out": m.head.out_features, "name": "head"}}]

    class Wider(_TwoLayerNet):  # a subclass is written by its family's writer
        pass

    net = Wider(hidden=7)
    spec = ts.to_spec(net)
    assert spec == {"name": "wider", "input": [4], "layers": write(net)}
    model = ts.build(spec)
    model.load_state_dict(net.state_dict(), strict=True)  # the family's own module names
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), net(x))
    with pytest.raises(ConfigError, match="already has a spec writer"):
        register_spec_writer(_TwoLayerNet, write)


# --------------------------------------------------------------------------- script, export, compile
@pytest.mark.slow
@pytest.mark.parametrize("path", [LENET, RESNET20], ids=["lenet", "resnet20"])
def test_examples_script_export_and_compile(path):
    model = ts.build_file(path).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), want)
        batch = torch.export.Dim("batch", min=2, max=64)
        exported = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        x5 = torch.randn(5, 3, 32, 32)
        torch.testing.assert_close(exported.module()(x5), model(x5))
        compiled = torch.compile(model, fullgraph=True, backend="eager")  # graph capture, no C++ toolchain
        torch.testing.assert_close(compiled(x), want)


# --------------------------------------------------------------------------- inference, nesting, reuse, init
def test_sizes_are_inferred_through_every_layer_type():
    spec = {"input": "3x17x17", "layers": [
        {"conv": {"out": 8, "kernel": 3, "stride": 2, "padding": "valid"}}, {"batchnorm": {}},
        {"leaky_relu": 0.1}, {"conv": {"out": 8, "kernel": 3, "padding": "same", "groups": 2}},
        {"groupnorm": 4}, "gelu", {"avgpool": {"kernel": 3, "stride": 2, "ceil_mode": True}},
        {"maxpool": {"kernel": 2, "padding": 1}}, {"adaptive_maxpool": 2}, {"layernorm": {"dims": 3}},
        "flatten", {"dropout": 0.2}, {"linear": 10}, "silu", "tanh", "elu", "sigmoid", {"softmax": -1}]}
    report = check_spec(spec)
    model = ts.build(spec)
    with torch.no_grad():
        y, x = model(torch.randn(2, 3, 17, 17)), torch.randn(2, 3, 17, 17)
        for row in report.rows:  # the trace equals what really flows
            sub = model.get_submodule(row.module)
            x = sub(x)
            assert tuple(x.shape[1:]) == row.out_shape, row
    assert y.shape == (2, 10) and report.output == (10,)


def test_input_never_modified_and_every_parameter_gets_a_gradient():
    # Activations after a conv/linear/norm/residual work in place (as the zoo's do), never on the input.
    model = ts.build({"input": [4, 6, 6], "layers": ["relu", {"conv": {"out": 4, "kernel": 3, "padding": 1}},
                                                     "relu", "identity", "relu", {"residual": {
                                                         "body": [{"conv": {"out": 4, "kernel": 1}}],
                                                         "act": "relu"}}, "leaky_relu", "flatten", {"linear": 3}]})
    assert not model.relu1.inplace and model.relu2.inplace and not model.relu3.inplace
    assert model.residual1.act.inplace and not model.leaky_relu1.inplace  # relu_ keeps its result for backward
    x = torch.randn(2, 4, 6, 6)
    x0 = x.clone()
    model(x).square().sum().backward()
    assert torch.equal(x, x0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_traced_shapes_equal_real_shapes():
    """Whatever conv/pool stack a spec asks for, the inferred shapes are what the tensors really get."""
    rng = random.Random(0)  # 40 random stacks, the same every run
    for _ in range(40):
        channels, size = rng.randint(1, 3), rng.randint(5, 12)
        entries: list = []
        for _ in range(rng.randint(1, 3)):
            kind, kernel, stride = rng.choice(["conv", "maxpool", "avgpool"]), rng.randint(1, 3), rng.randint(1, 2)
            padding = rng.randint(0, kernel // 2)
            args = {"kernel": kernel, "stride": stride, "padding": padding}
            entries.append({kind: {"out": 2, "dilation": rng.randint(1, 2), **args} if kind == "conv"
                            else {"ceil_mode": rng.random() < 0.5, **args}})
        spec = {"input": [channels, size, size + 1], "layers": entries}
        try:
            report = check_spec(spec)
        except SpecError as e:
            assert "needs spatial sizes of at least" in str(e), spec  # the only refusal such a stack can meet
            continue
        y = ts.build(spec)(torch.randn(1, channels, size, size + 1))
        assert tuple(y.shape[1:]) == report.output, spec


def test_conv_dimensionality_follows_the_input():
    for shape, cls in (([2, 16], nn.Conv1d), ([2, 8, 8], nn.Conv2d), ([2, 4, 4, 4], nn.Conv3d)):
        model = ts.build({"input": shape, "layers": [{"conv": {"out": 3, "kernel": 3}}]})
        assert type(model.conv1) is cls


def test_repeat_sequential_and_named_blocks_have_stable_readable_names():
    spec = {
        "input": [4, 8, 8],
        "blocks": {"unit": {"args": {"out": None}, "layers": [{"conv": {"out": "$out", "kernel": 3, "padding": 1}},
                                                               "relu"]}},
        "layers": [
            {"repeat": {"times": 2, "body": [{"unit": 4}]}},  # inlined: unit1, unit2
            {"repeat": {"times": 2, "body": ["identity"], "name": "twice"}},  # named: twice.0, twice.1
            {"sequential": [{"unit": {"out": 6, "name": "last"}}]},
        ],
    }
    names = [n for n, _ in ts.build(spec).named_parameters()]
    assert names == ["unit1.conv1.weight", "unit1.conv1.bias", "unit2.conv1.weight", "unit2.conv1.bias",
                     "sequential1.last.conv1.weight", "sequential1.last.conv1.bias"]
    assert list(ts.build(spec).state_dict()) == names  # a second build names its state the same way


def test_residual_shortcuts():
    body = [{"conv": {"out": 8, "kernel": 3, "stride": 2, "padding": 1}}]
    auto = ts.build({"input": [4, 8, 8], "layers": [{"residual": {"body": body, "act": "relu"}}]})
    assert [n for n, _ in auto.named_parameters()][-3:] == [
        "residual1.shortcut.conv1.weight", "residual1.shortcut.batchnorm1.weight", "residual1.shortcut.batchnorm1.bias"]
    pad = ts.build({"input": [4, 8, 8], "layers": [{"residual": {"body": body, "shortcut": "pad"}}]})
    assert ts.count_parameters(pad) == 8 * 4 * 9 + 8
    given = ts.build({"input": [4, 8, 8], "layers": [{"residual": {"body": body, "shortcut": [
        {"conv": {"out": 8, "kernel": 1, "stride": 2}}]}}]})
    assert given(torch.randn(1, 4, 8, 8)).shape == (1, 8, 4, 4)
    mlp = ts.build({"input": [6], "layers": [{"residual": [{"linear": 6}, "relu"]}]})
    assert isinstance(mlp.residual1.shortcut, nn.Identity)
    wide = {"input": [6], "layers": [{"residual": {"body": [{"linear": 9}], "act": "relu"}}]}
    assert check_spec(wide).output == (9,) and ts.build(wide).num_classes == 9


def test_same_generator_same_weights_and_default_init_by_activation():
    a = ts.build(MLP, generator=torch.Generator().manual_seed(3))
    b = ts.build(MLP, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert a.init_policy == {"preset": "kaiming", "nonlinearity": "relu"}
    tanh = ts.build({"input": [8], "layers": [{"linear": 4}, "tanh"]})
    assert tanh.init_policy == {"preset": "xavier", "nonlinearity": "tanh"}
    zeroed = ts.build({**MLP, "init": {"preset": "kaiming", "names": {"linear2.weight": "zeros"}}})
    assert not zeroed.linear2.weight.any() and zeroed.linear1.weight.std() > 0


class Scale(nn.Module):
    """Multiplies by a constant."""

    def __init__(self, factor: float = 2.0) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


ts.register_layer(Scale, name="test_spec_scale", shorthand="factor")


@ts.register_layer("test_spec_head")
def _head(in_shape, *, classes: int):
    """A user factory: sizes itself from the incoming shape; output shape probed on the meta device."""
    if classes < 1:
        raise ValueError("classes must be positive")
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(in_shape).prod()), classes))


def test_user_layers_registered_from_python():
    model = ts.build({"input": [2, 3, 3], "layers": [{"test_spec_scale": 3.0}, {"test_spec_head": {"classes": 5}},
                                                     "relu"]})
    assert model(torch.ones(1, 2, 3, 3)).shape == (1, 5)
    assert model.test_spec_scale1.factor == 3.0
    assert {"test_spec_scale", "test_spec_head", "conv", "residual"} <= set(layer_types())
    with pytest.raises(ConfigError, match="already registered"):
        ts.register_layer(Scale, name="test_spec_scale")
    with pytest.raises(SpecError, match=r"layers\[0\] test_spec_head: input is \[N, 2, 3, 3\] and building it "
                                        r"failed: ValueError: classes must be positive"):
        ts.build({"input": [2, 3, 3], "layers": [{"test_spec_head": {"classes": 0}}]})


# --------------------------------------------------------------------------- errors point at the place
LENET_NO_FLATTEN = """\
input: [3, 32, 32]
layers:
  - conv: {out: 6, kernel: 5}
  - relu
  - maxpool: 2
  - conv: {out: 16, kernel: 5}
  - relu
  - maxpool: 2
  - linear: 120
"""


def test_missing_flatten_names_layer_line_shape_and_fix(tmp_path):
    path = write(tmp_path, LENET_NO_FLATTEN)
    with pytest.raises(SpecError) as e:
        ts.build_file(path)
    message = str(e.value)  # the facts it must carry: the file and line, the layer, the shape met, the fix
    assert message.startswith(f"{path}, line 9: layers[6] linear")
    assert "[N, 16, 5, 5]" in message and "`flatten`" in message and "`adaptive_avgpool: 1`" in message


@pytest.mark.parametrize("layers, line, message", [
    ("- convv: {out: 6, kernel: 5}", 3, r"layers\[0\]: unknown layer type 'convv'; did you mean `conv`\?"),
    ("- conv: {out: 6, kernal: 5}", 3, r"layers\[0\] conv: unknown argument 'kernal'; did you mean `kernel`\?"),
    ("- conv: {out: 6}", 3, r"layers\[0\] conv: needs the argument `kernel`"),
    ("- conv: {out: 6, kernel: 40}", 3, r"input is \[N, 3, 32, 32\] but conv \(kernel 40, padding 0, dilation 1\) "
                                     r"needs spatial sizes of at least 40"),
    ("- flatten\n  - conv: {out: 6, kernel: 3}", 4, r"layers\[1\] conv: input is \[N, 3072\] but conv needs"),
    ("- conv:\n      out: 6\n      kernel: 5\n      stride: two", 3, r"layers\[0\] conv: `stride` must be an integer"),
    ("- conv:\n    out: 6", 3, r"it has the keys conv, out; indent the arguments under `conv:`"),
    ("- torch.nn.Conv2d: {in_channels: 3}", 3, r"unknown layer type 'torch.nn.Conv2d'"),
    ("- relu: 3", 3, r"layers\[0\] relu: takes no single value"),
    ("- residual:\n      body: [conv: {out: 8, kernel: 1}]\n      shortcut: identity", 5,
     r"identity: the body maps \[N, 3, 32, 32\] to \[N, 8, 32, 32\]"),
    ("- batchnorm: {name: a.b}", 3, r"`name` must be a word without dots"),
    ("- relu\n  - relu: {name: relu1}", 4, r"name 'relu1' is used twice"),
])
def test_errors_name_place_and_fix(tmp_path, layers, line, message):
    path = write(tmp_path, f"input: [3, 32, 32]\nlayers:\n  {layers}\n")
    with pytest.raises(SpecError, match=message) as e:
        ts.build_file(path)
    assert str(e.value).startswith(f"{path}, line {line}: layers[")


@pytest.mark.parametrize("text, message", [
    ("input: [3, 32, 32]\nlayer: [relu]\n", r"line 2: layer: unknown top-level key 'layer'; did you mean `layers`"),
    ("layers: [relu]\n", r"a spec needs `input`"),
    ("input: [3, 0]\nlayers: [relu]\n", r"line 1: input: `input` must be 1 to 4 positive integers"),
    ("input: [3]\ninput: [4]\nlayers: [relu]\n", r"line 2: key 'input' appears twice"),
    ("input: [3\nlayers: [relu]\n", r"line 2: not valid YAML"),
    ("!!python/object/apply:os.system ['true']\n", r"not valid YAML"),
    ("- relu\n", r"the file is a list"),
    ("input: [8]\nstamp: 2024-01-01\nlayers: [relu]\n", r"unknown top-level key 'stamp'"),
    ("input: [8]\ndescription: 2024-01-01\nlayers: [relu]\n", r"spec.description: datetime.date\(2024, 1, 1\) is "
                                                           r"a date"),
    ("input: [8]\ninit: {preset: kaiming, names: {nope.weight: zeros}}\nlayers: [{linear: 2}]\n",
     r"line 2: init: unknown tensor name in init policy 'nope.weight'"),
    ("input: [8]\ninit: {preset: kaimin}\nlayers: [{linear: 2}]\n", r"line 2: init: unknown init preset 'kaimin'"),
])
def test_file_level_errors(tmp_path, text, message):
    with pytest.raises(SpecError, match=message):
        ts.build_file(write(tmp_path, text))


@pytest.mark.parametrize("blocks, layers, message", [
    ({"b": {"args": {"out": None}, "layers": [{"linear": "$outt"}]}}, [{"b": 3}],
     r"'\$outt' names no argument of the block; did you mean `out`"),
    ({"b": {"args": {"out": None}, "layers": [{"linear": "$out"}]}}, ["b"], r"needs the argument `out`"),
    ({"b": [{"b": {}}]}, ["b"], r"block 'b' uses itself \(b -> b\)"),
    ({"conv": ["relu"]}, ["relu"], r"block name 'conv' is already a layer type"),
    ({"b": {"args": {"out": 2}, "layers": [{"linear": "$out"}]}}, [{"b": {"width": 2}}],
     r"unknown argument 'width'"),
    ({"b": {"args": {"name": 2}, "layers": ["relu"]}}, ["b"], r"argument names \(not `name`"),
])
def test_block_errors(blocks, layers, message):
    with pytest.raises(SpecError, match=message):
        ts.build({"input": [4], "blocks": blocks, "layers": layers})


def test_errors_inside_a_block_name_the_use_site(tmp_path):
    text = ("input: [4, 8, 8]\nblocks:\n  b:\n    args: {out: null}\n    layers:\n      - linear: $out\n"
            "layers:\n  - b: 3\n")
    with pytest.raises(SpecError, match=r"line 6: blocks.b.layers\[0\] linear \(in block used at layers\[0\] "
                                        r"\(line 8\)\): input is \[N, 4, 8, 8\]; add `flatten`"):
        ts.build_file(write(tmp_path, text))


def test_json_specs_have_lines_too(tmp_path):
    path = write(tmp_path, json.dumps({"input": [8], "layers": ["relu", {"linear": {"out": 2, "bogus": 1}}]},
                                      indent=2), "net.json")
    with pytest.raises(SpecError, match=r"net.json, line \d+: layers\[1\] linear: unknown argument 'bogus'"):
        ts.build_file(path)
    with pytest.raises(SpecError, match=r"line 1: not valid JSON"):
        ts.build_file(write(tmp_path, "{input: [8]}", "bad.json"))


def test_alias_bombs_are_refused(tmp_path):
    lines = ["input: [8]", "layers: [relu]", "description:", "  - &a0 [relu, relu, relu, relu, relu, relu, relu, relu]"]
    lines += [f"  - &a{i} [{', '.join([f'*a{i - 1}'] * 8)}]" for i in range(1, 6)]  # 8^6 = 262,144 values
    with pytest.raises(SpecError, match="expands to more than 100,000 values"):
        ts.build_file(write(tmp_path, "\n".join(lines) + "\n"))


def test_spec_never_imports_or_calls_by_dotted_path():
    before = set(sys.modules)
    with pytest.raises(SpecError, match="unknown layer type 'json.loads'"):
        ts.build({"input": [8], "layers": [{"json.loads": {"s": "1"}}]})
    with pytest.raises(SpecError, match="unknown layer type 'antigravity'"):
        ts.build({"input": [8], "layers": ["antigravity"]})
    assert "antigravity" not in set(sys.modules) - before


# --------------------------------------------------------------------------- checkpoint, resolve, CLI
def test_checkpoint_of_spec_model_rebuilds_from_its_spec(tmp_path):
    pytest.importorskip("torchsmith.checkpoint")
    model = ts.build_file(RESNET20).eval()
    ts.save(model, tmp_path / "r20.safetensors")
    loaded = ts.load(tmp_path / "r20.safetensors").eval()
    assert loaded.torchsmith_arch == model.torchsmith_arch
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))


def test_resolve_model_builds_spec_files():
    assert ts.count_parameters(ts.resolve_model(str(LENET))) == 62_006


def test_cli_writes_checks_and_refuses_to_overwrite(tmp_path):
    runner = CliRunner()
    out = tmp_path / "r20.yaml"
    result = runner.invoke(main, ["spec", "resnet20", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ts.count_parameters(ts.build_file(out)) == ts.count_parameters(ts.create_model("resnet20"))
    before = out.read_text()
    result = runner.invoke(main, ["spec", "lenet", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 1 and "exists; pass --force" in result.output and out.read_text() == before
    result = runner.invoke(main, ["spec", str(LENET), "--check"], catch_exceptions=False)
    assert result.exit_code == 0 and "layers[6]   flatten  flatten1  [N, 400]" in result.output
    assert "Total parameters: 62,006" in result.output
    result = runner.invoke(main, ["spec", "lenet", "--opt", "in_channels=1", "--opt", "input_size=28",
                                  "--format", "json"], catch_exceptions=False)
    assert json.loads(result.output)["input"] == [1, 28, 28]
    result = runner.invoke(main, ["show", str(LENET)], catch_exceptions=False)
    assert result.exit_code == 0 and "Total parameters: 62,006" in result.output
    result = runner.invoke(main, ["spec", "--types"], catch_exceptions=False)
    assert result.exit_code == 0 and "out*, kernel*, stride=1" in result.output
    assert {r[0] for r in describe_layer_types()} == set(layer_types())


def test_cli_writes_a_user_sequential_given_its_input(tmp_path):
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\n"
        "def make_net():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))\n")
    runner = CliRunner()
    result = runner.invoke(main, ["spec", f"{tmp_path / 'net.py'}:make_net", "--input", "1x28x28"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ts.count_parameters(ts.build(yaml.safe_load(result.output))) == 4 * 9 + 4 + 4 * 26 * 26 * 10 + 10
    result = runner.invoke(main, ["spec", f"{tmp_path / 'net.py'}:make_net"], catch_exceptions=False)
    assert result.exit_code == 1 and "give input_shape" in result.output


def test_cli_bad_spec_is_one_line_and_exit_1(tmp_path):
    path = write(tmp_path, LENET_NO_FLATTEN)
    proc = subprocess.run([sys.executable, "-m", "torchsmith", "spec", str(path), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: {path}, line 9: layers[6] linear: input is [N, 16, 5, 5]; add `flatten` before it "
        "(or `adaptive_avgpool: 1` then `flatten` to pool the feature map first)"]


# --------------------------------------------------------------------------- QA: bad input refused clearly
def test_registering_a_builtin_name_first_thing_is_refused_and_specs_still_build():
    # In a fresh process the built-in types are not loaded yet; a user `relu` used to slip in and make every
    # later spec fail with "layer type 'conv' is already registered".
    code = ("import torchsmith as ts\nfrom torch import nn\nfrom torchsmith.errors import ConfigError\n"
            "try:\n    ts.register_layer(nn.Identity, name='relu')\nexcept ConfigError as e:\n    print(e)\n"
            "print(ts.count_parameters(ts.build({'input': [8], 'layers': [{'linear': 4}, 'relu']})))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["layer type 'relu' is already registered; choose another name", "36"]


@pytest.mark.parametrize("name", ["training", "forward", "spec_name", "num_classes"])
def test_a_name_that_is_a_model_attribute_is_refused(name):
    with pytest.raises(SpecError, match=rf"layers\[0\] relu: `name` '{name}' is taken by an attribute"):
        ts.build({"input": [4], "layers": [{"relu": {"name": name}}, {"linear": 2}]})


def test_runaway_expansion_is_refused_not_built_for_hours():
    with pytest.raises(SpecError, match=r"`times` is 1,000,000,000, more than the 50,000 entries"):
        ts.build({"input": [4], "layers": [{"repeat": {"times": 10**9, "body": ["relu"]}}]})
    doubling = {f"b{i}": [f"b{i + 1}", f"b{i + 1}"] for i in range(20)}
    with pytest.raises(SpecError, match="expands to more than 50,000 entries"):
        check_spec({"input": [4], "blocks": {**doubling, "b20": ["relu"]}, "layers": ["b0"]})


@pytest.mark.parametrize("shortcut", ["projection", 5])
def test_zoo_block_refuses_an_unknown_shortcut(shortcut):
    # BasicBlock itself treats any value other than "pad" as "conv", so a typo built the wrong block silently.
    with pytest.raises(SpecError, match="`shortcut` must be 'conv'"):
        ts.build({"input": [4, 8, 8], "layers": [{"basic_block": {"out": 8, "stride": 2, "shortcut": shortcut}}]})


class _LazyHead(nn.Module):
    def __init__(self, out: int = 3) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


ts.register_layer(_LazyHead, name="test_spec_lazy", shorthand="out")


@ts.register_layer("test_spec_bad_shape")
def _bad_shape(in_shape, *, shape=(-1,)):
    return nn.Identity(), shape


def test_user_layers_with_lazy_modules_or_bad_shapes_are_refused():
    for build in (ts.build, check_spec):  # check_spec raised a raw ValueError from the uninitialised weight
        with pytest.raises(SpecError, match=r"layers\[0\] test_spec_lazy: the module it builds contains a "
                                            r"LazyLinear.*size it from in_shape"):
            build({"input": [4], "layers": [{"test_spec_lazy": 3}]})
    for shape in ((-1,), "abc", (2.5,)):
        with pytest.raises(SpecError, match="the factory returned the output shape"):
            ts.build({"input": [4], "layers": [{"test_spec_bad_shape": {"shape": shape}}]})


def test_json_duplicate_keys_are_refused_like_yaml(tmp_path):
    path = write(tmp_path, '{"input": [4],\n "layers": [{"linear": 3}],\n "layers": ["relu"]}', "net.json")
    with pytest.raises(SpecError, match=r"net.json, line 3: key 'layers' appears twice"):
        ts.build_file(path)


@pytest.mark.parametrize("size", [[4.5], 5, (0,), "axb"])
def test_to_spec_refuses_a_bad_input_shape(size):
    with pytest.raises(ts.TorchsmithError, match="input"):
        ts.to_spec(nn.Sequential(nn.Linear(4, 3)), input_shape=size)


def test_cli_written_spec_is_readable_like_any_new_file(tmp_path):
    # The atomic write goes through mkstemp, whose file is private (0600) unless made otherwise.
    out = tmp_path / "lenet.yaml"
    result = CliRunner().invoke(main, ["spec", "lenet", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0 and out.stat().st_mode & 0o044


def test_3d_avgpool_smaller_than_its_kernel_is_refused_when_checked_not_at_run_time():
    # The meta device accepts it and avg_pool3d refuses it on real tensors, so check_spec said it was fine.
    spec = {"input": [2, 10, 2, 10], "layers": [{"avgpool": {"kernel": 3, "stride": 2, "padding": 1}}]}
    with pytest.raises(SpecError, match=r"layers\[0\] avgpool.*\[N, 2, 10, 2, 10\].*3-d"):
        check_spec(spec)
    spec["input"] = [2, 10, 3, 10]
    assert ts.build(spec)(torch.randn(1, 2, 10, 3, 10)).shape[1:] == check_spec(spec).output


def test_to_spec_says_what_is_wrong_with_the_input_shape_or_shared_layers():
    # Both used to end in "cannot be written as a spec exactly (first differences: [...])".
    with pytest.raises(SpecError, match=r"for input \[5\] the spec gives 0.weight the shape \[2, 5\], but the "
                                        r"model's is \[2, 4\]; give the input shape"):
        ts.to_spec(nn.Sequential(nn.Linear(4, 2)), input_shape=(5,))
    shared = nn.Linear(4, 4)
    with pytest.raises(SpecError, match="uses one module in two places"):
        ts.to_spec(nn.Sequential(shared, nn.ReLU(), shared), input_shape=(4,))


def test_to_spec_refuses_a_softmax_without_dim():
    # It was written as dim -1, but on a 4-d input torch's implicit choice is dim 1: another model.
    with pytest.raises(SpecError, match=r"nn.Softmax\(\) without dim"):
        ts.to_spec(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Softmax()), input_shape=(3, 4, 4))
    spec = ts.to_spec(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Softmax(dim=1)), input_shape=(3, 4, 4))
    assert spec["layers"][1] == {"softmax": {"dim": 1, "name": 1}}


def test_wrong_argument_types_are_spec_errors():
    for path in (None, 5):
        with pytest.raises(SpecError, match="a spec file is a path"):
            ts.build_file(path)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="copies between two nn.Modules, not a int"):
        copy_weights(5, nn.Linear(4, 3))  # type: ignore[arg-type]


class _WithCallableDefault(nn.Module):
    def __init__(self, fn=torch.tanh) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


ts.register_layer(_WithCallableDefault, name="test_spec_fn_default")


def test_describe_layer_types_with_a_default_that_is_not_json():
    rows = {name: args for name, args, _ in describe_layer_types()}  # was a TypeError from json.dumps
    assert rows["test_spec_fn_default"].startswith("fn=\"<built-in method tanh")


def test_the_zoo_layer_types_are_there_without_the_facade() -> None:
    """``import torchsmith`` registers the zoo lazily; code that reads the spec tables directly still sees it."""
    code = ("from torchsmith.spec.registry import get_layer_type, layer_types; "
            "assert get_layer_type('basic_block') is not None and 'bottleneck' in layer_types()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
