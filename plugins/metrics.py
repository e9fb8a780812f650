"""Metrics ``mae``, ``rmse``, ``accuracy``, ``psnr``, ``ssim``, ``colorfulness``,
``colorfulness_gap``, ``auc``, ``auc_rebal`` and ``hist_intersection`` (docs/metrics.md says what
each rewards and misses).

Every metric receives batches of predicted and ground-truth RGB images as floats in ``[0, 1]``
(``B x 3 x H x W``) and accumulates exactly over batches: sums are kept in float64, so two
half-batches give the value of the whole batch. Two kinds of pooling are used, and each class
says which:

* **pooled over pixels**: a sum over every pixel (and channel) of every image divided by the
  total count (``mae``, ``rmse``, ``accuracy``, ``auc``). For equally sized images this is also
  the mean of the per-image values (except ``rmse``, whose square root comes after pooling).
* **per image, then averaged**: the metric is computed on each image and the mean over images
  is returned (``psnr``, ``ssim``, ``colorfulness``), the common convention for PSNR and SSIM
  (e.g. Zhang et al. 2016; the BasicSR and mmagic evaluators). ``colorfulness_gap`` compares the
  two set means (DDColor's delta-CF), or the images one by one with ``per_image=true``.
* **histograms over the set**: fixed-size count tensors over a*b* bins, turned into a value only
  in ``compute`` because the value depends on the whole set's colour distribution
  (``auc_rebal``, ``hist_intersection``).

L*a*b* values are computed with :func:`colorkit.kernel.color.rgb_to_lab` (sRGB, D65, as
``skimage.color.rgb2lab``) in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import colorkit
from colorkit.kernel.options import opt


@dataclass(frozen=True)
class AccuracyOptions:
    threshold: float = opt(2.0, "t: a pixel matches when |dL| <= t, |da| <= 2.2 t and |db| <= 2.2 t")

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("metric accuracy: threshold must be >= 0")


_OPPONENT_HELP = (
    "signed: rg = R - G, yb = (R + G)/2 - B as in Hasler & Suesstrunk's paper; absolute: |rg| and |yb| "
    "before the means and standard deviations, as DDColor's calculate_cf (and pyimagesearch's code)"
)


@dataclass(frozen=True)
class ColorfulnessOptions:
    opponent: Literal["signed", "absolute"] = opt("signed", _OPPONENT_HELP)


@dataclass(frozen=True)
class ColorfulnessGapOptions:
    opponent: Literal["signed", "absolute"] = opt("signed", _OPPONENT_HELP)
    per_image: bool = opt(
        False,
        "false: |mean M(pred) - mean M(truth)| over the set (DDColor's delta-CF); "
        "true: mean over images of |M(pred) - M(truth)| (never smaller: over- and under-colouring do not cancel)",
    )


def _check_bin(who: str, side: float) -> None:
    if not side >= 1.0:
        raise ValueError(f"metric {who}: bin must be >= 1 (a*b* units)")


@dataclass(frozen=True)
class RebalancedAUCOptions:
    lam: float = opt(
        0.5,
        "lambda: pixel weight w = 1 / ((1 - lambda) p + lambda / Q); 0.5 = the weights of the paper's training "
        "loss (the value issue 32 fixes for this project's targets), 0 = inverse frequency (the paper's "
        "evaluation: every occupied bin weighs the same), 1 = no rebalancing",
    )
    bin: float = opt(10.0, "side of the square a*b* bins of the true colour, centred on multiples of it")

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError("metric auc_rebal: lam must be in [0, 1]")
        _check_bin("auc_rebal", self.bin)


@dataclass(frozen=True)
class HistogramOptions:
    bin: float = opt(10.0, "side of the square a*b* bins, centred on multiples of it")

    def __post_init__(self) -> None:
        _check_bin("hist_intersection", self.bin)


#: name -> (class in :mod:`colorkit.plugins.metric_functions`, options, description)
METRICS: dict[str, tuple[str, type | None, str]] = {
    "mae": ("MAE", None, "mean absolute error, RGB 0..255, pooled over pixels and channels (lower is better)"),
    "rmse": ("RMSE", None, "root mean squared error, RGB 0..255, pooled over pixels and channels (lower is better)"),
    "accuracy": ("Accuracy", AccuracyOptions,
                 "authors' pixel accuracy: rounded Lab within t, 2.2t, 2.2t (t=2), % of pixels"),
    "psnr": ("PSNR", None, "PSNR on RGB [0,1] (piq), dB, mean over images"),
    "ssim": ("SSIM", None, "SSIM on RGB [0,1] (piq defaults), mean over images"),
    "colorfulness": ("Colorfulness", ColorfulnessOptions,
                     "Hasler & Suesstrunk 2003 colourfulness M of the prediction on RGB 0..255, mean over images: "
                     "rg = R-G, yb = (R+G)/2-B, M = sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2), "
                     "signed means and population sds (opponent=absolute: DDColor's |rg|, |yb|)"),
    "colorfulness_gap": ("ColorfulnessGap", ColorfulnessGapOptions,
                         "DDColor's delta-CF: |mean over images of M(prediction) - mean over images of M(truth)|, "
                         "M the colourfulness of `colorfulness` (per_image=true: mean of per-image |differences|); "
                         "lower is better"),
    "auc": ("AUC", None,
            "Zhang et al. 2016 AuC without rebalancing: pixel mean of 1 - min(d, 150)/150, d the a*b* distance "
            "to the truth (the exact area under the fraction-within-t curve, t in [0, 150]), %; rewards grey"),
    "auc_rebal": ("RebalancedAUC", RebalancedAUCOptions,
                  "Zhang et al. 2016 class-rebalanced AuC: mean over t = 0..150 of the weighted fraction of pixels "
                  "with a*b* distance d <= t, pixel weight w = 1/((1-lam) p + lam/Q), p the set frequency of the "
                  "true colour's a*b* bin (side 10), Q the occupied bins, lam = 0.5 (lam = 0 is the paper's evaluation: "
                  "the mean over occupied bins of each bin's AuC), %"),
    "hist_intersection": ("HistogramIntersection", HistogramOptions,
                          "intersection of the set's pooled a*b* histograms: sum over bins (side 10, centred on "
                          "multiples of 10, |a|,|b| <= 135) of min(h_pred, h_truth), each summing to 1; "
                          "1 = the same colour distribution, higher is better"),
}


@colorkit.hookimpl
def register_metrics(register):
    for name, (cls, options, description) in METRICS.items():
        module = "metric_ab" if cls in ("RebalancedAUC", "HistogramIntersection") else "metric_functions"
        register(name, f"colorkit.plugins.{module}:{cls}", options=options, description=description)
