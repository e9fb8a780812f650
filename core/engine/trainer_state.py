"""A trainer's checkpoints: everything ``--resume`` needs (weights, optimisers, schedulers,
scalers, counters, every rank's random state), the light ``cpu-<M>min.pt`` marks, and loading
them back. Functions of a :class:`~colorkit.engine.training.Trainer`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from torch import nn

from colorkit.engine import distributed as ckdist
from colorkit.engine.checkpoints import save_checkpoint
from colorkit.engine.schedules import budget_reached
from colorkit.engine.seeding import rng_state, set_rng_state
from colorkit.kernel.errors import UsageError


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


def trainer_state(self: Any, rng: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint of ``self`` (a trainer); ``rng`` holds every rank's random state."""
    state: dict[str, Any] = {
        "experiment": self.experiment_dict,
        "plugins": self.plugins,
        "epoch": self.epoch,
        "batch_in_epoch": self.batch_in_epoch,
        "step": self.step,
        "images": self.images,
        "sums": dict(self.sums),
        "count": self.count,
        "best_value": self.best_value,
        "epoch_logs": list(self.epoch_logs),
        "log_lines": self.log_lines,
        "train_seconds": self.train_seconds,
        "cpu_seconds": self.cpu_seconds,
        "world_size": self.info.world_size,
        "rng": rng,
        "gen": unwrap(self.gen).state_dict(),
        **({"gen_ema": self.ema_gen.state_dict()} if self.ema_gen is not None else {}),
        "opt_g": self.opt_g.state_dict(),
        "sched_g": self.sched_g.state_dict() if self.sched_g is not None else None,
        "scaler_g": self.scaler_g.state_dict(),
    }
    if self.disc is not None and self.opt_d is not None:
        state["disc"] = unwrap(self.disc).state_dict()
        state["opt_d"] = self.opt_d.state_dict()
        state["sched_d"] = self.sched_d.state_dict() if self.sched_d is not None else None
        state["scaler_d"] = self.scaler_d.state_dict()
    return state


def save(self: Any, name: str = "last.pt") -> None:
    """Save ``checkpoints/NAME`` of a trainer (a collective: every rank calls it, rank 0 writes)."""
    rng = ckdist.gather_objects(rng_state(), self.info)  # collective: every rank calls it
    if self.info.is_main:
        save_checkpoint(self.run_dir / "checkpoints" / name, trainer_state(self, rng))
    ckdist.barrier(self.info)


def load_state(self: Any, state: dict[str, Any]) -> None:
    """Continue from a checkpoint's weights, optimisers, schedulers, counters and RNG."""
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
        first = str(exc).strip().splitlines()[0][:200]
        raise UsageError(f"{state.get('path', 'checkpoint')}: does not fit this experiment ({first})") from None
    for sched, key in ((self.sched_g, "sched_g"), (self.sched_d, "sched_d")):
        if sched is not None and state.get(key):
            sched.load_state_dict(state[key])
    self.scaler_g.load_state_dict(state.get("scaler_g") or {})
    if state.get("scaler_d"):
        self.scaler_d.load_state_dict(state["scaler_d"])
    self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
    self.step, self.images = int(state["step"]), int(state["images"])
    self.sums, self.count = dict(state["sums"]), int(state["count"])
    self.best_value = state.get("best_value")
    self.epoch_logs = list(state.get("epoch_logs", []))
    self.log_lines = int(state.get("log_lines", 0))
    self.train_seconds = float(state.get("train_seconds", 0.0))
    self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
    self._budget_done = budget_reached(self)
    rng = state.get("rng") or []
    if len(rng) == self.info.world_size:
        set_rng_state(rng[self.info.rank])


def keep_marks(self: Any, cpu_before: float) -> None:
    """``checkpoints/cpu-<M>min.pt`` for each ``train.keep_cpu_minutes`` mark this step passed:
    the generator's weights (and their average) with the counters, enough for eval and
    colorize, without the optimiser states that make ``last.pt`` large."""
    passed = [m for m in self.t.keep_cpu_minutes if cpu_before < 60 * m <= self.cpu_seconds]
    if not passed or not self.info.is_main:
        return
    state = {"experiment": self.experiment_dict, "plugins": self.plugins, "epoch": self.epoch,
             "step": self.step, "images": self.images, "train_seconds": self.train_seconds,
             "cpu_seconds": self.cpu_seconds, "gen": unwrap(self.gen).state_dict()}
    if self.ema_gen is not None:
        state["gen_ema"] = self.ema_gen.state_dict()
    for m in passed:
        save_checkpoint(self.run_dir / "checkpoints" / mark_checkpoint_name(m), state)
