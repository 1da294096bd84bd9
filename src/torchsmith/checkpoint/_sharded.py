"""Sharded checkpoints of models spread over ranks (FSDP2), written with ``torch.distributed.checkpoint``.

A run's sharded checkpoints live in ``RUN_DIR/shards/``: one directory per save (``step-000000120/``, every
rank's shard files plus DCP's ``.metadata`` and the trainer's ``trainer.json``) and a pointer file ``LATEST``
naming the newest whole one. A save goes to ``.step-N.tmp/`` first; only when every rank has written and the
directory is renamed does ``LATEST`` change (an atomic ``os.replace``), and only then are older saves removed.
A kill -9 at any moment therefore leaves ``LATEST`` naming a complete checkpoint.

Loading reshards: DCP reads a checkpoint written at one world size into the shards of another, or into a
plain one-process model (:func:`load_sharded` without a process group).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchsmith.checkpoint._atomic import fsync_dir
from torchsmith.errors import CheckpointError

__all__ = ["SHARDS", "save_sharded", "latest_sharded", "load_sharded", "read_trainer_state", "rng_to_json",
           "rng_from_json"]

SHARDS = "shards"
_POINTER = "LATEST"
_TRAINER = "trainer.json"


def _dist() -> Any:
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()


def save_sharded(run_dir: Path, step: int, state: dict[str, Any], trainer: dict[str, Any], *, rank: int) -> Path:
    """Every rank calls this with its own shard ``state``; rank 0 also writes ``trainer`` (plain JSON data)."""
    import torch.distributed.checkpoint as dcp

    root = Path(run_dir) / SHARDS
    name = f"step-{step:09d}"
    tmp, final = root / f".{name}.tmp", root / name
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)  # a save that died half way
        tmp.mkdir()
    _barrier()
    dcp.save(state, checkpoint_id=str(tmp))
    if rank == 0:
        doc = tmp / _TRAINER
        with open(doc, "w") as f:
            f.write(json.dumps(trainer, allow_nan=True))
            f.flush()
            os.fsync(f.fileno())
        for shard in tmp.iterdir():
            with open(shard, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)  # the same step saved again (a resumed run's first save)
        os.replace(tmp, final)
        pointer = root / f".{_POINTER}.tmp"
        pointer.write_text(name + "\n")
        os.replace(pointer, root / _POINTER)
        fsync_dir(root)
        for old in root.iterdir():
            if old.is_dir() and old.name != name and old.name.startswith(("step-", ".step-")):
                shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def latest_sharded(run_dir: str | Path) -> Path | None:
    """The newest complete sharded checkpoint of ``run_dir`` (or ``run_dir`` itself when it is one), or None."""
    path = Path(run_dir)
    if (path / ".metadata").is_file() and (path / _TRAINER).is_file():
        return path
    pointer = path / SHARDS / _POINTER
    if not pointer.is_file():
        return None
    target = path / SHARDS / pointer.read_text().strip()
    if not (target / ".metadata").is_file():
        raise CheckpointError(f"{pointer} names {target.name}, which is not a complete checkpoint; the run directory "
                              f"was changed by hand")
    return target


def load_sharded(path: Path, state: dict[str, Any]) -> None:
    """Fill ``state`` (the current model's and optimizer's, sharded or not) in place from checkpoint ``path``."""
    import torch.distributed.checkpoint as dcp

    try:
        with warnings.catch_warnings():  # one process reading shards is what consolidate and a 1-rank resume mean
            warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
            dcp.load(state, checkpoint_id=str(path))
    except Exception as e:  # DCP raises CheckpointException with each rank's traceback
        raise CheckpointError(f"{path}: the sharded checkpoint does not fit this model "
                              f"({str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__})") \
            from e


def read_trainer_state(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads((Path(path) / _TRAINER).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: its {_TRAINER} is missing or not JSON ({e})") from e
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}/{_TRAINER} must hold a JSON object")
    return doc


def rng_to_json() -> dict[str, Any]:
    """The torch, numpy and python RNG states as plain JSON data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state().tolist(),
            "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss]}


def rng_from_json(state: dict[str, Any], where: str) -> None:
    try:
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{where}: the RNG states cannot be restored ({type(e).__name__}: {e})") from e
