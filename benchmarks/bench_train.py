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



# ---------------------------------------------------------------------------------------------- language model
#: CPU: a 4-layer GPT of width 128 (0.84M parameters) on 128-byte windows; CUDA: GPT-2 small's shape (12 x 768)
#: on 1024-byte windows, large enough for a GPU's utilisation to mean something.
LM_SHAPES = {"cpu": {"n_layer": 4, "n_embd": 128, "n_head": 4, "seq": 128, "batch": 16, "repeat": 12},
             "cuda": {"n_layer": 12, "n_embd": 768, "n_head": 12, "seq": 1024, "batch": 16, "repeat": 120}}
#: Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, for model FLOPs utilisation.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def lm_model(device_type: str) -> torch.nn.Module:
    from gpt import GPT, GPTConfig

    shape = LM_SHAPES[device_type]
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=shape["n_layer"], n_embd=shape["n_embd"], n_head=shape["n_head"], vocab_size=256,
                         block_size=shape["seq"]))


def lm_text(folder: Path, device_type: str) -> Path:
    """The shipped corpus repeated to a few dozen steps an epoch, written as a text file (bytes are the tokens)."""
    from torchsmith.data.tokens import corpus_path

    path = folder / "text.txt"
    path.write_bytes(corpus_path().read_bytes() * LM_SHAPES[device_type]["repeat"])
    return path


def lm_config(device: torch.device, amp: str, **extra: object) -> ts.TrainConfig:
    shape = LM_SHAPES[device.type]
    return ts.TrainConfig(epochs=2, batch_size=shape["batch"], seq_len=shape["seq"], optimizer="adamw", lr=1e-3,
                          weight_decay=0.1, schedule="constant", grad_clip=1.0, device=device.type, amp=amp,
                          plot=False, log_every=10_000, **extra)  # type: ignore[arg-type]


def lm_hand_loop(text: Path, device: torch.device, amp: str) -> tuple[float, float]:
    """nanoGPT's loop (train.py's get_batch and step, no DDP): random windows of the byte stream, AdamW, clip
    1.0, the loss read every 10 steps; (tokens/s, tokens per CPU-second) over one epoch's steps after 10 warm-up
    steps. An epoch is as many steps as torchsmith's (the train split over batch x window)."""
    shape = LM_SHAPES[device.type]
    B, T = shape["batch"], shape["seq"]
    raw = torch.frombuffer(bytearray(text.read_bytes()), dtype=torch.uint8)
    data = raw[: int(0.9 * len(raw))].long()  # the train split, as torchsmith's text: data keeps 90%
    model = lm_model(device.type).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(data) - T - 1, (B,), generator=gen)
        x = torch.stack([data[i:i + T] for i in ix.tolist()])
        y = torch.stack([data[i + 1:i + 1 + T] for i in ix.tolist()])
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def run(steps: int) -> None:
        for it in range(steps):
            x, y = get_batch()
            with ctx:
                logits = model(x)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if it % 10 == 0:
                loss.item()

    run(10)
    sync(device)
    steps = len(data) // (B * T)
    t, c = time.perf_counter(), time.process_time()
    run(steps)
    sync(device)
    tokens = steps * B * T
    return tokens / (time.perf_counter() - t), tokens / (time.process_time() - c)


def lm_torchsmith(text: Path, device: torch.device, amp: str) -> tuple[float, float]:
    """``torchsmith.fit`` on ``text:`` for two epochs: the second epoch's (tokens/s, tokens per CPU-second; the
    CPU figure counts the whole second epoch, its evaluation included)."""
    clock = _EpochClock()
    cfg = lm_config(device, amp)
    result = ts.fit(lm_model(device.type), f"text:{text}", reporter=clock, config=cfg)
    last, first = result.history[-1], result.history[-2]
    tokens = (last["step"] - first["step"]) * cfg.batch_size * (cfg.seq_len or 0)
    return float(last["tokens_per_s"]), tokens / (clock.marks[-1] - clock.marks[-2])


def lm_torchrun(text: Path, strategy: str, procs: int) -> tuple[float, float]:
    """``torchsmith.fit`` under ``torchrun --nproc-per-node procs`` (gloo, one thread per rank) with ``strategy``:
    the second epoch's global tokens/s (the CPU-second figure is not measured: nan)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               str(Path(__file__).resolve()), "--lm-worker", str(out), "--text", str(text), "--strategy", strategy]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                              timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"the {strategy} torchrun row failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return float(json.loads(out.read_text())["tokens_per_s"]), float("nan")


def lm_worker(out: str, text: str, strategy: str) -> None:
    """One rank of :func:`lm_torchrun`."""
    result = ts.fit(lm_model("cpu"), f"text:{text}", config=lm_config(torch.device("cpu"), "off", strategy=strategy))
    if int(os.environ.get("RANK", "0")) == 0:
        Path(out).write_text(json.dumps({"tokens_per_s": result.history[-1]["tokens_per_s"]}))


def lm_flops_per_token(device_type: str) -> float:
    """The summary's training FLOPs (forward + backward) of one window, per token."""
    seq = LM_SHAPES[device_type]["seq"]
    return float(ts.summary(lm_model(device_type), (seq,), input_dtype="long").training_flops) / seq

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
    parser.add_argument("--lm", action="store_true",
                        help="The language model instead: a GPT on bytes, torchsmith's loop vs nanoGPT's.")
    parser.add_argument("--amp", choices=("off", "bf16"), default=None,
                        help="--lm: autocast (default: bf16 on CUDA, off on CPU).")
    parser.add_argument("--lm-worker", metavar="OUT", help=argparse.SUPPRESS)  # one rank of an LM torchrun row
    parser.add_argument("--text", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="ddp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lm_worker:
        lm_worker(args.lm_worker, args.text, args.strategy)
        return
    if args.lm:
        lm_main(args)
        return
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


def lm_main(args: argparse.Namespace) -> None:
    """The LM rows: nanoGPT's loop, torchsmith's, and (CPU) DDP and FSDP at ``--procs`` ranks; on CUDA, MFU."""
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = args.amp or ("bf16" if device.type == "cuda" else "off")
    shape = LM_SHAPES[device.type]
    flops = lm_flops_per_token(device.type)
    with tempfile.TemporaryDirectory() as tmp:
        text = lm_text(Path(tmp), device.type)
        runs: list[tuple[str, Callable[[], tuple[float, float]]]] = [
            ("nanoGPT-style hand loop (plain PyTorch)", lambda: lm_hand_loop(text, device, amp)),
            ("torchsmith (`fit`, text: data)", lambda: lm_torchsmith(text, device, amp))]
        if device.type == "cpu" and args.procs > 1:
            for strategy in ("ddp", "fsdp"):
                runs.append((f"torchsmith under torchrun, {args.procs} ranks x 1 thread (gloo), {strategy.upper()}",
                             functools.partial(lm_torchrun, text, strategy, args.procs)))
        figs: dict[str, list[tuple[float, float]]] = {}
        for rep in range(args.repeats):
            shift = rep % len(runs)
            for label, run in runs[shift:] + runs[:shift]:
                figs.setdefault(label, []).append(run())
                print(f"[{rep}] {label:70} {figs[label][-1][0]:12,.0f} tokens/s {figs[label][-1][1]:12,.0f} "
                      f"per CPU-s", flush=True)
    hand = runs[0][0]
    peak = next((v for k, v in PEAK_BF16.items() if device.type == "cuda" and k in torch.cuda.get_device_name()),
                None)

    def cell(values: list[float], base: list[float]) -> str:
        if any(math.isnan(v) for v in values):
            return "n/a | n/a"
        return f"{statistics.median(values):,.0f} | {statistics.median([v / b for v, b in zip(values, base)]):.2f}x"

    rows = ["| loop | tokens/s | vs hand loop | tokens per CPU-second | vs hand loop | MFU |",
            "|---|---:|---:|---:|---:|---:|"]
    for label, _ in runs:
        wall, cpu = [f[0] for f in figs[label]], [f[1] for f in figs[label]]
        mfu = f"{statistics.median(wall) * flops / peak:.1%}" if peak else "n/a"
        rows.append(f"| {label} | {cell(wall, [f[0] for f in figs[hand]])} | {cell(cpu, [f[1] for f in figs[hand]])} "
                    f"| {mfu} |")
    table = "\n".join(rows)
    print("\n" + table)
    print(f"training FLOPs per token (torchsmith.summary): {flops / 1e6:.2f} MFLOP"
          + (f"; peak bf16 {peak / 1e12:.0f} TFLOP/s" if peak else ""))
    if args.no_write:
        return
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    params = sum(p.numel() for p in lm_model(device.type).parameters())
    threads = torch.get_num_threads()
    section = f"""### Language model: torchsmith's loop against nanoGPT's (`benchmarks/bench_train.py --lm`)

A GPT (benchmarks/gpt.py, nanoGPT's layout: {shape["n_layer"]} layers, width {shape["n_embd"]}, {params:,}
parameters, tied head) on the shipped corpus repeated {shape["repeat"]}x as bytes (vocabulary 256), windows of
{shape["seq"]} tokens, batch {shape["batch"]}, AdamW, gradient clip 1.0, {amp if amp != "off" else "fp32"}, on
{dev_name} ({threads} torch thread{"s" if threads > 1 else ""} in one process); median of {args.repeats}
interleaved runs.
The hand loop is nanoGPT's `train.py` without its DDP: `get_batch` stacking random windows, the loss read every
10 steps, timed over an epoch's worth of steps after 10 warm-up steps; torchsmith's figure is its trainer's
throughput over the steps of its second epoch. Training FLOPs per token from `torchsmith.summary`:
{flops / 1e6:.2f} MFLOP.

{table}

- Command: `{command_line()}`
- Machine: {machine()}
"""
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        section += f"- Load average (1 min) at the end: {load:.1f} on {os.cpu_count()} cores\n"
        if load > (os.cpu_count() or 1) + 1:
            section += """- The machine was shared with other jobs during this run: wall-clock figures swing between
  repeats, and two torchrun processes take a larger share of a crowded machine than one process does, so the torchrun
  rows' wall ratios to the one-process hand loop overstate them. The per-CPU-second figures (one thread, the
  process's own CPU time) and DDP against FSDP (measured in the same repeats) are the comparisons that hold.
"""
    if device.type == "cpu":
        section += """- MFU needs a GPU's peak: `sh benchmarks/device_check.sh` runs this benchmark at bf16 on CUDA and
  prints tokens/s and MFU (the summary's training FLOPs per token x tokens/s / the card's dense bf16 peak).
- On a CPU, FSDP pays for its all-gather of every block's weights in forward and again in backward and a
  reduce-scatter of its gradients, all through gloo over loopback; it exists to fit what one device cannot,
  not to be faster than DDP where the model fits.
"""
    write_section("train-lm", section)


if __name__ == "__main__":
    main()
