"""Dataset ``cifar10``: CIFAR-10 (Krizhevsky 2009) as researchers have it on disk.

Layouts found under ``root`` (``--data-root``), in this order; ``root`` may also be the archive
file itself:

1. ``cifar-10-batches-py/`` (or ``root`` is that folder): the official python version,
   extracted: pickled batches ``data_batch_1`` .. ``data_batch_5``, ``test_batch``, each a dict
   with ``b"data"`` (uint8 ``N x 3072``, channel-planar R, G, B rows of 32 px) and ``b"labels"``;
2. ``cifar-10-python.tar.gz``: the same, still archived (read directly, not extracted);
3. ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``, as folders (possibly one folder down),
4. or as a ``.tar.gz``/``.tgz``/``.tar`` archive with that layout (possibly nested one folder
   down), e.g. ``cifar10-jpeg.tar.gz``, the JPEG mirror in ``../shared/data``.

With ``download=true`` and none of these present, ``cifar-10-python.tar.gz`` is downloaded from
the official address into ``root`` and its published MD5 checked before use
(:func:`colorkit.kernel.download.download`; an existing archive with a wrong MD5 is downloaded again).

Speed: every image is decoded once, into one ``N x 3 x 32 x 32`` uint8 array per split, which
the training split indexes a batch at a time. Decoded arrays of archives and JPEG folders are
cached (``cache`` option, default ``~/.cache/colorkit`` or ``$COLORKIT_CACHE``) under a key made
of the source's path, size and modification time (for folders: of every file), so later runs
start in a fraction of a second. With ``limit`` set and no cache yet, only a seeded random
subset is decoded (and nothing is cached). Other sizes than 32 are resized once, in torch.

Bad data: the pickled batches are checked for shape and type (a malformed batch is an error
naming the file), and are read with an unpickler that only accepts numpy arrays and plain
types; JPEG files go through :func:`colorkit.plugins._images.decode_image`. Grayscale images
(R = G = B everywhere: 729 of the 60,000 in the JPEG mirror) are skipped unless
``keep_gray=true``. Each split's counts are printed once when it is loaded and kept in
``dataset.reports[split]``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

import colorkit
from colorkit.kernel.download import download
from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Dataset
from colorkit.kernel.options import opt
from colorkit.plugins._images import (
    FIRST_SKIP,
    GRAY,
    GRAY_KEPT,
    IMAGE_SUFFIXES,
    OK,
    ArraySplit,
    ImageDataOptions,
    LoadReport,
    cache_root,
    decode_image,
    emit,
    file_signature,
    is_gray,
    load_cache,
    require_root,
    resize_images,
    save_cache,
    source_key,
    val_rows,
    walk_images,
)

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
NATIVE = 32
CACHE_VERSION = 1
LAYOUT = (
    "expected cifar-10-python.tar.gz or cifar-10-batches-py/ (the official python version), or "
    "train/<class>/*.jpg and test/<class>/*.jpg as folders or a .tar.gz; or pass "
    "--set dataset.download=true"
)
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
_SPLIT_DIRS = ("train", "test")


@dataclass(frozen=True)
class Cifar10Options(ImageDataOptions):
    size: int = opt(32, "working size in pixels (CIFAR-10 is 32x32; other sizes are resized once at load)")
    download: bool = opt(False, "download cifar-10-python.tar.gz from the official address into root, MD5-verified, when no data is there")
    val_size: int = opt(5000, "training files held out as the val split (a seeded choice, by seed; never trained on); CIFAR-10's test split stays the test split")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.val_size < 1:
            raise ValueError("dataset.val_size must be at least 1 (the val split is what training validates on)")


@dataclass(frozen=True)
class Source:
    """Where the data is: ``kind`` is batches, python_archive, jpeg_dir or jpeg_archive;
    ``prefix`` is the folder inside ``path`` that holds ``train/`` and ``test/``."""

    kind: Literal["batches", "python_archive", "jpeg_dir", "jpeg_archive"]
    path: Path
    prefix: str = ""


# -- finding the data -----------------------------------------------------------------------------


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _split_prefix(parts: list[str]) -> str | None:
    """The folder before ``train/`` or ``test/`` in an image path, or ``None``."""
    if not parts or parts[-1].startswith(".") or "__MACOSX" in parts:
        return None
    if Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    for k, part in enumerate(parts[:-1]):
        if part in _SPLIT_DIRS:
            return "/".join(parts[:k])
    return None


def probe_archive(path: Path, max_members: int = 500) -> Source | None:
    """What kind of CIFAR-10 archive ``path`` is, from its first members (``None``: neither)."""
    try:
        with tarfile.open(path, "r|*") as tf:
            for i, member in enumerate(tf):
                if i >= max_members:
                    break
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if parts and parts[-1] == "data_batch_1":
                    return Source("python_archive", path)
                if member.isfile():
                    prefix = _split_prefix(parts)
                    if prefix is not None:
                        return Source("jpeg_archive", path, prefix)
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return None
    return None


def _jpeg_dir(folder: Path) -> Source | None:
    if all((folder / s).is_dir() for s in _SPLIT_DIRS):
        return Source("jpeg_dir", folder)
    return None


def find_source(root: Path) -> Source | None:
    """The first CIFAR-10 layout found at ``root`` (see the module docstring), or ``None``."""
    if root.is_file():
        return probe_archive(root) if _is_archive(root) else None
    if not root.is_dir():
        return None
    for folder in (root / BATCHES_DIR, root):
        if (folder / "data_batch_1").is_file():
            return Source("batches", folder)
    if (root / ARCHIVE).is_file():
        return Source("python_archive", root / ARCHIVE)
    found = _jpeg_dir(root)
    if found:
        return found
    children = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    for child in children:
        if child.is_dir():
            found = _jpeg_dir(child)
            if found:
                return found
    archives = [p for p in children if _is_archive(p)]
    archives.sort(key=lambda p: ("cifar" not in p.name.lower(), p.name))
    for archive in archives:
        found = probe_archive(archive)
        if found:
            return found
    return None


# -- reading the official python batches ----------------------------------------------------------


class _BatchUnpickler(pickle.Unpickler):
    """Accepts numpy arrays and plain types only: a batch file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never does")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def read_batch(fh: Any, where: str) -> np.ndarray:
    """One pickled batch as ``N x 3 x 32 x 32`` uint8; a one-line error for anything else."""
    try:
        batch = _BatchUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unpickling failure
        raise UsageError(f"{where}: not a CIFAR-10 python batch ({exc})") from None
    data = batch.get(b"data", batch.get("data")) if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * NATIVE * NATIVE:
        raise UsageError(f"{where}: not a CIFAR-10 python batch (expected b'data', a uint8 N x 3072 array)")
    return data.reshape(-1, 3, NATIVE, NATIVE)


def _batches_from_dir(folder: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    missing = [n for names in BATCHES.values() for n in names if not (folder / n).is_file()]
    if missing:
        raise UsageError(f"{folder}: incomplete CIFAR-10 python folder, missing {', '.join(missing)}")
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for split, names in BATCHES.items():
        out[split] = []
        for n in names:
            with open(folder / n, "rb") as fh:
                out[split].append((str(folder / n) + "[{i}]", read_batch(fh, str(folder / n))))
    return out


def _batches_from_archive(path: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    found: dict[str, np.ndarray] = {}
    wanted = {n for names in BATCHES.values() for n in names}
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in found:
                    fh = tf.extractfile(member)
                    assert fh is not None
                    found[base] = read_batch(fh, f"{member.name} in {path}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"{path}: not a readable tar archive ({exc})") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise UsageError(f"{path}: incomplete CIFAR-10 python archive, missing {', '.join(missing)}")
    return {split: [(f"{n}[{{i}}] in {path.name}", found[n]) for n in names] for split, names in BATCHES.items()}


# -- reading JPEG layouts -------------------------------------------------------------------------


def _read_tar_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(6)
    opener: Callable[[Path], Any] = open
    if head.startswith(b"\x1f\x8b"):
        opener = gzip.open
    elif head.startswith(b"BZh"):
        opener = bz2.open
    elif head.startswith(b"\xfd7zXZ"):
        opener = lzma.open
    with opener(path, "rb") as fh:
        return fh.read()


def _fast_members(raw: bytes) -> list[tuple[str, int, int]] | None:
    """``(name, data offset, size)`` of the regular files of an uncompressed ustar/GNU tar, read
    straight from the headers (ten times faster than tarfile for 60,000 small members); ``None``
    for anything unusual (long-name or pax records, a bad checksum), which tarfile then reads."""
    out: list[tuple[str, int, int]] = []
    pos, end = 0, len(raw)
    while pos + 512 <= end:
        h = raw[pos : pos + 512]
        if h[0] == 0:
            if h.count(0) == 512:
                return out
            return None
        check = h[148:156].split(b"\0", 1)[0].strip()
        try:
            if int(check or b"-1", 8) != sum(h[:148]) + 256 + sum(h[156:]):
                return None
            size_field = h[124:136]
            if size_field[0] & 0x80:
                return None
            size = int(size_field.split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            return None
        kind = h[156:157]
        if kind in (b"L", b"K", b"x", b"g"):
            return None
        name = h[:100].split(b"\0", 1)[0]
        if h[257:263] == b"ustar\x00":
            prefix = h[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        if kind in (b"0", b"\0", b"7"):
            out.append((name.decode("utf-8", "surrogateescape"), pos + 512, size))
        pos += 512 + (size + 511) // 512 * 512
    return out


class _Entries:
    """The image files of one split: names, and a way to get each one's bytes."""

    def __init__(self, names: list[str], get: Callable[[int], bytes | str]) -> None:
        self.names, self.get = names, get


def _jpeg_entries(source: Source) -> dict[str, _Entries]:
    out: dict[str, _Entries] = {}
    if source.kind == "jpeg_dir":
        for split in _SPLIT_DIRS:
            folder = source.path / split
            names = [str(folder / rel) for rel, _ in walk_images(folder)]
            out[split] = _Entries(names, names.__getitem__)
        return out
    try:
        raw = _read_tar_bytes(source.path)
        members = _fast_members(raw)
        if members is None:
            members = [(m.name, m.offset_data, m.size)
                       for m in tarfile.open(fileobj=io.BytesIO(raw), mode="r:").getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise UsageError(f"{source.path}: not a readable tar archive ({exc})") from None
    view = memoryview(raw)
    spans: dict[str, list[tuple[str, int, int]]] = {s: [] for s in _SPLIT_DIRS}
    depth = len(source.prefix.split("/")) if source.prefix else 0
    for name, offset, size in members:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if _split_prefix(parts) != source.prefix or len(parts) <= depth + 1:
            continue
        spans[parts[depth]].append((name, offset, size))
    for split, items in spans.items():
        items.sort()
        out[split] = _Entries(
            [f"{name} in {source.path.name}" for name, _, _ in items],
            lambda i, items=items: view[items[i][1] : items[i][1] + items[i][2]],
        )
    return out


def _decode_entries(entries: _Entries, order: np.ndarray, stop_after: int | None,
                    keep_gray: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode entries in ``order`` (stopping once ``stop_after`` are kept); returns the indices
    decoded, their ``N x 3 x 32 x 32`` images (zeros where skipped) and their status codes."""
    n = len(order)
    images = np.zeros((n, 3, NATIVE, NATIVE), dtype=np.uint8)
    codes = np.zeros(n, dtype=np.uint8)
    kept = 0
    done = 0
    for k, idx in enumerate(order):
        arr, code = decode_image(entries.get(int(idx)), keep_gray=True, size=NATIVE)
        if arr is not None:
            images[k] = arr.transpose(2, 0, 1)
            if code == GRAY_KEPT or is_gray(arr):
                code = GRAY
        codes[k] = code
        done = k + 1
        if code < FIRST_SKIP or (code == GRAY and keep_gray):
            kept += 1
            if stop_after is not None and kept >= stop_after:
                break
    return order[:done], images[:done], codes[:done]


def _gray_codes(images: np.ndarray) -> np.ndarray:
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    gray = (r == g).all(axis=(1, 2)) & (r == b).all(axis=(1, 2))
    return np.where(gray, GRAY, OK).astype(np.uint8)


def _select(where: str, images: np.ndarray, codes: np.ndarray, names: list[str], keep_gray: bool,
            limit: int | None, seed: int) -> tuple[torch.Tensor, LoadReport]:
    """The kept images and the report on the whole split. With ``limit``: the first ``limit`` kept
    images in a seeded random order of all entries, the subset that decoding only part of the
    split (no cache yet) also gives."""
    codes = codes.copy()
    if keep_gray:
        codes[codes == GRAY] = GRAY_KEPT
    report = LoadReport.from_codes(where, codes, lambda i: names[i])
    if limit is not None and limit < codes.size:
        order = np.random.default_rng(seed).permutation(codes.size)
        chosen = np.sort(order[codes[order] < FIRST_SKIP][:limit])
    else:
        chosen = np.flatnonzero(codes < FIRST_SKIP)
    return torch.from_numpy(np.ascontiguousarray(images[chosen])), report


# -- the dataset ----------------------------------------------------------------------------------


class Cifar10(Dataset):
    """CIFAR-10, 50,000 train / 10,000 test colour images of 32x32, from the files researchers have;
    ``val`` is carved from the training files (``val_size``, 5,000 by default)."""

    splits = ("train", "val", "test")

    def __init__(self, options: Cifar10Options) -> None:
        self.options = options
        root = require_root("cifar10", options.root, LAYOUT)
        if not root.exists() and not options.download:
            raise UsageError(f"cifar10: data root {root} does not exist; {LAYOUT}")
        source = find_source(root)
        if source is None and options.download:
            if root.is_file():
                raise UsageError(f"cifar10: {root} is not a CIFAR-10 archive; {LAYOUT}")
            download(URL, root / ARCHIVE, md5=MD5)
            source = Source("python_archive", root / ARCHIVE)
        elif source is not None and options.download and source.path == root / ARCHIVE:
            download(URL, root / ARCHIVE, md5=MD5)  # re-fetched only if the MD5 does not match
        if source is None:
            what = "is empty" if root.is_dir() and not any(root.iterdir()) else "has no CIFAR-10 data"
            raise UsageError(f"cifar10: {root} {what}; {LAYOUT}")
        self.root, self.source = root, source
        #: What loading found in each split (skipped and converted images).
        self.reports: dict[str, LoadReport] = {}
        #: Whether the decoded arrays came from the cache.
        self.from_cache = False
        self._native: dict[str, torch.Tensor] | None = None
        self._sized: dict[str, torch.Tensor] = {}

    @property
    def size(self) -> int:
        return self.options.size

    # -- loading --------------------------------------------------------------------------------
    def _cache_dir(self) -> Path | None:
        base = cache_root(self.options.cache)
        if base is None or self.source.kind == "batches":
            return None
        if self.source.kind == "jpeg_dir":
            sig: list[Any] = []
            for split in _SPLIT_DIRS:
                sig.extend(walk_images(self.source.path / split))
            parts: list[Any] = [str(self.source.path.resolve()), source_key(*sig)]
        else:
            parts = list(file_signature(self.source.path)) + [self.source.prefix]
        return base / "cifar10" / source_key(CACHE_VERSION, self.source.kind, *parts)

    def _val_rows(self, n: int) -> np.ndarray:
        o = self.options
        if o.val_size >= n:
            raise UsageError(
                f"cifar10: dataset.val_size={o.val_size} leaves nothing to train on: the training files of "
                f"{self.source.path} hold {n:,} images; lower dataset.val_size")
        return val_rows(n, o.val_size, o.seed)

    def _decode_all(self) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """Per source split (``train`` and ``test`` files): images, status codes and names."""
        out: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        if self.source.kind in ("batches", "python_archive"):
            batches = (_batches_from_dir(self.source.path) if self.source.kind == "batches"
                       else _batches_from_archive(self.source.path))
            for split, items in batches.items():
                images = np.concatenate([data for _, data in items])
                names = [where.format(i=i) for where, data in items for i in range(data.shape[0])]
                out[split] = (images, _gray_codes(images), names)
            return out
        for split, entries in _jpeg_entries(self.source).items():
            idx, images, codes = _decode_entries(entries, np.arange(len(entries.names)), None, True)
            out[split] = (images, codes, [entries.names[int(i)] for i in idx])
        return out

    def _decode_roles_partial(self, limit: int) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """JPEG files with ``limit`` and no cache: per role, only a seeded subset is decoded, in a
        seeded order until ``limit`` are kept (the subset :func:`_select` picks from a full decode)."""
        o = self.options
        out: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        for split, entries in _jpeg_entries(self.source).items():
            if split == "train":
                held = self._val_rows(len(entries.names))
                rest = np.setdiff1d(np.arange(len(entries.names)), held, assume_unique=True)
                parts = {"train": rest, "val": held}
            else:
                parts = {"test": np.arange(len(entries.names))}
            for role, rows in parts.items():
                sub = _Entries([entries.names[int(r)] for r in rows], lambda k, rows=rows, e=entries: e.get(int(rows[k])))
                n = rows.size
                if limit >= n:
                    idx, images, codes = _decode_entries(sub, np.arange(n), None, o.keep_gray)
                else:
                    order = np.random.default_rng(o.seed).permutation(n)
                    idx, images, codes = _decode_entries(sub, order, limit, o.keep_gray)
                    keep = np.argsort(idx)
                    idx, images, codes = idx[keep], images[keep], codes[keep]
                out[role] = (images, codes, [sub.names[int(i)] for i in idx])
        return out

    def _roles(self, decoded: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """Source splits to the three roles: ``val`` rows carved out of the training files."""
        images, codes, names = decoded["train"]
        held = self._val_rows(codes.size)
        rest = np.setdiff1d(np.arange(codes.size), held, assume_unique=True)
        return {
            "train": (images[rest], codes[rest], [names[int(i)] for i in rest]),
            "val": (images[held], codes[held], [names[int(i)] for i in held]),
            "test": decoded["test"],
        }

    def _load(self) -> dict[str, torch.Tensor]:
        if self._native is not None:
            return self._native
        o = self.options
        cache = self._cache_dir()
        decoded: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] | None = None
        if cache is not None:
            hit = load_cache(cache, [f"{s}_{k}" for s in _SPLIT_DIRS for k in ("images", "codes")])
            if hit is not None:
                arrays, meta = hit
                decoded = {s: (arrays[f"{s}_images"], arrays[f"{s}_codes"], meta["names"][s]) for s in _SPLIT_DIRS}
                self.from_cache = True
        partial = decoded is None and o.limit is not None and self.source.kind in ("jpeg_dir", "jpeg_archive")
        if partial:
            assert o.limit is not None
            roles = self._decode_roles_partial(o.limit)
        else:
            if decoded is None:
                decoded = self._decode_all()
                if cache is not None:
                    arrays = {f"{s}_{k}": v for s, d in decoded.items() for k, v in (("images", d[0]), ("codes", d[1]))}
                    save_cache(cache, arrays, {"names": {s: d[2] for s, d in decoded.items()}, "source": str(self.source.path)})
            roles = self._roles(decoded)
        self._native = {}
        for split in self.splits:
            images, codes, names = roles[split]
            if partial:
                # already a subset: decoded in seeded order until `limit` were kept
                codes = codes.copy()
                if o.keep_gray:
                    codes[codes == GRAY] = GRAY_KEPT
                report = LoadReport.from_codes(f"cifar10 {split}", codes, lambda i, names=names: names[i])
                tensor = torch.from_numpy(np.ascontiguousarray(images[codes < FIRST_SKIP]))
            else:
                tensor, report = _select(f"cifar10 {split}", images, codes, names, o.keep_gray, o.limit, o.seed)
            if tensor.shape[0] == 0:
                raise UsageError(f"cifar10: no usable images in the {split} split of {self.source.path} ({report.line()})")
            self.reports[split] = report
            self._native[split] = tensor
            line = report.line()
            if line:
                emit(line)
        return self._native

    def split(self, name: str, train: bool = False) -> ArraySplit:
        self.check_split(name)
        native = self._load()[name]
        if name not in self._sized:
            self._sized[name] = resize_images(native, self.options.size)
        return ArraySplit(self._sized[name], train=train, flip=self.options.flip)

    @classmethod
    def example_options(cls, folder: Path) -> dict[str, Any]:
        """A tiny official-format archive (8 train files: 6 train and 2 val images; 4 test) under ``folder``."""
        folder = Path(folder)
        rng = np.random.default_rng(0)
        write_python_archive(folder / ARCHIVE, rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
                             rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
        return {"root": str(folder), "cache": str(folder / "cache"), "val_size": 2}


def write_python_archive(path: Path, train: np.ndarray, test: np.ndarray) -> Path:
    """Write ``cifar-10-python.tar.gz`` in the official byte layout from ``N x 32 x 32 x 3``
    uint8 arrays (``train`` is spread over the five data batches). For fixtures and tests."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def batch(images: np.ndarray, label: str) -> bytes:
        data = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)
        d = {b"batch_label": label.encode(), b"labels": [int(i % 10) for i in range(len(images))],
             b"data": data, b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}
        return pickle.dumps(d, protocol=2)

    files = {f"data_batch_{i + 1}": batch(part, f"training batch {i + 1} of 5")
             for i, part in enumerate(np.array_split(train, 5))}
    files["test_batch"] = batch(test, "testing batch 1 of 1")
    files["batches.meta"] = pickle.dumps({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer",
                                                           b"dog", b"frog", b"horse", b"ship", b"truck"],
                                          b"num_cases_per_batch": 10000, b"num_vis": 3072}, protocol=2)
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in files.items():
            info = tarfile.TarInfo(f"{BATCHES_DIR}/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


@colorkit.hookimpl
def register_datasets(register):
    register("cifar10", Cifar10, options=Cifar10Options,
             description="CIFAR-10 32x32 from the official python archive or train/test JPEG folders (or .tar.gz); download=true fetches it")
