"""The training data: which indices each epoch reads on each rank, in which order, how many
batches that makes, skipping what a resumed epoch already consumed, and how many loader worker
processes to use.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler

from colorkit.engine.distributed import DistInfo
from colorkit.kernel.experiment import TrainOptions


class SkipFirst(Sampler[int]):
    """The indices of ``base`` after the first ``skip``."""

    def __init__(self, base: Sampler[int], skip: int) -> None:
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.base):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


def workers(options: TrainOptions, device: torch.device, data: Any) -> int:
    """``train.workers``, or for ``auto``: none for in-memory splits (decoded once, served by
    one indexing call) and on the CPU (workers would take the training's cores); up to 8 for
    splits decoded from files on a GPU, where one process cannot keep up at 256 px."""
    if options.workers != "auto":
        return int(options.workers)
    if device.type != "cuda" or not hasattr(data, "end_epoch"):
        return 0
    return max(0, min(8, (os.cpu_count() or 1) // max(1, torch.cuda.device_count()) - 1))


def epoch_loader(data: Any, epoch: int, skip_batches: int, *, options: TrainOptions, info: DistInfo, workers: int,
                 device: torch.device) -> tuple[DataLoader, int]:
    """The loader of this rank's share of the training split ``data`` for ``epoch``, after
    ``skip_batches`` already consumed (by index without ``workers``; returned as a count to load
    and drop with workers)."""
    sampler = DistributedSampler(data, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=options.seed)
    sampler.set_epoch(epoch)
    drop_last = len(sampler) >= options.batch_size
    by_index = skip_batches if workers == 0 else 0
    batches = BatchSampler(SkipFirst(sampler, by_index * options.batch_size), options.batch_size, drop_last=drop_last)
    gen = torch.Generator().manual_seed(options.seed * 1_000_003 + epoch * 7_919 + info.rank)
    loader = DataLoader(data, batch_sampler=batches, num_workers=workers, generator=gen,
                        pin_memory=device.type == "cuda")
    return loader, skip_batches - by_index


def batches_per_epoch(data: Any, info: DistInfo, batch_size: int) -> int:
    """Batches in one epoch of this rank's share of ``data`` (at least one)."""
    n = len(DistributedSampler(data, num_replicas=info.world_size, rank=info.rank))
    return n // batch_size if n >= batch_size else 1
