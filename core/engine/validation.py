"""In-training validation: the trainer's metrics on the ``val`` split, scored by the one scoring
path of colorkit (:func:`colorkit.engine.scoring.score`), sharded and merged across ranks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from colorkit.engine import distributed as ckdist
from colorkit.engine.scoring import ColourL1, score
from colorkit.kernel.experiment import TrainOptions
from colorkit.kernel.interfaces import Metric


def validate(gen: nn.Module, data: Any, metrics: dict[str, Metric], *, options: TrainOptions, info: ckdist.DistInfo,
             device: torch.device, workers: int, step: int, progress: bool = False,
             console: Any = None) -> dict[str, float]:
    """``metrics`` (reset first; ``val_l1`` among them, the plateau signal) of ``gen`` on the
    ``val`` split ``data`` at ``step``, as ``{"val_NAME": value}``.

    Scored by :func:`colorkit.engine.scoring.score`, the path ``colorkit eval`` takes, in fp32
    whatever ``train.precision`` is: the values equal ``colorkit eval --split val`` on the
    checkpoint saved next. Under DDP each rank scores every ``world_size``-th image of the
    first ``val_limit`` and the metric states are merged, in rank order, on every rank, so
    every rank takes the same decisions (best checkpoint, plateau) from the same numbers."""
    for m in metrics.values():
        m.reset()
    n = len(data) if options.val_limit is None else min(options.val_limit, len(data))
    shard = torch.utils.data.Subset(data, range(info.rank, n, info.world_size))
    if info.enabled:  # batch-norm statistics: rank 0's, those the checkpoint holds
        for buf in gen.buffers():
            torch.distributed.broadcast(buf, src=0)
    was_training = gen.training
    try:
        score([gen], shard, [metrics], device, batch_size=max(options.batch_size, 32), workers=workers,
              progress=progress, console=console, description=f"validation at step {step}")
    finally:
        gen.train(was_training)
    if info.enabled:
        shards = ckdist.gather_objects(metrics, info)
        merged = shards[0]
        for other in shards[1:]:
            for name, m in merged.items():
                m.merge(other[name])
        metrics = merged
    values = {f"val_{k}": float(m.compute()) for k, m in metrics.items() if k != ColourL1.key}
    values["val_l1"] = float(metrics[ColourL1.key].compute())
    return values
