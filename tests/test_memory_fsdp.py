"""The FSDP plan's per-rank peak against each rank's measured peak of a real FSDP2 step: torchrun, 2 gloo processes.

One torchrun job (process start-up dominates on CPU); each rank builds the same hand-written GPT, plans it with
``world_size=2, strategy="fsdp"``, applies ``fully_shard`` to every block and to the root, and measures the second of
two real training steps with a live-storage TorchDispatchMode (a DTensor counted by its local shard; every storage
at its current size, since FSDP2 frees an unsharded parameter by resizing its storage to 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]

RANK_SCRIPT = r"""
import itertools, json, sys, weakref
import torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.utils._python_dispatch import TorchDispatchMode
sys.path.insert(0, sys.argv[2])
import torchsmith as ts
from handwritten_models import TinyGPT

class LivePeak(TorchDispatchMode):
    # each live storage at its current size: FSDP2 frees an unsharded parameter by resizing its storage to 0
    def __init__(self):
        super().__init__()
        self.live, self.current, self.peak = {}, 0, 0
    def note(self, t):
        st = (t._local_tensor if isinstance(t, DTensor) else t).untyped_storage()
        if id(st) not in self.live:
            self.live[id(st)] = weakref.ref(st)
            weakref.finalize(st, self.live.pop, id(st), None)
    def measure(self):
        self.current = sum(st.nbytes() for ref in list(self.live.values()) if (st := ref()) is not None)
        self.peak = max(self.peak, self.current)
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.measure()
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.note(t)
        self.measure()
        return out

dist.init_process_group("gloo")
out = {}
for name in ("sgd", "adamw"):
    torch.manual_seed(0)
    model = TinyGPT(layers=3, width=48, block=32)
    plan = ts.memory(model, (32,), batch_size=2, input_dtype=torch.long, optimizer=name, world_size=2, strategy="fsdp")
    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01) if name == "sgd" else torch.optim.AdamW(model.parameters())
    x = torch.randint(0, 64, (2, 32))
    mode = LivePeak()
    with mode:
        for t in itertools.chain(model.parameters(), model.buffers(), (x,)):
            mode.note(t)
        for step in range(2):
            if step == 1:
                mode.measure()
                mode.peak = mode.current
            loss = model(x).sum()
            loss.backward()
            del loss
            opt.step()
            opt.zero_grad(set_to_none=True)
    out[name] = {"plan": plan.peak, "measured": mode.peak,
                 "shard": sum(p.to_local().numel() for p in model.parameters()), "total": plan.parameters}  # fp32 bytes
json.dump(out, open(f"{sys.argv[1]}/rank{dist.get_rank()}.json", "w"))
dist.destroy_process_group()
"""


@pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                    reason="this torch build has no gloo backend")
def test_the_fsdp_plan_is_each_ranks_measured_peak(tmp_path: Path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run([*TORCHRUN, str(script), str(tmp_path), str(Path(__file__).parent)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for optimizer, r in seen.items():
            assert abs(r["plan"] / r["measured"] - 1) < 0.05, (rank, optimizer, r)
            assert r["plan"] == seen[optimizer]["plan"]  # the plan is per rank, the same on each
    assert abs(4 * seen["sgd"]["shard"] / seen["sgd"]["total"] - 1) < 0.02  # per-rank weights: the real shard
