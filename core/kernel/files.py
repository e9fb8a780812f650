"""Files written whole or not at all, and the run logs' JSON lines.

:func:`atomic_path` is colorkit's one atomic write: a temporary file beside the target, with the
mode ``open()`` would give it, renamed over the target once written and flushed to disk, removed
on any failure; a crash or a full disk mid-write keeps the previous file. Everything that writes
a file another process or a later run reads (checkpoints, tables, exported models, colorized
images, downloads) goes through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from colorkit.kernel.errors import ColorkitError, UsageError


def open_mode(fd: int) -> None:
    """Give a ``mkstemp`` file (created 0600) the mode ``open()`` would: 0666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    try:
        os.fchmod(fd, 0o666 & ~mask)
    except (AttributeError, OSError):  # no fchmod (Windows) or a file system without modes
        pass


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; when the block ends without error
    it is flushed to disk and renamed over ``path``, on any error it is removed. A folder that
    cannot be written is a one-line error naming it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    open_mode(fd)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """:func:`atomic_path` as a binary file open for writing."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        yield fh


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_copy(source: Path, path: Path) -> None:
    """Make ``path`` a copy of the finished file ``source`` atomically: a hard link where the file
    system has them (no extra space; replacing ``source`` later leaves ``path`` as it was), else
    a byte copy."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def write_new_text(path: Path, text: str) -> None:
    """Write a file that must not exist yet (the resolved config is never overwritten), whole or
    not at all: written to a temporary file, then linked to ``path`` (which fails if it exists)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write there ({exc.strerror or exc})") from None
    tmp = Path(name)
    try:
        open_mode(fd)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise ColorkitError(f"{path}: exists already and is never overwritten") from None
        except OSError:  # a file system without hard links: create exclusively, then fill
            with open(path, "x", encoding="utf-8") as fh:
                fh.write(text)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files (``.NAME.XXXX.tmp``) that a killed :func:`atomic_path` left in
    ``folder``; returns them. Call it only where no other process writes ``folder``."""
    removed = []
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=False) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows
