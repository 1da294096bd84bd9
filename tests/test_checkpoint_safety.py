"""Safety: malicious pickles are never executed, kill -9 never destroys a checkpoint, errors name the file."""

from __future__ import annotations

import errno
import importlib.util
import io
import os
import pickle
import random
import resource
import signal
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import torchsmith as ts
from torchsmith.checkpoint import checkpoint_info, convert_checkpoint, load_into, training_state_path
from torchsmith.checkpoint._atomic import temp_files_for
from torchsmith.checkpoint._sources import read_state_dict
from torchsmith.cli import main

REPO = Path(__file__).resolve().parent.parent


class _Payload:
    """Unpickling this runs ``touch marker`` (the classic __reduce__ attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


class _Nested:
    """Unpickling this unpickles an inner payload: pickle inside pickle."""

    def __init__(self, inner: bytes) -> None:
        self.inner = inner

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (pickle.loads, (self.inner,))


def _malicious_files(d: Path, marker: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    raw = pickle.dumps({"weight": torch.ones(2), "evil": _Payload(marker)}, protocol=2)
    files["raw_pickle"] = d / "raw.pt"
    files["raw_pickle"].write_bytes(raw)
    files["torch_save"] = d / "torch_save.pth"
    torch.save({"fc.weight": torch.ones(2, 2), "fc.bias": _Payload(marker)}, files["torch_save"])
    files["nested"] = d / "nested.bin"
    torch.save({"state_dict": {"w": torch.ones(1)}, "x": _Nested(pickle.dumps(_Payload(marker)))}, files["nested"])
    # A hand-made torch zip whose data.pkl is a bare payload; and a .pt zip wrapped in another zip.
    files["zip"] = d / "zipped.pt"
    with zipfile.ZipFile(files["zip"], "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Payload(marker)))
        zf.writestr("archive/version", "3\n")
    files["zip_in_zip"] = d / "zip_in_zip.pt"
    with zipfile.ZipFile(files["zip_in_zip"], "w") as zf:
        zf.writestr("archive/data.pkl", files["torch_save"].read_bytes())
    files["legacy"] = d / "legacy.pth"
    torch.save({"evil": _Payload(marker)}, files["legacy"], _use_new_zipfile_serialization=False)
    files["as_safetensors"] = d / "disguised.safetensors"
    files["as_safetensors"].write_bytes(raw)
    return files


def test_malicious_pickles_are_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    files = _malicious_files(tmp_path, marker)
    model = torch.nn.Linear(2, 2)
    for kind, path in files.items():
        for reader in (lambda p: load_into(model, p), checkpoint_info, lambda p: ts.load(p),
                       lambda p: convert_checkpoint(p, tmp_path / "out.safetensors")):
            with pytest.raises(ts.CheckpointError) as info:
                reader(path)
            assert str(path) in str(info.value), kind
            assert not marker.exists(), f"{kind}: the payload ran"
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(ts.CheckpointError, match=r"unsafe globals \((posix|os|nt)\.system.*--trust-pickle"):
        load_into(model, files["torch_save"])
    with pytest.raises(ts.CheckpointError, match=r"unsafe globals .*pickle\.loads"):
        load_into(model, files["nested"])


def test_malicious_pickle_refused_by_the_cli(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    path = _malicious_files(tmp_path, marker)["torch_save"]
    for args in (["info", str(path)], ["load-report", "lenet", str(path)],
                 ["convert", str(path), str(tmp_path / "o.safetensors")]):
        result = CliRunner().invoke(main, ["ckpt", *args])
        assert result.exit_code == 1, result.output
        assert "error: refused" in result.output and "Traceback" not in result.output
        assert not marker.exists()
    assert not (tmp_path / "o.safetensors").exists()


def test_whole_model_pickle_is_refused_with_the_fix(tmp_path: Path) -> None:
    torch.save(ts.create_model("lenet"), tmp_path / "whole.pt")
    with pytest.raises(ts.CheckpointError, match=r"LeNet.*pickles whole objects.*model.state_dict\(\)"):
        load_into(ts.create_model("lenet"), tmp_path / "whole.pt")
    # The explicit, never automatic, escape hatch for a file the user trusts.
    out = convert_checkpoint(tmp_path / "whole.pt", tmp_path / "whole.safetensors", trust_pickle=True)
    assert load_into(ts.create_model("lenet"), out).ok


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"garbage", b"PK\x03\x04 broken zip", b"\x80\x02}q\x00(X",
                                     (10**9).to_bytes(8, "little") + b"{}"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_malformed_files_give_one_error_naming_the_file(tmp_path: Path, content: bytes, suffix: str) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(ts.CheckpointError, match=str(path).replace(".", r"\.")):
        load_into(torch.nn.Linear(2, 2), path)


def _fuzz_engine():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_fuzz_checkpoint", REPO / "benchmarks" / "fuzz_checkpoint.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _versioned_first_byte(value: float, first: int, probe: Path) -> torch.nn.Module:
    """resnet20 (built from its spec) filled with ``value``, whose checkpoint header length starts with ``first``:
    steered by the spec's description, which the header records (issue 15: 0x80 was taken for a pickle)."""
    engine = _fuzz_engine()
    model = ts.build_file(REPO / "examples" / "resnet20.yaml")
    with torch.no_grad():
        for t in model.state_dict().values():
            t.fill_(value)
    engine.steer_first_byte(lambda pad: ts.save(engine.describe_as(model, pad), probe), first)
    probe.unlink()
    return model


def _fork(child: Callable[[], int]) -> int:
    """Run ``child`` in a forked process (a real one: it can be SIGKILLed); return its pid.

    Fork rather than a fresh interpreter: importing torch takes seconds, and the
    child only writes files (no intra-op parallel work, which must not run after fork).
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            torch.set_num_threads(1)
            code = child()
        finally:
            os._exit(code)
    return pid


@pytest.mark.slow
def test_kill_9_during_overwrite_leaves_a_complete_checkpoint(tmp_path: Path) -> None:
    # The two versions' headers start with 0x80 (pickle's PROTO byte) and 0x88: every read after a kill
    # must take the file for the safetensors file it is.
    path = tmp_path / "ckpt.safetensors"
    probe = tmp_path / "probe.safetensors"
    ts.save(_versioned_first_byte(0, 0x80, probe), path)
    versions = [_versioned_first_byte(1, 0x80, probe), _versioned_first_byte(2, 0x88, probe)]

    def writer() -> int:
        i = 0
        while True:  # overwrite the same path, alternating two versions, until killed
            ts.save(versions[i % 2], path)
            i += 1

    rng = random.Random(1234)
    trials, interrupted, seen, firsts = 24, 0, set(), set()
    for _ in range(trials):
        pid = _fork(writer)
        time.sleep(rng.uniform(0.005, 0.15))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        interrupted += bool(temp_files_for(path))
        source = read_state_dict(path)  # verifies the sha256: the file is one complete save
        assert source.kind == "safetensors" and source.verified is True
        values = {float(v) for t in source.tensors.values() for v in t.unique()}
        assert len(values) == 1, f"a mix of versions: {sorted(values)[:5]}"
        seen |= values
        firsts.add(path.read_bytes()[0])
    loaded = ts.load(path)
    assert seen <= {0.0, 1.0, 2.0} and firsts <= {0x80, 0x88} and 0x80 in firsts
    assert load_into(_versioned_first_byte(0, 0x80, probe), path).ok and checkpoint_info(path).verified
    # Some kills must have landed mid-write for the test to mean anything.
    assert interrupted >= 1, "no kill landed during a write; lengthen the writes"
    ts.save(loaded, path)
    assert temp_files_for(path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_error_mid_write_keeps_the_old_file_and_surfaces_the_original_exception(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.safetensors"
    ts.save(ts.create_model("lenet"), path)
    before = path.read_bytes()
    model = ts.create_model("resnet20")  # ~1 MB: larger than the limit below

    def child() -> int:
        # A real failure half-way through the data: the file-size limit makes write() fail with EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            ts.save(model, path)
        except OSError as e:  # the original exception, not wrapped
            return 3 if e.errno == errno.EFBIG else 4
        return 5

    _, status = os.waitpid(_fork(child), 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_zip_bomb_like_sizes_do_not_hang(tmp_path: Path) -> None:
    # A header that promises a 2**40-element tensor: refused from the header alone, at once.
    bad = tmp_path / "huge.safetensors"
    header = b'{"w":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}'
    bad.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    # A hang is caught by the suite's timeout (pytest-timeout); the fact here is what refuses it: the header.
    with pytest.raises(ts.CheckpointError, match="4398046511104 bytes.*holds 16"):
        checkpoint_info(bad)
    buf = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buf)
    (tmp_path / "trunc.pt").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ts.CheckpointError, match=r"trunc\.pt is not a readable PyTorch checkpoint"):
        checkpoint_info(tmp_path / "trunc.pt")


def test_failed_training_state_write_keeps_the_previous_pair(tmp_path: Path) -> None:
    # Weights fit under the file-size limit, the Adam state (twice the weights) does not: the save fails
    # after the weights file is complete. The old weights and the old training state must both survive,
    # still belonging together, so a run can resume from them.
    path = tmp_path / "ckpt.safetensors"
    model = ts.create_model("lenet")  # ~250 KB of weights
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    ts.save(model, path, optimizer=opt, extra={"epoch": 1})
    old_weights, old_state = path.read_bytes(), training_state_path(path).read_bytes()
    with torch.no_grad():
        model.fc3.weight.add_(1.0)

    def child() -> int:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))
        try:
            ts.save(model, path, optimizer=opt, extra={"epoch": 2})
        except OSError as e:
            return 3 if e.errno == errno.EFBIG else 4
        return 5

    _, status = os.waitpid(_fork(child), 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3
    assert path.read_bytes() == old_weights and training_state_path(path).read_bytes() == old_state
    assert ts.load_training_state(path, optimizer=torch.optim.Adam(model.parameters()), restore_rng=False) == {
        "epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors", "ckpt.train.safetensors"]


@pytest.mark.slow
def test_kill_9_during_a_training_state_save_leaves_a_pair_that_loads(tmp_path: Path) -> None:
    """kill -9 while ``save(..., optimizer=, extra=)`` writes a pair whose two headers start with 0x80: the
    weights always load, and so does the training state (a kill between the two renames is finished by the
    reader), never misread."""
    engine = _fuzz_engine()
    path, probe = tmp_path / "last.safetensors", tmp_path / "probe.safetensors"
    model = _versioned_first_byte(1, 0x80, probe)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()

    def save(pad: str) -> Path:
        with engine.fixed_rng_states():  # the RNG states the companion records: the same length every time
            ts.save(model, path, optimizer=opt, extra={"step": 0, "pad": pad})
        return training_state_path(path)

    engine.steer_first_byte(save)
    extra_pad = ts.load_training_state(path, restore_rng=False)["pad"]
    assert path.read_bytes()[0] == training_state_path(path).read_bytes()[0] == 0x80

    def writer() -> int:
        step = 0
        while True:
            step = (step + 1) % 10  # one digit: the header keeps its length
            with engine.fixed_rng_states():
                ts.save(model, path, optimizer=opt, extra={"step": step, "pad": extra_pad})

    rng = random.Random(4321)
    interrupted = 0
    for _ in range(8):
        pid = _fork(writer)
        time.sleep(rng.uniform(0.005, 0.1))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        interrupted += bool(temp_files_for(path) or temp_files_for(training_state_path(path)))
        assert path.read_bytes()[0] == training_state_path(path).read_bytes()[0] == 0x80
        target = ts.build_file(REPO / "examples" / "resnet20.yaml")
        assert load_into(target, path).ok
        extra = ts.load_training_state(path, optimizer=torch.optim.SGD(target.parameters(), lr=0.1, momentum=0.9),
                                       restore_rng=False)
        assert extra["pad"] == extra_pad
    assert interrupted >= 1, "no kill landed during a write; lengthen the writes"


def _trainer_pairs(tmp_path: Path) -> tuple[Path, list[tuple[torch.nn.Module, object, object, dict]]]:
    """A real run directory stopped at step 3 (its pair on disk), and the trainer's objects of steps 3 and 6."""
    from torchsmith.train import fit
    from torchsmith.train.optim import build_optimizer, build_scheduler
    from torchsmith.train.resume import run_config

    opts = {"epochs": 2, "batch_size": 128, "plot": False}  # 10 steps an epoch
    states = []
    for steps in (3, 6):
        torch.manual_seed(0)
        fit(ts.create_model("lenet", in_channels=1, input_size=16), "digits", out_dir=str(tmp_path / f"at{steps}"),
            max_steps=steps, **opts)
        ckpt = tmp_path / f"at{steps}" / "last.safetensors"
        model, cfg = ts.load(ckpt), run_config(tmp_path / f"at{steps}")
        opt = build_optimizer(model, cfg, torch.device("cpu"))
        sched = build_scheduler(opt, cfg, 10)
        states.append((model, opt, sched, ts.load_training_state(ckpt, optimizer=opt, scheduler=sched)))
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "last.safetensors", "last.train.safetensors"):
        (run / name).write_bytes((tmp_path / "at3" / name).read_bytes())
    return run, states


def _kill_after_renames(n: int) -> None:
    """In a writer child: SIGKILL this process right after its ``n``-th file rename (1: between a pair's two)."""
    real_replace, done = os.replace, [0]

    def replace(src: object, dst: object) -> None:
        real_replace(src, dst)  # type: ignore[arg-type]
        done[0] += 1
        if done[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    os.replace = replace  # type: ignore[assignment]  # the forked child's own os module only


@pytest.mark.slow
def test_kill_9_of_the_trainers_save_always_leaves_a_pair_that_resumes(tmp_path: Path) -> None:
    """SIGKILL a process saving the trainer's weights + training state at random moments and, deterministically,
    between the two renames and right after them: the run directory always holds a whole pair (the new one or
    the previous one, weights and state of the same step), and ``resume`` continues from it."""
    from torchsmith.train import resume

    run, states = _trainer_pairs(tmp_path)
    path = run / "last.safetensors"
    by_step = {st[3]["trainer"]["global_step"]: st[0].state_dict() for st in states}
    assert sorted(by_step) == [3, 6]

    def writer(kill_after_rename: int | None) -> Callable[[], int]:
        def child() -> int:
            if kill_after_rename is not None:
                _kill_after_renames(kill_after_rename)
            i = 1
            while True:  # alternate the step-6 and step-3 pairs, as a trainer saving every step would
                model, opt, sched, extra = states[i % 2]
                ts.save(model, path, optimizer=opt, scheduler=sched, extra=extra)
                i += 1
        return child

    rng = random.Random(2024)
    # Renames 1, 3, 5: between a pair's two renames (each save renames weights, then state); 2, 4: after both.
    moments: list[tuple[int | None, float]] = [(n, 0.0) for n in (1, 2, 3, 4, 5)]
    moments += [(None, rng.uniform(0.002, 0.12)) for _ in range(16)]
    split, interrupted, steps_seen = 0, 0, set()
    for kill_after_rename, delay in moments:
        pid = _fork(writer(kill_after_rename))
        if kill_after_rename is None:
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        interrupted += bool(temp_files_for(path) or temp_files_for(training_state_path(path)))
        if kill_after_rename is not None and kill_after_rename % 2:  # new weights, old state: truly split
            weights_hash = read_header_metadata(path)
            state_hash = read_header_metadata(training_state_path(path), "model_sha256")
            split += weights_hash != state_hash
        # A whole pair: the weights are one step's, the training state is the same step's.
        extra = ts.load_training_state(path, restore_rng=False)
        step = extra["trainer"]["global_step"]
        loaded = ts.load(path).state_dict()
        assert all(torch.equal(loaded[k], by_step[step][k]) for k in loaded), step
        steps_seen.add(step)
        # And resume really continues from it: one more step, from exactly where the pair says.
        copy = tmp_path / "resumed"
        copy.mkdir()
        for f in run.iterdir():
            if f.is_file() and not f.name.startswith("."):
                (copy / f.name).write_bytes(f.read_bytes())
        result = resume(copy, max_steps=step + 1)
        assert result.resumed_from == {"epoch": 0, "step": step} and result.global_step == step + 1
        for f in copy.iterdir():
            f.unlink()
        copy.rmdir()
    assert split == 3, "the deterministic kills between the two renames did not split the pair"
    assert steps_seen == {3, 6} and interrupted >= 1


def read_header_metadata(path: Path, key: str = "") -> str | None:
    from torchsmith.checkpoint._format import HASH_KEY, read_header

    return read_header(path).metadata.get(key or HASH_KEY)
