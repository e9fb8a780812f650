"""Is the data path ever the bottleneck? Data-pipeline images/s next to training-step images/s.

Two cases, each measured in one run of this script on one machine:

* CIFAR-10 (JPEG mirror), 32 px, batch 128: the ``cifar10`` dataset reading
  ``../shared/data/cifar10-jpeg.tar.gz`` (decoded once into memory; the decoded arrays are
  cached, so the load time printed is the first-run or the cached figure, as labelled);
* a 256 px image folder, batch 8: ``imagefolder`` over JPEG photos this script writes into a
  temporary folder from scikit-image's colour photos (random crops; half 256x256 like the
  Places365 small images, half 320x427 or 427x320 that need a resize and a crop).

* photos9k (``../shared/data/photos9k.tar``, its 8,003 ``train`` photos), 64 and 128 px, batch
  32, with the U-Net of the photo recipe (benchmarks/photos-ttq.yaml: unet base 32, depth 4,
  a*b* output, L1, batch 32): three rows per size, each against the same training rate. "first
  pass" is the first load of the split, which decodes every photo once into a fresh cache folder
  (listing, header checks and writing included); "from the cache" is the loader over the split
  mapped from that cache in a later load (its load time is in the row's name); "cache off" is
  the loader decoding each photo as it is read (``dataset.cache_gb=0``), the behaviour before
  the cache.

The pipeline figure is what the trainer's loader delivers: a shuffled ``DataLoader`` over the
training split with its batch size, ``num_workers`` as given, pinned memory on CUDA, and the
copy to the device, worker start-up included (the trainer starts a loader per epoch). The
training figure is ``Trainer.train_batch`` of the paper's GAN (preset ``table1-cifar10-gan`` /
``table1-places365-gan``: unet with LeakyReLU encoder and L*a*b* output, conv discriminator,
ns_l1; for photos9k, the photo recipe's U-Net with L1) on one batch from that loader, after
warm-up steps, synchronised on CUDA; it includes the colour conversion of the batch on the
device. The ratio is pipeline / training; the target is >= 5. Both rates of a ratio are
measured in the same run of this script, minutes apart, so a machine shared with other work
(e.g. a training run on the other core) slows both alike: compare ratios, not absolute rates,
across files.

    python benchmarks/data_pipeline.py                          # CPU, workers 0, one thread
    python benchmarks/data_pipeline.py --device cuda --workers 0,8
    python benchmarks/data_pipeline.py --only photos --json benchmarks/results/speed/data_pipeline_photos9k_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from colorkit.kernel.experiment import experiment_from_sources
from colorkit.kernel.registry import build_registry
from colorkit.engine.training import Trainer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos9k.tar"
#: The photo recipe's model and training settings (benchmarks/photos-ttq.yaml, experiment l1).
PHOTO_RECIPE = {"gen": "unet", "disc": "none", "loss": "l1", "dataset": "imagefolder",
                "train": {"batch_size": 32, "lr": 2.0e-3, "lr_schedule": "none", "ema": 0.999, "workers": 0}}
PHOTO_SETS = ["gen.base=32", "gen.depth=4", "gen.output=ab", "gen.zero_out=true"]
SHARED_NOTE = ("each ratio is pipeline / training measured within this one run (same process, minutes apart); "
               "the machine may be shared with other work, which slows both rates of a ratio alike: "
               "compare ratios, not absolute rates, across runs")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right", "hubble_deep_field")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_photo_folder(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEG photos (quality 90) cut from scikit-image's colour photos."""
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = []
    for name in PHOTOS:
        if name.startswith("motorcycle_"):
            arr = np.asarray(Image.open(Path(data.__file__).parent / f"{name}.png").convert("RGB"))
        else:
            arr = getattr(data, name)()[..., :3]
        sources.append(Image.fromarray(np.ascontiguousarray(arr)))
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        out_w, out_h = [(256, 256), (427, 320), (320, 427)][0 if i % 2 == 0 else 1 + (i // 2) % 2]
        scale = rng.uniform(0.5, 1.0) * min(w / out_w, h / out_h)
        cw, ch = int(out_w * scale), int(out_h * scale)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = src.resize((out_w, out_h), Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
        path = folder / f"album{i % 8}" / f"photo{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path, quality=90)
    return folder


def pipeline_rate(data, batch: int, workers: int, device: torch.device, max_images: int, seed: int) -> dict:
    """Images/s of shuffled loaders (a new one per epoch, as the trainer makes them), copied to
    the device, worker start-up included; at least one epoch, until ``max_images``."""
    gen = torch.Generator().manual_seed(seed)
    images = 0
    _sync(device)
    start = time.perf_counter()
    while images < max_images:
        loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                            pin_memory=device.type == "cuda", generator=gen)
        for rgb in loader:
            rgb = rgb.to(device, non_blocking=True)
            images += rgb.shape[0]
            if images >= max_images:
                break
        end = getattr(data, "end_epoch", None)  # lazily read splits report bad files here
        if end is not None:
            end()
    _sync(device)
    seconds = time.perf_counter() - start
    return {"workers": workers, "images": images, "seconds": round(seconds, 3), "images_per_s": images / seconds}


def training_rate(trainer: Trainer, batch: torch.Tensor, warmup: int, steps: int) -> dict:
    for _ in range(warmup):
        trainer.train_batch(batch)
    _sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_batch(batch)
    _sync(trainer.device)
    seconds = time.perf_counter() - start
    return {"steps": steps, "batch": int(batch.shape[0]), "seconds": round(seconds, 3),
            "images_per_s": steps * batch.shape[0] / seconds}


def _rate(x: float) -> str:
    return f"{x:>10,.0f}" if x >= 100 else f"{x:>10.2f}"


def run_case(label: str, preset: str, sets: list[str], cli: dict, args: argparse.Namespace,
             max_images: int, steps: int) -> dict:
    reg = build_registry()
    exp = experiment_from_sources(reg, preset=preset, cli=cli, sets=sets)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer = Trainer.from_experiment(reg, exp, Path(tmp) / "run", progress=False)  # builds the dataset, loads it
        load_s = time.perf_counter() - start
        ds = trainer.components.dataset
        data = trainer.train_data
        batch_size = exp.train.batch_size
        pipes = [pipeline_rate(data, batch_size, w, trainer.device, max_images, exp.train.seed) for w in args.workers]
        batch = next(iter(DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True)))
        train = training_rate(trainer, batch, args.warmup, steps)
    result = {
        "case": label, "dataset": exp.dataset.name, "size": ds.size, "batch": batch_size,
        "train_images": len(data), "device": str(trainer.device),
        "precision": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32",
        "gen": exp.gen.to_dict(), "disc": exp.disc.to_dict() if exp.disc else None, "loss": exp.loss.name,
        "load_s": round(load_s, 2), "from_cache": getattr(ds, "from_cache", None),
        "pipeline": pipes, "training": train,
        "ratios": {str(p["workers"]): p["images_per_s"] / train["images_per_s"] for p in pipes},
    }
    print(f"\n{label}: {ds.size} px, batch {batch_size}, {len(data):,} training images, device {trainer.device}, "
          f"precision {result['precision']}")
    cache = {True: " (decoded arrays from the cache)", False: " (decoded now)"}.get(result["from_cache"], "")
    print(f"  dataset load + trainer build: {load_s:.1f} s{cache}")
    print(f"  training step, paper's GAN:   {_rate(train['images_per_s'])} images/s  ({steps} steps after {args.warmup} warm-up)")
    for p in pipes:
        ratio = p["images_per_s"] / train["images_per_s"]
        verdict = "meets" if ratio >= 5 else "MISSES"
        print(f"  data pipeline, {p['workers']} workers:   {_rate(p['images_per_s'])} images/s  "
              f"({p['images']:,} images in {p['seconds']:.2f} s)  ratio {ratio:,.1f}x, {verdict} the 5x target")
    return result


def _photo_dataset(root: Path, size: int, cache: Path | str, **options):
    from colorkit.kernel.registry import build_registry as _reg

    return _reg(autoload=False).build("dataset", "imagefolder", {"root": str(root), "size": size,
                                                                 "cache": str(cache), **options})


def _row(label: str, exp, size: int, data_len: int, device: torch.device, load_s: float, from_cache,
         pipe: dict, train: dict) -> dict:
    return {
        "case": label, "dataset": "imagefolder", "size": size, "batch": exp.train.batch_size,
        "train_images": data_len, "device": str(device), "precision": "fp32",
        "gen": exp.gen.to_dict(), "disc": None, "loss": exp.loss.name,
        "load_s": round(load_s, 3), "from_cache": from_cache,
        "pipeline": [pipe], "training": train, "ratios": {str(pipe["workers"]): pipe["images_per_s"] / train["images_per_s"]},
    }


def run_photos(args: argparse.Namespace) -> list[dict]:
    """photos9k train at each of ``args.photo_sizes``: the first decode into a fresh cache, the
    loader from the cache, the loader with the cache off, each against one training rate."""
    if not args.photos.exists():
        print(f"photos9k case skipped: {args.photos} not found (pass --photos)", file=sys.stderr)
        return []
    # the archive is extracted once into the usual cache; the decoded splits go to a fresh folder
    folder = _photo_dataset(args.photos, 64, "auto", cache_gb=0).folder
    reg = build_registry()
    rows = []
    for size in args.photo_sizes:
        with tempfile.TemporaryDirectory(prefix="colorkit-pipeline-") as tmp:
            cache = Path(tmp) / "cache"
            start = time.perf_counter()
            first = _photo_dataset(folder, size, cache).split("train", train=True)  # decodes every photo
            first_s = time.perf_counter() - start
            n = len(first)
            del first
            start = time.perf_counter()
            ds = _photo_dataset(folder, size, cache)
            cached = ds.split("train", train=True)  # maps the cache
            load_s = time.perf_counter() - start
            assert ds.from_cache, "the second load did not come from the cache"
            lazy = _photo_dataset(folder, size, cache, cache_gb=0).split("train", train=True)
            exp = experiment_from_sources(reg, cli={**PHOTO_RECIPE, "train": {**PHOTO_RECIPE["train"], "device": args.device}},
                                          sets=[*PHOTO_SETS, f"dataset.root={folder}", f"dataset.size={size}",
                                                f"dataset.cache={cache}"])
            trainer = Trainer.from_experiment(reg, exp, Path(tmp) / "run", progress=False)
            device, batch_size = trainer.device, exp.train.batch_size
            pipe_cached = pipeline_rate(cached, batch_size, 0, device, args.photo_pipeline_images, exp.train.seed)
            pipe_lazy = pipeline_rate(lazy, batch_size, 0, device, args.photo_lazy_images, exp.train.seed)
            batch = next(iter(DataLoader(cached, batch_size=batch_size, shuffle=True, drop_last=True)))
            train = training_rate(trainer, batch, args.warmup, args.steps)
            del trainer, cached, lazy, ds
        first_pipe = {"workers": 0, "images": n, "seconds": round(first_s, 3), "images_per_s": n / first_s}
        label = f"photos9k train, {size} px"
        found = [
            _row(f"{label}, first pass: decoding into the cache", exp, size, n, device, first_s, False, first_pipe, train),
            _row(f"{label}, from the cache (loaded in {load_s:.2f} s)", exp, size, n, device, load_s, True, pipe_cached, train),
            _row(f"{label}, cache off (decoded as read)", exp, size, n, device, 0.0, None, pipe_lazy, train),
        ]
        print(f"\n{label}: {n:,} photos, batch {batch_size}, device {device}; U-Net base 32, depth 4, a*b*, L1")
        print(f"  training step:                 {_rate(train['images_per_s'])} photos/s  "
              f"({args.steps} steps after {args.warmup} warm-up)")
        for row in found:
            p = row["pipeline"][0]
            ratio = row["ratios"]["0"]
            verdict = "meets" if ratio >= 5 else "MISSES"
            what = row["case"][len(label) + 2:]
            print(f"  {what + ':':<46} {_rate(p['images_per_s'])} photos/s  ({p['images']:,} in {p['seconds']:.2f} s)  "
                  f"ratio {ratio:,.1f}x, {verdict} the 5x target")
        rows += found
    print(f"\nNote: {SHARED_NOTE}.")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cifar", type=Path, default=DEFAULT_CIFAR, help="the CIFAR-10 JPEG mirror (.tar.gz) or any cifar10 root")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", default="0", help="comma-separated data-loader worker counts to measure")
    ap.add_argument("--steps", type=int, default=50, help="timed training steps per case (at least 50 for a stable rate)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    ap.add_argument("--folder-images", type=int, default=384, help="photos written for the 256 px folder case")
    ap.add_argument("--cifar-images", type=int, default=50_000, help="images the CIFAR pipeline is timed on (one epoch)")
    ap.add_argument("--folder-pipeline-images", type=int, default=2_000, help="images the folder pipeline is timed on")
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="photos9k.tar (or its extracted folder)")
    ap.add_argument("--photo-sizes", default="64,128", help="comma-separated working sizes of the photos9k case")
    ap.add_argument("--photo-pipeline-images", type=int, default=24_000, help="images the cached photo loader is timed on")
    ap.add_argument("--photo-lazy-images", type=int, default=4_000, help="images the cache-off photo loader is timed on")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the benchmarks' one thread)")
    ap.add_argument("--only", choices=("cifar", "folder", "photos"), default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    args.workers = [int(w) for w in str(args.workers).split(",") if w.strip()]
    args.photo_sizes = [int(s) for s in str(args.photo_sizes).split(",") if s.strip()]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    env = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
           "torch_threads": torch.get_num_threads(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "seed": 0,
           "load_average_before": [round(x, 2) for x in os.getloadavg()], "command": " ".join(sys.argv),
           "note": SHARED_NOTE}
    print(f"colorkit data pipeline benchmark: python {env['python']}, torch {env['torch']}, {env['cpus']} CPUs, "
          f"{env['torch_threads']} torch threads, {env['gpu'] or 'no CUDA'}; seed 0")
    results = []
    common = {"train": {"device": args.device}}
    if args.only in (None, "cifar"):
        if not args.cifar.exists():
            print(f"CIFAR-10 case skipped: {args.cifar} not found (pass --cifar)", file=sys.stderr)
        else:
            results.append(run_case("CIFAR-10 (JPEG mirror)", "table1-cifar10-gan", [f"dataset.root={args.cifar}"],
                                    {**common, "dataset": "cifar10"}, args, args.cifar_images, args.steps))
    if args.only in (None, "folder"):
        with tempfile.TemporaryDirectory() as tmp:
            folder = write_photo_folder(Path(tmp) / "photos", args.folder_images)
            results.append(run_case("256 px image folder (scikit-image photos)", "table1-places365-gan",
                                    [f"dataset.root={folder}", "dataset.size=256", f"dataset.cache={Path(tmp) / 'cache'}"],
                                    {**common, "dataset": "imagefolder"}, args, args.folder_pipeline_images, args.steps))
    if args.only in (None, "photos"):
        results += run_photos(args)
    env["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
