"""torchsmith._files: a user's file is written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torchsmith._files import write_atomically, write_bytes
from torchsmith.errors import ConfigError


def test_a_write_replaces_the_file_with_the_permissions_of_a_new_one(tmp_path: Path) -> None:
    target = tmp_path / "out.html"
    target.write_text("old")
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.html"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "plot.png"
    target.write_bytes(b"before")

    def half_then_fail(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_an_os_error_is_one_config_error_naming_the_path(tmp_path: Path) -> None:
    target = tmp_path / "out.svg"

    def disk_full(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(ConfigError, match=r"cannot write '.*out\.svg': No space left on device"):
        write_atomically(target, disk_full)
    assert list(tmp_path.iterdir()) == []
