"""The losses ``ns_l1``, ``minimax_l1``, ``l2``, ``l1``, ``huber`` and ``bins_ce`` (their options and registration are in :mod:`colorkit.plugins.losses`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from colorkit.kernel import abbins, color
from colorkit.kernel.interfaces import Discriminator, Loss, LossParts, Prediction
from colorkit.plugins.losses import AdversarialL1Options, BinsOptions, RegressionOptions


def _chroma(lab: torch.Tensor) -> torch.Tensor:
    """Per-pixel chroma of normalised L*a*b*; the epsilon keeps the gradient finite at grey."""
    return (lab[:, 1:3].square().sum(dim=1) + 1e-6).sqrt()


def chroma_error(batch: Prediction) -> torch.Tensor:
    """Mean |C(prediction) - C(truth)| over pixels, C the chroma of normalised a*b*."""
    return F.l1_loss(_chroma(batch.fake_lab), _chroma(batch.real_lab))


def _logits(disc: Discriminator, l: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:  # noqa: E741
    return disc(l, lab)


class _AdversarialL1(Loss):
    needs_discriminator = True

    def __init__(self, options: AdversarialL1Options) -> None:
        self.options = options

    def gan_term(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define gan_term")

    def generator_loss(self, batch: Prediction, disc: Discriminator | None) -> LossParts:
        l1 = F.l1_loss(batch.colour, batch.target)
        parts = {"l1": l1}
        reconstruction = l1
        if self.options.chroma > 0:
            parts["chroma"] = chroma_error(batch)
            reconstruction = l1 + self.options.chroma * parts["chroma"]
        if disc is None:  # the reconstruction-only phase before train.gan_start
            return {"total": self.options.lam * reconstruction, **parts}
        gan = self.gan_term(_logits(disc, batch.l, batch.fake_lab))
        return {"total": gan + self.options.lam * reconstruction, "gan": gan, **parts}

    def discriminator_loss(self, batch: Prediction, disc: Discriminator) -> LossParts:
        real = _logits(disc, batch.l, batch.real_lab)
        fake = _logits(disc, batch.l, batch.fake_lab)
        d_real = F.binary_cross_entropy_with_logits(real, torch.full_like(real, self.options.real_label))
        d_fake = F.binary_cross_entropy_with_logits(fake, torch.full_like(fake, self.options.fake_label))
        return {"total": d_real + d_fake, "d_real": d_real, "d_fake": d_fake}


class NonSaturatingL1(_AdversarialL1):
    """Non-saturating GAN loss -log D(G(x)) + lambda * L1 (eq. 7), D loss of eq. 8."""

    gan_label = r"$-\log D(G(z))$ (non-saturating, eq. 7)"

    def gan_term(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


class MinimaxL1(_AdversarialL1):
    """Saturating (minimax) GAN loss log(1 - D(G(x))) + lambda * L1 (eq. 1), for Figure 1."""

    gan_label = r"$\log(1 - D(G(z)))$ (saturating, eq. 1)"

    def gan_term(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -F.softplus(fake_logits).mean()


class _Regression(Loss):
    """A loss with no discriminator: ``fn(pred, target)``, logged under ``key``, plus the
    optional chroma term of :class:`RegressionOptions`, logged as ``chroma``."""

    needs_discriminator = False
    key = ""

    def __init__(self, options: RegressionOptions) -> None:
        self.options = options

    def fn(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator_loss(self, batch: Prediction, disc: Discriminator | None) -> LossParts:
        value = self.fn(batch.colour, batch.target)
        parts = {"total": value, self.key: value}
        if self.options.chroma > 0:
            chroma = chroma_error(batch)
            parts["chroma"] = chroma
            parts["total"] = value + self.options.chroma * chroma
        return parts


class L2(_Regression):
    """Mean squared error between prediction and ground truth over all pixels (eq. 9)."""

    key = "l2"

    def fn(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, target)


class L1(_Regression):
    """Mean absolute error between prediction and ground truth over all pixels: the median
    colour where the mean of L2 would average distinct colours into grey-brown."""

    key = "l1"

    def fn(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(pred, target)


class Huber(_Regression):
    """Huber (smooth L1) loss: quadratic for errors under ``delta``, linear above."""

    key = "huber"

    def fn(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.huber_loss(pred, target, delta=self.options.delta)


class BinsCrossEntropy(Loss):
    """Classification over quantised a*b* cells with class rebalancing (Zhang et al. 2016, eq. 2-4):
    each pixel's true a*b* is a soft label over the 4 cells around it (bilinear weights), the loss is
    its cross-entropy with the predicted cell distribution, weighted by the rebalancing weight of the
    pixel's nearest cell, ``w ∝ 1 / ((1 - mix) p + mix / Q)`` with ``p`` the cells' frequencies over
    a seeded sample of the train split (:meth:`prepare`), averaged over pixels (logits predicted
    at a lower resolution are compared with the target's area means). Optionally plus
    ``l1`` times the L1 error of the distribution's mean colour."""

    trains_on = "ab_bins"

    def __init__(self, options: BinsOptions) -> None:
        self.options = options
        self.weights = torch.ones(abbins.count())

    def prepare(self, data: torch.utils.data.Dataset) -> None:
        """The cells' frequencies over up to ``images`` train images (a seeded sample)."""
        n = len(data)  # type: ignore[arg-type]
        picks = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: self.options.images].tolist()
        counts = torch.zeros(abbins.count(), dtype=torch.float64)
        for start in range(0, len(picks), 64):
            rgb = torch.stack([data[i] for i in picks[start:start + 64]])
            ab = color.rgb_to_model(rgb)[:, 1:]
            counts += torch.bincount(abbins.nearest(ab).flatten(), minlength=len(counts)).double()
        self.weights = self.class_weights = abbins.rebalance_weights(counts, self.options.mix)

    def generator_loss(self, batch: Prediction, disc: Discriminator | None) -> LossParts:
        logits = batch.pred
        if logits.shape[1] != len(self.weights):
            raise ValueError(f"bins_ce needs logits over {len(self.weights)} a*b* cells, got {logits.shape[1]} channels")
        target = batch.target
        if target.shape[-2:] != logits.shape[-2:]:  # logits at a lower resolution: the target's area means
            target = F.adaptive_avg_pool2d(target, logits.shape[-2:])
        indices, soft = abbins.soft_encode(target)
        log_probs = F.log_softmax(logits.float(), dim=1)
        ce = -(log_probs.gather(1, indices) * soft).sum(dim=1)
        weight = self.weights.to(logits.device)[abbins.nearest(target)]
        value = (weight * ce).mean()
        parts = {"total": value, "ce": value}
        if self.options.l1 > 0:
            parts["l1"] = F.l1_loss(batch.colour, batch.target)
            parts["total"] = value + self.options.l1 * parts["l1"]
        return parts
