"""Third-party plugins: installed packages found through the ``colorkit`` entry-point group.

"Installed" here means what ``importlib.metadata`` sees: a ``NAME-VERSION.dist-info`` folder
(``METADATA`` and ``entry_points.txt``) on ``sys.path``, next to the plugin module. Each test
writes such throwaway packages into its own temporary folder and puts that folder on
``sys.path`` (in-process runs through typer's test runner) or on ``PYTHONPATH`` (the real
console script in a subprocess). pip would write the same two files; faking them keeps the
suite fast and offline.

The strided U-Net example (``examples/strided_unet``) is used as installed when it is (CI runs
``pip install ./examples/strided_unet`` first); otherwise it is made visible in the same way,
from its own ``pyproject.toml`` entry points and ``src/`` folder, so its checks always run.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.metadata as md
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import nn

import colorkit
from colorkit.kernel.errors import PluginError, UnknownNameError
from colorkit.kernel.interfaces import Generator
from colorkit.kernel.registry import ALLOW_ENV, DISABLE_ENV, FailedPlugin, build_registry
from colorkit.kernel.files import read_jsonl
from colorkit.kernel.testing import check_component, check_plugin

import cli_helpers
from cli_helpers import one_line_error


def invoke(args: list[str]):
    """The CLI with plugins loaded as an installed colorkit loads them (entry points too)."""
    return cli_helpers.invoke(args, obj=False)


ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "strided_unet"
EXAMPLE_DIST = "colorkit-strided-unet"

#: The short training run CI does after installing the example (``.ci/run`` uses these flags).
EXAMPLE_RUN = [
    "run", "--gen", "strided_unet", "--disc", "patch", "--loss", "ns_l1", "--dataset", "samples",
    "--epochs", "1", "--batch-size", "4",
    "--set", "gen.encoder_widths=8,16,32", "--set", "gen.decoder_widths=16,8", "--set", "disc.widths=8,16",
    "--set", "dataset.size=32", "--set", "dataset.crops_per_epoch=16", "--set", "dataset.eval_crops=4", "-q",
]


# A small generator written as a third party would: colorkit's public API only.
GOOD_PLUGIN = '''
from dataclasses import dataclass

from torch import nn

import colorkit
from colorkit.kernel.interfaces import Generator
from colorkit.kernel.options import opt


@dataclass(frozen=True)
class TinyOptions:
    width: int = opt(4, "hidden channels")


class Tiny(Generator):
    def __init__(self, options):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, options.width, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(options.width, 2, 3, padding=1), nn.Tanh())

    def forward(self, l):
        return self.net(l)


@colorkit.hookimpl
def register_generators(register):
    register("GEN_NAME", Tiny, options=TinyOptions, description="a tiny third-party generator")
'''

MISSING_DEPENDENCY = "colorkit_tp_missing_dependency"
BROKEN_IMPORT = f"import colorkit\nimport {MISSING_DEPENDENCY}\n"
IMPORT_ERROR = f"ModuleNotFoundError: No module named '{MISSING_DEPENDENCY}'"


# --- throwaway installed packages -------------------------------------------------------------


def write_dist(site: Path, name: str, version: str, entry_points: dict[str, str], files: dict[str, str]) -> None:
    """What ``pip install`` leaves behind: the modules and a ``.dist-info`` with entry points."""
    info = site / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[colorkit]\n{lines}")
    for rel, text in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    importlib.invalidate_caches()


class Site:
    """A temporary site-packages folder on ``sys.path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def good(self, dist: str = "colorkit-tp-good", module: str = "colorkit_tp_good", gen: str = "tp_good",
             ep: str = "good") -> None:
        write_dist(self.path, dist, "1.2.3", {ep: module}, {f"{module}.py": GOOD_PLUGIN.replace("GEN_NAME", gen)})

    def broken(self, source: str = BROKEN_IMPORT, dist: str = "colorkit-tp-broken", ep: str = "broken") -> None:
        write_dist(self.path, dist, "0.1.0", {ep: "colorkit_tp_broken"}, {"colorkit_tp_broken.py": source})


def _forget_modules_under(folder: Path, keep: set[str]) -> None:
    """Unimport what was imported from ``folder`` since ``keep = set(sys.modules)`` was taken."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name not in keep and file and Path(file).resolve().is_relative_to(folder.resolve()):
            del sys.modules[name]


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    # tests/conftest.py turns autoload off for the rest of the suite; these tests need it on.
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    before = set(sys.modules)
    yield Site(folder)
    _forget_modules_under(folder, before)




def failed_lines(output: str) -> list[str]:
    """The lines about failed plugins of this test's packages (others may be installed)."""
    return [line for line in output.splitlines() if line.startswith("failed") and "colorkit-tp-" in line]


def our_failures(reg) -> list[FailedPlugin]:
    return [f for f in reg.failed if f.package.startswith("colorkit-tp-")]


# --- a plugin that fails ----------------------------------------------------------------------


def test_a_plugin_that_fails_to_import_is_listed_as_failed_and_everything_else_works(site, tmp_path):
    site.good()
    site.broken()
    reg = build_registry()
    assert our_failures(reg) == [FailedPlugin("colorkit-tp-broken:broken", "colorkit-tp-broken", IMPORT_ERROR)]
    assert {"unet", "tp_good"} <= set(reg.names("generator"))
    assert reg.get("generator", "tp_good").package == "colorkit-tp-good"

    result = invoke(["list"])
    assert result.exit_code == 0, result.output
    assert re.search(r"generator\s+tp_good\s+colorkit-tp-good 1\.2\.3\s+a tiny third-party generator", result.output)
    assert re.search(r"generator\s+unet\s+colorkit", result.output)
    # The failure is one line (never wrapped, even when longer than the terminal): plugin, package, error.
    assert failed_lines(result.output) == [
        f"failed plugin colorkit-tp-broken:broken (package colorkit-tp-broken): {IMPORT_ERROR}"
    ]
    data = json.loads(invoke(["list", "--json"]).output)
    assert {"plugin": "colorkit-tp-broken:broken", "package": "colorkit-tp-broken", "error": IMPORT_ERROR} in data["failed"]

    # Training with the healthy third-party generator is unaffected.
    out = tmp_path / "run"
    result = invoke(["run", "--gen", "tp_good", "--disc", "none", "--loss", "l2", "--dataset", "samples",
                     "--set", "dataset.size=16", "--set", "dataset.crops_per_epoch=4", "--set", "dataset.eval_crops=2",
                     "--epochs", "1", "--batch-size", "4", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "environment.json").read_text())["plugins"]["generator"]["package"] == "colorkit-tp-good"


def test_a_multi_line_error_is_shown_on_one_line(site):
    site.broken('raise RuntimeError("cannot find the weights\\nsee the second line for details")\n')
    assert our_failures(build_registry())[0].error == "RuntimeError: cannot find the weights"
    result = invoke(["list", "generator"])
    assert result.exit_code == 0, result.output
    assert failed_lines(result.output) == [
        "failed plugin colorkit-tp-broken:broken (package colorkit-tp-broken): RuntimeError: cannot find the weights"
    ]


def test_running_a_component_of_a_failed_package_names_the_package_and_the_error(site, tmp_path):
    site.broken()
    line = one_line_error(invoke(["run", "--gen", "tp_broken_gen", "--out", str(tmp_path / "r")]), code=2)
    assert "unknown generator 'tp_broken_gen'" in line
    assert "colorkit-tp-broken" in line and IMPORT_ERROR in line
    with pytest.raises(UnknownNameError, match="colorkit-tp-broken.*No module named"):
        build_registry().get("discriminator", "tp_broken_disc")


def test_a_plugin_whose_hooks_are_broken_is_named_too(site, tmp_path):
    # Imports fine, but one hook raises and another is misspelled: both are recorded, not fatal.
    site.broken(
        "import colorkit\n"
        "@colorkit.hookimpl\n"
        "def register_generators(register):\n"
        "    raise KeyError('gen_weights_url')\n",
        dist="colorkit-tp-hook-raises", ep="raises",
    )
    write_dist(site.path, "colorkit-tp-misspelled", "0.2", {"misspelled": "colorkit_tp_misspelled"}, {
        "colorkit_tp_misspelled.py": "import colorkit\n@colorkit.hookimpl\ndef register_generator(register):\n    pass\n",
    })
    reg = build_registry()
    errors = {f.package: f.error for f in our_failures(reg)}
    assert errors["colorkit-tp-hook-raises"] == "KeyError: 'gen_weights_url'"
    assert "register_generator" in errors["colorkit-tp-misspelled"]
    line = one_line_error(invoke(["run", "--gen", "tp_gen", "--out", str(tmp_path / "r")]), code=2)
    assert "colorkit-tp-hook-raises" in line and "KeyError: 'gen_weights_url'" in line
    assert "colorkit-tp-misspelled" in line


# --- name clashes and environment variables ----------------------------------------------------


def test_two_packages_registering_one_name_is_an_error_naming_both(site):
    site.good("colorkit-tp-twin-a", "colorkit_tp_twin_a", gen="tp_twin", ep="twin_a")
    site.good("colorkit-tp-twin-b", "colorkit_tp_twin_b", gen="tp_twin", ep="twin_b")
    with pytest.raises(PluginError) as err:
        build_registry()
    message = str(err.value)
    assert "generator 'tp_twin' is registered twice" in message
    assert "colorkit-tp-twin-a" in message and "colorkit-tp-twin-b" in message
    line = one_line_error(invoke(["list"]), code=1)
    assert "colorkit-tp-twin-a" in line and "colorkit-tp-twin-b" in line and ALLOW_ENV in line


def test_the_allow_list_resolves_a_clash(site, monkeypatch):
    site.good("colorkit-tp-twin-a", "colorkit_tp_twin_a", gen="tp_twin", ep="twin_a")
    site.good("colorkit-tp-twin-b", "colorkit_tp_twin_b", gen="tp_twin", ep="twin_b")
    monkeypatch.setenv(ALLOW_ENV, "colorkit-tp-twin-b")
    assert build_registry().get("generator", "tp_twin").package == "colorkit-tp-twin-b"


def test_disable_autoload_loads_no_entry_point(site, monkeypatch, tmp_path):
    site.good()
    site.broken()
    monkeypatch.setenv(DISABLE_ENV, "1")
    reg = build_registry()
    assert "tp_good" not in reg.names("generator") and our_failures(reg) == []
    assert "unet" in reg.names("generator")
    result = invoke(["list"])
    assert result.exit_code == 0 and "tp_good" not in result.output and not failed_lines(result.output)
    one_line_error(invoke(["run", "--gen", "tp_good", "--out", str(tmp_path / "r")]), code=2)
    # Only a true-ish value disables.
    monkeypatch.setenv(DISABLE_ENV, "0")
    assert "tp_good" in build_registry().names("generator")


@pytest.mark.parametrize("allow", ["good", "colorkit-tp-good", " good , no-such-plugin "])
def test_the_allow_list_takes_entry_point_or_distribution_names(site, monkeypatch, allow):
    site.good()
    site.good("colorkit-tp-other", "colorkit_tp_other", gen="tp_other", ep="other")
    site.broken()
    monkeypatch.setenv(ALLOW_ENV, allow)
    reg = build_registry()
    assert "tp_good" in reg.names("generator")
    assert "tp_other" not in reg.names("generator")
    assert our_failures(reg) == []  # the broken package is not even imported
    assert "unet" in reg.names("generator")  # built-ins are always loaded


def test_the_allow_list_can_name_a_broken_package(site, monkeypatch):
    site.good()
    site.broken()
    monkeypatch.setenv(ALLOW_ENV, "colorkit-tp-broken")
    reg = build_registry()
    assert "tp_good" not in reg.names("generator")
    assert [f.package for f in our_failures(reg)] == ["colorkit-tp-broken"]


# --- the strided U-Net example package ----------------------------------------------------------


def _example_pyproject() -> dict:
    return tomllib.loads((EXAMPLE / "pyproject.toml").read_text())


def _installed_example() -> md.Distribution | None:
    try:
        return md.distribution(EXAMPLE_DIST)
    except md.PackageNotFoundError:
        return None


@pytest.fixture(scope="module")
def strided_example(tmp_path_factory):
    """The example as an installed package: the real installation, or an equivalent one."""
    mp = pytest.MonkeyPatch()
    paths: list[Path] = []
    dist = _installed_example()
    if dist is None:
        project = _example_pyproject()["project"]
        site = tmp_path_factory.mktemp("example-site")
        write_dist(site, project["name"], project["version"], project["entry-points"]["colorkit"], {})
        paths = [site, EXAMPLE / "src"]
        for path in reversed(paths):
            mp.syspath_prepend(str(path))
    before = set(sys.modules)
    yield SimpleNamespace(installed=dist is not None, paths=paths)
    mp.undo()
    if paths:
        _forget_modules_under(EXAMPLE / "src", before)


@pytest.fixture
def autoload(monkeypatch):
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    monkeypatch.delenv(ALLOW_ENV, raising=False)


def test_the_example_is_a_complete_package_of_its_own():
    data = _example_pyproject()
    project = data["project"]
    assert project["name"] == EXAMPLE_DIST
    assert any(re.match(r"colorkit\b", dep) for dep in project["dependencies"])
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["entry-points"]["colorkit"] == {"strided_unet": "colorkit_strided_unet"}
    assert (EXAMPLE / "README.md").is_file()
    assert (EXAMPLE / "src" / "colorkit_strided_unet" / "__init__.py").is_file()
    tests = list((EXAMPLE / "tests").glob("test_*.py"))
    assert tests and all("colorkit.kernel.testing" in t.read_text() for t in tests)


PUBLIC_API = {"colorkit", "colorkit.kernel.interfaces", "colorkit.kernel.options", "colorkit.kernel.color", "colorkit.kernel.testing",
              "colorkit.kernel.errors"}


def test_the_example_imports_only_colorkits_public_api():
    used: dict[str, set[str]] = {}
    for path in (EXAMPLE / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                         if f"{node.module}.{a.name}" in PUBLIC_API | {"colorkit.plugins"}]
            for name in names:
                if name.split(".")[0] == "colorkit":
                    used.setdefault(name, set()).add(path.name)
    assert used, "the example does not import colorkit at all?"
    private = {name: files for name, files in used.items() if name not in PUBLIC_API}
    assert not private, f"the example imports non-public colorkit modules: {private}"


def test_the_example_is_listed_with_its_package(strided_example, autoload):
    reg = build_registry()
    version = _example_pyproject()["project"]["version"]
    for kind, name in (("generator", "strided_unet"), ("discriminator", "patch")):
        comp = reg.get(kind, name)
        assert (comp.package, comp.version) == (EXAMPLE_DIST, version)
    result = invoke(["list"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"generator\s+strided_unet\s+{EXAMPLE_DIST} {re.escape(version)}\s+\S", result.output)
    assert re.search(rf"discriminator\s+patch\s+{EXAMPLE_DIST} {re.escape(version)}\s+\S", result.output)
    assert f"plugin package {EXAMPLE_DIST} {version}" in invoke(["--version"]).output.splitlines()
    options = json.loads(invoke(["list", "generator", "--json"]).output)
    row = next(r for r in options["components"] if r["name"] == "strided_unet")
    assert {o["name"] for o in row["options"]} >= {"encoder_widths", "decoder_widths", "output"}


@pytest.mark.parametrize("kind,name,small", [
    ("generator", "strided_unet", {"encoder_widths": [8, 16, 32], "decoder_widths": [16, 8, 8], "first_stride": 2}),
    ("discriminator", "patch", {"widths": [8, 16]}),
])
def test_colorkits_contract_checks_pass_for_the_example(strided_example, autoload, tmp_path, kind, name, small):
    comp = build_registry().get(kind, name)
    check_component(comp, tmp_path)  # the defaults: the authors' CIFAR-10 networks
    check_component(comp, tmp_path, options=small)


def test_the_example_trains_as_ci_runs_it(strided_example, autoload, tmp_path):
    out = tmp_path / "run"
    result = invoke([*EXAMPLE_RUN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["gen"]["name"] == "strided_unet" and config["gen"]["options"]["encoder_widths"] == [8, 16, 32]
    assert config["disc"]["name"] == "patch" and config["loss"]["name"] == "ns_l1"
    plugins = json.loads((out / "environment.json").read_text())["plugins"]
    assert plugins["generator"]["package"] == plugins["discriminator"]["package"] == EXAMPLE_DIST
    steps = [r for r in read_jsonl(out / "metrics.jsonl") if r.get("event") == "step"]
    assert steps and all(math.isfinite(r[k]) for r in steps for k in ("d_total", "g_total", "gan", "l1"))
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["plugins"]["generator"]["package"] == EXAMPLE_DIST


def test_the_console_script_lists_the_example_and_survives_a_broken_plugin(strided_example, site):
    # The real `colorkit` command in a fresh interpreter: the example and a broken package side by
    # side (on PYTHONPATH), and a narrow terminal.
    site.broken()
    result = _console(["list"], extra_path=[site.path, *strided_example.paths])
    assert result.returncode == 0, result.stderr
    assert re.search(rf"generator\s+strided_unet\s+{EXAMPLE_DIST}", result.stdout)
    assert re.search(rf"discriminator\s+patch\s+{EXAMPLE_DIST}", result.stdout)
    assert re.search(r"generator\s+unet\s+colorkit", result.stdout)
    assert failed_lines(result.stdout) == [
        f"failed plugin colorkit-tp-broken:broken (package colorkit-tp-broken): {IMPORT_ERROR}"
    ]


def test_the_examples_registration_module_imports_no_torch(strided_example):
    # What colorkit imports at every start holds options and hooks only; the networks come by reference.
    done = _python("import sys, colorkit_strided_unet; print('torch' in sys.modules)", strided_example.paths)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]


def test_colorkit_list_with_the_example_loaded_imports_no_torch(strided_example):
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('torch' in sys.modules))\n"
            "from colorkit.front.cli import main\n"
            "sys.argv = ['colorkit', 'list']\n"
            "main()\n")
    done = _python(code, strided_example.paths, {ALLOW_ENV: EXAMPLE_DIST})
    assert done.returncode == 0, done.stderr
    assert re.search(rf"generator\s+strided_unet\s+{EXAMPLE_DIST}", done.stdout)
    assert done.stdout.split()[-1] == "False"


# --- colorkit.kernel.testing catches what a plugin author gets wrong ------------------------------------


class _PluginWith:
    """A throwaway plugin object registering one generator class under the name ``g``."""

    def __init__(self, gen_class, options=None):
        self.gen_class, self.options = gen_class, options

    @colorkit.hookimpl
    def register_generators(self, register):
        register("g", self.gen_class, options=self.options)


def _conv_gen(**attrs):
    class Gen(Generator):
        def __init__(self, options):
            super().__init__()
            self.net = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, l):  # noqa: E741
            return torch.tanh(self.net(l))

    for key, value in attrs.items():
        setattr(Gen, key, value)
    return Gen


def test_check_plugin_passes_a_good_plugin_and_returns_its_components():
    (comp,) = check_plugin(_PluginWith(_conv_gen()))
    assert (comp.kind, comp.name) == ("generator", "g")


def test_check_plugin_reports_a_misspelled_hook():
    class Misspelled:
        @colorkit.hookimpl
        def register_generator(self, register):
            pass

    with pytest.raises(AssertionError, match="failed to register.*register_generator"):
        check_plugin(Misspelled())


def test_check_plugin_reports_a_plugin_that_registers_nothing():
    with pytest.raises(AssertionError, match="registered no component"):
        check_plugin(object())


def test_check_plugin_reports_a_generator_that_is_not_fully_convolutional():
    def forward(self, l):  # noqa: E741 - ignores the width of its input
        return torch.tanh(self.net(l[..., : l.shape[-2]]))

    with pytest.raises(AssertionError, match="generator 'g'.*fully convolutional"):
        check_plugin(_PluginWith(_conv_gen(forward=forward)))


def test_check_plugin_reports_options_that_a_saved_config_cannot_hold():
    @dataclasses.dataclass(frozen=True)
    class PathOptions:
        weights: Path = dataclasses.field(default=Path("weights.pt"), metadata={"help": "a file"})

    with pytest.raises(AssertionError, match="unsupported option type Path"):
        check_plugin(_PluginWith(_conv_gen(), PathOptions))


def test_check_plugin_rejects_options_for_components_it_does_not_register():
    with pytest.raises(AssertionError, match="does not register: nope"):
        check_plugin(_PluginWith(_conv_gen()), options={"nope": {}})


# --- helpers -------------------------------------------------------------------------------------


def _console(args: list[str], extra_path: list[Path]) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("colorkit")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from colorkit.front.cli import main; main()"]
    # a narrow terminal: a failure line must still be one line
    return _subprocess([*command, *args], extra_path, {"COLUMNS": "80"})


def _python(code: str, extra_path: list[Path], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return _subprocess([sys.executable, "-c", code], extra_path, env)


def _subprocess(argv: list[str], extra_path: list[Path], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``argv`` in a fresh process, with entry-point plugins on and ``extra_path`` on ``PYTHONPATH``."""
    full = {k: v for k, v in os.environ.items() if k not in (DISABLE_ENV, ALLOW_ENV)}
    full["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    full.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=full, timeout=120)
