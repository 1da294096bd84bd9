"""A model from the user's own file loads with ``ts.load``: the checkpoint records the file, its class, the
options and the file's sha256, and ``load`` builds it from there only while the file is the one it was saved
with and the attribute is an ``nn.Module`` class; anything else needs ``trust_code=True`` or ``load_into``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torchsmith as ts
from torchsmith.resolve import resolve_model

NET = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.out = nn.Linear(width, 3)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))

def make_net():
    return Net(5)
'''


@pytest.fixture()
def net_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(NET)
    return path


def test_a_file_model_round_trips_through_load(net_file: Path, tmp_path: Path) -> None:
    model = resolve_model(f"{net_file}:Net", width=6)
    saved = ts.save(model, tmp_path / "m.safetensors")
    loaded = ts.load(saved)
    assert type(loaded).__name__ == "Net" and loaded.fc.out_features == 6  # the options came back too
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    a, b = model.state_dict(), loaded.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_changed_file_needs_trust_code(net_file: Path, tmp_path: Path) -> None:
    saved = ts.save(resolve_model(f"{net_file}:Net"), tmp_path / "m.safetensors")
    net_file.write_text(NET + "\n# edited after the checkpoint was written\n")
    with pytest.raises(ts.CheckpointError, match="has changed since") as e:
        ts.load(saved)
    assert "load_into" in str(e.value) and "trust_code=True" in str(e.value)
    assert type(ts.load(saved, trust_code=True)).__name__ == "Net"


def test_a_factory_or_a_missing_file_is_not_run_unasked(net_file: Path, tmp_path: Path) -> None:
    saved = ts.save(resolve_model(f"{net_file}:make_net"), tmp_path / "f.safetensors")
    with pytest.raises(ts.CheckpointError, match="not an nn.Module class"):
        ts.load(saved)
    assert ts.load(saved, trust_code=True).fc.out_features == 5
    other = ts.save(resolve_model(f"{net_file}:Net"), tmp_path / "m.safetensors")
    net_file.unlink()
    with pytest.raises(ts.CheckpointError, match="does not exist here"):
        ts.load(other)


def test_a_module_reference_is_not_run_unasked(tmp_path: Path) -> None:
    saved = ts.save(resolve_model("torch.nn:Linear", in_features=4, out_features=2), tmp_path / "l.safetensors")
    with pytest.raises(ts.CheckpointError, match="importable module"):
        ts.load(saved)
    assert ts.load(saved, trust_code=True).out_features == 2
