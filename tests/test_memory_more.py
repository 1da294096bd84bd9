"""ts.memory with activation checkpointing and on the hand-written corpus, against a real CPU step; a 405B config.

The reference is the one of ``tests/test_memory.py`` (a TorchDispatchMode counting live storages over the second of
two real steps, ``saved_tensors_hooks`` for what the forward keeps); checkpointing is applied to the real model
by the test's own wrapper (``torch.utils.checkpoint``, non-reentrant), not torchsmith's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchsmith as ts
from handwritten_models import VAE, AudioConv1d, CharRNN, GRUClassifier, HandViT, SmallResNet, TabularMLP, TinyGPT, UNet
from test_memory import _real_peak, _real_saved


def _input(size: tuple[int, ...], batch: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randint(0, 40, (batch, *size)) if dtype == torch.long else torch.randn(batch, *size)


def _check(model: nn.Module, size: tuple[int, ...], batch: int, dtype: torch.dtype, optimizer: str,
           checkpointing: bool = False) -> ts.MemoryPlan:
    plan = ts.memory(model, size, batch_size=batch, input_dtype=dtype, optimizer=optimizer,
                     checkpointing=checkpointing)
    x = _input(size, batch, dtype)
    names = tuple(plan.checkpointing)
    real = _real_peak(model, x, optimizer, "fp32", names)
    assert abs(plan.peak / real - 1) < 0.05, (plan.peak, real)
    saved = _real_saved(model, x, names)
    assert abs(plan.activations / saved - 1) < 0.01, (plan.activations, saved)
    return plan


#: (name, builder, one sample's size, batch, dtype): models with repeated blocks to checkpoint.
BLOCKS = [
    ("hand-written GPT, 4 blocks", lambda: TinyGPT(layers=4), (16,), 4, torch.long),
    ("hand-written ViT", HandViT, (3, 32, 32), 4, torch.float32),
    ("hand-written ResNet", SmallResNet, (3, 32, 32), 4, torch.float32),
]


@pytest.mark.parametrize("name,build,size,batch,dtype,optimizer", [
    (*BLOCKS[0], "sgd"), (*BLOCKS[0], "adamw"), (*BLOCKS[1], "adamw"), (*BLOCKS[2], "sgd")],
    ids=["GPT-sgd", "GPT-adamw", "ViT-adamw", "ResNet-sgd"])
def test_checkpointing_matches_a_real_checkpointed_step(name: str, build: Any, size: tuple[int, ...], batch: int,
                                                         dtype: torch.dtype, optimizer: str) -> None:
    torch.manual_seed(0)
    model = build()
    plain = ts.memory(model, size, batch_size=batch, input_dtype=dtype, optimizer=optimizer)
    plan = _check(model, size, batch, dtype, optimizer, checkpointing=True)
    assert plan.checkpointing and plan.activations < plain.activations


#: Six kinds a user brings: a CNN, an LSTM language model (oneDNN's kernel and its workspace), a GRU, a VAE, a
#: U-Net with skip concatenations, a conv1d audio net, a tabular MLP with BatchNorm and Dropout.
CORPUS = [
    ("CNN (SmallResNet)", SmallResNet, (3, 32, 32), 4, torch.float32),
    ("LSTM (CharRNN)", CharRNN, (24,), 4, torch.long),
    ("GRU classifier", GRUClassifier, (16,), 4, torch.long),
    ("VAE", VAE, (1, 28, 28), 8, torch.float32),
    ("U-Net", UNet, (1, 32, 32), 4, torch.float32),
    ("audio Conv1d", AudioConv1d, AudioConv1d.INPUT, 4, torch.float32),
    ("tabular MLP", TabularMLP, (12,), 16, torch.float32),
]


@pytest.mark.parametrize("name,build,size,batch,dtype,optimizer",
                         [(*c, opt) for i, c in enumerate(CORPUS) for opt in ("sgd", "adamw")
                          if c[0].startswith("LSTM") or opt == ("sgd", "adamw")[i % 2]],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_handwritten_models_match_a_real_step(name: str, build: Any, size: tuple[int, ...], batch: int,
                                              dtype: torch.dtype, optimizer: str) -> None:
    torch.manual_seed(0)
    _check(build(), size, batch, dtype, optimizer)


def test_a_405b_decoder_config_plans(tmp_path: Path) -> None:
    """Llama-3.1-405B's dimensions, planned from its config.json alone (timed in benchmarks/bench_memory.py)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(hidden_size=16384, num_hidden_layers=126, num_attention_heads=128,
                                      num_key_value_heads=8, intermediate_size=53248, vocab_size=128256,
                                      tie_word_embeddings=False)
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["num_hidden_layers"] == 126
    plan = ts.memory(f"hf:{tmp_path}/config.json:ForCausalLM", (1024,), input_dtype="long", optimizer="adamw")
    n = plan.by_module[0].parameters // 4  # fp32 bytes of the whole model
    layer = 4 * 16384**2 // 128 * (128 + 128 + 8 + 8) // 1 // 4 + 3 * 16384 * 53248 + 2 * 16384
    assert n == 2 * 128256 * 16384 + 126 * layer + 16384  # embeddings, head, blocks, final norm
    assert abs(n / 405.85e9 - 1) < 0.001
    assert plan.parameters == plan.gradients == 4 * n and plan.optimizer_state >= 8 * n
    assert 16 * n < plan.peak < 16.2 * n  # AdamW in fp32: weights, gradients, two moments, and a step's temporaries
    assert plan.kv_cache == 2 * 126 * 8 * 128 * 1024 * 4  # K and V, every layer, 8 kv heads of 128, fp32
