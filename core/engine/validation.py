"""In-training validation: the trainer's metrics on the ``val`` split, scored by the one scoring
path of colorkit (:func:`colorkit.engine.scoring.score`), sharded and merged across ranks.
"""

from __future__ import annotations

from typing import Any

import torch

from colorkit.engine import distributed as ckdist
from colorkit.engine.scoring import ColourL1, score


def validate(trainer: Any) -> dict[str, float]:
    """Metrics of the chosen names and ``val_l1`` (the plateau signal) on the ``val`` split.

    Scored by :func:`colorkit.engine.scoring.score`, the path ``colorkit eval`` takes, in fp32
    whatever ``train.precision`` is: the values equal ``colorkit eval --split val`` on the
    checkpoint saved next. Under DDP each rank scores every ``world_size``-th image of the
    first ``val_limit`` and the metric states are merged, in rank order, on every rank, so
    every rank takes the same decisions (best checkpoint, plateau) from the same numbers."""
    metrics = trainer.val_metrics
    for m in metrics.values():
        m.reset()
    n = len(trainer.val_data) if trainer.t.val_limit is None else min(trainer.t.val_limit, len(trainer.val_data))
    shard = torch.utils.data.Subset(trainer.val_data, range(trainer.info.rank, n, trainer.info.world_size))
    gen = trainer.eval_gen
    if trainer.info.enabled:  # batch-norm statistics: rank 0's, those the checkpoint holds
        for buf in gen.buffers():
            torch.distributed.broadcast(buf, src=0)
    was_training = gen.training
    try:
        score([gen], shard, [metrics], trainer.device, batch_size=max(trainer.t.batch_size, 32), workers=trainer.workers,
              progress=trainer.progress, console=trainer.console, description=f"validation at step {trainer.step}")
    finally:
        gen.train(was_training)
    if trainer.info.enabled:
        shards = ckdist.gather_objects(metrics, trainer.info)
        merged = shards[0]
        for other in shards[1:]:
            for name, m in merged.items():
                m.merge(other[name])
        metrics = merged
    values = {f"val_{k}": float(m.compute()) for k, m in metrics.items() if k != ColourL1.key}
    values["val_l1"] = float(metrics[ColourL1.key].compute())
    return values
