"""torchsmith.summary: counts, shapes and FLOPs checked against eager runs and torch's own counter.

Golden files in tests/golden/ hold rendered tables; rewrite them with
TORCHSMITH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_summary.py
"""

from __future__ import annotations

import csv
import gc
import io
import json
import os
import sys
import weakref
from pathlib import Path

import pytest
import sympy
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torchsmith
from conftest import hook_count
from torchsmith import ConfigError, ShapeError, create_model, list_models, summary
from torchsmith._summary import parse_dtype
from torchsmith.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("TORCHSMITH_UPDATE_GOLDEN") == "1"
LENET_FLOW = ("32x32x3 -> conv1 -> 28x28x6 -> pool -> 14x14x6 -> conv2 -> 10x10x16 -> pool -> 5x5x16 "
              "-> flatten 400 -> 120 -> 84 -> 10")


# --------------------------------------------------------------------------- models for the tests
class TiedReused(nn.Module):
    """A module used twice under two names, and an output head tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.block = nn.Linear(8, 8)
        self.again = self.block  # the same module under a second name
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.emb.weight  # tied
        self.register_buffer("scale", torch.ones(8))

    def forward(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.emb(idx) * self.scale  # (B, T, 8)
        x = self.again(torch.relu(self.block(x)))  # the shared Linear runs twice
        return {"logits": self.head(x), "pooled": x.mean(1)}


class TinyAttention(nn.Module):
    """Functional ops only inside: F.linear, matmul, softmax, scaled_dot_product_attention."""

    def __init__(self, d: int = 16, vocab: int = 32, block: int = 16) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Parameter(torch.randn(block, d) * 0.02)
        self.qkv = nn.Parameter(torch.randn(3 * d, d) * 0.02)
        self.proj = nn.Linear(d, d)
        self.d = d

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        x = self.wte(idx) + self.wpe[:T]  # (B, T, d)
        q, k, v = F.linear(x, self.qkv).split(self.d, dim=-1)
        att = (q @ k.transpose(-2, -1)).softmax(-1)  # (B, T, T)
        y = att @ v + F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y)


class NeedsItem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = int((x > 0).sum().item())  # a value: meta and fake tensors cannot give it
        return self.fc(x) * (k + 1)


class NeedsNonzero(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), torch.nonzero(x[:, 0] > 0)


def eager_output_shapes(model: nn.Module, *args: torch.Tensor) -> list[tuple[str, object]]:
    """(module name, output shapes) per module call, in call order, from a real forward."""
    names = {id(m): n for n, m in model.named_modules()}
    order: list[list] = []
    handles = []

    def pre(m, a):
        order.append([names[id(m)], None])
        stack.append(len(order) - 1)

    def post(m, a, out):
        i = stack.pop()
        order[i][1] = _shapes(out)

    stack: list[int] = []
    for m in {id(m): m for m in model.modules()}.values():
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model(*args)
    finally:
        for h in handles:
            h.remove()
    return [(n, s) for n, s in order]


def _shapes(out):
    if isinstance(out, torch.Tensor):
        return tuple(out.shape)
    if isinstance(out, (list, tuple)):
        return [_shapes(o) for o in out]
    if isinstance(out, dict):
        return {k: _shapes(v) for k, v in out.items()}
    return None


def real_flops(model: nn.Module, *args: torch.Tensor, backward: bool = False) -> int:
    with FlopCounterMode(display=False) as fc:
        out = model(*args)
        if backward:
            out = out["logits"] if isinstance(out, dict) else out
            out.sum().backward()
    model.zero_grad(set_to_none=True)
    return fc.get_total_flops()


# --------------------------------------------------------------------------- counts
@pytest.mark.parametrize("name", list_models())
def test_zoo_totals_equal_unique_parameters(name):
    s = summary(name)  # built directly on meta
    with torch.device("meta"):
        ref = create_model(name)
    assert s.total_params == sum(p.numel() for p in ref.parameters())
    assert s.trainable_params == s.total_params and s.non_trainable_params == 0
    assert s.buffer_elements == sum(b.numel() for b in ref.buffers())
    assert s.ran_on == "meta"
    assert s.rows[0].output_shapes == (1, ref.num_classes)


def test_tied_and_reused_counted_once_and_marked():
    m = TiedReused()
    s = summary(m, (5,), batch_size=2, input_dtype=torch.long)
    assert s.total_params == sum(p.numel() for p in m.parameters()) == 20 * 8 + 8 * 8 + 8
    names = [(r.name, r.call) for r in s.rows]
    assert names == [("", 1), ("emb", 1), ("block", 1), ("block", 2), ("head", 1)]
    assert "shared: also again" in s.rows[2].note and s.rows[3].note.startswith("call 2")
    assert "tied: weight = emb.weight" in s.rows[4].note
    assert s.rows[0].output_shapes == {"logits": (2, 5, 20), "pooled": (2, 8)}
    assert s.buffer_elements == 8
    text = str(s)
    assert "tied: weight = emb.weight" in text and "call 2" in text


@pytest.mark.parametrize("build,args", [
    (lambda: create_model("lenet"), lambda: (torch.randn(2, 3, 32, 32),)),
    (lambda: create_model("resnet20"), lambda: (torch.randn(1, 3, 8, 8),)),
    (lambda: TiedReused(), lambda: (torch.randint(0, 20, (2, 5)),)),
    (lambda: TinyAttention(), lambda: (torch.randint(0, 32, (2, 7)),)),
], ids=["lenet", "resnet20", "tied-reused", "functional-attention"])
def test_rows_shapes_and_flops_equal_eager_and_torch_counter(build, args):
    torch.manual_seed(0)
    model = build().eval()
    x = args()
    s = summary(model, input_data=x)
    eager = eager_output_shapes(model, *x)
    assert [(r.name, r.output_shapes) for r in s.rows] == eager
    assert s.forward_flops == real_flops(model, *x)
    model.train()  # torch counts a training step in train mode; the summary ran in eval, same FLOPs here
    assert s.training_flops == real_flops(model, *x, backward=True)
    assert s.forward_macs == s.forward_flops // 2


def test_functional_flops_go_to_the_innermost_module():
    s = summary(TinyAttention(), (8,), batch_size=2, input_dtype=torch.long)
    root, proj = s.rows[0], next(r for r in s.rows if r.name == "proj")
    assert root.self_flops == s.forward_flops - proj.flops > 0  # F.linear, matmul and SDPA ran in the root
    assert proj.flops == 2 * 2 * 8 * 16 * 16
    assert "aten.embedding" in s.uncounted_ops


def test_lenet_flow_is_the_tutorials():
    assert summary("lenet").flow() == LENET_FLOW


def test_flow_follows_the_main_path_not_the_shortcut():
    s = summary("resnet18")
    assert s.flow(depth=1) == ("224x224x3 -> conv1 -> 112x112x64 -> maxpool -> 56x56x64 -> layer2 -> 28x28x128 "
                               "-> layer3 -> 14x14x256 -> layer4 -> 7x7x512 -> avgpool -> 1x1x512 -> flatten 512 "
                               "-> 1000")
    deep = s.flow()
    assert "layer2.0.conv1 -> 28x28x128" in deep and "downsample" not in deep


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(5, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return (self.a(x) + self.b(y)) * scale


def test_several_inputs_kwargs_and_a_real_device():
    m = TwoInputs()
    s = summary(m, [(3,), (5,)], batch_size=2)
    assert [r.output_shapes for r in s.rows] == [(2, 4), (2, 4), (2, 4)]
    assert s.rows[0].input_shapes == [(2, 3), (2, 5)]
    kw = summary(m, input_data={"x": torch.zeros(6, 3), "y": torch.zeros(6, 5), "scale": 2.0})
    assert kw.rows[0].output_shapes == (6, 4) and kw.forward_flops == 2 * 6 * (3 + 5) * 4
    real = summary(m, [(3,), (5,)], batch_size=2, device="cpu")
    assert real.ran_on == "real tensors on cpu" and real.forward_flops == s.forward_flops
    assert hook_count(m) == 0


def test_memory_estimate_for_a_dtype():
    s = summary("lenet", dtype="bf16")
    m = s.memory
    assert m.dtype == "bfloat16" and m.parameters == 62006 * 2 and m.gradients == 62006 * 2
    assert m.adam_state == 2 * 62006 * 2 and m.sgd_momentum == 62006 * 2
    assert summary("lenet").memory.parameters == 62006 * 4
    assert isinstance(m.activations, int) and m.activations > 0


# --------------------------------------------------------------------------- the user's model
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_users_model_is_untouched(mode):
    model = create_model("resnet20")
    model.train(mode == "train")
    modes = [m.training for m in model.modules()]
    ptrs = [p.data_ptr() for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = hook_count(model)
    summary(model, (3, 32, 32), batch_size=2)
    assert [m.training for m in model.modules()] == modes
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert all(p.device.type == "cpu" and p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert hook_count(model) == hooks == 0
    assert "forward" not in vars(model.layer1[0])


def test_users_model_is_untouched_by_the_real_fallback_and_not_kept_alive():
    model = NeedsItem().train()
    s = summary(model, (4,), batch_size=3)
    assert s.ran_on == "real tensors (batch 1)" and model.training and hook_count(model) == 0
    assert any("meta could not run" in n for n in s.notes)
    ref = weakref.ref(model)
    del model, s
    gc.collect()
    assert ref() is None


def test_huge_model_costs_no_weight_memory():
    with torch.device("meta"):
        big = nn.Sequential(nn.Linear(100_000, 100_000), nn.Linear(100_000, 10))  # 10G params: 40 GB if real
    s = summary(big, (100_000,))
    assert s.total_params == 100_000 * 100_000 + 100_000 + 1_000_010
    assert s.memory.parameters == s.total_params * 4


def test_model_that_cannot_be_copied_runs_for_real():
    import threading

    model = NeedsNonzero()
    model.lock = threading.Lock()  # deepcopy cannot copy a lock
    s = summary(model, (4,), batch_size=3)
    assert s.ran_on == "real tensors (batch 1)" and "cannot make a meta copy" in s.notes[0]
    assert hook_count(model) == 0


def test_fallbacks_fake_then_real():
    s = summary(NeedsNonzero(), (4,), batch_size=3)
    assert s.ran_on == "fake tensors"
    assert s.rows[0].output_shapes[1][0].startswith("u")  # a data-dependent size
    assert summary(NeedsItem(), (4,), batch_size=3).ran_on == "real tensors (batch 1)"


# --------------------------------------------------------------------------- symbolic dims
def test_symbolic_batch_gives_formulas():
    s = summary("lenet", (3, 32, 32), batch_size="B")
    assert s.rows[1].output_shapes == ("B", 6, 28, 28)
    assert s.forward_flops == "1303440*B" and s.symbols == {"B": 8}
    assert s.flow() == LENET_FLOW
    assert "1.30M*B" in str(s)


def test_symbolic_sequence_length_formula_matches_concrete_runs():
    model = TinyAttention(block=64)
    s = summary(model, ("T=16",), batch_size="B", input_dtype=torch.long)
    if isinstance(s.forward_flops, int):
        # Older torch (2.4) specialises B and T on the mask slice: the summary must say so.
        assert any("specialised the symbolic dims to B=8, T=16" in n for n in s.notes), s.notes
        assert s.forward_flops == summary(model, (16,), batch_size=8, input_dtype=torch.long).forward_flops
        return
    assert s.rows[-1].output_shapes == ("B", "T", 16)
    formula = sympy.sympify(s.forward_flops, locals={"B": sympy.Symbol("B"), "T": sympy.Symbol("T")})
    for b, t in ((2, 5), (3, 11)):
        concrete = summary(model, (t,), batch_size=b, input_dtype=torch.long).forward_flops
        assert int(formula.subs({"B": b, "T": t})) == concrete


# --------------------------------------------------------------------------- bad input
def test_input_that_does_not_fit_names_the_module_and_keeps_the_rows():
    with pytest.raises(ShapeError, match="fc1 expects 400 input features but got 2704") as info:
        summary("lenet", (3, 64, 64))
    msg = str(info.value)
    assert "shape flow up to it: 64x64x3 -> conv1 -> 60x60x6" in msg and "flatten 2704" in msg
    partial = info.value.partial
    assert [r.name for r in partial.rows] == ["", "conv1", "conv2"] and partial.rows[0].failed


def test_torch_shape_error_gets_expected_and_got():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(10, 2))
    with pytest.raises(ShapeError) as info:
        summary(net, (3, 8, 8))
    msg = str(info.value)
    assert msg.startswith("2 (Linear) failed on input [1, 144]; it expects input of shape (*, 10)")
    assert "shape flow up to it: 8x8x3 -> 0 -> 6x6x4 -> 1 -> 144" in msg


@pytest.mark.parametrize("kwargs,match", [
    ({"input_size": (1, "3x"), "model_or_name": "lenet"}, "neither a positive int nor a name"),
    ({"input_size": (1, 0, 3), "model_or_name": "lenet"}, "must be positive"),
    ({"input_size": (1, 3, 32, 32), "input_data": torch.zeros(1), "model_or_name": "lenet"}, "not both"),
    ({"model_or_name": "lenet", "mode": "training"}, "mode must be"),
    ({"model_or_name": "lenet", "dtype": "fp13"}, "unknown dtype 'fp13'"),
    ({"model_or_name": nn.Sequential(nn.Flatten())}, "has no default_input_size"),  # nothing tells its input
    ({"model_or_name": 42}, "takes an nn.Module or a model name"),
    ({"model_or_name": "lenet", "depth": "2"}, "depth must be an int"),
    ({"model_or_name": "lenet", "device": "gpu0"}, "device 'gpu0' is not a device"),
])
def test_bad_arguments_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        summary(**kwargs)


class TokensAndMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens) * mask.unsqueeze(-1)


def test_several_input_sizes_as_a_tuple_of_tuples():
    # torchinfo's habit: ((B, T), (B, T)) for two inputs; it was read as one input whose dims were tuples.
    s = summary(TokensAndMask(), ((5,), (5,)), batch_size=2, input_dtype=("long", "float32"))
    assert s.output_shapes == (2, 5, 4) and s.input == "(2, 5), (2, 5)"


def test_one_input_dtype_per_input():
    s = summary(TokensAndMask(), [(5,), (5,)], batch_size=2, input_dtype=["long", torch.float32])
    assert s.output_shapes == (2, 5, 4) and s.rows[1].name == "embed"
    with pytest.raises(ConfigError, match="2 input dtypes for 1 inputs"):
        summary(nn.Linear(5, 2), (5,), batch_size=2, input_dtype=("float32", "long"))


@pytest.mark.parametrize("declared", [32, "3x32x32", ()])
def test_bad_default_input_size_is_a_config_error(declared):
    net = nn.Linear(32, 2)
    net.default_input_size = declared  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="default_input_size is .*; it should be a non-empty"):
        summary(net)


def test_without_default_input_size_the_first_layer_tells():
    assert summary(nn.Linear(32, 2)).output_shapes == (1, 2)  # the contract reads in_features


@pytest.mark.parametrize("build,input_dtype,got", [
    (lambda: nn.Sequential(nn.Linear(3, 2)).half(), None, "float16 and float32"),  # a fp16 model, fp32 input
    (lambda: nn.Sequential(nn.Linear(3, 2)), "long", "float32 and int64"),  # token ids into a Linear
])
def test_mixed_dtype_matmul_fails_as_eager_does(build, input_dtype, got):
    net = build()
    with pytest.raises(RuntimeError, match="same dtype"):
        net(torch.zeros(2, 3, dtype=parse_dtype(input_dtype) or torch.float32))  # eager refuses it
    with pytest.raises(ShapeError, match=f"0 \\(Linear\\) failed on input \\[2, 3\\].*aten.addmm got {got} tensors"):
        summary(net, (3,), batch_size=2, input_dtype=input_dtype)  # meta's kernel alone would accept it
    assert summary(net, (3,), batch_size=2, input_dtype=next(net.parameters()).dtype).forward_flops == 24


def test_symbolic_dims_too_small_for_the_model_say_what_they_were_traced_at():
    with pytest.raises(ShapeError, match=r"conv2 \(Conv2d\) failed .*Kernel size can't be greater .*"
                                         r"\(symbolic dims traced at H=8, W=8; write NAME=<size>, e.g. H=64,"):
        summary("lenet", (3, "H", "W"))
    assert summary("lenet", (3, "H=32", "W=32")).output_shapes == (1, 10)


class DataDependentBN(nn.Module):
    """A Python branch on a tensor value: meta and fake tensors cannot run it, real ones can."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.bn(x + 1))
        return x * 2 if x.sum() > -1e9 else x


def test_real_forward_in_train_mode_leaves_buffers_and_the_global_rng_alone():
    net = DataDependentBN().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(0)
    s = summary(net, (4,), batch_size=3, mode="train", device="cpu")
    drawn = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(drawn, torch.rand(3)), "the summary's dropout consumed the caller's seeded generator"
    assert s.ran_on == "real tensors on cpu" and not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"  # running_mean/var, num_batches_tracked


class ZeroesItsInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e9:  # a value check: only real tensors can run it
            x.mul_(0)
        return self.fc(x)


def test_real_fallback_leaves_the_callers_input_data_alone():
    x = torch.ones(2, 4)
    s = summary(ZeroesItsInput(), input_data=x)
    assert s.ran_on == "real tensors (batch 1)" and s.output_shapes == (2, 2)
    assert torch.equal(x, torch.ones(2, 4))


def test_real_fallback_at_batch_1_says_so_when_it_fails():
    with pytest.raises(ShapeError, match=r"bn \(BatchNorm1d\) failed on input \[1, 4\].*more than 1 value per "
                                         r"channel.*so it ran on real tensors at batch 1; device='cpu' runs it at"):
        summary(DataDependentBN(), (4,), batch_size=3, mode="train")
    assert summary(DataDependentBN(), (4,), batch_size=3, mode="train", device="cpu").output_shapes == (3, 4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # recent torch warns that torch.jit is deprecated
def test_torchscript_is_refused_with_a_fix():
    plain = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    for model, where in ((torch.jit.script(plain), "RecursiveScriptModule"),
                         (torch.jit.trace(plain, torch.randn(1, 4)), "TopLevelTracedModule"),
                         (nn.Sequential(nn.Linear(4, 4), torch.jit.script(nn.ReLU())), "Sequential.1")):
        with pytest.raises(torchsmith.SummaryError, match=f"{where} is TorchScript .*summarise the nn.Module it was"):
            summary(model, (4,), batch_size=2)


def test_render_depth_is_checked():
    s = summary(nn.Linear(4, 2), (4,), batch_size=2)
    for bad in ("x", -1):
        with pytest.raises(ConfigError, match="depth must be an int, 0 or more"):
            s.render(depth=bad)


def test_lazy_model_is_sized_on_meta_and_left_lazy():
    from torch.nn.parameter import is_lazy

    net = nn.Sequential(nn.LazyLinear(4), nn.ReLU())
    s = summary(net, (3,), batch_size=2)
    assert s.total_params == 16 and any("materialised 2 lazy tensors at 3" in n for n in s.notes)
    assert is_lazy(net[0].weight)
    with pytest.raises(torchsmith.ConfigError, match=r"lazy \(nn.Lazy\*\) layers .*input size is not known"):
        summary(net)
    net(torch.zeros(2, 3))
    assert summary(net, (3,), batch_size=2).total_params == 16


# --------------------------------------------------------------------------- rendering
def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"golden file {path} is missing; create it with TORCHSMITH_UPDATE_GOLDEN=1")
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text(), f"{name} changed; if intended, rerun with TORCHSMITH_UPDATE_GOLDEN=1"


def test_golden_lenet_text():
    _golden("summary_lenet.txt", summary("lenet").render("text"))


def test_golden_resnet20_collapsed_depth2():
    _golden("summary_resnet20_depth2.txt", summary("resnet20").render("text", depth=2))


def test_golden_lenet_symbolic_markdown():
    _golden("summary_lenet_B.md", summary("lenet", (3, 32, 32), batch_size="B").render("markdown"))


def test_collapse_repeated_blocks_and_expand():
    s = summary("resnet20")
    collapsed = s.render(depth=2)
    assert "layer1.0-2 (BasicBlock)" in collapsed and "layer2.1-2 (BasicBlock)" in collapsed
    assert "layer2.0 (BasicBlock)" in collapsed  # it has a shortcut conv: not like the others
    assert "layer1.2 (BasicBlock)" not in collapsed
    assert "layer1.2 (BasicBlock)" in s.render(depth=2, collapse=False)


def test_json_and_csv_hold_every_row():
    s = summary("resnet20")
    data = json.loads(s.render("json"))
    assert data["total_params"] == 269722 and len(data["layers"]) == len(s.rows)
    assert data["flow"].startswith("32x32x3 -> conv1")
    rows = list(csv.DictReader(io.StringIO(s.render("csv"))))
    assert len(rows) == len(s.rows) and rows[0]["params"] == "269722"


def test_rich_rendering():
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(summary("lenet"))
    out = console.file.getvalue()
    assert "conv1 (Conv2d)" in out and "Total parameters: 62,006" in out


# --------------------------------------------------------------------------- CLI
def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_show_lenet_default_input_and_flow():
    result = invoke("show", "lenet")
    assert result.exit_code == 0 and "Total parameters: 62,006" in result.output
    assert "conv1 (Conv2d)" in result.output and "[1, 6, 28, 28]" in result.output
    flow = invoke("show", "lenet", "--flow")
    assert flow.output.strip() == LENET_FLOW


def test_cli_show_formats_batch_and_dtype():
    data = json.loads(invoke("show", "lenet", "--format", "json", "--batch", "B").output)
    assert data["forward_flops"] == "1303440*B"
    md = invoke("show", "resnet20", "--format", "markdown", "--depth", "1", "--dtype", "fp16").output
    assert md.startswith("**ResNet (resnet20)") and "| conv1 (Conv2d) |" in md.replace("\u00a0", "")
    assert "Memory (float16)" in md
    rows = list(csv.reader(io.StringIO(invoke("show", "lenet", "--format", "csv").output)))
    assert rows[0][0] == "name" and len(rows) == 7


def test_cli_user_file_with_input(tmp_path):
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\n"
        "class Net(nn.Sequential):\n"
        "    def __init__(self, width=8):\n"
        "        super().__init__(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))\n")
    result = invoke("show", f"{tmp_path / 'net.py'}:Net", "--input", "4", "--opt", "width=5")
    assert result.exit_code == 0 and "[1, 5]" in result.output and "Total parameters: 37" in result.output


@pytest.mark.slow  # a fresh interpreter: the real exit code and stderr
def test_cli_bad_input_one_line_partial_rows_on_stdout():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "torchsmith", "show", "lenet", "--input", "3x64x64"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: LeNet failed on input [1, 3, 64, 64]: fc1 expects 400")
    assert "conv2 (Conv2d)" in proc.stdout and "FAILED" in proc.stdout


def test_cli_symbolic_batch_that_does_not_fit_is_one_line_without_torch_log(tmp_path, caplog):
    (tmp_path / "net.py").write_text("import torch.nn as nn\nclass Net(nn.Sequential):\n"
                                     "    def __init__(self):\n        super().__init__(nn.Linear(4, 2))\n")
    result = CliRunner().invoke(main, ["show", "net.py:Net", "--input", "5", "--batch", "B"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: 0 (Linear) failed on input [B, 5]; it expects input of shape (*, 4)")
    # Fake tensors log the op's traceback (to stderr, in a terminal) before raising it; nothing of it may remain.
    assert not [r for r in caplog.records if r.name.startswith("torch._subclasses")], caplog.text[:2000]


def test_cli_user_file_that_exits_on_import_is_an_error_not_a_silent_exit(tmp_path):
    (tmp_path / "script.py").write_text("import sys\nsys.exit(3)\n")
    result = CliRunner().invoke(main, ["show", "script.py:Net"])
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.stderr.strip() == ("error: importing 'script.py' called sys.exit(3); put its script code under "
                                     "`if __name__ == '__main__':`")


def test_user_file_importing_its_sibling_module(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "blocks_for_test.py").write_text(
        "import torch.nn as nn\nclass Block(nn.Sequential):\n"
        "    def __init__(self):\n        super().__init__(nn.Linear(4, 4), nn.ReLU())\n")
    (tmp_path / "models" / "net.py").write_text(
        "import torch.nn as nn\nfrom blocks_for_test import Block\nclass Net(nn.Sequential):\n"
        "    default_input_size = (4,)\n    def __init__(self):\n        super().__init__(Block(), nn.Linear(4, 2))\n")
    path_before = list(sys.path)
    try:
        result = invoke("show", "models/net.py:Net")  # run from the folder above, as `python models/net.py` would
        assert result.exit_code == 0, result.output
        assert "Total parameters: 30" in result.output and "0 (Block)" in result.output
        assert sys.path == path_before  # the folder was importable only while the file ran
    finally:
        sys.modules.pop("blocks_for_test", None)


def test_cli_bad_default_input_size_is_one_line(tmp_path):
    (tmp_path / "net.py").write_text("import torch.nn as nn\nclass Net(nn.Linear):\n    default_input_size = 32\n"
                                     "    def __init__(self):\n        super().__init__(32, 2)\n")
    result = invoke("show", f"{tmp_path / 'net.py'}:Net")
    assert result.exit_code == 1 and "internal error" not in result.output
    assert "Net.default_input_size is 32; it should be a non-empty tuple" in result.output


def test_package_exports():
    assert torchsmith.summary is summary and isinstance(summary("lenet"), torchsmith.ModelSummary)


def test_input_size_is_without_the_batch_and_a_batched_size_is_named() -> None:
    """input_size means one sample's shape, as in check/export/fit; the batch is batch_size. A size written the
    torchinfo way, with the batch in front, fails with a message that says how to write it."""
    s = summary("lenet", (3, 32, 32), batch_size=4)
    assert s.output_shapes == (4, 10) and list(s.rows[0].input_shapes) == [(4, 3, 32, 32)]
    assert summary("lenet").forward_flops == summary("lenet", (3, 32, 32)).forward_flops
    with pytest.raises(ShapeError, match=r"without the batch dimension: input_size=\(3, 32, 32\), batch_size=1"):
        summary("lenet", (1, 3, 32, 32))
