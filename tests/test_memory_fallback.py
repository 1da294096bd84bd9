"""Models fake tensors cannot run, planned on a real CPU step; and the summary's activations equal the plan's.

The families are transformers' own, built from small configs with random weights (no downloads): Wav2Vec2 and DETR
read a value (``.item()``), a Switch Transformer's router calls ``nonzero``, Mixtral's and Qwen2-MoE's experts run a
grouped matmul whose meta kernel wants bf16 (now shaped in bf16 on fake tensors, so they need no real step), Mamba
hands its conv kernel a tensor without an autograd node. Each plan is held to the independent reference of
``tests/test_memory.py`` (live storages over the second of two real steps; ``saved_tensors_hooks`` for what the
forward keeps), run on the test's own random inputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchsmith as ts
from handwritten_models import CharRNN, GRUClassifier, HandViT, TinyGPT
from test_memory import _real_peak, _real_saved

T = pytest.importorskip("transformers")


def _wav2vec2() -> nn.Module:
    return T.Wav2Vec2ForCTC(T.Wav2Vec2Config(
        vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2))


def _detr() -> nn.Module:
    return T.DetrForObjectDetection(T.DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False,
        backbone_config=T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
                                       out_features=["stage4"]),
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=5, num_labels=3))


class _Seq2Seq(nn.Module):
    """An encoder-decoder called as a training loop calls it: the same ids in, the decoder's ids shifted."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, ids: torch.Tensor) -> Any:
        return self.inner(input_ids=ids, decoder_input_ids=ids)


def _switch() -> nn.Module:
    return _Seq2Seq(T.SwitchTransformersForConditionalGeneration(T.SwitchTransformersConfig(
        vocab_size=99, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
        num_experts=4, encoder_sparse_step=1, decoder_sparse_step=1, use_cache=False)))


_DEC = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=64, use_cache=False)


def _mixtral() -> nn.Module:
    return T.MixtralForCausalLM(T.MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **_DEC))


def _qwen2_moe() -> nn.Module:
    return T.Qwen2MoeForCausalLM(T.Qwen2MoeConfig(moe_intermediate_size=16, shared_expert_intermediate_size=32,
                                                  num_experts=4, num_experts_per_tok=2, **_DEC))


def _mamba() -> nn.Module:
    return T.MambaForCausalLM(T.MambaConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, state_size=8,
                                            use_cache=False))


#: (name, builder, one sample's size, the op fake tensors cannot run: None when they now run it all)
FAMILIES = [
    ("wav2vec2", _wav2vec2, (1600,), "aten._local_scalar_dense"),
    ("detr", _detr, (3, 64, 64), "aten._local_scalar_dense"),
    ("switch", _switch, (8,), "aten.nonzero"),
    ("mixtral", _mixtral, (8,), None),  # its grouped matmul is shaped in bf16 on fake tensors (torchsmith._fake)
    ("qwen2-moe", _qwen2_moe, (8,), None),
    ("mamba", _mamba, (8,), None),
]


@pytest.mark.parametrize("name,build,size,op", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_a_model_fake_tensors_cannot_run_is_planned_on_a_real_step(name: str, build: Any, size: tuple[int, ...],
                                                                   op: str | None) -> None:
    torch.manual_seed(0)
    model = build()
    tokens = len(size) == 1 and size[0] < 100
    dtype = torch.long if tokens else torch.float32
    plan = ts.memory(model, size, batch_size=2, input_dtype=dtype, optimizer="adamw")
    x = torch.randint(0, 99, (2, *size)) if tokens else torch.randn(2, *size)
    real = _real_peak(model, x, "adamw", "fp32")
    saved = _real_saved(model, x)
    assert abs(plan.peak / real - 1) < 0.05, (plan.peak, real)
    # Switch's router sends each token to one expert by value, and the experts' inputs are what they save: over
    # seeds, one real forward saves 584,192 to 633,344 bytes (and the step measured follows an AdamW step).
    assert abs(plan.activations / saved - 1) < (0.06 if name == "switch" else 0.01), (plan.activations, saved)
    measured = [n for n in plan.notes if n.startswith("measured on a real CPU step")]
    if op is None:
        assert measured == []
    else:
        assert len(measured) == 1 and op in measured[0], plan.notes
        assert plan.when and sum(m.activations for m in plan.by_module if m.depth == 1) > 0  # type: ignore[misc]
        assert plan.peak_at(4) > plan.peak  # the peak's formula in the batch, from two real steps


def test_a_meta_model_fake_tensors_cannot_run_is_one_error_naming_the_op() -> None:
    with torch.device("meta"):
        model = _wav2vec2()
    with pytest.raises(ts.SummaryError, match=r"aten\._local_scalar_dense.*meta device.*real weights"):
        ts.memory(model, (1600,), batch_size=2)


class _Refuses(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + {}["missing"]  # a KeyError, on fake tensors and real ones alike


def test_any_other_failure_of_the_step_is_a_torchsmith_error_with_its_cause() -> None:
    with pytest.raises(ts.TorchsmithError, match="KeyError") as info:
        ts.memory(_Refuses(), (4,))
    assert isinstance(info.value.__cause__, KeyError)


def test_cli_plans_a_config_fake_tensors_cannot_run(tmp_path: Path) -> None:
    T.Wav2Vec2Config(vocab_size=32, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                     conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                     num_conv_pos_embedding_groups=2).save_pretrained(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "torchsmith", "show", f"hf:{tmp_path}/config.json", "--memory",
                           "--batch", "2", "--input", "1600", "--format", "json"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout)
    assert any("aten._local_scalar_dense" in n and n.startswith("measured on a real CPU step") for n in plan["notes"])
    assert plan["peak"] > plan["parameters"] + plan["gradients"] + plan["optimizer_state"]


def _llama() -> nn.Module:
    config = T.AutoConfig.for_model("llama", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                    num_key_value_heads=1, intermediate_size=64, vocab_size=128, use_cache=False)
    return T.AutoModelForCausalLM.from_config(config)


#: (name, builder, one sample's size, dtype). CharRNN is the LSTM (oneDNN's workspace, sized in torchsmith._fake),
#: the Llama the packed-sequence probe (a mask and repeated key/value heads on fake position ids without it).
SPREAD = [
    ("lenet", lambda: ts.create_model("lenet"), (3, 32, 32), torch.float32),
    ("CharRNN", CharRNN, (24,), torch.long),
    ("GRU", GRUClassifier, (16,), torch.long),
    ("hand-written GPT", TinyGPT, (16,), torch.long),
    ("transformers llama", _llama, (16,), torch.long),
    ("hand-written ViT", HandViT, (3, 32, 32), torch.float32),
]


@pytest.mark.parametrize("name,build,size,dtype", SPREAD, ids=[s[0] for s in SPREAD])
def test_the_summarys_activations_equal_the_plans(name: str, build: Any, size: tuple[int, ...],
                                                  dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    model = build()
    summary = ts.summary(model, size, batch_size=4, input_dtype=dtype)
    plan = ts.memory(model, size, batch_size=4, input_dtype=dtype)
    x = torch.randint(0, 40, (4, *size)) if dtype == torch.long else torch.randn(4, *size)
    assert summary.memory.activations == plan.activations == _real_saved(model, x)
