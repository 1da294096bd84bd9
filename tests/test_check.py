"""torchsmith.check: the corpus of broken models, the zoo, leaving the model untouched, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import broken_models as bm
import torchsmith as ts
from torchsmith.cli import main
from torchsmith.errors import ConfigError, UnknownNameError

CORPUS = Path(bm.__file__).resolve()
README = Path(__file__).resolve().parent.parent / "README.md"
SEVERITY = {f.id: f.severity for f in ts.list_findings()}
CHECK_NAMES = [c.name for c in ts.list_checks()]
DEFAULT_CHECKS = [c.name for c in ts.list_checks() if c.default]


def _found(report: ts.CheckReport) -> set[tuple[str, str]]:
    return {(f.id, f.module) for f in report.findings}


# --------------------------------------------------------------------------- the corpus
def _build(factory):
    """A corpus model from its own fixed seed: its weights do not depend on which tests ran before."""
    torch.manual_seed(zlib.crc32(factory.__name__.encode()))
    return factory()


@pytest.mark.parametrize("factory", bm.HEALTHY + bm.BROKEN, ids=lambda f: f.__name__)
def test_corpus_defects_found_with_id_and_module(factory):
    report = ts.check(_build(factory), factory.INPUT, checks=getattr(factory, "CHECKS", None))
    expected = set(factory.EXPECT)
    assert expected <= _found(report), str(report)
    # No false errors: every error is one the model was built to have, or a direct consequence of it
    # that some torch versions show (ALSO).
    allowed = expected | set(getattr(factory, "ALSO", ()))
    assert {(f.id, f.module) for f in report.errors} <= allowed, str(report)
    # ok is decided by the model's defects: a model built with an error-severity defect is not ok.
    assert report.ok == all(SEVERITY[fid] != "error" for fid, _ in factory.EXPECT), str(report)


def test_corpus_covers_every_finding_id():
    covered = {fid for f in bm.HEALTHY + bm.BROKEN for fid, _ in f.EXPECT}
    # forward-failed and fixed-input-size are covered by the LeNet tests below.
    assert set(SEVERITY) - covered <= {"forward-failed", "fixed-input-size"}


def test_healthy_controls_are_clean():
    for factory in bm.HEALTHY:
        report = ts.check(_build(factory), factory.INPUT)
        assert not report.errors and not report.warnings, str(report)
        assert report.skipped == {}, f"{factory.__name__}: {report.skipped}"  # every check ran


# --------------------------------------------------------------------------- the zoo
_FAST = [c for c in DEFAULT_CHECKS if c not in ("scriptable", "exportable")]
# name -> (input size, checks). Every check runs on one model of each block type and stem; the deeper
# models repeat the same blocks, so they skip the two compilers (seconds each) to keep the suite fast.
_ZOO = {
    "lenet": (None, None), "resnet18": ((3, 32, 32), None), "resnet20": (None, None),
    "resnet50": ((3, 32, 32), None),
}
_SLOW = ("resnet34", "resnet50", "resnet101", "resnet152", "resnet56", "resnet110")
# The deepest models also skip the state-dict round trip (a second 40-60M-parameter build): resnet18/50 cover it.
_DEEP = [c for c in _FAST if c != "state-dict"]
_ZOO.update({n: ((3, 32, 32) if n != "resnet110" else None, _DEEP) for n in ("resnet101", "resnet152", "resnet110")})


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in ts.list_models()
])
def test_every_zoo_model_has_zero_errors(name):
    model = ts.create_model(name)
    size, checks = _ZOO.get(name, ((3, 32, 32) if model.default_input_size[1] == 224 else None, _FAST))
    report = ts.check(model, size, checks=checks)
    assert report.errors == [], str(report)
    assert not report.skipped, report.skipped


def test_lenet_fixed_size_is_a_note_and_wrong_size_fails_forward():
    report = ts.check(ts.create_model("lenet"), checks="input-sizes")
    assert [(f.id, f.severity, f.module) for f in report.findings] == [("fixed-input-size", "info", "")]
    assert "fc1 expects 400" in report.findings[0].message
    bad = ts.check(ts.create_model("lenet"), (3, 64, 64), checks="input-mutated")
    assert [(f.id, f.module) for f in bad.errors] == [("forward-failed", "")]
    assert "fc1 expects 400 input features but got 2704" in bad.errors[0].message
    assert "input-mutated" in bad.skipped


def test_hard_coded_size_names_module_and_original_size():
    report = ts.check(bm.TutorialNet(), (3, 32, 32), checks="input-sizes")
    (f,) = report.errors
    assert f.id == "hard-coded-size" and f.module == "fc1"
    assert "expects 400 input features" in f.message and "at 3x64x64 input" in f.message
    assert f.observed["in_features"] == 400 and f.observed["got"] == [1, 2704]


# --------------------------------------------------------------------------- leaves the model alone
def _snapshot(model: nn.Module) -> dict:
    return {
        "tensors": {n: (t.detach().clone(), t.data_ptr(), t.requires_grad)
                    for n, t in list(model.named_parameters()) + list(model.named_buffers())},
        "grads": {n: p.grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "hooks": {n: (dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks))
                  for n, m in model.named_modules()},
        "rng": torch.get_rng_state(),
    }


@pytest.mark.parametrize("name,train,checks", [("resnet20", True, None), ("resnet20", False, None),
                                                ("HealthyCNN", True, "all")])
def test_check_leaves_the_model_and_global_state_as_found(name, train, checks):
    model = ts.create_model(name) if name == "resnet20" else bm.HealthyCNN()
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    calls = []
    handle = first.register_forward_hook(lambda m, i, o: calls.append(1))
    model.train(train)
    next(iter(model.children())).train(not train)  # a mixed mode must survive too
    before = _snapshot(model)
    global_hooks = len(torch.nn.modules.module._global_forward_hooks)
    report = ts.check(model, (3, 16, 16), checks=checks)
    after = _snapshot(model)
    assert calls == []  # the user's hook never ran: the check strips hooks from its copy
    assert report.by_id("hook-left")[0].module in ("conv1", "conv")
    for name, (value, ptr, req) in before["tensors"].items():
        value2, ptr2, req2 = after["tensors"][name]
        assert ptr == ptr2 and req == req2 and torch.equal(value, value2), name
    assert all(g is None for g in after["grads"].values())
    assert before["modes"] == after["modes"] and before["hooks"] == after["hooks"]
    assert torch.equal(before["rng"], after["rng"])
    assert len(torch.nn.modules.module._global_forward_hooks) == global_hooks
    handle.remove()


def test_same_seed_same_report():
    model = bm.DropoutInEval()
    a = ts.check(model, (16,)).to_dict()
    b = ts.check(model, (16,)).to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


# --------------------------------------------------------------------------- API contract
def test_input_size_default_and_missing():
    assert ts.check(ts.create_model("lenet"), checks="hooks").input_size == (3, 32, 32)
    assert ts.check(bm.HealthyMLP(), "16", checks="hooks").input_size == (16,)
    assert ts.check(bm.HealthyMLP(), checks="hooks").input_size == (16,)  # the contract reads the first Linear
    with pytest.raises(ConfigError, match="input size of UnknownInput is not known"):
        ts.check(bm.UnknownInput())
    with pytest.raises(ConfigError, match="positive integers"):
        ts.check(bm.HealthyMLP(), (16, 0))
    with pytest.raises(ConfigError, match="needs an nn.Module"):
        ts.check("lenet")  # type: ignore[arg-type]


def test_checks_selection():
    report = ts.check(bm.InplaceInput(), (16,), checks="input-mutated")
    assert report.checks == ["input-mutated"] and set(report.seconds) == {"input-mutated", "total"}
    by_id = ts.check(bm.InplaceInput(), (16,), checks=["non-finite-output", "hook-left"])
    assert by_id.checks == ["non-finite", "hooks"]
    assert ts.check(bm.HealthyMLP(), (16,), checks="all").checks == CHECK_NAMES
    assert "graph-breaks" not in DEFAULT_CHECKS
    with pytest.raises(UnknownNameError, match="did you mean 'input-mutated'"):
        ts.check(bm.HealthyMLP(), (16,), checks="input-mutatd")
    with pytest.raises(ConfigError, match="no checks named"):
        ts.check(bm.HealthyMLP(), (16,), checks=" , ")


def test_uncopyable_model_is_a_clear_error():
    model = bm.HealthyMLP()
    model.lock = threading.Lock()
    with pytest.raises(ConfigError, match="copy.deepcopy"):
        ts.check(model, (16,))


def test_report_dict_text_and_plot(tmp_path):
    report = ts.check(bm.DeadReLU(), (16,))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["counts"]["warning"] >= 1
    (f,) = [f for f in data["findings"] if f["id"] == "dead-relu"]
    assert f["module"] == "act" and f["severity"] == "warning" and f["observed"]["zero_fraction"] > 0.9
    text = str(report)
    assert "WARN  dead-relu [act]" in text and "fix:" in text and text.splitlines()[-1].startswith("ok:")
    assert [s.module for s in report.layer_stats] == ["fc1", "act", "fc2"]
    png = report.plot(tmp_path / "stats.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="ending in .png"):
        report.plot(tmp_path / "stats.jpg")
    with pytest.raises(ConfigError, match="does not exist"):
        report.plot(tmp_path / "missing" / "stats.png")


def test_every_finding_id_is_documented_in_readme():
    text = README.read_text()
    missing = [fid for fid in SEVERITY if f"`{fid}`" not in text]
    assert not missing, f"README lacks finding ids {missing}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixed_devices_on_gpu():
    model = bm.HealthyMLP()
    model.fc2.cuda()
    report = ts.check(model, (16,), checks="devices-dtypes")
    assert ("mixed-devices", "fc2") in _found(report)


# --------------------------------------------------------------------------- CLI
def _cli(*args: str):
    return CliRunner().invoke(main, ["check", *args], catch_exceptions=False)


def test_cli_exit_codes_and_json():
    res = _cli(f"{CORPUS}:InplaceInput", "--input", "16", "--format", "json")
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert ("input-mutated", "") in {(f["id"], f["module"]) for f in data["findings"]}
    warn_only = _cli(f"{CORPUS}:UnusedLayer", "--input", "16", "--checks", "unused-parameters")
    assert warn_only.exit_code == 0 and "WARN  unused-parameter [extra]" in warn_only.stdout
    assert _cli("lenet", "--checks", "hooks,input-mutated").exit_code == 0
    by_module = _cli("broken_models:InplaceReLUFirst", "--input", "16", "--checks", "input-mutated")
    assert by_module.exit_code == 1 and "ERROR input-mutated [act]" in by_module.stdout


def test_cli_plot_and_bad_input(tmp_path):
    res = _cli(f"{CORPUS}:HealthyMLP", "--input", "16", "--checks", "signal", "--plot", "s.png")
    assert res.exit_code == 0 and Path("s.png").read_bytes()[:4] == b"\x89PNG"
    bad = _cli(f"{CORPUS}:HealthyMLP", "--input", "16", "--plot", "s.jpg")
    assert bad.exit_code == 1 and "ending in .png" in bad.stderr
    nosig = _cli(f"{CORPUS}:HealthyMLP", "--input", "16", "--checks", "hooks", "--plot", "t.png")
    assert nosig.exit_code == 1 and "needs the 'signal' check" in nosig.stderr and not Path("t.png").exists()


def test_cli_errors_are_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "torchsmith", "check", f"{CORPUS}:UnknownInput"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "input size of UnknownInput is not known" in proc.stderr
    assert "--input" in proc.stderr
    res = _cli("lenet", "--checks", "input-mutatd")
    assert res.exit_code == 1 and "did you mean 'input-mutated'" in res.stderr and "Traceback" not in res.stderr


def test_cli_checks_a_checkpoint(tmp_path):
    ts.save(ts.create_model("lenet"), tmp_path / "lenet.safetensors")
    res = _cli(str(tmp_path / "lenet.safetensors"), "--checks", "state-dict,determinism", "--format", "json")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert json.loads(res.stdout)["ok"] is True


def test_spec_built_model_declares_its_input_and_round_trips_its_state_dict():
    examples = Path(__file__).resolve().parent.parent / "examples"
    model = ts.build_file(examples / "lenet.yaml")
    report = ts.check(model, checks="input-sizes,state-dict")
    assert report.ok, str(report)
    fixed = [f for f in report.findings if f.id == "fixed-input-size"]
    assert fixed and fixed[0].module == "fc1" and "spec declares its input as 3x32x32" in fixed[0].message
    assert "state-dict" not in report.skipped, report.skipped


# --------------------------------------------------------------------------- QA: odd input, odd models
def test_bad_sizes_checks_and_seeds_are_clear_errors():
    for size in ((16.5,), (True,)):  # were rounded to 16 and 1 silently
        with pytest.raises(ConfigError, match="positive integers"):
            ts.check(bm.HealthyMLP(), size, checks="hooks")
    with pytest.raises(ConfigError, match="checks must be names"):
        ts.check(bm.HealthyMLP(), (16,), checks=5)  # type: ignore[arg-type]
    for seed in ("a", 2**70):
        with pytest.raises(ConfigError, match="seed must be an integer"):
            ts.check(bm.HealthyMLP(), (16,), checks="hooks", seed=seed)  # type: ignore[arg-type]
    # Every check used to be "skipped: the check itself failed" and the report said ok.
    with pytest.raises(ConfigError, match=r"cannot make a probe batch of shape \(2, 100000, 100000\)"):
        ts.check(bm.HealthyMLP(), (100_000, 100_000))


class _FFTHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(self.fc(x))  # (B, 8) complex


def test_complex_output_is_not_an_unused_parameter():
    report = ts.check(_FFTHead(), (16,), checks="unused-parameters,determinism")
    assert report.findings == [] and report.skipped == {}, str(report)


def test_cli_plot_into_a_folder_is_refused_before_checking(tmp_path):
    (tmp_path / "stats.png").mkdir()
    res = _cli(f"{CORPUS}:HealthyMLP", "--input", "16", "--plot", str(tmp_path / "stats.png"))
    assert res.exit_code == 1 and "it is a folder" in res.stderr and res.stdout == ""
    res = _cli(f"{CORPUS}:HealthyMLP", "--input", "16", "--checks", "signal", "--plot", str(tmp_path / "s.png"))
    assert res.exit_code == 0 and (tmp_path / "s.png").stat().st_mode & 0o044  # readable like any new file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png", "stats.png"]  # no temporary file left


class _NormFirstLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(16)  # registered before the embedding, which still meets the input
        self.emb = nn.Embedding(50, 16)
        self.head = nn.Linear(16, 50)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.emb(x)))


def test_token_input_found_when_the_embedding_is_not_registered_first():
    # It was probed with float input and got a false forward-failed error.
    model = _NormFirstLM()
    report = ts.check(model, (7,), checks="non-finite,unused-parameters,determinism,state-dict")
    assert report.ok and report.findings == [] and report.skipped == {}, str(report)
    assert model.training and not model.emb._forward_pre_hooks


class _VersionedLikeMNASNet(nn.Module):
    """Reads its own version from the state dict's metadata, as torchvision's MNASNet does."""

    _version = 2

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        version = local_metadata.get("version", None)
        if version not in (1, 2):
            raise ValueError(f"version should be set to 1 or 2 instead of {version}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def test_the_state_dict_round_trip_keeps_the_module_versions():
    """torch.save keeps state_dict._metadata; the doctor's round trip must too, or it blames a healthy model."""
    report = ts.check(_VersionedLikeMNASNet(), (4,), checks="state-dict")
    assert report.findings == [] and report.skipped == {}, str(report)
