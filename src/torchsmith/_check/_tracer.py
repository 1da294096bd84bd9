"""Running a model under observation: which module ran, what it produced, what it touched.

One :class:`CheckTracer` instruments one forward pass with process-wide module hooks
(so modules the model forgot to register are seen too) and a
``TorchFunctionMode`` (so functional activations and every tensor forward
reads are seen). Everything is removed in ``finally``; the caller's model is
never touched (``check`` runs on a deep copy).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from torchsmith.contract import output_tensors

__all__ = ["Call", "CheckTracer", "ActStat", "first_tensor", "mean_std", "module_paths"]


def module_paths(model: nn.Module) -> dict[int, str]:
    """id(module) -> its dotted path; a shared module keeps the first path it is reached by."""
    return {id(m): p for p, m in model.named_modules()}


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The first floating tensor of an output, or None."""
    for t in output_tensors(obj):
        if t.is_floating_point() or t.is_complex():
            return t
    return None


def _finite(t: torch.Tensor) -> bool:
    """No NaN/Inf: min and max are finite (NaN anywhere makes both NaN); one ``aminmax``, no boolean copy."""
    if not t.numel():
        return True
    d = t.detach()
    lo, hi = torch.aminmax(torch.view_as_real(d) if d.is_complex() else d)
    return math.isfinite(float(lo)) and math.isfinite(float(hi))


def mean_std(d: torch.Tensor) -> tuple[float, float]:
    """Mean and (unbiased) std of a floating tensor with two cheap reductions (a sum and a norm).

    ``torch.std_mean`` is several times slower than a sum on CPU, and the signal statistics run on every
    module output. Where the mean dominates (E[x]^2 > 0.999 E[x^2]) the one-pass formula loses precision,
    so those rare tensors take the exact ``torch.std_mean``.
    """
    n = d.numel()
    acc = torch.float32 if d.dtype in (torch.float16, torch.bfloat16) else None
    mean = float(d.sum(dtype=acc)) / n
    square = float(torch.linalg.vector_norm(d, dtype=acc)) ** 2 / n
    var = square - mean * mean
    if n < 2:
        return mean, 0.0
    if not var > 1e-3 * square:  # cancellation (or NaN): compute it exactly
        std_t, mean_t = torch.std_mean(d.float())
        return float(mean_t), float(std_t)
    return mean, math.sqrt(var * n / (n - 1))


@dataclass
class ActStat:
    """One call of an activation function (relu, sigmoid, tanh), functional or module."""

    module: str
    func: str
    numel: int
    zero_frac: float  # exact zeros (dead ReLU)
    saturated_frac: float  # |tanh| > 0.99, sigmoid < 0.01 or > 0.99


@dataclass
class Call:
    """One module call during a traced forward, in the order the calls finished."""

    path: str  # dotted path; "<unregistered Type>" under its caller for modules the model does not own
    type: str
    registered: bool
    leaf: bool
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...] | None = None
    fingerprint: tuple[float, float] | None = None  # (sum, sum of |x|) of the first output tensor, float64
    fingerprint0: tuple[float, float] | None = None  # the same for its first sample (out[0])
    finite: bool = True
    act_mean: float | None = None
    act_std: float | None = None
    zero_frac: float | None = None
    grad_std: float | None = None
    module: nn.Module | None = field(default=None, repr=False)  # only kept for unregistered modules


_RELUS = {F.relu, torch.relu, torch.Tensor.relu, F.relu6, torch.relu_, torch.Tensor.relu_}
_SIGMOIDS = {torch.sigmoid, torch.Tensor.sigmoid, F.sigmoid}
_TANHS = {torch.tanh, torch.Tensor.tanh, F.tanh}


class _Mode(TorchFunctionMode):
    """Sees every torch function call of the forward: the tensors it reads, activation outputs."""

    def __init__(self, tracer: CheckTracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        seen = self.tracer.tensors_seen
        for a in args:
            if isinstance(a, torch.Tensor):
                seen.add(id(a))
            elif isinstance(a, (list, tuple)):
                seen.update(id(t) for t in a if isinstance(t, torch.Tensor))
        for a in kwargs.values():
            if isinstance(a, torch.Tensor):
                seen.add(id(a))
        out = func(*args, **kwargs)
        if self.tracer.stats and isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel():
            kind = "relu" if func in _RELUS else "sigmoid" if func in _SIGMOIDS else "tanh" if func in _TANHS else None
            if kind is not None:
                self.tracer.record_activation(kind, out)
        return out


class CheckTracer:
    """Instrument one forward of ``model``: module calls, outputs, statistics, input mutation.

    ``x`` is the model input whose version counter is watched; ``stats`` adds
    activation/gradient statistics (train-mode run at initialisation). Every call
    records its output shape and whether it is finite (one ``aminmax``);
    ``fingerprints`` adds float64 sums of each output, which name the first module
    where two runs differ. They cost about a forward pass more, so a check asks for
    them only after it found a difference, in a second, localising run.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor | None, *, stats: bool = False,
                 fingerprints: bool = False, held: dict[int, str] | None = None) -> None:
        self.paths = module_paths(model)
        self.held = held or {}  # id -> would-be path of modules kept in plain containers
        self.x = x
        self.stats = stats
        self.fingerprints = fingerprints
        self.calls: list[Call] = []
        self.stack: list[str] = []
        self._versions: list[int] = []
        self._shapes: list[list[tuple[int, ...]]] = []
        self.mutated_by: str | None = None  # first (innermost) module during whose call x changed
        self.version_delta = 0
        self.failed_in: str | None = None  # innermost module running when forward raised
        self.failed_shapes: list[tuple[int, ...]] = []  # the input shapes of that module's call
        self.tensors_seen: set[int] = set()
        self.activations: list[ActStat] = []
        self.unregistered: dict[int, tuple[nn.Module, str]] = {}  # id -> (module, caller path)
        self._grad_handles: list[Any] = []
        self._finite_seen: dict[int, tuple[Any, int, bool]] = {}  # id -> (weak ref, version, finite)

    # -- hooks ---------------------------------------------------------------------------
    def _path(self, module: nn.Module) -> tuple[str, bool]:
        path = self.paths.get(id(module))
        if path is not None:
            return path, True
        caller = self.stack[-1] if self.stack else ""
        if id(module) not in self.unregistered:
            self.unregistered[id(module)] = (module, caller)
        if id(module) in self.held:
            return self.held[id(module)], False
        name = f"<unregistered {type(module).__name__}>"
        return (f"{caller}.{name}" if caller else name), False

    def _pre(self, module: nn.Module, args: Any) -> None:
        path, _ = self._path(module)
        self.stack.append(path)
        self._versions.append(self.x._version if self.x is not None else 0)
        self._shapes.append([tuple(t.shape) for t in output_tensors(args)])

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self.stack:  # a module called from one of our own hooks; not part of the model
            return
        path = self.stack.pop()
        before = self._versions.pop()
        in_shapes = self._shapes.pop()
        if self.x is not None and self.x._version != before and self.mutated_by is None:
            self.mutated_by = path
            self.version_delta = self.x._version - before
        registered = id(module) in self.paths
        leaf = not any(True for _ in module.children())
        call = Call(path=path, type=type(module).__name__, registered=registered, leaf=leaf,
                    in_shapes=in_shapes, module=None if registered else module)
        t = first_tensor(output)
        if t is not None:
            call.out_shape = tuple(t.shape)
            with torch.no_grad():
                # Every floating output counts (a NaN in a tuple's second tensor, a ModelOutput's attentions).
                call.finite = all(self._finite(o) for o in output_tensors(output)
                                  if o.is_floating_point() or o.is_complex())
                d = t.detach()
                d = d.abs() if d.is_complex() else d
                if self.fingerprints:
                    # Sums accumulated in float64 without a float64 copy.
                    f64 = torch.float64
                    call.fingerprint = (float(d.sum(dtype=f64)), float(d.abs().sum(dtype=f64)))
                    if d.dim() and d.shape[0]:
                        call.fingerprint0 = (float(d[0].sum(dtype=f64)), float(d[0].abs().sum(dtype=f64)))
                if self.stats and leaf and d.numel() > 1 and call.finite:
                    call.act_mean, call.act_std = mean_std(d)
                    call.zero_frac = 1.0 - int(torch.count_nonzero(d)) / d.numel()
            if self.stats and leaf and t.requires_grad:
                self._grad_handles.append(t.register_hook(_GradRecorder(call)))
        self.calls.append(call)

    def _finite(self, t: torch.Tensor) -> bool:
        """:func:`_finite`, once per tensor: a container returns its last child's output, already scanned."""
        seen = self._finite_seen.get(id(t))
        if seen is not None and seen[0]() is t and seen[1] == t._version:  # the same live tensor, unchanged
            return seen[2]
        finite = _finite(t)
        self._finite_seen[id(t)] = (weakref.ref(t), t._version, finite)
        return finite

    def record_activation(self, kind: str, out: torch.Tensor) -> None:
        with torch.no_grad():
            d = out.detach()
            n = d.numel()
            zero = 1.0 - int(torch.count_nonzero(d)) / n
            if kind == "tanh":
                sat = float((d.abs() > 0.99).sum()) / n
            elif kind == "sigmoid":
                sat = float(((d < 0.01) | (d > 0.99)).sum()) / n
            else:
                sat = 0.0
        module = self.stack[-1] if self.stack else ""
        self.activations.append(ActStat(module=module, func=kind, numel=d.numel(), zero_frac=zero,
                                        saturated_frac=sat))

    # -- running ---------------------------------------------------------------------------
    def run(self, model: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """Call ``model(*args, **kwargs)`` under observation; re-raises what forward raises (``failed_in`` set)."""
        pre = torch.nn.modules.module.register_module_forward_pre_hook(self._pre)
        post = torch.nn.modules.module.register_module_forward_hook(self._post)
        try:
            with _Mode(self):
                return model(*args, **kwargs)
        except BaseException:
            self.failed_in = self.stack[-1] if self.stack else ""
            self.failed_shapes = self._shapes[-1] if self._shapes else []
            raise
        finally:
            pre.remove()
            post.remove()
            self._finite_seen.clear()
            self.stack.clear()
            self._versions.clear()
            self._shapes.clear()

    def remove_grad_hooks(self) -> None:
        for h in self._grad_handles:
            h.remove()
        self._grad_handles.clear()

    def first_call(self, path: str) -> Call | None:
        for c in self.calls:
            if c.path == path:
                return c
        return None


class _GradRecorder:
    """Tensor hook: keep the std of the gradient that reaches a module's output."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def __call__(self, grad: torch.Tensor) -> None:
        if grad.numel() > 1:
            with torch.no_grad():
                std = mean_std(grad.detach())[1]
            self.call.grad_std = std if math.isfinite(std) else float("inf")
