"""The data of the ``imagefolder`` dataset (its options and registration are in :mod:`colorkit.plugins.imagefolder`)."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Subset

from colorkit.kernel.download import safe_extract
from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Dataset
from colorkit.plugins._decode import (
    DECODE_VERSION,
    EMPTY,
    IMAGE_SUFFIXES,
    LoadReport,
)
from colorkit.plugins._images import (
    LazySplit,
    PathTable,
    cache_root,
    file_signature,
    checked_table,
    require_root,
    save_cache,
    seeded_pick,
    source_key,
    walk_images,
)
from colorkit.plugins._packed import PackedImages, PackedSplit, decode_packed
from colorkit.plugins.imagefolder import ImageFolderOptions


#: Bumped when what the decoded cache holds changes (its layout); the decoding has its own
#: version (``DECODE_VERSION``), in the cache key too.
CACHE_VERSION = 1


#: Decoded splits live in ``<cache>/imagefolder-decoded/``.
DECODED = "imagefolder-decoded"


_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


_VAL_DIRS = ("val", "valid", "validation")


_TEST_DIRS = ("test",)


LAYOUT = (
    f"expected image files ({', '.join(sorted(s for s in IMAGE_SUFFIXES if len(s) <= 5))}) anywhere "
    "below it, or train/ and val/ folders of them, or a tar archive of them"
)


def _unpacked(archive: Path, cache: str) -> Path:
    """The folder an archive is extracted to (once), in the cache."""
    base = cache_root(cache)
    if base is None:
        raise UsageError(f"imagefolder: {archive} is an archive and dataset.cache is off; extract it and pass the folder")
    name = archive.name
    for suffix in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    target = base / "imagefolder" / f"{name}-{source_key(*file_signature(archive))}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            safe_extract(archive, staging)
            try:
                os.replace(staging, target)
            except OSError:
                if not target.is_dir():  # another process won the race otherwise
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    folder = target
    while True:
        entries = [e for e in folder.iterdir() if not e.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


def _hash_fraction(seed: int, rel: str) -> float:
    return zlib.crc32(f"{seed}/{rel}".encode("utf-8", "surrogateescape")) / 2**32


class ImageFolder(Dataset):
    """Your own photos: any folder (recursive) or tar archive of images, at a chosen working size."""

    splits = ("train", "val", "test")

    def __init__(self, options: ImageFolderOptions) -> None:
        self.options = options
        root = require_root("imagefolder", options.root, LAYOUT)
        if not root.exists():
            raise UsageError(f"imagefolder: data root {root} does not exist; {LAYOUT}")
        if root.is_file():
            if not root.name.lower().endswith(_ARCHIVE_SUFFIXES):
                raise UsageError(f"imagefolder: {root} is a file but not a tar archive; {LAYOUT}")
            folder = _unpacked(root, options.cache)
        else:
            folder = root
        self.root, self.folder = root, folder
        self._files = self._assign(folder)
        for split in self.splits:
            if not self._files[split]:
                if not any(self._files.values()):
                    raise UsageError(f"imagefolder: no images under {root}; {LAYOUT}")
                raise UsageError(f"imagefolder: the {split} split under {root} has no images; {LAYOUT}")
        #: What loading found in each split (files skipped before training).
        self.reports: dict[str, LoadReport] = {}
        #: Splits decoded into the cache, ``(split, "whole" or "crop")``: ``"cache"`` when mapped
        #: from an earlier run's cache, ``"decoded"`` when decoded by this one.
        self.decoded: dict[tuple[str, str], str] = {}
        self._tables: dict[str, tuple[PathTable, torch.Tensor]] = {}
        self._packed: dict[tuple[str, str], PackedImages | None] = {}

    @property
    def size(self) -> int:
        return self.options.size

    @property
    def from_cache(self) -> bool | None:
        """Whether every split decoded so far came from the cache (``None``: none was decoded
        into it: the cache is off, or the splits are too large, or none was asked for yet)."""
        if not self.decoded:
            return None
        return all(v == "cache" for v in self.decoded.values())

    def _assign(self, folder: Path) -> dict[str, list[tuple[str, int]]]:
        """``(path relative to folder, bytes)`` of the images of each split."""
        o = self.options
        dirs = {"val": next((d for d in _VAL_DIRS if (folder / d).is_dir()), None),
                "test": next((d for d in _TEST_DIRS if (folder / d).is_dir()), None)}
        if (folder / "train").is_dir() and any(dirs.values()):
            pool = [(f"train/{rel}", n) for rel, n in walk_images(folder / "train")]
        else:
            pool, dirs = walk_images(folder), {"val": None, "test": None}
        carve = [s for s in ("val", "test") if dirs[s] is None]
        share = {"val": o.val_fraction, "test": o.test_fraction}
        fractions = np.array([_hash_fraction(o.seed, rel) for rel, _ in pool])
        role = np.zeros(len(pool), dtype=np.int8)  # 0 train, then 1, 2 for the carved splits
        low = 0.0
        for k, name in enumerate(carve, start=1):
            role[(fractions >= low) & (fractions < low + share[name])] = k
            low += share[name]
        if len(pool) > len(carve):  # every split gets an image: move the nearest ones over
            for k in range(len(carve) + 1):
                if not (role == k).any():
                    donors = np.flatnonzero(np.bincount(role, minlength=len(carve) + 1)[role] > 1)
                    target = low if k == 0 else sum(share[c] for c in carve[:k - 1]) + share[carve[k - 1]] / 2
                    role[donors[np.argmin(np.abs(fractions[donors] - target))]] = k
        out = {"train": [f for f, r in zip(pool, role) if r == 0]}
        for k, name in enumerate(carve, start=1):
            out[name] = [f for f, r in zip(pool, role) if r == k]
        for name, d in dirs.items():
            if d is not None:
                out[name] = [(f"{d}/{rel}", n) for rel, n in walk_images(folder / d)]
        return out

    def _table(self, split: str) -> tuple[PathTable, torch.Tensor]:
        if split in self._tables:
            return self._tables[split]
        o = self.options
        files = self._files[split]
        rows = seeded_pick(np.arange(len(files)), o.limit, o.seed)
        chosen = [files[int(i)] for i in rows]
        table = PathTable.from_names(self.folder, [rel for rel, _ in chosen])
        known = np.array([EMPTY if n == 0 else 0 for _, n in chosen], dtype=np.uint8)
        table, status, self.reports[split] = checked_table(
            f"imagefolder {split}", table, known, limit=o.precheck, keep_gray=o.keep_gray, min_side=o.min_side,
            empty_message=f"imagefolder: no usable images in the {split} split under {self.root}")
        self._tables[split] = (table, status)
        return self._tables[split]

    # -- decoded once, into the cache ------------------------------------------------------------
    def _mode(self, train: bool) -> str:
        """``whole`` photos for random training crops, else ``crop`` (centre crops)."""
        return "whole" if train and self.options.random_crop else "crop"

    def _cache_dir(self, base: Path, name: str, mode: str, table: PathTable) -> tuple[Path, str]:
        """The cache folder of split ``name`` in ``mode``, and the stem it shares with stale
        copies of itself (same folder, split and options; other files). The options that choose
        the files are in the stem too, so that two runs with, say, different ``limit`` keep
        their own copies."""
        o = self.options
        config = source_key(CACHE_VERSION, DECODE_VERSION, self.folder.resolve(), name, mode, o.size, o.keep_gray,
                            o.min_side, Image.MAX_IMAGE_PIXELS, o.limit, o.seed, o.val_fraction, o.test_fraction,
                            o.precheck)
        signatures = []
        for i in range(len(table)):
            rel = table.name(i)
            try:
                st = os.stat(os.path.join(table.base, rel))
                signatures.append(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}")
            except OSError:
                signatures.append(f"{rel}\0missing")
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.folder.name)[:40] or "photos"
        stem = f"{label}-{name}-{o.size}px-{mode}-{config}"
        return base / DECODED / f"{stem}-{source_key(*signatures)}", stem

    def _decoded_split(self, name: str, mode: str, decode: bool = True) -> PackedImages | None:
        """Split ``name`` decoded once (``mode`` ``whole`` or ``crop``): mapped from the cache,
        else decoded into it (unless ``decode`` is false); ``None`` when the cache is off or the
        split is over ``cache_gb``."""
        key = (name, mode)
        if key in self._packed:
            return self._packed[key]
        o = self.options
        table, _ = self._table(name)
        base = cache_root(o.cache)
        estimate = len(table) * 3 * o.size * o.size * (1.5 if mode == "whole" else 1.0)
        if base is None or estimate > o.cache_gb * 1e9:
            self._packed[key] = None
            return None
        folder, stem = self._cache_dir(base, name, mode, table)
        images = PackedImages.load(folder, len(table))
        if images is not None:
            self.decoded[key] = "cache"
        elif not decode:
            return None
        else:
            images = self._decode_into(folder, stem, name, mode, table)
            self.decoded[key] = "decoded"
        self._packed[key] = images
        return images

    def _decode_into(self, folder: Path, stem: str, name: str, mode: str, table: PathTable) -> PackedImages:
        """Decode the split, streaming the pixels to a file beside ``folder``, then move it in with
        the offsets, shapes and codes; in memory when the cache cannot be written."""
        o = self.options
        what = (f"imagefolder {name} into the cache ({len(table):,} images, "
                f"{'shorter side' if mode == 'whole' else 'centre crops'} at {o.size} px, once)")
        args = dict(size=o.size, crop=mode == "crop", keep_gray=o.keep_gray, min_side=o.min_side)
        tmp: Path | None = None
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".pixels.", dir=folder.parent)
            tmp = Path(tmp_name)
            with os.fdopen(fd, "wb") as sink:
                offsets, shapes, codes = decode_packed(what, table, sink, **args)
        except BaseException as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if not isinstance(exc, OSError):  # interrupted: leave nothing behind
                raise
            buffer = io.BytesIO()  # a read-only or full cache: decode into memory instead
            offsets, shapes, codes = decode_packed(what, table, buffer, **args)
            return PackedImages(np.frombuffer(buffer.getbuffer(), dtype=np.uint8), offsets, shapes, codes)
        nbytes = tmp.stat().st_size
        meta = {"version": CACHE_VERSION, "root": str(self.root), "folder": str(self.folder), "split": name,
                "mode": mode, "size": o.size, "keep_gray": o.keep_gray, "min_side": o.min_side,
                "images": len(table), "pixels_bytes": nbytes}
        saved = save_cache(folder, {"offsets": offsets, "shapes": shapes, "codes": codes}, meta,
                           move={PackedImages.PIXELS: tmp})
        if saved:
            for stale in folder.parent.glob(f"{stem}-*"):  # the same split before its files changed
                if stale != folder and stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
        images = PackedImages.load(folder, len(table))  # ours, or another process's that won the race
        if images is None:  # not writable: keep the decoded pixels in memory
            images = PackedImages(np.fromfile(folder / PackedImages.PIXELS if saved else tmp, dtype=np.uint8),
                                  offsets, shapes, codes)
        tmp.unlink(missing_ok=True)
        return images

    def split(self, name: str, train: bool = False) -> LazySplit:
        """Split ``name``: decoded once into the cache (:class:`PackedSplit`) or, with the cache
        off or over ``cache_gb``, decoded as read (:class:`LazySplit`)."""
        self.check_split(name)
        table, status = self._table(name)
        images = self._decoded_split(name, self._mode(train))
        if images is None:
            return LazySplit.of(f"imagefolder {name}", table, status, self.options, train)
        return PackedSplit.of(f"imagefolder {name}", table, images, self.options, train)

    def head(self, name: str, n: int) -> torch.utils.data.Dataset:
        """The first ``n`` evaluation images of split ``name``: from the cache when the split is
        there, else decoded as read (the same pixels), without decoding the whole split."""
        self.check_split(name)
        if self._decoded_split(name, "crop", decode=False) is not None:
            return super().head(name, n)
        data = LazySplit.of(f"imagefolder {name}", *self._table(name), self.options, False)
        return Subset(data, range(min(n, len(data))))

    @classmethod
    def example_options(cls, folder: Path) -> dict[str, Any]:
        """Six small colour JPEGs in nested folders (4 train, 1 val, 1 test)."""
        from PIL import Image

        folder = Path(folder) / "photos"
        rng = np.random.default_rng(0)
        for i in range(6):
            path = folder / f"set{i % 2}" / f"photo{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (20 + 4 * i, 24, 3), dtype=np.uint8)).save(path, quality=95)
        return {"root": str(folder), "size": 16, "cache": str(Path(folder).parent / "cache")}
