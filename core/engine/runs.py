"""Runs: what ``colorkit run`` does over :class:`~colorkit.engine.training.Trainer`. A resolved
experiment's components are built from the registry, a new run directory gets the config (once,
never overwritten), the environment manifest and the logs; ``--resume`` continues a run from its
last checkpoint (``--fork``: in a new directory with a changed config).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from colorkit.engine import distributed as ckdist
from colorkit.engine.checkpoints import environment_manifest, load_checkpoint, new_run_dir
from colorkit.engine.devices import pick_device
from colorkit.engine.training import RunResult, Trainer
from colorkit.kernel.errors import UsageError
from colorkit.kernel.experiment import Experiment, config_diff, experiment_from_dict
from colorkit.kernel.files import atomic_write_bytes, write_new_text
from colorkit.kernel.registry import Registry


def train(registry: Registry, exp: Experiment | None, out: str | Path | None = None, *, progress: bool = True,
          resume: str | Path | None = None, fork: bool = False, console: Any = None) -> RunResult:
    """Train ``exp`` into a new run directory, or continue the run in ``resume``.

    With ``resume``, ``exp`` may be ``None`` (the run's saved config is used) or an experiment
    that must equal the saved one, unless ``fork`` is set: then a new run directory (``out``)
    gets the new config and training continues there from the resumed run's checkpoint.
    """
    state = None
    run_dir: Path | None = None
    resume_dir = Path(resume) if resume is not None else None
    if resume_dir is not None:
        if not (resume_dir / "config.yaml").is_file():
            raise UsageError(f"--resume {resume_dir}: not a run directory (no config.yaml)")
        ckpt = resume_dir / "checkpoints" / "last.pt"
        if not ckpt.is_file():
            raise UsageError(f"--resume {resume_dir}: no checkpoints/last.pt yet; start a new run instead")
        saved_dict = yaml.safe_load((resume_dir / "config.yaml").read_text(encoding="utf-8"))
        saved = experiment_from_dict(registry, saved_dict, str(resume_dir / "config.yaml"))
        exp = exp or saved
        diff = config_diff(saved.to_dict(), exp.to_dict())
        if diff and not fork:
            raise UsageError(
                f"--resume {resume_dir}: the experiment differs from its config.yaml in {', '.join(diff)}; "
                "pass --fork (with --out NEW_DIR) to continue in a new run directory"
            )
        state = load_checkpoint(ckpt)
        if not diff:
            run_dir = resume_dir
    if exp is None:
        raise UsageError("nothing to train: give an experiment or --resume RUN_DIR")
    info = ckdist.env_info()
    ckdist.init(info, pick_device(exp.train.device, info.local_rank))
    try:
        # Build everything first: a bad component or option leaves no empty run directory behind.
        trainer = Trainer.from_experiment(registry, exp, run_dir or Path(), progress=progress, console=console,
                                          info=info)
        if run_dir is None:
            made = str(new_run_dir(out, exp.label)) if info.is_main else None
            run_dir = trainer.run_dir = Path(ckdist.broadcast_object(made, info))
        if state is not None:
            trainer.load_state(state)
        if info.is_main:
            if run_dir != resume_dir:  # a new run: write its config once
                write_new_text(run_dir / "config.yaml", exp.to_yaml() + splits_yaml(trainer))
                manifest = environment_manifest(seed=exp.train.seed, device=trainer.device, plugins=trainer.c.plugins)
                manifest["world_size"] = info.world_size
                if state is not None:
                    manifest["forked_from"] = state["path"]
                atomic_write_bytes(run_dir / "environment.json", json.dumps(manifest, indent=2).encode())
                if state is not None:
                    _truncate_log(run_dir / "metrics.jsonl", 0)
                    trainer.log_lines = 0
            else:
                _truncate_log(run_dir / "metrics.jsonl", trainer.log_lines)
        if state is not None:
            trainer._log({"event": "resume", "step": trainer.step, "from": state["path"]})
        return trainer.run()
    finally:
        ckdist.shutdown()


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
    ds = trainer.c.dataset
    n_val = len(trainer.val_data)
    validated = n_val if trainer.t.val_limit is None else min(trainer.t.val_limit, n_val)
    return {"train": {"split": ds.train_split, "images": len(trainer.train_data)},
            "val": {"split": ds.val_split, "images": n_val, "validated": validated},
            "test": {"split": ds.test_split, "note": "not read by training; colorkit eval and bench report on it"}}


def splits_yaml(trainer: Trainer) -> str:
    """:func:`splits` as the commented block ``config.yaml`` ends with."""
    return ("# The data of each role (written by colorkit for the reader; ignored when read back):\n"
            + yaml.safe_dump({"splits": splits(trainer)}, sort_keys=False))
