"""The presets a suite brings: its own (``presets:``) and those of a presets file it names
(``presets_file:``, a path against the suite file's folder). A presets file holds one key,
``presets:``, a mapping of names to experiment configs, as in ``registry.yaml``;
``benchmarks/presets.yaml`` keeps there the presets that only the benchmarks use. An experiment's
``preset`` is looked up among these first, then in ``registry.yaml`` (:func:`preset_layer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colorkit.kernel.errors import UsageError
from colorkit.kernel.files import load_yaml


@dataclass(frozen=True)
class SuitePreset:
    """One preset of a suite: its experiment keys and the file that defines it."""

    config: dict[str, Any]
    source: Path


def read_presets_file(path: Path) -> dict[str, SuitePreset]:
    """The presets of a presets file (a mapping with one key, ``presets``)."""
    data = load_yaml(path, "presets file")
    if not isinstance(data, dict) or set(data) != {"presets"}:
        raise UsageError(f"{path}: expected a mapping with one key, 'presets' (preset names to experiment configs)")
    return _presets(path, "presets", data["presets"])


def _presets(path: Path, key: str, presets: Any) -> dict[str, SuitePreset]:
    if not isinstance(presets, dict):
        raise UsageError(f"{path}: '{key}' must map preset names to experiment configs")
    for name, config in presets.items():
        if not isinstance(name, str) or not name.strip():
            raise UsageError(f"{path}: '{key}' has a preset name {name!r} that is not a name")
        if not isinstance(config, dict):
            raise UsageError(f"{path}: '{key}.{name}' must be a mapping of experiment keys (as in a --config file)")
    return {name: SuitePreset(dict(config), path) for name, config in presets.items()}


def suite_presets(path: Path, data: dict[str, Any], suite_dir: Path) -> dict[str, SuitePreset]:
    """The presets of the suite file ``path`` (parsed as ``data``): its ``presets_file``'s, then its
    own ``presets``; a name in both is an error."""
    found: dict[str, SuitePreset] = {}
    file = data.get("presets_file")
    if file is not None:
        if not isinstance(file, str) or not file.strip():
            raise UsageError(f"{path}: 'presets_file' must be the path of a presets file (against the suite's folder)")
        found = read_presets_file((suite_dir / Path(file).expanduser()).resolve())
    own = _presets(path, "presets", data["presets"]) if data.get("presets") is not None else {}
    for name in sorted(set(own) & set(found)):
        raise UsageError(f"{path}: 'presets.{name}' is also a preset of its presets_file {found[name].source}; "
                         "rename one of them")
    return {**found, **own}


def check_not_a_benchmark_preset(registry: Any, name: str) -> None:
    """A one-line error when ``name`` is no preset of ``registry`` but one that ``registry.yaml``
    lists under ``benchmark_presets``: a preset that lives in a presets file beside the suites."""
    if name in registry.presets:
        return
    from colorkit.kernel.registry import read_registry_file

    for file, names in (read_registry_file().get("benchmark_presets") or {}).items():
        if name in names:
            raise UsageError(f"preset '{name}' is a benchmark preset: it lives in {file} of the colorkit repository, "
                             "beside the suites that use it; name that file as a suite's presets_file, or copy the "
                             "preset's keys into a YAML file and pass --config FILE")


def preset_layer(registry: Any, presets: dict[str, SuitePreset], name: str, where: Path) -> tuple[str, dict[str, Any]]:
    """The merge layer of the preset ``name`` of the suite file ``where``: one of the suite's
    ``presets`` (which must not shadow one of ``registry.yaml``), else ``registry.yaml``'s."""
    own = presets.get(name)
    if own is None:
        check_not_a_benchmark_preset(registry, name)
        return f"preset '{name}'", dict(registry.preset(name))
    if name in registry.presets:
        raise UsageError(f"{where}: preset '{name}' of {own.source} is also a preset of registry.yaml; rename it "
                         "in the suite's presets")
    return f"preset '{name}' of {own.source}", dict(own.config)
