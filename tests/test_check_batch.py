"""The doctor on the batch dimension: a batch written into a reshape, a batch reduced away, and the healthy
outputs that must not be mistaken for them (a similarity of each sample with each, a scalar loss, an output that
does not depend on the input)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchsmith as ts


class View64(nn.Module):
    """``x.view(64, -1)``: the batch of the user's DataLoader written in; the Linear then fails at any other."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 14 * 14, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(64, -1))


class Reshape4(nn.Module):
    """``reshape(4, 128)``: fails at the reshape itself for any batch but 4."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(128, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv(x)).reshape(4, 128))


class SumOverBatch(nn.Module):
    """The batch summed away: one (1, 3) output for any batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).sum(0, keepdim=True)


class Similarity(nn.Module):
    """Each sample against each (CLIP's logits_per_image): (B, B), following the batch in two dimensions."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.fc(x), dim=1)
        return z @ z.t()


class ScalarLoss(nn.Module):
    """A model that returns its own loss: a scalar, batch-averaged by design."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.fc(x), x)


class Prototypes(nn.Module):
    """Logits per sample plus learned class prototypes that do not depend on the input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)
        self.prototypes = nn.Parameter(torch.randn(3, 8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), self.prototypes * 1.0


@pytest.mark.parametrize("cls,size,runs_at", [(View64, (3, 16, 16), 64), (Reshape4, (3, 8, 8), 4)])
def test_a_batch_written_into_a_reshape_is_a_hard_coded_size(cls: type[nn.Module], size: tuple[int, ...],
                                                              runs_at: int) -> None:
    report = ts.check(cls(), size)
    assert [f.id for f in report.errors] == ["hard-coded-size"], str(report)
    finding = report.errors[0]
    assert finding.observed["runs_at"] == runs_at and finding.observed["batch"] == 2
    assert f"batch of {runs_at}" in finding.message and "test_check_batch.py" in finding.message  # names the line
    assert "x.size(0)" in finding.fix


def test_a_batch_reduced_away_mixes_samples() -> None:
    report = ts.check(SumOverBatch(), (8,))
    assert [f.id for f in report.errors] == ["batch-mixing"], str(report)
    assert report.errors[0].observed["shape"] == [1, 3]


@pytest.mark.parametrize("cls", [Similarity, ScalarLoss, Prototypes])
def test_outputs_that_are_not_per_sample_by_design_are_not_errors(cls: type[nn.Module]) -> None:
    report = ts.check(cls(), (8,))
    assert report.errors == [], str(report)
