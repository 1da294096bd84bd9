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
    engine = _engine()
    result = engine.run(2000, seed=20240601, directory=tmp_path)
    outcomes = result["outcomes"]
    assert sum(outcomes.values()) == 2000
    assert result["slowest_s"] < 30.0  # no input hangs a reader (a bound no loaded machine misses; typical: ~0.1 s)
    # The mutations reach every reader and mostly produce errors, not accidental successes.
    kinds = {k.split(":")[0] for k in outcomes}
    assert kinds == set(engine.KINDS) and {"safetensors_80", "train_80"} <= kinds
    errors = sum(v for k, v in outcomes.items() if "Error" in k)
    assert errors > 1000
    assert list(tmp_path.iterdir()) == []


def test_the_seeds_load_through_every_reader_whatever_their_first_byte(tmp_path: Path) -> None:
    """Unmutated, every seed loads; the 0x80 pair (header lengths starting with pickle's PROTO byte) too."""
    import torchsmith as ts

    engine = _engine()
    seeds = engine.make_seeds(tmp_path)
    assert seeds["safetensors_80"][0] == seeds["train_80"][0] == seeds["pt_legacy"][0] == 0x80
    models = {"lenet": ts.create_model("lenet", num_classes=3, input_size=16), "spec": ts.build(engine.SPEC)}
    for kind, data in seeds.items():
        for suffix in (".safetensors", ".pt"):
            path = tmp_path / (("x.train" if kind.startswith("train") else "x") + suffix)
            path.write_bytes(data)
            outcome = engine.check_one(path, kind, models["spec" if kind.endswith("_80") else "lenet"])
            assert set(outcome.split("+")) == {"ok"}, (kind, suffix, outcome)
            path.unlink()
    assert list(tmp_path.iterdir()) == []
