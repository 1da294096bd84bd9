"""Training throughput: torchsmith's trainer against the loop most users write, in one run.

The baseline is the idiomatic loop of /work/shared/bench/hand_loop_baseline.py:
``DataLoader(TensorDataset(X, Y), batch_size=128, shuffle=True)``, fp32,
``loss.item()`` every step, SGD with momentum. torchsmith trains the same
model (the zoo's LeNet, or the CIFAR ResNet-18 on a GPU) on the same
synthetic 3x32x32 data with ``torchsmith.fit``; its figure is the training
steps' throughput of its last epoch (the first one warms up), the baseline's
that of a full epoch after 20 warm-up steps. Each loop runs ``--repeats``
times, interleaved, and the best run of each counts, so a busy machine
penalises both alike.

    python benchmarks/bench_train.py            # CPU: LeNet; CUDA: LeNet and ResNet-18
    python benchmarks/bench_train.py --samples 4096 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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


def torchsmith_loop(name: str, splits: ts.DataSplits, device: torch.device, batch_size: int, amp: str,
                    channels_last: bool) -> tuple[float, float]:
    """``torchsmith.fit`` for two epochs: the second epoch's (images/s, images per CPU-second).

    The CPU figure counts the whole second epoch, its evaluation of the test split included."""
    torch.manual_seed(0)
    model = make_model(name)
    clock = _EpochClock()
    result = ts.fit(model, splits, reporter=clock, config=ts.TrainConfig(
        epochs=2, batch_size=batch_size, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
        weight_decay=0.0, schedule="constant", augment="none", device=device.type, amp=amp,
        channels_last=channels_last, plot=False, log_every=10_000, eval_batch_size=2048))
    images = len(splits.train) // batch_size * batch_size
    return float(result.history[-1]["images_per_s"]), images / (clock.marks[-1] - clock.marks[-2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=None, help="Training images (default 8192 CPU, 50000 GPU).")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave docs/benchmarks.md alone.")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    on_gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.samples or (50_000 if on_gpu else 8192)
    if on_gpu:
        torch.backends.cudnn.benchmark = True

    # A one-batch test split: the trainer evaluates every epoch, the hand loop never does.
    splits = load_synthetic((3, 32, 32), 10, num_samples=n, num_test=128, seed=0)
    # The baseline gets the same images, as the float tensor a user would have built.
    X = (splits.train.images.float() / 255 - 0.5) / 0.2887
    Y = splits.train.labels

    # (model, label, batch, amp, channels_last) for torchsmith's runs on this device.
    if on_gpu:
        runs = [("lenet", "torchsmith, batch 128", 128, "off", False),
                ("lenet", "torchsmith, batch 4096, bf16, channels_last", 4096, "bf16", True),
                ("resnet18-cifar", "torchsmith, batch 512, bf16, channels_last", 512, "bf16", True)]
    else:
        runs = [("lenet", "torchsmith, batch 128", 128, "off", False),
                ("lenet", "torchsmith, batch 512", 512, "off", False),
                ("lenet", "torchsmith, batch 512, channels_last", 512, "off", True)]
    models = sorted({r[0] for r in runs}, key=[r[0] for r in runs].index)

    # best (wall images/s, images per CPU-second) of each loop over the repeats
    best: dict[str, tuple[float, float]] = {}

    def record(key: str, figures: tuple[float, float], rep: int, label: str) -> None:
        old = best.get(key, (0.0, 0.0))
        best[key] = (max(old[0], figures[0]), max(old[1], figures[1]))
        print(f"[{rep}] {label:52} {figures[0]:12,.0f} images/s {figures[1]:12,.0f} per CPU-s", flush=True)

    for rep in range(args.repeats):
        for name in models:
            record("hand" + name, hand_loop(name, X, Y, device), rep, f"{name} hand loop, batch 128")
            for model, label, batch, amp, cl in runs:
                if model == name:
                    record(label + name, torchsmith_loop(name, splits, device, batch, amp, cl), rep,
                           f"{name} {label}")

    rows = ["| model | loop | images/s | vs hand loop | images per CPU-second | vs hand loop |",
            "|---|---|---:|---:|---:|---:|"]
    for name in models:
        hw, hc = best["hand" + name]
        rows.append(f"| {name} | hand-written (DataLoader, batch 128, fp32, .item() per step) | "
                    f"{hw:,.0f} | 1.00x | {hc:,.0f} | 1.00x |")
        for model, label, *_ in runs:
            if model == name:
                w, c = best[label + name]
                rows.append(f"| {name} | {label} | {w:,.0f} | {w / hw:.2f}x | {c:,.0f} | {c / hc:.2f}x |")
    table = "\n".join(rows)
    print("\n" + table)
    if args.no_write:
        return
    dev_name = torch.cuda.get_device_name() if on_gpu else "CPU"
    section = f"""## Training throughput (`benchmarks/bench_train.py`)

Synthetic 3x32x32 data, {n:,} training images, 10 classes, on {dev_name} ({torch.get_num_threads()} torch
threads); best of {args.repeats} interleaved
runs of each loop. torchsmith's figure is its trainer's own throughput over the training steps of its second
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
        section += """- On a CPU, LeNet's step is its convolutions and pooling (a profile at batch 512: convolution
  backward ~36%, forward ~26%, max-pool ~20%). The DataLoader's per-sample Python work, which the trainer
  removes, is a few percent of that, so the trainer matches the hand loop per CPU-second instead of doubling
  it: the 2x CPU target is not met. The data path pays off where the model is fast and the loader is not
  (GPUs: the issue's H100 baseline shows 33,600 images/s for the hand loop against 1.37M for data on the GPU).
"""
        section += """- GPU figures are pending: this run had no GPU. On CUDA the script also runs LeNet at batch
  4096 and the CIFAR ResNet-18 at batch 512 with bf16 autocast and channels_last (targets on one H100:
  3,000,000 and 80,000 images/s).
"""
    write_section("train", section)


if __name__ == "__main__":
    main()
