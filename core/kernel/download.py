"""Verified downloads and safe archive extraction, for dataset plugins.

``download(url, dest, md5=..., sha256=...)`` streams the response into a hidden temporary file
in ``dest``'s folder (``.NAME.XXXX.part``), hashing as it writes, and renames it to ``dest`` only
when every byte announced by the server has arrived and the checksum matches. A checksum
mismatch, a dropped connection or an interrupt deletes the temporary file, so nothing that looks
like a complete download is ever left behind; the error is one line that says what happened.
An existing ``dest`` whose checksum matches is reused without a network request.

``safe_extract(archive, target)`` extracts a tar archive (any compression) with the tarfile
``data`` filter: no absolute paths, no ``..``, no links pointing outside, no device files, so an
archive can never write outside ``target``. It extracts into a hidden staging folder inside
``target`` first and moves the top-level entries into place at the end, so an interrupted
extraction never leaves a half-filled folder under the expected name.

torchvision's ``download_url``/``extract_archive`` are not used: they write the download under
its final name while it is still arriving and extract without a filter.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from colorkit.kernel.errors import ColorkitError, UsageError, one_line
from colorkit.kernel.files import atomic_path

__all__ = ["DownloadError", "download", "file_digest", "verify", "safe_extract", "human_bytes"]

CHUNK = 1 << 20


class DownloadError(ColorkitError):
    """A download failed or did not match its published checksum (exit code 1)."""


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"  # pragma: no cover


def _hashers(md5: str | None, sha256: str | None) -> dict[str, Any]:
    return {algo: hashlib.new(algo, usedforsecurity=False) for algo, want in (("md5", md5), ("sha256", sha256)) if want}


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """The hex digest of a file (``md5`` or ``sha256``), read in 1 MB chunks."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _mismatches(path: Path, md5: str | None, sha256: str | None) -> list[str]:
    bad = []
    for algo, want in (("md5", md5), ("sha256", sha256)):
        if want:
            got = file_digest(path, algo)
            if got.lower() != want.lower():
                bad.append(f"{algo} {got} (expected {want.lower()})")
    return bad


def verify(path: str | Path, *, md5: str | None = None, sha256: str | None = None) -> bool:
    """Whether ``path`` is a file whose given checksums all match (no checksum: it exists)."""
    p = Path(path)
    return p.is_file() and not _mismatches(p, md5, sha256)


def _copy_stream(resp: BinaryIO, fh: BinaryIO, hashers: dict, total: int | None, label: str,
                 quiet: bool) -> int:
    got = 0
    last = time.monotonic()
    while True:
        block = resp.read(CHUNK)
        if not block:
            break
        fh.write(block)
        for h in hashers.values():
            h.update(block)
        got += len(block)
        now = time.monotonic()
        if not quiet and now - last > 10:
            last = now
            share = f" ({100 * got / total:.0f}% of {human_bytes(total)})" if total else ""
            print(f"  {label}: {human_bytes(got)}{share}", file=sys.stderr, flush=True)
    return got


def download(url: str, dest: str | Path, *, md5: str | None = None, sha256: str | None = None,
             timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest``, verifying ``md5`` and/or ``sha256``; return ``dest``.

    The file appears under its final name only once complete and verified. Raises
    :class:`DownloadError` (one line) on network failure, an incomplete transfer or a checksum
    mismatch, after deleting the partial file.
    """
    dest = Path(dest)
    if dest.is_file():
        if not (md5 or sha256) or not _mismatches(dest, md5, sha256):
            return dest
        if not quiet:
            print(f"{dest} does not match its published checksum; downloading it again", file=sys.stderr)
    if urllib.parse.urlparse(url).scheme not in ("http", "https", "file"):
        raise UsageError(f"cannot download {url!r}: only http, https and file addresses are supported")
    hashers = _hashers(md5, sha256)
    got = 0
    total: int | None = None
    with atomic_path(dest, suffix=".part") as tmp, open(tmp, "wb") as fh:
        request = urllib.request.Request(url, headers={"User-Agent": "colorkit"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                if not quiet:
                    size = f" ({human_bytes(total)})" if total else ""
                    print(f"downloading {url}{size} to {dest}", file=sys.stderr, flush=True)
                got = _copy_stream(resp, fh, hashers, total, dest.name, quiet)
        except http.client.IncompleteRead as exc:
            got += len(exc.partial)
            raise DownloadError(
                f"download of {url} stopped after {human_bytes(got)}"
                + (f" of {human_bytes(total)}" if total else "")
                + "; the partial file was deleted, run again to retry"
            ) from None
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(
                f"download of {url} failed after {human_bytes(got)} ({reason}); the partial file "
                "was deleted, run again to retry"
            ) from None
        if total is not None and got != total:
            raise DownloadError(
                f"download of {url} stopped after {human_bytes(got)} of {human_bytes(total)}; the "
                "partial file was deleted, run again to retry"
            )
        for algo, h in hashers.items():
            want = (md5 if algo == "md5" else sha256) or ""
            if h.hexdigest().lower() != want.lower():
                raise DownloadError(
                    f"checksum mismatch for {url}: {algo} is {h.hexdigest()}, expected {want.lower()}; "
                    f"the download ({human_bytes(got)}) was deleted and nothing was written to {dest}"
                )
    if not quiet:
        print(f"downloaded {dest.name} ({human_bytes(got)}), checksum verified" if hashers
              else f"downloaded {dest.name} ({human_bytes(got)})", file=sys.stderr, flush=True)
    return dest


# -- extraction -----------------------------------------------------------------------------------


def _unsafe_reason(member: tarfile.TarInfo, target: Path) -> str | None:
    """The check the ``data`` filter makes, for Pythons without it (3.10 before 3.10.12)."""
    name = member.name
    if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    dest = (target / name).resolve()
    if not dest.is_relative_to(target):
        return "path outside the target folder"
    if member.isdev() or member.isfifo() or member.ischr() or member.isblk():
        return "device or pipe"
    if member.issym() or member.islnk():
        link = member.linkname
        if os.path.isabs(link):
            return "absolute link"
        base = dest.parent if member.issym() else target
        if not (base / link).resolve().is_relative_to(target):
            return "link pointing outside the target folder"
    return None


def _extract_all(tf: tarfile.TarFile, staging: Path, archive: Path, target: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        try:
            tf.extractall(staging, filter="data")
        except tarfile.FilterError as exc:
            name = exc.tarinfo.name if getattr(exc, "tarinfo", None) is not None else "?"
            raise UsageError(
                f"{archive}: refused to extract member '{name}' ({exc}); it would write outside "
                f"{target} or is not a plain file or folder; nothing was extracted"
            ) from None
        return
    members = []  # pragma: no cover - only on old Pythons
    for member in tf.getmembers():  # pragma: no cover
        reason = _unsafe_reason(member, staging.resolve())
        if reason:
            raise UsageError(f"{archive}: refused to extract member '{member.name}' ({reason}); nothing was extracted")
        members.append(member)
    tf.extractall(staging, members=members)  # pragma: no cover


def safe_extract(archive: str | Path, target: str | Path, *, quiet: bool = False) -> list[Path]:
    """Extract the tar ``archive`` into ``target`` safely and atomically per top-level entry.

    Returns the top-level paths created. An entry that already exists in ``target`` is left as it
    is (the archive's copy is discarded). Raises :class:`UsageError` for an unsafe or unreadable
    archive; ``target`` is then unchanged.
    """
    archive, target = Path(archive), Path(target)
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        # (tarfile's own message lists each compression it tried, one per line: nothing to quote)
        raise UsageError(f"{archive}: not a tar archive (plain, gzip, bzip2 or xz), or a damaged one "
                         f"({type(exc).__name__}); nothing was extracted") from None
    except OSError as exc:
        raise UsageError(f"{archive}: cannot read the archive ({exc.strerror or exc})") from None
    target.mkdir(parents=True, exist_ok=True)
    if not quiet:
        print(f"extracting {archive.name} into {target}", file=sys.stderr, flush=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    created: list[Path] = []
    try:
        try:
            with tf:
                _extract_all(tf, staging, archive, target)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise UsageError(f"{archive}: not a readable tar archive ({one_line(exc)}); nothing was "
                             "extracted") from None
        except OSError as exc:
            raise UsageError(f"{archive}: extraction into {target} failed ({exc}); nothing was extracted") from None
        for entry in sorted(staging.iterdir()):
            final = target / entry.name
            if final.exists() or final.is_symlink():
                continue
            os.replace(entry, final)
            created.append(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return created
