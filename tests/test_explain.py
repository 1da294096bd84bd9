"""summary(...).explain() and `show --explain`: each layer's formulas with its own numbers, checked by the trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from torch import nn

import torchsmith as ts
from lesson_nets import LeNet, ResidualBlock, SmallResNet
from torchsmith._summary import summary
from torchsmith._summary.explain import LayerExplanation
from torchsmith.cli import main

HERE = Path(__file__).resolve().parent


def test_lenet_conv1_formulas_exactly():
    ex = summary(LeNet(), (3, 32, 32)).explain()
    conv1 = ex.layer("conv1")
    assert conv1.shape_formulas == ["C_out = out_channels = 6",
                                    "H_out = (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28",
                                    "W_out = (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28"]
    assert conv1.param_formulas == ["params = 3*6*5*5 + 6 = 456"]
    assert conv1.computed_shape == conv1.output_shape == (1, 6, 28, 28)
    assert conv1.computed_params == conv1.params == 456
    assert ex.layer("fc1").param_formulas == ["params = 400*120 + 120 = 48120"]
    view = next(e for e in ex.layers if e.type == "view")
    assert view.name == "forward: view(-1, 400)" and view.computed_shape == (1, 400)
    assert "-1 = 400/400 = 1" in view.shape_formulas
    text = str(ex)
    assert "conv1 [Conv2d 3→6, kernel 5x5, stride 1, padding 0, dilation 1, groups 1, bias]: 3x32x32 -> 6x28x28" \
        in text
    assert "    H_out = (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28" in text
    assert "checked: 12 computed shapes equal the traced ones, 12 parameter counts equal numel" in text


def test_lenet_receptive_fields():
    ex = summary(LeNet(), (3, 32, 32)).explain()
    fields = {e.name: (e.receptive_field.size[0], e.receptive_field.jump[0]) for e in ex.receptive_fields}
    assert fields == {"conv1": (5, 1), "pool": (6, 2), "conv2": (14, 2), "pool (call 2)": (16, 4)}
    assert ex.layer("conv2").receptive_field.formula.startswith("r = 6 + (5-1)*2 = 14, j = 2*1 = 2")
    # The zoo's LeNet pools with F.max_pool2d in its forward: the same fields from the op's arguments.
    zoo = summary("lenet").explain()
    assert [(e.name, e.receptive_field.size[0]) for e in zoo.receptive_fields] == [
        ("conv1", 5), ("forward: F.max_pool2d", 6), ("conv2", 14), ("forward: F.max_pool2d", 16)]


def test_projection_shortcut_is_explained():
    ex = summary(ResidualBlock(64, 128, stride=2), (64, 56, 56)).explain()
    join = next(e for e in ex.layers if e.kind == "join")
    assert join.name == "forward: in-place add" and join.what == "residual add"
    assert join.shape_formulas == ["main path: conv1 -> bn1 -> relu -> conv2 -> bn2: 64x56x56 -> 128x28x28",
                                   "shortcut: shortcut.0 -> shortcut.1: 64x56x56 -> 128x28x28",
                                   "add: 128x28x28 + 128x28x28 = 128x28x28"]
    why = join.notes[0]
    assert "the channels change 64 -> 128" in why
    assert "the spatial size changes 56x56 -> 28x28 (stride 2)" in why
    assert "x (64x56x56) cannot be added to 128x28x28" in why
    assert "shortcut.0 (Conv2d 64→128, 1x1 /2)" in why and "(8448 params)" in why
    assert ex.layer("shortcut.0").param_formulas == ["params = 64*128*1*1 = 8192 (no bias)"]


def test_identity_shortcut_is_explained():
    ex = summary(ResidualBlock(64, 64), (64, 56, 56)).explain()
    join = next(e for e in ex.layers if e.kind == "join")
    assert join.shape_formulas[1] == "shortcut: identity: 64x56x56 -> 64x56x56"
    assert "x is added unchanged: an identity shortcut, 0 params" in join.notes[0]


def test_zoo_resnet_blocks_say_why():
    ex = summary("resnet18").explain()
    joins = [e for e in ex.layers if e.kind == "join"]
    assert len(joins) == 8
    assert joins[0].name == "layer1.0: add" and "identity" in joins[0].shape_formulas[1]
    assert joins[2].name == "layer2.0: add" and "layer2.0.downsample.0 -> layer2.0.downsample.1" in \
        joins[2].shape_formulas[1]
    assert "the channels change 64 -> 128 and the spatial size changes 56x56 -> 28x28 (stride 2)" in joins[2].notes[0]


def _zoo():
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                          intermediate_size=64, vocab_size=100))
    spec = ts.build({"input": [3, 16, 16], "layers": [
        {"conv": {"out": 8, "kernel": 3, "padding": 1}}, "batchnorm", "relu", {"maxpool": {"kernel": 2}},
        "flatten", {"linear": {"out": 10}}]})
    return [("lenet", summary("lenet")), ("resnet18", summary("resnet18")), ("resnet20", summary("resnet20")),
            ("spec", summary(spec)), ("hand-written LeNet", summary(LeNet(), (3, 32, 32))),
            ("ResidualBlock", summary(ResidualBlock(16, 32, 2), (16, 8, 8), batch_size=2)),
            ("SmallResNet", summary(SmallResNet(), (3, 32, 32))),
            ("bert", summary(bert, (12,), input_dtype="long"))]


def test_every_explained_shape_and_count_matches_the_trace():
    for name, s in _zoo():
        ex = s.explain()
        assert ex.mismatches == [], name
        modules = [e for e in ex.layers if e.kind == "module"]
        leaves = [r for r in s.rows if r.is_leaf]
        assert len(modules) == len(leaves), name  # every leaf call explained once
        # Each known layer computed its shape (not just echoed), and every count is checked.
        known = [e for e in modules if e.type in ("Conv2d", "Linear", "MaxPool2d", "BatchNorm2d", "Embedding",
                                                  "LayerNorm", "AdaptiveAvgPool2d", "Flatten")]
        assert known and all(e.computed_shape is not None for e in known), name
        assert all(e.computed_params is not None for e in modules), name
        json.dumps(ex.to_dict())


@pytest.mark.parametrize("layer, size", [
    (nn.Conv1d(3, 5, 4, stride=2, padding=1, dilation=2), (1, 3, 30)),
    (nn.Conv2d(4, 8, 3, padding="same", bias=False), (1, 4, 9, 9)),
    (nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding="valid"), (1, 4, 11, 12)),
    (nn.Conv2d(8, 8, 3, groups=8), (1, 8, 10, 10)),
    (nn.Conv3d(2, 4, (1, 3, 3), groups=2, padding=(0, 1, 1)), (1, 2, 4, 6, 6)),
    (nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1), (1, 4, 5, 5)),
    (nn.MaxPool2d(3, 2, ceil_mode=True), (1, 2, 8, 8)),
    (nn.MaxPool1d(2, 2, padding=1, dilation=2, ceil_mode=True), (1, 2, 9)),
    (nn.AvgPool2d(3, 2, padding=1), (1, 2, 7, 7)),
    (nn.AdaptiveAvgPool2d((2, None)), (1, 3, 7, 5)),
    (nn.BatchNorm1d(6, affine=False), (2, 6)),
    (nn.GroupNorm(2, 6), (1, 6, 4, 4)),
    (nn.LayerNorm((4, 5), bias=False), (1, 3, 4, 5)),
    (nn.Flatten(1, 2), (1, 2, 3, 4)),
])
def test_layer_families(layer, size):
    entry = summary(nn.Sequential(layer), size[1:], batch_size=size[0]).explain().layer("0")
    assert entry.computed_shape is not None and entry.shape_ok, entry.shape_formulas
    assert entry.computed_params is not None and entry.params_ok, entry.param_formulas


def test_ceil_mode_and_same_padding_read_right():
    e = summary(nn.Sequential(nn.MaxPool2d(2, 2, ceil_mode=True)), (1, 7, 7)).explain().layer("0")
    assert e.shape_formulas[1] == "H_out = ceil((7 + 2*0 - 1*(2-1) - 1)/2) + 1 = 4"
    e = summary(nn.Sequential(nn.Conv2d(1, 2, 5, padding="same")), (1, 9, 9)).explain().layer("0")
    assert e.shape_formulas[1] == "H_out = H_in = 9 (padding='same' adds 1*(5-1) = 4 in total, split 2 / 2)"
    e = summary(nn.Sequential(nn.Conv2d(8, 8, 3, groups=4)), (8, 5, 5)).explain().layer("0")
    assert e.param_formulas == ["params = (8/4)*8*3*3 + 8 = 152"]


def test_embeddings_and_attention():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

        def forward(self, ids):
            x = self.embed(ids)
            return self.attn(x, x, x, need_weights=False)[0]

    ex = summary(Tiny(), (7,), batch_size=2, input_dtype="long").explain()
    assert ex.layer("embed").param_formulas == ["params = 50*16 = 800"]
    attn = ex.layer("attn")
    assert attn.kind == "attention" and attn.ok and attn.computed_shape == (2, 7, 16)
    assert attn.shape_formulas[0] == "head_dim = 16/4 = 4"
    assert attn.shape_formulas[2] == "scores = softmax(Q K^T / sqrt(4)): (4, 7, 4) x (4, 4, 7) -> (4, 7, 7)"
    assert attn.param_formulas[-1] == "params = 816 + 272 = 1088" and attn.params == 1088


def test_hf_attention_projections():
    transformers = pytest.importorskip("transformers")
    gpt = transformers.GPT2Model(transformers.GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=100,
                                                         n_positions=32))
    ex = summary(gpt, (10,), input_dtype="long").explain()
    assert ex.mismatches == []
    attn = ex.layer("h.0.attn")
    assert attn.what == "GPT2Attention: 4 heads of 8" and attn.computed_shape == (1, 10, 32)
    assert "scores = softmax(Q K^T / sqrt(8)): (4, 10, 8) x (4, 8, 10) -> (4, 10, 10)" in attn.shape_formulas
    assert attn.param_formulas == ["params = c_attn 3168 + c_proj 1056 = 4224 (the projections; attention itself "
                                   "has none)"]
    assert ex.layer("h.0.attn.c_attn").param_formulas == ["params = 32*96 + 96 = 3168"]


def test_a_wrong_formula_is_reported():
    entry = LayerExplanation(name="x", type="Conv2d", kind="module", what="", input_shape=(1, 3, 8, 8),
                             output_shape=(1, 6, 6, 6), computed_shape=(1, 6, 4, 4), computed_params=10, params=12)
    assert not entry.shape_ok and not entry.params_ok and not entry.ok
    ex = summary(LeNet(), (3, 32, 32)).explain()
    ex.layers.append(entry)
    assert ex.mismatches == [entry]
    text = str(ex)
    assert "!! the formula gives 6x4x4 but the trace gives 6x6x6" in text and "1 layer(s) disagree" in text


def test_html_markdown_and_dict():
    ex = summary(LeNet(), (3, 32, 32)).explain()
    html = ex._repr_html_()
    assert html.startswith('<div class="torchsmith-explain">') and "<table>" in html
    assert "H_out = (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28" in html
    assert "- `params = 3*6*5*5 + 6 = 456`" in ex.render("markdown")
    doc = ex.to_dict()
    assert doc["layers"][0]["computed_shape"] == [1, 6, 28, 28] and doc["layers"][0]["shape_ok"] is True


def test_cli_explain():
    ref = f"{HERE / 'lesson_nets.py'}:LeNet"
    r = CliRunner().invoke(main, ["show", ref, "--input", "3x32x32", "--explain"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "H_out = (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28" in r.output and "params = 3*6*5*5 + 6 = 456" in r.output
    assert "Receptive field along the main path" in r.output
    r = CliRunner().invoke(main, ["show", "resnet20", "--explain", "--format", "json"], catch_exceptions=False)
    doc = json.loads(r.output)
    assert all(layer["shape_ok"] and layer["params_ok"] for layer in doc["layers"])


def test_symbolic_batch_keeps_formulas():
    ex = summary("lenet", (3, 32, 32), batch_size="B").explain()
    assert ex.layer("conv1").shape_formulas[1] == "H_out = (32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28"
    assert ex.mismatches == []


def test_grouped_query_attention_from_the_projections():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=64, vocab_size=100)
    ex = summary(transformers.LlamaModel(config), (10,), input_dtype="long").explain()
    assert ex.mismatches == []
    attn = ex.layer("layers.0.self_attn")  # heads live in the config only: read from q_proj and head_dim
    assert attn.kind == "attention" and attn.what == "LlamaAttention: 4 heads of 8"
    assert "K, V = x W_k, x W_v: (10, 16) each, 2 heads (2, 10, 8), each shared by 4/2 = 2 query heads" \
        in attn.shape_formulas[1]
    # RoPE's rotate-half (cat, add) inside attention is part of attention, not a residual join
    assert [e.name for e in ex.layers if e.kind == "join"] == ["layers.0: add", "layers.0: add"]


def test_replayed_identity_shortcuts_stay_identities():
    class Block(nn.Module):
        def __init__(self, c, scale):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)
            self.scale = scale  # differs per block: the blocks are not replayed whole, their Identity is
            self.shortcut = nn.Identity()

        def forward(self, x):
            return self.conv(x) * self.scale + self.shortcut(x)

    model = nn.Sequential(Block(4, 1.0), Block(4, 2.0), Block(4, 3.0))
    for replay in (True, False):
        s = summary(model, (4, 8, 8), replay=replay)
        joins = [e for e in s.explain().layers if e.kind == "join"]
        assert [j.shape_formulas[1] for j in joins] == ["shortcut: identity: 4x8x8 -> 4x8x8"] * 3, replay
        assert "shortcut" not in [n.name.rsplit(".", 1)[-1] for n in s.diagram().nodes]
    assert any("replayed" in n for n in summary(model, (4, 8, 8)).notes)
    joins = [e for e in summary(SmallResNet(), (3, 32, 32)).explain().layers if e.kind == "join"]
    assert ["identity" in j.shape_formulas[1] for j in joins] == [True, True, True, False, True]


def test_total_is_the_sum_of_the_layers():
    ex = summary(LeNet(), (3, 32, 32)).explain()  # pool is called twice, its (zero) params count once
    assert ex.params_sum() == "total params = 456 + 2416 + 48120 + 10164 + 850 = 62006"
    assert ex.total_params == 62006 and ex.params_sum() in str(ex)
    tied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight
    line = summary(tied, (3,), input_dtype="long").explain().params_sum()
    assert line == "total params = 40 + 40 = 80 (the model has 40: shared or tied weights are counted once)"
