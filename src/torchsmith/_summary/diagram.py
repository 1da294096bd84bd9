"""A picture of the network: the data-flow graph of a :class:`ModelSummary` at a chosen depth.

Nodes are the module calls at that depth (a deeper module is inside its box), leaf modules
above it, and the ops a non-leaf module's own forward runs: ``out += self.shortcut(x)``,
``torch.cat``, ``x.view(-1, 400)``, ``F.relu``. An edge carries a tensor from the step that
made it to each step that takes it, labelled with its shape (batch dim dropped, ``6x28x28``).
A chain of identical blocks folds into one box, "BasicBlock x3"; an expanded block keeps its
first copy drawn and folds the rest. Built from the steps the summary recorded, with no model
and no tracing; drawing lives in ``diagram_render.py``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchsmith._format import format_shape
from torchsmith._summary.diagram_render import html_fragment, save_diagram, to_dot, to_html, to_mermaid, to_svg
from torchsmith.errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from torchsmith._summary.result import GraphStep, LayerRow, ModelSummary

__all__ = ["Diagram", "DiagramNode", "DiagramEdge", "build_diagram", "format_shape", "layer_detail"]

#: Ops that only rearrange a tensor: a chain of them is drawn as one node.
_SHAPE_OPS = {"view", "_unsafe_view", "reshape", "_reshape_alias", "permute", "transpose", "t", "expand",
              "unsqueeze", "squeeze", "flatten", "unflatten", "split", "split_with_sizes", "chunk", "slice",
              "select", "unbind", "narrow"}
_OP_NAMES = {"_unsafe_view": "view", "_reshape_alias": "reshape", "max_pool2d_with_indices": "max_pool2d",
             "max_pool1d_with_indices": "max_pool1d", "max_pool3d_with_indices": "max_pool3d",
             "_softmax": "softmax", "_safe_softmax": "softmax", "_log_softmax": "log_softmax", "bmm": "matmul",
             "mm": "matmul",
             "convolution": "conv", "addmm": "linear", "native_layer_norm": "layer_norm", "_to_copy": "to",
             "_scaled_dot_product_flash_attention_for_cpu": "attention",
             "_scaled_dot_product_efficient_attention": "attention",
             "_scaled_dot_product_flash_attention": "attention", "native_dropout": "dropout"}


def op_label(name: str, before: Any = None, after: Any = None) -> str:
    """The readable name of an aten op: ``add_`` -> "add", ``view`` to 2 dims -> "flatten"."""
    base = _OP_NAMES.get(name, name)
    if base in ("view", "reshape") and before is not None and after is not None and len(after) == 2 \
            and len(before) > 2:
        return "flatten"
    return base[:-1] if base.endswith("_") and not base.startswith("_") else base


@dataclass
class DiagramNode:
    id: str
    kind: str  # "input", "output", "module" or "op"
    name: str  # "conv1", "layer1.0-2", "add"
    type: str  # "Conv2d", "BasicBlock", "add_"
    count: int = 1  # identical blocks folded into this node
    detail: str = ""  # "3→6, 5x5"
    rows: tuple[int, ...] = ()  # the summary rows it stands for
    step: int | None = None  # index of its step in ModelSummary.graph
    inplace: bool = False

    @property
    def label(self) -> str:
        """Its text: the name, then the type with the count and details ("BasicBlock x3")."""
        if self.kind in ("input", "output"):
            return self.name
        if self.kind == "op":
            return self.name + (" (in place)" if self.inplace else "")
        second = self.type + (f" x{self.count}" if self.count > 1 else "")
        if self.detail:
            second += f" {self.detail}"
        return f"{self.name}\n{second}" if self.name else second


@dataclass
class DiagramEdge:
    src: str
    dst: str
    shape: tuple[Any, ...]

    @property
    def label(self) -> str:
        return format_shape(self.shape)


@dataclass
class Diagram:
    """The network as nodes and shape-labelled edges; ``.svg()``, ``.mermaid()``, ``.save(path)`` draw it.

    In Jupyter it shows itself as a picture.
    """

    title: str
    nodes: list[DiagramNode]
    edges: list[DiagramEdge]
    depth: int | None = None
    notes: list[str] = field(default_factory=list)

    def node(self, name: str) -> DiagramNode:
        """The node named ``name`` (first match), e.g. ``d.node("conv1")``."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise UnknownNameError("diagram node", name, [n.name for n in self.nodes])

    def inputs_of(self, node_id: str) -> list[DiagramEdge]:
        return [e for e in self.edges if e.dst == node_id]

    def outputs_of(self, node_id: str) -> list[DiagramEdge]:
        return [e for e in self.edges if e.src == node_id]

    # ------------------------------------------------------------------ drawing
    def mermaid(self) -> str:
        """Mermaid flowchart text: GitHub and Jupyter (``display(Markdown(...))``) draw it."""
        return to_mermaid(self)

    def dot(self) -> str:
        """Graphviz DOT text."""
        return to_dot(self)

    def svg(self, engine: str = "auto") -> str:
        """A standalone SVG: laid out by graphviz's ``dot`` where installed, else by grandalf.

        ``engine`` is "auto", "dot" or "grandalf".
        """
        return to_svg(self, engine=engine)

    def html(self, engine: str = "auto") -> str:
        """A self-contained HTML page with the SVG inline (nothing fetched when opened)."""
        return to_html(self, engine=engine)

    def save(self, path: str | Path, engine: str = "auto") -> Path:
        """Write ``.svg``, ``.png``, ``.html``, ``.mmd`` (mermaid) or ``.dot``, chosen by the suffix, atomically."""
        return save_diagram(self, Path(path), engine=engine)

    def _repr_svg_(self) -> str:
        return self.svg()

    def _repr_html_(self) -> str:
        return html_fragment(self)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "depth": self.depth, "notes": list(self.notes),
                "nodes": [{**asdict(n), "label": n.label} for n in self.nodes],
                "edges": [{**asdict(e), "label": e.label} for e in self.edges]}

    def __str__(self) -> str:
        return self.mermaid()


# --------------------------------------------------------------------------- building
def build_diagram(s: ModelSummary, depth: int | None = 3, collapse: bool = True) -> Diagram:
    """The diagram of ``s`` down to module depth ``depth`` (None: every leaf module)."""
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ConfigError(f"depth must be an int, 0 or more (or None for every level), not {depth!r}")
    if not s.rows or not s.graph:
        raise ConfigError(f"the summary of {s.model} recorded no data flow to draw (it was made by an older "
                          "torchsmith, or the forward did not run); summarise the model again")
    builder = _DiagramBuilder(s, float("inf") if depth is None else depth, collapse)
    builder.assign_rows()
    builder.walk_steps()
    builder.prune()
    builder.merge_shape_ops()
    title = f"{s.model}, input {s.input}"
    notes = [] if s.error is None else [f"the forward stopped: {s.error}"]
    order = {"input": -1, "output": len(s.graph)}
    nodes = sorted(builder.nodes.values(), key=lambda n: order.get(n.id, n.step if n.step is not None else 0))
    return Diagram(title=title, nodes=nodes, edges=builder.edge_list(), depth=depth,
                   notes=notes)


class _DiagramBuilder:
    def __init__(self, s: ModelSummary, depth: float, collapse: bool) -> None:
        self.s = s
        self.rows = s.rows
        self.depth = depth
        self.collapse = collapse
        self.children: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(self.rows):
            if r.parent is not None:
                self.children[r.parent].append(i)
        self.end = list(range(len(self.rows)))  # last row of each row's subtree
        for i in range(len(self.rows) - 1, -1, -1):
            p = self.rows[i].parent
            if p is not None:
                self.end[p] = max(self.end[p], self.end[i])
        self.step_of: dict[int, GraphStep] = {g.row: g for g in s.graph if g.kind == "module"}
        self.owner: dict[int, str | None] = {}  # row -> the node standing for it; None: drawn expanded
        self.heads: dict[str, int] = {}  # node -> the row whose step gives its inputs
        self.like: dict[int, int] = {}  # head of folded copies -> the expanded copy they repeat
        self.nodes: dict[str, DiagramNode] = {}
        self.ids = itertools.count()
        self.edges: dict[tuple[str, str, tuple[Any, ...]], DiagramEdge] = {}

    # ---------------------------------------------------------------- rows -> nodes
    def assign_rows(self) -> None:
        fold: dict[int, tuple[int, int]] = {}  # member row -> (head row, count) for the head
        for i, r in enumerate(self.rows):
            p = r.parent
            if p is not None and self.owner.get(p) is not None:
                self.owner[i] = self.owner[p]  # inside a box
                continue
            if i in fold and fold[i][0] != i:
                self.owner[i] = self.owner[fold[i][0]]
                continue
            if r.depth < self.depth and not r.is_leaf and i not in fold:
                self.owner[i] = None
                if self.collapse:
                    fold.update(self._runs(i))
                continue
            count = fold[i][1] if i in fold else 1
            nid = f"n{next(self.ids)}"
            last = self.rows[max((m for m, (h, _) in fold.items() if h == i), default=i)]
            name = _range_name(r.name, last.name) if count > 1 else r.name
            if r.call > 1:
                name += f" (call {r.call})"
            detail = f"as {self.rows[self.like[i]].name}" if i in self.like else layer_detail(r)
            self.nodes[nid] = DiagramNode(id=nid, kind="module", name=name, type=r.type, count=count,
                                          detail=detail, rows=(i,))
            self.owner[i] = nid
            self.heads[nid] = i

    def _runs(self, parent: int) -> dict[int, tuple[int, int]]:
        """Chains of identical consecutive children: member -> (head, count)."""
        kids = self.children.get(parent, [])
        out: dict[int, tuple[int, int]] = {}
        j = 0
        while j < len(kids):
            k = j
            while k + 1 < len(kids) and self._same(kids[k], kids[k + 1]) and self._feeds(kids[k], kids[k + 1]):
                k += 1
            run = kids[j:k + 1]
            first = self.rows[run[0]]
            drawn_whole = first.depth >= self.depth or first.is_leaf
            if drawn_whole and len(run) >= 2:
                out.update({m: (run[0], len(run)) for m in run})
            elif not drawn_whole and len(run) >= 2:  # the first copy drawn expanded, the rest as one box
                out.update({m: (run[1], len(run) - 1) for m in run[1:]})
                self.like[run[1]] = run[0]
            j = k + 1
        return out

    def _signature(self, i: int) -> tuple[Any, ...]:
        r = self.rows[i]
        inner = tuple((self.rows[j].type, self.rows[j].depth - r.depth, repr(self.rows[j].output_shapes))
                      for j in range(i + 1, self.end[i] + 1))
        return (r.type, r.params, repr(r.input_shapes), repr(r.output_shapes), inner)

    def _same(self, a: int, b: int) -> bool:
        return self._signature(a) == self._signature(b)

    def _feeds(self, a: int, b: int) -> bool:
        ga, gb = self.step_of.get(a), self.step_of.get(b)
        return ga is not None and gb is not None and bool({i for i, _ in ga.outputs} & {i for i, _ in gb.inputs})

    # ---------------------------------------------------------------- steps -> edges
    def walk_steps(self) -> None:
        producer: dict[Any, str] = {}
        root = self.step_of.get(0)
        self.nodes = {"input": DiagramNode(id="input", kind="input", name="input", type="input"), **self.nodes}
        # A forward that stopped never finished the model's own call: its first step took the input.
        feed = root if root is not None else (self.s.graph[0] if self.s.graph else None)
        if feed is not None:
            for i, _ in feed.inputs:
                producer[i] = "input"
            shapes = ", ".join(dict.fromkeys(format_shape(sh) for _, sh in feed.inputs))
            self.nodes["input"].name = f"input {shapes}" if shapes else "input"
        for k, g in enumerate(self.s.graph):
            owner = self.owner.get(g.row)
            if g.kind == "module":
                if owner is None:
                    continue  # drawn expanded: its insides are the nodes
                node = self.nodes[owner]
                if self.heads.get(owner) == g.row:
                    if self._passthrough(g):
                        del self.nodes[owner]  # Identity, eval-mode Dropout: the edge goes straight through
                        continue
                    node.step = k
                    node.inplace = {i for i, _ in g.outputs} <= {i for i, _ in g.inputs}
                    self._link(producer, g, owner)
                    for i, _ in g.outputs:
                        producer[i] = owner
                elif self.heads.get(owner) is not None and self.rows[g.row].parent == \
                        self.rows[self.heads[owner]].parent and not self._passthrough(g):
                    for i, _ in g.outputs:  # a folded copy: its outputs come out of the one box
                        producer[i] = owner
                else:
                    self._inner(producer, g, owner)
            elif owner is not None:
                self._inner(producer, g, owner)
            elif g.kind == "alias":
                src = next((producer[i] for i, _ in g.inputs if i in producer), None)
                if src is not None:
                    for i, _ in g.outputs:
                        producer[i] = src
            else:
                nid = f"n{next(self.ids)}"
                before = g.inputs[0][1] if g.inputs else None
                after = g.outputs[0][1] if g.outputs else None
                self.nodes[nid] = DiagramNode(
                    id=nid, kind="op", name=op_label(g.name, before, after), type=g.name, rows=(g.row,), step=k,
                    inplace=g.name.endswith("_") and not g.name.startswith("_"))
                self._link(producer, g, nid)
                for i, _ in g.outputs:
                    producer[i] = nid
        if root is None:
            return  # the forward stopped: no output to draw
        self.nodes["output"] = DiagramNode(id="output", kind="output", name="output", type="output")
        if root is not None:
            for i, shape in root.outputs:
                if i in producer:
                    self._edge(producer[i], "output", shape)

    def _inner(self, producer: dict[Any, str], g: GraphStep, owner: str) -> None:
        # A step hidden in a box: tensors it makes come out of that box (its own inputs keep their maker).
        for i, _ in g.outputs:
            producer.setdefault(i, owner)

    def _passthrough(self, g: GraphStep) -> bool:
        if not {i for i, _ in g.outputs} <= {i for i, _ in g.inputs}:
            return False
        return not any(self.rows[j].ran_ops for j in range(g.row, self.end[g.row] + 1))

    def _link(self, producer: dict[Any, str], g: GraphStep, dst: str) -> None:
        for i, shape in g.inputs:
            if i in producer:
                self._edge(producer[i], dst, shape)

    def _edge(self, src: str, dst: str, shape: tuple[Any, ...]) -> None:
        if src != dst:
            self.edges.setdefault((src, dst, tuple(shape)), DiagramEdge(src, dst, tuple(shape)))

    # ---------------------------------------------------------------- tidying
    def prune(self) -> None:
        """Drop ops off the path to the output (mask arithmetic, ids made from constants)."""
        succ: dict[str, set[str]] = defaultdict(set)
        pred: dict[str, set[str]] = defaultdict(set)
        for src, dst, _ in self.edges:
            succ[src].add(dst)
            pred[dst].add(src)
        starts = [n for n, node in self.nodes.items() if node.kind in ("input", "module")]
        fwd = _reach(starts, succ)
        back = _reach(["output"], pred) if pred.get("output") else set(self.nodes)
        keep = {n for n, node in self.nodes.items() if node.kind != "op" or (n in fwd and n in back)}
        self._keep(keep)

    def merge_shape_ops(self) -> None:
        """A chain of view/permute/transpose becomes one node: "view, permute"."""
        changed = True
        while changed:
            changed = False
            for nid, node in list(self.nodes.items()):
                if node.kind != "op" or node.type not in _SHAPE_OPS:
                    continue
                ins = [e for e in self.edges.values() if e.dst == nid]
                if len(ins) != 1:
                    continue
                src = self.nodes.get(ins[0].src)
                if src is None or src.kind != "op" or src.type not in _SHAPE_OPS:
                    continue
                if sum(1 for e in self.edges.values() if e.src == src.id) != 1:
                    continue
                if node.name not in src.name.split(", "):
                    src.name = f"{src.name}, {node.name}"
                for e in list(self.edges.values()):
                    if e.src == nid:
                        self._edge(src.id, e.dst, e.shape)
                self._keep(set(self.nodes) - {nid})
                changed = True
                break

    def _keep(self, keep: set[str]) -> None:
        self.nodes = {n: node for n, node in self.nodes.items() if n in keep}
        self.edges = {k: e for k, e in self.edges.items() if e.src in keep and e.dst in keep}

    def edge_list(self) -> list[DiagramEdge]:
        return list(self.edges.values())


def _reach(starts: list[str], nxt: dict[str, set[str]]) -> set[str]:
    seen = set(starts)
    todo = list(starts)
    while todo:
        for m in nxt.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _range_name(first: str, last: str) -> str:
    """"layer1.0", "layer1.2" -> "layer1.0-2"."""
    a, b = first.split("."), last.split(".")
    if len(a) == len(b) and a[:-1] == b[:-1]:
        return ".".join(a[:-1] + [f"{a[-1]}-{b[-1]}"])
    return f"{first} .. {last}"


def layer_detail(r: LayerRow) -> str:
    """A layer's defining numbers: "3→6, 5x5" for a conv, "400→120" for a linear."""
    if not (r.is_leaf or r.base):
        return ""  # a model's or block's own attributes (LeNet.num_features) are not its shape
    a = r.attrs
    if "in_channels" in a and "kernel_size" in a:
        k = "x".join(str(x) for x in a["kernel_size"]) if isinstance(a["kernel_size"], tuple) else a["kernel_size"]
        stride = a.get("stride")
        s = "" if stride in (1, (1,), (1, 1), (1, 1, 1), None) else f" /{_one(stride)}"
        return f"{a['in_channels']}→{a['out_channels']}, {k}{s}"
    if "in_features" in a and "out_features" in a:
        return f"{a['in_features']}→{a['out_features']}"
    if "num_embeddings" in a and "embedding_dim" in a:
        return f"{a['num_embeddings']}x{a['embedding_dim']}"
    if "num_features" in a:
        return str(a["num_features"])
    if "normalized_shape" in a:
        return "x".join(str(x) for x in a["normalized_shape"])
    if "num_groups" in a and "num_channels" in a:
        return f"{a['num_groups']} groups, {a['num_channels']}"
    if "kernel_size" in a:
        stride = a.get("stride")
        return f"{_one(a['kernel_size'])}" + (f" /{_one(stride)}" if stride not in (None, a["kernel_size"]) else "")
    return ""


def _one(v: Any) -> str:
    if isinstance(v, tuple):
        return str(v[0]) if len(set(v)) == 1 else "x".join(str(x) for x in v)
    return str(v)
