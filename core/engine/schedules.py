"""The run's budget and learning-rate schedules: how much of the budget is spent, when it is
reached, the plateau / exponential schedulers, and warm-up and cosine decay set before each step.
Functions of a :class:`~colorkit.engine.training.Trainer`'s options and counters.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def make_scheduler(t: Any, opt: torch.optim.Optimizer) -> Any:
    """The scheduler ``train.lr_schedule`` asks for (``None`` for none and for cosine, which
    :func:`set_step_lr` applies at every step)."""
    if t.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=t.lr_factor, patience=t.patience)
    if t.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=t.gamma)
    return None


def budget_progress(trainer: Any) -> float:
    """How much of the run's budget is spent, 0..1: the largest fraction among the epochs,
    ``max_steps``, ``max_minutes`` and ``max_cpu_minutes`` (the one that will end the run)."""
    t = trainer.t
    fractions = [trainer.step / max(1, t.epochs * trainer.per_epoch)]
    if t.max_steps is not None:
        fractions.append(trainer.step / max(1, t.max_steps))
    if t.max_minutes is not None:
        fractions.append(trainer.train_seconds / (60 * t.max_minutes))
    if t.max_cpu_minutes is not None:
        fractions.append(trainer.cpu_seconds / (60 * t.max_cpu_minutes))
    return min(1.0, max(fractions))


def expected_steps(trainer: Any, total: int) -> int:
    """The steps the run will make, for its progress display: ``total`` (the epochs' or
    ``max_steps``'), or fewer when a time budget will end it first, estimated from the share of
    that budget spent so far."""
    t = trainer.t
    if (t.max_minutes is None and t.max_cpu_minutes is None) or trainer.step == 0:
        return total
    spent = budget_progress(trainer)
    return total if spent <= 0 else min(total, max(trainer.step, round(trainer.step / spent)))


def budget_reached(trainer: Any) -> bool:
    """``max_steps``, ``max_minutes`` (training wall time) or ``max_cpu_minutes`` (this process's
    CPU time in training steps) reached; the times add up across resumes."""
    t = trainer.t
    return ((t.max_steps is not None and trainer.step >= t.max_steps)
            or (t.max_minutes is not None and trainer.train_seconds >= 60 * t.max_minutes)
            or (t.max_cpu_minutes is not None and trainer.cpu_seconds >= 60 * t.max_cpu_minutes))


def set_step_lr(trainer: Any) -> None:
    """Warm-up and the cosine schedule: both set the learning rate before each step."""
    t = trainer.t
    if not t.warmup and t.lr_schedule != "cosine":
        return
    factor = 1.0
    if t.lr_schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * budget_progress(trainer)))
    if t.warmup and trainer.step < t.warmup:
        factor *= (trainer.step + 1) / t.warmup
    for opt, base in ((trainer.opt_g, t.lr), (trainer.opt_d, t.lr_d or t.lr)):
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = base * factor
