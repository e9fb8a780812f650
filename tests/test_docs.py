"""Every code block of the plugin guide runs, so the guide cannot rot.

``docs/plugins.md`` is executed top to bottom in a fresh project folder (a temporary directory,
also the working directory). Each fenced code block is one of:

``LANG file=PATH``
    a file of the reader's project: written to ``PATH`` (any language: python, toml, ...).
``python``
    executed in the project folder with the folder on ``sys.path`` (as ``python`` started there
    would have it), all such blocks of the page in one module namespace, in order. They check
    things with ``assert``.
``console``
    ``$ COMMAND`` lines (a trailing ``\\`` continues a command) each followed by the output
    expected from it. Output is compared line by line after collapsing runs of whitespace;
    ``...`` inside a line matches any text, and a line that is only ``...`` matches any number
    of lines. A command with no expected lines must only succeed. Commands and how they run:

    - ``pip install -e .``: installs the project as pip would for colorkit's purposes: a
      ``NAME-VERSION.dist-info`` (``METADATA`` and the ``entry_points.txt`` written from the
      project's ``pyproject.toml``) in a temporary site folder put on ``sys.path`` with the
      project folder; the real build is exercised by ``pip wheel`` below;
    - ``[VAR=value ...] colorkit ARGS``: the CLI in this process through typer's test runner,
      with those environment variables set; it must exit with code 0;
    - ``python -m pytest ARGS``: a subprocess with ``PYTHONPATH`` set to the installation;
    - ``python -m pip wheel ARGS``: a subprocess, run for real (offline: no build isolation).

    Any other command fails the test: give it a handler here first.

Any other block (no ``file=``, another language) fails the test too.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from colorkit.front.cli import app
from colorkit.kernel.registry import ALLOW_ENV, DISABLE_ENV

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"


@dataclass
class Block:
    info: str
    text: str
    line: int  # 1-based line of the opening fence

    @property
    def where(self) -> str:
        return f"{GUIDE.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    return [Block(t.info.strip(), t.content, t.map[0] + 1) for t in tokens if t.type in ("fence", "code_block")]


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` pairs of a console block."""
    out: list[tuple[str, list[str]]] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise AssertionError(f"{block.where}: output line {line!r} before any '$ ' command")
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        out.append((command, [e for e in expected if e.strip()]))
    return out


def _norm(text: str) -> str:
    return " ".join(text.split())


def _line_pattern(expected: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in _norm(expected).split("...")]
    return re.compile(".*".join(parts))


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` lines fit ``expected`` (``...`` lines match any number of lines)."""
    actual = [_norm(a) for a in actual if a.strip()]

    def fit(e: int, a: int) -> bool:
        if e == len(expected):
            return a == len(actual)
        if _norm(expected[e]) == "...":
            return any(fit(e + 1, k) for k in range(a, len(actual) + 1))
        return a < len(actual) and _line_pattern(expected[e]).fullmatch(actual[a]) is not None and fit(e + 1, a + 1)

    return fit(0, 0)


class Reader:
    """The reader working through the guide: a project folder, an installation, a shell."""

    def __init__(self, project: Path, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.project, self.site, self.mp = project, site, monkeypatch
        self.module = types.ModuleType("plugins_md")
        self.module.__file__ = str(project / "plugins_md.py")
        self.mp.setitem(sys.modules, "plugins_md", self.module)
        self.mp.syspath_prepend(str(project))

    # -- blocks ------------------------------------------------------------------------------
    def run(self, block: Block) -> None:
        lang, _, rest = block.info.partition(" ")
        attrs = dict(re.findall(r"(\w+)=(\S+)", rest))
        if "file" in attrs:
            path = self.project / attrs["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text, encoding="utf-8")
        elif lang == "python":
            code = compile("\n" * (block.line) + block.text, str(GUIDE), "exec")
            exec(code, self.module.__dict__)  # noqa: S102 - the guide's own code
        elif lang == "console":
            for command, expected in commands(block):
                self.shell(block, command, expected)
        else:
            raise AssertionError(f"{block.where}: a ```{block.info} block is neither written nor run; "
                                 "see the conventions in tests/test_docs.py")

    def shell(self, block: Block, command: str, expected: list[str]) -> None:
        words = shlex.split(command)
        env = {}
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        if words[:3] == ["pip", "install", "-e"] and words[3:] == ["."]:
            output, code = self.pip_install_editable(), 0
        elif words[:1] == ["colorkit"]:
            output, code = self.colorkit(words[1:], env)
        elif words[:3] == ["python", "-m", "pytest"] or words[:4] == ["python", "-m", "pip", "wheel"]:
            output, code = self.subprocess([sys.executable, *words[1:]], env)
        else:
            raise AssertionError(f"{block.where}: no handler for the command {command!r}; add one to tests/test_docs.py")
        assert code == 0, f"{block.where}: $ {command} exited with {code}:\n{output}"
        if expected:
            assert matches(expected, output.splitlines()), (
                f"{block.where}: $ {command}\n--- expected\n" + "\n".join(expected) + "\n--- got\n" + output
            )

    # -- commands ----------------------------------------------------------------------------
    def pip_install_editable(self) -> str:
        project = tomllib.loads((self.project / "pyproject.toml").read_text())["project"]
        name, version = project["name"], project["version"]
        info = self.site / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        groups = project.get("entry-points", {})
        (info / "entry_points.txt").write_text(
            "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items())
        )
        self.mp.syspath_prepend(str(self.site))
        return f"Successfully installed {name}-{version}"

    def colorkit(self, args: list[str], env: dict[str, str]) -> tuple[str, int]:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            result = CliRunner().invoke(app, args)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.output, result.exit_code

    def subprocess(self, argv: list[str], env: dict[str, str]) -> tuple[str, int]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in (DISABLE_ENV, ALLOW_ENV)}
        full.update(env)
        full["PYTHONPATH"] = os.pathsep.join(
            [str(self.site), str(self.project), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        proc = subprocess.run(argv, cwd=self.project, env=full, capture_output=True, text=True, timeout=300)
        return proc.stdout + proc.stderr, proc.returncode


@pytest.mark.slow
def test_every_block_of_the_plugin_guide_runs(tmp_path, monkeypatch):
    project, site = tmp_path / "colorkit-dilated", tmp_path / "site"
    project.mkdir()
    site.mkdir()
    monkeypatch.chdir(project)
    # The reader's shell: entry-point plugins load (tests/conftest.py turns that off elsewhere).
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    reader = Reader(project, site, monkeypatch)
    found = blocks(GUIDE)
    assert len(found) >= 8, "the guide lost its code blocks?"
    try:
        for block in found:
            reader.run(block)
    finally:
        for name in [n for n, m in sys.modules.items() if str(getattr(m, "__file__", "") or "").startswith(str(tmp_path))]:
            del sys.modules[name]


def test_the_guide_names_its_tests_and_every_hook():
    text = GUIDE.read_text()
    assert "tests/test_docs.py" in text
    for hook in ("register_generators", "register_discriminators", "register_losses", "register_datasets",
                 "register_metrics"):
        assert f"`{hook}(register)`" in text


def test_the_readme_links_the_guide():
    assert "docs/plugins.md" in (ROOT / "README.md").read_text(), "README.md must link docs/plugins.md"


# --- the checker itself --------------------------------------------------------------------------


def test_output_matching_rules():
    assert matches(["kind name", "generator dilated ... (any size)", "..."],
                   ["kind   name", "generator  dilated  colorkit-dilated 0.1.0  x (any size)", "generator unet"])
    assert not matches(["kind name"], ["kind name", "extra line"])
    assert matches(["...", "2 passed in ..."], ["..  [100%]", "2 passed in 1.20s"])
    assert not matches(["2 passed in ..."], ["1 failed, 1 passed in 1.20s"])


def test_console_blocks_are_split_into_commands():
    block = Block("console", textwrap.dedent("""\
        $ colorkit run --gen a \\
            --epochs 1
        run written
        $ colorkit list
        """), 1)
    assert commands(block) == [("colorkit run --gen a  --epochs 1", ["run written"]), ("colorkit list", [])]
