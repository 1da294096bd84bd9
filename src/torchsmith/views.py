"""Structural views of a model: the module tree, and its parameters, buffers and hooks.

These are the four things the classic tutorial inspects by hand through
``named_modules()``, ``named_parameters()``, ``named_buffers()`` and forward hooks.
Each view returns plain data (a :class:`TableView` of dataclass records, or a
:class:`ModuleNode` tree); rendering is separate and never prints.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_mod

from torchsmith._format import render_table
from torchsmith._meta import check_materialized
from torchsmith.html.views import table_view_html, tree_html

__all__ = ["ModuleNode", "module_tree", "format_tree", "count_parameters", "TableView", "ParamInfo",
           "BufferInfo", "HookInfo", "param_view", "buffer_view", "hook_view", "tree_to_dict",
           "check_materialized"]


@dataclass
class ModuleNode:
    """One module of the tree: its own parameters and those of everything below it."""

    name: str  # attribute name under its parent ("" for the root)
    path: str  # full dotted path ("" for the root)
    type: str
    own_params: int
    total_params: int
    children: list[ModuleNode] = field(default_factory=list)
    shared_with: str | None = None  # path of the first place this module appears, if reused

    def _repr_html_(self) -> str:
        return tree_html(self)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model``, each shared (tied) tensor counted once.

    Args:
        model: The module.
        trainable_only: Count only parameters with ``requires_grad``.

    Returns:
        The number of parameter elements.

    Raises:
        SummaryError: The model has ``nn.Lazy*`` layers that have not run yet (their shapes are unknown).
    """
    check_materialized(model, doing="counting its parameters")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def module_tree(model: nn.Module) -> ModuleNode:
    """The module tree of ``model``; shared submodules appear once in full, later as references.

    Args:
        model: The module.

    Returns:
        The root node; ``str()`` draws the tree, and in a notebook it draws itself as HTML.

    Raises:
        SummaryError: The model has ``nn.Lazy*`` layers that have not run yet (their shapes are unknown).
    """
    check_materialized(model)
    seen_modules: dict[int, str] = {}
    seen_params: set[int] = set()

    def build(module: nn.Module, name: str, path: str) -> ModuleNode:
        node = ModuleNode(name=name, path=path, type=type(module).__name__, own_params=0, total_params=0)
        if id(module) in seen_modules:
            node.shared_with = seen_modules[id(module)]
            return node
        seen_modules[id(module)] = path
        for p in module.parameters(recurse=False):
            if id(p) not in seen_params:
                seen_params.add(id(p))
                node.own_params += p.numel()
        node.total_params = node.own_params
        # _modules, not named_children(): that skips a module seen twice, hiding the sharing.
        for child_name, child in module._modules.items():
            if child is None:
                continue
            child_node = build(child, child_name, f"{path}.{child_name}" if path else child_name)
            node.children.append(child_node)
            node.total_params += child_node.total_params
        return node

    return build(model, "", "")


def format_tree(root: ModuleNode, title: str | None = None, max_depth: int | None = None) -> str:
    """Plain-text rendering of a module tree with per-module parameter counts and the total."""
    rows: list[tuple[str, str, str]] = []

    def walk(node: ModuleNode, prefix: str, is_last: bool, depth: int) -> None:
        if depth == 0:
            label = title or node.type
        else:
            label = prefix + ("└─ " if is_last else "├─ ") + f"{node.name}"
        if node.shared_with is not None:
            rows.append((label, node.type, f"shared with {node.shared_with or '(root)'}"))
            return
        rows.append((label, node.type if depth else "", f"{node.total_params:,}"))
        if max_depth is not None and depth >= max_depth:
            return
        child_prefix = "" if depth == 0 else prefix + ("   " if is_last else "│  ")
        for i, child in enumerate(node.children):
            walk(child, child_prefix, i == len(node.children) - 1, depth + 1)

    walk(root, "", True, 0)
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    lines = [f"{a.ljust(w0)}  {b.ljust(w1)}  {c.rjust(w2)}".rstrip() for a, b, c in rows]
    lines.append(f"Total parameters: {root.total_params:,}")
    return "\n".join(lines)


def tree_to_dict(node: ModuleNode) -> dict[str, Any]:
    """The tree as nested dicts (for ``--format json``)."""
    return asdict(node)


# --------------------------------------------------------------------------- table views
@dataclass
class TableView:
    """A list of records (dataclasses) with a title; ``render()`` gives text, markdown, csv or json."""

    title: str
    records: list[Any]
    empty: str = "(none)"  # what text/markdown say when there are no records

    def columns(self) -> list[str]:
        if self.records:
            return [f.name for f in fields(self.records[0])]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "records": [asdict(r) for r in self.records]}

    def render(self, format: str = "text") -> str:
        if format == "json":
            return json.dumps(self.to_dict(), indent=2, default=str)
        cols = self.columns()
        if not cols:
            return self.empty if format == "csv" else f"{self.title}\n{self.empty}"
        cell = _raw_cell if format == "csv" else _cell
        rows = [[cell(getattr(r, c)) for c in cols] for r in self.records]
        right = [i for i, c in enumerate(cols) if c in _NUMERIC]
        table = render_table(cols, rows, format, right=right)
        if format == "csv":
            return table
        return (f"**{self.title}**\n\n" if format == "markdown" else f"{self.title}\n") + table

    def __str__(self) -> str:
        return self.render("text")

    def _repr_html_(self) -> str:
        return table_view_html(self)


_NUMERIC = {"numel", "mean", "std", "min", "max", "zeros"}


def _raw_cell(v: Any) -> str:
    """csv cells: full precision, no thousands separators."""
    return "" if v is None else _cell(v) if isinstance(v, tuple) else str(v)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, tuple):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


@dataclass
class ParamInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    numel: int
    mean: float | None  # None when the weights are not real (meta) or not floating point
    std: float | None
    device: str
    tied_to: str  # the first name of a tensor shared under several names, else ""


@dataclass
class BufferInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    persistent: bool  # saved in state_dict
    device: str


@dataclass
class HookInfo:
    module: str  # dotted path ("" for the model, "(global)" for hooks on every module, "param x" for tensors)
    kind: str  # forward, forward_pre, backward, backward_pre, state_dict, ...
    hook: str  # qualified name of the callable
    id: int  # the handle id, as torch stores it


def _stats(t: torch.Tensor) -> tuple[float | None, float | None]:
    # Complex tensors too get None: .double() would silently keep only the real part.
    if t.is_meta or not t.is_floating_point() or t.numel() == 0:
        return None, None
    with torch.no_grad():
        x = t.detach().double()
        return float(x.mean()), float(x.std()) if t.numel() > 1 else 0.0


def param_view(model: nn.Module) -> TableView:
    """Every named parameter: shape, dtype, requires_grad, numel and (real weights only) mean and std.

    Args:
        model: The module.

    Returns:
        A table, one row per parameter (tied ones once); ``str()`` renders it, a notebook shows HTML.

    Raises:
        SummaryError: The model has ``nn.Lazy*`` layers that have not run yet (their shapes are unknown).
    """
    check_materialized(model)
    first: dict[int, str] = {}
    records = []
    for name, p in model.named_parameters(remove_duplicate=False):
        tied = first.setdefault(id(p), name)
        mean, std = _stats(p) if tied == name else (None, None)
        records.append(ParamInfo(name=name, shape=tuple(p.shape), dtype=str(p.dtype).removeprefix("torch."),
                                 requires_grad=p.requires_grad, numel=p.numel(), mean=mean, std=std,
                                 device=str(p.device), tied_to="" if tied == name else tied))
    total = sum(p.numel() for p in model.parameters())
    return TableView(f"Parameters of {type(model).__name__}: {total:,} (each shared tensor once)", records)


def buffer_view(model: nn.Module) -> TableView:
    """Every named buffer and whether it is persistent (saved in ``state_dict``).

    Args:
        model: The module.

    Returns:
        A table, one row per buffer; ``str()`` renders it, a notebook shows HTML.

    Raises:
        SummaryError: The model has ``nn.Lazy*`` layers that have not run yet (their shapes are unknown).
    """
    check_materialized(model)
    records = []
    for mod_name, m in model.named_modules():
        for name, b in m.named_buffers(recurse=False):
            if b is None:
                continue
            full = f"{mod_name}.{name}" if mod_name else name
            records.append(BufferInfo(name=full, shape=tuple(b.shape), dtype=str(b.dtype).removeprefix("torch."),
                                      numel=b.numel(), persistent=name not in m._non_persistent_buffers_set,
                                      device=str(b.device)))
    return TableView(f"Buffers of {type(model).__name__}", records)


#: Module attribute holding each kind of hook.
_HOOK_DICTS = (
    ("forward_pre", "_forward_pre_hooks"), ("forward", "_forward_hooks"),
    ("backward_pre", "_backward_pre_hooks"), ("backward", "_backward_hooks"),
    ("state_dict_pre", "_state_dict_pre_hooks"), ("state_dict", "_state_dict_hooks"),
    ("load_state_dict_pre", "_load_state_dict_pre_hooks"), ("load_state_dict_post", "_load_state_dict_post_hooks"),
)
_GLOBAL_HOOKS = (
    ("forward_pre", "_global_forward_pre_hooks"), ("forward", "_global_forward_hooks"),
    ("backward_pre", "_global_backward_pre_hooks"), ("backward", "_global_backward_hooks"),
)


def hook_name(fn: Any) -> str:
    """``mymodule.log_shapes``, ``partial(mymodule.f)``, or the type of a callable object."""
    inner = getattr(fn, "hook", None)  # torch wraps some state-dict hooks in an object with .hook
    if inner is not None and callable(inner):
        fn = inner
    if isinstance(fn, functools.partial):
        return f"partial({hook_name(fn.func)})"
    qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    mod = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{mod}.{qual}" if mod else qual


def hook_view(model: nn.Module) -> TableView:
    """Every registered hook by module, so a hook left behind is visible.

    Module hooks (forward, forward-pre, backward, backward-pre, state-dict and load-state-dict),
    global module hooks (they run on every module), and hooks on parameter tensors.

    Args:
        model: The module.

    Returns:
        A table, one row per hook: the module, the kind of hook and the function; empty when none is left.
    """
    records: list[HookInfo] = []
    for kind, attr in _GLOBAL_HOOKS:
        for hid, fn in getattr(module_mod, attr, {}).items():
            records.append(HookInfo(module="(global)", kind=kind, hook=hook_name(fn), id=int(hid)))
    for mod_name, m in model.named_modules():
        for kind, attr in _HOOK_DICTS:
            hooks = getattr(m, attr, None) or {}
            for hid, fn in hooks.items():
                records.append(HookInfo(module=mod_name, kind=kind, hook=hook_name(fn), id=int(hid)))
        for pname, p in m.named_parameters(recurse=False):
            full = f"{mod_name}.{pname}" if mod_name else pname
            for kind, attr in (("tensor_grad", "_backward_hooks"),
                               ("post_accumulate_grad", "_post_accumulate_grad_hooks")):
                for hid, fn in (getattr(p, attr, None) or {}).items():
                    records.append(HookInfo(module=f"param {full}", kind=kind, hook=hook_name(fn), id=int(hid)))
    return TableView(f"Hooks on {type(model).__name__}: {len(records)}", records,
                     empty="(no hooks registered)")
