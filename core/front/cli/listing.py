"""``colorkit list``: what the loaded plugins provide."""

from __future__ import annotations

import json
from typing import Any

from colorkit.kernel.errors import UnknownNameError
from colorkit.kernel.options import describe_options
from colorkit.kernel.kinds import COMPONENT_KINDS
from colorkit.kernel.registry import KINDS, Registry

#: What ``colorkit list KIND`` also takes: each kind's plural and option prefix (``generators``, ``gen``).
ALIASES = {**{alias: k.name for k in COMPONENT_KINDS for alias in (k.plural, k.prefix) if alias != k.name},
           "presets": "preset", "models": "model"}


def collect(registry: Registry, kind: str | None = None, roles: bool = True) -> dict[str, Any]:
    """What ``colorkit list`` shows; ``roles``: also each dataset's splits, which imports the
    dataset's code (a plugin registered by reference is otherwise not imported)."""
    kind = ALIASES.get(kind, kind) if kind else None
    if kind is not None and kind not in KINDS and kind not in ("preset", "model"):
        raise UnknownNameError(f"unknown kind '{kind}'; use one of {', '.join([*KINDS, 'preset', 'model'])}")
    rows = []
    for comp in registry:
        if kind in (None, comp.kind):
            row = {"kind": comp.kind, "name": comp.name, "package": comp.package, "version": comp.version,
                   "description": comp.description, "options": describe_options(comp.options)}
            split_roles = _split_roles(comp.load()) if roles and comp.kind == "dataset" else None
            if split_roles is not None:
                row["splits"] = split_roles
            rows.append(row)
    presets = []
    if kind in (None, "preset"):
        for name in sorted(registry.presets):
            presets.append({"kind": "preset", "name": name, "package": "colorkit",
                            "description": str(registry.presets[name].get("description", ""))})
    models = []
    if kind in (None, "model"):
        default = (registry.defaults or {}).get("model")
        for name in sorted(registry.models):
            entry = registry.models[name]
            models.append({"kind": "model", "name": name, "package": entry.package, "version": entry.version,
                           "description": entry.description + (" (default)" if name == default else ""),
                           "sha256": entry.sha256, "card": entry.card_text()})
    failed = [{"plugin": f.plugin, "package": f.package, "error": f.error} for f in registry.failed]
    return {"components": rows, "presets": presets, "models": models, "failed": failed}


def _split_roles(factory: Any) -> dict[str, Any] | None:
    """The splits of a dataset class and the one each role reads (``None`` for a factory
    function, whose class is only known once built)."""
    if not isinstance(factory, type):
        return None
    names = ("train_split", "val_split", "test_split")
    if not all(hasattr(factory, n) for n in (*names, "splits")):
        return None
    return {"splits": list(factory.splits), **{n.split("_")[0]: getattr(factory, n) for n in names}}


def list_components(registry: Registry, kind: str | None, as_json: bool = False, show_options: bool = False) -> None:
    data = collect(registry, kind, roles=as_json or show_options)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=max(Console().width, 120))
    table = Table(show_lines=False, box=None, pad_edge=False)
    for col in ("kind", "name", "package", "description"):
        table.add_column(col, overflow="fold")
    for row in data["components"]:
        pkg = row["package"] + (f" {row['version']}" if row["version"] else "")
        table.add_row(row["kind"], row["name"], pkg, row["description"])
        if show_options:
            roles = row.get("splits")
            if roles:
                table.add_row("", "  (splits)", ", ".join(roles["splits"]),
                              f"trains on {roles['train']}; validates and picks best.pt on {roles['val']}; "
                              f"eval and bench report on {roles['test']}")
            for o in row["options"]:
                table.add_row("", f"  {o['name']}", f"{o['type']} = {o['default']!r}", o["help"])
    for row in data["presets"]:
        table.add_row("preset", row["name"], row["package"], row["description"])
    for row in data["models"]:
        pkg = row["package"] + (f" {row['version']}" if row["version"] else "")
        table.add_row("model", row["name"], pkg, row["description"])
    console.print(table)
    if show_options:  # the model cards, after the table
        for row in data["models"]:
            if row["card"]:
                console.print(f"\n[bold]model {escape(row['name'])}[/bold] (sha256 {row['sha256']})", highlight=False)
                console.print(escape(row["card"]), highlight=False, markup=True)
    for f in data["failed"]:
        text = escape(f"plugin {f['plugin']} (package {f['package']}): {f['error']}")
        console.print(f"[red]failed[/red] {text}", highlight=False, soft_wrap=True)  # one line, however long
