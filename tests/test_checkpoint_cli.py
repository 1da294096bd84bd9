"""``torchsmith ckpt info|diff|convert|load-report``: real commands, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from click.testing import CliRunner

import torchsmith as ts
from torchsmith.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["ckpt", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr if hasattr(result, "stderr") else ""


def test_info_shows_metadata_and_tensor_table(tmp_path: Path) -> None:
    path = ts.save(ts.create_model("lenet", num_classes=5), tmp_path / "lenet.safetensors")
    code, out, _ = _run("info", str(path))
    assert code == 0
    assert "safetensors (torchsmith format 1)" in out and "sha256 verified" in out
    assert '"name": "lenet"' in out and "fc3.weight" in out and "5x84" in out
    code, out, _ = _run("info", str(path), "--json")
    data = json.loads(out)
    assert data["verified"] is True and data["metadata"]["arch"]["kwargs"] == {"num_classes": 5}


def test_diff_convert_and_load_report(tmp_path: Path) -> None:
    model = ts.create_model("lenet")
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "ddp.pt")
    code, out, _ = _run("load-report", "lenet", str(tmp_path / "ddp.pt"))
    assert code == 0 and "stripped 'module.'" in out and "DistributedDataParallel" in out and "10 matched" in out

    torch.save(model.state_dict(), tmp_path / "plain.pt")
    code, out, _ = _run("convert", str(tmp_path / "plain.pt"), str(tmp_path / "plain.safetensors"),
                        "--model", "lenet")
    assert code == 0 and "wrote" in out
    loaded = ts.load(tmp_path / "plain.safetensors")
    assert torch.equal(loaded.fc1.weight, model.fc1.weight)

    code, out, _ = _run("diff", str(tmp_path / "plain.pt"), str(tmp_path / "plain.safetensors"), "--exit-code")
    assert code == 0 and "identical" in out
    other = ts.save(ts.create_model("lenet"), tmp_path / "other.safetensors")
    code, out, _ = _run("diff", str(tmp_path / "plain.safetensors"), str(other), "--exit-code")
    assert code == 1 and "max |A-B|" in out

    code, out, _ = _run("load-report", "lenet", str(tmp_path / "plain.pt"), "--opt", "num_classes=4",
                        "--on-mismatch", "reinit")
    assert code == 0 and "init_policy" in out and "fc3.weight, fc3.bias" in out


def test_refused_load_prints_report_and_one_line_error() -> None:
    model = ts.create_model("lenet")
    torch.save(model.state_dict(), "plain.pt")
    proc = subprocess.run([sys.executable, "-m", "torchsmith", "ckpt", "load-report", "lenet", "plain.pt",
                           "--opt", "num_classes=4"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "fc3.weight" in proc.stdout and "[10, 84]" in proc.stdout and "[4, 84]" in proc.stdout
    assert proc.stderr.startswith("error: plain.pt does not fit LeNet") and proc.stderr.count("\n") == 1
    assert "on_mismatch='reinit'" in proc.stderr
    Path("plain.pt").unlink()


def test_bad_input_is_one_line_and_nothing_written(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for args in (["info", str(tmp_path / "missing.safetensors")],
                 ["convert", str(tmp_path / "junk.pt"), str(tmp_path / "out.safetensors")],
                 ["convert", str(tmp_path / "junk.pt"), str(tmp_path / "out.pt")],
                 ["load-report", "lenet", str(tmp_path / "junk.pt"), "--remap", "nonsense"]):
        result = CliRunner().invoke(main, ["ckpt", *args])
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pt"]


def test_every_ckpt_command_has_help_with_an_example_and_is_in_the_readme() -> None:
    readme = README.read_text()
    for name in ("info", "diff", "convert", "load-report"):
        result = CliRunner().invoke(main, ["ckpt", name, "--help"], catch_exceptions=False)
        assert result.exit_code == 0 and "torchsmith ckpt " + name in result.output
        assert f"torchsmith ckpt {name}" in readme, name


def _strict_json(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"invalid JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_diff_json_stays_valid_json_when_one_side_holds_nan(tmp_path: Path) -> None:
    torch.save({"a": torch.tensor([float("nan"), 1.0])}, tmp_path / "a.pt")
    torch.save({"a": torch.tensor([1.0, 1.0])}, tmp_path / "b.pt")
    result = CliRunner().invoke(main, ["ckpt", "diff", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0
    out = _strict_json(result.output)
    assert isinstance(out, dict) and out["identical"] is False and out["max_abs_diff"] == {"a": None}
    text = CliRunner().invoke(main, ["ckpt", "diff", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]).output
    assert "max |A-B| inf  a" in text
