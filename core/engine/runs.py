"""Runs: what ``colorkit run`` does over :class:`~colorkit.engine.training.Trainer`. A resolved
experiment's components are built from the registry, a new run directory gets the config (once,
never overwritten), the environment manifest and the logs; ``--resume`` continues a run from its
last checkpoint (``--fork``: in a new directory with a changed config).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


from colorkit.engine import distributed as ckdist
from colorkit.engine.checkpoints import RunLock, environment_manifest, load_checkpoint, new_run_dir
from colorkit.engine.devices import pick_device
from colorkit.engine.trainer_state import TrainState, load_state, save_best_copy
from colorkit.engine.training import RunResult, Trainer
from colorkit.kernel.errors import DiskFullError, UsageError
from colorkit.kernel.experiment import Experiment, config_diff, experiment_from_dict, load_yaml_file
from colorkit.kernel.files import atomic_write_bytes, dump_yaml, remove_stale_temps, write_new_text
from colorkit.kernel.progress import progress_scope
from colorkit.kernel.registry import Registry


def train(registry: Registry, exp: Experiment | None, out: str | Path | None = None, *, progress: bool = True,
          resume: str | Path | None = None, fork: bool = False, console: Any = None,
          label: str | None = None) -> RunResult:
    """Train ``exp`` into a new run directory, or continue the run in ``resume``.

    With ``resume``, ``exp`` may be ``None`` (the run's saved config is used) or an experiment
    that must equal the saved one, unless ``fork`` is set: then a new run directory (``out``)
    gets the new config and training continues there from the resumed run's checkpoint.
    ``progress=False`` silences every progress display of the run, the dataset's decoding included;
    ``label`` names the run there (default: the experiment's label).
    """
    info = ckdist.env_info()
    locks: list[RunLock] = []  # held until training ends
    try:
        with progress_scope(progress and info.is_main):
            return _train(registry, exp, out, progress=progress, resume=resume, fork=fork, console=console, info=info,
                          locks=locks, label=label)
    except DiskFullError as exc:  # the one place that knows how a run continues
        run_dir = locks[0].path if locks else resume
        if run_dir is None:
            raise
        raise DiskFullError(f"{exc}; then colorkit run --resume {run_dir} continues the run") from None
    finally:
        for lock in locks:
            lock.release()


def _lock(path: Path, info: ckdist.DistInfo, locks: list[RunLock], new: bool = False) -> None:
    """Lock a run directory on rank 0; a new one must still hold no run once locked."""
    if info.is_main:
        locks.append(RunLock(path))
        if new and (path / "config.yaml").exists():
            raise UsageError(f"{path}: already holds a run (config.yaml); choose another --out")


def _train(registry: Registry, exp: Experiment | None, out: str | Path | None, *, progress: bool,
           resume: str | Path | None, fork: bool, console: Any, info: ckdist.DistInfo,
           locks: list[RunLock], label: str | None) -> RunResult:
    checkpoint = None
    run_dir: Path | None = None
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None:
        if (resume_dir / "config.yaml").is_file():
            _lock(resume_dir, info, locks)
        checkpoint, exp, run_dir = _resume(registry, resume_dir, exp, fork)
        if run_dir is not None and _has_ended(run_dir, checkpoint):
            ended = TrainState.from_checkpoint(checkpoint)
            best_metric = exp.train.best_metric or (exp.metrics[0] if exp.metrics else None)
            best = {"metric": best_metric, "value": ended.best_value} if best_metric else None
            return RunResult(run_dir, ended.step, ended.images, ended.epoch_logs, 0.0, best, finished_already=True)
    if exp is None:
        raise UsageError("nothing to train: give an experiment or --resume RUN_DIR")
    device = pick_device(exp.train.device, info.local_rank)  # the run's one device choice
    ckdist.init(info, device)
    trainer = None
    try:
        # Build everything first: a bad component or option leaves no empty run directory behind.
        trainer = Trainer.from_experiment(registry, exp, run_dir or Path(), progress=progress, console=console,
                                          info=info, device=device)
        trainer.label = label or trainer.label
        if run_dir is None:
            made = new_run_dir(out, exp.label) if info.is_main else None
            if made is not None:
                _lock(made, info, locks, new=True)
            run_dir = trainer.run_dir = Path(ckdist.broadcast_object(str(made) if made else None, info))
        if checkpoint is not None:
            trainer.state = load_state(checkpoint, trainer.models, info)
        if info.is_main:
            for folder in (run_dir, run_dir / "checkpoints"):  # what a killed save left
                remove_stale_temps(folder)
            if checkpoint is not None and run_dir == resume_dir and checkpoint.get("is_best"):
                # killed between last.pt and its best.pt
                save_best_copy(Path(checkpoint["path"]), checkpoint, exp.train.keep_best_state)
            if run_dir != resume_dir or checkpoint is None:  # a new run (or one restarted from step 0)
                if run_dir != resume_dir:  # written once
                    write_new_text(run_dir / "config.yaml", exp.to_yaml() + splits_yaml(trainer))
                manifest = environment_manifest(seed=exp.train.seed, device=device, plugins=trainer.components.plugins)
                manifest["world_size"] = info.world_size
                if checkpoint is not None:
                    manifest["forked_from"] = checkpoint["path"]
                atomic_write_bytes(run_dir / "environment.json", json.dumps(manifest, indent=2).encode())
                if checkpoint is not None or run_dir == resume_dir:
                    _truncate_log(run_dir / "metrics.jsonl", 0)
                    trainer.state.log_lines = 0
            else:
                _truncate_log(run_dir / "metrics.jsonl", trainer.state.log_lines)
        if checkpoint is not None:
            trainer.log({"event": "resume", "step": trainer.state.step, "from": checkpoint["path"]})
        return trainer.run()
    finally:
        trainer = None  # its DDP wrappers must go before their process group (see ckdist.shutdown)
        ckdist.shutdown()


def _resume(registry: Registry, resume_dir: Path, exp: Experiment | None,
            fork: bool) -> tuple[dict[str, Any] | None, Experiment, Path | None]:
    """What ``--resume`` continues from: the checkpoint (``None`` when the run was killed before
    its first one: it starts again from step 0), the experiment, and the run directory
    (``None``: a new one, for ``--fork``)."""
    config = resume_dir / "config.yaml"
    if not config.is_file():
        raise UsageError(f"--resume {resume_dir}: not a run directory (no config.yaml)")
    saved = experiment_from_dict(registry, load_yaml_file(config), str(config))
    exp = exp or saved
    diff = config_diff(saved.to_dict(), exp.to_dict())
    if diff and not fork:
        raise UsageError(
            f"--resume {resume_dir}: the experiment differs from its config.yaml in {', '.join(diff)}; "
            "pass --fork (with --out NEW_DIR) to continue in a new run directory"
        )
    if fork and not diff:
        raise UsageError(f"--fork: the experiment is the one in {config}, so there is nothing to fork; drop --fork "
                         f"(and --out) to continue {resume_dir}, or change an option (e.g. --set) to fork")
    ckpt = resume_dir / "checkpoints" / "last.pt"
    state = None
    if ckpt.is_file():
        state = load_checkpoint(ckpt)
        _check_config_matches(registry, config, saved, state)
    elif not diff and ckdist.env_info().is_main:
        print(f"--resume {resume_dir}: no checkpoint yet; training starts again from step 0 in this directory",
              file=sys.stderr)
    return state, exp, None if diff else resume_dir


def _check_config_matches(registry: Registry, config: Path, saved: Experiment, state: dict[str, Any]) -> None:
    """Refuse a ``config.yaml`` that is not the experiment its checkpoint trained (a file cut
    short or edited by hand would silently train another experiment)."""
    stored = state.get("experiment")
    if not isinstance(stored, dict):
        raise UsageError(f"{state['path']}: the checkpoint lacks its experiment; it cannot be resumed")
    diff = config_diff(experiment_from_dict(registry, stored, state["path"]).to_dict(), saved.to_dict())
    if diff:
        raise UsageError(f"{config}: does not match the experiment in {state['path']} (first difference: "
                         f"{diff[0]}); restore config.yaml or start a new run")


def _has_ended(run_dir: Path, state: dict[str, Any] | None) -> bool:
    """Whether the run ended at its last checkpoint: the line after the checkpoint's log lines is
    the ``end`` record of that step (a run killed before writing it has samples.png to write)."""
    path = run_dir / "metrics.jsonl"
    if state is None or not path.is_file():
        return False
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    after = lines[int(state.get("log_lines", 0)):]
    try:
        record = json.loads(after[0]) if after else {}
    except json.JSONDecodeError:
        return False
    return record.get("event") == "end" and record.get("step") == state["step"]


def _truncate_log(path: Path, lines: int) -> None:
    """Keep the first ``lines`` records (those written before the checkpoint): the resumed run
    writes the later ones again, identically."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        keep = [line for line in fh if line.strip()][:lines]
    atomic_write_bytes(path, "".join(keep).encode())


def splits(trainer: Trainer) -> dict[str, dict[str, Any]]:
    """The split each data role reads and its image count (``validated``: how many of the val
    images each validation scores, after ``train.val_limit``)."""
    ds = trainer.components.dataset
    n_val = len(trainer.val_data)
    validated = n_val if trainer.options.val_limit is None else min(trainer.options.val_limit, n_val)
    return {"train": {"split": ds.train_split, "images": len(trainer.train_data)},
            "val": {"split": ds.val_split, "images": n_val, "validated": validated},
            "test": {"split": ds.test_split, "note": "not read by training; colorkit eval and bench report on it"}}


def splits_yaml(trainer: Trainer) -> str:
    """:func:`splits` as the commented block ``config.yaml`` ends with."""
    return ("# The data of each role (written by colorkit for the reader; ignored when read back):\n"
            + dump_yaml({"splits": splits(trainer)}))
