"""The data of the ``imagefolder`` dataset (its options and registration are in :mod:`colorkit.plugins.imagefolder`)."""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colorkit.kernel.download import safe_extract
from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Dataset
from colorkit.plugins._decode import (
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
    seeded_pick,
    source_key,
    walk_images,
)
from colorkit.plugins.imagefolder import ImageFolderOptions


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
        self._tables: dict[str, tuple[PathTable, torch.Tensor]] = {}

    @property
    def size(self) -> int:
        return self.options.size

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

    def split(self, name: str, train: bool = False) -> LazySplit:
        self.check_split(name)
        return LazySplit.of(f"imagefolder {name}", *self._table(name), self.options, train)

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
