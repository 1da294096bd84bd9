"""``torchsmith report``: one self-contained HTML file about a model or a training run.

A model report holds the summary, the diagram and the explanation of its arithmetic, the doctor's
findings and the initialisation report; a run report holds the run's options, its epochs and curves, and an
evaluation of its best checkpoint (per-class accuracy, confusion matrix) with the model's summary.
Every part comes from the renderers the notebook uses. :func:`write_report` writes through a
temporary file and a rename, so a failure never leaves half a report behind.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith._check import check
from torchsmith._files import write_bytes
from torchsmith._summary import ModelSummary, summary
from torchsmith._version import __version__
from torchsmith.errors import CheckpointError, ConfigError, ShapeError, TorchsmithError, format_size
from torchsmith.html._page import esc, kv_table, page, section
from torchsmith.html.check import check_body
from torchsmith.html.summary import diagram_html, explanation_html, summary_body
from torchsmith.html.train import curves_html, eval_body, history_table
from torchsmith.html.weights import init_body
from torchsmith.init import init_weights
from torchsmith.resolve import resolve_model
from torchsmith.sizes import parse_input_size
from torchsmith.train.config import TrainConfig
from torchsmith.train.eval import evaluate_checkpoint
from torchsmith.train.run import load_run_model, run_config

__all__ = ["model_report", "run_report", "write_report", "check_report_path"]

Section = tuple[str, str, str]  # (anchor, title, HTML)


# --------------------------------------------------------------------------- the page
def _document(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    toc = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = (f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p><nav class=\"toc\">{toc}</nav>"
            + "".join(section(t, h, anchor=a) for a, t, h in sections)
            + f"<footer>Written by torchsmith {esc(__version__)} on {esc(when)}. Self-contained: "
              "nothing is fetched when this file is opened.</footer>")
    return page(title, body)


def _problem(text: str, label: str = "NOT SHOWN") -> str:
    return (f'<div class="finding warning"><div class="head"><span class="badge warning">{esc(label)}</span></div>'
            f"<p>{esc(text)}</p></div>")


def _optional(build: Callable[[], str], what: str) -> str:
    """A part whose failure should not cost the whole report: its error is shown in its place."""
    try:
        return build()
    except TorchsmithError as e:
        return _problem(f"{what}: {e}")


# --------------------------------------------------------------------------- model report
def _summary_part(model: nn.Module, size: tuple[int, ...] | None,
                  input_dtype: Any) -> tuple[ModelSummary | None, str]:
    """(the summary or None, its HTML). A forward that breaks at this input is shown, not raised:
    the doctor's section says why it breaks."""
    try:
        s = summary(model, size or None, input_dtype=input_dtype)
    except ShapeError as e:
        partial = getattr(e, "partial", None)
        html = _problem(f"the forward stopped: {e}", "STOPPED")
        return None, html + (summary_body(partial) if partial is not None else "")
    return s, summary_body(s, s.depth)


def _picture_parts(s: ModelSummary | None) -> list[Section]:
    """The diagram and the explanation."""
    if s is None:
        return []
    return [("diagram", "Diagram", _optional(lambda: diagram_html(s.diagram()), "the diagram")),
            ("explain", "The arithmetic, layer by layer",
             _optional(lambda: explanation_html(s.explain()), "the explanation"))]


def _init_part(model: nn.Module) -> str:
    """What the model's own policy (``init_policy``), or torchsmith's default one, sets: run on a copy."""
    policy = getattr(model, "init_policy", None)
    if policy is not None:
        intro = "The model's own initialisation policy (<code>init_policy</code>), applied to a copy:"
    else:
        policy = "kaiming"
        intro = ("The model declares no <code>init_policy</code>; this is what torchsmith's default policy "
                 "(<code>kaiming</code>) sets, applied to a copy:")
    try:
        work = copy.deepcopy(model)
    except Exception as e:
        raise ConfigError(f"the init report runs on a copy, but copy.deepcopy({type(model).__name__}) failed: "
                          f"{type(e).__name__}: {e}") from e
    report = init_weights(work, policy, generator=torch.Generator().manual_seed(0))
    return f"<p>{intro}</p>" + init_body(report)


def model_report(model: nn.Module | str, input_size: Sequence[int] | str | None = None, *,
                 input_dtype: torch.dtype | str | None = None, checks: str | Sequence[str] | None = None,
                 **model_options: Any) -> str:
    """A whole HTML page about ``model`` (an ``nn.Module`` or any reference ``resolve_model`` takes).

    ``input_size`` is one sample without the batch (``(3, 32, 32)`` or ``"3x32x32"``); by default the
    model's own. ``checks`` picks the doctor's checks as :func:`torchsmith.check` does.
    """
    ref = model if isinstance(model, str) else None
    if isinstance(model, str):
        model = resolve_model(model, **model_options)
    elif not isinstance(model, nn.Module):
        raise ConfigError(f"model_report needs an nn.Module or a model reference, not {type(model).__name__}")
    elif model_options:
        raise ConfigError(f"options {sorted(model_options)} apply only when the model is given by name")
    size = parse_input_size(input_size) if isinstance(input_size, str) else (
        tuple(input_size) if input_size is not None else None)
    s, summary_html = _summary_part(model, size, input_dtype)
    doctor = check(model, size, checks=checks)
    shown_ref = Path(ref).name if ref and "/" in ref else ref  # net.py:LeNet, not the whole path
    name = type(model).__name__ + (f" ({shown_ref})" if shown_ref and shown_ref != type(model).__name__.lower()
                                   else "")
    shown = format_size(doctor.input_size)
    sections: list[Section] = [("summary", "Summary", summary_html), *_picture_parts(s),
                               ("doctor", "Doctor", check_body(doctor)),
                               ("init", "Initialisation", _optional(lambda: _init_part(model), "the init report"))]
    verdict = "ok" if doctor.ok else f"{len(doctor.errors)} error(s)"
    params = f"{s.total_params:,} parameters, " if s is not None else ""
    return _document(f"{name}", f"torchsmith model report: input {shown}, {params}doctor: {verdict}", sections)


# --------------------------------------------------------------------------- run report
def _read_history(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise CheckpointError(f"{run} holds no metrics.jsonl: the run finished no epoch yet (or it is not the "
                              "--out directory of `torchsmith train`)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise CheckpointError(f"{path} line {n} is not JSON: {e}") from e
        if not isinstance(row, dict):
            raise CheckpointError(f"{path} line {n} is not a JSON object of metrics")
        rows.append(row)
    if not rows:
        raise CheckpointError(f"{path} is empty: the run finished no epoch yet")
    return rows


def _config_part(values: dict[str, Any]) -> str:
    model = (values.get("extra") or {}).get("model") or {}
    pairs: list[tuple[str, Any]] = []
    if model.get("ref"):
        opts = " ".join(f"--opt {k}={v}" for k, v in (model.get("opts") or {}).items())
        pairs.append(("model", f"{model['ref']} {opts}".strip()))
    pairs += [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in values.items()
              if k != "extra" and v is not None]
    return kv_table(pairs)


def _eval_part(ckpt: Path, cfg: TrainConfig) -> str:
    result = evaluate_checkpoint(ckpt, cfg.data, data_dir=cfg.data_dir, batch_size=cfg.eval_batch_size, device="cpu")
    return eval_body(result)


def _run_model_part(ckpt: Path, cfg: TrainConfig) -> tuple[str, list[Section]]:
    model = load_run_model(ckpt)
    size = getattr(cfg, "input_size", None)
    s = summary(model, size or None)
    return summary_body(s, s.depth), _picture_parts(s)[:1]


def run_report(run_dir: str | Path, *, evaluate: bool = True) -> str:
    """A whole HTML page about the training run in ``run_dir`` (the ``--out`` of ``torchsmith train``).

    ``evaluate`` evaluates the best checkpoint (else the last) on the run's test data for the per-class
    accuracy and the confusion matrix; a large dataset on the CPU makes that the slow part.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise CheckpointError(f"{str(run_dir)!r} is not a directory; give the --out directory of `torchsmith train`")
    cfg = run_config(run)
    values = json.loads((run / "config.json").read_text())
    history = _read_history(run)
    ckpt = next((run / n for n in ("best.safetensors", "last.safetensors") if (run / n).is_file()), None)
    best = max(history, key=lambda r: r.get("test_acc", float("-inf")))
    sections: list[Section] = [
        ("epochs", "Epochs", history_table(history, best.get("epoch"))
         + curves_html(history, f"{run.name} on {cfg.data}")),
    ]
    if ckpt is None:
        sections.append(("eval", "Evaluation", _problem(f"{run} holds no checkpoint to evaluate")))
    else:
        if evaluate:
            sections.append(("eval", f"Evaluation of {ckpt.name}", _optional(lambda: _eval_part(ckpt, cfg),
                                                                              "the evaluation")))
        try:
            model_html, pictures = _run_model_part(ckpt, cfg)
            sections.append(("model", "Model", model_html))
            sections += pictures
        except TorchsmithError as e:
            sections.append(("model", "Model", _problem(f"the model could not be rebuilt: {e}")))
    sections.append(("config", "Options", _config_part(values)))
    model_ref = str(((values.get("extra") or {}).get("model") or {}).get("ref", "model"))
    model_ref = Path(model_ref).name if "/" in model_ref else model_ref  # net.py:LeNet, not the whole path
    final = history[-1]
    subtitle = (f"torchsmith run report: {model_ref} on {cfg.data}, {len(history)} epoch(s), final test accuracy "
                f"{100 * final.get('test_acc', 0):.2f}%, best {100 * best.get('test_acc', 0):.2f}% "
                f"(epoch {best.get('epoch')})")
    return _document(f"Run {run.resolve().name}", subtitle, sections)


# --------------------------------------------------------------------------- writing
def check_report_path(path: str | Path) -> Path:
    """The output path, if an HTML file can be written there; a ConfigError saying why not otherwise."""
    out = Path(path)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"the report is an HTML file; give a path ending in .html, not {str(path)!r}")
    if out.is_dir():
        raise ConfigError(f"cannot write {str(out)!r}: it is a folder; give a file name ending in .html")
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {str(out)!r}: the folder {str(out.parent)!r} does not exist")
    return out


def write_report(html: str, path: str | Path) -> Path:
    """Write ``html`` to ``path`` through a temporary file in the same folder and a rename."""
    out = check_report_path(path)
    return write_bytes(out, html.encode("utf-8"))
