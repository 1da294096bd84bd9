"""The shape trace of a spec: what each entry receives and gives, as an object; rendering is separate."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torchsmith.spec.registry import Shape, fmt_shape

__all__ = ["SpecRow", "SpecReport"]


@dataclass
class SpecRow:
    """One entry of the spec as built."""

    path: str  # where it is in the spec: "layers[4].body[0]"
    type: str  # its layer type or block name: "conv", "basic"
    module: str  # its name in the built model: "stage1.basic1.body.conv1"
    in_shape: Shape
    out_shape: Shape
    params: int  # parameters of this entry, everything inside it included
    line: int | None = None  # its line in the spec file
    depth: int = 0  # how many named blocks deep it was built


@dataclass
class SpecReport:
    """What a spec builds: input and output shape, every entry's shapes, the parameter count and init policy."""

    name: str | None
    source: str | None
    input: Shape
    output: Shape
    params: int
    init_policy: dict[str, Any]
    rows: list[SpecRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        header = ("spec", "type", "module", "output", "params", "line")
        table = [header]
        for r in self.rows:
            table.append((r.path, r.type, r.module, fmt_shape(r.out_shape), f"{r.params:,}",
                          str(r.line) if r.line else ""))
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [f"{self.name or 'spec'}" + (f" ({self.source})" if self.source else "")
                 + f": input {fmt_shape(self.input)} -> output {fmt_shape(self.output)}"]
        for row in table:
            cells = [c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
            lines.append("  ".join(cells).rstrip())
        lines.append(f"Total parameters: {self.params:,}")
        lines.append(f"Init policy: {self.init_policy}")
        return "\n".join(lines)

