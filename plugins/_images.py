"""Shared machinery of the file-based dataset plugins (cifar10, places365, imagefolder).

* :func:`decode_image` turns the bytes or the path of one image into an ``H x W x 3`` uint8 RGB
  array, or says why it cannot, as a status code. It never raises for bad data.
* :class:`LoadReport` counts those codes and prints one line per split, e.g. ``cifar10 train:
  skipped 3 of 50,000 images: 2 unreadable, 1 grayscale; first skipped: train/cat/0001.jpg
  (unreadable)``, to stderr; datasets keep their reports in ``dataset.reports``.
* :class:`ArraySplit` serves images decoded once into one ``N x 3 x S x S`` uint8 tensor;
  :class:`LazySplit` decodes files as they are read, for data too big to hold in memory.
* :class:`ImageDataOptions` are the options every file-based dataset shares (``root``, ``size``,
  ``limit``, ``seed``, ``flip``, ``keep_gray``, ``cache``).

What happens to each kind of bad data:

=======================================  =============================================
file                                     outcome (reason in the report)
=======================================  =============================================
zero bytes                               skipped (``empty``)
listed but absent                        skipped (``missing``)
not an image, truncated, corrupt         skipped (``unreadable``)
grayscale (mode 1/L/LA/I/I;16/F, or RGB  skipped (``grayscale``), as the authors' code does;
with R = G = B everywhere)               with ``keep_gray=true`` kept and converted
shorter side under 8 px (e.g. 1x1)       skipped (``too small``)
more pixels than ``PIL.Image.            skipped (``too large``); never decoded
MAX_IMAGE_PIXELS`` (decompression bomb)
CMYK                                     converted to RGB (``CMYK``)
RGBA, LA, P with transparency            composited over white (``transparency``)
palette (P)                              converted to RGB (``palette``)
16 bits per channel                      reduced to 8 bits (``16-bit``); 16-bit grayscale is
                                         scaled, never clipped to white
=======================================  =============================================

Lazily read splits (:class:`LazySplit`) keep one status byte per image in shared memory, so
that loader worker processes record what they find where the main process can count it; a bad
image is replaced by the next good one in the split (the batch keeps its size), is never decoded
again, and is reported by ``split.end_epoch()`` (one line, only when something new was found)
and, as a last resort, when the process exits.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset as TorchDataset

from colorkit.kernel.errors import ColorkitError, UsageError
from colorkit.kernel.options import opt

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)
#: Images whose shorter side is below this many pixels are skipped ("too small").
MIN_SIDE = 8
#: A lazily read split gives up after this many unusable images in a row.
MAX_TRIES = 64

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


def _fit(im: Image.Image, size: int, random_crop: bool) -> Image.Image:
    """Resize so the shorter side is ``size`` and crop a ``size x size`` square (centre or random)."""
    w, h = im.size
    s = min(w, h)
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
                 random_crop: bool = False, min_side: int = MIN_SIDE) -> tuple[np.ndarray | None, int]:
    """Decode one image to an ``H x W x 3`` uint8 RGB array, or ``(None, reason code)``.

    ``size`` resizes the shorter side to ``size`` and crops a square (random when
    ``random_crop``); JPEGs are decoded at a reduced scale when that is enough. Never raises for
    bad data: see the module docstring for what is skipped and what is converted.
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
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
            rgb, code = _to_rgb(im, sixteen)
            out = _fit(rgb, size, random_crop) if size is not None else rgb
            arr = np.asarray(out)
            # A colour photo almost never gives an exactly gray crop, so the whole image is only
            # looked at when the crop is gray (a crop of a gray wall must not skip the photo).
            if not keep_gray and is_gray(arr) and (out is rgb or is_gray(np.asarray(rgb))):
                return None, GRAY
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
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return TOO_LARGE
    except Exception:  # noqa: BLE001
        return UNREADABLE
    with im:
        if min(im.size) < min_side:
            return TOO_SMALL
        if im.mode in _GRAY_MODES and not keep_gray:
            return GRAY
    return UNSEEN


def precheck(where: str, paths: PathTable, codes: np.ndarray, *, limit: int, keep_gray: bool,
             min_side: int = MIN_SIDE) -> tuple[np.ndarray, LoadReport]:
    """Header-check every path when there are at most ``limit`` (0: never), on top of the codes
    already known (e.g. empty files seen while listing). Returns the rows still usable and the
    load report; the report is printed when something was skipped."""
    codes = codes.copy()
    if len(paths) <= limit:
        for i in range(len(paths)):
            if codes[i] == UNSEEN:
                codes[i] = check_header(paths[i], keep_gray=keep_gray, min_side=min_side)
    known = np.where(codes == UNSEEN, OK, codes).astype(np.uint8)
    report = LoadReport.from_codes(where, known, paths.__getitem__)
    line = report.line()
    if line:
        emit(line)
    return np.flatnonzero(codes < FIRST_SKIP), report


def checked_table(where: str, paths: PathTable, codes: np.ndarray, *, limit: int, keep_gray: bool,
                  empty_message: str, min_side: int = MIN_SIDE) -> tuple[PathTable, torch.Tensor, LoadReport]:
    """:func:`precheck`, then the usable paths and their status bytes (in shared memory, so loader
    workers record what they find). ``empty_message`` (followed by the report) is the error when
    nothing is usable."""
    usable, report = precheck(where, paths, codes, limit=limit, keep_gray=keep_gray, min_side=min_side)
    if usable.size == 0:
        raise UsageError(f"{empty_message} ({report.line()})")
    if usable.size < len(paths):
        paths = paths.take(usable)
    return paths, torch.zeros(len(paths), dtype=torch.uint8).share_memory_(), report


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


# -- reporting ------------------------------------------------------------------------------------


def emit(line: str) -> None:
    """Print one report line to stderr."""
    print(line, file=sys.stderr, flush=True)


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


# -- options --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageDataOptions:
    """Options every file-based dataset takes, in the same way."""

    root: str | None = opt(None, "where the data is (--data-root PATH)")
    size: int = opt(64, "working size in pixels: shorter side resized to it, then a square crop")
    limit: int | None = opt(None, "at most this many images per split (a seeded random subset)")
    seed: int = opt(0, "seed of the subset chosen by limit (and of any train/val split)")
    flip: bool = opt(True, "random horizontal flips for training (the authors' code); evaluation data is never augmented")
    keep_gray: bool = opt(False, "keep images that are already grayscale (the authors' code skips them)")
    cache: str = opt("auto", "folder for decoded arrays and extracted archives; auto: $COLORKIT_CACHE or ~/.cache/colorkit; off: none")

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("dataset.size must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError("dataset.limit must be at least 1 (or none)")


def require_root(name: str, root: str | None, layout: str) -> Path:
    """The ``root`` option as a path, or a one-line error saying how to give it."""
    if root is None or not str(root).strip():
        raise UsageError(f"dataset '{name}' needs its data folder: pass --data-root PATH ({layout})")
    return Path(root).expanduser()


def cache_root(option: str) -> Path | None:
    """Where caches go, from the ``cache`` option; ``None`` when caching is off."""
    value = option.strip()
    if value.lower() in ("off", "none", "no", "false", ""):
        return None
    if value.lower() != "auto":
        return Path(value).expanduser()
    env = os.environ.get("COLORKIT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "colorkit"


def source_key(*parts: Any) -> str:
    """A short stable hex key of ``parts`` (paths, sizes, mtimes, format versions)."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:20]


def file_signature(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def save_cache(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bool:
    """Write ``arrays`` (``.npy``) and ``meta`` (JSON) into ``folder`` atomically; ``False`` when the
    cache cannot be written (a read-only place is not an error)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError:
        return False
    try:
        for name, arr in arrays.items():
            np.save(staging / f"{name}.npy", arr, allow_pickle=False)
        (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(staging, folder)
        return True
    except OSError:
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_cache(folder: Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Arrays and meta written by :func:`save_cache`, or ``None`` when absent or damaged."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        arrays = {n: np.load(folder / f"{n}.npy", allow_pickle=False) for n in names}
    except (OSError, ValueError, EOFError):
        return None
    return arrays, meta


def seeded_pick(candidates: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """``limit`` of the ``candidates`` indices, a seeded random choice, in increasing order."""
    candidates = np.asarray(candidates, dtype=np.int64)
    if limit is None or limit >= candidates.size:
        return candidates
    order = np.random.default_rng(seed).permutation(candidates.size)[:limit]
    return np.sort(candidates[order])


def val_rows(n: int, val_size: int, seed: int) -> np.ndarray:
    """The rows of the training files (in their listed order) held out as ``val``: a seeded
    choice of ``val_size`` of ``n``, the same for every run with the same ``seed`` and
    ``val_size`` whatever ``limit`` is. They come in a seeded random order, not sorted, so that
    the first N of them (``train.val_limit``) are a random sample, not the first classes of a
    class-sorted listing."""
    return np.random.default_rng((seed, 0x7A1)).permutation(n)[:val_size]


def walk_images(folder: Path) -> list[tuple[str, int]]:
    """``(relative posix path, size in bytes)`` of every image-named file under ``folder``,
    recursively, following links once, skipping hidden files and folders; sorted."""
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    base = len(str(folder)) + 1
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if f.startswith(".") or os.path.splitext(f)[1].lower() not in IMAGE_SUFFIXES:
                continue
            full = os.path.join(dirpath, f)
            try:
                nbytes = os.stat(full).st_size
            except OSError:
                nbytes = -1
            out.append((full[base:].replace(os.sep, "/"), nbytes))
    out.sort()
    return out


# -- splits ---------------------------------------------------------------------------------------


class ArraySplit(TorchDataset):
    """Images held in memory as one ``N x 3 x S x S`` uint8 tensor; flips for training.

    ``__getitems__`` serves a whole batch with one indexing operation.
    """

    def __init__(self, images: torch.Tensor, train: bool, flip: bool) -> None:
        self.images = images
        self.augment = bool(train and flip)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        x = self.images[i]
        if self.augment and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        batch = self.images[torch.as_tensor(indices, dtype=torch.long)]
        if self.augment:
            flip = torch.rand(batch.shape[0]) < 0.5
            batch[flip] = batch[flip].flip(-1)
        return list(batch.unbind(0))


class PathTable:
    """Many relative file paths in little memory: one byte buffer and start/end offsets.

    ``rows`` selects a subset without copying the buffer. ``table[i]`` is the full path.
    """

    def __init__(self, base: str | Path, blob: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.base = str(base)
        self.blob, self.starts, self.ends = blob, starts, ends

    @classmethod
    def from_names(cls, base: str | Path, names: Sequence[str]) -> PathTable:
        encoded = [n.encode("utf-8", "surrogateescape") for n in names]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        ends = np.cumsum(lengths)
        starts = ends - lengths
        blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return cls(base, blob, starts, ends)

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def name(self, i: int) -> str:
        """The relative path of item ``i`` (as listed, without a leading slash)."""
        raw = self.blob[int(self.starts[i]) : int(self.ends[i])].tobytes()
        return raw.decode("utf-8", "surrogateescape").lstrip("/")

    def __getitem__(self, i: int) -> str:
        return os.path.join(self.base, self.name(i))

    def take(self, rows: np.ndarray) -> PathTable:
        return PathTable(self.base, self.blob, self.starts[rows], self.ends[rows])


_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _report_at_exit() -> None:  # pragma: no cover - runs at interpreter exit
    for split in list(_LIVE):
        try:
            split.end_epoch()
        except Exception:  # noqa: BLE001
            pass


class LazySplit(TorchDataset):
    """Images decoded from files as they are read, with a shared status byte per image.

    A file that cannot be used is recorded and replaced by the next usable one (wrapping
    around), so every item is a valid ``3 x size x size`` uint8 tensor. Call
    :meth:`end_epoch` after each pass to print one line about anything newly found;
    :meth:`report` gives the counts so far.
    """

    def __init__(self, where: str, paths: PathTable, status: torch.Tensor, *, size: int, train: bool,
                 flip: bool, random_crop: bool, keep_gray: bool, min_side: int = MIN_SIDE) -> None:
        if status.shape[0] != len(paths):
            raise ValueError("one status byte per path is needed")
        self.where, self.paths, self.status = where, paths, status
        self.size, self.keep_gray, self.min_side = size, keep_gray, min_side
        self.augment = bool(train and flip)
        self.random_crop = bool(train and random_crop)
        self._printed: tuple | None = None
        self._codes: np.ndarray | None = None
        _LIVE.add(self)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_codes"] = None  # a numpy view would be pickled by value; the tensor is shared
        return state

    @property
    def codes(self) -> np.ndarray:
        if self._codes is None:
            self._codes = self.status.numpy()
        return self._codes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        n = len(self.paths)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        codes = self.codes
        j = i
        for _ in range(min(MAX_TRIES, n)):
            if codes[j] < FIRST_SKIP:
                arr, code = decode_image(self.paths[j], keep_gray=self.keep_gray, size=self.size,
                                         random_crop=self.random_crop, min_side=self.min_side)
                codes[j] = code
                if arr is not None:
                    x = to_chw(arr)
                    if self.augment and torch.rand(()) < 0.5:
                        x = x.flip(-1).contiguous()
                    return x
            j = (j + 1) % n
        raise ColorkitError(
            f"{self.where}: {min(MAX_TRIES, n)} images in a row from {self.paths[i]} are unusable "
            f"({self.report().line()}); check the data"
        )

    def report(self) -> LoadReport:
        return LoadReport.from_codes(self.where, self.codes.copy(), self.paths.__getitem__, of=len(self.paths))

    def end_epoch(self) -> LoadReport:
        """Print the one-line report when something new was skipped or converted; return it."""
        rep = self.report()
        key = (rep.n_skipped, rep.n_converted)
        if rep.line() is not None and key != self._printed:
            self._printed = key
            emit(rep.line())  # type: ignore[arg-type]
        return rep
