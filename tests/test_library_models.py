"""Library models by name: hf:NAME[:HEAD], hf:PATH/config.json, timm:NAME, torchvision:NAME (random weights)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import torchsmith as ts
from torchsmith import library
from torchsmith.cli import main
from torchsmith.errors import ConfigError, ModelLoadError, UnknownNameError

transformers = pytest.importorskip("transformers", reason="needs the hf extra: pip install 'torchsmith[hf]'")

BERT = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
BERT_OPTS = [arg for k, v in BERT.items() for arg in ("--opt", f"{k}={v}")]


def _importable(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:
        __import__(name)
    except Exception:  # installed but broken (built for another torch)
        return False
    return True


def test_hf_by_name_records_what_rebuilds_it():
    model = ts.resolve_model("hf:bert", **BERT)
    assert type(model).__name__ == "BertModel" and model.config.num_hidden_layers == 1
    assert model.torchsmith_arch == {"name": "hf:bert", "kwargs": BERT}
    head = ts.create_model("hf:bert:ForSequenceClassification", **BERT, num_labels=3)
    assert type(head).__name__ == "BertForSequenceClassification" and head.classifier.out_features == 3
    assert type(ts.create_model("hf:gpt2:GPT2LMHeadModel", n_layer=1, n_embd=32, n_head=2)).__name__ \
        == "GPT2LMHeadModel"


def test_hf_model_saves_and_loads_bit_identical(tmp_path: Path):
    model = ts.create_model("hf:bert", **BERT).eval()
    ts.save(model, tmp_path / "bert.safetensors")
    loaded = ts.load(tmp_path / "bert.safetensors").eval()
    ids = torch.randint(0, 100, (2, 8))
    assert torch.equal(model(ids).last_hidden_state, loaded(ids).last_hidden_state)


@pytest.mark.parametrize("ref,error,match", [
    ("hf:lama", UnknownNameError, "unknown transformers model type 'lama'; did you mean 'llama'"),
    ("hf:bert:ForNothing", UnknownNameError, "unknown transformers head 'ForNothing'"),
    ("hf:", ConfigError, "hf: needs a model type or a config file"),
    ("hf:missing/config.json", ModelLoadError, "does not exist; give the path of a transformers config.json"),
])
def test_bad_hf_references_are_one_clear_error(ref, error, match):
    with pytest.raises(error, match=match):
        ts.resolve_model(ref)


def test_bad_config_values_name_the_model():
    with pytest.raises(ConfigError, match="building hf:bert failed"):
        ts.resolve_model("hf:bert", hidden_size=30, num_attention_heads=4, num_hidden_layers=1)


def test_a_model_too_big_for_memory_is_refused_with_advice(monkeypatch):
    monkeypatch.setattr(library, "_MEMORY_SHARE", 1e-9)  # as if this machine had a few bytes of memory
    with pytest.raises(ConfigError, match=r"hf:bert has 0\.0B parameters.*`torchsmith show` summarises it on meta"):
        ts.resolve_model("hf:bert", **BERT)
    with torch.device("meta"):  # on meta nothing is allocated, so nothing is refused
        assert ts.resolve_model("hf:bert", **BERT).embeddings.word_embeddings.weight.is_meta


def test_cli_show_hf_model_by_name():
    result = CliRunner().invoke(main, ["show", "hf:bert", *BERT_OPTS], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    params = sum(p.numel() for p in ts.create_model("hf:bert", **BERT).parameters())
    assert f"Total parameters: {params:,}" in result.output and "Ran on: meta" in result.output
    assert "[1, 32]" in result.output  # 32 token ids from the config, at batch 1


def test_cli_unknown_hf_model_is_one_line():
    result = subprocess.run([sys.executable, "-m", "torchsmith", "show", "hf:lama"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "did you mean 'llama'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


LLAMA_7B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "vocab_size": 32000, "architectures": ["LlamaForCausalLM"],
            "transformers_version": "4.31.0"}


def llama_params(v: int, h: int, i: int, layers: int, head: bool) -> int:
    # embeddings + per layer (q, k, v, o projections; gate, up, down; two RMSNorms) + final norm (+ lm_head)
    return v * h + layers * (4 * h * h + 3 * h * i + 2 * h) + h + (v * h if head else 0)


@pytest.mark.timeout(120)
def test_a_7b_config_json_is_summarised_on_meta_in_seconds(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_7B))
    start = time.perf_counter()
    s = ts.summary(f"hf:{tmp_path / 'config.json'}:ForCausalLM", depth=1)
    seconds = time.perf_counter() - start
    assert s.total_params == llama_params(32000, 4096, 11008, 32, head=True) == 6_738_415_616  # Llama-2-7B
    # On meta (nothing allocated); "in seconds" is a hang bound a loaded 2-core machine cannot miss, not a benchmark.
    assert s.ran_on == "meta" and s.output_shapes == {"logits": (1, 32, 32000)} and seconds < 100
    folder = ts.summary(f"hf:{tmp_path}", input_size=(8,), depth=0)  # a folder holding config.json: no head
    assert folder.total_params == llama_params(32000, 4096, 11008, 32, head=False)


def test_config_json_options_override_and_the_record_is_self_contained(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_7B))
    small = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
             "vocab_size": 100}
    model = ts.resolve_model(f"hf:{tmp_path / 'config.json'}", **small)
    assert sum(p.numel() for p in model.parameters()) == llama_params(100, 64, 128, 1, head=False)
    arch = model.torchsmith_arch
    assert arch["name"] == "hf:llama" and arch["kwargs"]["hidden_size"] == 64 and "transformers_version" not in \
        arch["kwargs"]
    (tmp_path / "config.json").unlink()  # the record does not need the file
    rebuilt = ts.create_model(arch["name"], **arch["kwargs"])
    assert rebuilt.state_dict().keys() == model.state_dict().keys()


def test_export_of_a_bert_to_pt2_feeds_token_ids(tmp_path: Path):
    model = transformers.BertModel(transformers.BertConfig(**BERT))
    report = ts.export(model, tmp_path / "bert.pt2", timing_runs=1)
    assert report.passed and report.input_shape == (2, 32) and (tmp_path / "bert.pt2").is_file()
    assert "token ids < 30522" in report.notes[-1]
    program = torch.export.load(str(tmp_path / "bert.pt2")).module()
    ids = torch.randint(0, 30522, (3, 32))
    with torch.no_grad():
        assert torch.allclose(program(ids).last_hidden_state, model.eval()(ids).last_hidden_state, atol=1e-5)


def test_cli_features_on_a_token_model():
    result = CliRunner().invoke(main, ["features", "hf:bert", *BERT_OPTS, "--layers", "encoder.layer.*",
                                       "--input", "16"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "encoder.layer.0" in result.output and "[1, 16, 32]" in result.output


@pytest.mark.skipif(_importable("timm"), reason="timm is installed: the missing-package message cannot show")
def test_missing_timm_names_the_pip_command():
    with pytest.raises(ModelLoadError, match=r"timm:convnext_atto needs timm.*pip install timm"):
        ts.resolve_model("timm:convnext_atto")


@pytest.mark.skipif(_importable("torchvision"), reason="torchvision is installed: the missing-package message "
                                                      "cannot show")
def test_missing_torchvision_names_the_pip_command():
    result = CliRunner().invoke(main, ["show", "torchvision:resnet50"])
    assert result.exit_code != 0 and "pip install torchvision" in result.output


@pytest.mark.skipif(not _importable("timm"), reason="timm is not installed (pip install timm)")
def test_timm_model_by_name():
    model = ts.resolve_model("timm:convnext_atto", num_classes=10)
    assert model.torchsmith_arch == {"name": "timm:convnext_atto", "kwargs": {"num_classes": 10}}
    assert ts.summary(model).output_shapes == (1, 10)
    with pytest.raises(UnknownNameError, match="unknown timm model"):
        ts.resolve_model("timm:convnext_atoo")


@pytest.mark.skipif(not _importable("torchvision"), reason="torchvision is not installed (pip install torchvision)")
def test_torchvision_model_by_name():
    model = ts.resolve_model("torchvision:resnet18", num_classes=10)
    assert model.torchsmith_arch == {"name": "torchvision:resnet18", "kwargs": {"num_classes": 10}}
    assert ts.summary(model, (3, 64, 64)).output_shapes == (1, 10)


@pytest.mark.skipif(not _importable("torchvision"), reason="torchvision is not installed (pip install torchvision)")
def test_torchvision_models_take_the_size_their_weights_publish():
    """No download: the crop size of the default weights' transforms. Inception v3's auxiliary head needs its 299
    in train mode (at 224 the doctor's forward failed); MaxVit is built for its 224 (other sizes break its
    window partition: a declared size, noted, not an error); a MNASNet's state dict carries its version."""
    from torchsmith.contract import input_spec

    inception = ts.resolve_model("torchvision:inception_v3")
    assert input_spec(inception).size == (3, 299, 299)
    assert not ts.check(inception, checks="signal,state-dict").errors
    maxvit = ts.resolve_model("torchvision:maxvit_t")
    report = ts.check(maxvit, checks="input-sizes")
    assert not report.errors and "fixed-input-size" in {f.id for f in report.findings}
    assert not ts.check(ts.resolve_model("torchvision:mnasnet0_5"), checks="state-dict").errors
    regnet = "torchvision:regnet_y_400mf"  # its constructor calls .tolist(): built for real, not on meta
    assert ts.summary(regnet).total_params == sum(p.numel() for p in ts.resolve_model(regnet).parameters())
