"""The result of :func:`torchsmith.memory`: a :class:`MemoryPlan`, plain data with no reference to the model.

Byte figures are ints, or formula strings in the batch's name (``"1234*B + 5678"``) when the batch was
given as a name. ``fits`` and ``max_batch_size`` read the peak as a function of the batch (the upper
envelope of affine lines, one per moment of the step) and leave a named margin of the device free for
what a live-tensor count cannot see: the caching allocator's rounding and fragmentation, and the CUDA
context. Rendering lives in ``render.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from torchsmith._memory._knobs import parse_memory
from torchsmith._memory.render import memory_html, render_memory, rich_memory
from torchsmith.errors import ConfigError

__all__ = ["MemoryPlan", "ModuleMemory", "FRAGMENTATION_MARGIN", "Num"]

Num = int | str  # bytes, or a formula in the batch's name

#: Fraction of the device left free by :meth:`MemoryPlan.fits`: PyTorch's CUDA caching allocator rounds
#: blocks (to 512 B, and 2 MiB segments for large ones) and fragments; the CUDA context (~0.3-0.6 GiB)
#: is outside its count as well. A plan's ``peak`` is live tensor bytes, which excludes all of these.
FRAGMENTATION_MARGIN = 0.10


@dataclass
class ModuleMemory:
    """One module: its parameters (bytes, children included) and the activations saved while it ran."""

    name: str  # dotted, "" for the model
    type: str
    depth: int
    parameters: int
    activations: Num


@dataclass
class MemoryPlan:
    """What one training step of a model needs, per device; see :func:`torchsmith.memory`."""

    model: str
    input: str
    batch_size: int | str  # per device and per micro-batch
    precision: str
    optimizer: str
    foreach: bool | None
    grad_accumulation: int
    checkpointing: list[str]
    world_size: int
    strategy: str | None
    parameters: int  # bytes of the parameters (and buffers) one device holds
    gradients: int
    optimizer_state: int
    activations: Num  # bytes saved for backward at the end of the forward, once per storage
    saved_parameters: int  # the part of ``activations`` that is a parameter's own storage (already in parameters)
    peak: Num  # the highest live tensor bytes of a steady-state step, per device
    by_category: dict[str, Num]
    when: str  # "backward, in layer1.0.conv1"
    by_module: list[ModuleMemory]
    inference: Num  # the peak of an eval forward under no_grad
    kv_cache: Num | None = None  # a decoder's KV cache at ``kv_seq_len`` tokens (transformers decoders)
    kv_seq_len: int | None = None
    distributed: str = ""  # what the DDP/FSDP figures add or divide
    symbols: dict[str, int] = field(default_factory=dict)  # batch name -> the sizes it was computed at
    notes: list[str] = field(default_factory=list)
    lines: list[tuple[float, float]] = field(default_factory=list, repr=False)  # peak(B) = max(a + b*B)
    margin: float = FRAGMENTATION_MARGIN

    # ------------------------------------------------------------------ will it fit?
    def peak_at(self, batch_size: int) -> int:
        """The per-device peak at another batch size (exact where the step's op sequence does not depend on it)."""
        return int(max(a + b * batch_size for a, b in self.lines))

    def fits(self, device_memory: int | float | str, margin: float | None = None) -> bool:
        """True when the peak leaves ``margin`` (default :data:`FRAGMENTATION_MARGIN`) of the device free.

        ``device_memory`` is bytes or a size such as ``"80GB"`` or ``"24GiB"``.
        """
        budget = self._budget(device_memory, margin)
        batch = self.batch_size if isinstance(self.batch_size, int) else 1
        return self.peak_at(batch) <= budget

    def max_batch_size(self, device_memory: int | float | str, margin: float | None = None) -> int:
        """The largest per-device batch whose peak fits (0: not even a batch of 1 fits)."""
        budget = self._budget(device_memory, margin)
        best = math.inf
        for a, b in self.lines:
            if b <= 0:
                if a > budget:
                    return 0
                continue
            best = min(best, (budget - a) / b)
        if best == math.inf:
            return 2**31 - 1  # nothing grows with the batch
        return max(0, int(math.floor(best + 1e-9)))

    def _budget(self, device_memory: int | float | str, margin: float | None) -> float:
        m = self.margin if margin is None else margin
        if not 0 <= m < 1:
            raise ConfigError(f"margin must be a fraction in [0, 1), not {m!r}")
        return parse_memory(device_memory) * (1 - m)

    # ------------------------------------------------------------------ export and rendering
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("lines")
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def render(self, format: str = "text", depth: int = 2) -> str:
        """``text`` or ``markdown``; ``json`` is :meth:`to_json`. ``depth`` bounds the per-module rows."""
        if format == "json":
            return self.to_json()
        return render_memory(self, format=format, depth=depth)

    def __str__(self) -> str:
        return self.render("text")

    def __rich__(self) -> Any:
        return rich_memory(self)

    def _repr_html_(self) -> str:
        return memory_html(self)
