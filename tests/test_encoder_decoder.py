"""Encoder-decoders and other several-input library families built from small configs: T5 and BART get
``input_ids`` and ``decoder_input_ids`` unasked, Whisper log-mel features, CLIP ids and pixels, a
VisionEncoderDecoderModel pixels and decoder ids, DETR its image size; every command runs on them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import torchsmith as ts
from torchsmith.cli import main
from torchsmith.contract import model_inputs

transformers = pytest.importorskip("transformers", reason="the transformers extra is not installed")

T5 = dict(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16, vocab_size=128)
BART = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=128, max_position_embeddings=64)


def _build(arch: str, options: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(arch, **options)
    return transformers.AutoModelForSeq2SeqLM.from_config(config).eval()


@pytest.mark.parametrize("arch,options", [("t5", T5), ("bart", BART)], ids=["t5", "bart"])
def test_encoder_decoder_through_the_api(arch: str, options: dict, tmp_path: Path) -> None:
    model = _build(arch, options)
    inputs = model_inputs(model)
    assert inputs.keyword and inputs.names == ("input_ids", "decoder_input_ids")
    assert all(s.kind == "tokens" and s.vocab_size == 128 for s in inputs.specs)

    s = ts.summary(model)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    assert isinstance(s.forward_flops, int) and s.forward_flops > 0

    report = ts.check(model)
    assert report.errors == [], str(report)
    assert [f.id for f in report.infos if f.id.startswith("export")] == ["export-needs-config"]

    path = ts.save(model, tmp_path / "m.safetensors")
    fresh = _build(arch, options)
    ts.load_into(fresh, path)
    args, kwargs = inputs.example(2)
    with torch.no_grad():
        assert torch.equal(model(**kwargs).logits, fresh(**kwargs).logits)


def test_show_gives_an_encoder_decoder_both_inputs() -> None:
    opts = [item for k, v in T5.items() for item in ("--opt", f"{k}={v}")]
    result = CliRunner().invoke(main, ["show", "hf:t5:T5ForConditionalGeneration", *opts, "--depth", "0"])
    assert result.exit_code == 0, result.output
    assert "input (1, 32), (1, 32)" in result.output
    assert f"Total parameters: {sum(p.numel() for p in _build('t5', T5).parameters()):,}" in result.output


WHISPER = dict(vocab_size=99, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
               max_source_positions=30, max_target_positions=40, pad_token_id=1, bos_token_id=2, eos_token_id=3,
               decoder_start_token_id=2, use_cache=False)
CLIP = dict(text_config=dict(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=32),
            vision_config=dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64), projection_dim=16)


def _other(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if arch == "vision-encoder-decoder":  # TrOCR's shape: a ViT encoder, a GPT-2 decoder with cross-attention
        encoder = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=64)
        decoder = transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=1, n_head=2, add_cross_attention=True,
                                          is_decoder=True, use_cache=False)
        config = transformers.VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
        config.decoder_start_token_id = config.pad_token_id = 0
        return transformers.VisionEncoderDecoderModel(config).eval()
    if arch == "detr":  # a ResNet backbone from transformers; its masks call .item(), so meta cannot size it
        backbone = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
                                             out_features=["stage4"])
        return transformers.DetrForObjectDetection(transformers.DetrConfig(
            use_timm_backbone=False, backbone_config=backbone, use_pretrained_backbone=False, d_model=32,
            encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=5, num_labels=3)).eval()
    if arch == "whisper":
        return transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**WHISPER)).eval()
    return transformers.CLIPModel(transformers.CLIPConfig(**CLIP)).eval()


@pytest.mark.parametrize("arch,names,sizes", [
    ("whisper", ("input_features", "decoder_input_ids"), [(16, 60), (32,)]),  # two frames per encoder position
    ("clip", ("input_ids", "pixel_values"), [(32,), (3, 32, 32)]),
    ("vision-encoder-decoder", ("pixel_values", "decoder_input_ids"), [(3, 32, 32), (32,)]),
    ("detr", ("pixel_values",), [(3, 32, 32)]),
])
def test_speech_and_vision_text_models_get_every_input(arch: str, names: tuple[str, ...], sizes: list,
                                                       tmp_path: Path) -> None:
    model = _other(arch)
    inputs = model_inputs(model)
    assert inputs.keyword == (len(names) > 1) and inputs.names == names
    assert [s.size for s in inputs.specs] == sizes
    s = ts.summary(model)
    assert s.total_params == sum(p.numel() for p in model.parameters())
    args, kwargs = inputs.example(2)
    with torch.no_grad():
        model(*args, **kwargs)  # the inputs the contract names are the ones the model runs on
    assert ts.export(model, tmp_path / "m.pt2", timing_runs=1).passed
