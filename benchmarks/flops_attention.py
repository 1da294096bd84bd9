"""Attention FLOPs: torch's flop counter on CPU leaves fused attention out; torchsmith counts it.

On CPU, ``F.scaled_dot_product_attention`` dispatches to ``aten._scaled_dot_product_flash_attention_for_cpu``.
``torch.utils.flop_counter`` has formulas for the CUDA kernels (``_scaled_dot_product_flash_attention``,
``_efficient_attention``, ``_cudnn_attention``) but none for the CPU one, so ``FlopCounterMode`` counts
nothing for it: the ``Q @ K^T`` and ``P @ V`` matmuls of every attention layer go missing. With the math
backend (``sdpa_kernel(SDPBackend.MATH)``) attention runs as plain ``bmm``s, which it counts.
torchsmith's summary gives the CPU kernel the formula of the CUDA flash kernel (same arguments, same
arithmetic), so its figure equals the math-backend count on any device.

Run: ``.venv/bin/python benchmarks/flops_attention.py`` (CPU, random weights, no download; ~20 s).
"""

from __future__ import annotations

import platform
import sys
import warnings

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

import torchsmith as ts

#: (name, transformers model_type, config options, input): standard widths, two layers, a realistic length.
MODELS = [
    ("BERT-base width, 2 layers, 128 tokens", "bert",
     dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072), ("tokens", 128)),
    ("GPT-2 width, 2 layers, 512 tokens", "gpt2",
     dict(n_embd=768, n_layer=2, n_head=12, use_cache=False), ("tokens", 512)),
    ("Llama, 2 layers of width 1024, 1024 tokens", "llama",
     dict(hidden_size=1024, num_hidden_layers=2, num_attention_heads=16, num_key_value_heads=4,
          intermediate_size=2816, vocab_size=32000, use_cache=False), ("tokens", 1024)),
    ("ViT-B/16, 2 layers, 224x224", "vit",
     dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072), ("image", 224)),
]


class _AttentionOps(TorchDispatchMode):
    """Records the aten attention ops a forward dispatches to."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if "scaled_dot_product" in func.__name__ or "attention" in func.__name__:
            self.seen.add(f"aten.{func.__name__}")
        return func(*args, **(kwargs or {}))


def build(model_type: str, options: dict, kind: str, size: int) -> tuple[torch.nn.Module, torch.Tensor]:
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(model_type, **options)
    if kind == "image":
        config.image_size = size
    model = transformers.AutoModel.from_config(config, attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(0)
    x = (torch.randint(0, config.vocab_size, (1, size), generator=g) if kind == "tokens"
         else torch.randn(1, 3, size, size, generator=g))
    return model, x


def counted(model: torch.nn.Module, x: torch.Tensor, backend: SDPBackend | None) -> int:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        with FlopCounterMode(display=False) as counter:
            if backend is None:
                model(x)
            else:
                with sdpa_kernel(backend):
                    model(x)
    return int(counter.get_total_flops())


def main() -> None:
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()} CPU")
    cpu_op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    print(f"aten._scaled_dot_product_flash_attention_for_cpu in torch's flop_registry: {cpu_op in flop_registry}; "
          f"the CUDA kernel aten._scaled_dot_product_flash_attention: "
          f"{torch.ops.aten._scaled_dot_product_flash_attention in flop_registry}\n")
    print("| model | attention op on CPU | flop counter, default backend | flop counter, math backend "
          "| torchsmith summary | left out by default |")
    print("|---|---|---:|---:|---:|---:|")
    for name, model_type, options, (kind, size) in MODELS:
        model, x = build(model_type, options, kind, size)
        ops = _AttentionOps()
        with ops, torch.no_grad():
            model(x)
        default = counted(model, x, None)
        math = counted(model, x, SDPBackend.MATH)
        ours = ts.summary(model, input_data=x).forward_flops
        missing = (math - default) / math
        print(f"| {name} | {', '.join(sorted(ops.seen)) or '-'} | {default / 1e9:.3f} G | {math / 1e9:.3f} G "
              f"| {ours / 1e9:.3f} G | {missing:.1%} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
