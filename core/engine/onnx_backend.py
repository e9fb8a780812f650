"""Colorize with an exported ONNX model through ONNX Runtime: NumPy and PIL around the graph,
no PyTorch computation in the loop.

The steps are those of :func:`colorkit.engine.inference.colorize_array`, written for NumPy: L* of the
photo at full size; L* resized (bilinear, antialiased: PIL's filter, which torch's antialiased
bilinear follows) to the working shape the file's metadata gives; the graph's a*b* upsampled
bilinearly and joined to the full-size L*; out-of-gamut chroma reduced by the same bisection
(hue and L* kept). The outputs agree with the PyTorch backend to a level or two of 8-bit RGB
(``tests/test_export.py`` measures it on real photos).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from colorkit.kernel.errors import UsageError

# The colour constants of colorkit.kernel.color (sRGB primaries, D65 white), as NumPy arrays.
_XYZ_FROM_RGB = np.array([(0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169),
                          (0.019334, 0.119193, 0.950227)])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_EPS = 216.0 / 24389.0
_KAPPA = 24389.0 / 27.0


@dataclass
class OnnxModel:
    """An exported colorkit ONNX file opened with ONNX Runtime."""

    session: Any
    path: Path
    size_multiple: int
    working_size: int
    name: str

    @property
    def label(self) -> str:
        return f"{self.name} (onnx)"


def load_onnx(path: str | Path, working_size: int | None = None, threads: int | None = None) -> OnnxModel:
    """Open an ONNX file written by ``colorkit export --format onnx``; errors name the file.

    :param threads: ONNX Runtime's intra-op threads (default: its own choice)."""
    path = Path(path)
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError('--backend onnxruntime needs onnxruntime: pip install "colorkit[onnx]"') from None
    if not path.is_file():
        raise UsageError(f"{path}: no such ONNX file; write one with colorkit export MODEL --format onnx --out FILE")
    try:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad file
        first = " ".join(str(exc).split())[:200]
        raise UsageError(f"{path}: not a readable ONNX file ({first})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("colorkit.format") is None:
        raise UsageError(f"{path}: an ONNX file that colorkit export did not write (no colorkit metadata)")
    return OnnxModel(session, path, int(meta["colorkit.size_multiple"]),
                     int(working_size or meta["colorkit.working_size"]), meta.get("colorkit.model", path.stem))


def lightness(rgb: np.ndarray) -> np.ndarray:
    """L* (``H x W``) of sRGB floats in ``[0, 1]`` (``H x W x 3``)."""
    rgb = np.clip(rgb, 0.0, 1.0)
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    y = linear @ _XYZ_FROM_RGB[1].astype(rgb.dtype)
    f = np.where(y > _EPS, np.cbrt(np.maximum(y, _EPS)), (_KAPPA * y + 16.0) / 116.0)
    return 116.0 * f - 16.0


def _resize(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if plane.shape == (height, width):
        return plane.astype(np.float32)
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def _finv(t: np.ndarray) -> np.ndarray:
    return np.where(t > 6.0 / 29.0, t * t * t, (t - 16.0 / 116.0) * (3.0 * (6.0 / 29.0) ** 2))


def _linear_rgb(lab: np.ndarray) -> np.ndarray:
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack((fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0), axis=-1)
    return (_finv(f) * _WHITE_D65.astype(lab.dtype)) @ _RGB_FROM_XYZ.T.astype(lab.dtype)


def _fit_pixels(px: np.ndarray, steps: int, tol: float) -> np.ndarray:
    """The largest chroma factor in [0, 1] (bisection) that brings ``N x 3`` L*a*b* into sRGB."""
    fy = (px[:, 0] + 16.0) / 116.0
    y = _finv(fy)
    ax, bz = px[:, 1] / 500.0, px[:, 2] / 200.0
    lo, hi = np.zeros_like(fy), np.ones_like(fy)
    xn, zn = px.dtype.type(_WHITE_D65[0]), px.dtype.type(_WHITE_D65[2])
    for _ in range(steps):
        mid = (lo + hi) * px.dtype.type(0.5)
        xyz = np.stack((_finv(fy + mid * ax) * xn, y, _finv(fy - mid * bz) * zn), axis=-1)
        v = xyz @ _RGB_FROM_XYZ.T.astype(px.dtype)
        ok = ((v >= -tol) & (v <= 1.0 + tol)).all(axis=-1)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.stack((px[:, 0], px[:, 1] * lo, px[:, 2] * lo), axis=-1)


def lab_to_rgb_fitted(lab: np.ndarray, steps: int = 8, tol: float = 1e-4) -> np.ndarray:
    """``H x W x 3`` L*a*b* to sRGB in ``[0, 1]``, out-of-gamut chroma reduced first."""
    lab = lab.astype(np.float32)
    lab[..., 0] = np.clip(lab[..., 0], 0.0, 100.0)
    linear = _linear_rgb(lab)
    outside = ~((linear >= -tol) & (linear <= 1.0 + tol)).all(axis=-1)
    if outside.any():
        fitted = _fit_pixels(lab[outside], steps, tol)
        linear[outside] = _linear_rgb(fitted)
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear > 0.0031308, 1.055 * np.maximum(linear, 1e-12) ** (1.0 / 2.4) - 0.055, 12.92 * linear)


def colorize_array(model: OnnxModel, image: np.ndarray, working_size: int | None = None) -> np.ndarray:
    """Colorize one ``H x W [x 3|4]`` image (uint8, or float in ``[0, 1]``); ``H x W x 3`` uint8.

    Full-resolution work goes in bands of rows, in float32, as the PyTorch backend does."""
    from colorkit.engine.inference import CHUNK_PIXELS, working_shape

    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    arr = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
    height, width = arr.shape[:2]
    rows = max(1, CHUNK_PIXELS // width)
    scale = np.float32(1 / 255.0) if arr.dtype == np.uint8 else np.float32(1.0)
    l_star = np.empty((height, width), dtype=np.float32)
    for top in range(0, height, rows):
        band = arr[top : top + rows].astype(np.float32) * scale
        l_star[top : top + rows] = lightness(np.broadcast_to(band, (*band.shape[:2], 3)))
    h, w = working_shape(height, width, int(working_size or model.working_size), model.size_multiple)
    small = _resize(l_star, h, w)[None, None]
    ab = model.session.run(None, {"l_star": small})[0][0]
    a, b = (_resize(ab[i], height, width) for i in range(2))
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, rows):
        band = slice(top, top + rows)
        lab = np.stack((l_star[band], a[band], b[band]), axis=-1)
        out[band] = (np.clip(lab_to_rgb_fitted(lab), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return out
