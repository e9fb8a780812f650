"""Turn a finished run into a shipped pretrained model: model file, model card and checksum.

    colorkit run --preset colorkit-cifar10 --data-root ../shared/data/cifar10-jpeg.tar.gz --out runs/colorkit-cifar10
    python benchmarks/default_model.py runs/colorkit-cifar10 --name colorkit-cifar10 --checkpoint cpu-30min.pt \
        --sizes 64,96,128,192

The shipped file was made from the time-to-quality suite's run ``fast-gan-lam300`` seed 0
(``colorkit bench benchmarks/time-to-quality.yaml --only fast-gan-lam300 --seeds 0``), whose
resolved experiment is the preset's.

1. The run's checkpoint (``--checkpoint``, default the run's ``last.pt``: the preset keeps no
   validation-selected one, so nothing is chosen on test) is scored on the CIFAR-10 ``test``
   sample of the time-to-quality suite (2,000 images, seed 0, grayscale images skipped) beside the
   "no colour" floor.
2. It is scored on the wheel photo set (``benchmarks/photoset.py``) at every working size of
   ``--sizes``, as ``colorkit colorize`` writes them; the size with the best PSNR becomes the
   model's working size. All sizes go into the card. The set has 8 photos and no held-out part,
   so the chosen size's row is picked on the photos it is reported on; the card says so.
3. The model file (generator weights in half precision, experiment, plugin versions, working
   size) is written to ``plugins/weights/NAME.pt`` with ``colorkit.engine.checkpoints.write_model_file``,
   the card to ``plugins/weights/NAME.md``, and ``plugins/weights/models.yaml`` gets the file's
   SHA-256, so the checksum always describes what ships. ``--out-dir`` writes elsewhere.

The figures are also written as JSON (``NAME.json`` beside the card), and the card with the
commands that reproduce it to ``benchmarks/results/default-model/REPORT.md`` (``--report-dir``),
which ``make_results.py`` copies into RESULTS.md. Training logs (``config.yaml``,
``metrics.jsonl``, ``environment.json``) are copied there too; checkpoints never are.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import photoset  # noqa: E402

WEIGHTS = HERE.parent / "plugins" / "weights"
METRICS = ["mae", "accuracy", "psnr", "colorfulness_gap"]


def cifar_options() -> dict[str, Any]:
    """The time-to-quality suite's CIFAR-10 test sample (its dataset options less the data root)."""
    from colorkit.front.bench import load_suite

    options = load_suite(HERE / "time-to-quality.yaml").protocol.options
    return {k: v for k, v in options.items() if k in ("keep_gray", "limit", "seed")}


def _fmt(v: float, metric: str) -> str:
    return f"{v:.1f}" if metric == "accuracy" else f"{v:.2f}"


def measure(checkpoint: Path, data_root: str, sizes: list[int], registry: Any, log: Any = print) -> dict[str, Any]:
    """CIFAR-10 test figures and the photo set at each working size, each beside its floor."""
    from colorkit.engine.evaluation import evaluate, evaluate_images

    out: dict[str, Any] = {}
    if data_root:
        options = cifar_options()
        log(f"CIFAR-10 test sample ({options['limit']} images)")
        # the suite's sample: the dataset's own limit + seed draw 2,000 images of the split
        sets = [f"dataset.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()]
        result, _, _ = evaluate([checkpoint], registry=registry, dataset="cifar10", data_root=data_root, split="test",
                                metrics=METRICS, batch_size=250, device="cpu", sets=sets, own_l_rows=False)
        out["cifar10_test"] = {"images": result.images, "options": options, "floor": result.rows[0].values,
                               "model": result.rows[1].values}
    with tempfile.TemporaryDirectory() as tmp:
        records = photoset.write(tmp)
        out["photos"] = {"set": photoset.set_name([r["name"] for r in records]), "images": len(records), "sizes": {}}
        for size in sizes:
            log(f"photo set at working size {size}")
            res = evaluate_images(checkpoint, Path(tmp), registry=registry, metrics=METRICS, working_size=size,
                                  device="cpu")
            out["photos"]["floor"] = res.rows[0].values
            out["photos"]["sizes"][str(size)] = res.rows[1].values
    return out


def photo_figure(registry: Any, name: str, model_file: Path, size: int, path: Path) -> Path:
    """The wheel photos as ``colorkit colorize`` writes them with the shipped file: grayscale |
    original | the model at its working size."""
    import time_to_quality

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        photoset.write(tmp)
        return time_to_quality.photo_grid(registry, [(f"{name} ({size} px)", model_file)], Path(tmp), path)


def pick_size(figures: dict[str, Any]) -> int:
    sizes = figures["photos"]["sizes"]
    return int(max(sizes, key=lambda s: sizes[s]["psnr"]))


def _verdict(model: dict[str, float], floor: dict[str, float], metric: str) -> str:
    lower = metric in ("mae", "colorfulness_gap")
    better = model[metric] < floor[metric] if lower else model[metric] > floor[metric]
    return "better than the floor" if better else "**below the floor**"


def meets_target(values: dict[str, float], floor: dict[str, float]) -> bool:
    """Issue 13's photo target: MAE and PSNR better than no colour, colourfulness gap <= 60% of its."""
    better = all(_verdict(values, floor, m).startswith("better") for m in ("mae", "psnr"))
    return better and values["colorfulness_gap"] <= 0.6 * floor["colorfulness_gap"]


def _robustness(photos: dict[str, Any]) -> str:
    """How much the choice of working size matters: at which measured sizes the target holds."""
    held = [s for s, v in photos["sizes"].items() if meets_target(v, photos["floor"])]
    return (f"The target holds at {len(held)} of the {len(photos['sizes'])} measured working sizes"
            + (f" ({', '.join(held)} px)." if held else "."))


def _loss_name(exp: dict[str, Any]) -> str:
    return exp["loss"] if isinstance(exp["loss"], str) else exp["loss"]["name"]


def _colour_limit(exp: dict[str, Any]) -> str:
    disc = exp.get("disc") or "none"
    if (disc if isinstance(disc, str) else disc.get("name", "none")) != "none":
        return ("- Its adversarial phase makes colours more vivid than a regression-trained model's, and so "
                "sometimes confidently wrong: expect occasional colour blotches (a blue patch on a wall, green "
                "on skin) where the hue is ambiguous. It scores lower on per-pixel metrics on CIFAR-10 than the "
                "regression-only recipe (see its row of benchmarks/RESULTS.md).")
    return ("- Regression-trained colour is the likely colour, not a vivid one: expect desaturated results where "
            "the hue is ambiguous (clothes, cars, painted objects).")


def card(name: str, state: dict[str, Any], figures: dict[str, Any], size: int, file_size: int) -> str:
    exp = state["experiment"]
    gen, train = exp["gen"], exp["train"]
    cpu_min = float(state.get("cpu_seconds", 0.0)) / 60
    lines = [
        f"# Model card: {name}",
        "",
        f"The default model of `colorkit colorize`. Written by `benchmarks/default_model.py` on "
        f"{dt.date.today().isoformat()}.",
        "",
        "## What it is",
        f"- Generator `{gen['name']}` with options `{json.dumps(gen.get('options', {}), sort_keys=True)}`: it predicts "
        "a\\*b\\* from L\\*; the photo's own full-resolution L\\* is kept.",
        f"- File: {file_size / 1e6:.2f} MB, weights in half precision (the weights' moving average where the run kept one), "
        "loaded with `torch.load(weights_only=True)` after its SHA-256 is checked.",
        f"- Working size: **{size} px** (the model runs on an image of about {size} x {size} pixels, aspect ratio kept; "
        "the predicted colour is upsampled to the photo's size). Chosen by measurement below; `--size N` overrides it.",
        "",
        "## Data and recipe",
        f"- Trained on the CIFAR-10 `train` split (45,000 colour images at 32 px, grayscale ones skipped) of the "
        f"JPEG mirror; no other data. Loss `{_loss_name(exp)}`"
        f", options `{json.dumps((exp['loss'] if isinstance(exp['loss'], dict) else {}).get('options', {}), sort_keys=True)}`.",
        f"- Training: batch {train.get('batch_size')}, lr {train.get('lr')}, schedule {train.get('lr_schedule')}, "
        f"weight EMA {train.get('ema')}, seed {train.get('seed')}.",
        f"- Cost: {state.get('step')} steps, {state.get('images')} images, {cpu_min:.1f} CPU-minutes of training "
        "steps on one thread.",
        "",
    ]
    cifar = figures.get("cifar10_test")
    if cifar:
        gray = "kept" if cifar.get("options", {}).get("keep_gray") else "skipped"
        lines += [f"## CIFAR-10 `test` ({cifar['images']} images, seed 0, grayscale images {gray})", "",
                  "| | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS),
                  "| no colour (floor) | " + " | ".join(_fmt(cifar["floor"][m], m) for m in METRICS) + " |",
                  f"| {name} | " + " | ".join(_fmt(cifar["model"][m], m) for m in METRICS) + " |", "",
                  "; ".join(f"{m}: {_verdict(cifar['model'], cifar['floor'], m)}" for m in METRICS) + ".", ""]
    photos = figures["photos"]
    lines += [f"## Real photos: {photos['set']}", "",
              "Scored as `colorkit colorize` writes them, at full size, at each working size:", "",
              "| working size | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS),
              "| no colour (floor) | " + " | ".join(_fmt(photos["floor"][m], m) for m in METRICS) + " |"]
    for s, values in photos["sizes"].items():
        mark = " (chosen)" if int(s) == size else ""
        lines.append(f"| {s}{mark} | " + " | ".join(_fmt(values[m], m) for m in METRICS) + " |")
    chosen = photos["sizes"][str(size)]
    gap_share = chosen["colorfulness_gap"] / photos["floor"]["colorfulness_gap"]
    met = meets_target(chosen, photos["floor"])
    lines += ["", "; ".join(f"{m}: {_verdict(chosen, photos['floor'], m)}" for m in METRICS)
              + f"; colourfulness gap {100 * gap_share:.1f}% of the floor's. Target (MAE and PSNR better than the "
              f"floor, gap at most 60% of the floor's): **{'met' if met else 'not met'}**.", "",
              "The working size was picked on these same 8 photos (best PSNR): there is no held-out part, so "
              "its row is optimistic by the choice among the sizes. "
              + _robustness(photos), "",
              "## Limits",
              "- Trained on 32 px CIFAR-10 objects (10 classes): it knows sky, foliage, skin and some object colours "
              "at coarse scale; on scenes unlike CIFAR-10 its colours are muted or wrong.",
              _colour_limit(exp),
              "- Not for judging historical colour: a plausible colorization is not the true one.", ""]
    return "\n".join(lines)


def list_model(out_dir: Path, name: str, model_path: Path, description: str) -> str:
    """Enter a shipped model file in ``out_dir/models.yaml`` with its SHA-256 (returned) and card."""
    from colorkit.kernel.models import sha256_file

    digest = sha256_file(model_path)
    manifest_path = out_dir / "models.yaml"
    manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else None
    manifest = manifest or {"models": {}}
    manifest["models"][name] = {"file": model_path.name, "sha256": digest, "card": f"{name}.md",
                                "description": description}
    manifest_path.write_text("# Written by benchmarks/default_model.py and photo_model.py: the built-in pretrained models.\n"
                             + yaml.safe_dump(manifest, sort_keys=True), encoding="utf-8")
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="run directory (or checkpoint file)")
    ap.add_argument("--name", default="colorkit-cifar10")
    ap.add_argument("--checkpoint", default="last.pt", help="checkpoint of the run to ship (default last.pt)")
    ap.add_argument("--data-root", default=str(HERE.parent.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"),
                    help="the CIFAR-10 archive for the test figures ('' to skip them)")
    ap.add_argument("--sizes", default="32,64,96,128,192,256")
    ap.add_argument("--out-dir", type=Path, default=WEIGHTS)
    ap.add_argument("--report-dir", type=Path, default=HERE / "results" / "default-model")
    ap.add_argument("--command", default=None,
                    help="the training command to name in the report (default: the preset's)")
    ap.add_argument("--description", default=None, help="one line for colorkit list (default: from the run)")
    args = ap.parse_args(argv)

    from colorkit.kernel.models import sha256_file
    from colorkit.engine.checkpoints import write_model_file
    from colorkit.kernel.registry import build_registry
    from colorkit.engine.checkpoints import load_checkpoint

    ckpt = args.run / "checkpoints" / args.checkpoint if args.run.is_dir() else args.run
    state = load_checkpoint(ckpt)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    registry = build_registry()
    figures = measure(ckpt, args.data_root, sizes, registry, log=lambda m: print(m, file=sys.stderr))
    size = pick_size(figures)
    out_dir = args.out_dir
    model_path = write_model_file(ckpt, out_dir / f"{args.name}.pt", working_size=size)
    digest = sha256_file(model_path)
    text = card(args.name, state, figures, size, model_path.stat().st_size)
    (out_dir / f"{args.name}.md").write_text(text, encoding="utf-8")
    (out_dir / f"{args.name}.json").write_text(json.dumps({"name": args.name, "working_size": size, "sha256": digest,
                                                           "source": str(ckpt), **figures}, indent=2) + "\n",
                                               encoding="utf-8")
    gen = state["experiment"]["gen"].get("options", {})
    description = args.description or (
        f"U-Net base {gen.get('base')}, depth {gen.get('depth')}, {gen.get('output')} output, "
        f"{_loss_name(state['experiment'])} loss, trained on CIFAR-10 "
        f"for {float(state.get('cpu_seconds', 0)) / 60:.0f} CPU-minutes; working size {size}")
    list_model(out_dir, args.name, model_path, description)
    report_dir = args.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    run_dir = args.run if args.run.is_dir() else None
    command = args.command or (f"colorkit run --preset {args.name} --data-root ../shared/data/cifar10-jpeg.tar.gz "
                               f"--out runs/{args.name}")
    body = text.replace(f"# Model card: {args.name}", f"## Shipped default model: `{args.name}`", 1)
    body = body.replace("\n## ", "\n### ").replace("### Shipped", "## Shipped")
    reproduce = ["", "Reproduce (one thread: `OMP_NUM_THREADS=1`):", "", "```bash", command,
                 f"python benchmarks/default_model.py runs/{args.name} --name {args.name} --checkpoint {args.checkpoint}"
                 f" --sizes {args.sizes}", "```", "",
                 f"The card ships as `plugins/weights/{args.name}.md`; training logs are in this folder.", ""]
    figure = photo_figure(registry, args.name, model_path, size, report_dir / "figures" / "photos.png")
    reproduce[-2:-2] = [f"![{args.name} on the wheel photos]({figure.relative_to(report_dir).as_posix()})", ""]
    (report_dir / "REPORT.md").write_text(body + "\n".join(reproduce), encoding="utf-8")
    if run_dir is not None:
        for name in ("config.yaml", "metrics.jsonl", "environment.json"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, report_dir / name)
    print(text)
    print(f"wrote {model_path} ({model_path.stat().st_size / 1e6:.2f} MB, sha256 {digest[:12]}...), "
          f"working size {size}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
