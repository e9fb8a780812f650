"""Verified downloads against an HTTP server on 127.0.0.1, and safe archive extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from colorkit.kernel import download as dl
from colorkit.kernel.errors import ColorkitError, UsageError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        body = PAYLOAD
        if self.path == "/missing":
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        if self.path == "/nolength.bin":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.path == "/drop.bin":
            self.wfile.write(body[: len(body) // 3])  # then the connection drops
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_download_with_correct_checksums(server, tmp_path):
    httpd, base = server
    dest = tmp_path / "data" / "good.bin"
    out = dl.download(f"{base}/good.bin", dest, md5=MD5, sha256=SHA256, quiet=True)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["good.bin"]
    assert dl.verify(dest, md5=MD5) and dl.file_digest(dest, "sha256") == SHA256
    # a verified file is not fetched again
    dl.download(f"{base}/good.bin", dest, md5=MD5, quiet=True)
    assert httpd.requests == ["/good.bin"]


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    _, base = server
    dest = tmp_path / "good.bin"
    with pytest.raises(dl.DownloadError) as info:
        dl.download(f"{base}/good.bin", dest, md5="0" * 32, quiet=True)
    msg = str(info.value)
    assert "checksum mismatch" in msg and "deleted" in msg and MD5 in msg and "\n" not in msg
    assert isinstance(info.value, ColorkitError)
    assert _leftovers(tmp_path) == []


def test_dropped_connection_leaves_nothing_that_looks_complete(server, tmp_path):
    _, base = server
    dest = tmp_path / "drop.bin"
    with pytest.raises(dl.DownloadError) as info:
        dl.download(f"{base}/drop.bin", dest, md5=MD5, quiet=True)
    assert "stopped after" in str(info.value) and "deleted" in str(info.value)
    assert _leftovers(tmp_path) == []
    # without a checksum the announced length still catches it
    with pytest.raises(dl.DownloadError):
        dl.download(f"{base}/drop.bin", dest, quiet=True)
    assert _leftovers(tmp_path) == []


def test_interrupt_while_writing_removes_the_partial_file(server, tmp_path, monkeypatch):
    _, base = server

    def interrupted(resp, fh, *args, **kwargs):
        fh.write(resp.read(1000))
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_copy_stream", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dl.download(f"{base}/good.bin", tmp_path / "good.bin", md5=MD5, quiet=True)
    assert _leftovers(tmp_path) == []


def test_wrong_existing_file_is_replaced(server, tmp_path):
    _, base = server
    dest = tmp_path / "good.bin"
    dest.write_bytes(b"stale")
    dl.download(f"{base}/good.bin", dest, md5=MD5, quiet=True)
    assert dest.read_bytes() == PAYLOAD


def test_http_error_and_no_length(server, tmp_path):
    _, base = server
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(f"{base}/missing", tmp_path / "x.bin", md5=MD5, quiet=True)
    assert _leftovers(tmp_path) == []
    out = dl.download(f"{base}/nolength.bin", tmp_path / "y.bin", sha256=SHA256, quiet=True)
    assert out.read_bytes() == PAYLOAD


def test_unreachable_server_is_one_line(tmp_path):
    with pytest.raises(dl.DownloadError) as info:
        dl.download("http://127.0.0.1:9/none.bin", tmp_path / "n.bin", md5=MD5, timeout=2, quiet=True)
    assert "failed" in str(info.value) and "\n" not in str(info.value)
    assert _leftovers(tmp_path) == []
    with pytest.raises(UsageError, match="only http"):
        dl.download("ftp://127.0.0.1/x", tmp_path / "n.bin", quiet=True)


# -- extraction -----------------------------------------------------------------------------------


def _tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """members: (name, kind, data or link target); kind: file, dir, sym, hard."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            else:
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            tf.addfile(info)
    return path


def test_safe_extract_extracts_a_normal_archive(tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", [("top", "dir", b""), ("top/a.txt", "file", b"A"),
                                            ("top/sub/b.txt", "file", b"B"), ("top/link", "sym", "a.txt")])
    target = tmp_path / "out"
    created = dl.safe_extract(archive, target, quiet=True)
    assert created == [target / "top"]
    assert (target / "top" / "sub" / "b.txt").read_bytes() == b"B"
    assert (target / "top" / "link").read_bytes() == b"A"
    assert sorted(p.name for p in target.iterdir()) == ["top"]  # no staging folder left


@pytest.mark.parametrize(
    "members",
    [
        [("ok.txt", "file", b"fine"), ("../escape.txt", "file", b"evil")],
        [("ok.txt", "file", b"fine"), ("dir/../../escape.txt", "file", b"evil")],
        [("evil_link", "sym", "../escape.txt")],
        [("evil_abs_link", "sym", "/etc/passwd")],
        [("evil_hard", "hard", "../escape.txt")],
    ],
    ids=["dotdot", "nested-dotdot", "symlink-out", "absolute-symlink", "hardlink-out"],
)
def test_safe_extract_never_writes_outside(tmp_path, members):
    archive = _tar(tmp_path / "evil.tar.gz", members)
    target = tmp_path / "nested" / "out"
    with pytest.raises(UsageError) as info:
        dl.safe_extract(archive, target, quiet=True)
    assert "refused" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "nested" / "escape.txt").exists()
    assert list(target.iterdir()) == []  # nothing extracted, no staging left


def test_safe_extract_keeps_absolute_names_inside(tmp_path):
    archive = _tar(tmp_path / "abs.tar.gz", [("/abs_escape.txt", "file", b"x")])
    target = tmp_path / "out"
    dl.safe_extract(archive, target, quiet=True)
    assert (target / "abs_escape.txt").read_bytes() == b"x"
    assert not Path("/abs_escape.txt").exists()


def test_safe_extract_rejects_a_broken_archive(tmp_path):
    good = _tar(tmp_path / "good.tar.gz", [("a.bin", "file", PAYLOAD)])
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    target = tmp_path / "out"
    with pytest.raises(UsageError, match="not a readable tar archive"):
        dl.safe_extract(broken, target, quiet=True)
    assert list(target.iterdir()) == []
