"""sRGB (D65) <-> CIE L*a*b* in NumPy, for the ONNX Runtime backend, which runs without PyTorch.

The same formulas and constants (:mod:`colorkit.kernel.srgb`) as :mod:`colorkit.kernel.color`,
on ``H x W x 3`` arrays: L* of sRGB, and L*a*b* to sRGB with out-of-gamut chroma reduced by the
same bisection (L* and hue kept). The torch conversion is the reference; this one is held to it
by ``tests/test_color.py`` on random colours and real photos (L* to 1e-3, RGB to 1e-4). The gamut
bisection repeats the torch code's operations in their order: a different summation order (a
matrix product) flips halvings at gamut edges and moves some pixels by several 8-bit levels.
"""

from __future__ import annotations

import numpy as np

from colorkit.kernel.srgb import EPS, KAPPA, WHITE_D65, XYZ_FROM_RGB

_XYZ = np.array(XYZ_FROM_RGB)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ)
_WHITE = np.array(WHITE_D65)


def lightness(rgb: np.ndarray) -> np.ndarray:
    """L* (``H x W``) of sRGB floats in ``[0, 1]`` (``H x W x 3``)."""
    rgb = np.clip(rgb, 0.0, 1.0)
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    y = linear @ _XYZ[1].astype(rgb.dtype)
    f = np.where(y > EPS, np.cbrt(np.maximum(y, EPS)), (KAPPA * y + 16.0) / 116.0)
    return 116.0 * f - 16.0


def _finv(t: np.ndarray) -> np.ndarray:
    return np.where(t > 6.0 / 29.0, t * t * t, (t - 16.0 / 116.0) * (3.0 * (6.0 / 29.0) ** 2))


def _linear_rgb(lab: np.ndarray) -> np.ndarray:
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack((fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0), axis=-1)
    return (_finv(f) * _WHITE.astype(lab.dtype)) @ _RGB_FROM_XYZ.T.astype(lab.dtype)


def _fit_pixels(px: np.ndarray, steps: int, tol: float) -> np.ndarray:
    """The largest chroma factor in [0, 1] (bisection) that brings ``N x 3`` L*a*b* into sRGB;
    written out per channel with the same operations, in the same order, as the torch version, so
    that both take the same halvings."""
    xn, _, zn = WHITE_D65
    fy = (px[:, 0] + 16.0) / 116.0
    y = _finv(fy)
    ax, bz = px[:, 1] / 500.0, px[:, 2] / 200.0
    rows = [(float(_RGB_FROM_XYZ[i, 0]) * xn, y * float(_RGB_FROM_XYZ[i, 1]), float(_RGB_FROM_XYZ[i, 2]) * zn)
            for i in range(3)]
    lo, hi = np.zeros_like(fy), np.ones_like(fy)
    for _ in range(steps):
        mid = (lo + hi) * 0.5
        x = _finv(fy + mid * ax)
        z = _finv(fy - mid * bz)
        ok = np.ones_like(fy, dtype=bool)
        for cx, cy, cz in rows:
            v = cx * x + cy + cz * z
            ok &= (v >= -tol) & (v <= 1.0 + tol)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.stack((px[:, 0], px[:, 1] * lo, px[:, 2] * lo), axis=-1)


def lab_to_rgb_fitted(lab: np.ndarray, steps: int = 8, tol: float = 1e-4) -> np.ndarray:
    """``H x W x 3`` L*a*b* to sRGB in ``[0, 1]``, out-of-gamut chroma reduced first."""
    lab = lab.astype(np.float32)
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    linear = _linear_rgb(lab)
    outside = ~((linear >= -tol) & (linear <= 1.0 + tol)).all(axis=-1)
    if outside.any():
        linear[outside] = _linear_rgb(_fit_pixels(lab[outside], steps, tol))
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear > 0.0031308, 1.055 * np.maximum(linear, 1e-12) ** (1.0 / 2.4) - 0.055, 12.92 * linear)
