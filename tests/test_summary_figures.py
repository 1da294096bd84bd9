"""A summary's figures do not move when the way it runs changes (issue 19's faster first call).

``golden/summary_figures.json`` holds, for every zoo model at its default size and every model of the
transformers test corpus at its native size, what ``ts.summary`` reports: the totals, the forward and
training FLOPs, the output shapes, the ops it could not count, the activation memory, and each row's
name, type, shapes, parameters and FLOPs. It was written by the summary as it stood before the first call
was made fast (commit d4f2c27); a change that moves one figure fails here. Rewrite it only on purpose:

    .venv/bin/python tests/test_summary_figures.py --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import torchsmith as ts

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "summary_figures.json"
sys.path.insert(0, str(HERE))


def _corpus() -> list[Any]:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return []
    from corpus_models import CORPUS

    return list(CORPUS)


def _plain(x: Any) -> Any:
    """Shapes and numbers as JSON has them (tuples become lists), so a stored figure compares equal."""
    return json.loads(json.dumps(x, default=str))


def figures(s: ts.ModelSummary) -> dict[str, Any]:
    return _plain({
        "total_params": s.total_params, "trainable_params": s.trainable_params,
        "buffer_elements": s.buffer_elements, "forward_flops": s.forward_flops,
        "training_flops": s.training_flops, "output_shapes": s.output_shapes, "uncounted_ops": s.uncounted_ops,
        "activation_bytes": s.memory.activations,
        "rows": [[r.name, r.type, r.input_shapes, r.output_shapes, r.params, r.flops] for r in s.rows],
    })


def _summarise(key: str) -> ts.ModelSummary:
    kind, _, name = key.partition(" ")
    if kind == "zoo":
        return ts.summary(name)
    c = next(c for c in _corpus() if c.name == name)
    return ts.summary(c.build(), input_data=c.example())


def _keys() -> list[str]:
    return [f"zoo {n}" for n in ts.list_models()] + [f"corpus {c.name}" for c in _corpus()]


def _golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())


def test_the_golden_file_covers_every_model() -> None:
    missing = sorted(set(_keys()) - set(_golden()))
    assert missing == [], f"no stored figures for {missing}: write them with `python {Path(__file__).name} --write`"


@pytest.mark.parametrize("key", _keys())
def test_summary_figures_are_unchanged(key: str) -> None:
    stored = _golden().get(key)
    if stored is None:
        pytest.skip(f"no stored figures for {key}")
    got = figures(_summarise(key))
    for field in stored:  # one field at a time, so a failure names what moved
        assert got[field] == stored[field], f"{key}: {field} changed"


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit(__doc__)
    lines = [f"{json.dumps(k)}: {json.dumps(figures(_summarise(k)), separators=(',', ':'))}" for k in _keys()]
    GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one model a line: a diff names the model
    print(f"wrote {GOLDEN}")
