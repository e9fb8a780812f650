"""Benchmark suite files: parsing and validation (``colorkit bench SUITE.yaml``;
:mod:`~colorkit.front.bench.presets` reads the suite's presets, :mod:`~colorkit.front.bench.plan`
resolves the experiment of each entry and seed, :mod:`~colorkit.front.bench.runner` runs a suite
in the run directories of :mod:`~colorkit.front.bench.rundirs`, :mod:`~colorkit.front.bench.results`
tabulates it).

A suite is a YAML file::

    name: table1-cpu                      # used in titles (default: the file's stem)
    description: ...                      # free text, copied into results.md
    seeds: [0, 1, 2]                      # one run per experiment and seed (train.seed)
    threads: 1                            # torch.set_num_threads for training and evaluation
    jobs: 2                               # runs trained side by side, each in its own process
    checkpoint: last                      # evaluate checkpoints/last.pt (default) or best.pt
    presets_file: presets.yaml            # optional: a presets file, against the suite file's folder only
    presets:                              # optional: the suite's own presets (name: experiment keys)
      mine: {gen: {name: unet, options: {base: 16}}, loss: l1}
    defaults:                             # experiment keys shared by every experiment
      dataset: {name: cifar10, options: {root: ../shared/data/cifar10-jpeg.tar.gz}}
      train: {max_cpu_minutes: 10, batch_size: 64}
    experiments:
      - name: unet-l2                     # [A-Za-z0-9_.-]; the run directories are runs/<name>-s<seed>
        preset: table1-cifar10-unet       # optional: a preset of the suite, else of registry.yaml
        config: {loss: l2, train: {...}}  # optional: experiment keys (as in a --config file)
        set: [gen.base=32]                # optional: --set overrides
        paper: {label: "...", mae: 5.9, accuracy: 24.8}   # optional: the paper's numbers
      - {name: vivid, from: unet-l2, set: [gen.ab_gain=1.5]}   # trains nothing: unet-l2's checkpoints, gen.* changed
    evaluation:
      dataset: cifar10                    # default: the experiments' dataset (with its options)
      options: {keep_gray: true}          # dataset options for the evaluation
      split: test                         # default: the dataset's test split (val is for model selection)
      images: 10000                       # a seeded sample of N spread over the split (null: all)
      metrics: [mae, accuracy, psnr]
      batch_size: 250
    figures:                              # optional; every figure is on by default
      figure1: true
      figure5: {rows: 8, experiments: [unet-l2, gan-ns_l1], seed: 0}
      curves: true
    plugins:                              # optional: plugin packages the suite needs, with their install
      colorkit-strided-unet: pip install --no-build-isolation -e examples/strided_unet   # command
    turing:                               # optional: a visual Turing test study's fooling rates
      study: studies/cifar10              # a study directory of `colorkit turing`
      models: {unet-l2: unet-l2-s0}       # experiment: the study's label for its model

Layering, lowest first: the experiment defaults of colorkit, the experiment's ``preset`` (the
suite's, which may not shadow one of ``registry.yaml``, else ``registry.yaml``'s), the suite's
``defaults`` (the suite-wide budget and data win over a preset's), the experiment's ``config``,
then ``set``; ``train.seed`` is set per seed last. A ``from`` row is an earlier row's training
with ``gen.*`` sets on top; its runs are derived, not trained (``runner.ensure_derived``).

Relative paths (a dataset ``root``) are resolved against the suite file's directory, then the
repository root (the nearest folder above with ``pyproject.toml`` or ``.git``), then the current
directory: the first that exists wins (the repository-root reading when none does yet), so
``../shared/data/x.tar.gz`` in ``benchmarks/suite.yaml`` is found beside the repository.

Outputs under ``--out DIR``: ``runs/<experiment>-s<seed>/`` (each a colorkit run directory,
plus ``eval-<checkpoint>.json``, the cached evaluation), ``results.csv``, ``results.md``,
``results.json`` and ``figures/*.png``. A rerun trains only what is missing: a run whose
``metrics.jsonl`` has an ``end`` event is reused, an interrupted one resumes from its
``checkpoints/last.pt``, and a cached evaluation is reused when its protocol is unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colorkit.front.bench.presets import SuitePreset, suite_presets
from colorkit.kernel.errors import UsageError
from colorkit.kernel.files import load_yaml

SUITE_KEYS = {"name", "description", "seeds", "threads", "jobs", "checkpoint", "defaults", "experiments", "evaluation",
              "figures", "turing", "plugins", "presets", "presets_file"}
EXPERIMENT_KEYS = {"name", "preset", "config", "set", "paper", "description", "evaluation", "from"}
EXPERIMENT_EVAL_KEYS = {"dataset", "options", "split", "images"}
EVAL_KEYS = {"dataset", "options", "split", "images", "metrics", "batch_size", "device"}
FIGURE_KEYS = {"figure1", "figure5", "figure6", "curves"}
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


# -- the suite file -----------------------------------------------------------------------------


@dataclass
class SuiteExperiment:
    name: str
    preset: str | None
    config: dict[str, Any]
    sets: list[str]
    paper: dict[str, Any] | None
    description: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)  # overrides of the suite's protocol
    source: str | None = None  # ``from``: the earlier row whose checkpoints this row scores


@dataclass
class Protocol:
    dataset: str | None
    options: dict[str, Any]
    split: str | None
    images: int | None
    metrics: list[str]
    batch_size: int
    device: str

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "options": self.options, "split": self.split, "images": self.images,
                "metrics": list(self.metrics), "batch_size": self.batch_size, "device": self.device}


@dataclass
class Suite:
    path: Path
    name: str
    description: str
    seeds: list[int]
    threads: int | None
    checkpoint: str
    defaults: dict[str, Any]
    experiments: list[SuiteExperiment]
    protocol: Protocol
    figures: dict[str, Any] = field(default_factory=dict)
    jobs: int = 1
    #: ``{"study": folder, "models": {experiment: the study's model label}}`` or None
    turing: dict[str, Any] | None = None
    #: plugin packages the suite needs: ``{distribution name: its install command}``
    plugins: dict[str, str] = field(default_factory=dict)
    #: the suite's presets (``presets`` and ``presets_file``): ``{name: SuitePreset}``
    presets: dict[str, SuitePreset] = field(default_factory=dict)

    def experiment(self, name: str) -> SuiteExperiment:
        for e in self.experiments:
            if e.name == name:
                return e
        raise KeyError(name)

    def protocol_for(self, e: SuiteExperiment) -> Protocol:
        """The suite's protocol with the experiment's ``evaluation`` overrides."""
        if not e.evaluation:
            return self.protocol
        return dataclasses.replace(self.protocol, **e.evaluation)

    @property
    def metrics(self) -> list[str]:
        return self.protocol.metrics


def _err(path: Path, key: str, message: str) -> UsageError:
    return UsageError(f"{path}: '{key}' {message}")


def _unknown(path: Path, where: str, data: dict[str, Any], known: set[str]) -> None:
    extra = sorted(set(data) - known)
    if extra:
        k = extra[0]
        close = difflib.get_close_matches(k, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(f"{path}: unknown key '{where}{k}'{hint}; known keys: {', '.join(sorted(known))}")


def repo_root(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return None


def resolve_path(value: str, suite_dir: Path) -> str:
    """A relative path: against the suite's folder, the repository root, then the current
    directory; the first that exists wins (the repository-root reading when none does, else the
    suite-folder one)."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    bases = [suite_dir]
    root = repo_root(suite_dir)
    if root is not None:
        bases.append(root)
    bases.append(Path.cwd())
    for base in bases:
        candidate = (base / p).resolve()
        if candidate.exists():
            return str(candidate)
    return str(((root or suite_dir) / p).resolve())


def resolve_roots(data: dict[str, Any], suite_dir: Path) -> dict[str, Any]:
    """Resolve ``dataset.options.root`` of an experiment dict."""
    data = copy.deepcopy(data)
    ds = data.get("dataset")
    if isinstance(ds, dict) and isinstance(ds.get("options"), dict) and isinstance(ds["options"].get("root"), str):
        ds["options"]["root"] = resolve_path(ds["options"]["root"], suite_dir)
    return data


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file; every mistake is a one-line error naming file and key."""
    p = Path(path)
    data = _read_yaml(p)
    suite_dir = p.resolve().parent
    seeds, threads, jobs, checkpoint, defaults = _run_settings(p, data)
    raw_exps = data.get("experiments")
    if not isinstance(raw_exps, list) or not raw_exps:
        raise _err(p, "experiments", "must be a non-empty list")
    experiments: list[SuiteExperiment] = []
    for i, item in enumerate(raw_exps):
        experiments.append(_experiment(p, f"experiments[{i}]", item, experiments, suite_dir))
    protocol = _protocol(p, data.get("evaluation"), suite_dir)
    figures = _figures(p, data.get("figures") or {}, experiments, seeds)
    return Suite(p, str(data.get("name") or p.stem), str(data.get("description") or "").strip(), list(seeds),
                 threads, checkpoint, resolve_roots(defaults, suite_dir), experiments, protocol, figures, jobs,
                 _turing_key(p, data.get("turing"), experiments, suite_dir), _plugins_key(p, data.get("plugins")),
                 suite_presets(p, data, suite_dir))


def _plugins_key(p: Path, plugins: Any) -> dict[str, str]:
    if plugins is None:
        return {}
    if not isinstance(plugins, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                                for k, v in plugins.items()):
        raise _err(p, "plugins", "must map each plugin package's name to its install command")
    return dict(plugins)


def _read_yaml(p: Path) -> dict[str, Any]:
    data = load_yaml(p, "suite file")
    if not isinstance(data, dict):
        raise UsageError(f"{p}: expected a mapping with keys {', '.join(sorted(SUITE_KEYS))}")
    _unknown(p, "", data, SUITE_KEYS)
    return data


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _run_settings(p: Path, data: dict[str, Any]) -> tuple[list[int], int | None, int, str, dict[str, Any]]:
    """``seeds``, ``threads``, ``jobs``, ``checkpoint`` and ``defaults``, checked."""
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(_is_int(s, 0) for s in seeds):
        raise _err(p, "seeds", "must be a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise _err(p, "seeds", "lists a seed twice")
    threads = data.get("threads")
    if threads is not None and not _is_int(threads, 1):
        raise _err(p, "threads", "must be an integer >= 1")
    jobs = data.get("jobs", 1)
    if not _is_int(jobs, 1):
        raise _err(p, "jobs", "must be an integer >= 1")
    checkpoint = data.get("checkpoint", "last")
    if checkpoint not in ("last", "best"):
        raise _err(p, "checkpoint", f"must be last or best, got {checkpoint!r}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise _err(p, "defaults", "must be a mapping of experiment keys")
    return seeds, threads, jobs, checkpoint, defaults


def _experiment(p: Path, where: str, item: Any, earlier: list[SuiteExperiment], suite_dir: Path) -> SuiteExperiment:
    """One entry of ``experiments``, checked against the entries before it."""
    if not isinstance(item, dict):
        raise _err(p, where, "must be a mapping with a 'name'")
    _unknown(p, f"{where}.", item, EXPERIMENT_KEYS)
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _err(p, f"{where}.name", "must be a name of letters, digits, '_', '.', '-'")
    if any(e.name == name for e in earlier):
        raise _err(p, f"{where}.name", f"'{name}' is used twice")
    preset = item.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise _err(p, f"{where}.preset", "must be a preset name")
    config = item.get("config") or {}
    if not isinstance(config, dict):
        raise _err(p, f"{where}.config", "must be a mapping of experiment keys")
    sets = item.get("set") or []
    if isinstance(sets, str):
        sets = [sets]
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise _err(p, f"{where}.set", "must be a list of KEY=VALUE strings")
    if item.get("from") is not None:
        _derived_row(p, where, item, sets, earlier)
    paper = item.get("paper")
    if paper is not None:
        if not isinstance(paper, dict):
            raise _err(p, f"{where}.paper", "must be a mapping like {label: ..., mae: 5.9}")
        for k, v in paper.items():
            if k != "label" and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                raise _err(p, f"{where}.paper.{k}", "must be a number")
    return SuiteExperiment(name, preset, config, list(sets), paper, str(item.get("description") or ""),
                           _evaluation_overrides(p, where, item.get("evaluation") or {}, suite_dir), item.get("from"))


def _derived_row(p: Path, where: str, item: dict[str, Any], sets: list[str], earlier: list[SuiteExperiment]) -> None:
    """A ``from`` row: an earlier trained row, and ``gen.*`` sets only (nothing else it could train)."""
    source, names = item["from"], [e.name for e in earlier if e.source is None]
    if not isinstance(source, str) or source not in names:
        raise _err(p, f"{where}.from", f"must name an earlier row that trains ({', '.join(names)}), got {source!r}")
    for key in [k for k in ("preset", "config") if item.get(k)]:
        raise _err(p, f"{where}.{key}", f"cannot go with 'from' (the row uses the training of '{source}')")
    if not sets or not all("=" in s and s.strip().startswith("gen.") for s in sets):
        raise _err(p, f"{where}.set", "of a 'from' row must be generator options (gen.KEY=VALUE) that change "
                                      "inference only, such as gen.ab_gain=1.5")


def _evaluation_overrides(p: Path, where: str, ev_over: Any, suite_dir: Path) -> dict[str, Any]:
    """An experiment's ``evaluation`` overrides of the suite's protocol."""
    if not isinstance(ev_over, dict):
        raise _err(p, f"{where}.evaluation", "must be a mapping (dataset, options, split, images)")
    _unknown(p, f"{where}.evaluation.", ev_over, EXPERIMENT_EVAL_KEYS)
    ev_over = dict(ev_over)
    if "images" in ev_over and ev_over["images"] is not None and not _is_int(ev_over["images"], 1):
        raise _err(p, f"{where}.evaluation.images", "must be an integer >= 1 (or null for the whole split)")
    if "options" in ev_over:
        ev_over["options"] = _dataset_options(p, f"{where}.evaluation.options", ev_over["options"], suite_dir)
    for key in ("dataset", "split"):
        if ev_over.get(key) is not None and not isinstance(ev_over[key], str):
            raise _err(p, f"{where}.evaluation.{key}", "must be a name")
    return ev_over


def _dataset_options(p: Path, key: str, options: Any, suite_dir: Path) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise _err(p, key, "must be a mapping of dataset options")
    options = dict(options)
    if isinstance(options.get("root"), str):
        options["root"] = resolve_path(options["root"], suite_dir)
    return options


def _protocol(p: Path, ev: Any, suite_dir: Path) -> Protocol:
    """The suite's ``evaluation`` section."""
    if not isinstance(ev, dict):
        raise _err(p, "evaluation", "must be a mapping (dataset, options, split, images, metrics)")
    _unknown(p, "evaluation.", ev, EVAL_KEYS)
    metrics = ev.get("metrics")
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise _err(p, "evaluation.metrics", "must be a non-empty list of metric names")
    images = ev.get("images")
    if images is not None and not _is_int(images, 1):
        raise _err(p, "evaluation.images", "must be an integer >= 1 (or null for the whole split)")
    batch_size = ev.get("batch_size", 100)
    if not _is_int(batch_size, 1):
        raise _err(p, "evaluation.batch_size", "must be an integer >= 1")
    options = _dataset_options(p, "evaluation.options", ev.get("options") or {}, suite_dir)
    for key in ("dataset", "split", "device"):
        if ev.get(key) is not None and not isinstance(ev.get(key), str):
            raise _err(p, f"evaluation.{key}", "must be a name")
    return Protocol(ev.get("dataset"), options, ev.get("split"), images, list(dict.fromkeys(metrics)),
                    batch_size, str(ev.get("device") or "auto"))


def _figures(p: Path, figures: Any, experiments: list[SuiteExperiment], seeds: list[int]) -> dict[str, Any]:
    """The ``figures`` section: which figures, of which experiments and seed."""
    if not isinstance(figures, dict):
        raise _err(p, "figures", "must be a mapping")
    _unknown(p, "figures.", figures, FIGURE_KEYS)
    for fig in ("figure5", "figure6"):
        f5 = figures.get(fig)
        if not isinstance(f5, dict):
            continue
        _unknown(p, f"figures.{fig}.", f5, {"experiments", "rows", "seed"})
        names = f5.get("experiments")
        if names is not None:
            if not isinstance(names, list):
                raise _err(p, f"figures.{fig}.experiments", "must be a list of experiment names")
            for n in names:
                if not any(e.name == n for e in experiments):
                    raise _err(p, f"figures.{fig}.experiments", f"names '{n}', which is not an experiment of the suite")
        rows = f5.get("rows", 8)
        if not isinstance(rows, int) or rows < 1:
            raise _err(p, f"figures.{fig}.rows", "must be an integer >= 1")
        if "seed" in f5 and f5["seed"] not in seeds:
            raise _err(p, f"figures.{fig}.seed", "must be one of the suite's seeds")
    return figures


def _turing_key(p: Path, turing: Any, experiments: list[SuiteExperiment], suite_dir: Path) -> dict[str, Any] | None:
    if turing is None:
        return None
    if not isinstance(turing, dict):
        raise _err(p, "turing", "must be a mapping with 'study' and 'models'")
    _unknown(p, "turing.", turing, {"study", "models"})
    if not isinstance(turing.get("study"), str):
        raise _err(p, "turing.study", "must be the path of a `colorkit turing` study directory")
    models = turing.get("models")
    if not isinstance(models, dict) or not models or not all(isinstance(v, str) for v in models.values()):
        raise _err(p, "turing.models", "must map experiment names to the study's model labels")
    for name in models:
        if not any(e.name == name for e in experiments):
            raise _err(p, "turing.models", f"names '{name}', which is not an experiment of the suite")
    return {"study": resolve_path(turing["study"], suite_dir), "models": dict(models)}
