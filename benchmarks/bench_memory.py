"""ts.memory against a measured CPU training step, beside accelerate's and torchinfo's estimates; writes docs/memory.md.

Per model: the plan (peak of one steady-state AdamW step in fp32, activations saved for backward) and the time it
took; the same step run for real on the CPU and measured by a live-storage TorchDispatchMode (the peak of live
tensor bytes over the second of two steps, as tests/test_memory.py measures it) with ``saved_tensors_hooks`` for the
saved bytes; ``accelerate estimate-memory``'s "Training using Adam" column, reproduced (accelerate is not needed:
``accelerate/commands/estimate.py`` takes the bytes of the parameters and buffers, ``calculate_maximum_sizes``,
and multiplies them by 4, for weights, gradients and Adam's two moments; activations are not counted); and
torchinfo's "Estimated Total Size" (input + 2 x every layer's output + parameters), from ``torchinfo.summary``.

    .venv/bin/python benchmarks/bench_memory.py            # writes docs/memory.md and its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section  # noqa: E402
from gpt import GPT, GPTConfig  # noqa: E402

import torchsmith as ts  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "memory.md"
LLAMA_405B = {"hidden_size": 16384, "num_hidden_layers": 126, "num_attention_heads": 128, "num_key_value_heads": 8,
              "intermediate_size": 53248, "vocab_size": 128256, "tie_word_embeddings": False}


class LivePeak(TorchDispatchMode):
    """Live bytes of every storage an op returns, freed when PyTorch frees the storage."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def note(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if id(st) not in self.live:
            self.live[id(st)] = st.nbytes()
            self.current += st.nbytes()
            weakref.finalize(st, self._free, id(st))
            self.peak = max(self.peak, self.current)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.note(t)
        return out


def measured(model: nn.Module, x: torch.Tensor) -> tuple[int, int, float]:
    """(peak of the second AdamW step, bytes saved for backward, seconds per step) on real CPU tensors."""
    opt = torch.optim.AdamW(model.parameters())
    model.train()
    mode = LivePeak()
    t0 = time.perf_counter()
    with mode:
        for t in itertools.chain(model.parameters(), model.buffers(), (x,)):
            mode.note(t)
        for step in range(2):
            if step == 1:
                mode.peak = mode.current
            out = model(x)
            loss = sum(t.sum() for t in torch.utils._pytree.tree_leaves(out)
                       if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad)
            del out
            loss.backward()
            del loss
            opt.step()
            opt.zero_grad(set_to_none=True)
    seconds = (time.perf_counter() - t0) / 2
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return mode.peak, sum(seen.values()), seconds


def accelerate_estimate(model: nn.Module) -> int:
    """accelerate estimate-memory's "Training using Adam": 4 x the bytes of the parameters and buffers."""
    return 4 * sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))


def torchinfo_estimate(model: nn.Module, x: torch.Tensor) -> int:
    import torchinfo

    stats = torchinfo.summary(model, input_data=[x], verbose=0, device="cpu")
    return int(stats.total_input + stats.total_output_bytes + stats.total_param_bytes)


def _llama_small() -> nn.Module:
    import transformers

    cfg = transformers.LlamaConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=512, vocab_size=1024, use_cache=False)
    return transformers.LlamaForCausalLM(cfg)


def cases() -> list[tuple[str, Any, tuple[int, ...], int, torch.dtype]]:
    return [
        ("LeNet-5", lambda: ts.create_model("lenet"), (3, 32, 32), 64, torch.float32),
        ("ResNet-20 (CIFAR)", lambda: ts.create_model("resnet20"), (3, 32, 32), 32, torch.float32),
        ("GPT by hand (4 x 128, benchmarks/gpt.py)",
         lambda: GPT(GPTConfig(n_layer=4, n_embd=128, n_head=4, vocab_size=1024, block_size=128)), (128,), 8,
         torch.long),
        ("transformers Llama (4 x 256)", _llama_small, (128,), 4, torch.long),
    ]


def mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def run() -> tuple[list[list[str]], str]:
    rows = []
    for name, build, size, batch, dtype in cases():
        torch.manual_seed(0)
        model = build()
        t0 = time.perf_counter()
        plan = ts.memory(model, size, batch_size=batch, input_dtype=dtype, optimizer="adamw")
        plan_s = time.perf_counter() - t0
        x = torch.randint(0, 1024, (batch, *size)) if dtype == torch.long else torch.randn(batch, *size)
        peak, saved, step_s = measured(model, x)
        assert isinstance(plan.peak, int) and isinstance(plan.activations, int)
        acc, info = accelerate_estimate(model), torchinfo_estimate(model, x)
        rows.append([name, f"{batch} x {'x'.join(map(str, size))}", mib(plan.peak), mib(peak),
                     f"{plan.peak / peak:.3f}", mib(plan.activations), mib(saved), f"{plan.activations / saved:.3f}",
                     f"{plan_s:.2f} s", f"{step_s:.2f} s", f"{mib(acc)} ({acc / peak:.2f}x)",
                     f"{mib(info)} ({info / peak:.2f}x)"])
        print(" | ".join(rows[-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        import transformers

        transformers.LlamaConfig(**LLAMA_405B).save_pretrained(tmp)
        t0 = time.perf_counter()
        plan = ts.memory(f"hf:{tmp}/config.json:ForCausalLM", (2048,), input_dtype="long", optimizer="adamw")
        plan_s = time.perf_counter() - t0
        fsdp = ts.memory(f"hf:{tmp}/config.json:ForCausalLM", (2048,), input_dtype="long", optimizer="adamw",
                         world_size=64, strategy="fsdp", checkpointing=True)
    n = plan.by_module[0].parameters
    assert isinstance(plan.peak, int) and isinstance(plan.activations, int) and isinstance(fsdp.peak, int)
    rows.append(["Llama-3.1-405B dims (config.json only)", "1 x 2048", f"{plan.peak / 2**40:,.2f} TiB", "not run",
                 "", f"{plan.activations / 2**30:,.1f} GiB", "not run", "", f"{plan_s:.2f} s", "",
                 f"{4 * n / 2**40:,.2f} TiB", "not run (real weights)"])
    extra = (f"The 405B plan counts {n // 4:,} parameters; per device, FSDP on 64 devices with activation "
             f"checkpointing, fp32: {fsdp.peak / 2**30:,.1f} GiB ({fsdp.when}).")
    print(" | ".join(rows[-1]), extra, flush=True)
    return rows, extra


HEAD = ["Model", "Batch x input", "Plan: peak", "Measured peak", "Ratio", "Plan: activations", "Measured saved",
        "Ratio", "Plan took", "Real step took", "accelerate (4 x params)", "torchinfo estimate"]


def table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def versions() -> str:
    import torchinfo
    import transformers

    gpu = "" if torch.cuda.is_available() else " (no GPU)"
    return f"{machine()}{gpu}; transformers {transformers.__version__}, torchinfo {torchinfo.__version__}"


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    rows, extra = run()
    how = ".venv/bin/python benchmarks/bench_memory.py"
    DOC.write_text(f"""# Memory: what a training step needs, planned and measured

`ts.memory(model, input_size, batch_size=..., optimizer=..., precision=...)` runs the model's own training step
(forward, backward, the optimizer's step, gradients set to None) on fake tensors and counts every storage PyTorch
creates and frees; nothing is allocated, so a 405B decoder plans from its `config.json`. `torchsmith show MODEL
--memory` prints the plan (`--batch`, `--precision`, `--optimizer`, `--checkpointing`, `--world-size`,
`--strategy`); `torchsmith plan MODEL --device-memory 80GB --world-size 8` tabulates every way to train it (one
device, DDP, FSDP; with and without activation checkpointing; per precision): the peak per device, whether it
fits, the largest batch that fits and the training FLOPs per sample (`ts.plan_training`).

```sh
torchsmith show resnet20 --memory --batch 128
torchsmith plan hf:path/to/config.json:ForCausalLM --input 4096 --device-memory 80GB --world-size 8
```

## The plan against a measured step

AdamW, fp32, one CPU device. *Measured peak*: the same step run for real, the peak of live tensor bytes over the
second of two steps (a TorchDispatchMode counting each storage once, freed when PyTorch frees it). *Measured
saved*: what the forward saves for backward (`saved_tensors_hooks`, each storage once, parameters included).
*accelerate*: `accelerate estimate-memory`'s "Training using Adam" column (its `accelerate/commands/estimate.py`:
the bytes of the parameters and buffers times 4; activations are not counted), reproduced here. *torchinfo*:
`torchinfo.summary`'s "Estimated Total Size" (input + 2 x every layer's output + parameters). The ratios in
brackets are to the measured peak.

{table(rows)}

{extra}

Made by `{how}` on {versions()}. Times are wall-clock seconds of one call in a process (the plan's first
call includes importing and warming up fake tensors), measured while other jobs shared the cores (load average
{os.getloadavg()[0]:.1f} at the end of the run): they are upper bounds.

## What is counted, and what is not

- `peak` is live tensor bytes. PyTorch's CUDA caching allocator rounds blocks and fragments, and the CUDA context
  is outside any tensor: `fits()` and `max_batch_size()` leave `FRAGMENTATION_MARGIN` (10%) of the device free
  for them rather than folding a guess into the figure.
- Checkpointing is run as `torch.utils.checkpoint` runs it (non-reentrant): the block inputs it keeps and the
  recomputation in backward are counted (tests/test_memory_more.py: peak and activations exact on a hand-written
  GPT, ViT and ResNet).
- `nn.LSTM` on the CPU runs oneDNN's kernel, whose workspace (saved for backward) has no size on fake tensors;
  the plan asks oneDNN for it once per shape, on real zeros of one layer's input size.
- DDP and FSDP figures are worked out from the one-device step (gradient buckets; shards and the blocks in
  flight), not run. Under torchrun with 2 gloo processes, a real FSDP2 `fully_shard` step's per-rank peak is
  within 1.3% of the plan on hand-written GPTs of 2 to 6 blocks (tests/test_memory_fsdp.py); where one block's
  weights outweigh the activations, the plan is low (15% on 6 blocks of width 96 at batch 1: the next block's
  all-gather and the reduce-scatter buffers are in flight at that peak). FSDP's `MixedPrecisionPolicy` is not
  modelled: a `bf16-mixed` plan is autocast's, whose cache keeps a bf16 copy of every weight through the forward.
- transformers reads the position ids' values to tell whether sequences are packed, and builds an attention mask
  (and repeats the key/value heads) where it cannot; on fake tensors it cannot, so the plan answers that probe as
  a real run with default positions does (one sequence per row). Before that, a 4-layer Llama's plan was 6.6%
  high on activations and 4.2% on the peak.
""")
    write_section("memory", f"""## Memory

`ts.memory` against a real CPU step, with accelerate's and torchinfo's estimates; the table is in
[Memory](memory.md). Peak ratio plan/measured: {", ".join(f"{r[0].split(' (')[0]} {r[4]}" for r in rows if r[4])};
the 405B config planned in {rows[-1][8]} (load average {os.getloadavg()[0]:.1f} on the cores: other jobs ran
beside it).

Command: `{how}`. Machine: {versions()}.""")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
