"""Metrics ``mae``, ``rmse``, ``accuracy``, ``psnr``, ``ssim``, ``colorfulness``,
``colorfulness_gap`` and ``auc``.

Every metric receives batches of predicted and ground-truth RGB images as floats in ``[0, 1]``
(``B x 3 x H x W``) and accumulates exactly over batches: sums are kept in float64, so two
half-batches give the value of the whole batch. Two kinds of pooling are used, and each class
says which:

* **pooled over pixels**: a sum over every pixel (and channel) of every image divided by the
  total count (``mae``, ``rmse``, ``accuracy``, ``auc``). For equally sized images this is also
  the mean of the per-image values (except ``rmse``, whose square root comes after pooling).
* **per image, then averaged**: the metric is computed on each image and the mean over images
  is returned (``psnr``, ``ssim``, ``colorfulness``, ``colorfulness_gap``), the common convention
  for PSNR and SSIM (e.g. Zhang et al. 2016; the BasicSR and mmagic evaluators).

L*a*b* values are computed with :func:`colorkit.kernel.color.rgb_to_lab` (sRGB, D65, as
``skimage.color.rgb2lab``) in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import colorkit
from colorkit.kernel.options import opt


@dataclass(frozen=True)
class AccuracyOptions:
    threshold: float = opt(2.0, "t: a pixel matches when |dL| <= t, |da| <= 2.2 t and |db| <= 2.2 t")

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("metric accuracy: threshold must be >= 0")


#: name -> (class in :mod:`colorkit.plugins.metric_functions`, options, description)
METRICS: dict[str, tuple[str, type | None, str]] = {
    "mae": ("MAE", None, "mean absolute error, RGB 0..255, pooled over pixels and channels (lower is better)"),
    "rmse": ("RMSE", None, "root mean squared error, RGB 0..255, pooled over pixels and channels (lower is better)"),
    "accuracy": ("Accuracy", AccuracyOptions,
                 "authors' pixel accuracy: rounded Lab within t, 2.2t, 2.2t (t=2), % of pixels"),
    "psnr": ("PSNR", None, "PSNR on RGB [0,1] (piq), dB, mean over images"),
    "ssim": ("SSIM", None, "SSIM on RGB [0,1] (piq defaults), mean over images"),
    "colorfulness": ("Colorfulness", None,
                     "Hasler & Suesstrunk 2003 colourfulness of the prediction, mean over images"),
    "colorfulness_gap": ("ColorfulnessGap", None,
                         "|colourfulness(prediction) - colourfulness(truth)|, mean over images (lower is better)"),
    "auc": ("AUC", None, "area under the a*b* distance accuracy curve, thresholds 0..150 (Zhang et al. 2016), %"),
}


@colorkit.hookimpl
def register_metrics(register):
    for name, (cls, options, description) in METRICS.items():
        register(name, f"colorkit.plugins.metric_functions:{cls}", options=options, description=description)
