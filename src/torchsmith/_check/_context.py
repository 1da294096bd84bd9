"""The state one ``check`` shares between its checks: the copy, the input, the traced runs.

The expensive runs (a train-mode forward+backward with statistics, two eval
forwards) happen once, on first use, and every check reads them. They record
shapes, finiteness and statistics only; a check that finds two runs differ asks
:meth:`Context.fingerprinted` for the runs that name the first module that differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchsmith._check._tracer import CheckTracer
from torchsmith._check.registry import get_finding
from torchsmith._check.report import Finding
from torchsmith.contract import InputSpec, ModelInputs, output_tensors
from torchsmith.errors import describe_error

__all__ = ["Context", "SkipCheck", "UserHook", "make_finding", "BATCH", "QUOTE_LIMIT"]

BATCH = 2  # samples in every probe batch: the smallest that BatchNorm accepts in train mode
QUOTE_LIMIT = 300  # characters of a caught error a finding or a skip reason quotes (describe_error's limit)


class SkipCheck(Exception):
    """Raised by a check that cannot run on this model; the reason goes to ``report.skipped``."""


@dataclass
class UserHook:
    """One hook found on the model before the check stripped its copy."""

    module: str
    kind: str  # "forward_pre", "forward", "backward", "backward_pre", "tensor_grad", "global_forward", ...
    name: str  # qualified name of the hook function


def make_finding(id: str, module: str, message: str, fix: str, severity: str | None = None,
                 **observed: Any) -> Finding:
    """A :class:`Finding` with the severity its id was registered with unless given."""
    sev = severity or get_finding(id).severity
    return Finding(id=id, severity=sev, module=module, message=message, fix=fix,  # type: ignore[arg-type]
                   observed={k: _plain(v) for k, v in observed.items()})


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (torch.Size,)):
        return list(v)
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


@dataclass
class Context:
    """The model copy, its probe input and the runs every check shares."""

    model: nn.Module  # a deep copy; the user's model is never run
    original: nn.Module  # the user's model, read only (for fresh-instance construction)
    input_size: tuple[int, ...]
    device: torch.device
    dtype: torch.dtype
    seed: int = 0
    token_range: int | None = None  # token-id input in [0, token_range) for models that start with an Embedding
    spec: InputSpec | None = None  # the contract's reading of the input (fixed size, where it came from)
    inputs: ModelInputs | None = None  # every input when forward takes several; the probe varies the first
    lazy_modules: set[str] = field(default_factory=set)  # paths of nn.Lazy* modules, sized by the first batch
    hook_counts: dict[str, int] = field(default_factory=dict)  # user hooks per module before any check ran
    # (would-be path, owner, object) of what the copy holds unregistered before any run: what forward itself
    # caches in plain attributes later (a list of past outputs) is not the model's state.
    unregistered_at_start: list[tuple[str, str, Any]] = field(default_factory=list)
    hooks: list[UserHook] = field(default_factory=list)
    layer_stats: list[Any] = field(default_factory=list)  # filled by the signal check
    held: dict[int, str] = field(default_factory=dict)  # id -> would-be path of modules in plain containers
    # Gradients after one small training step (signal.py's init-symmetry asks, rarely): computed once.
    after_a_step: dict[str, torch.Tensor | None] | None = None
    # The shared runs, made on first use (not constructor arguments): the probe batch, the train-mode run
    # (its tracer, output and input, or the exception of its forward and the module it came from) and the
    # two eval-mode runs (or why they failed).
    _x: torch.Tensor | None = field(default=None, init=False, repr=False)
    _train: CheckTracer | None = field(default=None, init=False, repr=False)
    _train_out: Any = field(default=None, init=False, repr=False)
    _x_train: torch.Tensor | None = field(default=None, init=False, repr=False)
    _train_error: BaseException | None = field(default=None, init=False, repr=False)
    _failed_in: str = field(default="", init=False, repr=False)
    _evals: list[tuple[CheckTracer, Any]] | None = field(default=None, init=False, repr=False)
    _eval_error: str | None = field(default=None, init=False, repr=False)

    def make_input(self, size: tuple[int, ...] | None = None, batch: int = BATCH, seed: int = 0) -> torch.Tensor:
        """A standard-normal batch (batch, *size), or token ids for a token model; reproducible."""
        if self.spec is not None:
            spec = dataclasses.replace(self.spec, size=tuple(size or self.input_size))
            return spec.example(batch, seed=self.seed + seed, device=self.device, dtype=self.dtype)
        g = torch.Generator().manual_seed(self.seed + seed)
        shape = (batch, *(size or self.input_size))
        if self.token_range is not None:
            return torch.randint(0, self.token_range, shape, generator=g).to(self.device)
        x = torch.randn(shape, generator=g, dtype=torch.float32)
        return x.to(device=self.device, dtype=self.dtype)

    def call_args(self, x: torch.Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``(args, kwargs)`` that call the model with ``x`` as its first input and the other inputs (when it
        takes several) drawn for ``x``'s batch size: the same values for the same batch size every time."""
        if self.inputs is None or self.inputs.single:
            return (x,), {}
        args, kwargs = self.inputs.example(x.shape[0], seed=self.seed + 1000, device=self.device, dtype=self.dtype)
        if self.inputs.keyword:
            return (), {**kwargs, self.inputs.names[0]: x}
        return (x, *args[1:]), {}

    def call(self, model: nn.Module, x: torch.Tensor, tracer: CheckTracer | None = None) -> Any:
        """``model`` called on ``x`` and the other inputs (see :meth:`call_args`), through ``tracer`` if given."""
        args, kwargs = self.call_args(x)
        return tracer.run(model, *args, **kwargs) if tracer is not None else model(*args, **kwargs)

    def tracer(self, x: torch.Tensor | None, **kwargs: Any) -> CheckTracer:
        """A tracer for the copy that names unregistered modules by where they are held."""
        return CheckTracer(self.model, x, held=self.held, **kwargs)

    @property
    def x(self) -> torch.Tensor:
        """The probe batch every check starts from (made once)."""
        if self._x is None:
            self._x = self.make_input()
        return self._x

    @property
    def train_ran(self) -> bool:
        """Whether a check asked for the train-mode run (it happened, or its forward failed)."""
        return self._train is not None or self._train_error is not None

    # -- the train-mode run: forward + backward with statistics ---------------------------
    def train_run(self) -> CheckTracer:
        """Forward + backward in train mode at initialisation, traced; raises SkipCheck if forward fails."""
        if not self.train_ran:
            self._do_train_run()
        if self._train_error is not None:
            raise SkipCheck("the forward failed (see the error above)")
        assert self._train is not None
        return self._train

    def forward_error(self) -> tuple[BaseException, str] | None:
        """The exception of the train-mode forward and the module it came from, or None."""
        if not self.train_ran:
            self._do_train_run()
        if self._train_error is None:
            return None
        return self._train_error, self._failed_in

    def _do_train_run(self) -> None:
        model = self.model
        model.train()
        model.zero_grad(set_to_none=True)
        x = self.x.clone()
        tracer = self.tracer(x, stats=True)
        self._x_train = x
        try:
            out = self.call(model, x, tracer)
        except Exception as e:
            self._train_error = e
            self._failed_in = tracer.failed_in or ""
            tracer.remove_grad_hooks()
            return
        try:
            loss = self.probe_loss(out)
            if loss is not None:
                loss.backward()
        finally:
            tracer.remove_grad_hooks()
        self._train = tracer
        self._train_out = out

    def probe_loss(self, out: Any) -> torch.Tensor | None:
        """The loss every backward of the checks uses: a fixed random projection of the outputs, or None.

        Unlike ``.sum()`` it gives every output element a gradient even after softmax/normalisation (whose
        sum is constant). Complex outputs (an FFT head) count by their real and imaginary parts: without
        them every parameter looked unused.
        """
        outs = [(t, torch.view_as_real(t) if t.is_complex() else t) for t in output_tensors(out)
                if (t.is_floating_point() or t.is_complex()) and t.requires_grad]
        if not outs:
            return None
        g = torch.Generator().manual_seed(self.seed + 99)
        loss = sum(
            (r.float() * torch.randn(r.shape, generator=g).to(r.device)).sum() / max(o.shape[0], 1)
            if o.dim() else r.float().sum()
            for o, r in outs
        )
        return loss  # type: ignore[return-value]

    @property
    def train_input(self) -> torch.Tensor:
        """The batch the train-mode run took (raises SkipCheck if its forward failed)."""
        self.train_run()
        assert self._x_train is not None
        return self._x_train

    @property
    def train_output(self) -> Any:
        """What the train-mode forward returned (raises SkipCheck if it failed)."""
        self.train_run()
        return self._train_out

    # -- two eval-mode runs on the same input ------------------------------------------------
    def eval_runs(self) -> list[tuple[CheckTracer, Any]]:
        """Two traced eval-mode forwards on the same input (no grad); raises SkipCheck if forward fails."""
        if self._eval_error is not None:
            raise SkipCheck(self._eval_error)
        if self._evals is None:
            self.train_run()  # the same failure would repeat; report it once
            self.model.eval()
            runs = []
            try:
                for _ in range(2):
                    x = self.x.clone()
                    tracer = self.tracer(x)
                    with torch.no_grad():
                        out = self.call(self.model, x, tracer)
                    runs.append((tracer, out))
            except Exception as e:
                self._eval_error = f"the eval-mode forward failed: {describe_error(e, QUOTE_LIMIT)}"
                raise SkipCheck(self._eval_error) from e
            finally:
                self.model.train()
            self._evals = runs
        return self._evals

    def fingerprinted(self, x: torch.Tensor, model: nn.Module | None = None) -> CheckTracer:
        """An eval-mode forward (no grad) of the copy, or of ``model``, that fingerprints every module output.

        Only for naming where two runs differ, after a check found that they do: it costs about twice a
        plain forward. A forward that raises leaves the calls made so far in the tracer.
        """
        model = self.model if model is None else model
        was = model.training
        model.eval()
        tracer = CheckTracer(model, x, held=self.held if model is self.model else None, fingerprints=True)
        try:
            with torch.no_grad():
                self.call(model, x, tracer)
        except Exception:
            pass
        finally:
            model.train(was)
        return tracer
