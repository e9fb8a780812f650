"""How the predicted a*b* is brought from the working shape to the photo's size: the choices,
and the L*-guided upsampling in NumPy for the ONNX Runtime backend (no torch here). The torch
version, used by ``colorize``, ``eval`` and ``export``, is :mod:`colorkit.engine.chroma`; the two
are held to each other by ``tests/test_chroma.py``.

* ``bilinear``: a*b* upsampled bilinearly (the default). A model run at a small working size
  spreads colour across edges by up to a working pixel, which on a full-size photo is many pixels.
* ``guided``: the fast guided filter (He & Sun 2015, "Fast Guided Filter", arXiv:1505.00996),
  guided by the photo's own L*: at the working resolution, within each box of radius ``radius``,
  a*b* is fitted as a linear function of L*/100 (``a*b* = A * L*/100 + B``, ridge ``eps``); ``A``
  and ``B`` are upsampled bilinearly and applied to the full-size L*, so colour edges follow the
  photo's lightness edges. Unlike the paper, ``A`` and ``B`` are not box-averaged again before
  upsampling (the bilinear upsampling already blends neighbouring fits): on a step edge that
  leaves no bleed where the paper's second averaging leaves about a working pixel's worth. On
  constant chroma it returns that constant. The output is kept within the range (per image and
  channel) of the prediction it upsamples, so it never invents a colour more extreme than the
  model predicted.
"""

from __future__ import annotations

import numpy as np

from colorkit.kernel.errors import UsageError

#: The ways to upsample chroma, the first being the default.
CHROMA_UPSAMPLING = ("bilinear", "guided")
DEFAULT_CHROMA = CHROMA_UPSAMPLING[0]
#: The guided filter's box radius, in working-resolution pixels (1: 3 x 3 boxes).
GUIDED_RADIUS = 1
#: The guided filter's regulariser, in units of (L*/100)**2: L* steps much smaller than
#: ``sqrt(eps) * 100`` within a box are treated as flat (there a*b* is averaged, not followed).
GUIDED_EPS = 1e-3
#: The guide is L* divided by this (0-100 to 0-1), so ``eps`` does not depend on the scale of L*.
GUIDE_SCALE = 100.0


def check_chroma(value: str | None, what: str = "--chroma") -> str:
    """``value`` when it is a known way to upsample chroma (``None``: the default); else a
    one-line :class:`UsageError` that begins with ``what``."""
    if value is None:
        return DEFAULT_CHROMA
    if value not in CHROMA_UPSAMPLING:
        raise UsageError(f"{what} {value!r}: use {' or '.join(CHROMA_UPSAMPLING)}")
    return value


def check_guided(radius: int, eps: float) -> None:
    if int(radius) != radius or radius < 0:
        raise ValueError(f"the guided filter's radius must be a whole number >= 0, got {radius}")
    if not eps > 0:
        raise ValueError(f"the guided filter's eps must be > 0, got {eps}")


def _box_axis(x: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over ``[i - radius, i + radius]`` along ``axis``, over the samples inside the array."""
    n = x.shape[axis]
    c = np.cumsum(np.moveaxis(x, axis, -1), axis=-1)
    c = np.concatenate((np.zeros_like(c[..., :1]), c), axis=-1)
    i = np.arange(n)
    hi, lo = np.minimum(i + radius + 1, n), np.maximum(i - radius, 0)
    return np.moveaxis((c[..., hi] - c[..., lo]) / (hi - lo), -1, axis)


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """The mean over the ``(2 radius + 1)``-square box around each pixel of the last two axes,
    each box cut at the borders and divided by the pixels it holds."""
    return _box_axis(_box_axis(x, radius, -2), radius, -1)


def guided_coefficients(guide_small: np.ndarray, src: np.ndarray, radius: int = GUIDED_RADIUS,
                        eps: float = GUIDED_EPS) -> tuple[np.ndarray, np.ndarray]:
    """The linear coefficients ``A`` and ``B`` (float64, ``... x C x h x w``) of
    ``src`` (``... x C x h x w``) on the guide L* (``... x 1 x h x w``, 0-100), with ``A`` per unit
    of L* (not of L*/100), so that the upsampled result is ``A * L* + B``."""
    check_guided(radius, eps)
    i = np.asarray(guide_small, dtype=np.float64) / GUIDE_SCALE
    p = np.asarray(src, dtype=np.float64)
    mean_i, mean_p = box_mean(i, radius), box_mean(p, radius)
    var_i = np.maximum(box_mean(i * i, radius) - mean_i * mean_i, 0.0)
    a = (box_mean(i * p, radius) - mean_i * mean_p) / (var_i + eps)
    return a / GUIDE_SCALE, mean_p - a * mean_i


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear resizing (half-pixel centres, edges clamped: torch's
    ``align_corners=False``)."""
    scale = np.float32(n_in / n_out)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)


def upsample_bilinear(x: np.ndarray, height: int, width: int, top: int = 0, bottom: int | None = None) -> np.ndarray:
    """Rows ``top:bottom`` of ``x`` (``... x h x w``, float32) resized bilinearly to ``height x width``."""
    r0, r1, rw = (t[top:bottom] for t in _bilinear_taps(x.shape[-2], height))
    c0, c1, cw = _bilinear_taps(x.shape[-1], width)
    rows = x[..., r0, :] * (1 - rw)[:, None] + x[..., r1, :] * rw[:, None]
    return rows[..., c0] * (1 - cw) + rows[..., c1] * cw


def guided_upsample(guide_small: np.ndarray, guide_full: np.ndarray, src: np.ndarray, *,
                    radius: int = GUIDED_RADIUS, eps: float = GUIDED_EPS) -> np.ndarray:
    """``src`` (``B x C x h x w``, a*b*) upsampled to the shape of ``guide_full`` (``B x 1 x H x W``,
    the photo's L*, 0-100) by the fast guided filter on L* (see the module docs); ``guide_small``
    (``B x 1 x h x w``) is L* at the working shape. Float32, within the range of ``src``."""
    a, b = guided_coefficients(guide_small, src, radius, eps)
    height, width = guide_full.shape[-2:]
    out = upsample_bilinear(a.astype(np.float32), height, width) * np.asarray(guide_full, np.float32)
    out += upsample_bilinear(b.astype(np.float32), height, width)
    return within_range(out, src)


def within_range(out: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``out`` clipped, in place, to the range of ``src`` per image and channel (last two axes)."""
    lo, hi = src.min(axis=(-2, -1), keepdims=True), src.max(axis=(-2, -1), keepdims=True)
    return np.clip(out, lo.astype(out.dtype), hi.astype(out.dtype), out=out)
