"""Checks read off the shared runs: input mutation, determinism, NaN/Inf, devices and dtypes,
unused parameters, and hooks left on the model."""

from __future__ import annotations

import inspect
import math
import os
from collections import defaultdict
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from torchsmith._check._context import Context, SkipCheck, UserHook, make_finding
from torchsmith._check.registry import register_check
from torchsmith._check.report import Finding
from torchsmith.contract import output_tensors
from torchsmith.errors import format_size

__all__ = [
    "check_input_mutated", "check_determinism", "check_non_finite", "check_devices_dtypes",
    "check_unused_parameters", "check_hooks", "collect_hooks", "strip_hooks",
]

TORCH_DIR = os.path.dirname(torch.__file__)  # a frame in torch's own code, not the model's



def _shape(t: torch.Tensor | tuple[int, ...] | None) -> str:
    if t is None:
        return "?"
    dims = tuple(t.shape) if isinstance(t, torch.Tensor) else tuple(t)
    return format_size(dims)


def _owner(name: str) -> tuple[str, str]:
    """``"layer1.0.conv1.weight"`` -> ``("layer1.0.conv1", "weight")``."""
    mod, _, local = name.rpartition(".")
    return mod, local


# --------------------------------------------------------------------------- input mutation
@register_check(
    "input-mutated",
    "forward must not modify its input in place (tensor version counters, train and eval)",
    {
        "input-mutated": ("error", "forward modified its input tensor in place"),
    },
    order=50,
)
def check_input_mutated(ctx: Context) -> list[Finding]:
    """Watch the input's version counter during a train and an eval forward; name the module."""
    findings: list[Finding] = []
    train = ctx.train_run()
    runs = [("train", train, ctx.train_input)]
    try:
        tracer, _ = ctx.eval_runs()[0]
        if tracer.x is not None:
            runs.append(("eval", tracer, tracer.x))
    except SkipCheck:
        pass
    for mode, tracer, x in runs:
        if tracer.mutated_by is None and torch.equal(x, ctx.x):
            continue
        module = tracer.mutated_by if tracer.mutated_by is not None else ""
        with torch.no_grad():
            diff = (x.detach().float() - ctx.x.float()).abs()
            changed = float((diff > 0).float().mean())
            max_change = float(diff.max()) if diff.numel() else 0.0
        call = tracer.first_call(module)
        what = f"{call.type} " if call is not None else ""
        findings.append(make_finding(
            "input-mutated", module,
            f"forward modified its input in place in {mode} mode: the input's version counter went up by "
            f"{tracer.version_delta} during the call of {what}{module or '(model)'}; "
            f"{changed:.0%} of the input values changed (largest change {max_change:.3g})",
            "do not write into the input: use out-of-place ops (x = x * 2, F.relu(x), "
            "nn.ReLU(inplace=False) where it sees the input) or copy first (x = x.clone())",
            mode=mode, version_delta=tracer.version_delta, changed_fraction=changed, max_change=max_change,
        ))
        break  # one finding is enough: the same code mutates in both modes
    return findings


# --------------------------------------------------------------------------- determinism
def _close(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    if a is None or b is None:
        return a is b
    scale = max(abs(a[1]), abs(b[1]), 1e-12)
    return abs(a[0] - b[0]) <= 1e-6 * scale and abs(a[1] - b[1]) <= 1e-6 * scale


def first_divergence(calls_a: list[Any], calls_b: list[Any]) -> str | None:
    """Path of the first module call (in finishing order) whose output differs between two runs."""
    for ca, cb in zip(calls_a, calls_b):
        if ca.path != cb.path:
            return ca.path  # different control flow: the divergence is here
        if not _close(ca.fingerprint, cb.fingerprint):
            return ca.path
    return None


def max_output_diff(out_a: Any, out_b: Any) -> float | None:
    """Largest absolute difference between two outputs' tensors, or None when they do not pair up."""
    ta, tb = output_tensors(out_a), output_tensors(out_b)
    if len(ta) != len(tb) or any(a.shape != b.shape for a, b in zip(ta, tb)):
        return None
    worst = 0.0
    for a, b in zip(ta, tb):
        if a.numel():
            worst = max(worst, float((_real(a).double() - _real(b).double()).abs().max()))
    return worst


def _real(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as its real and imaginary parts (.double() would drop the imaginary part)."""
    t = t.detach()
    return torch.view_as_real(t) if t.is_complex() else t


def describe_divergence(ta: Any, tb: Any, out_a: Any, out_b: Any) -> tuple[str, str, float | None, str]:
    """Where two runs first differ and by how much.

    Returns the module path (or ""), a " (Type)" suffix for messages, the largest output
    difference (None when the outputs do not pair up) and that difference as text.
    """
    module = first_divergence(ta.calls, tb.calls) or ""
    diff = max_output_diff(out_a, out_b)
    call = ta.first_call(module)
    kind = f" ({call.type})" if call is not None else ""
    return module, kind, diff, "None" if diff is None else format(diff, ".3g")


def outputs_close(out_a: Any, out_b: Any) -> bool:
    ta, tb = output_tensors(out_a), output_tensors(out_b)
    if len(ta) != len(tb) or any(a.shape != b.shape for a, b in zip(ta, tb)):
        return False
    return all(
        torch.allclose(_real(a).double(), _real(b).double(), rtol=1e-5, atol=1e-6, equal_nan=True)
        for a, b in zip(ta, tb)
    )


@register_check(
    "determinism",
    "eval-mode output is the same on every call",
    {
        "nondeterministic-eval": ("error", "two eval-mode calls on the same input differ"),
    },
    order=90,
)
def check_determinism(ctx: Context) -> list[Finding]:
    """Two eval-mode calls on the same input must agree; name the first module that does not."""
    (_, out_a), (_, out_b) = ctx.eval_runs()
    if outputs_close(out_a, out_b):
        return []
    # Two more runs that fingerprint every module output name the first module that differs.
    ta, tb = ctx.fingerprinted(ctx.x.clone()), ctx.fingerprinted(ctx.x.clone())
    module, kind, diff, diff_text = describe_divergence(ta, tb, out_a, out_b)
    draw = _first_random_draw(ctx)
    if draw is not None:
        op, function, where, module = draw
        return [make_finding(
            "nondeterministic-eval", module,
            f"two eval-mode calls on the same input differ (largest output difference {diff_text}): {op} in "
            f"{function} ({where}) of {module or '(model)'} draws random numbers in eval mode",
            f"draw only in training: `if not self.training: return mu` before the sampling in {function} (or "
            "`if self.training:` around it); to sample at inference on purpose, seed a torch.Generator and pass it",
            max_output_diff=diff, op=op, function=function, where=where,
        )]
    return [make_finding(
        "nondeterministic-eval", module,
        f"two eval-mode calls on the same input differ (largest output difference "
        f"{diff_text}); the first module whose output differs is "
        f"{module or '(model)'}{kind}",
        "make eval-mode forward deterministic: register Dropout/BatchNorm as submodules so model.eval() reaches "
        "them, pass training=self.training to F.dropout, and keep random noise behind `if self.training`",
        max_output_diff=diff,
    )]


#: The doctor's own files, skipped with torch's when the user's line is looked for.
_CHECK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Ops that draw fresh random numbers into a new tensor: sampling in forward. In-place fills (``uniform_``,
#: ``normal_``) are left out: they are how a layer built in forward initialises, which has its own finding.
_RANDOM_OPS = frozenset({"randn", "randn_like", "rand", "rand_like", "randint", "randint_like", "normal",
                         "bernoulli", "native_dropout", "multinomial", "randperm", "poisson", "rrelu_with_noise"})


class _RandomDraws(TorchDispatchMode):
    """Records the first sampling op of a forward with the user's frame that called it."""

    def __init__(self, paths: dict[int, str]) -> None:
        super().__init__()
        self.paths = paths
        self.found: tuple[str, str, str, str] | None = None

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if self.found is None and func.overloadpacket.__name__ in _RANDOM_OPS:
            self.found = self._caller(f"aten.{func.overloadpacket.__name__}")
        return func(*args, **(kwargs or {}))

    def _caller(self, op: str) -> tuple[str, str, str, str]:
        return (op, *user_caller(self.paths))


def user_caller(paths: dict[int, str]) -> tuple[str, str, str]:
    """(function, file:line, module path) of the innermost frame outside torch and the doctor: the user's line
    that called the op being looked at ("forward", "", "" when there is none)."""
    frame = inspect.currentframe()
    while frame is not None:
        code = frame.f_code
        if not code.co_filename.startswith((TORCH_DIR, _CHECK_DIR)):
            owner = frame.f_locals.get("self")
            module = paths.get(id(owner), "") if isinstance(owner, nn.Module) else ""
            return code.co_name, f"{os.path.basename(code.co_filename)}:{frame.f_lineno}", module
        frame = frame.f_back
    return "forward", "", ""


def _first_random_draw(ctx: Context) -> tuple[str, str, str, str] | None:
    """(op, function, file:line, module path) of the first op that samples in an eval-mode forward, or None."""
    model = ctx.model
    paths = {id(m): n for n, m in model.named_modules()}
    mode = _RandomDraws(paths)
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), mode:
            ctx.call(model, ctx.x.clone())
    except Exception:
        pass
    finally:
        model.train(was)
    return mode.found


# --------------------------------------------------------------------------- NaN / Inf
def _all_finite(t: torch.Tensor) -> bool:
    """No NaN/Inf in ``t``: its min and max are finite (``aminmax`` is several times cheaper than ``isfinite``)."""
    with torch.no_grad():
        d = t.detach()
        lo, hi = torch.aminmax(torch.view_as_real(d) if d.is_complex() else d)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


@register_check(
    "non-finite",
    "no NaN/Inf in parameters, buffers, outputs or gradients",
    {
        "non-finite-output": ("error", "NaN or Inf in a module's output"),
        "non-finite-parameter": ("error", "NaN or Inf in a parameter or buffer"),
        "non-finite-gradient": ("error", "NaN or Inf in a parameter's gradient"),
    },
    order=40,
)
def check_non_finite(ctx: Context) -> list[Finding]:
    """NaN/Inf in parameters and buffers (static), in module outputs and in gradients (run)."""
    findings: list[Finding] = []
    bad: dict[str, list[str]] = defaultdict(list)
    for name, t in list(ctx.model.named_parameters()) + list(ctx.model.named_buffers()):
        if (t.is_floating_point() or t.is_complex()) and not t.is_meta and t.numel() and not _all_finite(t):
            n_bad = int((~torch.isfinite(t)).sum())
            mod, local = _owner(name)
            bad[mod].append(f"{local} ({n_bad} of {t.numel()})")
    for mod, tensors in bad.items():
        findings.append(make_finding(
            "non-finite-parameter", mod,
            f"NaN/Inf values in {', '.join(tensors)}",
            "re-initialise these tensors (torchsmith.init_weights) or fix the code or checkpoint that wrote them",
            tensors=tensors,
        ))
    train = ctx.train_run()
    culprit = next((c for c in train.calls if not c.finite), None)
    mode = "train"
    if culprit is None:
        try:
            culprit = next((c for c in ctx.eval_runs()[0][0].calls if not c.finite), None)
            mode = "eval"
        except SkipCheck:
            culprit = None
    if culprit is not None:
        ins = ", ".join(_shape(s) for s in culprit.in_shapes) or "no tensor"
        findings.append(make_finding(
            "non-finite-output", culprit.path,
            f"NaN/Inf first appears in the output ({_shape(culprit.out_shape)}) of {culprit.path or '(model)'} "
            f"({culprit.type}) in {mode} mode, from finite input ({ins})" if not bad else
            f"NaN/Inf in the output of {culprit.path or '(model)'} ({culprit.type}) in {mode} mode",
            "look for log/sqrt/division of values that can be zero or negative (add an epsilon, clamp) "
            "and for NaN/Inf parameters",
            mode=mode, shape=culprit.out_shape,
        ))
        return findings
    grads: dict[str, list[str]] = defaultdict(list)
    for name, p in ctx.model.named_parameters():
        if p.grad is not None and p.grad.numel() and not _all_finite(p.grad):
            mod, local = _owner(name)
            grads[mod].append(local)
    for mod, names in grads.items():
        findings.append(make_finding(
            "non-finite-gradient", mod,
            f"the forward output is finite but the gradient of {', '.join(names)} has NaN/Inf "
            "(a backward through sqrt(0), x/0, log(0) or a pow with a negative base)",
            "add an epsilon inside sqrt/log/division, or clamp the argument away from the singular point",
            tensors=names,
        ))
    return findings


# --------------------------------------------------------------------------- devices / dtypes
@register_check(
    "devices-dtypes",
    "parameters and buffers share one device and one floating dtype",
    {
        "mixed-devices": ("error", "parameters and buffers are on more than one device"),
        "mixed-dtypes": ("warning", "floating parameters and buffers have more than one dtype"),
    },
    order=10,
)
def check_devices_dtypes(ctx: Context) -> list[Finding]:
    """Parameters and buffers on one device; floating ones in one dtype."""
    findings: list[Finding] = []
    tensors = list(ctx.original.named_parameters()) + list(ctx.original.named_buffers())
    if not tensors:
        return findings
    for attr, fid in (("device", "mixed-devices"), ("dtype", "mixed-dtypes")):
        groups: dict[str, list[str]] = defaultdict(list)
        for name, t in tensors:
            if attr == "dtype" and not t.is_floating_point():
                continue  # integer buffers (num_batches_tracked, indices) are not a mix
            groups[str(getattr(t, attr))].append(name)
        if len(groups) < 2:
            continue
        majority = max(groups, key=lambda k: len(groups[k]))
        for value, names in groups.items():
            if value == majority:
                continue
            modules = sorted({_owner(n)[0] for n in names})
            findings.append(make_finding(
                fid, modules[0],
                f"{len(names)} tensor(s) are on {attr} {value} while {len(groups[majority])} are on {majority}: "
                + ", ".join(names[:6]) + (" ..." if len(names) > 6 else ""),
                f"move the whole model at once (model.to({'device' if attr == 'device' else 'dtype'})) and "
                "register every tensor as a parameter or buffer so .to() reaches it",
                **{attr: value, "majority": majority, "tensors": names, "modules": modules},  # type: ignore[arg-type]
            ))
    return findings


# --------------------------------------------------------------------------- unused parameters
@register_check(
    "unused-parameters",
    "every trainable parameter receives a gradient",
    {
        "unused-parameter": ("warning", "a trainable parameter got no gradient"),
    },
    order=60,
)
def check_unused_parameters(ctx: Context) -> list[Finding]:
    """After a train-mode backward, every trainable parameter should hold a gradient."""
    ctx.train_run()
    params = [(n, p) for n, p in ctx.model.named_parameters() if p.requires_grad]
    if not params:
        raise SkipCheck("the model has no trainable parameters")
    if all(p.grad is None for _, p in params):
        out_ok = any(t.requires_grad for t in output_tensors(ctx.train_output))
        if not out_ok:
            raise SkipCheck("no output depends on a trainable parameter, so there was no backward")
    by_module: dict[str, list[tuple[str, torch.Tensor]]] = defaultdict(list)
    for name, p in params:
        if p.grad is None:
            mod, local = _owner(name)
            by_module[mod].append((local, p))
    modules = dict(ctx.model.named_modules())
    findings = []
    for mod, items in by_module.items():
        desc = ", ".join(f"{local} {_shape(p)}" for local, p in items)
        kind = type(modules[mod]).__name__ if mod in modules else "?"
        n = sum(p.numel() for _, p in items)
        findings.append(make_finding(
            "unused-parameter", mod,
            f"{mod or '(model)'} ({kind}): {desc} got no gradient from a train-mode forward+backward "
            f"({n:,} parameters that an optimiser would never change)",
            "use the layer in forward, delete it, or freeze it on purpose with requires_grad_(False); nothing to "
            "fix if forward uses it only when given other arguments (a mask token used with bool_masked_pos)",
            parameters=[local for local, _ in items], numel=n,
        ))
    return findings


# --------------------------------------------------------------------------- hooks
_HOOK_DICTS = {
    "_forward_pre_hooks": "forward_pre", "_forward_hooks": "forward",
    "_backward_pre_hooks": "backward_pre", "_backward_hooks": "backward",
}
_GLOBAL_HOOKS = {
    "_global_forward_pre_hooks": "global_forward_pre", "_global_forward_hooks": "global_forward",
    "_global_backward_pre_hooks": "global_backward_pre", "_global_backward_hooks": "global_backward",
}


def _is_torch_machinery(hook: Any) -> bool:
    """Hooks that are part of how a model works, not leftovers: those torch utilities install (weight_norm,
    spectral_norm, pruning, lazy init) and those an installed library's code registers (transformers 5 captures
    hidden states and attentions with forward hooks; accelerate and peft install theirs)."""
    owner = getattr(hook, "__self__", hook)
    mod = type(owner).__module__ or ""
    if mod.startswith(("torch.nn.utils", "torch.ao.", "torch.nn.modules.lazy")):
        return True
    if getattr(hook, "__name__", "") == "_infer_parameters":
        return True
    return _library_code(hook)


_LIBRARY_DIRS = ("site-packages", "dist-packages")


def _library_code(hook: Any) -> bool:
    """Whether the hook's function is defined in an installed package (not in the user's own files)."""
    fn = getattr(hook, "func", hook)  # functools.partial
    fn = getattr(fn, "__func__", fn)  # a bound method
    call = vars(type(fn)).get("__call__")  # a callable object: its class's __call__
    code = getattr(fn, "__code__", None) or getattr(call, "__code__", None)
    filename = getattr(code, "co_filename", "") or ""
    if not filename:
        return False
    parts = os.path.normpath(filename).split(os.sep)
    where = next((i for i, d in enumerate(parts) if d in _LIBRARY_DIRS), None)
    if where is None or where + 1 >= len(parts):
        return False
    # torchsmith's own hooks (a capture left open) are leftovers even when torchsmith is installed as a package.
    return parts[where + 1] != "torchsmith"


def _hook_name(hook: Any) -> str:
    for attr in ("__qualname__", "__name__"):
        if hasattr(hook, attr):
            return str(getattr(hook, attr))
    return type(hook).__qualname__


def collect_hooks(model: nn.Module) -> list[UserHook]:
    """Every forward/backward hook on the model's modules and parameters, and process-wide module hooks."""
    found: list[UserHook] = []
    for path, module in model.named_modules():
        for attr, kind in _HOOK_DICTS.items():
            for hook in (getattr(module, attr, None) or {}).values():
                if not _is_torch_machinery(hook):
                    found.append(UserHook(path, kind, _hook_name(hook)))
    for name, p in model.named_parameters():
        for attr, kind in (("_backward_hooks", "tensor_grad"), ("_post_accumulate_grad_hooks", "post_accumulate")):
            for hook in (getattr(p, attr, None) or {}).values():
                found.append(UserHook(name, kind, _hook_name(hook)))
    glob = torch.nn.modules.module
    for attr, kind in _GLOBAL_HOOKS.items():
        for hook in (getattr(glob, attr, None) or {}).values():
            found.append(UserHook("", kind, _hook_name(hook)))
    return found


def hook_counts(model: nn.Module) -> dict[str, int]:
    """How many hooks that are not torch's or a library's machinery each module holds, by path."""
    counts: dict[str, int] = {}
    for path, module in model.named_modules():
        n = sum(1 for attr in _HOOK_DICTS for h in (getattr(module, attr, None) or {}).values()
                if not _is_torch_machinery(h))
        if n:
            counts[path] = n
    return counts


def strip_hooks(model: nn.Module) -> None:
    """Remove forward/backward hooks from the check's copy, so the user's hook code never runs there."""
    for module in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if hooks:
                keep = {k: h for k, h in hooks.items() if _is_torch_machinery(h)}
                hooks.clear()
                hooks.update(keep)


@register_check(
    "hooks",
    "no forward/backward hooks are left registered on the model",
    {
        "hook-left": ("warning", "a hook is still registered on the model"),
    },
    order=20,
)
def check_hooks(ctx: Context) -> list[Finding]:
    """Hooks still registered when the model is handed over are usually leftovers of a capture."""
    by_module: dict[tuple[str, bool], list[UserHook]] = defaultdict(list)
    for h in ctx.hooks:
        by_module[(h.module, h.kind.startswith("global"))].append(h)
    findings = []
    for (module, is_global), hooks in by_module.items():
        desc = ", ".join(f"{h.kind} hook {h.name}" for h in hooks)
        where = "process-wide (every module)" if is_global else (module or "(model)")
        findings.append(make_finding(
            "hook-left", module,
            f"{len(hooks)} hook(s) registered on {where}: {desc}",
            "keep the handle that register_*_hook returns and call handle.remove() when done "
            "(or use a context manager such as torchsmith's capture)",
            hooks=[f"{h.kind}:{h.name}" for h in hooks], process_wide=is_global,
        ))
    # A hook that forward registers on every call: none is there on a fresh model, so count after the runs.
    try:
        ctx.eval_runs()  # the train-mode run and two eval-mode runs: three forwards
    except SkipCheck:
        pass
    before = ctx.hook_counts
    for module, n in hook_counts(ctx.model).items():
        added = n - before.get(module, 0)
        if added > 0 and not any(f.module == module for f in findings):
            findings.append(make_finding(
                "hook-left", module,
                f"forward registers hooks on {module or '(model)'}: {added} more after three forward passes than "
                "before them, so they pile up and run again on every later call",
                "register hooks once, in __init__ or from outside the model, and keep the handle to remove them; "
                "never call register_*_hook inside forward",
                added=added, registered_by_forward=True))
    return findings
