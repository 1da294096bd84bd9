"""Sizes written down: ``"3x32x32"`` and ``(3, 32, 32)`` as tuples of integers.

One sample's size never includes the batch dimension. This module only parses; the modules that take a
size say what it is for and check its range.
"""

from __future__ import annotations

import operator
from typing import Any

from torchsmith.errors import ConfigError

__all__ = ["parse_input_size", "int_dims"]


def parse_input_size(text: str) -> tuple[int, ...]:
    """``"3x32x32"`` (or ``"3,32,32"``) -> ``(3, 32, 32)``."""
    parts = text.strip().replace(",", "x").replace("X", "x").split("x")
    try:  # every part must be an integer: "3xx32" and "3x" are typos, not sizes
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"input size {text!r} is not a list of integers like 3x32x32") from None
    if not dims or any(d <= 0 for d in dims):
        raise ConfigError(f"input size {text!r} must be positive integers like 3x32x32")
    return dims


def int_dims(value: Any) -> tuple[int, ...] | None:
    """``value`` as a tuple of integers, or None where it is not a sequence of integers.

    ``operator.index`` takes Python, numpy and 0-d tensor integers and refuses floats and strings
    (3.5 is a mistake, not a size to round); a bool is refused too. Callers check the range and say
    what the dims are for.
    """
    try:
        dims = tuple(operator.index(d) for d in value if not isinstance(d, bool))
    except TypeError:
        return None
    return dims if len(dims) == len(value) else None
