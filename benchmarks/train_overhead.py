"""Training throughput of `colorkit run` against a bare PyTorch loop, and GFLOP/s against matmul.

Both sides train the paper's GAN (unet + conv + ns_l1, the same widths, batch, memory format and
precision) on the same in-memory 32 px images, interleaved step by step in one process: colorkit's
`Trainer.run()` drives its own loop, and beside every training step it takes, a bare PyTorch step
(same networks, optimisers and loss, written out by hand) runs on the same batch, before it on odd
steps and after it on even ones. The machine's speed drifts (seen here: +-20% between rounds a
minute apart), and only adjacent steps see the same machine. Colorkit's side is each
`train_batch` call plus the time its loop spent since the previous one (data loader, logging,
progress, NaN and budget checks). Figures are medians over the steps after `--warmup` (kernel
set-up), over all rounds: images/s from the median step time of each side, and the ratio as the
median over rounds of each round's ratio of median step times. The timed steps stay inside one
epoch, so per-epoch validation and checkpoints are not part of either. Achieved GFLOP/s come
from torch's FLOP counter over one training step, against this machine's fp32 (or the chosen
precision's) square-matmul GFLOP/s, the best over sizes 1024, 2048 and 3072, measured before and
after the training.

    python benchmarks/train_overhead.py                      # CPU, batch 32, 12 steps x 2 rounds
    python benchmarks/train_overhead.py --device cuda --batch 128 --steps 200 --precision bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from colorkit.kernel import color
from colorkit.kernel.experiment import experiment_from_sources
from colorkit.kernel.interfaces import Dataset
from colorkit.kernel.registry import build_registry
from colorkit.engine.devices import resolve_precision
from colorkit.engine.components import he_init
from colorkit.engine.training import Trainer

import colorkit


class _Tensors(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


class InMemory(Dataset):
    """Random smooth 32 px images held in memory: the data path costs nothing."""

    splits = ("train", "test")

    count = 2048  # set by main(): enough images that the timed steps stay inside one epoch

    def __init__(self, options) -> None:
        g = torch.Generator().manual_seed(0)
        coarse = torch.rand(self.count, 3, 8, 8, generator=g)
        self.images = (F.interpolate(coarse, size=(32, 32), mode="bilinear") * 255).round().to(torch.uint8)

    @property
    def size(self) -> int:
        return 32

    def split(self, name, train=False):
        self.check_split(name)
        return _Tensors(self.images if name == "train" else self.images[:64])


class BenchPlugin:
    @colorkit.hookimpl
    def register_datasets(self, register):
        register("bench_memory", InMemory, description="in-memory 32 px images for benchmarks")


class BareGAN:
    """A plain PyTorch GAN step: same networks, memory format, optimisers and loss as colorkit's
    ``ns_l1`` step (one discriminator step, one generator step, one host sync)."""

    def __init__(self, gen, disc, device, amp_dtype, channels_last) -> None:
        self.gen, self.disc, self.device, self.channels_last = gen, disc, device, channels_last
        self.opt_g = torch.optim.Adam(gen.parameters(), lr=5e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(disc.parameters(), lr=5e-4, betas=(0.5, 0.999))
        self.ctx = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext

    def step(self, rgb: torch.Tensor) -> None:
        gen, disc = self.gen, self.disc
        lab = color.rgb_to_model(rgb.to(self.device))
        if self.channels_last:
            lab = lab.contiguous(memory_format=torch.channels_last)
        l, ab = lab[:, :1], lab[:, 1:]
        with self.ctx():
            fake = gen(l)
            real_logits = disc(l, lab)
            fake_logits = disc(l, torch.cat((l, fake.detach()), 1))
            d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 0.9))
                      + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        disc.requires_grad_(False)
        with self.ctx():
            g_logits = disc(l, torch.cat((l, fake), 1))
            g_loss = F.softplus(-g_logits).mean() + 100 * F.l1_loss(fake, ab)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        disc.requires_grad_(True)
        torch.stack([d_loss.detach(), g_loss.detach()]).tolist()  # the same one sync per step


class Interleaved:
    """Wraps ``Trainer.train_batch``: every call the trainer's loop makes is timed, and a bare
    step on the same batch is timed right beside it (before it on odd steps, after it on even
    ones). The time the loop spends between calls (data loading, logging, budget and NaN checks)
    is measured too and counted on colorkit's side."""

    def __init__(self, trainer, bare: BareGAN, device) -> None:
        self.colorkit: list[float] = []  # train_batch + the loop's time since the previous call
        self.bare: list[float] = []
        self.loop: list[float] = []
        self._last_end: float | None = None
        inner = trainer.train_batch

        def timed(rgb):
            enter = time.perf_counter()
            loop = enter - self._last_end if self._last_end is not None else 0.0
            bare_first = len(self.colorkit) % 2 == 1
            if bare_first:
                bare_s = self._time(lambda: bare.step(rgb), device)
            t0 = time.perf_counter()
            out = inner(rgb)
            _sync(device)
            ck_s = time.perf_counter() - t0
            if not bare_first:
                bare_s = self._time(lambda: bare.step(rgb), device)
            self.colorkit.append(ck_s + loop)
            self.loop.append(loop)
            self.bare.append(bare_s)
            self._last_end = time.perf_counter()
            return out

        trainer.train_batch = timed

    @staticmethod
    def _time(fn, device) -> float:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device, dtype, sizes=(1024, 2048, 3072), repeat=8) -> float:
    """The best square-matmul GFLOP/s over a few sizes: this machine's practical peak."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeat):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * repeat / (time.perf_counter() - start) / 1e9)
    return best


def step_flops(gen, disc, batch, device, data) -> int:
    lab = color.rgb_to_model(data.images[:batch].to(device))
    l, ab = lab[:, :1], lab[:, 1:]
    with FlopCounterMode(display=False) as counter:
        fake = gen(l)
        d = F.binary_cross_entropy_with_logits(disc(l, lab), torch.ones(batch, 1, 1, 1, device=device)) + \
            F.binary_cross_entropy_with_logits(disc(l, torch.cat((l, fake.detach()), 1)), torch.zeros(batch, 1, 1, 1, device=device))
        d.backward()
        g = F.softplus(-disc(l, torch.cat((l, fake), 1))).mean() + 100 * F.l1_loss(fake, ab)
        g.backward()
    gen.zero_grad(set_to_none=True)
    disc.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="steps of each run left out of the timing (kernel set-up)")
    ap.add_argument("--base", type=int, default=64, help="U-Net and discriminator widths (the paper: 64)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if not 1 <= args.warmup < args.steps:
        ap.error("--warmup must be at least 1 and below --steps")

    device = torch.device(args.device)
    InMemory.count = args.steps * args.batch + 64  # the timed steps stay inside one epoch
    amp = resolve_precision(args.precision, device)
    reg = build_registry(extra_plugins=[BenchPlugin()])
    sets = [f"gen.base={args.base}", f"disc.base={args.base}", f"train.max_steps={args.steps}",
            "train.val_limit=8", "train.grid_rows=1", "train.log_every=10", f"train.precision={args.precision}",
            f"train.device={args.device}", f"train.batch_size={args.batch}", "train.epochs=1000"]
    exp = experiment_from_sources(reg, cli={"dataset": "bench_memory", "gen": "unet", "disc": "conv", "loss": "ns_l1",
                                            "metrics": []}, sets=sets)
    data = InMemory(None)
    peak_before = matmul_gflops(device, amp or torch.float32)
    ck_steps, bare_steps, loop_steps, ratios = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            (Path(tmp) / f"run{r}").mkdir()
            trainer = Trainer.from_experiment(reg, exp, Path(tmp) / f"run{r}", progress=False)
            torch.manual_seed(r)
            gen = reg.build("generator", "unet", {"base": args.base}).to(device)
            disc = reg.build("discriminator", "conv", {"base": args.base}).to(device)
            he_init(gen), he_init(disc)
            channels_last = trainer.channels_last  # the same memory format as the trainer chose
            if channels_last:
                gen, disc = gen.to(memory_format=torch.channels_last), disc.to(memory_format=torch.channels_last)
            clock = Interleaved(trainer, BareGAN(gen, disc, device, amp, channels_last), device)
            trainer.run()
            ck, bare = clock.colorkit[args.warmup:], clock.bare[args.warmup:]
            ck_steps += ck
            bare_steps += bare
            loop_steps += clock.loop[args.warmup:]
            ratios.append(statistics.median(bare) / statistics.median(ck))
            print(f"round {r + 1}: colorkit {args.batch / statistics.median(ck):.2f} img/s, "
                  f"bare {args.batch / statistics.median(bare):.2f} img/s (medians of {len(ck)} interleaved "
                  f"steps), ratio {ratios[-1]:.3f}", file=sys.stderr, flush=True)
        flops = step_flops(gen, disc, args.batch, device, data)
    peak = max(peak_before, matmul_gflops(device, amp or torch.float32))
    steady = len(ck_steps) // args.rounds
    ck_step, bare_step = statistics.median(ck_steps), statistics.median(bare_steps)
    ck_ips, bare_ips = args.batch / ck_step, args.batch / bare_step
    achieved = flops / ck_step / 1e9
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "precision": args.precision, "batch": args.batch, "steps": args.steps,
        "rounds": args.rounds, "base": args.base,
        "timing": "interleaved steps, medians", "warmup_steps": args.warmup, "timed_steps": steady, "channels_last": bool(channels_last),
        "colorkit_images_per_s": round(ck_ips, 2), "bare_images_per_s": round(bare_ips, 2),
        "ratio": round(statistics.median(ratios), 4),
        "ratio_per_round": [round(x, 4) for x in ratios],
        "colorkit_loop_ms_per_step": round(1000 * statistics.median(loop_steps), 3),
        "step_gflop": round(flops / 1e9, 3), "achieved_gflops": round(achieved, 2),
        "matmul_gflops": round(peak, 2), "fraction_of_matmul": round(achieved / peak, 4),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    for k, v in result.items():
        print(f"{k:>24}: {v}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
