"""Nothing lost, nothing replaced, nothing hung (issue 33, points 1-3 and 4b): colorkit's writers
replace only regular files, a new run never writes over files it did not make, colorize loses no
photo to a name clash, an unwritable output, a pipe or a killed run, and colour-managed photos
are read as they are displayed."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from skimage import color as skcolor
from skimage import data as skdata

from colorkit.kernel.errors import UsageError
from colorkit.kernel.files import atomic_write_bytes
from cli_helpers import invoke, one_line_error
from icc import adobe_rgb

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = ["--disc", "none", "--loss", "l2", "--set", "gen.base=8", "--set", "dataset.size=32", "--epochs", "1",
        "--set", "train.max_steps=2", "--set", "dataset.crops_per_epoch=8", "--set", "dataset.eval_crops=4", "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_photo(path: Path, rgb: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kwargs)
    return path


# -- 1. writers replace only regular files -------------------------------------------------------


def odd_destinations(folder: Path) -> dict[str, Path]:
    """A pipe, a symbolic link to a regular file, a dangling link, and a character device (made
    with mknod where this process may; else the system's /dev/null, only ever stat'ed)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "pipe.onnx")
    (folder / "target.onnx").write_bytes(b"the user's file")
    (folder / "link.onnx").symlink_to(folder / "target.onnx")
    (folder / "dangling.onnx").symlink_to(folder / "nowhere.onnx")
    try:
        os.mknod(folder / "device.onnx", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        device = folder / "device.onnx"
    except (PermissionError, OSError):
        device = Path("/dev/null")
    return {"pipe": folder / "pipe.onnx", "link": folder / "link.onnx", "dangling": folder / "dangling.onnx",
            "device": device}


@pytest.mark.slow
def test_every_writer_refuses_a_destination_that_is_not_a_regular_file(run_dir, tmp_path):
    from colorkit.kernel.files import check_replaceable  # the one check every writer makes

    odd = odd_destinations(tmp_path / "odd")
    for kind, dest in odd.items():
        with pytest.raises(UsageError, match="symbolic link|not a regular file"):
            check_replaceable(dest)
        if dest.parent == tmp_path / "odd":  # never write near the system's /dev/null
            with pytest.raises(UsageError):
                atomic_write_bytes(dest, b"new")
            line = one_line_error(invoke(["export", run_dir, "--format", "onnx", "--out", dest]))
            assert line.startswith(f"error: --out {dest}: ") and kind
            line = one_line_error(invoke(["eval", run_dir, "--json", dest, "--limit", "4", "-q"]))
            assert line.startswith(f"error: --json {dest}: ")
    assert stat.S_ISFIFO(os.lstat(odd["pipe"]).st_mode)
    assert os.path.islink(odd["link"]) and (tmp_path / "odd" / "target.onnx").read_bytes() == b"the user's file"
    assert os.path.islink(odd["dangling"]) and not (tmp_path / "odd" / "nowhere.onnx").exists()
    assert stat.S_ISCHR(os.lstat(odd["device"]).st_mode)
    assert sorted(p.name for p in (tmp_path / "odd").iterdir() if p.name.startswith(".")) == []  # no temp left


# -- 2. a new run writes only into a new or empty folder -----------------------------------------


def test_run_into_a_folder_of_someone_elses_files_is_refused_and_touches_nothing(tmp_path):
    out = tmp_path / "mine"
    (out / "checkpoints").mkdir(parents=True)
    files = {out / "samples.png": b"my figure", out / "metrics.jsonl": b'{"mine": 1}\n',
             out / "checkpoints" / "last.pt": b"my weights"}
    for path, data in files.items():
        path.write_bytes(data)
    line = one_line_error(invoke(["run", *TINY, "--out", out]))
    assert "holds 'checkpoints'" in line and "--resume" in line and "--fork" in line, line
    assert {p: p.read_bytes() for p in files} == files
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "checkpoints", "checkpoints/last.pt", "metrics.jsonl", "samples.png"]


def test_run_into_a_folder_a_killed_run_left_before_its_config_is_accepted(tmp_path):
    out = tmp_path / "killed"
    (out / "checkpoints").mkdir(parents=True)
    (out / ".lock").write_bytes(b"")
    (out / "checkpoints" / ".last.pt.abcd1234.tmp").write_bytes(b"half a checkpoint")
    result = invoke(["run", *TINY, "--out", out])
    assert result.exit_code == 0, result.output
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "last.pt").is_file()
    assert not (out / "checkpoints" / ".last.pt.abcd1234.tmp").exists()


# -- 3. colorize loses no photo -------------------------------------------------------------------


def test_photos_that_share_a_name_all_get_an_output_of_their_own(run_dir, tmp_path):
    photos = tmp_path / "photos"
    save_photo(photos / "y.jpg", skdata.coffee()[:64, :80])
    save_photo(photos / "y.png", skdata.astronaut()[:64, :80])
    save_photo(photos / "x.png", skdata.chelsea()[:64, :80])
    (photos / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a JPEG")
    save_photo(photos / "z.png", skdata.rocket()[:64, :80])
    out = tmp_path / "out"
    result = invoke(["colorize", run_dir, photos, "--out", out, "-q"])
    assert result.exit_code == 1, result.output  # x.jpg cannot be read
    assert "already written" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["x.png.png", "y.jpg.png", "y.png.png", "z.png"]
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "x.jpg" in warnings[0] and "cannot read" in warnings[0]
    # the same rule on a second run: everything exists, nothing is replaced or lost
    before = {p.name: digest(p) for p in out.iterdir()}
    invoke(["colorize", run_dir, photos, "--out", out, "-q"])
    assert {p.name: digest(p) for p in out.iterdir()} == before


def test_an_output_that_cannot_be_written_skips_that_photo_only(run_dir, tmp_path):
    photos = tmp_path / "photos"
    save_photo(photos / "sub" / "a.png", skdata.coffee()[:64, :80])
    save_photo(photos / "b.png", skdata.chelsea()[:64, :80])
    save_photo(photos / "c.png", skdata.astronaut()[:64, :80])
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_bytes(b"a file where a folder should go")
    result = invoke(["colorize", run_dir, photos, "--out", out, "-q"])
    assert result.exit_code == 1, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "a.png" in warnings[0] and "cannot write" in warnings[0], result.output
    assert "colorized 2 image(s)" in result.output and "1 failed" in result.output
    assert (out / "b.png").is_file() and (out / "c.png").is_file()
    assert (out / "sub").read_bytes() == b"a file where a folder should go"


PIPE_RUNS = {
    "colorize": "from colorkit.front.cli import main; sys.argv = ['colorkit', 'colorize', RUN, PHOTOS, '--out', OUT, "
                "'-q']; main()",
    "eval": "from colorkit.front.cli import main; sys.argv = ['colorkit', 'eval', RUN, '--images', PHOTOS, "
            "'--metrics', 'mae', '-q']; main()",
    "turing": "from colorkit.front.turing.study import create_study; from colorkit.kernel.registry import build_registry; "
              "create_study([RUN], PHOTOS, OUT, registry=build_registry(autoload=False), size=64)",
}


@pytest.mark.parametrize("command", sorted(PIPE_RUNS))
@pytest.mark.slow
def test_a_pipe_among_the_photos_is_passed_over_not_read(run_dir, tmp_path, command):
    photos = tmp_path / "photos"
    save_photo(photos / "a.png", skdata.coffee()[:64, :80])
    save_photo(photos / "c.png", skdata.chelsea()[:64, :80])
    os.mkfifo(photos / "b.png")  # opening it for reading would wait forever for a writer
    code = (f"import sys; RUN, PHOTOS, OUT = {str(run_dir)!r}, {str(photos)!r}, {str(tmp_path / 'out')!r}; "
            + PIPE_RUNS[command])
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} hung on a pipe named b.png")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "b.png" not in proc.stdout + proc.stderr
    if command == "colorize":
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    if command == "eval":
        assert "2 image" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    if command == "turing":
        assert len(list((tmp_path / "out").rglob("*.png"))) == 4  # 2 photos x (original, the model)


def test_a_pipe_named_directly_is_a_one_line_error(run_dir, tmp_path):
    os.mkfifo(tmp_path / "b.png")
    line = one_line_error(invoke(["colorize", run_dir, tmp_path / "b.png", "--out", tmp_path / "out"]))
    assert "b.png: not a regular file" in line


def test_temporary_files_a_killed_colorize_left_are_removed_by_the_next_run(run_dir, tmp_path):
    photos = tmp_path / "photos"
    save_photo(photos / "a.png", skdata.coffee()[:64, :80])
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.png.k1ll3d00.tmp"  # what a SIGKILL mid-write leaves
    stale.write_bytes(b"half a PNG")
    other = out / ".notes.txt.k1ll3d00.tmp"  # not one of this run's outputs: left alone
    other.write_bytes(b"someone else's")
    result = invoke(["colorize", run_dir, photos, "--out", out, "-q"])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and other.exists() and (out / "a.png").is_file()


def test_a_full_disk_stops_colorize_with_one_line_that_does_not_mention_runs(run_dir, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    for name in ("a.png", "b.png", "c.png"):
        save_photo(photos / name, skdata.coffee()[:64, :80])
    real, calls = Image.Image.save, []

    def save(image, fp, *args, **kwargs):  # the disk fills up during the second photo's write
        calls.append(fp)
        if len(calls) == 2:
            fp.write(b"part of a PNG")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    line = one_line_error(invoke(["colorize", run_dir, photos, "--out", tmp_path / "out", "-q"]), code=1)
    assert "the disk is full" in line and "--resume" not in line, line
    assert "skips the 1 photo(s) already written" in line
    assert len(calls) == 2 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


# -- 4b. colour-managed photos are read as they are displayed -------------------------------------


def displayed_lab(path: Path) -> np.ndarray:
    """L*a*b* of an image file as a colour-managed viewer shows it (its profile, else sRGB)."""
    with Image.open(path) as im:
        im = im.convert("RGB") if im.mode != "RGB" else im
        icc = im.info.get("icc_profile")
        if icc:
            im = ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(icc)),
                                           ImageCms.createProfile("sRGB"), outputMode="RGB")
        return skcolor.rgb2lab(np.asarray(im))


def test_an_adobe_rgb_photo_keeps_its_displayed_lightness(run_dir, tmp_path):
    photo = save_photo(tmp_path / "photos" / "adobe.png", skdata.astronaut()[::4, ::4], icc_profile=adobe_rgb())
    out = tmp_path / "out"
    result = invoke(["colorize", run_dir, photo, "--out", out, "-q"])
    assert result.exit_code == 0, result.output
    shown_in, shown_out = displayed_lab(photo), displayed_lab(out / "adobe.png")
    assert np.abs(shown_in[..., 0] - shown_out[..., 0]).mean() < 0.6
    assert np.abs(shown_in[..., 0] - shown_out[..., 0]).max() <= 2.0
    with Image.open(out / "adobe.png") as im:
        assert "icc_profile" not in im.info  # plain sRGB: no other profile is claimed for sRGB pixels


# -- 5c. a working size is bounded before anything is allocated ----------------------------------


@pytest.mark.parametrize("args", [["colorize", "{photo}", "--out", "{out}", "--size", "100000"],
                                  ["eval", "{run}", "--images", "{photos}", "--size", "100000"],
                                  ["export", "{run}", "--out", "{out}/m.onnx", "--working-size", "100000"]])
def test_a_huge_working_size_is_one_line_before_any_work(run_dir, tmp_path, args):
    photo = save_photo(tmp_path / "photos" / "a.png", skdata.coffee()[:64, :80])
    values = {"photo": photo, "photos": photo.parent, "out": tmp_path / "out", "run": run_dir}
    line = one_line_error(invoke([a.format(**{k: str(v) for k, v in values.items()}) for a in args]))
    assert "100000" in line and "at most 2048" in line, line
    assert not (tmp_path / "out").exists()


def test_the_python_api_bounds_the_working_size_too(run_dir):
    from colorkit import colorize

    with pytest.raises(UsageError, match="at most 2048"):
        colorize(run_dir, skdata.coffee()[:64, :80], working_size=100000)
