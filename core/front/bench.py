"""Benchmark suites: train a list of experiments over several seeds, evaluate every run on one
protocol, and tabulate mean +- std over seeds (``colorkit bench SUITE.yaml``).

A suite is a YAML file::

    name: table1-cpu                      # used in titles (default: the file's stem)
    description: ...                      # free text, copied into results.md
    seeds: [0, 1, 2]                      # one run per experiment and seed (train.seed)
    threads: 1                            # torch.set_num_threads for training and evaluation
    jobs: 2                               # runs trained side by side, each in its own process
    checkpoint: last                      # evaluate checkpoints/last.pt (default) or best.pt
    defaults:                             # experiment keys shared by every experiment
      dataset: {name: cifar10, options: {root: ../shared/data/cifar10-jpeg.tar.gz}}
      train: {max_cpu_minutes: 10, batch_size: 64}
    experiments:
      - name: unet-l2                     # [A-Za-z0-9_.-]; the run directories are runs/<name>-s<seed>
        preset: table1-cifar10-unet       # optional: a preset of registry.yaml
        config: {loss: l2, train: {...}}  # optional: experiment keys (as in a --config file)
        set: [gen.base=32]                # optional: --set overrides
        paper: {label: "...", mae: 5.9, accuracy: 24.8}   # optional: the paper's numbers
    evaluation:
      dataset: cifar10                    # default: the experiments' dataset (with its options)
      options: {keep_gray: true}          # dataset options for the evaluation
      split: test                         # default: the dataset's test split (val is for model selection)
      images: 10000                       # the first N images of the split (null: all)
      metrics: [mae, accuracy, psnr]
      batch_size: 250
    figures:                              # optional; every figure is on by default
      figure1: true
      figure5: {rows: 8, experiments: [unet-l2, gan-ns_l1], seed: 0}
      curves: true
    turing:                               # optional: a visual Turing test study's fooling rates
      study: studies/cifar10              # a study directory of `colorkit turing`
      models: {unet-l2: unet-l2-s0}       # experiment: the study's label for its model

Layering, lowest first: the experiment defaults of colorkit, the experiment's ``preset``, the
suite's ``defaults`` (the suite-wide budget and data win over a preset's), the experiment's
``config``, then ``set``; ``train.seed`` is set per seed last.

Relative paths (a dataset ``root``) are resolved against the suite file's directory, then
against the repository root (the nearest folder above the suite with ``pyproject.toml`` or
``.git``), then against the current directory: the first that exists is used (the repository
root reading when none exists yet). So ``../shared/data/x.tar.gz`` in ``benchmarks/suite.yaml``
is found beside the repository.

Outputs under ``--out DIR``: ``runs/<experiment>-s<seed>/`` (each a colorkit run directory,
plus ``eval-<checkpoint>.json``, the cached evaluation), ``results.csv``, ``results.md``,
``results.json`` and ``figures/*.png``. A rerun trains only what is missing: a run whose
``metrics.jsonl`` has an ``end`` event is reused, an interrupted one resumes from its
``checkpoints/last.pt``, and a cached evaluation is reused when its protocol is unchanged.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
import re
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from colorkit.kernel.errors import ColorkitError, UsageError

SUITE_KEYS = {"name", "description", "seeds", "threads", "jobs", "checkpoint", "defaults", "experiments", "evaluation",
              "figures", "turing"}
EXPERIMENT_KEYS = {"name", "preset", "config", "set", "paper", "description", "evaluation"}
EXPERIMENT_EVAL_KEYS = {"dataset", "options", "split", "images"}
EVAL_KEYS = {"dataset", "options", "split", "images", "metrics", "batch_size", "device"}
FIGURE_KEYS = {"figure1", "figure5", "figure6", "curves"}
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
EVAL_FORMAT = 2  # 2: L*a*b* generators scored on the input L* (as colorize writes them)


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
    import difflib

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


def _resolve_roots(data: dict[str, Any], suite_dir: Path) -> dict[str, Any]:
    """Resolve ``dataset.options.root`` of an experiment dict."""
    data = copy.deepcopy(data)
    ds = data.get("dataset")
    if isinstance(ds, dict) and isinstance(ds.get("options"), dict) and isinstance(ds["options"].get("root"), str):
        ds["options"]["root"] = resolve_path(ds["options"]["root"], suite_dir)
    return data


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file; every mistake is a one-line error naming file and key."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{p}: suite file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{p}: is a folder, not a suite file") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{p}: expected a mapping with keys {', '.join(sorted(SUITE_KEYS))}")
    _unknown(p, "", data, SUITE_KEYS)
    suite_dir = p.resolve().parent

    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise _err(p, "seeds", "must be a non-empty list of integers >= 0")
    if len(set(seeds)) != len(seeds):
        raise _err(p, "seeds", "lists a seed twice")
    threads = data.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise _err(p, "threads", "must be an integer >= 1")
    jobs = data.get("jobs", 1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise _err(p, "jobs", "must be an integer >= 1")
    checkpoint = data.get("checkpoint", "last")
    if checkpoint not in ("last", "best"):
        raise _err(p, "checkpoint", f"must be last or best, got {checkpoint!r}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise _err(p, "defaults", "must be a mapping of experiment keys")

    raw_exps = data.get("experiments")
    if not isinstance(raw_exps, list) or not raw_exps:
        raise _err(p, "experiments", "must be a non-empty list")
    experiments: list[SuiteExperiment] = []
    for i, item in enumerate(raw_exps):
        where = f"experiments[{i}]"
        if not isinstance(item, dict):
            raise _err(p, where, "must be a mapping with a 'name'")
        _unknown(p, f"{where}.", item, EXPERIMENT_KEYS)
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _err(p, f"{where}.name", "must be a name of letters, digits, '_', '.', '-'")
        if any(e.name == name for e in experiments):
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
        paper = item.get("paper")
        if paper is not None:
            if not isinstance(paper, dict):
                raise _err(p, f"{where}.paper", "must be a mapping like {label: ..., mae: 5.9}")
            for k, v in paper.items():
                if k != "label" and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                    raise _err(p, f"{where}.paper.{k}", "must be a number")
        ev_over = item.get("evaluation") or {}
        if not isinstance(ev_over, dict):
            raise _err(p, f"{where}.evaluation", "must be a mapping (dataset, options, split, images)")
        _unknown(p, f"{where}.evaluation.", ev_over, EXPERIMENT_EVAL_KEYS)
        ev_over = dict(ev_over)
        if "images" in ev_over and ev_over["images"] is not None and (
                not isinstance(ev_over["images"], int) or isinstance(ev_over["images"], bool) or ev_over["images"] < 1):
            raise _err(p, f"{where}.evaluation.images", "must be an integer >= 1 (or null for the whole split)")
        if "options" in ev_over:
            if not isinstance(ev_over["options"], dict):
                raise _err(p, f"{where}.evaluation.options", "must be a mapping of dataset options")
            ev_over["options"] = dict(ev_over["options"])
            if isinstance(ev_over["options"].get("root"), str):
                ev_over["options"]["root"] = resolve_path(ev_over["options"]["root"], suite_dir)
        for key in ("dataset", "split"):
            if ev_over.get(key) is not None and not isinstance(ev_over[key], str):
                raise _err(p, f"{where}.evaluation.{key}", "must be a name")
        experiments.append(SuiteExperiment(name, preset, config, list(sets), paper, str(item.get("description") or ""),
                                           ev_over))

    ev = data.get("evaluation")
    if not isinstance(ev, dict):
        raise _err(p, "evaluation", "must be a mapping (dataset, options, split, images, metrics)")
    _unknown(p, "evaluation.", ev, EVAL_KEYS)
    metrics = ev.get("metrics")
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise _err(p, "evaluation.metrics", "must be a non-empty list of metric names")
    images = ev.get("images")
    if images is not None and (not isinstance(images, int) or isinstance(images, bool) or images < 1):
        raise _err(p, "evaluation.images", "must be an integer >= 1 (or null for the whole split)")
    batch_size = ev.get("batch_size", 100)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise _err(p, "evaluation.batch_size", "must be an integer >= 1")
    ev_options = ev.get("options") or {}
    if not isinstance(ev_options, dict):
        raise _err(p, "evaluation.options", "must be a mapping of dataset options")
    ev_options = dict(ev_options)
    if isinstance(ev_options.get("root"), str):
        ev_options["root"] = resolve_path(ev_options["root"], suite_dir)
    for key in ("dataset", "split", "device"):
        if ev.get(key) is not None and not isinstance(ev.get(key), str):
            raise _err(p, f"evaluation.{key}", "must be a name")
    protocol = Protocol(ev.get("dataset"), ev_options, ev.get("split"), images, list(dict.fromkeys(metrics)),
                        batch_size, str(ev.get("device") or "auto"))

    figures = data.get("figures") or {}
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

    return Suite(p, str(data.get("name") or p.stem), str(data.get("description") or "").strip(), list(seeds),
                 threads, checkpoint, _resolve_roots(defaults, suite_dir), experiments, protocol, figures, jobs,
                 _turing_key(p, data.get("turing"), experiments, suite_dir))


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


def turing_column(suite: Suite) -> tuple[str, dict[str, str]] | None:
    """The header and per-experiment cells of the fooling-rate column, from the suite's study."""
    if suite.turing is None:
        return None
    from colorkit.front.turing import summarize

    summary = summarize(suite.turing["study"])
    rates = {row["condition"]: row for row in summary["models"]}
    cells = {}
    for experiment, label in suite.turing["models"].items():
        row = rates.get(label)
        if row is None:
            raise UsageError(f"{suite.path}: turing.models: the study {suite.turing['study']} has no model "
                             f"'{label}' (it has {', '.join(sorted(rates)) or 'none'})")
        cells[experiment] = ("–" if row["rate"] is None else
                             f"{100 * row['rate']:.1f} ({100 * row['ci95'][0]:.0f}-{100 * row['ci95'][1]:.0f})")
    original = summary["original"]
    cells[""] = ("–" if original["rate"] is None else
                 f"{100 * original['rate']:.1f} ({100 * original['ci95'][0]:.0f}-{100 * original['ci95'][1]:.0f})")
    head = f"fooled (%, 95% CI; {summary['participants']} people, {summary['answers']} answers) ↑"
    return head, cells


def build_experiment(registry: Any, suite: Suite, e: SuiteExperiment, seed: int) -> Any:
    """The resolved experiment of one suite entry and seed (errors name the suite and entry)."""
    from colorkit.kernel.experiment import DEFAULTS, merge_layers, resolve, apply_sets

    where = f"{suite.path}: experiment '{e.name}'"
    layers: list[tuple[str, dict[str, Any]]] = [("defaults", DEFAULTS)]
    try:
        if e.preset:
            layers.append((f"preset '{e.preset}'", dict(registry.preset(e.preset))))
        layers.append((f"{suite.path}: defaults", suite.defaults))
        layers.append((f"{where} config", _resolve_roots(e.config, suite.path.resolve().parent)))
        merged = merge_layers(layers)
        merged = apply_sets(merged, [*e.sets, f"train.seed={seed}"])
        if e.description:
            merged["description"] = e.description
        return resolve(registry, merged)
    except ColorkitError as exc:
        msg = str(exc)
        raise UsageError(msg if msg.startswith(str(suite.path)) else f"{where}: {msg}") from None


# -- running ------------------------------------------------------------------------------------


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line of a killed process
    return out


def run_finished(run_dir: Path) -> bool:
    return any(e.get("event") == "end" for e in read_events(run_dir))


def config_hash(run_dir: Path) -> str:
    return hashlib.sha256((run_dir / "config.yaml").read_bytes()).hexdigest()


def run_name(experiment: str, seed: int) -> str:
    return f"{experiment}-s{seed}"


def _log(log: Callable[[str], None] | None, text: str) -> None:
    if log is not None:
        log(f"[{time.strftime('%H:%M:%S')}] {text}")


def _saved_config_diff(registry: Any, exp: Any, run_dir: Path) -> list[str]:
    """How the run's saved config differs from ``exp``, both resolved by the current code (so
    an option added to colorkit later, at its default, is no difference; as ``--resume`` does)."""
    from colorkit.kernel.experiment import experiment_from_dict
    from colorkit.engine.training import _config_diff

    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        old = experiment_from_dict(registry, saved, str(run_dir / "config.yaml"))
    except ColorkitError as exc:
        return [f"config.yaml does not resolve: {exc}"]
    return _config_diff(old.to_dict(), exp.to_dict())


def ensure_trained(registry: Any, exp: Any, run_dir: Path, log: Callable[[str], None] | None = None) -> str:
    """Train ``exp`` into ``run_dir`` unless done; returns ``reused``, ``resumed`` or ``trained``."""
    from colorkit.engine.training import train

    if (run_dir / "config.yaml").is_file():
        diff = _saved_config_diff(registry, exp, run_dir)
        if diff:
            raise UsageError(
                f"{run_dir}: holds a run of a different configuration than the suite now asks for "
                f"({', '.join(diff[:3])}); move it away or use another --out"
            )
        if run_finished(run_dir):
            return "reused"
        if (run_dir / "checkpoints" / "last.pt").is_file():
            _log(log, f"resume {run_dir.name}")
            train(registry, exp, progress=False, resume=run_dir)
            return "resumed"
        # killed before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    elif run_dir.exists():
        shutil.rmtree(run_dir)
    _log(log, f"train {run_dir.name}")
    train(registry, exp, run_dir, progress=False)
    return "trained"


def _protocol_key(protocol: Protocol, ckpt: Path) -> dict[str, Any]:
    return {"format": EVAL_FORMAT, "protocol": protocol.to_dict(), "checkpoint": ckpt.name,
            "checkpoint_bytes": ckpt.stat().st_size, "checkpoint_mtime_ns": ckpt.stat().st_mtime_ns}


def ensure_evaluated(registry: Any, suite: Suite, run_dir: Path, log: Callable[[str], None] | None = None,
                     protocol: Protocol | None = None) -> dict[str, Any]:
    """Evaluate the run's checkpoint on the protocol (default: the suite's), cached as
    ``eval-<checkpoint>.json``."""
    prot = protocol or suite.protocol
    from colorkit.engine.evaluation import evaluate

    ckpt = run_dir / "checkpoints" / f"{suite.checkpoint}.pt"
    cache = run_dir / f"eval-{suite.checkpoint}.json"
    if not ckpt.is_file():
        if cache.is_file():  # checkpoints deleted (e.g. the committed copy): keep the cached result
            return json.loads(cache.read_text(encoding="utf-8"))
        raise UsageError(f"{run_dir}: no checkpoints/{suite.checkpoint}.pt to evaluate")
    key = _protocol_key(prot, ckpt)
    if cache.is_file():
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            return cached
    _log(log, f"evaluate {run_dir.name}")
    sets = [f"dataset.{k}={_set_value(v)}" for k, v in prot.options.items()]
    # One row per run: the image colorize writes (an L*a*b* generator's own-L* variant is eval's extra).
    result, _, _ = evaluate([ckpt], registry=registry, dataset=prot.dataset, split=prot.split, metrics=prot.metrics,
                            limit=prot.images, batch_size=prot.batch_size, device=prot.device, sets=sets,
                            own_l_rows=False)
    data = result.to_dict()
    data["key"] = key
    from colorkit.engine.runio import atomic_write_bytes

    atomic_write_bytes(cache, json.dumps(data, indent=2, allow_nan=False).encode())
    return data


def _set_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


# -- results ------------------------------------------------------------------------------------


def eval_set_label(ev: dict[str, Any]) -> str:
    """``cifar10/test, 10000 images``: the images an evaluation (and its floor) used."""
    return f"{(ev.get('dataset') or {}).get('name')}/{ev.get('split')}, {ev.get('images')} images"


def collect(suite: Suite, out: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """One row per finished and evaluated run, and per evaluation set (dataset, split, images)
    the "no colour" floor values and an evaluation's header (``{label: {"floor", "header"}}``)."""
    rows: list[dict[str, Any]] = []
    sets: dict[str, dict[str, Any]] = {}
    for seed in suite.seeds:
        for e in suite.experiments:
            run_dir = out / "runs" / run_name(e.name, seed)
            cache = run_dir / f"eval-{suite.checkpoint}.json"
            if not (run_finished(run_dir) and cache.is_file()):
                continue
            ev = json.loads(cache.read_text(encoding="utf-8"))
            env = json.loads((run_dir / "environment.json").read_text(encoding="utf-8"))
            end = [x for x in read_events(run_dir) if x.get("event") == "end"][-1]
            model = ev["rows"][1]
            label = eval_set_label(ev)
            sets.setdefault(label, {"floor": ev["rows"][0]["values"], "header": ev})
            row = {
                "experiment": e.name, "seed": seed, "config_sha256": config_hash(run_dir),
                "colorkit": env.get("colorkit"), "torch": env.get("torch"), "device": env.get("gpu") or env.get("device"),
                "threads": env.get("torch_threads"),
                "wall_seconds": end.get("train_seconds"), "cpu_seconds": end.get("cpu_seconds"),
                "images_seen": end.get("images"), "steps": end.get("step"), "epochs": model.get("epoch"),
                "checkpoint": f"runs/{run_dir.name}/checkpoints/{suite.checkpoint}.pt",
                "eval_set": label, "eval_images": ev.get("images"), "eval_seconds": ev.get("seconds"),
            }
            for m in suite.metrics:
                v = model["values"].get(m)
                row[m] = float("nan") if v is None else float(v)
            rows.append(row)
    return rows, sets


def csv_columns(suite: Suite) -> list[str]:
    return ["experiment", "seed", "config_sha256", "colorkit", "torch", "device", "threads", "wall_seconds",
            "cpu_seconds", "images_seen", "steps", "epochs", "checkpoint", "eval_set", "eval_images", "eval_seconds",
            *suite.metrics]


def write_csv(suite: Suite, rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=csv_columns(suite), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (_fmt_csv(v) if isinstance(v, float) else v) for k, v in r.items()})
    _write_text(path, buf.getvalue())


def _fmt_csv(v: float) -> str:
    return "nan" if not math.isfinite(v) else repr(round(v, 6))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return mean, std


def summarise(suite: Suite, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per experiment: n seeds, mean and std of every metric and of the budget columns."""
    out = []
    for e in suite.experiments:
        mine = [r for r in rows if r["experiment"] == e.name]
        if not mine:
            out.append({"experiment": e.name, "n": 0, "seeds": []})
            continue
        s: dict[str, Any] = {"experiment": e.name, "n": len(mine), "seeds": [r["seed"] for r in mine],
                             "eval_set": mine[0]["eval_set"]}
        for key in [*suite.metrics, "steps", "images_seen", "cpu_seconds", "wall_seconds", "epochs"]:
            vals = [float(r[key]) for r in mine if r.get(key) not in (None, "")]
            s[key] = mean_std(vals)
        out.append(s)
    return out


def _fmt_num(v: float, digits: int = 2) -> str:
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}"


METRIC_DIGITS = {"mae": 2, "rmse": 2, "accuracy": 1, "psnr": 2, "ssim": 3, "colorfulness": 2,
                 "colorfulness_gap": 2, "auc": 1}


def _metric_info(sets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    for v in sets.values():
        return v["header"].get("metrics") or {}
    return {}


def results_table(suite: Suite, summary: list[dict[str, Any]], sets: dict[str, dict[str, Any]]) -> str:
    """The markdown table: one row per experiment (mean ± std over seeds), the "no colour" floor
    of each evaluation set, and the paper's numbers where the suite gives them."""
    metrics = suite.metrics
    info = _metric_info(sets)
    several = len(sets) > 1
    heads = []
    for m in metrics:
        mi = info.get(m, {})
        arrow = "↑" if mi.get("higher_is_better", True) else "↓"
        unit = f" ({mi['unit']})" if mi.get("unit") else ""
        heads.append(f"{m}{unit} {arrow}")
    turing = turing_column(suite)
    extra = (lambda name: f" {turing[1].get(name, '')} |") if turing else (lambda name: "")
    if turing:
        heads.append(turing[0])
    lead = "| experiment | " + ("evaluated on | " if several else "") + "seeds | steps | images seen | "
    lines = [lead + " | ".join(heads) + " |", "|---|" + ("---|" if several else "") + "---|---|---|" + "---|" * len(heads)]
    blank = " | ".join("" for _ in metrics)
    for s in summary:
        if s["n"] == 0:
            lines.append(f"| {s['experiment']} | " + ("| " if several else "")
                         + f"0 of {len(suite.seeds)} (not run yet) | | | {blank} |" + extra(s["experiment"]))
            continue
        cells = []
        for m in metrics:
            mean, std = s[m]
            d = METRIC_DIGITS.get(m, 3)
            cells.append(f"{_fmt_num(mean, d)} ± {_fmt_num(std, d)}")
        where = f"{s['eval_set']} | " if several else ""
        lines.append(f"| {s['experiment']} | {where}{s['n']} of {len(suite.seeds)} | {s['steps'][0]:.0f} "
                     f"| {s['images_seen'][0]:,.0f} | " + " | ".join(cells) + " |" + extra(s["experiment"]))
    for label, v in sets.items():
        floor = v["floor"]
        cells = [_fmt_num(float(floor[m]) if floor.get(m) is not None else float("nan"), METRIC_DIGITS.get(m, 3))
                 for m in metrics]
        name = "*no colour (floor: L\\* kept, a\\* = b\\* = 0)*"
        if several:
            lines.append(f"| {name} | {label} | – | – | – | " + " | ".join(cells) + " |" + extra("-"))
        else:
            lines.append(f"| {name} | – | – | – | " + " | ".join(cells) + " |" + extra("-"))
    if turing:
        lines.append("| *original photos (the share judged real)* | " + ("| " if several else "") + "– | – | – | "
                     + blank + " |" + extra(""))
    for e in suite.experiments:
        if e.paper:
            cells = ["" if e.paper.get(m) is None else f"*{e.paper[m]}*" for m in metrics]
            label = e.paper.get("label") or f"paper: {e.name}"
            lines.append(f"| *{label}* | " + ("| " if several else "") + "| | | " + " | ".join(cells) + " |"
                         + extra("-"))
    return "\n".join(lines) + "\n"


def protocol_text(suite: Suite, sets: dict[str, dict[str, Any]]) -> list[str]:
    """The evaluation protocol and the metric definitions, as markdown lines."""
    parts: list[str] = []
    for label, v in sets.items():
        h = v["header"]
        ds = h.get("dataset") or {}
        opts = {k: val for k, val in (ds.get("options") or {}).items() if k not in ("root", "cache")}
        parts.append(f"Protocol: dataset `{ds.get('name')}` ({ds.get('package', '')}; options "
                     f"{', '.join(f'{k}={val}' for k, val in opts.items())}), split `{h.get('split')}`, the first "
                     f"{h.get('images')} images, the same for every run and for the floor; evaluation batch "
                     f"{h.get('batch_size')} on {h.get('device')}; metrics {', '.join(suite.metrics)}.")
        parts.append("")
    info = _metric_info(sets)
    if info:
        parts += ["| metric | unit | better | definition |", "|---|---|---|---|"]
        for m in suite.metrics:
            mi = info.get(m, {})
            definition = " ".join(str(mi.get("definition") or mi.get("description") or "").split())
            parts.append(f"| {m} | {mi.get('unit', '')} | {'higher' if mi.get('higher_is_better', True) else 'lower'} "
                         f"| {definition.replace('|', chr(92) + '|')} |")
    return parts


def per_run_table(suite: Suite, rows: list[dict[str, Any]]) -> list[str]:
    metrics = suite.metrics
    parts = ["| run | config sha256 | device | threads | train wall s | train CPU s | steps | images | "
             + " | ".join(metrics) + " |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(metrics)]
    for r in rows:
        vals = " | ".join(_fmt_num(float(r[m]), METRIC_DIGITS.get(m, 3)) for m in metrics)
        wall = _fmt_num(float(r["wall_seconds"]) if r["wall_seconds"] not in (None, "") else float("nan"), 0)
        cpu = _fmt_num(float(r["cpu_seconds"]) if r["cpu_seconds"] not in (None, "") else float("nan"), 0)
        parts.append(f"| {r['experiment']}-s{r['seed']} | `{str(r['config_sha256'])[:12]}` | {r['device']} | {r['threads']} "
                     f"| {wall} | {cpu} | {r['steps']} | {r['images_seen']} | {vals} |")
    return parts


def write_markdown(suite: Suite, out: Path, rows: list[dict[str, Any]], sets: dict[str, dict[str, Any]],
                   figures: list[str]) -> str:
    summary = summarise(suite, rows)
    total = len(suite.seeds) * len(suite.experiments)
    parts = [f"# Suite {suite.name}", ""]
    if suite.description:
        parts += [suite.description, ""]
    parts += [f"{len(rows)} of {total} runs finished and evaluated "
              f"({len(suite.experiments)} experiments x seeds {', '.join(map(str, suite.seeds))}). "
              f"Values: mean ± sample standard deviation over the finished seeds, checkpoint "
              f"`{suite.checkpoint}.pt` of each run.", ""]
    parts.append(results_table(suite, summary, sets))
    parts += protocol_text(suite, sets)
    parts += ["", "Per run (results.csv has every column):", ""] + per_run_table(suite, rows)
    if figures:
        parts += ["", "Figures:", ""] + [f"![{Path(f).stem}](figures/{Path(f).name})" for f in figures]
    text = "\n".join(parts) + "\n"
    _write_text(out / "results.md", text)
    return text


def _write_text(path: Path, text: str) -> None:
    """Atomic: parallel workers of one suite rewrite the same tables as their runs finish."""
    from colorkit.engine.runio import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def write_results(suite: Suite, out: Path, figures: list[str] | None = None) -> list[dict[str, Any]]:
    """Rewrite results.csv, results.md and results.json from the runs under ``out``."""
    rows, sets = collect(suite, out)
    write_csv(suite, rows, out / "results.csv")
    if figures is None:
        fig_dir = out / "figures"
        figures = sorted(str(p) for p in fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    write_markdown(suite, out, rows, sets, figures)
    summary = summarise(suite, rows)

    def public(prot: Protocol) -> dict[str, Any]:
        d = prot.to_dict()
        d["options"] = {k: v for k, v in d["options"].items() if k != "root"}
        return d

    blob = {"suite": suite.name, "suite_file": suite.path.name, "description": suite.description,
            "seeds": suite.seeds, "checkpoint": suite.checkpoint,
            "protocol": public(suite.protocol),
            "experiment_protocols": {e.name: public(suite.protocol_for(e)) for e in suite.experiments if e.evaluation},
            "eval_sets": {label: {"floor": v["floor"], "dataset": (v["header"].get("dataset") or {}).get("name"),
                                  "split": v["header"].get("split"), "images": v["header"].get("images")}
                          for label, v in sets.items()},
            "metrics": _metric_info(sets),
            "summary": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()} for s in summary],
            "paper": {e.name: e.paper for e in suite.experiments if e.paper},
            "descriptions": {e.name: e.description for e in suite.experiments}}
    _write_text(out / "results.json", json.dumps(blob, indent=2, allow_nan=True, default=str) + "\n")
    return rows


# -- the whole suite ----------------------------------------------------------------------------


def _run_workers(suite: Suite, out: Path, todo: list[tuple[str, int]], jobs: int,
                 log: Callable[[str], None] | None) -> list[str]:
    """Train and evaluate ``todo`` (experiment, seed) pairs, ``jobs`` worker processes at a
    time, in order; returns the failures. Each worker is ``colorkit bench SUITE --only NAME
    --seeds SEED --jobs 1 --no-figures`` on the same output folder (one run directory each)."""
    import subprocess
    import sys

    base = [sys.executable, "-m", "colorkit", "bench", str(suite.path), "--out", str(out), "--jobs", "1",
            "--no-figures"]
    pending = list(todo)
    running: dict[Any, tuple[str, float]] = {}
    failed: list[str] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name, seed = pending.pop(0)
                _log(log, f"worker: {run_name(name, seed)} ({len(running) + 1} of {jobs} running)")
                proc = subprocess.Popen([*base, "--only", name, "--seeds", str(seed)])
                running[proc] = (run_name(name, seed), time.perf_counter())
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                run, t0 = running.pop(proc)
                if proc.returncode == 130:  # Ctrl-C in the worker: its run is saved and resumable
                    raise KeyboardInterrupt
                if proc.returncode != 0:
                    failed.append(f"{run}: worker exited with code {proc.returncode} (its last line above says why)")
                    _log(log, f"FAILED {run}: worker exit code {proc.returncode}")
                else:
                    _log(log, f"worker done: {run} in {time.perf_counter() - t0:.0f} s")
    finally:  # Ctrl-C reaches the workers too (one process group); let them save and exit
        for proc in running:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    return failed


def run_suite(suite_path: str | Path, out: str | Path | None = None, registry: Any = None,
              log: Callable[[str], None] | None = print, figures: bool = True,
              only_results: bool = False, seeds: list[int] | None = None,
              only: list[str] | None = None, jobs: int | None = None) -> list[dict[str, Any]]:
    """Train what is missing, evaluate, and write results.csv, results.md and the figures.

    Runs go seed by seed (every experiment at seed 0 first), so an interrupted suite has its
    first seeds complete. ``only_results`` rewrites the tables and figures from what exists;
    ``seeds`` and ``only`` (experiment names) restrict what is trained and evaluated now (the
    tables always show every finished run). ``jobs`` (default: the suite's ``jobs``) runs that
    many runs side by side, each in a ``colorkit bench`` worker process of its own (which loads
    the installed plugins, not ``registry``); the tables and figures are written here at the end.
    """
    import torch

    suite = load_suite(suite_path)
    out_dir = Path(out) if out is not None else Path("bench") / suite.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if registry is None:
        from colorkit.kernel.registry import build_registry

        registry = build_registry()
    if suite.threads:
        torch.set_num_threads(suite.threads)
    # validate every experiment before the first run starts
    for seed in seeds or []:
        if seed not in suite.seeds:
            raise UsageError(f"--seeds {seed}: not a seed of {suite.path} ({', '.join(map(str, suite.seeds))})")
    for name in only or []:
        if not any(e.name == name for e in suite.experiments):
            raise UsageError(f"--only {name}: not an experiment of {suite.path} "
                             f"({', '.join(e.name for e in suite.experiments)})")
    planned = [(e, seed, build_experiment(registry, suite, e, seed)) for seed in suite.seeds for e in suite.experiments]
    todo = [(e, seed, exp) for e, seed, exp in planned
            if (not seeds or seed in seeds) and (not only or e.name in only)]
    for m in suite.metrics:
        registry.get("metric", m)
    failed: list[str] = []
    jobs = suite.jobs if jobs is None else jobs
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    if jobs > 1 and not only_results:
        failed = _run_workers(suite, out_dir, [(e.name, seed) for e, seed, _ in todo], jobs, log)
    elif not only_results:
        for e, seed, exp in todo:
            run_dir = out_dir / "runs" / run_name(e.name, seed)
            t0 = time.perf_counter()
            try:
                how = ensure_trained(registry, exp, run_dir, log)
                if how != "reused":
                    _log(log, f"{how} {run_dir.name} in {time.perf_counter() - t0:.0f} s")
                ensure_evaluated(registry, suite, run_dir, log, suite.protocol_for(e))
            except KeyboardInterrupt:
                raise
            except ColorkitError as exc:
                if type(exc).__name__ == "TrainingInterrupted":  # Ctrl-C: saved; a rerun resumes it
                    raise
                if isinstance(exc, UsageError) and "different configuration" in str(exc):
                    raise
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                _log(log, f"FAILED {run_dir.name}: {type(exc).__name__}: {first}")
                failed.append(f"{run_dir.name}: {type(exc).__name__}: {first}")
                continue
            except Exception as exc:  # noqa: BLE001 - one failed run must not stop the others
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                _log(log, f"FAILED {run_dir.name}: {type(exc).__name__}: {first}")
                failed.append(f"{run_dir.name}: {type(exc).__name__}: {first}")
                continue
            write_results(suite, out_dir)
    rows = write_results(suite, out_dir)
    made: list[str] = []
    if figures:
        try:
            from colorkit.front.figures import suite_figures

            made = suite_figures(suite, out_dir, registry, log=log)
        except Exception as exc:  # noqa: BLE001 - the tables are written already
            if only_results:
                raise
            _log(log, f"FAILED figures: {type(exc).__name__}: {exc}")
        rows = write_results(suite, out_dir, made)
    _log(log, f"{len(rows)} of {len(planned)} runs in {out_dir / 'results.md'}")
    if failed:
        raise ColorkitError(f"{len(failed)} run(s) failed (rerun to retry): " + "; ".join(failed))
    return rows
