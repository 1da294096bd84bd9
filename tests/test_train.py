"""The trainer end to end: metrics files, checkpoints, exact resume (also after a real SIGKILL), eval, CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import torchsmith as ts
from torchsmith.cli import main
from torchsmith.errors import CheckpointError, ConfigError, DataError, TrainingError, UnknownNameError
from torchsmith.train import TrainConfig, evaluate_checkpoint, fit, resume
from torchsmith.train.optim import LRSchedule

# A small LeNet on 16x16 grey digits: 21 steps an epoch at batch 64, a fraction of a second each.
SMALL = {"in_channels": 1, "input_size": 16}
SMALL_OPTS = ["--opt", "in_channels=1", "--opt", "input_size=16"]


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return ts.create_model("lenet", **SMALL)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return ts.load(path).state_dict()


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


# --------------------------------------------------------------------------- config and schedule
def test_config_rejects_bad_options_with_their_names():
    with pytest.raises(UnknownNameError, match="did you mean 'adamw'"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ConfigError, match="lr must be positive"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        TrainConfig(batch_size=0)
    with pytest.raises(UnknownNameError, match="training option"):
        TrainConfig().replace(epoch=3)


def test_schedules_have_the_documented_shape():
    one = LRSchedule("onecycle", total_steps=100, warmup_steps=30)
    assert one(0) == pytest.approx(1 / 25) and one(30) == pytest.approx(1.0) and one(100) < 1e-5
    cos = LRSchedule("cosine", total_steps=100, warmup_steps=10)
    assert cos(0) < cos(9) <= 1.0 and cos(55) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0)
    flat = LRSchedule("constant", total_steps=100, warmup_steps=0)
    assert flat(0) == flat(99) == 1.0


# --------------------------------------------------------------------------- fit
def test_fit_trains_writes_files_and_leaves_the_model_as_found(tmp_path):
    model = small_model()
    model.eval()
    hooks_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    result = fit(model, "digits", epochs=2, batch_size=128, lr=0.01, out_dir=str(tmp_path / "run"), log_every=5)
    assert not model.training  # the mode it came in
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks_before
    assert result.epochs_done == 2 and result.global_step == 2 * (1347 // 128)
    assert result.test_acc > 0.5 and result.images_per_s > 0
    run = tmp_path / "run"
    for name in ("last.safetensors", "best.safetensors", "metrics.jsonl", "metrics.csv", "config.json"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["test_acc"] == result.test_acc
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,step,lr,train_loss,train_acc")
    if "plot" in result.files:
        assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test accuracy" in str(result)
    # The checkpoint is the model: a fresh copy evaluates to the same accuracy.
    ev = evaluate_checkpoint(run / "last.safetensors", "digits")
    assert ev.accuracy == result.test_acc and ev.num_samples == 450
    assert sum(map(sum, ev.confusion)) == 450 and len(ev.per_class_accuracy) == 10


def training_state(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor], dict]:
    """A training-state file whole: its header metadata, every tensor, and the decoded state document."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return metadata, tensors, json.loads(metadata.pop("state"))


def perturb_global_rngs(seed: int) -> None:
    """Leave Python's, numpy's and torch's global RNGs somewhere a run must not depend on."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    random.random(), np.random.rand(), torch.rand(1)


def test_resume_after_an_epoch_and_mid_epoch_is_bit_identical(tmp_path):
    opts = {"epochs": 2, "batch_size": 128}  # 10 steps an epoch
    run = tmp_path / "run"  # both runs live at this path in turn, so their recorded out_dir is the same
    perturb_global_rngs(1)
    full = fit(small_model(), "digits", out_dir=str(run), **opts)
    run.rename(tmp_path / "full")
    # Interrupted twice: mid-epoch 1 (step 7), then exactly at the end of epoch 1 (step 10); the process's
    # global RNGs are elsewhere each time, so only the seed and the restored states can make the runs agree.
    perturb_global_rngs(2)
    first = fit(small_model(), "digits", out_dir=str(run), max_steps=7, **opts)
    assert first.stopped_early and first.global_step == 7 and first.epochs_done == 0
    perturb_global_rngs(3)
    second = resume(run, max_steps=10)
    assert second.stopped_early and second.global_step == 10 and second.resumed_from == {"epoch": 0, "step": 7}
    perturb_global_rngs(4)
    last = resume(run)
    assert last.global_step == full.global_step == 20 and not last.stopped_early
    assert last.resumed_from == {"epoch": 1, "step": 0}
    assert same_weights(weights(tmp_path / "full" / "last.safetensors"), weights(run / "last.safetensors"))
    # The whole training state, not only the weights: every tensor (optimizer moments, the torch RNG state,
    # numpy's keys) bit for bit, and every entry of the state document and of the header. The only entries
    # exempt are the ones that cannot agree: how the run was started (`resume`) and wall-clock measurements.
    meta_a, tensors_a, state_a = training_state(tmp_path / "full" / "last.train.safetensors")
    meta_b, tensors_b, state_b = training_state(run / "last.train.safetensors")
    # The file's own hash covers the state document and so its timings; everything else in the header (format,
    # versions, the hash of the identical weights file) must agree.
    meta_a.pop("index_sha256"), meta_b.pop("index_sha256")
    assert meta_a == meta_b and meta_a["model_sha256"]
    assert tensors_a.keys() == tensors_b.keys() and len(tensors_a) > 10
    assert all(torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a), \
        [k for k in tensors_a if not torch.equal(tensors_a[k], tensors_b[k])]
    assert state_a["extra"]["config"].pop("resume") is None and state_b["extra"]["config"].pop("resume") == str(run)
    timing = ("images_per_s", "seconds")
    for state in (state_a, state_b):
        state["extra"]["trainer"]["history"] = [{k: v for k, v in r.items() if k not in timing}
                                                for r in state["extra"]["trainer"]["history"]]
    assert state_a == state_b
    # Python's and numpy's RNGs were seeded from --seed (not left as the process had them) and restored.
    ts.load_training_state(run / "last.safetensors", restore_rng=True)
    python_state, numpy_keys = random.getstate(), np.random.get_state()[1]
    random.seed(0), np.random.seed(0)
    assert python_state == random.getstate() and np.array_equal(numpy_keys, np.random.get_state()[1])


def test_resume_refuses_changed_options_and_missing_runs(tmp_path):
    fit(small_model(), "digits", epochs=2, out_dir=str(tmp_path / "r"), max_steps=3)
    with pytest.raises(ConfigError, match=r"lr \(saved 0.003, now 0.1\)"):
        resume(tmp_path / "r", lr=0.1)
    with pytest.raises(CheckpointError, match="no such run directory"):
        resume(tmp_path / "nope")
    with pytest.raises(ConfigError, match="already holds a training run; continue it with --resume"):
        fit(small_model(), "digits", epochs=1, out_dir=str(tmp_path / "r"))


def test_fit_errors_are_clear():
    with pytest.raises(DataError, match="num_classes=10"):
        fit(ts.create_model("lenet", num_classes=5, **SMALL), "digits", epochs=1)
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        fit(small_model(), "digits", epochs=1, amp="fp16", device="cpu")
    with pytest.raises(TrainingError, match="loss became"):
        fit(small_model(), "digits", epochs=1, optimizer="sgd", lr=1e12, max_steps=10, log_every=1)


class _Head(torch.nn.Module):
    """A linear classifier of 1x8x8 digits whose forward returns ``wrap(logits)``."""

    def __init__(self, wrap=lambda t: t) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)
        self.wrap = wrap

    def forward(self, x: torch.Tensor):
        return self.wrap(self.fc(x.flatten(1)))


@pytest.mark.parametrize("wrap", [lambda t: (t, 0), lambda t: {"logits": t}, lambda t: {"hidden": t}],
                         ids=["tuple", "dict-logits", "dict-other"])
def test_models_returning_a_structure_train_and_evaluate_on_its_logits(wrap):
    torch.manual_seed(0)
    model = _Head(wrap)
    result = fit(model, "digits", epochs=1, max_steps=3, log_every=1)
    assert result.global_step == 3
    evaluated = ts.evaluate(model, "digits")
    assert evaluated.num_samples == 450 and 0.0 <= evaluated.accuracy <= 1.0


def test_integer_outputs_are_refused_before_training():
    with pytest.raises(DataError, match="outputs are torch.int64 but the cross-entropy loss needs floating-point"):
        fit(_Head(lambda t: t.long()), "digits", epochs=1)


def test_meta_models_and_misfit_inputs_get_the_fix():
    with torch.device("meta"):
        meta = ts.create_model("lenet", **SMALL)
    with pytest.raises(ConfigError, match=r"meta device .* model.to_empty\(device='cpu'\)"):
        fit(meta, "digits", epochs=1)
    # The first layer says 192 features; the digits are 1x8x8 (64): the error says how to give the size,
    # in Python words from Python and in command-line words (cli_message) for the CLI.
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 10))
    with pytest.raises(DataError, match=r"takes input of size 192 .*not digits images of size 1x8x8") as err:
        fit(head, "digits", epochs=1)
    assert "input_size=(3, 32, 32)" in str(err.value) and "--input" not in str(err.value)
    assert "--input 3x32x32" in err.value.cli_message and "input_size" not in err.value.cli_message
    with pytest.raises(DataError, match=r"takes input of size 192 .*not digits images of size 1x8x8"):
        ts.evaluate(head, "digits")
    # Given a size the model cannot take: the error names it.
    with pytest.raises(DataError, match=r"cannot take input of size 1x12x12 .*it takes 1x16x16 \(default_input_size\)"
                       r".*input_size=\(1, 16, 16\)"):
        fit(small_model(), "digits", epochs=1, input_size=(1, 12, 12))
    # evaluate takes a dataset name as fit does, fitted to the model's default_input_size
    result = ts.evaluate(small_model(), "digits")
    assert result.num_samples == 450 and 0.0 <= result.accuracy <= 1.0


def test_bf16_channels_last_on_cpu_runs():
    result = fit(small_model(), "digits", epochs=1, amp="bf16", channels_last=True, max_steps=4, log_every=2)
    assert result.global_step == 4 and result.stopped_early
    # Where the CPU emulates bf16 (AVX2 machines, like CI's), the run says it will be slow.
    from torchsmith.train.loop import _cpu_has_bf16

    slow_note = [n for n in result.notes if "no native bf16" in n]
    assert bool(slow_note) is not _cpu_has_bf16()


# --------------------------------------------------------------------------- CLI
def test_cli_train_eval_and_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    res = runner.invoke(main, ["train", "lenet", *SMALL_OPTS, "--data", "digits", "--epochs", "1", "--out", str(out),
                               "--progress", "plain", "--no-plot"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "trained 1/1 epochs" in res.output and (out / "best.safetensors").is_file()
    res = runner.invoke(main, ["eval", str(out), "--data", "digits", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["num_samples"] == 450 and len(report["confusion"]) == 10
    res = runner.invoke(main, ["eval", str(out / "best.safetensors")], catch_exceptions=False)
    assert "confusion matrix" in res.output and "per-class accuracy" in res.output
    # A user's mistake: one line, exit 1, no traceback, nothing written.
    proc = subprocess.run([sys.executable, "-m", "torchsmith", "train", "lenet", "--data", "digts",
                           "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: unknown dataset 'digts'; did you mean 'digits'? (or give a folder of " \
                                  "class sub-folders)"
    assert not (tmp_path / "bad").exists()


def test_a_run_of_a_model_from_user_code_evaluates_and_resumes_by_its_directory(tmp_path, monkeypatch):
    # The checkpoints of a user's model hold no architecture; the run records the model's reference
    # (the file's absolute path), so eval and --resume rebuild it from the run directory alone.
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "net.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, width=10):\n"
        "        super().__init__(); self.fc = torch.nn.Linear(64, width)\n"
        "    def forward(self, x): return self.fc(x.flatten(1))\n")
    monkeypatch.chdir(tmp_path / "code")
    runner = CliRunner()
    res = runner.invoke(main, ["train", "net.py:Net", "--opt", "width=10", "--data", "digits", "--epochs", "2",
                               "--max-steps", "5", "--out", str(tmp_path / "run"), "--progress", "none",
                               "--no-plot"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(tmp_path)  # elsewhere: the recorded path is absolute
    res = runner.invoke(main, ["eval", "run", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["num_samples"] == 450
    res = runner.invoke(main, ["train", "--resume", "run", "--progress", "none", "--no-plot"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "trained 2/2 epochs" in res.output
    resumed = ts.train.resume("run")  # the Python API too: nothing left to train, the model rebuilt all the same
    assert resumed.epochs_done == 2
    # Training on from one of its checkpoints starts from those weights and records the same model.
    res = runner.invoke(main, ["train", "run/last.safetensors", "--data", "digits", "--epochs", "1", "--max-steps",
                               "1", "--out", "more", "--progress", "none", "--no-plot"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "more" / "config.json").read_text())["extra"]["model"]["ref"] == \
        f"{tmp_path / 'code' / 'net.py'}:Net"
    assert runner.invoke(main, ["eval", "more"], catch_exceptions=False).exit_code == 0
    # Without the code, the error names both what the checkpoint lacks and why the rebuild failed.
    (tmp_path / "code" / "net.py").unlink()
    res = runner.invoke(main, ["eval", "run"])
    assert res.exit_code == 1 and "rebuilding the run's model" in res.output and "does not exist" in res.output


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    """A real crash: SIGKILL the training process right after a step-level checkpoint, then --resume."""
    common = [sys.executable, "-m", "torchsmith", "train", "lenet", *SMALL_OPTS, "--data", "digits", "--epochs", "2",
              "--batch-size", "128", "--progress", "plain", "--no-plot"]
    env = subprocess_env()
    killed_dir, full_dir = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen([*common, "--out", str(killed_dir), "--save-every-steps", "4", "--log-every", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        while not (killed_dir / "last.train.safetensors").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.time() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    saved = ts.load_training_state(killed_dir / "last.safetensors", restore_rng=False)["trainer"]
    assert saved["global_step"] < 2 * 10  # it really died part-way
    done = subprocess.run([sys.executable, "-m", "torchsmith", "train", "--resume", str(killed_dir), "--progress",
                           "plain"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming at epoch" in done.stderr
    # The run never interrupted, in this process with the same thread count as the subprocesses.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(small_model(), "digits", epochs=2, batch_size=128, out_dir=str(full_dir), plot=False)
    finally:
        torch.set_num_threads(threads)
    assert same_weights(weights(killed_dir / "last.safetensors"), weights(full_dir / "last.safetensors"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fast_path_bf16_channels_last():
    result = fit(ts.create_model("lenet"), "synthetic", epochs=1, device="cuda", amp="bf16", channels_last=True,
                 batch_size=512, num_samples=4096, optimizer="sgd", lr=0.05)
    assert result.device.startswith("cuda") and result.epochs_done == 1
    fp16 = fit(ts.create_model("lenet"), "synthetic", epochs=1, device="cuda", amp="fp16", batch_size=512,
               num_samples=4096)
    assert fp16.epochs_done == 1


def test_progress_displays_render_the_run():
    import io

    from torchsmith.train import PlainReporter, RichReporter, make_reporter

    plain, rich_out = io.StringIO(), io.StringIO()
    fit(small_model(), "digits", epochs=1, batch_size=256, log_every=2, reporter=PlainReporter(plain))
    text = plain.getvalue()
    assert "epoch 1/1 step 2/5 loss" in text and "img/s eta" in text and "epoch 1/1 done: train loss" in text
    fit(small_model(), "digits", epochs=1, batch_size=256, log_every=2, reporter=RichReporter(rich_out))
    assert "epoch   1/1  train loss" in rich_out.getvalue() and "test loss" in rich_out.getvalue()
    assert isinstance(make_reporter("auto", io.StringIO()), PlainReporter)  # not a terminal: plain lines


# --------------------------------------------------------------------------- TensorBoard
def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_the_metrics_also_across_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from torchsmith.train.tensorboard import EPOCH_SCALARS

    run = tmp_path / "run"
    opts = {"epochs": 2, "batch_size": 128, "log_every": 5, "tensorboard": True, "plot": False}  # 10 steps an epoch
    fit(small_model(), "digits", out_dir=str(run), max_steps=13, **opts)  # stops mid-epoch 2, with a checkpoint
    resume(run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20]
    scalars = _scalars(run)
    assert set(EPOCH_SCALARS) | {"loss/train_step"} <= set(scalars)
    for tag, column in EPOCH_SCALARS.items():
        assert [s for s, _ in scalars[tag]] == [10, 20], tag  # once per epoch, no duplicate after the resume
        assert [v for _, v in scalars[tag]] == pytest.approx([r[column] for r in rows], rel=1e-6), tag
    # Per log interval: every 5 steps, plus where the first invocation stopped (13).
    steps = [s for s, _ in scalars["loss/train_step"]]
    assert steps == [5, 10, 13, 15, 20]
    assert all(0 < v < 5 for _, v in scalars["loss/train_step"])


def test_tensorboard_needs_a_run_directory_and_says_how_to_install():
    with pytest.raises(ConfigError, match="give fit an out_dir"):
        fit(small_model(), "digits", epochs=1, tensorboard=True)
    code = ("import sys; sys.modules['tensorboard'] = None\n"
            "from torchsmith.train.tensorboard import TensorBoardLog\n"
            "from torchsmith.errors import ConfigError\n"
            "try:\n    TensorBoardLog(sys.argv[1])\nexcept ConfigError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code, "unused"], capture_output=True, text=True, timeout=120,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("TensorBoard logging needs the tensorboard package; install it with "
                                   "`pip install tensorboard`")


# --------------------------------------------------------------------------- library models
def test_fit_takes_a_step_on_transformers_classifiers_and_evaluates_their_logits():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    resnet = transformers.ResNetForImageClassification(transformers.ResNetConfig(
        num_labels=10, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"))
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=10))
    for model in (resnet, vit):
        out = model(torch.zeros(1, 3, 32, 32))
        assert not isinstance(out, torch.Tensor) and out.logits.shape == (1, 10)  # a ModelOutput
        before = {k: v.clone() for k, v in model.state_dict().items()}
        # Synthetic data of the model's own input (3x32x32: ViT's config.image_size, ResNet's first conv).
        result = fit(model, "synthetic", epochs=1, max_steps=1, batch_size=8, num_samples=16, log_every=1)
        assert result.global_step == 1
        assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # one real step
    # and on digits, fitted to the model's input (grey to RGB, 8x8 -> 32x32), evaluated on its logits
    result = fit(vit, "digits", epochs=1, max_steps=2, batch_size=16, log_every=1)
    assert any("1x8x8 to 3x32x32" in note for note in result.notes)
    assert ts.evaluate(vit, "digits").num_samples == 450


def test_fit_takes_a_step_on_a_token_classifier_with_synthetic_ids():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64, num_labels=3))
    before = {k: v.clone() for k, v in bert.state_dict().items()}
    result = fit(bert, "synthetic", epochs=1, batch_size=8, num_samples=32, log_every=1)
    assert result.global_step == 4 and result.history[0]["test_acc"] >= 0.0
    assert any(not torch.equal(before[k], v) for k, v in bert.state_dict().items())
    from torchsmith.data import load_dataset

    ids = load_dataset("synthetic", input_size=(32,), vocab_size=100, num_classes=3, num_samples=40)
    assert ids.train.images.shape == (40, 32) and int(ids.train.images.max()) < 100
    assert ts.evaluate(bert, ids).num_samples == 4
    with pytest.raises(DataError, match=r"takes token ids \(32 token ids < 100 .*synthetic data only"):
        fit(bert, "digits", epochs=1)


def test_out_dir_may_be_a_path(tmp_path: Path) -> None:
    """A pathlib.Path out_dir is kept as text: the run's checkpoints store the config without pickle."""
    config = ts.TrainConfig(out_dir=tmp_path / "run", epochs=1, batch_size=32, device="cpu", num_samples=64)
    assert config.out_dir == str(tmp_path / "run")
    result = ts.fit(ts.create_model("lenet", **SMALL), "digits", config)
    assert result.best_checkpoint is not None and result.best_checkpoint.exists()
