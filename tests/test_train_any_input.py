"""Training on any input the contract describes: audio, volumes, tabular vectors, arrays, CSV, regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from torchsmith.cli import main
from torchsmith.data.arrays import load_csv, load_npz
from torchsmith.errors import DataError
from torchsmith.train import TrainConfig, fit

FAST = {"epochs": 1, "batch_size": 16, "num_samples": 64, "plot": False, "lr": 1e-2}

MODELS = '''
import torch
from torch import nn

class AudioNet(nn.Module):  # 1 x 16000 samples of audio
    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 80, stride=16)
        self.pool = nn.AdaptiveAvgPool1d(8)
        self.fc = nn.Linear(32, num_classes)
    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))

class VolumeNet(nn.Module):  # 1 x 8 x 16 x 16 volumes
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 16 * 16, 3)
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))
'''


class Tabular(nn.Module):
    def __init__(self, features: int = 16, outputs: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ImageAndMeta(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.meta_fc = nn.Linear(5, 4)
        self.head = nn.Linear(2 * 6 * 6 + 4, 3)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.conv(image).flatten(1), self.meta_fc(meta)], 1))


def _train(*args: str) -> str:
    result = CliRunner().invoke(main, ["train", *args, "--epochs", "1", "--batch-size", "16", "--samples", "64",
                                       "--no-plot", "--progress", "none"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("ref, size, classes", [("AudioNet", "1x16000", 4), ("VolumeNet", "1x8x16x16", 3)])
def test_cli_trains_audio_and_volume_convnets_on_synthetic_data(tmp_path, ref, size, classes):
    (tmp_path / "nets.py").write_text(MODELS)
    out = _train(f"{tmp_path / 'nets.py'}:{ref}", "--input", size, "--data", "synthetic", "--out",
                 str(tmp_path / ref))
    assert "trained 1/1 epochs" in out and "classification" in out


def test_tabular_mlp_trains_for_classification_and_regression(tmp_path):
    torch.manual_seed(0)
    result = fit(Tabular(), "synthetic", TrainConfig(**FAST))  # type: ignore[arg-type]
    assert result.task == "classification" and result.history[0]["test_acc"] is not None
    notes = " ".join(result.notes)
    assert "synthetic 16 tensor inputs" in notes and "2 classes" in notes
    reg = fit(Tabular(outputs=1), "synthetic", TrainConfig(**FAST, task="regression"))  # type: ignore[arg-type]
    assert reg.task == "regression" and reg.history[0]["test_acc"] is None
    assert "MSE" in str(reg) and np.isfinite(reg.history[0]["test_loss"])


def test_npz_arrays_train_and_a_learnable_regression_falls(tmp_path):
    g = np.random.default_rng(0)
    x = g.normal(size=(256, 16)).astype(np.float32)
    w = g.normal(size=(16, 1)).astype(np.float32)
    np.savez(tmp_path / "reg.npz", x=x, y=(x @ w).astype(np.float32))
    torch.manual_seed(0)
    cfg = TrainConfig(data=f"arrays:{tmp_path / 'reg.npz'}", epochs=15, batch_size=32, lr=1e-2, plot=False)
    result = fit(Tabular(outputs=1), None, cfg)
    assert result.task == "regression"
    losses = [r["test_loss"] for r in result.history]
    assert losses[-1] < losses[0] / 2
    # Integer targets are classes.
    np.savez(tmp_path / "cls.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    out = fit(Tabular(), f"arrays:{tmp_path / 'cls.npz'}", TrainConfig(**FAST))  # type: ignore[arg-type]
    assert out.task == "classification"


def test_several_named_inputs_go_to_forward_by_keyword(tmp_path):
    g = np.random.default_rng(0)
    # Saved in the order (meta, image): the names, not the order, decide where each goes.
    np.savez(tmp_path / "multi.npz", meta=g.normal(size=(48, 5)).astype(np.float32),
             image=g.normal(size=(48, 1, 8, 8)).astype(np.float32), y=g.integers(0, 3, 48))
    train, test = load_npz(tmp_path / "multi.npz")
    assert train.names == ("meta", "image") and len(train) + len(test) == 48
    torch.manual_seed(0)
    result = fit(ImageAndMeta(), f"arrays:{tmp_path / 'multi.npz'}", TrainConfig(**FAST))  # type: ignore[arg-type]
    assert result.epochs_done == 1 and result.task == "classification"


def test_csv_table_with_a_target_column_through_the_cli(tmp_path):
    g = np.random.default_rng(1)
    x = g.normal(size=(80, 16))
    rows = ["," .join([f"f{i}" for i in range(16)] + ["label"] + ["price"])]
    rows += [",".join([f"{v:.4f}" for v in r] + [str(int(r[0] > 0)), f"{r.sum():.3f}"]) for r in x]
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "tab.py").write_text("from torch import nn\nclass Net(nn.Sequential):\n    def __init__(self, out=2):"
                                     "\n        super().__init__(nn.Linear(17, 8), nn.ReLU(), nn.Linear(8, out))\n")
    out = _train(f"{tmp_path / 'tab.py'}:Net", "--data", f"csv:{tmp_path / 'table.csv'}", "--target", "label",
                 "--out", str(tmp_path / "cls"))
    assert "standardised" in out or "classification" in out
    out = _train(f"{tmp_path / 'tab.py'}:Net", "--opt", "out=1", "--data", str(tmp_path / "table.csv"),
                 "--target", "price", "--task", "regression", "--out", str(tmp_path / "reg"))
    assert "regression" in out and "MSE" in out
    train, test, note = load_csv(tmp_path / "table.csv", "price")
    assert not train.classes and train.inputs[0].shape[1] == 17  # every other column is a feature
    with pytest.raises(DataError, match="has no column 'nope'"):
        load_csv(tmp_path / "table.csv", "nope")


def test_a_model_whose_output_does_not_fit_the_targets_is_told_how(tmp_path):
    np.savez(tmp_path / "reg.npz", x=np.zeros((32, 16), np.float32), y=np.zeros((32, 3), np.float32))
    with pytest.raises(DataError, match=r"regression targets are \(2, 3\)"):
        fit(Tabular(outputs=1), f"arrays:{tmp_path / 'reg.npz'}", TrainConfig(**FAST))  # type: ignore[arg-type]


class AutoEncoder(nn.Module):  # image in, image out: not (batch, classes)
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.dec = nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.enc(x)
        return self.dec(torch.relu(z)), z


class ScalarHead(nn.Module):  # one value per sample, squeezed: (B,)
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).squeeze(-1)


class PairToSequence(nn.Module):  # two inputs, per-step outputs (B, T, 3)
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.fc(a + b)


@pytest.mark.parametrize("model,size,target", [
    (AutoEncoder, (1, 16, 16), "(1, 16, 16)"),
    (ScalarHead, (10,), "scalar"),
    (PairToSequence, [(5, 8), (5, 8)], "(5, 3)"),
])
def test_synthetic_data_for_a_model_that_does_not_classify_is_regression_and_says_so(model, size, target):
    """auto: (batch, classes) logits are a classifier; any other output learns targets of its shape with MSE."""
    torch.manual_seed(0)
    result = fit(model(), "synthetic", TrainConfig(**FAST, input_size=size))  # type: ignore[arg-type]
    notes = " ".join(result.notes)
    assert result.task == "regression", notes
    assert "task regression chosen" in notes and "--task classification" in notes and target in notes
    assert result.history[0]["test_loss"] > 0


def test_a_classifier_on_synthetic_data_stays_a_classifier():
    torch.manual_seed(0)
    result = fit(Tabular(outputs=3), "synthetic", TrainConfig(**FAST))  # type: ignore[arg-type]
    assert result.task == "classification" and "regression chosen" not in " ".join(result.notes)
