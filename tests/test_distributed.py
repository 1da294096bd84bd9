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
from torchsmith.train.distributed import DEAD_RANK_HINT, dist_info_from_env, dist_timeout, setup_distributed

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]

# Every rank trains, then writes its own copy of the weights and every training batch its model was given (a
# forward pre-hook on the model inside DDP), so the test can compare the ranks' shards and weights.
RANK_SCRIPT = """
import os, sys, torch, torchsmith as ts
from safetensors.torch import save_file
out = sys.argv[1]
torch.manual_seed(0)
model = ts.create_model("lenet", in_channels=1, input_size=16)
batches = []
model.register_forward_pre_hook(lambda m, args: batches.append(args[0].detach().clone()) if m.training else None)
ts.fit(model, "digits", epochs=1, batch_size=64, optimizer="sgd", lr=0.05, out_dir=out, plot=False)
rank = int(os.environ.get("RANK", 0))
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
save_file({"batches": torch.stack(batches)}, f"{out}/batches{rank}.safetensors")
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
    # The same global batch of 64 in one process (32 per rank above), recording the batches it trains on.
    torch.manual_seed(0)
    single = ts.create_model("lenet", in_channels=1, input_size=16)
    seen: list[torch.Tensor] = []
    hook = single.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training
                                            else None)
    ts.fit(single, "digits", epochs=1, batch_size=64, optimizer="sgd", lr=0.05)
    hook.remove()
    # Each rank trained on its own half of every global batch: rank 0 on the first 32 samples, rank 1 on the
    # other 32, disjoint, and together exactly the batch one process draws (not two copies of the whole).
    b0 = load_file(tmp_path / "ddp" / "batches0.safetensors")["batches"]
    b1 = load_file(tmp_path / "ddp" / "batches1.safetensors")["batches"]
    whole = torch.stack(seen)  # (steps, 64, 1, 16, 16)
    assert b0.shape == b1.shape == (whole.shape[0], 32, *whole.shape[2:]) and whole.shape[1] == 64
    assert torch.equal(torch.cat([b0, b1], dim=1), whole)
    rows0, rows1 = b0.flatten(2), b1.flatten(2)  # (steps, 32, pixels): no sample of a step on both ranks
    assert not (rows0[:, :, None] == rows1[:, None, :]).all(-1).any()
    for name, value in single.state_dict().items():
        assert torch.allclose(value, r0[name], rtol=0, atol=TOLERANCE), name


@pytest.mark.slow
@GLOO
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers through /proc (Linux)")
def test_a_dead_rank_fails_the_job_fast(tmp_path):
    # torchrun checks its workers every 5 s here (not every 0.1 s), so rank 0 notices the dead peer and
    # speaks before torchrun stops it: the test can require torchsmith's own message.
    cmd = [*TORCHRUN[:3], "--monitor-interval", "5", *TORCHRUN[3:], "-m", "torchsmith", "train", "lenet",
           "--opt", "in_channels=1", "--opt", "input_size=16",
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
        os.kill(victim, signal.SIGKILL)
        output.append(proc.stdout.read())
        # Fast means long before gloo's default 30-minute timeout (TORCHSMITH_DIST_TIMEOUT is 30 s here); the
        # bound is generous so that a loaded machine cannot miss it, and a hang fails here.
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    text = "".join(output)
    assert proc.returncode != 0
    # Rank 0 explains in torchsmith's words: what failed, and the fix; torchrun names the dead rank.
    assert "rank 0/2: distributed training failed" in text, text[-2000:]
    assert DEAD_RANK_HINT in text.replace("\n", " "), text[-2000:]
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
