"""The four attribute views: parameters, modules, buffers, hooks; from Python and `torchsmith show`."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from torchsmith import create_model
from torchsmith.cli import main
from torchsmith.errors import SummaryError
from torchsmith.views import (
    buffer_view,
    count_parameters,
    format_tree,
    hook_view,
    module_tree,
    param_view,
)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight
        self.norm = nn.BatchNorm1d(4)
        self.register_buffer("mask", torch.ones(3), persistent=False)
        self.frozen = nn.Parameter(torch.zeros(2), requires_grad=False)


def log_output(module, args, output):
    return None


def test_param_view_shapes_stats_and_ties():
    torch.manual_seed(0)
    m = Tied()
    view = param_view(m)
    rows = {r.name: r for r in view.records}
    assert list(rows) == ["frozen", "emb.weight", "head.weight", "norm.weight", "norm.bias"]
    assert rows["head.weight"].tied_to == "emb.weight" and rows["head.weight"].mean is None
    w = m.emb.weight.detach().double()
    assert abs(rows["emb.weight"].mean - float(w.mean())) < 1e-12
    assert abs(rows["emb.weight"].std - float(w.std())) < 1e-12
    assert rows["frozen"].requires_grad is False and rows["emb.weight"].shape == (10, 4)
    assert "Parameters of Tied: 50" in view.title  # 40 + 2 + 4 + 4, the tied matrix once
    assert sum(r.numel for r in view.records if not r.tied_to) == count_parameters(m) == 50


def test_param_view_on_meta_has_no_stats():
    with torch.device("meta"):
        m = create_model("lenet")
    assert all(r.mean is None and r.std is None for r in param_view(m).records)


def test_buffer_view_persistence():
    rows = {r.name: r for r in buffer_view(Tied()).records}
    assert rows["mask"].persistent is False
    assert rows["norm.running_mean"].persistent and rows["norm.num_batches_tracked"].dtype == "int64"


def test_hook_view_lists_every_kind_and_forgets_removed_ones():
    m = create_model("lenet")
    assert hook_view(m).records == []
    handles = [
        m.conv1.register_forward_hook(log_output),
        m.fc1.register_forward_pre_hook(lambda mod, args: None),
        m.fc2.register_full_backward_hook(lambda mod, gi, go: None),
        m.register_state_dict_pre_hook(lambda mod, prefix, keep_vars: None),
        m.fc3.weight.register_hook(lambda g: g),
        nn.modules.module.register_module_forward_hook(log_output),
    ]
    try:
        records = hook_view(m).records
        kinds = {(r.module, r.kind) for r in records}
        assert {("conv1", "forward"), ("fc1", "forward_pre"), ("fc2", "backward"), ("", "state_dict_pre"),
                ("param fc3.weight", "tensor_grad"), ("(global)", "forward")} <= kinds
        assert any(r.hook.endswith("test_views.log_output") for r in records)
        assert "conv1" in hook_view(m).render()
    finally:
        for h in handles:
            h.remove()
    assert hook_view(m).records == []
    assert hook_view(m).render() == "Hooks on LeNet: 0\n(no hooks registered)"


def test_module_tree_and_format_tree_still_work():
    m = Tied()
    m.alias = m.head  # the same module under a second name
    tree = module_tree(m)
    assert tree.total_params == 50
    text = format_tree(tree, title="Tied")
    assert "shared with head" in text and text.endswith("Total parameters: 50")


def test_table_formats():
    view = param_view(create_model("lenet"))
    data = json.loads(view.render("json"))
    assert data["records"][0]["name"] == "conv1.weight" and data["records"][0]["shape"] == [6, 3, 5, 5]
    rows = list(csv.DictReader(io.StringIO(view.render("csv"))))
    assert rows[2]["numel"] == "2400"  # no thousands separators in csv
    md = view.render("markdown")
    assert "| conv1.weight | [6, 3, 5, 5] | float32 |" in md


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_views():
    out = invoke("show", "lenet", "--params").output
    assert "fc1.weight" in out and "[120, 400]" in out and "48,000" in out
    out = invoke("show", "resnet18", "--opt", "stem=cifar", "--opt", "num_classes=10", "--modules",
                 "--depth", "1").output
    assert "layer4" in out and "Total parameters: 11,173,962" in out and "layer4.0" not in out
    out = invoke("show", "resnet20", "--buffers", "--format", "csv").output
    assert out.splitlines()[0] == "name,shape,dtype,numel,persistent,device" and "bn1.running_var" in out
    out = invoke("show", "lenet", "--hooks").output
    assert "(no hooks registered)" in out
    both = invoke("show", "lenet", "--buffers", "--hooks").output
    assert "Buffers of LeNet" in both and "Hooks on LeNet" in both
    tree = json.loads(invoke("show", "lenet", "--modules", "--format", "json").output)
    assert tree["total_params"] == 62006 and [c["name"] for c in tree["children"]][0] == "conv1"


def test_cli_hooks_left_behind_by_user_code_are_visible(tmp_path):
    (tmp_path / "leaky.py").write_text(
        "import torch.nn as nn\n"
        "def spy(module, args, output):\n"
        "    pass\n"
        "def make():\n"
        "    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU())\n"
        "    net[0].register_forward_hook(spy)\n"
        "    return net\n")
    out = invoke("show", f"{tmp_path / 'leaky.py'}:make", "--hooks").output
    assert "Hooks on Sequential: 1" in out and "forward" in out and "spy" in out


def test_lazy_model_views_refuse_with_a_fix_and_hooks_still_show():
    net = nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyBatchNorm1d())
    for view in (count_parameters, module_tree, param_view, buffer_view):
        with pytest.raises(SummaryError, match=r"lazy \(nn.Lazy\*\) tensors .*\(0.weight, 0.bias, 2.weight and "
                                               r"\d+ more\); run it once on a sample batch"):
            view(net)
    assert "LazyModuleMixin._infer_parameters" in hook_view(net).render()
    net(torch.zeros(2, 3))  # materialised: every view works and counts what torch counts
    assert count_parameters(net) == sum(p.numel() for p in net.parameters()) == 16 + 8


def test_cli_lazy_model_is_one_line_not_an_internal_error(tmp_path):
    (tmp_path / "lazy.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.LazyLinear(2)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x)\n")
    for flag in ("--params", "--modules", "--buffers"):
        result = invoke("show", f"{tmp_path / 'lazy.py'}:Net", flag)
        assert result.exit_code == 1 and "internal error" not in result.output
        assert "lazy (nn.Lazy*) tensors" in result.output and len(result.output.strip().splitlines()) == 1


def test_complex_parameters_get_no_real_part_statistics():
    net = nn.Linear(3, 3)
    net.weight.data = torch.full((3, 3), 1 + 5j, dtype=torch.complex64)
    rec = {r.name: r for r in param_view(net).records}
    assert rec["weight"].mean is None and rec["weight"].std is None  # not 1.0, the real part's mean
    assert rec["bias"].mean is not None


def test_cli_json_stays_one_json_value(tmp_path):
    both = json.loads(invoke("show", "lenet", "--params", "--modules", "--buffers", "--format", "json").output)
    assert list(both) == ["params", "modules", "buffers"] and both["modules"]["total_params"] == 62006
    assert both["params"]["records"][0]["name"] == "conv1.weight"
    (tmp_path / "net.py").write_text("import torch.nn as nn\nclass Net(nn.Sequential):\n"
                                     "    def __init__(self):\n        super().__init__(nn.Linear(4, 2))\n")
    result = CliRunner().invoke(main, ["show", "net.py:Net", "--format", "json"])  # no input size: the tree
    assert result.exit_code == 0 and json.loads(result.stdout)["total_params"] == 10
