"""The training loop (GAN and non-GAN), run directories, checkpoints, logs and sample grids."""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from colorkit import color
from colorkit.errors import ColorkitError, UsageError
from colorkit.experiment import Experiment
from colorkit.images import make_grid, save_png
from colorkit.interfaces import Dataset, Discriminator, Generator, Loss, Prediction
from colorkit.registry import Registry
from colorkit.runio import append_jsonl, environment_manifest, new_run_dir, save_checkpoint, write_new_text


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; other names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: not a device name (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def he_init(module: nn.Module) -> None:
    """He et al. (2015) initialisation of every conv and linear layer; batch norm to (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
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


@torch.no_grad()
def predict_rgb(gen: Generator, lab: torch.Tensor) -> torch.Tensor:
    """RGB prediction for normalised Lab input (only its L is used)."""
    l = lab[:, :1]  # noqa: E741
    return color.model_to_rgb(color.as_lab(l, gen(l)))


def _finite_or_fail(parts: dict[str, torch.Tensor], step: int, who: str) -> None:
    for name, value in parts.items():
        if not torch.isfinite(value).all():
            raise ColorkitError(
                f"step {step}: {who} loss part '{name}' is {value.item()}; training stopped, the last "
                "good checkpoint is kept (lower the learning rate or check the data)"
            )


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    images: int
    epoch_logs: list[dict[str, Any]]
    seconds: float


class Trainer:
    """Trains one experiment into a run directory."""

    def __init__(self, registry: Registry, exp: Experiment, out: str | Path | None = None,
                 progress: bool = True, console: Any = None) -> None:
        self.registry, self.exp = registry, exp
        self.train_opts = exp.train
        self.device = pick_device(exp.train.device)
        seed_everything(exp.train.seed)
        self.c = build_components(registry, exp)
        if exp.train.init == "he":
            he_init(self.c.gen)
            if self.c.disc is not None:
                he_init(self.c.disc)
        self.gen = self.c.gen.to(self.device)
        self.disc = self.c.disc.to(self.device) if self.c.disc is not None else None
        t = exp.train
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=t.lr, betas=(t.beta1, t.beta2))
        self.opt_d = (
            torch.optim.Adam(self.disc.parameters(), lr=t.lr_d or t.lr, betas=(t.beta1, t.beta2))
            if self.disc is not None else None
        )
        self.schedulers = [self._scheduler(o) for o in (self.opt_g, self.opt_d) if o is not None]
        self.train_data = self.c.dataset.split(self.c.dataset.train_split, train=True)
        self.eval_data = self.c.dataset.split(self.c.dataset.eval_split, train=False)
        if len(self.train_data) == 0:
            raise UsageError(f"dataset '{exp.dataset.name}': the {self.c.dataset.train_split} split is empty")
        self.progress, self.console = progress, console
        self.run_dir = new_run_dir(out, exp.label)
        self.step = 0
        self.images = 0
        self.epoch = 0

    def _scheduler(self, opt: torch.optim.Optimizer) -> Any:
        t = self.train_opts
        if t.lr_schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=t.lr_factor, patience=t.patience)
        if t.lr_schedule == "exponential":
            return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=t.gamma)
        return None

    # -- one batch ----------------------------------------------------------------------------
    def train_batch(self, rgb: torch.Tensor) -> dict[str, float]:
        lab = color.rgb_to_model(rgb.to(self.device, non_blocking=True))
        l, target = split_target(self.gen, lab)  # noqa: E741
        logs: dict[str, float] = {}
        pred = self.gen(l)
        if self.disc is not None:
            assert self.opt_d is not None
            self.disc.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            d_parts = self.c.loss.discriminator_loss(Prediction(l, pred.detach(), target), self.disc)
            _finite_or_fail(d_parts, self.step, "discriminator")
            d_parts["total"].backward()
            self.opt_d.step()
            logs.update({("d_total" if k == "total" else k): v.item() for k, v in d_parts.items()})
            self.disc.requires_grad_(False)
        for k in range(self.train_opts.g_steps):
            if k > 0:
                pred = self.gen(l)
            self.opt_g.zero_grad(set_to_none=True)
            g_parts = self.c.loss.generator_loss(Prediction(l, pred, target), self.disc)
            _finite_or_fail(g_parts, self.step, "generator")
            g_parts["total"].backward()
            self.opt_g.step()
        logs.update({("g_total" if k == "total" else k): v.item() for k, v in g_parts.items()})
        logs["train_l1"] = (pred.detach() - target).abs().mean().item()
        return logs

    # -- outputs ------------------------------------------------------------------------------
    def write_grid(self, path: Path | None = None) -> Path:
        n = min(self.train_opts.grid_rows, len(self.eval_data))
        batch = torch.stack([self.eval_data[i] for i in range(n)]).to(self.device)
        lab = color.rgb_to_model(batch)
        was_training = self.gen.training
        self.gen.eval()
        pred = predict_rgb(self.gen, lab)
        self.gen.train(was_training)
        gray = color.model_to_rgb(color.gray_lab(lab[:, :1]))
        original = batch.float() / 255.0
        path = path or self.run_dir / "samples.png"
        save_png(make_grid([gray, original, pred]), path)
        return path

    def checkpoint_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "experiment": self.exp.to_dict(),
            "plugins": self.c.plugins,
            "epoch": self.epoch,
            "step": self.step,
            "images": self.images,
            "gen": self.gen.state_dict(),
            "opt_g": self.opt_g.state_dict(),
        }
        if self.disc is not None and self.opt_d is not None:
            state["disc"] = self.disc.state_dict()
            state["opt_d"] = self.opt_d.state_dict()
        return state

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        t = self.train_opts
        write_new_text(self.run_dir / "config.yaml", self.exp.to_yaml())
        import json

        from colorkit.runio import atomic_write_bytes

        manifest = environment_manifest(seed=t.seed, device=self.device, plugins=self.c.plugins)
        atomic_write_bytes(self.run_dir / "environment.json", json.dumps(manifest, indent=2).encode())
        log_path = self.run_dir / "metrics.jsonl"
        gen_rng = torch.Generator().manual_seed(t.seed)
        loader = DataLoader(
            self.train_data, batch_size=t.batch_size, shuffle=True, generator=gen_rng,
            drop_last=len(self.train_data) >= t.batch_size, num_workers=t.workers,
            pin_memory=self.device.type == "cuda", persistent_workers=t.workers > 0,
        )
        steps_per_epoch = len(loader)
        total = t.epochs * steps_per_epoch
        if t.max_steps is not None:
            total = min(total, t.max_steps)
        epoch_logs: list[dict[str, Any]] = []
        start = time.perf_counter()
        self.gen.train()
        if self.disc is not None:
            self.disc.train()
        with _progress(self.progress, self.console) as bar:
            task = bar.add_task(self.exp.label, total=total, parts="")
            for epoch in range(1, t.epochs + 1):
                self.epoch = epoch
                sums: dict[str, float] = defaultdict(float)
                count = 0
                for rgb in loader:
                    if t.max_steps is not None and self.step >= t.max_steps:
                        break
                    logs = self.train_batch(rgb)
                    self.step += 1
                    self.images += rgb.shape[0]
                    count += 1
                    for k, v in logs.items():
                        sums[k] += v
                    if self.step % t.log_every == 0 or self.step == 1:
                        append_jsonl(log_path, {"event": "step", "step": self.step, "epoch": epoch,
                                                "images": self.images, "lr": self.opt_g.param_groups[0]["lr"], **logs})
                    bar.update(task, advance=1, parts=_fmt_parts(logs))
                if count == 0:
                    break
                means = {k: v / count for k, v in sums.items()}
                record = {"event": "epoch", "epoch": epoch, "step": self.step, "images": self.images,
                          "seconds": round(time.perf_counter() - start, 3),
                          "lr": self.opt_g.param_groups[0]["lr"], **means}
                append_jsonl(log_path, record)
                epoch_logs.append(record)
                for sched in self.schedulers:
                    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        sched.step(means["g_total"])
                    elif sched is not None:
                        sched.step()
                save_checkpoint(self.run_dir / "checkpoints" / "last.pt", self.checkpoint_state())
                if t.max_steps is not None and self.step >= t.max_steps:
                    break
        self.write_grid()
        seconds = time.perf_counter() - start
        append_jsonl(log_path, {"event": "end", "step": self.step, "images": self.images, "seconds": round(seconds, 3)})
        return RunResult(self.run_dir, self.step, self.images, epoch_logs, seconds)


def _fmt_parts(logs: dict[str, float]) -> str:
    keys = [k for k in ("g_total", "gan", "l1", "l2", "d_real", "d_fake") if k in logs]
    return "  ".join(f"{k} {logs[k]:.4g}" for k in keys if math.isfinite(logs[k]))


class _NullProgress:
    def __enter__(self) -> _NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        return None


def _progress(enabled: bool, console: Any = None) -> Any:
    if not enabled:
        return _NullProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[parts]}"),
        console=console,
    )


def train(registry: Registry, exp: Experiment, out: str | Path | None = None, progress: bool = True) -> RunResult:
    """Train ``exp`` and return where the run was written."""
    return Trainer(registry, exp, out, progress=progress).run()
