"""Atomic file replacement: temp file in the same directory, fsync, rename, fsync the directory.

A crash (even ``kill -9``) at any moment leaves either the old file or the new
one at ``path``, never a mix: ``os.replace`` within one directory is atomic on
POSIX, and the fsyncs make the data durable before the name points at it.
A killed writer leaves its temp file behind; the next write to the same path
removes temp files whose writer is gone.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_fd", "temp_files_for", "remove_stale_temps", "fsync_dir", "writer_alive"]

_TMP_MARK = ".tmp-"
# A temp file older than this is stale even if its pid now names a live process (pid reuse).
_STALE_AFTER_S = 3600.0


def _temp_prefix(path: Path) -> str:
    # Hidden, and named after the target so the cleanup never touches anyone else's files.
    return f".{path.name}{_TMP_MARK}"


def temp_files_for(path: Path) -> list[Path]:
    """Temp files a writer of ``path`` created and has not (yet) renamed or removed."""
    prefix = _temp_prefix(path)
    try:
        return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def writer_alive(tmp: Path, path: Path) -> bool:
    """Whether the process that wrote temp file ``tmp`` of ``path`` may still be running (and renaming it)."""
    try:
        pid = int(tmp.name[len(_temp_prefix(path)):].split("-", 1)[0])
        age = time.time() - tmp.stat().st_mtime
    except (ValueError, OSError):
        return False
    return pid != os.getpid() and _pid_alive(pid) and age <= _STALE_AFTER_S


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove temp files of ``path`` left by writers that died (``kill -9``, power loss); return them."""
    removed = []
    for tmp in temp_files_for(path):
        pid_text = tmp.name[len(_temp_prefix(path)):].split("-", 1)[0]
        try:
            pid = int(pid_text)
            age = time.time() - tmp.stat().st_mtime
        except (ValueError, OSError):
            continue
        if pid == os.getpid() or not _pid_alive(pid) or age > _STALE_AFTER_S:
            # Our own pid: a temp of ours that is not in flight (we always clean up in finally),
            # so it can only be from a process that had our pid before us.
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_fd(path: Path, *, durable: bool = True,
              deferred: list[tuple[Path, Path]] | None = None) -> Iterator[int]:
    """Yield a file descriptor of a fresh temp file; on success it replaces ``path`` atomically.

    On any exception the temp file is removed, ``path`` is untouched and the
    exception propagates unchanged. With ``deferred``, the complete, fsynced temp
    file is not renamed yet: ``(temp, path)`` is appended to the list for
    :func:`commit_deferred`, so several files can be written first and swapped
    in together (a checkpoint and its training state).
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    remove_stale_temps(path)
    tmp = directory / f"{_temp_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    closed = False
    try:
        yield fd
        if durable:
            os.fsync(fd)
        os.close(fd)
        closed = True
        if deferred is not None:
            deferred.append((tmp, path))
            return
        os.replace(tmp, path)
        if durable:
            fsync_dir(directory)
    except BaseException:
        if not closed:
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def commit_deferred(deferred: list[tuple[Path, Path]], *, durable: bool = True) -> None:
    """Rename every deferred temp file onto its path, back to back, then fsync their directories.

    The renames follow each other with nothing in between, so a crash can split
    the set only in that instant, not during the writes that came before.
    """
    for tmp, path in deferred:
        os.replace(tmp, path)
    if durable:
        for directory in {(p.parent if str(p.parent) else Path(".")) for _, p in deferred}:
            fsync_dir(directory)
    deferred.clear()


def discard_deferred(deferred: list[tuple[Path, Path]]) -> None:
    """Remove deferred temp files that will not be committed (a later write of the set failed)."""
    for tmp, _ in deferred:
        try:
            tmp.unlink()
        except OSError:
            pass
    deferred.clear()


def write_all(fd: int, data: memoryview | bytes) -> None:
    """``os.write`` until everything is written (a single write may be short)."""
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    while len(view):
        n = os.write(fd, view)
        view = view[n:]
