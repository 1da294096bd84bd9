"""torchsmith.save / torchsmith.load against torch.save / torch.load, in one run.

Models: ResNet-50 (25.6M parameters, 102 MB) and a stack of 15 Linear(8192, 8192)
layers (1.007B parameters, 4.0 GB in float32). Every figure is the best of
``--repeats`` runs (1 for the 1B model), files on the same disk, page cache warm
(each file is read right after it was written, for both libraries alike).

* save: ``torchsmith.save(model, path)`` (safetensors + metadata + sha256 +
  fsync of file and directory + atomic rename) vs ``torch.save(model.state_dict(), f)``
  (no fsync, no hash).
* load: ``torchsmith.load(path)`` (rebuild the model from the metadata on the meta
  device, verify the sha256, memory-map the tensors) and the same with
  ``verify=False``, vs ``torch.load(f, weights_only=True)``, which returns only a
  state dict (no model) and is therefore the cheaper side of the comparison;
  ``torch.load(..., mmap=True)`` is shown for reference.

    python benchmarks/bench_checkpoint.py            # both models
    python benchmarks/bench_checkpoint.py --small    # ResNet-50 only
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine, write_section  # noqa: E402

import torchsmith as ts  # noqa: E402


class LinearStack(nn.Sequential):
    """``depth`` square Linear layers: the simplest ~1B-parameter model."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__(*[nn.Linear(width, width) for _ in range(depth)])
        self.default_input_size = (width,)


if "_bench_linear_stack" not in ts.list_models():
    @ts.register_model(name="_bench_linear_stack")
    def _linear_stack(*, width: int = 8192, depth: int = 15) -> LinearStack:
        return LinearStack(width, depth)


def _big_model(width: int, depth: int) -> nn.Module:
    # Built on the meta device and filled with a constant: a real kaiming init of 1B
    # parameters would take longer than the benchmark; content does not change the timings.
    with torch.device("meta"):
        model = ts.create_model("_bench_linear_stack", width=width, depth=depth)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.01)
    object.__setattr__(model, "torchsmith_arch", {"name": "_bench_linear_stack",
                                                  "kwargs": {"width": width, "depth": depth}})
    return model


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        del out
    return best


def bench(name: str, model: nn.Module, directory: Path, repeats: int) -> dict[str, float]:
    n_params = sum(p.numel() for p in model.parameters())
    pt, st = directory / f"{name}.pt", directory / f"{name}.safetensors"
    r: dict[str, float] = {"params": n_params}

    def torch_save() -> None:
        torch.save(model.state_dict(), pt)

    def torch_save_fsync() -> None:  # the same durability torchsmith.save pays for
        with open(pt, "wb") as f:
            torch.save(model.state_dict(), f)
            f.flush()
            os.fsync(f.fileno())

    r["torch_save"] = _best(torch_save, repeats)
    r["torch_save_fsync"] = _best(torch_save_fsync, repeats)
    r["bytes"] = pt.stat().st_size
    r["torch_load"] = _best(lambda: torch.load(pt, weights_only=True), repeats)
    r["torch_load_mmap"] = _best(lambda: torch.load(pt, weights_only=True, mmap=True), repeats)
    pt.unlink()  # frees its page cache before the other library's files appear
    r["ts_save"] = _best(lambda: ts.save(model, st), repeats)
    r["ts_load"] = _best(lambda: ts.load(st), repeats)
    r["ts_load_noverify"] = _best(lambda: ts.load(st, verify=False), repeats)
    loaded = ts.load(st)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    del loaded
    st.unlink()
    return r


def sha256_speed() -> float:
    """GB/s of hashlib.sha256 on one core here: what verifying a checkpoint costs per byte."""
    data = os.urandom(1 << 20) * 256  # 256 MiB
    return len(data) / 1e9 / _best(lambda: hashlib.sha256(data).digest(), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="ResNet-50 only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temp dir in the repo)")
    args = parser.parse_args()
    root = Path(args.dir) if args.dir else Path(__file__).resolve().parent
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    with tempfile.TemporaryDirectory(dir=root, prefix=".bench-ckpt-") as d:
        directory = Path(d)
        torch.manual_seed(0)
        rows.append(("ResNet-50", bench("resnet50", ts.create_model("resnet50"), directory, args.repeats)))
        print(rows[-1])
        if not args.small:
            big = _big_model(8192, 15)
            rows.append(("Linear stack 15x8192 (1.0B)", bench("linear1b", big, directory, 1)))
            del big
            print(rows[-1])
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    sha = sha256_speed()
    lines = [
        "## Checkpoints: torchsmith.save/load vs torch.save/torch.load",
        "",
        f"`{command_line()}`  ",
        f"Machine: {machine()}  ",
        "Files on the same local disk, page cache warm for both sides; best of "
        f"{args.repeats} runs (1 for the 1B model). Load ratio = torch.load time / torchsmith time "
        "(higher is better; target >= 2); save ratio = torchsmith time / torch.save time (lower is better; "
        "target <= 1.2). torchsmith.save also hashes (sha256) and fsyncs file and directory; torch.save does "
        "neither. torch.load returns only a state dict; torchsmith.load returns the rebuilt model. "
        f"System load average (1 min) {load_before:.1f} before and {load_after:.1f} after the run.",
        "",
        "| model | params | size | torch.save | torch.save + fsync | ts.save | save ratio | torch.load "
        "| torch.load mmap | ts.load (verified) | load speed-up | ts.load verify=False | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows:
        lines.append(
            f"| {label} | {r['params'] / 1e6:,.1f}M | {r['bytes'] / 1e9:.2f} GB | {r['torch_save']:.3f} s "
            f"| {r['torch_save_fsync']:.3f} s | {r['ts_save']:.3f} s | **{r['ts_save'] / r['torch_save']:.2f}x** "
            f"| {r['torch_load']:.3f} s "
            f"| {r['torch_load_mmap']:.3f} s | {r['ts_load']:.3f} s | **{r['torch_load'] / r['ts_load']:.2f}x** "
            f"| {r['ts_load_noverify']:.3f} s | **{r['torch_load'] / r['ts_load_noverify']:.2f}x** |")
    lines += [
        "",
        f"sha256 runs at {sha:.2f} GB/s on one core of this machine ({os.cpu_count()} cores). A verified load "
        "reads and hashes every byte, so it cannot be much faster than torch.load's single copy of the same "
        "bytes; torchsmith hashes 16 MiB pieces on all cores at once, which pays off with free cores. "
        "`verify=False` is the memory-mapped load alone (no copy: the tensors are views of the page cache). "
        "On save, the fsync (column torch.save + fsync: the same durability for torch.save) and the hash "
        "(overlapped with the write on other cores) are the extra cost over torch.save.",
    ]
    write_section("checkpoint", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
