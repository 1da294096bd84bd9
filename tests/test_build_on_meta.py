"""Models whose constructor needs real tensors (torchvision's RegNet computes its widths with torch ops and
``.tolist()``) cannot be built on the meta device: summary, show, to_spec and loading a checkpoint by its
recorded name build them for real instead of failing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import torchsmith as ts
from torchsmith import registry
from torchsmith._meta import build_on_meta
from torchsmith.cli import main
from torchsmith.errors import ConfigError, UnknownNameError


class WidthsFromTensors(nn.Module):
    """Stage widths computed as RegNet does: torch ops, then .tolist() (no data on meta)."""

    def __init__(self, depth: int = 3) -> None:
        super().__init__()
        widths = (torch.round(8 * torch.pow(torch.tensor(1.5), torch.arange(depth))) * 2).int().tolist()
        layers: list[nn.Module] = []
        cin = 3
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU()]
            cin = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 10)
        self.default_input_size = (3, 16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


@pytest.fixture
def widths_source() -> Iterator[str]:
    """A model source that wraps a constructor's failure in a ConfigError, as torchsmith's library sources do."""

    def build(ref: str, **options: Any) -> nn.Module:
        if ref != "net":
            raise UnknownNameError("widths model", ref, ["net"])
        try:
            return WidthsFromTensors(**options)
        except Exception as e:
            raise ConfigError(f"building _widths:{ref} failed: {type(e).__name__}: {e}") from e

    registry.register_source("_widths")(build)
    try:
        yield "_widths:net"
    finally:
        registry._SOURCES.pop("_widths", None)


def test_build_on_meta_falls_back_only_for_a_constructor_that_needs_data(widths_source: str) -> None:
    model, on_meta = build_on_meta(lambda: ts.create_model(widths_source))
    assert not on_meta and isinstance(model, WidthsFromTensors)
    linear, on_meta = build_on_meta(lambda: nn.Linear(2, 2))
    assert on_meta and linear.weight.is_meta
    with pytest.raises(UnknownNameError):  # a wrong name is not retried: it fails the same way for real
        build_on_meta(lambda: ts.create_model("_widths:nope"))


def test_summary_show_and_load_work_on_such_a_model(widths_source: str, tmp_path: Path) -> None:
    s = ts.summary(widths_source)
    assert s.total_params == sum(p.numel() for p in WidthsFromTensors().parameters())
    assert any("could not be built on the meta device" in n for n in s.notes)
    result = CliRunner().invoke(main, ["show", widths_source, "--depth", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    model = ts.create_model(widths_source, depth=4)
    path = tmp_path / "w.safetensors"
    ts.save(model, path)
    loaded = ts.load(path)
    assert isinstance(loaded, WidthsFromTensors) and len(loaded.body) == 8
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded.eval()(x), model.eval()(x))
