"""Meta kernels without ``torch._dynamo``: a summary's first forward does not pay seconds of imports.

Many of torch's Python meta kernels (the ``torch._refs`` behind ``relu``, ``add``, batch norm's
decomposition...) are wrapped in ``torch._disable_dynamo``, which imports all of ``torch._dynamo`` (about a
second and a half, and tens of MB, on a small machine) the first time a wrapped kernel runs, only to tell
dynamo not to compile it. Nothing is compiled under a summary, so :func:`dynamo_free` hands each wrapper
the plain kernel for the duration of the pass through the cache attribute the wrapper itself reads first
(``fn.__dynamo_disable``), and takes it back afterwards: outside the pass torch behaves exactly as before.
Once ``torch._dynamo`` is imported (by the user, torch.compile, or a fake-tensor pass) there is nothing to
save, and nothing is touched. If a torch release renames the attribute, the wrappers just import dynamo as
before: slower, never different.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["dynamo_free"]

_CACHE = "__dynamo_disable"  # what torch._compile._disable_dynamo's wrapper looks up on the function it wraps
_MODULES = ("torch._refs", "torch._prims", "torch._prims_common", "torch._decomp", "torch._meta_registrations")


def _wrapper_code() -> Any:
    disable = getattr(torch, "_disable_dynamo", None)
    return None if disable is None else getattr(disable(lambda: None), "__code__", None)


_CODE = _wrapper_code()


_found: tuple[Any, list[Callable[..., Any]]] = ((), [])  # (what was scanned, the kernels found there)


def _wrapped_kernels() -> list[Callable[..., Any]]:
    """The functions that ``torch._disable_dynamo`` wrappers in torch's meta and reference modules wrap.

    Scanned once (about 10 ms) and again only when more of those modules or table entries appear.
    """
    global _found
    if _CODE is None or "fn" not in _CODE.co_freevars:
        return []
    modules = [m for name, m in list(sys.modules.items()) if m is not None and name.startswith(_MODULES)]
    decomp = sys.modules.get("torch._decomp")
    tables = [getattr(decomp, t, {}) for t in ("meta_table", "decomposition_table")]
    key = (len(modules), *(len(t) for t in tables))
    if _found[0] != key:
        _found = (key, _scan([v for m in modules for v in vars(m).values()]
                             + [v for t in tables for v in t.values()]))
    return _found[1]


def _scan(roots: list[Any]) -> list[Callable[..., Any]]:
    assert _CODE is not None
    cell = _CODE.co_freevars.index("fn")
    # Down each kernel's wrappers (out_wrapper -> scalar wrapper -> type promotion -> the kernel) through
    # their closures: functools.wraps(prim) on the outermost one points its __wrapped__ elsewhere.
    found: dict[int, Callable[..., Any]] = {}
    seen: set[int] = set()
    todo = [(f, 0) for f in roots if callable(f)]
    while todo:
        f, depth = todo.pop()
        if id(f) in seen or depth > 6:
            continue
        seen.add(id(f))
        code = getattr(f, "__code__", None)
        cells = getattr(f, "__closure__", None) or ()
        if code is _CODE and cells:
            kernel = cells[cell].cell_contents
            found[id(kernel)] = kernel
        inner = [getattr(f, "__wrapped__", None)] + [_cell_value(c) for c in cells]
        todo += [(g, depth + 1) for g in inner if callable(g) and hasattr(g, "__code__")]
    return list(found.values())


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


@contextmanager
def dynamo_free() -> Iterator[None]:
    """Within the block, torch's meta kernels run without importing ``torch._dynamo`` (see the module doc)."""
    if "torch._dynamo" in sys.modules:
        yield
        return
    patched = []
    for kernel in _wrapped_kernels():
        if _CACHE not in getattr(kernel, "__dict__", {_CACHE: None}):
            try:
                setattr(kernel, _CACHE, kernel)
            except (AttributeError, TypeError):
                continue
            patched.append(kernel)
    try:
        yield
    finally:
        for kernel in patched:
            if getattr(kernel, _CACHE, None) is kernel:
                delattr(kernel, _CACHE)
