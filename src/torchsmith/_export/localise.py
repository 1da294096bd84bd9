"""Turn an exporter's exception into one line naming the module and the operation that failed.

Exporters fail deep inside their own machinery, and their messages name graph
nodes, symbols and internal files. A user needs two things: *which of my
modules* and *which line or op in it*. We find them, cheapest first:

1. The exception's traceback. Non-strict ``torch.export`` and ``torch.jit.trace``
   run the model's Python, so the frames still hold ``self`` (a module of the
   model) and the user's source line. The ONNX translator's frames hold the FX
   ``node`` it was converting, whose ``nn_module_stack`` names the module.
2. The message: TorchScript's compiler quotes ``File "...", line N`` and marks
   the failing code with ``<--- HERE``.
3. Trying submodules: the deepest submodule that fails on its own (while its
   children succeed) is the culprit. Used only when 1 and 2 give no module.

The exporter's exception is always kept as the ``__cause__`` by the caller.
"""

from __future__ import annotations

import linecache
import os
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

import torch
from torch import nn

__all__ = ["Failure", "locate_failure", "describe_failure", "root_message"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TORCH_DIR = os.path.dirname(torch.__file__)
_HERE = os.path.dirname(os.path.abspath(__file__))
_SCRIPT_FILE = re.compile(r'File "([^"]+)", line (\d+)')

Attempt = Callable[[nn.Module], "BaseException | None"]


@dataclass
class Failure:
    """Where an export failed: module path (``""`` is the model itself), its type, the operation."""

    module: str | None = None
    module_type: str = ""
    operation: str = ""  # a source line, or an op name such as aten.cummax.default
    location: str = ""  # file:line of the operation, when known


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The exception, then its causes and contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def root_message(error: BaseException) -> str:
    """``Type: first line`` of the deepest exception in the chain, ANSI codes stripped, on one line.

    The deepest cause is usually the specific one ("No ONNX function found for
    aten.cummax"); the outer ones are the exporter's generic wrappers.
    """
    deepest = list(_chain(error))[-1]
    text = _ANSI.sub("", str(deepest)).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first) > 240:
        first = first[:237] + "..."
    return f"{type(deepest).__name__}: {first}" if first else type(deepest).__name__


def _is_user_file(filename: str) -> bool:
    path = os.path.abspath(filename)
    return not (path.startswith(_TORCH_DIR) or path.startswith(_HERE) or filename.startswith("<"))


def _short(filename: str, line: int) -> str:
    return f"{os.path.basename(filename)}:{line}"


def _source(filename: str, line: int) -> str:
    return linecache.getline(filename, line).strip()


def _from_frames(model: nn.Module, error: BaseException) -> Failure | None:
    """Innermost frame whose ``self`` is one of the model's modules, or whose ``node`` is an FX node."""
    # A frame running the model's own code wins over an FX node: the node may be
    # one the tracer was building, while the frame is the line that failed.
    paths = {id(m): name for name, m in model.named_modules()}
    node_failure: Failure | None = None
    for exc in _chain(error):
        module_frame: tuple[FrameType, int] | None = None
        user_frame: tuple[FrameType, int] | None = None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in paths:
                module_frame = (frame, lineno)
                user_frame = None  # only user code called from (or inside) this module counts
            if module_frame is not None and _is_user_file(frame.f_code.co_filename):
                user_frame = (frame, lineno)
            node = frame.f_locals.get("node")
            if node_failure is None and isinstance(node, torch.fx.Node):
                node_failure = _from_node(node)
        if module_frame is not None:
            frame, _ = module_frame
            owner = frame.f_locals["self"]
            op_frame, op_line = user_frame or module_frame
            filename = op_frame.f_code.co_filename
            return Failure(paths[id(owner)], type(owner).__name__, _source(filename, op_line),
                           _short(filename, op_line))
    return node_failure


def _from_node(node: torch.fx.Node) -> Failure | None:
    """An FX node's module (``nn_module_stack``, innermost last) and its op."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path, type_name = list(stack.values())[-1]
    type_name = str(getattr(type_name, "__name__", type_name)).rsplit(".", 1)[-1]
    failure = Failure(_clean_path(str(path)), type_name, str(node.target))
    trace = (node.meta.get("stack_trace") or "").strip().splitlines()
    files = [m for m in (_SCRIPT_FILE.search(line) for line in trace) if m]
    if files:
        failure.location = _short(files[-1].group(1), int(files[-1].group(2)))
    return failure


def _clean_path(path: str) -> str:
    # Strict export writes paths as L['self'].body[1]; non-strict as body.1.
    path = re.sub(r"^L\['self'\]\.?", "", path)
    return re.sub(r"\[(\d+)\]", r".\1", path).strip(".")


def _from_script_message(error: BaseException) -> Failure | None:
    """TorchScript's ``File "x.py", line N`` and the source line just above its ``<--- HERE`` marker."""
    text = str(error)
    where = _SCRIPT_FILE.findall(text)
    if not where:
        return None
    filename, line = where[0][0], int(where[0][1])
    lines = text.splitlines()
    op = ""
    for i, item in enumerate(lines):
        if "<--- HERE" in item and i > 0:
            op = lines[i - 1].strip()
            break
    return Failure(None, "", op or _source(filename, line), _short(filename, line))


def _from_submodules(model: nn.Module, attempt: Attempt) -> Failure | None:
    """Descend into the first child that fails on its own until no child fails."""
    path, module = "", model
    while True:
        for name, child in module.named_children():
            if attempt(child) is not None:
                path, module = (f"{path}.{name}" if path else name), child
                break
        else:
            return Failure(path, type(module).__name__)


def locate_failure(model: nn.Module, error: BaseException, attempt: Attempt | None = None) -> Failure:
    """Where in ``model`` the exporter failed; see the module docstring for the order tried."""
    failure = _from_frames(model, error)
    if failure is not None:
        return failure
    from_message = _from_script_message(error)
    if attempt is not None:
        try:
            walked = _from_submodules(model, attempt)
        except Exception:  # localising is best effort; the exporter's error is what matters
            walked = None
        if walked is not None:
            if from_message is not None:
                walked.operation, walked.location = from_message.operation, from_message.location
            return walked
    return from_message or Failure(None)


_HINTS: tuple[tuple[str, str], ...] = (
    ("data-dependent", "Python control flow on tensor values cannot be exported; rewrite it with torch.where "
                       "or torch.cond, or use format='torchscript' (torch.jit.script keeps control flow)"),
    ("No ONNX function found", "the ONNX exporter has no translation for this op; replace the op, or use "
                               "format='exported' or 'torchscript'"),
    ("Constraints violated", "the model's code fixes the batch size; export with dynamic_batch=False "
                             "(--static-batch) or make the code batch-agnostic"),
    ("specialized", "the model's code fixes the batch size; export with dynamic_batch=False "
                    "(--static-batch) or make the code batch-agnostic"),
    ("aren't supported", "TorchScript cannot compile this Python; rewrite it, mark the method "
                         "@torch.jit.ignore, or use trace=True (--trace) or format='exported'"),
    ("NotSupportedError", "TorchScript cannot compile this Python; rewrite it, mark the method "
                          "@torch.jit.ignore, or use trace=True (--trace) or format='exported'"),
)


def describe_failure(stage: str, model: nn.Module, error: BaseException, attempt: Attempt | None = None) -> str:
    """One line: ``<stage> failed in module 'body.1' (Gate) at `if x.sum() > 0:` (net.py:5): <cause>; <hint>``."""
    failure = locate_failure(model, error, attempt)
    if failure.module is None:
        where = "in the model"
    elif failure.module == "":
        where = f"in the model's top-level module ({type(model).__name__})"
    else:
        where = f"in module {failure.module!r} ({failure.module_type})"
    op = ""
    if failure.operation:
        op = f" at operation `{failure.operation}`"
    if failure.location:
        op += f" ({failure.location})"
    cause = root_message(error)
    message = f"{stage} failed {where}{op}: {cause}"
    full = " ".join(_ANSI.sub("", str(e)) for e in _chain(error)) + " " + type(error).__name__
    for needle, hint in _HINTS:
        if needle in full:
            message += f"; {hint}"
            break
    return " ".join(message.split())  # one line, always
