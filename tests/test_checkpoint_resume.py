"""Training state: a run saved and resumed is bit-identical to one that never stopped."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torchsmith as ts
from torchsmith.checkpoint import training_state_path

Setup = Callable[[torch.nn.Module, int], tuple[torch.optim.Optimizer, Any]]


def _sgd_onecycle(model: torch.nn.Module, total: int) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=total)


def _adamw_sequential(model: torch.nn.Module, total: int) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: (step + 1) / 3)  # lambdas are not saved
    decay = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    return opt, torch.optim.lr_scheduler.SequentialLR(opt, [warmup, decay], milestones=[3])


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any) -> None:
    # Every RNG the training loop uses feeds the step, so a wrongly restored one changes the result.
    x = torch.randn(4, 3, 16, 16) * (1 + float(np.random.rand())) + random.random()
    y = torch.randint(0, 3, (4,))
    x = F.dropout(x, p=0.1, training=True)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    sched.step()


@pytest.mark.parametrize("setup", [_sgd_onecycle, _adamw_sequential], ids=["sgd-nesterov-onecycle", "adamw-seq"])
def test_resumed_run_is_bit_identical(tmp_path: Path, setup: Setup) -> None:
    total, stop = 7, 3
    _seed_everything(0)
    model = ts.create_model("lenet", num_classes=3, input_size=16)
    opt, sched = setup(model, total)
    for _ in range(total):
        _step(model, opt, sched)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_lr = opt.param_groups[0]["lr"]

    _seed_everything(0)
    model = ts.create_model("lenet", num_classes=3, input_size=16)
    opt, sched = setup(model, total)
    for _ in range(stop):
        _step(model, opt, sched)
    path = ts.save(model, tmp_path / "epoch3.safetensors", optimizer=opt, scheduler=sched,
                   extra={"epoch": 3, "step": stop, "best": 0.25, "history": [1.5, 0.75]})
    assert training_state_path(path).exists()
    del model, opt, sched

    _seed_everything(999)  # a fresh process: different RNG states, fresh objects
    model = ts.load(path)
    opt, sched = setup(model, total)
    extra = ts.load_training_state(path, optimizer=opt, scheduler=sched)
    assert extra == {"epoch": 3, "step": stop, "best": 0.25, "history": [1.5, 0.75]}
    for _ in range(stop, total):
        _step(model, opt, sched)
    assert opt.param_groups[0]["lr"] == expected_lr
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_training_state_errors(tmp_path: Path) -> None:
    model = ts.create_model("lenet", num_classes=3, input_size=16)
    opt, sched = _sgd_onecycle(model, 5)
    path = ts.save(model, tmp_path / "m.safetensors", optimizer=opt, scheduler=sched)
    with pytest.raises(ts.CheckpointError, match="holds a SGD optimizer state.*AdamW"):
        ts.load_training_state(path, optimizer=torch.optim.AdamW(model.parameters()))
    # Overwriting the weights without training state removes the stale companion ...
    ts.save(model, path)
    assert not training_state_path(path).exists()
    with pytest.raises(ts.CheckpointError, match="has no training state"):
        ts.load_training_state(path, optimizer=opt)
    # ... and a companion that belongs to other weights is refused.
    ts.save(model, path, optimizer=opt, extra={"epoch": 1})
    companion = training_state_path(path).read_bytes()
    with torch.no_grad():
        model.fc3.bias.add_(1)
    ts.save(model, path, optimizer=opt, extra={"epoch": 2})
    training_state_path(path).write_bytes(companion)
    with pytest.raises(ts.CheckpointError, match="belongs to a different save"):
        ts.load_training_state(path, optimizer=opt)
    with pytest.raises(ts.CheckpointError, match="extra must be a dict"):
        ts.save(model, path, extra=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(ts.CheckpointError, match=r"extra\['cb'\] is a builtins\..*cannot store without pickle"):
        ts.save(model, path, extra={"cb": print})


def test_restore_rng_false_leaves_rngs_alone(tmp_path: Path) -> None:
    model = ts.create_model("lenet", num_classes=3, input_size=16)
    path = ts.save(model, tmp_path / "m.safetensors", extra={"epoch": 0})
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    assert ts.load_training_state(path, restore_rng=False) == {"epoch": 0}
    assert torch.equal(torch.rand(3), expected)
