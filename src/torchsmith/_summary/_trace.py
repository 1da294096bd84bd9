"""One forward pass under module hooks and a dispatch mode.

Module hooks give one row per module *call*; a ``TorchDispatchMode`` sees every
aten op, so functional ops (``F.linear``, matmul, attention) are counted and
attributed to the innermost module running when they ran. FLOP formulas are
torch's own (see ``_flops.py``); backward FLOPs are worked out per op, so no
backward pass runs. Identical blocks are run once and replayed (``_cache.py``).
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.utils._python_dispatch import TorchDispatchMode

from torchsmith._summary._cache import BlockCache
from torchsmith._summary._flops import FLOP_FORMULAS, op_flops
from torchsmith._summary._inputs import Namer, meta_like
from torchsmith._summary._nodynamo import dynamo_free
from torchsmith._summary.result import FlowEvent, GraphStep, LayerRow
from torchsmith.contract import fresh_lazy

__all__ = ["Trace", "meta_copy", "run_trace", "module_modes", "restore_modes", "expected_input"]

# Metadata queries and allocations: no arithmetic, so not worth listing as "not counted".
_QUIET = {
    "size", "sym_size", "stride", "sym_stride", "storage_offset", "sym_storage_offset", "numel", "sym_numel",
    "dim", "is_contiguous", "sym_is_contiguous", "is_strides_like_format", "is_non_overlapping_and_dense",
    "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like",
    "arange", "detach", "copy_", "clone", "_to_copy", "lift_fresh", "lift_fresh_copy", "new_empty",
    "new_zeros", "new_ones", "new_full", "new_empty_strided", "contiguous", "scalar_tensor", "_local_scalar_dense",
    "device",
}

#: Copies that the graph follows as the same value under a new identity (``.contiguous()`` after a permute).
_ALIAS_OPS = {"clone", "contiguous", "_to_copy", "detach", "lift_fresh", "lift_fresh_copy", "alias"}
_PLAIN = (int, float, str, bool, type(None))

_POOL_WORDS = ("pool",)
_RESHAPE_OPS = {"view", "_unsafe_view", "reshape", "flatten", "_reshape_alias", "squeeze", "unsqueeze"}


def _is_view(func: Any) -> bool:
    returns = func._schema.returns
    return bool(returns) and returns[0].alias_info is not None and not returns[0].alias_info.is_write


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (list, tuple)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


@dataclass
class _ModuleInfo:
    name: str
    type: str
    params: int
    trainable: int
    buffers: int
    leaf: bool
    note: str  # aliases and tied weights, e.g. "also decoder; tied: weight = embed.weight"
    base: str = ""  # the torch.nn class it derives from
    attrs: dict[str, Any] = field(default_factory=dict)
    param_shapes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trace:
    """Everything one pass recorded; converted into a ModelSummary by the caller."""

    namer: Namer
    rows: list[LayerRow] = field(default_factory=list)
    stand_in: bool = False  # run on zero-valued CPU stand-ins of a meta pass (_stand_in.py)
    events: list[FlowEvent] = field(default_factory=list)
    graph: list[GraphStep] = field(default_factory=list)
    uncounted: Counter[str] = field(default_factory=Counter)
    forward_flops: Any = 0
    activation_elements: Any = 0
    backward_flops: Any = 0
    replayed: int = 0  # module calls answered by the block cache
    error: BaseException | None = None
    failed_rows: list[int] = field(default_factory=list)
    expected: str | None = None  # what the innermost failing module takes, e.g. "input of shape (*, 400)"
    output: Any = None  # the described output of the model
    # Raw per-row accumulators (ints or SymInts) before rollup and naming.
    _self_flops: list[Any] = field(default_factory=list)
    _out_bytes: list[Any] = field(default_factory=list)


class _Recorder(TorchDispatchMode):
    """Counts FLOPs per aten op into the innermost module on the trace's stack."""

    def __init__(self, tracer: _Tracer, before_op: Callable[[Any, Any, Any], None] | None = None) -> None:
        super().__init__()
        self.tracer = tracer
        self.before_op = before_op  # sees each op and the FLOPs so far before it runs (_stand_in.py)

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Nothing is compiled under this mode; without this, torch wraps __torch_dispatch__ in
        # dynamo.disable, whose first call imports all of torch._dynamo (seconds, and memory).
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.before_op is not None:
            self.before_op(func, args, self.tracer.trace.forward_flops)
        packet = func._overloadpacket
        name = packet.__name__
        if name in _QUIET:
            out = func(*args, **kwargs)
            if name in _ALIAS_OPS:
                self.tracer.on_alias(name, args, out)
            return out
        if packet not in FLOP_FORMULAS and func is not torch.ops.prim.device.default:
            # Composite ops reach us whole on some backends; count through their decomposition, as torch does.
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        if packet in _SAME_DTYPE:
            _check_same_dtype(name, args)
        out = func(*args, **kwargs)
        self.tracer.on_op(func, name, packet, args, kwargs, out)
        return out


#: Matmuls whose meta kernels accept mixed dtypes that the CPU and CUDA kernels refuse (a float32 input
#: to a float16 Linear, token ids to a Linear): checked here so the summary fails where eager would.
_SAME_DTYPE = {torch.ops.aten.mm, torch.ops.aten.bmm, torch.ops.aten.addmm, torch.ops.aten.baddbmm}


def _check_same_dtype(name: str, args: Any) -> None:
    dtypes = [a.dtype for a in args[:3] if isinstance(a, torch.Tensor)]
    if len(set(dtypes)) > 1:
        names = " and ".join(str(d).removeprefix("torch.") for d in dict.fromkeys(dtypes))
        raise RuntimeError(f"aten.{name} got {names} tensors; eager PyTorch refuses mixed dtypes here: give the "
                           "input the model's dtype (input_dtype, --input-dtype) or convert the model")


class _Tracer:
    def __init__(self, model: nn.Module, namer: Namer) -> None:
        self.model = model
        self.trace = Trace(namer=namer)
        self.stack: list[int] = []
        self.modules: list[nn.Module] = []  # parallel to stack; dropped when the pass ends
        self.in_ids: dict[int, int | None] = {}  # row -> id() of its first input tensor, for the flow's branches
        self.in_tensors: dict[int, tuple[Any, ...]] = {}  # row -> (identity, shape) of each input tensor
        # Every tensor whose id() a flow event records stays alive until the trace ends: a freed
        # tensor's id can be reused by a later one, which would link unrelated steps of the flow.
        self._alive: list[torch.Tensor] = []
        self.calls: Counter[int] = Counter()
        self.info = _module_infos(model)
        self.handles: list[Any] = []

    # ---------------------------------------------------------------- hooks
    def attach(self) -> None:
        seen: set[int] = set()
        for module in self.model.modules():  # unique modules: a shared one is hooked once
            if id(module) in seen:
                continue
            seen.add(id(module))
            self.handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(module.register_forward_hook(self._post, with_kwargs=True))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        info = self.info[id(module)]
        self.calls[id(module)] += 1
        call = self.calls[id(module)]
        notes = [info.note] if info.note else []
        if call > 1:
            notes.insert(0, f"call {call}")
        t = self.trace
        row = LayerRow(
            name=info.name, type=info.type, depth=len(self.stack),
            parent=self.stack[-1] if self.stack else None,
            input_shapes=self.describe(list(args) + list(kwargs.values()) if kwargs else list(args)),
            output_shapes=None, params=info.params, trainable=info.trainable, buffers=info.buffers,
            is_leaf=info.leaf, call=call, note="; ".join(notes),
            base=info.base, attrs=info.attrs, param_shapes=info.param_shapes,
        )
        self.stack.append(len(t.rows))
        self.modules.append(module)
        t.rows.append(row)
        t._self_flops.append(0)
        t._out_bytes.append(0)
        first = _first_tensor((args, kwargs))
        row.first_input = None if first is None else self.shape(first)
        self.in_ids[len(t.rows) - 1] = None if first is None else self._ident(first)
        self.in_tensors[len(t.rows) - 1] = self.tensor_refs((args, kwargs))

    def _post(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if not self.stack:
            return
        idx = self.stack.pop()
        self.modules.pop()
        row = self.trace.rows[idx]
        row.output_shapes = self.describe(output)
        self.trace._out_bytes[idx] = sum((t.numel() * t.element_size() for t in _tensors(output)), 0)
        first = _first_tensor(output)
        self.trace.events.append(FlowEvent(
            depth=row.depth, name=row.name, kind="module", type=row.type, leaf=row.is_leaf,
            before=row.first_input, after=None if first is None else self.shape(first),
            src=self.in_ids.pop(idx, None), dst=None if first is None else self._ident(first)))
        self.trace.graph.append(GraphStep(kind="module", row=idx, name=row.name,
                                          inputs=self.in_tensors.pop(idx, ()), outputs=self.tensor_refs(output)))

    # ---------------------------------------------------------------- ops
    def on_op(self, func: Any, name: str, packet: Any, args: Any, kwargs: Any, out: Any) -> None:
        t = self.trace
        view = _is_view(func)
        if not view:
            # Every op's fresh output counts towards activation memory (an upper bound of what backward keeps).
            for o in _tensors(out):
                if o.is_floating_point():
                    t.activation_elements = t.activation_elements + o.numel()
        counted = op_flops(packet, args, kwargs, out) if packet in FLOP_FORMULAS else None
        if counted is not None:
            t.forward_flops = t.forward_flops + counted[0]
            t.backward_flops = t.backward_flops + counted[1]
            if self.stack:
                i = self.stack[-1]
                t._self_flops[i] = t._self_flops[i] + counted[0]
        elif not view:
            t.uncounted[f"aten.{name}"] += 1
        # A functional op that changes the shape of the tensor flowing through: a step of the shape flow
        # (ops inside a leaf module are that module's step).
        if not self.stack:
            return
        scope = t.rows[self.stack[-1]]
        scope.ran_ops = True
        if scope.is_leaf:
            return
        t.graph.append(GraphStep(kind="op", row=self.stack[-1], name=name, inputs=self.tensor_refs((args, kwargs)),
                                 outputs=self.tensor_refs(out), args=_plain_args(args, kwargs)))
        first_in, first_out = _first_tensor(args), _first_tensor(out)
        if first_in is not None and first_out is not None:
            before, after = self.shape(first_in), self.shape(first_out)
            if before != after:
                t.events.append(FlowEvent(depth=len(self.stack), name=_op_label(name, before, after), kind="op",
                                          type=f"aten.{name}", leaf=True, before=before, after=after,
                                          src=self._ident(first_in), dst=self._ident(first_out)))

    def on_alias(self, name: str, args: Any, out: Any) -> None:
        """A copy run directly in a non-leaf module: the graph follows the value through it."""
        if not self.stack or self.trace.rows[self.stack[-1]].is_leaf:
            return
        first_in, first_out = _first_tensor(args), _first_tensor(out)
        if first_in is None or first_out is None or first_in is first_out:
            return
        self.trace.graph.append(GraphStep(kind="alias", row=self.stack[-1], name=name,
                                          inputs=self.tensor_refs(first_in), outputs=self.tensor_refs(first_out)))

    def tensor_refs(self, obj: Any) -> tuple[tuple[Any, tuple[Any, ...]], ...]:
        """(identity, shape) of every tensor in ``obj``, for the data-flow graph."""
        return tuple((self._ident(x), self.shape(x)) for x in _tensors(obj))

    def _ident(self, t: torch.Tensor) -> int:
        self._alive.append(t)
        return id(t)

    # ---------------------------------------------------------------- shapes
    def shape(self, t: torch.Tensor) -> tuple[Any, ...]:
        # SymInts become ints or formula strings here, so comparing shapes never guards on a symbol.
        value = self.trace.namer.value
        return tuple(d if type(d) is int else value(d) for d in t.shape)

    def describe(self, obj: Any) -> Any:
        """Shapes of the tensors in ``obj``, keeping its tuple/list/dict structure; non-tensors dropped."""
        if isinstance(obj, torch.Tensor):
            return self.shape(obj)
        if isinstance(obj, (list, tuple)):
            items = [self.describe(o) for o in obj]
            items = [i for i in items if i is not None]
            if len(items) == 1 and isinstance(obj, (list, tuple)) and len(obj) == 1:
                return items
            return items or None
        if isinstance(obj, dict):
            d = {str(k): self.describe(v) for k, v in obj.items()}
            return {k: v for k, v in d.items() if v is not None} or None
        return None


def expected_input(m: nn.Module) -> str | None:
    """What a common layer takes, for error messages; None when there is nothing simple to say."""
    if isinstance(m, nn.Linear):
        return f"input of shape (*, {m.in_features})"
    if isinstance(m, nn.modules.conv._ConvNd):
        spatial = {1: "L", 2: "H, W", 3: "D, H, W"}.get(len(m.kernel_size), "...")
        return f"input of shape (B, {m.in_channels}, {spatial})"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return f"{m.num_features} channels in dim 1"
    if isinstance(m, nn.GroupNorm):
        return f"{m.num_channels} channels in dim 1"
    if isinstance(m, nn.LayerNorm):
        return f"last dims {tuple(m.normalized_shape)}"
    if isinstance(m, nn.Embedding):
        return f"integer indices below {m.num_embeddings}"
    if isinstance(m, nn.MultiheadAttention):
        return f"embedding dim {m.embed_dim}"
    return None


def _plain_args(args: Any, kwargs: Any) -> tuple[Any, ...]:
    """An op's non-tensor arguments (kernel sizes, strides, dims), tensors as None: what explain() reads."""
    def plain(v: Any) -> Any:
        if isinstance(v, _PLAIN):
            return v
        if isinstance(v, (list, tuple)) and len(v) <= 8 and all(isinstance(x, _PLAIN) for x in v):
            return tuple(v)
        return None

    return tuple(plain(a) for a in args) + tuple((k, plain(v)) for k, v in kwargs.items())


def _plain_attrs(m: nn.Module) -> dict[str, Any]:
    """A module's plain hyperparameters (stride, padding, num_heads...): values, never references."""
    out: dict[str, Any] = {}
    for k, v in vars(m).items():
        if k.startswith("_") or k == "training":
            continue
        if isinstance(v, _PLAIN) or (isinstance(v, (tuple, list)) and len(v) <= 8
                                     and all(isinstance(x, _PLAIN) for x in v)):
            out[k] = tuple(v) if isinstance(v, list) else v
        if len(out) >= 40:
            break
    return out


def _nn_base(m: nn.Module) -> str:
    """The public torch.nn class ``m`` is or derives from ("Conv2d" for a user's subclass), else ""."""
    for cls in type(m).__mro__:
        if cls is nn.Module:
            break
        if getattr(nn, cls.__name__, None) is cls:
            return cls.__name__
    return ""


def _op_label(name: str, before: tuple[Any, ...], after: tuple[Any, ...]) -> str:
    if any(w in name for w in _POOL_WORDS):
        return "pool"
    if name in _RESHAPE_OPS:
        return "flatten" if len(after) == 2 and len(before) > 2 else "reshape"
    return name


def _module_infos(model: nn.Module) -> dict[int, _ModuleInfo]:
    """Name, type, parameter counts and sharing notes of every unique module."""
    aliases: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        aliases.setdefault(id(m), []).append(name)
    first_owner: dict[int, str] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        first_owner.setdefault(id(p), pname)
    infos: dict[int, _ModuleInfo] = {}
    for name, m in model.named_modules():
        notes = []
        others = [a for a in aliases[id(m)] if a != name]
        if others:
            notes.append("shared: also " + ", ".join(others))
        for pname, p in m.named_parameters(recurse=False, remove_duplicate=False):
            full = f"{name}.{pname}" if name else pname
            owner = first_owner.get(id(p), full)
            if owner != full:
                notes.append(f"tied: {pname} = {owner}")
        params = list(m.parameters())
        infos[id(m)] = _ModuleInfo(
            name=name, type=type(m).__name__,
            params=sum(p.numel() for p in params),
            trainable=sum(p.numel() for p in params if p.requires_grad),
            buffers=sum(b.numel() for b in m.buffers()),
            leaf=next(iter(m.children()), None) is None, note="; ".join(notes),
            base=_nn_base(m), attrs=_plain_attrs(m),
            param_shapes={k: None if p is None else tuple(p.shape) for k, p in m._parameters.items()})
    return infos


# --------------------------------------------------------------------------- copies and modes
def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose tensors are on meta: no weight memory, ties kept, original untouched.

    Every parameter, buffer and plain tensor attribute is mapped to a meta tensor of the same
    shape and dtype in deepcopy's memo, so the copy never duplicates storage.
    """
    memo: dict[int, Any] = {}
    for t in itertools.chain(model.parameters(), model.buffers()):
        if id(t) not in memo and t is not None and is_lazy(t):  # nn.Lazy*: sized on meta by a dry run
            memo[id(t)] = fresh_lazy(t, "meta")
        elif id(t) not in memo and t is not None:
            m = meta_like(t)
            memo[id(t)] = nn.Parameter(m, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else m
    for module in model.modules():
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = meta_like(value)
    return copy.deepcopy(model, memo)


def module_modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


def restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    for m, training in modes:
        m.training = training


# --------------------------------------------------------------------------- the pass
def run_trace(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], namer: Namer, *,
              context: AbstractContextManager[Any] | None = None, replay: bool = False,
              before_op: Callable[[Any, Any, Any], None] | None = None) -> Trace:
    """Run ``model(*args, **kwargs)`` under hooks (removed on exit) and the counting mode.

    Grad mode is on so that ``requires_grad`` flows and backward FLOPs can be worked out;
    no backward pass runs. ``replay`` answers repeated identical blocks from a cache (only
    for a model that is ours to patch, e.g. a meta copy). A failure in the forward is stored
    in ``Trace.error`` with the rows that ran and the modules that were running
    (``failed_rows``), not raised: the caller decides what it means.
    """
    tracer = _Tracer(model, namer)
    t = tracer.trace
    cache = BlockCache(tracer, model) if replay else None
    tracer.attach()
    try:
        if cache is not None:
            cache.attach()
        # Only meta tensors reach torch's Python meta kernels (CPU stand-ins run C++ ones): see _nodynamo.py.
        on_meta = any(x.is_meta for x in _tensors((args, kwargs)))
        with context if context is not None else nullcontext(), torch.enable_grad(), \
                dynamo_free() if on_meta else nullcontext(), _Recorder(tracer, before_op):
            try:
                out = model(*args, **kwargs)
            except Exception as e:
                t.error = e
                t.failed_rows = list(tracer.stack)
                t.expected = expected_input(tracer.modules[-1]) if tracer.modules else None
                for i in t.failed_rows:
                    t.rows[i].failed = True
            else:
                t.output = tracer.describe(out)
    finally:
        tracer.detach()
        if cache is not None:
            t.replayed = cache.hits
            cache.detach()
        tracer.modules.clear()
        tracer._alive.clear()
    _rollup(t)
    return t


def _rollup(t: Trace) -> None:
    """Inclusive FLOPs: each row's own plus its children's (rows come in call order, children after parents)."""
    total = list(t._self_flops)
    for i in range(len(t.rows) - 1, -1, -1):
        p = t.rows[i].parent
        if p is not None:
            total[p] = total[p] + total[i]
    value = t.namer.value
    for i, row in enumerate(t.rows):
        row.flops = value(total[i])
        row.self_flops = value(t._self_flops[i])
        row.macs = value(total[i] // 2) if not isinstance(total[i], int) else total[i] // 2
        row.output_bytes = value(t._out_bytes[i])
