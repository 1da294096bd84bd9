"""Training throughput: torchsmith's trainer against the loop most users write, in one run.

The baseline is the idiomatic loop of /work/shared/bench/hand_loop_baseline.py:
``DataLoader(TensorDataset(X, Y), batch_size=128, shuffle=True)``, fp32,
``loss.item()`` every step, SGD with momentum. torchsmith trains the same
model (the zoo's LeNet, or the CIFAR ResNet-18 on a GPU) on the same
synthetic 3x32x32 data with ``torchsmith.fit``; its figure is the training
steps' throughput of its last epoch (the first one warms up), the baseline's
that of a full epoch after 20 warm-up steps. Beside them: the ceiling (the
model's bare step on batches cut in advance) and, on a CPU, the trainer under
torchrun. Each loop runs ``--repeats`` times, interleaved with the order
rotating; a loop's figure is its median and its ratio the median of its
per-repeat ratios to the hand loop, so a machine whose speed drifts penalises
every loop alike.

    python benchmarks/bench_train.py            # CPU: LeNet; CUDA: LeNet and ResNet-18
    python benchmarks/bench_train.py --samples 4096 --repeats 1
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import command_line, machine, write_section  # noqa: E402

import torchsmith as ts  # noqa: E402
from torchsmith.data import load_synthetic  # noqa: E402
from torchsmith.train import Reporter  # noqa: E402


def make_model(name: str) -> torch.nn.Module:
    if name == "lenet":
        return ts.create_model("lenet")
    return ts.create_model("resnet18", stem="cifar", num_classes=10)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _EpochClock(Reporter):
    """Process CPU time at each epoch end: the trainer's cost measured from outside, immune to a busy machine."""

    def __init__(self) -> None:
        self.marks = [time.process_time()]

    def epoch_end(self, row: dict) -> None:
        self.marks.append(time.process_time())


def hand_loop(name: str, X: torch.Tensor, Y: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """The loop from the tutorials, verbatim in spirit: (images/s, images per CPU-second) over one epoch
    after 20 warm-up steps."""
    torch.manual_seed(0)
    model = make_model(name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dl = DataLoader(TensorDataset(X, Y), batch_size=128, shuffle=True, num_workers=0)

    def epoch(limit: int | None = None) -> int:
        seen, running = 0, 0.0
        for i, (xb, yb) in enumerate(dl):
            if limit is not None and i >= limit:
                break
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            running += loss.item()
            seen += len(yb)
        return seen

    epoch(limit=20)
    sync(device)
    t, c = time.perf_counter(), time.process_time()
    seen = epoch()
    sync(device)
    return seen / (time.perf_counter() - t), seen / (time.process_time() - c)


def bare_step(name: str, X: torch.Tensor, Y: torch.Tensor, device: torch.device,
              batch_size: int) -> tuple[float, float]:
    """The ceiling: the model's own training step on batches cut in advance (no loader, no metrics,
    no sync), over one epoch after 10 warm-up steps. No trainer can beat the step it runs."""
    torch.manual_seed(0)
    model = make_model(name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = len(X) // batch_size * batch_size
    perm = torch.randperm(len(X))[:n]
    xs = list(X[perm].to(device).split(batch_size))
    ys = list(Y[perm].to(device).split(batch_size))

    def run(limit: int) -> None:
        for xb, yb in zip(xs[:limit], ys[:limit]):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(10)
    sync(device)
    t, c = time.perf_counter(), time.process_time()
    run(len(xs))
    sync(device)
    return n / (time.perf_counter() - t), n / (time.process_time() - c)


def _config(batch_size: int, device: torch.device, amp: str, channels_last: bool,
            compile_: bool = False) -> ts.TrainConfig:
    return ts.TrainConfig(
        epochs=2, batch_size=batch_size, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
        weight_decay=0.0, schedule="constant", augment="none", device=device.type, amp=amp,
        channels_last=channels_last, compile=compile_, plot=False, log_every=10_000, eval_batch_size=2048)


def _splits(n: int) -> ts.DataSplits:
    # A one-batch test split: the trainer evaluates every epoch, the hand loop never does.
    return load_synthetic((3, 32, 32), 10, num_samples=n, num_test=128, seed=0)


def torchsmith_loop(name: str, splits: ts.DataSplits, device: torch.device, batch_size: int, amp: str,
                    channels_last: bool, compile_: bool = False) -> tuple[float, float]:
    """``torchsmith.fit`` for two epochs: the second epoch's (images/s, images per CPU-second).

    The CPU figure counts the whole second epoch, its evaluation of the test split included."""
    torch.manual_seed(0)
    model = make_model(name)
    clock = _EpochClock()
    result = ts.fit(model, splits, reporter=clock, config=_config(batch_size, device, amp, channels_last, compile_))
    images = len(splits.train) // batch_size * batch_size
    return float(result.history[-1]["images_per_s"]), images / (clock.marks[-1] - clock.marks[-2])


def torchrun_loop(name: str, n: int, batch_size: int, procs: int) -> tuple[float, float]:
    """``torchsmith.fit`` under ``torchrun --nproc-per-node procs`` (gloo, one thread per rank, as torchrun
    sets it): the second epoch's global images/s. Its CPU-second figure is not measured (nan)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               str(Path(__file__).resolve()), "--ddp-worker", str(out), "--model", name, "--samples", str(n),
               "--batch", str(batch_size)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return float(json.loads(out.read_text())["images_per_s"]), float("nan")


def ddp_worker(out: str, name: str, n: int, batch_size: int) -> None:
    """One rank of :func:`torchrun_loop`."""
    torch.manual_seed(0)
    result = ts.fit(make_model(name), _splits(n), config=_config(batch_size, torch.device("cpu"), "off", False))
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps({"images_per_s": result.history[-1]["images_per_s"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None, help="Training images (default 8192 CPU, 50000 GPU).")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    parser.add_argument("--procs", type=int, default=2,
                        help="CPU: also run the trainer under torchrun with this many processes (1: skip).")
    parser.add_argument("--ddp-worker", metavar="OUT", help=argparse.SUPPRESS)  # one rank of the torchrun row
    parser.add_argument("--model", default="lenet", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_worker:
        ddp_worker(args.ddp_worker, args.model, args.samples, args.batch)
        return
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    on_gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.samples or (50_000 if on_gpu else 8192)
    if on_gpu:
        torch.backends.cudnn.benchmark = True

    splits = _splits(n)
    # The baseline gets the same images, as the float tensor a user would have built.
    X = (splits.train.images.float() / 255 - 0.5) / 0.2887
    Y = splits.train.labels

    # (model, label, figures) for the runs beside the hand loop on this device; each returns
    # (wall images/s, images per CPU-second).
    Run = tuple[str, str, Callable[[], tuple[float, float]]]

    def fit_run(name: str, batch: int, amp: str = "off", cl: bool = False, compiled: bool = False) -> Run:
        label = ", ".join([f"torchsmith, batch {batch}"] + ([amp] if amp != "off" else []) +
                          (["channels_last"] if cl else []) + (["torch.compile"] if compiled else []))
        return name, label, lambda: torchsmith_loop(name, splits, device, batch, amp, cl, compiled)

    def ceiling(name: str, batch: int) -> Run:
        return (name, f"ceiling: the bare step on pre-cut batches, batch {batch}",
                lambda: bare_step(name, X, Y, device, batch))

    if on_gpu:
        runs = [ceiling("lenet", 128), fit_run("lenet", 128), fit_run("lenet", 4096, "bf16", True),
                fit_run("resnet18-cifar", 512, "bf16", True)]
    else:
        runs = [ceiling("lenet", 128), fit_run("lenet", 128), ceiling("lenet", 512), fit_run("lenet", 512),
                fit_run("lenet", 512, cl=True), fit_run("lenet", 128, amp="bf16"), fit_run("lenet", 128, compiled=True)]
        if args.procs > 1:
            runs.append(("lenet", f"torchsmith under torchrun, {args.procs} processes x 1 thread (gloo), "
                                  f"global batch 128", lambda: torchrun_loop("lenet", n, 128, args.procs)))
    models = sorted({r[0] for r in runs}, key=[r[0] for r in runs].index)

    # Each repeat runs every loop once, the order rotating from repeat to repeat; a loop's figure is its
    # median over the repeats, and its ratio the median of its per-repeat ratios to the hand loop of the
    # same repeat, so a machine whose speed drifts (shared cores) skews neither.
    figs: dict[str, list[tuple[float, float]]] = {}

    def record(key: str, figures: tuple[float, float], rep: int, label: str) -> None:
        figs.setdefault(key, []).append(figures)
        print(f"[{rep}] {label:60} {figures[0]:12,.0f} images/s {figures[1]:12,.0f} per CPU-s", flush=True)

    for rep in range(args.repeats):
        for name in models:
            loops: list[tuple[str, str, Callable[[], tuple[float, float]]]] = [
                ("hand" + name, f"{name} hand loop, batch 128", functools.partial(hand_loop, name, X, Y, device))]
            loops += [(label + name, f"{name} {label}", run) for model, label, run in runs if model == name]
            shift = rep % len(loops)
            for key, label, run in loops[shift:] + loops[:shift]:
                record(key, run(), rep, label)

    def median(values: list[float]) -> float:
        return float("nan") if any(math.isnan(v) for v in values) else statistics.median(values)

    def cells(key: str, hand: str, i: int) -> str:
        own = [f[i] for f in figs[key]]
        ratio = median([f[i] / h[i] for f, h in zip(figs[key], figs[hand])])
        return "n/a | n/a" if math.isnan(median(own)) else f"{median(own):,.0f} | {ratio:.2f}x"

    rows = ["| model | loop | images/s | vs hand loop | images per CPU-second | vs hand loop |",
            "|---|---|---:|---:|---:|---:|"]
    for name in models:
        hand = "hand" + name
        rows.append(f"| {name} | hand-written (DataLoader, batch 128, fp32, .item() per step) | "
                    f"{cells(hand, hand, 0)} | {cells(hand, hand, 1)} |")
        for model, label, _ in runs:
            if model == name:
                rows.append(f"| {name} | {label} | {cells(label + name, hand, 0)} | {cells(label + name, hand, 1)} |")
    table = "\n".join(rows)
    print("\n" + table)
    if args.no_write:
        return
    dev_name = torch.cuda.get_device_name() if on_gpu else "CPU"
    section = f"""## Training throughput (`benchmarks/bench_train.py`)

Synthetic 3x32x32 data, {n:,} training images, 10 classes, on {dev_name} ({torch.get_num_threads()} torch
threads); median of {args.repeats} interleaved
runs of each loop (the order rotating; ratios are medians of the per-run ratios). torchsmith's figure is its
trainer's own throughput over the training steps of its second
epoch (the dataset resident on the device as uint8, batches by index, no per-step sync); the hand loop's is a
full epoch after 20 warm-up steps. "Images per CPU-second" divides by the process's CPU time instead of the
wall clock (the trainer's whole second epoch, its evaluation of a 128-image test split included): with one
thread it is the throughput of one dedicated core, whatever else the machine is running.

{table}

- Command: `{command_line()}`
- Machine: {machine()}
"""
    if hasattr(os, "getloadavg"):
        section += f"- Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    if not on_gpu:
        section += """- The "ceiling" rows are the model's bare training step (the same SGD) on batches cut in advance:
  no loader, no metrics, no scheduler. Each bounds what any trainer can reach with this model here at its
  batch size: the DataLoader's per-sample work that torchsmith's data path removes is the whole gap
  between the hand loop and the batch-128 ceiling. Rows within ~10% of each other are within this shared
  machine's run-to-run drift, even as medians.
- On a CPU LeNet's step is its convolutions and pooling (a profile at batch 128: convolution backward ~34%,
  forward ~23%, max-pool ~15%, ReLU ~9%), which no data path touches, so the 2x CPU target is out of
  reach of a trainer: it is not met. The other levers do not help either (rows above): `torch.compile`
  (inductor's C++ kernels) and bf16 autocast (emulated on this AVX2 CPU, which has no native bf16; the
  trainer says so when asked for it) are slower than eager fp32, channels_last does not help these 3- to
  16-channel convolutions, and two single-thread processes under torchrun do no better than one process
  with two threads.
- The data path pays off where the model is fast and the loader is not: the issue's H100 figures show
  33,600 images/s for the hand loop against 1.37M for data on the GPU.
"""
        section += """- GPU figures are pending: this run had no GPU. `sh benchmarks/device_check.sh` runs the CUDA
  tests, a CLI training run and this benchmark on a GPU in one command; on CUDA the script runs LeNet at
  batch 128 (fp32) and at batch 4096, and the CIFAR ResNet-18 at batch 512, these two with bf16 autocast
  and channels_last (targets on one H100: 3,000,000 and 80,000 images/s).
"""
    write_section("train", section)


if __name__ == "__main__":
    main()
