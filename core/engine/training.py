"""The training loop (GAN and non-GAN): validation, checkpoints, exact resume, DDP, precision.

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
import hashlib
import json
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler

from colorkit.kernel import color
from colorkit.engine import distributed as ckdist
from colorkit.engine.progress import progress_bar
from colorkit.kernel.errors import ColorkitError, PluginError, UsageError
from colorkit.kernel.experiment import Experiment, config_diff, experiment_from_dict
from colorkit.engine.images import save_png
from colorkit.engine.devices import pick_device, resolve_precision, uses_channels_last
from colorkit.kernel.interfaces import KEEP_INIT, Dataset, Discriminator, Generator, Loss, Prediction
from colorkit.kernel.registry import Registry
from colorkit.kernel.files import append_jsonl, atomic_write_bytes, write_new_text
from colorkit.engine.checkpoints import environment_manifest, load_checkpoint, new_run_dir, save_checkpoint


class TrainingInterrupted(ColorkitError):
    """Ctrl-C: the checkpoint was saved and the run can be resumed."""

    exit_code = 130


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every random state a training step reads, in a form ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(state["cuda"])


def he_init(module: nn.Module) -> None:
    """He et al. (2015) initialisation of every conv and linear layer; batch norm to (1, 0).

    What the plugin initialised itself is left as it is: a component whose class sets
    ``initialises_itself``, and every module marked with :func:`colorkit.kernel.interfaces.keep_init`
    (with all it contains)."""
    if getattr(type(module), "initialises_itself", False):
        return
    kept = [m for m in module.modules() if getattr(m, KEEP_INIT, False)]
    inside_kept = {id(x) for k in kept for x in k.modules()}
    for m in module.modules():
        if id(m) in inside_kept:
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            # A parametrised weight (spectral norm) is computed: initialise what it is computed from.
            weight = (m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight")
                      else m.weight)
            nn.init.kaiming_normal_(weight, a=0.2, nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@dataclass
class Components:
    """The built components of an experiment."""

    gen: Generator
    disc: Discriminator | None
    loss: Loss
    dataset: Dataset
    plugins: dict[str, Any] = field(default_factory=dict)


def build_components(registry: Registry, exp: Experiment) -> Components:
    """Build generator, discriminator, loss and dataset from the registry, checking the sizes."""
    plugins: dict[str, Any] = {}

    def build(kind: str, spec: Any) -> Any:
        comp = registry.get(kind, spec.name)
        plugins[kind] = {"name": comp.name, "package": comp.package, "version": comp.version}
        try:
            return comp.build(spec.options)
        except ColorkitError:
            raise
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{kind} '{spec.name}' (package {comp.package}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a plugin's own failure, named with its package
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise PluginError(f"{kind} '{spec.name}' from package {comp.package} {comp.version} failed to build: "
                              f"{type(exc).__name__}: {first}") from exc

    gen = build("generator", exp.gen)
    disc = build("discriminator", exp.disc) if exp.disc else None
    loss = build("loss", exp.loss)
    dataset = build("dataset", exp.dataset)
    for obj, kind, base in ((gen, "generator", Generator), (disc, "discriminator", Discriminator)):
        if obj is not None and not isinstance(obj, base):
            raise UsageError(f"{kind} '{plugins[kind]['name']}' from {plugins[kind]['package']} is not a colorkit {base.__name__}")
    size = dataset.size
    try:
        gen.check_input_size(size, size)
    except ValueError as exc:
        raise UsageError(f"generator '{exp.gen.name}' cannot take {exp.dataset.name} images at {size} px: {exc}") from None
    return Components(gen, disc, loss, dataset, plugins)


def split_target(gen: Generator, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition ``l`` and the target in the generator's output space, from normalised Lab."""
    l = lab[:, :1]  # noqa: E741
    return l, (lab[:, 1:] if gen.output_space == "ab" else lab)


class _Skip(Sampler[int]):
    """The indices of ``base`` after the first ``skip``."""

    def __init__(self, base: Sampler[int], skip: int) -> None:
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.base):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


def params_checksum(module: nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal on all ranks when DDP keeps them in sync."""
    h = hashlib.sha256()
    for p in module.parameters():
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    images: int
    epoch_logs: list[dict[str, Any]]
    seconds: float
    best: dict[str, Any] | None = None


class Trainer:
    """Trains one experiment into a run directory (rank 0 writes; every rank trains)."""

    def __init__(self, registry: Registry, exp: Experiment, run_dir: Path, *, progress: bool = True,
                 console: Any = None, info: ckdist.DistInfo | None = None) -> None:
        self.registry, self.exp, self.run_dir = registry, exp, run_dir
        t = self.t = exp.train
        self.info = info or ckdist.DistInfo()
        self.device = pick_device(t.device, self.info.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.amp_dtype = resolve_precision(t.precision, self.device)
        self.channels_last = uses_channels_last(t.channels_last, self.device)
        seed_everything(t.seed)
        self.c = build_components(registry, exp)
        if t.init == "he":
            he_init(self.c.gen)
            if self.c.disc is not None:
                he_init(self.c.disc)
        self.gen: nn.Module = self._prepare(self.c.gen)
        self.disc: nn.Module | None = self._prepare(self.c.disc) if self.c.disc is not None else None
        self.opt_g = torch.optim.Adam(_unwrap(self.gen).parameters(), lr=t.lr, betas=(t.beta1, t.beta2))
        self.opt_d = (torch.optim.Adam(_unwrap(self.disc).parameters(), lr=t.lr_d or t.lr, betas=(t.beta1, t.beta2))
                      if self.disc is not None else None)
        #: The exponential moving average of the generator (``train.ema``): what validation,
        #: ``best.pt``, eval and colorize use when it is on.
        self.ema_gen: nn.Module | None = None
        if t.ema > 0:
            self.ema_gen = copy.deepcopy(_unwrap(self.gen)).requires_grad_(False)
        self.sched_g = self._scheduler(self.opt_g)
        self.sched_d = self._scheduler(self.opt_d) if self.opt_d is not None else None
        fp16 = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        ds = self.c.dataset
        self.train_data = ds.split(ds.train_split, train=True)
        self.val_data = ds.split(ds.val_split, train=False)
        for role, data in (("train", self.train_data), ("val", self.val_data)):
            if len(data) == 0:
                raise UsageError(f"dataset '{exp.dataset.name}': its {role} split ('{getattr(ds, role + '_split')}') is empty")
        self.workers = self._workers()
        self.per_epoch = self.batches_per_epoch()  # the epochs' share of the budget (budget_progress)
        self.metric_names = list(exp.metrics)
        from colorkit.engine.evaluation import ColourL1, build_metrics

        #: Built once, reset at every validation; ``val_l1`` is the plateau signal.
        self.val_metrics = {**(build_metrics(registry, self.metric_names) if self.metric_names else {}),
                            ColourL1.key: ColourL1()}
        self.best_metric = t.best_metric or (self.metric_names[0] if self.metric_names else None)
        if self.best_metric is not None:
            self.best_higher = registry.get("metric", self.best_metric).build({}).higher_is_better
        self.progress, self.console = progress and self.info.is_main, console
        # Progress counters, all saved in checkpoints.
        self.epoch = 1
        self.batch_in_epoch = 0
        self.step = 0
        self.images = 0
        self.sums: dict[str, float] = {}
        self.count = 0
        self.best_value: float | None = None
        self.epoch_logs: list[dict[str, Any]] = []
        self.log_lines = 0
        self.train_seconds = 0.0
        self.cpu_seconds = 0.0
        self._budget_done = False
        self._stop_requested = False
        torch.manual_seed(t.seed + 1_000_003 * self.info.rank)  # per-rank dropout/augmentation streams

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

    def _workers(self) -> int:
        """``train.workers``, or for ``auto``: none for in-memory splits (decoded once, served by
        one indexing call) and on the CPU (workers would take the training's cores); up to 8 for
        splits decoded from files on a GPU, where one process cannot keep up at 256 px."""
        if self.t.workers != "auto":
            return int(self.t.workers)
        if self.device.type != "cuda" or not hasattr(self.train_data, "end_epoch"):
            return 0
        import os

        return max(0, min(8, (os.cpu_count() or 1) // max(1, torch.cuda.device_count()) - 1))

    def _scheduler(self, opt: torch.optim.Optimizer) -> Any:
        t = self.t
        if t.lr_schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=t.lr_factor, patience=t.patience)
        if t.lr_schedule == "exponential":
            return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=t.gamma)
        return None  # none, or cosine (set at every step by _set_step_lr)

    def budget_progress(self) -> float:
        """How much of the run's budget is spent, 0..1: the largest fraction among the epochs,
        ``max_steps``, ``max_minutes`` and ``max_cpu_minutes`` (the one that will end the run)."""
        t = self.t
        fractions = [self.step / max(1, t.epochs * self.per_epoch)]
        if t.max_steps is not None:
            fractions.append(self.step / max(1, t.max_steps))
        if t.max_minutes is not None:
            fractions.append(self.train_seconds / (60 * t.max_minutes))
        if t.max_cpu_minutes is not None:
            fractions.append(self.cpu_seconds / (60 * t.max_cpu_minutes))
        return min(1.0, max(fractions))

    def _set_step_lr(self) -> None:
        """Warm-up and the cosine schedule: both set the learning rate before each step."""
        t = self.t
        if not t.warmup and t.lr_schedule != "cosine":
            return
        factor = 1.0
        if t.lr_schedule == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * self.budget_progress()))
        if t.warmup and self.step < t.warmup:
            factor *= (self.step + 1) / t.warmup
        for opt, base in ((self.opt_g, t.lr), (self.opt_d, t.lr_d or t.lr)):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = base * factor

    def _update_ema(self) -> None:
        """One step of the weights' moving average; batch-norm statistics are copied. The decay
        ramps up as ``min(ema, (1 + step) / (10 + step))``, so early steps are not averaged with
        the initial weights for long."""
        if self.ema_gen is None:
            return
        decay = min(self.t.ema, (1 + self.step) / (10 + self.step))
        live = _unwrap(self.gen)
        with torch.no_grad():
            for avg, p in zip(self.ema_gen.parameters(), live.parameters()):
                avg.lerp_(p.detach(), 1.0 - decay)
            for avg, b in zip(self.ema_gen.buffers(), live.buffers()):
                avg.copy_(b)

    @property
    def eval_gen(self) -> nn.Module:
        """The generator that validation, sample grids and ``best.pt`` users see."""
        return self.ema_gen if self.ema_gen is not None else _unwrap(self.gen)

    def _loader(self, epoch: int, skip_batches: int) -> tuple[DataLoader, int]:
        t = self.t
        sampler = DistributedSampler(self.train_data, num_replicas=self.info.world_size, rank=self.info.rank,
                                     shuffle=True, seed=t.seed)
        sampler.set_epoch(epoch)
        drop_last = len(sampler) >= t.batch_size
        by_index = skip_batches if self.workers == 0 else 0
        batches = BatchSampler(_Skip(sampler, by_index * t.batch_size), t.batch_size, drop_last=drop_last)
        gen = torch.Generator().manual_seed(t.seed * 1_000_003 + epoch * 7_919 + self.info.rank)
        loader = DataLoader(self.train_data, batch_sampler=batches, num_workers=self.workers, generator=gen,
                            pin_memory=self.device.type == "cuda")
        return loader, skip_batches - by_index

    def batches_per_epoch(self) -> int:
        n = len(DistributedSampler(self.train_data, num_replicas=self.info.world_size, rank=self.info.rank))
        return n // self.t.batch_size if n >= self.t.batch_size else 1

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
        self._set_step_lr()
        lab = self._to_model(rgb)
        l, target = split_target(self.c.gen, lab)  # noqa: E741
        parts: dict[str, torch.Tensor] = {}
        with self._autocast():
            pred = self.gen(l)
        adversarial = self.disc is not None and self.budget_progress() >= self.t.gan_start
        if adversarial:
            assert self.opt_d is not None
            self.opt_d.zero_grad(set_to_none=True)
            with self._autocast():
                d_parts = self.c.loss.discriminator_loss(Prediction(l, pred.detach(), target), self.disc)
            self.scaler_d.scale(d_parts["total"]).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            parts.update({("d_total" if k == "total" else k): v.detach() for k, v in d_parts.items()})
        # The generator sees the bare discriminator: no DDP gradient sync for D during G steps.
        plain_disc = _unwrap(self.disc) if adversarial else None
        if plain_disc is not None:
            plain_disc.requires_grad_(False)
        try:
            for k in range(self.t.g_steps):
                if k > 0:
                    with self._autocast():
                        pred = self.gen(l)
                self.opt_g.zero_grad(set_to_none=True)
                with self._autocast():
                    g_parts = self.c.loss.generator_loss(Prediction(l, pred, target), plain_disc)
                self.scaler_g.scale(g_parts["total"]).backward()
                self.scaler_g.step(self.opt_g)
                self.scaler_g.update()
        finally:
            if plain_disc is not None:
                plain_disc.requires_grad_(True)
        self._update_ema()
        parts.update({("g_total" if k == "total" else k): v.detach() for k, v in g_parts.items()})
        parts["train_l1"] = (pred.detach().float() - target).abs().mean()
        names = list(parts)
        values = torch.stack([parts[n].float() for n in names]).tolist()  # one device sync per step
        logs = dict(zip(names, values))
        for name, value in logs.items():
            if not math.isfinite(value):
                raise ColorkitError(
                    f"step {self.step + 1}: loss part '{name}' is {value}; training stopped, the last good "
                    "checkpoint is kept (lower the learning rate, try train.precision=fp32, or check the data)"
                )
        return logs

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Metrics of the chosen names and ``val_l1`` (the plateau signal) on the ``val`` split.

        Scored by :func:`colorkit.engine.evaluation.score`, the path ``colorkit eval`` takes, in fp32
        whatever ``train.precision`` is: the values equal ``colorkit eval --split val`` on the
        checkpoint saved next. Under DDP each rank scores every ``world_size``-th image of the
        first ``val_limit`` and the metric states are merged, in rank order, on every rank, so
        every rank takes the same decisions (best checkpoint, plateau) from the same numbers."""
        from colorkit.engine.evaluation import ColourL1, score

        metrics = self.val_metrics
        for m in metrics.values():
            m.reset()
        n = len(self.val_data) if self.t.val_limit is None else min(self.t.val_limit, len(self.val_data))
        shard = torch.utils.data.Subset(self.val_data, range(self.info.rank, n, self.info.world_size))
        gen = self.eval_gen
        if self.info.enabled:  # batch-norm statistics: rank 0's, those the checkpoint holds
            for buf in gen.buffers():
                torch.distributed.broadcast(buf, src=0)
        was_training = gen.training
        try:
            score([gen], shard, [metrics], self.device, batch_size=max(self.t.batch_size, 32), workers=self.workers)
        finally:
            gen.train(was_training)
        if self.info.enabled:
            shards = ckdist.gather_objects(metrics, self.info)
            merged = shards[0]
            for other in shards[1:]:
                for name, m in merged.items():
                    m.merge(other[name])
            metrics = merged
        values = {f"val_{k}": float(m.compute()) for k, m in metrics.items() if k != ColourL1.key}
        values["val_l1"] = float(metrics[ColourL1.key].compute())
        return values

    # -- outputs ------------------------------------------------------------------------------------
    def splits(self) -> dict[str, dict[str, Any]]:
        """The split each data role reads and its image count (``validated``: how many of the val
        images each validation scores, after ``train.val_limit``)."""
        ds = self.c.dataset
        n_val = len(self.val_data)
        validated = n_val if self.t.val_limit is None else min(self.t.val_limit, n_val)
        return {"train": {"split": ds.train_split, "images": len(self.train_data)},
                "val": {"split": ds.val_split, "images": n_val, "validated": validated},
                "test": {"split": ds.test_split, "note": "not read by training; colorkit eval and bench report on it"}}

    def splits_yaml(self) -> str:
        return ("# The data of each role (written by colorkit for the reader; ignored when read back):\n"
                + yaml.safe_dump({"splits": self.splits()}, sort_keys=False))

    def write_grid(self, path: Path | None = None) -> Path:
        """``samples.png``: grayscale | original | prediction of the first ``grid_rows`` val images,
        drawn as :func:`colorkit.engine.evaluation.comparison_grid` draws eval's Figure 5 grid."""
        from colorkit.engine.evaluation import comparison_grid

        grid = comparison_grid([self.eval_gen], self.val_data, rows=self.t.grid_rows, device=self.device,
                               labels=[f"step {self.step}"])
        path = path or self.run_dir / "samples.png"
        save_png(grid, path)
        return path

    def state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        state: dict[str, Any] = {
            "experiment": self.exp.to_dict(),
            "plugins": self.c.plugins,
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
            "gen": _unwrap(self.gen).state_dict(),
            **({"gen_ema": self.ema_gen.state_dict()} if self.ema_gen is not None else {}),
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict() if self.sched_g is not None else None,
            "scaler_g": self.scaler_g.state_dict(),
        }
        if self.disc is not None and self.opt_d is not None:
            state["disc"] = _unwrap(self.disc).state_dict()
            state["opt_d"] = self.opt_d.state_dict()
            state["sched_d"] = self.sched_d.state_dict() if self.sched_d is not None else None
            state["scaler_d"] = self.scaler_d.state_dict()
        return state

    def save(self, name: str = "last.pt") -> None:
        rng = ckdist.gather_objects(rng_state(), self.info)  # collective: every rank calls it
        if self.info.is_main:
            save_checkpoint(self.run_dir / "checkpoints" / name, self.state(rng))
        ckdist.barrier(self.info)

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's weights, optimisers, schedulers, counters and RNG."""
        try:
            _unwrap(self.gen).load_state_dict(state["gen"])
            if self.ema_gen is not None:  # a run that had no average starts it from its weights
                self.ema_gen.load_state_dict(state.get("gen_ema") or state["gen"])
            self.opt_g.load_state_dict(state["opt_g"])
            if self.disc is not None:
                if "disc" not in state:
                    raise KeyError("disc")
                _unwrap(self.disc).load_state_dict(state["disc"])
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
        self._budget_done = self._budget_reached()
        rng = state.get("rng") or []
        if len(rng) == self.info.world_size:
            set_rng_state(rng[self.info.rank])

    # -- the loop -----------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.info.is_main:
            append_jsonl(self.run_dir / "metrics.jsonl", record)
        self.log_lines += 1

    def _after_validation(self, values: dict[str, float]) -> None:
        record = {"event": "val", "epoch": self.epoch, "step": self.step, "images": self.images, **values}
        self._log(record)
        for sched in (self.sched_g, self.sched_d):
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(values["val_l1"])
        if self.best_metric is not None:
            value = values[f"val_{self.best_metric}"]
            better = self.best_value is None or (value > self.best_value if self.best_higher else value < self.best_value)
            if better and math.isfinite(value):
                self.best_value = value
                self.save("best.pt")

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True

    def run(self) -> RunResult:
        t = self.t
        start = time.perf_counter()
        per_epoch = self.per_epoch
        total = t.epochs * per_epoch if t.max_steps is None else min(t.epochs * per_epoch, t.max_steps)
        old_handler = None
        with contextlib.suppress(ValueError):  # not the main thread: no signal handling
            old_handler = signal.signal(signal.SIGINT, self._request_stop)
        try:
            with progress_bar(self.progress, self.console) as bar:
                task = bar.add_task(self.exp.label, total=total, completed=min(self.step, total), parts="")
                self._loop(bar, task, per_epoch)
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if self.info.is_main:
            self.write_grid()
        sums = ckdist.gather_objects({"gen": params_checksum(_unwrap(self.gen)),
                                      "disc": params_checksum(_unwrap(self.disc)) if self.disc is not None else None},
                                     self.info)
        seconds = time.perf_counter() - start
        self._log({"event": "end", "step": self.step, "images": self.images, "seconds": round(seconds, 3),
                   "train_seconds": round(self.train_seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                   "world_size": self.info.world_size, "param_checksums": sums,
                   "ranks_in_sync": all(s == sums[0] for s in sums)})
        best = {"metric": self.best_metric, "value": self.best_value} if self.best_metric else None
        return RunResult(self.run_dir, self.step, self.images, self.epoch_logs, seconds, best)

    def _loop(self, bar: Any, task: Any, per_epoch: int) -> None:
        t = self.t
        self.gen.train()
        if self.disc is not None:
            self.disc.train()
        while self.epoch <= t.epochs:
            loader, drop = self._loader(self.epoch, self.batch_in_epoch)
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
                self._keep_marks(cpu_before)
                for k, v in logs.items():
                    self.sums[k] = self.sums.get(k, 0.0) + v
                if self.step % t.log_every == 0 or self.step == 1:
                    self._log({"event": "step", "step": self.step, "epoch": self.epoch, "images": self.images,
                               "lr": self.opt_g.param_groups[0]["lr"], **logs})
                bar.update(task, advance=1, parts=_fmt_parts(logs))
                if t.val_every and self.step % t.val_every == 0:
                    self._after_validation(self.validate())
                stop, budget = self._stop_requested, self._budget_reached()
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
                if t.ckpt_every and self.step % t.ckpt_every == 0:
                    self.save()
            if self._budget_done and self.batch_in_epoch < per_epoch:
                if self.count:
                    self._end_epoch(partial=True)
                self.save()
                return
            self._end_epoch()
            self.save()
            if self._budget_done:
                return

    def _keep_marks(self, cpu_before: float) -> None:
        """``checkpoints/cpu-<M>min.pt`` for each ``train.keep_cpu_minutes`` mark this step passed:
        the generator's weights (and their average) with the counters, enough for eval and
        colorize, without the optimiser states that make ``last.pt`` large."""
        passed = [m for m in self.t.keep_cpu_minutes if cpu_before < 60 * m <= self.cpu_seconds]
        if not passed or not self.info.is_main:
            return
        state = {"experiment": self.exp.to_dict(), "plugins": self.c.plugins, "epoch": self.epoch,
                 "step": self.step, "images": self.images, "train_seconds": self.train_seconds,
                 "cpu_seconds": self.cpu_seconds, "gen": _unwrap(self.gen).state_dict()}
        if self.ema_gen is not None:
            state["gen_ema"] = self.ema_gen.state_dict()
        for m in passed:
            save_checkpoint(self.run_dir / "checkpoints" / mark_checkpoint_name(m), state)

    def _budget_reached(self) -> bool:
        """``max_steps``, ``max_minutes`` (training wall time) or ``max_cpu_minutes`` (this process's
        CPU time in training steps) reached; the times add up across resumes."""
        t = self.t
        return ((t.max_steps is not None and self.step >= t.max_steps)
                or (t.max_minutes is not None and self.train_seconds >= 60 * t.max_minutes)
                or (t.max_cpu_minutes is not None and self.cpu_seconds >= 60 * t.max_cpu_minutes))

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


def mark_checkpoint_name(minutes: float) -> str:
    """``cpu-2.5min.pt`` for the 2.5 CPU-minute mark of ``train.keep_cpu_minutes``."""
    return f"cpu-{minutes:g}min.pt"


def _fmt_parts(logs: dict[str, float]) -> str:
    """One step's loss parts for the progress display (``train_l1`` goes to the log only)."""
    return "  ".join(f"{k} {v:.4g}" for k, v in logs.items() if k != "train_l1" and math.isfinite(v))


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
        trainer = Trainer(registry, exp, run_dir or Path(), progress=progress, console=console, info=info)
        if run_dir is None:
            made = str(new_run_dir(out, exp.label)) if info.is_main else None
            run_dir = trainer.run_dir = Path(ckdist.broadcast_object(made, info))
        if state is not None:
            trainer.load_state(state)
        if info.is_main:
            if run_dir != resume_dir:  # a new run: write its config once
                write_new_text(run_dir / "config.yaml", exp.to_yaml() + trainer.splits_yaml())
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
