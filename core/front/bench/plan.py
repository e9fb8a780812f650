"""From a suite file to what ``colorkit bench`` trains: the resolved experiment of each entry and
seed, what to install when a plugin is missing, and the one line that says what an invocation will
train and for how long (:mod:`colorkit.front.bench.suite` parses the file)."""

from __future__ import annotations

from typing import Any

from colorkit.front.bench.presets import preset_layer
from colorkit.front.bench.suite import Suite, SuiteExperiment, resolve_roots
from colorkit.kernel.errors import ColorkitError, UnknownNameError, UsageError


def build_experiment(registry: Any, suite: Suite, e: SuiteExperiment, seed: int) -> Any:
    """The resolved experiment of one suite entry and seed (errors name the suite and entry)."""
    from colorkit.kernel.experiment import apply_sets, experiment_defaults, merge_layers, resolve

    where = f"{suite.path}: experiment '{e.name}'"
    trained = suite.experiment(e.source) if e.source else e  # a `from` row: the source's training
    sets = [*trained.sets, *e.sets] if e.source else e.sets
    layers: list[tuple[str, dict[str, Any]]] = [("registry.yaml defaults", experiment_defaults(registry))]
    try:
        if trained.preset:
            layers.append(preset_layer(registry, suite.presets, trained.preset, suite.path))
        layers.append((f"{suite.path}: defaults", suite.defaults))
        layers.append((f"{where} config", resolve_roots(trained.config, suite.path.resolve().parent)))
        merged = merge_layers(layers)
        merged = apply_sets(merged, [*sets, f"train.seed={seed}"])
        if e.description:
            merged["description"] = e.description
        return resolve(registry, merged)
    except ColorkitError as exc:
        msg = str(exc)
        if isinstance(exc, UnknownNameError):
            msg += missing_plugins(suite)
        raise UsageError(msg if msg.startswith(str(suite.path)) else f"{where}: {msg}") from None


def missing_plugins(suite: Suite) -> str:
    """What to install for the suite's plugin packages that are not installed ('' when none)."""
    from importlib import metadata

    missing = []
    for package, command in suite.plugins.items():
        try:
            metadata.distribution(package)
        except metadata.PackageNotFoundError:
            missing.append(f"{package} is not installed: {command}")
    if missing:
        return "; this suite needs plugin packages: " + "; ".join(missing)
    return ("; if it comes from a plugin package, install that package (`colorkit list` shows what is loaded, "
            "and a suite's `plugins` key can name the package and its install command)")

def budget_line(suite: Suite, exps: list[Any], jobs: int) -> str:
    """One line of what a bench invocation will do: runs, budget per run, about how long."""
    budgets, minutes, bounded = set(), 0.0, True
    for exp in exps:
        t = exp.train
        limits = [f"{t.max_steps} steps"] if t.max_steps else []
        if t.max_cpu_minutes or t.max_minutes:
            limit = t.max_cpu_minutes or t.max_minutes
            limits.append(f"{limit:g} {'CPU-' if t.max_cpu_minutes else ''}minutes")
            minutes += limit
        else:
            bounded = False
        budgets.add(" or ".join(limits) if limits else f"{t.epochs} epochs")
    if not exps:
        return "every run is trained already; cached evaluations are reused, missing ones made"
    line = f"{len(exps)} run(s) to train, each for {' / '.join(sorted(budgets))}"
    if minutes and bounded:
        line += f" (at most about {minutes / max(1, jobs):.0f} minutes at {jobs} job(s) side by side)"
    n = suite.protocol.images or suite.protocol.options.get("limit")
    images = f"{n:,} images" if n else "all images"
    return line + f"; then each is evaluated on {images} of the {suite.protocol.split or 'test'} split"
