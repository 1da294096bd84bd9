"""A library's own hooks survive torchsmith: transformers installs its output-capturing hooks on a model's first
forward and marks the model as hooked; a probe that set the hooks aside used to keep the mark and lose the hooks,
so SegFormer's decode head (which reads the captured hidden states) failed in ``summary`` and ``check`` and every
later forward of the user's own model. Each read-only call on a fresh model must leave it able to run as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torchsmith as ts
from test_handwritten import module_layout

transformers = pytest.importorskip("transformers")

SIZE = (3, 32, 32)


def _segformer() -> torch.nn.Module:
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
        decoder_hidden_size=32, num_labels=3, patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2])
    torch.manual_seed(0)
    return transformers.SegformerForSemanticSegmentation(config).eval()


@pytest.mark.parametrize("call", ["summary", "check", "export", "memory"])
def test_a_fresh_segformer_runs_after_each_read_only_call(call: str, tmp_path: Path) -> None:
    model = _segformer()
    layout = module_layout(model)
    if call == "summary":
        assert ts.summary(model, SIZE).total_params == sum(p.numel() for p in model.parameters())
    elif call == "check":
        report = ts.check(model, SIZE)
        assert not [f for f in report.findings if f.severity in ("error", "warning")], str(report)
    elif call == "export":
        assert ts.export(model, tmp_path / "m.pt2", input_size=SIZE, timing_runs=1).passed
    else:
        assert ts.memory(model, SIZE, batch_size=2, optimizer="sgd").peak > 0
    assert module_layout(model) == layout  # no mark left behind, no hook lost or added
    x = torch.randn(2, *SIZE)
    assert model(x).logits.shape == (2, 3, 8, 8)  # the decode head still gets the captured hidden states
