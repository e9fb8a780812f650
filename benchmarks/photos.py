"""The photo benchmark: colorization of real photographs, scored against the "no colour" floor.

Every score is ``colorkit eval MODEL --images photos9k/<split>``: each photo of the split at its
stored size (short side at most 192 px), scored on exactly the image ``colorkit colorize`` writes
for it, beside the floor of the same photos (the photo's own L*, a* = b* = 0). Choices (marks,
decode temperature, a*b* gain, chroma upsampling) read ``val`` only; the tables report ``test``.

    # every CPU-minute mark of every run of a photo time-to-quality suite, on val and test
    python benchmarks/photos.py marks /work/bench-out/photos-ttq --dest benchmarks/results/photos-ttq
    # inference options of one checkpoint on val (each a model file of the same weights)
    python benchmarks/photos.py scan RUN/checkpoints/cpu-60min.pt --set gen.temperature=0.2,0.38,1 \\
        --set gen.ab_gain=1,1.3 --chroma bilinear,guided --dest benchmarks/results/photos-scan
    # a model (a name, a run, a checkpoint or a model file) on test, with the floor
    python benchmarks/photos.py score colorkit-cifar10 --split test

``--photos`` is photos9k.tar (default: ../shared/data/photos9k.tar beside the repository) or the
folder it unpacks to. Evaluations are cached in ``--cache`` (default ``/work/bench-out/photo-evals``)
under a key of the model file's size and modification time, the options and the split.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos9k.tar"
DEFAULT_CACHE = Path(os.environ.get("COLORKIT_BENCH_CACHE", "/work/bench-out/photo-evals"))

#: The photo metrics, in table order (exact definitions: ``colorkit list metric --options``).
METRICS = ["mae", "psnr", "ssim", "colorfulness", "colorfulness_gap", "auc", "auc_rebal", "hist_intersection"]
#: Issue 32's targets on test, relative to the floor of the same photos: (metric, kind, amount).
TARGETS = [("psnr", "above", 0.3), ("mae", "below", 0.5), ("colorfulness_gap", "ratio", 0.4),
           ("auc_rebal", "above", 3.0), ("hist_intersection", "at_least", 0.6)]


def photo_folder(path: Path) -> Path:
    """The unpacked photos9k folder (with train/, val/, test/) for the tar or the folder."""
    if path.is_dir():
        return path
    from colorkit.kernel.registry import build_registry

    dataset = build_registry().get("dataset", "imagefolder").build({"root": str(path), "size": 64})
    return Path(dataset.folder)


def targets_met(values: dict[str, float], floor: dict[str, float]) -> dict[str, bool]:
    """Which of :data:`TARGETS` ``values`` meets against ``floor`` (metrics absent count as unmet)."""
    met = {}
    for metric, kind, amount in TARGETS:
        v, f = values.get(metric), floor.get(metric)
        if v is None or f is None:
            met[metric] = False
        elif kind == "above":
            met[metric] = v >= f + amount
        elif kind == "below":
            met[metric] = v <= f - amount
        elif kind == "ratio":
            met[metric] = v <= amount * f
        else:
            met[metric] = v >= amount
    return met


def _key(model: Path | str, split: str, variant: dict[str, Any], chroma: str | None, size: int | None) -> str:
    ident: Any = str(model)
    if Path(model).exists():
        st = Path(model).stat()
        ident = [str(Path(model).resolve()), st.st_size, st.st_mtime_ns]
    blob = json.dumps([ident, split, variant, chroma, size, METRICS], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def score(model: Path | str, folder: Path, split: str, variant: dict[str, Any] | None = None,
          chroma: str | None = None, cache: Path = DEFAULT_CACHE, size: int | None = None) -> dict[str, Any]:
    """``{"floor": {...}, "values": {...}, "images": n, ...}`` for ``model`` with the generator
    options ``variant`` (a model file of the same weights), chroma upsampling ``chroma`` and
    working size ``size`` (default: the model's own) on ``folder/split``; cached."""
    variant = dict(variant or {})
    path = cache / f"{_key(model, split, variant, chroma, size)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from colorkit.engine.checkpoints import load_checkpoint, write_model_file
    from colorkit.engine.evaluation import evaluate_images
    from colorkit.kernel.files import atomic_write_bytes, json_text

    extra = {"chroma": chroma} if chroma else {}
    with tempfile.TemporaryDirectory() as tmp:
        target: Path | str = model
        if variant:
            source = with_class_weights(Path(model), Path(tmp) / "weighted.pt")
            experiment = load_checkpoint(source)["experiment"]
            experiment["gen"]["options"].update(variant)
            target = write_model_file(source, Path(tmp) / "variant.pt", half=False, experiment=experiment)
        ev = evaluate_images(target, folder / split, metrics=METRICS, device="cpu", working_size=size, **extra)
    out = {"model": str(model), "split": split, "variant": variant, "chroma": chroma or "bilinear",
           "working_size": ev.extra["working_size"], "images": ev.images, "floor": ev.rows[0].values, "values": ev.rows[-1].values}
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json_text(out, indent=1).encode())
    return out


def with_class_weights(checkpoint: Path, out: Path) -> Path:
    """``checkpoint``, or where its bins generator lacks the class weights its loss trained with
    (``cell_log_weight``, kept by runs since gen.prior_correction exists), a copy at ``out`` with
    them recomputed exactly as training computed them (the loss's ``prepare`` on its train split)."""
    import torch

    from colorkit.engine.checkpoints import load_checkpoint
    from colorkit.kernel.registry import build_registry

    state = load_checkpoint(checkpoint)
    exp = state["experiment"]
    weights = state.get("gen_ema") or state["gen"]
    if (exp["gen"].get("options") or {}).get("output") != "bins" or "cell_log_weight" in weights:
        return checkpoint
    registry = build_registry()
    loss_spec = exp["loss"] if isinstance(exp["loss"], dict) else {"name": exp["loss"], "options": {}}
    loss = registry.get("loss", loss_spec["name"]).build(loss_spec.get("options") or {})
    dataset = registry.get("dataset", exp["dataset"]["name"]).build(exp["dataset"].get("options") or {})
    loss.prepare(dataset.split(dataset.train_split, train=False))
    raw = torch.load(checkpoint, weights_only=True)
    for key in ("gen", "gen_ema"):
        if isinstance(raw.get(key), dict):
            raw[key]["cell_log_weight"] = loss.class_weights.log()
    torch.save(raw, out)
    return out


def _fmt(metric: str, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if metric in ("ssim", "hist_intersection") else f"{v:.2f}"


def table(rows: list[tuple[str, dict[str, Any]]], floor: dict[str, float], title: str) -> str:
    """A markdown table: the floor first, then each row, with the targets met of each."""
    head = "| row | " + " | ".join(METRICS) + " | targets met |\n|---|" + "---|" * (len(METRICS) + 1) + "\n"
    lines = [f"| *no colour (floor)* | " + " | ".join(_fmt(m, floor.get(m)) for m in METRICS) + " | |"]
    for name, values in rows:
        met = targets_met(values, floor)
        marks = [(_fmt(m, values.get(m)) + ("" if m not in met else (" ✓" if met[m] else " ✗"))) for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(marks) + f" | {sum(met.values())}/{len(met)} |")
    return f"{title}\n\n" + head + "\n".join(lines) + "\n"


def above_floor(values: dict[str, float], floor: dict[str, float]) -> bool:
    """Better than no colour on both per-pixel measures: PSNR higher and MAE lower."""
    return values["psnr"] > floor["psnr"] and values["mae"] < floor["mae"]


def choose(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The val choice: never worse than no colour on PSNR and MAE where any variant manages that;
    then the most of issue 32's targets; then the most plausible colour (rebalanced AuC)."""
    return max(results, key=lambda r: (above_floor(r["values"], r["floor"]),
                                       sum(targets_met(r["values"], r["floor"]).values()), r["values"]["auc_rebal"]))


def _parse_sets(sets: list[str]) -> list[dict[str, Any]]:
    """``gen.temperature=0.2,0.38`` ... to the grid of generator-option variants."""
    import yaml

    axes = []
    for item in sets:
        key, _, values = item.partition("=")
        if not key.startswith("gen.") or not values:
            raise SystemExit(f"--set {item}: expected gen.KEY=V1,V2,...")
        axes.append([(key[4:], yaml.safe_load(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def _label(r: dict[str, Any]) -> str:
    parts = [f"size {r['working_size']}"] + [f"{k}={v}" for k, v in r["variant"].items()] + [f"chroma={r['chroma']}"]
    return ", ".join(parts)


def scan(model: Path | str, folder: Path, split: str, sets: list[str], chromas: str, sizes: str | None,
         cache: Path = DEFAULT_CACHE) -> list[dict[str, Any]]:
    """Every combination of the ``gen.KEY=V1,V2`` sets, chroma upsamplings and working sizes."""
    size_list = [int(s) for s in sizes.split(",")] if sizes else [None]
    return [score(model, folder, split, v, c, cache, size) for size in size_list
            for v in _parse_sets(sets) for c in chromas.split(",")]


def cmd_scan(args: argparse.Namespace, folder: Path) -> None:
    results = scan(args.model, folder, args.split, args.sets, args.chroma, args.sizes, args.cache)
    best = choose(results)
    text = table([(_label(r) + (" **(chosen)**" if r is best else ""), r["values"]) for r in results], results[0]["floor"],
                 f"Inference options of `{args.model}` on photos9k `{args.split}` ({results[0]['images']} photos)")
    print(text)
    if args.dest:
        args.dest.mkdir(parents=True, exist_ok=True)
        (args.dest / f"scan-{args.split}.md").write_text(text)
        (args.dest / f"scan-{args.split}.json").write_text(json.dumps({"results": results, "chosen": best}, indent=1))


def cmd_score(args: argparse.Namespace, folder: Path) -> None:
    size = int(args.sizes) if args.sizes else None
    rows = [score(m, folder, args.split, _parse_sets(args.sets)[0], args.chroma, args.cache, size)
            for m in args.model.split(",")]
    text = table([(r["model"], r["values"]) for r in rows], rows[0]["floor"],
                 f"photos9k `{args.split}` ({rows[0]['images']} photos)")
    print(text)


def _row_variants(items: list[str]) -> dict[str, dict[str, Any]]:
    """``ROW:gen.KEY=V,gen.KEY=V`` ... to ``{row: {KEY: V}}``: the inference options a row's marks
    are scored with (a bins row: the options chosen on val for the shipped model)."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        row, _, sets = item.partition(":")
        pairs = [kv.partition("=") for kv in sets.split(",")]
        if not row or any(not k.startswith("gen.") or not v for k, _, v in pairs):
            raise SystemExit(f"--variant {item}: expected ROW:gen.KEY=V[,gen.KEY=V]")
        out[row] = {k[4:]: yaml.safe_load(v) for k, _, v in pairs}
    return out


def row_of(run: Path) -> str:
    """A run directory's row: its name less the ``-sSEED`` suffix."""
    name, _, seed = run.name.rpartition("-s")
    return name if name and seed.isdigit() else run.name


def cmd_marks(args: argparse.Namespace, folder: Path) -> None:
    runs = sorted(p for out in args.out for p in (out / "runs").iterdir() if (p / "checkpoints").is_dir())
    variants = _row_variants(args.variant)
    report = {}
    for split in args.splits.split(","):
        rows, floor = [], None
        for run in runs:
            marks = sorted((run / "checkpoints").glob("cpu-*min.pt"), key=lambda p: float(p.stem[4:-3]))
            for mark in marks:
                r = score(mark, folder, split, variants.get(row_of(run)), cache=args.cache)
                floor = r["floor"]
                rows.append((f"{run.name} @ {mark.stem[4:-3]} CPU-min", r["values"]))
        report[split] = {"floor": floor, "rows": rows, "seeds": seed_rows(rows)}
        print(table(rows, floor or {}, f"photos9k `{split}`"))
        print(seed_table(report[split]["seeds"], floor or {}, f"photos9k `{split}`, mean ± sd over seeds"))
    if args.dest:
        write_marks_report(args, report, runs, variants)


def seed_rows(rows: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows ``RUN-sSEED @ M CPU-min`` grouped by row and mark: each metric's mean, sample
    standard deviation and the seeds counted."""
    import statistics

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for name, values in rows:
        run, _, mark = name.partition(" @ ")
        groups.setdefault((row_of(Path(run)), mark), []).append(values)
    out = []
    for (row, mark), values in groups.items():
        stats = {}
        for m in METRICS:
            xs = [v[m] for v in values if v.get(m) is not None]
            stats[m] = (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None) if xs else (None, None)
        out.append({"row": row, "mark": mark, "seeds": len(values), "stats": stats})
    return out


def seed_table(groups: list[dict[str, Any]], floor: dict[str, float], title: str) -> str:
    """The markdown table of :func:`seed_rows`: mean ± sd, targets judged on the mean."""
    head = "| row @ mark | seeds | " + " | ".join(METRICS) + " | targets met |\n|---|---|" + "---|" * (len(METRICS) + 1)
    lines = [head]
    for g in groups:
        means = {m: s[0] for m, s in g["stats"].items()}
        met = targets_met(means, floor)
        cells = []
        for m in METRICS:
            mean, sd = g["stats"][m]
            text = _fmt(m, mean) + (f" ± {_fmt(m, sd)}" if sd is not None else "")
            if mean is not None and m == "psnr" and mean <= floor.get("psnr", -1e9):
                text = f"**{text}, below**"
            cells.append(text + ("" if m not in met else (" ✓" if met[m] else " ✗")))
        lines.append(f"| {g['row']} @ {g['mark']} | {g['seeds']} | " + " | ".join(cells) + f" | {sum(met.values())}/{len(met)} |")
    return f"{title}\n\n" + "\n".join(lines) + "\n"


def write_marks_report(args: argparse.Namespace, report: dict[str, Any], runs: list[Path],
                       variants: dict[str, dict[str, Any]]) -> None:
    """REPORT.md (test tables first, then val), marks.json and each run's small files in ``--dest``."""
    import shutil

    args.dest.mkdir(parents=True, exist_ok=True)
    (args.dest / "marks.json").write_text(json.dumps(report, indent=1))
    images = {split: next((r["images"] for r in _cached(args.cache, split)), None) for split in report}
    outs = " ".join(str(o) for o in args.out)
    scored = "; ".join(f"`{row}` scored with " + ", ".join(f"gen.{k}={v}" for k, v in v_.items())
                       for row, v_ in variants.items())
    parts = [f"## Real photos: time to quality ({', '.join(o.name for o in args.out)})", "",
             "Every CPU-minute mark of every run, scored on photos9k at the photos' stored size as `colorkit "
             "colorize` writes them, beside the floor of the same photos (✓ / ✗: issue 32's target for that metric "
             "met or not; the targets are stated for `test`), then each row's mean ± sample standard deviation over "
             f"its seeds. {scored + '. ' if scored else ''}Reproduce:", "", "```bash",
             f"python benchmarks/photos.py marks {outs} --splits {args.splits} "
             + " ".join(f"--variant {v}" for v in args.variant) + f" --dest {args.dest}", "```", ""]
    for split in [s for s in ("test", "val") if s in report]:
        block = report[split]
        title = f"photos9k `{split}`" + (f" ({images[split]} photos)" if images[split] else "")
        parts.append(table(block["rows"], block["floor"] or {}, f"### {title}"))
        parts.append(seed_table(block["seeds"], block["floor"] or {}, f"### {title}, mean ± sd over seeds"))
    (args.dest / "REPORT.md").write_text("\n".join(parts))
    for run in runs:
        (args.dest / "runs" / run.name).mkdir(parents=True, exist_ok=True)
        for name in ("config.yaml", "environment.json", "metrics.jsonl"):
            if (run / name).is_file():
                shutil.copy2(run / name, args.dest / "runs" / run.name / name)


def _cached(cache: Path, split: str) -> list[dict[str, Any]]:
    return [r for r in (json.loads(p.read_text()) for p in cache.glob("*.json")) if r.get("split") == split]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("marks")
    p.add_argument("out", type=Path, nargs="+", help="bench output folders (their runs/ are scored together)")
    p.add_argument("--variant", action="append", default=[],
                   help="ROW:gen.KEY=V,...: the inference options ROW's marks are scored with (repeatable)")
    p.add_argument("--splits", default="test,val", help="the splits to score every mark on")
    p.add_argument("--dest", type=Path)
    for name in ("scan", "score"):
        p = sub.add_parser(name)
        p.add_argument("model")
        p.add_argument("--split", default="val" if name == "scan" else "test")
        p.add_argument("--set", dest="sets", action="append", default=[])
        p.add_argument("--chroma", default="bilinear" if name == "scan" else None)
        p.add_argument("--sizes", default=None, help="working sizes to try (default: the model's own)")
        p.add_argument("--dest", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    folder = photo_folder(args.photos)
    {"scan": cmd_scan, "score": cmd_score, "marks": cmd_marks}[args.cmd](args, folder)


if __name__ == "__main__":
    sys.exit(main())
