"""Drawing a :class:`MemoryPlan` and a :class:`TrainingPlan`: plain text, markdown, rich and HTML.

The data types are imported only for type checking: the data objects import this module, not the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchsmith._format import human_bytes, human_count, render_table
from torchsmith.html._page import esc, fragment, kv_table, table

if TYPE_CHECKING:
    from torchsmith._memory.result import MemoryPlan
    from torchsmith._memory.ways import TrainingPlan

__all__ = ["render_memory", "rich_memory", "memory_html", "render_ways", "rich_ways", "ways_html", "WAY_COLUMNS"]

_LABELS = {"parameters": "parameters", "buffers": "buffers", "gradients": "gradients",
           "optimizer_state": "optimizer state", "activations": "activations", "temporaries": "temporaries"}
MODULE_COLUMNS = ["Module (type)", "Parameters", "Activations saved"]
WAY_COLUMNS = ["Way", "Precision", "Checkpointing", "Peak per device", "Fits", "Largest batch",
               "Training FLOPs per sample"]


def _setup(p: MemoryPlan) -> str:
    where = "1 device" if p.world_size == 1 else f"{p.world_size} devices, {p.strategy}"
    extra = [f"grad accumulation {p.grad_accumulation}"] if p.grad_accumulation > 1 else []
    if p.checkpointing:
        extra.append(f"checkpointing {len(p.checkpointing)} modules")
    return ", ".join([f"batch {p.batch_size}", p.precision, p.optimizer, where, *extra])


def _lines(p: MemoryPlan) -> list[tuple[str, str]]:
    cats = ", ".join(f"{_LABELS.get(k, k)} {human_bytes(v)}" for k, v in p.by_category.items() if v not in (0, "0"))
    own = f" (of which {human_bytes(p.saved_parameters)} are parameters' own storage)" if p.saved_parameters else ""
    pairs = [
        ("Peak per device", f"{human_bytes(p.peak)} ({p.when})"),
        ("At the peak", cats),
        ("Activations saved for backward", f"{human_bytes(p.activations)}{own}"),
        ("Parameters, gradients, optimizer state", f"{human_bytes(p.parameters)}, {human_bytes(p.gradients)}, "
                                                   f"{human_bytes(p.optimizer_state)}"),
        ("Inference (eval, no_grad)", human_bytes(p.inference)
         + (f"; KV cache at {p.kv_seq_len} tokens {human_bytes(p.kv_cache)}" if p.kv_cache is not None else "")),
    ]
    if p.distributed:
        pairs.append(("Distributed", p.distributed))
    pairs.append(("Fits with", f"{p.margin:.0%} of the device left free for the allocator's fragmentation "
                               "and the CUDA context (fits(), max_batch_size())"))
    return pairs


def _module_rows(p: MemoryPlan, depth: int) -> list[list[str]]:
    return [["  " * m.depth + (f"{m.name} ({m.type})" if m.name else m.type), human_bytes(m.parameters),
             human_bytes(m.activations)] for m in p.by_module if m.depth <= depth]


def render_memory(p: MemoryPlan, format: str = "text", depth: int = 2) -> str:
    head = f"Memory plan: {p.model}, input {p.input}; {_setup(p)}"
    body = render_table(MODULE_COLUMNS, _module_rows(p, depth), format="markdown" if format == "markdown" else "text",
                        right=(1, 2))
    lines = [f"{k}: {v}" for k, v in _lines(p)] + [f"note: {n}" for n in p.notes]
    if format == "markdown":
        return "\n\n".join([f"**{head}**", body, "\n".join(f"- {line}" for line in lines)])
    return "\n".join([head, body, *lines])


def rich_memory(p: MemoryPlan) -> Any:
    from rich.console import Group
    from rich.table import Table

    t = Table(title=f"{p.model}, input {p.input}; {_setup(p)}", title_justify="left")
    for i, c in enumerate(MODULE_COLUMNS):
        t.add_column(c, justify="right" if i else "left")
    for row in _module_rows(p, 2):
        t.add_row(*row)
    return Group(t, *[f"[bold]{k}[/bold]: {v}" for k, v in _lines(p)], *[f"note: {n}" for n in p.notes])


def memory_html(p: MemoryPlan) -> str:
    parts = [f'<div class="title">{esc(p.model)}, input {esc(p.input)}; {esc(_setup(p))}</div>',
             table(MODULE_COLUMNS, _module_rows(p, 2), right=(1, 2)), kv_table(_lines(p))]
    return fragment("".join(parts))


# --------------------------------------------------------------------------- the ways to train
def _way_rows(w: TrainingPlan) -> list[list[str]]:
    rows = []
    for r in w.rows:
        flops = "?" if r.training_flops_per_sample is None else human_count(r.training_flops_per_sample)
        rows.append([r.way, r.precision, "yes" if r.checkpointing else "no", human_bytes(r.peak),
                     "yes" if r.fits else "no", f"{r.max_batch_size:,}", flops])
    return rows


def _ways_title(w: TrainingPlan) -> str:
    return (f"Ways to train {w.model} (input {w.input}, batch {w.batch_size} per device, {w.optimizer}) on "
            f"{w.world_size} x {human_bytes(w.device_memory)}")


def render_ways(w: TrainingPlan, format: str = "text") -> str:
    body = render_table(WAY_COLUMNS, _way_rows(w), format="markdown" if format == "markdown" else "text",
                        right=(3, 5, 6))
    notes = [f"note: {n}" for n in w.notes]
    return "\n".join([_ways_title(w), body, *notes])


def rich_ways(w: TrainingPlan) -> Any:
    from rich.console import Group
    from rich.table import Table

    t = Table(title=_ways_title(w), title_justify="left")
    for i, c in enumerate(WAY_COLUMNS):
        t.add_column(c, justify="right" if i in (3, 5, 6) else "left")
    for row in _way_rows(w):
        style = "green" if row[4] == "yes" else "red"
        t.add_row(*row[:4], f"[{style}]{row[4]}[/{style}]", *row[5:])
    return Group(t, *[f"note: {n}" for n in w.notes])


def ways_html(w: TrainingPlan) -> str:
    return fragment(f'<div class="title">{esc(_ways_title(w))}</div>'
                    + table(WAY_COLUMNS, _way_rows(w), right=(3, 5, 6))
                    + "".join(f"<p>note: {esc(n)}</p>" for n in w.notes))
