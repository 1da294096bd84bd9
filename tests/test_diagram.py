"""summary(...).diagram() and `show --diagram`: nodes, shape-labelled edges, folded repeats, every output form."""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from lesson_nets import LeNet, ResidualBlock
from torchsmith._summary import summary
from torchsmith.cli import main
from torchsmith.errors import ConfigError

HERE = Path(__file__).resolve().parent
LENET_FLOW = ["3x32x32", "6x28x28", "6x14x14", "16x10x10", "16x5x5", "400", "120", "84", "10"]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="graphviz's dot is not installed (apt-get install graphviz); "
                                      "the grandalf path is tested instead")


def _chain(d):
    """Edge labels from input to output along the only path (each node has one way out)."""
    labels, node, seen = [], "input", set()
    while node != "output" and node not in seen:
        seen.add(node)
        out = d.outputs_of(node)
        assert len(out) == 1, f"{node} has {len(out)} ways out"
        labels.append(out[0].label)
        node = out[0].dst
    return labels


def _dedupe(labels):
    return [x for i, x in enumerate(labels) if i == 0 or labels[i - 1] != x]


@pytest.mark.parametrize("model", ["lenet", "hand-written"])
def test_lenet_shape_flow_is_the_lesson(model):
    s = summary("lenet") if model == "lenet" else summary(LeNet(), (3, 32, 32))
    d = s.diagram()
    assert _dedupe(_chain(d)) == LENET_FLOW
    names = [n.name for n in d.nodes]
    assert names[0] == "input 3x32x32" and names[-1] == "output"
    assert names[1] == "conv1" and names[2] == "relu" and "fc3" in names
    # The hand-written x.view(-1, 16*5*5) and the zoo's torch.flatten(x, 1) both show as a flatten step.
    flat = [n for n in d.nodes if n.name == "flatten"]
    assert len(flat) == 1 and flat[0].kind == "op"
    assert [e.label for e in d.inputs_of(flat[0].id)] == ["16x5x5"]
    assert [e.label for e in d.outputs_of(flat[0].id)] == ["400"]
    assert d.node("conv1").label == "conv1\nConv2d 3→6, 5x5"


def test_lenet_shared_pool_is_two_calls():
    d = summary(LeNet(), (3, 32, 32)).diagram()
    pools = [n for n in d.nodes if n.type == "MaxPool2d"]
    assert [n.name for n in pools] == ["pool", "pool (call 2)"]
    assert [e.label for e in d.outputs_of(pools[1].id)] == ["16x5x5"]


def test_projection_shortcut_joins_at_an_add():
    d = summary(ResidualBlock(64, 128, stride=2), (64, 56, 56)).diagram()
    add = d.node("add")
    assert add.kind == "op" and add.inplace  # out += self.shortcut(x)
    ins = d.inputs_of(add.id)
    assert len(ins) == 2
    sources = sorted(next(n.name for n in d.nodes if n.id == e.src) for e in ins)
    assert sources == ["bn2", "shortcut.1"]
    assert {e.label for e in ins} == {"128x28x28"}
    # The block's input feeds both paths.
    assert sorted(next(n.name for n in d.nodes if n.id == e.dst) for e in d.outputs_of("input")) == \
        ["conv1", "shortcut.0"]
    assert {e.label for e in d.outputs_of("input")} == {"64x56x56"}


def test_identity_shortcut_is_an_edge_from_the_input():
    d = summary(ResidualBlock(64, 64), (64, 56, 56)).diagram()
    add = d.node("add")
    srcs = sorted(e.src for e in d.inputs_of(add.id))
    assert "input" in srcs and len(srcs) == 2
    assert "shortcut" not in [n.name for n in d.nodes]  # the empty Sequential passes x through


def test_resnet20_repeats_fold_with_counts():
    s = summary("resnet20")
    d2 = s.diagram(depth=2)
    folded = {n.name: (n.type, n.count) for n in d2.nodes if n.kind == "module" and n.type == "BasicBlock"}
    assert folded == {"layer1.0-2": ("BasicBlock", 3), "layer2.0": ("BasicBlock", 1),
                      "layer2.1-2": ("BasicBlock", 2), "layer3.0": ("BasicBlock", 1),
                      "layer3.1-2": ("BasicBlock", 2)}
    assert "BasicBlock x3" in d2.node("layer1.0-2").label
    assert _dedupe(_chain(d2))[:4] == ["3x32x32", "16x32x32", "32x16x16", "64x8x8"]
    # Deeper: the first block drawn whole, with its add; the identical rest as one box.
    d3 = s.diagram(depth=3)
    assert d3.node("layer1.1-2").count == 2 and "as layer1.0" in d3.node("layer1.1-2").label
    assert "as layer2.1" in d3.node("layer2.2").label  # layer2.0 differs (stride 2); 2.1 drawn, 2.2 folded
    adds = [n for n in d3.nodes if n.name == "add"]
    assert len(adds) == 5  # in layer1.0, layer2.0, layer2.1, layer3.0, layer3.1
    assert all(n.count == 1 for n in s.diagram(depth=2, collapse=False).nodes)


def test_replayed_blocks_draw_the_same_as_traced_ones():
    # Identical blocks are answered from a cache; their data flow must still link up.
    a, b = summary("resnet20", replay=True), summary("resnet20", replay=False)
    for depth in (2, 3, None):
        da, db = a.diagram(depth=depth, collapse=False), b.diagram(depth=depth, collapse=False)
        assert [n.label for n in da.nodes] == [n.label for n in db.nodes]
        assert sorted((e.src, e.dst, e.label) for e in da.edges) == sorted((e.src, e.dst, e.label) for e in db.edges)


def test_transformer_layers_collapse():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                     intermediate_size=64, vocab_size=100)
    s = summary(transformers.BertModel(config), (16,), input_dtype="long")
    d = s.diagram(depth=2)
    layers = d.node("encoder.layer.0-2")
    assert layers.count == 3 and "BertLayer x3" in layers.label
    assert [e.label for e in d.inputs_of(layers.id)] == ["16x32"]
    assert d.outputs_of("input")[0].label == "16"
    # embeddings: word + token type + position joined by adds
    assert len([n for n in d.nodes if n.name == "add"]) == 2
    assert "view" not in [n.name for n in d.nodes]  # mask arithmetic is off the data path


@pytest.mark.parametrize("engine", [pytest.param("dot", marks=needs_dot), "grandalf"])
def test_svg_is_well_formed_with_labels(engine):
    d = summary(ResidualBlock(64, 128, stride=2), (64, 56, 56)).diagram()
    svg = d.svg(engine=engine)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    for word in ("conv1", "shortcut.0", "add (in place)", "128x28x28", "64x56x56"):
        assert word in text, word


def test_mermaid_text():
    d = summary(LeNet(), (3, 32, 32)).diagram()
    text = d.mermaid()
    assert text.startswith("flowchart TD\n")
    assert '-->|"6x28x28"|' in text and '-->|"400"|' in text
    assert 'n0["conv1<br/>Conv2d 3→6, 5x5"]' in text
    assert str(d) == text


@pytest.mark.parametrize("engine", [pytest.param("dot", marks=needs_dot), "grandalf"])
def test_save_every_format(tmp_path, engine):
    d = summary(LeNet(), (3, 32, 32)).diagram()
    png = d.save(tmp_path / "net.png", engine=engine).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    page = d.save(tmp_path / "net.html", engine=engine).read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "16x5x5" in page
    assert "src=" not in page and "<link" not in page  # self-contained: nothing fetched
    ET.fromstring(d.save(tmp_path / "net.svg", engine=engine).read_text())
    assert d.save(tmp_path / "net.mmd").read_text() == d.mermaid()
    assert d.save(tmp_path / "net.dot").read_text().startswith("digraph")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.dot", "net.html", "net.mmd", "net.png", "net.svg"]
    assert oct(os.stat(tmp_path / "net.svg").st_mode & 0o777) != "0o600"  # not left private by the temp file


def test_bad_paths_and_engines_are_clear(tmp_path):
    d = summary(LeNet(), (3, 32, 32)).diagram()
    with pytest.raises(ConfigError, match=r"unknown suffix '\.jpg'; use one of \.svg, \.png, \.html, \.mmd, \.dot"):
        d.save(tmp_path / "net.jpg")
    with pytest.raises(ConfigError, match="folder .* does not exist"):
        d.save(tmp_path / "nope" / "net.svg")
    with pytest.raises(ConfigError, match="unknown diagram engine 'neato'"):
        d.save(tmp_path / "net.svg", engine="neato")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="depth must be"):
        summary(LeNet(), (3, 32, 32)).diagram(depth=-1)


def test_notebook_reprs_and_dict():
    d = summary(LeNet(), (3, 32, 32)).diagram()
    assert d._repr_svg_().lstrip().startswith("<svg")
    html = d._repr_html_()
    assert html.startswith('<div class="torchsmith-diagram">') and "<svg" in html
    doc = d.to_dict()
    assert doc["nodes"][1]["label"] == "conv1\nConv2d 3→6, 5x5" and doc["edges"][0]["label"] == "3x32x32"


# --------------------------------------------------------------------------- CLI
def _cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_diagram_files(tmp_path):
    for name in ("net.svg", "net.png", "net.html"):
        r = _cli("show", "lenet", "--diagram", str(tmp_path / name))
        assert r.exit_code == 0, r.output
        assert f"wrote {tmp_path / name} (14 nodes, 13 edges" in r.output
    ET.fromstring((tmp_path / "net.svg").read_text())
    assert (tmp_path / "net.png").read_bytes()[:4] == b"\x89PNG"
    r = _cli("show", "resnet20", "--diagram", str(tmp_path / "r.svg"), "--depth", "2")
    assert r.exit_code == 0 and "BasicBlock x3" in (tmp_path / "r.svg").read_text()


def test_cli_mermaid_and_hand_written_model(tmp_path):
    ref = f"{HERE / 'lesson_nets.py'}:ResidualBlock"
    r = _cli("show", ref, "--opt", "in_channels=64", "--opt", "out_channels=128", "--opt", "stride=2",
             "--input", "64x56x56", "--format", "mermaid")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("flowchart TD") and '(("add (in place)"))' in r.output
    assert '-->|"128x28x28"|' in r.output


def test_cli_unknown_suffix_fails_before_the_forward(tmp_path):
    r = CliRunner().invoke(main, ["show", "lenet", "--diagram", str(tmp_path / "net.jpg")])
    assert r.exit_code != 0
    assert "unknown suffix '.jpg'; use one of .svg, .png, .html, .mmd, .dot" in r.output
    assert list(tmp_path.iterdir()) == []


def test_cli_diagram_needs_an_input_size(tmp_path):
    r = CliRunner().invoke(main, ["show", "torch.nn:Identity", "--diagram", str(tmp_path / "net.svg")])
    assert r.exit_code == 1
    assert "the input size of Identity is not known" in r.output and "give --input" in r.output
    assert list(tmp_path.iterdir()) == []


def test_a_failed_forward_draws_up_to_the_failure():
    from torchsmith.errors import ShapeError

    with pytest.raises(ShapeError) as info:
        summary(LeNet(), (3, 64, 64))  # the hand-written view(-1, 400) fits 32x32 only
    d = info.value.partial.diagram()
    assert [n.name for n in d.nodes][-1] == "pool (call 2)" and "output" not in [n.id for n in d.nodes]
    assert d.outputs_of("input")[0].label == "3x64x64"
    assert "the forward stopped" in d.notes[0] and "invalid for input of size 2704" in d.notes[0]
    assert "the forward stopped" in d._repr_html_()


def test_real_tensors_draw_the_same_graph():
    # device="cpu" runs the model itself: tensor identities still link the two paths at the add.
    meta = summary(ResidualBlock(8, 16, stride=2), (8, 16, 16), batch_size=2).diagram()
    real = summary(ResidualBlock(8, 16, stride=2), (8, 16, 16), batch_size=2, device="cpu").diagram()
    assert [n.label for n in real.nodes] == [n.label for n in meta.nodes]
    assert sorted((e.src, e.dst, e.label) for e in real.edges) == sorted((e.src, e.dst, e.label) for e in meta.edges)


class _TwoBranches(torch.nn.Module):
    """An Inception-style split and concatenation."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 1)
        self.b = torch.nn.Conv2d(3, 6, 3, padding=1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


def test_concatenation_joins_two_branches():
    s = summary(_TwoBranches(), (3, 8, 8))
    d = s.diagram()
    cat = d.node("cat")
    assert sorted(e.label for e in d.inputs_of(cat.id)) == ["4x8x8", "6x8x8"]
    assert [e.label for e in d.outputs_of(cat.id)] == ["10x8x8"]
    join = next(e for e in s.explain().layers if e.type == "cat")
    assert join.shape_formulas == ["dim 1: 4 + 6 = 10; the other dims must match"] and join.shape_ok
