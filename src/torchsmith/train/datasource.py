"""Which data a run trains on, in the model's shape, and which task it learns.

``--data`` names it: a dataset (``digits``, ``cifar10``, a folder of images), ``synthetic`` (made in the
model's own input shape: images, token ids, sequences, audio, volumes, tabular vectors), ``arrays:PATH.npz``,
``csv:PATH.csv`` (or a ``.csv`` path), ``tokens:PATH.bin`` or ``text:PATH.txt`` (``text:corpus``, the shipped
one). :func:`training_data` returns the splits and the :class:`~torchsmith.train.tasks.Task`, the choice
explained in a note the run prints.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchsmith.contract import InputSpec, ModelInputs, device_dtype, primary_output
from torchsmith.data import DataSplits
from torchsmith.data.arrays import ArrayDataset, load_csv, load_npz, load_synthetic_arrays
from torchsmith.data.tokens import load_text, load_token_file, synthetic_stream
from torchsmith.errors import ConfigError, DataError
from torchsmith.train.inputs import InputSizeError, ModelInput, fitted_splits, output_width
from torchsmith.train.tasks import TASKS, Task, detect_causal_lm, forward, takes_targets

__all__ = ["TrainingData", "training_data", "keyword_inputs"]

_PREFIXES = ("tokens:", "text:", "arrays:", "csv:")


@dataclass
class TrainingData:
    splits: DataSplits
    task: Task
    seq_len: int | None = None  # causal-lm: tokens a window
    notes: list[str] = field(default_factory=list)


def keyword_inputs(model: nn.Module, names: tuple[str, ...] | None) -> bool:
    """Whether several named inputs go to ``forward`` by keyword: every name is one of its parameters."""
    if not names:
        return False
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return all(n in params for n in names)


def training_data(model: nn.Module, given: ModelInput, data: str | DataSplits, *, task: str = "auto",
                  seq_len: int | None = None, data_dir: Any = None, num_samples: int = 10_000, seed: int = 0,
                  target: str | None = None, tokenizer: str | None = None, label_smoothing: float = 0.0,
                  ) -> TrainingData:
    """The splits ``data`` names, fitted to ``model``'s input, and the task to learn on them."""
    if task not in TASKS:
        raise ConfigError(f"--task {task!r} is not one of {', '.join(TASKS)}")
    device = device_dtype(model)[0]
    if isinstance(data, DataSplits):
        return _given_splits(model, given, data, task, seq_len, label_smoothing)
    key = data.strip()
    lower = key.lower()
    if lower.startswith(("tokens:", "text:")) or (task == "causal-lm" and lower == "synthetic"):
        return _stream(model, given, key, task, seq_len, num_samples, seed, tokenizer, label_smoothing, device)
    if lower.startswith(("arrays:", "csv:")) or lower.endswith(".csv"):
        return _arrays(key, task, seed, target, label_smoothing)
    spec = given.spec
    if lower == "synthetic" and given.inputs is not None and not given.inputs.single:
        return _synthetic_several(model, given.inputs, task, num_samples, seed, label_smoothing, device)
    if lower == "synthetic" and spec is not None:
        why = detect_causal_lm(model, spec, device) if task == "auto" else None
        if why is not None:
            return _stream(model, given, key, "causal-lm", seq_len, num_samples, seed, tokenizer, label_smoothing,
                           device, why)
        chosen = _regression_unless_logits(model, spec, device) if task == "auto" else None
        if chosen is not None:  # an autoencoder, a per-step or scalar head: not (batch, classes) logits
            made = _synthetic_arrays(model, given, "regression", num_samples, seed, label_smoothing, device)
            made.notes.insert(0, chosen)
            return made
        if spec.kind == "tensor" or task == "regression":
            return _synthetic_arrays(model, given, task, num_samples, seed, label_smoothing, device)
    if task == "regression":
        raise DataError(f"--task regression needs float targets: --data arrays:PATH.npz, a CSV table or synthetic, "
                        f"not {data!r} (its labels are classes)")
    if task == "causal-lm":
        raise DataError(f"--task causal-lm trains on token streams: --data tokens:PATH.bin, text:PATH.txt or "
                        f"synthetic, not {data!r}")
    splits = fitted_splits(model, given, key, data_dir=data_dir, num_samples=num_samples, seed=seed)
    return TrainingData(splits, Task("classification", "the data's labels are classes", label_smoothing))


def _given_splits(model: nn.Module, given: ModelInput, data: DataSplits, task: str, seq_len: int | None,
                  smoothing: float) -> TrainingData:
    if data.kind == "stream":
        return TrainingData(data, Task("causal-lm", "the data is a token stream", smoothing,
                                       targets=takes_targets(model)),
                            seq_len or (given.spec.size[0] if given.spec and given.spec.size else 64))
    if data.kind == "arrays":
        train: Any = data.train  # an ArrayDataset: its targets' dtype chose the task
        name = train.task if task == "auto" else task
        return TrainingData(data, Task(name, "the data's targets", smoothing))
    return TrainingData(fitted_splits(model, given, data), Task("classification", "labelled images", smoothing))


def _vocab(model: nn.Module, given: ModelInput, data: str) -> int:
    spec = given.spec
    if spec is None or spec.kind != "tokens" or not spec.vocab_size:
        raise DataError(f"--data {data} is token ids but {type(model).__name__} does not take token ids (its first "
                        f"layer is not an Embedding and it has no transformers config with a vocab_size)")
    return int(spec.vocab_size)


def _stream(model: nn.Module, given: ModelInput, data: str, task: str, seq_len: int | None, num_samples: int,
            seed: int, tokenizer: str | None, smoothing: float, device: torch.device,
            why: str | None = None) -> TrainingData:
    if task not in ("auto", "causal-lm"):
        raise DataError(f"--data {data} is a token stream, which trains a causal language model, not --task {task}")
    vocab = _vocab(model, given, data)
    if why is None:
        why = detect_causal_lm(model, given.spec, device)
        if why is None and task == "auto":
            raise DataError(f"--data {data} trains a causal language model, but {type(model).__name__}'s output is "
                            f"not (B, T, vocab) logits over its {vocab}-id vocabulary; return the logits of every "
                            f"position (or give --task causal-lm if it is one)")
        why = why or "--task causal-lm"
    kind, _, rest = data.partition(":")
    kind = kind.lower()
    if kind == "tokens":
        train, test = load_token_file(rest, vocab)
    elif kind == "text":
        train, test = load_text(rest, vocab, tokenizer=tokenizer)
    else:
        t = seq_len or (given.spec.size[0] if given.spec is not None else 16)
        train, test = synthetic_stream(vocab, max(num_samples * t, 1000), seed)
    t = seq_len or (given.spec.size[0] if given.spec is not None and given.spec.size else 64)
    splits = DataSplits(train=train, test=test, name=data if kind != "synthetic" else "synthetic")
    notes = [f"task causal-lm: {why}; next-token cross-entropy on random windows of {t} tokens "
             f"(--seq-len to change)"]
    return TrainingData(splits, Task("causal-lm", why, smoothing, targets=takes_targets(model)), t, notes)


def _arrays(data: str, task: str, seed: int, target: str | None, smoothing: float) -> TrainingData:
    if task == "causal-lm":
        raise DataError(f"--task causal-lm trains on token streams (tokens:, text:), not {data}")
    kind, sep, rest = data.partition(":")
    want = None if task == "auto" else task
    notes: list[str] = []
    if sep and kind.lower() == "arrays":
        train, test = load_npz(rest, task=want, seed=seed)
    else:
        train, test, note = load_csv(rest if sep and kind.lower() == "csv" else data, target, task=want, seed=seed)
        notes.append(note)
    name = train.task
    splits = DataSplits(train=train, test=test, name=train.name)
    notes.append(f"task {name}: {data} holds {train.describe()}")
    return TrainingData(splits, Task(name, f"{data}'s targets", smoothing), None, notes)


def _synthetic_several(model: nn.Module, inputs: ModelInputs, task: str, num_samples: int, seed: int,
                       smoothing: float, device: torch.device) -> TrainingData:
    """Synthetic data for a forward that takes several inputs: each drawn as the contract draws it (ids below the
    vocabulary, full lengths for a ``lengths`` input), random classes or regression targets of the output's shape."""
    if task == "causal-lm":
        raise DataError("--task causal-lm trains on one input of token ids; this model takes "
                        f"{len(inputs.specs)} ({', '.join(inputs.names)})")
    was = model.training
    model.eval()
    try:
        args, kwargs = inputs.example(2, seed=seed, device=device)
        with torch.no_grad():
            out = primary_output(model(*args, **kwargs))
    except Exception as e:
        raise DataError(f"{type(model).__name__} cannot take inputs {inputs.describe()} ({e}); give the sizes it "
                        "takes (--input NAME=SIZE once per input)") from e
    finally:
        model.train(was)
    regression = task == "regression" or (task == "auto" and not _are_logits(out))
    notes = [] if regression == (task == "regression") else [_AUTO_REGRESSION.format(shape=tuple(out.shape))]
    if not regression and not (out.dim() == 2 and out.is_floating_point()):
        raise DataError(f"{type(model).__name__} returns shape {tuple(out.shape)}, not (batch, classes); train it "
                        "with --task regression (targets of the output's shape) or on your own arrays")
    classes = 0 if regression else int(out.shape[-1])
    g = torch.Generator().manual_seed(seed)

    def make(n: int, offset: int) -> ArrayDataset:
        a, k = inputs.example(n, seed=seed + offset)
        xs = tuple(a) + tuple(k.values())
        if regression:
            return ArrayDataset(xs, torch.randn((n, *out.shape[1:]), generator=g), (), inputs.names,
                                name="synthetic")
        return ArrayDataset(xs, torch.randint(0, classes, (n,), generator=g), tuple(map(str, range(classes))),
                            inputs.names, name="synthetic")

    splits = DataSplits(train=make(num_samples, 0), test=make(max(1, num_samples // 10), 7919), name="synthetic")
    name = "regression" if regression else "classification"
    note = (f"task {name}: synthetic inputs {inputs.describe()}, "
            + (f"{classes} classes" if classes else f"targets {tuple(out.shape[1:]) or 'scalar'}"))
    return TrainingData(splits, Task(name, "synthetic data in the model's shape", smoothing), None, [*notes, note])


_AUTO_REGRESSION = ("task regression chosen: the model's output {shape} for a batch of 2 is not (batch, classes) "
                    "logits, so it learns random targets of that shape with mean squared error (give --task "
                    "classification to insist on classes)")


def _are_logits(out: Any) -> bool:
    """(batch, classes) floats with at least two classes: what a classifier returns."""
    return isinstance(out, torch.Tensor) and out.dim() == 2 and out.is_floating_point() and out.shape[1] >= 2


def _regression_unless_logits(model: nn.Module, spec: InputSpec, device: torch.device) -> str | None:
    """The note that says regression was chosen when synthetic data meets a model that does not classify."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = primary_output(forward(model, spec.example(2, device=device)))
    except Exception:
        return None  # the classification path says what is wrong with the input
    finally:
        model.train(was)
    return None if _are_logits(out) else _AUTO_REGRESSION.format(shape=tuple(out.shape))


def _synthetic_arrays(model: nn.Module, given: ModelInput, task: str, num_samples: int, seed: int,
                      smoothing: float, device: torch.device) -> TrainingData:
    spec = given.spec
    assert spec is not None
    dtype = spec.dtype if not spec.dtype.is_floating_point else torch.float32
    if task == "regression":
        x = spec.example(2, device=device)
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = primary_output(forward(model, x))
        except Exception as e:
            raise InputSizeError(f"{type(model).__name__} cannot take input of size "
                                 f"{'x'.join(map(str, spec.size))} ({e})", spec.size) from e
        finally:
            model.train(was)
        target: tuple[int, ...] | None = tuple(out.shape[1:]) if out.dim() > 1 else ()
        classes = 0
    else:
        target, classes = None, output_width(model, spec) or 10
    train, test = load_synthetic_arrays([spec.size], dtypes=[dtype], vocab_sizes=[spec.vocab_size],
                                        num_classes=max(classes, 1), target_size=target, num_samples=num_samples,
                                        seed=seed)
    name = "regression" if task == "regression" else "classification"
    splits = DataSplits(train=train, test=test, name="synthetic")
    note = (f"task {name}: synthetic {'x'.join(map(str, spec.size))} {spec.kind} inputs "
            f"({spec.source or 'given'}), " + (f"{classes} classes" if classes else f"targets {target or 'scalar'}"))
    return TrainingData(splits, Task(name, "synthetic data in the model's shape", smoothing), None, [note])
