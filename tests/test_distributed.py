"""torchrun + DistributedDataParallel over gloo on CPU, with real torchrun subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import torchsmith as ts
from torchsmith.errors import TrainingError
from torchsmith.train.distributed import dist_info_from_env, dist_timeout, setup_distributed

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]

# Every rank trains, then writes its own copy of the weights, so the test can compare the ranks.
RANK_SCRIPT = """
import os, sys, torch, torchsmith as ts
from safetensors.torch import save_file
out = sys.argv[1]
torch.manual_seed(0)
model = ts.create_model("lenet", in_channels=1, input_size=16)
ts.fit(model, "digits", epochs=1, batch_size=64, optimizer="sgd", lr=0.05, out_dir=out, plot=False)
rank = int(os.environ.get("RANK", 0))
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
"""

#: DDP averages gradients across ranks in another order than one process sums a batch;
#: measured max |difference| after 21 SGD steps: ~3e-7.
TOLERANCE = 1e-5


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def test_torchrun_environment_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = dist_info_from_env()
    assert info.enabled and not info.is_main and info.local_rank == 1
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(TrainingError, match="MASTER_ADDR is not; start the job with torchrun"):
        setup_distributed("cpu")
    monkeypatch.setenv("TORCHSMITH_DIST_TIMEOUT", "soon")
    with pytest.raises(TrainingError, match="TORCHSMITH_DIST_TIMEOUT must be a number"):
        dist_timeout()


GLOO = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                          reason="this torch build has no gloo backend")


@pytest.mark.slow
@GLOO
def test_two_ranks_agree_with_each_other_and_with_one_process(tmp_path):
    script = tmp_path / "fit_rank.py"
    script.write_text(RANK_SCRIPT)
    proc = subprocess.run([*TORCHRUN, str(script), str(tmp_path / "ddp")], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from safetensors.torch import load_file

    r0, r1 = load_file(tmp_path / "ddp" / "rank0.safetensors"), load_file(tmp_path / "ddp" / "rank1.safetensors")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # DDP keeps the replicas bit-identical
    # Rank 0 alone wrote the run's files.
    assert (tmp_path / "ddp" / "last.safetensors").is_file() and (tmp_path / "ddp" / "metrics.csv").is_file()
    # The same global batch of 64 in one process (32 per rank above).
    torch.manual_seed(0)
    single = ts.create_model("lenet", in_channels=1, input_size=16)
    ts.fit(single, "digits", epochs=1, batch_size=64, optimizer="sgd", lr=0.05)
    for name, value in single.state_dict().items():
        assert torch.allclose(value, r0[name], rtol=0, atol=TOLERANCE), name


@pytest.mark.slow
@GLOO
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc (Linux)")
def test_a_dead_rank_fails_the_job_fast(tmp_path):
    cmd = [*TORCHRUN, "-m", "torchsmith", "train", "lenet", "--opt", "in_channels=1", "--opt", "input_size=16",
           "--data", "digits", "--epochs", "200", "--out", str(tmp_path / "run"), "--progress", "plain",
           "--log-every", "1", "--no-plot"]
    env = dict(_env(), TORCHSMITH_DIST_TIMEOUT="30")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until training is really under way
            output.append(line)
            if "step 2/" in line:
                break
        victim = _worker_with_rank(proc.pid, 1)
        killed_at = time.time()
        os.kill(victim, signal.SIGKILL)
        output.append(proc.stdout.read())
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.time() - killed_at
    text = "".join(output)
    assert proc.returncode != 0
    assert elapsed < 60, f"the job took {elapsed:.0f}s to notice a dead rank"
    # Rank 0 explains (when it gets to speak before torchrun stops it); torchrun names the dead rank.
    assert "distributed training failed" in text or "local_rank: 1" in text, text[-2000:]
    assert "Signal 9" in text or "exitcode: -9" in text.replace("  ", " "), text[-2000:]


def _worker_with_rank(parent: int, rank: int) -> int:
    """The pid of torchrun's worker process whose environment says RANK=<rank>."""
    for _ in range(100):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                environ = (entry / "environ").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent and f"RANK={rank}".encode() in environ:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no worker with RANK={rank} under torchrun pid {parent}")
