"""A trainer's checkpoints: everything ``--resume`` needs (weights, optimisers, schedulers,
scalers, counters, every rank's random state) in ``last.pt``, the generator-only ``best.pt``
and ``cpu-<M>min.pt`` marks, and loading them back. Functions of a
:class:`~colorkit.engine.training.Trainer`.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from colorkit.engine import distributed as ckdist
from colorkit.engine.checkpoints import load_checkpoint, resolve_checkpoint, save_checkpoint
from colorkit.engine.inference import experiment_label
from colorkit.engine.schedules import budget_reached
from colorkit.engine.seeding import rng_state, set_rng_state
from colorkit.kernel.errors import UsageError, one_line
from colorkit.kernel.files import atomic_copy


def unwrap(module: Any) -> Any:
    """The plain module inside DDP and ``torch.compile`` wrappers."""
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)


def params_checksum(module: nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal on all ranks when DDP keeps them in sync."""
    h = hashlib.sha256()
    for p in module.parameters():
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def mark_checkpoint_name(minutes: float) -> str:
    """``cpu-2.5min.pt`` for the 2.5 CPU-minute mark of ``train.keep_cpu_minutes``."""
    return f"cpu-{minutes:g}min.pt"


def trainer_state(trainer: Any, rng: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint of a trainer; ``rng`` holds every rank's random state."""
    state: dict[str, Any] = {
        "experiment": trainer.experiment_dict,
        "plugins": trainer.plugins,
        "epoch": trainer.epoch,
        "batch_in_epoch": trainer.batch_in_epoch,
        "step": trainer.step,
        "images": trainer.images,
        "sums": dict(trainer.sums),
        "count": trainer.count,
        "best_value": trainer.best_value,
        "epoch_logs": list(trainer.epoch_logs),
        "log_lines": trainer.log_lines,
        "train_seconds": trainer.train_seconds,
        "cpu_seconds": trainer.cpu_seconds,
        "world_size": trainer.info.world_size,
        "rng": rng,
        "gen": unwrap(trainer.gen).state_dict(),
        **({"gen_ema": trainer.ema_gen.state_dict()} if trainer.ema_gen is not None else {}),
        "opt_g": trainer.opt_g.state_dict(),
        "sched_g": trainer.sched_g.state_dict() if trainer.sched_g is not None else None,
        "scaler_g": trainer.scaler_g.state_dict(),
    }
    if trainer.disc is not None and trainer.opt_d is not None:
        state["disc"] = unwrap(trainer.disc).state_dict()
        state["opt_d"] = trainer.opt_d.state_dict()
        state["sched_d"] = trainer.sched_d.state_dict() if trainer.sched_d is not None else None
        state["scaler_d"] = trainer.scaler_d.state_dict()
    return state


def save(trainer: Any, name: str = "last.pt") -> None:
    """Save ``checkpoints/NAME`` of a trainer (a collective: every rank calls it, rank 0 writes)."""
    rng = ckdist.gather_objects(rng_state(), trainer.info)  # collective: every rank calls it
    best = name == "last.pt" and trainer.best_pending
    if trainer.info.is_main:
        folder = trainer.run_dir / "checkpoints"
        # last.pt first, best.pt made from it: at every instant the run can resume; is_best lets
        # a run killed between the two make best.pt when resumed (save_best_copy).
        state = {**trainer_state(trainer, rng), **({"is_best": True} if best else {})}
        save_checkpoint(folder / name, state)
        if best:
            save_best_copy(folder / name, state, trainer.t.keep_best_state)
    trainer.best_pending = trainer.best_pending and not best
    ckdist.barrier(trainer.info)


#: What a generator-only checkpoint (``best.pt``) keeps of ``last.pt`` besides the weights.
BEST_KEYS = ("experiment", "plugins", "epoch", "step", "images", "train_seconds", "cpu_seconds", "best_value",
             "world_size")


def best_state(state: dict[str, Any]) -> dict[str, Any]:
    """The ``best.pt`` of a ``last.pt`` state: its experiment, plugin versions and counters, and
    as ``gen`` the generator weights eval and colorize use (the moving average when
    ``train.ema`` is on); no discriminator, optimiser or random state, so it cannot resume."""
    averaged = isinstance(state.get("gen_ema"), dict)
    kept = {k: state[k] for k in BEST_KEYS if k in state}
    return {**kept, "gen": state["gen_ema"] if averaged else state["gen"], "weights": "ema" if averaged else "gen"}


def save_best_copy(last: Path, state: dict[str, Any], keep_state: bool = False) -> None:
    """``best.pt`` beside the finished ``last`` whose content is ``state``: the generator-only
    :func:`best_state`, or with ``keep_state`` (``train.keep_best_state``) a hard link (or
    copy) of ``last`` itself."""
    best = last.with_name("best.pt")
    if keep_state:
        atomic_copy(last, best)
    else:
        save_checkpoint(best, best_state(state))


def checkpoint_generator(trainer: Any) -> tuple[nn.Module, str]:
    """The generator of the checkpoint that eval and colorize read from the trainer's run
    directory (``best.pt``, else ``last.pt``) and a header naming the experiment, the file and
    its step: what ``samples.png`` draws. ``last.pt`` is the trainer's weights as they are (it
    is saved last); ``best.pt`` is loaded into a copy of the generator."""
    names = experiment_label(trainer.experiment_dict, "/") if trainer.experiment_dict else trainer.label
    try:
        path = resolve_checkpoint(trainer.run_dir)
    except UsageError:  # nothing saved (no checkpoint in this run directory)
        return trainer.eval_gen, f"{names}\nstep {trainer.step}, not saved"
    if path.name != "best.pt":
        return trainer.eval_gen, f"{names}\n{path.name}, step {trainer.step}"
    state = load_checkpoint(path, map_location=trainer.device)
    gen = copy.deepcopy(trainer.eval_gen)
    gen.load_state_dict(state.get("gen_ema") or state["gen"])
    return gen, f"{names}\n{path.name}, step {state['step']}"


def load_state(trainer: Any, state: dict[str, Any]) -> None:
    """Continue from a checkpoint's weights, optimisers, schedulers, counters and RNG."""
    try:
        unwrap(trainer.gen).load_state_dict(state["gen"])
        if trainer.ema_gen is not None:  # a run that had no average starts it from its weights
            trainer.ema_gen.load_state_dict(state.get("gen_ema") or state["gen"])
        trainer.opt_g.load_state_dict(state["opt_g"])
        if trainer.disc is not None:
            if "disc" not in state:
                raise KeyError("disc")
            unwrap(trainer.disc).load_state_dict(state["disc"])
            assert trainer.opt_d is not None
            trainer.opt_d.load_state_dict(state["opt_d"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise UsageError(f"{state.get('path', 'checkpoint')}: does not fit this experiment ({one_line(exc)})") from None
    for sched, key in ((trainer.sched_g, "sched_g"), (trainer.sched_d, "sched_d")):
        if sched is not None and state.get(key):
            sched.load_state_dict(state[key])
    trainer.scaler_g.load_state_dict(state.get("scaler_g") or {})
    if state.get("scaler_d"):
        trainer.scaler_d.load_state_dict(state["scaler_d"])
    trainer.epoch, trainer.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
    trainer.step, trainer.images = int(state["step"]), int(state["images"])
    trainer.sums, trainer.count = dict(state["sums"]), int(state["count"])
    trainer.best_value = state.get("best_value")
    trainer.epoch_logs = list(state.get("epoch_logs", []))
    trainer.log_lines = int(state.get("log_lines", 0))
    trainer.train_seconds = float(state.get("train_seconds", 0.0))
    trainer.cpu_seconds = float(state.get("cpu_seconds", 0.0))
    trainer._budget_done = budget_reached(trainer)
    rng = state.get("rng") or []
    if len(rng) == trainer.info.world_size:
        set_rng_state(rng[trainer.info.rank])


def keep_marks(trainer: Any, cpu_before: float) -> None:
    """``checkpoints/cpu-<M>min.pt`` for each ``train.keep_cpu_minutes`` mark this step passed:
    the generator's weights (and their average) with the counters, enough for eval and
    colorize, without the optimiser states that make ``last.pt`` large."""
    passed = [m for m in trainer.t.keep_cpu_minutes if cpu_before < 60 * m <= trainer.cpu_seconds]
    if not passed or not trainer.info.is_main:
        return
    state = {"experiment": trainer.experiment_dict, "plugins": trainer.plugins, "epoch": trainer.epoch,
             "step": trainer.step, "images": trainer.images, "train_seconds": trainer.train_seconds,
             "cpu_seconds": trainer.cpu_seconds, "gen": unwrap(trainer.gen).state_dict()}
    if trainer.ema_gen is not None:
        state["gen_ema"] = trainer.ema_gen.state_dict()
    for m in passed:
        save_checkpoint(trainer.run_dir / "checkpoints" / mark_checkpoint_name(m), state)
