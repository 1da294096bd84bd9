"""torchsmith.check on healthy library models (transformers, random weights, tiny configs): no false errors,
every check runs (the state-dict round trip included), and the rules still catch the defects they exist for."""

from __future__ import annotations

import sys
import warnings
from collections import namedtuple
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import broken_models as bm
import torchsmith as ts

DEFAULT_CHECKS = [c.name for c in ts.list_checks() if c.default]

transformers = pytest.importorskip("transformers")

_ENC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64, vocab_size=100)
# Decoders keep their default use_cache=True: the output then holds a DynamicCache, as a user's would.
_DEC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
            max_position_embeddings=64, vocab_size=100)
_VIT = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)

#: model_type -> config options. What the doctor used to report on these was false (docs/doctor.md lists each
#: false alarm and the rule that replaced it).
LIBRARY: dict[str, dict[str, Any]] = {
    "convnext": dict(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, image_size=32),  # layer scale 1e-6
    "resnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    "mobilenet_v2": dict(depth_multiplier=0.35, image_size=32),
    "regnet": dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8),
    "vit": _VIT,  # learned position embeddings: one size only
    "deit": _VIT,
    "dinov2": _VIT,  # trunc_normal_ init: the round trip's rebuild must not loop
    "swin": dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4),
    "bert": _ENC,
    "mobilebert": dict(_ENC, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16, intermediate_size=32),
    "gpt2": dict(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=100),
    "llama": _DEC,  # a stateless kernel-function table in a dict
    "mistral": _DEC,
    "qwen2": _DEC,
}
DECODERS = ("gpt2", "llama", "mistral", "qwen2")


def _build(model_type: str) -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.AutoConfig.for_model(model_type, **LIBRARY[model_type])
        return transformers.AutoModel.from_config(config).eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Two cores shared with other jobs: one intra-op thread keeps these small models from oversubscribing.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model_type", list(LIBRARY))
def test_library_model_has_no_error_and_every_check_runs(model_type):
    model = _build(model_type)
    report = ts.check(model)  # the input comes from the model contract (config.image_size, vocab_size)
    assert report.errors == [], str(report)
    assert report.skipped == {}, report.skipped
    assert set(report.checks) == set(DEFAULT_CHECKS) and "state-dict" in report.seconds
    ids = {f.id for f in report.findings}
    assert not ids & {"symmetric-init", "unregistered-submodule", "not-scriptable", "not-exportable"}, str(report)
    if model_type in ("vit", "deit", "dinov2"):
        (fixed,) = report.by_id("fixed-input-size")
        assert fixed.severity == "info" and "config.image_size" in fixed.message
    if model_type in DECODERS:
        (note,) = report.by_id("export-needs-config")
        assert note.severity == "info" and "DynamicCache" in note.message and "use_cache=False" in note.fix
        assert note.observed["verified"] is True and model.config.use_cache is True  # the user's config is kept


def test_fixed_size_declared_by_the_config_is_a_note():
    # LeViT's attention biases are indexed for the resolution in its config: 2x fails, and says so as a note.
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        "levit", image_size=64, hidden_sizes=[16, 32, 48], num_attention_heads=[1, 2, 3], depths=[1, 1, 1],
        key_dim=[8, 8, 8], mlp_ratio=[2, 2, 2], attention_ratio=[2, 2, 2])
    report = ts.check(transformers.AutoModel.from_config(config).eval(), checks="input-sizes")
    assert [(f.id, f.severity) for f in report.findings] == [("fixed-input-size", "info")], str(report)
    assert "(config.image_size)" in report.findings[0].message and "3x128x128" in report.findings[0].message


# --------------------------------------------------------------------------- the rules still bite
def test_layer_scale_constant_passes_but_symmetric_mlp_fails():
    assert ts.check(bm.HealthyLayerScale(), bm.HealthyLayerScale.INPUT, checks="init-symmetry").findings == []
    report = ts.check(bm.ConstantMLP(), bm.ConstantMLP.INPUT, checks="init-symmetry")
    (f,) = report.errors
    assert (f.id, f.module) == ("symmetric-init", "fc1") and "32 of 32 rows" in f.message
    assert "all 0.1" in f.message and f.observed["identical_units"] == 32


def test_hand_written_lenet_with_a_fixed_view_still_errors():
    report = ts.check(bm.TutorialNet(), bm.TutorialNet.INPUT, checks="input-sizes")
    (f,) = report.errors
    assert (f.id, f.module) == ("hard-coded-size", "fc1") and "expects 400 input features" in f.message


def test_stateless_module_in_a_dict_is_not_a_finding_but_a_stateful_one_is():
    assert ts.check(bm.HealthyFunctionTable(), (16,), checks="registration").findings == []
    model = bm.HealthyFunctionTable()
    model.kernels["drop"] = nn.Dropout(0.5)  # train/eval would not reach it: still an error
    report = ts.check(model, (16,), checks="registration")
    assert [(f.id, f.module, f.severity) for f in report.findings] == [
        ("unregistered-submodule", "kernels.drop", "error")]


def test_scriptable_is_opt_in():
    assert "scriptable" not in DEFAULT_CHECKS and "graph-breaks" not in DEFAULT_CHECKS
    report = ts.check(bm.NotScriptable(), (16,), checks="all")
    assert ("not-scriptable", "act") in {(f.id, f.module) for f in report.findings}
    assert not ts.check(bm.NotScriptable(), (16,)).by_id("not-scriptable")


# --------------------------------------------------------------------------- structured outputs
Pair = namedtuple("Pair", "main aux")


class _Nested(nn.Module):
    """Returns {"out": Pair(main, aux), "extra": [tensor]}; ``aux`` is the only path through ``side``."""

    def __init__(self, nan: bool = False, eval_dropout: bool = False, unused: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.side = nn.Linear(8, 4)
        self.spare = nn.Linear(8, 4)
        self.nan, self.eval_dropout, self.unused = nan, eval_dropout, unused

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        h = torch.tanh(self.fc(x))
        aux = self.side(h)
        if self.nan:
            aux = torch.log(aux - 10.0)  # negative: NaN in the nested output only
        if self.eval_dropout:
            aux = F.dropout(aux, 0.5, training=True)
        extra = [self.spare(h)] if not self.unused else []
        return {"out": Pair(h.sum(1, keepdim=True), aux), "extra": extra}


def test_nested_dict_and_named_tuple_outputs_are_read_by_every_check():
    clean = ts.check(_Nested(), (16,))
    assert clean.errors == [] and clean.warnings == [] and clean.skipped == {}, str(clean)
    nan = ts.check(_Nested(nan=True), (16,), checks="non-finite")
    assert ("non-finite-output", "") in {(f.id, f.module) for f in nan.errors}, str(nan)
    noisy = ts.check(_Nested(eval_dropout=True), (16,), checks="determinism")
    assert [f.id for f in noisy.errors] == ["nondeterministic-eval"], str(noisy)
    unused = ts.check(_Nested(unused=True), (16,), checks="unused-parameters")
    assert [(f.id, f.module) for f in unused.findings] == [("unused-parameter", "spare")], str(unused)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
