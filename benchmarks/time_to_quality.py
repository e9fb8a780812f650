"""Time to quality: how each recipe's quality grows with CPU-minutes, against the "no colour" floor.

A time-to-quality suite is a ``colorkit bench`` suite whose runs keep a checkpoint at CPU-minute
marks (``defaults.train.keep_cpu_minutes``; see benchmarks/time-to-quality.yaml). ``colorkit
bench`` trains the runs (one thread each, side by side, resumable); this script then evaluates
every mark of every run on two sets and writes the report:

* the suite's evaluation protocol (CIFAR-10 ``test``, the seeded sample the suite names), and
* the wheel photos (benchmarks/photoset.py): real colour photos at full size, scored on exactly
  the image ``colorkit colorize`` writes.

    colorkit bench benchmarks/time-to-quality.yaml --out /work/bench-out/time-to-quality
    python benchmarks/time_to_quality.py --suite benchmarks/time-to-quality.yaml \\
        --out /work/bench-out/time-to-quality          # evaluate the marks, write the report
    python benchmarks/make_results.py                  # RESULTS.md includes the report

Outputs in ``benchmarks/results/<suite name>/`` (``--dest``): ``REPORT.md`` (tables of mean +-
std per mark with the floor beside them, CPU-minutes to the floor per recipe and metric),
``results.json`` (every value of every run and mark), ``figures/`` (PSNR and colourfulness gap
against CPU-minutes with the floor drawn; a Figure-5 grid of every recipe at one mark on CIFAR-10
and on the photos) and the small files of each run (config, environment, metrics log, the
evaluations). Evaluations are cached per run in ``ttq-eval.json`` and reused while the
checkpoint files and the protocol are unchanged. Runs still training are reported with the
marks they have reached.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import levers  # noqa: E402
import photoset  # noqa: E402

CACHE = "ttq-eval.json"
CACHE_FORMAT = 1
SMALL_RUN_FILES = ("config.yaml", "environment.json", "metrics.jsonl", CACHE)
PHOTOS = "photos"


def marks_of(suite: Any) -> list[float]:
    from colorkit.kernel.errors import UsageError

    marks = (suite.defaults.get("train") or {}).get("keep_cpu_minutes")
    if not marks:
        raise UsageError(f"{suite.path}: not a time-to-quality suite (no defaults.train.keep_cpu_minutes marks)")
    return sorted(float(m) for m in marks)


def mark_label(m: float) -> str:
    return f"{m:g}"


def evaluate_run(registry: Any, suite: Any, run_dir: Path, marks: list[float], photo_dir: Path,
                 log: Any = print) -> dict[str, Any]:
    """Evaluate every mark checkpoint of one run (cached in ``run_dir/ttq-eval.json``)."""
    from colorkit.front.bench import set_value
    from colorkit.engine.evaluation import evaluate, evaluate_images
    from colorkit.engine.trainer_state import mark_checkpoint_name
    from colorkit.kernel.files import file_key

    cache_path = run_dir / CACHE
    cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
    prot = suite.protocol
    proto_key = {"format": CACHE_FORMAT, "protocol": prot.to_dict(), "photos": sorted(p.name for p in photo_dir.glob("*.png"))}
    if cache.get("key") != proto_key:
        cache = {"key": proto_key, "marks": {}}
    todo = []
    for m in marks:
        ckpt = run_dir / "checkpoints" / mark_checkpoint_name(m)
        entry = cache["marks"].get(mark_label(m))
        if not ckpt.is_file():
            continue  # not reached yet, or the checkpoints were removed (the cached values stay)
        if entry is None or entry.get("checkpoint_key") != file_key(ckpt):
            todo.append((m, ckpt))
    if todo:
        log(f"evaluate {run_dir.name} at {', '.join(mark_label(m) for m, _ in todo)} CPU-minutes")
        sets = [f"dataset.{k}={set_value(v)}" for k, v in prot.options.items()]
        result, models, _ = evaluate([c for _, c in todo], registry=registry, dataset=prot.dataset, split=prot.split,
                                     metrics=prot.metrics, limit=prot.images, batch_size=prot.batch_size,
                                     device=prot.device, sets=sets, own_l_rows=False)
        cache["cifar_floor"] = result.rows[0].values
        cache["cifar_set"] = {"dataset": result.dataset.get("name"), "split": result.split, "images": result.images,
                              "options": result.dataset.get("options")}
        for (m, ckpt), row, model in zip(todo, result.rows[1:], models):
            photos = evaluate_images(ckpt, photo_dir, registry=registry, metrics=prot.metrics, device=prot.device)
            cache["photo_floor"] = photos.rows[0].values
            cache["photo_images"] = photos.images
            state_counts = _counts(ckpt)
            cache["marks"][mark_label(m)] = {
                "checkpoint_key": file_key(ckpt), **state_counts,
                "cifar": row.values, PHOTOS: photos.rows[1].values,
            }
        from colorkit.kernel.files import atomic_write_bytes

        atomic_write_bytes(cache_path, json.dumps(cache, indent=2, allow_nan=False).encode())
    return cache


def _counts(ckpt: Path) -> dict[str, Any]:
    from colorkit.engine.checkpoints import load_checkpoint

    state = load_checkpoint(ckpt)
    return {"step": int(state.get("step", 0)), "images": int(state.get("images", 0)),
            "cpu_seconds": round(float(state.get("cpu_seconds", 0.0)), 1)}


def summarise(suite: Any, marks: list[float], evals: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per experiment, mark and set: mean, std and seeds of every metric."""
    from colorkit.front.bench import mean_std

    out: dict[str, Any] = {}
    for e in suite.experiments:
        per_mark: dict[str, Any] = {}
        for m in marks:
            cell: dict[str, Any] = {}
            for which in ("cifar", PHOTOS):
                runs = [evals[(e.name, s)]["marks"][mark_label(m)] for s in suite.seeds
                        if mark_label(m) in evals.get((e.name, s), {}).get("marks", {})]
                stats = {}
                for metric in suite.metrics:
                    values = [r[which][metric] for r in runs if r[which].get(metric) is not None]
                    mean, std = mean_std(values)
                    stats[metric] = {"mean": mean, "std": std}  # std NaN (null in results.json) for one seed
                cell[which] = {"seeds": len(runs), "metrics": stats,
                               "steps": mean_std([r["step"] for r in runs])[0],
                               "images": mean_std([r["images"] for r in runs])[0]}
            per_mark[mark_label(m)] = cell
        out[e.name] = per_mark
    return out


def better(info: dict[str, Any], value: float, floor: float) -> bool:
    return value > floor if info["higher_is_better"] else value < floor


def _fmt(v: float, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:,.{digits}f}"


def _digits(metric: str) -> int:
    return 3 if metric == "ssim" else (1 if metric in ("accuracy", "auc") else 2)


def _cell(stat: dict[str, float], metric: str) -> str:
    d = _digits(metric)
    if not math.isfinite(stat["mean"]):
        return "–"
    return _fmt(stat["mean"], d) + ("" if not math.isfinite(stat["std"]) else f" ± {_fmt(stat['std'], d)}")


def to_floor(summary: dict[str, Any], marks: list[float], info: dict[str, Any], floors: dict[str, dict[str, float]],
             which: str, metric: str, name: str) -> str:
    """The first mark at which the mean over seeds beats the floor (and stays above at every later
    measured mark), as text."""
    measured = [(m, summary[name][mark_label(m)][which]["metrics"][metric]["mean"]) for m in marks
                if summary[name][mark_label(m)][which]["seeds"]]
    if not measured:
        return "–"
    floor = floors[which][metric]
    for i, (m, _) in enumerate(measured):
        if all(better(info[metric], v, floor) for _, v in measured[i:]):
            return f"{mark_label(m)}"
    return f"not by {mark_label(measured[-1][0])}"


#: issue 12's targets for a fast recipe, judged on the mean over seeds at one mark: (set, metric,
#: what is compared, its words). "gap" is met at half the floor's colourfulness gap or less.
TARGETS = (("cifar", "mae", "floor", "MAE"), ("cifar", "psnr", "floor", "PSNR"),
           ("cifar", "colorfulness_gap", "half", "gap"), (PHOTOS, "psnr", "floor", "photo PSNR"))


def targets_table(suite: Any, summary: dict[str, Any], info: dict[str, Any], floors: dict[str, dict[str, float]],
                  mark: float) -> list[str]:
    """Each recipe against the targets of :data:`TARGETS` at ``mark`` (lines of markdown; none when
    the suite lacks one of the metrics or no recipe reached the mark)."""
    if any(metric not in suite.metrics for _, metric, _, _ in TARGETS):
        return []
    label = mark_label(mark)
    cols = []
    for which, metric, kind, words in TARGETS:
        floor = floors[which][metric]
        line = floor / 2 if kind == "half" else floor
        header = f"{words} ({'at most half the floor: ' if kind == 'half' else 'floor '}{_fmt(line, _digits(metric))})"
        cols.append((which, metric, kind, line, words, header))
    rows = []
    for e in suite.experiments:
        cells = summary[e.name].get(label)
        if not cells or not cells["cifar"]["seeds"]:
            continue
        missed, parts = [], []
        for which, metric, kind, line, words, _ in cols:
            value = cells[which]["metrics"][metric]["mean"]
            ok = value <= line if kind == "half" else better(info[metric], value, line)
            parts.append(("**" + _fmt(value, _digits(metric)) + "**") if ok else _fmt(value, _digits(metric)) + " (missed)")
            if not ok:
                missed.append(words)
        rows.append(f"| {e.name} | {cells['cifar']['seeds']} | " + " | ".join(parts) + " | "
                    + ("yes" if not missed else "no: " + ", ".join(missed)) + " |")
    if not rows:
        return []
    return [f"### The fast recipe's targets at {label} CPU-minutes", "",
            "Issue 12: MAE and PSNR better than the floor on the CIFAR-10 test sample, a colourfulness gap at most "
            "half the floor's, and PSNR above the floor on the wheel photos; mean over the seeds run (bold: met).", "",
            "| recipe | seeds | " + " | ".join(c[5] for c in cols) + " | all met |", "|" + "---|" * (3 + len(cols)),
            *rows, ""]


def report(suite: Any, marks: list[float], evals: dict[tuple[str, int], dict[str, Any]], info: dict[str, Any],
           figures: list[str], reproduce: list[str], target_mark: float = 15.0) -> tuple[str, dict[str, Any]]:
    summary = summarise(suite, marks, evals)
    any_eval = next(iter(evals.values()))
    floors = {"cifar": any_eval["cifar_floor"], PHOTOS: any_eval["photo_floor"]}
    cifar = any_eval["cifar_set"]
    photo_names = [n.removesuffix(".png") for n in any_eval["key"]["photos"]]
    set_titles = {"cifar": f"CIFAR-10 (JPEG mirror) {cifar['split']}, {cifar['images']:,} images (a seeded random "
                           f"sample: dataset.limit={cifar['options'].get('limit')}, seed {cifar['options'].get('seed', 0)}; "
                           f"grayscale images {'kept' if cifar['options'].get('keep_gray') else 'skipped'})",
                  PHOTOS: f"{photoset.set_name(photo_names)}, each at full size, scored as `colorkit colorize` writes it "
                          f"(the model at its training size, a\\*b\\* upsampled onto the photo's own L\\*)"}
    lines = [f"## Time to quality: suite `{suite.name}`", "", suite.description, ""]
    seeds_done = {e.name: sorted({s for (n, s) in evals if n == e.name}) for e in suite.experiments}
    lines += ["Runs evaluated: " + "; ".join(f"`{n}` seeds {', '.join(map(str, s)) or 'none'}"
                                             for n, s in seeds_done.items()) + ".", ""]
    for which in ("cifar", PHOTOS):
        lines += [f"### {set_titles[which]}", ""]
        for m in marks:
            header = "| recipe | seeds | steps | " + " | ".join(
                f"{k} {'↑' if info[k]['higher_is_better'] else '↓'}" for k in suite.metrics) + " |"
            rows = []
            for e in suite.experiments:
                cell = summary[e.name][mark_label(m)][which]
                if not cell["seeds"]:
                    continue
                rows.append(f"| {e.name} | {cell['seeds']} | {_fmt(cell['steps'], 0)} | " + " | ".join(
                    ("**" + _cell(cell['metrics'][k], k) + "**") if better(info[k], cell['metrics'][k]['mean'],
                                                                          floors[which][k])
                    else _cell(cell['metrics'][k], k) for k in suite.metrics) + " |")
            if not rows:
                continue
            lines += [f"At {mark_label(m)} CPU-minutes (1 thread):", "", header,
                      "|" + "---|" * (3 + len(suite.metrics))]
            lines += rows
            lines.append("| *no colour (floor)* | – | – | " + " | ".join(
                _fmt(floors[which][k], _digits(k)) for k in suite.metrics) + " |")
            lines.append("")
            below = []
            for e in suite.experiments:
                cell = summary[e.name][mark_label(m)][which]
                worse = [k for k in suite.metrics if cell["seeds"] and not better(
                    info[k], cell["metrics"][k]["mean"], floors[which][k])]
                if worse:
                    below.append(f"{e.name} ({', '.join(worse)})")
            lines += [f"Not better than the floor at {mark_label(m)} CPU-minutes: "
                      + ("; ".join(below) if below else "none") + ".", ""]
        lines += ["Bold: better than the floor on the same images (mean over seeds).", ""]
    lines += ["### CPU-minutes to the floor", "",
              "The first mark from which the mean over seeds stays better than the no-colour floor at every later "
              "measured mark; \"not by N\": still at or below the floor at the last mark reached (N).", ""]
    for which in ("cifar", PHOTOS):
        lines += [f"{'CIFAR-10 test sample' if which == 'cifar' else 'Wheel photos'}:", "",
                  "| recipe | " + " | ".join(suite.metrics) + " |", "|" + "---|" * (1 + len(suite.metrics))]
        for e in suite.experiments:
            lines.append(f"| {e.name} | " + " | ".join(
                to_floor(summary, marks, info, floors, which, k, e.name) for k in suite.metrics) + " |")
        lines.append("")
    lines += targets_table(suite, summary, info, floors, target_mark)
    lever_columns = [(which, k, words) for which, k, words in (
        ("cifar", "mae", "MAE"), ("cifar", "accuracy", "accuracy"), ("cifar", "psnr", "PSNR"),
        ("cifar", "colorfulness_gap", "gap"), (PHOTOS, "psnr", "photo PSNR")) if k in suite.metrics]
    lines += levers.lever_table(suite, evals, info, mark_label(target_mark), lever_columns)
    lines += ["Recipes:", ""]
    for e in suite.experiments:
        lines.append(f"- `{e.name}`: {e.description}")
    lines += ["", "Reproduce (from the repository root):", "", "```", *reproduce, "```", ""]
    lines += ["Metric definitions: as in the table1-cpu section above (`colorkit list metric`).", ""]
    for fig in figures:
        lines += [f"![{Path(fig).stem}]({fig})", ""]
    blob = {"suite": suite.name, "marks": marks, "metrics": suite.metrics, "floors": floors, "summary": summary,
            "sets": set_titles,
            "runs": {f"{n}-s{s}": {k: v for k, v in ev.items() if k != "key"} for (n, s), ev in sorted(evals.items())}}
    return "\n".join(lines).rstrip() + "\n", blob


def curves_figure(suite: Any, marks: list[float], blob: dict[str, Any], path: Path) -> Path:
    from colorkit.front.bench import plt, save_figure

    panels = [("cifar", "psnr"), ("cifar", "colorfulness_gap"), (PHOTOS, "psnr"), (PHOTOS, "colorfulness_gap")]
    panels = [p for p in panels if p[1] in suite.metrics]
    # more than 8 recipes: the legend gets a panel of its own (it would hide the first one's curves)
    side = len(suite.experiments) > 8
    ncol_legend = 1 + (len(suite.experiments) - 1) // 16
    fig, axes = plt.subplots(1, len(panels) + side, figsize=(4.2 * len(panels) + 2.4 * ncol_legend * side, 3.6),
                             squeeze=False, width_ratios=[4.2] * len(panels) + [2.4 * ncol_legend] * side)
    # one colour and marker per recipe: the default cycle repeats its 10 colours
    colours = plt.get_cmap("tab20").colors
    styles = {e.name: {"color": colours[(2 * i) % 20 + (i // 10) % 2], "marker": "osD^v<>ph*"[i % 10],
                       "linestyle": "-" if i < 10 else "--"} for i, e in enumerate(suite.experiments)}
    for ax, (which, metric) in zip(axes[0], panels):
        for e in suite.experiments:
            xs, ys, es = [], [], []
            for m in marks:
                cell = blob["summary"][e.name][mark_label(m)][which]
                if cell["seeds"]:
                    st = cell["metrics"][metric]
                    xs.append(m)
                    ys.append(st["mean"])
                    es.append(st["std"] if math.isfinite(st["std"]) else 0.0)
            if xs:
                ax.errorbar(xs, ys, yerr=es, capsize=3, label=e.name, **styles[e.name])
        ax.axhline(blob["floors"][which][metric], color="black", linestyle="--", linewidth=1, label="no colour (floor)")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(marks)
        ax.set_xticklabels([mark_label(m) for m in marks])
        ax.set_xlabel("CPU-minutes of training (1 thread)")
        ax.set_title(f"{'CIFAR-10 test sample' if which == 'cifar' else 'wheel photos'}: {metric}", fontsize=9)
    if side:
        axes[0][-1].axis("off")
        axes[0][-1].legend(*axes[0][0].get_legend_handles_labels(), fontsize=7, loc="center left", ncol=ncol_legend)
    else:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def photo_grid(registry: Any, ckpts: list[tuple[str, Path]], photo_dir: Path, path: Path) -> Path:
    """Rows: each wheel photo; columns: grayscale | original | each recipe, as colorize writes them."""
    import numpy as np
    from PIL import Image

    from colorkit.front.bench import plt, save_figure
    from colorkit.engine.inference import colorize_array, load_model

    models = [(name, load_model(c, registry, device="cpu")) for name, c in ckpts]
    files = sorted(photo_dir.glob("*.png"))
    ncol = 2 + len(models)
    # at most 26 inches wide: a suite of 20 recipes would otherwise write a PNG of several MB
    scale = min(1.0, 26.0 / (1.9 * ncol))
    fig, axes = plt.subplots(len(files), ncol, figsize=(1.9 * ncol * scale, 1.5 * len(files) * scale + 0.4),
                             squeeze=False)
    for i, f in enumerate(files):
        rgb = np.asarray(Image.open(f).convert("RGB"))
        grey = np.asarray(Image.open(f).convert("L"))
        cols = [np.repeat(grey[..., None], 3, axis=2), rgb] + [colorize_array(m, grey) for _, m in models]
        for j, img in enumerate(cols):
            ax = axes[i][j]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(["grayscale", "original", *[n for n, _ in models]][j], fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, default=HERE / "time-to-quality.yaml")
    ap.add_argument("--out", type=Path, required=True, help="the suite's colorkit bench --out folder")
    ap.add_argument("--dest", type=Path, help="results folder (default: benchmarks/results/<suite name>)")
    ap.add_argument("--grid-mark", type=float, default=15.0,
                    help="the mark of the Figure-5 grids, the targets table and the lever table (CPU-minutes)")
    args = ap.parse_args(argv)

    import torch

    from colorkit.front.bench import figure5_from_checkpoints, load_suite, run_name
    from colorkit.kernel.errors import ColorkitError
    from colorkit.kernel.files import atomic_write_bytes, json_text
    from colorkit.engine.scoring import metric_info
    from colorkit.kernel.registry import build_registry
    from colorkit.engine.trainer_state import mark_checkpoint_name

    try:
        suite = load_suite(args.suite)
        marks = marks_of(suite)
    except ColorkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if suite.threads:
        torch.set_num_threads(suite.threads)
    registry = build_registry()
    photo_dir = args.out / PHOTOS
    photoset.write(photo_dir)
    evals: dict[tuple[str, int], dict[str, Any]] = {}
    for seed in suite.seeds:
        for e in suite.experiments:
            run_dir = args.out / "runs" / run_name(e.name, seed)
            if not run_dir.is_dir():
                continue
            ev = evaluate_run(registry, suite, run_dir, marks, photo_dir)
            if ev.get("marks"):
                evals[(e.name, seed)] = ev
    if not evals:
        print(f"error: {args.out}: no run of {args.suite} has reached a mark yet", file=sys.stderr)
        return 2
    dest = args.dest or HERE / "results" / suite.name
    figs_dir = dest / "figures"
    figs_dir.mkdir(parents=True, exist_ok=True)
    info = metric_info(registry, suite.metrics)
    figures = []
    seed0 = suite.seeds[0]
    grid = [(e.name, args.out / "runs" / run_name(e.name, seed0) / "checkpoints" / mark_checkpoint_name(args.grid_mark))
            for e in suite.experiments]
    grid = [(n, c) for n, c in grid if c.is_file()]
    # One grid of every recipe when all their checkpoints are here; otherwise one grid per recipe
    # present, and the grids drawn earlier from checkpoints since removed stay (not redrawn).
    parts = [("", grid)] if len(grid) == len(suite.experiments) else [(f"_{n}", [(n, c)]) for n, c in grid]
    for suffix, cols in parts:
        figure5_from_checkpoints(suite, registry, cols, figs_dir / f"figure5_cifar10{suffix}.png", rows=8, seed=seed0,
                                 title=f"Figure 5 at {mark_label(args.grid_mark)} CPU-minutes",
                                 checkpoint_name=mark_checkpoint_name(args.grid_mark))
        photo_grid(registry, cols, photo_dir, figs_dir / f"photos{suffix}.png")
    figures += sorted(f"figures/{f.name}" for f in figs_dir.glob("*.png") if f.name != "curves.png")
    reproduce = [f"colorkit bench {args.suite.as_posix()} --out {args.out.as_posix()}",
                 f"python benchmarks/time_to_quality.py --suite {args.suite.as_posix()} --out {args.out.as_posix()}",
                 "python benchmarks/make_results.py"]
    text, blob = report(suite, marks, evals, info, ["figures/curves.png", *figures], reproduce, target_mark=args.grid_mark)
    curves_figure(suite, marks, blob, figs_dir / "curves.png")
    (dest / "REPORT.md").write_text(text, encoding="utf-8")
    atomic_write_bytes(dest / "results.json", (json_text(blob, indent=2) + "\n").encode("utf-8"))
    for (name, seed) in evals:
        run_dir = args.out / "runs" / run_name(name, seed)
        target = dest / "runs" / run_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for f in SMALL_RUN_FILES:
            if (run_dir / f).is_file():
                shutil.copy2(run_dir / f, target / f)
    print(f"wrote {dest / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
