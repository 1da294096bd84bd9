"""The everyday commands against a bare ``python -c "import torch"``: whole processes, paired runs.

Each command and the baseline run in turn (A B A B ...) in fresh processes; the ratio is taken pair by pair
and its median reported, so a machine whose speed drifts during the run moves both sides of a pair. Also
reported: what ``import torchsmith`` costs on top of ``import torch`` (``python -X importtime``, the
cumulative time of the ``torchsmith`` line after torch is already imported).

Run:  .venv/bin/python benchmarks/bench_cli.py            (writes its section of docs/benchmarks.md)
      .venv/bin/python benchmarks/bench_cli.py --runs 9 --no-write
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TORCHSMITH = shutil.which("torchsmith", path=str(Path(sys.executable).parent)) or "torchsmith"
BASELINE = [sys.executable, "-c", "import torch"]

#: command -> the target ratio to the baseline (issue 19)
COMMANDS = {
    "torchsmith --help": 1.1,
    "torchsmith models": 1.1,
    "torchsmith show lenet": 1.2,
    "torchsmith show resnet50": 1.2,
    "torchsmith check lenet --checks input-mutated": 1.2,
}


#: Where the time goes (python -X importtime and cProfile of each command), printed under the table.
NOTES = (
    "Where the time goes: `import torchsmith` imports the facade, the registry and the errors; the zoo and the "
    "library sources (with the spec package and YAML they register into) are imported on the registry's first "
    "lookup, which every command but `--help` makes. `show resnet50` runs torch's Python meta kernels (ResNet-50 "
    "is past the CPU stand-in's bounds of 4M parameters and 0.5 GFLOPs), and those import sympy and torch's "
    "symbolic shapes on first use, a third or more of a bare `import torch`: that is most of what remains over "
    "the target. Its exact activations run on meta too, so `torch._dynamo` (which fake tensors import, more than "
    "`import torch` costs on this machine) is no longer imported. `show` imports rich only for a terminal "
    "and the memory engine (torch.export, the distributed tools) only for `--memory`."
)


def wall(argv: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    return elapsed


def paired(command: str, runs: int) -> dict[str, float]:
    argv = [TORCHSMITH, *command.split()[1:]]
    wall(argv)  # warm the file cache once, uncounted
    pairs = [(wall(argv), wall(BASELINE)) for _ in range(runs)]
    return {"command_s": statistics.median(a for a, _ in pairs), "torch_s": statistics.median(b for _, b in pairs),
            "ratio": statistics.median(a / b for a, b in pairs), "min_ratio": min(a / b for a, b in pairs),
            "max_ratio": max(a / b for a, b in pairs)}


def import_cost(runs: int) -> float:
    """Median seconds ``import torchsmith`` adds once torch is imported, from ``-X importtime``."""
    costs = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import torch; import torchsmith"],
                              capture_output=True, text=True, timeout=300)
        line = next(ln for ln in done.stderr.splitlines() if ln.rstrip().endswith("| torchsmith"))
        costs.append(int(line.split("|")[1]) / 1e6)
    return statistics.median(costs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="pairs per command (default 7)")
    ap.add_argument("--no-write", action="store_true", help="print the table, do not touch docs/benchmarks.md")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from _report import command_line, machine, write_section

    load_before = os.getloadavg()
    cost = import_cost(args.runs)
    rows = []
    for command, target in COMMANDS.items():
        r = paired(command, args.runs)
        rows.append((command, target, r))
        print(command, r, flush=True)
    load_after = os.getloadavg()
    lines = [
        "## Everyday commands against a bare `import torch` (`benchmarks/bench_cli.py`)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine()}  ",
        f"Load average while it ran: {load_before[0]:.1f} before, {load_after[0]:.1f} after (other jobs shared "
        "the cores; the ratios pair each run with a baseline run made next to it).",
        "",
        f"`import torchsmith` after `import torch` (`python -X importtime -c 'import torch; import torchsmith'`, "
        f"median of {args.runs}): {cost * 1000:.0f} ms (target: at most 50 ms).",
        "",
        f"Each row: {args.runs} pairs of fresh processes, the command then `python -c 'import torch'`, wall time "
        "from start to exit; the medians of each side and of the pairwise ratio (min-max in brackets).",
        "",
        "| command | command (median) | `python -c 'import torch'` (median) | ratio (min-max) | target |",
        "|---|---:|---:|---:|---:|",
    ]
    for command, target, r in rows:
        lines.append(f"| `{command}` | {r['command_s']:.2f} s | {r['torch_s']:.2f} s | {r['ratio']:.2f} "
                     f"({r['min_ratio']:.2f}-{r['max_ratio']:.2f}) | {target:.1f}x |")
    lines += ["", NOTES]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("cli", text)


if __name__ == "__main__":
    main()
