"""Training throughput of `colorkit run` against a bare PyTorch loop, and GFLOP/s against matmul.

Both loops train the paper's GAN (unet + conv + ns_l1, the same widths, batch and precision) on
the same in-memory 32 px images; they alternate in one process so that both see the same machine
state. The colorkit side is the whole `Trainer.run()` (data loader, logging, progress counters, the NaN
guard, and the one end-of-run validation on 8 images and checkpoint write included; the timed
steps stay inside one epoch, so per-epoch validation and checkpoints are not part of it); the bare side is a hand-written loop with the same networks,
optimisers and loss. Achieved GFLOP/s come from torch's FLOP counter over one training step,
compared with this machine's measured fp32 (or the chosen precision's) matmul GFLOP/s.

    python benchmarks/train_overhead.py                      # CPU, batch 32, 12 steps x 2 rounds
    python benchmarks/train_overhead.py --device cuda --batch 128 --steps 200 --precision bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from colorkit import color
from colorkit.experiment import experiment_from_sources
from colorkit.interfaces import Dataset
from colorkit.registry import build_registry
from colorkit.training import Trainer, he_init, resolve_precision

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


def bare_loop(gen, disc, steps, batch, device, amp_dtype, data) -> float:
    """A plain PyTorch GAN loop: same networks, optimisers and loss as colorkit's ns_l1 step."""
    opt_g = torch.optim.Adam(gen.parameters(), lr=5e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=5e-4, betas=(0.5, 0.999))
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    ctx = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    done = 0
    _sync(device)
    start = time.perf_counter()
    while done < steps:
        for rgb in loader:
            if done >= steps:
                break
            lab = color.rgb_to_model(rgb.to(device))
            l, ab = lab[:, :1], lab[:, 1:]
            with ctx():
                fake = gen(l)
                real_logits = disc(l, lab)
                fake_logits = disc(l, torch.cat((l, fake.detach()), 1))
                d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 0.9))
                          + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            disc.requires_grad_(False)
            with ctx():
                g_logits = disc(l, torch.cat((l, fake), 1))
                g_loss = F.softplus(-g_logits).mean() + 100 * F.l1_loss(fake, ab)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            disc.requires_grad_(True)
            torch.stack([d_loss.detach(), g_loss.detach()]).tolist()  # the same one sync per step
            done += 1
    _sync(device)
    return time.perf_counter() - start


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device, dtype, n=2048, repeat=10) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    _sync(device)
    return 2 * n**3 * repeat / (time.perf_counter() - start) / 1e9


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
    ap.add_argument("--base", type=int, default=64, help="U-Net and discriminator widths (the paper: 64)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    device = torch.device(args.device)
    InMemory.count = args.steps * args.batch + 64
    amp = resolve_precision(args.precision, device)
    reg = build_registry(extra_plugins=[BenchPlugin()])
    sets = [f"gen.base={args.base}", f"disc.base={args.base}", f"train.max_steps={args.steps}",
            "train.val_limit=8", "train.grid_rows=1", "train.log_every=10", f"train.precision={args.precision}",
            f"train.device={args.device}", f"train.batch_size={args.batch}", "train.epochs=1000"]
    exp = experiment_from_sources(reg, cli={"dataset": "bench_memory", "gen": "unet", "disc": "conv", "loss": "ns_l1",
                                            "metrics": []}, sets=sets)
    data = InMemory(None)
    ck_times, bare_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            (Path(tmp) / f"run{r}").mkdir()
            trainer = Trainer(reg, exp, Path(tmp) / f"run{r}", progress=False)
            _sync(device)
            start = time.perf_counter()
            trainer.run()
            _sync(device)
            ck_times.append(time.perf_counter() - start)
            torch.manual_seed(0)
            gen = reg.build("generator", "unet", {"base": args.base}).to(device)
            disc = reg.build("discriminator", "conv", {"base": args.base}).to(device)
            he_init(gen), he_init(disc)
            if device.type == "cuda":
                gen, disc = gen.to(memory_format=torch.channels_last), disc.to(memory_format=torch.channels_last)
            bare_times.append(bare_loop(gen, disc, args.steps, args.batch, device, amp, data.split("train")))
        flops = step_flops(gen, disc, args.batch, device, data)
    images = args.steps * args.batch
    ck_ips = images / min(ck_times)
    bare_ips = images / min(bare_times)
    peak = matmul_gflops(device, amp or torch.float32)
    achieved = flops * args.steps / min(ck_times) / 1e9
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "precision": args.precision, "batch": args.batch, "steps": args.steps,
        "rounds": args.rounds, "base": args.base,
        "colorkit_images_per_s": round(ck_ips, 2), "bare_images_per_s": round(bare_ips, 2),
        "ratio": round(ck_ips / bare_ips, 4),
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
