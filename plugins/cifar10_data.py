"""The data of the ``cifar10`` dataset (its options and registration are in :mod:`colorkit.plugins.cifar10`)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from colorkit.kernel.download import download
from colorkit.kernel.errors import UsageError
from colorkit.kernel.interfaces import Dataset
from colorkit.plugins._cifar10_files import (
    ARCHIVE,
    BATCHES_DIR,
    SPLIT_DIRS,
    Entries,
    Source,
    batches_from_archive,
    batches_from_dir,
    decode_entries,
    find_source,
    gray_codes,
    jpeg_entries,
    kept_images,
    select_rows,
)
from colorkit.plugins._decode import (
    DECODE_VERSION,
    LoadReport,
    emit,
    resize_images,
)
from colorkit.plugins._images import (
    ArraySplit,
    cache_root,
    file_signature,
    load_cache,
    require_root,
    save_cache,
    source_key,
    val_rows,
    walk_images,
)
from colorkit.plugins.cifar10 import Cifar10Options


URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


MD5 = "c58f30108f718f92721af3b95e74349a"


CACHE_VERSION = 1


JPEG_KINDS = ("jpeg_dir", "jpeg_archive")


LAYOUT = (
    "expected cifar-10-python.tar.gz or cifar-10-batches-py/ (the official python version), or "
    "train/<class>/*.jpg and test/<class>/*.jpg as folders or a .tar.gz; or pass "
    "--set dataset.download=true"
)


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
        self._native: dict[str, torch.Tensor] = {}
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
            for split in SPLIT_DIRS:
                sig.extend(walk_images(self.source.path / split))
            parts: list[Any] = [str(self.source.path.resolve()), source_key(*sig)]
        else:
            parts = list(file_signature(self.source.path)) + [self.source.prefix]
        return base / "cifar10" / source_key(CACHE_VERSION, DECODE_VERSION, self.source.kind, *parts)

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
            batches = (batches_from_dir(self.source.path) if self.source.kind == "batches"
                       else batches_from_archive(self.source.path))
            for split, items in batches.items():
                images = np.concatenate([data for _, data in items])
                names = [where.format(i=i) for where, data in items for i in range(data.shape[0])]
                out[split] = (images, gray_codes(images), names)
            return out
        for split, entries in jpeg_entries(self.source).items():
            idx, images, codes = decode_entries(entries, np.arange(len(entries.names)), None, True,
                                                f"cifar10 {split} files")
            out[split] = (images, codes, [entries.names[int(i)] for i in idx])
        return out

    def _role_entries(self, wanted: Sequence[str]) -> dict[str, Entries]:
        """The JPEG files of each wanted role, in the role's order: ``val``, the held-out training
        files in their seeded order; ``train``, the other training files; ``test``, the test files."""
        out: dict[str, Entries] = {}
        for split, entries in jpeg_entries(self.source).items():
            if split == "train":
                held = self._val_rows(len(entries.names))
                parts = {"train": np.setdiff1d(np.arange(len(entries.names)), held, assume_unique=True), "val": held}
            else:
                parts = {"test": np.arange(len(entries.names))}
            for role, rows in parts.items():
                if role in wanted:
                    out[role] = Entries([entries.names[int(r)] for r in rows],
                                        lambda k, rows=rows, e=entries: e.get(int(rows[k])))
        return out

    def _decode_roles_partial(self, limit: int, wanted: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
        """JPEG files with ``limit`` and no cache: for the wanted roles only, a seeded subset is
        decoded, in a seeded order until ``limit`` are kept (the subset :func:`select_rows` picks
        from a full decode)."""
        o = self.options
        out: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
        for role, sub in self._role_entries(wanted).items():
            n = len(sub.names)
            if limit >= n:
                idx, images, codes = decode_entries(sub, np.arange(n), None, o.keep_gray, f"cifar10 {role}")
            else:
                order = np.random.default_rng(o.seed).permutation(n)
                idx, images, codes = decode_entries(sub, order, limit, o.keep_gray, f"cifar10 {role}")
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

    def _from_cache(self) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]] | None:
        cache = self._cache_dir()
        hit = load_cache(cache, [f"{s}_{k}" for s in SPLIT_DIRS for k in ("images", "codes")]) if cache else None
        if hit is None:
            return None
        arrays, meta = hit
        self.from_cache = True
        return {s: (arrays[f"{s}_images"], arrays[f"{s}_codes"], meta["names"][s]) for s in SPLIT_DIRS}

    def _load(self, name: str) -> torch.Tensor:
        """Split ``name``'s kept images at 32 px: from the cache, else decoded (every file, then
        cached; with ``limit`` and JPEG files, only that role's subset, not cached)."""
        if name in self._native:
            return self._native[name]
        o = self.options
        decoded = self._from_cache()
        partial = decoded is None and o.limit is not None and self.source.kind in JPEG_KINDS
        if partial:
            assert o.limit is not None
            roles = self._decode_roles_partial(o.limit, [name])
        else:
            if decoded is None:
                decoded = self._decode_all()
                cache = self._cache_dir()
                if cache is not None:
                    arrays = {f"{s}_{k}": v for s, d in decoded.items() for k, v in (("images", d[0]), ("codes", d[1]))}
                    save_cache(cache, arrays, {"names": {s: d[2] for s, d in decoded.items()}, "source": str(self.source.path)})
            roles = self._roles(decoded)
        for split, (images, codes, names) in roles.items():
            if split in self._native:
                continue
            if partial:  # already a subset: decoded in seeded order until `limit` were kept
                tensor, report = kept_images(f"cifar10 {split}", images, codes, names, o.keep_gray)
            else:
                tensor, report = select_rows(f"cifar10 {split}", images, codes, names, o.keep_gray, o.limit, o.seed)
            self._store(split, tensor, report)
        return self._native[name]

    def _store(self, split: str, tensor: torch.Tensor, report: LoadReport) -> None:
        if tensor.shape[0] == 0:
            raise UsageError(f"cifar10: no usable images in the {split} split of {self.source.path} ({report.line()})")
        self.reports[split] = report
        self._native[split] = tensor
        line = report.line()
        if line:
            emit(line)

    def split(self, name: str, train: bool = False) -> ArraySplit:
        self.check_split(name)
        native = self._load(name)
        if name not in self._sized:
            self._sized[name] = resize_images(native, self.options.size)
        return ArraySplit(self._sized[name], train=train, flip=self.options.flip)

    def head(self, name: str, n: int) -> TorchDataset:
        """The first ``n`` images of split ``name`` (``eval --limit``). From JPEG files with no
        cache yet and no ``limit``, only the files up to the ``n``-th kept one are decoded, and
        nothing is cached (a later full read decodes and caches every file); otherwise the
        split is loaded (from the cache) and cut."""
        self.check_split(name)
        o, cache = self.options, self._cache_dir()
        if (name in self._native or o.limit is not None or self.source.kind not in JPEG_KINDS
                or (cache is not None and (cache / "meta.json").is_file())):
            return super().head(name, n)
        sub = self._role_entries([name])[name]
        idx, images, codes = decode_entries(sub, np.arange(len(sub.names)), n, o.keep_gray, f"cifar10 {name}")
        tensor, report = kept_images(f"cifar10 {name}", images, codes, [sub.names[int(i)] for i in idx], o.keep_gray,
                                     of=len(sub.names))
        if tensor.shape[0] == 0:
            raise UsageError(f"cifar10: no usable images in the {name} split of {self.source.path} ({report.line()})")
        line = report.line()
        if line:
            emit(line)
        return ArraySplit(resize_images(tensor, o.size), train=False, flip=o.flip)

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
