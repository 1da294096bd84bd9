"""The model contract: input_spec, rebuild, device_dtype, output_tensors and primary_output on any model."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import torch
from torch import nn

import torchsmith as ts
from torchsmith.contract import device_dtype, input_spec, output_tensors, primary_output, rebuild, rebuild_source
from torchsmith.errors import ConfigError, ShapeError

transformers = pytest.importorskip("transformers", reason="needs the hf extra: pip install 'torchsmith[hf]'")

TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def hf(name: str, **options) -> nn.Module:
    config = transformers.AutoConfig.for_model(name, **options)
    return transformers.AutoModel.from_config(config)


def small_cnn(channels: int = 3, side: int = 32) -> nn.Module:
    # Flatten + Linear: this CNN takes exactly side x side, so the contract must find that size, not guess it.
    out = side - 2
    return nn.Sequential(nn.Conv2d(channels, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * out * out, 10))


class NormFirst(nn.Module):
    """An Embedding registered after a norm: the norm is first in modules() but the ids go to the Embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.embed = nn.Embedding(100, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(ids))


SPEC = {"input": [3, 8, 8], "layers": [{"conv": {"out": 4, "kernel": 3}}, "relu", "flatten", {"linear": 5}]}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "zoo": ts.create_model("lenet"),
        "spec": ts.build(SPEC),
        "cnn": small_cnn(),
        "bert": hf("bert", **TINY),
        "gpt2": hf("gpt2", n_layer=1, n_embd=32, n_head=2),
        "vit": hf("vit", **TINY, image_size=32, patch_size=8),
        "resnet": hf("resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    }


@pytest.mark.parametrize("name,size,kind,vocab,fixed,source", [
    ("zoo", (3, 32, 32), "image", None, False, "default_input_size"),
    ("spec", (3, 8, 8), "image", None, False, "default_input_size"),
    ("cnn", (3, 32, 32), "image", None, False, "first layer (Conv2d)"),
    ("bert", (32,), "tokens", 30522, False, "config.vocab_size, max_position_embeddings"),
    ("gpt2", (32,), "tokens", 50257, False, "config.vocab_size, max_position_embeddings"),
    ("vit", (3, 32, 32), "image", None, True, "config.image_size"),  # learned position embeddings: one size
    ("resnet", (3, 32, 32), "image", None, False, "first layer (Conv2d)"),
])
def test_input_spec_reads_each_kind_of_model(models, name, size, kind, vocab, fixed, source):
    spec = input_spec(models[name])
    assert (spec.size, spec.kind, spec.vocab_size, spec.fixed, spec.source) == (size, kind, vocab, fixed, source)
    assert spec.dtype == (torch.long if kind == "tokens" else torch.float32)
    models[name].eval()(spec.example(2))  # the contract's input runs the model


def test_a_given_size_keeps_the_model_s_token_ids(models):
    spec = input_spec(models["bert"], (12,))
    assert (spec.size, spec.kind, spec.vocab_size, spec.source) == ((12,), "tokens", 30522, "given")
    assert input_spec(models["bert"], "12").size == (12,)  # the CLI's text form too
    assert input_spec(models["vit"], (3, 32, 32)).fixed and not input_spec(models["vit"], (3, 64, 64)).fixed
    assert input_spec(models["cnn"], (3, 64, 64)).kind == "image"
    floats = input_spec(models["bert"], (12,), input_dtype=torch.float32)  # the caller's dtype wins
    assert floats.kind == "tensor" and floats.vocab_size is None


def test_first_layer_rules():
    assert input_spec(small_cnn(1, 28)).size == (1, 28, 28)  # an MNIST CNN: the probe finds 28, not 32
    assert input_spec(nn.Linear(7, 2)).size == (7,)
    spec = input_spec(NormFirst())
    assert (spec.kind, spec.vocab_size, spec.size) == ("tokens", 100, (16,))
    assert input_spec(NormFirst(), (5,)).vocab_size == 100


def test_unknown_input_says_how_to_give_it():
    with pytest.raises(ConfigError, match=r"input size of Sequential is not known.*input_size=\(3, 32, 32\).*"
                                          r"--input 3x32x32"):
        input_spec(nn.Sequential(nn.Flatten()))
    with pytest.raises(ConfigError, match="positive integers"):
        input_spec(nn.Linear(2, 2), (0, 3))
    bad = nn.Linear(2, 2)
    bad.default_input_size = 32  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="default_input_size is 32; it should be a non-empty tuple"):
        input_spec(bad)


def test_examples_are_reproducible_and_valid(models):
    spec = input_spec(models["bert"], (6,))
    a, b = spec.example(3, seed=1), spec.example(3, seed=1)
    assert torch.equal(a, b) and a.dtype == torch.long and a.shape == (3, 6)
    assert 0 <= int(a.min()) and int(a.max()) < 30522 and not torch.equal(a, spec.example(3, seed=2))
    image = input_spec(models["zoo"]).example(2, dtype=torch.bfloat16)
    assert image.shape == (2, 3, 32, 32) and image.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="batch must be a positive integer"):
        spec.example(0)


@pytest.mark.parametrize("name,source", [
    ("zoo", "zoo record: create_model('lenet')"),
    ("spec", "spec record"),
    ("cnn", "deep copy, re-initialised"),
    ("bert", "transformers BertModel(config)"),
    ("vit", "transformers ViTModel(config)"),
    ("resnet", "transformers ResNetModel(config)"),
])
def test_rebuild_gives_the_same_keys_and_fresh_values(models, name, source):
    model = models[name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = rebuild(model)
    assert rebuild_source(model) == source and fresh is not model and type(fresh) is type(model)
    old, new = model.state_dict(), fresh.state_dict()
    assert list(new) == list(old) and all(new[k].shape == old[k].shape for k in old)
    weights = [k for k, v in old.items() if v.is_floating_point() and v.dim() >= 2]
    assert weights and all(not torch.equal(new[k], old[k]) for k in weights)  # every weight matrix redrawn
    assert all(torch.equal(before[k], old[k]) for k in old)  # the model itself is untouched


def test_rebuild_of_a_copy_keeps_constant_inits_and_redraws_the_rest():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.full((4,), 1e-6))  # layer scale: a constant on purpose
            self.token = nn.Parameter(torch.randn(4))  # no reset_parameters owns it

    model = Scaled()
    fresh = rebuild(model)
    assert torch.equal(fresh.scale, model.scale) and not torch.equal(fresh.token, model.token)
    assert not torch.equal(fresh.fc.weight, model.fc.weight)


def test_rebuild_on_meta_stays_on_meta():
    with torch.device("meta"):
        model = ts.create_model("lenet")
    fresh = rebuild(model)
    assert device_dtype(fresh) == (torch.device("meta"), torch.float32)


def test_device_dtype():
    assert device_dtype(nn.ReLU()) == (torch.device("cpu"), torch.float32)
    assert device_dtype(nn.Linear(2, 2).to(torch.float64)) == (torch.device("cpu"), torch.float64)
    assert device_dtype(nn.Embedding(3, 2).half()) == (torch.device("cpu"), torch.float16)


Pair = collections.namedtuple("Pair", "logits extra")


@dataclasses.dataclass
class Out:
    hidden: torch.Tensor
    logits: torch.Tensor | None = None


def test_output_tensors_and_primary_output_on_every_structure(models):
    a, b, c = torch.zeros(1), torch.ones(2), torch.full((3,), 2.0)
    assert output_tensors(a) == [a] and primary_output(a) is a
    assert output_tensors({"x": a, "y": (b, None, [c])}) == [a, b, c]
    assert output_tensors(Pair(a, b)) == [a, b] and primary_output(Pair(a, b)) is a
    assert output_tensors(Out(a, b)) == [a, b] and primary_output(Out(a, b)) is b  # logits first
    assert primary_output({"last_hidden_state": c, "logits": a}) is a
    assert output_tensors((a, "text", 3, object())) == [a]  # non-tensors are skipped
    bert = models["bert"].eval()
    out = bert(input_spec(bert, (4,)).example(2))
    assert isinstance(out, transformers.utils.ModelOutput)
    assert primary_output(out) is out.last_hidden_state and output_tensors(out)[1] is out.pooler_output
    gpt2 = models["gpt2"].eval()
    out = gpt2(input_spec(gpt2, (4,)).example(2), use_cache=True)  # the output holds a DynamicCache
    assert primary_output(out).shape == (2, 4, 32)
    with pytest.raises(ShapeError, match="holds no tensor"):
        primary_output((None, "x"))


def test_probes_leave_the_model_as_they_found_it():
    calls: list[str] = []
    net = NormFirst().train()
    cnn = small_cnn(1, 28).train()
    for m in (net.embed, cnn[0]):
        m.register_forward_hook(lambda *_: calls.append("hook"))
    cnn[1].eval()  # a module in its own mode
    assert input_spec(net).vocab_size == 100 and input_spec(cnn).size == (1, 28, 28)  # both ran meta probes
    assert calls == []  # the user's hooks saw no probe
    assert net.training and cnn.training and not cnn[1].training
    net(torch.zeros(1, 3, dtype=torch.long))
    assert calls == ["hook"]  # and are still registered
