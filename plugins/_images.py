"""Shared machinery of the file-based dataset plugins (cifar10, places365, imagefolder).

* decoding one image, what happens to bad data, and the report of a split (one line, e.g.
  ``cifar10 train: skipped 3 of 50,000 images: 2 unreadable, 1 grayscale; first skipped:
  train/cat/0001.jpg (unreadable)``, to stderr; datasets keep their reports in
  ``dataset.reports``) are :mod:`colorkit.plugins._decode`;
* :class:`ArraySplit` serves images decoded once into one ``N x 3 x S x S`` uint8 tensor;
  :class:`LazySplit` decodes files as they are read, for data too big to hold in memory (splits
  decoded once into the cache are :mod:`colorkit.plugins._packed`);
* :class:`ImageDataOptions` are the options every file-based dataset shares (``root``, ``size``,
  ``limit``, ``seed``, ``flip``, ``keep_gray``, ``cache``).

Lazily read splits (:class:`LazySplit`) keep one status byte per image in shared memory, so
that loader worker processes record what they find where the main process can count it; a bad
image is replaced by the next good one in the split (the batch keeps its size), is never decoded
again, and is reported by ``split.end_epoch()`` (one line, only when something new was found)
and, as a last resort, when the process exits.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from colorkit.kernel.errors import ColorkitError, UsageError
from colorkit.kernel.progress import progress_bar
from colorkit.plugins._image_options import MIN_SIDE
from colorkit.plugins._decode import (
    OK,
    LoadReport,
    check_header,
    emit,
    FIRST_SKIP,
    IMAGE_SUFFIXES,
    MAX_TRIES,
    UNSEEN,
    decode_image,
    to_chw,
)


def precheck(where: str, paths: PathTable, codes: np.ndarray, *, limit: int, keep_gray: bool,
             min_side: int = MIN_SIDE) -> tuple[np.ndarray, LoadReport]:
    """Header-check every path when there are at most ``limit`` (0: never), on top of the codes
    already known (e.g. empty files seen while listing). Returns the rows still usable and the
    load report; the report is printed when something was skipped."""
    codes = codes.copy()
    if len(paths) <= limit:
        with progress_bar() as bar:
            task = bar.add_task(f"checking {where}", total=len(paths))
            for i in range(len(paths)):
                if codes[i] == UNSEEN:
                    codes[i] = check_header(paths[i], keep_gray=keep_gray, min_side=min_side)
                if (i + 1) % 500 == 0 or i + 1 == len(paths):
                    bar.update(task, completed=i + 1)
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


# -- reporting ------------------------------------------------------------------------------------


# -- options --------------------------------------------------------------------------------------


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


def save_cache(folder: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any],
               move: dict[str, Path] | None = None) -> bool:
    """Write ``arrays`` (``.npy``) and ``meta`` (JSON) into ``folder`` atomically; ``False`` when the
    cache cannot be written (a read-only place is not an error). ``move`` maps file names in
    ``folder`` to files already written (on the same file system, e.g. streamed while decoding)
    that are moved in; they are moved back when the cache cannot be written."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError:
        return False
    moved: list[tuple[Path, Path]] = []
    try:
        for name, src in (move or {}).items():
            os.replace(src, staging / name)
            moved.append((staging / name, Path(src)))
        for name, arr in arrays.items():
            np.save(staging / f"{name}.npy", arr, allow_pickle=False)
        (staging / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        os.replace(staging, folder)
        return True
    except OSError:
        for dst, src in moved:
            try:
                os.replace(dst, src)
            except OSError:
                pass
        return False
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_cache(folder: Path, names: Sequence[str], mmap: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Arrays and meta written by :func:`save_cache`, or ``None`` when absent or damaged;
    ``mmap``: the arrays memory-mapped read-only, not read."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        arrays = {n: np.load(folder / f"{n}.npy", allow_pickle=False, mmap_mode="r" if mmap else None) for n in names}
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

    @classmethod
    def of(cls, where: str, paths: PathTable, status: torch.Tensor, options: Any, train: bool) -> LazySplit:
        """The split as a dataset's shared options ask (``size``, ``flip``, ``random_crop``,
        ``keep_gray``, and ``min_side`` where the dataset has it)."""
        return cls(where, paths, status, size=options.size, train=train, flip=options.flip,
                   random_crop=options.random_crop, keep_gray=options.keep_gray,
                   min_side=getattr(options, "min_side", MIN_SIDE))

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
                x = self.read(j)
                if x is not None:
                    if self.augment and torch.rand(()) < 0.5:
                        x = x.flip(-1).contiguous()
                    return x
            j = (j + 1) % n
        raise ColorkitError(
            f"{self.where}: {min(MAX_TRIES, n)} images in a row from {self.paths[i]} are unusable "
            f"({self.report().line()}); check the data"
        )

    def read(self, j: int) -> torch.Tensor | None:
        """Image ``j`` at the working size (``None`` when unusable; its status code is recorded)."""
        arr, code = decode_image(self.paths[j], keep_gray=self.keep_gray, size=self.size,
                                 random_crop=self.random_crop, min_side=self.min_side)
        self.codes[j] = code
        return None if arr is None else to_chw(arr)

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
