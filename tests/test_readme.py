"""Every shell command of README.md and docs/*.md runs as written, or says what it needs.

The ```bash blocks of README.md, then of docs/*.md (sorted), are worked through in order by a
reader in one scratch folder that looks like a clone (a fresh copy of the files git tracks, as the
working tree has them: nothing there leads back into the clone, and a reader's own untracked files
in the clone are neither in it nor touched), with ``HOME`` an empty folder, so ``~/data`` does not
exist. Outside a git checkout the test skips. The conventions, for whoever edits the docs:

- A command whose trailing comment says ``needs ...`` (data, machines or people this test does
  not have) is not run; its words are checked instead: the ``colorkit`` subcommand or the script
  exists and knows every ``--option`` the command uses, and the install commands it names hold.
- ``<!-- docs-test: ... -->`` right before a block gives lines ``PREFIX += ARGS``: ARGS are
  appended to every command of the block that starts with PREFIX (the small budgets).
- A block ```` ```LANG file=PATH ```` is written to PATH in the scratch folder before any command runs.
- The reader's photos exist: ``old-photo.jpg``, ``more-photos/``, ``old-photos/``, ``photos/``
  and ``my-colour-photos/`` (scikit-image's photos, small).
- ``colorkit ...`` runs in this process (typer's test runner) and must exit 0; ``colorkit turing``
  with models serves a study: it is started in a subprocess, its page fetched, then stopped with
  SIGTERM. ``python benchmarks/...`` runs in a subprocess and must exit 0, leaving nothing in its
  temporary folder (``TMPDIR``).
- ``pip install ...`` is not run (this test runs inside the installed environment; ``.ci/run``
  installs on a fresh machine): the extras, folders and constraints it names must exist, and its
  ``name==version`` pins must be those of ``.ci/constraints.txt``. ``python -m pytest ...`` must be the
  command ``.ci/run`` ends with.

Any other command fails the test: give it a handler here first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from colorkit.front.cli import app
from test_docs import blocks

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NEEDS = re.compile(r"\bneeds\b")
PHOTOS = {"old-photo.jpg": ("coffee", True), "more-photos/a.jpg": ("chelsea", True),
          "more-photos/b.png": ("rocket", False), "old-photos/c.jpg": ("astronaut", True),
          "photos/d.jpg": ("coffee", True), "my-colour-photos/e.jpg": ("astronaut", False),
          "my-colour-photos/f.jpg": ("chelsea", False), "my-colour-photos/g.jpg": ("coffee", False)}


@dataclass
class Command:
    where: str
    text: str  # as written, continuation lines joined, without the comment
    comment: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.text)


def budgets(md: str, fence_line: int) -> list[tuple[str, str]]:
    """``(prefix, args)`` of the ``<!-- docs-test: ... -->`` comment right above a fence."""
    lines = md.splitlines()[: fence_line - 1]
    if not lines or lines[-1].strip() != "-->":
        return []
    start = max(i for i, line in enumerate(lines) if line.startswith("<!-- docs-test"))
    return [tuple(part.strip() for part in line.split("+=", 1))  # type: ignore[misc]
            for line in lines[start + 1: -1] if "+=" in line]


def shell_commands(path: Path, root: Path = ROOT) -> tuple[list[Command], list[tuple[str, str]]]:
    """The commands of a page's bash blocks (budgets applied) and its ``file=`` blocks."""
    md = path.read_text(encoding="utf-8")
    out: list[Command] = []
    files: list[tuple[str, str]] = []
    for block in blocks(path):
        lang, _, rest = block.info.partition(" ")
        attrs = dict(re.findall(r"(\w+)=(\S+)", rest))
        if "file" in attrs:
            files.append((attrs["file"], block.text))
            continue
        if lang not in ("bash", "sh"):
            continue
        extra = budgets(md, block.line)
        pending = ""
        for i, raw in enumerate(block.text.splitlines()):
            line = pending + raw
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            pending = ""
            parts = re.split(r"(?:^|\s)#(?:\s|$)", line, maxsplit=1)
            code, comment = parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")
            if not code:
                continue
            for prefix, args in extra:
                if code.startswith(prefix):
                    code += " " + args
            out.append(Command(f"{path.relative_to(root)}:{block.line + 1 + i}", code, comment))
    return out, files


class Reader:
    def __init__(self, folder: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.home, self.mp = folder, home, monkeypatch
        self.ran: list[str] = []
        self.checked: list[str] = []
        self.seconds: dict[str, float] = {}

    def expand(self, words: list[str]) -> list[str]:
        return [str(self.home) + w[1:] if w == "~" or w.startswith("~/") else w for w in words]

    def do(self, c: Command) -> None:
        words = c.words
        if words[:2] == ["pip", "install"]:
            return self.pip(c, words[2:])
        if words[:3] == ["python", "-m", "pytest"]:
            ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
            assert ci[-1].strip() == c.text, f"{c.where}: .ci/run must end with the README's test command"
            return self.checked.append(c.text)
        if NEEDS.search(c.comment):
            return self.needs(c, words)
        if words[:1] == ["colorkit"] and words[1:2] == ["turing"] and "--results" not in words:
            return self.serve(c, self.expand(words[1:]))
        if words[:1] == ["colorkit"]:
            result = CliRunner().invoke(app, self.expand(words[1:]))
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise result.exception
            assert result.exit_code == 0, f"{c.where}: $ {c.text} exited with {result.exit_code}:\n{result.output}"
            return self.ran.append(c.text)
        if words[:1] == ["python"] and words[1:2] and words[1].startswith("benchmarks/"):
            scratch = self.home / "tmp"  # the benchmark's temporary files: none may outlive it
            scratch.mkdir(exist_ok=True)
            proc = subprocess.run([sys.executable, *self.expand(words[1:])], cwd=self.folder, capture_output=True,
                                  text=True, timeout=600, env={**os.environ, "TMPDIR": str(scratch)})
            assert proc.returncode == 0, f"{c.where}: $ {c.text} exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            # .ses: ONNX Runtime's telemetry session file (51 bytes, shared by every process), not ours
            left = sorted(f.name for f in scratch.iterdir() if f.name != ".ses")
            assert not left, f"{c.where}: $ {c.text} left temporary files behind: {left}"
            return self.ran.append(c.text)
        raise AssertionError(f"{c.where}: no handler for {c.text!r}; add one to tests/test_readme.py or mark "
                             "what it needs in its comment")

    def pip(self, c: Command, args: list[str]) -> None:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / ".ci" / "constraints.txt").read_text(), re.M))
        it = iter(args)
        for word in it:
            if word in ("-c", "--constraint"):
                assert (self.folder / next(it)).is_file(), f"{c.where}: no constraints file"
            elif word == "--index-url":
                assert next(it).startswith("https://"), c.where
            elif word.startswith("-"):
                assert word in ("-e", "--no-build-isolation", "-q"), f"{c.where}: pip option {word} not checked here"
            elif "==" in word:
                name, version = word.split("==")
                assert pins.get(name) == version, f"{c.where}: {word} is not the pin of .ci/constraints.txt"
            else:
                target, _, extras = word.partition("[")
                assert (self.folder / target / "pyproject.toml").is_file(), f"{c.where}: {target} is no project"
                for extra in filter(None, extras.rstrip("]").split(",")):
                    if target == ".":
                        assert extra in project["optional-dependencies"], f"{c.where}: no extra {extra!r}"
        self.checked.append(c.text)

    def needs(self, c: Command, words: list[str]) -> None:
        if words[:1] == ["torchrun"]:
            words = words[words.index("-m") + 1:]
        options = [w.split("=")[0] for w in words if w.startswith("--")]
        if words[:1] == ["colorkit"]:
            result = CliRunner().invoke(app, [words[1], "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
            assert result.exit_code == 0, f"{c.where}: no subcommand colorkit {words[1]}"
            text = result.output
        elif words[:1] == ["python"]:
            assert (ROOT / words[1]).is_file(), f"{c.where}: no script {words[1]}"
            text = subprocess.run([sys.executable, str(ROOT / words[1]), "--help"], capture_output=True,
                                  text=True, timeout=120).stdout
        else:
            raise AssertionError(f"{c.where}: cannot check {c.text!r}")
        for option in options:
            assert option in text, f"{c.where}: {words[0]} {words[1]} has no option {option}"
        self.checked.append(c.text)

    def serve(self, c: Command, args: list[str]) -> None:
        """A study served: the page answers, SIGTERM stops the server cleanly."""
        port = next((args[i + 1] for i, w in enumerate(args) if w == "--port"), "8765")
        proc = subprocess.Popen([sys.executable, "-m", "colorkit", *args], cwd=self.folder,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline, page = time.monotonic() + 240, None
            while page is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                except OSError:
                    time.sleep(0.5)
            assert page, f"{c.where}: $ {c.text}: no page at port {port}:\n{proc.communicate(timeout=30)[0] if proc.poll() is not None else ''}"
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, f"{c.where}: $ {c.text} exited with {proc.returncode}:\n{output}"
        self.ran.append(c.text)


def tracked_files(root: Path) -> list[str] | None:
    """The paths git tracks in ``root``, or ``None`` when ``root`` is not the top of a git checkout
    (or git is missing)."""
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=60)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root.resolve():
            return None
        listing = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return [os.fsdecode(name) for name in listing.stdout.split(b"\0") if name] if listing.returncode == 0 else None


def scratch_clone(tmp: Path, root: Path = ROOT) -> Path:
    """A fresh folder that looks like a clone: a copy of every file git tracks in ``root``, as the
    working tree has it (a tracked link within the tree stays a link), and the reader's photos.
    Nothing in it leads back into ``root``, so nothing run there writes into the clone, and the
    untracked files of the clone (a reader's own photos and configs) are not in it."""
    names = tracked_files(root)
    if not names:
        pytest.skip(f"{root} is not a git checkout: the scratch clone copies the files git tracks (CI tests a clone)")
    folder = tmp / "clone"
    for name in names:
        source, dest = root / name, folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target = os.readlink(source)
            if not os.path.isabs(target) and Path(os.path.normpath(source.parent / target)).is_relative_to(root):
                dest.symlink_to(target)
                continue
        if source.is_file():  # a tracked file deleted in the working tree, or a submodule, is left out
            shutil.copy2(source, dest)
    from PIL import Image
    from skimage import data

    for rel, (name, gray) in PHOTOS.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(getattr(data, name)()[..., :3])
        image.thumbnail((160, 160))
        (image.convert("L") if gray else image).save(path)
    return folder


def reader_at_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Reader, list[list[Command]]]:
    """The reader in the scratch clone (its working folder, ``HOME`` empty), the ``file=`` blocks
    written there, and the commands of every page."""
    folder, home = scratch_clone(tmp_path), tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("COLORKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pages = [shell_commands(page) for page in DOCS]
    for commands, files in pages:
        for name, text in files if commands else []:  # docs/plugins.md's files belong to its own project
            path = folder / name
            assert not path.is_symlink() and not path.exists(), f"{name}: a file= block may not replace a tracked file"
            path.write_text(text, encoding="utf-8")
    return Reader(folder, home, monkeypatch), [commands for commands, _ in pages]


@pytest.mark.slow
def test_every_command_of_the_readme_and_docs_runs_or_says_what_it_needs(tmp_path, monkeypatch):
    reader, pages = reader_at_work(tmp_path, monkeypatch)
    folder = reader.folder
    for commands in pages:
        for command in commands:
            start = time.perf_counter()
            reader.do(command)
            reader.seconds[command.where] = time.perf_counter() - start
    print("slowest:", sorted(reader.seconds.items(), key=lambda kv: -kv[1])[:6])
    assert len(reader.ran) >= 15 and len(reader.checked) >= 10, (reader.ran, reader.checked)
    assert (folder / "colourised" / "old-photo.png").is_file() and (folder / "bench-out" / "first" / "results.md").is_file()


# --- the reader itself -------------------------------------------------------------------------


def test_budgets_continuations_and_comments_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test:\ncolorkit run += --epochs 1\n-->\n```bash\n"
        "colorkit run --gen unet \\\n  --loss l1   # a comment\n"
        "#   -> a comment line\ncolorkit list   # needs nothing\n```\n\n```yaml file=a.yaml\nx: 1\n```\n",
        encoding="utf-8")
    commands, files = shell_commands(page, root=tmp_path)
    assert [(c.text, c.comment) for c in commands] == [
        ("colorkit run --gen unet    --loss l1 --epochs 1", "a comment"), ("colorkit list", "needs nothing")]
    assert files == [("a.yaml", "x: 1\n")]


# --- the reader's own files in the clone -----------------------------------------------------------

#: What a reader who followed the README inside the clone has there, untracked: photos under the
#: README's example names (the names the scratch clone's own photos take too), colorize's output and
#: the README's config file saved where it suggests.
READERS_FILES = ["old-photo.jpg", "more-photos/a.jpg", "photos/d.jpg", "my-colour-photos/e.jpg",
                 "colourised/old-photo.png", "my-experiment.yaml"]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under the top-level entries of :data:`READERS_FILES`, with the SHA-256 of its bytes."""
    out: dict[str, str] = {}
    for top in sorted({Path(rel).parts[0] for rel in READERS_FILES}):
        path = root / top
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            with open(file, "rb") as fh:
                out[file.relative_to(root).as_posix()] = hashlib.file_digest(fh, "sha256").hexdigest()
    return out


@contextlib.contextmanager
def readers_files_in(root: Path):
    """Put :data:`READERS_FILES` in ``root`` where it has none (a reader's real files are left as they
    are), yield what the files there hold, and take away only what was put there. One process at a
    time (a lock next to the temporary files): two runs of the suite in one clone would else take
    each other's files for a reader's."""
    from PIL import Image

    key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"colorkit-readme-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made: list[Path] = []  # files and folders this put there, parents first
        try:
            config = dict(shell_commands(root / "README.md", root)[1])["my-experiment.yaml"]
            for i, rel in enumerate(READERS_FILES):
                path = root / rel
                for folder in reversed(path.relative_to(root).parents[:-1]):
                    if not (root / folder).exists():
                        (root / folder).mkdir()
                        made.append(root / folder)
                if path.exists() or path.is_symlink():
                    continue
                if rel.endswith(".yaml"):
                    path.write_text(config, encoding="utf-8")
                else:
                    pixels = np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(path)
                made.append(path)
            yield _snapshot(root)
        finally:
            for path in reversed(made):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


@pytest.mark.slow
def test_the_readers_own_files_in_the_clone_are_never_touched(tmp_path, monkeypatch):
    """A reader who followed the README inside the clone keeps every file: the scratch clone holds
    copies of the tracked files only (no link leads back into the clone), so the ``file=`` blocks,
    the scratch photos and a README command that writes (colorize) work beside the reader's files
    and leave them byte for byte, with nothing added to their folders."""
    absent = [rel for rel in {*READERS_FILES, *(Path(r).parts[0] for r in READERS_FILES)} if not (ROOT / rel).exists()]
    with readers_files_in(ROOT) as before:
        reader, pages = reader_at_work(tmp_path, monkeypatch)
        folder = reader.folder.resolve()
        for path in folder.rglob("*"):
            assert not path.is_symlink() or path.resolve().is_relative_to(folder), f"{path} leads out of the scratch clone"
        colorize = next(c for c in pages[0] if c.words[:2] == ["colorkit", "colorize"])
        reader.do(colorize)
        assert (folder / "colourised" / "old-photo.png").is_file()
        after = _snapshot(ROOT)
        assert sorted(after) == sorted(before), "files were added to or taken from the reader's folders"
        assert [rel for rel in before if after[rel] != before[rel]] == [], "the reader's files were changed"
    assert [rel for rel in absent if (ROOT / rel).exists()] == [], "the test left files in the clone"
