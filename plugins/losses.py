"""Losses ``ns_l1`` (eq. 7-8), ``minimax_l1`` (eq. 1 + L1) and ``l2`` (eq. 9) of Nazeri & Ng (2018),
the plain regression losses ``l1`` and ``huber`` (levers of the time-to-quality suite), and
``bins_ce``, colour classification over quantised a*b* with class rebalancing (Zhang et al. 2016).

All work on logits: ``-log D(x) = softplus(-x)`` and ``log(1 - D(x)) = -softplus(x)``, which are
exact and numerically stable. The L1/L2 reconstruction terms are means over pixels and channels
of the normalised generator output (a*b* or L*a*b*).
"""

from __future__ import annotations

from dataclasses import dataclass

import colorkit
from colorkit.kernel.options import opt


@dataclass(frozen=True)
class RegressionOptions:
    chroma: float = opt(0.0, "weight of a chroma term |C(pred) - C(truth)|, C = sqrt(a*^2 + b*^2), added "
                              "to the reconstruction error: counters the greyish average a regression "
                              "predicts where the hue is uncertain (0 = off)")

    def __post_init__(self) -> None:
        if self.chroma < 0:
            raise ValueError("loss.chroma must be >= 0")


@dataclass(frozen=True)
class AdversarialL1Options(RegressionOptions):
    lam: float = opt(100.0, "weight lambda of the L1 term (the paper: 100)")
    real_label: float = opt(0.9, "discriminator target for real images (one-sided label smoothing: 0.9)")
    fake_label: float = opt(0.0, "discriminator target for generated images")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lam < 0:
            raise ValueError("loss.lam must be >= 0")
        for key in ("real_label", "fake_label"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"loss.{key} must be in [0, 1]")


@dataclass(frozen=True)
class HuberOptions(RegressionOptions):
    delta: float = opt(0.1, "where the loss turns from quadratic to linear, in normalised units (1 = 110 a*b*)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.delta <= 0:
            raise ValueError("loss.delta must be positive")


@dataclass(frozen=True)
class BinsOptions:
    mix: float = opt(0.5, "lambda of the class rebalancing w ∝ 1 / ((1 - lambda) p + lambda / Q), p the cells' "
                          "frequencies in the train split, Q their number (Zhang et al.: 0.5; 1: no rebalancing)")
    l1: float = opt(0.0, "weight of an L1 term on the mean colour of the predicted distribution (0 = off)")
    images: int = opt(2000, "train images (a seeded sample) the cells' frequencies are counted on")

    def __post_init__(self) -> None:
        if not 0.0 < self.mix <= 1.0:
            raise ValueError("loss.mix must be in (0, 1]")
        if self.l1 < 0:
            raise ValueError("loss.l1 must be >= 0")
        if self.images < 1:
            raise ValueError("loss.images must be at least 1")


@colorkit.hookimpl
def register_losses(register):
    register("ns_l1", "colorkit.plugins.loss_functions:NonSaturatingL1", options=AdversarialL1Options,
             description="non-saturating GAN + lambda*L1, one-sided label smoothing (eq. 7-8)")
    register("minimax_l1", "colorkit.plugins.loss_functions:MinimaxL1", options=AdversarialL1Options,
             description="saturating minimax GAN + lambda*L1 (eq. 1), the Figure 1 comparison")
    register("l2", "colorkit.plugins.loss_functions:L2", options=RegressionOptions,
             description="mean squared error, no discriminator: the U-Net baseline (eq. 9)")
    register("l1", "colorkit.plugins.loss_functions:L1", options=RegressionOptions, description="mean absolute error, no discriminator")
    register("bins_ce", "colorkit.plugins.loss_functions:BinsCrossEntropy", options=BinsOptions,
             description="classification over quantised a*b* cells with class rebalancing (Zhang et al. 2016); "
                         "needs gen.output=bins, no discriminator")
    register("huber", "colorkit.plugins.loss_functions:Huber", options=HuberOptions, description="Huber (smooth L1) loss, no discriminator")
