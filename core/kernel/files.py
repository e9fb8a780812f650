"""Files written whole or not at all, and the run logs' JSON lines.

:func:`atomic_path` is colorkit's one atomic write: a temporary file beside the target, with the
mode ``open()`` would give it, renamed over the target once written and flushed to disk, removed
on any failure; a crash or a full disk mid-write keeps the previous file. Everything that writes
a file another process or a later run reads (checkpoints, tables, exported models, colorized
images, downloads) goes through it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from colorkit.kernel.errors import ColorkitError, DiskFullError, UsageError, one_line


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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def is_disk_full(exc: BaseException) -> bool:
    """A failed write for lack of space: ``ENOSPC``/``EDQUOT`` on the exception or on what it
    wraps (``torch.save`` raises a ``RuntimeError`` over the file's ``OSError``)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def disk_full_error(path: Path, needed: int | None = None, written: int = 0) -> DiskFullError:
    """The one line of a write that failed for lack of space: the file, the free space, the space
    the write needs where it is known (``needed``; else how far it got, ``written``, and the size
    of the previous version, which is kept). Callers that know how to continue (``colorkit run
    --resume``) add it to the message."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    sizes = f"{free / 1e6:.1f} MB free"
    if needed is not None:
        sizes += f", {needed / 1e6:.1f} MB needed"
    elif written:
        sizes += f"; the write stopped after {written / 1e6:.1f} MB"
    kept = f"the previous {path.name} ({_size(path) / 1e6:.1f} MB) is kept; " if path.is_file() else ""
    return DiskFullError(f"{path}: not written, the disk is full ({sizes}); {kept}free some space and try again")


def check_replaceable(path: str | Path, option: str = "") -> None:
    """Refuse a destination that exists and is not a regular file: a folder, a symbolic link (to
    anything: colorkit never writes through a link), a device, a pipe or a socket. Writing
    replaces the destination, so only a regular file may be there (``option`` names the flag)."""
    path = Path(path)
    name = f"{option} {path}" if option else str(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"{name}: cannot write there ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{name}: cannot write there (it is a folder); give a file name")
    if stat.S_ISLNK(mode):
        raise UsageError(f"{name}: is a symbolic link; colorkit replaces only regular files and never writes "
                         "through a link: give the link's target or another path")
    if not stat.S_ISREG(mode):
        raise UsageError(f"{name}: exists and is not a regular file (a device, a pipe or a socket); colorkit "
                         "replaces only regular files: give another path")


def check_writable(path: str | Path, option: str = "") -> None:
    """Refuse, before any work, a file path that cannot be written: one that exists and is not a
    regular file (:func:`check_replaceable`), under a file, or in a folder without write
    permission (``option`` names the flag in the message)."""
    path = Path(path)
    name = f"{option} {path}" if option else str(path)
    check_replaceable(path, option)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{name}: cannot write there ({folder} is not a folder); give another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{name}: cannot write there (the folder {folder} is not writable); give another path")


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", needed: int | None = None) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; when the block ends without error
    it is flushed to disk and renamed over ``path``, on any error it is removed. A folder that
    cannot be written is a one-line error naming it."""
    path = Path(path)
    check_writable(path)
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
    except BaseException as exc:
        written = _size(tmp)
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(path, needed=needed, written=written) from None
        raise
    _fsync(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, needed: int | None = None) -> Iterator[BinaryIO]:
    """:func:`atomic_path` as a binary file open for writing (``needed``: its size, where known)."""
    with atomic_path(path, needed=needed) as tmp, open(tmp, "wb") as fh:
        yield fh


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, needed=len(data)) as fh:
        fh.write(data)


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None``, lists and dicts walked."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def json_text(obj: Any, **kwargs: Any) -> str:
    """Standard JSON for a results file: a value that is not a number (the spread of one seed, a
    mark not reached) is written ``null``, never ``NaN``, which strict parsers (``jq``, browsers)
    reject."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)


def file_key(path: Path) -> list[int]:
    """Size and modification time of a file: the identity caches compare to see it has not changed."""
    st = Path(path).stat()
    return [st.st_size, st.st_mtime_ns]


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
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(path, needed=len(text.encode())) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent)


def remove_stale_temps(folder: Path, names: Collection[str] | None = None) -> list[Path]:
    """Remove the temporary files (``.NAME.XXXX.tmp``) that a killed :func:`atomic_path` left in
    ``folder`` (only those of the file names ``names``, when given); returns them. Call it only
    where no other process writes those files."""
    removed = []
    for tmp in folder.glob(".*.tmp"):
        if names is not None and tmp.name[1:].rsplit(".", 2)[0] not in names:
            continue
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


#: The largest YAML or text file colorkit reads (a config, a suite): bigger is not one of them.
MAX_TEXT_BYTES = 1 << 20


def read_text_file(path: str | Path, what: str = "file", limit: int = MAX_TEXT_BYTES) -> str:
    """A small UTF-8 text file, read whole; anything else (missing, a folder, a pipe, binary,
    over ``limit`` bytes) is a one-line error naming it. Reading is bounded: it cannot hang."""
    p = Path(path)
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            raise UsageError(f"{p}: is a folder, not a {what}" if p.is_dir() else f"{p}: not a regular {what}")
        with open(p, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{p}: {what} not found") from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise UsageError(f"{p}: over {limit // 1024} KiB, too large for a {what}; check the path")
    try:
        if b"\0" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{p}: a binary file, not a {what} (not UTF-8 text)") from None


class _StrictYAMLError(Exception):
    """What :func:`load_yaml`'s loader refuses: an alias, a repeated key (the message says which)."""


def _strict_loader() -> type:
    """``yaml.SafeLoader`` that refuses aliases (``*name``: one line of them can expand to
    gigabytes, the "billion laughs") and a key given twice in one mapping (the last would win
    silently)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _StrictYAMLError(f"line {event.start_mark.line + 1}: the alias *{event.anchor} (YAML anchors "
                                       "and aliases are not allowed in colorkit files; write the values out)")
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise _StrictYAMLError(f"line {key_node.start_mark.line + 1}: the key {key!r} is given twice "
                                               "in one mapping; keep one")
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def load_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """The YAML in a file read with :func:`read_text_file`; bad YAML, an alias or a repeated key
    is a one-line error naming the file (and the line)."""
    import yaml

    text = read_text_file(path, what)
    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except _StrictYAMLError as exc:
        raise UsageError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({one_line(exc)})") from None
    except RecursionError:
        raise UsageError(f"{path}: not valid YAML (nested too deeply)") from None


def dump_yaml(data: Any) -> str:
    """``data`` as YAML that :func:`load_yaml` reads back: an object met twice is written out
    twice, never as an anchor and an alias (which :func:`load_yaml` refuses)."""
    import yaml

    class NoAliasDumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(data, Dumper=NoAliasDumper, sort_keys=False)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line, whole or not at all: a failed write (a full disk) is cut back off."""
    data = (json.dumps(record, sort_keys=False) + "\n").encode("utf-8")
    check_replaceable(path)
    size = _size(path)
    try:
        with open(path, "ab") as fh:
            fh.write(data)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.truncate(path, size)
        if is_disk_full(exc):
            raise disk_full_error(path, needed=len(data)) from None
        raise


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows
