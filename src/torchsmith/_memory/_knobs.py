"""The plan's knobs, checked at the door: each bad value is one :class:`ConfigError` that names it and the fix."""

from __future__ import annotations

import re
from typing import Any

from torchsmith._memory._step import OPTIMIZERS, PRECISIONS
from torchsmith.errors import ConfigError, UnknownNameError

__all__ = ["check_precision", "check_optimizer", "check_positive", "check_strategy", "parse_memory",
           "STRATEGIES"]

STRATEGIES = ("ddp", "fsdp")
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", str(precision), PRECISIONS)
    return precision


def check_optimizer(optimizer: str) -> str:
    if optimizer not in OPTIMIZERS:
        raise UnknownNameError("optimizer", str(optimizer), OPTIMIZERS)
    return optimizer


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise UnknownNameError("strategy", str(strategy), STRATEGIES, hint="world_size > 1 needs one of them")
    return strategy


def check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    return value


def parse_memory(value: Any) -> int:
    """``80e9``, ``"80GB"`` (10**9), ``"80GiB"`` (2**30), ``"24G"`` -> bytes."""
    if isinstance(value, bool):
        raise ConfigError(f"device memory {value!r} is not a size; write bytes or e.g. '80GB' or '24GiB'")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ConfigError(f"device memory must be positive, not {value!r}")
        return int(value)
    m = _MEMORY.match(str(value))
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f"device memory {value!r} is not a size; write e.g. '80GB' (10**9 bytes) or '24GiB' "
                          "(2**30 bytes)")
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ConfigError(f"device memory must be positive, not {value!r}")
    return n
