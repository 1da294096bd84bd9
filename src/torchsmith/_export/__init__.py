"""Export that proves itself: write a model as torch.export ``.pt2``, ONNX or TorchScript, then check it.

:func:`export` writes the file into a private temporary folder beside the
target, loads it back with the runtime a deployment would use
(``torch.export.load``, onnxruntime, ``torch.jit.load``), runs it and the eager
model on the same fresh random inputs at several batch sizes, and only then
moves it to ``path``. A file that does not match eager within tolerance never
reaches ``path`` (an existing file there is left untouched); with
``keep_failed=True`` it is kept as ``<path>.failed`` for inspection.

The model is exported in eval mode (BatchNorm with its running statistics,
Dropout off) and put back in the mode each of its modules was in.
"""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from torchsmith._export.formats import FORMATS, SUFFIXES, Example, Runner, Written, flatten_outputs
from torchsmith._export.report import BatchCheck, ExportReport, ExportVerificationError, format_bytes
from torchsmith.contract import (
    ModelInputs,
    copy_model,
    device_dtype,
    is_several,
    lazy_tensors,
    leaves_model_as_found,
    materialise_lazy,
    model_inputs,
)
from torchsmith.errors import ConfigError, ExportError, TorchsmithError, UnknownNameError, describe_error, format_size

__all__ = ["export", "ExportReport", "BatchCheck", "ExportVerificationError", "FORMAT_NAMES", "format_bytes"]

FORMAT_NAMES = tuple(FORMATS)
DEFAULT_BATCH = 2  # not 1: torch.export specialises size-1 dimensions, so a dynamic batch must trace at >= 2
OTHER_BATCHES = (1, 5)  # checked besides the export batch when the batch is dynamic
_LATENCY_BUDGET_S = 2.0  # per runtime and batch size: enough for a median, bounded for big models


@leaves_model_as_found  # tracing runs the model's forward: a library's lazily installed hooks are taken back
def export(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    input_size: Any = None,
    input_dtype: Any = None,
    batch_size: int = DEFAULT_BATCH,
    dynamic_batch: bool = True,
    opset: int | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    trace: bool = False,
    check_batch_sizes: Sequence[int] | None = None,
    timing_runs: int = 5,
    seed: int = 0,
    keep_failed: bool = False,
) -> ExportReport:
    """Export ``model`` to ``path`` and verify the written file against the eager model.

    The file is loaded back with the runtime a deployment uses (``torch.export.load``, onnxruntime,
    ``torch.jit.load``) and run beside the eager model on the same fresh inputs. A check passes when
    ``max|exported - eager| <= atol + rtol * max|eager|`` for every output; a file over tolerance is never
    written to ``path`` (an older file there stays). The model is exported in eval mode and given back in its
    own mode. A model whose input goes into an ``nn.Embedding`` (BERT, GPT-2, Llama) is fed token ids, as
    ``torch.export.export(model, (input_ids,))`` would be. Outputs may be tensors, tuples, dicts, dataclasses
    or a ``ModelOutput``. A model that draws random numbers in forward is compared under the same RNG seed in
    eager and exported runs (the global RNG is left as it was). Lazy layers are sized on a copy by a dry run.

    Args:
        model: The module to export.
        path: Where to write the file.
        format: ``"exported"`` (``torch.export`` ``.pt2``), ``"onnx"`` or ``"torchscript"``; by default it
            follows the suffix (``.onnx``, ``.ts``, ``.pt``) and is ``"exported"`` otherwise.
        input_size: One sample without the batch ((C, H, W), or (T,) token ids); by default the model's own,
            from :func:`torchsmith.contract.input_spec`. Several inputs: a list of sizes (positional) or a dict
            (keyword) (:func:`torchsmith.contract.model_inputs`); every input shares the dynamic batch.
        input_dtype: One dtype, a list or a dict by name; default: the contract's.
        batch_size: Rows of the example batch.
        dynamic_batch: Export with a dynamic batch dimension; the file is then checked at ``batch_size``, 1
            and 5 (or ``check_batch_sizes``).
        opset: ONNX opset version (ONNX only; default: the exporter's).
        atol: Absolute tolerance of the parity check.
        rtol: Relative tolerance, times ``max|eager|``.
        trace: Use ``torch.jit.trace`` instead of ``torch.jit.script`` (TorchScript only).
        check_batch_sizes: Batch sizes to verify instead of ``batch_size``, 1 and 5.
        timing_runs: Latency is the median of up to this many forwards of each runtime.
        seed: Seed of the verification inputs.
        keep_failed: Keep a file that failed verification as ``PATH.failed``.

    Returns:
        The :class:`ExportReport`: ``passed``, ``max_abs_error``, per batch size the errors and eager vs
        exported latency (``checks``), the file size and notes.

    Raises:
        ExportError: The exporter failed; the message names the module and the operation.
        ExportVerificationError: The written file does not match eager (the report is ``error.report``).
        ConfigError: A bad argument (format, suffix, batch sizes), or ONNX asked for without onnx installed.
    """
    model, target, fmt, notes = _door(model, path, format, input_size)
    spec = _resolve_input(model, input_size, input_dtype)
    batches = _resolve_batches(batch_size, dynamic_batch, check_batch_sizes)
    _check_options(fmt, atol, rtol, opset, trace, timing_runs, target)
    _check_model_ready(model)
    device, dtype = device_dtype(model)
    example = _example(spec, batch_size, seed, device, dtype)
    modes = {m: m.training for m in model.modules()}
    tmpdir = _scratch_dir(target)
    rng = torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else [])
    rng.__enter__()  # a forward that samples (a VAE) must not move the caller's RNG
    try:
        model.eval()
        _eager_forward(model, example)
        scratch = tmpdir / target.name  # same name as the target: an ONNX .data file refers to it by name
        written, export_seconds, exporter_warnings, dynamic_batch = _write_or_static(
            fmt, model, example, scratch, dynamic_batch, opset, trace,
            static_batch=batch_size if check_batch_sizes is None else None)
        batches = batches if dynamic_batch else [batch_size]
        files = [scratch, *written.extra_files]
        runner = _load(fmt, scratch, device)
        checks = [_check(model, runner, b, spec, seed + 1 + i, device, dtype, atol, rtol, timing_runs)
                  for i, b in enumerate(batches)]
        report = ExportReport(
            format=fmt, path=str(target), exporter=written.exporter, input_shape=tuple(example.tensors[0].shape),
            dynamic_batch=dynamic_batch, atol=atol, rtol=rtol, checks=checks,
            files=[str(target.with_name(f.name)) for f in files],
            file_size=sum(f.stat().st_size for f in files), export_seconds=export_seconds,
            opset=written.opset, seed=seed,
            notes=[*notes, _mode_note(model, modes), *written.notes, f"input: {spec.describe()}"],
            warnings=exporter_warnings,
        )
        del runner  # an ONNX session holds the file open; let it go before the file moves
        if not report.passed:
            _fail(report, files, target, keep_failed)
        for f in files:
            os.replace(f, target.with_name(f.name))
        return report
    finally:
        for module, training in modes.items():
            module.training = training  # the flag itself: train() would recurse and re-run user overrides
        shutil.rmtree(tmpdir, ignore_errors=True)
        rng.__exit__(None, None, None)


# ---- phases ----------------------------------------------------------------------------------------------


def _door(model: nn.Module, path: Any, format: str | None, input_size: Any) -> tuple[nn.Module, Path, str, list[str]]:
    """The model to export (unwrapped; lazy layers sized on a copy), the target path, the format, and notes."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"export needs an nn.Module, not {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"path must be a file path (str or pathlib.Path), not {type(path).__name__}")
    model, notes = _unwrap(model)
    target = Path(path)
    fmt = _resolve_format(format, target)
    if lazy_tensors(model):  # sized on a copy: the exported weights are the copy's fresh initialisation
        model = copy_model(model)
        lazy_note = materialise_lazy(model, None if is_several(input_size) else input_size)
        notes = [*notes, f"{lazy_note} on a copy (the model itself is not changed)"]
    return model, target, fmt, notes


def _write_or_static(fmt: str, model: nn.Module, example: Example, scratch: Path, dynamic_batch: bool,
                     opset: int | None, trace: bool,
                     static_batch: int | None) -> tuple[Written, float, list[str], bool]:
    """:func:`_write`, with a dynamic batch when asked; where the model's code fixes the batch, the example's
    ``static_batch`` only (when given: the caller named no batch sizes to check), as ``torch.export.export``
    does without dynamic shapes. Returns what :func:`_write` does and whether the batch is dynamic."""
    try:
        return (*_write(fmt, model, example, scratch, dynamic_batch, opset, trace), dynamic_batch)
    except ExportError as e:
        if not (dynamic_batch and static_batch is not None and _batch_fixed_by_code(e)):
            raise
    written, export_seconds, exporter_warnings = _write(fmt, model, example, scratch, False, opset, trace)
    written.notes.append(f"static batch {static_batch}: the model's code fixes the batch size (a "
                         "reshape with the batch written in), so a dynamic batch cannot be exported; "
                         "`torchsmith check` names the line")
    return written, export_seconds, exporter_warnings, False


def _check_model_ready(model: nn.Module) -> None:
    """Refuse models whose tensors hold no data yet: there would be nothing to run, so nothing to verify."""
    lazy = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if is_lazy(t)]
    if lazy:  # the eager run would materialise them with random values: the model would change and export noise
        raise ConfigError(f"{type(model).__name__} has uninitialised lazy tensors ({', '.join(lazy[:4])}"
                          f"{' ...' if len(lazy) > 4 else ''}); run one forward pass on a sample batch (or load its "
                          "weights) so its nn.Lazy* modules get their shapes, then export")
    on_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if on_meta:  # no data to run, so nothing to verify
        raise ConfigError(f"{type(model).__name__} has tensors on the meta device, which hold no data "
                          f"({', '.join(on_meta[:4])}{' ...' if len(on_meta) > 4 else ''}); load its weights "
                          "first (torchsmith.load_into, or model.to_empty(device='cpu') and an init), then export")


def _example(spec: ModelInputs, batch_size: int, seed: int, device: torch.device, dtype: torch.dtype) -> Example:
    try:
        args, kwargs = spec.example(batch_size, seed=seed, device=device, dtype=dtype)
        return Example(args, kwargs, spec.names)
    except (RuntimeError, MemoryError) as e:  # e.g. a mistyped input size: 10**12 elements
        shape = format_size((batch_size, *spec.primary.size))
        raise ConfigError(f"an example input of shape {shape} cannot be allocated ({type(e).__name__}); "
                          "check input_size (--input)") from e


def _scratch_dir(target: Path) -> Path:
    """A private folder beside the target: the file is written and checked there, and moved only if it passes."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".torchsmith-export", dir=target.parent))
    except OSError as e:
        raise ConfigError(f"cannot write into {target.parent}: {e.strerror}; choose a folder you can write to") from e


def _write(fmt: str, model: nn.Module, example: Example, scratch: Path, dynamic_batch: bool, opset: int | None,
           trace: bool) -> tuple[Written, float, list[str]]:
    """Export to ``scratch``: what was written, the seconds it took and the exporter's warnings."""
    exporter_warnings: list[str] = []
    start = time.perf_counter()
    with _quiet_exporters(exporter_warnings):
        written = FORMATS[fmt][0](model, example, scratch, dynamic_batch, opset, trace)
    return written, time.perf_counter() - start, exporter_warnings


def _load(fmt: str, scratch: Path, device: torch.device) -> Runner:
    """The written file loaded back with the runtime a deployment would use."""
    _, loader, runtime = FORMATS[fmt]
    try:
        with _quiet_exporters([]):
            return loader(scratch, device)
    except TorchsmithError:
        raise
    except Exception as e:
        raise ExportError(f"the {fmt} file was written but {runtime} cannot load it: "
                          f"{type(e).__name__}: {e}".replace("\n", " ")) from e


# ---- arguments -------------------------------------------------------------------------------------------


def _resolve_format(format: str | None, target: Path) -> str:
    suffix = target.suffix.lower()
    if format is None:
        return SUFFIXES.get(suffix, "torchscript" if suffix == ".pt" else "exported")
    if format not in FORMATS:
        raise UnknownNameError("export format", format, FORMATS)
    implied = SUFFIXES.get(suffix)
    if implied is not None and implied != format:
        raise ConfigError(f"{target.name} has the {suffix} suffix of format {implied!r} but format is {format!r}; "
                          f"name the file for its format (e.g. {target.stem}{_suffix_for(format)}) or pass "
                          f"format={implied!r}")
    return format


def _suffix_for(fmt: str) -> str:
    return {"exported": ".pt2", "onnx": ".onnx", "torchscript": ".ts"}[fmt]


def _batch_fixed_by_code(e: BaseException) -> bool:
    """Whether torch.export refused the dynamic batch because the model's code specialises it (its
    ``ConstraintViolationError``), found in the exception's chain by its class."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        kind = type(cur)
        if kind.__name__ == "ConstraintViolationError" and kind.__module__.startswith("torch."):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _resolve_input(model: nn.Module, input_size: Any, input_dtype: Any) -> ModelInputs:
    """The contract's inputs: the sizes given (token-ness read from the model), or the model's own."""
    if input_size is not None and not isinstance(input_size, (str, tuple, list, torch.Size, dict)):
        raise ConfigError(f"input_size must be a sequence of integers like (3, 32, 32), not {input_size!r}")
    return model_inputs(model, input_size, input_dtype=input_dtype)


def _resolve_batches(batch_size: int, dynamic: bool, check: Sequence[int] | None) -> list[int]:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}")
    if dynamic and batch_size == 1:
        raise ConfigError("a dynamic batch cannot be exported from batch_size=1: torch.export specialises "
                          "size-1 dimensions; use batch_size=2 or more, or dynamic_batch=False")
    sizes = [batch_size, *(check if check is not None else (OTHER_BATCHES if dynamic else ()))]
    if any(not isinstance(b, int) or b < 1 for b in sizes):
        raise ConfigError(f"check_batch_sizes must be positive integers, not {list(check or [])}")
    if not dynamic and any(b != batch_size for b in sizes):
        raise ConfigError(f"a static-batch export only runs at batch {batch_size}; drop check_batch_sizes or "
                          "use dynamic_batch=True")
    return list(dict.fromkeys(sizes))  # export batch first, each size once


def _check_options(fmt: str, atol: float, rtol: float, opset: int | None, trace: bool, timing_runs: int,
                   target: Path) -> None:
    if not (atol >= 0 and rtol >= 0):  # written so that NaN fails too: nothing would ever pass
        raise ConfigError(f"tolerances must be >= 0, got atol={atol}, rtol={rtol}")
    if opset is not None and fmt != "onnx":
        raise ConfigError(f"opset applies to ONNX only, not to format {fmt!r}")
    if opset is not None and opset < 7:
        raise ConfigError(f"ONNX opset {opset} is too old; use 17 or later")
    if trace and fmt != "torchscript":
        raise ConfigError(f"trace applies to TorchScript only, not to format {fmt!r}")
    if timing_runs < 1:
        raise ConfigError(f"timing_runs must be at least 1, got {timing_runs}")
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a file path such as {target / ('model' + _suffix_for(fmt))}")
    if not target.parent.is_dir():
        raise ConfigError(f"the folder {target.parent} does not exist; create it first (mkdir -p {target.parent})")


def _unwrap(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The model inside torch.compile / (Distributed)DataParallel wrappers, which no exporter takes, and notes."""
    notes = []
    for _ in range(4):  # e.g. DDP(torch.compile(model))
        if type(model).__name__ == "OptimizedModule" and isinstance(model._modules.get("_orig_mod"), nn.Module):
            notes.append("exported the model inside its torch.compile wrapper")
            model = model._modules["_orig_mod"]  # type: ignore[assignment]
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            notes.append(f"exported the model inside its {type(model).__name__} wrapper")
            model = model.module
        else:
            break
    return model, notes


# ---- running and comparing -------------------------------------------------------------------------------


def _eager_forward(model: nn.Module, x: Example) -> list[torch.Tensor]:
    try:
        with torch.no_grad():
            return flatten_outputs(x.call(model))
    except TorchsmithError:
        raise  # already says what is wrong and how to fix it (e.g. a ShapeError)
    except Exception as e:
        shape = x.shapes()
        raise ExportError(f"{type(model).__name__} fails in eager mode on a {shape} input, so there is nothing "
                          f"to export: {type(e).__name__}: {e}; give the input size it takes "
                          "(input_size=..., --input CxHxW)".replace("\n", " ")) from e


def _check(model: nn.Module, runner: Runner, batch: int, spec: ModelInputs, seed: int,
           device: torch.device, dtype: torch.dtype, atol: float, rtol: float, runs: int) -> BatchCheck:
    """Fresh random inputs of ``batch`` rows through eager and the loaded export; errors and latencies.

    Both runs start from the same RNG seed: a forward that samples (``torch.randn_like`` in a VAE's
    reparameterisation) draws the same numbers in eager and in the exported program, which runs the same
    ops in the same order.
    """
    x = _example(spec, batch, seed, device, dtype)
    # Each runtime gets its own copy: a forward that writes into its input (x.mul_(2)) would otherwise hand
    # the second runtime a different input, and a correct export would fail the check.
    torch.manual_seed(seed)
    expected = _eager_forward(model, x.clone())
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            got = runner(x.clone())
    except Exception as e:
        problem = f"the export fails at batch {batch}: {describe_error(e)}"
        return BatchCheck(batch, float("inf"), float("inf"), False, float("nan"), float("nan"), problem.strip())
    max_abs, max_rel, passed, problem = _compare(expected, got, atol, rtol)
    eager_ms, exported_ms = _median_ms(lambda: _eager_forward(model, x), lambda: runner(x), runs)
    return BatchCheck(batch, max_abs, max_rel, passed, eager_ms, exported_ms, problem)


def _compare(expected: list[torch.Tensor], got: list[torch.Tensor], atol: float,
             rtol: float) -> tuple[float, float, bool, str]:
    """Worst absolute and scale-relative error over all outputs; see :class:`BatchCheck`."""
    if len(got) != len(expected):
        return float("inf"), float("inf"), False, f"{len(got)} outputs where eager gives {len(expected)}"
    worst_abs, worst_rel, passed = 0.0, 0.0, True
    for i, (e, g) in enumerate(zip(expected, got)):
        if tuple(g.shape) != tuple(e.shape):
            return float("inf"), float("inf"), False, f"output {i} has shape {list(g.shape)}, eager {list(e.shape)}"
        e64, g64 = e.detach().cpu().double(), g.detach().cpu().double()
        if e64.numel() == 0:
            continue
        nan_e, nan_g = torch.isnan(e64), torch.isnan(g64)
        if not torch.equal(nan_e, nan_g):
            return float("inf"), float("inf"), False, f"output {i} has NaN where eager does not (or the reverse)"
        same = (e64 == g64) | nan_e  # equal infinities and shared NaNs count as exact
        diff = torch.where(same, torch.zeros_like(e64), (g64 - e64).abs())
        scale = float(torch.where(torch.isfinite(e64), e64.abs(), torch.zeros_like(e64)).max())
        max_abs = float(diff.max())
        rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, rel)
        passed = passed and max_abs <= atol + rtol * scale
    return worst_abs, worst_rel, passed, ""


def _median_ms(eager: Callable[[], object], exported: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median wall times (ms) of ``eager`` and ``exported``, run alternately.

    Both are warmed up alike first (one untimed call each, on these very inputs), so neither pays for
    a first call's allocations and kernel choices. Alternating puts both under the same machine load at
    the same moments, so a burst of other work slows both rather than one. Stops early once the
    latency budget is spent (big models).
    """
    with torch.no_grad():
        eager()
        exported()
    times: tuple[list[float], list[float]] = ([], [])
    spent = 0.0
    for _ in range(runs):
        for fn, out in ((eager, times[0]), (exported, times[1])):
            start = time.perf_counter()
            with torch.no_grad():
                fn()
            elapsed = time.perf_counter() - start
            out.append(elapsed)
            spent += elapsed
        if spent > 2 * _LATENCY_BUDGET_S:
            break
    return statistics.median(times[0]) * 1000.0, statistics.median(times[1]) * 1000.0


# ---- outcome ---------------------------------------------------------------------------------------------


def _mode_note(model: nn.Module, modes: dict[nn.Module, bool]) -> str:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    parts = ([f"BatchNorm uses its running statistics ({len(norms)} {_kinds(norms)})"] if norms else []) + \
        ([f"Dropout is off ({len(drops)} {_kinds(drops)})"] if drops else [])
    note = "exported in eval mode" + (f": {' and '.join(parts)}" if parts else "")
    if any(modes.values()):
        note += "; the model was in training mode and has been put back in it"
    return note


def _kinds(modules: Sequence[nn.Module]) -> str:
    return ", ".join(sorted({type(m).__name__ for m in modules}))


def _fail(report: ExportReport, files: list[Path], target: Path, keep_failed: bool) -> None:
    if keep_failed:
        kept = [target.with_name(f.name + ".failed") for f in files]
        for f, dest in zip(files, kept):
            os.replace(f, dest)
        fate = f"kept as {kept[0]} for inspection"
        report.files = [str(k) for k in kept]
    else:
        fate = f"not written to {target} (keep_failed=True / --keep-failed keeps it as {target.name}.failed)"
        report.files = []
    raise ExportVerificationError(
        f"{report.format} export of the model does not match eager: {report.summary_line()}; the file was "
        f"{fate}. Loosen atol/rtol (--atol/--rtol) only if this error is expected for the runtime", report)


@contextmanager
def _quiet_exporters(collected: list[str]) -> Iterator[None]:
    """Silence torch/ONNX loggers and record Python warnings, for the report.

    Exporters log graphs and notices on stderr; a library returns them instead.
    Levels are restored afterwards, and other libraries' loggers are untouched.
    """
    prefixes = ("torch", "onnx", "onnxscript", "onnx_ir", "onnxruntime")
    # The top-level names too: loggers created during the export (onnxscript is imported lazily) inherit them.
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in prefixes] + list(prefixes)
    loggers = [logging.getLogger(n) for n in dict.fromkeys(names)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)  # failures reach the user as our exception, not as log lines
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        noise = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
        for w in caught:
            if issubclass(w.category, noise):
                continue
            text = " ".join(str(w.message).split())
            text = text if len(text) <= 200 else text[:197] + "..."
            line = f"{w.category.__name__}: {text}"
            if line not in collected and len(collected) < 8:
                collected.append(line)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
