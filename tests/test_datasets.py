"""The file-based datasets: cifar10, places365 and imagefolder, on data the tests write themselves
(official byte layouts, bad images of every kind), plus one short training run on the CIFAR-10
JPEG mirror in ../shared/data."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import pickle
import struct
import tarfile
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from colorkit.kernel.errors import UsageError
from colorkit.plugins import (
    _cifar10_files,
    _decode,
    _images,
    _packed,
    cifar10,
    cifar10_data,
    imagefolder,
    imagefolder_data,
    places365,
    places365_data,
)
from colorkit.plugins._decode import decode_image

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Never touch the user's ~/.cache/colorkit."""
    monkeypatch.setenv("COLORKIT_CACHE", str(tmp_path / "colorkit-cache"))


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _colour(h: int, w: int, seed: int) -> np.ndarray:
    return _rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kwargs)
    return buf.getvalue()


def _saved(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (RGB or gray) written byte by byte: PIL cannot write 16-bit RGB."""
    h, w = arr.shape[:2]
    colour_type = 2 if arr.ndim == 3 else 0
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _tar_folder(folder: Path, archive: Path, arcname: str | None = None) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz" if archive.name.endswith("gz") else "w") as tf:
        if arcname is None:
            for child in sorted(folder.iterdir()):
                tf.add(child, arcname=child.name)
        else:
            tf.add(folder, arcname=arcname)
    return archive


class _Server:
    """Serves bytes by path from 127.0.0.1 in a thread; records the paths asked for."""

    def __init__(self, files: dict[str, bytes]):
        files_ = files
        requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                requests.append(self.path)
                body = files_.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.requests = requests
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# =================================================================================================
# CIFAR-10, official python format
# =================================================================================================


def _cifar_batches(train: np.ndarray, test: np.ndarray) -> dict[str, bytes]:
    """The official files: pickled dicts, b"data" uint8 N x 3072 channel-planar, b"labels"."""

    def batch(images: np.ndarray, label: bytes) -> bytes:
        n = len(images)
        data = np.empty((n, 3072), dtype=np.uint8)
        for i in range(n):  # R plane, G plane, B plane, each 32 rows of 32
            data[i] = np.concatenate([images[i, :, :, c].reshape(-1) for c in range(3)])
        return pickle.dumps({b"batch_label": label, b"labels": [i % 10 for i in range(n)], b"data": data,
                             b"filenames": [b"f%d.png" % i for i in range(n)]}, protocol=2)

    files = {f"data_batch_{k + 1}": batch(part, b"training batch")
             for k, part in enumerate(np.array_split(train, 5))}
    files["test_batch"] = batch(test, b"testing batch 1 of 1")
    files["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10, b"num_vis": 3072}, protocol=2)
    return files


def _cifar_archive(path: Path, train: np.ndarray, test: np.ndarray, files: dict[str, bytes] | None = None) -> Path:
    files = files or _cifar_batches(train, test)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        d = tarfile.TarInfo("cifar-10-batches-py")
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for name, blob in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def cifar_arrays():
    rng = _rng(1)
    train = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    train[3] = train[3, :, :, :1]  # grayscale (R = G = B), skipped by default
    return train, test


def _build(options_cls, dataset_cls, **values):
    from colorkit.kernel.options import build_options

    return dataset_cls(build_options(options_cls, values, "dataset"))


def _cifar(**values) -> cifar10_data.Cifar10:
    return _build(cifar10.Cifar10Options, cifar10_data.Cifar10, **values)


def _chw(image: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` array to the ``3 x H x W`` tensor a split serves."""
    return torch.from_numpy(image.transpose(2, 0, 1).copy())


def _image_set(images: torch.Tensor) -> set[bytes]:
    return {x.numpy().tobytes() for x in images}


def test_cifar_official_archive_byte_layout(tmp_path, cifar_arrays, capsys):
    train, test = cifar_arrays
    _cifar_archive(tmp_path / "cifar-10-python.tar.gz", train, test)
    ds = _cifar(root=str(tmp_path), val_size=2)
    assert ds.source.kind == "python_archive"
    held = _images.val_rows(12, 2, 0)
    assert 3 not in held  # the grayscale image is a training one with this seed
    tr, va, te = ds.split("train"), ds.split("val"), ds.split("test")
    assert len(tr) == 9 and len(va) == 2 and len(te) == 5
    expected_train = np.delete(train, [3, *held], axis=0)
    for i in range(len(tr)):
        assert torch.equal(tr[i], _chw(expected_train[i]))
    for i, row in enumerate(held):
        assert torch.equal(va[i], _chw(train[row]))
    assert torch.equal(te[4], _chw(test[4]))
    assert ds.reports["train"].skipped == {"grayscale": 1}
    assert ds.reports["val"].skipped == {} and ds.reports["test"].skipped == {}
    err = capsys.readouterr().err
    assert "cifar10 train: skipped 1 of 10 images: 1 grayscale; first skipped: data_batch_2[0] in cifar-10-python.tar.gz (grayscale)" in err
    assert err.count("\n") == 1  # one line, and nothing for the clean val and test splits
    kept = _cifar(root=str(tmp_path / "cifar-10-python.tar.gz"), keep_gray=True, cache="off", val_size=2)
    assert len(kept.split("train")) == 10 and kept.reports["train"].converted == {"grayscale": 1}


def _cifar_role_arrays(n_train: int = 15, n_test: int = 5, val_size: int = 4, seed: int = 0):
    """Distinct random training and test images; the second val row of ``seed`` is grayscale."""
    rng = _rng(7)
    train = rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    gray_row = int(_images.val_rows(n_train, val_size, seed)[1])
    train[gray_row] = train[gray_row, :, :, :1]
    return train, test, gray_row


def test_cifar_val_is_held_out_from_the_training_files(tmp_path, capsys):
    train, test, gray_row = _cifar_role_arrays()
    archive = _cifar_archive(tmp_path / "cifar-10-python.tar.gz", train, test)
    ds = _cifar(root=str(archive), val_size=4, cache="off")
    assert ds.splits == ("train", "val", "test")
    assert (ds.train_split, ds.val_split, ds.test_split) == ("train", "val", "test")
    tr, va, te = (ds.split(s).images for s in ds.splits)
    assert (len(tr), len(va), len(te)) == (11, 3, 5)
    # val: val_size rows of the training files, by their listed order, the grayscale one skipped and reported
    held = [int(r) for r in _images.val_rows(15, 4, 0)]
    assert torch.equal(va, torch.stack([_chw(train[r]) for r in held if r != gray_row]))
    assert ds.reports["val"].total == 4 and ds.reports["val"].skipped == {"grayscale": 1}
    assert ds.reports["train"].total == 11 and ds.reports["train"].skipped == {}
    batch, index = divmod(gray_row, 3)  # 15 training images: 3 per data batch
    err = capsys.readouterr().err
    assert (f"cifar10 val: skipped 1 of 4 images: 1 grayscale; first skipped: "
            f"data_batch_{batch + 1}[{index}] in cifar-10-python.tar.gz (grayscale)") in err
    assert err.count("\n") == 1
    # the three roles share no image; train and val are all the (colour) training files, test the test files
    sets = {s: _image_set(x) for s, x in zip(ds.splits, (tr, va, te))}
    assert len(sets["train"]) == 11 and len(sets["val"]) == 3 and len(sets["test"]) == 5
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] == _image_set(torch.stack([_chw(x) for i, x in enumerate(train) if i != gray_row]))
    assert sets["test"] == _image_set(torch.stack([_chw(x) for x in test]))
    # the same seed and val_size give the same val; another seed another one
    assert torch.equal(_cifar(root=str(archive), val_size=4, cache="off").split("val").images, va)
    other = _cifar(root=str(archive), val_size=4, seed=1, cache="off")
    assert _image_set(other.split("val").images) != sets["val"]
    assert not _image_set(other.split("val").images) & _image_set(other.split("train").images)
    # limit does not change which files are val: it picks a seeded subset of each role
    for limit in (1, 2, 3, 50):
        lim = _cifar(root=str(archive), val_size=4, limit=limit, cache="off")
        got = {s: _image_set(lim.split(s).images) for s in ds.splits}
        assert len(got["val"]) == min(limit, 3) and got["val"] <= sets["val"]
        assert len(got["train"]) == min(limit, 11) and got["train"] <= sets["train"]
        assert len(got["test"]) == min(limit, 5) and got["test"] <= sets["test"]
    assert torch.equal(_cifar(root=str(archive), val_size=4, limit=2, cache="off").split("val").images,
                       _cifar(root=str(archive), val_size=4, limit=2, cache="off").split("val").images)


@pytest.mark.parametrize("val_size", [15, 16, 5000])
def test_cifar_val_size_leaving_nothing_to_train_on_is_one_line(tmp_path, val_size):
    train, test, _ = _cifar_role_arrays()
    archive = _cifar_archive(tmp_path / "cifar-10-python.tar.gz", train, test)
    ds = _cifar(root=str(archive), val_size=val_size, cache="off")
    with pytest.raises(UsageError) as info:
        ds.split("train")
    msg = str(info.value)
    assert "\n" not in msg and f"dataset.val_size={val_size}" in msg and "15 images" in msg
    assert len(_cifar(root=str(archive), val_size=14, cache="off").split("train")) == 1


def test_cifar_val_size_below_one_is_refused():
    from colorkit.kernel.errors import OptionError

    with pytest.raises(OptionError, match="dataset.val_size must be at least 1"):
        _cifar(root="/nowhere", val_size=0)


def test_cifar_extracted_folder_and_sizes(tmp_path, cifar_arrays):
    train, test = cifar_arrays
    archive = _cifar_archive(tmp_path / "a.tar.gz", train, test)
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "root", filter="data")
    ds = _cifar(root=str(tmp_path / "root"), size=16, limit=4, seed=3, val_size=2)
    assert ds.source.kind == "batches"
    tr = ds.split("train", train=True)
    assert len(tr) == 4 and tuple(tr[0].shape) == (3, 16, 16) and tr[0].dtype == torch.uint8
    assert len(ds.split("val")) == 2 and len(ds.split("test")) == 4 and tuple(ds.split("val")[0].shape) == (3, 16, 16)
    assert len(_cifar(root=str(tmp_path / "root" / "cifar-10-batches-py"), val_size=2).split("test")) == 5
    same = _cifar(root=str(tmp_path / "root"), size=16, limit=4, seed=3, val_size=2).split("train")
    assert torch.equal(torch.stack([same[i] for i in range(4)]), ds.split("train").images)


def test_cifar_flip_only_for_training(tmp_path, cifar_arrays):
    train, test = cifar_arrays
    _cifar_archive(tmp_path / "cifar-10-python.tar.gz", train, test)
    ds = _cifar(root=str(tmp_path), val_size=2)
    plain = ds.split("train").images
    assert len(plain) == 9
    torch.manual_seed(0)
    aug = ds.split("train", train=True)
    seen = []
    for _ in range(4):
        for batch in DataLoader(aug, batch_size=9, shuffle=False):  # served by __getitems__
            for i, x in enumerate(batch):
                assert torch.equal(x, plain[i]) or torch.equal(x, plain[i].flip(-1))
                seen.append(torch.equal(x, plain[i]))
    seen += [torch.equal(aug[i], plain[i]) for i in range(len(aug)) for _ in range(2)]
    assert any(seen) and not all(seen)
    for split in ("val", "test"):
        ev, stored = ds.split(split, train=False), ds.split(split).images
        for _ in range(3):
            assert all(torch.equal(ev[i], stored[i]) for i in range(len(ev)))
    no_flip = _cifar(root=str(tmp_path), flip=False, val_size=2).split("train", train=True)
    assert all(torch.equal(no_flip[i], plain[i]) for i in range(len(no_flip)))


def test_cifar_batches_cannot_run_code(tmp_path, cifar_arrays):
    train, test = cifar_arrays
    files = _cifar_batches(train, test)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    files["data_batch_2"] = pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2)
    _cifar_archive(tmp_path / "cifar-10-python.tar.gz", train, test, files)
    ds = _cifar(root=str(tmp_path), val_size=2)
    with pytest.raises(UsageError, match="data_batch_2.*not a CIFAR-10 python batch"):
        ds.split("train")
    assert not marker.exists()
    files = _cifar_batches(train, test)
    del files["test_batch"]
    _cifar_archive(tmp_path / "b" / "cifar-10-python.tar.gz", train, test, files)
    with pytest.raises(UsageError, match="missing test_batch"):
        _cifar(root=str(tmp_path / "b"), val_size=2).split("test")


@pytest.mark.parametrize("case", ["missing", "empty", "unrelated", "unset"])
def test_cifar_bad_root_is_one_line_naming_the_path(tmp_path, case):
    root = tmp_path / "data"
    if case != "missing":
        root.mkdir()
    if case == "unrelated":
        (root / "notes.txt").write_text("hello")
    with pytest.raises(UsageError) as info:
        _cifar(root=None if case == "unset" else str(root))
    msg = str(info.value)
    assert "\n" not in msg and "cifar-10-python.tar.gz" in msg
    assert ("--data-root" in msg) if case == "unset" else (str(root) in msg)


def test_cifar_cli_error_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from colorkit.front.cli import app

    result = CliRunner().invoke(app, ["run", "--dataset", "cifar10", "--data-root", str(tmp_path / "nope"), "--quiet"])
    assert result.exit_code == 2
    assert "error: cifar10: data root" in result.output and "expected" in result.output


def test_datasets_are_listed():
    from typer.testing import CliRunner

    from colorkit.front.cli import app

    result = CliRunner().invoke(app, ["list", "dataset", "--json"])
    assert result.exit_code == 0, result.output
    names = {row["name"] for row in json.loads(result.output)["components"] if row["kind"] == "dataset"}
    assert {"cifar10", "places365", "imagefolder"} <= names


def test_cifar_download_verifies_md5(tmp_path, cifar_arrays, monkeypatch):
    train, test = cifar_arrays
    blob = _cifar_archive(tmp_path / "served.tar.gz", train, test).read_bytes()
    with _Server({"/cifar-10-python.tar.gz": blob}) as srv:
        monkeypatch.setattr(cifar10_data, "URL", f"{srv.url}/cifar-10-python.tar.gz")
        monkeypatch.setattr(cifar10_data, "MD5", "f" * 32)
        root = tmp_path / "root"
        with pytest.raises(Exception, match="checksum mismatch.*deleted"):
            _cifar(root=str(root), download=True, val_size=2)
        assert not root.exists() or list(root.iterdir()) == []
        monkeypatch.setattr(cifar10_data, "MD5", hashlib.md5(blob).hexdigest())
        ds = _cifar(root=str(root), download=True, val_size=2)
        assert (root / "cifar-10-python.tar.gz").read_bytes() == blob
        assert len(ds.split("train")) == 9 and len(ds.split("val")) == 2
        n = len(srv.requests)
        _cifar(root=str(root), download=True, val_size=2)  # verified copy present: no new request
        assert len(srv.requests) == n


def test_official_constants_match_torchvision():
    tv = pytest.importorskip("torchvision.datasets")
    assert (cifar10_data.URL, cifar10_data.MD5) == (tv.CIFAR10.url, tv.CIFAR10.tgz_md5)
    meta = getattr(tv.Places365, "_IMAGES_META", None)
    if meta is None:
        pytest.skip("this torchvision keeps no Places365 archive table")
    assert places365_data.ARCHIVES["train"] == meta[("train-standard", True)]
    assert places365_data.ARCHIVES["val"] == meta[("val", True)]
    assert places365_data.ARCHIVES["index"] == tv.Places365._DEVKIT_META["standard"]
    assert places365_data.BASE_URL == tv.Places365._BASE_URL


# =================================================================================================
# CIFAR-10, JPEG layout (folders or .tar.gz), with bad files; the decode cache
# =================================================================================================


def _cifar_jpeg_tree(root: Path, n_train: int = 8, n_test: int = 4, bad: bool = True) -> Path:
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            seed = i + (0 if split == "train" else 1000)
            _write(root / split / ("cat" if i % 2 else "dog") / f"{i:04d}.jpg", _jpeg(_colour(32, 32, seed)))
    if bad:
        _write(root / "train" / "cat" / "9000.jpg", b"")
        _write(root / "train" / "cat" / "9001.jpg", b"this is not a JPEG")
        _write(root / "train" / "dog" / "9002.jpg", _jpeg(_colour(32, 32, 7))[:300])
        _write(root / "train" / "dog" / "9003.jpg", _jpeg(np.repeat(_colour(32, 32, 8)[:, :, :1], 3, axis=2)))
        _write(root / "train" / "dog" / "9004.png", _png(Image.fromarray(_colour(32, 32, 9)).convert("RGBA")))
        _write(root / "train" / "dog" / "._9005.jpg", b"\x00\x05\x16\x07 AppleDouble junk")
    return root


def test_cifar_jpeg_folder_counts_bad_files(tmp_path, capsys):
    tree = _cifar_jpeg_tree(tmp_path / "root" / "CIFAR-10-images")
    listed = [rel for rel, _ in _images.walk_images(tree / "train")]
    assert len(listed) == 13  # 8 good, 5 bad; the AppleDouble file is ignored
    # val: 2 of the 13 training files by their listed order, here one unreadable file and one good one
    assert {listed[i] for i in _images.val_rows(13, 2, 0)} == {"cat/9001.jpg", "dog/0000.jpg"}
    ds = _cifar(root=str(tmp_path / "root"), val_size=2)
    assert ds.source.kind == "jpeg_dir"
    tr, va = ds.split("train"), ds.split("val")
    assert len(tr) == 8 and len(va) == 1 and len(ds.split("test")) == 4
    assert torch.equal(va[0], _chw(decode_image(str(tree / "train" / "dog" / "0000.jpg"))[0]))
    rep, val_rep = ds.reports["train"], ds.reports["val"]
    assert rep.total == 11 and rep.skipped == {"unreadable": 1, "empty": 1, "grayscale": 1}
    assert rep.converted == {"transparency": 1}
    assert val_rep.total == 2 and val_rep.skipped == {"unreadable": 1} and val_rep.converted == {}
    line = capsys.readouterr().err.strip().splitlines()
    assert len(line) == 2 and line[0].startswith("cifar10 train: skipped 3 of 11 images: 1 unreadable, 1 empty, 1 grayscale")
    assert "9000.jpg (empty)" in line[0]
    assert line[1].startswith("cifar10 val: skipped 1 of 2 images: 1 unreadable") and "9001.jpg (unreadable)" in line[1]


def test_cifar_jpeg_archive_nested_and_cached(tmp_path, monkeypatch):
    tree = _cifar_jpeg_tree(tmp_path / "tree", bad=True)
    archive = _tar_folder(tree, tmp_path / "data" / "cifar10-jpeg.tar.gz", arcname="CIFAR-10-images")
    (tmp_path / "data" / "README.md").write_text("not data")
    cache = tmp_path / "cache"
    first = _cifar(root=str(tmp_path / "data"), cache=str(cache), val_size=2)
    assert first.source.kind == "jpeg_archive" and first.source.prefix == "CIFAR-10-images"
    a = first.split("train").images
    assert not first.from_cache and len(a) == 8
    assert first.reports["train"].skipped == {"unreadable": 1, "empty": 1, "grayscale": 1}
    assert first.reports["val"].skipped == {"unreadable": 1}

    def boom(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(_cifar10_files, "decode_image", boom)
    again = _cifar(root=str(archive), cache=str(cache), val_size=2)
    assert torch.equal(again.split("train").images, a) and again.from_cache
    for split in ("val", "test"):
        assert torch.equal(again.split(split).images, first.split(split).images)
        assert again.reports[split].skipped == first.reports[split].skipped
    assert again.reports["train"].skipped == first.reports["train"].skipped
    # the cache holds the source files, not the roles: another val_size needs no decoding either
    three = _cifar(root=str(archive), cache=str(cache), val_size=3)
    assert len(three.split("val")) + len(three.split("train")) == 9 and three.from_cache
    monkeypatch.setattr(_cifar10_files, "decode_image", decode_image)
    os.utime(archive, ns=(1, 1))  # a changed archive is decoded afresh
    changed = _cifar(root=str(archive), cache=str(cache), val_size=2)
    assert len(changed.split("test")) == 4 and not changed.from_cache


def test_cifar_limit_picks_the_same_subset_with_or_without_cache(tmp_path):
    tree = _cifar_jpeg_tree(tmp_path / "tree", n_train=30, n_test=6, bad=True)
    archive = _tar_folder(tree, tmp_path / "c.tar.gz")
    partial = _cifar(root=str(archive), limit=7, seed=5, cache="off", val_size=5)
    sub = partial.split("train").images
    assert len(sub) == 7 and partial.reports["train"].total < 30
    full = _cifar(root=str(archive), cache=str(tmp_path / "cache"), seed=5, val_size=5)
    full.split("train")
    cached = _cifar(root=str(archive), limit=7, seed=5, cache=str(tmp_path / "cache"), val_size=5)
    assert torch.equal(cached.split("train").images, sub) and cached.from_cache
    other = _cifar(root=str(archive), limit=7, seed=6, cache=str(tmp_path / "cache"), val_size=5).split("train").images
    assert not torch.equal(other, sub)


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_cifar_partial_decode_matches_the_cached_full_decode_in_every_split(tmp_path, limit):
    tree = _cifar_jpeg_tree(tmp_path / "tree", n_train=30, n_test=6, bad=True)
    archive = _tar_folder(tree, tmp_path / "c.tar.gz")
    cache = str(tmp_path / "cache")
    full = _cifar(root=str(archive), cache=cache, seed=5, val_size=6)
    whole = {s: full.split(s).images for s in full.splits}
    assert not full.from_cache and len(whole["train"]) + len(whole["val"]) == 31 and len(whole["test"]) == 6
    assert full.reports["val"].total == 6 and len(whole["val"]) >= 3
    partial = _cifar(root=str(archive), limit=limit, seed=5, cache="off", val_size=6)
    cached = _cifar(root=str(archive), limit=limit, seed=5, cache=cache, val_size=6)
    for split in full.splits:
        sub = partial.split(split).images
        assert len(sub) == min(limit, len(whole[split])), split
        assert torch.equal(cached.split(split).images, sub), split
        assert _image_set(sub) <= _image_set(whole[split]), split
        assert cached.reports[split].total == full.reports[split].total  # a full decode reports on the whole split
    assert cached.from_cache and not partial.from_cache
    assert partial.reports["train"].total < 35 - 6  # only part of the training files was decoded
    got = {s: _image_set(partial.split(s).images) for s in partial.splits}
    assert not got["train"] & got["val"] and not got["train"] & got["test"] and not got["val"] & got["test"]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_cifar_jpeg_archive_member_formats(tmp_path, fmt):
    tree = _cifar_jpeg_tree(tmp_path / "tree", n_train=4, n_test=2, bad=False)
    deep = "d" * 60 + "/" + "e" * 60  # names over 100 characters: prefix field, GNU or pax records
    archive = tmp_path / "c.tar"
    with tarfile.open(archive, "w", format=fmt) as tf:
        tf.add(tree, arcname=deep)
    raw = archive.read_bytes()
    fast = _cifar10_files.fast_members(raw)
    ref = [(m.name, m.offset_data, m.size) for m in tarfile.open(archive).getmembers() if m.isfile()]
    assert fast is None or fast == ref
    if fmt == tarfile.USTAR_FORMAT:
        assert fast == ref and len(fast) == 6
    ds = _cifar(root=str(archive), cache="off", val_size=1)
    assert ds.source.prefix == deep and len(ds.split("train")) == 3 and len(ds.split("test")) == 2
    assert len(ds.split("val")) == 1


# =================================================================================================
# Decoding odd images (shared by all datasets)
# =================================================================================================


def test_decode_image_handles_every_kind_of_file(tmp_path, monkeypatch):
    rgb = _colour(24, 20, 3)
    gray16 = (np.linspace(0, 65535, 24 * 20).reshape(24, 20)).astype(np.uint16)
    rgb16 = (rgb.astype(np.uint16) * 257)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    cases = {
        "rgb.jpg": (_jpeg(rgb), _decode.OK),
        "empty.jpg": (b"", _decode.EMPTY),
        "text.jpg": (b"GIF89a but not really", _decode.UNREADABLE),
        "truncated.jpg": (_jpeg(_colour(64, 64, 4))[:400], _decode.UNREADABLE),
        "gray_l.png": (_png(Image.fromarray(rgb[:, :, 0])), _decode.GRAY),
        "gray_rgb.png": (_png(Image.fromarray(np.repeat(rgb[:, :, :1], 3, axis=2))), _decode.GRAY),
        "gray16.png": (_png16(gray16), _decode.GRAY),
        "rgb16.png": (_png16(rgb16), _decode.SIXTEEN),
        "cmyk.jpg": (_saved(cmyk, "JPEG"), _decode.CMYK),
        "rgba.png": (_png(Image.fromarray(rgb).convert("RGBA")), _decode.ALPHA),
        "palette.png": (_png(pal), _decode.PALETTE),
        "palette_t.png": (_png(pal, transparency=0), _decode.ALPHA),
        "tiny.png": (_png(Image.new("RGB", (1, 1), (255, 0, 0))), _decode.TOO_SMALL),
    }
    for name, (blob, code) in cases.items():
        path = _write(tmp_path / name, blob)
        for source in (str(path), blob):
            arr, got = decode_image(source, size=16)
            assert got == code, f"{name}: code {got}, expected {code}"
            assert (arr is None) == (code >= _decode.FIRST_SKIP), name
            if arr is not None:
                assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    assert decode_image(str(tmp_path / "absent.jpg"))[1] == _decode.MISSING
    # a gray centre crop of a colour photo does not make the photo "grayscale"
    wall = _colour(20, 40, 6)
    wall[:, 6:34] = 128  # the centre 20 x 20 crop, with the resize filter's margin
    arr, code = decode_image(_png(Image.fromarray(wall)), size=16)
    assert code == _decode.OK and _decode.is_gray(arr)
    # 16-bit RGB keeps its colours (reduced to 8 bits), 16-bit gray is scaled, never clipped to white
    arr, _ = decode_image(_png16(rgb16))
    assert np.abs(arr.astype(int) - rgb).max() <= 1
    arr, code = decode_image(_png16(gray16), keep_gray=True)
    assert code == _decode.SIXTEEN and arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255 and 100 < arr[12, 10, 0] < 155
    arr, code = decode_image(_png(Image.fromarray(rgb[:, :, 0])), keep_gray=True)
    assert code == _decode.GRAY_KEPT and np.array_equal(arr[..., 0], rgb[:, :, 0])
    # decompression bombs are refused before decoding above Pillow's error limit (twice MAX_IMAGE_PIXELS)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)
    assert decode_image(_jpeg(_colour(20, 20, 5)))[1] == _decode.TOO_LARGE
    assert decode_image(_jpeg(_colour(30, 30, 5)))[1] == _decode.TOO_LARGE
    assert _decode.check_header(str(tmp_path / "rgb.jpg")) == _decode.TOO_LARGE


# =================================================================================================
# imagefolder
# =================================================================================================


def _odd_folder(root: Path) -> None:
    """train/ with 6 good files and 12 odd ones of every kind (+ junk to ignore), val/ with 3 good,
    test/ with 2 good (so no split is carved from train/)."""
    for i in range(6):
        _write(root / "train" / f"sub{i % 2}" / f"good{i}.jpg", _jpeg(_colour(30 + i, 40, 100 + i)))
    for i in range(3):
        _write(root / "val" / f"v{i}.JPG", _jpeg(_colour(36, 24, 200 + i)))
    for i in range(2):
        _write(root / "test" / f"t{i}.png", _png(Image.fromarray(_colour(30, 28, 220 + i))))
    rgb = _colour(30, 30, 11)
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    t = root / "train" / "odd"
    _write(t / "empty.jpg", b"")
    _write(t / "notes.jpg", b"shopping list, not an image")
    whole = _jpeg(_colour(40, 40, 12))
    _write(t / "truncated.jpg", whole[: len(whole) * 3 // 5])  # the header is intact
    _write(t / "gray_l.jpg", _jpeg(rgb[:, :, 0]))
    _write(t / "gray_rgb.png", _png(Image.fromarray(np.repeat(rgb[:, :, 1:2], 3, axis=2))))
    _write(t / "gray16.png", _png16((rgb[:, :, 0].astype(np.uint16) * 257)))
    _write(t / "rgb16.png", _png16(rgb.astype(np.uint16) * 257))
    _write(t / "cmyk.jpg", _saved(Image.fromarray(rgb).convert("CMYK"), "JPEG"))
    _write(t / "rgba.png", _png(Image.fromarray(rgb).convert("RGBA")))
    _write(t / "palette.gif", _saved(pal, "GIF"))
    _write(t / "one.png", _png(Image.new("RGB", (1, 1), (200, 10, 10))))
    _write(t / "huge.png", _png(Image.fromarray(_colour(60, 60, 13))))  # above the patched bomb limit
    _write(t / "._good0.jpg", b"\x00\x05\x16\x07mac junk")
    _write(t / "readme.txt", b"ignored")


def test_imagefolder_reports_bad_images_at_load_and_while_reading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1700)
    _odd_folder(tmp_path / "photos")
    ds = _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(tmp_path / "photos"), size=16)
    tr = ds.split("train", train=True)
    load = ds.reports["train"]
    assert load.total == 18
    assert load.skipped == {"unreadable": 1, "empty": 1, "grayscale": 2, "too small": 1, "too large": 1}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("imagefolder train: skipped 6 of 18 images")
    assert len(tr) == 12
    loader = DataLoader(tr, batch_size=4, shuffle=True, num_workers=2)
    for batch in loader:
        assert batch.dtype == torch.uint8 and tuple(batch.shape[1:]) == (3, 16, 16)
    rep = tr.end_epoch()  # counts written by the worker processes are seen here
    assert rep.total == 12 and rep.skipped == {"unreadable": 1, "grayscale": 1}
    assert rep.converted == {"CMYK": 1, "transparency": 1, "palette": 1, "16-bit": 1}
    line = capsys.readouterr().err.strip().splitlines()
    assert len(line) == 1 and "skipped 2 of 12 images read so far (of 12): 1 unreadable, 1 grayscale" in line[0]
    assert "converted 4 to RGB" in line[0]
    tr.end_epoch()
    assert capsys.readouterr().err == ""  # nothing new, nothing printed
    again = _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(tmp_path / "photos"), size=16)
    again.split("train", train=True)  # the same folder loaded again (validation, evaluation, the next run)
    assert capsys.readouterr().err == ""  # the same report is not repeated
    assert len(ds.split("val")) == 3 and len(ds.split("test")) == 2


def test_imagefolder_keep_gray_and_lazy_only(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1700)
    _odd_folder(tmp_path / "photos")
    ds = _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(tmp_path / "photos"),
                size=8, keep_gray=True, precheck=0)
    assert ds.reports == {}
    tr = ds.split("train")
    assert ds.reports["train"].skipped == {"empty": 1}  # known from the listing alone
    items = [tr[i] for i in range(len(tr))]
    rep = tr.report()
    assert rep.skipped == {"unreadable": 2, "too small": 1, "too large": 1}
    assert rep.converted["grayscale"] == 1 and rep.converted["16-bit"] == 2
    assert all(tuple(x.shape) == (3, 8, 8) for x in items)


def test_imagefolder_seeded_split_and_crops(tmp_path):
    root = tmp_path / "photos"
    for i in range(40):
        _write(root / f"d{i % 3}" / f"p{i:02d}.jpg", _jpeg(_colour(20, 40, i)))

    def make(**kw):
        return _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(root), **{"size": 16, **kw})

    a, b = make(val_fraction=0.25), make(val_fraction=0.25)
    train, val, test = (set(a._files[s]) for s in ("train", "val", "test"))
    assert train and val and test and not (train & val or train & test or val & test)
    assert len(train | val | test) == 40
    assert a._files == b._files
    assert make(val_fraction=0.25, seed=1)._files != a._files
    _write(root / "new.jpg", _jpeg(_colour(20, 40, 99)))
    c = make(val_fraction=0.25)
    new = {("new.jpg", (root / "new.jpg").stat().st_size)}
    assert set(c._files["val"]) - new == val and set(c._files["test"]) - new == test
    ev = a.split("val")
    assert torch.equal(ev[0], ev[0]) and tuple(ev[0].shape) == (3, 16, 16)
    torch.manual_seed(0)
    tr = a.split("train", train=True)
    crops = {tr[0].numpy().tobytes() for _ in range(12)}
    assert len(crops) > 2  # random crops and flips
    assert len(make(limit=5).split("train")) == 5
    tiny = tmp_path / "two"
    _write(tiny / "a.jpg", _jpeg(_colour(16, 16, 1)))
    _write(tiny / "b.jpg", _jpeg(_colour(16, 16, 2)))
    with pytest.raises(UsageError, match=r"the (val|test) split under .* has no images"):
        _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(tiny), size=8)
    _write(tiny / "c.jpg", _jpeg(_colour(16, 16, 3)))
    three = _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(tiny), size=8)
    assert [len(three.split(s)) for s in three.splits] == [1, 1, 1]  # every split gets one


def test_imagefolder_archive_and_errors(tmp_path):
    root = tmp_path / "photos"
    for i in range(5):
        _write(root / "inner" / f"p{i}.png", _png(Image.fromarray(_colour(20, 20, i))))
    archive = _tar_folder(root, tmp_path / "photos.tar.gz", arcname="photos")
    ds = _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(archive), size=16,
                cache=str(tmp_path / "cache"))
    assert ds.folder.name == "inner" and sum(len(ds.split(s)) for s in ds.splits) == 5
    again = _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(archive), size=16,
                   cache=str(tmp_path / "cache"))
    assert again.folder == ds.folder
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    for bad, what in ((tmp_path / "empty", "no images under"), (tmp_path / "absent", "does not exist"),
                      (tmp_path / "empty" / "notes.txt", "not a tar archive")):
        with pytest.raises(UsageError) as info:
            _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(bad))
        assert what in str(info.value) and str(bad) in str(info.value) and "\n" not in str(info.value)
        assert "expected image files" in str(info.value)


def _folder_ds(root: Path, **kw) -> imagefolder_data.ImageFolder:
    return _build(imagefolder.ImageFolderOptions, imagefolder_data.ImageFolder, root=str(root), **{"size": 16, **kw})


def _photo_tree(root: Path) -> Path:
    """train/ with 7 photos of several shapes and a truncated one, val/ with 3, test/ with 2."""
    for i, (h, w) in enumerate([(20, 40), (40, 22), (16, 16), (30, 31), (18, 50), (33, 20), (24, 24)]):
        _write(root / "train" / f"a{i % 2}" / f"p{i}.jpg", _jpeg(_colour(h, w, 300 + i)))
    whole = _jpeg(_colour(40, 40, 320))
    _write(root / "train" / "a0" / "p3b.jpg", whole[: len(whole) * 3 // 5])  # found only by decoding
    for i in range(3):
        _write(root / "val" / f"v{i}.jpg", _jpeg(_colour(20 + 5 * i, 30, 330 + i)))
    for i in range(2):
        _write(root / "test" / f"t{i}.png", _png(Image.fromarray(_colour(26, 20, 340 + i))))
    return root


@pytest.fixture
def decodes(monkeypatch):
    """How many images were decoded (by the cache's decode pass or by lazily read splits)."""
    seen = {"n": 0}
    original = _images.decode_image

    def counting(*args, **kwargs):
        seen["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(_images, "decode_image", counting)
    monkeypatch.setattr(_packed, "decode_image", counting)
    return seen


def test_imagefolder_decodes_each_split_once_into_the_cache(tmp_path, decodes):
    root = _photo_tree(tmp_path / "photos")
    ds = _folder_ds(root)
    assert ds.from_cache is None
    tr, va, te = ds.split("train", train=True), ds.split("val"), ds.split("test")
    assert all(isinstance(d, _packed.PackedSplit) for d in (tr, va, te))
    assert decodes["n"] == 8 + 3 + 2 and ds.from_cache is False
    assert tr.report().skipped == {"unreadable": 1} and len(tr) == 8  # a bad image is still counted
    ds.split("train", train=True), ds.split("val")
    assert decodes["n"] == 13  # held, not decoded again
    again = _folder_ds(root)
    tr2, va2 = again.split("train", train=True), again.split("val")
    assert decodes["n"] == 13 and again.from_cache is True  # mapped from the cache
    assert isinstance(tr2.images.pixels, np.memmap)
    assert tr2.report().skipped == {"unreadable": 1}
    # training: the whole photo is kept, random crops and flips drawn from torch's stream, seeded
    torch.manual_seed(0)
    a = [tr[i] for i in range(len(tr)) for _ in range(3)]
    torch.manual_seed(0)
    b = [tr2[i] for i in range(len(tr2)) for _ in range(3)]
    assert all(torch.equal(x, y) and tuple(x.shape) == (3, 16, 16) for x, y in zip(a, b))
    assert len({tr[0].numpy().tobytes() for _ in range(12)}) > 2
    assert tuple(tr.images.image(0).shape) == (3, 16, 32)  # 20 x 40: shorter side at 16, whole
    # loader workers (forked, or spawned and given the split pickled) map the same cache
    clone = pickle.loads(pickle.dumps(va2))
    assert all(torch.equal(clone[i], va[i]) for i in range(len(va)))
    assert len(list(DataLoader(tr2, batch_size=4, num_workers=2))) == 2


def test_imagefolder_cached_evaluation_pixels_equal_reading_the_files(tmp_path, decodes):
    root = _photo_tree(tmp_path / "photos")
    cached, lazy = _folder_ds(root), _folder_ds(root, cache="off")
    head = cached.head("val", 2)  # before the split is cached: decodes only what it serves
    head = [head[i] for i in range(len(head))]
    assert decodes["n"] == 2 and cached.decoded == {}
    for name in cached.splits:
        c, z = cached.split(name), lazy.split(name)
        assert isinstance(c, _packed.PackedSplit) and type(z) is _images.LazySplit
        assert len(c) == len(z)
        for i in range(len(c)):  # the truncated photo is replaced by the next good one in both
            assert torch.equal(c[i], z[i]), (name, i)
        assert c.report().counts == z.report().counts
    assert all(torch.equal(head[i], cached.split("val")[i]) for i in range(2))
    n = decodes["n"]
    assert len(cached.head("test", 1)) == 1 and decodes["n"] == n  # from the cache now
    off = _folder_ds(root, cache_gb=0)  # the size limit: decoded as read, as with the cache off
    assert type(off.split("train", train=True)) is _images.LazySplit and off.from_cache is None


def test_imagefolder_cache_follows_the_files(tmp_path, decodes, monkeypatch):
    root = _photo_tree(tmp_path / "photos")
    decoded_dir = tmp_path / "colorkit-cache" / imagefolder_data.DECODED
    first = _folder_ds(root).split("val")
    assert decodes["n"] == 3 and len(list(decoded_dir.iterdir())) == 1
    _write(root / "val" / "v1.jpg", _jpeg(_colour(25, 30, 999)))  # changed content and size
    changed = _folder_ds(root).split("val")
    assert decodes["n"] == 6 and not torch.equal(changed[1], first[1])
    assert torch.equal(changed[1], _folder_ds(root, cache="off").split("val")[1])  # one more decode
    assert len(list(decoded_dir.iterdir())) == 1  # the stale copy is gone
    _write(root / "val" / "v9.jpg", _jpeg(_colour(30, 30, 998)))  # an added photo
    added = _folder_ds(root)
    assert len(added.split("val")) == 4 and decodes["n"] == 11 and added.from_cache is False
    assert _folder_ds(root, size=12).split("val")[0].shape[-1] == 12 and decodes["n"] == 15  # size is in the key
    monkeypatch.setattr(imagefolder_data, "save_cache", lambda *a, **k: False)  # a cache that cannot be written
    unsaved = _folder_ds(root, size=8)
    data = unsaved.split("val")
    assert decodes["n"] == 19 and unsaved.from_cache is False and tuple(data[3].shape) == (3, 8, 8)
    assert not any(p.name.startswith(".") for p in decoded_dir.iterdir())  # nothing left behind
    assert _folder_ds(root, size=8).split("val") and decodes["n"] == 23  # and nothing was cached


# =================================================================================================
# places365
# =================================================================================================

CATS = ["/a/airfield", "/b/beach", "/c/canyon", "/a/apartment_building/outdoor"]


def _places_tree(root: Path, per_cat: int = 3, n_val: int = 6, bad: bool = False) -> Path:
    train_lines, val_lines = [], []
    for label, cat in enumerate(CATS):
        for k in range(1, per_cat + 1):
            rel = f"{cat}/{k:08d}.jpg"
            _write(root / ("data_256" + rel), _jpeg(_colour(24, 30, label * 10 + k)))
            train_lines.append(f"{rel} {label}")
    for k in range(1, n_val + 1):
        name = f"Places365_val_{k:08d}.jpg"
        _write(root / "val_256" / name, _jpeg(_colour(24, 24, 500 + k)))
        val_lines.append(f"{name} {k % len(CATS)}")
    if bad:
        _write(root / "data_256/b/beach/00000901.jpg", b"")
        _write(root / "data_256/b/beach/00000902.jpg", b"not an image")
        _write(root / "data_256/b/beach/00000903.jpg", _jpeg(_colour(24, 24, 3))[:900])
        _write(root / "data_256/b/beach/00000904.jpg", _jpeg(_colour(24, 24, 4)[:, :, 0]))
        train_lines += [f"/b/beach/0000090{i}.jpg 1" for i in range(1, 6)]  # 905 is listed but absent
    (root / "places365_train_standard.txt").write_text("\n".join(train_lines) + "\n")
    (root / "places365_val.txt").write_text("\n".join(val_lines) + "\n")
    (root / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(CATS)))
    return root


def _places(**values) -> places365_data.Places365:
    values.setdefault("val_size", 1)
    return _build(places365.Places365Options, places365_data.Places365, **values)


def test_places_official_layout_categories_and_limit(tmp_path):
    root = _places_tree(tmp_path / "places")
    ds = _places(root=str(root), size=16)
    tr, va, te = ds.split("train", train=True), ds.split("val"), ds.split("test")
    assert (len(tr), len(va), len(te)) == (11, 1, 6)  # val carved from the 12 training files
    assert set(va.paths) <= {f"{root}/data_256{c}/{k:08d}.jpg" for c in CATS for k in (1, 2, 3)}
    assert not set(va.paths) & set(tr.paths)
    assert all("/val_256/" in te.paths[i] for i in range(6))  # test: the official validation set
    assert tuple(tr[0].shape) == (3, 16, 16) and va[0].dtype == torch.uint8
    assert ds.categories() == [c.strip("/") for c in CATS]
    beach = _places(root=str(root), size=16, categories="beach")
    btr, bva = beach.split("train"), beach.split("val")
    assert len(btr) == 2 and len(bva) == 1
    assert all("/b/beach/" in p for p in (*btr.paths, *bva.paths))
    assert len(_places(root=str(root), categories=["/b/beach", "0"]).split("train")) == 5
    assert len(_places(root=str(root), categories="apartment_building/outdoor").split("test")) == 1
    with pytest.raises(UsageError, match="unknown category 'beech'.*beach"):
        _places(root=str(root), categories="beech").split("train")
    lim = _places(root=str(root), limit=5, seed=2).split("train")
    assert len(lim) == 5
    assert [lim.paths[i] for i in range(5)] == [_places(root=str(root), limit=5, seed=2).split("train").paths[i] for i in range(5)]
    # the same val for the same seed and size, another for another seed; never in train
    vals = {seed: set(_places(root=str(root), val_size=3, seed=seed).split("val").paths) for seed in (0, 0, 1, 2)}
    assert len(vals) == 3 and len(set(map(frozenset, vals.values()))) > 1
    for seed, held in vals.items():
        assert not held & set(_places(root=str(root), val_size=3, seed=seed).split("train").paths)
    with pytest.raises(UsageError, match=r"val_size=12 leaves nothing to train on: places365_train_standard.txt lists 12 images"):
        _places(root=str(root), val_size=12).split("val")
    (root / "categories_places365.txt").unlink()
    assert _places(root=str(root)).categories()[1] == "b/beach"  # derived from the train index


def _merged(*reports) -> dict[str, int]:
    out: dict[str, int] = {}
    for rep in reports:
        for k, v in rep.skipped.items():
            out[k] = out.get(k, 0) + v
    return out


def test_places_bad_files_lazily_and_prechecked(tmp_path, capsys):
    root = _places_tree(tmp_path / "places", bad=True)
    lazy = _places(root=str(root), size=16, precheck=0, categories="beach")
    tr, va = lazy.split("train", train=True), lazy.split("val")
    assert len(tr) + len(va) == 8 and len(va) == 1 and lazy.reports["train"].n_skipped == 0
    got = [s[i] for s in (tr, va) for i in range(len(s))]  # each bad file replaced by the next good one
    assert all(tuple(x.shape) == (3, 16, 16) for x in got)
    rep_tr, rep_va = tr.end_epoch(), va.end_epoch()
    assert _merged(rep_tr, rep_va) == {"unreadable": 2, "empty": 1, "missing": 1, "grayscale": 1}
    if rep_tr.n_skipped:
        assert f"places365 train: skipped {rep_tr.n_skipped} of 7 images read so far (of 7)" in capsys.readouterr().err
    checked = _places(root=str(root), size=16, categories="beach")
    checked.split("test")
    assert "train" not in checked.reports  # each split is checked when first used
    n = len(checked.split("train")) + len(checked.split("val"))
    assert n == 4
    assert _merged(checked.reports["train"], checked.reports["val"]) == {"unreadable": 1, "empty": 1, "missing": 1, "grayscale": 1}
    assert f"places365 train: skipped {checked.reports['train'].n_skipped} of 7 images" in capsys.readouterr().err


def test_places_from_official_archives_and_download(tmp_path, monkeypatch):
    tree = _places_tree(tmp_path / "tree")
    blobs = {}
    with tarfile.open(tmp_path / "filelist.tar", "w") as tf:
        for name in ("places365_train_standard.txt", "places365_val.txt", "categories_places365.txt"):
            tf.add(tree / name, arcname=name)
    blobs["index"] = (tmp_path / "filelist.tar").read_bytes()
    blobs["val"] = _tar_folder(tree / "val_256", tmp_path / "val.tar", arcname="val_256").read_bytes()
    blobs["train"] = _tar_folder(tree / "data_256", tmp_path / "train.tar", arcname="data_256").read_bytes()
    # archives already in root: extracted safely when first needed
    root = tmp_path / "root"
    root.mkdir()
    for part, blob in blobs.items():
        (root / places365_data.ARCHIVES[part][0]).write_bytes(blob)
    ds = _places(root=str(root), size=16)
    assert len(ds.split("test")) == 6 and (root / "val_256").is_dir() and not (root / "data_256").exists()
    assert len(ds.split("train")) == 11 and (root / "data_256").is_dir()
    # download: only what the split needs, each archive MD5-checked
    table = {part: (places365_data.ARCHIVES[part][0], hashlib.md5(blob).hexdigest()) for part, blob in blobs.items()}
    files = {"/" + name: blobs[part] for part, (name, _) in table.items()}
    with _Server(files) as srv:
        monkeypatch.setattr(places365_data, "BASE_URL", srv.url + "/")
        monkeypatch.setattr(places365_data, "ARCHIVES", table)
        fresh = tmp_path / "fresh"
        ds = _places(root=str(fresh), size=16, download=True)
        assert len(ds.split("test")) == 6
        assert sorted(srv.requests) == sorted(["/" + table["index"][0], "/" + table["val"][0]])
        bad = dict(table, train=(table["train"][0], "0" * 32))
        monkeypatch.setattr(places365_data, "ARCHIVES", bad)
        with pytest.raises(Exception, match="checksum mismatch"):
            ds.split("train")
        assert not (fresh / table["train"][0]).exists() and not (fresh / "data_256").exists()
    with pytest.raises(UsageError, match="does not exist"):
        _places(root=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="is empty.*places365_train_standard.txt"):
        _places(root=str(tmp_path / "empty"))


def test_places_index_parsing(tmp_path):
    text = b"/a/airfield/00000001.jpg 0\r\n\r\n/b/beach/00000002.jpg   12\n  \nPlaces365_test_00000001.jpg\nlast.jpg 364"
    path = _write(tmp_path / "index.txt", text)
    raw, starts, ends, labels = places365_data.read_index(path)
    names = [raw[s:e].tobytes().decode() for s, e in zip(starts, ends)]
    assert names == ["/a/airfield/00000001.jpg", "/b/beach/00000002.jpg", "Places365_test_00000001.jpg", "last.jpg"]
    assert labels.tolist() == [0, 12, -1, 364] and labels.dtype == np.int16
    _write(tmp_path / "bad.txt", b"/a/x.jpg 1\n/a/y.jpg 1x\n")
    with pytest.raises(UsageError, match="1x"):
        places365_data.read_index(tmp_path / "bad.txt")
    assert places365_data.read_index(_write(tmp_path / "empty.txt", b""))[1].size == 0
    # a larger synthetic train index, in the official line format
    n = 100_000
    lines = "".join(f"/{c[0]}/{c}/{i:08d}.jpg {i % 365}\n" for i, c in ((i, f"cat{i % 365:03d}") for i in range(n)))
    big = _write(tmp_path / "train.txt", lines.encode())
    raw, starts, ends, labels = places365_data.read_index(big)
    assert starts.size == n and labels[n - 1] == (n - 1) % 365
    table = _images.PathTable(tmp_path, raw, starts, ends)
    assert table.name(12345) == f"c/cat{12345 % 365:03d}/{12345:08d}.jpg"


# =================================================================================================
# Training on the CIFAR-10 JPEG mirror
# =================================================================================================


@pytest.mark.slow
def test_gan_l1_goes_down_on_a_cifar10_subset(tmp_path):
    if not SHARED_CIFAR.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{SHARED_CIFAR} is missing in CI; the integration test must run there")
        pytest.skip(f"{SHARED_CIFAR} is absent (the CIFAR-10 JPEG mirror in ../shared/data)")
    from typer.testing import CliRunner

    from colorkit.front.cli import app

    out = tmp_path / "run"
    args = ["run", "--dataset", "cifar10", "--data-root", str(SHARED_CIFAR), "--gen", "unet", "--loss", "ns_l1",
            "--disc", "conv", "--epochs", "6", "--batch-size", "32", "--seed", "0", "--device", "cpu",
            "--out", str(out), "--quiet",
            "--set", "dataset.limit=192", "--set", f"dataset.cache={tmp_path / 'cache'}",
            "--set", "gen.base=8", "--set", "gen.depth=3", "--set", "disc.base=8", "--set", "disc.depth=3",
            "--set", "train.log_every=1", "--set", "train.lr_schedule=none"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions; and robust when the cores are shared
    try:
        result = CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r["train_l1"] for r in records if r["event"] == "epoch"]
    assert len(epochs) == 6
    print("train L1 per epoch:", [round(v, 4) for v in epochs])
    assert epochs[-1] < 0.8 * epochs[0], f"L1 per epoch did not go down: {epochs}"
    config = (out / "config.yaml").read_text()
    assert "cifar10" in config and "limit: 192" in config


def test_report_lines_are_said_once_among_processes_sharing_a_file(tmp_path, monkeypatch, capsys):
    """bench --jobs N workers share a file of the data report lines said so far."""
    from colorkit.kernel.progress import SAID_ENV
    from colorkit.plugins._decode import emit, forget_said

    monkeypatch.setenv(SAID_ENV, str(tmp_path / "said.txt"))
    emit("cifar10 train: skipped 1 of 2 images: 1 grayscale")
    forget_said()  # another worker: a process of its own, nothing said in it yet
    emit("cifar10 train: skipped 1 of 2 images: 1 grayscale")
    emit("cifar10 val: skipped 1 of 2 images: 1 grayscale")
    assert capsys.readouterr().err.splitlines() == ["cifar10 train: skipped 1 of 2 images: 1 grayscale",
                                                    "cifar10 val: skipped 1 of 2 images: 1 grayscale"]
    monkeypatch.delenv(SAID_ENV)
    forget_said()  # without the file (a lone process), each process says it once
    emit("cifar10 train: skipped 1 of 2 images: 1 grayscale")
    assert capsys.readouterr().err.splitlines() == ["cifar10 train: skipped 1 of 2 images: 1 grayscale"]
