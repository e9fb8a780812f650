"""Colorize with an exported ONNX model through ONNX Runtime: the graph runs in ONNX Runtime,
resizing in PIL, the working shape from :mod:`colorkit.engine.shapes`, and the colour conversions in
NumPy (:mod:`colorkit.kernel.color_numpy`, held to
the torch conversion by the tests): no PyTorch computation in the loop.

The steps are those of :func:`colorkit.engine.inference.colorize_array`: L* of the
photo at full size; L* resized (bilinear, antialiased: PIL's filter, which torch's antialiased
bilinear follows) to the working shape the file's metadata gives; the graph's a*b* upsampled
(bilinearly, or guided by the full-size L* when the file's ``colorkit.chroma_upsample`` or the
caller says ``guided``: :mod:`colorkit.engine.chroma_numpy`) and joined to the full-size L*; out-of-gamut chroma reduced by the same bisection
(hue and L* kept). The outputs agree with the PyTorch backend to a level or two of 8-bit RGB
(``tests/test_export.py`` measures it on real photos).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from colorkit.engine.chroma_numpy import DEFAULT_CHROMA, check_chroma, guided_coefficients, upsample_bilinear
from colorkit.engine.shapes import CHUNK_PIXELS, check_working_size, working_shape
from colorkit.kernel import color_numpy
from colorkit.kernel.errors import ColorkitError, UsageError, one_line

@dataclass
class OnnxModel:
    """An exported colorkit ONNX file opened with ONNX Runtime."""

    session: Any
    path: Path
    size_multiple: int
    working_size: int
    name: str
    chroma: str = DEFAULT_CHROMA

    @property
    def label(self) -> str:
        return f"{self.name} (onnx)"


def load_onnx(path: str | Path, working_size: int | None = None, threads: int | None = None,
              chroma: str | None = None) -> OnnxModel:
    """Open an ONNX file written by ``colorkit export --format onnx``; errors name the file.

    :param threads: ONNX Runtime's intra-op threads (default: its own choice).
    :param chroma: ``bilinear`` or ``guided`` (default: the file's ``colorkit.chroma_upsample``,
        else ``bilinear``)."""
    if chroma is not None:
        check_chroma(chroma)
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
        raise UsageError(f"{path}: not a readable ONNX file ({one_line(exc, 200)})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("colorkit.format") is None:
        raise UsageError(f"{path}: an ONNX file that colorkit export did not write (no colorkit metadata)")
    recorded = meta.get("colorkit.chroma_upsample")
    if chroma is None and recorded is not None:
        check_chroma(recorded, f"{path}: its colorkit.chroma_upsample")
    try:
        multiple, stored = int(meta["colorkit.size_multiple"]), int(meta["colorkit.working_size"])
    except (KeyError, ValueError):
        raise UsageError(f"{path}: its colorkit.size_multiple or colorkit.working_size metadata is missing or not a "
                         "whole number; export the model again") from None
    size = check_working_size(working_size, "--size") if working_size else \
        check_working_size(stored, f"{path}: its colorkit.working_size")
    if not 1 <= multiple <= 1024:
        raise UsageError(f"{path}: its colorkit.size_multiple is {multiple}; export the model again")
    return OnnxModel(session, path, multiple, size, meta.get("colorkit.model", path.stem),
                     chroma or recorded or DEFAULT_CHROMA)


def _resize(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if plane.shape == (height, width):
        return plane.astype(np.float32)
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def colorize_array(model: OnnxModel, image: np.ndarray, working_size: int | None = None,
                   chroma: str | None = None) -> np.ndarray:
    """Colorize one ``H x W [x 3|4]`` image (uint8, or float in ``[0, 1]``); ``H x W x 3`` uint8.

    :param chroma: ``bilinear`` or ``guided`` (default: the model's, :attr:`OnnxModel.chroma`).

    Full-resolution work goes in bands of rows, in float32, as the PyTorch backend does."""
    chroma = check_chroma(chroma or model.chroma)
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
        l_star[top : top + rows] = color_numpy.lightness(np.broadcast_to(band, (*band.shape[:2], 3)))
    h, w = working_shape(height, width, int(working_size or model.working_size), model.size_multiple)
    small = _resize(l_star, h, w)[None, None]
    ab = model.session.run(None, {"l_star": small})[0][0]
    if not np.isfinite(ab).all():  # black pixels, L* lost too: refused before anything is written
        raise ColorkitError(f"{model.path}: its prediction is not finite (NaN or infinite values; its weights may "
                            "hold them); export the model again from a good checkpoint")
    if chroma == "guided" and ab.shape[-2:] != (height, width):
        chroma_rows = _guided_rows(small[0], ab, height, width)
    else:
        chroma_rows = _bilinear_rows(ab, height, width)
    out = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, rows):
        band = slice(top, top + rows)
        a, b = chroma_rows(top, min(top + rows, height), l_star[band])
        lab = np.stack((l_star[band], a, b), axis=-1)
        out[band] = (np.clip(color_numpy.lab_to_rgb_fitted(lab), 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return out


def _bilinear_rows(ab: np.ndarray, height: int, width: int) -> Any:
    """``rows(top, bottom, l_band) -> (a*, b*)`` of ``ab`` (``2 x h x w``) resized bilinearly (PIL)."""
    a, b = (_resize(ab[i], height, width) for i in range(2))
    return lambda top, bottom, _: (a[top:bottom], b[top:bottom])


def _guided_rows(l_small: np.ndarray, ab: np.ndarray, height: int, width: int) -> Any:
    """``rows(top, bottom, l_band) -> (a*, b*)`` of ``ab`` (``2 x h x w``) upsampled by the guided
    filter on L* (``l_small``: ``1 x h x w`` at the working shape; ``l_band``: the rows' full L*)."""
    coef_a, coef_b = (c.astype(np.float32) for c in guided_coefficients(l_small, ab))
    lo, hi = ab.min(axis=(-2, -1)), ab.max(axis=(-2, -1))

    def rows(top: int, bottom: int, l_band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = upsample_bilinear(coef_a, height, width, top, bottom) * l_band
        out += upsample_bilinear(coef_b, height, width, top, bottom)
        return tuple(np.clip(out[i], lo[i], hi[i]) for i in range(2))  # type: ignore[return-value]

    return rows
