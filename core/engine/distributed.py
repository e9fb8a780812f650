"""Distributed data parallel through ``torch.distributed`` as launched by torchrun.

``colorkit run --nproc N`` re-launches itself under ``torch.distributed.run``; the same command run
under an external ``torchrun`` (multi-node included) is detected from the environment variables
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank and world size from torchrun's environment (a single process when unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device: torch.device) -> None:
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)


def shutdown() -> None:
    """Destroy the process group. The caller drops its DDP-wrapped modules first: one still alive
    when the group is gone aborts the process at exit ("terminate called without an active
    exception": 3 of 28 two-process CPU runs with gloo on torch 2.14), after the run was written."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # DDP wrappers held only by reference cycles
        dist.destroy_process_group()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (on every rank)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``colorkit <argv>`` in ``nproc`` local processes under torchrun; return its exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "colorkit", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)
