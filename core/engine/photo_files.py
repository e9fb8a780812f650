"""Photo files in and out: the one way colorize, ``eval --images`` and the Turing page find photos
in folders and read them.

* :func:`find_inputs` walks files and folders for image files. Only regular files (or links to
  them) are read: a pipe, a device or a socket named ``photo.png`` is left alone, so no read can
  hang.
* :func:`read_image` reads grayscale, colour, palette, 16-bit and RGBA images of any size, applies
  the EXIF orientation, and returns **sRGB** pixels: a photo with an embedded ICC profile that is
  not sRGB (Adobe RGB, Display P3, ...) is converted to sRGB first (LittleCMS through Pillow's
  ``ImageCms``), so the L* a model sees is the L* the photo shows. The profile of an sRGB photo is
  kept for the output; a converted photo's output is plain sRGB and carries no profile.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from colorkit.kernel.errors import UsageError

#: File suffixes searched for in folders (a file named directly is always tried).
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm", ".tga"}
)


@dataclass
class LoadedImage:
    rgb: np.ndarray  # H x W x 3 sRGB, uint8 or float32 in [0, 1] (16-bit and float inputs)
    alpha: np.ndarray | None  # H x W uint8
    icc_profile: bytes | None  # the input's sRGB profile, carried over to the output
    frames: int = 1  # an animated GIF/PNG/WebP or a multi-page TIFF: only the first is read
    converted_from: str | None = None  # the description of the profile the pixels were converted from


def is_regular(path: Path) -> bool:
    """A regular file (following links): the only kind of file a photo is read from."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file for colorization (sRGB pixels, EXIF orientation applied); raises
    ``OSError``/``ValueError`` when it cannot, and ``OSError`` for a file that is not regular."""
    from PIL import Image, ImageOps

    if not is_regular(Path(path)):
        raise OSError(f"{path}: not a regular file (a folder, a pipe, a device or a socket)")
    with warnings.catch_warnings():
        # Large photos are ordinary input here; Pillow still refuses (DecompressionBombError, an
        # unreadable file) beyond twice its pixel limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im.load()
            loaded = from_pil(ImageOps.exif_transpose(im))
            loaded.frames = int(getattr(im, "n_frames", 1) or 1)
            return loaded


def _profile_description(icc: bytes) -> tuple[Any, str]:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return profile, (ImageCms.getProfileDescription(profile) or "").strip()


def to_srgb(im: Any) -> tuple[Any, bytes | None, str | None]:
    """``im`` (RGB or RGBA) in sRGB: ``(image, profile to carry over, description of the profile it
    was converted from)``. No profile, or an sRGB one: the image as it is, with its profile."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im, None, None
    try:
        profile, description = _profile_description(icc)
    except (OSError, ValueError, TypeError):  # an unreadable profile: the pixels are taken as sRGB
        return im, None, None
    if "srgb" in description.lower().replace(" ", ""):
        return im, icc, None
    from PIL import ImageCms

    alpha = im.getchannel("A") if im.mode == "RGBA" else None
    try:
        rgb = ImageCms.profileToProfile(im.convert("RGB"), profile, ImageCms.createProfile("sRGB"),
                                        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB")
    except ImageCms.PyCMSError as exc:
        raise ValueError(f"cannot convert its colour profile {description!r} to sRGB ({exc})") from None
    if alpha is not None:
        rgb.putalpha(alpha)
    return rgb, None, description or "an embedded profile"


def from_pil(im: Any) -> LoadedImage:
    """A :class:`LoadedImage` of a PIL image (its colour converted to sRGB, see :func:`to_srgb`)."""
    mode = im.mode
    converted = None
    icc: bytes | None = None
    if mode in ("RGB", "RGBA"):
        im, icc, converted = to_srgb(im)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        return LoadedImage(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]), icc,
                           converted_from=converted)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float32)
        return LoadedImage(np.clip(arr / 65535.0, 0.0, 1.0), None, None)
    if mode == "F":
        arr = np.asarray(im).astype(np.float32)
        top = float(arr.max()) if arr.size else 1.0
        return LoadedImage(np.clip(arr / (255.0 if top > 1.0 else 1.0), 0.0, 1.0), None, None)
    return LoadedImage(np.asarray(im.convert("RGB")), None, icc, converted_from=converted)


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None) -> Any:
    """An RGB (or, with ``alpha``, RGBA) PIL image of uint8 pixels."""
    from PIL import Image

    if alpha is not None:
        return Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    return Image.fromarray(rgb, mode="RGB")


def resolve_path(path: Path, role: str) -> Path:
    """``path.resolve()``; a symbolic link loop is a one-line error naming the link."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        raise UsageError(f"{role}{path}: a symbolic link loop; remove or fix the link") from None


def find_inputs(inputs: Sequence[str | Path], out: Path) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """``(source, relative output path)`` pairs for files and folders, and the inputs that cannot
    be read with why (missing, or not a regular file). In folders, hidden entries, files without an
    image suffix, files that are not regular and the output folder ``out`` are passed over."""
    out_resolved = resolve_path(out, "--out ")
    found: list[tuple[Path, Path]] = []
    missing: list[tuple[Path, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                here = Path(dirpath)
                # Skip hidden folders, and the output folder when it lies inside an input folder.
                dirnames[:] = sorted(d for d in dirnames
                                     if not d.startswith(".") and resolve_path(here / d, "") != out_resolved)
                for name in sorted(filenames):
                    if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                        continue
                    src = here / name
                    resolve_path(src, "")
                    if is_regular(src):
                        found.append((src, src.relative_to(p)))
        elif is_regular(p):
            found.append((p, Path(p.name)))
        elif p.exists():
            missing.append((p, "not a regular file (a pipe, a device or a socket); give a photo file"))
        else:
            missing.append((p, "no such file or folder; check the path"))
    return found, missing
