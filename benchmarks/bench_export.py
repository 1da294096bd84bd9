"""Exported runtimes against eager PyTorch: latency on the same inputs, error, export time, file size.

For a few zoo models and every format, ``torchsmith.export`` writes the file,
loads it back with its runtime (``torch.export.load``, onnxruntime,
``torch.jit.load``) and times it against the eager model on the same inputs, in
the same process; the ratio eager/exported is the speedup (above 1: the export
is faster). The figures are the report's own, so this also shows what a user
sees in ``torchsmith export``.

    python benchmarks/bench_export.py            # writes its section of docs/benchmarks.md
    python benchmarks/bench_export.py --quick    # lenet and resnet20 only, no docs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report  # noqa: E402

import torchsmith as ts  # noqa: E402
from torchsmith._export import format_bytes  # noqa: E402

# (model, builder options, input size): small enough for a CPU run, deep enough to show the runtimes apart.
CASES = [
    ("lenet", {}, (3, 32, 32)),
    ("resnet20", {}, (3, 32, 32)),
    ("resnet18", {"num_classes": 10}, (3, 64, 64)),
    ("resnet50", {"num_classes": 10}, (3, 64, 64)),
]
SUFFIX = {"exported": ".pt2", "onnx": ".onnx", "torchscript": ".ts"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two small models, print only")
    parser.add_argument("--runs", type=int, default=20, help="timed forwards per runtime and batch size")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for torch and onnxruntime alike (1: stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # export() gives onnxruntime the same number
    cases = CASES[:2] if args.quick else CASES
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, kwargs, size in cases:
            torch.manual_seed(0)
            model = ts.create_model(name, **kwargs)
            for fmt, suffix in SUFFIX.items():
                report = ts.export(model, Path(tmp) / f"{name}{suffix}", format=fmt, input_size=size,
                                   batch_size=8, check_batch_sizes=(1, 32), timing_runs=args.runs)
                for check in report.checks:
                    rows.append((name, "x".join(map(str, size)), fmt, check.batch_size, check.eager_ms,
                                 check.exported_ms, check.speedup, check.max_abs_error,
                                 report.export_seconds, report.file_size))
                    print(f"{name:9} {fmt:11} batch {check.batch_size:>2}: eager {check.eager_ms:8.2f} ms, "
                          f"exported {check.exported_ms:8.2f} ms, x{check.speedup:.2f}, "
                          f"max abs err {check.max_abs_error:.2g}", flush=True)
    if args.quick:
        return
    lines = [
        "## Export: exported runtimes against eager",
        "",
        f"`{_report.command_line()}` on {_report.machine()}; intra-op threads (torch and onnxruntime): "
        f"{torch.get_num_threads()}.",
        "",
        "Median latency of one forward (up to "
        f"{args.runs} timed runs after a warm-up, within a 2 s budget per runtime and batch) on the same random "
        "inputs, eager PyTorch (eval, `no_grad`) against the file loaded back by its runtime: `torch.export.load` "
        "(.pt2), onnxruntime CPUExecutionProvider (.onnx), `torch.jit.load` (TorchScript). Speedup = eager / "
        "exported. Export batch 8, dynamic batch, also checked at 1 and 32.",
        "",
        "| model | input | format | batch | eager ms | exported ms | speedup | max abs err | export s | file |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, size, fmt, batch, eager, exported, speedup, err, secs, nbytes in rows:
        lines.append(f"| {name} | {size} | {fmt} | {batch} | {eager:.2f} | {exported:.2f} | {speedup:.2f}x | "
                     f"{err:.1e} | {secs:.1f} | {format_bytes(nbytes)} |")
    lines += ["", "Expect the .pt2 and TorchScript runtimes near 1x (they run the same ATen kernels as eager, minus "
              "Python overhead, which matters most for small models and batches); onnxruntime differs by its own "
              "kernels and graph optimisations. CPU figures only: no GPU in this run. The machine was shared with "
              "other jobs, so single figures carry noise; compare ratios within a row."]
    _report.write_section("export", "\n".join(lines))
    print(f"wrote the export section of {_report.DOC}")


if __name__ == "__main__":
    main()
