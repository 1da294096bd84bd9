"""Spec-built models against the hand-written zoo, in one run.

* forward: a model built from ``examples/*.yaml`` against the zoo model it
  reproduces, same weights, eval mode, no grad. The spec adds only containers
  (``nn.Sequential`` and a residual ``body + shortcut``), so the target is a
  ratio of 1.0 within noise.
* build: ``torchsmith.build_file`` (read YAML with line numbers, propagate the
  shape, size every layer, init) against ``torchsmith.create_model``; and
  ``check_spec`` (the same on the meta device, no weights) for a ResNet-152
  spec against building the zoo ResNet-152 for real.

Figures are the best of ``--repeats`` interleaved runs (a, b, a, b, ...), so
background load hits both sides alike and the minimum is the least disturbed
run; one intra-op thread by default for the same reason (``--threads``).

    python benchmarks/bench_spec.py
    python benchmarks/bench_spec.py --repeats 5 --threads 2 --no-write
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine, write_section  # noqa: E402

import torchsmith as ts  # noqa: E402
from torchsmith.spec import check_spec, copy_weights, dump_spec, to_spec  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _best_pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best (minimum) seconds of ``a`` and of ``b``, run alternately (a, b, a, b, ...) after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t0)
    return min(ta), min(tb)


def _op_counts(model: torch.nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Every aten op one forward runs, with its count (torch.profiler)."""
    from torch.profiler import profile

    with profile() as prof:
        model(x)
    return {e.key: e.count for e in prof.key_averages() if e.key.startswith("aten::")}


def forward_rows(repeats: int, batch: int) -> list[str]:
    rows = []
    for zoo_name, path in (("lenet", EXAMPLES / "lenet.yaml"), ("resnet20", EXAMPLES / "resnet20.yaml")):
        zoo, spec_model = ts.create_model(zoo_name).eval(), ts.build_file(path).eval()
        copy_weights(zoo, spec_model)
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(spec_model(x), zoo(x))  # same computation, or the timing means nothing
            t_spec, t_zoo = _best_pair(lambda m=spec_model, x=x: m(x), lambda m=zoo, x=x: m(x), repeats)
            ops_spec, ops_zoo = _op_counts(spec_model, x), _op_counts(zoo, x)
            diff = sorted(set(ops_spec.items()) ^ set(ops_zoo.items()))
            same = "same aten ops and counts" if not diff else "ops differ: " + ", ".join(
                f"{k} x{n} ({'spec' if ops_spec.get(k) == n else 'zoo'})" for k, n in diff)
        rows.append(f"| forward {zoo_name}, batch {batch} ({same}) | {t_spec * 1e3:.2f} ms | {t_zoo * 1e3:.2f} ms "
                    f"| {t_spec / t_zoo:.2f} |")
    # Control: the zoo model against a copy of itself measures what this machine's noise alone gives.
    twin = copy.deepcopy(zoo)
    with torch.no_grad():
        t_twin, t_zoo = _best_pair(lambda: twin(x), lambda: zoo(x), repeats)
    rows.append(f"| control: forward resnet20 vs a copy of itself | {t_twin * 1e3:.2f} ms | {t_zoo * 1e3:.2f} ms "
                f"| {t_twin / t_zoo:.2f} |")
    return rows


def build_rows(repeats: int, tmp: Path) -> list[str]:
    rows = []
    for zoo_name, path in (("lenet", EXAMPLES / "lenet.yaml"), ("resnet20", EXAMPLES / "resnet20.yaml")):
        t_spec, t_zoo = _best_pair(lambda p=path: ts.build_file(p), lambda n=zoo_name: ts.create_model(n), repeats)
        rows.append(f"| build {zoo_name}: `build_file` vs `create_model` | {t_spec * 1e3:.1f} ms "
                    f"| {t_zoo * 1e3:.1f} ms | {t_spec / t_zoo:.2f} |")
    r152 = tmp / "resnet152.yaml"
    r152.write_text(dump_spec(to_spec("resnet152")))
    t_check, t_zoo = _best_pair(lambda: check_spec(r152), lambda: ts.create_model("resnet152"),
                                  max(1, repeats // 3))
    rows.append(f"| resnet152 (60.2M params): `check_spec` (meta) vs `create_model` | {t_check * 1e3:.1f} ms "
                f"| {t_zoo * 1e3:.1f} ms | {t_check / t_zoo:.3f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        rows = forward_rows(args.repeats, args.batch) + build_rows(args.repeats, Path(tmp))
    table = "\n".join(["| case | spec | zoo (baseline) | spec / zoo |", "|---|---:|---:|---:|", *rows])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = (
        "## Specs: spec-built models vs the hand-written zoo\n\n"
        f"`{command_line()}`, {torch.get_num_threads()} intra-op thread(s), best of {args.repeats} "
        f"interleaved runs (resnet152 row: best of a third as many); load average {load:.1f} at the end.\n\n"
        f"Machine: {machine()}\n\n{table}\n\n"
        "Target: a spec-built model runs at the zoo model's speed, spec / zoo = 1.0 within noise. Only "
        "containers differ (`nn.Sequential`, a residual `body + shortcut`) around the same layers; the op "
        "check in each forward row says whether both run the same aten ops, and the control row shows how far "
        "two identical models drift apart on this machine. LeNet's differ only in name: the "
        "zoo calls `F.relu`, the spec's ReLU after a conv/linear works in place (`relu_`). Building from a "
        "file adds the YAML parse, shape propagation and trace to the same layer construction and init; "
        "`check_spec` builds on the meta device, without weights or init, so it is cheap for any size."
    )
    print(text)
    if not args.no_write:
        write_section("spec", text)


if __name__ == "__main__":
    main()
