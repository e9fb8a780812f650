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
from colorkit.engine.inference import experiment_label
from colorkit.engine.loading import batches_per_epoch, epoch_loader, workers
from colorkit.engine.schedules import budget_progress, budget_reached, expected_steps, make_scheduler, set_step_lr
from colorkit.engine.scoring import ColourL1, build_metrics
from colorkit.engine.seeding import seed_everything
from colorkit.engine.trainer_state import TrainModels, TrainState, keep_marks, unwrap
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
    (:meth:`from_experiment` does). Where the run is: :attr:`state` (a
    :class:`~colorkit.engine.trainer_state.TrainState`); what it updates: :attr:`models`.
    """

    def __init__(self, gen: Generator, loss: Loss, dataset: Dataset, *, disc: Discriminator | None = None,
                 metrics: dict[str, Metric] | None = None, options: TrainOptions | None = None,
                 run_dir: str | Path = "runs/trainer", experiment: Experiment | None = None,
                 plugins: dict[str, Any] | None = None, progress: bool = True, console: Any = None,
                 info: ckdist.DistInfo | None = None, device: torch.device | None = None) -> None:
        opts = self.options = options or TrainOptions()
        self.run_dir, self.experiment_dict = Path(run_dir), experiment.to_dict() if experiment else {}
        self.label = experiment.label if experiment else type(gen).__name__
        self.components = Components(gen, disc, loss, dataset, dict(plugins or {}))
        self.info = info or ckdist.DistInfo()
        #: ``train.device`` as the caller chose it for the run (``runs.train`` does, once), else chosen here.
        self.device = device if device is not None else pick_device(opts.device, self.info.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.amp_dtype = resolve_precision(opts.precision, self.device)
        self.channels_last = uses_channels_last(opts.channels_last, self.device)
        check_fit(self.components)
        if opts.init == "he":
            he_init(gen)
            if disc is not None:
                he_init(disc)
        self.models = self._build_models(gen, disc)
        if type(loss).prepare is not Loss.prepare:  # a loss that needs statistics of the data (a colour prior)
            loss.prepare(dataset.split(dataset.train_split, train=False))
            if loss.class_weights is not None:  # kept in the generator for inference (the EMA copies buffers)
                unwrap(self.models.gen).adopt_class_weights(loss.class_weights)
        self.train_data, self.val_data = dataset.split(dataset.train_split, train=True), dataset.split(dataset.val_split)
        for role, data in (("train", self.train_data), ("val", self.val_data)):
            if len(data) == 0:
                raise UsageError(f"dataset '{component_name(self.components, 'dataset')}': its {role} split "
                                 f"('{getattr(dataset, role + '_split')}') is empty")
        self.workers = workers(opts, self.device, self.train_data)
        self.per_epoch = batches_per_epoch(self.train_data, self.info, opts.batch_size)  # the epochs' share of the budget
        self._set_metrics(dict(metrics or {}))
        self.progress, self.console = progress and self.info.is_main, console
        #: The counters, sums, best value, logs and timers: all of them saved in checkpoints.
        self.state = TrainState()
        self.step_text, self.val_text = "", ""  # the latest loss parts and validation, for the display
        self._stop_requested = False
        #: A new best validation value whose ``best.pt`` the next ``last.pt`` save makes.
        self.best_pending = False
        torch.manual_seed(opts.seed + 1_000_003 * self.info.rank)  # per-rank dropout/augmentation streams

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
        self.best_metric = self.options.best_metric or (self.metric_names[0] if self.metric_names else None)
        if self.best_metric is not None:
            if self.best_metric not in metrics:
                raise UsageError(f"train.best_metric '{self.best_metric}' is not among the validation metrics "
                                 f"({', '.join(metrics) or 'none'})")
            self.best_higher = metrics[self.best_metric].higher_is_better

    # -- set-up -----------------------------------------------------------------------------------
    def _build_models(self, gen: nn.Module, disc: nn.Module | None) -> TrainModels:
        """The networks on the device (wrapped as the options ask), their Adam optimisers,
        schedulers and gradient scalers, and the generator's moving average (``train.ema``): what
        validation, ``best.pt``, eval and colorize use when it is on."""
        opts = self.options
        gen = self._prepare(gen)
        disc = self._prepare(disc) if disc is not None else None
        opt_g = torch.optim.Adam(unwrap(gen).parameters(), lr=opts.lr, betas=(opts.beta1, opts.beta2))
        opt_d = (torch.optim.Adam(unwrap(disc).parameters(), lr=opts.lr_d or opts.lr, betas=(opts.beta1, opts.beta2))
                 if disc is not None else None)
        ema_gen = copy.deepcopy(unwrap(gen)).requires_grad_(False) if opts.ema > 0 else None
        fp16 = self.amp_dtype == torch.float16
        return TrainModels(gen, disc, opt_g, opt_d, sched_g=make_scheduler(opts, opt_g),
                           sched_d=make_scheduler(opts, opt_d) if opt_d is not None else None,
                           scaler_g=torch.amp.GradScaler(self.device.type, enabled=fp16),
                           scaler_d=torch.amp.GradScaler(self.device.type, enabled=fp16), ema_gen=ema_gen)

    def _prepare(self, module: nn.Module) -> nn.Module:
        if self.info.enabled and self.options.sync_bn:
            if self.device.type != "cuda":
                raise UsageError("train.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU kernel); "
                                 "drop it on the CPU")
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        module = module.to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        if self.options.compile:
            module = torch.compile(module)
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        return module

    @property
    def eval_gen(self) -> nn.Module:
        """The generator that validation, sample grids and ``best.pt`` users see."""
        return self.models.ema_gen if self.models.ema_gen is not None else unwrap(self.models.gen)

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
        opts, models, loss = self.options, self.models, self.components.loss
        set_step_lr(opts, self.state, self.per_epoch, models.opt_g, models.opt_d)
        lab = self._to_model(rgb)
        l, target = split_target(self.components.gen, lab)  # noqa: E741
        parts: dict[str, torch.Tensor] = {}
        decode = unwrap(models.gen).decode  # the colour of the training output (class logits: their mean)
        with self._autocast():
            pred = models.gen(l)
            colour = decode(pred)
        adversarial = models.disc is not None and budget_progress(opts, self.state, self.per_epoch) >= opts.gan_start
        if adversarial:
            assert models.opt_d is not None
            models.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                d_parts = loss.discriminator_loss(Prediction(l, pred, target, colour).detached(), models.disc)
            models.scaler_d.scale(d_parts["total"]).backward()
            models.scaler_d.step(models.opt_d)
            models.scaler_d.update()
            parts.update({("d_total" if k == "total" else k): v.detach() for k, v in d_parts.items()})
        # The generator sees the bare discriminator: no DDP gradient sync for D during G steps.
        plain_disc = unwrap(models.disc) if adversarial else None
        if plain_disc is not None:
            plain_disc.requires_grad_(False)
        try:
            for k in range(opts.g_steps):
                if k > 0:
                    with self._autocast():
                        pred = models.gen(l)
                        colour = decode(pred)
                models.opt_g.zero_grad(set_to_none=True)
                with self._autocast():
                    g_parts = loss.generator_loss(Prediction(l, pred, target, colour), plain_disc)
                models.scaler_g.scale(g_parts["total"]).backward()
                models.scaler_g.step(models.opt_g)
                models.scaler_g.update()
        finally:
            if plain_disc is not None:
                plain_disc.requires_grad_(True)
        if models.ema_gen is not None:
            update_ema(models.ema_gen, unwrap(models.gen), self.state.step, opts.ema)
        parts.update({("g_total" if k == "total" else k): v.detach() for k, v in g_parts.items()})
        parts["train_l1"] = (colour.detach().float() - target).abs().mean()
        logs = dict(zip(parts, torch.stack([v.float() for v in parts.values()]).tolist()))  # one device sync per step
        for name, value in logs.items():
            if not math.isfinite(value):
                raise ColorkitError(
                    f"step {self.state.step + 1}: loss part '{name}' is {value}; training stopped, the last good "
                    "checkpoint is kept (lower the learning rate, try train.precision=fp32, or check the data)"
                )
        return logs

    # -- validation, checkpoints, logs --------------------------------------------------------------
    def _validate(self) -> dict[str, float]:
        return validate(self.eval_gen, self.val_data, self.val_metrics, options=self.options, info=self.info,
                        device=self.device, workers=self.workers, step=self.state.step, progress=self.progress,
                        console=self.console)

    def _about(self) -> dict[str, Any]:
        """What every checkpoint says of the run: its experiment and plugin versions."""
        return {"experiment": self.experiment_dict, "plugins": self.components.plugins}

    def _save(self) -> None:
        """``checkpoints/last.pt`` (every rank calls it; rank 0 writes), and after a new best
        validation value ``best.pt`` made from it."""
        trainer_state.save(self.run_dir / "checkpoints", self.state, self.models, self._about(), self.info,
                           best=self.best_pending, keep_best_state=self.options.keep_best_state)
        self.best_pending = False

    def write_grid(self, path: Path | None = None) -> Path:
        """``samples.png``: eval's Figure 5 grid (grayscale | original | prediction) of a seeded sample of
        ``grid_rows`` val images, by the checkpoint eval and colorize read (``best.pt``, else ``last.pt``)."""
        title = experiment_label(self.experiment_dict, "/") if self.experiment_dict else self.label
        gen, label = trainer_state.checkpoint_generator(self.run_dir, self.eval_gen, self.state.step, title, self.device)
        grid = comparison_grid([gen], self.val_data, rows=self.options.grid_rows, device=self.device, labels=[label],
                               seed=self.options.seed)
        path = path or self.run_dir / "samples.png"
        save_png(grid, path)
        return path

    def log(self, record: dict[str, Any]) -> None:
        """One record of ``metrics.jsonl`` (rank 0 writes; every rank counts it)."""
        if self.info.is_main:
            append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.state.log_lines += 1

    def _after_validation(self, values: dict[str, float]) -> None:
        state = self.state
        self.log({"event": "val", "epoch": state.epoch, "step": state.step, "images": state.images, **values})
        self.val_text = "  | " + format_parts(values)
        for sched in (self.models.sched_g, self.models.sched_d):
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(values["val_l1"])
        if self.best_metric is not None:
            value, best = values[f"val_{self.best_metric}"], state.best_value
            better = best is None or (value > best if self.best_higher else value < best)
            if better and math.isfinite(value):
                state.best_value = value
                self.best_pending = True  # best.pt: made from the next last.pt (written first)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Train until the budget is spent; returns the counters and the best validation value."""
        opts, state, models = self.options, self.state, self.models
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        per_epoch = self.per_epoch
        total = opts.epochs * per_epoch if opts.max_steps is None else min(opts.epochs * per_epoch, opts.max_steps)
        old_handler = None
        with contextlib.suppress(ValueError):  # not the main thread: no signal handling
            old_handler = signal.signal(signal.SIGINT, self._request_stop)
        try:
            progress_note(f"{self.label}: run directory {self.run_dir}", self.progress, self.console)
            with progress_bar(self.progress, self.console) as bar:
                task = bar.add_task(self.label, total=total, completed=min(state.step, total), unit="step",
                                    images=state.images)
                self._loop(bar, task, per_epoch, total)
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if self.info.is_main:
            self.write_grid()
        sums = ckdist.gather_objects({"gen": trainer_state.params_checksum(unwrap(models.gen)),
                                      "disc": trainer_state.params_checksum(unwrap(models.disc))
                                      if models.disc is not None else None}, self.info)
        seconds = time.perf_counter() - start
        self.log({"event": "end", "step": state.step, "images": state.images, "seconds": round(seconds, 3),
                  "train_seconds": round(state.train_seconds, 3), "cpu_seconds": round(state.cpu_seconds, 3),
                  "world_size": self.info.world_size, "param_checksums": sums,
                  "ranks_in_sync": all(s == sums[0] for s in sums)})
        best = {"metric": self.best_metric, "value": state.best_value} if self.best_metric else None
        return RunResult(self.run_dir, state.step, state.images, state.epoch_logs, seconds, best)

    def _loop(self, bar: Any, task: Any, per_epoch: int, total: int) -> None:
        opts, state = self.options, self.state
        self.models.gen.train()
        if self.models.disc is not None:
            self.models.disc.train()
        budget_done = budget_reached(opts, state)  # a resumed run may have spent it (its last save)
        while state.epoch <= opts.epochs:
            loader, drop = epoch_loader(self.train_data, state.epoch, state.batch_in_epoch, options=opts,
                                        info=self.info, workers=self.workers, device=self.device)
            for i, rgb in enumerate(loader):
                if i < drop:
                    continue  # resumed with workers: these batches were consumed before the checkpoint
                if budget_done:
                    break
                wall0, cpu0 = time.perf_counter(), time.process_time()
                logs = self.train_batch(rgb)
                cpu_before = state.cpu_seconds
                state.add_step(logs, rgb.shape[0] * self.info.world_size, time.perf_counter() - wall0,
                               time.process_time() - cpu0)
                if self.info.is_main:
                    keep_marks(self.run_dir / "checkpoints", opts.keep_cpu_minutes, cpu_before, state, self.models,
                               self._about())
                if state.step % opts.log_every == 0 or state.step == 1:
                    self.log({"event": "step", "step": state.step, "epoch": state.epoch, "images": state.images,
                              "lr": self.models.opt_g.param_groups[0]["lr"], **logs})
                if opts.val_every and state.step % opts.val_every == 0:
                    self._after_validation(self._validate())
                self.step_text = format_parts(logs, skip=("train_l1",))  # (train_l1: in the log only)
                bar.update(task, advance=1, parts=self.step_text + self.val_text, images=state.images,
                           total=expected_steps(opts, state, per_epoch, total))
                stop, budget_done = self._stop_requested, budget_reached(opts, state)
                if self.info.enabled:  # every rank takes rank-consistent decisions
                    flag = torch.tensor([int(stop), int(budget_done)],
                                        device=self.device if self.device.type == "cuda" else "cpu")
                    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                    stop, budget_done = bool(flag[0].item()), bool(flag[1].item())
                if stop:
                    self._save()
                    raise TrainingInterrupted(
                        f"interrupted at step {state.step}: checkpoint saved in {self.run_dir / 'checkpoints'}; "
                        f"continue with: colorkit run --resume {self.run_dir}"
                    )
                if self.best_pending or (opts.ckpt_every and state.step % opts.ckpt_every == 0):
                    self._save()
            if budget_done and state.batch_in_epoch < per_epoch:
                if state.count:
                    self._end_epoch(partial=True)
                    bar.update(task, parts=self.step_text + self.val_text)  # the last line: this validation
                self._save()
                return
            self._end_epoch()
            bar.update(task, parts=self.step_text + self.val_text)
            self._save()
            if budget_done:
                return

    def _end_epoch(self, partial: bool = False) -> None:
        state = self.state
        report_bad_images = getattr(self.train_data, "end_epoch", None)
        if callable(report_bad_images) and self.info.is_main:
            report_bad_images()  # one line about unusable images found while reading this epoch
        record = {"event": "epoch", "epoch": state.epoch, "step": state.step, "images": state.images,
                  "lr": self.models.opt_g.param_groups[0]["lr"], "partial": partial, **state.means()}
        if not self.options.val_every:
            values = self._validate()
            record.update(values)
            self.log(record)
            self._after_validation(values)
        else:
            self.log(record)
        state.epoch_logs.append(record)
        for sched in (self.models.sched_g, self.models.sched_d):
            if sched is not None and not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step()
        state.end_epoch(partial)


def update_ema(average: nn.Module, live: nn.Module, step: int, ema: float) -> None:
    """One step of the weights' moving average ``average`` of ``live`` after ``step`` steps; buffers
    (batch-norm statistics) are copied. The decay ramps up as ``min(ema, (1 + step) / (10 + step))``:
    early steps forget the initial weights fast."""
    decay = min(ema, (1 + step) / (10 + step))
    with torch.no_grad():
        for avg, p in zip(average.parameters(), live.parameters()):
            avg.lerp_(p.detach(), 1.0 - decay)
        for avg, b in zip(average.buffers(), live.buffers()):
            avg.copy_(b)
