"""The three export formats: how each is written, and how each is loaded back to be checked.

Every format is a pair of functions. ``write_*`` turns an eval-mode model and
an example input into a file and says which exporter it used; ``load_*``
reads that file back with the runtime a deployment would use and returns a
function from an input batch to the flat list of output tensors. Failures are
:class:`ExportError` naming the module and operation (see ``localise``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchsmith._export.localise import describe_failure
from torchsmith.contract import output_tensors
from torchsmith.errors import ExportError, format_size

__all__ = ["Written", "Example", "Runner", "FORMATS", "SUFFIXES", "flatten_outputs", "onnx_available"]


@dataclass(frozen=True)
class Example:
    """One batch of every input: ``model(*args, **kwargs)``; ``names`` are the inputs' names, in order."""

    args: tuple[torch.Tensor, ...]
    kwargs: dict[str, torch.Tensor]
    names: tuple[str, ...]

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [*self.args, *self.kwargs.values()]

    @property
    def batch(self) -> int:
        first = self.tensors[0]
        return int(first.shape[0]) if first.dim() else 1

    def clone(self) -> Example:
        """A copy of every tensor: a forward that writes into its input must not change the next runtime's."""
        return Example(tuple(t.clone() for t in self.args), {k: v.clone() for k, v in self.kwargs.items()},
                       self.names)

    def call(self, fn: Callable[..., Any]) -> Any:
        return fn(*self.args, **self.kwargs)

    def shapes(self) -> str:
        return ", ".join(format_size(t.shape) for t in self.tensors)


Runner = Callable[[Example], list[torch.Tensor]]

#: Above this many bytes of weights an ONNX file keeps them in a side file: protobuf caps a file at 2 GiB.
ONNX_INLINE_LIMIT = 1536 * 1024 * 1024

ONNX_INSTALL = "pip install 'torchsmith[onnx]'"


@dataclass
class Written:
    """What ``write_*`` did: the exporter call, the opset (ONNX), extra notes and files."""

    exporter: str
    opset: int | None = None
    notes: list[str] = field(default_factory=list)
    extra_files: list[Path] = field(default_factory=list)


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    """A model output's tensors as a flat list (:func:`torchsmith.contract.output_tensors`), dicts and
    ``ModelOutput`` in insertion order.

    That is the order ``torch.export`` and the ONNX exporter flatten outputs in,
    so element ``i`` of every runtime's list is the same output.
    """
    tensors = output_tensors(out)
    if not tensors and out is not None:
        raise ExportError(f"the model returned a {type(out).__name__} holding no tensor; export needs tensors, or "
                          "tuples, lists, dicts or dataclasses of tensors")
    return tensors


def _has_param(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


# ---- torch.export (.pt2) ----------------------------------------------------------------------------------


def torch_export(model: nn.Module, example: Example, dynamic: bool) -> tuple[Any, str]:
    """``torch.export.export`` in non-strict mode with an optional dynamic batch dimension.

    Non-strict runs the model's own Python (as eager does), so a failure has a
    traceback through the user's code that names the module and line.
    ``min=1`` lets the export run at batch 1 although it was traced at batch 2
    (a size-1 trace would be specialised to 1).
    """
    kwargs: dict[str, Any] = {}
    if _has_param(torch.export.export, "strict"):
        kwargs["strict"] = False
    if dynamic:
        batch = torch.export.Dim("batch", min=1)  # one Dim for every input: they share the batch
        if example.kwargs:
            kwargs["dynamic_shapes"] = {n: {0: batch} for n in example.names}
        else:
            kwargs["dynamic_shapes"] = tuple({0: batch} for _ in example.args)
    try:
        # torch.export print()s a partial graph to stderr when it fails (torch/export/_trace.py); the
        # error we raise says what matters, and the exception keeps the rest.
        with contextlib.redirect_stderr(io.StringIO()):
            program = torch.export.export(model, example.args, example.kwargs or None, **kwargs)
    except Exception as e:
        raise ExportError(describe_failure("torch.export", model, e)) from e
    mode = "non-strict" if kwargs.get("strict") is False else "strict"
    return program, f"torch.export.export ({mode})"


def write_exported(model: nn.Module, example: Example, path: Path, dynamic: bool,
                   opset: int | None, trace: bool) -> Written:
    program, exporter = torch_export(model, example, dynamic)
    try:
        torch.export.save(program, str(path))
    except Exception as e:
        raise ExportError(f"torch.export.save could not write {path.name}: {type(e).__name__}: {e}") from e
    notes = ["dynamic batch: torch.export.Dim('batch', min=1)"] if dynamic else []
    return Written(exporter + " + torch.export.save", notes=notes)


def load_exported(path: Path, device: torch.device) -> Runner:
    module = torch.export.load(str(path)).module()
    return lambda ex: flatten_outputs(ex.call(module))


# ---- ONNX ------------------------------------------------------------------------------------------------


def onnx_available(dynamo: bool) -> str | None:
    """None when the ONNX path can run, else the missing package's name."""
    names = ["onnx", "onnxruntime"] + (["onnxscript"] if dynamo else [])
    for name in names:
        try:
            __import__(name)
        except ImportError:
            return name
    return None


def use_dynamo_onnx() -> bool:
    """The dynamo exporter (``torch.onnx.export(..., dynamo=True)``) from torch 2.6 on; the TorchScript one before.

    2.5 has the flag but its dynamo path is a preview; 2.4 has neither.
    """
    return _has_param(torch.onnx.export, "dynamo") and _torch_version() >= (2, 6)


def write_onnx(model: nn.Module, example: Example, path: Path, dynamic: bool,
               opset: int | None, trace: bool) -> Written:
    missing = onnx_available(use_dynamo_onnx())
    if missing:
        raise ExportError(f"ONNX export needs the {missing!r} package, which is not installed; {ONNX_INSTALL}")
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    weight_bytes += sum(b.numel() * b.element_size() for b in model.buffers())
    external = weight_bytes > ONNX_INLINE_LIMIT
    used: int | None = None
    if use_dynamo_onnx():
        program, exporter = torch_export(model, example, dynamic)  # localised failures for the tracing step
        kwargs: dict[str, Any] = {"dynamo": True, "external_data": external, "verbose": False}
        if opset is not None:
            kwargs["opset_version"] = opset
        try:
            onnx_program = torch.onnx.export(program, example.args, str(path), kwargs=example.kwargs or None,
                                             **kwargs)
        except Exception as e:
            raise ExportError(describe_failure("ONNX conversion", model, e)) from e
        exporter = f"{exporter} + torch.onnx.export(dynamo=True)"
        # The opset from the in-memory model: re-reading a large file just for it costs seconds.
        imports = getattr(getattr(onnx_program, "model", None), "opset_imports", None)
        if isinstance(imports, dict) and isinstance(imports.get(""), int):
            used = imports[""]
    else:
        names = ["output"] if len(flatten_outputs(_eager(model, example))) == 1 else None
        inputs = list(example.names)
        axes = ({**{n: {0: "batch"} for n in inputs}, **({"output": {0: "batch"}} if names else {})}
                if dynamic else None)
        try:
            torch.onnx.export(model, (*example.args, example.kwargs) if example.kwargs else example.args, str(path),
                              input_names=inputs, output_names=names,
                              dynamic_axes=axes, opset_version=opset or 17, do_constant_folding=True)
        except Exception as e:
            raise ExportError(describe_failure("torch.onnx.export", model, e)) from e
        exporter = "torch.onnx.export (TorchScript-based exporter)"
    import onnxruntime

    if used is None:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        used = next((imp.version for imp in proto.opset_import if imp.domain in ("", "ai.onnx")), None)
    if opset is not None and used is not None and used != opset:
        raise ExportError(f"asked for ONNX opset {opset} but the exporter wrote opset {used}; "
                          "pick an opset this torch supports (18 or later with the dynamo exporter)")
    data = path.with_name(path.name + ".data")
    written = Written(exporter, opset=used, extra_files=[data] if data.exists() else [])
    written.notes.append(f"verified with onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)")
    if external:
        written.notes.append(f"weights over {ONNX_INLINE_LIMIT >> 20} MiB are kept beside the model in {data.name}")
    return written


def load_onnx(path: Path, device: torch.device) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: a library does not print
    # As many threads as torch uses, so the latency comparison is between runtimes, not thread counts.
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    # No busy-waiting between runs: the latency check alternates eager and onnxruntime, and spinning
    # onnxruntime threads would take the cores from the eager run that follows (a 100x "speedup" on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(ex: Example) -> list[torch.Tensor]:
        # By name where the graph kept the forward's names (the dynamo exporter does), else in order.
        given = dict(zip(ex.names, ex.tensors))
        feed = ({n: given[n] for n in names} if all(n in given for n in names)
                else dict(zip(names, ex.tensors)))
        outputs = session.run(None, {n: t.detach().cpu().numpy() for n, t in feed.items()})
        return [torch.from_numpy(o) for o in outputs]

    return run


# ---- TorchScript -----------------------------------------------------------------------------------------


def write_torchscript(model: nn.Module, example: Example, path: Path, dynamic: bool,
                      opset: int | None, trace: bool) -> Written:
    if trace:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # the caller records TracerWarnings into the report
            try:
                scripted = (torch.jit.trace(model, example.args, check_trace=False) if not example.kwargs else
                            torch.jit.trace(model, example_kwarg_inputs=example.kwargs, check_trace=False))
            except Exception as e:
                raise ExportError(describe_failure("torch.jit.trace", model, e)) from e
        exporter = "torch.jit.trace"
        notes = [f"traced at batch {example.batch}: Python control flow and Python numbers computed "
                 "from shapes were recorded for that input, not kept"]
    else:
        try:
            scripted = torch.jit.script(model)
        except Exception as e:
            raise ExportError(describe_failure("torch.jit.script", model, e, attempt=_script_attempt)) from e
        exporter = "torch.jit.script"
        notes = ["torch.jit.script keeps the model's control flow; the batch dimension is dynamic"]
    try:
        scripted.save(str(path))
    except Exception as e:
        raise ExportError(f"saving TorchScript to {path.name} failed: {type(e).__name__}: {e}") from e
    return Written(exporter, notes=notes)


def _script_attempt(module: nn.Module) -> BaseException | None:
    try:
        torch.jit.script(module)
    except Exception as e:
        return e
    return None


def load_torchscript(path: Path, device: torch.device) -> Runner:
    module = torch.jit.load(str(path), map_location=device)
    module.eval()
    return lambda ex: flatten_outputs(ex.call(module))


def _eager(model: nn.Module, example: Example) -> Any:
    with torch.no_grad():
        return example.call(model)


Writer = Callable[[nn.Module, Example, Path, bool, "int | None", bool], Written]
Loader = Callable[[Path, torch.device], Runner]

#: format name -> (writer, loader, runtime name)
FORMATS: dict[str, tuple[Writer, Loader, str]] = {
    "exported": (write_exported, load_exported, "torch.export.load"),
    "onnx": (write_onnx, load_onnx, "onnxruntime"),
    "torchscript": (write_torchscript, load_torchscript, "torch.jit.load"),
}

#: file suffixes that name a format, to infer it and to catch a mismatch
SUFFIXES: dict[str, str] = {".pt2": "exported", ".onnx": "onnx", ".ts": "torchscript", ".torchscript": "torchscript"}
