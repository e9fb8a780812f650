"""The data of the ``places365`` dataset (its options and registration are in :mod:`colorkit.plugins.places365`)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colorkit.kernel.download import download, safe_extract
from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Dataset
from colorkit.plugins._decode import (
    LoadReport,
)
from colorkit.plugins._images import (
    LazySplit,
    PathTable,
    checked_table,
    require_root,
    seeded_pick,
    val_rows,
)
from colorkit.plugins.places365 import Places365Options


BASE_URL = "http://data.csail.mit.edu/places/places365/"


ARCHIVES = {
    "index": ("filelist_places365-standard.tar", "35a0585fee1fa656440f3ab298f8479c"),
    "train": ("train_256_places365standard.tar", "53ca1c756c3d1e7809517cc47c5561c5"),
    "val": ("val_256.tar", "e27b17d8d44f4af9a78502beb927f808"),
}


INDEX = {"train": "places365_train_standard.txt", "val": "places365_val.txt"}


IMAGE_DIRS = {"train": ("data_256", "data_256_standard"), "val": ("val_256",)}


CATEGORIES = "categories_places365.txt"


LAYOUT = (
    "expected the official small-image release: places365_train_standard.txt with data_256/, "
    "places365_val.txt with val_256/ (or the archives filelist_places365-standard.tar, "
    "train_256_places365standard.tar, val_256.tar); or pass --set dataset.download=true"
)


_MAX_LABEL_DIGITS = 6


def read_index(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse an index file of lines ``PATH LABEL`` (or just ``PATH``) without a Python object per line.

    Returns the file's bytes (uint8), the start and end offset of each line's path (int32 below
    2 GB, else int64), and
    each label (int16, -1 where absent). Blank lines are ignored; CRLF line ends are accepted.
    """
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return raw, empty, empty, np.zeros(0, dtype=np.int16)
    nl = np.flatnonzero(raw == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [raw.size]))
    del nl
    space = np.zeros(256, dtype=bool)
    space[[9, 10, 13, 32]] = True
    for _ in range(4):  # trailing blanks and \r
        m = ends > starts
        m[m] = space[raw[ends[m] - 1]]
        if not m.any():
            break
        ends[m] -= 1
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    n = starts.size
    # The label is the last field: up to a few digits after the last blank.
    sep = np.full(n, -1, dtype=np.int64)
    for d in range(1, _MAX_LABEL_DIGITS + 2):
        pos = ends - d
        m = (sep < 0) & (pos > starts)
        m[m] = space[raw[pos[m]]]
        sep[m] = pos[m]
    has = sep >= 0
    labels = np.full(n, -1, dtype=np.int64)
    value = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    for d in range(_MAX_LABEL_DIGITS):
        pos = sep + 1 + d
        m = has & (pos < ends)
        digit = raw[pos[m]].astype(np.int64) - 48
        bad[np.flatnonzero(m)[(digit < 0) | (digit > 9)]] = True
        value[m] = value[m] * 10 + digit
    if bad.any():
        line = int(np.flatnonzero(bad)[0])
        text = raw[starts[line] : ends[line]].tobytes().decode("utf-8", "replace")
        raise UsageError(f"{path}: line '{text}' is not 'PATH LABEL' with a whole-number label")
    labels[has] = value[has]
    path_end = np.where(has, sep, ends)
    for _ in range(4):  # several blanks between path and label
        m = has & (path_end > starts)
        m[m] = space[raw[path_end[m] - 1]]
        if not m.any():
            break
        path_end[m] -= 1
    if labels.size and labels.max() > np.iinfo(np.int16).max:
        raise UsageError(f"{path}: labels above {np.iinfo(np.int16).max} are not Places365 categories")
    offsets = np.int32 if raw.size < 2**31 else np.int64
    return raw, starts.astype(offsets), path_end.astype(offsets), labels.astype(np.int16)


def read_categories(path: Path) -> list[str]:
    """Category names by index from ``categories_places365.txt`` (``/a/airfield 0`` lines)."""
    names: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-1].isdigit():
            names[int(parts[-1])] = parts[0].strip("/")
    return [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []


def _short(name: str) -> str:
    """``a/apartment_building/outdoor`` -> ``apartment_building/outdoor``."""
    parts = name.strip("/").split("/")
    return "/".join(parts[1:]) if len(parts) > 1 and len(parts[0]) == 1 else "/".join(parts)


class Places365(Dataset):
    """Places365-Standard small images (256x256): 1.8 M train, 36,500 val, 365 scene categories."""

    splits = ("train", "val", "test")
    #: The official files each split is read from.
    FILES = {"train": "train", "val": "train", "test": "val"}

    def __init__(self, options: Places365Options) -> None:
        self.options = options
        root = require_root("places365", options.root, LAYOUT)
        if not root.is_dir() and not options.download:
            what = "is not a folder" if root.exists() else "does not exist"
            raise UsageError(f"places365: data root {root} {what}; {LAYOUT}")
        if not options.download and not any(self._available(root, s) for s in ("train", "val")):
            what = "is empty" if not any(root.iterdir()) else "has no Places365 data"
            raise UsageError(f"places365: {root} {what}; {LAYOUT}")
        self.root = root
        #: What loading found in each split (files skipped before training).
        self.reports: dict[str, LoadReport] = {}
        self._tables: dict[str, tuple[PathTable, torch.Tensor]] = {}
        self._categories: list[str] | None = None

    @property
    def size(self) -> int:
        return self.options.size

    @staticmethod
    def _available(root: Path, split: str) -> bool:
        has_index = (root / INDEX[split]).is_file() or (root / ARCHIVES["index"][0]).is_file()
        has_images = any((root / d).is_dir() for d in IMAGE_DIRS[split]) or (root / ARCHIVES[split][0]).is_file()
        return has_index and has_images

    # -- files ----------------------------------------------------------------------------------
    def _fetch(self, part: str) -> None:
        """Extract the official archive of ``part`` into root, downloading it first if allowed."""
        name, md5 = ARCHIVES[part]
        archive = self.root / name
        if not archive.is_file():
            if not self.options.download:
                raise UsageError(f"places365: {self.root} has neither the {part} files nor {name}; {LAYOUT}")
            download(BASE_URL + name, archive, md5=md5)
        try:
            safe_extract(archive, self.root)
        except PermissionError:
            raise UsageError(f"places365: cannot extract {archive} into {self.root} (read-only); extract it into a writable folder and pass that as --data-root") from None

    def _index_file(self, split: str) -> Path:
        path = self.root / INDEX[split]
        if not path.is_file():
            self._fetch("index")
            if not path.is_file():
                raise UsageError(f"places365: {ARCHIVES['index'][0]} did not contain {INDEX[split]}; {LAYOUT}")
        return path

    def _image_dir(self, split: str) -> Path:
        for _ in range(2):
            for d in IMAGE_DIRS[split]:
                if (self.root / d).is_dir():
                    return self.root / d
            self._fetch(split)
        raise UsageError(f"places365: {ARCHIVES[split][0]} did not contain {IMAGE_DIRS[split][0]}/; {LAYOUT}")

    def categories(self) -> list[str]:
        """Category names by index (from categories_places365.txt, else from the train index)."""
        if self._categories is None:
            if (self.root / CATEGORIES).is_file():
                self._categories = read_categories(self.root / CATEGORIES)
            elif (self.root / INDEX["train"]).is_file():
                raw, starts, ends, labels = read_index(self.root / INDEX["train"])
                uniq, first = np.unique(labels, return_index=True)
                names = {int(u): raw[starts[i] : ends[i]].tobytes().decode("utf-8", "replace").strip("/").rsplit("/", 1)[0]
                         for u, i in zip(uniq, first) if u >= 0}
                self._categories = [names.get(i, str(i)) for i in range(max(names) + 1)] if names else []
            else:
                self._categories = []
        return self._categories

    def _category_ids(self) -> np.ndarray | None:
        wanted = [c.strip() for c in self.options.categories if c.strip()]
        if not wanted:
            return None
        names = self.categories()
        lookup: dict[str, int] = {}
        for i, full in enumerate(names):
            lookup.setdefault(full, i)
            lookup.setdefault(_short(full), i)
        ids = []
        for w in wanted:
            key = w.strip("/")
            if key.isdigit():
                ids.append(int(key))
            elif key in lookup:
                ids.append(lookup[key])
            else:
                close = difflib.get_close_matches(key, list(lookup), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                known = "" if names else f"; no {CATEGORIES} in {self.root}, so only indices can be used"
                raise UsageError(f"places365: unknown category '{w}'{hint}{known}")
        return np.array(sorted(set(ids)), dtype=np.int16)

    def _table(self, split: str) -> tuple[PathTable, torch.Tensor]:
        if split in self._tables:
            return self._tables[split]
        o = self.options
        files = self.FILES[split]
        index = self._index_file(files)
        images = self._image_dir(files)
        raw, starts, ends, labels = read_index(index)
        if starts.size == 0:
            raise UsageError(f"places365: {index} lists no images; {LAYOUT}")
        table = PathTable(images, raw, starts, ends)
        ids = self._category_ids()
        rows = np.arange(starts.size) if ids is None else np.flatnonzero(np.isin(labels, ids))
        if rows.size == 0:
            raise UsageError(f"places365: no {files} images in categories {', '.join(o.categories)}")
        if files == "train":
            if o.val_size >= rows.size:
                raise UsageError(
                    f"places365: dataset.val_size={o.val_size} leaves nothing to train on: {index.name} lists "
                    f"{rows.size:,} images{' in the chosen categories' if ids is not None else ''}; lower dataset.val_size")
            held = rows[val_rows(rows.size, o.val_size, o.seed)]
            rows = held if split == "val" else np.setdiff1d(rows, held, assume_unique=True)
        rows = seeded_pick(rows, o.limit, o.seed)
        table = table.take(rows)
        table, status, self.reports[split] = checked_table(
            f"places365 {split}", table, np.zeros(len(table), dtype=np.uint8), limit=o.precheck,
            keep_gray=o.keep_gray, empty_message=f"places365: no usable {split} images")
        self._tables[split] = (table, status)
        return self._tables[split]

    def split(self, name: str, train: bool = False) -> LazySplit:
        self.check_split(name)
        return LazySplit.of(f"places365 {name}", *self._table(name), self.options, train)

    @classmethod
    def example_options(cls, folder: Path) -> dict[str, Any]:
        """A tiny official-layout tree: 2 categories x 3 training files (5 train, 1 val image),
        2 official validation images (the test split)."""
        from PIL import Image

        folder = Path(folder)
        rng = np.random.default_rng(0)

        def save(rel: str) -> None:
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path, quality=95)

        cats = ["/a/airfield", "/b/beach"]
        train_lines, val_lines = [], []
        for label, cat in enumerate(cats):
            for k in range(1, 4):
                rel = f"{cat}/{k:08d}.jpg"
                save("data_256" + rel)
                train_lines.append(f"{rel} {label}")
        for k in range(1, 3):
            name = f"Places365_val_{k:08d}.jpg"
            save(f"val_256/{name}")
            val_lines.append(f"{name} {k % 2}")
        (folder / INDEX["train"]).write_text("\n".join(train_lines) + "\n")
        (folder / INDEX["val"]).write_text("\n".join(val_lines) + "\n")
        (folder / CATEGORIES).write_text("".join(f"{c} {i}\n" for i, c in enumerate(cats)))
        return {"root": str(folder), "size": 16, "cache": str(folder / "cache"), "val_size": 1}
