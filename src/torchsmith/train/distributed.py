"""Distributed helpers: read torchrun's environment, set up the process group, reduce metrics.

Under ``torchrun --nproc-per-node N`` every process runs the same command;
torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. The process group uses NCCL on CUDA and Gloo on CPU, with a
timeout so a rank that stops answering turns into an error instead of a hang.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torchsmith.errors import TrainingError

__all__ = ["DistInfo", "dist_info_from_env", "setup_distributed", "teardown_distributed", "all_reduce_sum",
           "DEAD_RANK_HINT", "dist_timeout"]

DEAD_RANK_HINT = ("another rank stopped (it crashed, was killed, or ran out of memory) or stopped answering; "
                  "torchrun's own report names the rank that failed first, and that rank's log says why. "
                  "Fix that rank's problem and rerun the same command with --resume OUT_DIR to continue "
                  "from the last checkpoint")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job; ``world_size == 1`` for a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owned: bool = False  # True when torchsmith created the process group (and so destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_timeout() -> datetime.timedelta:
    """Collective timeout: ``TORCHSMITH_DIST_TIMEOUT`` seconds, default 120 (torch's own default is 30 minutes)."""
    raw = os.environ.get("TORCHSMITH_DIST_TIMEOUT", "120")
    try:
        seconds = float(raw)
    except ValueError:
        raise TrainingError(f"TORCHSMITH_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    return datetime.timedelta(seconds=max(1.0, seconds))


def dist_info_from_env() -> DistInfo:
    """Read torchrun's variables; a plain ``python`` run is world size 1."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise TrainingError(f"malformed torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from None
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def setup_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun prepared (once per process); world size 1 does nothing."""
    info = dist_info_from_env()
    if not info.enabled:
        return info
    if not dist.is_available():
        raise TrainingError("this torch build has no torch.distributed; install a build with it to use torchrun")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    owned = not dist.is_initialized()
    if owned:
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise TrainingError(f"WORLD_SIZE={info.world_size} is set but {var} is not; "
                                    f"start the job with torchrun --nproc-per-node N ...")
        try:
            dist.init_process_group(backend=backend, timeout=dist_timeout())
        except Exception as e:  # rendezvous failures come as RuntimeError, DistError, TimeoutError...
            raise TrainingError(f"rank {info.rank} could not join the process group ({backend}): {e}") from e
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=info.local_rank,
                    backend=backend, owned=owned)


def teardown_distributed(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup_distributed` created it; a caller's own group is left alone."""
    if info.enabled and info.owned and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op for one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on ``device``); SyncBatchNorm when asked."""
    if sync_batchnorm:
        # Converts in place where it can; the returned module replaces BatchNorm children.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)
