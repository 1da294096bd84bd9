"""The hand-written corpus (tests/handwritten_models.py) through the Python API and the CLI.

For every model: the summary's parameter count is the unique count torch gives; the doctor reports every
labelled defect and no error beyond them (other findings are listed in ``REVIEWED`` with the reason they
are right); export passes wherever a plain ``torch.export.export`` does; save and load give the same tensors;
read-only calls leave the model and the global RNG as they were; every CLI command exits as it should, with
one line and no traceback when it fails.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn
from torch.nn.parameter import is_lazy

import torchsmith as ts
from handwritten_models import HANDWRITTEN, Handwritten
from torchsmith.cli import main
from torchsmith.contract import model_inputs

HERE = Path(__file__).parent

#: Findings beside the labelled defects, each reviewed: why the doctor is right to report it.
REVIEWED: dict[str, dict[tuple[str, str], str]] = {
    "LazyLeNet": {("vanishing-gradients", "net.0"): "d2l's LeNet keeps its sigmoids: at init the first conv's "
                                                     "gradient is orders of magnitude below the last layer's"},
    "PackedLSTMClassifier": {("not-exportable", ""): "a warning: torch.export cannot trace nn.LSTM on a "
                                                      "PackedSequence, a limit of torch.export, not of the model"},
    "PackedLSTM": {("not-exportable", ""): "the same torch.export limit on a packed sequence (a warning)"},
    "DataDependentIf": {("unused-parameter", "pos"): "the probe batch's sum takes one branch: the other layer "
                                                     "gets no gradient, which the data-dependent if causes"},
}


def _build(cls: type[Handwritten]) -> nn.Module:
    torch.manual_seed(0)
    return cls()


def _dtypes(cls: type[Handwritten]) -> Any:
    """The corpus's dtypes by position, as the contract takes them."""
    return dict(cls.DTYPES) or None


def _unique_count(model: nn.Module, cls: type[Handwritten]) -> int:
    """torch's own count, after the sizes of lazy layers are known (a real forward on a copy)."""
    if any(is_lazy(p) for p in model.parameters()):
        model = _materialised(cls)
    return sum(p.numel() for p in model.parameters())


def _materialised(cls: type[Handwritten]) -> nn.Module:
    model = _build(cls)
    args, kwargs = model_inputs(model, cls.INPUT, input_dtype=_dtypes(cls)).example(2)
    model.eval()
    with torch.no_grad():
        model(*args, **kwargs)
    return model


def module_layout(model: nn.Module) -> dict[str, tuple[Any, ...]]:
    """Per module: its mode, its attribute names and the number of each kind of hook (what a probe could leave)."""
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                  "_state_dict_hooks", "_load_state_dict_pre_hooks")
    return {name: (m.training, type(m).__name__, tuple(sorted(vars(m))),
                   tuple(len(getattr(m, d, {})) for d in hook_dicts))
            for name, m in model.named_modules(remove_duplicate=False)}


def _errors_and_warnings(report: ts.CheckReport) -> set[tuple[str, str]]:
    return {(f.id, f.module) for f in report.findings if f.severity in ("error", "warning")}


@pytest.mark.parametrize("cls", HANDWRITTEN, ids=lambda c: c.__name__)
def test_api(cls: type[Handwritten], tmp_path: Path) -> None:
    expected_params = _unique_count(_build(cls), cls)
    plain = _plain_export_passes(cls)
    model = _build(cls)
    lazy = any(is_lazy(p) for p in model.parameters())
    before = None if lazy else {k: v.clone() for k, v in model.state_dict().items()}
    lists = {k: len(v) for k, v in vars(model).items() if isinstance(v, list)}
    layout = module_layout(model)
    rng = torch.random.get_rng_state()

    # -- the summary: exact parameters ---------------------------------------------------------------------
    if cls.__name__ == "HardCodedFlatten":  # view(2, -1): the summary's batch of 1 breaks it, and says where
        with pytest.raises(ts.ShapeError, match="fc"):
            ts.summary(model, cls.INPUT, input_dtype=_dtypes(cls))
    else:
        s = ts.summary(model, cls.INPUT, input_dtype=_dtypes(cls))
        assert s.total_params == expected_params

    # -- the doctor: every labelled defect, no error beyond them -------------------------------------------
    report = ts.check(model, cls.INPUT, input_dtype=_dtypes(cls))
    found = _errors_and_warnings(report)
    labelled = set(cls.EXPECT)
    assert labelled <= {(f.id, f.module) for f in report.findings}, str(report)
    assert found - labelled == set(REVIEWED.get(cls.__name__, {})), str(report)
    assert all(f.id != "forward-failed" for f in report.findings), str(report)

    # -- read-only calls changed nothing -------------------------------------------------------------------
    assert torch.equal(rng, torch.random.get_rng_state())
    assert {k: len(v) for k, v in vars(model).items() if isinstance(v, list)} == lists
    assert module_layout(model) == layout
    if before is not None:
        after = model.state_dict()
        assert list(after) == list(before) and all(torch.equal(before[k], after[k]) for k in before)

    # -- export passes wherever plain torch.export passes --------------------------------------------------
    try:
        exported = ts.export(model, tmp_path / "m.pt2", input_size=cls.INPUT, input_dtype=_dtypes(cls),
                             timing_runs=1)
        assert exported.passed
    except ts.TorchsmithError:
        assert not plain, "torch.export.export passes on this model but ts.export refused it"

    # -- save and load: the same tensors -------------------------------------------------------------------
    path = ts.save(model, tmp_path / "m.safetensors", input_size=None if not lazy else cls.INPUT)
    fresh = cls()
    ts.load_into(fresh, path)
    a, b = model.state_dict(), fresh.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def _plain_export_passes(cls: type[Handwritten]) -> bool:
    """Whether torch.export.export (non-strict) captures the model on the contract's example inputs."""
    model = _materialised(cls).eval()
    args, kwargs = model_inputs(model, cls.INPUT, input_dtype=_dtypes(cls)).example(2)
    try:
        torch.export.export(model, args, kwargs or None, strict=False)
    except Exception:
        return False
    return True


# --------------------------------------------------------------------------- the command line
def _input_args(cls: type[Handwritten]) -> list[str]:
    """``--input`` and ``--input-dtype`` as a user types them for this model."""
    def text(size: tuple[int, ...]) -> str:
        return "x".join(map(str, size)) if size else "()"

    size, args = cls.INPUT, []
    names = [n for n in inspect.signature(cls.forward).parameters if n != "self"]
    if isinstance(size, dict):
        for name, s in size.items():
            args += ["--input", f"{name}={text(s)}"]
    elif isinstance(size, list):
        for name, s in zip(names, size):
            args += ["--input", f"{name}={text(s)}"]
    else:
        args += ["--input", text(size)]
    for index, dtype in cls.DTYPES.items():
        value = str(dtype).removeprefix("torch.")
        args += ["--input-dtype", f"{names[index]}={value}" if isinstance(size, list) else value]
    return args


@pytest.mark.parametrize("cls", HANDWRITTEN, ids=lambda c: c.__name__)
def test_cli(cls: type[Handwritten], tmp_path: Path) -> None:
    ref = f"{HERE / 'handwritten_models.py'}:{cls.__name__}"
    runner = CliRunner()
    inputs = _input_args(cls)
    commands: dict[str, list[str]] = {
        "show": ["show", ref, *inputs],
        "check": ["check", ref, *inputs],
        "export": ["export", ref, *inputs, "--out", str(tmp_path / "m.pt2")],
    }
    if cls.TASK is not None:
        commands["train"] = ["train", ref, *inputs, "--data", "synthetic", "--samples", "64", "--epochs", "1",
                             "--batch-size", "16", "--progress", "none", "--out", str(tmp_path / "run")]
        if cls.TASK == "regression":
            commands["train"] += ["--task", "regression"]
    errors_expected = any(_severity(fid) == "error" for fid, _ in cls.EXPECT)
    for name, args in commands.items():
        result = runner.invoke(main, args)
        output = result.output  # stdout and stderr, as a terminal shows them
        assert "Traceback" not in output and "internal error" not in output, (name, output)
        assert result.exit_code in (0, 1), (name, result.exit_code, output)
        if name == "check":
            assert result.exit_code == (1 if errors_expected else 0), output
        elif name == "show" and cls.__name__ != "HardCodedFlatten":
            assert result.exit_code == 0, output
        elif name == "train" and not errors_expected:  # a healthy model trains
            assert result.exit_code == 0, output
            assert (tmp_path / "run" / "last.safetensors").is_file()
        if result.exit_code == 1 and name != "check":
            error_lines = [line for line in output.splitlines() if line.startswith("error:")]
            assert len(error_lines) == 1, output


def _severity(finding_id: str) -> str:
    return next(f.severity for f in ts.list_findings() if f.id == finding_id)
