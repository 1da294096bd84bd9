"""The receptive field of a CNN layer: how much of the input image one output position sees.

r_out = r_in + (k_eff-1)*j_in, j_out = j_in*s, start_out = start_in + ((k_eff-1)/2 - p)*j_in, with
k_eff = d*(k-1) + 1 (Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019); the input is r = 1, j = 1, the first pixel's centre at 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torchsmith._summary._explain_rules import Window

__all__ = ["ReceptiveField", "start_field", "apply_window"]


@dataclass
class ReceptiveField:
    """What one output position of a layer sees of the input image, per spatial dim."""

    size: tuple[int, ...]  # r: input pixels seen
    jump: tuple[int, ...]  # j: input pixels between neighbouring outputs (the product of the strides)
    start: tuple[float, ...]  # centre of the first output's field, in input pixels (the first pixel's centre 0.5)
    formula: str = ""  # "r = 6 + (5-1)*2 = 14, j = 2*1 = 2, start = 3.5 + ((5-1)/2 - 0)*2 = 7.5"

    def text(self) -> str:
        return f"{_same(self.size)}, jump {_same(self.jump)}, start {_same(self.start)}"

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start), "formula": self.formula}


def start_field(n: int) -> ReceptiveField:
    return ReceptiveField(size=(1,) * n, jump=(1,) * n, start=(0.5,) * n, formula="the input: r = 1, j = 1")


def apply_window(f: ReceptiveField, w: Window) -> ReceptiveField:
    """r_out = r_in + (k_eff-1)*j_in, j_out = j_in*s, start_out = start_in + ((k_eff-1)/2 - p)*j_in."""
    n = len(w.kernel)
    size, jump, start = _fit(f.size, n), _fit(f.jump, n), _fit(f.start, n)
    keff = tuple(d * (k - 1) + 1 for k, d in zip(w.kernel, w.dilation))
    r = tuple(rr + (ke - 1) * jj for rr, ke, jj in zip(size, keff, jump))
    j = tuple(jj * s for jj, s in zip(jump, w.stride))
    st = tuple(ss + ((ke - 1) / 2 - p) * jj for ss, ke, p, jj in zip(start, keff, w.padding, jump))
    k0 = keff[0]
    dilated = "" if w.dilation[0] == 1 else f"k_eff = {w.dilation[0]}*({w.kernel[0]}-1) + 1 = {k0}, "
    formula = (f"{dilated}r = {size[0]} + ({k0}-1)*{jump[0]} = {r[0]}, j = {jump[0]}*{w.stride[0]} = {j[0]}, "
               f"start = {_num(start[0])} + (({k0}-1)/2 - {_num(w.padding[0])})*{jump[0]} = {_num(st[0])}")
    return ReceptiveField(size=r, jump=j, start=tuple(float(x) for x in st), formula=formula)


def _fit(v: tuple[Any, ...], n: int) -> tuple[Any, ...]:
    return v if len(v) == n else (v[0],) * n


def _same(v: tuple[Any, ...]) -> str:
    if len(set(v)) == 1:
        return _num(v[0])
    return "x".join(_num(x) for x in v)


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)
