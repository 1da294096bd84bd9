"""torchsmith.export: every zoo model in every format, verified; failures named; nothing left behind."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import torchsmith as ts
from conftest import hook_count
from torchsmith._export import ExportVerificationError, export
from torchsmith.cli import main
from torchsmith.errors import ConfigError, ExportError, ShapeError, UnknownNameError
from torchsmith.registry import model_options

SUFFIX = {"exported": ".pt2", "onnx": ".onnx", "torchscript": ".ts"}
FORMATS = tuple(SUFFIX)
# Deep models whose three exports take several seconds each on two CPU cores.
SLOW = {"resnet50", "resnet101", "resnet152", "resnet110", "resnet56", "resnet44", "resnet34"}


@functools.lru_cache(maxsize=1)
def _zoo_model(name: str) -> nn.Module:
    # Ten classes keep the heads small; 32x32 input suits every zoo model (ImageNet stems end at 1x1).
    kwargs = {"num_classes": 10} if "num_classes" in model_options(name) else {}
    torch.manual_seed(0)
    return ts.create_model(name, **kwargs)


def _zoo_cases() -> list[object]:
    cases = []
    for name in ts.list_models():
        marks = [pytest.mark.slow] if name in SLOW else []
        cases += [pytest.param(name, fmt, marks=marks, id=f"{name}-{fmt}") for fmt in FORMATS]
    return cases


@pytest.mark.parametrize(("name", "fmt"), _zoo_cases())
def test_every_zoo_model_exports_with_a_dynamic_batch_and_verifies(name: str, fmt: str, tmp_path: Path) -> None:
    model = _zoo_model(name)
    model.train()  # export must run in eval mode and give the training mode back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path / f"{name}{SUFFIX[fmt]}"
    report = export(model, out, format=fmt, input_size=(3, 32, 32), timing_runs=1)
    assert report.passed, str(report)
    assert report.batch_sizes == [2, 1, 5] and report.dynamic_batch
    assert report.max_rel_error < 1e-4
    assert out.is_file() and report.file_size == out.stat().st_size > 0
    assert all(c.eager_ms > 0 and c.exported_ms > 0 for c in report.checks)
    has_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert any("eval mode" in n and ("BatchNorm" in n) == has_norm for n in report.notes)  # named where it is
    assert all(m.training for m in model.modules())
    assert hook_count(model) == 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running statistics untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary folder left


def test_mixed_training_modes_are_restored_module_by_module(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(144, 2))
    model.train()
    model[1].eval()  # a frozen BatchNorm inside a training model
    report = export(model, tmp_path / "m.pt2", input_size=(3, 8, 8), timing_runs=1)
    assert report.passed  # Dropout off: otherwise eager and export would disagree
    assert [m.training for m in model] == [True, False, True, True, True]
    note = report.notes[0]
    assert "1 BatchNorm" in note and "1 Dropout" in note and "put back" in note


def test_report_renders_as_text_and_json(tmp_path: Path) -> None:
    report = export(ts.create_model("lenet"), tmp_path / "lenet.pt2", timing_runs=1)
    text = str(report)
    assert "PASSED" in text and "max abs err" in text and "speedup" in text and "eval mode" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is True and [c["batch_size"] for c in data["checks"]] == [2, 1, 5]
    assert data["input_shape"] == [2, 3, 32, 32] and data["file_size"] > 0


@pytest.mark.parametrize("fmt", ["onnx", "exported"])
def test_the_speedup_is_the_ratio_of_two_measured_latencies(fmt: str, tmp_path: Path) -> None:
    # How fast each runtime is, warm against warm, is measured in benchmarks/bench_export.py (docs/benchmarks.md);
    # here the facts the report must carry: both runtimes timed at every batch size, and their ratio.
    report = export(ts.create_model("lenet"), tmp_path / f"lenet{SUFFIX[fmt]}", timing_runs=5)
    assert [c.batch_size for c in report.checks] == [2, 1, 5]
    for c in report.checks:
        assert 0 < c.eager_ms < float("inf") and 0 < c.exported_ms < float("inf"), c
        assert c.speedup == pytest.approx(c.eager_ms / c.exported_ms)
    assert [c["speedup"] for c in report.to_dict()["checks"]] == [c.speedup for c in report.checks]


def test_static_batch_checks_only_the_export_batch(tmp_path: Path) -> None:
    report = export(ts.create_model("lenet"), tmp_path / "l.pt2", dynamic_batch=False, batch_size=3,
                    timing_runs=1)
    assert report.batch_sizes == [3] and not report.dynamic_batch
    program = torch.export.load(str(tmp_path / "l.pt2")).module()
    with pytest.raises(Exception):  # noqa: B017 - any runtime error: the batch is fixed at 3
        program(torch.randn(2, 3, 32, 32))


def test_onnx_opset_is_recorded_and_the_library_prints_nothing(tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    # Opset 17 is below the dynamo exporter's own, so onnxscript converts it down (and would log about it).
    report = export(ts.create_model("lenet"), tmp_path / "l.onnx", opset=17, timing_runs=1)
    assert report.opset == 17 and report.passed
    assert any("onnxruntime" in n for n in report.notes)
    assert capfd.readouterr() == ("", "")


# ---- failures name the module and the operation -------------------------------------------------------


class Gate(nn.Module):
    """Data-dependent control flow: fine in eager and TorchScript, impossible for torch.export."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x


class SetComprehension(nn.Module):
    """Python TorchScript cannot compile."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [t * 2 for t in x.unbind(0)]
        return torch.stack(parts) + len({id(p) for p in parts})


class CumMax(nn.Module):
    """An op the ONNX exporter has no translation for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cummax(x, 1)[0]


def _net(inner: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), inner))


@pytest.mark.parametrize(("inner", "fmt", "op"), [
    (Gate(), "exported", r"`if x\.sum\(\) > 0:` \(test_export\.py:\d+\)"),
    (Gate(), "onnx", r"`if x\.sum\(\) > 0:`"),
    (SetComprehension(), "torchscript",
     r"`return torch\.stack\(parts\) \+ len\(\{id\(p\) for p in parts\}\)`.*SetComp"),
    (CumMax(), "onnx", r"`aten\.cummax\.default` \(test_export\.py:\d+\).*No ONNX function found"),
], ids=["exported-control-flow", "onnx-control-flow", "script-setcomp", "onnx-missing-op"])
def test_export_failure_names_module_and_operation(inner: nn.Module, fmt: str, op: str, tmp_path: Path) -> None:
    model = _net(inner).train()
    out = tmp_path / f"net{SUFFIX[fmt]}"
    with pytest.raises(ExportError, match=rf"in module '1\.1' \({type(inner).__name__}\) at operation {op}") as info:
        export(model, out, format=fmt, input_size=(3, 8, 8))
    assert info.value.__cause__ is not None  # the exporter's own error is kept
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert all(m.training for m in model.modules())


def test_control_flow_error_suggests_torchscript_which_then_works(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="torch.where or torch.cond, or use format='torchscript'"):
        export(_net(Gate()), tmp_path / "g.pt2", input_size=(3, 8, 8))
    assert export(_net(Gate()), tmp_path / "g.ts", input_size=(3, 8, 8), timing_runs=1).passed


class BatchBaked(nn.Module):
    """Branches on the batch size: torch.jit.trace records the branch taken at batch 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 2:
            return x + 1
        return x


def test_trace_that_bakes_a_branch_fails_verification_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "baked.ts"
    out.write_bytes(b"an earlier good export")
    with pytest.raises(ExportVerificationError, match=r"batch 5: max abs error 1 \(atol 1e-05\)") as info:
        export(_net(BatchBaked()), out, trace=True, input_size=(3, 8, 8), timing_runs=1)
    report = info.value.report
    assert not report.passed and [c.passed for c in report.checks] == [True, True, False]
    assert any("TracerWarning" in w for w in report.warnings)
    assert out.read_bytes() == b"an earlier good export"  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baked.ts"]


def test_keep_failed_keeps_the_file_with_a_marker(tmp_path: Path) -> None:
    with pytest.raises(ExportVerificationError, match="kept as .*baked.ts.failed"):
        export(_net(BatchBaked()), tmp_path / "baked.ts", trace=True, input_size=(3, 8, 8), keep_failed=True,
               timing_runs=1)
    kept = tmp_path / "baked.ts.failed"
    assert kept.is_file() and isinstance(torch.jit.load(str(kept)), torch.jit.ScriptModule)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baked.ts.failed"]


def test_zero_tolerance_catches_onnxruntime_rounding(tmp_path: Path) -> None:
    # onnxruntime's conv kernels round differently from torch's: real, tiny, and over a zero tolerance.
    with pytest.raises(ExportVerificationError, match=r"max abs error [0-9.e-]+ \(atol 0\)") as info:
        export(ts.create_model("lenet"), tmp_path / "l.onnx", atol=0, rtol=0, timing_runs=1)
    assert 0 < info.value.report.max_abs_error < 1e-3
    assert list(tmp_path.iterdir()) == []


# ---- bad arguments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"format": "tflite"}, UnknownNameError, "unknown export format 'tflite'"),
    ({"format": "exported", "path": "m.onnx"}, ConfigError, "has the .onnx suffix of format 'onnx'"),
    ({"batch_size": 1}, ConfigError, "batch_size=2 or more"),
    ({"opset": 17}, ConfigError, "opset applies to ONNX only"),
    ({"trace": True}, ConfigError, "trace applies to TorchScript only"),
    ({"atol": -1.0}, ConfigError, "tolerances must be >= 0"),
    ({"input_size": (3, 0, 32)}, ConfigError, "positive integers"),
    ({"path": "missing/m.pt2"}, ConfigError, "mkdir -p missing"),
    ({"input_size": (3, 64, 64)}, ShapeError, "build it with input_size=64"),
    ({"input_size": (3, 32, 32), "check_batch_sizes": (0,)}, ConfigError, "positive integers"),
    ({"atol": float("nan")}, ConfigError, "tolerances must be >= 0"),
    ({"path": None}, ConfigError, r"path must be a file path \(str or pathlib.Path\), not NoneType"),
    ({"input_size": (3, 10**7, 10**7)}, ConfigError, "shape 2x3x10000000x10000000 cannot be allocated"),
])
def test_bad_arguments_raise_one_clear_error(kwargs: dict, error: type, match: str, tmp_path: Path) -> None:
    path = kwargs.pop("path", "m.pt2")
    with pytest.raises(error, match=match):
        target = path if path is None else tmp_path / path if "/" not in path else Path(path)
        export(ts.create_model("lenet"), target, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_model_without_a_known_input_size_needs_one(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.ReLU())  # no parameters, no default_input_size: nothing tells its input
    with pytest.raises(ConfigError, match=r"has no default_input_size.*--input 3x32x32"):
        export(net, tmp_path / "l.pt2")
    assert export(net, tmp_path / "l.pt2", input_size=(4,), timing_runs=1).passed
    assert export(nn.Linear(4, 2), tmp_path / "m.pt2", timing_runs=1).input_shape == (2, 4)  # read from in_features


def test_lazy_model_is_sized_on_a_copy_and_left_lazy(tmp_path: Path) -> None:
    model = nn.Sequential(nn.LazyLinear(3))
    report = export(model, tmp_path / "l.pt2", input_size=(4,), timing_runs=1)
    assert report.passed and report.input_shape == (2, 4)
    assert any("materialised 2 lazy tensors at 4" in n for n in report.notes)
    assert type(model[0]) is nn.LazyLinear and (tmp_path / "l.pt2").exists()


def test_model_whose_forward_needs_two_inputs_is_told_so_and_exports_with_two(tmp_path: Path) -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + y

    with pytest.raises(ConfigError, match=r"TwoInputs.forward.* 2 inputs \(x, y\)"):
        export(TwoInputs(), tmp_path / "m.pt2", input_size=(4,))
    assert list(tmp_path.iterdir()) == []
    report = export(TwoInputs(), tmp_path / "m.pt2", input_size=[(4,), (3,)], timing_runs=1)
    assert report.passed and [c.batch_size for c in report.checks] == [2, 1, 5]
    named = export(TwoInputs(), tmp_path / "k.pt2", input_size={"x": (4,), "y": (3,)}, timing_runs=1)
    assert named.passed


def test_a_batch_fixed_by_the_code_exports_static_as_plain_torch_export_does(tmp_path: Path) -> None:
    class FixedBatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.view(2, -1))  # the batch written in

    report = export(FixedBatch(), tmp_path / "m.pt2", input_size=(8,), timing_runs=1)
    assert report.passed and not report.dynamic_batch and [c.batch_size for c in report.checks] == [2]
    assert any("static batch 2: the model's code fixes the batch size" in n for n in report.notes)
    with pytest.raises(ExportError, match="fixes the batch size"):  # other batches asked for: no silent fallback
        export(FixedBatch(), tmp_path / "k.pt2", input_size=(8,), check_batch_sizes=[1, 5], timing_runs=1)


def test_forward_that_writes_into_its_input_still_verifies(tmp_path: Path) -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x.mul_(2)  # eager and the export must each see the original input
            return self.fc(x)

    assert export(InPlace(), tmp_path / "m.ts", input_size=(4,), timing_runs=1).passed


def test_model_on_the_meta_device_is_refused(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = nn.Linear(4, 3)
    with pytest.raises(ConfigError, match=r"tensors on the meta device, which hold no data \(weight, bias\)"):
        export(model, tmp_path / "m.ts", input_size=(4,))
    assert list(tmp_path.iterdir()) == []


def test_torch_compile_wrapper_exports_the_model_inside(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    report = export(torch.compile(model), tmp_path / "m.ts", input_size=(4,), timing_runs=1)  # never compiled
    assert report.passed and "torch.compile" in report.notes[0]


# ---- CLI -------------------------------------------------------------------------------------------------


def test_cli_prints_the_report(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "lenet.ts"
    result = runner.invoke(main, ["export", "lenet", "--out", str(out), "--opt", "num_classes=3"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "export torchscript" in result.output and "PASSED" in result.output and out.is_file()
    result = runner.invoke(main, ["export", "lenet", "--format", "exported", "--out", str(tmp_path / "l.pt2"),
                                  "--static-batch", "--format-report", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["format"] == "exported" and data["dynamic_batch"] is False and data["passed"] is True


def test_cli_exports_a_checkpoint(tmp_path: Path) -> None:
    ts.save(ts.create_model("lenet", num_classes=4), tmp_path / "lenet.safetensors")
    result = CliRunner().invoke(main, ["export", str(tmp_path / "lenet.safetensors"), "--out",
                                       str(tmp_path / "lenet.pt2"), "--format-report", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["passed"] is True
    assert torch.export.load(str(tmp_path / "lenet.pt2")).module()(torch.randn(3, 3, 32, 32)).shape == (3, 4)


def _cli(*args: str, code: str = "") -> subprocess.CompletedProcess[str]:
    program = code + "from torchsmith.cli import main; main()"
    return subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=300)


def test_cli_verification_failure_exits_non_zero_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Module):
            def forward(self, x):
                if x.shape[0] > 2:
                    return x + 1
                return x
    """))
    result = _cli("export", f"{tmp_path / 'net.py'}:Net", "--input", "3x4x4", "--trace", "--out",
                  str(tmp_path / "net.ts"))
    assert result.returncode == 1
    assert "FAILED" in result.stdout  # the report with the numbers
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: torchscript export of the model does not match eager")
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["net.py"]


def test_cli_export_failure_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "gate.py").write_text(textwrap.dedent("""
        from torch import nn

        class Gate(nn.Module):
            def forward(self, x):
                if x.sum() > 0:
                    return x * 2
                return x

        def make():
            return nn.Sequential(nn.ReLU(), Gate())
    """))
    result = _cli("export", f"{tmp_path / 'gate.py'}:make", "--input", "4", "--out", str(tmp_path / "g.pt2"))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "'1' (Gate)" in lines[0] and "`if x.sum() > 0:`" in lines[0] and "gate.py:6" in lines[0]
    assert not (tmp_path / "g.pt2").exists()


def test_cli_onnx_without_onnx_packages_says_how_to_install(tmp_path: Path) -> None:
    # A real interpreter in which onnx, onnxruntime and onnxscript cannot be imported.
    block = "import sys\nfor n in ('onnx', 'onnxruntime', 'onnxscript'): sys.modules[n] = None\n"
    result = _cli("export", "lenet", "--out", str(tmp_path / "l.onnx"), code=block)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: ONNX export needs the 'onnx' package, which is not installed; pip install 'torchsmith[onnx]'"]
    assert list(tmp_path.iterdir()) == []
    # The other formats do not need them.
    result = _cli("export", "lenet", "--out", str(tmp_path / "l.pt2"), code=block)
    assert result.returncode == 0, result.stderr


def test_cli_help_has_examples() -> None:
    result = CliRunner().invoke(main, ["export", "--help"])
    assert result.exit_code == 0
    for flag in ("--format", "--out", "--input", "--static-batch", "--opset", "--trace", "--format-report"):
        assert flag in result.output
    assert "torchsmith export resnet20 --out resnet20.pt2" in result.output


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fmt", ["exported", "torchscript"])
def test_cuda_model_exports_and_verifies_on_its_device(fmt: str, tmp_path: Path) -> None:
    model = ts.create_model("resnet20").cuda()
    report = export(model, tmp_path / f"r{SUFFIX[fmt]}", format=fmt, timing_runs=2)
    assert report.passed, str(report)
    assert next(model.parameters()).is_cuda and model.training
