"""The house rules of colorkit's source, checked on the source itself (``ast``, nothing imported).

* the layers: ``colorkit.kernel`` < ``colorkit.engine`` < ``colorkit.front``; a module imports only
  from its own layer and the layers below (plugins: the kernel only);
* no import cycle between modules (imports inside functions count as much as top-level ones);
* no ``_private`` name of one module used by another (imported or reached as ``module._name``),
  and no ``_private`` module imported from outside its package;
* no ``_private`` attribute of an object reached by anyone but the object itself (``self._x``,
  ``cls._x``, ``super()._x``; never ``other._x``);
* the kernel and the engine name no built-in plugin: no string literal there is the name of a
  component or model a built-in plugin registers (defaults live in ``registry.yaml``);
* no module over the size a reader takes in at once, no function over one screen of jobs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from colorkit.kernel.registry import build_registry, read_registry_file

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"kernel": 0, "engine": 1, "front": 2}
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 100


def _modules() -> dict[str, Path]:
    """Every module of the installed packages, by dotted name, from the source folders."""
    found: dict[str, Path] = {}
    for folder, package in ((ROOT / "core", "colorkit"), (ROOT / "plugins", "colorkit.plugins")):
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


def _package(module: str) -> str:
    return module if MODULES.get(module, Path()).name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` of every colorkit import in ``module``,
    top-level or inside a function; relative imports are resolved."""
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "colorkit"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package(module).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "colorkit":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full, None, node.lineno) if full in MODULES else (base, alias.name, node.lineno))
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    if len(parts) > 1 and parts[1] == "plugins":
        return "plugins"
    return "top"  # colorkit/__init__ and __main__: the entry points above every layer


def _allowed(importer: str, imported: str) -> bool:
    a, b = _layer(importer), _layer(imported)
    if a == "top":
        return True
    if b == "top":
        return imported == "colorkit"  # __version__ and hookimpl; the root imports nothing eagerly
    if a == "plugins":
        return b in ("kernel", "plugins")
    return b != "plugins" and LAYERS[b] <= LAYERS[a]


def test_the_source_tree_is_what_the_test_reads():
    assert {"colorkit.kernel", "colorkit.engine", "colorkit.front", "colorkit.kernel.interfaces",
            "colorkit.engine.training", "colorkit.front.cli", "colorkit.plugins.unet"} <= set(MODULES)
    assert all(_imports(m) for m in ("colorkit.engine.training", "colorkit.front.cli"))


def test_each_layer_imports_only_from_the_layers_below():
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line}: {_layer(m)} imports {target} ({_layer(target)})"
           for m in MODULES for target, _, line in _imports(m) if not _allowed(m, target)]
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_there_is_no_import_cycle():
    graph = {m: sorted({t for t, _, _ in _imports(m) if t in MODULES and t != m}) for m in MODULES}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_crosses_modules():
    bad = []
    for m in MODULES:
        where = MODULES[m].relative_to(ROOT)
        aliases = {}
        for target, name, line in _imports(m):
            if name is not None and _private(name):
                bad.append(f"{where}:{line}: imports {target}.{name}")
            private_module = [p for p in target.split(".") if _private(p)]
            if private_module and not (m.startswith(_package(target) + ".") or m == _package(target)):
                bad.append(f"{where}:{line}: imports the private module {target}")
        for node in ast.walk(TREES[m]):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    full = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
                    if full in MODULES:
                        aliases[alias.asname or alias.name.split(".")[-1]] = full
        for node in ast.walk(TREES[m]):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr)):
                bad.append(f"{where}:{node.lineno}: uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def _private_reaches(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, expression)`` of every ``x._name`` (read, written or deleted) whose ``x`` is
    not ``self``, ``cls`` or ``super()``: an object's private attributes are its own business."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        found.append((node.lineno, node.col_offset, ast.unparse(node)))
    return [(line, expr) for line, _, expr in sorted(found)]


def test_private_reaches_are_found():
    code = ("class A:\n    def f(self, other):\n        self._a = super()._b + other._c\n"
            "        trainer._log({})\n        del x._d\n        return cls._e, y.__dict__, z.public\n")
    assert [expr for _, expr in _private_reaches(ast.parse(code))] == ["other._c", "trainer._log", "x._d"]


def test_no_module_reaches_into_another_objects_private_attributes():
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line}: {expr}" for m, tree in TREES.items()
           for line, expr in _private_reaches(tree)]
    assert not bad, "private attributes of another object (make them public, or pass what is needed):\n" + "\n".join(bad)


def _builtin_names() -> set[str]:
    registry = build_registry(autoload=False)
    names = {c.name for c in registry} | set(registry.models)
    return names | set(read_registry_file().get("plugins", []))


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_kernel_and_engine_name_no_builtin_plugin():
    names = _builtin_names()
    assert {"unet", "conv", "ns_l1", "samples", "mae", "colorkit.plugins.unet"} <= names
    bad = []
    for m, tree in TREES.items():
        if _layer(m) not in ("kernel", "engine"):
            continue
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and node.value in names):
                bad.append(f"{MODULES[m].relative_to(ROOT)}:{node.lineno}: names the built-in plugin {node.value!r}")
    assert not bad, "the kernel and the engine must take these from registry.yaml or the caller:\n" + "\n".join(bad)


def test_modules_and_functions_stay_readable():
    bad = []
    for m, path in MODULES.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            bad.append(f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_MODULE_LINES}); split it by job")
        for node in ast.walk(TREES[m]):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} is {n} lines "
                               f"(at most {MAX_FUNCTION_LINES})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_says_what_it_is(layer):
    doc = ast.get_docstring(TREES[f"colorkit.{layer}"])
    assert doc and len(doc.split()) >= 30, f"core/{layer}/__init__.py needs a one-paragraph docstring"


def test_each_front_package_says_what_it_is_in_its_first_line():
    """``colorkit.front`` is made of sub-packages (the command line, the benchmark suites, the
    Turing test); each ``__init__.py`` opens with a docstring whose first line says what it is."""
    packages = sorted(m for m, path in MODULES.items() if m.startswith("colorkit.front.") and path.name == "__init__.py")
    assert {"colorkit.front.cli", "colorkit.front.bench", "colorkit.front.turing"} <= set(packages)
    for package in packages:
        lines = (ast.get_docstring(TREES[package]) or "").splitlines()
        assert lines and lines[0].strip(), f"{MODULES[package].relative_to(ROOT)} needs a docstring"
        assert len(lines) == 1 or not lines[1].strip(), \
            f"{MODULES[package].relative_to(ROOT)}: the docstring's first line stands alone (a blank line after it)"
