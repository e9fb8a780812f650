"""The metrics of :mod:`colorkit.plugins.metrics` (their options, descriptions and registration are there),
but for the a*b*-histogram ones (:mod:`colorkit.plugins.metric_ab`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from colorkit.kernel.color import rgb_to_lab
from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Metric
from colorkit.plugins.metrics import AccuracyOptions, ColorfulnessGapOptions, ColorfulnessOptions


def check_pair(pred: torch.Tensor, target: torch.Tensor, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(
            f"metric {who}: expected pred and target of one shape B x 3 x H x W, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    return pred.detach().to(torch.float64).clamp(0.0, 1.0), target.detach().to(torch.float64).clamp(0.0, 1.0)


class _Pooled(Metric):
    """Keeps a float64 sum and a count; ``compute`` is ``sum / count`` (times ``scale``)."""

    scale = 1.0

    def __init__(self, options: object = None) -> None:
        self.options = options
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def _add(self, values: torch.Tensor) -> None:
        self.total += float(values.sum(dtype=torch.float64))
        self.count += values.numel()

    def compute(self) -> float:
        if self.count == 0:
            return math.nan
        return float(self.total / self.count * self.scale)


class MAE(_Pooled):
    """Mean absolute error on 8-bit RGB, over every pixel and channel.

    ``MAE = sum |255 pred - 255 target| / (3 * number of pixels)``, pooled over all images.
    Unit: RGB levels on the 0..255 scale. Lower is better; 0 is a perfect copy. The paper's
    Table 1 reports an "MAE" without saying on what scale or colour space it is taken, so its
    numbers are not comparable with this one (see benchmarks/RESULTS.md).
    """

    unit = "0-255"
    higher_is_better = False

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = check_pair(pred, target, "mae")
        self._add((p - t).abs() * 255.0)


class RMSE(_Pooled):
    """Root mean squared error on RGB in 0..255, over every pixel and channel.

    ``RMSE = sqrt(sum (255 pred - 255 target)^2 / (3 * number of pixels))``, the mean of squares
    pooled over all images before the square root (not a mean of per-image RMSEs).
    Unit: RGB levels on the 0..255 scale. Lower is better.
    """

    unit = "0-255"
    higher_is_better = False

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = check_pair(pred, target, "rmse")
        self._add(((p - t) * 255.0) ** 2)

    def compute(self) -> float:
        mean = super().compute()
        return math.sqrt(mean) if math.isfinite(mean) else mean


class Accuracy(_Pooled):
    """The authors' pixel accuracy (Nazeri & Ng's code, ``pixelwise_accuracy``).

    Both images are converted to L*a*b* and rounded to integers (round half to even); a pixel
    matches when ``|dL| <= t``, ``|da| <= 2.2 t`` and ``|db| <= 2.2 t`` (``t = threshold``,
    2 by default). The value is the percentage of matching pixels, pooled over all images.
    Unit: percent. Higher is better.

    The authors compare the generator's L*a*b* output directly; here the prediction is the RGB
    image (as written to disk) converted back to L*a*b*, so out-of-gamut colours count as shown.
    """

    unit = "%"
    higher_is_better = True
    scale = 100.0

    def __init__(self, options: AccuracyOptions | None = None) -> None:
        super().__init__(options or AccuracyOptions())

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = check_pair(pred, target, "accuracy")
        d = (rgb_to_lab(p).round() - rgb_to_lab(t).round()).abs()
        th = self.options.threshold
        ok = (d[:, 0] <= th) & (d[:, 1] <= 2.2 * th) & (d[:, 2] <= 2.2 * th)
        self._add(ok.to(torch.float64))


class AUC(_Pooled):
    """Area under the cumulative curve of per-pixel a*b* distance (Zhang et al. 2016, "AuC").

    For each pixel, ``d = sqrt(da^2 + db^2)`` between the prediction's and the ground truth's
    a*b*. ``F(t)`` is the fraction of pixels with ``d <= t``; the metric is
    ``(1 / 150) * integral of F(t) dt over t in [0, 150]``, computed exactly as the pixel mean of
    ``1 - min(d, 150) / 150`` (the limit of a threshold sweep 0..150 with an ever finer step;
    a sweep at integer thresholds with the trapezoid rule differs by at most 0.33 points).
    Pooled over all pixels of all images, without class rebalancing. Unit: percent. Higher is
    better; 100 is a perfect a*b* match.
    """

    unit = "%"
    higher_is_better = True
    scale = 100.0
    max_distance = 150.0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = check_pair(pred, target, "auc")
        ab = rgb_to_lab(p)[:, 1:] - rgb_to_lab(t)[:, 1:]
        d = ab.pow(2).sum(dim=1).sqrt()
        self._add(1.0 - d.clamp(max=self.max_distance) / self.max_distance)


class _PerImage(_Pooled):
    """The mean of one value per image: ``_add`` receives a ``B``-vector (float64 sum, count)."""


class PSNR(_PerImage):
    """Peak signal-to-noise ratio on RGB in [0, 1] (``piq.psnr``, data range 1), per image.

    For each image, ``PSNR = -10 log10(MSE + 1e-8)`` with the MSE over all pixels and the three
    channels (piq's epsilon caps identical images at 80 dB); the metric is the mean over images.
    Unit: dB. Higher is better.
    """

    unit = "dB"
    higher_is_better = True

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        import piq

        p, t = check_pair(pred, target, "psnr")
        self._add(piq.psnr(p, t, data_range=1.0, reduction="none"))


class SSIM(_PerImage):
    """Structural similarity on RGB in [0, 1] (``piq.ssim`` with its defaults), per image.

    Wang et al. (2004): an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1,
    "valid" windows only, each image first average-pooled by ``round(min(H, W) / 256)`` when that
    is 2 or more (as Wang's reference code does); SSIM per channel, averaged over R, G, B, then
    the mean over images. Equals ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=...)`` on images under
    384 px. Images need at least 11 px on each side. Unitless, at most 1. Higher is better.
    """

    unit = ""
    higher_is_better = True
    kernel_size = 11

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = check_pair(pred, target, "ssim")
        if min(p.shape[-2:]) < self.kernel_size:
            raise UsageError(
                f"metric ssim needs images of at least {self.kernel_size}x{self.kernel_size} pixels, "
                f"got {p.shape[-2]}x{p.shape[-1]}"
            )
        self._add(ssim_per_image(p, t, self.kernel_size))


def ssim_per_image(x: torch.Tensor, y: torch.Tensor, kernel_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM of each image (as ``piq.ssim(data_range=1)``: Wang's downsampling, "valid" Gaussian
    windows, channels averaged), with the Gaussian window applied as two 1-D passes: the 11x11
    convolution of piq costs about 10x more on the CPU for the same numbers."""
    factor = max(1, round(min(x.shape[-2:]) / 256))
    if factor > 1:
        x, y = F.avg_pool2d(x, factor), F.avg_pool2d(y, factor)
    b, c, h, w = x.shape
    coords = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - (kernel_size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()

    def blur(z: torch.Tensor) -> torch.Tensor:
        z = F.conv2d(z.reshape(b * c, 1, *z.shape[-2:]), g.view(1, 1, 1, -1))
        return F.conv2d(z, g.view(1, 1, -1, 1))

    mu_x, mu_y = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim.mean(dim=(-2, -1)).view(b, c).mean(dim=1)


def colorfulness_per_image(rgb: torch.Tensor, opponent: str = "signed") -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness of each image of ``B x 3 x H x W`` RGB in [0, 1].

    On 0..255 values, ``rg = R - G`` and ``yb = (R + G) / 2 - B``;
    ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)`` with population
    standard deviations over the image's pixels. ``opponent="signed"`` (the paper) uses the signed
    ``rg`` and ``yb``, so the mean term is the length of the mean opponent colour (a colour cast);
    ``opponent="absolute"`` replaces them by ``|rg|`` and ``|yb|`` before both the means and the
    standard deviations, as DDColor's ``calculate_cf`` (copied from pyimagesearch) does.
    """
    x = rgb.to(torch.float64) * 255.0
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    if opponent == "absolute":
        rg, yb = rg.abs(), yb.abs()
    spread = (rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False)).sqrt()
    centre = (rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2).sqrt()
    return spread + 0.3 * centre


class Colorfulness(_PerImage):
    """Colourfulness of the prediction (Hasler & Suesstrunk 2003).

    Per image, on RGB in 0..255: ``rg = R - G``, ``yb = (R + G) / 2 - B``,
    ``M = sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)`` (population standard
    deviations, signed means: the paper's form); the metric is the mean of ``M`` over the
    predicted images. ``opponent=absolute`` takes ``|rg|`` and ``|yb|`` first (both terms), as
    DDColor's code does; its values are not comparable with the signed form's. The ground truth
    is not used. Unitless (0 for a gray image; about 15 "slightly", 33 "moderately", 59 "quite",
    82 "highly" colourful on the authors' scale). Higher means more colourful, which is better
    for a colorizer only up to the ground truth's level: compare ``colorfulness_gap``.
    """

    unit = ""
    higher_is_better = True

    def __init__(self, options: ColorfulnessOptions | None = None) -> None:
        super().__init__(options or ColorfulnessOptions())

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, _ = check_pair(pred, target, "colorfulness")
        self._add(colorfulness_per_image(p, self.options.opponent))


class ColorfulnessGap(Metric):
    """DDColor's colourfulness gap ("delta CF"): ``|mean_i M(pred_i) - mean_i M(truth_i)|``, with
    ``M`` the Hasler & Suesstrunk (2003) colourfulness of :class:`Colorfulness` and the means
    over the images of the set.

    This compares the set's average colourfulness only: a model too colourful on some images
    and too dull on others can score 0. ``per_image=true`` gives instead the mean over images of
    ``|M(pred_i) - M(truth_i)|``, which is never smaller. Unitless. Lower is better; 0 is a
    perfect match.
    """

    unit = ""
    higher_is_better = False

    def __init__(self, options: ColorfulnessGapOptions | None = None) -> None:
        self.options = options or ColorfulnessGapOptions()
        self.reset()

    def reset(self) -> None:
        self.total_pred = 0.0
        self.total_true = 0.0
        self.total_abs = 0.0
        self.count = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        p, t = check_pair(pred, target, "colorfulness_gap")
        mp = colorfulness_per_image(p, self.options.opponent)
        mt = colorfulness_per_image(t, self.options.opponent)
        self.total_pred += float(mp.sum())
        self.total_true += float(mt.sum())
        self.total_abs += float((mp - mt).abs().sum())
        self.count += mp.numel()

    def compute(self) -> float:
        if self.count == 0:
            return math.nan
        if self.options.per_image:
            return float(self.total_abs / self.count)
        return float(abs(self.total_pred / self.count - self.total_true / self.count))
