"""Run each distinct block once: a cache of module calls keyed by structure and input shapes.

A 65B-parameter decoder is 80 copies of one block. On the meta device every op still
costs Python time, so the 79 later calls are answered from the first: the rows, flow
steps and FLOPs it recorded are replayed under the new names, and its output is a fresh
meta tensor of the recorded shape, dtype, strides and ``requires_grad``. A module is
cached only when nothing in it is shared with the rest of the model, it has no hooks of
its own, and its state (types, plain attributes, tensor shapes) and inputs match exactly;
anything unusual (an attribute that is an arbitrary object) is keyed by identity, which
simply means no reuse. Only ever applied to a copy that torchsmith owns.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from typing import Any

import torch
from torch import nn

__all__ = ["BlockCache"]

_MODULE_INTERNALS = frozenset(vars(nn.Module())) | {"forward"}
_SIMPLE = (int, float, str, bool, type(None), torch.dtype, torch.device)


class _NoKey(Exception):
    """Raised while building a key for a value the cache cannot reason about."""


def _value_key(v: Any) -> Any:
    if isinstance(v, _SIMPLE):
        return v
    if isinstance(v, torch.Tensor):
        return ("T", _dims(v.shape), _dims(v.stride()), v.dtype, v.requires_grad, v.device.type)
    if type(v) in (tuple, list):
        return (type(v).__name__, *(_value_key(x) for x in v))
    if type(v) is dict:
        return ("dict", *((k, _value_key(x)) for k, x in v.items()))
    raise _NoKey


def _dims(dims: Any) -> tuple[Any, ...]:
    return tuple(str(d) if isinstance(d, torch.SymInt) else d for d in dims)


def _attr_key(v: Any) -> Any:
    """A module attribute: plain values by value, tensors by shape, anything else by identity."""
    try:
        return _value_key(v)
    except _NoKey:
        return ("id", id(v))


def _state_key(module: nn.Module) -> tuple[Any, ...]:
    parts: list[Any] = []
    for name, sub in module.named_modules():
        attrs = tuple(sorted((k, _attr_key(v)) for k, v in vars(sub).items() if k not in _MODULE_INTERNALS))
        tensors = tuple((k, _attr_key(t)) for k, t in (*sub._parameters.items(), *sub._buffers.items()))
        parts.append((name, type(sub), sub.training, attrs, tensors))
    return tuple(parts)


def _out_spec(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return ("T", tuple(out.shape), tuple(out.stride()), out.dtype, out.requires_grad, out.device)
    if isinstance(out, (int, float, str, bool, type(None))):
        return ("V", out)
    if type(out) in (tuple, list):
        specs = [_out_spec(o) for o in out]
        return None if any(s is None for s in specs) else (type(out).__name__, specs)
    if type(out) is dict:
        named = {k: _out_spec(o) for k, o in out.items()}
        return None if any(s is None for s in named.values()) else ("dict", named)
    return None


def _contiguous(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides: list[int] = []
    step = 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


def _materialize(spec: Any) -> Any:
    kind = spec[0]
    if kind == "T":
        _, shape, stride, dtype, rg, device = spec
        if device.type != "meta" and stride == _contiguous(shape):
            t = torch.zeros(shape, dtype=dtype, device=device)  # CPU stand-ins (_stand_in.py): zeros, not garbage
        else:
            t = torch.empty_strided(shape, stride, dtype=dtype, device=device)
        # clone: a non-leaf, as a real output is, so in-place ops after it (ReLU(inplace=True)) are allowed.
        return t.requires_grad_().clone() if rg else t
    if kind == "V":
        return spec[1]
    if kind == "dict":
        return {k: _materialize(s) for k, s in spec[1].items()}
    items = [_materialize(s) for s in spec[1]]
    return tuple(items) if kind == "tuple" else items


@dataclasses.dataclass
class _Entry:
    name: str
    depth: int
    own: int  # row index of the recorded call
    first: int  # index of its first child row
    rows: list[Any]
    self_flops: list[Any]
    out_bytes: list[Any]
    events: list[Any]
    d_forward: Any
    d_backward: Any
    d_activation: Any
    d_self: Any
    d_uncounted: Counter[str]
    out: Any
    graph: list[Any] = dataclasses.field(default_factory=list)  # data-flow steps inside the call
    io_ids: tuple[list[Any], list[Any]] = ([], [])  # identities of the recorded call's inputs and outputs
    returns_input: int | None = None  # the recorded call returned this argument itself


def _rename(name: str, old: str, new: str) -> str:
    if name == old:
        return new
    if name.startswith(old + "."):
        return new + name[len(old):]
    return name


class BlockCache:
    """Patches ``forward`` of every eligible module of ``model`` (a copy torchsmith owns)."""

    def __init__(self, tracer: Any, model: nn.Module) -> None:
        self.tracer = tracer
        self.entries: dict[Any, _Entry] = {}
        self.hits = 0
        self.patched: list[nn.Module] = []
        self.eligible = _eligible(model)  # computed before any hook of ours is attached
        self.model = model

    def attach(self) -> None:
        for m in self.model.modules():
            if m is self.model or id(m) not in self.eligible or "forward" in vars(m):
                continue
            m.forward = functools.partial(self._call, m, m.forward)  # type: ignore[method-assign]
            self.patched.append(m)

    def detach(self) -> None:
        for m in self.patched:
            vars(m).pop("forward", None)
        self.patched.clear()
        self.entries.clear()

    def _call(self, module: nn.Module, forward: Any, *args: Any, **kwargs: Any) -> Any:
        tr = self.tracer
        t = tr.trace
        if not tr.stack or tr.modules[-1] is not module:
            return forward(*args, **kwargs)  # called as .forward() directly: no row to attach to
        try:
            key = (_state_key(module), _value_key(args), _value_key(kwargs), torch.is_grad_enabled())
        except _NoKey:
            return forward(*args, **kwargs)
        own = tr.stack[-1]
        entry = self.entries.get(key)
        if entry is not None:
            self.hits += 1
            return self._replay(entry, own, (*args, *kwargs.values()))
        r0, e0, g0 = len(t.rows), len(t.events), len(t.graph)
        before = (t.forward_flops, t.backward_flops, t.activation_elements, t._self_flops[own], Counter(t.uncounted))
        out = forward(*args, **kwargs)
        spec = _out_spec(out)
        # A module that hands back its input (Identity, eval-mode Dropout, an in-place ReLU) replays as the
        # same: the caller's tensor, not a fresh one, so the data flow keeps that it is the same value.
        given = (*args, *kwargs.values())
        same = next((n for n, a in enumerate(given) if isinstance(out, torch.Tensor) and out is a), None)
        if spec is not None:
            self.entries[key] = _Entry(
                name=t.rows[own].name, depth=t.rows[own].depth, own=own, first=r0,
                rows=t.rows[r0:], self_flops=t._self_flops[r0:], out_bytes=t._out_bytes[r0:], events=t.events[e0:],
                d_forward=t.forward_flops - before[0], d_backward=t.backward_flops - before[1],
                d_activation=t.activation_elements - before[2], d_self=t._self_flops[own] - before[3],
                d_uncounted=t.uncounted - before[4], out=spec, graph=t.graph[g0:], returns_input=same,
                io_ids=([i for i, _ in tr.in_tensors.get(own, ())], [i for i, _ in tr.tensor_refs(out)]))
        return out

    def _replay(self, e: _Entry, own: int, given: tuple[Any, ...]) -> Any:
        t = self.tracer.trace
        row = t.rows[own]
        base = len(t.rows)
        shift = row.depth - e.depth
        for k, r in enumerate(e.rows):
            parent = own if r.parent == e.own else base + (r.parent - e.first)
            t.rows.append(dataclasses.replace(r, name=_rename(r.name, e.name, row.name), depth=r.depth + shift,
                                              parent=parent))
            t._self_flops.append(e.self_flops[k])
            t._out_bytes.append(e.out_bytes[k])
        for ev in e.events:  # tensor identities salted per replay, so copies never link to the original's
            t.events.append(dataclasses.replace(ev, name=_rename(ev.name, e.name, row.name), depth=ev.depth + shift,
                                                src=("replay", self.hits, ev.src), dst=("replay", self.hits, ev.dst)))
        t.forward_flops = t.forward_flops + e.d_forward
        t.backward_flops = t.backward_flops + e.d_backward
        t.activation_elements = t.activation_elements + e.d_activation
        t._self_flops[own] = t._self_flops[own] + e.d_self
        row.ran_ops = row.ran_ops or t.rows[e.own].ran_ops
        t.uncounted.update(e.d_uncounted)
        out = given[e.returns_input] if e.returns_input is not None else _materialize(e.out)
        # Data-flow steps: the recorded call's inputs and outputs become this call's, the rest salted.
        ids = dict(zip(e.io_ids[0], [i for i, _ in self.tracer.in_tensors.get(own, ())]))
        ids.update(zip(e.io_ids[1], [i for i, _ in self.tracer.tensor_refs(out)]))

        def ref(pairs: Any) -> Any:
            return tuple((ids.get(i, ("replay", self.hits, i)), shape) for i, shape in pairs)

        for g in e.graph:
            t.graph.append(dataclasses.replace(g, row=own if g.row == e.own else base + (g.row - e.first),
                                               name=_rename(g.name, e.name, row.name) if g.kind == "module" else g.name,
                                               inputs=ref(g.inputs), outputs=ref(g.outputs)))
        return out


def _eligible(model: nn.Module) -> set[int]:
    """Modules whose whole subtree is theirs alone (no shared module or tensor) and carries no hooks."""
    module_uses = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    tensor_uses = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    tensor_uses.update(id(b) for _, b in model.named_buffers(remove_duplicate=False))
    ok: dict[int, bool] = {}

    def check(m: nn.Module) -> bool:
        if id(m) in ok:
            return ok[id(m)]
        good = (module_uses[id(m)] == 1
                and not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                         or getattr(m, "_backward_pre_hooks", None))
                and not isinstance(m, torch.jit.ScriptModule)
                and all(tensor_uses[id(p)] == 1 for p in m._parameters.values() if p is not None)
                and all(tensor_uses[id(b)] == 1 for b in m._buffers.values() if b is not None))
        for child in m.children():
            good = check(child) and good
        ok[id(m)] = good
        return good

    check(model)
    return {k for k, v in ok.items() if v}
