"""Decoding one image file for the file-based dataset plugins: :func:`decode_image` turns the
bytes or the path of one image into an ``H x W x 3`` uint8 RGB array, or says why it cannot, as
a status code; it never raises for bad data. :class:`LoadReport` counts the codes of a split and
prints one line about them to stderr.

A photo is decoded as colorize reads it (``colorkit.engine.photo_files.read_image``): upright, its
EXIF orientation applied (``PIL.ImageOps.exif_transpose``), and of any size up to Pillow's own
refusal limit, twice ``PIL.Image.MAX_IMAGE_PIXELS`` (about 179 million pixels by default), without
Pillow's ``DecompressionBombWarning`` (large scans and camera photos are ordinary input). What
happens to each kind of bad data:

=======================================  =============================================
file                                     outcome (reason in the report)
=======================================  =============================================
zero bytes                               skipped (``empty``)
listed but absent                        skipped (``missing``)
not an image, truncated, corrupt         skipped (``unreadable``)
grayscale (mode 1/L/LA/I/I;16/F, or RGB  skipped (``grayscale``), as the authors' code does;
with R = G = B everywhere)               with ``keep_gray=true`` kept and converted
shorter side under 8 px (e.g. 1x1)       skipped (``too small``)
more pixels than twice ``PIL.Image.      skipped (``too large``); never decoded
MAX_IMAGE_PIXELS`` (decompression bomb)
CMYK                                     converted to RGB (``CMYK``)
RGBA, LA, P with transparency            composited over white (``transparency``)
palette (P)                              converted to RGB (``palette``)
16 bits per channel                      reduced to 8 bits (``16-bit``); 16-bit grayscale is
                                         scaled, never clipped to white
=======================================  =============================================
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from colorkit.kernel.progress import SAID_ENV
from colorkit.plugins._image_options import MIN_SIDE


IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)
#: A lazily read split gives up after this many unusable images in a row.
MAX_TRIES = 64
#: Bumped when :func:`decode_image` gives other pixels or codes for the same file; the caches of
#: decoded images key on it. 2: the EXIF orientation applied; photos up to twice
#: ``PIL.Image.MAX_IMAGE_PIXELS`` decoded (1: only up to ``MAX_IMAGE_PIXELS``).
DECODE_VERSION = 2
#: The EXIF tag of the orientation, and the values that turn or flip the stored pixels.
_ORIENTATION, _TURNED = 0x0112, frozenset(range(2, 9))

# Status codes, one byte per image. 0: not read yet; 1..9: served (maybe converted); 10+: skipped.
UNSEEN, OK = 0, 1
CMYK, ALPHA, PALETTE, SIXTEEN, GRAY_KEPT, OTHER_MODE = 2, 3, 4, 5, 6, 7
EMPTY, MISSING, UNREADABLE, GRAY, TOO_SMALL, TOO_LARGE = 10, 11, 12, 13, 14, 15
FIRST_SKIP = 10
N_CODES = 16

CONVERTED_NAMES = {CMYK: "CMYK", ALPHA: "transparency", PALETTE: "palette", SIXTEEN: "16-bit",
                   GRAY_KEPT: "grayscale", OTHER_MODE: "other colour mode"}
SKIPPED_NAMES = {UNREADABLE: "unreadable", EMPTY: "empty", MISSING: "missing", GRAY: "grayscale",
                 TOO_SMALL: "too small", TOO_LARGE: "too large"}
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


# -- decoding -------------------------------------------------------------------------------------


def is_gray(rgb: np.ndarray) -> bool:
    """Whether an ``H x W x 3`` array has R = G = B at every pixel (the authors' test)."""
    r = rgb[..., 0]
    return bool(np.array_equal(r, rgb[..., 1]) and np.array_equal(r, rgb[..., 2]))


def _gray_to_8bit(im: Image.Image) -> Image.Image:
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        a8 = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif im.mode == "F":
        a = np.nan_to_num(a.astype(np.float64))
        a8 = np.clip(a * 255.0 if a.max(initial=0) <= 1.0 else a, 0, 255).round().astype(np.uint8)
    else:  # "I": 32-bit integers, usually 16-bit data
        scale = 257.0 if a.max(initial=0) > 255 else 1.0
        a8 = np.clip(np.round(a / scale), 0, 255).astype(np.uint8)
    return Image.fromarray(a8, "L")


def _to_rgb(im: Image.Image, sixteen_bit: bool) -> tuple[Image.Image, int]:
    mode = im.mode
    if mode == "RGB":
        return im, (SIXTEEN if sixteen_bit else OK)
    if mode == "CMYK":
        return im.convert("RGB"), CMYK
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out, ALPHA
    if mode == "P":
        return im.convert("RGB"), PALETTE
    if mode in ("1", "L"):
        return im.convert("RGB"), GRAY_KEPT
    if mode.startswith("I") or mode == "F":
        return _gray_to_8bit(im).convert("RGB"), SIXTEEN if ";16" in mode or mode == "I" else GRAY_KEPT
    return im.convert("RGB"), OTHER_MODE


def upright(im: Image.Image) -> Image.Image:
    """The loaded image as it is meant to be shown: its EXIF orientation applied with
    ``PIL.ImageOps.exif_transpose``, as colorize reads photos (no copy when there is none)."""
    return ImageOps.exif_transpose(im) if im.getexif().get(_ORIENTATION, 1) in _TURNED else im


def _fit(im: Image.Image, size: int, random_crop: bool, crop: bool = True) -> Image.Image:
    """Resize so the shorter side is ``size`` and crop a ``size x size`` square (centre or random);
    ``crop=False`` keeps the whole image (the longer side scaled alike, rounded)."""
    w, h = im.size
    s = min(w, h)
    if not crop:
        if s == size:
            return im
        out = (max(size, round(w * size / s)), max(size, round(h * size / s)))
        return im.resize(out, Image.Resampling.BILINEAR, reducing_gap=None)
    if random_crop:
        x0 = int(torch.randint(0, w - s + 1, ()).item()) if w > s else 0
        y0 = int(torch.randint(0, h - s + 1, ()).item()) if h > s else 0
    else:
        x0, y0 = (w - s) // 2, (h - s) // 2
    box = (x0, y0, x0 + s, y0 + s)
    if s == size:
        return im if (w, h) == (size, size) else im.crop(box)
    return im.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=None)


def decode_image(source: str | os.PathLike | bytes, *, keep_gray: bool = False, size: int | None = None,
                 random_crop: bool = False, min_side: int = MIN_SIDE, crop: bool = True) -> tuple[np.ndarray | None, int]:
    """Decode one image to an ``H x W x 3`` uint8 RGB array, or ``(None, reason code)``.

    ``size`` resizes the shorter side to ``size`` and crops a square (random when
    ``random_crop``), or with ``crop=False`` keeps the whole resized image (what a decoded cache
    stores, for random crops later); JPEGs are decoded at a reduced scale when that is enough.
    Never raises for bad data: see the module docstring for what is skipped and what is converted.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            return None, EMPTY
        fp: Any = io.BytesIO(source)
    else:
        try:
            if os.stat(source).st_size == 0:
                return None, EMPTY
        except FileNotFoundError:
            return None, MISSING
        except OSError:
            return None, UNREADABLE
        fp = source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # up to Pillow's error limit
        return _decode(fp, keep_gray, size, random_crop, min_side, crop)


def _decode(fp: Any, keep_gray: bool, size: int | None, random_crop: bool, min_side: int,
            crop: bool) -> tuple[np.ndarray | None, int]:
    try:
        im = Image.open(fp)
    except Image.DecompressionBombError:
        return None, TOO_LARGE
    except Exception:  # noqa: BLE001 - any failure to identify the file is "unreadable"
        return None, UNREADABLE
    with im:
        try:
            w, h = im.size
            if min(w, h) < min_side:
                return None, TOO_SMALL
            if im.mode in _GRAY_MODES and not keep_gray:
                return None, GRAY
            sixteen = im.mode == "RGB" and any(";16" in str(t.args) for t in (im.tile or []))
            if size is not None and im.format == "JPEG" and im.mode in ("RGB", "L"):
                im.draft(im.mode, (size, size))
            im.load()
            rgb, code = _to_rgb(upright(im), sixteen)
            out = _fit(rgb, size, random_crop, crop) if size is not None else rgb
            arr = np.asarray(out)
            # A colour photo almost never gives an exactly gray crop, so the whole image is only
            # looked at when the crop is gray (a crop of a gray wall must not skip the photo).
            if not keep_gray and is_gray(arr) and (out is rgb or is_gray(np.asarray(rgb))):
                return None, GRAY
        except Image.DecompressionBombError:  # a frame larger than the image said (GIF)
            return None, TOO_LARGE
        except Exception:  # noqa: BLE001 - truncated or corrupt data
            return None, UNREADABLE
    if arr.ndim != 3 or arr.shape[2] != 3:
        return None, UNREADABLE
    return arr, code


def check_header(path: str, *, keep_gray: bool = False, min_side: int = MIN_SIDE) -> int:
    """What can be told about one image file without decoding its pixels: ``UNSEEN`` (looks
    usable), or the reason code for an empty, missing, unidentifiable, grayscale-mode, too small
    or too large file. About a tenth of a millisecond per file."""
    try:
        if os.stat(path).st_size == 0:
            return EMPTY
    except FileNotFoundError:
        return MISSING
    except OSError:
        return UNREADABLE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # up to Pillow's error limit
            im = Image.open(path)
    except Image.DecompressionBombError:
        return TOO_LARGE
    except Exception:  # noqa: BLE001
        return UNREADABLE
    with im:
        if min(im.size) < min_side:
            return TOO_SMALL
        if im.mode in _GRAY_MODES and not keep_gray:
            return GRAY
    return UNSEEN


def to_chw(arr: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 array to a contiguous ``3 x H x W`` uint8 tensor."""
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def resize_images(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Resize ``N x 3 x H x W`` uint8 images to ``size x size`` (antialiased bilinear), in chunks."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty((images.shape[0], 3, size, size), dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


_SAID: set[str] = set()


def emit(line: str) -> None:
    """Print one report line to stderr, once per process: a split loaded again (validation,
    evaluation, a figure, the next run of a suite) finds the same images and says nothing new."""
    if line in _SAID:
        return
    _SAID.add(line)
    shared = os.environ.get(SAID_ENV)
    if shared:  # processes of one bench invocation: said once among them all
        try:
            with open(shared, "a+", encoding="utf-8") as fh:  # two processes at once may both print
                fh.seek(0)
                if line in fh.read().splitlines():
                    return
                fh.write(line + "\n")
        except OSError:
            pass
    print(line, file=sys.stderr, flush=True)


def forget_said() -> None:
    """Let every report line be printed again (tests that each expect their own line)."""
    _SAID.clear()


@dataclass
class LoadReport:
    """What loading (or, for lazy splits, reading) one split found.

    ``counts`` maps status codes to numbers of images; :attr:`skipped` and :attr:`converted`
    give them by reason name. ``total`` is the number of images looked at; ``of`` is the size
    of the split when only part of it has been read yet.
    """

    where: str
    total: int
    counts: dict[int, int]
    first: str | None = None
    of: int | None = None

    @classmethod
    def from_codes(cls, where: str, codes: np.ndarray, name_of: Callable[[int], str], of: int | None = None) -> LoadReport:
        codes = np.asarray(codes)
        counts = np.bincount(codes.astype(np.int64, copy=False), minlength=N_CODES)
        bad = np.flatnonzero(codes >= FIRST_SKIP)
        first = f"{name_of(int(bad[0]))} ({SKIPPED_NAMES[int(codes[bad[0]])]})" if bad.size else None
        return cls(where, int(codes.size - counts[UNSEEN]), {c: int(n) for c, n in enumerate(counts) if n and c}, first, of)

    @property
    def skipped(self) -> dict[str, int]:
        return {name: self.counts[c] for c, name in SKIPPED_NAMES.items() if self.counts.get(c)}

    @property
    def converted(self) -> dict[str, int]:
        return {name: self.counts[c] for c, name in CONVERTED_NAMES.items() if self.counts.get(c)}

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def n_converted(self) -> int:
        return sum(self.converted.values())

    @property
    def kept(self) -> int:
        return self.total - self.n_skipped

    def line(self) -> str | None:
        """The one-line summary, or ``None`` when nothing was skipped or converted."""
        if not self.n_skipped and not self.n_converted:
            return None
        read = f" read so far (of {self.of:,})" if self.of is not None else ""
        parts = []
        if self.n_skipped:
            reasons = ", ".join(f"{n:,} {name}" for name, n in self.skipped.items())
            parts.append(f"skipped {self.n_skipped:,} of {self.total:,} images{read}: {reasons}")
        if self.n_converted:
            kinds = ", ".join(f"{n:,} {name}" for name, n in self.converted.items())
            of = "" if parts else f" of {self.total:,} images{read}"
            parts.append(f"converted {self.n_converted:,}{of} to RGB: {kinds}")
        if self.first:
            parts.append(f"first skipped: {self.first}")
        return f"{self.where}: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
