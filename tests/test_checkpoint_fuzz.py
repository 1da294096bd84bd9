"""Fuzz: 2,000 mutated and truncated checkpoints per run (fixed seed); only torchsmith errors, none over 5 s.

The engine lives in benchmarks/fuzz_checkpoint.py, which also runs the long (100,000-input) campaign.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz_checkpoint.py"


def _engine():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_fuzz_checkpoint", ENGINE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fuzz_2000_mutated_checkpoints(tmp_path: Path) -> None:
    result = _engine().run(2000, seed=20240601, directory=tmp_path)
    outcomes = result["outcomes"]
    assert sum(outcomes.values()) == 2000
    assert result["slowest_s"] < 5.0
    # The mutations reach every reader and mostly produce errors, not accidental successes.
    kinds = {k.split(":")[0] for k in outcomes}
    assert kinds == {"safetensors", "train", "pt_zip", "pt_legacy"}
    errors = sum(v for k, v in outcomes.items() if "Error" in k)
    assert errors > 1000
    assert list(tmp_path.iterdir()) == []
