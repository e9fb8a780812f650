"""The a*b*-histogram metrics of :mod:`colorkit.plugins.metrics`: the class-rebalanced AuC and the
histogram intersection (their options, descriptions and registration are there)."""

from __future__ import annotations

import math

import torch

from colorkit.kernel.color import rgb_to_lab
from colorkit.kernel.interfaces import Metric
from colorkit.plugins.metric_functions import check_pair
from colorkit.plugins.metrics import HistogramOptions, RebalancedAUCOptions


#: a*b* of every sRGB colour lies within |a|, |b| < 130 (a in [-86.2, 98.3], b in [-107.9, 94.5])
AB_RANGE = 130.0


def ab_bin_count(side: float) -> int:
    """Bins per a*b* axis: centres ``k * side`` for ``|k| <= K``, the smallest ``K`` whose bins
    cover ``[-130, 130)`` (side 10: 27 bins, ``[-135, 135)``)."""
    return 2 * math.ceil(AB_RANGE / side - 0.5) + 1


def ab_bin_index(ab: torch.Tensor, side: float) -> torch.Tensor:
    """The flat a*b* bin of each pixel of ``B x 2 x H x W`` a*b* (``B x H x W`` int64).

    Bins are squares of side ``side`` centred on multiples of it (as Zhang et al.'s 313-bin grid),
    so a = b = 0 is a bin's centre and grey pixels, whose a*b* is 0 only up to rounding, stay in
    one bin. Values beyond the outer bins (none for sRGB colours) are counted in them.
    """
    n = ab_bin_count(side)
    k = n // 2
    idx = torch.floor(ab / side + 0.5).clamp(-k, k).to(torch.int64) + k
    return idx[:, 0] * n + idx[:, 1]


class _ABBinned(Metric):
    """A metric that counts pixels in the square a*b* bins of :func:`ab_bin_index` (``options.bin``)."""

    options_class: type = RebalancedAUCOptions

    def __init__(self, options: RebalancedAUCOptions | HistogramOptions | None = None) -> None:
        self.options = options or self.options_class()
        self.reset()

    @property
    def bins(self) -> int:
        """Number of a*b* bins (a property: ``merge`` adds every numeric attribute)."""
        return ab_bin_count(self.options.bin) ** 2


class RebalancedAUC(_ABBinned):
    """Class-rebalanced AuC of Zhang et al. (2016), "Colorful Image Colorization", section 3.1.

    For each pixel, ``d = sqrt(da^2 + db^2)`` between the prediction's and the ground truth's
    a*b* (L*a*b* units) and a weight ``w = 1 / ((1 - lam) p + lam / Q)``, where ``p`` is the
    frequency, over all pixels of the whole evaluated set, of the a*b* bin of the pixel's true
    colour (square bins of side ``bin`` = 10 centred on multiples of 10, see
    :func:`ab_bin_index`) and ``Q`` the number of bins occupied in the set. The metric is
    ``100 / 151 * sum over t = 0, 1, ..., 150 of F(t)`` with ``F(t) = sum w [d <= t] / sum w``:
    the mean of the weighted fraction of pixels within ``t`` over the 151 thresholds.

    ``lam = 0`` (the default, the paper's "Equation 4, setting lambda = 0") weighs pixels by
    ``1 / p``: the value is the mean, over the occupied true-colour bins, of each bin's own AuC,
    so a saturated colour seen on a few pixels counts as much as grey. ``lam = 0.5`` is the
    paper's training-loss weighting; ``lam = 1`` weighs every pixel alike (plain AuC at integer
    thresholds). Zhang et al. take ``p`` from their training set, smoothed with a Gaussian
    (sigma 5), over Q = 313 in-gamut bins; here ``p`` is the evaluated set's unsmoothed ground
    truth, so values are comparable only between runs on the same images. Predicting grey or
    the commonest colour everywhere scores lower here than on plain ``auc``. Unit: percent.
    Higher is better; 100 is a perfect a*b* match.

    Because ``p`` is known only at the end, ``update`` keeps per true-colour bin the number of
    pixels and the number of (pixel, threshold) pairs with ``d <= t`` (``151 - ceil(d)`` per
    pixel, 0 beyond 150): integer tensors of fixed size, summed by ``merge``.
    """

    unit = "%"
    higher_is_better = True
    max_distance = 150

    def reset(self) -> None:
        self.pixels = torch.zeros(self.bins, dtype=torch.int64)
        self.within = torch.zeros(self.bins, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = check_pair(pred, target, "auc_rebal")
        ab_t = rgb_to_lab(t)[:, 1:]
        d = (rgb_to_lab(p)[:, 1:] - ab_t).pow(2).sum(dim=1).sqrt()
        # d <= t for an integer t exactly when ceil(d) <= t: a pixel passes 151 - ceil(d) thresholds
        passed = (self.max_distance + 1 - d.ceil()).clamp(min=0).flatten()
        idx = ab_bin_index(ab_t, self.options.bin).flatten()
        self.pixels += torch.bincount(idx, minlength=self.bins).cpu()
        within = torch.bincount(idx, weights=passed, minlength=self.bins)  # float64: exact below 2^53
        self.within += within.round().to(torch.int64).cpu()

    def compute(self) -> float:
        n = self.pixels.to(torch.float64)
        total = n.sum()
        if total == 0:
            return math.nan
        occupied = n > 0
        lam = self.options.lam
        mix = (1.0 - lam) * n / total + lam / occupied.sum()
        w = torch.where(occupied, 1.0 / mix.clamp_min(1e-300), torch.zeros_like(n))
        steps = self.max_distance + 1
        return float(100.0 * (w * self.within.to(torch.float64)).sum() / (steps * (w * n).sum()))


class HistogramIntersection(_ABBinned):
    """Intersection of the pooled a*b* histograms of the predictions and of the ground truth.

    Every pixel of every image of the set is counted in a square a*b* bin (side ``bin`` = 10,
    centred on multiples of 10, covering ``|a|, |b| <= 135``, see :func:`ab_bin_index`); each of
    the two histograms is divided by its total, and the metric is ``sum over bins of
    min(h_pred, h_truth)``. 1 means the same colour distribution; the floor (a = b = 0
    everywhere) puts every pixel in the grey bin and scores the fraction of true pixels there.
    It ignores where the colours are placed (permuting a perfect prediction's pixels scores 1)
    and lightness. Unitless, 0..1. Higher is better.
    """

    options_class = HistogramOptions
    unit = ""
    higher_is_better = True

    def reset(self) -> None:
        self.pred_counts = torch.zeros(self.bins, dtype=torch.int64)
        self.true_counts = torch.zeros(self.bins, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = check_pair(pred, target, "hist_intersection")
        for counts, rgb in ((self.pred_counts, p), (self.true_counts, t)):
            idx = ab_bin_index(rgb_to_lab(rgb)[:, 1:], self.options.bin).flatten()
            counts += torch.bincount(idx, minlength=self.bins).cpu()

    def compute(self) -> float:
        np_, nt = self.pred_counts.sum(), self.true_counts.sum()
        if nt == 0:
            return math.nan
        hp = self.pred_counts.to(torch.float64) / np_
        ht = self.true_counts.to(torch.float64) / nt
        return float(torch.minimum(hp, ht).sum())
