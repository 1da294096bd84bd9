"""The real-model corpus: library models nobody here wrote, built from small configs with random weights.

Every entry is a healthy model as a user would bring it (transformers, and torchvision/timm where they
import), shrunk to a few layers and a small width so that the whole life of one model (summary, check,
export, save/load, a training step) runs in a couple of seconds on a CPU. Nothing is downloaded: a
transformers model is ``AutoConfig.for_model(model_type, **options)`` + ``Auto*.from_config(config)``.

``CORPUS`` is what ``tests/test_corpus.py`` runs on every model; ``BENCH_CORPUS`` adds the models
``benchmarks/bench_corpus.py`` runs as well (larger, or from libraries that may not be installed).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["CorpusModel", "CORPUS", "BENCH_CORPUS", "library_available"]

#: transformers Auto class per head.
_AUTO = {
    "base": "AutoModel",
    "image-classification": "AutoModelForImageClassification",
    "sequence-classification": "AutoModelForSequenceClassification",
    "causal-lm": "AutoModelForCausalLM",
    "semantic-segmentation": "AutoModelForSemanticSegmentation",
}
CLASSIFIER_HEADS = ("image-classification", "sequence-classification")
NUM_LABELS = 4
VOCAB = 128
SEQ_LEN = 16
IMAGE = (3, 32, 32)


@dataclass(frozen=True)
class CorpusModel:
    """One library model: how to build it and what one sample of its input looks like."""

    name: str  # "hf:bert", "hf:resnet-cls", "timm:resnet18"
    library: str  # "transformers" | "torchvision" | "timm" | "torch" (torch.nn's own building blocks)
    arch: str  # transformers model_type, or the torchvision/timm builder name
    head: str = "base"  # see _AUTO; torchvision/timm models are image classifiers
    options: Mapping[str, Any] = field(default_factory=dict)
    input_size: tuple[int, ...] = IMAGE  # one sample, without the batch
    vocab_size: int | None = None  # token ids in [0, vocab_size); None for images

    @property
    def tokens(self) -> bool:
        return self.vocab_size is not None

    @property
    def classifier(self) -> bool:
        return self.head in CLASSIFIER_HEADS

    def build(self) -> nn.Module:
        """The model in eval mode, weights drawn from a fixed seed (random, never downloaded)."""
        torch.manual_seed(0)
        if self.library == "transformers":
            import transformers

            config = transformers.AutoConfig.for_model(self.arch, **self.options)
            auto = getattr(transformers, _AUTO[self.head])
            model = auto.from_config(config)
        elif self.library == "torchvision":
            import torchvision

            model = torchvision.models.get_model(self.arch, weights=None, **self.options)
        elif self.library == "torch":
            model = _TORCH_MODELS[self.arch]()
        elif self.library == "timm":
            import timm

            model = timm.create_model(self.arch, pretrained=False, **self.options)
        else:
            raise ValueError(f"unknown library {self.library!r}")
        return model.eval()

    @property
    def kind(self) -> str:
        return "tokens" if self.tokens else ("image" if len(self.input_size) == 3 else "tensor")

    def example(self, batch: int = 2, *, seed: int = 0) -> torch.Tensor:
        """A reproducible batch: token ids below ``vocab_size``, or standard-normal images."""
        g = torch.Generator().manual_seed(seed)
        if self.tokens:
            return torch.randint(0, self.vocab_size or 1, (batch, *self.input_size), generator=g)
        return torch.randn((batch, *self.input_size), generator=g)

    def __str__(self) -> str:  # pytest ids
        return self.name


def library_available(library: str) -> str | None:
    """None when ``library`` imports, else the reason it does not (for a skip)."""
    try:
        importlib.import_module(library)
    except Exception as e:  # an ImportError, or a library whose import breaks on this torch
        return f"{library} does not import here: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    return None


# --------------------------------------------------------------------------- torch.nn's own transformer
class TorchEncoder(nn.Module):
    """``nn.MultiheadAttention`` then ``nn.TransformerEncoder``, as torchvision's ViT and many user models use them.

    In eval mode under ``no_grad`` both take torch's fused fast path (``aten._native_multi_head_attention``,
    ``aten._transformer_encoder_layer_fwd``), for which the flop counter has no formula: see docs/flops.md.
    """

    def __init__(self, width: int = 32, heads: int = 2, layers: int = 2) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, NUM_LABELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, width) -> (B, NUM_LABELS)
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.head(self.encoder(y).mean(dim=1))


_TORCH_MODELS = {"transformer-encoder": TorchEncoder}


# --------------------------------------------------------------------------- transformers, small configs
def _hf(name: str, arch: str, head: str = "base", **options: Any) -> CorpusModel:
    if head in CLASSIFIER_HEADS:
        options.setdefault("num_labels", NUM_LABELS)
    return CorpusModel(f"hf:{name}", "transformers", arch, head, options)


def _vision(name: str, arch: str, head: str = "base", size: tuple[int, ...] = IMAGE, **options: Any) -> CorpusModel:
    m = _hf(name, arch, head, **options)
    return CorpusModel(m.name, m.library, m.arch, m.head, m.options, size)


def _text(name: str, arch: str, head: str = "base", **options: Any) -> CorpusModel:
    options.setdefault("vocab_size", VOCAB)
    m = _hf(name, arch, head, **options)
    return CorpusModel(m.name, m.library, m.arch, m.head, m.options, (SEQ_LEN,), options["vocab_size"])


# A transformer block of width 32, two heads, two layers, feed-forward 64: small enough for milliseconds.
_ENC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64)
_DEC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=64, max_position_embeddings=64, use_cache=False)
_VIT = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)

CORPUS: tuple[CorpusModel, ...] = (
    # ---- vision CNNs
    _vision("resnet", "resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    _vision("resnet-cls", "resnet", "image-classification", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]),
    _vision("convnext", "convnext", hidden_sizes=[8, 16], depths=[1, 1], num_stages=2),
    _vision("convnextv2-cls", "convnextv2", "image-classification", hidden_sizes=[8, 16], depths=[1, 1],
            num_stages=2),
    _vision("mobilenet_v1", "mobilenet_v1", depth_multiplier=0.25, image_size=32),
    _vision("mobilenet_v2-cls", "mobilenet_v2", "image-classification", depth_multiplier=0.25, image_size=32),
    _vision("efficientnet", "efficientnet", width_coefficient=0.25, depth_coefficient=0.25, image_size=32,
            hidden_dim=320),  # hidden_dim is the head's width: round_filters(1280) at this width
    _vision("regnet", "regnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=8),
    _vision("bit", "bit", embedding_size=32, hidden_sizes=[128, 128], depths=[1, 1]),  # GroupNorm of 32 groups
    _vision("poolformer", "poolformer", hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], num_encoder_blocks=4),
    # ---- vision transformers
    # segmentation: the decode head reads the encoder's hidden states, which transformers captures with forward
    # hooks it installs on the first call (a probe that drops them breaks every later forward)
    _vision("segformer-seg", "segformer", "semantic-segmentation", num_encoder_blocks=2, depths=[1, 1],
            sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2], decoder_hidden_size=32,
            num_labels=3, patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2]),
    _vision("vit", "vit", **_VIT),
    _vision("vit-cls", "vit", "image-classification", **_VIT),
    _vision("deit", "deit", **_VIT),
    _vision("beit", "beit", **_VIT),
    _vision("dinov2", "dinov2", **_VIT),
    _vision("swin", "swin", image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
            window_size=4),
    _vision("swinv2-cls", "swinv2", "image-classification", image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
            num_heads=[2, 2], window_size=4),
    # ---- BERT-style encoders
    _text("bert", "bert", **_ENC),
    _text("bert-cls", "bert", "sequence-classification", **_ENC),
    _text("roberta", "roberta", **{**_ENC, "max_position_embeddings": 66}),
    _text("distilbert", "distilbert", dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64),
    _text("albert", "albert", embedding_size=16, **_ENC),
    _text("electra-cls", "electra", "sequence-classification", embedding_size=16, **_ENC),
    _text("mobilebert", "mobilebert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
          intermediate_size=32, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16,
          num_feedforward_networks=2, max_position_embeddings=64),
    _text("deberta-v2", "deberta-v2", **_ENC),
    # ---- decoders (use_cache=False: the default returns a DynamicCache, which torch.export cannot return)
    _text("gpt2", "gpt2", n_embd=32, n_layer=2, n_head=2, n_positions=64, use_cache=False),
    _text("gpt_neo", "gpt_neo", hidden_size=32, num_layers=2, num_heads=2, attention_types=[[["global", "local"], 1]],
          max_position_embeddings=64, window_size=8, use_cache=False),
    _text("llama", "llama", **_DEC),
    _text("llama-cls", "llama", "sequence-classification", pad_token_id=0, **_DEC),
    _text("mistral", "mistral", **_DEC),
    _text("qwen2", "qwen2", **_DEC),
    _text("phi", "phi", **_DEC),
    _text("gemma", "gemma", head_dim=16, **_DEC),
    _text("opt", "opt", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64, word_embed_proj_dim=32,
          max_position_embeddings=64, use_cache=False),
    _text("gpt2-lm", "gpt2", "causal-lm", n_embd=32, n_layer=2, n_head=2, n_positions=64, use_cache=False),
    # ---- mixture-of-experts decoders (grouped matmuls whose meta kernel wants bf16: the summary runs them real)
    _text("mixtral-lm", "mixtral", "causal-lm", num_local_experts=4, num_experts_per_tok=2, **_DEC),
    _text("qwen2-moe", "qwen2_moe", moe_intermediate_size=16, shared_expert_intermediate_size=32, num_experts=4,
          num_experts_per_tok=2, **_DEC),
    CorpusModel("torch:transformer-encoder", "torch", "transformer-encoder", "base", {}, (SEQ_LEN, 32)),
    # ---- encoder-decoder (BART makes its decoder input by shifting the encoder's)
    _text("bart", "bart", d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
          decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
          use_cache=False),
)

#: More models for the benchmark: other transformers families, then torchvision and timm where they import.
BENCH_CORPUS: tuple[CorpusModel, ...] = CORPUS + (
    _vision("mobilevit", "mobilevit", image_size=32, hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24,
            24, 32], num_attention_heads=2),
    _vision("convnext-cls", "convnext", "image-classification", hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 2, 1]),
    _vision("efficientnet-cls", "efficientnet", "image-classification", width_coefficient=0.5,
            depth_coefficient=0.5, image_size=64, hidden_dim=640, size=(3, 64, 64)),
    _vision("regnet-cls", "regnet", "image-classification", size=(3, 64, 64)),
    _vision("levit", "levit", image_size=64, size=(3, 64, 64)),
    _vision("cvt", "cvt", size=(3, 64, 64)),
    _vision("focalnet", "focalnet", image_size=64, embed_dim=16, depths=[1, 1, 1, 1], size=(3, 64, 64)),
    _vision("pvt_v2", "pvt_v2", image_size=64, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
            num_attention_heads=[1, 2, 4, 8], size=(3, 64, 64)),
    _vision("data2vec-vision", "data2vec-vision", **_VIT),
    _vision("vit-base", "vit", image_size=224, size=(3, 224, 224), num_hidden_layers=4),
    _text("bert-base", "bert", num_hidden_layers=4, vocab_size=30522),
    _text("xlm-roberta", "xlm-roberta", **{**_ENC, "max_position_embeddings": 66}),
    _text("mpnet", "mpnet", **{**_ENC, "max_position_embeddings": 66}),
    _text("convbert", "convbert", embedding_size=32, **_ENC),
    _text("roformer", "roformer", embedding_size=32, **_ENC),
    _text("qwen3", "qwen3", head_dim=16, **_DEC),
    _text("phi3", "phi3", pad_token_id=0, **_DEC),
    _text("gemma2", "gemma2", head_dim=16, **_DEC),
    _text("stablelm", "stablelm", **_DEC),
    _text("olmo", "olmo", pad_token_id=0, **_DEC),
    _text("starcoder2", "starcoder2", **_DEC),
    _text("gpt_neox", "gpt_neox", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
          max_position_embeddings=64, use_cache=False),
    _text("bloom", "bloom", hidden_size=32, n_layer=2, n_head=2, use_cache=False),
    _text("falcon", "falcon", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, use_cache=False),
    _text("codegen", "codegen", n_embd=32, n_layer=2, n_head=2, n_positions=64, rotary_dim=8, use_cache=False),
    _text("llama-wide", "llama", hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
          intermediate_size=512, max_position_embeddings=256, use_cache=False, vocab_size=1000),
    _text("mbart", "mbart", d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
          decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
          use_cache=False),
    CorpusModel("torchvision:resnet18", "torchvision", "resnet18", "image-classification", {}, (3, 64, 64)),
    CorpusModel("torchvision:mobilenet_v3_small", "torchvision", "mobilenet_v3_small", "image-classification", {},
                (3, 64, 64)),
    CorpusModel("torchvision:efficientnet_b0", "torchvision", "efficientnet_b0", "image-classification", {},
                (3, 64, 64)),
    CorpusModel("torchvision:vit_b_16", "torchvision", "vit_b_16", "image-classification", {}, (3, 224, 224)),
    CorpusModel("torchvision:convnext_tiny", "torchvision", "convnext_tiny", "image-classification", {},
                (3, 64, 64)),
    CorpusModel("timm:resnet18", "timm", "resnet18", "image-classification", {}, (3, 64, 64)),
    CorpusModel("timm:convnext_atto", "timm", "convnext_atto", "image-classification", {}, (3, 64, 64)),
    CorpusModel("timm:vit_tiny_patch16_224", "timm", "vit_tiny_patch16_224", "image-classification", {},
                (3, 224, 224)),
    CorpusModel("timm:efficientnet_b0", "timm", "efficientnet_b0", "image-classification", {}, (3, 64, 64)),
    CorpusModel("timm:mobilevitv2_050", "timm", "mobilevitv2_050", "image-classification", {}, (3, 64, 64)),
)
