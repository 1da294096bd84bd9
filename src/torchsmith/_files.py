"""Writing a user's file (a plot, a picture, a report) whole or not at all.

The data goes to a temporary file in the same folder, which is then renamed over the target: a failed or
interrupted write never leaves half a file behind, and never removes the file that was there. (Checkpoints
need more, a pair of files and fsync; see :mod:`torchsmith.checkpoint._atomic`.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from torchsmith.errors import ConfigError

__all__ = ["write_atomically", "write_bytes"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets the permissions of any new file (``mkstemp`` makes it private). An ``OSError`` becomes a
    :class:`ConfigError` naming the path; whatever goes wrong, the temporary file is removed.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {str(path)!r}: {e.strerror or e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (see :func:`write_atomically`)."""
    return write_atomically(path, lambda f: f.write(data))
