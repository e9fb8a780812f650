"""The training loop (GAN and non-GAN) over built components: validation, checkpoints, exact
resume, DDP, precision. :class:`Trainer` takes the components; :mod:`colorkit.engine.runs` is the
registry-driven ``colorkit run`` over it.

Determinism: with a fixed seed on the CPU, a run killed at any point and resumed with
``colorkit run --resume RUN_DIR`` ends with the same weights and metrics as an uninterrupted run.
The data order of every epoch is a function of (seed, epoch) alone (``DistributedSampler`` with
``set_epoch``), the random state of torch, numpy and Python is saved in every checkpoint, and a
resumed epoch skips the batches already consumed (by index with ``train.workers=0``; with worker
processes the skipped batches are loaded and dropped so the workers' random streams line up).
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorkit.engine import distributed as ckdist
from colorkit.engine import trainer_state
from colorkit.engine.components import Components, build_components, check_fit, component_name, he_init, split_target
from colorkit.engine.devices import pick_device, resolve_precision, uses_channels_last
from colorkit.engine.images import comparison_grid, save_png
from colorkit.engine.loading import batches_per_epoch, epoch_loader, workers
from colorkit.engine.schedules import budget_progress, budget_reached, expected_steps, make_scheduler, set_step_lr
from colorkit.engine.scoring import ColourL1, build_metrics
from colorkit.engine.seeding import seed_everything
from colorkit.engine.trainer_state import keep_marks, unwrap
from colorkit.engine.validation import validate
from colorkit.kernel import color
from colorkit.kernel.errors import ColorkitError, UsageError
from colorkit.kernel.experiment import Experiment, TrainOptions
from colorkit.kernel.files import append_jsonl
from colorkit.kernel.interfaces import Dataset, Discriminator, Generator, Loss, Metric, Prediction
from colorkit.kernel.progress import format_parts, progress_bar, progress_note
from colorkit.kernel.registry import Registry


class TrainingInterrupted(ColorkitError):
    """Ctrl-C: the checkpoint was saved and the run can be resumed."""

    exit_code = 130


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    images: int
    epoch_logs: list[dict[str, Any]]
    seconds: float
    best: dict[str, Any] | None = None
    finished_already: bool = False  # ``--resume`` of a run that had ended: nothing was trained


class Trainer:
    """Trains built components into a run directory (rank 0 writes; every rank trains).

    ``Trainer(gen, loss, dataset, disc=..., metrics=..., options=TrainOptions(...))`` trains
    what the caller built, a hand-made generator module included (see ``docs/python-api.md``);
    :meth:`from_experiment` builds an experiment's components from the registry first, as
    ``colorkit run`` does. Seed before building the networks for a reproducible start
    (:meth:`from_experiment` does).
    """

    def __init__(self, gen: Generator, loss: Loss, dataset: Dataset, *, disc: Discriminator | None = None,
                 metrics: dict[str, Metric] | None = None, options: TrainOptions | None = None,
                 run_dir: str | Path = "runs/trainer", experiment: Experiment | None = None,
                 plugins: dict[str, Any] | None = None, progress: bool = True, console: Any = None,
                 info: ckdist.DistInfo | None = None) -> None:
        t = self.t = options or TrainOptions()
        self.run_dir, self.experiment_dict = Path(run_dir), experiment.to_dict() if experiment else {}
        self.label = experiment.label if experiment else type(gen).__name__
        self.plugins = dict(plugins or {})
        self.c = Components(gen, disc, loss, dataset, self.plugins)
        self.info = info or ckdist.DistInfo()
        self.device = pick_device(t.device, self.info.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.amp_dtype = resolve_precision(t.precision, self.device)
        self.channels_last = uses_channels_last(t.channels_last, self.device)
        check_fit(self.c)
        if t.init == "he":
            he_init(gen)
            if disc is not None:
                he_init(disc)
        self.gen: nn.Module = self._prepare(gen)
        self.disc: nn.Module | None = self._prepare(disc) if disc is not None else None
        self.opt_g = torch.optim.Adam(unwrap(self.gen).parameters(), lr=t.lr, betas=(t.beta1, t.beta2))
        self.opt_d = (torch.optim.Adam(unwrap(self.disc).parameters(), lr=t.lr_d or t.lr, betas=(t.beta1, t.beta2))
                      if self.disc is not None else None)
        #: The exponential moving average of the generator (``train.ema``): what validation,
        #: ``best.pt``, eval and colorize use when it is on.
        self.ema_gen: nn.Module | None = None
        if t.ema > 0:
            self.ema_gen = copy.deepcopy(unwrap(self.gen)).requires_grad_(False)
        self.sched_g = make_scheduler(t, self.opt_g)
        self.sched_d = make_scheduler(t, self.opt_d) if self.opt_d is not None else None
        fp16 = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        if type(loss).prepare is not Loss.prepare:  # a loss that needs statistics of the data (a colour prior)
            loss.prepare(dataset.split(dataset.train_split, train=False))
            if loss.class_weights is not None:  # kept in the generator for inference (the EMA copies buffers)
                unwrap(self.gen).adopt_class_weights(loss.class_weights)
        self.train_data, self.val_data = dataset.split(dataset.train_split, train=True), dataset.split(dataset.val_split)
        for role, data in (("train", self.train_data), ("val", self.val_data)):
            if len(data) == 0:
                raise UsageError(f"dataset '{component_name(self.c, 'dataset')}': its {role} split "
                                 f"('{getattr(dataset, role + '_split')}') is empty")
        self.workers = workers(t, self.device, self.train_data)
        self.per_epoch = batches_per_epoch(self.train_data, self.info, t.batch_size)  # the epochs' share of the budget (budget_progress)
        self._set_metrics(dict(metrics or {}))
        self.progress, self.console = progress and self.info.is_main, console
        # Progress counters, all saved in checkpoints.
        self.epoch, self.batch_in_epoch, self.step, self.images = 1, 0, 0, 0
        self.sums: dict[str, float] = {}
        self.count = 0
        self.best_value: float | None = None
        self.epoch_logs: list[dict[str, Any]] = []
        self.log_lines, self.step_text, self.val_text = 0, "", ""  # the latest loss parts and validation, for the display
        self.train_seconds = self.cpu_seconds = 0.0
        self._budget_done = self._stop_requested = False
        #: A new best validation value whose ``best.pt`` the next ``last.pt`` save makes.
        self.best_pending = False
        torch.manual_seed(t.seed + 1_000_003 * self.info.rank)  # per-rank dropout/augmentation streams

    @classmethod
    def from_experiment(cls, registry: Registry, exp: Experiment, run_dir: str | Path, **kwargs: Any) -> Trainer:
        """The trainer of a resolved experiment: its components built from ``registry`` right
        after seeding with ``train.seed`` (so the initial weights follow the seed)."""
        seed_everything(exp.train.seed)
        c = build_components(registry, exp)
        metrics = build_metrics(registry, exp.metrics) if exp.metrics else {}
        return cls(c.gen, c.loss, c.dataset, disc=c.disc, metrics=metrics, options=exp.train, run_dir=run_dir,
                   experiment=exp, plugins=c.plugins, **kwargs)

    def _set_metrics(self, metrics: dict[str, Metric]) -> None:
        """Built once, reset at every validation; ``val_l1`` (:class:`ColourL1`) is the plateau
        signal; ``best.pt`` follows ``train.best_metric`` (default: the first metric)."""
        self.metric_names = list(metrics)
        self.val_metrics = {**metrics, ColourL1.key: ColourL1()}
        self.best_metric = self.t.best_metric or (self.metric_names[0] if self.metric_names else None)
        if self.best_metric is not None:
            if self.best_metric not in metrics:
                raise UsageError(f"train.best_metric '{self.best_metric}' is not among the validation metrics "
                                 f"({', '.join(metrics) or 'none'})")
            self.best_higher = metrics[self.best_metric].higher_is_better

    # -- set-up -----------------------------------------------------------------------------------
    def _prepare(self, module: nn.Module) -> nn.Module:
        if self.info.enabled and self.t.sync_bn:
            if self.device.type != "cuda":
                raise UsageError("train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); "
                                 "drop it on the CPU")
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.t.compile:
            module = torch.compile(module)
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        return module

    def budget_progress(self) -> float:
        """How much of the run's budget is spent, 0..1 (:func:`colorkit.engine.schedules.budget_progress`)."""
        return budget_progress(self)

    def _update_ema(self) -> None:
        """One step of the weights' moving average; buffers (batch-norm statistics) are copied. The decay
        ramps up as ``min(ema, (1 + step) / (10 + step))``: early steps forget the initial weights fast."""
        if self.ema_gen is None:
            return
        decay = min(self.t.ema, (1 + self.step) / (10 + self.step))
        live = unwrap(self.gen)
        with torch.no_grad():
            for avg, p in zip(self.ema_gen.parameters(), live.parameters()):
                avg.lerp_(p.detach(), 1.0 - decay)
            for avg, b in zip(self.ema_gen.buffers(), live.buffers()):
                avg.copy_(b)

    @property
    def eval_gen(self) -> nn.Module:
        """The generator that validation, sample grids and ``best.pt`` users see."""
        return self.ema_gen if self.ema_gen is not None else unwrap(self.gen)

    # -- one batch ----------------------------------------------------------------------------------
    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _to_model(self, rgb: torch.Tensor) -> torch.Tensor:
        lab = color.rgb_to_model(rgb.to(self.device, non_blocking=True))
        return lab.contiguous(memory_format=torch.channels_last) if self.channels_last else lab

    def train_batch(self, rgb: torch.Tensor) -> dict[str, float]:
        """One discriminator step and ``g_steps`` generator steps; returns the logged values."""
        set_step_lr(self)
        lab = self._to_model(rgb)
        l, target = split_target(self.c.gen, lab)  # noqa: E741
        parts: dict[str, torch.Tensor] = {}
        decode = unwrap(self.gen).decode  # the colour of the training output (class logits: their mean)
        with self._autocast():
            pred = self.gen(l)
            colour = decode(pred)
        adversarial = self.disc is not None and self.budget_progress() >= self.t.gan_start
        if adversarial:
            assert self.opt_d is not None
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                d_parts = self.c.loss.discriminator_loss(Prediction(l, pred, target, colour).detached(), self.disc)
            self.scaler_d.scale(d_parts["total"]).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            parts.update({("d_total" if k == "total" else k): v.detach() for k, v in d_parts.items()})
        # The generator sees the bare discriminator: no DDP gradient sync for D during G steps.
        plain_disc = unwrap(self.disc) if adversarial else None
        if plain_disc is not None:
            plain_disc.requires_grad_(False)
        try:
            for k in range(self.t.g_steps):
                if k > 0:
                    with self._autocast():
                        pred = self.gen(l)
                        colour = decode(pred)
                self.opt_g.zero_grad(set_to_none=True)
                with self._autocast():
                    g_parts = self.c.loss.generator_loss(Prediction(l, pred, target, colour), plain_disc)
                self.scaler_g.scale(g_parts["total"]).backward()
                self.scaler_g.step(self.opt_g)
                self.scaler_g.update()
        finally:
            if plain_disc is not None:
                plain_disc.requires_grad_(True)
        self._update_ema()
        parts.update({("g_total" if k == "total" else k): v.detach() for k, v in g_parts.items()})
        parts["train_l1"] = (colour.detach().float() - target).abs().mean()
        logs = dict(zip(parts, torch.stack([v.float() for v in parts.values()]).tolist()))  # one device sync per step
        for name, value in logs.items():
            if not math.isfinite(value):
                raise ColorkitError(
                    f"step {self.step + 1}: loss part '{name}' is {value}; training stopped, the last good "
                    "checkpoint is kept (lower the learning rate, try train.precision=fp32, or check the data)"
                )
        return logs

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """The validation metrics and ``val_l1`` (:func:`colorkit.engine.validation.validate`)."""
        return validate(self)

    # -- outputs ------------------------------------------------------------------------------------
    def write_grid(self, path: Path | None = None) -> Path:
        """``samples.png``: eval's Figure 5 grid (grayscale | original | prediction) of a seeded sample of
        ``grid_rows`` val images, by the checkpoint eval and colorize read (``best.pt``, else ``last.pt``)."""
        gen, label = trainer_state.checkpoint_generator(self)
        grid = comparison_grid([gen], self.val_data, rows=self.t.grid_rows, device=self.device, labels=[label],
                               seed=self.t.seed)
        path = path or self.run_dir / "samples.png"
        save_png(grid, path)
        return path

    def save(self, name: str = "last.pt") -> None:
        """Save ``checkpoints/NAME`` (every rank calls it; rank 0 writes); ``last.pt`` after a
        new best validation value then gives ``best.pt`` (:func:`trainer_state.save_best_copy`)."""
        trainer_state.save(self, name)

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's weights, optimisers, schedulers, counters and RNG."""
        trainer_state.load_state(self, state)

    def _log(self, record: dict[str, Any]) -> None:
        if self.info.is_main:
            append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.log_lines += 1

    def _after_validation(self, values: dict[str, float]) -> None:
        record = {"event": "val", "epoch": self.epoch, "step": self.step, "images": self.images, **values}
        self._log(record)
        self.val_text = "  | " + format_parts(values)
        for sched in (self.sched_g, self.sched_d):
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(values["val_l1"])
        if self.best_metric is not None:
            value = values[f"val_{self.best_metric}"]
            better = self.best_value is None or (value > self.best_value if self.best_higher else value < self.best_value)
            if better and math.isfinite(value):
                self.best_value = value
                self.best_pending = True  # best.pt: made from the next last.pt (written first)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True

    def run(self) -> RunResult:
        """Train until the budget is spent; returns the counters and the best validation value."""
        t = self.t
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        per_epoch = self.per_epoch
        total = t.epochs * per_epoch if t.max_steps is None else min(t.epochs * per_epoch, t.max_steps)
        old_handler = None
        with contextlib.suppress(ValueError):  # not the main thread: no signal handling
            old_handler = signal.signal(signal.SIGINT, self._request_stop)
        try:
            progress_note(f"{self.label}: run directory {self.run_dir}", self.progress, self.console)
            with progress_bar(self.progress, self.console) as bar:
                task = bar.add_task(self.label, total=total, completed=min(self.step, total), unit="step",
                                    images=self.images)
                self._loop(bar, task, per_epoch, total)
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if self.info.is_main:
            self.write_grid()
        sums = ckdist.gather_objects({"gen": trainer_state.params_checksum(unwrap(self.gen)),
                                      "disc": trainer_state.params_checksum(unwrap(self.disc)) if self.disc is not None else None},
                                     self.info)
        seconds = time.perf_counter() - start
        self._log({"event": "end", "step": self.step, "images": self.images, "seconds": round(seconds, 3),
                   "train_seconds": round(self.train_seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                   "world_size": self.info.world_size, "param_checksums": sums,
                   "ranks_in_sync": all(s == sums[0] for s in sums)})
        best = {"metric": self.best_metric, "value": self.best_value} if self.best_metric else None
        return RunResult(self.run_dir, self.step, self.images, self.epoch_logs, seconds, best)

    def _loop(self, bar: Any, task: Any, per_epoch: int, total: int) -> None:
        t = self.t
        self.gen.train()
        if self.disc is not None:
            self.disc.train()
        while self.epoch <= t.epochs:
            loader, drop = epoch_loader(self, self.epoch, self.batch_in_epoch)
            for i, rgb in enumerate(loader):
                if i < drop:
                    continue  # resumed with workers: these batches were consumed before the checkpoint
                if self._budget_done:
                    break
                wall0, cpu0 = time.perf_counter(), time.process_time()
                logs = self.train_batch(rgb)
                self.step += 1
                self.batch_in_epoch += 1
                self.images += rgb.shape[0] * self.info.world_size
                self.count += 1
                self.train_seconds += time.perf_counter() - wall0
                cpu_before = self.cpu_seconds
                self.cpu_seconds += time.process_time() - cpu0
                keep_marks(self, cpu_before)
                for k, v in logs.items():
                    self.sums[k] = self.sums.get(k, 0.0) + v
                if self.step % t.log_every == 0 or self.step == 1:
                    self._log({"event": "step", "step": self.step, "epoch": self.epoch, "images": self.images,
                               "lr": self.opt_g.param_groups[0]["lr"], **logs})
                if t.val_every and self.step % t.val_every == 0:
                    self._after_validation(self.validate())
                self.step_text = format_parts(logs, skip=("train_l1",))  # (train_l1: in the log only)
                bar.update(task, advance=1, parts=self.step_text + self.val_text, images=self.images,
                           total=expected_steps(self, total))
                stop, budget = self._stop_requested, budget_reached(self)
                if self.info.enabled:  # every rank takes rank-consistent decisions
                    flag = torch.tensor([int(stop), int(budget)], device=self.device if self.device.type == "cuda" else "cpu")
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                    stop, budget = bool(flag[0].item()), bool(flag[1].item())
                self._budget_done = budget
                if stop:
                    self.save()
                    raise TrainingInterrupted(
                        f"interrupted at step {self.step}: checkpoint saved in {self.run_dir / 'checkpoints'}; "
                        f"continue with: colorkit run --resume {self.run_dir}"
                    )
                if self.best_pending or (t.ckpt_every and self.step % t.ckpt_every == 0):
                    self.save()
            if self._budget_done and self.batch_in_epoch < per_epoch:
                if self.count:
                    self._end_epoch(partial=True)
                    bar.update(task, parts=self.step_text + self.val_text)  # the last line: this validation
                self.save()
                return
            self._end_epoch()
            bar.update(task, parts=self.step_text + self.val_text)
            self.save()
            if self._budget_done:
                return

    def _end_epoch(self, partial: bool = False) -> None:
        report_bad_images = getattr(self.train_data, "end_epoch", None)
        if callable(report_bad_images) and self.info.is_main:
            report_bad_images()  # one line about unusable images found while reading this epoch
        means = {k: v / max(1, self.count) for k, v in self.sums.items()}
        record = {"event": "epoch", "epoch": self.epoch, "step": self.step, "images": self.images,
                  "lr": self.opt_g.param_groups[0]["lr"], "partial": partial, **means}
        if not self.t.val_every:
            values = self.validate()
            record.update(values)
            self._log(record)
            self._after_validation(values)
        else:
            self._log(record)
        self.epoch_logs.append(record)
        for sched in (self.sched_g, self.sched_d):
            if sched is not None and not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step()
        if not partial:
            self.epoch += 1
            self.batch_in_epoch = 0
        self.sums, self.count = {}, 0
