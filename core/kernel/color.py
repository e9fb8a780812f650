"""sRGB (D65) <-> CIE L*a*b* on batched torch tensors, and the normalisation models use.

The constants are those of ``skimage.color`` (sRGB primaries, D65 white point for the 2 degree
observer), so results agree with ``skimage.color.rgb2lab`` / ``lab2rgb``; the tests check it on
random colours and on real photos. Everything works on ``... x 3 x H x W`` tensors on any device,
so conversion runs on whole batches where the model runs.
"""

from __future__ import annotations

import torch

# Linear sRGB -> XYZ (D65), as in skimage.color.colorconv.xyz_from_rgb.
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)

L_SCALE = 50.0
AB_SCALE = 110.0

_EPS = 216.0 / 24389.0  # (6/29)^3
_KAPPA = 24389.0 / 27.0


def _matrix(device: torch.device, dtype: torch.dtype, inverse: bool = False) -> torch.Tensor:
    m = torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)
    if inverse:
        m = torch.linalg.inv(m)
    return m.to(device=device, dtype=dtype)


def _apply(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # x: ... x 3 x H x W; channel mix by a 3x3 matrix.
    return torch.einsum("ij,...jhw->...ihw", m, x)


def _working(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-3] != 3:
        raise ValueError(f"expected 3 channels in dimension -3, got shape {tuple(x.shape)}")
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in ``[0, 1]`` (``... x 3 x H x W``) to L*a*b* (L in ``[0, 100]``)."""
    rgb = _working(rgb).clamp(0.0, 1.0)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = _apply(_matrix(rgb.device, rgb.dtype), linear)
    white = torch.tensor(_WHITE_D65, device=rgb.device, dtype=rgb.dtype).view(3, 1, 1)
    t = xyz / white
    f = torch.where(t > _EPS, t.clamp_min(_EPS) ** (1.0 / 3.0), (_KAPPA * t + 16.0) / 116.0)
    fx, fy, fz = f.unbind(-3)
    lightness = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack((lightness, a, b), dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* (``... x 3 x H x W``) to sRGB, clipped to ``[0, 1]`` (as skimage's ``lab2rgb``)."""
    lab = _working(lab)
    lightness, a, b = lab.unbind(-3)
    fy = (lightness + 16.0) / 116.0
    fx = fy + a / 500.0
    fz = (fy - b / 200.0).clamp_min(0.0)
    f = torch.stack((fx, fy, fz), dim=-3)
    t = torch.where(f > 6.0 / 29.0, f**3, (f - 16.0 / 116.0) * 3.0 * (6.0 / 29.0) ** 2)
    white = torch.tensor(_WHITE_D65, device=lab.device, dtype=lab.dtype).view(3, 1, 1)
    xyz = t * white
    linear = _apply(_matrix(lab.device, lab.dtype, inverse=True), xyz).clamp_min(0.0)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0.0, 1.0)


def normalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* to the model scale: ``L / 50 - 1``, ``a / 110``, ``b / 110`` (about ``[-1, 1]``)."""
    lightness, ab = lab[..., :1, :, :], lab[..., 1:, :, :]
    return torch.cat((lightness / L_SCALE - 1.0, ab / AB_SCALE), dim=-3)


def denormalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_lab`."""
    lightness, ab = lab[..., :1, :, :], lab[..., 1:, :, :]
    return torch.cat(((lightness + 1.0) * L_SCALE, ab * AB_SCALE), dim=-3)


def rgb_to_model(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (uint8 ``0..255`` or float ``[0, 1]``) to normalised L*a*b*."""
    if rgb.dtype == torch.uint8:
        rgb = rgb.float() / 255.0
    return normalize_lab(rgb_to_lab(rgb))


def model_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Normalised L*a*b* to RGB floats in ``[0, 1]``."""
    return lab_to_rgb(denormalize_lab(lab.float()))


def as_lab(l: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """A full normalised L*a*b* image from the condition ``l`` and a generator output.

    A 2-channel (a*b*) output is joined to ``l``; a 3-channel output is returned as it is.
    """
    if colour.shape[-3] == 2:
        return torch.cat((l, colour), dim=-3)
    if colour.shape[-3] == 3:
        return colour
    raise ValueError(f"colour must have 2 (a*b*) or 3 (L*a*b*) channels, got shape {tuple(colour.shape)}")


def gray_lab(l: torch.Tensor) -> torch.Tensor:
    """The "no colour" image: the condition ``l`` with ``a = b = 0``."""
    return torch.cat((l, torch.zeros_like(l).expand(*l.shape[:-3], 2, *l.shape[-2:])), dim=-3)
