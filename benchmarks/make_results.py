"""Generate benchmarks/RESULTS.md from the suite outputs committed under benchmarks/results/.

RESULTS.md is never edited by hand: a test (tests/test_bench.py) checks that it equals what this
script generates from the committed files.

    python benchmarks/make_results.py                 # rewrite benchmarks/RESULTS.md
    python benchmarks/make_results.py --check         # exit 1 when RESULTS.md is stale
    python benchmarks/make_results.py --collect /work/bench-out/table1-cpu --suite benchmarks/table1-cpu.yaml
        # rewrite the suite's tables and figures in OUT (checkpoints there), copy the small
        # outputs (results.*, figures, per-run config.yaml, environment.json, metrics.jsonl,
        # eval-*.json; never checkpoints) into benchmarks/results/<suite name>[-<label>]/, then
        # rewrite RESULTS.md

Inputs, all optional:

* ``results/<dir>/results.json``, ``results.csv``, ``machine.json``, ``figures/*.png`` and
  ``runs/*/environment.json``: one benchmark suite's outputs (``colorkit bench``);
* ``results/<dir>/REPORT.md``: a report a benchmark script wrote (benchmarks/time_to_quality.py),
  copied in with its figure links made relative to RESULTS.md, followed by the folder's NOTES.md;
* ``results/<dir>/NOTES.md`` of a folder without ``results.json``: copied in (headings moved down);
* ``results/speed/data_pipeline*.json`` (benchmarks/data_pipeline.py --json),
  ``results/speed/train_overhead*.json`` (benchmarks/train_overhead.py --json),
  ``results/speed/colorize_latency*.json`` (benchmarks/colorize_latency.py --json).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = "results"
SPEED = "speed"
SMALL_RUN_FILES = ("config.yaml", "environment.json", "metrics.jsonl")
OLD_TIMING = "whole runs, one after the other (earlier method)"


# -- suites -------------------------------------------------------------------------------------


def _suite_dirs(bench: Path) -> list[Path]:
    root = bench / RESULTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and (p / "results.json").is_file() and not (p / "REPORT.md").is_file())


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _environments(folder: Path) -> list[dict[str, Any]]:
    out = []
    for env in sorted((folder / "runs").glob("*/environment.json")):
        try:
            out.append(json.loads(env.read_text(encoding="utf-8")))
        except json.JSONDecodeError:
            continue
    return out


def _num(v: Any) -> float:
    """A number of results.json: ``null`` (no spread for one seed, nothing measured) is NaN."""
    return math.nan if v is None else float(v)


def _fmt(v: Any, digits: int) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not math.isfinite(f) else f"{f:.{digits}f}"


def _table(blob: dict[str, Any], rows: list[dict[str, str]]) -> list[str]:
    """The suite's table: mean ± std over seeds per experiment, floors, the paper's numbers."""
    from colorkit.front.bench import METRIC_DIGITS

    metrics = blob["protocol"]["metrics"]
    info = blob.get("metrics") or {}
    sets = blob.get("eval_sets") or {}
    several = len(sets) > 1
    heads = []
    for m in metrics:
        mi = info.get(m, {})
        unit = f" ({mi['unit']})" if mi.get("unit") else ""
        heads.append(f"{m}{unit} {'↑' if mi.get('higher_is_better', True) else '↓'}")
    lines = ["| experiment | " + ("evaluated on | " if several else "") + "seeds | steps | images seen | "
             + " | ".join(heads) + " |",
             "|---|" + ("---|" if several else "") + "---|---|---|" + "---|" * len(metrics)]
    n_seeds = len(blob["seeds"])
    for s in blob["summary"]:
        if not s["n"]:
            lines.append(f"| {s['experiment']} | " + ("| " if several else "") + f"0 of {n_seeds} (not run yet) | | | "
                         + " | ".join("" for _ in metrics) + " |")
            continue
        # one seed has no spread: show the value alone rather than a "± 0" that claims one
        cells = [_fmt(s[m][0], METRIC_DIGITS.get(m, 3)) + (f" ± {_fmt(s[m][1], METRIC_DIGITS.get(m, 3))}" if s["n"] > 1 else "")
                 for m in metrics]
        where = f"{s.get('eval_set', '')} | " if several else ""
        lines.append(f"| {s['experiment']} | {where}{s['n']} of {n_seeds} | {_fmt(s['steps'][0], 0)} | "
                     f"{_num(s['images_seen'][0]):,.0f} | " + " | ".join(cells) + " |")
    for label, v in sets.items():
        cells = [_fmt((v["floor"] or {}).get(m), METRIC_DIGITS.get(m, 3)) for m in metrics]
        lead = "| *no colour (floor: L\\* kept, a\\* = b\\* = 0)* | " + (f"{label} | " if several else "")
        lines.append(lead + "– | – | – | " + " | ".join(cells) + " |")
    return lines


#: What is known of the paper's metric definitions, shown beside its Table 1 numbers.
PAPER_NOTE = (
    "Not a like-for-like comparison: the paper does not say on what scale or in what colour space "
    "its MAE is taken. The first author later gave CIFAR-10 MAE 5.1 on RGB 0-255 after 200 epochs "
    "on the test set (the authors' repository, issue 13), and the paper's 1.2 for the GAN is below "
    "what the no-colour floor above makes plausible for any RGB 0-255 reading. The paper's accuracy "
    "is the authors' `pixelwise_accuracy` on their generator's L\\*a\\*b\\* output; colorkit's "
    "`accuracy` applies the same thresholds to the RGB image as written, converted back to "
    "L\\*a\\*b\\*. The paper also trains for 500 epochs at batch 128 on a GPU."
)


def _paper_reference(blob: dict[str, Any]) -> list[str]:
    """The paper's Table 1 numbers as a separate, labelled reference, with the definitions note."""
    papers = blob.get("paper") or {}
    if not papers:
        return []
    metrics = sorted({m for p in papers.values() for m in p if m != "label"})
    lines = ["Reference, not measured here: the paper's Table 1 (Nazeri & Ng 2018).", "",
             "| paper row | colorkit experiment it corresponds to | " + " | ".join(f"paper {m}" for m in metrics) + " |",
             "|---|---|" + "---|" * len(metrics)]
    for name, paper in papers.items():
        cells = ["" if paper.get(m) is None else str(paper[m]) for m in metrics]
        lines.append(f"| {paper.get('label') or name} | `{name}` | " + " | ".join(cells) + " |")
    return lines + ["", PAPER_NOTE]


def _comparison(blob: dict[str, Any]) -> list[str]:
    """One sentence per experiment: against the floor on the same images, metric by metric."""
    info = blob.get("metrics") or {}
    sets = blob.get("eval_sets") or {}
    out = []
    for s in blob["summary"]:
        if not s["n"]:
            out.append(f"- **{s['experiment']}**: not run yet.")
            continue
        floor = (sets.get(s.get("eval_set")) or next(iter(sets.values()), {})).get("floor") or {}
        bits = []
        for m in ("accuracy", "psnr", "mae", "auc", "ssim", "colorfulness_gap"):
            if m not in s or m not in floor or floor[m] is None:
                continue
            mean, std = _num(s[m][0]), _num(s[m][1])
            higher = bool(info.get(m, {}).get("higher_is_better", True))
            better = mean > floor[m] if higher else mean < floor[m]
            d = 1 if m in ("accuracy", "auc") else 3 if m == "ssim" else 2
            spread = f" ± {std:.{d}f}" if s["n"] > 1 else ""
            bits.append(f"{m} {mean:.{d}f}{spread} is {'better' if better else 'worse'} than the floor's {floor[m]:.{d}f}")
        line = f"- **{s['experiment']}** ({s['n']} seed{'s' if s['n'] != 1 else ''}, {_num(s['steps'][0]):.0f} steps, " \
               f"{_num(s['images_seen'][0]):,.0f} images seen): " + "; ".join(bits) + "."
        out.append(line)
    return out


def _machine(folder: Path) -> list[str]:
    envs = _environments(folder)
    lines = []
    mfile = folder / "machine.json"
    m = json.loads(mfile.read_text(encoding="utf-8")) if mfile.is_file() else {}
    if envs:
        e = envs[0]
        keys = ("colorkit", "torch", "numpy", "python")
        versions = {k: sorted({str(x.get(k)) for x in envs}) for k in keys}
        devices = sorted({str(x.get("gpu") or x.get("device")) for x in envs})
        threads = sorted({str(x.get("torch_threads")) for x in envs})
        commits = sorted({str(x.get("git_commit_colorkit")) for x in envs})
        lines.append(f"- Machine: {m.get('cpu_model') or e.get('processor') or e.get('machine')}, "
                     f"{e.get('cpu_count')} CPUs"
                     + (f", {m['memory_gib']} GiB memory" if m.get("memory_gib") else "")
                     + f"; {e.get('platform')}; device {', '.join(devices)}; torch threads {', '.join(threads)}.")
        lines.append("- Versions: " + ", ".join(f"{k} {'/'.join(v)}" for k, v in versions.items()) + ".")
        lines.append(f"- colorkit commit of the runs: {', '.join(f'`{c}`' for c in commits)}"
                     " (`-dirty`: with uncommitted changes at run time).")
        plugins = sorted({f"{p.get('name')} ({p.get('package')} {p.get('version')})"
                          for x in envs for p in (x.get("plugins") or {}).values() if isinstance(p, dict)})
        lines.append(f"- Plugins used: {', '.join(plugins)}.")
    if m.get("note"):
        lines.append(f"- {m['note']}")
    return lines


def _suite_section(bench: Path, folder: Path) -> list[str]:
    blob = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    rows = _read_csv(folder / "results.csv")
    rel = folder.relative_to(bench).as_posix()
    total = len(blob["seeds"]) * len(blob["summary"])
    suite_file = blob.get("suite_file") or f"{blob['suite']}.yaml"
    m = json.loads((folder / "machine.json").read_text(encoding="utf-8")) if (folder / "machine.json").is_file() else {}
    out_dir = m.get("out") or f"bench/{blob['suite']}"
    lines = [f"## Suite `{blob['suite']}` ({rel})", ""]
    desc = (blob.get("descriptions") or {})
    suite_desc = blob.get("description")
    if suite_desc:
        lines += [suite_desc, ""]
    lines += [f"{len(rows)} of {total} runs finished and evaluated (seeds {', '.join(map(str, blob['seeds']))}); "
              f"values are mean ± sample standard deviation over the finished seeds, checkpoint "
              f"`{blob['checkpoint']}.pt` of each run"
              + (" (the step with the best val score: selected on val, reported on the split below)."
                 if blob['checkpoint'] == "best" else " (the state at the end of the budget)."), ""]
    lines += _table(blob, rows)
    lines += ["", "Against the floor (the same images):", ""] + _comparison(blob)
    reference = _paper_reference(blob)
    if reference:
        lines += [""] + reference
    lines += ["", "Experiments:", ""] + [f"- `{k}`: {v}" for k, v in desc.items() if v]
    lines += ["", "Reproduce (from the repository root; a rerun reuses finished runs and resumes interrupted ones):", "",
              "```", f"pip install --no-build-isolation -e examples/strided_unet",
              f"colorkit bench benchmarks/{suite_file} --out {out_dir}",
              f"python benchmarks/make_results.py --collect {out_dir} --suite benchmarks/{suite_file}"
              + (f" --label {m['label']}" if m.get("label") else ""), "```", ""]
    # protocol
    sets = blob.get("eval_sets") or {}
    prot = blob["protocol"]
    lines += ["Protocol:", ""]
    for label, v in sets.items():
        lines.append(f"- Evaluation set `{label}`: the first {v['images']} images of split `{v['split']}` of "
                     f"`{v['dataset']}`, the same images for every run and for the floor.")
    opts = ", ".join(f"{k}={v}" for k, v in (prot.get("options") or {}).items())
    lines.append(f"- Evaluation dataset options: {opts or 'the training ones'}; batch {prot['batch_size']}; "
                 f"metrics {', '.join(prot['metrics'])}.")
    lines.append("- Colour space: CIE L\\*a\\*b\\* (D65); the networks see L/50 - 1 and a/110, b/110 in [-1, 1]. "
                 "Every metric compares the 8-bit sRGB image the model's prediction becomes (out-of-gamut chroma "
                 "reduced, as `colorkit colorize` writes it) with the original 8-bit image.")
    lines.append("- The floor (*no colour*) keeps the input's L\\* and sets a\\* = b\\* = 0: a model is only useful "
                 "where it beats it.")
    info = blob.get("metrics") or {}
    if info:
        lines += ["", "| metric | unit | better | definition |", "|---|---|---|---|"]
        for name in prot["metrics"]:
            mi = info.get(name, {})
            definition = " ".join(str(mi.get("definition") or mi.get("description") or "").split())
            lines.append(f"| {name} | {mi.get('unit', '')} | {'higher' if mi.get('higher_is_better', True) else 'lower'} "
                         f"| {definition.replace('|', chr(92) + '|')} |")
    lines += ["", "Machine and versions:", ""] + _machine(folder)
    # per run
    if rows:
        metrics = prot["metrics"]
        lines += ["", "Per run (the CSV has every column: config hash, versions, device, wall and CPU time, images "
                  "seen, checkpoint):", "",
                  "| run | config sha256 | train wall s | train CPU s | steps | images | " + " | ".join(metrics) + " |",
                  "|---|---|---|---|---|---|" + "---|" * len(metrics)]
        from colorkit.front.bench import METRIC_DIGITS

        for r in rows:
            lines.append(f"| {r['experiment']}-s{r['seed']} | `{r['config_sha256'][:12]}` | {_fmt(r['wall_seconds'], 0)} "
                         f"| {_fmt(r['cpu_seconds'], 0)} | {r['steps']} | {r['images_seen']} | "
                         + " | ".join(_fmt(r[m], METRIC_DIGITS.get(m, 3)) for m in metrics) + " |")
        lines += ["", f"Files: [results.csv]({rel}/results.csv), [results.md]({rel}/results.md), per-run logs and "
                  f"evaluations under [{rel}/runs/]({rel}/runs/) (checkpoints are not committed)."]
    figs = sorted((folder / "figures").glob("*.png"))
    if figs:
        lines += ["", "Figures:", ""]
        for f in figs:
            lines += [f"![{f.stem}]({rel}/figures/{f.name})", ""]
    return lines


# -- other result folders ----------------------------------------------------------------------


def _other_folders(bench: Path) -> list[Path]:
    """The result folders other than the speed figures', in name order."""
    root = bench / RESULTS
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name != SPEED) if root.is_dir() else []


def _report_sections(bench: Path) -> list[str]:
    """Result folders with a ``REPORT.md`` that a benchmark script generated
    (benchmarks/time_to_quality.py): copied in as they are, with their figure links made relative
    to RESULTS.md."""
    lines: list[str] = []
    for folder in _other_folders(bench):
        report = folder / "REPORT.md"
        if not report.is_file():
            continue
        rel = folder.relative_to(bench).as_posix()
        text = report.read_text(encoding="utf-8").replace("](figures/", f"]({rel}/figures/")
        notes = folder / "NOTES.md"
        if notes.is_file():  # what was measured beside the report, written by hand
            text += "\n" + notes.read_text(encoding="utf-8")
        lines += [*text.splitlines(), "", f"Files: [{rel}/]({rel}/) (REPORT.md, results.json, per-run logs and "
                  "evaluations; checkpoints are not committed).", ""]
    return lines


def _notes_section(bench: Path) -> list[str]:
    """Result folders that are not suite outputs (no results.json, no REPORT.md) but carry a
    NOTES.md: their notes, headings moved two levels down."""
    lines: list[str] = []
    for folder in _other_folders(bench):
        notes = folder / "NOTES.md"
        if (folder / "results.json").is_file() or (folder / "REPORT.md").is_file() or not notes.is_file():
            continue
        rel = folder.relative_to(bench).as_posix()
        lines += [f"## Notes from {rel}/NOTES.md", ""]
        for line in notes.read_text(encoding="utf-8").splitlines():
            lines.append("##" + line if line.startswith("#") else line)
        lines.append("")
    return lines


# -- speed benchmarks ---------------------------------------------------------------------------


def _speed_files(bench: Path, prefix: str) -> list[Path]:
    folder = bench / RESULTS / SPEED
    return sorted(folder.glob(f"{prefix}*.json")) if folder.is_dir() else []


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return {"error": f"{path.name}: unreadable ({exc})"}


def _speed_section(bench: Path) -> list[str]:
    lines = ["## Speed benchmarks", ""]
    # data pipeline
    lines += ["### Data pipeline against training (benchmarks/data_pipeline.py; target: ratio >= 5)", ""]
    files = _speed_files(bench, "data_pipeline")
    if not files:
        lines += ["Not measured yet.", ""]
    for f in files:
        data = _load(f)
        if isinstance(data, dict):  # data_pipeline.py --json writes {"environment": ..., "results": [...]}
            cases = data.get("results", data.get("cases", []))
        else:
            cases = data if isinstance(data, list) else []
        env = data.get("environment") if isinstance(data, dict) else None
        context = ""
        if env:
            context = (f" python {env.get('python')}, torch {env.get('torch')}, {env.get('cpus')} CPUs, "
                       f"{env.get('torch_threads')} torch threads, {env.get('gpu') or 'no CUDA'}, seed {env.get('seed')}")
        lines += [f"`{RESULTS}/{SPEED}/{f.name}`:{context}", "",
                  "| case | device | batch | workers | pipeline images | pipeline s | pipeline img/s | "
                  "timed training steps | training s | training img/s | ratio |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in cases:
            train = c.get("training") or {}
            for p in c.get("pipeline") or []:
                ratio = (c.get("ratios") or {}).get(str(p.get("workers")))
                lines.append(f"| {c.get('case')} | {c.get('device')} | {c.get('batch')} | {p.get('workers')} | "
                             f"{_fmt(p.get('images'), 0)} | {_fmt(p.get('seconds'), 3)} | {_fmt(p.get('images_per_s'), 0)} | "
                             f"{_fmt(train.get('steps'), 0)} | {_fmt(train.get('seconds'), 3)} | "
                             f"{_fmt(train.get('images_per_s'), 1)} | {_fmt(ratio, 1)} |")
        steps = [(c.get("training") or {}).get("steps") for c in cases]
        if any(isinstance(n, int) and n < 50 for n in steps):
            lines += ["", "Measured over fewer than 50 timed training steps (the file predates "
                      "`data_pipeline.py --steps 50`): the training rates rest on few steps; rerun "
                      f"`python benchmarks/data_pipeline.py --json benchmarks/{RESULTS}/{SPEED}/{f.name}` on an idle machine."]
        lines.append("")
    # training overhead
    lines += ["### Training overhead and GFLOP/s (benchmarks/train_overhead.py; targets: ratio >= 0.97, "
              "fraction of matmul >= 0.85)", ""]
    files = _speed_files(bench, "train_overhead")
    if not files:
        lines += ["Not measured yet.", ""]
    else:
        lines += ["| file | device | precision | batch | timing | colorkit img/s | bare PyTorch img/s | ratio | "
                  "GFLOP/step | achieved GFLOP/s | matmul GFLOP/s | fraction of matmul |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in files:
            d = _load(f)
            timing = d.get("timing") or OLD_TIMING
            lines.append(f"| {f.name} | {d.get('device')} | {d.get('precision')} | {d.get('batch')} | {timing} | "
                         f"{_fmt(d.get('colorkit_images_per_s'), 1)} | {_fmt(d.get('bare_images_per_s'), 1)} | "
                         f"{_fmt(d.get('ratio'), 3)} | {_fmt(d.get('step_gflop'), 2)} | {_fmt(d.get('achieved_gflops'), 1)} | "
                         f"{_fmt(d.get('matmul_gflops'), 1)} | {_fmt(d.get('fraction_of_matmul'), 3)} |")
        lines += ["", "The command of each file is in the file. A file without a `timing` field was measured by "
                  "the earlier version of the benchmark, which timed whole runs one after the other (set-up, "
                  "end-of-run validation and checkpoint included; on the H100 the 200 steps crossed 12 epoch "
                  "ends): it is kept as measured, not comparable with the interleaved figures.", ""]
    # colorize latency
    lines += ["### Colorize latency (benchmarks/colorize_latency.py; target: 512x512 under 0.3 s)", ""]
    files = _speed_files(bench, "colorize_latency")
    if not files:
        lines += ["Not measured yet.", ""]
    for f in files:
        d = _load(f)
        context = ""
        if d.get("command"):
            context = (f" `{d['command']}`; torch {d.get('torch')}, {d.get('cpu')}, {d.get('cpus')} CPUs, load average "
                       f"{d.get('load_average_before')} before and {d.get('load_average_after')} after"
                       + (f"; {d['note']}" if d.get("note") else ""))
        lines += [f"`{RESULTS}/{SPEED}/{f.name}` (median of {d.get('runs')} runs):{context}", "",
                  "| photo | backend | working size | model input | array median s | file median s | peak RSS MiB | RSS growth MiB | threads |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in d.get("rows") or []:
            lines.append(f"| {r.get('photo')} | {r.get('backend', 'torch')} | {r.get('working_size')} | {r.get('model_input')} | "
                         f"{_fmt(r.get('array_median_s'), 3)} | {_fmt(r.get('file_median_s'), 3)} | "
                         f"{_fmt(r.get('peak_rss_mib'), 0)} | {_fmt(r.get('rss_growth_mib'), 0)} | {r.get('threads')} |")
        lines.append("")
    return lines


# -- the whole file -----------------------------------------------------------------------------


def generate(bench: Path = HERE) -> str:
    """The text of RESULTS.md from the files under ``bench/results``."""
    bench = Path(bench)
    lines = ["# Benchmark results", "",
             "<!-- Generated by benchmarks/make_results.py from the files under benchmarks/results/; "
             "do not edit by hand (tests/test_bench.py checks it). -->", "",
             "Reference: K. Nazeri, E. Ng, *Image Colorization with Generative Adversarial Networks* (2018), "
             "Table 1 (CIFAR-10 U-Net: MAE 5.9, accuracy 24.8%; CIFAR-10 GAN: MAE 1.2, accuracy 43.7%; "
             "Places365 GAN: MAE 3.2, accuracy 33.4%) and Figures 1, 5 and 6.", ""]
    suites = _suite_dirs(bench)
    if not suites:
        lines += ["No benchmark suite results committed yet.", ""]
    for folder in suites:
        lines += _suite_section(bench, folder) + [""]
    lines += _report_sections(bench)
    lines += _notes_section(bench)
    lines += _speed_section(bench)
    text = "\n".join(lines).rstrip("\n") + "\n"
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def collect(out: Path, suite_path: Path, label: str | None = None, bench: Path = HERE) -> Path:
    """Rewrite the suite's results in ``out`` and copy its small outputs into the repository."""
    from colorkit.front.bench import load_suite, run_suite

    suite = load_suite(suite_path)
    run_suite(suite_path, out, log=print, only_results=True)
    dest = bench / RESULTS / (suite.name + (f"-{label}" if label else ""))
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "figures").mkdir(parents=True)
    for name in ("results.csv", "results.md", "results.json"):
        shutil.copy2(out / name, dest / name)
    for png in sorted((out / "figures").glob("*.png")):
        shutil.copy2(png, dest / "figures" / png.name)
    for run in sorted((out / "runs").iterdir()):
        if not run.is_dir():
            continue
        (dest / "runs" / run.name).mkdir(parents=True)
        for f in [*SMALL_RUN_FILES, *sorted(p.name for p in run.glob("eval-*.json"))]:
            if (run / f).is_file():
                shutil.copy2(run / f, dest / "runs" / run.name / f)
    try:
        out_text = str(out.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        out_text = str(out)
    machine = {"cpu_model": _cpu_model(), "memory_gib": _memory_gib(), "out": out_text, "label": label}
    (dest / "machine.json").write_text(json.dumps(machine, indent=2) + "\n", encoding="utf-8")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when RESULTS.md differs from the generated text")
    ap.add_argument("--collect", type=Path, help="a suite's --out folder to copy the small outputs from")
    ap.add_argument("--suite", type=Path, help="the suite file of --collect")
    ap.add_argument("--label", help="suffix of the results folder (e.g. the device: h100)")
    args = ap.parse_args()
    if args.collect:
        if not args.suite:
            ap.error("--collect needs --suite")
        print(f"copied into {collect(args.collect, args.suite, args.label)}")
    text = generate(HERE)
    target = HERE / "RESULTS.md"
    if args.check:
        ok = target.is_file() and target.read_text(encoding="utf-8") == text
        print("RESULTS.md is up to date" if ok else "RESULTS.md is stale: run python benchmarks/make_results.py")
        return 0 if ok else 1
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
