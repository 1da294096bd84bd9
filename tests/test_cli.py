"""The CLI: real commands, real subprocesses for exit codes; every command has help and is in the README."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import torchsmith as ts
from torchsmith import __version__
from torchsmith.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torchsmith", *args], capture_output=True, text=True, timeout=120)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_models_lists_and_filters():
    result = invoke("models")
    assert result.exit_code == 0
    assert "lenet" in result.output and "62,006" in result.output
    only = invoke("models", "resnet5*")
    assert only.output.splitlines()[0].startswith("resnet50") and "lenet" not in only.output


def test_show_lenet_tree_and_total():
    result = invoke("show", "lenet")
    assert result.exit_code == 0, result.output
    assert "62,006" in result.output
    for layer in ("conv1", "conv2", "fc1", "fc2", "fc3"):
        assert layer in result.output


def test_show_with_options():
    result = invoke("show", "resnet18", "--opt", "stem=cifar", "--opt", "num_classes=10")
    assert result.exit_code == 0, result.output
    assert "11,173,962" in result.output


def test_python_dash_m_and_unknown_model_is_one_line_no_traceback():
    proc = run("show", "resnet81")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: unknown model 'resnet81'; did you mean 'resnet18'? "
        "(give a zoo name, hf:NAME, timm:NAME, torchvision:NAME, path/to/file.py:Class, package.module:attr, "
        "a spec.yaml or a checkpoint.safetensors)"
    )
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("args,match", [
    (("show", "lenet", "--opt", "num_clases=3"), "did you mean 'num_classes'"),
    (("show", "lenet", "--opt", "oops"), "is not KEY=VALUE"),
    (("show", "missing.py:Net"), "model file 'missing.py' does not exist"),
    (("show", "net.py"), "names a file but no class"),
    (("show", "no_such_pkg_xyz:Net"), "cannot import module 'no_such_pkg_xyz'"),
    (("show", "/etc/hostname"), "is a file torchsmith cannot build a model from"),
])
def test_bad_input_gives_one_clear_line(args, match):
    proc = run(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_errors_under_torchrun_say_which_rank_printed_them():
    # Every rank of a torchrun job prints its own failure; the prefix tells the copies apart.
    result = CliRunner().invoke(main, ["show", "nosuch"], env={"WORLD_SIZE": "2", "RANK": "1"})
    assert result.exit_code == 1
    assert result.output.startswith("[rank 1] error: unknown model 'nosuch'"), result.output
    result = CliRunner().invoke(main, ["show", "nosuch"], env={"WORLD_SIZE": "1", "RANK": "0"})
    assert result.output.startswith("error: unknown model"), result.output


def test_user_code_file_and_module_references(tmp_path: Path):
    (tmp_path / "mynet.py").write_text(textwrap.dedent("""
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self, width=8):
                super().__init__()
                self.fc = nn.Linear(4, width)

            def forward(self, x):
                return self.fc(x)

        def make(width=3):
            return Net(width)

        not_a_model = 42
    """))
    result = invoke("show", f"{tmp_path / 'mynet.py'}:Net")
    assert result.exit_code == 0 and "40" in result.output  # 4*8 + 8
    result = invoke("show", f"{tmp_path / 'mynet.py'}:make", "--opt", "width=5")
    assert "25" in result.output  # 4*5 + 5
    proc = subprocess.run([sys.executable, "-m", "torchsmith", "show", "mynet:Net"], capture_output=True,
                          text=True, cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
                          timeout=120)
    assert proc.returncode == 0 and "40" in proc.stdout, proc.stderr
    bad = run("show", f"{tmp_path / 'mynet.py'}:not_a_model")
    assert bad.returncode == 1 and "not an nn.Module" in bad.stderr
    typo = run("show", f"{tmp_path / 'mynet.py'}:Nett")
    assert typo.returncode == 1 and "did you mean 'Net'" in typo.stderr


def _commands() -> list[str]:
    return sorted(main.commands)


@pytest.mark.parametrize("name", _commands())
def test_every_command_has_help_with_an_example_and_is_in_readme(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0
    assert "Example" in result.output, f"`torchsmith {name} --help` shows no example"
    assert f"torchsmith {name}" in README.read_text(), f"README.md does not show `torchsmith {name}`"


def test_every_subprocess_in_the_tests_has_a_timeout():
    """A hung child must fail its test, not stall the suite: subprocess.run/check_output/call take a timeout,
    and a function that starts a Popen waits on it with one (wait/communicate(timeout=...))."""
    import ast

    missing = []
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            calls = [n for n in ast.walk(func) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
            timed_wait = any(c.func.attr in ("wait", "communicate") and any(k.arg == "timeout" for k in c.keywords)
                             for c in calls)
            for c in calls:
                if not (isinstance(c.func.value, ast.Name) and c.func.value.id == "subprocess"):
                    continue
                if c.func.attr in ("run", "check_output", "call", "check_call") and \
                        not any(k.arg == "timeout" for k in c.keywords):
                    missing.append(f"{path.name}:{c.lineno}")
                elif c.func.attr == "Popen" and not timed_wait:
                    missing.append(f"{path.name}:{c.lineno} (Popen never waited on with a timeout)")
    assert missing == []


def test_every_command_that_writes_a_file_takes_o_out_and_output(tmp_path):
    """One spelling everywhere: -o, --out and --output name what a command writes."""
    for flag, name in (("-o", "a.yaml"), ("--out", "b.json"), ("--output", "c.yaml")):
        result = CliRunner().invoke(main, ["spec", "lenet", flag, str(tmp_path / name)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert ts.load_spec(tmp_path / name)["name"]
    result = CliRunner().invoke(main, ["export", "lenet", "-o", str(tmp_path / "lenet.pt2")], catch_exceptions=False)
    assert result.exit_code == 0 and (tmp_path / "lenet.pt2").is_file(), result.output
    for command in ("train", "demo", "report", "export", "spec"):
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        assert "-o," in help_text and "--out" in help_text, command
