"""``torchsmith show --memory`` and ``torchsmith plan`` as a user runs them (real subprocesses), their figures
against a real CPU step measured by the reference of ``tests/test_memory.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import torchsmith as ts
from test_memory import _real_peak, _real_saved
from torchsmith.cli import main

GPT_FILE = Path(__file__).parent / "handwritten_models.py"


def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "torchsmith", *args], capture_output=True, text=True, timeout=240,
                          cwd=Path(__file__).parent)
    if ok:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_show_memory_prints_the_measured_peak_and_activations() -> None:
    proc = _run("show", "lenet", "--memory", "--batch", "16", "--optimizer", "sgd", "--format", "json")
    plan = json.loads(proc.stdout)
    assert plan["batch_size"] == 16 and plan["optimizer"] == "sgd" and plan["precision"] == "fp32"
    torch.manual_seed(0)
    model, x = ts.create_model("lenet"), torch.randn(16, 3, 32, 32)
    assert abs(plan["peak"] / _real_peak(model, x, "sgd", "fp32") - 1) < 0.05
    assert plan["activations"] == _real_saved(model, x)


def test_show_memory_with_checkpointing_and_fsdp_in_text() -> None:
    proc = _run("show", "handwritten_models.py:TinyGPT", "--memory", "--batch", "2", "--checkpointing",
                "--world-size", "2", "--strategy", "fsdp")
    assert "Peak per device" in proc.stdout and "checkpointing 2 modules" in proc.stdout
    assert "FSDP2 on 2 devices" in proc.stdout


def test_plan_rows_for_every_way_and_the_one_device_peak_measured() -> None:
    proc = _run("plan", "handwritten_models.py:TinyGPT", "--device-memory", "1GB", "--world-size", "2",
                "--precision", "fp32", "--optimizer", "sgd", "--batch", "4", "--format", "json")
    table = json.loads(proc.stdout)
    ways = {(r["way"], r["checkpointing"]) for r in table["rows"]}
    assert ways == {(w, c) for w in ("1 device", "DDP x2", "FSDP x2") for c in (False, True)}
    one = next(r for r in table["rows"] if r["way"] == "1 device" and not r["checkpointing"])
    torch.manual_seed(0)
    from handwritten_models import TinyGPT

    real = _real_peak(TinyGPT(), torch.randint(0, 64, (4, 16)), "sgd", "fp32")
    assert abs(one["peak"] / real - 1) < 0.05 and one["fits"] and one["max_batch_size"] > 4
    ddp = next(r for r in table["rows"] if r["way"] == "DDP x2" and not r["checkpointing"])
    assert ddp["peak"] > one["peak"]  # gradient buckets: one more copy of the gradients


def test_fsdp_at_a_mixed_precision_is_not_planned_rather_than_planned_wrong() -> None:
    """Autocast's figure would count a bf16 copy of every weight; FSDP2's MixedPrecisionPolicy is not modelled."""
    with pytest.raises(ts.ConfigError, match="MixedPrecisionPolicy"):
        ts.memory("lenet", batch_size=2, world_size=2, strategy="fsdp", precision="bf16-mixed")
    plan = ts.plan_training("lenet", device_memory="1GB", world_size=2, precisions=("fp32", "bf16-mixed"),
                            batch_size=2)
    ways = {(r.way, r.precision) for r in plan.rows}
    assert ("FSDP x2", "fp32") in ways and ("DDP x2", "bf16-mixed") in ways
    assert ("FSDP x2", "bf16-mixed") not in ways
    assert any("MixedPrecisionPolicy" in n for n in plan.notes)


BAD = [
    (("show", "lenet", "--memory", "--optimizer", "adamx"), "adamx"),
    (("show", "lenet", "--memory", "--precision", "bf16-mixed", "--world-size", "2", "--strategy", "fsdp"),
     "MixedPrecisionPolicy"),
    (("show", "lenet", "--memory", "--world-size", "0"), "world_size"),
    (("show", "lenet", "--memory", "--batch", "-1"), "-1"),
    (("show", "lenet", "--memory", "--strategy", "fsdb", "--world-size", "2"), "fsdb"),
    (("plan", "lenet", "--device-memory", "12XB"), "12XB"),
    (("plan", "lenet", "--device-memory", "8GB", "--world-size", "0"), "world_size"),
    (("plan", "lenet", "--device-memory", "8GB", "--precision", "fp8"), "fp8"),
]


@pytest.mark.parametrize("args,says", BAD)
def test_bad_input_is_one_line_and_exit_1(args: tuple[str, ...], says: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], result.stderr
    assert result.stdout == "" and isinstance(result.exception, SystemExit)  # sys.exit(1) at the CLI boundary


def test_bad_input_in_a_real_process_has_no_traceback() -> None:
    proc = _run(*BAD[0][0], ok=False)
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "adamx" in proc.stderr
    assert "Traceback" not in proc.stderr
