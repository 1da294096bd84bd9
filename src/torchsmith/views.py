"""Structural views of a model: the module tree with parameter counts."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

__all__ = ["ModuleNode", "module_tree", "count_parameters"]


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


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model``, each shared (tied) tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def module_tree(model: nn.Module) -> ModuleNode:
    """The module tree of ``model``; shared submodules appear once in full, later as references."""
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
        for child_name, child in module.named_children():
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
