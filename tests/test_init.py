"""Init policies: per-scheme statistics, complete provenance, seeded reproducibility, errors that teach."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from torch import nn

import torchsmith as ts
from torchsmith.init import SCHEMES, resolve_policy


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def big_linear(fan_in: int = 1024, fan_out: int = 512) -> nn.Module:
    return nn.Sequential(nn.Linear(fan_in, fan_out))


@pytest.mark.parametrize("scheme,args,expected_std", [
    ("kaiming_normal", {}, math.sqrt(2 / 1024)),
    ("kaiming_normal", {"mode": "fan_out"}, math.sqrt(2 / 512)),
    ("kaiming_uniform", {}, math.sqrt(2 / 1024)),
    ("xavier_uniform", {}, math.sqrt(2 / (1024 + 512))),
    ("xavier_normal", {"gain": "tanh"}, 5 / 3 * math.sqrt(2 / (1024 + 512))),
    ("normal", {"std": 0.02}, 0.02),
    ("uniform", {"a": -0.1, "b": 0.1}, 0.2 / math.sqrt(12)),
])
def test_scheme_statistics(scheme, args, expected_std):
    model = big_linear()
    ts.init_weights(model, {"types": {"Linear": {"scheme": scheme, **args}}}, generator=gen())
    w = model[0].weight
    assert abs(w.std().item() - expected_std) / expected_std < 0.03
    assert abs(w.mean().item()) < 0.05 * expected_std + 1e-4
    assert torch.count_nonzero(model[0].bias) == 0, "shorthand type rules zero the bias"


def test_uniform_bounds_and_trunc_normal():
    model = big_linear()
    ts.init_weights(model, {"names": {"0.weight": {"scheme": "uniform", "a": -0.3, "b": 0.1},
                                      "0.bias": {"scheme": "trunc_normal", "std": 1.0, "a": -0.5, "b": 0.5}}},
                    generator=gen())
    assert model[0].weight.min() >= -0.3 and model[0].weight.max() <= 0.1
    assert model[0].bias.abs().max() <= 0.5


def test_orthogonal_constant_ones_zeros():
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 8), nn.BatchNorm1d(8))
    report = ts.init_weights(model, {
        "names": {"0.weight": "orthogonal", "1.weight": {"scheme": "constant", "val": 0.5},
                  "*.bias": "ones", "2.weight": "zeros"}}, generator=gen())
    w = model[0].weight
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-5, rtol=0)
    assert torch.all(model[1].weight == 0.5)
    assert torch.all(model[0].bias == 1) and torch.all(model[2].bias == 1)
    assert torch.all(model[2].weight == 0)
    assert report["1.weight"].scheme == "constant" and report["1.weight"].args == {"val": 0.5}


def test_kaiming_preset_on_resnet_is_complete_and_attributed():
    model = ts.create_model("resnet20")
    report = ts.init_weights(model, "kaiming", generator=gen())
    names = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    assert {r.name for r in report.records} == names, "every parameter and buffer is reported"
    assert report.uncovered == []
    assert report.complete
    conv = report["conv1.weight"]
    assert conv.scheme == "kaiming_normal" and conv.args["mode"] == "fan_out" and conv.rule == "types['Conv']"
    assert report["bn1.weight"].scheme == "ones" and report["bn1.running_var"].scheme == "reset_running_stats"
    assert report["fc.bias"].scheme == "zeros"


def test_name_rules_override_type_rules_and_last_glob_wins():
    model = ts.create_model("lenet")
    report = ts.init_weights(model, {
        "preset": "kaiming",
        "names": {"*.bias": {"scheme": "constant", "val": 0.1}, "fc3.*": {"scheme": "normal", "std": 0.01}},
    }, generator=gen())
    assert report["conv1.bias"].scheme == "constant" and report["conv1.bias"].rule == "names['*.bias']"
    assert report["fc3.weight"].scheme == "normal" and report["fc3.bias"].scheme == "normal"
    assert report["fc1.weight"].rule == "types['Linear']"
    assert torch.all(model.conv1.bias == 0.1)
    assert model.fc3.weight.std() < 0.02


def test_exact_class_name_beats_family():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv1d(3, 8, 3))
    report = ts.init_weights(model, {"types": {"Conv": "xavier_uniform", "Conv1d": "zeros"}}, generator=gen())
    assert report["0.weight"].scheme == "xavier_uniform"
    assert report["1.weight"].scheme == "zeros" and report["1.weight"].rule == "types['Conv1d']"


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((4,), 3.0))
        self.fc = nn.Linear(4, 4)
        self.register_buffer("table", torch.arange(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x * self.scale + self.table)


def test_uncovered_tensors_are_listed_not_silently_kept():
    model = Custom()
    report = ts.init_weights(model, "kaiming", generator=gen())
    uncovered = dict(report.uncovered)
    assert set(uncovered) == {"scale", "table"}
    assert "no rule matches" in uncovered["scale"] and "buffer" in uncovered["table"]
    assert not report.complete
    assert torch.all(model.scale == 3.0), "an uncovered tensor is left as it was"
    assert "not covered by any rule" in str(report)


def test_default_scheme_uses_reset_parameters_reproducibly():
    a, b = nn.Sequential(nn.Linear(8, 8)), nn.Sequential(nn.Linear(8, 8))
    ra = ts.init_weights(a, "torch_default", generator=gen(3))
    ts.init_weights(b, "torch_default", generator=gen(3))
    assert torch.equal(a[0].weight, b[0].weight) and torch.equal(a[0].bias, b[0].bias)
    assert ra["0.weight"].scheme == "default"
    bound = 1 / math.sqrt(8)
    assert a[0].weight.abs().max() <= bound and a[0].bias.abs().max() <= bound


@pytest.mark.parametrize("policy", ["kaiming", "xavier", "torch_default",
                                    {"preset": "xavier", "nonlinearity": "tanh"}])
def test_same_seed_same_weights_bit_for_bit(policy):
    a, b = ts.create_model("resnet20"), ts.create_model("resnet20")
    ts.init_weights(a, policy, generator=gen(42))
    ts.init_weights(b, policy, generator=gen(42))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    c = ts.create_model("resnet20")
    ts.init_weights(c, policy, generator=gen(43))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_global_seed_reproduces_zoo_construction():
    torch.manual_seed(5)
    a = ts.create_model("lenet")
    torch.manual_seed(5)
    b = ts.create_model("lenet")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_zoo_models_initialise_explicitly():
    # LeNet's fc1 under the kaiming preset: std ~ sqrt(2 / fan_in), not PyTorch's default U(+-1/sqrt(fan_in)).
    torch.manual_seed(0)
    model = ts.create_model("lenet")
    assert abs(model.fc1.weight.std().item() - math.sqrt(2 / 400)) / math.sqrt(2 / 400) < 0.05
    assert torch.count_nonzero(model.fc1.bias) == 0
    sig = ts.create_model("lenet", act="sigmoid")
    expected = math.sqrt(2 / (400 + 120))  # xavier_uniform, gain 1 for sigmoid
    assert abs(sig.fc1.weight.std().item() - expected) / expected < 0.05


def test_tied_weights_initialised_once():
    emb = nn.Embedding(10, 6)
    head = nn.Linear(6, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    report = ts.init_weights(model, "kaiming", generator=gen())
    assert [r.name for r in report.records] == ["0.weight"]


def test_policy_is_plain_data_and_survives_yaml():
    policy = {"preset": "kaiming", "types": {"Linear": {"weight": {"scheme": "xavier_normal", "gain": 1.0},
                                                        "bias": "zeros"}},
              "names": {"fc3.weight": {"scheme": "normal", "std": 0.01}}}
    again = yaml.safe_load(yaml.safe_dump(policy))
    a, b = ts.create_model("lenet"), ts.create_model("lenet")
    ts.init_weights(a, policy, generator=gen())
    ts.init_weights(b, again, generator=gen())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert resolve_policy(again)["types"]["Linear"]["weight"]["scheme"] == "xavier_normal"


def test_meta_tensors_are_recorded_not_touched():
    with torch.device("meta"):
        model = ts.create_model("resnet18")
    report = ts.init_weights(model, "kaiming")
    assert report["conv1.weight"].scheme == "kaiming_normal" and model.conv1.weight.is_meta


def test_only_limits_the_work():
    model = ts.create_model("lenet")
    before = model.fc1.weight.clone()
    report = ts.init_weights(model, "kaiming", only=["fc3.weight", "fc3.bias"], generator=gen())
    assert [r.name for r in report.records] == ["fc3.weight", "fc3.bias"]
    assert torch.equal(model.fc1.weight, before)


def test_every_scheme_is_documented_in_readme():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in SCHEMES:
        assert f"`{name}`" in readme, name


@pytest.mark.parametrize("policy,error,match", [
    ({"names": {"fc1.bias": "kaiming_normal"}}, ts.InitError,
     r"kaiming_normal computes fan-in/fan-out.*'fc1.bias' has shape \(120,\)"),
    ({"types": {"Linear": "kaimng_normal"}}, ts.UnknownNameError, "did you mean 'kaiming_normal'"),
    ("kaimin", ts.UnknownNameError, "unknown init preset 'kaimin'; did you mean 'kaiming'"),
    ({"types": {"Linaer": "zeros"}}, ts.UnknownNameError, "did you mean 'Linear'"),
    ({"names": {"fc9.weight": "zeros"}}, ts.UnknownNameError, "unknown tensor name in init policy 'fc9.weight'"),
    ({"types": {"Linear": {"scheme": "normal", "sd": 1}}}, ts.UnknownNameError, "did you mean 'std'"),
    ({"types": {"Linear": {"scheme": "constant"}}}, ts.InitError, "constant needs the argument 'val'"),
    ({"types": {"Linear": {"scheme": "xavier_uniform", "gain": "tanhh"}}}, ts.UnknownNameError,
     "did you mean 'tanh'"),
    ({"typs": {}}, ts.UnknownNameError, "did you mean 'types'"),
    (42, ts.InitError, "preset name or a dict"),
    # Bad values of a rule that applies after others: refused while planning, so conv1 is not zeroed first.
    ({"names": {"conv1.weight": "zeros", "fc3.bias": {"scheme": "uniform", "a": 1, "b": 0}}}, ts.InitError,
     r"names\['fc3.bias'\]: uniform needs a < b, got a=1, b=0"),
    ({"names": {"conv1.weight": "zeros", "fc3.bias": {"scheme": "trunc_normal", "a": 2, "b": -2}}}, ts.InitError,
     "trunc_normal needs a < b"),
    ({"names": {"conv1.weight": "zeros", "*.bias": {"scheme": "normal", "std": "a"}}}, ts.InitError,
     "normal argument std='a' must be a number"),
    ({"names": {"conv1.weight": "zeros", "fc3.bias": {"scheme": "constant", "val": "x"}}}, ts.InitError,
     "constant argument val='x' must be a number"),
    ({"names": {"conv1.weight": "zeros"}, "types": {"Linear": {"scheme": "kaiming_normal", "mode": "fan_inn"}}},
     ts.UnknownNameError, "did you mean 'fan_in'"),
    ({"names": {"conv1.weight": "zeros"}, "types": {"Linear": {"scheme": "kaiming_uniform", "nonlinearity": "rel"}}},
     ts.UnknownNameError, "did you mean 'relu'"),
])
def test_nonsense_is_refused_with_a_fix(policy, error, match):
    model = ts.create_model("lenet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(error, match=match):
        ts.init_weights(model, policy, generator=gen())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed although the policy was refused"


def test_generator_that_is_not_a_generator_is_refused():
    with pytest.raises(ts.InitError, match="generator must be a torch.Generator"):
        ts.init_weights(ts.create_model("lenet"), generator=0)  # type: ignore[arg-type]


def test_lazy_model_is_refused_untouched_and_initialised_after_a_forward():
    net = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2))
    before = net[2].weight.clone()
    with pytest.raises(ts.InitError, match=r"lazy \(nn.Lazy\*\) tensors .*\(0.weight, 0.bias\); run it once"):
        ts.init_weights(net, generator=gen())
    assert torch.equal(net[2].weight, before)
    net(torch.zeros(1, 3))
    assert ts.init_weights(net, generator=gen()).complete


def test_only_ignores_lazy_tensors_it_does_not_name():
    net = nn.Sequential(nn.Linear(3, 4), nn.LazyLinear(2))
    report = ts.init_weights(net, generator=gen(), only=["0.weight", "0.bias"])
    assert [r.name for r in report.records] == ["0.weight", "0.bias"]
