"""Language-model training details under real 2-process gloo torchrun: gradient clipping and accumulation on
sharded gradients, activation checkpointing, resuming at another world size.

One torchrun job runs every distributed case (start-up and imports dominate on CPU); each rank writes what it
saw, and the one-process references run in the test process. tests/test_fsdp.py covers the rest of FSDP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from torchsmith.data.tokens import corpus_path
from torchsmith.demo import TinyGPT
from torchsmith.errors import ConfigError
from torchsmith.train import TrainConfig, fit, resume

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
GLOO = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                          reason="this torch build has no gloo backend")

#: 2,000 bytes of the shipped corpus: 7 steps an epoch of 8 windows of 32 tokens. A clip of 0.05 is below this
#: model's gradient norm, so every step is clipped; two microbatches a step. SGD, because Adam divides out the
#: gradient's scale: a clip computed from one rank's shard alone would go unseen under AdamW.
CLIPPED = {"epochs": 1, "batch_size": 8, "seq_len": 32, "optimizer": "sgd", "lr": 2.0, "grad_clip": 0.05,
           "grad_accum": 2, "plot": False, "seed": 0}
#: The run stopped part way (step 9 of 14) and continued at another world size.
PART = {"epochs": 2, "batch_size": 8, "seq_len": 32, "lr": 3e-3, "plot": False, "seed": 0}

RANK_SCRIPT = r"""
import json, sys, torch, torch.distributed as dist
from torchsmith.demo import TinyGPT
from torchsmith.train import TrainConfig, fit, resume
out, text, clipped, part = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
dist.init_process_group("gloo")  # one group for every run below (fit leaves a caller's group alone)
rank = dist.get_rank()

def record(name, result):
    json.dump({"history": result.history, "notes": result.notes}, open(f"{out}/{name}-rank{rank}.json", "w"))

for name, strategy, extra in (("fsdp-clip", "fsdp", {}), ("ddp-clip", "ddp", {}),
                              ("fsdp-clip-ckpt", "fsdp", {"checkpointing": True})):
    torch.manual_seed(0)
    model = TinyGPT(block_size=32)
    record(name, fit(model, None, TrainConfig(data=f"text:{text}", out_dir=f"{out}/{name}", strategy=strategy,
                                              **clipped, **extra)))
    if strategy == "ddp" and rank == 0:
        torch.save(model.state_dict(), f"{out}/{name}-weights.pt")
torch.manual_seed(0)
record("part2", fit(TinyGPT(block_size=32), None, TrainConfig(data=f"text:{text}", out_dir=f"{out}/part2",
                                                              strategy="fsdp", max_steps=9, **part)))
torch.manual_seed(0)
record("from1", resume(f"{out}/from1", TinyGPT(block_size=32), strategy="fsdp"))  # saved by one process
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


def _one_process(text: Path, values: dict, out: Path | None = None, **extra: object) -> tuple[TinyGPT, list[dict]]:
    torch.manual_seed(0)
    model = TinyGPT(block_size=32)
    cfg = TrainConfig(data=f"text:{text}", out_dir=None if out is None else str(out), **{**values, **extra})
    return model, fit(model, None, cfg).history


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory, text: Path) -> Path:
    out = tmp_path_factory.mktemp("lm")
    _one_process(text, PART, out / "from1", max_steps=9)  # a one-process checkpoint the 2 ranks continue
    script = out / "rank.py"
    script.write_text(RANK_SCRIPT)
    proc = subprocess.run([*TORCHRUN, str(script), str(out), str(text), json.dumps(CLIPPED), json.dumps(PART)],
                          capture_output=True, text=True, env=_env(), timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return out


def _rank(ranks: Path, name: str, rank: int = 0) -> dict:
    return json.loads((ranks / f"{name}-rank{rank}.json").read_text())


def _last(history: list[dict]) -> tuple[float, float]:
    return history[-1]["train_loss"], history[-1]["test_loss"]


def _clipping_and_accumulation_on_sharded_gradients_equal_ddp(ranks: Path, text: Path) -> None:
    fsdp, ddp = _last(_rank(ranks, "fsdp-clip")["history"]), _last(_rank(ranks, "ddp-clip")["history"])
    # The same global batch, clipped to the same total norm: FSDP clips the norm over every rank's shard, as
    # DDP does over its whole replica. Float tolerance (sums reduced in another order).
    assert fsdp == pytest.approx(ddp, abs=1e-5)
    merged = load_file(ranks / "fsdp-clip" / "model.safetensors")
    replica = torch.load(ranks / "ddp-clip-weights.pt")
    assert merged and set(merged) <= set(replica)  # a tied head is stored once, under the embedding's name
    for k, v in merged.items():
        assert torch.allclose(v, replica[k], atol=1e-5), k
    # Clipping bites at this clip (the test could fail): the same run unclipped ends elsewhere, and the clipped
    # one-process run is where both distributed runs end.
    single = _last(_one_process(text, CLIPPED)[1])
    unclipped = _last(_one_process(text, CLIPPED, grad_clip=None)[1])
    assert fsdp == pytest.approx(single, abs=1e-4)
    assert abs(unclipped[0] - single[0]) > 1e-2, (unclipped, single)


def _activation_checkpointing_changes_nothing_but_memory(ranks: Path, text: Path) -> None:
    # Under FSDP: the blocks recompute in backward, and the losses are those of the run that kept activations.
    with_ckpt = _rank(ranks, "fsdp-clip-ckpt")
    assert any("activation checkpointing: 2 blocks" in n for n in with_ckpt["notes"]), with_ckpt["notes"]
    assert _last(with_ckpt["history"]) == pytest.approx(_last(_rank(ranks, "fsdp-clip")["history"]), abs=1e-6)
    # One process, no clip or accumulation: the same.
    model, plain = _one_process(text, PART, epochs=1)
    _, recomputed = _one_process(text, PART, epochs=1, checkpointing=True)
    assert _last(recomputed) == pytest.approx(_last(plain), abs=1e-6)
    assert "forward" not in model.blocks[0].__dict__  # the blocks' own forward is back after the run


def test_checkpointing_a_model_without_repeated_blocks_is_one_clear_error(text: Path) -> None:
    class NoBlocks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.head = torch.nn.Embedding(256, 8), torch.nn.Linear(8, 256)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(idx))

    with pytest.raises(ConfigError, match="has none"):
        fit(NoBlocks(), None, TrainConfig(data=f"text:{text}", seq_len=32, batch_size=8, epochs=1, plot=False,
                                          checkpointing=True))


def _resume_at_another_world_size_continues_and_says_so(ranks: Path, text: Path, tmp_path: Path) -> None:
    # Saved by 2 FSDP ranks, continued by one process.
    result = resume(ranks / "part2", TinyGPT(block_size=32))
    assert any("saved by 2 ranks on 1" in n and "not bit-identically" in n for n in result.notes), result.notes
    assert result.global_step == 14 and len(result.history) == 2
    _, whole = _one_process(text, PART, tmp_path / "whole")
    # The same trajectory, up to the order of the sums: close, not asserted equal.
    assert result.history[-1]["train_loss"] == pytest.approx(whole[-1]["train_loss"], abs=1e-3)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # The run's consolidated file follows the one-process continuation (it is not left at step 9).
    merged, last = load_file(ranks / "part2" / "model.safetensors"), load_file(ranks / "part2" / "last.safetensors")
    assert merged.keys() == last.keys() and all(torch.equal(merged[k], last[k]) for k in last)
    # Saved by one process, continued by 2 FSDP ranks: the optimizer state is split like the parameters.
    from1 = _rank(ranks, "from1")
    assert any("saved by 1 rank on 2" in n and "not bit-identically" in n for n in from1["notes"]), from1["notes"]
    assert from1["history"][-1]["train_loss"] == pytest.approx(whole[-1]["train_loss"], abs=1e-3)
    assert from1["history"][-1]["test_loss"] == pytest.approx(whole[-1]["test_loss"], abs=1e-3)


@pytest.mark.slow
@pytest.mark.timeout(600)
@GLOO
def test_two_rank_lm_training(ranks: Path, text: Path, tmp_path: Path) -> None:
    """The checks above, in one test: each test of this module that asks for the torchrun job would start its
    own under pytest-xdist (a module fixture is per worker), and the job is most of the time."""
    _clipping_and_accumulation_on_sharded_gradients_equal_ddp(ranks, text)
    _activation_checkpointing_changes_nothing_but_memory(ranks, text)
    _resume_at_another_world_size_continues_and_says_so(ranks, text, tmp_path)


class NanoGPTStyle(torch.nn.Module):
    """nanoGPT's interface (model.py): ``forward(idx, targets=None) -> (logits, loss)``, every position's logits
    when given the targets, the last position's only without them (its inference shortcut)."""

    def __init__(self) -> None:
        super().__init__()
        self.gpt = TinyGPT(block_size=32)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple:
        logits = self.gpt(idx)  # (B, T, vocab)
        if targets is None:
            return logits[:, [-1], :], None
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))  # needs contiguous
        return logits, loss


def test_a_nanogpt_style_model_trains_with_its_targets_passed(text: Path) -> None:
    torch.manual_seed(0)
    model = NanoGPTStyle()
    result = fit(model, None, TrainConfig(data=f"text:{text}", **{**PART, "epochs": 2}))
    assert result.task == "causal-lm" and any("given its targets" in n for n in result.notes), result.notes
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # The same weights and windows as TinyGPT trained directly: passing the targets changes nothing else.
    _, direct = _one_process(text, PART)
    assert result.history[-1]["test_loss"] == pytest.approx(direct[-1]["test_loss"], abs=1e-5)
