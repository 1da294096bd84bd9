"""Compilation paths: ``torch.jit.script``, ``torch.export.export`` and graph breaks under ``torch.compile``.

Each is verified by trying it. When one fails, the failing module is found from
the source locations torch reports (the innermost frame of the user's code that
lies inside some module's method), so the finding names a module path and the
reason, not just a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import os
import re
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from torchsmith._check._context import QUOTE_LIMIT, Context, SkipCheck, make_finding
from torchsmith._check.registry import register_check
from torchsmith._check.report import Finding
from torchsmith.errors import describe_error

__all__ = ["check_scriptable", "check_exportable", "check_graph_breaks", "locate"]

_LOCATION = re.compile(r'File "([^"]+)", line (\d+)')


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings and log records torch emits while compiling; they belong in the finding."""
    # Import first: torch configures its loggers' levels when these load, which would undo ours.
    for name in ("torch.export", "torch._dynamo"):
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    manager = logging.Logger.manager
    loggers = [lg for name, lg in list(manager.loggerDict.items())
               if name.startswith("torch") and isinstance(lg, logging.Logger)]
    disabled = [lg.disabled for lg in loggers]
    # torch.export prints the partial graph of a failed export straight to sys.stderr.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        # Logger.disabled, not setLevel: each setLevel clears every logger's cache, and torch has ~400 loggers.
        for lg in loggers:
            lg.disabled = True
        try:
            yield
        finally:
            for lg, was in zip(loggers, disabled):
                lg.disabled = was


def _spans(cls: type) -> Iterator[tuple[str, int, int]]:
    """(file, first line, last line) of every function defined in ``cls`` itself."""
    for value in vars(cls).values():
        fn = getattr(value, "__func__", value)
        code = getattr(fn, "__code__", None)
        if code is None:
            continue
        lines = [line for _, _, line in code.co_lines() if line is not None] if hasattr(code, "co_lines") else []
        yield code.co_filename, code.co_firstlineno, max(lines, default=code.co_firstlineno)


def locate(model: nn.Module, frames: list[tuple[str, int]]) -> str | None:
    """The path of the module whose own method holds a frame, trying frames innermost first."""
    owners: dict[type, list[tuple[str, int, int]]] = {}
    for cls in {type(m) for m in model.modules()}:
        owners[cls] = [s for k in cls.__mro__ if k not in (nn.Module, object) and not
                       (k.__module__ or "").startswith("torch.") for s in _spans(k)]
    for filename, line in frames:
        for path, module in model.named_modules():
            for f, first, last in owners.get(type(module), []):
                if _same_file(f, filename) and first <= line <= last:
                    return path
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return a == b


def _frames(text: str, innermost_last: bool) -> list[tuple[str, int]]:
    """Source locations in an error message, innermost first; frames inside torch itself are dropped."""
    torch_dir = inspect.getfile(torch).rsplit("/", 1)[0]
    found = [(f, int(n)) for f, n in _LOCATION.findall(text) if not f.startswith(torch_dir)]
    return list(reversed(found)) if innermost_last else found


def _user_frames_of(e: BaseException) -> list[tuple[str, int]]:
    """Frames from the exception's traceback chain that lie outside torch, innermost first."""
    torch_dir = inspect.getfile(torch).rsplit("/", 1)[0]
    frames: list[tuple[str, int]] = []
    seen: set[int] = set()
    exc: BaseException | None = e
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        chain = []
        while tb is not None:
            chain.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
            tb = tb.tb_next
        frames += [f for f in reversed(chain) if not f[0].startswith(torch_dir)]
        exc = exc.__cause__ or exc.__context__
    return frames


def _inside_torch_layer(e: BaseException) -> str | None:
    """``"torch/nn/modules/rnn.py:1093 (forward)"`` when the export failed inside one of torch's own layers or
    nn utilities called by the model (an LSTM on a packed sequence), not in the model's own Python; else None.

    That is a limit of torch.export, not a model-building mistake: the finding is a warning, not an error.
    """
    torch_dir = os.path.dirname(torch.__file__)
    chain = []
    tb = e.__traceback__
    while tb is not None:
        chain.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    last_user = max((i for i, f in enumerate(chain) if not f[0].startswith(torch_dir)), default=None)
    if last_user is None:
        return None
    for filename, line, name in chain[last_user + 1:]:
        rel = os.path.relpath(filename, torch_dir)
        if rel.startswith(("nn/modules/", "nn/utils/")) and name not in ("_call_impl", "_wrapped_call_impl"):
            return f"torch/{rel}:{line} ({name})"
    return None


def _reason(e: BaseException) -> str:
    return describe_error(e, limit=400)


# --------------------------------------------------------------------------- torch.jit.script
@register_check(
    "scriptable",
    "torch.jit.script compiles the model (deprecated in torch; opt-in)",
    {
        "not-scriptable": ("warning", "torch.jit.script fails"),
    },
    default=False,
    order=120,
)
def check_scriptable(ctx: Context) -> list[Finding]:
    """``torch.jit.script`` the model; on failure name the module whose code it could not compile.

    Opt-in: torch.jit.script is deprecated (torch 2.10+ warns "Please switch to torch.compile or
    torch.export"), and it fails on every transformers model (it cannot read a config's source).
    """
    if not hasattr(torch.jit, "script"):
        raise SkipCheck("this torch has no torch.jit.script")
    try:
        with _quiet():
            torch.jit.script(ctx.model)
        return []
    except Exception as e:
        text = str(e)
        module = locate(ctx.model, _frames(text, innermost_last=False)) or ""
        loc = _LOCATION.search(text)
        where = f" at {loc.group(1).rsplit('/', 1)[-1]}:{loc.group(2)}" if loc else ""
        return [make_finding(
            "not-scriptable", module,
            f"torch.jit.script fails in {module or '(model)'}{where}: {_reason(e)}",
            "keep forward to TorchScript's subset: type-annotate non-tensor arguments, no *args/**kwargs, "
            "no data-dependent Python types; or mark helper methods @torch.jit.ignore. "
            "TorchScript is deprecated: deploy with torch.export (the exportable check) instead where you can",
            error=_reason(e))]


# --------------------------------------------------------------------------- torch.export
_PLAIN_LEAVES = (torch.Tensor, int, float, bool, str, type(None))


def _unknown_output_types(out: Any) -> list[str]:
    """Qualified names of the objects in an output that are not pytree nodes torch.export can return."""
    leaves = torch.utils._pytree.tree_leaves(out)
    names = {f"{type(v).__module__}.{type(v).__qualname__}" for v in leaves if not isinstance(v, _PLAIN_LEAVES)}
    return sorted(names)


def _cache_option(model: nn.Module) -> Any:
    """Every config in the model with ``use_cache=True`` (a transformers decoder that returns its KV cache; an
    encoder-decoder's decoder stack holds a config of its own), or None when there is none."""
    configs = {id(c): c for m in model.modules() if getattr(c := getattr(m, "config", None), "use_cache", None) is True}
    return list(configs.values()) or None


@contextlib.contextmanager
def _without_cache(configs: Any) -> Iterator[None]:
    if configs is None:
        yield
        return
    for config in configs:
        config.use_cache = False  # the check's deep copy's configs: the user's model keeps its own
    try:
        yield
    finally:
        for config in configs:
            config.use_cache = True


@register_check(
    "exportable",
    "torch.export.export captures the model",
    {
        "not-exportable": ("error", "torch.export.export fails"),
        "export-needs-config": (
            "info",
            "torch.export fails only with a config option on (use_cache); verified it exports off",
        ),
    },
    order=130,
)
def check_exportable(ctx: Context) -> list[Finding]:
    """``torch.export.export`` the model in eval mode at the probe input; name the failing module.

    A transformers decoder with ``use_cache=True`` returns a ``DynamicCache``, which torch.export cannot
    return: that is a setting, not a broken model. Seen in the eval output, it is exported once with
    ``config.use_cache=False`` instead, and the finding says whether that export succeeded.
    """
    export = getattr(getattr(torch, "export", None), "export", None)
    if export is None:
        raise SkipCheck("this torch has no torch.export.export")
    unknown = _unknown_output_types(ctx.eval_runs()[0][1])
    model = ctx.model
    option = _cache_option(model) if unknown else None
    model.eval()
    try:
        with _quiet(), _without_cache(option):
            export(model, *ctx.call_args(ctx.x.clone()))
    except Exception as e:
        text = str(e)
        frames = _frames(text, innermost_last=True) + _user_frames_of(e)
        module = locate(model, frames) or ""
        data_dependent = any(k in text for k in ("data-dependent", "data dependent", "GuardOnDataDependent",
                                                 "Dynamic control flow", "Could not guard"))
        why = " (Python control flow that depends on tensor values)" if data_dependent else ""
        how = " with config.use_cache=False" if option is not None else ""
        fix = ("remove data-dependent Python control flow from forward (compute both branches and use torch.where, "
               "or torch.cond), avoid .item()/.tolist()/numpy in forward, and keep shapes from x.shape")
        if unknown and option is None:
            fix = (f"return tensors (or tuples, dicts, dataclasses of them) instead of {', '.join(unknown)}, or "
                   "register that type with torch.utils._pytree.register_pytree_node; " + fix)
        in_torch = _inside_torch_layer(e) if not unknown else None
        if in_torch is not None:
            return [make_finding(
                "not-exportable", module,
                f"torch.export.export fails{how} inside torch's own code at {in_torch}, called by "
                f"{module or '(model)'}: {_reason(e)}; the model is built right, torch.export does not trace this "
                "layer use (a packed sequence, for one)",
                "nothing to fix for eager training and TorchScript; to export, feed the layer padded tensors "
                "(with a mask) instead of a PackedSequence, or keep that part of the model outside the export",
                severity="warning", error=_reason(e), data_dependent=data_dependent, inside_torch=in_torch)]
        return [make_finding(
            "not-exportable", module,
            f"torch.export.export fails{how} in {module or '(model)'}{why}: {_reason(e)}",
            fix, error=_reason(e), data_dependent=data_dependent, output_types=unknown)]
    finally:
        model.train()
    if option is None:
        return []
    return [make_finding(
        "export-needs-config", "",
        f"with use_cache=True forward returns {', '.join(unknown)}, which torch.export.export cannot return; "
        "verified: with config.use_cache=False the model exports",
        "set model.config.use_cache = False before torch.export.export (or pass use_cache=False to forward); "
        f"if the cache must be an output, register {unknown[0].rsplit('.', 1)[-1]} with "
        "torch.utils._pytree.register_pytree_node",
        option="use_cache", value=False, verified=True, output_types=unknown)]


# --------------------------------------------------------------------------- torch.compile
@register_check(
    "graph-breaks",
    "torch.compile captures forward in one graph (torch._dynamo.explain; slow, opt-in)",
    {
        "graph-break": ("warning", "torch.compile splits forward into several graphs"),
    },
    default=False,
    order=140,
)
def check_graph_breaks(ctx: Context) -> list[Finding]:
    """Graph breaks under ``torch.compile`` via ``torch._dynamo.explain`` (no code generation)."""
    try:  # on use, not at the top: importing torch._dynamo costs ~0.8 s, about as much as `import torchsmith`
        import torch._dynamo as dynamo
    except Exception as e:  # pragma: no cover - platforms without dynamo
        raise SkipCheck(f"torch._dynamo is not available here: {describe_error(e, QUOTE_LIMIT)}") from e
    explain = getattr(dynamo, "explain", None)
    if explain is None:
        raise SkipCheck("this torch has no torch._dynamo.explain")
    ctx.train_run()
    model = ctx.model
    model.eval()
    try:
        with _quiet(), torch.no_grad():
            args, kwargs = ctx.call_args(ctx.x.clone())
            out: Any = explain(model)(*args, **kwargs)
    except Exception as e:
        raise SkipCheck(f"torch._dynamo.explain itself failed: {describe_error(e, QUOTE_LIMIT)}") from e
    finally:
        model.train()
        with contextlib.suppress(Exception):
            dynamo.reset()  # drop dynamo's caches, which would keep the copy alive
    reasons = list(getattr(out, "break_reasons", []) or [])
    count = int(getattr(out, "graph_break_count", len(reasons)) or 0)
    if not count and not reasons:
        return []
    first = reasons[0] if reasons else None
    frames = [(fs.filename, fs.lineno) for fs in reversed(getattr(first, "user_stack", []) or [])]
    module = locate(model, frames) or ""
    reason = str(getattr(first, "reason", "unknown")).strip().splitlines()[0] if first is not None else "unknown"
    where = f" at {frames[0][0].rsplit('/', 1)[-1]}:{frames[0][1]}" if frames else ""
    return [make_finding(
        "graph-break", module,
        f"torch.compile splits forward into {int(getattr(out, 'graph_count', count + 1))} graphs "
        f"({count} graph break(s)); the first is in {module or '(model)'}{where}: {reason[:300]}",
        "avoid print/.item()/numpy/data-dependent Python branches in forward; "
        "torch.compile(fullgraph=True) shows each break as an error",
        graph_breaks=count, reason=reason[:300])]
