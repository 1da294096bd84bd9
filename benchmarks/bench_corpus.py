"""Benchmark: every model of the larger corpus through everything torchsmith does; writes docs/corpus.md.

The corpus is ``tests/corpus_models.py``'s ``BENCH_CORPUS``: the test suite's 36 transformers models plus
more families, a few at real width and native size, and torchvision/timm models where those packages
import (a row says why when they do not). For each model, in one process:

* **params** -- ``ts.summary``'s total equals the unique-parameter count;
* **FLOPs** -- ``ts.summary``'s forward FLOPs against ``torch.utils.flop_counter`` with the math attention
  backend (the counter has no formula for CPU's fused attention kernel; see docs/flops.md), within 1%;
* **summary time** against ``torchinfo.summary`` on the same input;
* **check** -- the default ``ts.check``: errors / warnings / notes, with the error ids;
* **export** -- ``ts.export`` to ``.pt2`` with its default dynamic batch, next to plain
  ``torch.export.export(model, (x,))`` on the same batch (``ok`` / ``refused`` = a TorchsmithError /
  ``CRASH`` = any other exception);
* **save/load** -- ``ts.save`` then ``ts.load_into`` a model with other weights: outputs bit-identical;
* **train** -- one ``ts.fit`` step on synthetic data, for models with a classification head;
* **doctor ratio** -- ``benchmarks/bench_check.py``'s ``doctor_ratio``: the default check's time over one
  plain ``torch.export.export`` plus one forward+backward at the same input, side by side.

Usage: python benchmarks/bench_corpus.py [--only NAME[,NAME]] [--no-write]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import command_line, machine  # noqa: E402
from bench_check import doctor_ratio  # noqa: E402

import torchsmith as ts  # noqa: E402
from corpus_models import BENCH_CORPUS, CorpusModel, library_available  # noqa: E402
from torchsmith.contract import output_tensors  # noqa: E402

DOC = ROOT / "docs" / "corpus.md"


@dataclass
class Row:
    name: str
    skipped: str = ""
    params: int = 0
    params_ok: bool | None = None
    flops: int | None = None
    flops_ref: int | None = None
    summary_s: float = float("nan")
    torchinfo_s: float = float("nan")
    check: str = ""
    check_errors: list[str] = field(default_factory=list)
    export: str = ""
    plain_export: str = ""
    save_load: str = ""
    train: str = ""
    ratio: float = float("nan")
    problems: list[str] = field(default_factory=list)

    @property
    def flops_ok(self) -> bool | None:
        if self.flops is None or self.flops_ref is None:
            return None
        return abs(self.flops - self.flops_ref) <= 0.01 * max(self.flops_ref, 1)


def _quietly(fn: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def _outcome(fn: Any) -> str:
    """"ok", "refused: ..." for a TorchsmithError, "CRASH: ..." for anything else."""
    try:
        _quietly(fn)
    except ts.TorchsmithError as e:
        return f"refused: {type(e).__name__}: {str(e).splitlines()[0][:100]}"
    except Exception as e:
        return f"CRASH: {type(e).__name__}: {str(e).splitlines()[0][:100]}"
    return "ok"


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return output_tensors(model(x))


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = _quietly(fn)
    return out, time.perf_counter() - start


def measure(c: CorpusModel, work: Path) -> Row:
    row = Row(c.name)
    reason = library_available(c.library)
    if reason is not None:
        row.skipped = reason
        return row
    model = c.build()
    x = c.example()
    _outputs(model, x)  # first-call allocations are nobody's cost
    row.params = sum(p.numel() for p in model.parameters())  # unique: a tied tensor is one entry

    summary, row.summary_s = _timed(lambda: ts.summary(model, input_data=x))
    row.params_ok = summary.total_params == row.params
    row.flops = summary.forward_flops if isinstance(summary.forward_flops, int) else None
    # Grad mode on, as in tests/test_corpus.py: under no_grad nn.MultiheadAttention takes a fast path the
    # counter cannot count (docs/flops.md, section 2).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x)
    row.flops_ref = int(counter.get_total_flops())
    try:
        import torchinfo

        _, row.torchinfo_s = _timed(lambda: torchinfo.summary(model, input_data=x, verbose=0))
    except Exception as e:
        row.problems.append(f"torchinfo failed: {type(e).__name__}")

    try:
        report = _quietly(lambda: ts.check(model, c.input_size))
        row.check = f"{len(report.errors)} / {len(report.warnings)} / {len(report.infos)}"
        row.check_errors = sorted({f.id for f in report.errors})
    except Exception as e:
        row.check = f"{'refused' if isinstance(e, ts.TorchsmithError) else 'CRASH'}: {type(e).__name__}"

    row.plain_export = _outcome(lambda: torch.export.export(model, (x,)))
    row.export = _outcome(lambda: ts.export(model, work / "model.pt2", input_size=c.input_size, timing_runs=1))

    def save_load() -> None:
        path = ts.save(model, work / "model.safetensors")
        fresh = c.build()
        with torch.no_grad():
            for p in fresh.parameters():
                p.add_(1.0)
        ts.load_into(fresh, path)
        if not all(torch.equal(a, b) for a, b in zip(_outputs(fresh, x), _outputs(model, x), strict=True)):
            raise AssertionError("outputs differ after load_into")
    row.save_load = _outcome(save_load)

    if c.classifier:
        trained = c.build()
        run_dir = work / f"run-{c.name.replace(':', '-')}"  # fit refuses a folder that holds another run
        row.train = _outcome(lambda: ts.fit(trained, "synthetic", epochs=1, max_steps=1, batch_size=8,
                                            num_samples=16, device="cpu", plot=False, out_dir=str(run_dir),
                                            log_every=1, eval_batch_size=8))
    try:
        row.ratio = _quietly(lambda: doctor_ratio(model, c.input_size, name=c.name, repeat=1)).ratio
    except Exception as e:
        row.problems.append(f"doctor ratio: {type(e).__name__}: {str(e)[:80]}")
    return row


def _mark(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**NO**")


def _short(outcome: str) -> str:
    return outcome if outcome in ("ok", "") else outcome.split(":")[0]


def render(rows: list[Row], seconds: float) -> str:
    import transformers

    ran = [r for r in rows if not r.skipped]
    ratios = [r.ratio for r in ran if r.ratio == r.ratio]
    speed = [r.summary_s / r.torchinfo_s for r in ran if r.torchinfo_s > 0]
    lines = [
        "# The real-model corpus",
        "",
        "Library models nobody here wrote, built from configs with random weights (nothing downloaded), through "
        "everything torchsmith does to a model. Written by `benchmarks/bench_corpus.py`; the same checks run on "
        "the 36 smallest in `tests/test_corpus.py`. Definitions are in `tests/corpus_models.py`.",
        "",
        f"- command: `{command_line()}` ({seconds:.0f} s)",
        f"- machine: {machine()}; transformers {transformers.__version__}; "
        f"{torch.get_num_threads()} intra-op threads; a 2-core machine shared with other work, so times are noisy",
        f"- models: {len(rows)} listed, {len(ran)} run, {len(rows) - len(ran)} skipped (library not installed)",
        f"- parameters exact: {sum(bool(r.params_ok) for r in ran)}/{len(ran)}; FLOPs within 1% of the "
        f"math-backend flop counter: {sum(bool(r.flops_ok) for r in ran)}/{len(ran)}",
        f"- check with zero errors: {sum(r.check.startswith('0 /') for r in ran)}/{len(ran)}; "
        f"`.pt2` export ok: {sum(r.export == 'ok' for r in ran)}/{len(ran)} (plain torch.export.export ok: "
        f"{sum(r.plain_export == 'ok' for r in ran)}; ts.export failing where plain passes: "
        f"{sum(r.plain_export == 'ok' and r.export != 'ok' for r in ran)}); save/load bit-identical: "
        f"{sum(r.save_load == 'ok' for r in ran)}/{len(ran)}; train step ok: "
        f"{sum(r.train == 'ok' for r in ran)}/{sum(bool(r.train) for r in ran)}",
        f"- exceptions that are not a TorchsmithError: "
        f"{sum('CRASH' in ' '.join((r.check, r.export, r.save_load, r.train)) for r in ran)}",
        f"- doctor time ratio (check / (export + forward+backward)), median: "
        f"{statistics.median(ratios):.2f}x over {len(ratios)} models (target <= 3x)" if ratios else
        "- doctor time ratio: not measured",
        f"- ts.summary's time over torchinfo.summary's on the same input, median: {statistics.median(speed):.2f}x "
        "(torchinfo runs the real forward, a few ms on these small models; ts.summary traces on meta, whose cost "
        "does not grow with the width: see the widest rows)" if speed else "- torchinfo: not measured",
        "",
        "Columns: check = errors / warnings / notes of the default `ts.check` (error ids in brackets); export = "
        "`ts.export(model, 'model.pt2')` with its default dynamic batch, plain = `torch.export.export(model, (x,))` "
        "on the same batch of 2 (refused = a TorchsmithError saying why; CRASH = any other exception); "
        "ratio = the doctor's time over one plain export plus one forward+backward at the same input.",
        "",
        "| model | params | params ok | FLOPs | FLOPs ok | summary ms | torchinfo ms | check | export | plain "
        "export | save/load | train step | doctor ratio |",
        "|---|---:|:-:|---:|:-:|---:|---:|---|---|---|---|---|---:|",
    ]
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.name} | | | | | | | skipped: {r.skipped} | | | | | |")
            continue
        check = r.check + (f" ({', '.join(r.check_errors)})" if r.check_errors else "")
        flops = f"{r.flops:,}" if r.flops is not None else "?"
        flops_ok = _mark(r.flops_ok) + ("" if r.flops_ok else f" (counter {r.flops_ref:,})")
        lines.append(
            f"| {r.name} | {r.params:,} | {_mark(r.params_ok)} | {flops} | {flops_ok} | {r.summary_s * 1e3:.0f} "
            f"| {r.torchinfo_s * 1e3:.0f} | {check} | {_short(r.export)} | {_short(r.plain_export)} "
            f"| {_short(r.save_load)} | {_short(r.train)} | {r.ratio:.2f} |")
    failures = [(r.name, what, text) for r in ran for what, text in
                (("export", r.export), ("save/load", r.save_load), ("train", r.train), ("check", r.check))
                if text not in ("", "ok") and not (what == "check" and text[0].isdigit())]
    failures += [(r.name, "problem", p) for r in ran for p in r.problems]
    if failures:
        lines += ["", "## Messages of what did not pass", ""]
        lines += [f"- {name}, {what}: {text}" for name, what, text in failures]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated model names (e.g. hf:bert,hf:vit)")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/corpus.md alone")
    args = parser.parse_args()
    models = BENCH_CORPUS
    if args.only:
        wanted = set(args.only.split(","))
        models = tuple(c for c in models if c.name in wanted)
    import transformers

    transformers.logging.set_verbosity_error()
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in models:
            t0 = time.perf_counter()
            row = measure(c, Path(tmp))
            rows.append(row)
            print(f"{c.name:32s} {time.perf_counter() - t0:6.1f} s  params {_mark(row.params_ok) or '-'} flops "
                  f"{_mark(row.flops_ok) or '-'} check {row.check or row.skipped[:40]} export {_short(row.export)} "
                  f"save/load {_short(row.save_load)} train {_short(row.train) or '-'} ratio {row.ratio:.2f}",
                  file=sys.stderr, flush=True)
    text = render(rows, time.perf_counter() - start)
    if args.no_write:
        print(text)
    else:
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(ROOT)} ({platform.node() or 'this machine'})")


if __name__ == "__main__":
    main()
