"""Dataset ``samples``: the colour photos scikit-image ships, served as random crops.

No download: the photos come with scikit-image. Each photo is resized so its short side is
``resize`` pixels; the left ``1 - holdout`` of its width is the ``train`` region, and the right
``holdout`` strip is held out: its top half is the ``val`` region (model selection), its bottom
half the ``test`` region (reported results), so no two splits share a pixel. ``train`` draws
fresh random crops (and flips) every epoch; ``val`` and ``test`` are fixed, seeded sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import colorkit
from colorkit.kernel.options import opt


@dataclass(frozen=True)
class SamplesOptions:
    size: int = opt(64, "crop size in pixels (square)")
    limit: int | None = opt(None, "at most this many items per split")
    crops_per_epoch: int = opt(256, "random training crops per epoch")
    eval_crops: int = opt(32, "fixed held-out crops in each of val and test")
    resize: int = opt(256, "short side of each photo before cropping (0 keeps full size)")
    holdout: float = opt(0.25, "fraction of each photo's width (right side) held out: top half val, bottom half test")
    flip: bool = opt(True, "random horizontal flips for training")
    seed: int = opt(0, "seed of the held-out crop positions")

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("dataset.size must be at least 1")
        if not 0.05 <= self.holdout <= 0.5:
            raise ValueError("dataset.holdout must be in [0.05, 0.5]")


@colorkit.hookimpl
def register_datasets(register):
    register("samples", "colorkit.plugins.samples_data:Samples", options=SamplesOptions,
             description="scikit-image's bundled colour photos as random crops (no download)")
