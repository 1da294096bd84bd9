"""FSDP2 and DDP language-model training under real 2-process gloo torchrun, against one process.

One torchrun job runs every distributed case in a row (process start-up and imports dominate on CPU): FSDP,
DDP, an FSDP run stopped part way and resumed, and a transformers decoder; each rank writes what it saw. The
one-process reference runs in the test process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import torchsmith as ts
from torchsmith.data.tokens import corpus_path
from torchsmith.demo import TinyGPT
from torchsmith.train import TrainConfig, fit

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
GLOO = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                          reason="this torch build has no gloo backend")

#: A short text (2,000 bytes of the shipped corpus): 7 steps an epoch of 8 windows of 32 tokens.
COMMON = {"epochs": 2, "batch_size": 8, "seq_len": 32, "lr": 3e-3, "grad_clip": 1.0, "plot": False, "seed": 0}

RANK_SCRIPT = r"""
import json, os, sys, torch, torch.distributed as dist
import torchsmith as ts
from torchsmith.demo import TinyGPT
from torchsmith.train import TrainConfig, fit, resume
out, text, common = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
dist.init_process_group("gloo")  # one group for every run below (fit leaves a caller's group alone)
rank = dist.get_rank()
probe = torch.arange(64).remainder(256).view(2, 32)

def run(name, strategy, model=None, **extra):
    torch.manual_seed(0)
    model = model or TinyGPT(block_size=32)
    cfg = TrainConfig(data=f"text:{text}", out_dir=f"{out}/{name}", strategy=strategy, **{**common, **extra})
    result = fit(model, None, cfg)
    with torch.no_grad():
        logits = model.eval()(probe)  # a collective under FSDP: every rank runs it
        logits = getattr(logits, "logits", logits)
    info = {"history": result.history, "notes": result.notes,
            "local": {n: [p.to_local().numel(), p.numel()] for n, p in model.named_parameters()
                      if hasattr(p, "to_local")}}
    json.dump(info, open(f"{out}/{name}-rank{rank}.json", "w"))
    if rank == 0:
        torch.save(logits.detach(), f"{out}/{name}-logits.pt")
    return model

run("fsdp", "fsdp")
run("ddp", "ddp")
run("part", "fsdp", max_steps=9)  # stops in epoch 2 with a sharded checkpoint
torch.manual_seed(0)
model = TinyGPT(block_size=32)
resumed = resume(f"{out}/part", model)
json.dump({"history": resumed.history, "notes": resumed.notes}, open(f"{out}/part-rank{rank}.json", "w"))
with torch.no_grad():
    logits = model.eval()(probe)  # every rank: a collective
if rank == 0:
    torch.save(logits, f"{out}/part-logits-fsdp-model.pt")
hf = ts.create_model("hf:gpt2:ForCausalLM", n_layer=2, n_embd=32, n_head=2, vocab_size=256, n_positions=32)
run("hf", "fsdp", model=hf, epochs=1)
dist.destroy_process_group()
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TORCHSMITH_DIST_TIMEOUT="60")
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "short.txt"
    path.write_bytes(corpus_path().read_bytes()[:2000])
    return path


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory, text: Path) -> Path:
    out = tmp_path_factory.mktemp("fsdp")
    script = out / "rank.py"
    script.write_text(RANK_SCRIPT)
    proc = subprocess.run([*TORCHRUN, str(script), str(out), str(text), json.dumps(COMMON)], capture_output=True,
                          text=True, env=_env(), timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out


def _one_process(text: Path, out: Path) -> tuple[TinyGPT, list[dict]]:
    torch.manual_seed(0)
    model = TinyGPT(block_size=32)
    result = fit(model, None, TrainConfig(data=f"text:{text}", out_dir=str(out), **COMMON))  # type: ignore[arg-type]
    return model, result.history


def _rank(ranks: Path, name: str, rank: int = 0) -> dict:
    return json.loads((ranks / f"{name}-rank{rank}.json").read_text())


def _fsdp_and_ddp_match_one_process_and_each_other(ranks: Path, text: Path, tmp_path: Path) -> None:
    single, history = _one_process(text, tmp_path / "one")
    fsdp, ddp = _rank(ranks, "fsdp")["history"], _rank(ranks, "ddp")["history"]
    assert fsdp[-1]["train_loss"] < fsdp[0]["train_loss"]  # it learns
    for key in ("train_loss", "test_loss"):
        # Same global batches, gradients reduced in another order: equal to float tolerance.
        assert abs(fsdp[-1][key] - ddp[-1][key]) < 1e-4, (key, fsdp[-1][key], ddp[-1][key])
        assert abs(fsdp[-1][key] - history[-1][key]) < 1e-3, (key, fsdp[-1][key], history[-1][key])
    assert "test_ppl" in fsdp[-1] and fsdp[-1]["test_ppl"] == pytest.approx(2.718281828 ** fsdp[-1]["test_loss"])
    # The consolidated file has the one-process model's layout and reproduces the run's last logits.
    merged = load_file(ranks / "fsdp" / "model.safetensors")
    reference = load_file(tmp_path / "one" / "last.safetensors")
    assert sorted(merged) == sorted(reference)
    for k in reference:
        assert torch.allclose(merged[k], reference[k], atol=1e-4), k
    fresh = TinyGPT(block_size=32)
    ts.load_into(fresh, ranks / "fsdp" / "model.safetensors")
    probe = torch.arange(64).remainder(256).view(2, 32)
    with torch.no_grad():
        assert torch.allclose(fresh.eval()(probe), torch.load(ranks / "fsdp-logits.pt"), atol=1e-5)


def _each_rank_holds_half_of_every_parameter(ranks: Path) -> None:
    for rank in (0, 1):
        local = _rank(ranks, "fsdp", rank)["local"]
        assert local, "FSDP parameters are DTensors"
        total = sum(full for _, full in local.values())
        held = sum(mine for mine, _ in local.values())
        assert held * 2 == total
    notes = " ".join(_rank(ranks, "fsdp")["notes"])
    assert "strategy fsdp" in notes and "task causal-lm" in notes


def _sharded_resume_is_bit_identical(ranks: Path) -> None:
    whole, resumed = _rank(ranks, "fsdp")["history"], _rank(ranks, "part")["history"]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in whole]
    assert torch.equal(torch.load(ranks / "part-logits-fsdp-model.pt"), torch.load(ranks / "fsdp-logits.pt"))
    a, b = load_file(ranks / "fsdp" / "model.safetensors"), load_file(ranks / "part" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # ckpt consolidate writes the same file from the shards alone, in one process.
    out = ranks / "merged.safetensors"
    proc = subprocess.run([sys.executable, "-m", "torchsmith", "ckpt", "consolidate", str(ranks / "part"), str(out),
                           "--model", "torchsmith.demo:TinyGPT", "--opt", "block_size=32"],
                          capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged = load_file(out)
    assert merged.keys() == b.keys() and all(torch.equal(merged[k], b[k]) for k in b)


def _a_transformers_decoder_consolidates_for_ts_load(ranks: Path) -> None:
    model = ts.load(ranks / "hf" / "model.safetensors")  # rebuilt from its metadata on one device
    probe = torch.arange(64).remainder(256).view(2, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(probe).logits, torch.load(ranks / "hf-logits.pt"), atol=1e-5)
    history = _rank(ranks, "hf")["history"]
    assert history[-1]["train_loss"] < 5.5  # log(256) = 5.55 at the start


@pytest.mark.slow
@GLOO
def test_fsdp_and_ddp_under_two_ranks(ranks: Path, text: Path, tmp_path: Path) -> None:
    """The checks above, in one test: each test of this module that asks for the torchrun job would start its
    own under pytest-xdist (a module fixture is per worker), and the job is most of the time."""
    _fsdp_and_ddp_match_one_process_and_each_other(ranks, text, tmp_path)
    _each_rank_holds_half_of_every_parameter(ranks)
    _sharded_resume_is_bit_identical(ranks)
    _a_transformers_decoder_consolidates_for_ts_load(ranks)


@pytest.mark.slow
@GLOO
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc (Linux)")
def test_a_dead_fsdp_rank_fails_the_job_fast(tmp_path: Path, text: Path) -> None:
    from test_distributed import _worker_with_rank

    cmd = [*TORCHRUN[:3], "--monitor-interval", "5", *TORCHRUN[3:], "-m", "torchsmith", "train",
           "torchsmith.demo:TinyGPT", "--opt", "block_size=32", "--data", f"text:{text}", "--seq-len", "32",
           "--batch-size", "8", "--epochs", "500", "--strategy", "fsdp", "--out", str(tmp_path / "run"),
           "--progress", "plain", "--log-every", "1", "--no-plot"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(_env(), TORCHSMITH_DIST_TIMEOUT="20"))
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "step 2/" in line:
                break
        os.kill(_worker_with_rank(proc.pid, 1), signal.SIGKILL)
        output.append(proc.stdout.read())
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    text_out = "".join(output)
    assert proc.returncode != 0
    assert "distributed training failed" in text_out or "exitcode: -9" in text_out.replace("  ", " "), text_out[-2000:]
