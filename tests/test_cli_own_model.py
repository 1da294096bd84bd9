"""Your own model from the command line, end to end: the classic lesson's hand-written LeNet and ResNet.

The classes below are written as a course writes them (no ``default_input_size``, a hard-coded
``x.view(-1, 16*5*5)``, a ``ResidualBlock`` with ``out += self.shortcut(x)``) and go through
``train --input``, ``eval``, ``export`` and ``features`` as a user would type them.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import torchsmith as ts
from torchsmith.cli import main
from torchsmith.errors import DataError

LESSON = textwrap.dedent('''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = x.view(-1, 16 * 5 * 5)
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            return self.fc3(x)


    class ResidualBlock(nn.Module):
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(out_channels)
            self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_channels)
            self.shortcut = nn.Sequential()
            if stride != 1 or in_channels != out_channels:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_channels))

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += self.shortcut(x)
            return F.relu(out)


    class ResNet(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            self.layer1 = ResidualBlock(16, 16)
            self.layer2 = ResidualBlock(16, 32, stride=2)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, num_classes)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            out = self.layer2(self.layer1(out))
            out = self.pool(out).view(out.size(0), -1)
            return self.fc(out)


    class Normed(nn.Module):
        """Its first layer (a BatchNorm) says nothing of the input size; it takes any 3-channel image."""

        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(3)
            self.conv = nn.Conv2d(3, 8, 3)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(self.pool(self.conv(self.norm(x))).flatten(1))
''')


@pytest.fixture
def lesson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "net.py").write_text(LESSON)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_lesson_lenet_trains_evaluates_exports_and_shows_features(lesson: Path):
    res = run("train", "net.py:LeNet", "--input", "3x32x32", "--data", "digits", "--epochs", "1", "--out", "run",
              "--progress", "plain", "--no-plot", "--tensorboard", "--json")
    assert res.exit_code == 0, res.output
    # The log says what was done to the data to fit the model.
    assert "digits: images converted from 1x8x8 to 3x32x32 to fit the model: grey repeated to 3 channels; " \
           "resized 8x8 -> 32x32 (bilinear)" in res.stderr
    trained = json.loads(res.stdout)
    assert trained["config"]["input_size"] == [3, 32, 32] and trained["epochs_done"] == 1
    assert trained["history"][-1]["test_acc"] > 0.3  # 67% measured after one epoch; chance is 10%
    assert list((lesson / "run").glob("events.out.tfevents.*"))

    # eval rebuilds the hand-written class from the run's record and feeds it 3x32x32, as trained.
    res = run("eval", "run", "--json")
    assert res.exit_code == 0, res.output
    evaluated = json.loads(res.stdout)
    assert evaluated["num_samples"] == 450
    assert evaluated["accuracy"] == pytest.approx(trained["best_test_acc"], abs=1e-9)
    res = run("eval", "run/best.safetensors", "--input", "3x32x32", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["accuracy"] == evaluated["accuracy"]

    res = run("export", "net.py:LeNet", "--input", "3x32x32", "--out", "lenet.pt2")
    assert res.exit_code == 0, res.output
    assert (lesson / "lenet.pt2").is_file()
    res = run("features", "net.py:LeNet", "--input", "3x32x32", "--layers", "conv1")
    assert res.exit_code == 0, res.output
    assert "conv1" in res.stdout and "6" in res.stdout


def test_lesson_resnet_trains_and_evaluates(lesson: Path):
    res = run("train", "net.py:ResNet", "--input", "3x32x32", "--data", "digits", "--epochs", "1",
              "--max-steps", "3", "--out", "run", "--progress", "none", "--no-plot")
    assert res.exit_code == 0, res.output
    assert "stopped at max_steps=3" in res.stdout
    res = run("eval", "run", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["num_samples"] == 450


def test_unknown_input_gets_cli_advice_on_the_cli_and_python_advice_in_python(lesson: Path):
    res = run("train", "net.py:Normed", "--data", "digits", "--epochs", "1", "--out", "run", "--progress", "none")
    assert res.exit_code == 1
    assert "Normed cannot take digits images of size 1x8x8" in res.stderr
    assert "--input 3x32x32" in res.stderr and "input_size" not in res.stderr  # never a Python call on the CLI

    import importlib.util

    spec = importlib.util.spec_from_file_location("lesson_net", lesson / "net.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    with pytest.raises(DataError, match=r"Normed cannot take digits images of size 1x8x8") as err:
        ts.fit(module.Normed(), "digits", epochs=1)
    assert "input_size=(3, 32, 32)" in str(err.value) and "--input" not in str(err.value)

    # Given the size, the same model trains (grey repeated to its three channels).
    res = run("train", "net.py:Normed", "--input", "3x8x8", "--data", "digits", "--epochs", "1", "--max-steps", "2",
              "--out", "run2", "--progress", "plain", "--no-plot")
    assert res.exit_code == 0, res.output
    assert "grey repeated to 3 channels" in res.stderr


def test_train_and_eval_share_the_input_options_wording():
    from torchsmith.cli import _common

    for name in ("train", "eval"):
        res = run(name, "--help")
        assert "--input CxHxW" in res.stdout and "Input size without the batch dimension, e.g. 3x32x32" in \
               " ".join(res.stdout.split())
        assert "--input-dtype DTYPE" in res.stdout
    assert _common.INPUT_HELP.startswith("Input size without the batch dimension, e.g. 3x32x32;")
    res = run("train", "lenet", "--input", "3x32", "--out", "x")
    assert res.exit_code == 1 and "input size 3x32 is not an image size (C, H, W)" in res.stderr
    assert "--input 3x32x32" in res.stderr


def test_wrong_given_size_is_named_with_the_size_the_model_takes(lesson: Path):
    res = run("train", "net.py:LeNet", "--input", "3x28x28", "--data", "digits", "--epochs", "1", "--out", "run",
              "--progress", "none")
    assert res.exit_code == 1
    assert "LeNet cannot take input of size 3x28x28 (RuntimeError" in res.stderr
    assert "it takes 3x32x32 (first layer (Conv2d))" in res.stderr
    assert "--input 3x32x32" in res.stderr and "input_size" not in res.stderr
