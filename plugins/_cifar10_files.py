"""Reading CIFAR-10's files for :mod:`colorkit.plugins.cifar10`: finding the data under ``root``
(the official python batches, as a folder or its archive, or ``train/`` and ``test/`` JPEG folders,
as folders or an archive), reading the pickled batches safely, and listing and decoding the JPEG
entries (straight from the archive's bytes where it can).
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

from colorkit.kernel.errors import UsageError
from colorkit.kernel.progress import progress_bar
from colorkit.plugins._decode import (
    FIRST_SKIP,
    GRAY,
    GRAY_KEPT,
    IMAGE_SUFFIXES,
    OK,
    LoadReport,
    decode_image,
    is_gray,
)
from colorkit.plugins._images import walk_images

ARCHIVE = "cifar-10-python.tar.gz"
NATIVE = 32
BATCHES_DIR = "cifar-10-batches-py"
BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")
SPLIT_DIRS = ("train", "test")


@dataclass(frozen=True)
class Source:
    """Where the data is: ``kind`` is batches, python_archive, jpeg_dir or jpeg_archive;
    ``prefix`` is the folder inside ``path`` that holds ``train/`` and ``test/``."""

    kind: Literal["batches", "python_archive", "jpeg_dir", "jpeg_archive"]
    path: Path
    prefix: str = ""


# -- finding the data -----------------------------------------------------------------------------


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _split_prefix(parts: list[str]) -> str | None:
    """The folder before ``train/`` or ``test/`` in an image path, or ``None``."""
    if not parts or parts[-1].startswith(".") or "__MACOSX" in parts:
        return None
    if Path(parts[-1]).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    for k, part in enumerate(parts[:-1]):
        if part in SPLIT_DIRS:
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
    if all((folder / s).is_dir() for s in SPLIT_DIRS):
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


def batches_from_dir(folder: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
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


def batches_from_archive(path: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
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


def fast_members(raw: bytes) -> list[tuple[str, int, int]] | None:
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


class Entries:
    """The image files of one split: names, and a way to get each one's bytes."""

    def __init__(self, names: list[str], get: Callable[[int], bytes | str]) -> None:
        self.names, self.get = names, get


def jpeg_entries(source: Source) -> dict[str, Entries]:
    out: dict[str, Entries] = {}
    if source.kind == "jpeg_dir":
        for split in SPLIT_DIRS:
            folder = source.path / split
            names = [str(folder / rel) for rel, _ in walk_images(folder)]
            out[split] = Entries(names, names.__getitem__)
        return out
    try:
        raw = _read_tar_bytes(source.path)
        members = fast_members(raw)
        if members is None:
            members = [(m.name, m.offset_data, m.size)
                       for m in tarfile.open(fileobj=io.BytesIO(raw), mode="r:").getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise UsageError(f"{source.path}: not a readable tar archive ({exc})") from None
    view = memoryview(raw)
    spans: dict[str, list[tuple[str, int, int]]] = {s: [] for s in SPLIT_DIRS}
    depth = len(source.prefix.split("/")) if source.prefix else 0
    for name, offset, size in members:
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if _split_prefix(parts) != source.prefix or len(parts) <= depth + 1:
            continue
        spans[parts[depth]].append((name, offset, size))
    for split, items in spans.items():
        items.sort()
        out[split] = Entries(
            [f"{name} in {source.path.name}" for name, _, _ in items],
            lambda i, items=items: view[items[i][1] : items[i][1] + items[i][2]],
        )
    return out


def decode_entries(entries: Entries, order: np.ndarray, stop_after: int | None,
                    keep_gray: bool, what: str = "cifar10") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode entries in ``order`` (stopping once ``stop_after`` are kept); returns the indices
    decoded, their ``N x 3 x 32 x 32`` images (zeros where skipped) and their status codes.
    Progress (``decoding WHAT``) counts the images decoded, or those kept with ``stop_after``."""
    n = len(order)
    images = np.zeros((n, 3, NATIVE, NATIVE), dtype=np.uint8)
    codes = np.zeros(n, dtype=np.uint8)
    kept = 0
    done = 0
    with progress_bar() as bar:
        task = bar.add_task(f"decoding {what}", total=n if stop_after is None else min(n, stop_after))
        for k, idx in enumerate(order):
            arr, code = decode_image(entries.get(int(idx)), keep_gray=True, size=NATIVE)
            if arr is not None:
                images[k] = arr.transpose(2, 0, 1)
                if code == GRAY_KEPT or is_gray(arr):
                    code = GRAY
            codes[k] = code
            done = k + 1
            if done % 250 == 0:
                bar.update(task, completed=done if stop_after is None else kept)
            if code < FIRST_SKIP or (code == GRAY and keep_gray):
                kept += 1
                if stop_after is not None and kept >= stop_after:
                    break
        bar.update(task, completed=done if stop_after is None else kept)
    return order[:done], images[:done], codes[:done]


def gray_codes(images: np.ndarray) -> np.ndarray:
    r, g, b = images[:, 0], images[:, 1], images[:, 2]
    gray = (r == g).all(axis=(1, 2)) & (r == b).all(axis=(1, 2))
    return np.where(gray, GRAY, OK).astype(np.uint8)


def _report(where: str, codes: np.ndarray, names: list[str], keep_gray: bool,
            of: int | None) -> tuple[np.ndarray, LoadReport]:
    codes = codes.copy()
    if keep_gray:
        codes[codes == GRAY] = GRAY_KEPT
    return codes, LoadReport.from_codes(where, codes, lambda i: names[i], of=of)


def kept_images(where: str, images: np.ndarray, codes: np.ndarray, names: list[str], keep_gray: bool,
                of: int | None = None) -> tuple[torch.Tensor, LoadReport]:
    """The kept images of what was decoded (all of it, or a subset: ``of`` is then the size of
    the whole split) and the report on it."""
    codes, report = _report(where, codes, names, keep_gray, of)
    return torch.from_numpy(np.ascontiguousarray(images[codes < FIRST_SKIP])), report


def select_rows(where: str, images: np.ndarray, codes: np.ndarray, names: list[str], keep_gray: bool,
            limit: int | None, seed: int) -> tuple[torch.Tensor, LoadReport]:
    """The kept images and the report on the whole split. With ``limit``: the first ``limit`` kept
    images in a seeded random order of all entries, the subset that decoding only part of the
    split (no cache yet) also gives."""
    codes, report = _report(where, codes, names, keep_gray, None)
    if limit is not None and limit < codes.size:
        order = np.random.default_rng(seed).permutation(codes.size)
        chosen = np.sort(order[codes[order] < FIRST_SKIP][:limit])
    else:
        chosen = np.flatnonzero(codes < FIRST_SKIP)
    return torch.from_numpy(np.ascontiguousarray(images[chosen])), report
