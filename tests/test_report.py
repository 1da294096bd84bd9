"""``torchsmith report``: a model and a real run directory through the CLI, bad input, atomic writes,
and both reports opened in a real headless Chromium (no console errors, a screenshot that is not blank)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from torchsmith.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from html_checks import check_html, external_refs  # noqa: E402

LESSON_NET = '''
import torch
from torch import nn
import torch.nn.functional as F


class LeNet(nn.Module):
    """The classic lesson's LeNet: no default_input_size, a hard-coded 16*5*5."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.add_module("<fc1>", nn.Linear(16 * 5 * 5, 120))
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        return self.fc2(F.relu(getattr(self, "<fc1>")(x)))
'''


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: the train CLI, 1 epoch of a small LeNet on the embedded digits."""
    out = tmp_path_factory.mktemp("runs") / "lenet-digits"
    code, output = cli("train", "lenet", "--opt", "in_channels=1", "--opt", "input_size=16", "--data", "digits",
                       "--epochs", "1", "--batch-size", "128", "--lr", "0.01", "--out", str(out), "--progress", "none")
    assert code == 0, output
    return out


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, run_dir: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reports")
    net = folder / "net.py"
    net.write_text(LESSON_NET)
    out = {"model": folder / "model.html", "run": folder / "run.html"}
    code, output = cli("report", f"{net}:LeNet", "--input", "3x32x32", "-o", str(out["model"]))
    assert code == 0, output
    code, output = cli("report", str(run_dir), "-o", str(out["run"]))
    assert code == 0, output
    return out


def test_model_report_has_every_part(reports):
    text = reports["model"].read_text()
    visible = check_html(text)
    assert not external_refs(text)
    assert "default-src 'none'" in text  # a Content-Security-Policy: nothing may be fetched
    for part in ("Summary", "Doctor", "Initialisation", "conv1", "52,202", "Conv2d",
                 "32x32x3 -> conv1 -> 28x28x6"):
        assert part in visible, part
    assert "<fc1>" in visible and "<fc1>" not in text.replace("&lt;fc1&gt;", "")  # shown, escaped
    assert "hard-coded-size" in visible or "fixed-input-size" in visible  # the doctor catches the 400
    assert "fix:" in visible
    if Path(__file__).resolve().parents[1].joinpath("src/torchsmith/_summary/diagram.py").is_file():
        assert '<div class="diagram">' in text and "<svg" in text
    if Path(__file__).resolve().parents[1].joinpath("src/torchsmith/_summary/explain.py").is_file():
        assert "(32 + 2*0 - 1*(5-1) - 1)/1 + 1 = 28" in visible and "params = 3*6*5*5 + 6 = 456" in visible
    assert text.count('src="data:image/png;base64,') == 1  # the doctor's per-layer statistics


def test_run_report_has_epochs_curves_and_the_confusion_matrix(reports, run_dir):
    text = reports["run"].read_text()
    visible = check_html(text)
    assert not external_refs(text)
    for part in ("Epochs", "Per-class accuracy", "Confusion matrix", "best.safetensors", "lenet on digits",
                 "train loss", "test acc", "LeNet, input (1, 1, 16, 16)", "15,626"):
        assert part in visible, part
    history = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 1 and '"test_acc"' in history[0]
    assert text.count('src="data:image/png;base64,') == 2  # the curves and the confusion matrix


def test_bad_input_is_one_line_a_non_zero_exit_and_no_file(tmp_path, run_dir):
    target = tmp_path / "r.html"
    target.write_text("the old report")
    for args, message in (
        (["lenett", "-o", str(target)], "did you mean 'lenet'"),
        (["lenet", "-o", str(tmp_path / "r.txt")], "ending in .html"),
        (["lenet", "-o", str(tmp_path / "missing" / "r.html")], "does not exist"),
        (["lenet", "--input", "axb", "-o", str(target)], "axb"),
        ([str(tmp_path), "-o", str(target)], "config.json"),
        ([str(run_dir), "--input", "1x16x16", "-o", str(target)], "not to a run directory"),
    ):
        code, output = cli("report", *args)
        assert code == 1, (args, output)
        assert output.startswith("error: ") and output.count("\n") == 1 and message in output, output
    assert target.read_text() == "the old report"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left behind


def test_a_run_without_metrics_is_refused(tmp_path, run_dir):
    broken = tmp_path / "run"
    shutil.copytree(run_dir, broken)
    (broken / "metrics.jsonl").unlink()
    code, output = cli("report", str(broken), "-o", str(tmp_path / "r.html"))
    assert code == 1 and "no metrics.jsonl" in output and not (tmp_path / "r.html").exists()


# --------------------------------------------------------------------------- a real browser
CHROMIUM = shutil.which("chromium")


def open_in_chromium(page: Path, tmp: Path) -> tuple[list[str], Path]:
    """Open ``page`` in headless Chromium: (console messages, screenshot)."""
    shot = tmp / f"{page.stem}.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={shot}", "--window-size=1200,1600", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return console, shot


def not_blank(png: Path) -> float:
    """The share of pixels that are not the page background."""
    import matplotlib.image as mpimg
    import numpy as np

    pixels = mpimg.imread(png)[..., :3]
    background = pixels[0, 0]
    assert float(pixels.std()) > 0.05, "the screenshot is one colour"
    return float((np.abs(pixels - background).sum(axis=-1) > 0.1).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
@pytest.mark.timeout(300)
def test_reports_open_in_chromium_without_errors(reports, tmp_path):
    # The check itself can fail: a page with a script error and a fetch is caught.
    bad = tmp_path / "bad.html"
    bad.write_text(reports["model"].read_text().replace("</main>", '<img src="http://example.com/x.png">'
                                                                   "<script>undefinedFunction()</script></main>"))
    console, _ = open_in_chromium(bad, tmp_path)
    assert len(console) >= 2, console  # both blocked by the page's Content-Security-Policy
    for name in ("model", "run"):
        console, shot = open_in_chromium(reports[name], tmp_path)
        assert console == [], console
        assert not_blank(shot) > 0.03, f"the {name} report's screenshot is (nearly) blank"
