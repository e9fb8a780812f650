"""The L*-guided upsampling of predicted a*b* in torch, on batches (what ``chroma="guided"``
does in :func:`colorkit.engine.inference.predict_lab`); the choices, defaults and the method are
described in :mod:`colorkit.engine.chroma_numpy`, whose NumPy twin the ONNX Runtime backend uses.

The working-resolution part (box means, the linear fit) is done in float64 where the device has
it (the fit subtracts nearly equal means), the full-resolution part in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from colorkit.engine.chroma_numpy import GUIDE_SCALE, GUIDED_EPS, GUIDED_RADIUS, check_guided


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean over the ``(2 radius + 1)``-square box around each pixel (``B x C x h x w``),
    each box cut at the borders and divided by the pixels it holds."""
    if radius == 0:
        return x
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def guided_coefficients(guide_small: torch.Tensor, src: torch.Tensor, radius: int = GUIDED_RADIUS,
                        eps: float = GUIDED_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear coefficients ``A`` (per unit of L*) and ``B`` of ``src`` (``B x C x h x w``) fitted on
    the guide L* (``B x 1 x h x w``, 0-100), at the working resolution."""
    check_guided(radius, eps)
    dtype = torch.float64 if src.device.type in ("cpu", "cuda") else torch.float32
    i = guide_small.to(dtype) / GUIDE_SCALE
    p = src.to(dtype)
    mean_i, mean_p = box_mean(i, radius), box_mean(p, radius)
    var_i = (box_mean(i * i, radius) - mean_i * mean_i).clamp_(min=0.0)
    a = (box_mean(i * p, radius) - mean_i * mean_p) / (var_i + eps)
    return a / GUIDE_SCALE, mean_p - a * mean_i


def guided_upsample(guide_small: torch.Tensor, guide_full: torch.Tensor, src: torch.Tensor, *,
                    radius: int = GUIDED_RADIUS, eps: float = GUIDED_EPS) -> torch.Tensor:
    """``src`` (``B x C x h x w``, a*b* in any unit) upsampled to the size of ``guide_full``
    (``B x 1 x H x W``, the photo's L*, 0-100) by the fast guided filter on L*: ``A * L* + B``
    with ``A`` and ``B`` fitted on ``guide_small`` (L* at ``h x w``) and upsampled bilinearly.
    Float32, clamped to the range of ``src`` per image and channel."""
    a, b = guided_coefficients(guide_small, src, radius, eps)
    size = tuple(guide_full.shape[-2:])
    out = F.interpolate(a.float(), size=size, mode="bilinear", align_corners=False)
    out.mul_(guide_full.float()).add_(F.interpolate(b.float(), size=size, mode="bilinear", align_corners=False))
    lo, hi = src.float().amin(dim=(-2, -1), keepdim=True), src.float().amax(dim=(-2, -1), keepdim=True)
    return torch.maximum(torch.minimum(out, hi, out=out), lo, out=out)
