"""A run's state and its checkpoints: :class:`TrainState` (the counters, sums, best value, logs
and timers, declared once), :class:`TrainModels` (the networks and what updates them), and the
files made of them: everything ``--resume`` needs in ``last.pt`` (with every rank's random
state), the generator-only ``best.pt`` and ``cpu-<M>min.pt`` marks, and loading them back.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorkit.engine import distributed as ckdist
from colorkit.engine.checkpoints import load_checkpoint, resolve_checkpoint, save_checkpoint
from colorkit.engine.seeding import rng_state, set_rng_state
from colorkit.kernel.errors import UsageError, one_line
from colorkit.kernel.files import atomic_copy


@dataclass
class TrainState:
    """Where a run is: saved in every ``last.pt`` (as top-level keys of the checkpoint) and
    restored from it as a whole by ``--resume``."""

    epoch: int = 1
    batch_in_epoch: int = 0  # batches of ``epoch`` already trained
    step: int = 0
    images: int = 0
    sums: dict[str, float] = field(default_factory=dict)  # the logged values summed over ``count`` steps
    count: int = 0  # steps since the last epoch record
    best_value: float | None = None  # of ``train.best_metric``
    epoch_logs: list[dict[str, Any]] = field(default_factory=list)
    log_lines: int = 0  # records written to ``metrics.jsonl``
    train_seconds: float = 0.0  # wall time in training steps, added up across resumes
    cpu_seconds: float = 0.0  # this process's CPU time in training steps, likewise

    def add_step(self, logs: dict[str, float], images: int, wall_seconds: float, cpu_seconds: float) -> None:
        """Count one training step of ``images`` images (on all ranks) that logged ``logs``."""
        self.step += 1
        self.batch_in_epoch += 1
        self.images += images
        self.count += 1
        self.train_seconds += wall_seconds
        self.cpu_seconds += cpu_seconds
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def means(self) -> dict[str, float]:
        """The logged values' means over the steps since the last epoch record."""
        return {k: v / max(1, self.count) for k, v in self.sums.items()}

    def end_epoch(self, partial: bool) -> None:
        """After an epoch record: the sums start again; a whole epoch moves on to the next."""
        if not partial:
            self.epoch += 1
            self.batch_in_epoch = 0
        self.sums, self.count = {}, 0

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's counters (copies: the state goes on changing)."""
        return {f.name: copy.copy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> TrainState:
        """The counters of a ``last.pt``; those older files lack take their start values."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: copy.copy(v) for k, v in state.items() if k in names})


@dataclass
class TrainModels:
    """What training updates: the networks (as trained: DDP and ``torch.compile`` wrappers
    included), their optimisers, schedulers and gradient scalers, and the generator's moving
    average (``train.ema``)."""

    gen: nn.Module
    disc: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    sched_g: Any
    sched_d: Any
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    ema_gen: nn.Module | None = None

    def weights(self) -> dict[str, Any]:
        """The generator's weights (``gen``) and their average (``gen_ema``, when kept)."""
        return {"gen": unwrap(self.gen).state_dict(),
                **({"gen_ema": self.ema_gen.state_dict()} if self.ema_gen is not None else {})}

    def state_dict(self) -> dict[str, Any]:
        """Everything of these a checkpoint holds."""
        state = {**self.weights(), "opt_g": self.opt_g.state_dict(),
                 "sched_g": self.sched_g.state_dict() if self.sched_g is not None else None,
                 "scaler_g": self.scaler_g.state_dict()}
        if self.disc is not None and self.opt_d is not None:
            state["disc"] = unwrap(self.disc).state_dict()
            state["opt_d"] = self.opt_d.state_dict()
            state["sched_d"] = self.sched_d.state_dict() if self.sched_d is not None else None
            state["scaler_d"] = self.scaler_d.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's weights, optimisers, schedulers and scalers."""
        try:
            unwrap(self.gen).load_state_dict(state["gen"])
            if self.ema_gen is not None:  # a run that had no average starts it from its weights
                self.ema_gen.load_state_dict(state.get("gen_ema") or state["gen"])
            self.opt_g.load_state_dict(state["opt_g"])
            if self.disc is not None:
                if "disc" not in state:
                    raise KeyError("disc")
                unwrap(self.disc).load_state_dict(state["disc"])
                assert self.opt_d is not None
                self.opt_d.load_state_dict(state["opt_d"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise UsageError(f"{state.get('path', 'checkpoint')}: does not fit this experiment ({one_line(exc)})") from None
        for sched, key in ((self.sched_g, "sched_g"), (self.sched_d, "sched_d")):
            if sched is not None and state.get(key):
                sched.load_state_dict(state[key])
        self.scaler_g.load_state_dict(state.get("scaler_g") or {})
        if state.get("scaler_d"):
            self.scaler_d.load_state_dict(state["scaler_d"])


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


def save(folder: Path, state: TrainState, models: TrainModels, about: dict[str, Any], info: ckdist.DistInfo, *,
         best: bool, keep_best_state: bool) -> None:
    """Save ``folder/last.pt`` (a collective: every rank calls it, rank 0 writes); with ``best``
    (a new best validation value since the last save), ``best.pt`` made from it
    (:func:`save_best_copy`). ``about``: what describes the run (its experiment and plugins)."""
    rng = ckdist.gather_objects(rng_state(), info)  # collective: every rank calls it
    if info.is_main:
        # last.pt first, best.pt made from it: at every instant the run can resume; is_best lets
        # a run killed between the two make best.pt when resumed (save_best_copy).
        checkpoint = {**about, **state.to_dict(), "world_size": info.world_size, "rng": rng, **models.state_dict(),
                      **({"is_best": True} if best else {})}
        save_checkpoint(folder / "last.pt", checkpoint)
        if best:
            save_best_copy(folder / "last.pt", checkpoint, keep_best_state)
    ckdist.barrier(info)


def load_state(checkpoint: dict[str, Any], models: TrainModels, info: ckdist.DistInfo) -> TrainState:
    """Continue from a ``last.pt``: its weights, optimisers, schedulers and scalers into
    ``models``, this rank's random state; returns its :class:`TrainState`."""
    models.load_state_dict(checkpoint)
    state = TrainState.from_checkpoint(checkpoint)
    rng = checkpoint.get("rng") or []
    if len(rng) == info.world_size:
        set_rng_state(rng[info.rank])
    return state


#: What a generator-only checkpoint (``best.pt``) keeps of ``last.pt`` besides the weights.
BEST_KEYS = ("experiment", "plugins", "epoch", "step", "images", "train_seconds", "cpu_seconds", "best_value",
             "world_size")
#: What a ``cpu-<M>min.pt`` mark keeps of the state.
MARK_KEYS = ("epoch", "step", "images", "train_seconds", "cpu_seconds")


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


def checkpoint_generator(run_dir: Path, live: nn.Module, step: int, title: str,
                         device: torch.device) -> tuple[nn.Module, str]:
    """The generator of the checkpoint that eval and colorize read from ``run_dir`` (``best.pt``,
    else ``last.pt``) and a header of ``title`` (the experiment), the file and its step: what
    ``samples.png`` draws. ``last.pt`` holds ``live`` (the generator validation uses) as it is at
    ``step`` (it is saved last); ``best.pt`` is loaded into a copy of it."""
    try:
        path = resolve_checkpoint(run_dir)
    except UsageError:  # nothing saved (no checkpoint in this run directory)
        return live, f"{title}\nstep {step}, not saved"
    if path.name != "best.pt":
        return live, f"{title}\n{path.name}, step {step}"
    saved = load_checkpoint(path, map_location=device)
    gen = copy.deepcopy(live)
    gen.load_state_dict(saved.get("gen_ema") or saved["gen"])
    return gen, f"{title}\n{path.name}, step {saved['step']}"


def keep_marks(folder: Path, marks: list[float], cpu_before: float, state: TrainState, models: TrainModels,
               about: dict[str, Any]) -> None:
    """``folder/cpu-<M>min.pt`` for each of ``marks`` (``train.keep_cpu_minutes``) the step that
    took the CPU time from ``cpu_before`` to ``state.cpu_seconds`` passed: the generator's weights
    (and their average) with the counters, enough for eval and colorize, without the optimiser
    states that make ``last.pt`` large. Rank 0 calls it."""
    passed = [m for m in marks if cpu_before < 60 * m <= state.cpu_seconds]
    if not passed:
        return
    counters = state.to_dict()
    checkpoint = {**about, **{k: counters[k] for k in MARK_KEYS}, **models.weights()}
    for m in passed:
        save_checkpoint(folder / mark_checkpoint_name(m), checkpoint)
