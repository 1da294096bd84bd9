"""The result of :func:`torchsmith.summary`: plain data, no references to the model.

A :class:`ModelSummary` holds one :class:`LayerRow` per module call, the totals,
the memory estimate and the shape flow; rendering lives in ``render.py``.
Numbers are ints, or formula strings (``"18816*B"``) when the input had symbolic dims.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from torchsmith._summary.diagram import Diagram, build_diagram
from torchsmith._summary.explain import Explanation, build_explanation
from torchsmith._summary.render import render_summary, rich_summary
from torchsmith.html.summary import summary_html

__all__ = ["LayerRow", "FlowEvent", "GraphStep", "MemoryEstimate", "ModelSummary", "Num", "format_flow_shape"]

Num = int | str  # a count, or a formula in the input's symbolic dims


@dataclass
class LayerRow:
    """One call of one module."""

    name: str  # dotted path ("" for the model itself); a shared module keeps its first name
    type: str
    depth: int  # 0 for the model, 1 for its children, ...
    parent: int | None  # index of the calling module's row
    input_shapes: Any  # shapes of the tensors passed in, keeping list/tuple/dict structure
    output_shapes: Any
    params: int  # parameters of the module and its children, each tensor once
    trainable: int
    buffers: int  # buffer elements
    is_leaf: bool
    call: int = 1  # 2 for the second call of the same module, ...
    note: str = ""  # "call 2", "shared: also x", "tied: weight = embed.weight"
    failed: bool = False  # the forward raised while this module was running
    flops: Num = 0  # FLOPs of this call, children included
    self_flops: Num = 0  # FLOPs of ops run directly by this module
    macs: Num = 0  # multiply-accumulates (flops // 2 for matmul/conv/attention)
    output_bytes: Num = 0
    first_input: Any = field(default=None, repr=False)  # shape of the first input tensor, for the flow
    # What the explanation needs from the module itself (summaries keep no reference to the model):
    base: str = field(default="", repr=False)  # the torch.nn class it derives from ("Conv2d" for a subclass)
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)  # plain hyperparameters (stride, padding...)
    param_shapes: dict[str, Any] = field(default_factory=dict, repr=False)  # own parameters; None: absent bias
    ran_ops: bool = field(default=False, repr=False)  # an op ran in it (False: Identity, eval-mode Dropout)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("first_input", "base", "attrs", "param_shapes", "ran_ops"):
            d.pop(key)
        return d


@dataclass
class FlowEvent:
    """A step of the shape flow: a module call or a shape-changing functional op."""

    depth: int
    name: str
    kind: str  # "module" or "op"
    type: str
    leaf: bool  # a module with no children, or an op run outside any leaf module
    before: tuple[Any, ...] | None
    after: tuple[Any, ...] | None
    src: Any = None  # identity of the input tensor (to tell a residual branch from the main path)
    dst: Any = None  # identity of the output tensor


@dataclass
class GraphStep:
    """A node of the data-flow graph: a module call, or an op run directly in a non-leaf module's forward.

    Tensors are ``(identity, shape)`` pairs; identities link a step's outputs to later steps' inputs
    (an in-place op such as ``out += shortcut`` outputs the identity it took in). ``kind`` "alias" is
    a copy (``contiguous``, ``clone``, ``.to``): its output is its input under a new identity.
    """

    kind: str  # "module", "op" or "alias"
    row: int  # the module call's row ("module"), or the row of the module whose forward ran the op
    name: str  # dotted module name, or the aten op ("add_", "cat", "view")
    inputs: tuple[tuple[Any, tuple[Any, ...]], ...]
    outputs: tuple[tuple[Any, tuple[Any, ...]], ...]
    args: tuple[Any, ...] = ()  # an op's plain (non-tensor) arguments: kernel sizes, dims


@dataclass
class MemoryEstimate:
    """Bytes needed for a chosen dtype.

    ``activations`` is what a train-mode forward saves for backward, once per storage (a parameter that an
    op saves included), counted on fake tensors as :func:`torchsmith.memory` counts it; the peak of a
    training step is :func:`torchsmith.memory`'s ``peak``.
    """

    dtype: str
    parameters: int
    buffers: int
    gradients: int
    sgd_momentum: int  # one state tensor per trainable parameter
    adam_state: int  # exp_avg and exp_avg_sq
    activations: Num
    inputs: Num

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelSummary:
    """Everything :func:`torchsmith.summary` found out about a model; render with ``str()`` or ``render()``."""

    model: str  # "LeNet (lenet)"
    input: str  # "(1, 3, 32, 32)"
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    buffer_elements: int
    forward_flops: Num
    forward_macs: Num
    training_flops: Num  # forward + backward (backward worked out per op from what needs a gradient)
    uncounted_ops: dict[str, int]
    memory: MemoryEstimate
    ran_on: str  # "meta", "fake tensors" or "real tensors (batch 1)"
    symbols: dict[str, int] = field(default_factory=dict)  # symbolic dim -> the value it was traced with
    notes: list[str] = field(default_factory=list)
    output_shapes: Any = None
    events: list[FlowEvent] = field(default_factory=list, repr=False)
    graph: list[GraphStep] = field(default_factory=list, repr=False)  # data flow, for diagram() and explain()
    error: str | None = None  # set on a partial summary: why the forward stopped
    failed_module: str | None = None
    depth: int | None = 3  # default depth of render() and str()

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    # ------------------------------------------------------------------ flow
    def flow(self, depth: int | None = None) -> str:
        """The one-line shape flow, e.g. ``32x32x3 -> conv1 -> 28x28x6 -> pool -> 14x14x6 -> ...``.

        Shapes drop the batch dim and show images as HxWxC, as the classic tutorial does.
        ``depth`` stops at modules of that depth (their insides are one step).
        """
        if not self.rows or self.rows[0].first_input is None:
            return ""
        d = float("inf") if depth is None else depth
        current = self.rows[0].first_input
        parts = [format_flow_shape(current)]
        visible = [ev for ev in self.events if ev.before is not None and ev.after is not None and ev.depth > 0 and (
            (ev.depth == d or (ev.leaf and ev.depth < d)) if ev.kind == "module" else ev.depth <= d)]
        side = _side_branches(visible)
        for i, ev in enumerate(visible):
            before, after_shape = tuple(ev.before or ()), tuple(ev.after or ())
            if i in side or before != tuple(current) or after_shape == tuple(current):
                continue
            after = format_flow_shape(after_shape)
            if ev.name == "flatten":
                parts.append(f"flatten {after}")
            elif len(before) == 2 and len(after_shape) == 2:
                parts.append(after)  # feature vector -> feature vector (a Linear): the size says it all
            else:
                parts += [ev.name, after]
            current = ev.after
        return " -> ".join(parts)

    # ------------------------------------------------------------------ export
    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "input": self.input, "ran_on": self.ran_on, "symbols": self.symbols,
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params, "buffer_elements": self.buffer_elements,
            "forward_flops": self.forward_flops, "forward_macs": self.forward_macs,
            "training_flops": self.training_flops,
            "uncounted_ops": dict(self.uncounted_ops), "memory": self.memory.to_dict(),
            "output_shapes": self.output_shapes, "flow": self.flow(), "notes": list(self.notes),
            "error": self.error, "failed_module": self.failed_module,
            "layers": [r.to_dict() for r in self.rows],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def render(self, format: str = "text", depth: int | None | str = "default", collapse: bool = True) -> str:
        """``text`` (aligned plain text), ``markdown``, ``csv`` or ``json``; ``depth=None`` shows every row."""
        d = self.depth if depth == "default" else depth
        return render_summary(self, format=format, depth=d, collapse=collapse)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return self.render("text")

    def __rich__(self) -> Any:
        return rich_summary(self, depth=self.depth)

    def _repr_html_(self) -> str:
        return summary_html(self)

    # ------------------------------------------------------------------ picture and arithmetic
    def diagram(self, depth: int | None | str = "default", *, collapse: bool = True) -> Diagram:
        """The network as a graph of modules and joining ops, edges labelled with shapes: a ``Diagram``.

        ``depth`` is the deepest module level drawn (deeper modules are one box); ``collapse``
        draws a chain of identical blocks as one box "BasicBlock x3".
        """
        return build_diagram(self, depth=self.depth if depth == "default" else depth, collapse=collapse)  # type: ignore[arg-type]

    def explain(self) -> Explanation:
        """For each layer, the formula behind its output shape and its parameter count: an ``Explanation``."""
        return build_explanation(self)


def _side_branches(events: list[FlowEvent]) -> set[int]:
    """Steps that start a side branch: the same tensor also feeds a longer chain of steps.

    A ResNet block feeds its input to the 1x1 shortcut conv and to conv1; the flow follows
    conv1, whose chain (conv1, bn1, relu, conv2, bn2) is the longer one.
    """
    chain = [1] * len(events)
    later: dict[Any, list[int]] = {}
    for i in range(len(events) - 1, -1, -1):
        ev = events[i]
        nxt = [j for j in later.get(ev.dst, []) if j != i]
        chain[i] = 1 + max((chain[j] for j in nxt), default=0)
        if ev.src is not None:
            later.setdefault(ev.src, []).insert(0, i)
    side: set[int] = set()
    for users in later.values():
        # An in-place step (or an Identity) returns its input, so it continues a path, not a branch.
        branches = [j for j in users if events[j].src != events[j].dst]
        if len(branches) > 1:
            best = max(chain[j] for j in branches)
            side.update(j for j in branches if chain[j] < best)
    return side


def format_flow_shape(shape: Any) -> str:
    """Batch dim dropped; (C, H, W) shown as HxWxC, anything else in order: (1, 6, 28, 28) -> 28x28x6."""
    dims = [str(d) for d in tuple(shape)[1:]]
    if not dims:
        return "scalar" if not shape else str(shape[0])
    if len(dims) == 3:
        dims = [dims[1], dims[2], dims[0]]
    return "x".join(d if d.replace("_", "").isalnum() else f"({d})" for d in dims)
