"""The tables of a benchmark suite: ``results.csv`` (one row per run), ``results.md`` (mean +- std
over seeds beside the "no colour" floor and the paper's numbers) and ``results.json``, rewritten
from the run directories and their cached evaluations.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from colorkit.front.bench.rundirs import config_hash, read_events, run_finished, run_name
from colorkit.front.bench.suite import Protocol, Suite
from colorkit.kernel.errors import UsageError
from colorkit.kernel.files import atomic_write_bytes, json_text


def turing_column(suite: Suite) -> tuple[str, dict[str, str]] | None:
    """The header and per-experiment cells of the fooling-rate column, from the suite's study."""
    if suite.turing is None:
        return None
    from colorkit.front.turing.study import summarize

    summary = summarize(suite.turing["study"])
    rates = {row["condition"]: row for row in summary["models"]}
    cells = {}
    for experiment, label in suite.turing["models"].items():
        row = rates.get(label)
        if row is None:
            raise UsageError(f"{suite.path}: turing.models: the study {suite.turing['study']} has no model "
                             f"'{label}' (it has {', '.join(sorted(rates)) or 'none'})")
        cells[experiment] = ("–" if row["rate"] is None else
                             f"{100 * row['rate']:.1f} ({100 * row['ci95'][0]:.0f}-{100 * row['ci95'][1]:.0f})")
    original = summary["original"]
    cells[""] = ("–" if original["rate"] is None else
                 f"{100 * original['rate']:.1f} ({100 * original['ci95'][0]:.0f}-{100 * original['ci95'][1]:.0f})")
    head = f"fooled (%, 95% CI; {summary['participants']} people, {summary['answers']} answers) ↑"
    return head, cells


# -- results ------------------------------------------------------------------------------------


def eval_set_label(ev: dict[str, Any]) -> str:
    """``cifar10/test, 10000 images``: the images an evaluation (and its floor) used."""
    return f"{(ev.get('dataset') or {}).get('name')}/{ev.get('split')}, {ev.get('images')} images"


def public_protocol(prot: Protocol | dict[str, Any]) -> dict[str, Any]:
    """A protocol without its dataset ``root`` (where the data lies on one machine)."""
    d = dict(prot.to_dict() if isinstance(prot, Protocol) else prot)
    d["options"] = {k: v for k, v in (d.get("options") or {}).items() if k != "root"}
    return d


def collect(suite: Suite, out: Path, stale: list[str] | None = None
            ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """One row per finished and evaluated run, and per evaluation set (dataset, split, images)
    the "no colour" floor values and an evaluation's header (``{label: {"floor", "header"}}``).
    A run whose evaluation used another protocol than the suite asks for now is left out (its
    name appended to ``stale``): one table never mixes protocols."""
    rows: list[dict[str, Any]] = []
    sets: dict[str, dict[str, Any]] = {}
    for seed in suite.seeds:
        for e in suite.experiments:
            run_dir = out / "runs" / run_name(e.name, seed)
            cache = run_dir / f"eval-{suite.checkpoint}.json"
            if not (run_finished(run_dir) and cache.is_file()):
                continue
            ev = json.loads(cache.read_text(encoding="utf-8"))
            used = (ev.get("key") or {}).get("protocol")
            if used is not None and public_protocol(used) != public_protocol(suite.protocol_for(e)):
                if stale is not None:
                    stale.append(run_dir.name)
                continue
            env = json.loads((run_dir / "environment.json").read_text(encoding="utf-8"))
            end = [x for x in read_events(run_dir) if x.get("event") == "end"][-1]
            model = ev["rows"][1]
            label = eval_set_label(ev)
            sets.setdefault(label, {"floor": ev["rows"][0]["values"], "header": ev})
            row = {
                "experiment": e.name, "seed": seed, "config_sha256": config_hash(run_dir),
                "colorkit": env.get("colorkit"), "torch": env.get("torch"), "device": env.get("gpu") or env.get("device"),
                "threads": env.get("torch_threads"),
                "wall_seconds": end.get("train_seconds"), "cpu_seconds": end.get("cpu_seconds"),
                "images_seen": end.get("images"), "steps": end.get("step"), "epochs": model.get("epoch"),
                "checkpoint": f"runs/{run_dir.name}/checkpoints/{suite.checkpoint}.pt",
                "eval_set": label, "eval_images": ev.get("images"), "eval_seconds": ev.get("seconds"),
            }
            for m in suite.metrics:
                v = model["values"].get(m)
                row[m] = float("nan") if v is None else float(v)
            rows.append(row)
    return rows, sets


def csv_columns(suite: Suite) -> list[str]:
    return ["experiment", "seed", "config_sha256", "colorkit", "torch", "device", "threads", "wall_seconds",
            "cpu_seconds", "images_seen", "steps", "epochs", "checkpoint", "eval_set", "eval_images", "eval_seconds",
            *suite.metrics]


def write_csv(suite: Suite, rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=csv_columns(suite), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (_fmt_csv(v) if isinstance(v, float) else v) for k, v in r.items()})
    _write_text(path, buf.getvalue())


def _fmt_csv(v: float) -> str:
    return "nan" if not math.isfinite(v) else repr(round(v, 6))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; NaN for a single value: no spread is known)."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if len(vals) > 1 else math.nan
    return mean, std


def summarise(suite: Suite, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per experiment: n seeds, mean and std of every metric and of the budget columns."""
    out = []
    for e in suite.experiments:
        mine = [r for r in rows if r["experiment"] == e.name]
        if not mine:
            out.append({"experiment": e.name, "n": 0, "seeds": []})
            continue
        s: dict[str, Any] = {"experiment": e.name, "n": len(mine), "seeds": [r["seed"] for r in mine],
                             "eval_set": mine[0]["eval_set"]}
        for key in [*suite.metrics, "steps", "images_seen", "cpu_seconds", "wall_seconds", "epochs"]:
            vals = [float(r[key]) for r in mine if r.get(key) not in (None, "")]
            s[key] = mean_std(vals)
        out.append(s)
    return out


def _fmt_num(v: float, digits: int = 2) -> str:
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f}"


METRIC_DIGITS = {"mae": 2, "rmse": 2, "accuracy": 1, "psnr": 2, "ssim": 3, "colorfulness": 2,
                 "colorfulness_gap": 2, "auc": 1}


def _metric_info(sets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    for v in sets.values():
        return v["header"].get("metrics") or {}
    return {}


def results_table(suite: Suite, summary: list[dict[str, Any]], sets: dict[str, dict[str, Any]]) -> str:
    """The markdown table: one row per experiment (mean ± std over seeds), the "no colour" floor
    of each evaluation set, and the paper's numbers where the suite gives them."""
    metrics = suite.metrics
    info = _metric_info(sets)
    several = len(sets) > 1
    heads = []
    for m in metrics:
        mi = info.get(m, {})
        arrow = "↑" if mi.get("higher_is_better", True) else "↓"
        unit = f" ({mi['unit']})" if mi.get("unit") else ""
        heads.append(f"{m}{unit} {arrow}")
    turing = turing_column(suite)
    extra = (lambda name: f" {turing[1].get(name, '')} |") if turing else (lambda name: "")
    if turing:
        heads.append(turing[0])
    lead = "| experiment | " + ("evaluated on | " if several else "") + "seeds | steps | images seen | "
    lines = [lead + " | ".join(heads) + " |", "|---|" + ("---|" if several else "") + "---|---|---|" + "---|" * len(heads)]
    blank = " | ".join("" for _ in metrics)
    for s in summary:
        if s["n"] == 0:
            lines.append(f"| {s['experiment']} | " + ("| " if several else "")
                         + f"0 of {len(suite.seeds)} (not run yet) | | | {blank} |" + extra(s["experiment"]))
            continue
        cells = []
        for m in metrics:
            mean, std = s[m]
            d = METRIC_DIGITS.get(m, 3)
            cells.append(_fmt_num(mean, d) if s["n"] < 2 else f"{_fmt_num(mean, d)} ± {_fmt_num(std, d)}")
        where = f"{s['eval_set']} | " if several else ""
        lines.append(f"| {s['experiment']} | {where}{s['n']} of {len(suite.seeds)} | {s['steps'][0]:.0f} "
                     f"| {s['images_seen'][0]:,.0f} | " + " | ".join(cells) + " |" + extra(s["experiment"]))
    for label, v in sets.items():
        floor = v["floor"]
        cells = [_fmt_num(float(floor[m]) if floor.get(m) is not None else float("nan"), METRIC_DIGITS.get(m, 3))
                 for m in metrics]
        name = "*no colour (floor: L\\* kept, a\\* = b\\* = 0)*"
        if several:
            lines.append(f"| {name} | {label} | – | – | – | " + " | ".join(cells) + " |" + extra("-"))
        else:
            lines.append(f"| {name} | – | – | – | " + " | ".join(cells) + " |" + extra("-"))
    if turing:
        lines.append("| *original photos (the share judged real)* | " + ("| " if several else "") + "– | – | – | "
                     + blank + " |" + extra(""))
    for e in suite.experiments:
        if e.paper:
            cells = ["" if e.paper.get(m) is None else f"*{e.paper[m]}*" for m in metrics]
            label = e.paper.get("label") or f"paper: {e.name}"
            lines.append(f"| *{label}* | " + ("| " if several else "") + "| | | " + " | ".join(cells) + " |"
                         + extra("-"))
    return "\n".join(lines) + "\n"


def protocol_text(suite: Suite, sets: dict[str, dict[str, Any]]) -> list[str]:
    """The evaluation protocol and the metric definitions, as markdown lines."""
    parts: list[str] = []
    for label, v in sets.items():
        h = v["header"]
        ds = h.get("dataset") or {}
        opts = {k: val for k, val in (ds.get("options") or {}).items() if k not in ("root", "cache")}
        parts.append(f"Protocol: dataset `{ds.get('name')}` ({ds.get('package', '')}; options "
                     f"{', '.join(f'{k}={val}' for k, val in opts.items())}), split `{h.get('split')}`, the first "
                     f"{h.get('images')} images, the same for every run and for the floor; evaluation batch "
                     f"{h.get('batch_size')} on {h.get('device')}; metrics {', '.join(suite.metrics)}.")
        parts.append("")
    info = _metric_info(sets)
    if info:
        parts += ["| metric | unit | better | definition |", "|---|---|---|---|"]
        for m in suite.metrics:
            mi = info.get(m, {})
            definition = " ".join(str(mi.get("definition") or mi.get("description") or "").split())
            parts.append(f"| {m} | {mi.get('unit', '')} | {'higher' if mi.get('higher_is_better', True) else 'lower'} "
                         f"| {definition.replace('|', chr(92) + '|')} |")
    return parts


def per_run_table(suite: Suite, rows: list[dict[str, Any]]) -> list[str]:
    metrics = suite.metrics
    parts = ["| run | config sha256 | device | threads | train wall s | train CPU s | steps | images | "
             + " | ".join(metrics) + " |",
             "|---|---|---|---|---|---|---|---|" + "---|" * len(metrics)]
    for r in rows:
        vals = " | ".join(_fmt_num(float(r[m]), METRIC_DIGITS.get(m, 3)) for m in metrics)
        wall = _fmt_num(float(r["wall_seconds"]) if r["wall_seconds"] not in (None, "") else float("nan"), 0)
        cpu = _fmt_num(float(r["cpu_seconds"]) if r["cpu_seconds"] not in (None, "") else float("nan"), 0)
        parts.append(f"| {r['experiment']}-s{r['seed']} | `{str(r['config_sha256'])[:12]}` | {r['device']} | {r['threads']} "
                     f"| {wall} | {cpu} | {r['steps']} | {r['images_seen']} | {vals} |")
    return parts


def write_markdown(suite: Suite, out: Path, rows: list[dict[str, Any]], sets: dict[str, dict[str, Any]],
                   figures: list[str], stale: list[str] | None = None) -> str:
    summary = summarise(suite, rows)
    total = len(suite.seeds) * len(suite.experiments)
    parts = [f"# Suite {suite.name}", ""]
    if suite.description:
        parts += [suite.description, ""]
    parts += [f"{len(rows)} of {total} runs finished and evaluated "
              f"({len(suite.experiments)} experiments x seeds {', '.join(map(str, suite.seeds))}). "
              f"Values: mean ± sample standard deviation over the finished seeds (the value alone for a single seed), checkpoint "
              f"`{suite.checkpoint}.pt` of each run.", ""]
    if stale:
        parts += [f"Left out: {len(stale)} finished run(s) evaluated on another protocol than the suite's "
                  f"({', '.join(stale)}); `colorkit bench` without `--only` scores them again.", ""]
    parts.append(results_table(suite, summary, sets))
    parts += protocol_text(suite, sets)
    parts += ["", "Per run (results.csv has every column):", ""] + per_run_table(suite, rows)
    if figures:
        parts += ["", "Figures:", ""] + [f"![{Path(f).stem}](figures/{Path(f).name})" for f in figures]
    text = "\n".join(parts) + "\n"
    _write_text(out / "results.md", text)
    return text


def _write_text(path: Path, text: str) -> None:
    """Atomic: parallel workers of one suite rewrite the same tables as their runs finish."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_results(suite: Suite, out: Path, figures: list[str] | None = None) -> list[dict[str, Any]]:
    """Rewrite results.csv, results.md and results.json from the runs under ``out``."""
    stale: list[str] = []
    rows, sets = collect(suite, out, stale)
    write_csv(suite, rows, out / "results.csv")
    if figures is None:
        fig_dir = out / "figures"
        figures = sorted(str(p) for p in fig_dir.glob("*.png")) if fig_dir.is_dir() else []
    write_markdown(suite, out, rows, sets, figures, stale)
    summary = summarise(suite, rows)
    blob = {"suite": suite.name, "suite_file": suite.path.name, "description": suite.description,
            "seeds": suite.seeds, "checkpoint": suite.checkpoint,
            "protocol": public_protocol(suite.protocol),
            "experiment_protocols": {e.name: public_protocol(suite.protocol_for(e)) for e in suite.experiments if e.evaluation},
            "eval_sets": {label: {"floor": v["floor"], "dataset": (v["header"].get("dataset") or {}).get("name"),
                                  "split": v["header"].get("split"), "images": v["header"].get("images")}
                          for label, v in sets.items()},
            "metrics": _metric_info(sets),
            "summary": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()} for s in summary],
            "paper": {e.name: e.paper for e in suite.experiments if e.paper},
            "descriptions": {e.name: e.description for e in suite.experiments}}
    _write_text(out / "results.json", json_text(blob, indent=2, default=str) + "\n")
    return rows
