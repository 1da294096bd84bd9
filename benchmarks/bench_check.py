"""Benchmark: the doctor's cost, two ways, each against its baseline in the same process.

1. ``--part corpus`` (the target of issue 12): on ~13 transformers models of real width (few layers, native
   input sizes), the full default ``ts.check`` against one plain ``torch.export.export`` plus one
   forward+backward of the same model at the same input (the check's probe batch). Target: median ratio <= 3.
   :func:`doctor_ratio` measures one model; ``benchmarks/bench_corpus.py`` imports it.
2. ``--part resnet``: the full default check on CIFAR ResNet-18 at 3x32x32 (target < 15 s on 2 cores), against
   one forward+backward and against the sum of running each check alone (what the shared runs save).

Issue 19 asks more of the corpus figure: a median ratio of at most 1.5 (printed beside issue 12's 3).

Usage: python benchmarks/bench_check.py [--part corpus|resnet|both] [--repeat 2] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine, write_section  # noqa: E402

import torchsmith as ts  # noqa: E402
from torchsmith._check._context import BATCH  # noqa: E402
from torchsmith.contract import input_spec, output_tensors  # noqa: E402

__all__ = ["DoctorTiming", "doctor_ratio", "CORPUS"]

TARGET_RATIO = 3.0
EVERYDAY_RATIO = 1.5  # issue 19's target for the same median
CHECKS = [c.name for c in ts.list_checks()]  # in the order they run
DEFAULT_CHECKS = [c.name for c in ts.list_checks() if c.default]

#: name -> (transformers model_type, config options, input size). Real widths (ConvNeXt-T, ViT-S, BERT-base,
#: MobileBERT, GPT-2, a 0.5B-wide Llama), fewer layers so the run fits a 2-core machine; native image sizes,
#: 128-token sequences.
_IMG = (3, 224, 224)
_SEQ = (128,)
CORPUS: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "convnext": ("convnext", {"depths": [1, 1, 3, 1]}, _IMG),
    "vit": ("vit", {"hidden_size": 384, "num_hidden_layers": 4, "num_attention_heads": 6,
                    "intermediate_size": 1536}, _IMG),
    "deit": ("deit", {"hidden_size": 384, "num_hidden_layers": 4, "num_attention_heads": 6,
                      "intermediate_size": 1536}, _IMG),
    "swin": ("swin", {"depths": [1, 1, 2, 1]}, _IMG),
    "resnet": ("resnet", {"depths": [1, 1, 2, 1]}, _IMG),
    "mobilenet_v2": ("mobilenet_v2", {}, _IMG),
    "efficientnet": ("efficientnet", {"width_coefficient": 1.0, "depth_coefficient": 1.0, "hidden_dim": 1280,
                                      "image_size": 224}, _IMG),  # B0 (the config's defaults are B7)
    "regnet": ("regnet", {"depths": [1, 1, 2, 1]}, _IMG),
    "convnext-tiny (full)": ("convnext", {}, _IMG),  # the slow cases, at their full depth
    "mobilebert (full)": ("mobilebert", {}, _SEQ),
    "bert": ("bert", {"num_hidden_layers": 4}, _SEQ),
    "mobilebert": ("mobilebert", {"num_hidden_layers": 6}, _SEQ),
    "gpt2": ("gpt2", {"n_layer": 4}, _SEQ),
    "llama": ("llama", {"hidden_size": 896, "num_hidden_layers": 4, "num_attention_heads": 14,
                        "num_key_value_heads": 2, "intermediate_size": 2432, "vocab_size": 32000}, _SEQ),
    "qwen2": ("qwen2", {"hidden_size": 896, "num_hidden_layers": 4, "num_attention_heads": 14,
                        "num_key_value_heads": 2, "intermediate_size": 2432, "vocab_size": 32000}, _SEQ),
}


@dataclass
class DoctorTiming:
    """One model: the doctor's wall time against one plain export plus one forward+backward."""

    name: str
    params: int
    input_size: tuple[int, ...]
    export_s: float
    export_ok: bool
    fwd_bwd_s: float
    check_s: float
    counts: dict[str, int] = field(default_factory=dict)  # error / warning / info
    seconds: dict[str, float] = field(default_factory=dict)  # per check, in the full run

    @property
    def baseline_s(self) -> float:
        return self.export_s + self.fwd_bwd_s

    @property
    def ratio(self) -> float:
        return self.check_s / self.baseline_s


def _best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def doctor_ratio(model: torch.nn.Module, input_size: Any = None, *, name: str | None = None,
                 repeat: int = 2) -> DoctorTiming:
    """Time ``ts.check(model, input_size)`` (default checks) against its baseline, side by side.

    The baseline is one plain ``torch.export.export(model.eval(), (x,))`` plus one train-mode forward and
    backward (the sum of the output tensors as the loss), at the check's own probe batch ``x`` (batch 2 from
    the model contract's input spec). Each figure is the best of ``repeat`` runs after one untimed forward.
    A plain export that fails (a decoder returning its cache) is timed to the failure.
    """
    spec = input_spec(model, input_size)
    x = spec.example(BATCH)
    was = model.training
    model.eval()
    with torch.no_grad():
        model(x)  # first-call allocations are not the doctor's cost or the baseline's
    export_ok = True

    def export() -> None:
        nonlocal export_ok
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.export.export(model, (x,))
        except Exception:
            export_ok = False

    def fwd_bwd() -> None:
        model.train()
        try:
            out = model(x)
            loss = sum(t.float().sum() for t in output_tensors(out) if t.requires_grad and t.is_floating_point())
            loss.backward()  # type: ignore[union-attr]
        finally:
            model.zero_grad(set_to_none=True)
            model.eval()

    export_s = _best(export, repeat)
    fwd_bwd_s = _best(fwd_bwd, repeat)
    report: Any = None

    def doctor() -> None:
        nonlocal report
        report = ts.check(model, spec.size)

    check_s = _best(doctor, repeat)
    model.train(was)
    counts = {"error": len(report.errors), "warning": len(report.warnings), "info": len(report.infos)}
    return DoctorTiming(name or type(model).__name__, sum(p.numel() for p in model.parameters()), spec.size,
                        export_s, export_ok, fwd_bwd_s, check_s, counts,
                        {k: v for k, v in report.seconds.items() if k != "total"})


def _build(model_type: str, options: dict[str, Any]) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    return AutoModel.from_config(AutoConfig.for_model(model_type, **options)).eval()


def corpus_section(repeat: int, names: list[str] | None = None) -> str:
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with warnings.catch_warnings():  # torch.export's one-time start-up is paid here, by neither side
        warnings.simplefilter("ignore")
        torch.export.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),))
    rows, timings = [], []
    for name, (model_type, options, size) in CORPUS.items():
        if names and name not in names:
            continue
        t = doctor_ratio(_build(model_type, options), size, name=name, repeat=repeat)
        timings.append(t)
        top = sorted(t.seconds.items(), key=lambda kv: -kv[1])[:3]
        rows.append(f"| {name} | {t.params / 1e6:.1f}M | {'x'.join(map(str, t.input_size))} | {t.export_s:.2f}"
                    f"{'' if t.export_ok else ' (fails)'} | {t.fwd_bwd_s:.2f} | {t.check_s:.2f} | {t.ratio:.2f}x | "
                    f"{t.counts['error']}/{t.counts['warning']}/{t.counts['info']} | "
                    + ", ".join(f"{k} {v:.2f}" for k, v in top) + " |")
        print(rows[-1], flush=True)
    ratios = [t.ratio for t in timings]
    median = statistics.median(ratios)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    verdict = "meets" if median <= TARGET_RATIO else "MISSES"
    everyday = "meets" if median <= EVERYDAY_RATIO else "MISSES"
    return f"""## check: the doctor's time against one export plus one forward+backward (transformers models)

`ts.check(model, input_size)` with the default checks, against its baseline in the same process: one plain
`torch.export.export(model, (x,))` plus one train-mode forward+backward at the same probe batch `x` (batch 2
of the model contract's input). Random weights from `AutoConfig.for_model(...)` (real widths, fewer layers);
each figure is the best of {repeat} runs after one untimed forward.

**Median ratio {median:.2f}x** over {len(ratios)} models (target <= {TARGET_RATIO:.0f}x: {verdict}; issue 19's
<= {EVERYDAY_RATIO}x: {everyday}); min {min(ratios):.2f}x, max {max(ratios):.2f}x.

| model | params | input | export s | fwd+bwd s | check s | ratio | errors/warnings/notes | slowest checks (s) |
|---|---:|---|---:|---:|---:|---:|---|---|
{chr(10).join(rows)}

A decoder's plain export fails with its default `use_cache=True` (the output holds a `DynamicCache`); it is timed
to the failure, and the doctor exports it once with `use_cache=False` (finding `export-needs-config`).
Command: `{command_line()}`
Machine: {machine()}; torch threads {torch.get_num_threads()}; 1-minute load average {load_before:.1f} at the start
and {load_after:.1f} at the end (the machine is shared; both sides of each ratio ran under the same load).
"""


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return ts.create_model("resnet18", stem="cifar", num_classes=10)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu(fn) -> float:
    """Process CPU seconds (all threads): less sensitive than wall time to other jobs on a shared machine."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def resnet_section(repeat: int) -> str:
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    model = _model()
    x = torch.randn(2, 3, 32, 32)

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    plain()  # warm-up: first-call allocations
    # Best of 5: on a shared machine the minimum is the figure least disturbed by other jobs.
    t_plain = min(_timed(plain) for _ in range(5))
    c_plain = min(_cpu(plain) for _ in range(5))
    model.zero_grad(set_to_none=True)

    # Cold: the first check in the process pays TorchScript's and torch.export's one-time start-up.
    cold_report = None

    def full_cold() -> None:
        nonlocal cold_report
        cold_report = ts.check(model)

    t_cold = _timed(full_cold)
    warm = []
    report = cold_report
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        report = ts.check(model)
        warm.append(time.perf_counter() - start)
    t_full = min(warm)
    c_full = _cpu(lambda: ts.check(model))
    assert report is not None and report.ok, str(report)

    alone = {name: _timed(lambda n=name: ts.check(model, checks=n)) for name in DEFAULT_CHECKS}
    t_alone = sum(alone.values())
    t_graph = _timed(lambda: ts.check(model, checks="graph-breaks"))

    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = "\n".join(f"| {name} | {report.seconds.get(name, 0.0):.2f} | {alone[name]:.2f} |" for name in DEFAULT_CHECKS)
    verdict = "meets" if t_full < 15 else "misses"
    cpu_verdict = "fits in" if c_full < 15 else "DOES NOT fit in"
    md = f"""## check: the full default set on CIFAR ResNet-18 (3x32x32)

`ts.check(create_model("resnet18", stem="cifar", num_classes=10))`, all {len(DEFAULT_CHECKS)} default checks
(every check but the opt-in `scriptable` and `graph-breaks`), probe batch 2.

| measurement | seconds | ratio |
|---|---:|---:|
| plain forward+backward, batch 2 (baseline, best of 5) | {t_plain:.3f} | 1.0x |
| full default check, warm (best of {len(warm)}) | {t_full:.2f} | {t_full / t_plain:.0f}x the forward+backward |
| full default check, cold (first in the process) | {t_cold:.2f} | {t_cold / t_plain:.0f}x |
| plain forward+backward, process CPU time | {c_plain:.3f} CPU s | 1.0x |
| full default check, warm, process CPU time | {c_full:.2f} CPU s | {c_full / c_plain:.0f}x |
| sum of each default check run alone | {t_alone:.2f} | full check is {t_full / t_alone:.2f}x of it |
| `graph-breaks` alone (opt-in, torch._dynamo.explain) | {t_graph:.2f} | |

Target: the full default set under 15 s on 2 CPU cores. Wall time here **{verdict}** it ({t_full:.1f} s warm,
{t_cold:.1f} s cold) at the load below; the work itself is {c_full:.1f} CPU seconds over both threads, which
**{cpu_verdict}** 15 s on 2 cores that are not shared ({c_full / 2:.1f}-{c_full:.1f} s wall).
Result: {len(report.errors)} errors, {len(report.warnings)} warnings, {len(report.infos)} notes.

Per check (seconds; in the full run a check also pays for the shared runs it triggers first):

| check | in the full run | alone |
|---|---:|---:|
{rows}

Command: `{command_line()}`
Machine: {machine()}; torch threads {torch.get_num_threads()}; 1-minute load average {load_before:.1f} at the
start and {load_after:.1f} at the end (the machine is shared: with a load above the core count every figure,
the baseline included, is inflated by about load/cores, and the ratios are the figures to compare).
All checks known: {", ".join(CHECKS)}.
"""
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("corpus", "resnet", "both"), default="both")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement (best reported)")
    parser.add_argument("--models", default="", help="comma-separated corpus names (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print the tables, do not touch docs/benchmarks.md")
    args = parser.parse_args()
    if args.part in ("corpus", "both"):
        md = corpus_section(args.repeat, [n for n in args.models.split(",") if n] or None)
        if not args.no_write:
            write_section("check-corpus", md)
        print(md)
    if args.part in ("resnet", "both"):
        md = resnet_section(args.repeat)
        if not args.no_write:
            write_section("check", md)
        print(md)


if __name__ == "__main__":
    main()
