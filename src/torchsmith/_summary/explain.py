"""The arithmetic, explained: for each layer, the formula behind its output shape and its parameter count.

``summary(model).explain()`` walks the data flow the summary recorded, in call order: each
leaf module (and each functional pool, view or join in a forward) gets the formulas of its
family (``_explain_rules.py``) filled in with its own numbers, e.g. ``H_out = (32 + 2*0 -
1*(5-1) - 1)/1 + 1 = 28`` and ``params = 3*6*5*5 + 6 = 456``. Every computed shape is checked
against the traced one and every count against the layer's numel, so a mismatch shows up
instead of a wrong lesson. Residual joins say why a shortcut needs a projection; CNN layers
get their receptive field along the main path. Rendering lives in ``explain_render.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torchsmith._format import format_shape
from torchsmith._summary._explain_rules import (
    Layer,
    Window,
    Worked,
    attention_lines,
    dims_text,
    explain_layer,
    explain_pool_op,
    explain_view_op,
)
from torchsmith._summary._receptive import ReceptiveField, apply_window, start_field
from torchsmith._summary.diagram import layer_detail
from torchsmith._summary.explain_render import render_explanation
from torchsmith.errors import UnknownNameError

if TYPE_CHECKING:
    from torchsmith._summary.result import GraphStep, LayerRow, ModelSummary

__all__ = ["Explanation", "LayerExplanation", "ReceptiveField", "build_explanation"]

_INPUT = -1  # the model's input, as a step index
_UNARY_OPS = {"relu", "relu_", "gelu", "sigmoid", "tanh", "silu", "hardtanh", "hardtanh_", "leaky_relu", "elu",
              "_softmax", "_log_softmax", "native_dropout", "dropout", "hardswish", "mish"}
_JOIN_OPS = {"add", "add_", "cat", "stack"}
_HEAD_KEYS = ("num_attention_heads", "num_heads", "n_head", "n_heads", "num_attn_heads")
_HEAD_DIM_KEYS = ("attention_head_size", "head_dim", "head_size")
_Q_NAMES = {"q_proj", "query", "q", "wq", "q_lin", "to_q"}
_K_NAMES = {"k_proj", "key", "k", "wk", "k_lin", "to_k"}
_O_NAMES = {"o_proj", "out_proj", "c_proj", "dense", "out_lin", "wo", "to_out", "proj"}


@dataclass
class LayerExplanation:
    """One layer's arithmetic, with the traced shapes it is checked against."""

    name: str  # "conv1", "layer2.0 (residual add)"
    type: str  # "Conv2d", "add", "view"
    kind: str  # "module", "op", "join" or "attention"
    what: str  # "Conv2d 3→6, kernel 5x5, stride 1, padding 0, dilation 1, groups 1, bias"
    input_shape: tuple[Any, ...] | None  # traced
    output_shape: tuple[Any, ...] | None  # traced
    shape_formulas: list[str] = field(default_factory=list)
    computed_shape: tuple[Any, ...] | None = None  # None: nothing to compute (an unknown layer, symbolic dims)
    param_formulas: list[str] = field(default_factory=list)
    computed_params: int | None = None
    params: int = 0  # the layer's numel
    notes: list[str] = field(default_factory=list)
    receptive_field: ReceptiveField | None = None
    main_path: bool = False  # on the longest path from input to output (the receptive field is read along it)

    @property
    def shape_ok(self) -> bool:
        return self.computed_shape is None or tuple(self.computed_shape) == tuple(self.output_shape or ())

    @property
    def params_ok(self) -> bool:
        return self.computed_params is None or self.computed_params == self.params

    @property
    def ok(self) -> bool:
        return self.shape_ok and self.params_ok

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "kind": self.kind, "what": self.what,
                "input_shape": _list(self.input_shape), "output_shape": _list(self.output_shape),
                "shape_formulas": list(self.shape_formulas), "computed_shape": _list(self.computed_shape),
                "param_formulas": list(self.param_formulas), "computed_params": self.computed_params,
                "params": self.params, "notes": list(self.notes), "shape_ok": self.shape_ok,
                "params_ok": self.params_ok, "main_path": self.main_path,
                "receptive_field": None if self.receptive_field is None else self.receptive_field.to_dict()}


@dataclass
class Explanation:
    """The explained arithmetic of a whole model; ``str()`` for text, ``_repr_html_`` in Jupyter."""

    model: str
    input: str
    layers: list[LayerExplanation]
    notes: list[str] = field(default_factory=list)
    total_params: int | None = None  # the model's parameter count, each tensor once

    def params_sum(self) -> str:
        """The model's parameter count as the sum of its layers': "456 + 2416 + ... = 61706"."""
        seen: set[str] = set()
        counts = []
        for e in self.layers:  # a module called twice has its parameters once
            if e.kind == "module" and e.params and e.name.split(" (call ")[0] not in seen:
                seen.add(e.name.split(" (call ")[0])
                counts.append(e.params)
        total = sum(counts)
        terms = " + ".join(map(str, counts)) if len(counts) <= 12 else f"the sum over {len(counts)} layers"
        line = f"total params = {terms} = {total}"
        if self.total_params is not None and total != self.total_params:
            line += f" (the model has {self.total_params}: shared or tied weights are counted once)"
        return line

    def layer(self, name: str) -> LayerExplanation:
        """The first explained layer called ``name``."""
        for entry in self.layers:
            if entry.name == name:
                return entry
        raise UnknownNameError("explained layer", name, [e.name for e in self.layers])

    @property
    def mismatches(self) -> list[LayerExplanation]:
        """Layers whose formulas disagree with the trace (none, unless a rule is wrong for a layer)."""
        return [e for e in self.layers if not e.ok]

    @property
    def receptive_fields(self) -> list[LayerExplanation]:
        """The sliding-window layers (conv, pool) along the main path, in order, each with its field."""
        return [e for e in self.layers if e.receptive_field is not None and e.main_path
                and e.receptive_field.formula != "unchanged"]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "input": self.input, "notes": list(self.notes),
                "layers": [e.to_dict() for e in self.layers]}

    def render(self, format: str = "text") -> str:
        """``text``, ``markdown`` or ``html``."""
        return render_explanation(self, format)

    def __str__(self) -> str:
        return self.render("text")

    def _repr_html_(self) -> str:
        return self.render("html")


# --------------------------------------------------------------------------- building
def build_explanation(s: ModelSummary) -> Explanation:
    """Explain every layer of ``s`` in call order (see the module docstring)."""
    b = _ExplanationBuilder(s)
    b.walk()
    b.receptive_fields()
    notes = []
    if s.error is not None:
        notes.append(f"the forward stopped, so only the layers before it are explained: {s.error}")
    if s.symbols:
        notes.append("symbolic dims stay in the formulas; their values are not checked")
    return Explanation(model=s.model, input=s.input, layers=b.entries, notes=notes, total_params=s.total_params)


class _ExplanationBuilder:
    def __init__(self, s: ModelSummary) -> None:
        self.s = s
        self.rows = s.rows
        self.entries: list[LayerExplanation] = []
        self.entry_step: list[int] = []  # the graph step of each entry
        self.windows: dict[int, Window] = {}  # step -> its sliding window, for the receptive field
        self.end = list(range(len(self.rows)))
        for i in range(len(self.rows) - 1, -1, -1):
            p = self.rows[i].parent
            if p is not None:
                self.end[p] = max(self.end[p], self.end[i])
        self.producer: dict[Any, int] = {}  # tensor identity -> the step that made it (leaf level); -1: the input
        self.made_by: dict[int, list[int | None]] = {}  # step -> the step that made each input, when it ran
        self.module_step = {g.row: k for k, g in enumerate(s.graph) if g.kind == "module"}
        self.attention = {i for i in range(len(self.rows)) if self._is_attention(i)}

    # ---------------------------------------------------------------- walking the flow
    def walk(self) -> None:
        root = self.module_step.get(0)
        if root is not None:
            for i, _ in self.s.graph[root].inputs:
                self.producer[i] = _INPUT
        for k, g in enumerate(self.s.graph):
            row = self.rows[g.row]
            if g.kind == "module":
                if g.row in self.attention:
                    self._add(k, self._attention(g))
                elif row.is_leaf:
                    self._add(k, self._module(g))
                if row.is_leaf or g.row in self.attention:
                    self._produce(k, g)
            elif g.kind == "alias":
                for (i, _), (o, _) in zip(g.inputs, g.outputs):
                    if i in self.producer:
                        self.producer[o] = self.producer[i]
            else:
                if not self._inside_attention(g.row):
                    entry = self._op(k, g)
                    if entry is not None:
                        self._add(k, entry)
                self._produce(k, g)

    def _produce(self, k: int, g: GraphStep) -> None:
        self.made_by[k] = [self.producer.get(i) for i, _ in g.inputs]
        if {i for i, _ in g.outputs} <= {i for i, _ in g.inputs} and g.kind == "module" and not any(
                self.rows[j].ran_ops for j in range(g.row, self.end[g.row] + 1)):
            return  # Identity, an empty Sequential, eval-mode Dropout: the tensor keeps its maker
        for i, _ in g.outputs:
            self.producer[i] = k

    def _add(self, k: int, entry: LayerExplanation | None) -> None:
        if entry is not None:
            self.entries.append(entry)
            self.entry_step.append(k)

    def _layer(self, g: GraphStep) -> Layer:
        r = self.rows[g.row]
        name = r.name + (f" (call {r.call})" if r.call > 1 else "")
        return Layer(name=name, type=r.type, base=r.base, attrs=r.attrs, param_shapes=r.param_shapes,
                     in_shape=g.inputs[0][1] if g.inputs else None,
                     out_shape=g.outputs[0][1] if g.outputs else None, params=r.params)

    def _entry(self, layer: Layer, w: Worked, kind: str) -> LayerExplanation:
        return LayerExplanation(
            name=layer.name, type=layer.type, kind=kind, what=w.what or layer.type, input_shape=layer.in_shape,
            output_shape=layer.out_shape, shape_formulas=w.shape, computed_shape=w.computed,
            param_formulas=w.params, computed_params=w.computed_params, params=layer.params, notes=w.notes)

    def _module(self, g: GraphStep) -> LayerExplanation:
        layer = self._layer(g)
        w = explain_layer(layer)
        if w.window is not None:
            self.windows[len(self.entries)] = w.window
        return self._entry(layer, w, "module")

    # ---------------------------------------------------------------- functional ops
    def _op(self, k: int, g: GraphStep) -> LayerExplanation | None:
        in_shape = g.inputs[0][1] if g.inputs else None
        out_shape = g.outputs[0][1] if g.outputs else None
        scope = self.rows[g.row].name or "forward"
        layer = Layer(name=f"{scope}: {g.name}", type=g.name, base="", attrs={}, param_shapes={},
                      in_shape=in_shape, out_shape=out_shape, params=0)
        w = explain_pool_op(g.name, g.args, in_shape)
        if w is not None:
            layer.name = f"{scope}: {w.what.split(',')[0]}"
            if w.window is not None:
                self.windows[len(self.entries)] = w.window
            return self._entry(layer, w, "op")
        if in_shape is not None and out_shape is not None and tuple(in_shape) != tuple(out_shape):
            w = explain_view_op(g.name, g.args, in_shape, out_shape)
            if w is not None:
                layer.name = f"{scope}: {w.what}"
                return self._entry(layer, w, "op")
        if g.name in _JOIN_OPS:
            return self._join(k, g, scope)
        if g.name in _UNARY_OPS and in_shape is not None and tuple(in_shape) == tuple(out_shape or ()):
            name = g.name.strip("_").removeprefix("native_")
            return self._entry(Layer(name=f"{scope}: {name}", type=g.name, base="", attrs={}, param_shapes={},
                                     in_shape=in_shape, out_shape=out_shape, params=0),
                               Worked(what=f"F.{name}", shape=["shape unchanged: applied to each value"],
                                      computed=in_shape, params=["params = 0"], computed_params=0), "op")
        return None

    # ---------------------------------------------------------------- joins
    def _join(self, k: int, g: GraphStep, scope: str) -> LayerExplanation | None:
        made = [(i, sh, self.producer[i]) for i, sh in g.inputs if i in self.producer]
        if len(made) < 2:
            return None  # x + a parameter or a constant: not two paths meeting
        (_, sa, pa), (_, sb, pb) = made[0], made[1]
        out_shape = g.outputs[0][1] if g.outputs else None
        if g.name in ("cat", "stack"):
            return self._concat(g, scope, made, out_shape)
        if tuple(sa) != tuple(sb):
            return None  # a broadcast add (a mask, a bias): not a residual join
        fork, path_a, path_b = _fork(self._chain(pa), self._chain(pb))
        entry = LayerExplanation(
            name=f"{scope}: {'in-place ' if g.name.endswith('_') else ''}add", type=g.name, kind="join",
            what="residual add" if fork is not None else "add of two paths", input_shape=tuple(sa),
            output_shape=out_shape, computed_shape=tuple(sa),
            shape_formulas=[f"both inputs are {_shape(sa)}, so the sum is {_shape(sa)}"],
            param_formulas=["params = 0"], computed_params=0)
        if fork is None:
            return entry
        main, short = (path_a, path_b) if len(path_a) >= len(path_b) else (path_b, path_a)
        fork_shape = self._shape_of(fork)
        entry.shape_formulas = [f"main path: {self._path_text(main)}: {_shape(fork_shape)} -> {_shape(sa)}",
                                f"shortcut: {self._path_text(short) if short else 'identity'}: "
                                f"{_shape(fork_shape)} -> {_shape(sa)}",
                                f"add: {_shape(sa)} + {_shape(sa)} = {_shape(sa)}"]
        entry.notes.append(self._why(fork_shape, tuple(sa), short))
        return entry

    def _why(self, x: Any, y: tuple[Any, ...], short: list[int]) -> str:
        if x is None or tuple(x) == y:
            if short:
                return (f"the main path keeps the shape {_shape(y)}, so the shortcut need not change it "
                        f"({self._path_text(short)} runs on it anyway)")
            return f"the main path keeps the shape {_shape(y)}, so x is added unchanged: an identity shortcut, 0 params"
        changes = []
        if len(x) == len(y) and len(x) >= 3:
            if x[1] != y[1]:
                changes.append(f"the channels change {x[1]} -> {y[1]}")
            if tuple(x[2:]) != tuple(y[2:]):
                stride = {int(a) // int(b) for a, b in zip(x[2:], y[2:]) if isinstance(a, int) and isinstance(b, int)
                          and b}
                by = f" (stride {stride.pop()})" if len(stride) == 1 else ""
                changes.append(f"the spatial size changes {dims_text(x[2:])} -> {dims_text(y[2:])}{by}")
        what = " and ".join(changes) or f"the shape changes {_shape(x)} -> {_shape(y)}"
        if not short:
            return f"{what}, yet the shortcut is the identity: the add only works by broadcasting"
        projection = self._path_text(short, detail=True)
        params = sum(self.entries[e].params for e in self._entries_of(short))
        return (f"{what} on the main path, so x ({_shape(x)}) cannot be added to {_shape(y)} as it is: "
                f"the shortcut {projection} maps it to {_shape(y)}"
                + (f" ({params} params)" if params else " (no parameters)"))

    def _concat(self, g: GraphStep, scope: str, made: list[Any], out_shape: Any) -> LayerExplanation:
        dim = next((a for a in g.args[1:] if isinstance(a, int) and not isinstance(a, bool)), 0)
        shapes = [tuple(sh) for _, sh in g.inputs]
        entry = LayerExplanation(name=f"{scope}: {g.name}", type=g.name, kind="join", what=f"torch.{g.name} dim {dim}",
                                 input_shape=shapes[0] if shapes else None, output_shape=out_shape,
                                 param_formulas=["params = 0"], computed_params=0)
        if shapes and g.name == "cat":
            d = dim % len(shapes[0])
            sizes = [sh[d] for sh in shapes]
            if all(isinstance(v, int) for v in sizes):
                entry.shape_formulas = [f"dim {d}: {' + '.join(map(str, sizes))} = {sum(sizes)}; "
                                        "the other dims must match"]
                entry.computed_shape = (*shapes[0][:d], sum(sizes), *shapes[0][d + 1:])
        elif shapes:
            d = dim % (len(shapes[0]) + 1)
            entry.shape_formulas = [f"{len(shapes)} tensors of {_shape(shapes[0])} stacked in a new dim {d}"]
            entry.computed_shape = (*shapes[0][:d], len(shapes), *shapes[0][d:])
        return entry

    def _chain(self, k: int, limit: int = 10_000) -> list[int]:
        """The steps back from step ``k`` along each step's first made input, to the model input (-1)."""
        out = [k]
        while k != _INPUT and len(out) < limit:
            nxt = next((p for p in self.made_by.get(k, []) if p is not None), None)
            if nxt is None:
                break
            out.append(nxt)
            k = nxt
        return out

    def _shape_of(self, k: int) -> Any:
        if k == _INPUT:
            root = self.module_step.get(0)
            return None if root is None or not self.s.graph[root].inputs else tuple(self.s.graph[root].inputs[0][1])
        g = self.s.graph[k]
        return tuple(g.outputs[0][1]) if g.outputs else None

    def _entries_of(self, steps: list[int]) -> list[int]:
        return [e for e, k in enumerate(self.entry_step) if k in steps]

    def _path_text(self, steps: list[int], detail: bool = False) -> str:
        names = []
        for k in steps:
            g = self.s.graph[k]
            if g.kind == "module":
                r = self.rows[g.row]
                names.append(f"{r.name} ({' '.join(filter(None, (r.type, layer_detail(r))))})" if detail else r.name)
            else:
                names.append(g.name.rstrip("_"))
        return " -> ".join(names)

    # ---------------------------------------------------------------- attention
    def _is_attention(self, i: int) -> bool:
        r = self.rows[i]
        if r.base == "MultiheadAttention":
            return True
        return not r.is_leaf and self._heads(i) is not None

    def _projections(self, i: int) -> dict[str, LayerRow]:
        """The attention module's own weight-bearing leaf children, by their last name."""
        return {self.rows[j].name.rsplit(".", 1)[-1]: self.rows[j] for j in range(i + 1, self.end[i] + 1)
                if self.rows[j].parent == i and self.rows[j].is_leaf and "weight" in self.rows[j].param_shapes}

    def _heads(self, i: int) -> tuple[int, int | None, int | None] | None:
        """(query heads, head dim, key/value heads) from the module's attributes or its q/k projections."""
        a = self.rows[i].attrs
        proj = self._projections(i)
        if not proj:
            return None
        hd = next((a[k] for k in _HEAD_DIM_KEYS if isinstance(a.get(k), int) and a[k] > 0), None)
        q = next((proj[n] for n in _Q_NAMES if n in proj), None)
        k = next((proj[n] for n in _K_NAMES if n in proj), None)
        heads = next((a[key] for key in _HEAD_KEYS if isinstance(a.get(key), int) and a[key] > 0), None)
        if heads is None and hd and q is not None and isinstance(q.attrs.get("out_features"), int):
            heads = q.attrs["out_features"] // hd  # Llama, Mistral: heads only in the config
        if heads is None:
            return None
        kv = k.attrs["out_features"] // hd if hd and k is not None and isinstance(k.attrs.get("out_features"), int) \
            else None
        return heads, hd, kv

    def _inside_attention(self, row: int) -> bool:
        r: int | None = row
        while r is not None:
            if r in self.attention:
                return True
            r = self.rows[r].parent
        return False

    def _attention(self, g: GraphStep) -> LayerExplanation:
        layer = self._layer(g)
        r = self.rows[g.row]
        if r.base == "MultiheadAttention":
            return self._entry(layer, explain_layer(layer), "attention")
        a = r.attrs
        heads, hd, kv = self._heads(g.row) or (1, None, None)
        x = layer.in_shape or ()
        e = x[-1] if x else None
        if hd is None and isinstance(e, int):
            hd = e // heads
        w = Worked(what=f"{r.type}: {heads} heads of {hd}")
        if len(x) >= 2 and hd is not None:
            w.shape = attention_lines(x[0], x[-2], x[-2], e, heads, hd)
            if kv is not None and kv != heads:  # grouped-query attention (Llama, Mistral)
                t = x[-2]
                w.shape[1] = (f"Q = x W_q: ({t}, {heads * hd}) split into {heads} heads ({heads}, {t}, {hd}); "
                              f"K, V = x W_k, x W_v: ({t}, {kv * hd}) each, {kv} heads ({kv}, {t}, {hd}), each "
                              f"shared by {heads}/{kv} = {heads // kv} query heads (grouped-query attention)")
            out = next((p for n, p in self._projections(g.row).items() if n in _O_NAMES), None)
            width = (out.attrs.get("out_features") if out is not None else None) or a.get("all_head_size") \
                or a.get("embed_dim") or heads * hd
            w.computed = (*x[:-1], width)
        kids = [j for j in range(g.row + 1, self.end[g.row] + 1)
                if self.rows[j].parent == g.row and self.rows[j].is_leaf and self.rows[j].params]
        parts = [f"{self.rows[j].name.rsplit('.', 1)[-1]} {self.rows[j].params}" for j in kids]
        total = sum(self.rows[j].params for j in kids)
        if parts:
            w.params = [f"params = {' + '.join(parts)} = {total} (the projections; attention itself has none)"]
            w.computed_params = total
        w.notes.append("softmax(Q K^T / sqrt(head_dim)) weighs every position against every other; dividing by "
                       f"sqrt({hd}) keeps the scores' scale independent of the head size")
        return self._entry(layer, w, "attention")

    # ---------------------------------------------------------------- receptive field
    def receptive_fields(self) -> None:
        """Propagate (size, jump, start) through the flow; a join keeps its larger input's field."""
        if not self.windows:
            return
        by_step = {k: e for e, k in enumerate(self.entry_step)}
        fields: dict[Any, ReceptiveField] = {}
        step_fields: dict[int, ReceptiveField] = {}
        for k, g in enumerate(self.s.graph):
            e = by_step.get(k)
            if g.kind == "alias":
                for (i, _), (o, _) in zip(g.inputs, g.outputs):
                    if i in fields:
                        fields[o] = fields[i]
                continue
            if e is None and not (g.kind == "op" and not self._inside_attention(g.row)):
                continue
            ins = [fields[i] for i, _ in g.inputs if i in fields]
            rf_in = max(ins, key=lambda f: math.prod(f.size)) if ins else None
            window = self.windows.get(e) if e is not None else None
            out_rank = len(g.outputs[0][1]) if g.outputs else 0
            if window is not None:
                rf_in = rf_in or start_field(len(window.kernel))
                rf = apply_window(rf_in, window)
            elif rf_in is not None and out_rank >= len(rf_in.size) + 2:
                rf = ReceptiveField(rf_in.size, rf_in.jump, rf_in.start, "unchanged")
            else:
                continue
            for i, _ in g.outputs:
                fields[i] = rf
            step_fields[k] = rf
            if e is not None:
                self.entries[e].receptive_field = rf
        self._main_path(step_fields)

    def _main_path(self, fields: dict[int, ReceptiveField]) -> None:
        """Back from the output, always to the input with the widest field (the longer branch of a join)."""
        root = self.module_step.get(0)
        if root is None or not self.s.graph[root].outputs:
            return
        by_step = {k: e for e, k in enumerate(self.entry_step)}
        k = self.producer.get(self.s.graph[root].outputs[0][0])
        seen: set[int] = set()
        while k is not None and k != _INPUT and k not in seen:
            seen.add(k)
            if k in by_step:
                self.entries[by_step[k]].main_path = True
            made = [p for p in self.made_by.get(k, []) if p is not None]
            k = max(made, key=lambda p: math.prod(fields[p].size) if p in fields else 0, default=None)


def _fork(a: list[int], b: list[int]) -> tuple[int | None, list[int], list[int]]:
    """Where two chains back from a join meet, and the steps of each branch after it (in forward order)."""
    seen_b = {k: n for n, k in enumerate(b)}
    for n, k in enumerate(a):
        if k in seen_b:
            return k, a[:n][::-1], b[:seen_b[k]][::-1]
    return None, [], []


def _shape(shape: Any) -> str:
    return "?" if shape is None else format_shape(shape)


def _list(shape: Any) -> Any:
    return None if shape is None else list(shape)
