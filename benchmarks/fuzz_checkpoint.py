"""Fuzz torchsmith's checkpoint readers with mutated and truncated files.

Every input must end in success or a ``TorchsmithError`` (never ``IndexError``,
``struct.error``, a crash or a hang), within 5 s. The seeds are real
checkpoints: a torchsmith ``.safetensors`` with its training-state companion,
the same pair for a spec model with header lengths whose first byte is ``0x80``
(pickle's PROTO opcode, which 1 save in 32 writes there), a zip ``.pt``
(``torch.save``) and a legacy (non-zip) ``.pt`` (which starts with ``0x80``
too). Mutations: byte flips, truncation, insertion, deletion, chunk
duplication, random header lengths (low byte ``0x80`` among them), a pickle's
first two bytes written over a safetensors length, and structured edits of the
safetensors JSON header.

The CI test (tests/test_checkpoint_fuzz.py) runs 2,000 inputs with a fixed
seed; this script runs many more (100,000 by default) and writes its result to
docs/fuzz.md:

    python benchmarks/fuzz_checkpoint.py --inputs 100000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

KINDS = ("safetensors", "train", "safetensors_80", "train_80", "pt_zip", "pt_legacy")
TIME_LIMIT_S = 5.0
#: A small spec model (a BatchNorm: a module with a version of its own) whose files start with 0x80.
SPEC = {"input": [3, 8, 8], "layers": [{"conv": {"out": 4, "kernel": 3}}, "batchnorm", "relu", "flatten",
                                        {"linear": 3}]}


class _Timeout(Exception):
    pass


def header_length(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[:8], "little")


def steer_first_byte(save: Callable[[str], Path], first: int = 0x80) -> Path:
    """Have ``save(pad)`` write a file whose header length starts with byte ``first``; return its path.

    ``pad`` is text that the file's header records as it is (a spec's description, an ``extra`` entry), so
    it lengthens the header byte for byte. torchsmith pads headers to 8 bytes, so ``first`` must be a
    multiple of 8. One trial save measures the header, the second writes the file.
    """
    if first % 8:
        raise ValueError(f"torchsmith pads headers to 8 bytes: the first byte {first:#x} cannot be written")
    path = save("")
    unpadded = len(path.read_bytes()[8:8 + header_length(path)].rstrip(b" "))
    path = save("p" * ((first - unpadded) % 256))
    if path.read_bytes()[0] != first:
        raise AssertionError(f"{path} starts with {path.read_bytes()[0]:#x}, not {first:#x}")
    return path


@contextmanager
def fixed_rng_states() -> Iterator[None]:
    """The python and numpy RNGs seeded with 0 inside, restored after: a training-state companion records
    their states, whose JSON length varies with their values, so two saves inside have equal lengths."""
    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(0)
    np.random.seed(0)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def describe_as(model: torch.nn.Module, text: str) -> torch.nn.Module:
    """The spec model ``model`` with ``text`` as its spec's description (recorded in a checkpoint's header)."""
    from torchsmith.registry import ARCH_ATTR

    arch = dict(getattr(model, ARCH_ATTR))
    arch["spec"] = {**arch["spec"], "description": text}
    object.__setattr__(model, ARCH_ATTR, arch)
    return model


def _trained(model: torch.nn.Module, shape: tuple[int, ...]) -> tuple[torch.optim.Optimizer, object]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, *shape)).sum().backward()
    opt.step()
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)


def make_seeds(directory: Path) -> dict[str, bytes]:
    """Real checkpoints of each kind, as bytes."""
    import torchsmith as ts

    torch.manual_seed(0)
    model = ts.create_model("lenet", num_classes=3, input_size=16)
    opt, sched = _trained(model, (3, 16, 16))
    path = directory / "seed.safetensors"
    ts.save(model, path, optimizer=opt, scheduler=sched, extra={"epoch": 1})
    seeds = {"safetensors": path.read_bytes(), "train": ts.checkpoint.training_state_path(path).read_bytes()}

    # The pair again, both headers' lengths starting with 0x80: the weights steered by the spec's
    # description, the training state by an extra entry (the RNG states it records are fixed: same length).
    spec_model = ts.build(SPEC)
    spec_opt, spec_sched = _trained(spec_model, tuple(SPEC["input"]))  # type: ignore[arg-type]
    path80 = directory / "seed80.safetensors"
    pads = {"weights": "", "state": ""}

    def save_pair(part: str, pad: str) -> Path:
        pads[part] = pad
        with fixed_rng_states():
            ts.save(describe_as(spec_model, pads["weights"]), path80, optimizer=spec_opt, scheduler=spec_sched,
                    extra={"epoch": 1, "pad": pads["state"]})
        return path80 if part == "weights" else ts.checkpoint.training_state_path(path80)

    steer_first_byte(lambda pad: save_pair("weights", pad))
    steer_first_byte(lambda pad: save_pair("state", pad))  # rewrites the weights unchanged
    seeds["safetensors_80"] = path80.read_bytes()
    seeds["train_80"] = ts.checkpoint.training_state_path(path80).read_bytes()
    assert seeds["safetensors_80"][0] == seeds["train_80"][0] == 0x80

    torch.save(model.state_dict(), directory / "seed.pt")
    seeds["pt_zip"] = (directory / "seed.pt").read_bytes()
    torch.save(model.state_dict(), directory / "legacy.pt", _use_new_zipfile_serialization=False)
    seeds["pt_legacy"] = (directory / "legacy.pt").read_bytes()
    for name in ("seed.safetensors", "seed.train.safetensors", "seed80.safetensors", "seed80.train.safetensors",
                 "seed.pt", "legacy.pt"):
        (directory / name).unlink()
    return seeds


def _mutate_header(rng: random.Random, data: bytes) -> bytes:
    """Re-serialise the safetensors header with one field changed, with a correct length field."""
    n = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        return data
    names = [k for k in header if k != "__metadata__"]
    if not names:
        return data
    entry = header[rng.choice(names)]
    choice = rng.randrange(9)
    wild = rng.choice([-1, 0, 1, 2**31, 2**63, 10**30, 3.5, "7", None, [], {}, True])
    if choice == 0:
        entry["dtype"] = rng.choice(["F32", "F64", "I8", "BOOL", "F8_E4M3", "Q4", "", 3, None])
    elif choice == 1:
        entry["shape"] = rng.choice([[], [0], [wild], [2**40, 2**40], "x", None, [1] * 70])
    elif choice == 2:
        entry["data_offsets"] = rng.choice([[0, 0], [wild, wild], [5, 3], [0], None, [0, 2**62]])
    elif choice == 3:
        entry["data_offsets"] = [o + rng.choice([-8, -1, 1, 8]) for o in entry.get("data_offsets", [0, 0])]
    elif choice == 4:
        meta = header.setdefault("__metadata__", {})
        if isinstance(meta, dict) and meta:
            key = rng.choice(list(meta))
            meta[key] = rng.choice(["", "{", "[]", "null", '{"name": 3}', '{"$t": "x"}', '{"spec": 1}',
                                    '{"name": "lenet", "kwargs": {"num_classes": -5}}',
                                    '{"name": "lenet", "kwargs": {"$torch.nn": "os"}}',
                                    '{"name": "resnet18"}', "[" * 5000, meta[key][::-1]])
    elif choice == 5:
        header["__metadata__"] = rng.choice([None, [], "x", {"a": 1}, {"format": None}])
    elif choice == 6:
        header[rng.choice(names)] = rng.choice([None, [], "x", 1, {"dtype": "F32"}])
    elif choice == 7:
        name = rng.choice(names)
        header[name + rng.choice(["x", ".weight", ""])] = header.pop(name)
    else:
        entry[rng.choice(["dtype", "shape", "data_offsets"])] = wild
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def mutate(rng: random.Random, data: bytes, kind: str) -> bytes:
    """One mutated or truncated variant of ``data``."""
    op = rng.randrange(10 if kind.startswith(("safetensors", "train")) else 7)
    b = bytearray(data)
    if op == 0:  # truncate
        return bytes(b[: rng.randrange(len(b))])
    if op <= 2:  # flip 1..8 bytes; half the time near the start where headers live
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(min(len(b), 2048)) if rng.random() < 0.5 else rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
        return bytes(b)
    if op == 3:  # insert random bytes
        i = rng.randrange(len(b) + 1)
        return bytes(b[:i] + rng.randbytes(rng.randint(1, 64)) + b[i:])
    if op == 4:  # delete a span
        i = rng.randrange(len(b))
        return bytes(b[:i] + b[i + rng.randint(1, 256):])
    if op == 5:  # duplicate a chunk
        i = rng.randrange(len(b))
        j = min(len(b), i + rng.randint(1, 4096))
        return bytes(b[:j] + b[i:j] + b[j:])
    if op == 6:  # overwrite a span with random or special bytes
        i = rng.randrange(len(b))
        fill = rng.choice([b"\x00", b"\xff", b"\x80", b"("])
        span = rng.randint(1, 32)
        b[i:i + span] = (fill * span) if rng.random() < 0.5 else rng.randbytes(span)
        return bytes(b)
    if op == 7:  # a random header length; some with the low byte 0x80, some that also look like PROTO 2..5
        n = int.from_bytes(b[:8], "little")
        near = n + 0x100 if n & 0xFF == 0x80 else (n & ~0xFF) | 0x80  # the real length's neighbour ending in 0x80
        return rng.choice([0, 1, 7, len(b), len(b) - 8, 2**63, 2**64 - 1, rng.randrange(2**32), 0x80, 0x280,
                           0x580, near, ((len(b) - 8) & ~0xFF) | 0x80]).to_bytes(8, "little") + bytes(b[8:])
    if op == 8:  # a pickle's first bytes over the length: PROTO 0x80 and a protocol, or 0x80 alone
        if b[0] == 0x80 or rng.random() < 0.5:  # (a seed that starts with 0x80 already gets the protocol)
            b[1] = rng.randint(2, 5)
        b[0] = 0x80
        return bytes(b)
    return _mutate_header(rng, bytes(b))


def check_one(path: Path, kind: str, model: torch.nn.Module) -> str:
    """Read ``path`` every way torchsmith reads files; return 'ok' or the TorchsmithError class name."""
    import torchsmith as ts
    from torchsmith.checkpoint import checkpoint_info, load_into

    outcomes = []
    if kind.startswith(("safetensors", "train")):
        try:
            if kind.startswith("safetensors"):
                ts.load(path)
            else:
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
                ts.load_training_state(path, optimizer=opt, scheduler=sched, restore_rng=False)
            outcomes.append("ok")
        except ts.TorchsmithError as e:
            outcomes.append(type(e).__name__)
    if not kind.startswith("train"):
        try:
            load_into(model, path, strict=False, on_mismatch="skip")
            checkpoint_info(path)
            outcomes.append("ok")
        except ts.TorchsmithError as e:
            outcomes.append(type(e).__name__)
    return "+".join(outcomes)


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout()


def run(n: int, seed: int, directory: Path) -> dict[str, object]:
    """Fuzz ``n`` inputs; return counts of outcomes. Raises on the first non-torchsmith error or slow input."""
    import torchsmith as ts

    seeds = make_seeds(directory)
    lenet, spec = ts.create_model("lenet", num_classes=3, input_size=16), ts.build(SPEC)
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    use_alarm = hasattr(signal, "SIGALRM")
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for i in range(n):
            kind = KINDS[i % len(KINDS)]
            data = mutate(rng, seeds[kind], kind)
            # The content decides, never the name: every other 0x80 safetensors input is named .pt.
            renamed = kind == "safetensors_80" and (i // len(KINDS)) % 2 == 1
            suffix = ".pt" if kind.startswith("pt") or renamed else ".safetensors"
            path = directory / (("x.train" if kind.startswith("train") else "x") + suffix)
            path.write_bytes(data)
            start = time.perf_counter()
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
            try:
                outcome = check_one(path, kind, spec if kind.endswith("_80") else lenet)
            except _Timeout:
                raise AssertionError(f"input {i} ({kind}) took over {TIME_LIMIT_S} s") from None
            except Exception as e:
                (directory / f"failure-{i}{suffix}").write_bytes(data)
                raise AssertionError(f"input {i} ({kind}) raised {type(e).__name__}: {e}; "
                                     f"kept as {directory / f'failure-{i}{suffix}'}") from e
            finally:
                if use_alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            slowest = max(slowest, time.perf_counter() - start)
            outcomes[f"{kind}: {outcome}"] += 1
            path.unlink()
    finally:
        if use_alarm:
            signal.signal(signal.SIGALRM, previous)
    return {"inputs": n, "seed": seed, "outcomes": dict(sorted(outcomes.items())), "slowest_s": slowest}


def _worker(args: tuple[int, int]) -> dict[str, object]:
    n, seed = args
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        return run(n, seed, Path(d))


def _write_doc(args: argparse.Namespace, done: int, total: Counter[str], slowest: float, elapsed: float) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import command_line, machine

    rows = "\n".join(f"| {k} | {v:,} |" for k, v in sorted(total.items()))
    status = ("" if done >= args.inputs else
              f"**Partial result: {done:,} of the {args.inputs:,} inputs asked for had run when this file was "
              "written.** ")
    doc = Path(__file__).resolve().parent.parent / "docs" / "fuzz.md"
    doc.write_text(
        "# Checkpoint fuzzing\n\n"
        f"`{command_line()}`\n\n"
        f"Machine: {machine()}; system load average (1 min) {os.getloadavg()[0]:.1f} when written "
        "(the machine is shared: times include waiting for a core)\n\n"
        f"{status}{done:,} mutated or truncated checkpoints (torchsmith safetensors, training-state companions, "
        "the same pair with header lengths whose first byte is 0x80 (`_80`; every other such input named `.pt`), "
        f"zip and legacy `.pt`), in batches of {args.batch:,} with seeds {args.seed} + batch index, in "
        f"{elapsed:.0f} s: **every input ended in success or a TorchsmithError**; none raised anything else, "
        f"none took over {TIME_LIMIT_S:.0f} s (slowest {slowest * 1000:.0f} ms).\n\n"
        "Outcome per input (`reader: result`; safetensors inputs are read by `load` and then by "
        "`load_into` + `checkpoint_info`, training-state inputs by `load_training_state`, `.pt` inputs by "
        "`load_into` + `checkpoint_info`; `ok` means the mutation left a loadable file, e.g. a changed byte "
        "in a `.pt` tensor value, which pickle files do not hash):\n\n"
        "| reader: result | inputs |\n|---|---:|\n" + rows + "\n"
    )
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2_500, help="inputs per task (one seed each)")
    args = parser.parse_args()
    start = time.perf_counter()
    tasks = [(min(args.batch, args.inputs - i), args.seed + k)
             for k, i in enumerate(range(0, args.inputs, args.batch))]
    total: Counter[str] = Counter()
    slowest, done = 0.0, 0
    import multiprocessing as mp

    # One fresh process per batch (maxtasksperchild=1) and a progress line and an updated docs/fuzz.md after
    # each, so a long campaign can be stopped at any time with an honest partial result on disk.
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        for r in pool.imap_unordered(_worker, tasks):
            total.update(r["outcomes"])  # type: ignore[arg-type]
            slowest = max(slowest, float(r["slowest_s"]))  # type: ignore[arg-type]
            done += int(r["inputs"])  # type: ignore[call-overload]
            doc = _write_doc(args, done, total, slowest, time.perf_counter() - start)
            print(f"{done}/{args.inputs} inputs, {time.perf_counter() - start:.0f} s, slowest {slowest:.3f} s",
                  flush=True)
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
