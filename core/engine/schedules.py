"""The run's budget and learning-rate schedules: how much of the budget is spent, when it is
reached, the plateau / exponential schedulers, and warm-up and cosine decay set before each step.
Functions of the run's options (``train.*``) and its :class:`~colorkit.engine.trainer_state.TrainState`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from colorkit.engine.trainer_state import TrainState
from colorkit.kernel.experiment import TrainOptions


def make_scheduler(options: TrainOptions, opt: torch.optim.Optimizer) -> Any:
    """The scheduler ``train.lr_schedule`` asks for (``None`` for none and for cosine, which
    :func:`set_step_lr` applies at every step)."""
    if options.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=options.lr_factor,
                                                          patience=options.patience)
    if options.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=options.gamma)
    return None


def budget_progress(options: TrainOptions, state: TrainState, per_epoch: int) -> float:
    """How much of the run's budget is spent, 0..1: the largest fraction among the epochs (of
    ``per_epoch`` batches), ``max_steps``, ``max_minutes`` and ``max_cpu_minutes`` (the one that
    will end the run)."""
    fractions = [state.step / max(1, options.epochs * per_epoch)]
    if options.max_steps is not None:
        fractions.append(state.step / max(1, options.max_steps))
    if options.max_minutes is not None:
        fractions.append(state.train_seconds / (60 * options.max_minutes))
    if options.max_cpu_minutes is not None:
        fractions.append(state.cpu_seconds / (60 * options.max_cpu_minutes))
    return min(1.0, max(fractions))


def expected_steps(options: TrainOptions, state: TrainState, per_epoch: int, total: int) -> int:
    """The steps the run will make, for its progress display: ``total`` (the epochs' or
    ``max_steps``'), or fewer when a time budget will end it first, estimated from the share of
    that budget spent so far."""
    if (options.max_minutes is None and options.max_cpu_minutes is None) or state.step == 0:
        return total
    spent = budget_progress(options, state, per_epoch)
    return total if spent <= 0 else min(total, max(state.step, round(state.step / spent)))


def budget_reached(options: TrainOptions, state: TrainState) -> bool:
    """``max_steps``, ``max_minutes`` (training wall time) or ``max_cpu_minutes`` (this process's
    CPU time in training steps) reached; the times add up across resumes."""
    return ((options.max_steps is not None and state.step >= options.max_steps)
            or (options.max_minutes is not None and state.train_seconds >= 60 * options.max_minutes)
            or (options.max_cpu_minutes is not None and state.cpu_seconds >= 60 * options.max_cpu_minutes))


def set_step_lr(options: TrainOptions, state: TrainState, per_epoch: int, opt_g: torch.optim.Optimizer,
                opt_d: torch.optim.Optimizer | None) -> None:
    """Warm-up and the cosine schedule: both set the learning rate of the optimisers before each step."""
    if not options.warmup and options.lr_schedule != "cosine":
        return
    factor = 1.0
    if options.lr_schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * budget_progress(options, state, per_epoch)))
    if options.warmup and state.step < options.warmup:
        factor *= (state.step + 1) / options.warmup
    for opt, base in ((opt_g, options.lr), (opt_d, options.lr_d or options.lr)):
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = base * factor
