"""Running a benchmark suite: train what is missing, evaluate every run on the suite's protocol
(cached per run), in this process or in worker processes, then write the tables and figures
(``colorkit bench SUITE.yaml``; the file format is in :mod:`colorkit.front.bench.suite`).

A rerun trains only what is missing: a run whose ``metrics.jsonl`` has an ``end`` event is
reused, an interrupted one resumes from its ``checkpoints/last.pt``, and a cached evaluation is
reused when its protocol is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable


from colorkit.front.bench.plan import budget_line, build_experiment
from colorkit.front.bench.results import write_results
from colorkit.front.bench.rundirs import run_finished, run_name
from colorkit.front.bench.suite import Protocol, Suite, load_suite
from colorkit.kernel.errors import ColorkitError, UsageError, one_line
from colorkit.kernel.files import file_key

EVAL_FORMAT = 2  # 2: L*a*b* generators scored on the input L* (as colorize writes them)


#: set in the environment of the worker processes of ``--jobs N``
WORKER_ENV = "COLORKIT_BENCH_WORKER"


def _log(log: Callable[[str], None] | None, text: str) -> None:
    if log is not None:
        log(f"[{time.strftime('%H:%M:%S')}] {text}")


def _saved_config_diff(registry: Any, exp: Any, run_dir: Path) -> list[str]:
    """How the run's saved config differs from ``exp``, both resolved by the current code (so
    an option added to colorkit later, at its default, is no difference; as ``--resume`` does)."""
    from colorkit.kernel.experiment import config_diff, experiment_from_dict, load_yaml_file

    try:
        old = experiment_from_dict(registry, load_yaml_file(run_dir / "config.yaml"), str(run_dir / "config.yaml"))
    except ColorkitError as exc:
        return [f"config.yaml does not resolve: {exc}"]
    return config_diff(old.to_dict(), exp.to_dict())


def ensure_trained(registry: Any, exp: Any, run_dir: Path, log: Callable[[str], None] | None = None,
                   progress: bool = False) -> str:
    """Train ``exp`` into ``run_dir`` unless done; returns ``reused``, ``resumed`` or ``trained``.
    ``progress``: the training's progress display, named by the run directory."""
    from colorkit.engine.runs import train

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
            train(registry, exp, progress=progress, resume=run_dir, label=run_dir.name)
            return "resumed"
        # killed before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    elif run_dir.exists():
        shutil.rmtree(run_dir)
    _log(log, f"train {run_dir.name}")
    train(registry, exp, run_dir, progress=progress, label=run_dir.name)
    return "trained"


DERIVED_FILE = "derived.json"
#: What a derived run directory holds (besides temporary files): all that a rerun may delete.
DERIVED_NAMES = {DERIVED_FILE, "config.yaml", "environment.json", "metrics.jsonl", "checkpoints"}


def _not_derived(run_dir: Path) -> Path | None:
    """The first file in ``run_dir`` that deriving a run did not write (``None``: all of it did)."""
    for entry in sorted(run_dir.rglob("*")):
        rel = entry.relative_to(run_dir)
        name = entry.name
        temp = name.startswith(".") and name.endswith(".tmp")
        if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
            return entry
        if len(rel.parts) == 1 and (name in DERIVED_NAMES or temp or (name.startswith("eval-") and name.endswith(".json"))):
            continue
        if rel.parts[0] == "checkpoints" and len(rel.parts) == 2 and entry.is_file() and (name.endswith(".pt") or temp):
            continue
        return entry
    return None


def ensure_derived(registry: Any, exp: Any, run_dir: Path, source_dir: Path,
                   log: Callable[[str], None] | None = None) -> str:
    """The run of a ``from`` row: every checkpoint of the finished ``source_dir`` written again with
    ``exp`` (the source's experiment with other inference-time generator options) as a model file
    in full precision, the source's training log and environment copied, nothing trained. Returns
    ``reused`` while ``derived.json`` matches the source's checkpoints, else ``derived``."""
    from colorkit.engine.checkpoints import write_model_file
    from colorkit.engine.inference import load_model
    from colorkit.kernel.experiment import config_diff, experiment_from_dict, load_yaml_file
    from colorkit.kernel.files import atomic_path, atomic_write_bytes, json_text, write_new_text

    if not run_finished(source_dir):
        raise UsageError(f"{run_dir.name}: derives from {source_dir.name}, which has not finished training; "
                         f"train it first (colorkit bench SUITE --only {source_dir.name.rsplit('-s', 1)[0]})")
    source_exp = experiment_from_dict(registry, load_yaml_file(source_dir / "config.yaml"),
                                      str(source_dir / "config.yaml"))
    changed = [d for d in config_diff(source_exp.to_dict(), exp.to_dict()) if not d.startswith(("gen.", "description"))]
    if changed:  # the source run trained another config than the suite's source row asks for now
        raise UsageError(f"{source_dir}: its config.yaml differs from what {run_dir.name} derives "
                         f"({', '.join(changed[:3])}); move the run away or use another --out")
    ckpts = sorted((source_dir / "checkpoints").glob("*.pt"))
    stamp = {"source": source_dir.name, "checkpoints": {c.name: file_key(c) for c in ckpts}}
    marker = run_dir / DERIVED_FILE
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == stamp and run_finished(run_dir):
        if _saved_config_diff(registry, exp, run_dir):
            raise UsageError(f"{run_dir}: holds a run of a different configuration than the suite now asks for; "
                             "move it away or use another --out")
        return "reused"
    if run_dir.exists():  # derived files only (stale or cut short): made again from the source
        foreign = _not_derived(run_dir)
        if foreign is not None:
            raise UsageError(f"{run_dir}: holds {foreign.relative_to(run_dir).as_posix()!r}, which a derived row does "
                             "not write; move it away and run again (nothing was deleted)")
        shutil.rmtree(run_dir)
    _log(log, f"derive {run_dir.name} from {source_dir.name}")
    (run_dir / "checkpoints").mkdir(parents=True)
    for c in ckpts:
        write_model_file(c, run_dir / "checkpoints" / c.name, half=False, experiment=exp.to_dict())
    if ckpts:  # the options must fit the weights (gen.base would not): one line naming the file
        load_model(run_dir / "checkpoints" / ckpts[-1].name, registry=registry)
    write_new_text(run_dir / "config.yaml", exp.to_yaml() + f"# derived from {source_dir.name}: its checkpoints "
                   "with the generator options above; not trained (colorkit bench, a `from` row)\n")
    atomic_write_bytes(marker, (json_text(stamp, indent=2) + "\n").encode("utf-8"))
    # byte copies, not links: a resumed source appends to its metrics.jsonl in place; metrics.jsonl
    # last, as its end event marks the run done
    for name in ("environment.json", "metrics.jsonl"):
        with atomic_path(run_dir / name) as tmp:
            shutil.copyfile(source_dir / name, tmp)
    return "derived"


def _protocol_key(protocol: Protocol, ckpt: Path) -> dict[str, Any]:
    size, mtime_ns = file_key(ckpt)
    return {"format": EVAL_FORMAT, "protocol": protocol.to_dict(), "checkpoint": ckpt.name,
            "checkpoint_bytes": size, "checkpoint_mtime_ns": mtime_ns}


def ensure_evaluated(registry: Any, suite: Suite, run_dir: Path, log: Callable[[str], None] | None = None,
                     protocol: Protocol | None = None, progress: bool = False) -> dict[str, Any]:
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
    sets = [f"dataset.{k}={set_value(v)}" for k, v in prot.options.items()]
    # One row per run: the image colorize writes (an L*a*b* generator's own-L* variant is eval's extra).
    result, _, _ = evaluate([ckpt], registry=registry, dataset=prot.dataset, split=prot.split, metrics=prot.metrics,
                            limit=prot.images, batch_size=prot.batch_size, device=prot.device, sets=sets,
                            own_l_rows=False, progress=progress)
    data = result.to_dict()
    data["key"] = key
    from colorkit.kernel.files import atomic_write_bytes

    atomic_write_bytes(cache, json.dumps(data, indent=2, allow_nan=False).encode())
    return data


def set_value(v: Any) -> str:
    """A YAML value as ``--set`` takes it (``true``, ``null``, ``0.5``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return str(v)


# -- the whole suite ----------------------------------------------------------------------------


def _run_workers(suite: Suite, out: Path, todo: list[tuple[str, int]], jobs: int,
                 log: Callable[[str], None] | None, progress: bool) -> list[str]:
    """Train and evaluate ``todo`` (experiment, seed) pairs, ``jobs`` worker processes at a
    time, in order; returns the failures. Each worker is ``colorkit bench SUITE --only NAME
    --seeds SEED --jobs 1 --no-figures`` on the same output folder (one run directory each).
    Their progress is plain lines (bars of several processes would overwrite each other), each
    starting with the run's name (``COLORKIT_PROGRESS_PREFIX``)."""
    import subprocess
    import sys

    import tempfile

    from colorkit.kernel.progress import MODE_ENV, PREFIX_ENV, SAID_ENV, progress_mode

    scratch = tempfile.mkdtemp(prefix="colorkit-bench-")
    said = os.environ.get(SAID_ENV) or os.path.join(scratch, "said.txt")  # data reports: once among the workers
    base = [sys.executable, "-m", "colorkit", "bench", str(suite.path), "--out", str(out), "--jobs", "1",
            "--no-figures", *([] if progress else ["-q"])]
    mode = "off" if progress_mode() == "off" else "plain"
    pending = list(todo)
    running: dict[Any, tuple[str, float]] = {}
    failed: list[str] = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name, seed = pending.pop(0)
                _log(log, f"worker: {run_name(name, seed)} ({len(running) + 1} of {jobs} running)")
                env = {**os.environ, MODE_ENV: mode, PREFIX_ENV: f"[{run_name(name, seed)}] ", WORKER_ENV: "1",
                       SAID_ENV: str(said)}
                proc = subprocess.Popen([*base, "--only", name, "--seeds", str(seed)], env=env)
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
        shutil.rmtree(scratch, ignore_errors=True)
    return failed


def run_suite(suite_path: str | Path, out: str | Path | None = None, registry: Any = None,
              log: Callable[[str], None] | None = print, figures: bool = True,
              only_results: bool = False, seeds: list[int] | None = None,
              only: list[str] | None = None, jobs: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Train what is missing, evaluate, and write results.csv, results.md and the figures.

    Runs go seed by seed (every experiment at seed 0 first), so an interrupted suite has its
    first seeds complete. ``only_results`` rewrites the tables and figures from what exists;
    ``seeds`` and ``only`` (experiment names) restrict what is trained and evaluated now (the
    tables always show every finished run). ``jobs`` (default: the suite's ``jobs``) runs that
    many runs side by side, each in a ``colorkit bench`` worker process of its own (which loads
    the installed plugins, not ``registry``); the tables and figures are written here at the end.
    ``progress``: each run's training and evaluation show progress on stderr (``colorkit bench``
    without ``-q``), as plain lines prefixed with the run's name in worker processes.
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
    planned = _plan(registry, suite, seeds, only)
    todo = [(e, seed, exp) for e, seed, exp in planned
            if (not seeds or seed in seeds) and (not only or e.name in only)]
    jobs = suite.jobs if jobs is None else jobs
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    if not only_results and not os.environ.get(WORKER_ENV):  # the parent has said it for the workers
        pending = [exp for e, seed, exp in todo
                   if not e.source and not run_finished(out_dir / "runs" / run_name(e.name, seed))]
        _log(log, budget_line(suite, pending, min(jobs, max(1, len(pending)))))
    failed: list[str] = []
    if jobs > 1 and not only_results:
        failed = _run_workers(suite, out_dir, [(e.name, seed) for e, seed, _ in todo if not e.source], jobs, log,
                              progress)
        for e, seed, exp in todo:  # `from` rows, once their sources are done (workers skip them)
            if e.source and not any(f.startswith(run_name(e.source, seed) + ":") for f in failed):
                failure = _train_and_evaluate(registry, suite, out_dir, e, seed, exp, log, progress)
                if failure is not None:
                    failed.append(failure)
    elif not only_results:
        for e, seed, exp in todo:
            failure = _train_and_evaluate(registry, suite, out_dir, e, seed, exp, log, progress)
            if failure is None:
                write_results(suite, out_dir)
            else:
                failed.append(failure)
    rows = _write_outputs(registry, suite, out_dir, figures, only_results, log)
    _log(log, f"{len(rows)} of {len(planned)} runs in {out_dir / 'results.md'}")
    if failed:
        raise ColorkitError(f"{len(failed)} run(s) failed (rerun to retry): " + "; ".join(failed))
    return rows


def _plan(registry: Any, suite: Suite, seeds: list[int] | None, only: list[str] | None) -> list[tuple[Any, int, Any]]:
    """Every (entry, seed, resolved experiment) of the suite, all validated before the first
    run starts, with ``--seeds`` and ``--only`` checked against the suite."""
    for seed in seeds or []:
        if seed not in suite.seeds:
            raise UsageError(f"--seeds {seed}: not a seed of {suite.path} ({', '.join(map(str, suite.seeds))})")
    for name in only or []:
        if not any(e.name == name for e in suite.experiments):
            raise UsageError(f"--only {name}: not an experiment of {suite.path} "
                             f"({', '.join(e.name for e in suite.experiments)})")
    planned = [(e, seed, build_experiment(registry, suite, e, seed)) for seed in suite.seeds for e in suite.experiments]
    for m in suite.metrics:
        registry.get("metric", m)
    return planned


def _train_and_evaluate(registry: Any, suite: Suite, out_dir: Path, e: Any, seed: int, exp: Any,
                        log: Callable[[str], None] | None, progress: bool = False) -> str | None:
    """Train and evaluate one run in this process; a failure is returned as one line (one
    failed run must not stop the others), except Ctrl-C and a run directory of another config."""
    from colorkit.engine.training import TrainingInterrupted

    run_dir = out_dir / "runs" / run_name(e.name, seed)
    t0 = time.perf_counter()
    try:
        if e.source:
            how = ensure_derived(registry, exp, run_dir, out_dir / "runs" / run_name(e.source, seed), log)
        else:
            how = ensure_trained(registry, exp, run_dir, log, progress)
        if how != "reused":
            _log(log, f"{how} {run_dir.name} in {time.perf_counter() - t0:.0f} s")
        ensure_evaluated(registry, suite, run_dir, log, suite.protocol_for(e), progress)
        return None
    except (KeyboardInterrupt, TrainingInterrupted):  # Ctrl-C: saved; a rerun resumes it
        raise
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the others
        if isinstance(exc, UsageError) and "different configuration" in str(exc):
            raise
        reason = one_line(exc, first_line=True)
        _log(log, f"FAILED {run_dir.name}: {reason}")
        return f"{run_dir.name}: {reason}"


def _write_outputs(registry: Any, suite: Suite, out_dir: Path, figures: bool, only_results: bool,
                   log: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """The tables, then the figures (a figure that fails is one line unless only the results
    are being rewritten), then the tables again with the figures linked."""
    rows = write_results(suite, out_dir)
    if not figures:
        return rows
    made: list[str] = []
    try:
        from colorkit.front.bench.figures import suite_figures

        made = suite_figures(suite, out_dir, registry, log=log)
    except Exception as exc:  # noqa: BLE001 - the tables are written already
        if only_results:
            raise
        _log(log, f"FAILED figures: {type(exc).__name__}: {exc}")
    return write_results(suite, out_dir, made)
