"""Shared fixtures. Every test runs in its own temporary working directory and must leave nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Two pytest-xdist workers share two cores: one intra-op thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def leave_no_artifacts_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run each test inside tmp_path and fail it if it wrote into the repository."""
    repo = Path(__file__).resolve().parent.parent
    before = _repo_files(repo)
    monkeypatch.chdir(tmp_path)
    yield
    after = _repo_files(repo)
    new = sorted(after - before)
    assert not new, f"test left files in the repository: {new[:5]}"


def _repo_files(repo: Path) -> set[str]:
    # Source folders are left out: they change under a developer's hands, not a test's.
    skip = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".hypothesis", "build",
            "src", "tests", "benchmarks", "docs", "examples"}
    out: set[str] = set()
    for root, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        out.update(os.path.join(root, f) for f in files)
    return out


def hook_count(model: torch.nn.Module) -> int:
    """Every hook registered on any module of ``model`` (forward, pre, backward, state-dict)."""
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
             "_state_dict_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")
    return sum(len(getattr(m, n, {}) or {}) for m in model.modules() for n in names)
