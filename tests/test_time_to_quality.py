"""benchmarks/time_to_quality.py and benchmarks/photoset.py: every CPU-minute mark of every run
evaluated on a dataset split and on the wheel photos, tables against the floor, and the report in
RESULTS.md."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

SUITE = """\
name: ttq-tiny
description: a tiny time-to-quality suite on the samples dataset
seeds: [0, 1]
threads: 1
defaults:
  gen: {name: unet, options: {base: 4, depth: 2, zero_out: true}}
  disc: none
  loss: l1
  dataset: {name: samples, options: {size: 16, crops_per_epoch: 16, eval_crops: 6}}
  metrics: [mae]
  train: {batch_size: 4, epochs: 100, max_cpu_minutes: 0.004, keep_cpu_minutes: [0.0005, 0.004],
          device: cpu, val_every: 1000, ema: 0.9, log_every: 5}
experiments:
  - name: small
    description: the tiny U-Net
evaluation:
  split: test
  metrics: [mae, psnr, colorfulness_gap]
  batch_size: 6
  device: cpu
figures: {figure1: false, curves: false}
"""


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return mod


@pytest.mark.slow
def test_photoset_writes_the_wheel_photos_losslessly(tmp_path):
    photoset = _load("photoset")
    records = photoset.write(tmp_path)
    names = [r["name"] for r in records]
    assert names[:6] == ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "grace_hopper"]
    for (name, _, array), record in zip(photoset.photos(), records):
        written = np.asarray(Image.open(tmp_path / record["file"]))
        assert written.shape == array.shape == (record["height"], record["width"], 3)
        assert np.array_equal(written, array), name
    assert photoset.set_name(names).startswith(f"wheel photos ({len(names)}: astronaut")


@pytest.fixture(scope="module")
def ttq(tmp_path_factory):
    from colorkit.front.bench import run_suite
    from colorkit.kernel.registry import build_registry

    threads = torch.get_num_threads()
    folder = tmp_path_factory.mktemp("ttq")
    suite = folder / "ttq.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    out = folder / "out"
    run_suite(suite, out, registry=build_registry(autoload=False), log=None, figures=False)
    mod = _load("time_to_quality")
    dest = folder / "dest"
    assert mod.main(["--suite", str(suite), "--out", str(out), "--dest", str(dest), "--grid-mark", "0.004"]) == 0
    torch.set_num_threads(threads)
    return suite, out, dest, mod


@pytest.mark.slow
def test_every_mark_is_evaluated_as_eval_and_eval_images_score_it(ttq):
    from colorkit.engine.evaluation import evaluate, evaluate_images

    suite, out, dest, _ = ttq
    blob = json.loads((dest / "results.json").read_text())
    assert set(blob["runs"]) == {"small-s0", "small-s1"}
    run = out / "runs" / "small-s1"
    ckpt = run / "checkpoints" / "cpu-0.004min.pt"
    stored = blob["runs"]["small-s1"]["marks"]["0.004"]
    ev, _, _ = evaluate([ckpt], split="test", metrics="mae,psnr,colorfulness_gap", batch_size=6, device="cpu",
                        own_l_rows=False)
    photos = evaluate_images(ckpt, out / "photos", metrics="mae,psnr,colorfulness_gap", device="cpu")
    for k in ("mae", "psnr", "colorfulness_gap"):
        assert stored["cifar"][k] == pytest.approx(ev.rows[1].values[k], abs=1e-6)
        assert stored["photos"][k] == pytest.approx(photos.rows[1].values[k], abs=1e-6)
        assert blob["floors"]["cifar"][k] == pytest.approx(ev.rows[0].values[k], abs=1e-6)
        assert blob["floors"]["photos"][k] == pytest.approx(photos.rows[0].values[k], abs=1e-6)
    assert stored["step"] >= blob["runs"]["small-s1"]["marks"]["0.0005"]["step"] >= 1


def test_report_tables_are_mean_and_std_over_seeds_beside_the_floor(ttq):
    suite, out, dest, mod = ttq
    blob = json.loads((dest / "results.json").read_text())
    report = (dest / "REPORT.md").read_text()
    runs = [blob["runs"][f"small-s{s}"]["marks"]["0.004"]["cifar"]["mae"] for s in (0, 1)]
    mean, std = float(np.mean(runs)), float(np.std(runs, ddof=1))
    assert blob["summary"]["small"]["0.004"]["cifar"]["metrics"]["mae"]["mean"] == pytest.approx(mean)
    cell = f"{mean:,.2f} ± {std:,.2f}"
    row = next(line for line in report.splitlines() if line.startswith("| small | 2 |") and cell in line)
    assert row
    assert f"| *no colour (floor)* | – | – | {blob['floors']['cifar']['mae']:,.2f} |" in report
    assert "### CPU-minutes to the floor" in report
    assert "Not better than the floor at 0.004 CPU-minutes: " in report
    for fig in ("curves.png", "figure5_cifar10.png", "photos.png"):
        assert (dest / "figures" / fig).stat().st_size > 1000 and f"](figures/{fig})" in report
    # the run's small files are kept; checkpoints are not copied
    assert sorted(p.name for p in (dest / "runs" / "small-s0").iterdir()) == sorted(mod.SMALL_RUN_FILES)


def test_results_json_is_standard_json_with_null_for_no_spread(ttq):
    """results.json parses where NaN is refused (jq, browsers); one seed's spread is null."""
    from colorkit.front.bench.suite import load_suite
    from colorkit.kernel.files import json_text

    suite, out, dest, mod = ttq

    def refuse(token: str):
        raise AssertionError(f"{token} is not JSON")

    blob = json.loads((dest / "results.json").read_text(), parse_constant=refuse)
    assert blob["summary"]["small"]["0.004"]["cifar"]["metrics"]["mae"]["std"] >= 0
    one = {("small", 0): json.loads((out / "runs" / "small-s0" / mod.CACHE).read_text())}
    summary = json.loads(json_text(mod.summarise(load_suite(suite), [0.004], one)), parse_constant=refuse)
    stat = summary["small"]["0.004"]["cifar"]["metrics"]["mae"]
    assert stat["std"] is None and stat["mean"] == pytest.approx(one[("small", 0)]["marks"]["0.004"]["cifar"]["mae"])


def test_the_targets_table_judges_each_recipe_at_the_grid_mark(ttq):
    suite, out, dest, mod = ttq
    blob = json.loads((dest / "results.json").read_text())
    report = (dest / "REPORT.md").read_text()
    assert "### The fast recipe's targets at 0.004 CPU-minutes" in report
    cell, floors = blob["summary"]["small"]["0.004"], blob["floors"]
    mean = {(w, m): cell[w]["metrics"][m]["mean"] for w in ("cifar", "photos") for m in ("mae", "psnr", "colorfulness_gap")}
    met = {"MAE": mean["cifar", "mae"] < floors["cifar"]["mae"], "PSNR": mean["cifar", "psnr"] > floors["cifar"]["psnr"],
           "gap": mean["cifar", "colorfulness_gap"] <= floors["cifar"]["colorfulness_gap"] / 2,
           "photo PSNR": mean["photos", "psnr"] > floors["photos"]["psnr"]}
    row = next(line for line in report.splitlines() if line.startswith("| small | 2 | ") and line.endswith(
        "yes |" if all(met.values()) else "no: " + ", ".join(k for k, ok in met.items() if not ok) + " |"))
    assert f"{mean['cifar', 'mae']:,.2f}" in row
    assert f"at most half the floor: {floors['cifar']['colorfulness_gap'] / 2:,.2f}" in report
    # a recipe judged on a mark: the same blob judged where every target is met or missed
    info = {k: {"higher_is_better": k == "psnr"} for k in ("mae", "psnr", "colorfulness_gap")}
    lenient = {w: {"mae": 1e9, "psnr": -1e9, "colorfulness_gap": 1e9} for w in ("cifar", "photos")}
    strict = {w: {"mae": -1e9, "psnr": 1e9, "colorfulness_gap": -1e9} for w in ("cifar", "photos")}
    from types import SimpleNamespace
    s = SimpleNamespace(metrics=["mae", "psnr", "colorfulness_gap"], experiments=[SimpleNamespace(name="small")])
    assert mod.targets_table(s, blob["summary"], info, lenient, 0.004)[-2].endswith("| yes |")
    assert mod.targets_table(s, blob["summary"], info, strict, 0.004)[-2].endswith("| no: MAE, PSNR, gap, photo PSNR |")
    assert mod.targets_table(s, blob["summary"], info, strict, 99.0) == []  # no recipe reached that mark


@pytest.mark.slow
def test_a_rerun_reuses_the_cached_evaluations(ttq, monkeypatch):
    suite, out, dest, mod = ttq
    import colorkit.engine.evaluation as evaluation

    def boom(*a, **k):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(evaluation, "evaluate", boom)
    monkeypatch.setattr(evaluation, "evaluate_images", boom)
    before = (dest / "results.json").read_text()
    assert mod.main(["--suite", str(suite), "--out", str(out), "--dest", str(dest), "--grid-mark", "0.004"]) == 0
    assert (dest / "results.json").read_text() == before


@pytest.mark.slow
def test_grids_are_drawn_per_recipe_when_some_checkpoints_are_gone_and_old_grids_stay(ttq, tmp_path):
    import shutil

    suite, out, dest, mod = ttq
    dest2 = tmp_path / "dest"
    shutil.copytree(dest, dest2)
    old = (dest2 / "figures" / "figure5_cifar10.png").read_bytes()
    wider = tmp_path / "ttq.yaml"  # a second recipe whose run (and checkpoints) is not here
    wider.write_text(suite.read_text().replace(
        "    description: the tiny U-Net\n",
        "    description: the tiny U-Net\n  - name: gone\n    description: trained elsewhere, checkpoints removed\n"))
    assert mod.main(["--suite", str(wider), "--out", str(out), "--dest", str(dest2), "--grid-mark", "0.004"]) == 0
    report = (dest2 / "REPORT.md").read_text()
    for fig in ("figure5_cifar10_small.png", "photos_small.png", "figure5_cifar10.png", "photos.png"):
        assert (dest2 / "figures" / fig).stat().st_size > 1000 and f"](figures/{fig})" in report
    assert not (dest2 / "figures" / "figure5_cifar10_gone.png").exists()
    assert (dest2 / "figures" / "figure5_cifar10.png").read_bytes() == old


def _summary(values: list[float | None]) -> dict:
    marks = [1.0, 2.0, 3.0]
    cells = {}
    for m, v in zip(marks, values):
        seeds = 0 if v is None else 3
        cells[f"{m:g}"] = {"cifar": {"seeds": seeds, "metrics": {"psnr": {"mean": v if v is not None else math.nan}}}}
    return marks, {"r": cells}


@pytest.mark.parametrize("values,expected", [
    ([24.0, 26.0, 27.0], "2"),        # above the floor from the second mark on
    ([26.0, 24.0, 27.0], "3"),        # a dip below the floor resets it
    ([24.0, 25.0, 24.5], "not by 3"),  # never above (25.0 equals the floor: not better)
    ([26.0, 27.0, None], "1"),        # the last mark not reached yet
])
def test_cpu_minutes_to_the_floor(values, expected):
    mod = _load("time_to_quality")
    marks, summary = _summary(values)
    info = {"psnr": {"higher_is_better": True}}
    assert mod.to_floor(summary, marks, info, {"cifar": {"psnr": 25.0}}, "cifar", "psnr", "r") == expected


def test_results_md_includes_a_report_and_its_notes_with_links_that_resolve(tmp_path):
    mr = _load("make_results")
    folder = tmp_path / "results" / "ttq-x"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "curves.png").write_bytes(b"png")
    (folder / "REPORT.md").write_text("## Time to quality: suite `x`\n\nrow 12.34\n\n![curves](figures/curves.png)\n")
    (folder / "NOTES.md").write_text("### Measured on a test machine\n\nnote 56.78\n")
    text = mr.generate(tmp_path)
    assert "row 12.34" in text and "note 56.78" in text
    assert "](results/ttq-x/figures/curves.png)" in text and (tmp_path / "results/ttq-x/figures/curves.png").is_file()
    assert "Suite `ttq-x`" not in text  # not taken for a colorkit bench suite


@pytest.mark.slow
def test_ab_gain_scan_scores_each_gain_as_eval_does(run_dir, tmp_path):
    """benchmarks/ab_gain_scan.py: gain 1 is the checkpoint as it is; a larger gain gives more colour."""
    import subprocess
    import sys

    from colorkit.engine.evaluation import evaluate

    out = tmp_path / "scan.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ab_gain_scan.py"), str(run_dir / "checkpoints" / "last.pt"),
                           "--gains", "1,3", "--split", "val", "--first", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["gain"] for r in rows] == ["no colour", 1.0, 3.0]
    plain, _, _ = evaluate([run_dir / "checkpoints" / "last.pt"], split="val", first=8,
                           metrics="mae,accuracy,psnr,colorfulness_gap", device="cpu")
    for metric in ("mae", "psnr", "colorfulness_gap"):
        assert rows[0][metric] == pytest.approx(plain.rows[0].values[metric])
        assert rows[1][metric] == pytest.approx(plain.rows[-1].values[metric])
    assert rows[2]["mae"] != pytest.approx(rows[1]["mae"])  # the gain reached the model's output
    assert "| 3.0 |" in proc.stdout
    # --set: the scored images take the dataset options given (as the suite's protocol sets them)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "ab_gain_scan.py"), str(run_dir / "checkpoints" / "last.pt"),
                           "--gains", "1", "--split", "val", "--first", "8", "--set", "dataset.eval_crops=2",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    blob = json.loads(out.read_text())
    other, _, _ = evaluate([run_dir / "checkpoints" / "last.pt"], split="val", limit=8, sets=["dataset.eval_crops=2"],
                           metrics="mae,accuracy,psnr,colorfulness_gap", device="cpu")
    assert blob["sets"] == ["dataset.eval_crops=2"] and other.images != plain.images
    assert blob["rows"][1]["mae"] == pytest.approx(other.rows[-1].values["mae"])


# Rows of the shipped suites that measure a preset without naming it, and the preset they stand
# for: fast-fold2-gan-lam500 was trained before its preset existed, so it keeps the layers it was
# trained with; ab-gain-1.8 is a `from` row (fast's checkpoints with gen.ab_gain=1.8).
ROWS_AS_PRESETS = [("time-to-quality.yaml", "fast-fold2-gan-lam500", "fast-cifar10-fold2-gan"),
                   ("time-to-quality-ablation.yaml", "ab-gain-1.8", "fast-cifar10-vivid")]


@pytest.mark.parametrize("suite_file, row, preset", ROWS_AS_PRESETS)
def test_a_suite_row_trains_exactly_the_preset_it_reports(suite_file, row, preset):
    from colorkit.front.bench.plan import build_experiment
    from colorkit.front.bench.presets import preset_layer
    from colorkit.front.bench.suite import load_suite
    from colorkit.kernel.experiment import experiment_defaults, merge_layers, resolve
    from colorkit.kernel.registry import build_registry

    registry = build_registry()
    suite = load_suite(REPO / "benchmarks" / suite_file)
    got = build_experiment(registry, suite, suite.experiment(row), 0)
    # the preset as the suite reads it: registry.yaml's, or benchmarks/presets.yaml's
    want = resolve(registry, merge_layers([("defaults", experiment_defaults(registry)),
                                           preset_layer(registry, suite.presets, preset, suite.path)]))
    assert (got.gen, got.disc, got.loss, got.dataset.name) == (want.gen, want.disc, want.loss, want.dataset.name)
    for key in ("batch_size", "lr", "lr_d", "lr_schedule", "ema", "g_steps"):
        assert getattr(got.train, key) == getattr(want.train, key), key
    # the suite's budget may be longer than the preset's: the GAN phase starts at the same
    # CPU-minute as in the preset's own budget, and the preset's budget is a kept mark if it is
    # within the suite's
    assert got.train.gan_start * got.train.max_cpu_minutes == want.train.gan_start * want.train.max_cpu_minutes
    if want.train.max_cpu_minutes <= got.train.max_cpu_minutes:
        assert want.train.max_cpu_minutes in got.train.keep_cpu_minutes


def test_each_lever_is_measured_against_the_row_it_changes():
    """Ablation rows pair with the unchanged row of their preset (a `from` row with its source);
    the differences are paired by seed and bold only when their 95% interval excludes zero."""
    from colorkit.front.bench.suite import load_suite

    levers = _load("levers")
    refs = levers.references(load_suite(REPO / "benchmarks" / "time-to-quality-ablation.yaml"))
    assert refs["no-zero-out"] == refs["paper-width"] == refs["ab-gain-1.8"] == "fast"
    assert refs["gan-lr-d-10"] == refs["gan-spectral-norm"] == "fast-gan"
    assert "fast" not in refs and "fast-gan" not in refs

    class E:  # a suite row as levers reads it
        def __init__(self, name, preset=None, sets=(), source=None):
            self.name, self.preset, self.sets, self.config, self.source = name, preset, list(sets), {}, source

    class S:
        experiments = [E("ref", "p"), E("noisy", "p", ["gen.x=1"]), E("same-weights", source="ref"), E("other", "q", ["a=1"]),
                       E("tiny", "p", ["gen.y=2"])]

    def mark(psnr, step):
        return {"marks": {"10": {"step": step, "cifar": {"psnr": psnr}}}}

    evals = {("ref", s): mark(25.0 + 0.1 * s, 100) for s in range(3)}
    evals.update({("noisy", s): mark(25.0 + d, 50) for s, d in enumerate([0.1, 0.3, 0.2])})
    evals.update({("same-weights", s): mark(24.5 + 0.1 * s, 100) for s in range(2)})
    evals.update({("tiny", s): mark(25.0 + 0.1 * s + 0.001 + 0.0001 * s, 100) for s in range(3)})
    lines = levers.lever_table(S(), evals, {"psnr": {"higher_is_better": True}}, "10", [("cifar", "psnr", "PSNR")])
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ") and "---" not in line}
    # noisy: differences 0.1, 0.2, 0.0 after pairing: mean 0.1, interval 4.303 x 0.1 / sqrt(3)
    assert rows["noisy"] == "| noisy | ref | 3 | 0.50 | +0.10 ± 0.25 | no measured difference |"
    assert rows["same-weights"] == "| same-weights | ref | 2 | 1.00 | **-0.50 ± 0.00** | worse: PSNR |"
    assert "other" not in rows  # its preset has no unchanged row
    # a tight interval around a difference too small to print is not a measured difference
    assert rows["tiny"] == "| tiny | ref | 3 | 1.00 | +0.00 ± 0.00 | no measured difference |"
    spread = levers.interval([0.1, 0.2, 0.3])
    assert spread[0] == pytest.approx(0.2) and spread[1] == pytest.approx(4.303 * 0.1 / math.sqrt(3))
    assert math.isnan(levers.interval([0.4])[1])
