"""The real-model corpus (``tests/corpus_models.py``) through everything torchsmith does to a model.

Each library model, built from a small config with random weights, goes through the summary (parameters
equal the unique-parameter count; forward FLOPs equal ``torch.utils.flop_counter`` with the math attention
backend, within 1%), the doctor (no errors; every warning reviewed in ``golden/corpus_warnings.json``),
``.pt2`` export (it passes wherever plain ``torch.export.export`` passes on the same input), save and
load (outputs bit-identical) and, for models with a classification head, one training step through
``fit``. References are computed here, never typed in.

Known failures whose fix belongs to another part of the product are strict xfails in ``KNOWN`` with the
owner and the reason: when the fix lands the test XPASSes, fails, and the entry has to go.
Rewrite the golden file with ``TORCHSMITH_UPDATE_GOLDEN=1`` (it keeps reviewed reasons and marks new
warnings "UNREVIEWED", which fails until a person writes the reason).
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("transformers", reason="the corpus is built with transformers (pip install -e '.[hf]')")

import torchsmith as ts  # noqa: E402
from corpus_models import CORPUS, CorpusModel  # noqa: E402
from torchsmith import contract  # noqa: E402

#: One model's test takes a few seconds; a hang in any step is one failure, not the suite's 600 s timeout.
pytestmark = pytest.mark.timeout(120)

GOLDEN = Path(__file__).parent / "golden" / "corpus_warnings.json"
UPDATE = os.environ.get("TORCHSMITH_UPDATE_GOLDEN") == "1"
UNREVIEWED = "UNREVIEWED"

#: (test, model) -> why it fails today and who owns the fix. Strict: a fixed one XPASSes and fails.
KNOWN: dict[tuple[str, str], str] = {}


def _params(test: str, models: tuple[CorpusModel, ...] = CORPUS) -> list[Any]:
    out = []
    for c in models:
        reason = KNOWN.get((test, c.name))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(c, id=c.name, marks=marks))
    return out


@pytest.fixture(autouse=True, scope="module")
def _quiet_transformers():
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # config notes (bos_token_id outside a 128-id vocab) are noise
    yield
    transformers.logging.set_verbosity(verbosity)


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return contract.output_tensors(model(x))


# --------------------------------------------------------------------------- summary
@pytest.mark.parametrize("c", _params("summary-params"))
def test_summary_parameters_equal_unique_count(c: CorpusModel) -> None:
    model = c.build()
    unique = {id(p): p.numel() for p in model.parameters()}  # a tied embedding counts once
    s = ts.summary(model, input_data=c.example())
    assert s.total_params == sum(unique.values())
    assert s.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)


def reference_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """torch's flop counter with the math attention backend, whose matmuls it can count.

    Grad mode stays on (no backward runs): under ``no_grad`` an eval-mode ``nn.MultiheadAttention`` or
    ``nn.TransformerEncoderLayer`` takes a fused fast path the counter has no formula for (docs/flops.md).
    """
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


@pytest.mark.parametrize("c", _params("summary-flops"))
def test_summary_flops_equal_flop_counter(c: CorpusModel) -> None:
    model = c.build()
    x = c.example()
    s = ts.summary(model, input_data=x)
    ref = reference_flops(model, x)
    assert ref > 0
    assert isinstance(s.forward_flops, int)
    assert abs(s.forward_flops - ref) <= 0.01 * ref, f"summary {s.forward_flops:,} vs flop counter {ref:,}"


@pytest.mark.parametrize("c", _params("input-spec"))
def test_contract_knows_the_input(c: CorpusModel) -> None:
    """Without being told, torchsmith reads the input kind (and the token range) from the model."""
    model = c.build()
    spec = contract.input_spec(model)
    assert spec.kind == c.kind
    if c.tokens:
        assert spec.vocab_size == model.config.vocab_size
    elif c.kind == "image":
        assert spec.size[0] == c.input_size[0]


# --------------------------------------------------------------------------- the doctor
@functools.cache
def _check_named(name: str) -> ts.CheckReport:
    c = next(c for c in CORPUS if c.name == name)
    return ts.check(c.build(), c.input_size)


def _check_report(c: CorpusModel) -> ts.CheckReport:
    """One doctor run per model for the three tests that read it (its options dict makes it unhashable)."""
    return _check_named(c.name)


@pytest.mark.parametrize("c", _params("check-errors"))
def test_check_finds_no_errors_on_a_healthy_model(c: CorpusModel) -> None:
    report = _check_report(c)
    errors = [f"{f.id} at {f.where}: {f.message[:300]}" for f in report.errors]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("c", _params("check-state-dict"))
def test_check_runs_the_state_dict_round_trip(c: CorpusModel) -> None:
    report = _check_report(c)
    assert "state-dict" in report.checks
    assert "state-dict" not in report.skipped, report.skipped.get("state-dict")


def _golden() -> dict[str, dict[str, str]]:
    return json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


@pytest.mark.parametrize("c", _params("check-warnings"))
def test_check_warnings_are_reviewed(c: CorpusModel) -> None:
    report = _check_report(c)
    found = sorted({f.id for f in report.warnings})
    golden = _golden()
    reviewed = golden.get(c.name, {})
    if UPDATE:
        golden[c.name] = {w: reviewed.get(w, UNREVIEWED) for w in found}
        GOLDEN.write_text(json.dumps(dict(sorted(golden.items())), indent=2) + "\n")
        reviewed = golden[c.name]
    unlisted = [w for w in found if w not in reviewed]
    assert not unlisted, (f"{c.name}: warnings {unlisted} are not in {GOLDEN.name}; look at each and write why it "
                          f"stands (TORCHSMITH_UPDATE_GOLDEN=1 adds them as {UNREVIEWED})")
    unreviewed = [w for w in found if reviewed[w] == UNREVIEWED or not reviewed[w].strip()]
    assert not unreviewed, f"{c.name}: warnings {unreviewed} have no reviewed reason in {GOLDEN.name}"


# --------------------------------------------------------------------------- export
def _plain_export(model: torch.nn.Module, x: torch.Tensor) -> BaseException | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.export.export(model, (x,))
    except Exception as e:
        return e
    return None


@pytest.mark.parametrize("c", _params("export"))
def test_export_pt2_passes_wherever_torch_export_passes(c: CorpusModel, tmp_path: Path) -> None:
    """Like with like: a static batch of 2, as plain ``torch.export.export(model, (x,))`` exports it.

    (The default dynamic batch is a column of ``benchmarks/bench_corpus.py``; it costs twice as long.)
    """
    model = c.build()
    path = tmp_path / "model.pt2"
    try:
        report = ts.export(model, path, input_size=c.input_size, batch_size=2, dynamic_batch=False, timing_runs=1)
    except ts.TorchsmithError as e:
        # A refusal is allowed only where torch itself cannot export the model at this input.
        plain = _plain_export(model, c.example())
        assert plain is not None, f"torch.export.export passes but ts.export raised {type(e).__name__}: {e}"
        return
    # ts.export loaded the written file and compared it with eager on the example batch.
    assert report.passed and path.exists(), str(report)
    assert report.max_abs_error <= 1e-4


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("c", _params("save-load"))
def test_save_and_load_into_gives_bit_identical_outputs(c: CorpusModel, tmp_path: Path) -> None:
    model = c.build()
    x = c.example()
    want = _outputs(model, x)
    path = ts.save(model, tmp_path / "model.safetensors")
    fresh = c.build()
    with torch.no_grad():  # different weights, so a load that did nothing cannot pass
        for p in fresh.parameters():
            p.add_(torch.randn_like(p))
    assert any(not torch.equal(a, b) for a, b in zip(_outputs(fresh, x), want))
    ts.load_into(fresh, path)
    got = _outputs(fresh, x)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- one training step
CLASSIFIERS = tuple(c for c in CORPUS if c.classifier)


@pytest.mark.parametrize("c", _params("train-step", CLASSIFIERS))
def test_one_training_step_through_fit(c: CorpusModel, tmp_path: Path) -> None:
    model = c.build()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # "synthetic": random samples fitted to the model's input (the contract's), labels below its num_labels.
    result = ts.fit(model, "synthetic", epochs=1, max_steps=1, batch_size=8, num_samples=16, device="cpu",
                    plot=False, out_dir=str(tmp_path), log_every=1, eval_batch_size=8)
    assert result.global_step == 1  # max_steps=1: one optimizer step, stopped inside the first epoch
    changed = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert changed, "one step of fit changed no parameter"
    assert all(torch.isfinite(p).all() for p in model.parameters())
