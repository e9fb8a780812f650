"""sRGB (D65) <-> CIE L*a*b* on batched torch tensors, and the normalisation models use.

The constants (:mod:`colorkit.kernel.srgb`) are those of ``skimage.color`` (sRGB primaries, D65 white point for the 2 degree
observer), so results agree with ``skimage.color.rgb2lab`` / ``lab2rgb``; the tests check it on
random colours and on real photos. Everything works on ``... x 3 x H x W`` tensors on any device,
so conversion runs on whole batches where the model runs.
"""

from __future__ import annotations

import torch

from colorkit.kernel.srgb import EPS as _EPS
from colorkit.kernel.srgb import KAPPA as _KAPPA
from colorkit.kernel.srgb import WHITE_D65 as _WHITE_D65
from colorkit.kernel.srgb import XYZ_FROM_RGB as _XYZ_FROM_RGB

L_SCALE = 50.0
AB_SCALE = 110.0


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


def _decode(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in ``[0, 1]`` to linear RGB (the sRGB transfer function undone)."""
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def _encode(linear: torch.Tensor) -> torch.Tensor:
    """Linear RGB (``>= 0``) to sRGB."""
    return torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(1e-12) ** (1.0 / 2.4) - 0.055, 12.92 * linear)


def _f(t: torch.Tensor) -> torch.Tensor:
    """CIE's ``f``: XYZ relative to the white to the cube-root scale of L*a*b*."""
    return torch.where(t > _EPS, t.clamp_min(_EPS) ** (1.0 / 3.0), (_KAPPA * t + 16.0) / 116.0)


def _finv(t: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_f` (the gamut search's form of it)."""
    return torch.where(t > 6.0 / 29.0, t * t * t, (t - 16.0 / 116.0) * (3.0 * (6.0 / 29.0) ** 2))


def _white(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_WHITE_D65, device=like.device, dtype=like.dtype).view(3, 1, 1)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in ``[0, 1]`` (``... x 3 x H x W``) to L*a*b* (L in ``[0, 100]``)."""
    rgb = _working(rgb).clamp(0.0, 1.0)
    linear = _decode(rgb)
    xyz = _apply(_matrix(rgb.device, rgb.dtype), linear)
    fx, fy, fz = _f(xyz / _white(rgb)).unbind(-3)
    lightness = 116.0 * fy - 16.0
    a = 500.0 * (fx - fy)
    b = 200.0 * (fy - fz)
    return torch.stack((lightness, a, b), dim=-3)


def _to_linear(lab: torch.Tensor, clip_z: bool) -> torch.Tensor:
    lightness_, a, b = lab.unbind(-3)
    fy = (lightness_ + 16.0) / 116.0
    fz = fy - b / 200.0
    f = torch.stack((fy + a / 500.0, fy, fz.clamp_min(0.0) if clip_z else fz), dim=-3)
    t = torch.where(f > 6.0 / 29.0, f**3, (f - 16.0 / 116.0) * 3.0 * (6.0 / 29.0) ** 2)
    return _apply(_matrix(lab.device, lab.dtype, inverse=True), t * _white(lab))


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* (``... x 3 x H x W``) to sRGB, clipped to ``[0, 1]`` (as skimage's ``lab2rgb``)."""
    linear = _to_linear(_working(lab), clip_z=True).clamp_min(0.0)
    return _encode(linear).clamp(0.0, 1.0)


def lab_to_linear_rgb(lab: torch.Tensor) -> torch.Tensor:
    """L*a*b* to linear sRGB without any clipping (out-of-gamut values fall outside [0, 1])."""
    return _to_linear(lab, clip_z=False)


def lightness(rgb: torch.Tensor) -> torch.Tensor:
    """L* (``... x 1 x H x W``) of sRGB in ``[0, 1]`` (``... x 3 x H x W``): the L of
    :func:`rgb_to_lab` (same formula), without computing a* and b*."""
    linear = _decode(rgb.clamp(0.0, 1.0))
    weights = torch.tensor(_XYZ_FROM_RGB[1], device=rgb.device, dtype=rgb.dtype).view(3, 1, 1)
    y = (linear * weights).sum(dim=-3, keepdim=True)  # the white's Y is 1
    return 116.0 * _f(y) - 16.0


def _fit_pixels(px: torch.Tensor, steps: int, tol: float) -> torch.Tensor:
    """Bisection on the chroma factor ``k`` in [0, 1] for ``N x 3`` out-of-gamut L*a*b* pixels:
    the largest ``k`` (to ``2**-steps``) for which ``(L, k a, k b)`` is inside sRGB. Written out
    per channel (Y and its share of each RGB channel do not change with ``k``)."""
    m = _matrix(px.device, torch.float64, inverse=True)
    xn, _, zn = _WHITE_D65
    lightness_, a, b = px.unbind(1)
    fy = (lightness_ + 16.0) / 116.0
    y = _finv(fy)
    ax, bz = a / 500.0, b / 200.0
    rows = [(float(m[i, 0]) * xn, y * float(m[i, 1]), float(m[i, 2]) * zn) for i in range(3)]
    lo = torch.zeros_like(fy)
    hi = torch.ones_like(fy)
    for _ in range(steps):
        mid = (lo + hi) * 0.5
        x = _finv(fy + mid * ax)
        z = _finv(fy - mid * bz)
        ok = torch.ones_like(fy, dtype=torch.bool)
        for cx, cy, cz in rows:
            v = cx * x + cy + cz * z
            ok &= (v >= -tol) & (v <= 1.0 + tol)
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return torch.stack((lightness_, a * lo, b * lo), dim=1)


def _fit(lab: torch.Tensor, steps: int, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(fitted L*a*b*, its linear RGB), with one full-size conversion."""
    lab = lab.clone()
    lab[..., :1, :, :] = lab[..., :1, :, :].clamp(0.0, 100.0)
    linear = lab_to_linear_rgb(lab)
    inside = ((linear >= -tol) & (linear <= 1.0 + tol)).all(dim=-3)
    if bool(inside.all()):
        return lab, linear
    # Only the out-of-gamut pixels are searched.
    idx = (~inside).reshape(-1).nonzero().squeeze(1)
    flat_lab = lab.movedim(-3, -1).reshape(-1, 3)
    flat_lin = linear.movedim(-3, -1).reshape(-1, 3)
    fitted = _fit_pixels(flat_lab[idx], steps, tol)
    flat_lab[idx] = fitted
    flat_lin[idx] = lab_to_linear_rgb(fitted.T[:, :, None])[:, :, 0].T

    def back(flat: torch.Tensor) -> torch.Tensor:
        return flat.reshape(*lab.shape[:-3], lab.shape[-2], lab.shape[-1], 3).movedim(-1, -3)

    return back(flat_lab), back(flat_lin)


def fit_gamut(lab: torch.Tensor, steps: int = 8, tol: float = 1e-4) -> torch.Tensor:
    """Reduce the chroma of out-of-gamut pixels of L*a*b* (``... x 3 x H x W``), keeping L*
    and hue, to (almost) the largest chroma that sRGB can show (a bisection, ``steps`` halvings).
    In-gamut pixels are unchanged; L* is clamped to [0, 100]."""
    return _fit(lab, steps, tol)[0]


def lab_to_rgb_fitted(lab: torch.Tensor, steps: int = 8, tol: float = 1e-4) -> torch.Tensor:
    """L*a*b* to sRGB in ``[0, 1]`` after :func:`fit_gamut` (so L* is kept); equal to
    ``lab_to_rgb(fit_gamut(lab))`` with one conversion fewer."""
    return _encode(_fit(lab, steps, tol)[1].clamp(0.0, 1.0))


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
