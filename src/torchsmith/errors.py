"""The torchsmith error hierarchy.

Every error a user can cause (bad names, bad shapes, bad files, bad specs) is a
:class:`TorchsmithError`. The CLI turns these into a one-line message and a
non-zero exit code; anything else is a bug in torchsmith.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "TorchsmithError",
    "UnknownNameError",
    "ConfigError",
    "ShapeError",
    "InitError",
    "ModelLoadError",
    "SummaryError",
    "CheckpointError",
    "SpecError",
    "ExportError",
    "DataError",
    "TrainingError",
    "did_you_mean",
    "first_line",
    "describe_error",
    "shorten",
    "format_size",
]


class TorchsmithError(Exception):
    """Base class of every error torchsmith raises on purpose.

    ``cli_message``, when set, is the same message in command-line words (``--input 3x32x32`` where
    ``str()`` says ``input_size=(3, 32, 32)``); the CLI prints it instead, so a CLI user never reads
    advice given as a Python call.
    """

    cli_message: str | None = None


class ConfigError(TorchsmithError, ValueError):
    """An option, argument or flag has a value that cannot work."""


class DeclaredSizeError(ConfigError):
    """A model declares its input size (``default_input_size``) in a form that cannot be a size."""


class UnknownNameError(ConfigError, KeyError):
    """A name (model, initialiser, layer type, ...) is not known.

    The message carries close matches, so the user can fix a typo at once.
    """

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.choices = sorted(set(choices))
        self.suggestions = did_you_mean(name, self.choices)
        msg = f"unknown {kind} {name!r}"
        if self.suggestions:
            msg += "; did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        elif self.choices and len(self.choices) <= 20:
            msg += "; known: " + ", ".join(self.choices)
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class ShapeError(TorchsmithError, ValueError):
    """A tensor reached a layer with a shape that layer cannot take."""


class InitError(TorchsmithError, ValueError):
    """An initialisation policy or scheme cannot be applied."""


class ModelLoadError(TorchsmithError):
    """A model reference (``file.py:Class``, ``module:attr``, ...) could not be loaded."""


class SummaryError(TorchsmithError):
    """A model could not be summarised (its forward failed on every device tried)."""


class CheckpointError(TorchsmithError):
    """A checkpoint is missing, malformed, unsafe, or does not fit the model."""


class SpecError(TorchsmithError, ValueError):
    """A declarative model spec is invalid; the message points at the place."""


class ExportError(TorchsmithError):
    """Export failed, or the exported model does not compute what the eager one does."""


class DataError(TorchsmithError):
    """A dataset is missing, malformed or does not fit the model."""


class TrainingError(TorchsmithError):
    """Training cannot start or cannot go on (bad options, diverged loss, dead rank)."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` close matches of ``name`` among ``choices``."""
    lowered = {c.lower(): c for c in choices}
    scored = sorted(
        ((difflib.SequenceMatcher(None, name.lower(), c).ratio(), c) for c in lowered),
        key=lambda sc: (-sc[0], sc[1]),
    )
    scored = [(s, c) for s, c in scored if s >= 0.6]
    if not scored:
        return []
    # Only the matches about as close as the best one: "did you mean X?" beats a list of maybes.
    best = scored[0][0]
    return [lowered[c] for s, c in scored[:n] if s >= best - 0.05]


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first non-blank line of ``error``'s message, stripped ("" when it has none), cut to ``limit``.

    Torch's and exporters' messages run to pages (C++ traces, graph dumps) and some start with a blank line;
    a message of ours quotes one line.
    """
    line = next((ln.strip() for ln in str(error).splitlines() if ln.strip()), "")
    return line[:limit]


def describe_error(error: BaseException, limit: int | None = None) -> str:
    """``"TypeName: first line of the message"`` (``"TypeName"`` alone when the message is empty), the cause
    as one of our messages quotes it; longer than ``limit`` characters, it is cut and ends in ``"..."``.

    The one reading of a caught error that every package quotes (the doctor, export, checkpoints, training, the
    summary): a blank first line is skipped, and the limit bounds the whole text a finding or message embeds.
    """
    line = first_line(error)
    text = f"{type(error).__name__}: {line}" if line else type(error).__name__
    return text if limit is None or len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def shorten(items: Sequence[object], limit: int = 3, sep: str = ", ") -> str:
    """The first ``limit`` items joined, and how many were left out: ``"a, b, c and 4 more"``."""
    shown = sep.join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def format_size(dims: Iterable[object]) -> str:
    """A size or shape as our messages write it, every dimension kept: ``(3, 32, 32)`` -> ``"3x32x32"``,
    ``()`` -> ``"scalar"``.

    The one spelling of a size in messages, findings and reports (the ``--input 3x32x32`` form). The summary's
    rows drop the batch dimension instead (:func:`torchsmith._format.format_shape`).
    """
    return "x".join(map(str, dims)) or "scalar"
